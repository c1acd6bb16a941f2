package projections_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
	"github.com/redis/go-redis/v9"
)

// fixture is a cluster namespace on a real server with the helpers the
// retention tests need.
type fixture struct {
	t    *testing.T
	rdb  redis.UniversalClient
	keys streams.Keys
	log  *streams.Log
	src  events.Source
}

func eachServer(t *testing.T, f func(t *testing.T, fx *fixture)) {
	for _, srv := range streamstest.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			keys, err := streams.NewKeys(streamstest.ClusterName(t), 4)
			if err != nil {
				t.Fatal(err)
			}
			rdb := srv.Client(t)
			f(t, &fixture{t: t, rdb: rdb, keys: keys, log: streams.NewLog(rdb, keys), src: events.Source{Cluster: keys.Cluster, Actor: "test"}})
		})
	}
}

func (fx *fixture) check(err error) {
	fx.t.Helper()
	if err != nil {
		fx.t.Fatal(err)
	}
}

// project consumes every event store and heartbeat shard through the
// served namespace's projector group until nothing is left, as a projector
// would.
func (fx *fixture) project() {
	fx.t.Helper()
	ctx := context.Background()
	k, err := projections.NewStore(fx.rdb, fx.keys).Keys(ctx)
	fx.check(err)
	store := projections.NewStoreAt(fx.rdb, k)
	for n := range fx.keys.EventShards() {
		r, err := streams.NewReader(fx.rdb, streams.ReaderOptions{
			Streams: []string{fx.keys.EventShard(n), fx.keys.HeartbeatShard(n)}, Group: k.ProjectorGroup(), Consumer: "test",
			Block: 10 * time.Millisecond, Count: 500, DeadLetter: fx.keys.DeadLetters(),
			Archives: map[string]string{fx.keys.EventShard(n): fx.keys.ArchiveState(n)},
		})
		fx.check(err)
		for {
			msgs, err := r.Fetch(ctx, 0)
			fx.check(err)
			if len(msgs) == 0 {
				break
			}
			fx.check(store.Apply(ctx, msgs))
			for _, m := range msgs {
				fx.check(r.Ack(ctx, m.Stream, m.ID))
			}
		}
	}
}

// consume reads and acknowledges everything of stream as the agents group.
func (fx *fixture) consume(stream string) {
	fx.t.Helper()
	ctx := context.Background()
	fx.check(streams.EnsureGroup(ctx, fx.rdb, stream, streams.GroupAgents))
	res, err := fx.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: streams.GroupAgents, Consumer: "w", Streams: []string{stream, ">"}, Count: 10000, Block: -1}).Result()
	if errors.Is(err, redis.Nil) {
		return
	}
	fx.check(err)
	for _, m := range res[0].Messages {
		fx.check(fx.rdb.XAck(ctx, stream, streams.GroupAgents, m.ID).Err())
	}
}

func (fx *fixture) register(host string) {
	fx.t.Helper()
	ctx := context.Background()
	_, err := fx.log.Record(ctx, host, fx.src.New(events.WorkerRegistered{Hostname: host, Role: "webserver", HeartbeatMS: 1000}))
	fx.check(err)
	_, _, err = fx.log.Heartbeat(ctx, host, fx.src.New(events.WorkerHeartbeat{Hostname: host, Seq: 1, HeartbeatMS: 1000}), true)
	fx.check(err)
}

// submit records a task for host (in job, if given), started and finished
// with outcome unless that is "" (then it is started only, or with
// waiting, never started).
func (fx *fixture) submit(id, job, host string, outcome events.Outcome, started bool) {
	fx.t.Helper()
	ctx := context.Background()
	_, err := fx.log.Submit(ctx, fx.src.New(events.TaskSubmitted{TaskID: id, JobID: job, Task: "command", Argv: []string{"true"},
		Route: events.RouteWorker, Target: host, Deadline: time.Now().Add(time.Hour)}))
	fx.check(err)
	if !started {
		return
	}
	res, err := fx.log.Start(ctx, fx.src.New(events.TaskStarted{TaskID: id, Worker: host}), "entry-"+id)
	fx.check(err)
	if outcome == "" {
		return
	}
	_, err = fx.log.Finish(ctx, fx.src.New(events.TaskFinished{TaskID: id, Attempt: res.Attempt, Worker: host, Outcome: outcome}))
	fx.check(err)
}

