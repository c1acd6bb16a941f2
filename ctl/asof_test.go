package ctl_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
)

// workers list --at a moment of the past shows the fleet as it was: a
// worker alive then and gone now is shown alive; task status --at shows a
// finished task as it was before it ran.
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
			time.Sleep(700 * time.Millisecond)
			then := time.Now().UTC().Format(time.RFC3339Nano)
			time.Sleep(20 * time.Millisecond)
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
			out, errOut, code := run(t, env, "task", "status", id, "--at", then)
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
