package ctl_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
)

// Replaying the same range twice gives byte-identical JSON lines, in entry
// order, with undecodable entries reported rather than dropped.
func TestEventsReplayIsStable(t *testing.T) {
	for _, srv := range streamstest.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			ctx := context.Background()
			cluster := streamstest.ClusterName(t)
			rdb := srv.Client(t)
			keys, _ := streams.NewKeys(cluster, 0)
			log := streams.NewLog(rdb, keys)
			src := events.Source{Cluster: cluster, Actor: "test"}
			for i := range 30 {
				id := ulid.Make().String()
				if _, err := log.Submit(ctx, src.New(events.TaskSubmitted{TaskID: id, Task: "command", Argv: []string{"echo", "<&>"},
					Route: events.RouteWorker, Target: "web1"})); err != nil {
					t.Fatal(err)
				}
				if _, err := log.Record(ctx, "web1", src.New(events.WorkerHeartbeat{Hostname: "web1", Seq: int64(i + 1), HeartbeatMS: 1000})); err != nil {
					t.Fatal(err)
				}
			}
			if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.EventShard(0), Values: []any{"junk", "1"}}).Err(); err != nil {
				t.Fatal(err)
			}
			env := []string{"CELEROOT_REDIS_URL=" + srv.URL, "CELEROOT_CLUSTER=" + cluster}
			first, stderr, code := run(t, env, "events", "replay", "-o", "jsonl")
			if code != 0 {
				t.Fatalf("replay: exit %d: %s", code, stderr)
			}
			second, _, _ := run(t, env, "events", "replay", "-o", "jsonl")
			if first != second {
				t.Fatal("two replays of the same range differ")
			}
			lines := strings.Split(strings.TrimSpace(first), "\n")
			if len(lines) != 61 {
				t.Fatalf("replay printed %d lines, want 61 (30 submissions, 30 heartbeats, 1 undecodable)", len(lines))
			}
			var prev string
			var bad int
			for _, l := range lines {
				var ev struct {
					EntryID string          `json:"entry_id"`
					Type    string          `json:"type"`
					Data    json.RawMessage `json:"data"`
					Error   string          `json:"error"`
				}
				if err := json.Unmarshal([]byte(l), &ev); err != nil {
					t.Fatalf("line is not JSON: %s", l)
				}
				if ev.Error != "" {
					bad++
				} else if ev.Type == "" || len(ev.Data) == 0 {
					t.Errorf("line without type or data: %s", l)
				}
				if prev != "" && !lessOrEqualID(prev, ev.EntryID) {
					t.Errorf("entries out of order: %s after %s", ev.EntryID, prev)
				}
				prev = ev.EntryID
			}
			if bad != 1 {
				t.Errorf("undecodable lines = %d, want 1", bad)
			}
			if !strings.Contains(first, `"argv":["echo","<&>"]`) {
				t.Error("payload text is escaped or missing")
			}
		})
	}
}

func lessOrEqualID(a, b string) bool {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	if len(am) != len(bm) {
		return len(am) < len(bm)
	}
	if am != bm {
		return am < bm
	}
	if len(as) != len(bs) {
		return len(as) < len(bs)
	}
	return as <= bs
}
