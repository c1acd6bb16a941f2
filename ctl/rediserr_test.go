package ctl_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/celeroot/celeroot/ctl"
	"github.com/celeroot/celeroot/streams/streamstest"
)

// runAt runs the CLI in-process against the Redis at url and the celeroot
// cluster, without touching the environment.
func runAt(ctx context.Context, url, cluster string, args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	full := append([]string{"celeroot", "--redis", url, "--cluster", cluster}, args...)
	code := ctl.Run(ctx, full, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

// clusterFile writes a Cluster document for cluster with a web worker
// group of replicas workers and returns its path.
func clusterFile(t *testing.T, cluster string, replicas int) string {
	t.Helper()
	doc := "apiVersion: celeroot.io/v1\nkind: Cluster\nmetadata:\n  name: " + cluster +
		"\nspec:\n  workers:\n    - name: web\n      role: webserver\n      replicas: " + strconv.Itoa(replicas) + "\n"
	path := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantOneLine checks that stderr is exactly one line, starting with
// prefix and containing every one of parts.
func wantOneLine(t *testing.T, what, stderr, prefix string, parts ...string) {
	t.Helper()
	if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, prefix) {
		t.Errorf("%s: stderr = %q, want one line starting with %q", what, stderr, prefix)
		return
	}
	for _, p := range parts {
		if !strings.Contains(stderr, p) {
			t.Errorf("%s: stderr = %q, want it to contain %q", what, stderr, p)
		}
	}
}

// A Redis out of memory: commands that write fail with exit 1 and one line
// that says so and what to do, nothing is written, and commands that only
// read still work.
func TestRedisOutOfMemory(t *testing.T) {
	t.Parallel()
	srv := streamstest.NewSingle(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	cluster := streamstest.ClusterName(t)
	if _, errOut, code := runAt(ctx, srv.URL, cluster, "config", "apply", "-f", clusterFile(t, cluster, 1)); code != 0 {
		t.Fatalf("first apply: exit %d: %s", code, errOut)
	}
	startAgents(t, srv, cluster, "web1")
	if err := rdb.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.ConfigSet(context.Background(), "maxmemory", "0") })

	const oom = "Redis is out of memory (used memory is above maxmemory) and refuses writes: free memory in Redis (celeroot events archive --trim removes archived history) or raise its maxmemory, then retry"
	const said = "Redis said: OOM command not allowed when used memory > 'maxmemory'.)\n"
	_, errOut, code := runAt(ctx, srv.URL, cluster, "config", "apply", "-f", clusterFile(t, cluster, 2))
	if code != 1 {
		t.Errorf("config apply: exit %d, want 1", code)
	}
	wantOneLine(t, "config apply", errOut, "celeroot: config apply: "+oom+" (apply config revision 2; nothing was applied; "+said)

	_, errOut, code = runAt(ctx, srv.URL, cluster, "task", "run", "command", "--target", "web1", "--", "true")
	if code != 1 {
		t.Errorf("task run: exit %d, want 1", code)
	}
	wantOneLine(t, "task run", errOut, "celeroot: task run: "+oom+" (submitted 0 of 1 tasks: web1: record submission of task ", said)

	// A cluster seen for the first time must record its metadata.
	_, errOut, code = runAt(ctx, srv.URL, "fresh-"+cluster, "workers", "list")
	if code != 1 {
		t.Errorf("workers list of a new cluster: exit %d, want 1", code)
	}
	wantOneLine(t, "workers list of a new cluster", errOut, "celeroot: workers list: "+oom+" (record cluster fresh-"+cluster+" metadata; "+said)

	// Reading works.
	if out, errOut, code := runAt(ctx, srv.URL, cluster, "config", "history"); code != 0 || strings.Count(out, "\n") != 2 {
		t.Errorf("config history under OOM: exit %d\n%s%s\nwant revision 1 only", code, out, errOut)
	}
	if out, errOut, code := runAt(ctx, srv.URL, cluster, "task", "list", "-o", "json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("task list under OOM: exit %d\n%s%s\nwant no task", code, out, errOut)
	}

	// With memory again, the agent that lived through it runs tasks.
	if err := rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := runAt(ctx, srv.URL, cluster, "task", "run", "command", "--target", "web1", "--wait", "--", "echo", "back"); code != 0 || !strings.HasSuffix(out, "\nback\n") {
		t.Errorf("task run after OOM: exit %d\n%s%s", code, out, errOut)
	}
}

// A Redis loading its data set answers LOADING, and a replica refuses
// writes with READONLY; each is told in one line with what to do.
func TestRedisLoadingAndReadOnly(t *testing.T) {
	t.Parallel()
	master := streamstest.NewSingle(t)
	// 20,000 keys at 200µs each: the replica loads for about 4 s, and
	// answers (LOADING) meanwhile.
	replica := streamstest.NewSingle(t, streamstest.WithConfig("key-load-delay 200", "loading-process-events-interval-bytes 1024"))
	ctx := context.Background()
	cluster := streamstest.ClusterName(t)
	if _, errOut, code := runAt(ctx, master.URL, cluster, "config", "apply", "-f", clusterFile(t, cluster, 1)); code != 0 {
		t.Fatalf("apply: exit %d: %s", code, errOut)
	}
	m, r := master.Client(t), replica.Client(t)
	if err := m.Do(ctx, "DEBUG", "POPULATE", 20000, "filler").Err(); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(master.Addr(), ":")
	if err := r.Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
		t.Fatal(err)
	}
	waitInfo(t, r, "persistence", "loading:1")
	_, errOut, code := runAt(ctx, replica.URL, cluster, "workers", "list")
	if code != 1 {
		t.Errorf("workers list while loading: exit %d, want 1", code)
	}
	wantOneLine(t, "workers list while loading", errOut,
		"celeroot: workers list: Redis is loading its data set into memory and answers no commands until it is done: wait until it has loaded (INFO persistence shows loading:0), then retry (",
		"Redis said: LOADING Redis is loading the dataset in memory)")

	waitInfo(t, r, "replication", "master_link_status:up")
	waitInfo(t, r, "persistence", "loading:0")
	if out, errOut, code := runAt(ctx, replica.URL, cluster, "config", "history"); code != 0 || strings.Count(out, "\n") != 2 {
		t.Errorf("config history on the replica: exit %d\n%s%s", code, out, errOut)
	}
	_, errOut, code = runAt(ctx, replica.URL, cluster, "config", "apply", "-f", clusterFile(t, cluster, 2))
	if code != 1 {
		t.Errorf("config apply on the replica: exit %d, want 1", code)
	}
	wantOneLine(t, "config apply on the replica", errOut,
		"celeroot: config apply: this Redis is a read-only replica and refuses writes: point --redis at the master (or use a redis+sentinel:// URL, which finds it), then retry (apply config revision 2; nothing was applied; Redis said: READONLY You can't write against a read only replica.)\n")
	if out, _, _ := runAt(ctx, master.URL, cluster, "config", "history"); strings.Count(out, "\n") != 2 {
		t.Errorf("config history after the refused apply:\n%s", out)
	}
}

