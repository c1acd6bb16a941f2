package ctl_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
)

// mixedTasks is how many tasks TestLongMixedRun submits: a few hundred in
// `make test`, 2,000 with `make mixed` (-mixed-tasks 2000; a flag, since
// the harness clears every CELEROOT_ variable).
var mixedTasks = flag.Int("mixed-tasks", 300, "tasks TestLongMixedRun submits (make mixed: 2000)")

// mixedAgent is an in-process agent with a client of its own, so it can be
// killed: its client is closed under it, and it never gets to say it left.
type mixedAgent struct {
	host   string
	rdb    redis.UniversalClient
	cancel context.CancelFunc
	done   chan error
}

func startMixedAgent(t *testing.T, srv *streamstest.Server, keys streams.Keys, host string, projector bool) *mixedAgent {
	t.Helper()
	cfg := agent.Config{Keys: keys, Hostname: host, Role: "webserver", Heartbeat: 300 * time.Millisecond, Block: 200 * time.Millisecond,
		Concurrency: 8, Projector: projector, ShutdownTimeout: 2 * time.Second, ReclaimIdle: 2 * time.Second, Scheduler: agent.SchedulerNever}
	var rdb redis.UniversalClient
	if srv.Cluster {
		rdb = streams.NewClusterClient(&redis.ClusterOptions{Addrs: srv.Addrs, PoolSize: cfg.PoolSize()})
	} else {
		rdb = redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: cfg.PoolSize()})
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &mixedAgent{host: host, rdb: rdb, cancel: cancel, done: make(chan error, 1)}
	go func() { a.done <- agent.Run(ctx, rdb, cfg) }()
	t.Cleanup(a.stop)
	return a
}

// stop stops the agent the way SIGTERM does.
func (a *mixedAgent) stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	<-a.done
	a.rdb.Close()
	a.cancel = nil
}

// kill cuts the agent off Redis and stops it: no more heartbeats, no
// results, no leaving.
func (a *mixedAgent) kill() {
	a.rdb.Close()
	a.cancel()
	<-a.done
	a.cancel = nil
}

