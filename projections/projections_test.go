package projections_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
	"github.com/google/go-cmp/cmp"
	"github.com/oklog/ulid/v2"
)

func TestMain(m *testing.M) { os.Exit(streamstest.Main(m)) }

var t0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

// history is a task's life with a reclaimed attempt, and a worker's.
func history() []streams.Message {
	src := events.Source{Cluster: "c", Actor: "cli:alice"}
	var n int
	msg := func(p events.Payload) streams.Message {
		n++
		e := src.New(p)
		e.Time = t0.Add(time.Duration(n) * time.Second)
		return streams.Message{Stream: "s", ID: fmt.Sprintf("%d-%d", 1700000000000+int64(n/3), n%3), Envelope: e}
	}
	return []streams.Message{
		msg(events.WorkerRegistered{Hostname: "web1", Role: "webserver", Labels: map[string]string{"tier": "web"}, Tasks: []string{"command"}, HeartbeatMS: 1000}),
		msg(events.TaskSubmitted{TaskID: "t1", Task: "command", Argv: []string{"uname"}, Route: events.RouteQueue, Target: "webserver", TimeoutMS: 1000}),
		msg(events.WorkerHeartbeat{Hostname: "web1", Seq: 1, Running: 1, HeartbeatMS: 1000}),
		msg(events.TaskStarted{TaskID: "t1", Attempt: 1, Worker: "web1"}),
		msg(events.TaskStarted{TaskID: "t1", Attempt: 2, Worker: "web2"}),
		msg(events.TaskFinished{TaskID: "t1", Attempt: 2, Worker: "web2", Outcome: events.Succeeded, DurationMS: 5}),
		msg(events.TaskFinished{TaskID: "t1", Attempt: 1, Worker: "web1", Outcome: events.Failed, ExitCode: 1, Stale: true}),
		msg(events.WorkerHeartbeat{Hostname: "web1", Seq: 2, Running: 0, HeartbeatMS: 1000, Draining: true}),
		msg(events.WorkerLeft{Hostname: "web1", Reason: "stopped"}),
	}
}

func fold(msgs []streams.Message) projections.Records {
	recs := projections.Records{}
	for _, m := range msgs {
		for _, p := range projections.Reduce(m.Envelope, m.ID) {
			recs.Apply(p)
		}
	}
	return recs
}

func TestTaskView(t *testing.T) {
	recs := fold(history())
	got := projections.TaskFromRecord("t1", recs[projections.Ref{Kind: projections.KindTask, ID: "t1"}])
	want := projections.Task{
		ID: "t1", Task: "command", Route: events.RouteQueue, Target: "webserver", Argv: []string{"uname"},
		TimeoutMS: 1000, MaxAttempts: 1, SubmittedAt: t0.Add(2 * time.Second), SubmittedBy: "cli:alice",
		State: "succeeded", Outcome: events.Succeeded, FinishedAt: t0.Add(6 * time.Second), Worker: "web2",
		Attempts: []projections.Attempt{
			{Number: 1, Worker: "web1", StartedAt: t0.Add(4 * time.Second), FinishedAt: t0.Add(7 * time.Second),
				Outcome: events.Failed, ExitCode: 1, Stale: true},
			{Number: 2, Worker: "web2", StartedAt: t0.Add(5 * time.Second), FinishedAt: t0.Add(6 * time.Second),
				Outcome: events.Succeeded, DurationMS: 5},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("TaskFromRecord mismatch (-want +got):\n%s", diff)
	}
}

func TestWorkerStates(t *testing.T) {
	msgs := history()
	tests := []struct {
		name string
		upTo int // events folded
		now  time.Time
		want string
	}{
		{"registered", 1, t0.Add(2 * time.Second), projections.WorkerHealthy},
		{"heartbeat", 3, t0.Add(4 * time.Second), projections.WorkerHealthy},
		{"missed heartbeats", 3, t0.Add(7 * time.Second), projections.WorkerUnhealthy},
		{"draining", 8, t0.Add(9 * time.Second), projections.WorkerDraining},
		{"left", 9, t0.Add(time.Hour), projections.WorkerLeft},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs := fold(msgs[:tt.upTo])
			w := projections.WorkerFromRecord("web1", recs[projections.Ref{Kind: projections.KindWorker, ID: "web1"}])
			if got := w.State(tt.now); got != tt.want {
				t.Errorf("State after %d events at %v = %s, want %s", tt.upTo, tt.now.Sub(t0), got, tt.want)
			}
		})
	}
	// Registering again after leaving makes the worker alive again.
	again := append(append([]streams.Message(nil), msgs...), streams.Message{ID: "1700000000009-0",
		Envelope: events.Source{}.New(events.WorkerRegistered{Hostname: "web1", Role: "webserver", HeartbeatMS: 1000})})
	again[len(again)-1].Envelope.Time = t0.Add(20 * time.Second)
	w := projections.WorkerFromRecord("web1", fold(again)[projections.Ref{Kind: projections.KindWorker, ID: "web1"}])
	if got := w.State(t0.Add(21 * time.Second)); got != projections.WorkerHealthy {
		t.Errorf("State after re-registering = %s, want healthy", got)
	}
}