// A Redis user without the right to write (ACL) gets NOPERM, told in one
// line.
func TestRedisNoPermission(t *testing.T) {
	t.Parallel()
	srv := streamstest.NewSingle(t)
	ctx := context.Background()
	cluster := streamstest.ClusterName(t)
	if _, errOut, code := runAt(ctx, srv.URL, cluster, "config", "apply", "-f", clusterFile(t, cluster, 1)); code != 0 {
		t.Fatalf("apply: exit %d: %s", code, errOut)
	}
	if err := srv.Client(t).Do(ctx, "ACL", "SETUSER", "reader", "on", ">reader-pw", "~*", "+@read", "+info", "+ping", "+hello", "+client").Err(); err != nil {
		t.Fatal(err)
	}
	url := "redis://reader:reader-pw@" + srv.Addr()
	_, errOut, code := runAt(ctx, url, cluster, "config", "apply", "-f", clusterFile(t, cluster, 2))
	if code != 1 {
		t.Errorf("config apply as reader: exit %d, want 1", code)
	}
	wantOneLine(t, "config apply as reader", errOut,
		"celeroot: config apply: the Redis user may not run this command or use these keys (ACL): grant the user the commands and the celeroot:<cluster>:* keys with ACL SETUSER, or connect as another user (",
		"Redis said: NOPERM ")
	if strings.Contains(errOut, "reader-pw") {
		t.Errorf("the password is printed: %s", errOut)
	}
}

// A Redis that goes away while a command runs: one line that says the
// connection broke and what to check.
func TestRedisGoneWhileRunning(t *testing.T) {
	t.Parallel()
	srv := streamstest.NewSingle(t)
	cluster := streamstest.ClusterName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type result struct {
		stderr string
		code   int
	}
	done := make(chan result, 1)
	go func() {
		_, errOut, code := runAt(ctx, srv.URL, cluster, "events", "tail", "-f")
		done <- result{errOut, code}
	}()
	time.Sleep(time.Second)
	srv.Kill(t)
	res := <-done
	if res.code != 1 {
		t.Errorf("events tail -f: exit %d, want 1", res.code)
	}
	wantOneLine(t, "events tail -f", res.stderr,
		"celeroot: events tail: the connection to Redis broke while the command ran: check that Redis is running and reachable; a write in flight may or may not have been applied, so look (task list, config history) before you retry (",
		"error: dial tcp "+srv.Addr()+": connect: connection refused)")
}

// waitInfo waits up to 15 s until the INFO section of rdb has line.
func waitInfo(t *testing.T, rdb redis.UniversalClient, section, line string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		info, _ := rdb.Info(context.Background(), section).Result()
		if strings.Contains(info, line+"\r\n") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("INFO %s has no %q after 15s:\n%s", section, line, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
