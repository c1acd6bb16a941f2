package ctl_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/celeroot/celeroot/ctl"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
)

var update = flag.Bool("update", false, "rewrite the cmp files of failing scripts in testdata/script with the actual output")

// harness runs the tests, then stops the Redis servers they started.
type harness struct{ m *testing.M }

func (h harness) Run() int {
	// Scripts get their settings from their own environment only; the
	// commands that run in this process (wait-worker, redis-cmd) must not
	// see a developer's CELEROOT_* settings either.
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "CELEROOT_") && name != streamstest.EnvRedisServer {
			os.Unsetenv(name)
		}
	}
	return streamstest.Main(h.m)
}

// TestMain makes this test binary double as the celeroot program: scripts
// run it with "exec celeroot ...". When it runs as the test binary, the
// Redis servers started by the tests are stopped before it exits.
func TestMain(m *testing.M) {
	testscript.Main(harness{m}, map[string]func(){
		"celeroot": func() { os.Exit(ctl.Main()) },
	})
}

// tbKey is the key of the script's testing.TB among its values.
type tbKey struct{}

// TestScripts runs every script of testdata/script against the shared
// single node and against the shared Redis Cluster, each script in its own
// celeroot cluster (key namespace).
//
// Besides testscript's built-in commands, scripts have:
//
//	exit-code [-within D] N prog [args...]
//	    run prog like exec and require exit status N (and, with -within,
//	    that it ends within the duration D)
//	capture NAME [REGEXP]
//	    set $NAME to the first line of the last command's stdout or, with
//	    REGEXP, to its first submatch (the whole match if it has none)
//	wait-worker HOSTNAME [STATE]
//	    wait up to 15s until 'workers list' shows the worker in STATE
//	    (default healthy)
//	decode json|yaml [KEY=VALUE...]
//	    require the last stdout to parse in the format and, if it is an
//	    object, its top-level fields KEY to print as VALUE
//	redis-cmd ARGS...
//	    run one raw Redis command against $CELEROOT_REDIS_URL and print
//	    the reply
//	retry PROG [ARGS...]
//	    run prog like exec until it succeeds, for up to 15s (its last
//	    stdout and stderr are then checked as exec's)
//	redis-start-auth VAR PASSWORD
//	    start a private single-node Redis requiring PASSWORD, and set $VAR
//	    to its URL (without the password) and ${VAR}_ADDR to its host:port
//	local-agents N
//	    wait up to 30s until exactly N agents started by the local
//	    provider (cluster deploy, workers scale) are running
//	replace FILE OLD NEW
//	    replace every OLD in FILE by NEW (OLD must occur), as in
//	    replace cluster.yaml 'name: production' 'name: '$CELEROOT_CLUSTER
//
// $EXAMPLES is the repository's examples directory. $XDG_STATE_HOME is in
// the script's directory, so the local provider keeps its pid and log files
// there, and runs its agents as this program; agents still running when a
// script ends are killed.
func TestScripts(t *testing.T) {
	for _, srv := range streamstest.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			testscript.Run(t, scriptParams("testdata/script", func(env *testscript.Env, tb testing.TB) error {
				env.Setenv("CELEROOT_REDIS_URL", srv.URL)
				return nil
			}, nil))
		})
	}
}

// sentinelKey is the key of the script's Sentinel deployment among its
// values.
type sentinelKey struct{}

// TestSentinelScripts runs every script of testdata/sentinel against its
// own Sentinel-managed Redis (a master, a replica and three sentinels; see
// streamstest.NewSentinel), with $CELEROOT_REDIS_URL and $SENTINEL_URL set
// to its redis+sentinel:// URL, $SENTINEL_ADDR to its first sentinel's
// host:port and $CELEROOT_CONFIG to a contexts file in the script's
// directory. Besides the commands of TestScripts, scripts have:
//
//	sentinel-failover
//	    promote the replica with SENTINEL FAILOVER and wait until the
//	    sentinels name it and the old master replicates from it; sets
//	    $OLD_MASTER and $NEW_MASTER to their host:port
//	sentinel-kill-master
//	    kill the master (SIGKILL, as a crash) and wait until the sentinels
//	    have promoted a replica; sets $OLD_MASTER and $NEW_MASTER
func TestSentinelScripts(t *testing.T) {
	t.Parallel()
	testscript.Run(t, scriptParams("testdata/sentinel", func(env *testscript.Env, tb testing.TB) error {
		srv := streamstest.NewSentinel(tb)
		env.Values[sentinelKey{}] = srv
		env.Setenv("CELEROOT_REDIS_URL", srv.URL)
		env.Setenv("SENTINEL_URL", srv.URL)
		env.Setenv("SENTINEL_ADDR", srv.SentinelAddrs[0])
		env.Setenv("CELEROOT_CONFIG", filepath.Join(env.WorkDir, "contexts.yaml"))
		return nil
	}, map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"sentinel-failover":    cmdSentinelFailover,
		"sentinel-kill-master": cmdSentinelKillMaster,
	}))
}

