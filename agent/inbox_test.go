package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
)

// Control requests reach an agent whose every slot is busy and which has
// tasks waiting: the running task is cancelled, and the waiting ones then
// run in turn, none lost and none run twice.
func TestControlReadWhileSaturated(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		fx.start("web1", "webserver", func(c *agent.Config) { c.Concurrency = 1 })
		ctx := context.Background()
		long := fx.submitWith(events.TaskSubmitted{Route: events.RouteWorker, Target: "web1", Argv: []string{"sleep", "30"}})
		fx.waitFor("the long task running", func() bool {
			task, err := fx.store.Task(ctx, long)
			return err == nil && task.State == projections.TaskRunning
		})
		// Two more: one to the worker, one to its role's queue; both wait.
		a := fx.submit(events.RouteWorker, "web1", time.Minute, "true")
		b := fx.submit(events.RouteQueue, "webserver", time.Minute, "true")
		src := events.Source{Cluster: fx.keys.Cluster, Actor: "test"}
		sent := time.Now()
		if _, err := fx.log.Append(ctx, fx.keys.WorkerControl("web1"), src.New(events.TaskCancel{TaskID: long, Reason: "test"}), 0); err != nil {
			t.Fatal(err)
		}
		task := fx.wait(long)
		if task.Outcome != events.Cancelled {
			t.Errorf("long task = %s, want cancelled", task.Outcome)
		}
		if d := time.Since(sent); d > 5*time.Second {
			t.Errorf("cancel of a task on a saturated agent took %v", d)
		}
		for _, id := range []string{a, b} {
			if task := fx.wait(id); task.Outcome != events.Succeeded || len(task.Attempts) != 1 {
				t.Errorf("waiting task %s = %s after %d attempts, want succeeded once", id, task.Outcome, len(task.Attempts))
			}
		}
	})
}

// An agent that missed the announcement of a new revision picks it up
// with its next heartbeat. With no projector running, the agent is in no
// worker index, so the apply announces the revision to nobody.
func TestMissedConfigAnnouncementCaughtByHeartbeat(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- agent.Run(ctx, fx.rdb, agent.Config{Keys: fx.keys, Hostname: "web1", Role: "webserver",
				Labels: map[string]string{"tier": "web"}, Heartbeat: 200 * time.Millisecond, Block: 200 * time.Millisecond})
		}()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}()
		// lastRevision is the revision in web1's latest heartbeat.
		lastRevision := func() (int64, bool) {
			msgs, err := fx.rdb.XRevRangeN(context.Background(), fx.keys.EventsFor("web1"), "+", "-", 20).Result()
			if err != nil {
				return 0, false
			}
			for _, m := range msgs {
				if e, err := events.Decode(m.Values); err == nil {
					if hb, ok := e.Payload.(events.WorkerHeartbeat); ok {
						return hb.Revision, true
					}
				}
			}
			return 0, false
		}
		fx.waitFor("a heartbeat of web1", func() bool { _, ok := lastRevision(); return ok })
		fx.applyConfig(exampleSet(t), 1)
		if n, err := fx.rdb.XLen(context.Background(), fx.keys.WorkerControl("web1")).Result(); err != nil || n != 0 {
			t.Fatalf("control stream of web1 has %d entries (%v); want none, so the test shows the heartbeat path", n, err)
		}
		fx.waitFor("web1 heartbeats with revision 1", func() bool { rev, _ := lastRevision(); return rev == 1 })
	})
}
