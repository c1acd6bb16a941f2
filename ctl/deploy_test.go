package ctl_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
)

// The seed's lifecycle with the local provider: deploy starts agents to
// match the replicas, scale up and down changes how many run, status shows
// them, destroy stops them and deletes the cluster's keys.
func TestDeployLocalProvider(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "celeroot")
	build := exec.Command("go", "build", "-o", bin, "../cmd/celeroot")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build celeroot: %v\n%s", err, out)
	}
	t.Setenv("CELEROOT_AGENT_EXECUTABLE", bin)
	srv := streamstest.Single(t)
	cluster := streamstest.ClusterName(t)
	dir := t.TempDir()
	doc := filepath.Join(dir, "cluster.yaml")
	os.WriteFile(doc, []byte(`apiVersion: celeroot.io/v1
kind: Cluster
metadata:
  name: `+cluster+`
spec:
  workers:
    - name: web
      role: webserver
      replicas: 2
      selector:
        labels:
          tier: web
`), 0o644)
	state := filepath.Join(dir, "state")
	env := []string{"CELEROOT_REDIS_URL=" + srv.URL, "CELEROOT_CLUSTER=" + cluster}
	t.Cleanup(func() { run(t, env, "cluster", "destroy", "--yes", "--wait", "5s", "--state-dir", state) })

	healthy := func() int {
		out, _, _ := run(t, env, "workers", "list", "-o", "json")
		var ws []struct {
			State string `json:"state"`
		}
		json.Unmarshal([]byte(out), &ws)
		n := 0
		for _, w := range ws {
			if w.State == "healthy" {
				n++
			}
		}
		return n
	}
	if out, errOut, code := run(t, env, "cluster", "init"); code != 0 {
		t.Fatalf("init: %s%s", out, errOut)
	}
	out, errOut, code := run(t, env, "cluster", "deploy", "-f", doc, "--provider", "local", "--state-dir", state)
	if code != 0 || !strings.Contains(out, "started local agent web-1") || !strings.Contains(out, "converged") {
		t.Fatalf("deploy: exit %d\n%s%s", code, out, errOut)
	}
	if n := healthy(); n != 2 {
		t.Fatalf("%d healthy workers after deploy, want 2", n)
	}
	if out, errOut, code = run(t, env, "workers", "scale", "--role", "webserver", "--replicas", "3", "--provider", "local", "--state-dir", state); code != 0 || !strings.Contains(out, "started local agent web-3") {
		t.Fatalf("scale up: exit %d\n%s%s", code, out, errOut)
	}
	waitN := func(want int) {
		deadline := time.Now().Add(20 * time.Second)
		for healthy() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d healthy workers, want %d", healthy(), want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitN(3)
	if out, errOut, code = run(t, env, "workers", "scale", "--role", "webserver", "--replicas", "1", "--provider", "local", "--state-dir", state); code != 0 || strings.Count(out, "stopped local agent") != 2 {
		t.Fatalf("scale down: exit %d\n%s%s", code, out, errOut)
	}
	waitN(1)
	if out, _, _ = run(t, env, "cluster", "status"); !strings.Contains(out, "webserver  1 ") {
		t.Errorf("cluster status after scale down:\n%s", out)
	}
	out, errOut, code = run(t, env, "cluster", "destroy", "--yes", "--wait", "10s", "--state-dir", state)
	if code != 0 || !strings.Contains(out, "destroyed cluster") {
		t.Fatalf("destroy: exit %d\n%s%s", code, out, errOut)
	}
	keys, _ := streams.NewKeys(cluster, 0)
	time.Sleep(500 * time.Millisecond)
	if n, _ := streams.CountKeys(context.Background(), srv.Client(t), keys); n != 0 {
		t.Errorf("%d keys left after destroy", n)
	}
	if m, _ := filepath.Glob(filepath.Join(state, "*.pid")); len(m) != 0 {
		t.Errorf("pid files left: %v", m)
	}
}