// scriptParams are the testscript parameters of the scripts in dir: the
// common environment and commands, then setup's and cmds'.
func scriptParams(dir string, setup func(env *testscript.Env, tb testing.TB) error, cmds map[string]func(ts *testscript.TestScript, neg bool, args []string)) testscript.Params {
	all := map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"exit-code":        cmdExitCode,
		"capture":          cmdCapture,
		"wait-worker":      cmdWaitWorker,
		"decode":           cmdDecode,
		"redis-cmd":        cmdRedis,
		"redis-start-auth": cmdRedisStartAuth,
		"replace":          cmdReplace,
		"local-agents":     cmdLocalAgents,
		"retry":            cmdRetry,
	}
	for name, c := range cmds {
		all[name] = c
	}
	examples, err := filepath.Abs(filepath.Join("..", "examples"))
	if err != nil {
		panic(err)
	}
	return testscript.Params{
		Dir:                 dir,
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		UpdateScripts:       *update,
		Setup: func(env *testscript.Env) error {
			tb, ok := env.T().(testing.TB)
			if !ok {
				return fmt.Errorf("script runs under %T, not a testing.TB", env.T())
			}
			env.Setenv("CELEROOT_CLUSTER", streamstest.ClusterName(tb))
			env.Setenv("EXAMPLES", examples)
			env.Setenv("CELEROOT_LOG_FORMAT", "text")
			// Several agents share this host: no metrics listener.
			env.Setenv("CELEROOT_METRICS_LISTEN", "off")
			// A race-enabled program that exits with status 0 sleeps
			// a second first, by default; scripts run many.
			if gorace := env.Getenv("GORACE"); !strings.Contains(gorace, "atexit_sleep_ms") {
				env.Setenv("GORACE", strings.TrimSpace(gorace+" atexit_sleep_ms=10"))
			}
			// The local provider (cluster deploy, workers scale) keeps
			// its agents' pid and log files under $XDG_STATE_HOME and
			// runs them as this program. Agents a failed script left
			// running are killed when it ends.
			state := filepath.Join(env.WorkDir, ".state")
			env.Setenv("XDG_STATE_HOME", state)
			env.Setenv("CELEROOT_AGENT_EXECUTABLE", "celeroot")
			env.Defer(func() {
				for _, pid := range localAgents(state) {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			})
			env.Values[tbKey{}] = tb
			return setup(env, tb)
		},
		Cmds: all,
	}
}

// localAgents returns the pids of the live agents recorded by the local
// provider under the state directory, of any cluster.
func localAgents(state string) []int {
	var pids []int
	files, _ := filepath.Glob(filepath.Join(state, "celeroot", "*", "*.pid"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && syscall.Kill(pid, 0) == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// cmdLocalAgents waits for the number of running local agents.
func cmdLocalAgents(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: local-agents N")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	const timeout = 30 * time.Second
	deadline := time.Now().Add(timeout)
	for {
		got := len(localAgents(ts.Getenv("XDG_STATE_HOME")))
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%d local agents running after %s, want %d", got, timeout, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cmdSentinelKillMaster crashes the master of the script's Sentinel
// deployment and waits for the sentinels to replace it.
func cmdSentinelKillMaster(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: sentinel-kill-master")
	}
	srv := ts.Value(sentinelKey{}).(*streamstest.Server)
	tb := ts.Value(tbKey{}).(testing.TB)
	old := srv.MasterAddr(tb)
	start := time.Now()
	srv.KillNode(tb, old)
	now := srv.WaitMaster(tb, old)
	ts.Logf("master %s killed; %s promoted after %s", old, now, time.Since(start).Round(time.Millisecond))
	ts.Setenv("OLD_MASTER", old)
	ts.Setenv("NEW_MASTER", now)
}

// cmdReplace replaces text in a file of the script's directory.
func cmdReplace(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: replace FILE OLD NEW")
	}
	data := ts.ReadFile(args[0])
	if !strings.Contains(data, args[1]) {
		ts.Fatalf("replace: %s has no %q", args[0], args[1])
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), []byte(strings.ReplaceAll(data, args[1], args[2])), 0o644))
}

// cmdSentinelFailover fails the script's Sentinel deployment over.
func cmdSentinelFailover(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: sentinel-failover")
	}
	srv := ts.Value(sentinelKey{}).(*streamstest.Server)
	tb := ts.Value(tbKey{}).(testing.TB)
	old := srv.MasterAddr(tb)
	start := time.Now()
	now := srv.Failover(tb)
	ts.Logf("failover from %s to %s took %s", old, now, time.Since(start).Round(time.Millisecond))
	ts.Setenv("OLD_MASTER", old)
	ts.Setenv("NEW_MASTER", now)
}