// The projections are the same whatever the order and number of deliveries.
func TestFoldIsOrderAndDuplicateSafe(t *testing.T) {
	msgs := history()
	want := fold(msgs)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		shuffled := append(append([]streams.Message(nil), msgs...), msgs[rng.IntN(len(msgs))], msgs[rng.IntN(len(msgs))])
		rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		if diff := cmp.Diff(want, fold(shuffled)); diff != "" {
			t.Fatalf("permutation %d gives another projection (-want +got):\n%s", i, diff)
		}
	}
}

func TestNewer(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"10-0", "9-0", true}, // a string compare gets this wrong
		{"9-0", "10-0", false},
		{"5-10", "5-9", true},
		{"5-1", "5-1", false},
		{"x", "5-1", false},
		{"5-1", "", true},
	}
	for _, tt := range tests {
		if got := projections.Newer(tt.a, tt.b); got != tt.want {
			t.Errorf("Newer(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

// The Lua store gives exactly the in-memory fold, in any order, applied twice.
func TestStoreMatchesFold(t *testing.T) {
	for _, srv := range streamstest.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			ctx := context.Background()
			keys, _ := streams.NewKeys(streamstest.ClusterName(t), 0)
			store := projections.NewStore(srv.Client(t), keys)
			msgs := history()
			rev := make([]streams.Message, len(msgs))
			for i, m := range msgs {
				rev[len(msgs)-1-i] = m
			}
			for _, batch := range [][]streams.Message{rev[:4], rev[4:], msgs} {
				if err := store.Apply(ctx, batch); err != nil {
					t.Fatal(err)
				}
			}
			want := fold(msgs)
			for ref, rec := range want {
				got, err := store.Record(ctx, ref)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(rec, got); diff != "" {
					t.Errorf("%v: store differs from fold (-fold +store):\n%s", ref, diff)
				}
			}
			ws, err := store.Workers(ctx)
			if err != nil || len(ws) != 1 || ws[0].Hostname != "web1" {
				t.Errorf("Workers = %v, %v; want web1", ws, err)
			}
			ts, err := store.Tasks(ctx, 0, 10)
			if err != nil || len(ts) != 1 || ts[0].ID != "t1" || ts[0].State != "succeeded" {
				t.Errorf("Tasks = %v, %v; want t1 succeeded", ts, err)
			}
			if _, err := store.Task(ctx, ulid.Make().String()); err == nil {
				t.Error("Task of an unknown id: no error")
			}
		})
	}
}

func TestJob(t *testing.T) {
	for _, srv := range streamstest.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			ctx := context.Background()
			keys, _ := streams.NewKeys(streamstest.ClusterName(t), 0)
			store := projections.NewStore(srv.Client(t), keys)
			src := events.Source{Cluster: "c"}
			var msgs []streams.Message
			add := func(p events.Payload) {
				msgs = append(msgs, streams.Message{ID: fmt.Sprintf("1700000000000-%d", len(msgs)), Envelope: src.New(p)})
			}
			for _, h := range []string{"web1", "web2", "db1"} {
				add(events.TaskSubmitted{TaskID: "t-" + h, JobID: "j1", Task: "command", Route: events.RouteWorker, Target: h})
			}
			add(events.TaskStarted{TaskID: "t-web1", Attempt: 1, Worker: "web1"})
			add(events.TaskFinished{TaskID: "t-web1", Attempt: 1, Worker: "web1", Outcome: events.Succeeded})
			add(events.TaskStarted{TaskID: "t-web2", Attempt: 1, Worker: "web2"})
			add(events.TaskFinished{TaskID: "t-web2", Attempt: 1, Worker: "web2", Outcome: events.Failed, ExitCode: 2})
			if err := store.Apply(ctx, msgs); err != nil {
				t.Fatal(err)
			}
			job, err := store.Job(ctx, "j1")
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]int{"succeeded": 1, "failed": 1, "waiting": 1}
			if diff := cmp.Diff(want, job.Counts(time.Now())); diff != "" || len(job.Tasks) != 3 || job.Task != "command" {
				t.Errorf("job counts (-want +got):\n%s\ntasks %d, task %q", diff, len(job.Tasks), job.Task)
			}
			if _, err := store.Job(ctx, "nope"); err == nil {
				t.Error("Job of an unknown id: no error")
			}
		})
	}
}

