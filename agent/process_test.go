package agent_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
)

// agentProcess runs an agent as this process (the test binary re-executed
// with CELEROOT_TEST_AGENT set), so tests can kill -9 or SIGSTOP it.
func agentProcess() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg, err := streams.ParseURL(os.Getenv("CELEROOT_TEST_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rdb, err := streams.Connect(ctx, cfg, 32, 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer rdb.Close()
	keys, err := streams.NewKeys(os.Getenv("CELEROOT_TEST_CLUSTER"), 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	err = agent.Run(ctx, rdb, agent.Config{Keys: keys, Hostname: os.Getenv("CELEROOT_TEST_AGENT"), Role: "webserver",
		Heartbeat: 200 * time.Millisecond, Block: 200 * time.Millisecond, ReclaimIdle: 600 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// spawn starts an agent process named host; it is killed when the test ends.
func (fx *fixture) spawn(url, host string) *exec.Cmd {
	fx.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CELEROOT_TEST_AGENT="+host, "CELEROOT_TEST_URL="+url, "CELEROOT_TEST_CLUSTER="+fx.keys.Cluster)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fx.t.Fatal(err)
	}
	fx.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	fx.waitFor(host+" registered", func() bool {
		_, err := fx.store.Worker(context.Background(), host)
		return err == nil
	})
	return cmd
}

func (fx *fixture) running(id string) projections.Task {
	fx.t.Helper()
	var task projections.Task
	fx.waitFor("task "+id+" running", func() bool {
		var err error
		task, err = fx.store.Task(context.Background(), id)
		return err == nil && task.State == projections.TaskRunning
	})
	return task
}

func TestKilledAgentsQueueTaskFinishesElsewhere(t *testing.T) {
	for _, srv := range serversFor(t) {
		t.Run(srv.Name, func(t *testing.T) {
			fx := newFixture(t, srv)
			fx.start("obs", "observer", nil) // projects while agents die
			web1 := fx.spawn(srv.URL, "web1")
			marker := t.TempDir() + "/ran"
			id := fx.submit(events.RouteQueue, "webserver", time.Minute, "sh", "-c", `echo x >> "$0"; sleep 2; echo done`, marker)
			task := fx.running(id)
			if task.Worker != "web1" {
				t.Fatalf("task started on %s, want web1 (the only worker of the role)", task.Worker)
			}
			if err := web1.Process.Kill(); err != nil { // kill -9 mid-task
				t.Fatal(err)
			}
			fx.spawn(srv.URL, "web2")
			task = fx.wait(id)
			if task.Outcome != events.Succeeded || task.Worker != "web2" {
				t.Fatalf("task = %s on %s, want succeeded on web2", task.Outcome, task.Worker)
			}
			if len(task.Attempts) != 2 || task.Attempts[0].Worker != "web1" || !task.Attempts[0].FinishedAt.IsZero() {
				t.Errorf("attempts = %+v, want web1's (no end) then web2's", task.Attempts)
			}
			outcomes := 0
			err := streams.Replay(context.Background(), fx.rdb, fx.keys.EventsFor(id), "-", "+", 0, func(e streams.Entry) error {
				if f, ok := e.Envelope.Payload.(events.TaskFinished); ok && f.TaskID == id && !f.Stale {
					outcomes++
				}
				return nil
			})
			if err != nil || outcomes != 1 {
				t.Errorf("recorded outcomes = %d, %v; want exactly 1", outcomes, err)
			}
		})
	}
}

func TestPausedAgentsLateResultIsStale(t *testing.T) {
	for _, srv := range serversFor(t) {
		t.Run(srv.Name, func(t *testing.T) {
			fx := newFixture(t, srv)
			fx.start("obs", "observer", nil)
			web1 := fx.spawn(srv.URL, "web1")
			id := fx.submit(events.RouteQueue, "webserver", time.Minute, "sh", "-c", "sleep 1; echo from-$0", "x")
			fx.running(id)
			if err := web1.Process.Signal(syscall.SIGSTOP); err != nil { // frozen past the idle bound
				t.Fatal(err)
			}
			fx.spawn(srv.URL, "web2")
			task := fx.wait(id)
			if task.Outcome != events.Succeeded || task.Worker != "web2" {
				t.Fatalf("task = %s on %s, want succeeded on web2", task.Outcome, task.Worker)
			}
			if err := web1.Process.Signal(syscall.SIGCONT); err != nil { // wakes up, reports late
				t.Fatal(err)
			}
			fx.waitFor("web1's late result", func() bool {
				task, _ = fx.store.Task(context.Background(), id)
				return len(task.Attempts) == 2 && !task.Attempts[0].FinishedAt.IsZero()
			})
			if !task.Attempts[0].Stale || task.Outcome != events.Succeeded || task.Worker != "web2" {
				t.Errorf("after the late result: attempts %+v, outcome %s on %s; want web1's stale, web2's standing",
					task.Attempts, task.Outcome, task.Worker)
			}
		})
	}
}
