package streams_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/streams"
	"github.com/redis/go-redis/v9"
)

// fill appends n heartbeats of host to stream and returns their entry IDs.
func fill(t *testing.T, rdb redis.UniversalClient, keys streams.Keys, stream string, n int) []string {
	t.Helper()
	ctx := context.Background()
	log := streams.NewLog(rdb, keys)
	ids := make([]string, n)
	for i := range n {
		id, err := log.Append(ctx, stream, src.New(events.WorkerHeartbeat{Hostname: "web1", Seq: int64(i + 1), HeartbeatMS: 1000}), 0)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	return ids
}

func remaining(t *testing.T, rdb redis.UniversalClient, stream string) map[string]bool {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range msgs {
		out[m.ID] = true
	}
	return out
}

// A trim never removes an entry a consumer group has not read, nor one it
// read and has not acknowledged; it does remove what every group is done
// with.
func TestTrimBelowKeepsWhatGroupsNeed(t *testing.T) {
	each(t, func(t *testing.T, rdb redis.UniversalClient, keys streams.Keys) {
		ctx := context.Background()
		stream := keys.WorkerDispatch("web1")
		ids := fill(t, rdb, keys, stream, 1000)
		for _, g := range []string{"fast", "slow"} {
			if err := streams.EnsureGroup(ctx, rdb, stream, g); err != nil {
				t.Fatal(err)
			}
		}
		read := func(group string, n int64) []redis.XMessage {
			res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "c", Streams: []string{stream, ">"}, Count: n, Block: -1}).Result()
			if err != nil {
				t.Fatal(err)
			}
			return res[0].Messages
		}
		// fast read 900 and acknowledged all but the 350th; slow read 600.
		for i, m := range read("fast", 900) {
			if i != 349 {
				rdb.XAck(ctx, stream, "fast", m.ID)
			}
		}
		for _, m := range read("slow", 600) {
			rdb.XAck(ctx, stream, "slow", m.ID)
		}
		res, err := streams.TrimBelow(ctx, rdb, streams.Trim{Stream: stream, Before: streams.IDAt(time.Now().Add(time.Hour)), NeedGroup: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.Cut != ids[349] || !strings.Contains(res.Limit, "group fast has entries pending") {
			t.Errorf("cut = %s (%s), want %s, limited by fast's pending entry", res.Cut, res.Limit, ids[349])
		}
		left := remaining(t, rdb, stream)
		for i := 349; i < len(ids); i++ {
			if !left[ids[i]] {
				t.Fatalf("entry %d (%s) was trimmed although group fast has it pending (or a group has not read it)", i, ids[i])
			}
		}
		if res.Removed == 0 || int(res.Removed) != len(ids)-len(left) || left[ids[0]] {
			t.Errorf("removed %d, %d left of %d: the acknowledged start should go", res.Removed, len(left), len(ids))
		}
		// Once fast acknowledges, slow's position (600 read) is the limit.
		rdb.XAck(ctx, stream, "fast", ids[349])
		res, err = streams.TrimBelow(ctx, rdb, streams.Trim{Stream: stream, Before: streams.IDAt(time.Now().Add(time.Hour)), NeedGroup: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.Cut != ids[599] || !strings.Contains(res.Limit, "group slow has read no further") {
			t.Errorf("cut = %s (%s), want %s, limited by slow's position", res.Cut, res.Limit, ids[599])
		}
		left = remaining(t, rdb, stream)
		for i := 599; i < len(ids); i++ {
			if !left[ids[i]] {
				t.Fatalf("entry %d was trimmed although group slow has not read past 600", i)
			}
		}
		// A stream that no group reads is kept whole.
		other := keys.WorkerDispatch("web2")
		fill(t, rdb, keys, other, 300)
		res, err = streams.TrimBelow(ctx, rdb, streams.Trim{Stream: other, Before: streams.IDAt(time.Now().Add(time.Hour)), NeedGroup: true})
		if err != nil || res.Removed != 0 || len(remaining(t, rdb, other)) != 300 {
			t.Errorf("trim of a stream nobody reads: %+v, %v; want nothing removed", res, err)
		}
		// The policy line holds too: nothing younger than it goes.
		third := keys.RoleQueue("db")
		tids := fill(t, rdb, keys, third, 300)
		if err := streams.EnsureGroup(ctx, rdb, third, "g"); err != nil {
			t.Fatal(err)
		}
		for _, m := range readAll(t, rdb, third, "g") {
			rdb.XAck(ctx, third, "g", m.ID)
		}
		res, err = streams.TrimBelow(ctx, rdb, streams.Trim{Stream: third, Before: tids[0]})
		if err != nil || res.Removed != 0 || res.Limit != "retention" {
			t.Errorf("trim below the first entry: %+v, %v; want nothing removed, limited by the retention", res, err)
		}
	})
}

func readAll(t *testing.T, rdb redis.UniversalClient, stream, group string) []redis.XMessage {
	t.Helper()
	res, err := rdb.XReadGroup(context.Background(), &redis.XReadGroupArgs{Group: group, Consumer: "c", Streams: []string{stream, ">"}, Count: 100000, Block: -1}).Result()
	if err != nil {
		t.Fatal(err)
	}
	return res[0].Messages
}

// The event store is trimmed only below its archive watermark; a group
// created after a trim starts at the watermark.
func TestEventStoreTrimNeedsTheArchive(t *testing.T) {
	each(t, func(t *testing.T, rdb redis.UniversalClient, keys streams.Keys) {
		ctx := context.Background()
		stream := keys.EventShard(1)
		ids := fill(t, rdb, keys, stream, 800)
		if err := streams.EnsureGroupAtWatermark(ctx, rdb, stream, keys.ArchiveState(1), "projector"); err != nil {
			t.Fatal(err)
		}
		for _, m := range readAll(t, rdb, stream, "projector") {
			rdb.XAck(ctx, stream, "projector", m.ID)
		}
		trim := streams.Trim{Stream: stream, Before: streams.IDAt(time.Now().Add(time.Hour)), Archive: keys.ArchiveState(1), RequireArchive: true}
		res, err := streams.TrimBelow(ctx, rdb, trim)
		if err != nil || res.Removed != 0 || res.Limit != "nothing archived yet" {
			t.Fatalf("trim before any archive: %+v, %v; want nothing removed", res, err)
		}
		if err := streams.AdvanceWatermark(ctx, rdb, keys, 1, ids[499], "a1", time.Now()); err != nil {
			t.Fatal(err)
		}
		// The watermark never goes back.
		if err := streams.AdvanceWatermark(ctx, rdb, keys, 1, ids[10], "a1", time.Now()); err != nil {
			t.Fatal(err)
		}
		res, err = streams.TrimBelow(ctx, rdb, trim)
		if err != nil {
			t.Fatal(err)
		}
		if res.Cut != ids[499] || res.Limit != "archive watermark" || res.Removed == 0 {
			t.Errorf("trim after archiving 500: %+v, want cut at the watermark %s", res, ids[499])
		}
		left := remaining(t, rdb, stream)
		for i := 499; i < len(ids); i++ {
			if !left[ids[i]] {
				t.Fatalf("entry %d was trimmed above the archive watermark", i)
			}
		}
		st, err := streams.ReadArchiveState(ctx, rdb, keys, 1)
		if err != nil || st.Archived != ids[499] || st.Trimmed != ids[499] || st.ArchiveID != "a1" {
			t.Errorf("archive state = %+v, %v", st, err)
		}
		// A group created now starts at the watermark, not at 0.
		if err := streams.EnsureGroupAtWatermark(ctx, rdb, stream, keys.ArchiveState(1), "late"); err != nil {
			t.Fatal(err)
		}
		groups, err := rdb.XInfoGroups(ctx, stream).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range groups {
			if g.Name == "late" && g.LastDeliveredID != ids[499] {
				t.Errorf("group created after the trim starts at %s, want the watermark %s", g.LastDeliveredID, ids[499])
			}
		}
		// Creating an existing group changes nothing.
		if err := streams.EnsureGroupAtWatermark(ctx, rdb, stream, keys.ArchiveState(1), "projector"); err != nil {
			t.Errorf("EnsureGroupAtWatermark of an existing group: %v", err)
		}
	})
}

// The archive holds exactly the lines replay prints; a run is idempotent,
// resumes after a torn write, and refuses to leave a gap.
func TestArchiveShard(t *testing.T) {
	each(t, func(t *testing.T, rdb redis.UniversalClient, keys streams.Keys) {
		ctx := context.Background()
		stream := keys.EventShard(2)
		fill(t, rdb, keys, stream, 1200)
		// A foreign entry is archived with its raw fields.
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"foo", "bar"}}).Err(); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "archive")
		a, err := streams.OpenArchive(dir, keys, true)
		if err != nil {
			t.Fatal(err)
		}
		res, err := streams.ArchiveShard(ctx, rdb, keys, a, 2, streams.ArchiveOptions{})
		if err != nil || res.Written != 1201 {
			t.Fatalf("ArchiveShard = %+v, %v; want 1201 written", res, err)
		}
		var want bytes.Buffer
		if err := streams.Replay(ctx, rdb, stream, "-", "+", 0, func(e streams.Entry) error {
			want.Write(streams.EncodeLine(e))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		got := func() []byte {
			var b bytes.Buffer
			if err := a.Entries(2, "-", "+", func(e streams.Entry) error {
				b.Write(streams.EncodeLine(e))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			return b.Bytes()
		}
		if !bytes.Equal(got(), want.Bytes()) {
			t.Fatalf("archived lines differ from the replayed ones")
		}
		if !strings.Contains(want.String(), `"fields":{"foo":"bar"}`) {
			t.Errorf("the foreign entry's line does not keep its fields:\n%s", lastLines(want.String(), 1))
		}
		// Again: nothing new, nothing written.
		if res, err := streams.ArchiveShard(ctx, rdb, keys, a, 2, streams.ArchiveOptions{}); err != nil || res.Written != 0 {
			t.Errorf("second run = %+v, %v; want nothing written", res, err)
		}
		// A crash in the middle of a write leaves a torn line: the next run
		// cuts it off and writes the rest once.
		more := fill(t, rdb, keys, stream, 10)
		seg := segmentFile(t, dir, 2)
		f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(`{"stream":"` + stream + `","entry_id":"` + more[0] + `","id":"01J`)
		f.Close()
		if res, err := streams.ArchiveShard(ctx, rdb, keys, a, 2, streams.ArchiveOptions{}); err != nil || res.Written != 10 {
			t.Fatalf("run after a torn write = %+v, %v; want the 10 new events", res, err)
		}
		want.Reset()
		streams.Replay(ctx, rdb, stream, "-", "+", 0, func(e streams.Entry) error {
			want.Write(streams.EncodeLine(e))
			return nil
		})
		if !bytes.Equal(got(), want.Bytes()) {
			t.Fatalf("after the torn write the archive differs from the stream")
		}
		st, _ := streams.ReadArchiveState(ctx, rdb, keys, 2)
		if st.Archived != more[9] || st.ArchiveID != a.ID() {
			t.Errorf("watermark = %+v, want %s of archive %s", st, more[9], a.ID())
		}
		// Another archive directory is refused, unless asked to take over.
		b, err := streams.OpenArchive(filepath.Join(t.TempDir(), "other"), keys, true)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := streams.ArchiveShard(ctx, rdb, keys, b, 2, streams.ArchiveOptions{}); err == nil || !strings.Contains(err.Error(), "--new-archive") {
			t.Errorf("archiving into another archive: %v, want a refusal naming --new-archive", err)
		}
		// Trim, lose the archive's files: the gap is refused.
		if _, err := streams.TrimBelow(ctx, rdb, streams.Trim{Stream: stream, Before: streams.IDAt(time.Now().Add(time.Hour)),
			Archive: keys.ArchiveState(2), RequireArchive: true}); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(dir, "shard-002")); err != nil {
			t.Fatal(err)
		}
		if _, err := streams.ArchiveShard(ctx, rdb, keys, a, 2, streams.ArchiveOptions{}); err == nil || !strings.Contains(err.Error(), "was trimmed below") {
			t.Errorf("archiving with the archive's files gone: %v, want a gap error", err)
		}
		// A foreign directory is not an archive.
		if _, err := streams.OpenArchive(t.TempDir(), keys, false); !errors.Is(err, streams.ErrNoArchive) {
			t.Errorf("OpenArchive(empty dir) = %v, want ErrNoArchive", err)
		}
		other, _ := streams.NewKeys("other-cluster", keys.Shards)
		if _, err := streams.OpenArchive(dir, other, false); err == nil || !strings.Contains(err.Error(), "belongs to cluster") {
			t.Errorf("OpenArchive of another cluster's archive = %v", err)
		}
	})
}

func segmentFile(t *testing.T, dir string, shard int) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "shard-00"+string(rune('0'+shard)), "*.jsonl"))
	if err != nil || len(m) == 0 {
		t.Fatalf("no segment of shard %d in %s: %v", shard, dir, err)
	}
	return m[len(m)-1]
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// A lease is held by one owner at a time and lapses when not renewed.
func TestLease(t *testing.T) {
	each(t, func(t *testing.T, rdb redis.UniversalClient, keys streams.Keys) {
		ctx := context.Background()
		a := streams.NewLease(rdb, keys.JanitorLease(), "a", 300*time.Millisecond)
		b := streams.NewLease(rdb, keys.JanitorLease(), "b", 300*time.Millisecond)
		if err := a.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.Acquire(ctx); !errors.Is(err, streams.ErrLeaseHeld) || !strings.Contains(err.Error(), "held by a") {
			t.Errorf("second owner: %v, want ErrLeaseHeld naming a", err)
		}
		ran := false
		err := a.Hold(ctx, func(context.Context) error { ran = true; return nil })
		if err != nil || !ran {
			t.Errorf("Hold by the holder: ran %v, %v", ran, err)
		}
		// Released: b gets it; a's lapses when b does not renew.
		if err := b.Acquire(ctx); err != nil {
			t.Fatalf("after release: %v", err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for a.Acquire(ctx) != nil {
			if time.Now().After(deadline) {
				t.Fatal("an unrenewed lease did not lapse")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