// cmdExitCode runs a program and checks its exact exit status.
func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! exit-code")
	}
	var within time.Duration
	if len(args) >= 2 && args[0] == "-within" {
		d, err := time.ParseDuration(args[1])
		if err != nil {
			ts.Fatalf("exit-code -within: %v", err)
		}
		within, args = d, args[2:]
	}
	if len(args) < 2 {
		ts.Fatalf("usage: exit-code [-within duration] code program [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exit-code: %q is not a number", args[0])
	}
	start := time.Now()
	err = ts.Exec(args[1], args[2:]...)
	took := time.Since(start)
	got := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exit-code: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("exit status %d, want %d", got, want)
	}
	if within > 0 && took > within {
		ts.Fatalf("took %s, want at most %s", took.Round(time.Millisecond), within)
	}
}

// cmdCapture sets an environment variable from the last stdout.
func cmdCapture(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! capture")
	}
	if len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: capture NAME [REGEXP]")
	}
	out := ts.ReadFile("stdout")
	var val string
	if len(args) == 1 {
		val, _, _ = strings.Cut(out, "\n")
		val = strings.TrimSpace(val)
		if val == "" {
			ts.Fatalf("capture %s: the first line of stdout is empty", args[0])
		}
	} else {
		re, err := regexp.Compile("(?m)" + args[1])
		ts.Check(err)
		m := re.FindStringSubmatch(out)
		switch {
		case m == nil:
			ts.Fatalf("capture %s: no match for `%s` in stdout", args[0], args[1])
		case len(m) > 1:
			val = m[1]
		default:
			val = m[0]
		}
	}
	ts.Setenv(args[0], val)
	ts.Logf("%s=%s", args[0], val)
}

// workerState is what wait-worker reads of 'workers list -o json'.
type workerState struct {
	Hostname string `json:"hostname"`
	State    string `json:"state"`
}

