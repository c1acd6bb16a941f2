package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) {
	if os.Getenv("CELEROOT_TEST_AGENT") != "" {
		os.Exit(agentProcess())
	}
	os.Exit(streamstest.Main(m))
}

type fixture struct {
	t     *testing.T
	rdb   redis.UniversalClient
	keys  streams.Keys
	log   *streams.Log
	store *projections.Store
}

func each(t *testing.T, f func(t *testing.T, fx *fixture)) {
	for _, srv := range serversFor(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			f(t, newFixture(t, srv))
		})
	}
}

func serversFor(t *testing.T) []*streamstest.Server { return streamstest.Servers(t) }

// newFixture gives a test its own cluster namespace on srv.
func newFixture(t *testing.T, srv *streamstest.Server) *fixture {
	keys, err := streams.NewKeys(streamstest.ClusterName(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	rdb := srv.Client(t)
	return &fixture{t: t, rdb: rdb, keys: keys, log: streams.NewLog(rdb, keys), store: projections.NewStore(rdb, keys)}
}

// start runs an agent until the test ends (or stop is called) and waits
// until its registration is projected.
func (fx *fixture) start(host, role string, mod func(*agent.Config)) (stop func()) {
	fx.t.Helper()
	cfg := agent.Config{Keys: fx.keys, Hostname: host, Role: role, Heartbeat: 200 * time.Millisecond,
		Block: 200 * time.Millisecond, Projector: true, ShutdownTimeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx, fx.rdb, cfg) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				fx.t.Errorf("agent %s: %v", host, err)
			}
		case <-time.After(15 * time.Second):
			fx.t.Errorf("agent %s did not stop", host)
		}
	}
	fx.t.Cleanup(stop)
	fx.waitFor("worker "+host+" registered", func() bool {
		_, err := fx.store.Worker(context.Background(), host)
		return err == nil
	})
	return stop
}

func (fx *fixture) waitFor(what string, cond func() bool) {
	fx.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			fx.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (fx *fixture) submit(route events.Route, target string, timeout time.Duration, argv ...string) string {
	fx.t.Helper()
	id := ulid.Make().String()
	e := events.Source{Cluster: fx.keys.Cluster, Actor: "test"}.New(events.TaskSubmitted{
		TaskID: id, Task: "command", Argv: argv, Route: route, Target: target, TimeoutMS: timeout.Milliseconds()})
	if _, err := fx.log.Submit(context.Background(), e); err != nil {
		fx.t.Fatal(err)
	}
	return id
}

func (fx *fixture) wait(id string) projections.Task {
	fx.t.Helper()
	var task projections.Task
	fx.waitFor("task "+id+" to finish", func() bool {
		var err error
		task, err = fx.store.Task(context.Background(), id)
		return err == nil && task.Done()
	})
	return task
}

// output returns the task's log as "stream:data" lines, concatenated.
func (fx *fixture) output(id string) (stdout, stderr string, truncated bool) {
	fx.t.Helper()
	var out, errs strings.Builder
	err := streams.Replay(context.Background(), fx.rdb, fx.keys.TaskLog(id), "-", "+", 0, func(e streams.Entry) error {
		if e.Err != nil {
			return e.Err
		}
		l := e.Envelope.Payload.(events.TaskLog)
		if l.Stream == "stdout" {
			out.WriteString(l.Data)
		} else {
			errs.WriteString(l.Data)
		}
		truncated = truncated || l.Truncated
		return nil
	})
	if err != nil {
		fx.t.Fatal(err)
	}
	return out.String(), errs.String(), truncated
}

func TestCommandTask(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		fx.start("web1", "webserver", nil)
		id := fx.submit(events.RouteWorker, "web1", time.Minute, "sh", "-c", `echo "hello $1"; echo oops >&2; exit 3`, "sh", "world; rm -rf /")
		task := fx.wait(id)
		if task.Outcome != events.Failed || task.ExitCode != 3 || task.Worker != "web1" || len(task.Attempts) != 1 {
			t.Errorf("task = %+v, want failed with exit code 3 on web1 after one attempt", task)
		}
		stdout, stderr, _ := fx.output(id)
		// The parameter reached the command as one literal argument.
		if stdout != "hello world; rm -rf /\n" || stderr != "oops\n" {
			t.Errorf("output = %q / %q", stdout, stderr)
		}
	})
}