// Guards never share a field: otherwise the order in which events arrive
// would decide the value, and a rebuild could differ from the projector.
func TestGuardsDoNotShareFields(t *testing.T) {
	msgs := history()
	src := events.Source{Cluster: "c"}
	for i, h := range []string{"web1", "web2"} {
		msgs = append(msgs, streams.Message{ID: fmt.Sprintf("1800000000000-%d", i), Envelope: src.New(events.TaskSubmitted{
			TaskID: "j-" + h, JobID: "job1", Task: "command", Route: events.RouteWorker, Target: h})})
	}
	msgs = append(msgs,
		streams.Message{ID: "1800000000001-0", Envelope: src.New(events.TaskEnded{TaskID: "t1", State: events.EndExpired, Reason: "r"})},
		streams.Message{ID: "1800000000001-1", Envelope: src.New(events.TaskCancel{TaskID: "t1"})},
		streams.Message{ID: "1800000000001-2", Envelope: src.New(events.TaskRedriven{TaskID: "t1", NewTaskID: "t2"})},
		streams.Message{ID: "1800000000001-3", Envelope: src.New(events.TaskDeadLettered{TaskID: "t1", Reason: "r"})},
	)
	owner := map[projections.Ref]map[string]string{}
	for _, m := range msgs {
		for _, p := range projections.Reduce(m.Envelope, m.ID) {
			if owner[p.Ref] == nil {
				owner[p.Ref] = map[string]string{}
			}
			for _, fl := range p.Fields {
				f := fl.Name
				if g, ok := owner[p.Ref][f]; ok && g != p.Guard {
					t.Errorf("%v field %q is written by guards %q and %q", p.Ref, f, g, p.Guard)
				}
				owner[p.Ref][f] = p.Guard
			}
		}
	}
}

// A batch larger than one script call takes (a job of 300 tasks, many
// records, repeated guards) gives the fold too.
func TestStoreMatchesFoldLargeBatch(t *testing.T) {
	for _, srv := range streamstest.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			ctx := context.Background()
			keys, _ := streams.NewKeys(streamstest.ClusterName(t), 0)
			store := projections.NewStore(srv.Client(t), keys)
			src := events.Source{Cluster: "c"}
			var msgs []streams.Message
			add := func(p events.Payload) {
				msgs = append(msgs, streams.Message{ID: fmt.Sprintf("1700000000000-%d", len(msgs)), Envelope: src.New(p)})
			}
			for i := range 300 {
				id := fmt.Sprintf("t%03d", i)
				add(events.TaskSubmitted{TaskID: id, JobID: "big", Task: "command", Route: events.RouteWorker, Target: fmt.Sprintf("w%d", i%7)})
				add(events.TaskStarted{TaskID: id, Attempt: 1, Worker: fmt.Sprintf("w%d", i%7)})
				add(events.WorkerHeartbeat{Hostname: fmt.Sprintf("w%d", i%7), Seq: int64(i), HeartbeatMS: 1000})
				add(events.TaskFinished{TaskID: id, Attempt: 1, Worker: fmt.Sprintf("w%d", i%7), Outcome: events.Succeeded})
			}
			shuffled := append([]streams.Message(nil), msgs...)
			rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			if err := store.Apply(ctx, shuffled); err != nil {
				t.Fatal(err)
			}
			want := fold(msgs)
			for ref, rec := range want {
				got, err := store.Record(ctx, ref)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(rec, got); diff != "" {
					t.Fatalf("%v: store differs from fold (-fold +store):\n%s", ref, diff)
				}
			}
			job, err := store.Job(ctx, "big")
			if err != nil || len(job.Tasks) != 300 || job.Counts(time.Now())["succeeded"] != 300 {
				t.Errorf("job = %d tasks, counts %v, %v; want 300 succeeded", len(job.Tasks), job.Counts(time.Now()), err)
			}
		})
	}
}

