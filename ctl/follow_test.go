package ctl_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
	"github.com/oklog/ulid/v2"
)

// task logs -f of an ended task with more output chunks than one read
// takes prints every line, in order, each once, and returns.
func TestFollowLongOutput(t *testing.T) {
	for _, srv := range streamstest.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			ctx := context.Background()
			cluster := streamstest.ClusterName(t)
			rdb := srv.Client(t)
			keys, err := streams.LoadKeys(ctx, rdb, cluster)
			if err != nil {
				t.Fatal(err)
			}
			log := streams.NewLog(rdb, keys)
			src := events.Source{Cluster: cluster, Actor: "test"}
			id := ulid.Make().String()
			const chunks = 1234
			var want strings.Builder
			for i := range chunks {
				line := fmt.Sprintf("line %d\n", i)
				want.WriteString(line)
				if _, err := log.Append(ctx, keys.TaskLog(id), src.New(events.TaskLog{TaskID: id, Attempt: 1, Seq: int64(i + 1), Stream: "stdout", Data: line}), 0); err != nil {
					t.Fatal(err)
				}
			}
			var msgs []streams.Message
			for i, p := range []events.Payload{
				events.TaskSubmitted{TaskID: id, Task: "command", Argv: []string{"x"}, Route: events.RouteWorker, Target: "web1"},
				events.TaskStarted{TaskID: id, Attempt: 1, Worker: "web1"},
				events.TaskFinished{TaskID: id, Attempt: 1, Worker: "web1", Outcome: events.Succeeded},
			} {
				msgs = append(msgs, streams.Message{Stream: keys.EventsFor(id), ID: fmt.Sprintf("1700000000000-%d", i), Envelope: src.New(p)})
			}
			if err := projections.NewStore(rdb, keys).Apply(ctx, msgs); err != nil {
				t.Fatal(err)
			}
			out, errs, code := runNoEnv("--redis", srv.URL, "--cluster", cluster, "task", "logs", "-f", id)
			if code != 0 {
				t.Fatalf("task logs -f: exit %d: %s", code, errs)
			}
			if out != want.String() {
				t.Errorf("task logs -f printed %d lines, want the %d lines in order", strings.Count(out, "\n"), chunks)
			}
		})
	}
}
