package agent_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/redis/go-redis/v9"
)

// zombie reads one entry of the role queue as worker host and starts an
// attempt, as a worker would before it crashed or froze.
func (fx *fixture) zombie(host, role string) (streams.Message, streams.StartResult) {
	fx.t.Helper()
	ctx := context.Background()
	r, err := streams.NewReader(fx.rdb, streams.ReaderOptions{Streams: []string{fx.keys.RoleQueue(role)},
		Group: streams.GroupAgents, Consumer: host, Block: 100 * time.Millisecond, DeadLetter: fx.keys.DeadLetters()})
	if err != nil {
		fx.t.Fatal(err)
	}
	var msgs []streams.Message
	fx.waitFor(host+" reads the entry", func() bool {
		msgs, err = r.Fetch(ctx, 1)
		return err == nil && len(msgs) == 1
	})
	m := msgs[0]
	sub := m.Envelope.Payload.(events.TaskSubmitted)
	res, err := fx.log.Start(ctx, events.Source{Cluster: fx.keys.Cluster}.New(events.TaskStarted{TaskID: sub.TaskID, Worker: host}), m.Stream+"/"+m.ID)
	if err != nil || res.Attempt != 1 {
		fx.t.Fatalf("zombie start = %+v, %v", res, err)
	}
	return m, res
}

func fastReclaim(c *agent.Config) { c.ReclaimIdle = 600 * time.Millisecond }

func TestReclaimFromStoppedWorker(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		id := fx.submit(events.RouteQueue, "webserver", time.Minute, "echo", "done")
		m, _ := fx.zombie("web1", "webserver") // web1 dies holding the entry
		fx.start("web2", "webserver", fastReclaim)
		task := fx.wait(id)
		if task.Outcome != events.Succeeded || task.Worker != "web2" {
			t.Fatalf("task = %s on %s, want succeeded on web2", task.Outcome, task.Worker)
		}
		if len(task.Attempts) != 2 || !task.Attempts[0].FinishedAt.IsZero() || task.Attempts[1].Outcome != events.Succeeded {
			t.Errorf("attempts = %+v, want attempt 1 (web1) without an end and attempt 2 succeeded", task.Attempts)
		}
		if p := fx.rdb.XPending(context.Background(), m.Stream, streams.GroupAgents).Val(); p.Count != 0 {
			t.Errorf("pending after reclaim = %d, want 0", p.Count)
		}
	})
}

func TestLongTaskIsNotReclaimed(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		fx.start("web1", "webserver", fastReclaim)
		id := fx.submit(events.RouteQueue, "webserver", time.Minute, "sleep", "2") // > 3x the idle bound
		fx.waitFor("task running", func() bool {
			task, err := fx.store.Task(context.Background(), id)
			return err == nil && task.State == projections.TaskRunning
		})
		fx.start("web2", "webserver", fastReclaim)
		task := fx.wait(id)
		if task.Outcome != events.Succeeded || len(task.Attempts) != 1 {
			t.Errorf("task = %s after %d attempts (%+v), want succeeded after one", task.Outcome, len(task.Attempts), task.Attempts)
		}
	})
}

func TestStaleResultOfFrozenWorker(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		id := fx.submit(events.RouteQueue, "webserver", time.Minute, "echo", "ok")
		_, first := fx.zombie("web1", "webserver") // web1 freezes mid-task
		fx.start("web2", "webserver", fastReclaim)
		if task := fx.wait(id); task.Outcome != events.Succeeded || task.Worker != "web2" {
			t.Fatalf("task = %s on %s, want succeeded on web2", task.Outcome, task.Worker)
		}
		// web1 wakes up and reports its result: recorded, but as stale.
		late := events.Source{Cluster: fx.keys.Cluster}.New(events.TaskFinished{TaskID: id, Attempt: first.Attempt,
			Worker: "web1", Outcome: events.Failed, ExitCode: 1})
		stale, err := fx.log.Finish(context.Background(), late)
		if err != nil || !stale {
			t.Fatalf("late Finish = stale %v, %v; want stale", stale, err)
		}
		fx.waitFor("the stale result projected", func() bool {
			task, _ := fx.store.Task(context.Background(), id)
			return len(task.Attempts) == 2 && task.Attempts[0].Stale
		})
		task, _ := fx.store.Task(context.Background(), id)
		if task.Outcome != events.Succeeded || task.Worker != "web2" || task.Attempts[0].Outcome != events.Failed {
			t.Errorf("after the late result: outcome %s on %s, attempts %+v; want web2's success to stand", task.Outcome, task.Worker, task.Attempts)
		}
	})
}

func TestMaxDeliveriesDeadLetters(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		ctx := context.Background()
		id := fx.submit(events.RouteQueue, "webserver", time.Minute, "echo", "never")
		m, _ := fx.zombie("web1", "webserver") // delivery 1
		time.Sleep(50 * time.Millisecond)
		// Delivery 2: web3 takes it over and dies too.
		if err := fx.rdb.XClaim(ctx, &redis.XClaimArgs{Stream: m.Stream, Group: streams.GroupAgents, Consumer: "web3",
			Messages: []string{m.ID}}).Err(); err != nil {
			t.Fatal(err)
		}
		fx.start("web2", "webserver", func(c *agent.Config) { fastReclaim(c); c.MaxDeliveries = 2 })
		task := fx.wait(id)
		if task.State != projections.TaskDead || !strings.Contains(task.DeadReason, "delivered 2 times") {
			t.Fatalf("task = %s (%q), want dead after 2 deliveries", task.State, task.DeadReason)
		}
		dead, err := streams.DeadLetters(ctx, fx.rdb, fx.keys.DeadLetters(), 10)
		if err != nil || len(dead) != 1 {
			t.Fatalf("dead letters = %v, %v; want 1", dead, err)
		}
		if d := dead[0]; d.EntryID != m.ID || d.Fields["data"] == nil || !strings.Contains(d.Reason, "max deliveries is 2") {
			t.Errorf("dead letter = %+v, want the entry with its fields and the reason", d)
		}
		if p := fx.rdb.XPending(ctx, m.Stream, streams.GroupAgents).Val(); p.Count != 0 {
			t.Errorf("pending = %d, want 0", p.Count)
		}
		// A late start of the dead task is refused.
		if r, err := fx.log.Start(ctx, events.Source{Cluster: fx.keys.Cluster}.New(events.TaskStarted{TaskID: id, Worker: "web1"}), m.Stream+"/"+m.ID); err != nil || !r.Done {
			t.Errorf("Start of a dead task = %+v, %v; want Done", r, err)
		}
	})
}