// The retention pass removes what is past its retention, ends the tasks
// nobody else would, forgets gone workers, and leaves the projections
// equal to a fresh fold with the same retention.
func TestJanitorRetention(t *testing.T) {
	eachServer(t, func(t *testing.T, fx *fixture) {
		ctx := context.Background()
		fx.register("web1")
		fx.register("web2")
		fx.submit("t1", "j1", "web1", events.Succeeded, true)
		fx.submit("t5", "j1", "web2", events.Failed, true)
		fx.submit("t2", "", "web1", "", false) // waits for ever
		fx.submit("t3", "", "web1", "", true)  // runs when web1 goes away
		fx.submit("t4", "", "web2", events.Succeeded, true)
		_, err := fx.log.Append(ctx, fx.keys.TaskLog("t1"), fx.src.New(events.TaskLog{TaskID: "t1", Attempt: 1, Stream: "stdout", Seq: 1, Data: "hi\n"}), 0)
		fx.check(err)
		_, err = fx.log.Record(ctx, "web1", fx.src.New(events.WorkerLeft{Hostname: "web1", Reason: "stopped"}))
		fx.check(err)
		for _, h := range []string{"web1", "web2"} {
			fx.consume(fx.keys.WorkerDispatch(h))
			fx.consume(fx.keys.WorkerControl(h))
		}
		fx.project()
		store := projections.NewStore(fx.rdb, fx.keys)
		keep := projections.Retention{}
		pass := func(now time.Time) projections.JanitorReport {
			t.Helper()
			j := projections.NewJanitor(fx.rdb, fx.keys, projections.JanitorOptions{Owner: "test", Now: func() time.Time { return now }})
			rep, err := j.Pass(ctx)
			fx.check(err)
			fx.project()
			return rep
		}

		// Now: nothing is past its retention.
		rep := pass(time.Now())
		if rep.TasksRemoved+rep.WorkersForgotten+rep.TasksExpired+rep.TasksAbandoned != 0 {
			t.Fatalf("pass now: %+v, want nothing removed or ended", rep)
		}
		for _, id := range []string{"t1", "t2", "t3", "t4", "t5"} {
			if _, err := store.Task(ctx, id); err != nil {
				t.Fatalf("task %s after a pass now: %v", id, err)
			}
		}

		// Eight days on: the ended tasks go with their output and job; the
		// waiting one is expired and the one running on the gone worker
		// dead-lettered; web2, silent for eight days, and web1, gone, are
		// forgotten.
		later := time.Now().Add(8 * 24 * time.Hour)
		rep = pass(later)
		if rep.TasksRemoved != 3 || rep.TasksExpired != 1 || rep.TasksAbandoned != 1 || rep.WorkersForgotten != 2 {
			t.Errorf("pass in 8 days: %+v, want 3 tasks removed, 1 expired, 1 abandoned, 2 workers forgotten", rep)
		}
		for _, id := range []string{"t1", "t4", "t5"} {
			if _, err := store.Task(ctx, id); !errors.Is(err, projections.ErrNotFound) {
				t.Errorf("task %s after its retention: %v, want not found", id, err)
			}
		}
		if _, err := store.Job(ctx, "j1"); !errors.Is(err, projections.ErrNotFound) {
			t.Errorf("job j1 whose tasks are gone: %v, want not found", err)
		}
		if n, _ := fx.rdb.Exists(ctx, fx.keys.TaskLog("t1")).Result(); n != 0 {
			t.Errorf("the output of t1 is still there")
		}
		if n, _ := fx.rdb.ZCard(ctx, fx.keys.TaskIndex()).Result(); n != 2 {
			t.Errorf("task index holds %d tasks, want 2 (t2, t3)", n)
		}
		if tk, err := store.Task(ctx, "t2"); err != nil || tk.State != projections.TaskExpired || !strings.Contains(tk.EndReason, "deadline") {
			t.Errorf("t2 = %+v, %v; want expired by the retention pass", tk, err)
		}
		if tk, err := store.Task(ctx, "t3"); err != nil || tk.State != projections.TaskDead || !strings.Contains(tk.DeadReason, "abandoned") {
			t.Errorf("t3 = %+v, %v; want dead, abandoned", tk, err)
		}
		if ws, err := store.Workers(ctx); err != nil || len(ws) != 0 {
			t.Errorf("workers after 8 days: %v, %v; want none", ws, err)
		}
		for _, s := range []string{fx.keys.WorkerDispatch("web1"), fx.keys.WorkerControl("web2")} {
			if n, _ := fx.rdb.Exists(ctx, s).Result(); n != 0 {
				t.Errorf("%s of a forgotten worker with nothing unread is still there", s)
			}
		}
		dead, err := streams.DeadLetters(ctx, fx.rdb, fx.keys.DeadLetters(), 10)
		fx.check(err)
		if len(dead) != 1 || !strings.Contains(dead[0].Reason, "abandoned") {
			t.Errorf("dead letters = %+v, want the abandoned task", dead)
		}
		// The fences of the tasks ended now expire like any other.
		for _, id := range []string{"t2", "t3"} {
			if ttl, _ := fx.rdb.TTL(ctx, fx.keys.TaskFence(id)).Result(); ttl <= 0 {
				t.Errorf("fence of %s has TTL %v, want one", id, ttl)
			}
		}
		// A fresh fold with the same retention equals the projections.
		bad, n, err := projections.Verify(ctx, projections.NewHistory(fx.rdb, fx.keys, nil), keep, later)
		if err != nil || len(bad) != 0 || n != 2 {
			t.Errorf("Verify after the pass: %d records, %v, %+v; want the 2 tasks and no difference", n, err, bad)
		}
		// Sixteen days on, the two ended by the first pass go too.
		if rep = pass(time.Now().Add(16 * 24 * time.Hour)); rep.TasksRemoved != 2 {
			t.Errorf("pass in 16 days removed %d tasks, want 2", rep.TasksRemoved)
		}
	})
}

