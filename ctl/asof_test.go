package ctl_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
)

// workers list --at and cluster status --at a moment of the past show the
// fleet as it was: a worker alive then and gone now is shown alive; task
// status --at shows a finished task as it was before it ran; config show
// --at the revision then in force.
func TestTimeTravel(t *testing.T) {
	for _, srv := range streamstest.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			cluster := streamstest.ClusterName(t)
			startAgents(t, srv, cluster, "web1")
			rdb := srv.Client(t)
			keys, _ := streams.NewKeys(cluster, 0)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- agent.Run(ctx, rdb, agent.Config{Keys: keys, Hostname: "web9", Role: "webserver",
					Heartbeat: 300 * time.Millisecond, Block: 200 * time.Millisecond})
			}()
			store := projections.NewStore(rdb, keys)
			for {
				if w, err := store.Worker(context.Background(), "web9"); err == nil && w.State(time.Now()) == projections.WorkerHealthy {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			env := []string{"CELEROOT_REDIS_URL=" + srv.URL, "CELEROOT_CLUSTER=" + cluster}
			dir := t.TempDir()
			doc := func(replicas int) string {
				f := filepath.Join(dir, fmt.Sprintf("c%d.yaml", replicas))
				src := fmt.Sprintf("apiVersion: celeroot.io/v1\nkind: Cluster\nmetadata:\n  name: %s\nspec:\n  workers:\n    - name: web\n      role: webserver\n      replicas: %d\n", cluster, replicas)
				if err := os.WriteFile(f, []byte(src), 0o600); err != nil {
					t.Fatal(err)
				}
				return f
			}
			if _, errOut, code := run(t, env, "config", "apply", "-f", doc(2)); code != 0 {
				t.Fatalf("config apply: %s", errOut)
			}
			time.Sleep(700 * time.Millisecond)
			then := time.Now().UTC().Format(time.RFC3339Nano)
			time.Sleep(20 * time.Millisecond)
			if _, errOut, code := run(t, env, "config", "apply", "-f", doc(5)); code != 0 {
				t.Fatalf("config apply: %s", errOut)
			}
			out, _, _ := run(t, env, "task", "run", "command", "--target", "web1", "--wait", "--", "true")
			id := strings.Fields(out)[0]
			cancel() // web9 leaves
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			state := func(args ...string) map[string]string {
				out, errOut, code := run(t, env, args...)
				if code != 0 {
					t.Fatalf("%v: exit %d: %s", args, code, errOut)
				}
				var ws []struct {
					Hostname string `json:"hostname"`
					State    string `json:"state"`
				}
				if err := json.Unmarshal([]byte(out), &ws); err != nil {
					t.Fatalf("%v: %v\n%s", args, err, out)
				}
				m := map[string]string{}
				for _, w := range ws {
					m[w.Hostname] = w.State
				}
				return m
			}
			if now := state("workers", "list", "-o", "json"); now["web9"] != "left" {
				t.Errorf("now: web9 is %q, want left", now["web9"])
			}
			if past := state("workers", "list", "-o", "json", "--at", then); past["web9"] != "healthy" || past["web1"] != "healthy" {
				t.Errorf("as of %s: %v, want web1 and web9 healthy", then, past)
			}
			// cluster status --at: both webservers healthy then, of 2 desired
			// (revision 1); now one has left and 5 are desired (revision 2).
			roles := func(args ...string) (int64, map[string]int) {
				out, errOut, code := run(t, env, args...)
				if code != 0 {
					t.Fatalf("%v: exit %d: %s", args, code, errOut)
				}
				var v struct {
					Revision int64 `json:"config_revision"`
					Roles    []struct {
						Role    string         `json:"role"`
						States  map[string]int `json:"states"`
						Desired int            `json:"desired"`
					} `json:"roles"`
				}
				if err := json.Unmarshal([]byte(out), &v); err != nil || len(v.Roles) != 1 {
					t.Fatalf("%v: %v\n%s", args, err, out)
				}
				st := v.Roles[0].States
				st["desired"] = v.Roles[0].Desired
				return v.Revision, st
			}
			if rev, st := roles("cluster", "status", "-o", "json", "--at", then); rev != 1 || st["healthy"] != 2 || st["left"] != 0 || st["desired"] != 2 {
				t.Errorf("cluster status --at %s: revision %d, %v; want revision 1, 2 healthy of 2 desired", then, rev, st)
			}
			if rev, st := roles("cluster", "status", "-o", "json"); rev != 2 || st["healthy"] != 1 || st["left"] != 1 || st["desired"] != 5 {
				t.Errorf("cluster status now: revision %d, %v; want revision 2, 1 healthy and 1 left of 5 desired", rev, st)
			}
			out, errOut, code := run(t, env, "cluster", "status", "--at", then)
			if code != 0 || !strings.Contains(out, "not kept in the history") || strings.Contains(out, "QUEUE") || !strings.Contains(errOut, "As of ") {
				t.Errorf("cluster status --at (table): exit %d\n%s%s", code, out, errOut)
			}
			if out, errOut, code = run(t, env, "config", "show", "--at", then, "-o", "json"); code != 0 || !strings.Contains(out, `"replicas": 2`) || !strings.Contains(errOut, "revision 1") {
				t.Errorf("config show --at: exit %d\n%s%s", code, out, errOut)
			}
			if _, errOut, code = run(t, env, "config", "show", "--at", then, "--revision", "2"); code != 2 || !strings.Contains(errOut, "give one of them") {
				t.Errorf("config show --at --revision: exit %d, %s", code, errOut)
			}
			if _, errOut, code = run(t, env, "config", "show", "--at", "2000-01-01T00:00:00Z"); code != 1 || !strings.Contains(errOut, "no configuration was applied") {
				t.Errorf("config show --at before any apply: exit %d, %s", code, errOut)
			}
			out, errOut, code = run(t, env, "task", "status", id, "--at", then)
			if code != 1 || !strings.Contains(errOut, "no task") {
				t.Errorf("task status before it existed: exit %d\n%s%s", code, out, errOut)
			}
			if out, _, _ = run(t, env, "task", "status", id); !strings.Contains(out, "State:      succeeded") {
				t.Errorf("task status now:\n%s", out)
			}
			if _, errOut, code = run(t, env, "workers", "list", "--at", "2999-01-01T00:00:00Z"); code != 2 || !strings.Contains(errOut, "future") {
				t.Errorf("--at in the future: exit %d, %s", code, errOut)
			}
		})
	}
}