// After a run of three agents with a few hundred tasks (two thousand with
// `make mixed`), some failing, some retried, fan-out jobs, and one agent
// killed in the middle, every status command answers correctly; a rebuild
// yields the same projections; cluster status --at a moment before the
// kill shows the killed worker alive; and after archiving and trimming the
// event store, the audit replay (archive + Redis) is byte for byte what it
// was, and a rebuild from the archive yields the same projections again.
func TestLongMixedRun(t *testing.T) {
	n := *mixedTasks
	if n < 50 {
		t.Fatalf("-mixed-tasks %d: give at least 50", n)
	}
	for _, srv := range streamstest.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			ctx := context.Background()
			cluster := streamstest.ClusterName(t)
			env := []string{"CELEROOT_REDIS_URL=" + srv.URL, "CELEROOT_CLUSTER=" + cluster}
			rdb := srv.Client(t)
			dir := t.TempDir()
			cfg := filepath.Join(dir, "cluster.yaml")
			if err := os.WriteFile(cfg, []byte(fmt.Sprintf("apiVersion: celeroot.io/v1\nkind: Cluster\nmetadata:\n  name: %s\nspec:\n  workers:\n    - name: web\n      role: webserver\n      replicas: 3\n", cluster)), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, errOut, code := run(t, env, "config", "apply", "-f", cfg); code != 0 {
				t.Fatalf("config apply: %s", errOut)
			}
			keys, err := streams.LoadKeys(ctx, rdb, cluster)
			if err != nil {
				t.Fatal(err)
			}
			a1 := startMixedAgent(t, srv, keys, "a1", true)
			a2 := startMixedAgent(t, srv, keys, "a2", true)
			a3 := startMixedAgent(t, srv, keys, "a3", false)
			waitFor(t, 20*time.Second, "three healthy workers", func() bool {
				ws, _ := projections.NewStore(rdb, keys).Workers(ctx)
				healthy := 0
				for _, w := range ws {
					if w.State(time.Now()) == projections.WorkerHealthy {
						healthy++
					}
				}
				return healthy == 3
			})

			log := streams.NewLog(rdb, keys)
			src := events.Source{Cluster: cluster, Actor: "test"}
			want := map[string]string{}   // task id -> outcome
			retried := map[string]bool{}  // tasks that fail once, then succeed
			jobs := map[string][]string{} // job -> tasks
			submit := func(p events.TaskSubmitted) {
				t.Helper()
				p.Task, p.Deadline = "command", time.Now().Add(time.Hour)
				if p.Route == "" {
					p.Route, p.Target = events.RouteQueue, "webserver"
				}
				if _, err := log.Submit(ctx, src.New(p, events.WithCorrelation(p.TaskID))); err != nil {
					t.Fatal(err)
				}
			}
			id := func(i int) string { return fmt.Sprintf("T%05d", i) }
			i := 0
			batch := func(count int) {
				for end := i + count; i < end; i++ {
					tid := id(i)
					switch k := i % 10; {
					case k < 6:
						submit(events.TaskSubmitted{TaskID: tid, Argv: []string{"true"}})
						want[tid] = "succeeded"
					case k < 8:
						submit(events.TaskSubmitted{TaskID: tid, Argv: []string{"false"}})
						want[tid] = "failed"
					case k == 8:
						marker := filepath.Join(dir, tid)
						submit(events.TaskSubmitted{TaskID: tid, Argv: []string{"sh", "-c", "[ -e " + marker + " ] || { : > " + marker + "; exit 1; }"},
							MaxAttempts: 2, BackoffMS: 10})
						want[tid], retried[tid] = "succeeded", true
					default:
						job := "J" + tid
						for _, h := range []string{"a1", "a2"} {
							jt := tid + h
							submit(events.TaskSubmitted{TaskID: jt, JobID: job, Argv: []string{"true"}, Route: events.RouteWorker, Target: h})
							want[jt] = "succeeded"
							jobs[job] = append(jobs[job], jt)
						}
					}
				}
			}
			batch(n / 3)
			// Long tasks, so the killed agent is in the middle of some.
			for k := 0; k < 24; k++ {
				tid := fmt.Sprintf("S%03d", k)
				submit(events.TaskSubmitted{TaskID: tid, Argv: []string{"sleep", "1"}})
				want[tid] = "succeeded"
			}
			waitFor(t, 30*time.Second, "a3 running long tasks", func() bool {
				w, err := projections.NewStore(rdb, keys).Worker(ctx, "a3")
				return err == nil && w.Running > 0
			})
			mid := time.Now().UTC()
			time.Sleep(10 * time.Millisecond)
			a3.kill()
			batch(n - n/3)

			total := len(want)
			waitFor(t, 10*time.Minute, fmt.Sprintf("all %d tasks ended", total), func() bool {
				r, err := projections.CheckInvariants(ctx, projections.NewHistory(rdb, keys, nil), projections.Retention{}, time.Now())
				return err == nil && r.Tasks == total && r.Open == 0
			})

			// task list: every task, each with its outcome.
			out, errOut, code := run(t, env, "task", "list", "--limit", "100000", "-o", "json")
			if code != 0 {
				t.Fatalf("task list: %s", errOut)
			}
			var list []projections.Task
			if err := json.Unmarshal([]byte(out), &list); err != nil {
				t.Fatal(err)
			}
			if len(list) != total {
				t.Fatalf("task list shows %d tasks, want %d", len(list), total)
			}
			byState := map[string]int{}
			attempts, reclaimed := 0, 0
			for _, tk := range list {
				byState[tk.State]++
				attempts += len(tk.Attempts)
				if tk.State != want[tk.ID] {
					t.Errorf("task %s is %s, want %s", tk.ID, tk.State, want[tk.ID])
				}
				if retried[tk.ID] && (len(tk.Attempts) < 2 || !tk.Attempts[0].WillRetry || tk.Attempts[len(tk.Attempts)-1].Outcome != events.Succeeded) {
					t.Errorf("retried task %s: attempts %+v, want a failed one that is retried, then success", tk.ID, tk.Attempts)
				}
				for _, at := range tk.Attempts[:max(len(tk.Attempts)-1, 0)] {
					if at.Worker == "a3" && at.FinishedAt.IsZero() && tk.Worker != "a3" {
						reclaimed++
					}
				}
			}
			wantStates := map[string]int{}
			for _, s := range want {
				wantStates[s]++
			}
			if diff := cmp.Diff(wantStates, byState); diff != "" {
				t.Errorf("tasks by state (-want +got):\n%s", diff)
			}
			t.Logf("%d tasks (%d retried, %d in %d jobs): %v; %d attempts; %d taken over from the killed worker",
				total, len(retried), 2*len(jobs), len(jobs), byState, attempts, reclaimed)
			if attempts < total+len(retried) {
				t.Errorf("%d attempts for %d tasks of which %d retried", attempts, total, len(retried))
			}
			if reclaimed == 0 {
				t.Errorf("no task that the killed agent was running was taken over by another worker")
			}
			for state, count := range wantStates {
				out, _, _ := run(t, env, "task", "list", "--state", state, "--limit", "100000", "-o", "json")
				var l []projections.Task
				if err := json.Unmarshal([]byte(out), &l); err != nil || len(l) != count {
					t.Errorf("task list --state %s: %d tasks (%v), want %d", state, len(l), err, count)
				}
			}
			// A job's status aggregates its tasks.
			for job, tasks := range jobs {
				out, errOut, code := run(t, env, "task", "status", job, "-o", "json")
				var v struct {
					Counts map[string]int `json:"counts"`
				}
				if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Counts["succeeded"] != len(tasks) {
					t.Errorf("task status %s: exit %d, %s%s; want %d succeeded", job, code, out, errOut, len(tasks))
				}
				break
			}
			// workers list and cluster status: the killed worker unhealthy.
			states := func(args ...string) map[string]string {
				out, errOut, code := run(t, env, args...)
				if code != 0 {
					t.Fatalf("%v: %s", args, errOut)
				}
				var ws []struct{ Hostname, State string }
				if err := json.Unmarshal([]byte(out), &ws); err != nil {
					t.Fatal(err)
				}
				m := map[string]string{}
				for _, w := range ws {
					m[w.Hostname] = w.State
				}
				return m
			}
			if got, want := states("workers", "list", "-o", "json"), map[string]string{"a1": "healthy", "a2": "healthy", "a3": "unhealthy"}; !cmp.Equal(got, want) {
				t.Errorf("workers list = %v, want %v", got, want)
			}
			if got, want := states("workers", "list", "-o", "json", "--at", mid.Format(time.RFC3339Nano)), map[string]string{"a1": "healthy", "a2": "healthy", "a3": "healthy"}; !cmp.Equal(got, want) {
				t.Errorf("workers list --at %s = %v, want %v", mid, got, want)
			}
			role := func(args ...string) map[string]int {
				out, errOut, code := run(t, env, args...)
				if code != 0 {
					t.Fatalf("%v: %s", args, errOut)
				}
				var v struct {
					Roles []struct {
						States  map[string]int `json:"states"`
						Desired int            `json:"desired"`
					} `json:"roles"`
				}
				if err := json.Unmarshal([]byte(out), &v); err != nil || len(v.Roles) != 1 {
					t.Fatalf("%v: %v\n%s", args, err, out)
				}
				v.Roles[0].States["desired"] = v.Roles[0].Desired
				return v.Roles[0].States
			}
			if got := role("cluster", "status", "-o", "json"); got["healthy"] != 2 || got["unhealthy"] != 1 || got["desired"] != 3 {
				t.Errorf("cluster status: %v, want 2 healthy and 1 unhealthy of 3", got)
			}
			if got := role("cluster", "status", "-o", "json", "--at", mid.Format(time.RFC3339Nano)); got["healthy"] != 3 || got["unhealthy"] != 0 {
				t.Errorf("cluster status --at before the kill: %v, want 3 healthy", got)
			}
			out, errOut, code = run(t, env, "events", "verify")
			if code != 0 || !strings.Contains(out, fmt.Sprintf("tasks: %d (%d failed, %d succeeded; 0 open)", total, wantStates["failed"], wantStates["succeeded"])) {
				t.Errorf("events verify: exit %d\n%s%s", code, out, errOut)
			}

			// Stopped, the projections settle (a projector elsewhere applies
			// the heartbeats the last agents sent while draining, after their
			// own projectors had stopped); a rebuild yields the same.
			a1.stop()
			a2.stop()
			settle(t, rdb, keys)
			k0, err := projections.NewStore(rdb, keys).Keys(ctx)
			if err != nil {
				t.Fatal(err)
			}
			before := allRecords(t, rdb, k0)
			if out, errOut, code := run(t, env, "projections", "verify"); code != 0 {
				t.Fatalf("projections verify after the run: exit %d\n%s%s", code, out, errOut)
			}
			out, errOut, code = run(t, env, "projections", "rebuild")
			if code != 0 || !strings.Contains(out, "as projections v1; switched from v0") {
				t.Fatalf("projections rebuild: exit %d\n%s%s", code, out, errOut)
			}
			if diff := cmp.Diff(before, allRecords(t, rdb, keys.WithProjections(1))); diff != "" {
				t.Errorf("rebuilt projections differ from the incremental ones (-incremental +rebuilt):\n%s", diff)
			}
			if out, errOut, code := run(t, env, "projections", "verify"); code != 0 {
				t.Errorf("projections verify after the rebuild: exit %d\n%s%s", code, out, errOut)
			}

			// Archive, trim the event store, and replay: the same lines.
			audit, errOut, code := run(t, env, "events", "replay", "-o", "jsonl")
			if code != 0 || strings.Count(audit, "\n") < total {
				t.Fatalf("events replay: exit %d, %d lines, %s", code, strings.Count(audit, "\n"), errOut)
			}
			archive := filepath.Join(dir, "archive")
			if out, errOut, code := run(t, env, "events", "archive", "--dir", archive); code != 0 || !strings.Contains(out, "events written") {
				t.Fatalf("events archive: exit %d\n%s%s", code, out, errOut)
			}
			j := projections.NewJanitor(rdb, keys, projections.JanitorOptions{Owner: "test", Retention: func() projections.Retention {
				return projections.Retention{Events: time.Nanosecond, Tasks: 1000 * time.Hour, Workers: 1000 * time.Hour}
			}})
			rep, err := j.Pass(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Removed[projections.KindEvents] == 0 {
				t.Fatalf("the retention pass trimmed no archived event: %+v", rep.Trims)
			}
			_, errOut, code = run(t, env, "events", "replay", "-o", "jsonl")
			if code != 1 || !strings.Contains(errOut, "--archive") {
				t.Errorf("replay of a trimmed history without the archive: exit %d, %s", code, errOut)
			}
			again, errOut, code := run(t, env, "events", "replay", "-o", "jsonl", "--archive", archive)
			if code != 0 || again != audit {
				t.Errorf("replay from the archive and Redis: exit %d, %d bytes against %d before the trim (%s)", code, len(again), len(audit), errOut)
			}
			if out, errOut, code := run(t, env, "events", "verify", "--archive", archive); code != 0 {
				t.Errorf("events verify --archive: exit %d\n%s%s", code, out, errOut)
			}
			out, errOut, code = run(t, env, "projections", "rebuild", "--archive", archive)
			if code != 0 || !strings.Contains(out, "as projections v2") {
				t.Fatalf("projections rebuild --archive: exit %d\n%s%s", code, out, errOut)
			}
			if diff := cmp.Diff(before, allRecords(t, rdb, keys.WithProjections(2))); diff != "" {
				t.Errorf("projections rebuilt from the archive differ (-incremental +rebuilt):\n%s", diff)
			}
			if got := role("cluster", "status", "-o", "json", "--at", mid.Format(time.RFC3339Nano), "--archive", archive); got["healthy"] != 3 {
				t.Errorf("cluster status --at from the archive: %v, want 3 healthy", got)
			}
		})
	}
}

// allRecords reads every record of a projection namespace.
func allRecords(t *testing.T, rdb redis.UniversalClient, k streams.Keys) projections.Records {
	t.Helper()
	recs, err := projections.NewStoreAt(rdb, k).Records(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// settle runs a projector until it has applied every event there is.
func settle(t *testing.T, rdb redis.UniversalClient, keys streams.Keys) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- projections.NewProjector(rdb, keys, projections.ProjectorOptions{Consumer: "settle", Block: 100 * time.Millisecond, ReclaimIdle: 500 * time.Millisecond}).Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	waitFor(t, time.Minute, "the projector to apply every event", func() bool {
		k, err := projections.NewStore(rdb, keys).Keys(ctx)
		if err != nil {
			return false
		}
		for n := range keys.EventShards() {
			for _, s := range []string{keys.EventShard(n), keys.HeartbeatShard(n)} {
				st, err := streams.Stat(ctx, rdb, s, k.ProjectorGroup())
				if err != nil || st.Lag != 0 || st.Pending != 0 {
					return false
				}
			}
		}
		return true
	})
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