func TestQueueTaskRunsOnce(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		fx.start("web1", "webserver", nil)
		fx.start("web2", "webserver", nil)
		var ids []string
		for range 20 {
			ids = append(ids, fx.submit(events.RouteQueue, "webserver", time.Minute, "true"))
		}
		workers := map[string]int{}
		for _, id := range ids {
			task := fx.wait(id)
			if task.Outcome != events.Succeeded || len(task.Attempts) != 1 {
				t.Errorf("task %s = %s with %d attempts, want succeeded once", id, task.Outcome, len(task.Attempts))
			}
			workers[task.Worker]++
		}
		if workers["web1"]+workers["web2"] != len(ids) {
			t.Errorf("tasks by worker = %v, want all %d on web1 or web2", workers, len(ids))
		}
	})
}

func TestMissingCommand(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		fx.start("db1", "database", nil)
		id := fx.submit(events.RouteWorker, "db1", time.Minute, "celeroot-no-such-command")
		task := fx.wait(id)
		if task.Outcome != events.Failed || task.ExitCode != agent.ExitNotFound || !strings.Contains(task.Error, "not found") {
			t.Errorf("task = %s exit %d error %q; want failed, 127, not found", task.Outcome, task.ExitCode, task.Error)
		}
		if _, stderr, _ := fx.output(id); !strings.Contains(stderr, `cannot start "celeroot-no-such-command"`) {
			t.Errorf("stderr = %q, want the reason", stderr)
		}
	})
}

func TestTimeoutKillsProcessTree(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		fx.start("web1", "webserver", nil)
		// A shell starts a background grandchild and a foreground child;
		// the odd durations identify them in the process table.
		tag := fmt.Sprintf("%d", time.Now().UnixNano()%1000000000)
		script := fmt.Sprintf("sleep 30.%s & sleep 31.%s; wait", tag, tag)
		id := fx.submit(events.RouteWorker, "web1", 500*time.Millisecond, "sh", "-c", script)
		fx.waitFor("both sleeps running", func() bool {
			out, _ := exec.Command("pgrep", "-f", `^sleep 3[01]\.`+tag+"$").Output()
			return len(strings.Fields(string(out))) == 2
		})
		task := fx.wait(id)
		if task.Outcome != events.TimedOut || !strings.Contains(task.Error, "timed out") {
			t.Errorf("task = %s (%s), want timed_out", task.Outcome, task.Error)
		}
		if d := task.FinishedAt.Sub(task.Attempts[0].StartedAt); d > 5*time.Second {
			t.Errorf("task ended %v after it started, want about 0.5s", d)
		}
		if out, err := exec.Command("pgrep", "-af", `^sleep 3[01]\.`+tag+"$").Output(); err == nil {
			t.Errorf("processes survive the timeout:\n%s", out)
		}
	})
}