// cmdWaitWorker polls 'workers list -o json' until a worker has a state.
func cmdWaitWorker(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! wait-worker")
	}
	if len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: wait-worker HOSTNAME [STATE]")
	}
	host, want := args[0], "healthy"
	if len(args) == 2 {
		want = args[1]
	}
	const timeout = 15 * time.Second
	deadline := time.Now().Add(timeout)
	seen := "not listed"
	for {
		var stdout, stderr strings.Builder
		code := ctl.Run(context.Background(), []string{"celeroot",
			"--redis", ts.Getenv("CELEROOT_REDIS_URL"), "--cluster", ts.Getenv("CELEROOT_CLUSTER"),
			"workers", "list", "-o", "json"}, strings.NewReader(""), &stdout, &stderr)
		if code != 0 {
			seen = fmt.Sprintf("workers list failed with exit status %d: %s", code, stderr.String())
		} else {
			var ws []workerState
			if err := json.Unmarshal([]byte(stdout.String()), &ws); err != nil {
				ts.Fatalf("wait-worker: workers list -o json printed invalid JSON (%v):\n%s", err, stdout.String())
			}
			for _, w := range ws {
				if w.Hostname == host {
					seen = w.State
				}
			}
			if seen == want {
				return
			}
		}
		if time.Now().After(deadline) {
			ts.Fatalf("worker %s not %s after %s; last seen: %s", host, want, timeout, seen)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cmdDecode checks that the last stdout is valid JSON or YAML, and the
// values of some of its top-level fields.
func cmdDecode(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! decode")
	}
	if len(args) < 1 {
		ts.Fatalf("usage: decode json|yaml [KEY=VALUE...]")
	}
	out := ts.ReadFile("stdout")
	var v any
	var err error
	switch args[0] {
	case "json":
		dec := json.NewDecoder(strings.NewReader(out))
		if err = dec.Decode(&v); err == nil {
			if _, terr := dec.Token(); terr != io.EOF {
				err = fmt.Errorf("data after the JSON value")
			}
		}
	case "yaml":
		err = yaml.Unmarshal([]byte(out), &v)
	default:
		ts.Fatalf("decode: unknown format %q", args[0])
	}
	if err != nil {
		ts.Fatalf("stdout is not valid %s: %v", args[0], err)
	}
	if len(args) == 1 {
		return
	}
	obj, ok := v.(map[string]any)
	if !ok {
		ts.Fatalf("stdout is a %T, not an object", v)
	}
	for _, kv := range args[1:] {
		k, want, ok := strings.Cut(kv, "=")
		if !ok {
			ts.Fatalf("decode: %q is not KEY=VALUE", kv)
		}
		got, present := obj[k]
		if !present {
			ts.Fatalf("stdout has no field %q", k)
		}
		if s := fmt.Sprint(got); s != want {
			ts.Fatalf("field %q is %q, want %q", k, s, want)
		}
	}
}

// cmdRedis runs one raw command against the script's Redis.
func cmdRedis(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 {
		ts.Fatalf("usage: redis-cmd COMMAND [ARGS...]")
	}
	cfg, err := streams.ParseURL(ts.Getenv("CELEROOT_REDIS_URL"))
	ts.Check(err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb, err := streams.Connect(ctx, cfg, 0, 5*time.Second)
	ts.Check(err)
	defer rdb.Close()
	cargs := make([]any, len(args))
	for i, a := range args {
		cargs[i] = a
	}
	res, err := rdb.Do(ctx, cargs...).Result()
	if err != nil {
		if !neg {
			ts.Fatalf("redis %s: %v", strings.Join(args, " "), err)
		}
		fmt.Fprintf(ts.Stderr(), "%v\n", err)
		return
	}
	if neg {
		ts.Fatalf("redis %s: unexpected success", strings.Join(args, " "))
	}
	writeReply(ts.Stdout(), res, "")
}

// writeReply prints a Redis reply: one scalar per line, nested arrays and
// maps indented.
func writeReply(w io.Writer, v any, indent string) {
	switch v := v.(type) {
	case nil:
		fmt.Fprintf(w, "%s(nil)\n", indent)
	case []any:
		if len(v) == 0 {
			fmt.Fprintf(w, "%s(empty)\n", indent)
		}
		for _, e := range v {
			if _, nested := e.([]any); nested {
				fmt.Fprintf(w, "%s-\n", indent)
				writeReply(w, e, indent+"  ")
				continue
			}
			writeReply(w, e, indent)
		}
	case map[any]any:
		keys := make([]string, 0, len(v))
		vals := map[string]any{}
		for k, e := range v {
			ks := fmt.Sprint(k)
			keys = append(keys, ks)
			vals[ks] = e
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "%s%s:\n", indent, k)
			writeReply(w, vals[k], indent+"  ")
		}
	default:
		fmt.Fprintf(w, "%s%v\n", indent, v)
	}
}

// cmdRedisStartAuth starts a private password-protected Redis for one
// script; it stops when the script ends.
func cmdRedisStartAuth(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! redis-start-auth")
	}
	if len(args) != 2 {
		ts.Fatalf("usage: redis-start-auth VAR PASSWORD")
	}
	tb := ts.Value(tbKey{}).(testing.TB)
	srv := streamstest.NewSingle(tb, streamstest.WithPassword(args[1]))
	ts.Setenv(args[0], "redis://"+srv.Addr())
	ts.Setenv(args[0]+"_ADDR", srv.Addr())
}

// cmdRetry runs a program until it succeeds, for up to 15s.
func cmdRetry(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! retry")
	}
	if len(args) < 1 {
		ts.Fatalf("usage: retry program [args...]")
	}
	const timeout = 15 * time.Second
	deadline := time.Now().Add(timeout)
	for {
		err := ts.Exec(args[0], args[1:]...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not succeed within %s: %v\n%s", strings.Join(args, " "), timeout, err, ts.ReadFile("stderr"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
