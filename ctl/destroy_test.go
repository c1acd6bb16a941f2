package ctl_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/ctl"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
)

// init is idempotent; destroy asks first, drains the workers, and deletes
// every key of its cluster and none of another's in the same Redis.
func TestClusterInitDestroy(t *testing.T) {
	for _, srv := range streamstest.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			ctx := context.Background()
			rdb := srv.Client(t)
			a, b := streamstest.ClusterName(t), streamstest.ClusterName(t)
			envA := []string{"CELEROOT_REDIS_URL=" + srv.URL, "CELEROOT_CLUSTER=" + a}
			envB := []string{"CELEROOT_REDIS_URL=" + srv.URL, "CELEROOT_CLUSTER=" + b}
			out, errOut, code := run(t, envA, "cluster", "init")
			if code != 0 || !strings.Contains(out, "initialized cluster "+a) {
				t.Fatalf("init: exit %d\n%s%s", code, out, errOut)
			}
			if out, _, code = run(t, envA, "cluster", "init"); code != 0 || !strings.Contains(out, "already initialized") {
				t.Fatalf("second init: exit %d\n%s", code, out)
			}
			// Cluster a has a worker and tasks; b has its own keys.
			keysA, _ := streams.NewKeys(a, 0)
			actx, stop := context.WithCancel(ctx)
			defer stop()
			done := make(chan error, 1)
			go func() {
				done <- agent.Run(actx, rdb, agent.Config{Keys: keysA, Hostname: "web1", Role: "webserver",
					Heartbeat: 300 * time.Millisecond, Block: 200 * time.Millisecond, Projector: true})
			}()
			time.Sleep(500 * time.Millisecond)
			if _, errOut, code = run(t, envA, "task", "run", "command", "--target", "web1", "--wait", "--", "true"); code != 0 {
				t.Fatalf("task in a: %s", errOut)
			}
			run(t, envB, "cluster", "init")
			keysB, _ := streams.NewKeys(b, 0)
			beforeB, err := streams.CountKeys(ctx, rdb, keysB)
			if err != nil || beforeB == 0 {
				t.Fatalf("cluster b keys = %d, %v", beforeB, err)
			}
			// Not confirmed: nothing deleted.
			t.Setenv("CELEROOT_CLUSTER", a)
			var o, e bytes.Buffer
			if code := ctl.Run(ctx, []string{"celeroot", "cluster", "destroy"}, strings.NewReader("nope\n"), &o, &e); code != 1 || !strings.Contains(e.String(), "not confirmed") {
				t.Fatalf("unconfirmed destroy: exit %d\n%s%s", code, o.String(), e.String())
			}
			if n, _ := streams.CountKeys(ctx, rdb, keysA); n == 0 {
				t.Fatal("an unconfirmed destroy deleted keys")
			}
			out, errOut, code = run(t, envA, "cluster", "destroy", "--yes", "--wait", "10s")
			if code != 0 || !strings.Contains(out, "asked 1 workers to drain") || !strings.Contains(out, "destroyed cluster "+a) {
				t.Fatalf("destroy: exit %d\n%s%s", code, out, errOut)
			}
			select {
			case <-done: // the agent drained and left
			case <-time.After(10 * time.Second):
				t.Error("the agent did not stop after destroy")
			}
			if n, _ := streams.CountKeys(ctx, rdb, keysA); n != 0 {
				t.Errorf("cluster a has %d keys after destroy, want 0", n)
			}
			if n, _ := streams.CountKeys(ctx, rdb, keysB); n != beforeB {
				t.Errorf("cluster b has %d keys after a's destroy, want %d", n, beforeB)
			}
		})
	}
}

// workers add lists an expected worker and prints its join command;
// remove drains it, expires its queued tasks and hides it; scale records
// the desired replicas as a new config revision.
func TestWorkersAddRemoveScale(t *testing.T) {
	srv := streamstest.Single(t)
	cluster := streamstest.ClusterName(t)
	startAgents(t, srv, cluster, "web1")
	env := []string{"CELEROOT_REDIS_URL=" + srv.URL, "CELEROOT_CLUSTER=" + cluster}
	out, errOut, code := run(t, env, "workers", "add", "--hostname", "web3", "--role", "webserver", "--label", "tier=web")
	if code != 0 || !strings.Contains(out, "celeroot agent --redis "+srv.URL+" --cluster "+cluster+" --hostname web3 --role webserver --label tier=web") {
		t.Fatalf("workers add: exit %d\n%s%s", code, out, errOut)
	}
	if out, _, _ = run(t, env, "workers", "list"); !strings.Contains(out, "web3") || !strings.Contains(out, "expected") {
		t.Fatalf("list after add:\n%s", out)
	}
	out, _, _ = run(t, env, "task", "run", "command", "--target", "web3", "--", "true")
	id := strings.TrimSpace(out)
	if out, errOut, code = run(t, env, "workers", "remove", "web3"); code != 0 || !strings.Contains(out, "1 queued tasks expired") {
		t.Fatalf("workers remove: exit %d\n%s%s", code, out, errOut)
	}
	// The expiry is an event; status shows it once the projector has
	// applied it.
	waitFor(t, 10*time.Second, "task status to show the expiry", func() bool {
		out, _, _ = run(t, env, "task", "status", id)
		return strings.Contains(out, "State:      expired")
	})
	if !strings.Contains(out, "State:      expired") || !strings.Contains(out, "worker web3 was removed") {
		t.Errorf("task of the removed worker:\n%s", out)
	}
	if out, _, _ = run(t, env, "workers", "list"); strings.Contains(out, "web3") {
		t.Errorf("removed worker still listed:\n%s", out)
	}
	if out, _, _ = run(t, env, "workers", "list", "--all"); !strings.Contains(out, "web3") {
		t.Errorf("--all does not list the removed worker:\n%s", out)
	}
	if _, errOut, code = run(t, env, "workers", "scale", "--role", "webserver", "--replicas", "3"); code != 1 || !strings.Contains(errOut, "no applied config") {
		t.Errorf("scale without config: exit %d %s", code, errOut)
	}
	set := strings.NewReader(`apiVersion: celeroot.io/v1
kind: Cluster
metadata: {name: ` + cluster + `}
spec:
  workers:
    - {name: webservers, role: webserver, replicas: 1, selector: {labels: {tier: web}}}
`)
	var o, e bytes.Buffer
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	if code := ctl.Run(context.Background(), []string{"celeroot", "config", "apply", "-f", "-"}, set, &o, &e); code != 0 {
		t.Fatalf("apply: %s%s", o.String(), e.String())
	}
	if out, errOut, code = run(t, env, "workers", "scale", "--role", "webserver", "--replicas", "3"); code != 0 || !strings.Contains(out, "replicas: 1 -> 3") {
		t.Fatalf("scale: exit %d\n%s%s", code, out, errOut)
	}
	if out, _, _ = run(t, env, "config", "history"); !strings.Contains(out, "scale webservers (role webserver) to 3") {
		t.Errorf("history after scale:\n%s", out)
	}
}
