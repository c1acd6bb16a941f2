package ctl_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/celeroot/celeroot/streams/streamstest"
)

// applyProcess is one `celeroot config apply` run as its own OS process.
type applyProcess struct {
	cmd            *exec.Cmd
	doc            string
	replicas       int
	stdout, stderr bytes.Buffer
	code           int
}

// Two `celeroot config apply --expect-revision N` processes started
// together, round after round: each round exactly one applies revision
// N+1 and exits 0, the other exits 1 with a conflict error that names both
// revisions and says how to go on, and the applied revision holds the
// winner's document.
func TestConcurrentApplyProcesses(t *testing.T) {
	// testscript.Main (TestMain) put a "celeroot" command, this test
	// binary, on PATH: each apply is a real process with its own Redis
	// connections.
	bin, err := exec.LookPath("celeroot")
	if err != nil {
		t.Fatalf("celeroot is not on PATH: %v", err)
	}
	const rounds = 12
	for _, srv := range streamstest.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			cluster := streamstest.ClusterName(t)
			var env []string
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "CELEROOT_") || strings.HasPrefix(kv, streamstest.EnvRedisServer+"=") {
					env = append(env, kv)
				}
			}
			// A race-enabled program that exits 0 sleeps a second by default.
			env = append(env, "CELEROOT_REDIS_URL="+srv.URL, "GORACE=atexit_sleep_ms=10")
			doc := func(replicas int) string {
				return fmt.Sprintf("apiVersion: celeroot.io/v1\nkind: Cluster\nmetadata:\n  name: %s\nspec:\n  workers:\n"+
					"    - name: webservers\n      role: webserver\n      replicas: %d\n", cluster, replicas)
			}
			wins := [2]int{}
			for round := range rounds {
				expect := round // revisions count from 1; before round 0 none is applied
				procs := make([]*applyProcess, 2)
				for i := range procs {
					p := &applyProcess{replicas: round*10 + i}
					p.doc = doc(p.replicas)
					p.cmd = exec.Command(bin, "config", "apply", "--expect-revision", fmt.Sprint(expect), "-f", "-",
						"-m", fmt.Sprintf("round %d, process %d", round, i))
					p.cmd.Env = env
					p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
					procs[i] = p
				}
				// Both processes start, then get their document at the same
				// time: each reads it before it talks to Redis.
				stdins := make([]io.WriteCloser, 2)
				for i, p := range procs {
					in, err := p.cmd.StdinPipe()
					if err != nil {
						t.Fatal(err)
					}
					stdins[i] = in
					if err := p.cmd.Start(); err != nil {
						t.Fatal(err)
					}
				}
				var wg sync.WaitGroup
				for i, p := range procs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						stdins[i].Write([]byte(p.doc))
						stdins[i].Close()
						err := p.cmd.Wait()
						if ee, ok := err.(*exec.ExitError); ok {
							p.code = ee.ExitCode()
						} else if err != nil {
							p.code = -1
							fmt.Fprintf(&p.stderr, "wait: %v", err)
						}
					}()
				}
				wg.Wait()

				var winner, loser *applyProcess
				for i, p := range procs {
					switch p.code {
					case 0:
						if winner != nil {
							t.Fatalf("round %d: both processes applied:\n%s\n%s", round, procs[0].stdout.String(), procs[1].stdout.String())
						}
						winner = p
						wins[i]++
					case 1:
						loser = p
					default:
						t.Fatalf("round %d: process %d exited %d, want 0 or 1:\n%s%s", round, i, p.code, p.stdout.String(), p.stderr.String())
					}
				}
				if winner == nil || loser == nil {
					t.Fatalf("round %d: exit codes %d and %d, want one 0 and one 1:\n%s\n%s", round, procs[0].code, procs[1].code,
						procs[0].stderr.String(), procs[1].stderr.String())
				}
				if want := fmt.Sprintf("applied revision %d to cluster %s\n", expect+1, cluster); !strings.HasPrefix(winner.stdout.String(), want) {
					t.Errorf("round %d: the winner printed %q, want it to start with %q", round, winner.stdout.String(), want)
				}
				wantErr := fmt.Sprintf("celeroot: config apply: config is at revision %d, not %d: someone applied in between"+
					" (review with 'celeroot config diff', then apply again)\n", expect+1, expect)
				if loser.stderr.String() != wantErr || loser.stdout.Len() != 0 {
					t.Errorf("round %d: the loser printed %q and %q on stderr, want nothing and %q", round, loser.stdout.String(), loser.stderr.String(), wantErr)
				}
				// What is applied is the winner's document, whole.
				out, errOut, code := runNoEnv("--redis", srv.URL, "--cluster", cluster, "config", "show", "-o", "json")
				wantReplicas := fmt.Sprintf(`"replicas": %d`, winner.replicas)
				if code != 0 || !strings.Contains(out, wantReplicas) {
					t.Fatalf("round %d: config show: exit %d, want %s:\n%s%s", round, code, wantReplicas, out, errOut)
				}
			}
			out, _, code := runNoEnv("--redis", srv.URL, "--cluster", cluster, "config", "history", "-o", "json")
			if code != 0 || strings.Count(out, `"revision":`) != rounds {
				t.Errorf("config history after %d rounds: exit %d, %d revisions:\n%s", rounds, code, strings.Count(out, `"revision":`), out)
			}
			t.Logf("%d rounds: process 0 won %d, process 1 won %d", rounds, wins[0], wins[1])
		})
	}
}
