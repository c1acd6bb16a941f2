package projections_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
	"github.com/oklog/ulid/v2"
)

// BenchmarkApply applies the events of a no-op task's life (submitted,
// started, finished), each in a batch of its own kind as the projector
// sees them under load, and reports the Redis CPU per task. One op is one
// task.
func BenchmarkApply(b *testing.B) {
	srv := streamstest.Single(b)
	rdb := srv.Client(b)
	keys, _ := streams.NewKeys(streamstest.ClusterName(b), 0)
	store := projections.NewStore(rdb, keys)
	src := events.Source{Cluster: keys.Cluster, Actor: "bench"}
	ctx := context.Background()
	const batch = 256
	seq := 0
	id := func() string { seq++; return fmt.Sprintf("%d-%d", time.Now().UnixMilli(), seq) }
	before, err := streams.Counters(ctx, rdb)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for done := 0; done < b.N; done += batch {
		n := min(batch, b.N-done)
		tasks := make([]string, n)
		for i := range tasks {
			tasks[i] = ulid.Make().String()
		}
		for _, mk := range []func(task string) events.Payload{
			func(t string) events.Payload {
				return events.TaskSubmitted{TaskID: t, Task: "command", Argv: []string{"true"}, Route: events.RouteQueue, Target: "bench"}
			},
			func(t string) events.Payload { return events.TaskStarted{TaskID: t, Attempt: 1, Worker: "w1"} },
			func(t string) events.Payload {
				return events.TaskFinished{TaskID: t, Attempt: 1, Worker: "w1", Outcome: events.Succeeded, DurationMS: 1}
			},
		} {
			msgs := make([]streams.Message, n)
			for i, t := range tasks {
				msgs[i] = streams.Message{Stream: keys.EventsFor(t), ID: id(), Envelope: src.New(mk(t))}
			}
			if err := store.Apply(ctx, msgs); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	after, err := streams.Counters(ctx, rdb)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64((after.CPU-before.CPU).Microseconds())/float64(b.N), "redis-µs/task")
}