func TestMalformedDispatchEntryIsDeadLettered(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		fx.start("web1", "webserver", nil)
		ctx := context.Background()
		bad := fx.rdb.XAdd(ctx, &redis.XAddArgs{Stream: fx.keys.WorkerDispatch("web1"), Values: []any{"hello", "world"}}).Val()
		wrongType := events.Source{Cluster: fx.keys.Cluster}.New(events.WorkerLeft{Hostname: "x"})
		if _, err := fx.log.Append(ctx, fx.keys.WorkerDispatch("web1"), wrongType, 0); err != nil {
			t.Fatal(err)
		}
		id := fx.submit(events.RouteWorker, "web1", time.Minute, "echo", "still alive")
		if task := fx.wait(id); task.Outcome != events.Succeeded {
			t.Fatalf("task after a malformed entry = %s, want succeeded", task.Outcome)
		}
		dead, err := streams.DeadLetters(ctx, fx.rdb, fx.keys.DeadLetters(), 10)
		if err != nil {
			t.Fatal(err)
		}
		reasons := map[string]string{}
		for _, d := range dead {
			reasons[d.EntryID] = d.Reason
		}
		if !strings.Contains(reasons[bad], "missing") {
			t.Errorf("dead letter of %s: reason %q, want a decode error", bad, reasons[bad])
		}
		if len(dead) != 2 {
			t.Errorf("dead letters = %d, want 2 (undecodable, wrong type): %v", len(dead), reasons)
		}
		if p := fx.rdb.XPending(ctx, fx.keys.WorkerDispatch("web1"), streams.GroupAgents).Val(); p.Count != 0 {
			t.Errorf("pending entries = %d, want 0", p.Count)
		}
	})
}

func TestLogLimit(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		fx.start("web1", "webserver", func(c *agent.Config) { c.LogLimit = 1000 })
		id := fx.submit(events.RouteWorker, "web1", time.Minute, "sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a")
		if task := fx.wait(id); task.Outcome != events.Succeeded {
			t.Fatalf("task = %s, want succeeded", task.Outcome)
		}
		stdout, stderr, truncated := fx.output(id)
		if len(stdout) != 1000 || !truncated || !strings.Contains(stderr, "output truncated") {
			t.Errorf("kept %d bytes, truncated %v, stderr %q; want 1000 bytes and the marker", len(stdout), truncated, stderr)
		}
	})
}

func TestDrainFinishesRunningTask(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		stop := fx.start("web1", "webserver", nil)
		fx.start("obs", "observer", nil) // keeps projecting after web1 left
		id := fx.submit(events.RouteWorker, "web1", time.Minute, "sh", "-c", "sleep 1; echo done")
		fx.waitFor("task running", func() bool {
			task, err := fx.store.Task(context.Background(), id)
			return err == nil && task.State == projections.TaskRunning
		})
		stop() // returns once the task has finished and web1 has left
		task := fx.wait(id)
		if task.Outcome != events.Succeeded {
			t.Errorf("task after drain = %s (%s), want succeeded", task.Outcome, task.Error)
		}
		fx.waitFor("web1 left", func() bool {
			w, err := fx.store.Worker(context.Background(), "web1")
			return err == nil && w.State(time.Now()) == projections.WorkerLeft
		})
	})
}

func TestInvalidConfig(t *testing.T) {
	err := agent.Run(context.Background(), nil, agent.Config{Keys: streams.Keys{Cluster: "Bad Name"}, Hostname: "a{b}", Concurrency: -1})
	if err == nil {
		t.Fatal("Run accepted an invalid config")
	}
	for _, want := range []string{"cluster name", "hostname", "role", "concurrency"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if errors.Is(err, context.Canceled) {
		t.Error("unexpected cancellation")
	}
}

// The worker's own stream and its role's queue are read side by side: with
// one slot, a blocking read of one does not hold back the other.
func TestDispatchersDoNotStarve(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		fx.start("web1", "webserver", func(c *agent.Config) { c.Concurrency = 1; c.Block = 2 * time.Second })
		for i := range 4 {
			route, target := events.RouteWorker, "web1"
			if i%2 == 1 {
				route, target = events.RouteQueue, "webserver"
			}
			id := fx.submit(route, target, time.Minute, "true")
			task := fx.wait(id)
			if wait := task.Attempts[0].StartedAt.Sub(task.SubmittedAt); wait > time.Second {
				t.Errorf("task %d (%s) waited %v to start on an idle worker; the other stream's blocking read held it back", i, route, wait)
			}
		}
	})
}
