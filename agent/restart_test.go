package agent_test

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
	"github.com/oklog/ulid/v2"
)

type sleepExec struct{ d time.Duration }

func (s sleepExec) Exec(ctx context.Context, _ events.TaskSubmitted, _, _ io.Writer) agent.Result {
	select {
	case <-time.After(s.d):
		return agent.Result{Outcome: events.Succeeded}
	case <-ctx.Done():
		return agent.Result{Outcome: events.Failed, Error: "interrupted"}
	}
}

// Redis restarts (AOF, appendfsync always) while 1,000 tasks are in flight
// across 3 agents: every task ends exactly once, none is lost.
func TestRedisRestartMidRun(t *testing.T) {
	srv := streamstest.NewSingle(t, streamstest.WithConfig("appendfsync always"))
	fx := newFixture(t, srv)
	for _, h := range []string{"web1", "web2", "web3"} {
		fx.start(h, "webserver", func(c *agent.Config) {
			c.Exec = sleepExec{20 * time.Millisecond}
			c.Concurrency = 16
			c.ReclaimIdle = 2 * time.Second
		})
	}
	ctx := context.Background()
	const n = 1000
	ids := make([]string, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	submitted := 0
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				id := ulid.Make().String()
				e := events.Source{Cluster: fx.keys.Cluster, Actor: "test"}.New(events.TaskSubmitted{
					TaskID: id, Task: "command", Argv: []string{"true"}, Route: events.RouteQueue, Target: "webserver"})
				// A submission that fails while Redis is down is retried,
				// as a caller would; Submit is idempotent.
				for {
					if _, err := fx.log.Submit(ctx, e); err == nil {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				mu.Lock()
				ids[i] = id
				submitted++
				mu.Unlock()
			}
		}()
	}
	fx.waitFor("a third submitted", func() bool { mu.Lock(); defer mu.Unlock(); return submitted > n/3 })
	srv.Restart(t)
	wg.Wait()

	deadline := time.Now().Add(90 * time.Second)
	var pending []string
	for {
		pending = pending[:0]
		for _, id := range ids {
			task, err := fx.store.Task(ctx, id)
			if err != nil || !task.Done() {
				pending = append(pending, id)
			}
		}
		if len(pending) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(pending) > 0 {
		t.Fatalf("%d of %d tasks did not end, e.g. %s", len(pending), n, pending[0])
	}
	// Exactly one outcome per task in the event store, every one a success.
	outcomes := map[string]int{}
	for _, shard := range fx.keys.EventShards() {
		err := streams.Replay(ctx, fx.rdb, shard, "-", "+", 0, func(e streams.Entry) error {
			if f, ok := e.Envelope.Payload.(events.TaskFinished); ok && !f.Stale && !f.WillRetry {
				outcomes[f.TaskID]++
				if f.Outcome != events.Succeeded {
					t.Errorf("task %s: %s (%s)", f.TaskID, f.Outcome, f.Error)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		if outcomes[id] != 1 {
			t.Errorf("task %s has %d recorded outcomes, want 1", id, outcomes[id])
		}
	}
	var states = map[string]int{}
	for _, id := range ids {
		task, _ := fx.store.Task(ctx, id)
		states[task.State]++
	}
	if states[string(events.Succeeded)] != n {
		t.Errorf("states = %v, want all %d succeeded", states, n)
	}
	// The same, as the invariant checker sees it.
	rep, err := projections.CheckInvariants(ctx, projections.NewHistory(fx.rdb, fx.keys, nil), projections.Retention{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Violations) > 0 || rep.Tasks != n || rep.Ended[string(events.Succeeded)] != n {
		t.Errorf("invariants: %d tasks, ended %v, violations %v", rep.Tasks, rep.Ended, rep.Violations)
	}
	t.Logf("after the restart: %d tasks, %d attempts, %d stale results, %d records checked", rep.Tasks, rep.Attempts, rep.StaleResults, rep.Records)
}
