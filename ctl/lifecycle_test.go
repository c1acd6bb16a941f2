package ctl_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
)

// startAgents runs in-process agents until the test ends.
func startAgents(t *testing.T, srv *streamstest.Server, cluster string, hosts ...string) {
	t.Helper()
	rdb := srv.Client(t)
	keys, _ := streams.NewKeys(cluster, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, len(hosts))
	for i, h := range hosts {
		go func() {
			defer func() { done <- struct{}{} }()
			err := agent.Run(ctx, rdb, agent.Config{Keys: keys, Hostname: h, Role: "webserver",
				Heartbeat: 300 * time.Millisecond, Block: 200 * time.Millisecond, Projector: i == 0})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	t.Cleanup(func() {
		cancel()
		for range hosts {
			<-done
		}
	})
	store := projections.NewStore(rdb, keys)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ws, _ := store.Workers(ctx)
		if len(ws) == len(hosts) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("agents did not register")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A task that always fails ends in the dead letters after its attempts;
// redrive runs it again as a new task; an idempotency key returns the first
// run instead of submitting twice; cancel ends a waiting task unrun.
func TestDeadLettersRedriveIdempotency(t *testing.T) {
	srv := streamstest.Single(t)
	cluster := streamstest.ClusterName(t)
	startAgents(t, srv, cluster, "web1")
	env := []string{"CELEROOT_REDIS_URL=" + srv.URL, "CELEROOT_CLUSTER=" + cluster}

	stdout, stderr, code := run(t, env, "task", "run", "command", "--target", "web1", "--max-attempts", "2",
		"--retry-backoff", "10ms", "--wait", "--", "sh", "-c", "echo attempt; exit 5")
	if code != 1 || strings.Count(stdout, "attempt") != 2 || !strings.Contains(stderr, "exit code 5, 2 attempts") {
		t.Fatalf("failing task: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	id := strings.Fields(stdout)[0]
	stdout, _, code = run(t, env, "task", "dead")
	if code != 0 || !strings.Contains(stdout, id) || !strings.Contains(stdout, "failed after 2 attempts") {
		t.Fatalf("task dead: exit %d\n%s", code, stdout)
	}
	stdout, stderr, code = run(t, env, "task", "redrive", id, "--wait")
	if code != 1 || strings.Count(stdout, "attempt") != 2 {
		t.Fatalf("redrive: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	newID := strings.Fields(stdout)[0]
	stdout, _, _ = run(t, env, "task", "status", id)
	if !strings.Contains(stdout, "Redriven as:   "+newID) {
		t.Errorf("status of the redriven task does not link the new one:\n%s", stdout)
	}
	if _, stderr, code = run(t, env, "task", "redrive", newID+"x"); code != 1 || !strings.Contains(stderr, "no task") {
		t.Errorf("redrive of an unknown task: exit %d, %s", code, stderr)
	}

	first, _, code := run(t, env, "task", "run", "command", "--target", "web1", "--idempotency-key", "deploy-42", "--", "true")
	if code != 0 {
		t.Fatalf("first keyed run: exit %d", code)
	}
	again, stderr, code := run(t, env, "task", "run", "command", "--target", "web1", "--idempotency-key", "deploy-42", "--", "true")
	if code != 0 || again != first || !strings.Contains(stderr, "not submitting again") {
		t.Errorf("second keyed run printed %q (want %q), exit %d, stderr %q", again, first, code, stderr)
	}

	// A task for a worker that is not there yet waits; cancel ends it unrun.
	stdout, _, _ = run(t, env, "task", "run", "command", "--queue", "nobody", "--", "echo", "never")
	waiting := strings.TrimSpace(stdout)
	stdout, stderr, code = run(t, env, "task", "cancel", waiting)
	if code != 0 || !strings.Contains(stdout, "cancelled before it ran") {
		t.Fatalf("cancel of a waiting task: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, stderr, code = run(t, env, "task", "cancel", waiting); code != 1 || !strings.Contains(stderr, "already ended") {
		t.Errorf("second cancel: exit %d, %s", code, stderr)
	}
}