// A worker's plugins are those of its newest registration: a registration
// without plugins (the plugin was removed) clears them, whatever the order
// the events are applied in.
func TestWorkerPlugins(t *testing.T) {
	plugin := events.Plugin{Name: "disk-usage", Version: "1.0.0", Params: json.RawMessage(`{"path":{"schema":{"type":"string"}}}`),
		TimeoutMS: 30000, Check: true, Hash: strings.Repeat("ab", 32)}
	problem := events.PluginProblem{File: "/etc/celeroot/plugins/broken", Error: "not executable"}
	src := events.Source{Cluster: "c"}
	first := streams.Message{ID: "1700000000000-0", Envelope: src.New(events.WorkerRegistered{Hostname: "web1", Role: "webserver",
		Tasks: []string{"command", "disk-usage"}, HeartbeatMS: 1000, Plugins: []events.Plugin{plugin}, PluginProblems: []events.PluginProblem{problem}})}
	second := streams.Message{ID: "1700000000001-0", Envelope: src.New(events.WorkerRegistered{Hostname: "web1", Role: "webserver",
		Tasks: []string{"command"}, HeartbeatMS: 1000})}
	ref := projections.Ref{Kind: projections.KindWorker, ID: "web1"}

	w := projections.WorkerFromRecord("web1", fold([]streams.Message{first})[ref])
	if diff := cmp.Diff([]events.Plugin{plugin}, w.Plugins); diff != "" {
		t.Errorf("plugins after the first registration (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]events.PluginProblem{problem}, w.PluginProblems); diff != "" {
		t.Errorf("plugin problems after the first registration (-want +got):\n%s", diff)
	}
	for _, order := range [][]streams.Message{{first, second}, {second, first}} {
		w := projections.WorkerFromRecord("web1", fold(order)[ref])
		if len(w.Plugins) != 0 || len(w.PluginProblems) != 0 || !cmp.Equal(w.Tasks, []string{"command"}) {
			t.Errorf("after a registration without plugins: plugins %v, problems %v, tasks %v", w.Plugins, w.PluginProblems, w.Tasks)
		}
	}
}

// WorkerStates, the lean read of cluster status, derives the same role,
// state and revision as the full read, whatever the worker's life.
func TestWorkerStatesMatchWorkers(t *testing.T) {
	for _, srv := range streamstest.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			ctx := context.Background()
			keys, _ := streams.NewKeys(streamstest.ClusterName(t), 0)
			store := projections.NewStore(srv.Client(t), keys)
			src := events.Source{Cluster: "c"}
			var msgs []streams.Message
			add := func(p events.Payload, age time.Duration) {
				e := src.New(p)
				e.Time = time.Now().Add(-age)
				msgs = append(msgs, streams.Message{ID: fmt.Sprintf("%d-%d", time.Now().UnixMilli(), len(msgs)), Envelope: e})
			}
			reg := func(h string) events.WorkerRegistered {
				return events.WorkerRegistered{Hostname: h, Role: "web", Labels: map[string]string{"tier": "web"}, Tasks: []string{"command"}, HeartbeatMS: 1000}
			}
			add(reg("healthy"), 0)
			add(events.WorkerHeartbeat{Hostname: "healthy", Seq: 1, HeartbeatMS: 1000, Revision: 3}, 0)
			add(reg("silent"), time.Minute)
			add(reg("draining"), 0)
			add(events.WorkerHeartbeat{Hostname: "draining", Seq: 1, HeartbeatMS: 1000, Draining: true, Running: 2}, 0)
			add(reg("gone"), 0)
			add(events.WorkerLeft{Hostname: "gone", Reason: "stopped"}, 0)
			add(events.WorkerExpected{Hostname: "soon", Role: "db"}, 0)
			add(reg("restarted"), 0)
			add(events.WorkerHeartbeat{Hostname: "restarted", Seq: 9, HeartbeatMS: 1000, Draining: true}, 0)
			add(reg("restarted"), 0)
			if err := store.Apply(ctx, msgs); err != nil {
				t.Fatal(err)
			}
			full, err := store.Workers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			lean, err := store.WorkerStates(ctx)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			summary := func(ws []projections.Worker) []string {
				var out []string
				for _, w := range ws {
					out = append(out, fmt.Sprintf("%s %s %s rev %d running %d", w.Hostname, w.Role, w.State(now), w.Revision, w.Running))
				}
				return out
			}
			if diff := cmp.Diff(summary(full), summary(lean)); diff != "" || len(full) != 6 {
				t.Errorf("WorkerStates differs from Workers (-full +lean):\n%s\n(%d workers)", diff, len(full))
			}
		})
	}
}