// The event store is kept until archived; with archive: none it is
// trimmed at its retention; a stream of events older than the retention
// and never archived is warned about.
func TestJanitorEventStoreNeedsArchive(t *testing.T) {
	eachServer(t, func(t *testing.T, fx *fixture) {
		ctx := context.Background()
		for i := range 400 {
			_, err := fx.log.Record(ctx, "web1", fx.src.New(events.WorkerRegistered{Hostname: "web1", Role: "r", HeartbeatMS: 1000, PID: i}))
			fx.check(err)
		}
		fx.project()
		shard := fx.keys.ShardOf("web1")
		later := time.Now().Add(8 * 24 * time.Hour)
		run := func(keep projections.Retention) projections.JanitorReport {
			t.Helper()
			j := projections.NewJanitor(fx.rdb, fx.keys, projections.JanitorOptions{Owner: "test",
				Now: func() time.Time { return later }, Retention: func() projections.Retention { return keep }})
			rep, err := j.Pass(ctx)
			fx.check(err)
			return rep
		}
		rep := run(projections.Retention{})
		if rep.Removed[projections.KindEvents] != 0 {
			t.Errorf("removed %d unarchived events", rep.Removed[projections.KindEvents])
		}
		if len(rep.Warnings) == 0 || !strings.Contains(strings.Join(rep.Warnings, "\n"), "never been archived") {
			t.Errorf("warnings = %q, want one about the unarchived shard", rep.Warnings)
		}
		rep = run(projections.Retention{TrimUnarchived: true})
		if rep.Removed[projections.KindEvents] < 300 {
			t.Errorf("with archive: none, removed %d of 400 old events, want at least 300", rep.Removed[projections.KindEvents])
		}
		// Folding now needs an archive there is none of: the error says so.
		_, err := projections.AsOf(ctx, projections.NewHistory(fx.rdb, fx.keys, nil), "+", time.Now(), projections.Retention{})
		if !errors.Is(err, projections.ErrTrimmed) || !strings.Contains(err.Error(), fmt.Sprintf("shard %d", shard)) {
			t.Errorf("AsOf after an unarchived trim: %v, want ErrTrimmed naming shard %d", err, shard)
		}
	})
}

// A rebuild that died before it switched leaves a consumer group that
// would hold every trim back: the next pass (which holds the lease a live
// rebuild would) removes it and what it wrote.
func TestJanitorRemovesAbandonedRebuild(t *testing.T) {
	eachServer(t, func(t *testing.T, fx *fixture) {
		ctx := context.Background()
		fx.register("web1")
		fx.project()
		v9 := fx.keys.WithProjections(9)
		for n := range fx.keys.EventShards() {
			fx.check(streams.CreateGroupAt(ctx, fx.rdb, fx.keys.EventShard(n), v9.ProjectorGroup(), "0"))
		}
		fx.check(fx.rdb.HSet(ctx, v9.TaskProjection("x"), "task", "command").Err())
		rep, err := projections.NewJanitor(fx.rdb, fx.keys, projections.JanitorOptions{Owner: "test"}).Pass(ctx)
		fx.check(err)
		if rep.OldNamespaces != 1 {
			t.Errorf("pass deleted %d keys of the abandoned namespace, want 1", rep.OldNamespaces)
		}
		for n := range fx.keys.EventShards() {
			groups, err := streams.Groups(ctx, fx.rdb, fx.keys.EventShard(n))
			fx.check(err)
			for _, g := range groups {
				if g == v9.ProjectorGroup() {
					t.Errorf("shard %d keeps the abandoned rebuild's group", n)
				}
			}
		}
		if _, err := projections.NewStore(fx.rdb, fx.keys).Worker(ctx, "web1"); err != nil {
			t.Errorf("the served projections suffered: %v", err)
		}
	})
}
