package ctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/ctl"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
)

// run runs the CLI in-process and returns stdout, stderr and the exit code.
func run(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	code := ctl.Run(context.Background(), append([]string{"celeroot"}, args...), strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

// runNoEnv runs the CLI in-process with the environment as it is; safe to
// call from several goroutines.
func runNoEnv(args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := ctl.Run(context.Background(), append([]string{"celeroot"}, args...), strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

// Fan-out to all and to a selector: one task per matching worker, and the
// job's status aggregates them.
func TestFanOut(t *testing.T) {
	for _, srv := range streamstest.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			cluster := streamstest.ClusterName(t)
			rdb := srv.Client(t)
			keys, _ := streams.NewKeys(cluster, 0)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			workers := []struct {
				host, role, tier string
			}{{"web1", "webserver", "web"}, {"web2", "webserver", "web"}, {"db1", "database", "data"}}
			for i, w := range workers {
				go func() {
					defer func() { done <- struct{}{} }()
					err := agent.Run(ctx, rdb, agent.Config{Keys: keys, Hostname: w.host, Role: w.role,
						Labels: map[string]string{"tier": w.tier}, Heartbeat: 300 * time.Millisecond,
						Block: 200 * time.Millisecond, Projector: i == 0})
					if err != nil {
						t.Error(err)
					}
				}()
			}
			defer func() {
				cancel()
				for range workers {
					<-done
				}
			}()
			store := projections.NewStore(rdb, keys)
			deadline := time.Now().Add(10 * time.Second)
			for {
				ws, _ := store.Workers(ctx)
				if len(ws) == 3 || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			env := []string{"CELEROOT_REDIS_URL=" + srv.URL, "CELEROOT_CLUSTER=" + cluster}
			hosts := func(stdout string) []string {
				var hs []string
				for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
					if h, _, ok := strings.Cut(l, " | "); ok {
						hs = append(hs, h)
					}
				}
				sort.Strings(hs)
				return hs
			}
			stdout, stderr, code := run(t, env, "task", "run", "command", "--target", "all", "--wait", "--", "echo", "hi")
			if code != 0 || strings.Join(hosts(stdout), ",") != "db1,web1,web2" {
				t.Fatalf("fan-out to all: exit %d, hosts %v\nstdout:\n%s\nstderr:\n%s", code, hosts(stdout), stdout, stderr)
			}
			stdout, stderr, code = run(t, env, "task", "run", "command", "--selector", "tier=web", "--wait", "--", "sh", "-c", "exit 3")
			if code != 1 || !strings.Contains(stderr, "2 of 2 tasks did not succeed") {
				t.Fatalf("fan-out to tier=web: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			// The job id is on stderr; its status aggregates both tasks.
			i := strings.Index(stderr, "job ")
			jobID := strings.Fields(stderr[i+4:])[0]
			jobID = strings.TrimSuffix(jobID, ":")
			stdout, stderr, code = run(t, env, "task", "status", jobID, "-o", "json")
			var job struct {
				Counts map[string]int `json:"counts"`
				Tasks  []struct {
					Target string `json:"target"`
				} `json:"tasks"`
			}
			if code != 0 || json.Unmarshal([]byte(stdout), &job) != nil {
				t.Fatalf("task status of the job: exit %d\n%s\n%s", code, stdout, stderr)
			}
			if job.Counts["failed"] != 2 || len(job.Tasks) != 2 {
				t.Errorf("job = %+v, want 2 failed tasks", job)
			}
			stdout, _, code = run(t, env, "task", "status", jobID)
			if code != 0 || !strings.Contains(stdout, "Tasks:      2: 2 failed") {
				t.Errorf("job status table:\n%s", stdout)
			}
		})
	}
}
