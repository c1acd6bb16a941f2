package ctl_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
)

// The chaos scenarios run in `make test` at a small size and, with
// -chaos-full (`make chaos`), at full size; -chaos-report names a file that
// gets one JSON line per scenario run with its counts.
var (
	chaosFull   = flag.Bool("chaos-full", false, "run the chaos scenarios at full size (make chaos)")
	chaosReport = flag.String("chaos-report", "", "append one JSON line per chaos scenario run to this file")
	chaosCut    = flag.String("chaos-partition", "auto", "how the partition scenario cuts an agent off: netns (a network namespace whose link is taken down), proxy, or auto (netns where the machine allows it)")
)

// chaosReclaimIdle is the agents' --reclaim-idle in the chaos runs: short,
// so that cut-off and paused workers lose their tasks within seconds.
const chaosReclaimIdle = 2 * time.Second

// chaosSize is a scenario's task count: short in make test, full in make
// chaos.
func chaosSize(short, full int) int {
	if *chaosFull {
		return full
	}
	return short
}

// chaosAgent is a real `celeroot agent` process (this test binary, which
// TestMain makes double as celeroot).
type chaosAgent struct {
	host, url, log string
	cmd            *exec.Cmd
	exited         chan struct{}
}

// chaosRun is one scenario against one Redis: its agents, the tasks it
// submitted and what it did to them.
type chaosRun struct {
	t        *testing.T
	name     string
	srv      *streamstest.Server
	cluster  string
	rdb      redis.UniversalClient
	keys     streams.Keys
	dir, bin string
	env      []string

	// wrap is the command an agent's command line is run under, by host
	// (ip netns exec NAME, for an agent in a network namespace).
	wrap map[string][]string

	mu      sync.Mutex
	agents  map[string]*chaosAgent
	want    map[string]string // acknowledged task -> the outcome it must end with
	tried   int               // submissions tried, acknowledged or not
	refused []string          // distinct errors of refused submissions
	actions []string          // what the scenario did, in order
	acts    map[string]int    // how many times it did each kind of thing
	start   time.Time
}

func newChaosRun(t *testing.T, name string, srv *streamstest.Server) *chaosRun {
	t.Helper()
	bin, err := exec.LookPath("celeroot")
	if err != nil {
		t.Fatalf("celeroot is not on PATH: %v", err)
	}
	cr := &chaosRun{t: t, name: name, srv: srv, cluster: streamstest.ClusterName(t), rdb: srv.Client(t), dir: t.TempDir(), bin: bin,
		agents: map[string]*chaosAgent{}, want: map[string]string{}, acts: map[string]int{}, start: time.Now()}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CELEROOT_") || strings.HasPrefix(kv, streamstest.EnvRedisServer+"=") {
			cr.env = append(cr.env, kv)
		}
	}
	// A race-enabled program that exits sleeps a second by default.
	cr.env = append(cr.env, "GORACE=atexit_sleep_ms=10")
	cfg := filepath.Join(cr.dir, "cluster.yaml")
	doc := fmt.Sprintf("apiVersion: celeroot.io/v1\nkind: Cluster\nmetadata:\n  name: %s\nspec:\n  workers:\n    - name: web\n      role: webserver\n      replicas: 3\n", cr.cluster)
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := run(t, []string{"CELEROOT_REDIS_URL=" + srv.URL, "CELEROOT_CLUSTER=" + cr.cluster}, "config", "apply", "-f", cfg); code != 0 {
		t.Fatalf("config apply: %s", errOut)
	}
	if cr.keys, err = streams.LoadKeys(context.Background(), cr.rdb, cr.cluster); err != nil {
		t.Fatal(err)
	}
	return cr
}

// act records something the scenario did, counted under kind.
func (cr *chaosRun) act(kind, format string, args ...any) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	msg := fmt.Sprintf("%5.1fs ", time.Since(cr.start).Seconds()) + fmt.Sprintf(format, args...)
	cr.actions = append(cr.actions, msg)
	cr.acts[kind]++
	cr.t.Log(msg)
}

// startAgents starts agents a1..an on url and waits until they are healthy.
func (cr *chaosRun) startAgents(n int, url string) []string {
	cr.t.Helper()
	hosts := make([]string, n)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("a%d", i+1)
		cr.startAgent(hosts[i], url)
	}
	cr.waitHealthy(hosts...)
	return hosts
}

// acknowledged is how many submissions have been acknowledged so far.
func (cr *chaosRun) acknowledged() int {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	return len(cr.want)
}

// waitAcknowledged waits until k submissions are acknowledged; false if
// ctx ended first.
func (cr *chaosRun) waitAcknowledged(ctx context.Context, k int) bool {
	for cr.acknowledged() < k {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return true
}

// waitRunning waits until host runs one of the long tasks (those that
// are still running by the time anything is done to their worker); false
// if stop closed first.
func (cr *chaosRun) waitRunning(host string, stop <-chan struct{}) bool {
	store := projections.NewStore(cr.rdb, cr.keys)
	for {
		cr.mu.Lock()
		var long []string
		for id := range cr.want {
			if strings.HasSuffix(id, "8") { // chaosTask: i%10 == 8
				long = append(long, id)
			}
		}
		cr.mu.Unlock()
		tasks, _ := store.TasksByID(context.Background(), long)
		for _, tk := range tasks {
			if n := len(tk.Attempts); tk.State == projections.TaskRunning && n > 0 && tk.Attempts[n-1].Worker == host {
				return true
			}
		}
		select {
		case <-stop:
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startAgent starts (or restarts) the agent host, connecting to url, and
// waits until it is registered.
func (cr *chaosRun) startAgent(host, url string) *chaosAgent {
	cr.t.Helper()
	log := filepath.Join(cr.dir, host+".log")
	f, err := os.OpenFile(log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		cr.t.Fatal(err)
	}
	defer f.Close()
	argv := append(append([]string{}, cr.wrap[host]...), cr.bin, "--redis", url, "--cluster", cr.cluster, "--log-level", "warn", "--log-format", "text",
		"agent", "--hostname", host, "--role", "webserver", "--heartbeat", "300ms", "--concurrency", "8",
		"--reclaim-idle", chaosReclaimIdle.String(), "--shutdown-timeout", "2s", "--metrics-listen", "off", "--plugin-dir", "off",
		"--janitor=false", "--scheduler", "never")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Stdout, cmd.Stderr = cr.env, f, f
	if err := cmd.Start(); err != nil {
		cr.t.Fatal(err)
	}
	a := &chaosAgent{host: host, url: url, log: log, cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(a.exited) }()
	cr.mu.Lock()
	cr.agents[host] = a
	cr.mu.Unlock()
	cr.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		<-a.exited
		if cr.t.Failed() {
			if b, err := os.ReadFile(log); err == nil && len(b) > 0 {
				cr.t.Logf("%s log (last 2 KiB):\n%s", host, tail(b, 2048))
			}
		}
	})
	return a
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// waitHealthy waits until every named agent heartbeats.
func (cr *chaosRun) waitHealthy(hosts ...string) {
	cr.t.Helper()
	store := projections.NewStore(cr.rdb, cr.keys)
	waitFor(cr.t, 60*time.Second, "healthy workers "+strings.Join(hosts, ", "), func() bool {
		for _, h := range hosts {
			w, err := store.Worker(context.Background(), h)
			if err != nil || w.State(time.Now()) != projections.WorkerHealthy {
				return false
			}
		}
		return true
	})
}

// signal sends sig to agent host.
func (cr *chaosRun) signal(host string, sig syscall.Signal) {
	cr.t.Helper()
	cr.mu.Lock()
	a := cr.agents[host]
	cr.mu.Unlock()
	if err := a.cmd.Process.Signal(sig); err != nil {
		cr.t.Errorf("signal %s to %s: %v", sig, host, err)
	}
	if sig == syscall.SIGKILL {
		<-a.exited
	}
}

// chaosTask is the kind of the i-th task of a run: most succeed, some fail,
// some fail once and succeed when retried, some fail on every attempt, and
// some run long enough to be caught mid-run.
func (cr *chaosRun) chaosTask(i int, long time.Duration) (events.TaskSubmitted, string) {
	p := events.TaskSubmitted{TaskID: fmt.Sprintf("%s-%06d", cr.name, i), Task: "command", Route: events.RouteQueue, Target: "webserver",
		Deadline: time.Now().Add(time.Hour)}
	switch i % 10 {
	case 6:
		p.Argv = []string{"false"}
		return p, string(events.Failed)
	case 7:
		marker := filepath.Join(cr.dir, p.TaskID)
		p.Argv, p.MaxAttempts, p.BackoffMS = []string{"sh", "-c", "[ -e " + marker + " ] || { : > " + marker + "; exit 1; }"}, 4, 10
		return p, string(events.Succeeded)
	case 8:
		p.Argv = []string{"sleep", fmt.Sprintf("%.3f", long.Seconds())}
		return p, string(events.Succeeded)
	case 9:
		p.Argv, p.MaxAttempts, p.BackoffMS = []string{"sh", "-c", "exit 3"}, 2, 10
		return p, string(events.Failed)
	}
	p.Argv = []string{"true"}
	return p, string(events.Succeeded)
}

// submit submits n tasks at about rate per second, in batches, retrying
// each refused submission until it is acknowledged or ctx ends. Only
// acknowledged tasks count as submitted: what a client was told was
// recorded. It returns when all are acknowledged.
func (cr *chaosRun) submit(ctx context.Context, n, rate int, long time.Duration) {
	cr.t.Helper()
	log := streams.NewLog(cr.rdb, cr.keys)
	src := events.Source{Cluster: cr.cluster, Actor: "chaos"}
	const batch = 20
	tick := time.Duration(float64(time.Second) * batch / float64(rate))
	next := time.Now()
	for i := 0; i < n; i += batch {
		var es []events.Envelope
		var wants []string
		for j := i; j < min(i+batch, n); j++ {
			p, want := cr.chaosTask(j, long)
			es = append(es, src.New(p, events.WithCorrelation(p.TaskID)))
			wants = append(wants, want)
		}
		for len(es) > 0 {
			_, errs := log.SubmitBatch(ctx, es)
			var again []events.Envelope
			var againWant []string
			cr.mu.Lock()
			for k, err := range errs {
				cr.tried++
				if err != nil {
					if msg := err.Error(); !sameRefusal(cr.refused, msg) && len(cr.refused) < 5 {
						cr.refused = append(cr.refused, msg)
					}
					again, againWant = append(again, es[k]), append(againWant, wants[k])
					continue
				}
				cr.want[es[k].Payload.(events.TaskSubmitted).TaskID] = wants[k]
			}
			cr.mu.Unlock()
			es, wants = again, againWant
			if len(es) > 0 {
				select {
				case <-ctx.Done():
					cr.t.Fatalf("submitting: %v (%d still refused: %v)", ctx.Err(), len(es), errs)
				case <-time.After(200 * time.Millisecond):
				}
			}
		}
		next = next.Add(tick)
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
	}
}

// sameRefusal reports whether one of msgs says what msg says after the
// task it names, so refusals are kept once per kind.
func sameRefusal(msgs []string, msg string) bool {
	key := func(s string) string {
		if i := strings.Index(s, ": "); i >= 0 {
			return s[i:]
		}
		return s
	}
	for _, m := range msgs {
		if key(m) == key(msg) {
			return true
		}
	}
	return false
}

// chaosResult is what a scenario run reports.
type chaosResult struct {
	Scenario     string         `json:"scenario"`
	Server       string         `json:"server"`
	Tried        int            `json:"submissions_tried"`
	Submitted    int            `json:"submitted"`
	Completed    int            `json:"completed"`
	Ended        map[string]int `json:"ended"`
	Retried      int            `json:"retried"`
	Reclaimed    int            `json:"reclaimed"`
	StaleResults int            `json:"stale_results"`
	DeadLettered int            `json:"dead_lettered"`
	Lost         int            `json:"lost"`
	LostAllowed  bool           `json:"lost_allowed,omitempty"`
	Duplicated   int            `json:"duplicated"`
	WrongOutcome int            `json:"wrong_outcome"`
	Violations   []string       `json:"violations"`
	Actions      []string       `json:"actions"`
	Acts         map[string]int `json:"acts"`
	Refusals     []string       `json:"refusals,omitempty"`
	Seconds      float64        `json:"seconds"`
}

// finish waits until every acknowledged task has ended (or, for those the
// history no longer has, until their number stops changing), runs the
// invariant checker, counts, reports and checks the counts. lostAllowed
// says the scenario is inside a documented durability window: lost tasks
// are counted, not failed.
func (cr *chaosRun) finish(timeout time.Duration, lostAllowed bool) chaosResult {
	cr.t.Helper()
	ctx := context.Background()
	cr.mu.Lock()
	ids := make([]string, 0, len(cr.want))
	for id := range cr.want {
		ids = append(ids, id)
	}
	cr.mu.Unlock()
	sort.Strings(ids)
	store := projections.NewStore(cr.rdb, cr.keys)
	var tasks []projections.Task
	open, missing, lastMissing, stableSince := 0, 0, -1, time.Now()
	deadline := time.Now().Add(timeout)
	for {
		tasks = tasks[:0]
		for i := 0; i < len(ids); i += 1000 {
			ts, err := store.TasksByID(ctx, ids[i:min(i+1000, len(ids))])
			if err != nil {
				cr.t.Logf("reading tasks: %v", err)
			}
			tasks = append(tasks, ts...)
		}
		open, missing = 0, len(ids)-len(tasks)
		for _, tk := range tasks {
			if !ended(tk.State) {
				open++
			}
		}
		if missing != lastMissing {
			lastMissing, stableSince = missing, time.Now()
		}
		if open == 0 && (missing == 0 || time.Since(stableSince) > 5*time.Second) {
			cr.act("ended", "all ended (%d acknowledged, %d missing from the history)", len(ids), missing)
			break
		}
		if time.Now().After(deadline) {
			cr.t.Errorf("after %s: %d of %d tasks still open, %d missing", timeout, open, len(ids), missing)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}

	// The invariant checker, as `celeroot events verify` runs it; the
	// projector may still be a moment behind the last events.
	var rep projections.Report
	var err error
	for try := 0; ; try++ {
		rep, err = projections.CheckInvariants(ctx, projections.NewHistory(cr.rdb, cr.keys, nil), projections.Retention{}, time.Now())
		if err == nil && len(rep.Violations) == 0 || try == 20 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		cr.t.Fatalf("events verify: %v", err)
	}
	res := chaosResult{Scenario: cr.name, Server: cr.srv.Name, Submitted: len(ids), Ended: map[string]int{},
		Retried: rep.Retries, Reclaimed: rep.Reclaims, StaleResults: rep.StaleResults, Duplicated: rep.Duplicated,
		Violations: rep.Violations, LostAllowed: lostAllowed, Seconds: time.Since(cr.start).Seconds()}
	for _, tk := range tasks {
		res.Ended[tk.State]++
		switch tk.State {
		case projections.TaskDead:
			res.DeadLettered++
		case string(events.Succeeded), string(events.Failed), string(events.TimedOut):
			res.Completed++
		}
		if w := cr.want[tk.ID]; tk.State != w && tk.State != projections.TaskDead && ended(tk.State) {
			res.WrongOutcome++
			if res.WrongOutcome <= 5 {
				cr.t.Errorf("task %s ended %s, want %s (attempts %+v)", tk.ID, tk.State, w, tk.Attempts)
			}
		}
	}
	res.Lost = missing + open
	cr.mu.Lock()
	res.Tried, res.Actions, res.Acts, res.Refusals = cr.tried, cr.actions, cr.acts, cr.refused
	cr.mu.Unlock()

	cr.t.Logf("chaos %s/%s: submitted %d, completed %d, retried %d, reclaimed %d (stale results %d), dead-lettered %d, lost %d, duplicated %d, wrong outcome %d, violations %d, in %.0fs",
		res.Scenario, res.Server, res.Submitted, res.Completed, res.Retried, res.Reclaimed, res.StaleResults, res.DeadLettered,
		res.Lost, res.Duplicated, res.WrongOutcome, len(res.Violations), res.Seconds)
	if *chaosReport != "" {
		b, _ := json.Marshal(res)
		f, err := os.OpenFile(*chaosReport, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			cr.t.Fatal(err)
		}
		fmt.Fprintf(f, "%s\n", b)
		f.Close()
	}
	for _, v := range rep.Violations {
		cr.t.Errorf("VIOLATION: %s", v)
	}
	if res.Duplicated != 0 {
		cr.t.Errorf("%d tasks have more than one outcome", res.Duplicated)
	}
	if res.Lost != 0 && !lostAllowed {
		cr.t.Errorf("%d acknowledged tasks lost (%d missing from the history, %d never ended)", res.Lost, missing, open)
	}
	if res.Completed+res.DeadLettered+res.Lost != res.Submitted {
		cr.t.Errorf("completed %d + dead-lettered %d + lost %d != submitted %d (ended: %v)", res.Completed, res.DeadLettered, res.Lost, res.Submitted, res.Ended)
	}
	return res
}

func ended(state string) bool {
	switch state {
	case projections.TaskWaiting, projections.TaskRunning, projections.TaskRetrying:
		return false
	}
	return true
}

// Agents killed with SIGKILL at random while tasks (with retries) run:
// each is restarted at once under its name; its queue entries are
// reclaimed. Nothing is lost, nothing ends twice.
func TestChaosKill(t *testing.T) {
	n := chaosSize(300, 10000)
	for _, srv := range streamstest.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			cr := newChaosRun(t, "kill", srv)
			hosts := cr.startAgents(4, srv.URL)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			done := make(chan struct{})
			go func() {
				defer close(done)
				rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
				for {
					select {
					case <-ctx.Done():
						return
					case <-time.After(time.Duration(500+rng.IntN(1000)) * time.Millisecond):
					}
					h := hosts[rng.IntN(len(hosts))]
					cr.signal(h, syscall.SIGKILL)
					cr.act("kill", "killed %s (SIGKILL)", h)
					cr.startAgent(h, srv.URL)
				}
			}()
			// A kill takes over a task only if it hits one running: at the
			// small size's 60 tasks a second, 300 ms tasks are about two in
			// flight across four agents, and five kills all missed them in
			// about one run in ten; 1 s tasks are six in flight.
			long := time.Duration(chaosSize(1000, 300)) * time.Millisecond
			cr.submit(ctx, n, chaosSize(60, 150), long)
			cancel()
			<-done
			res := cr.finish(5*time.Minute, false)
			if res.Acts["kill"] == 0 || res.Reclaimed == 0 {
				t.Errorf("%d kills and %d reclaims: the run did not test reclaim", res.Acts["kill"], res.Reclaimed)
			}
			if res.Retried == 0 {
				t.Error("no task was retried")
			}
		})
	}
}

// An agent paused (SIGSTOP) with tasks running, past the reclaim bound,
// then resumed: its tasks were taken over, and the results it reports when
// it wakes are recorded as stale, never as the tasks' outcomes.
func TestChaosPause(t *testing.T) {
	n := chaosSize(200, 2000)
	for _, srv := range streamstest.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			cr := newChaosRun(t, "pause", srv)
			hosts := cr.startAgents(3, srv.URL)
			submitted, done := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(done)
				for round := 0; ; round++ {
					h := hosts[round%len(hosts)]
					if !cr.waitRunning(h, submitted) {
						return
					}
					cr.signal(h, syscall.SIGSTOP)
					pause := 2*chaosReclaimIdle + time.Second
					cr.act("pause", "paused %s (SIGSTOP) for %s", h, pause)
					time.Sleep(pause)
					cr.signal(h, syscall.SIGCONT)
					cr.act("resume", "resumed %s (SIGCONT)", h)
					time.Sleep(2 * time.Second)
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			cr.submit(ctx, n, 40, 1500*time.Millisecond)
			close(submitted)
			<-done
			res := cr.finish(3*time.Minute, false)
			if res.Reclaimed == 0 || res.StaleResults == 0 {
				t.Errorf("reclaimed %d, stale results %d: a paused worker's tasks must be taken over and its late results kept as stale", res.Reclaimed, res.StaleResults)
			}
		})
	}
}

// Redis killed (SIGKILL) and restarted from its append-only file mid-run,
// with appendfsync always and everysec. With always, nothing acknowledged
// is lost; with everysec, what was acknowledged in the last second before
// the crash may be, and is counted.
func TestChaosRedisRestart(t *testing.T) {
	n := chaosSize(300, 3000)
	for _, fsync := range []string{"always", "everysec"} {
		t.Run(fsync, func(t *testing.T) {
			srv := streamstest.NewSingle(t, streamstest.WithConfig("appendfsync "+fsync))
			cr := newChaosRun(t, "restart-"+fsync, srv)
			cr.startAgents(3, srv.URL)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			done := make(chan struct{})
			go func() {
				defer close(done)
				for _, at := range []int{n / 3, 2 * n / 3} {
					if !cr.waitAcknowledged(ctx, at) {
						return
					}
					srv.Kill(t)
					cr.act("kill-redis", "killed redis-server (SIGKILL), appendfsync %s", fsync)
					time.Sleep(time.Second)
					srv.Start(t)
					cr.act("start-redis", "redis-server restarted from its AOF")
				}
			}()
			cr.submit(ctx, n, 300, 300*time.Millisecond)
			<-done
			res := cr.finish(3*time.Minute, fsync != "always")
			if res.Acts["kill-redis"] != 2 {
				t.Errorf("Redis was not killed twice: %v", res.Actions)
			}
		})
	}
}

// A Redis Cluster master killed mid-run: its replica takes over after the
// node timeout, clients follow the new slot map, and the run completes.
// Writes the old master acknowledged but had not yet replicated may be
// lost (replication is asynchronous): counted, not failed.
func TestChaosFailover(t *testing.T) {
	n := chaosSize(300, 3000)
	srv := streamstest.NewCluster(t, streamstest.WithReplicas(1))
	cr := newChaosRun(t, "failover", srv)
	cr.startAgents(3, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if !cr.waitAcknowledged(ctx, n/3) {
			return
		}
		// The master of the role's queue: every task goes through it.
		addr := srv.KillMaster(t, cr.keys.RoleQueue("webserver"))
		cr.act("kill-master", "killed the master %s of the queue's slot (SIGKILL)", addr)
		srv.WaitHealthy(t)
		cr.act("failover", "cluster healthy again: a replica took over")
	}()
	cr.submit(ctx, n, 200, 300*time.Millisecond)
	<-done
	res := cr.finish(3*time.Minute, true)
	if res.Acts["failover"] != 1 {
		t.Errorf("no failover happened: %v", res.Actions)
	}
}

// One agent cut off from Redis for longer than the reclaim bound, then
// healed: the others take its tasks over, it reconnects and carries on, and
// no task ends twice. Where the machine allows it (root, iproute2), the
// agent runs in a network namespace joined to the host by a veth pair, and
// the link is taken down: its connections hang, nothing is closed, as when
// a cable is pulled. Elsewhere a proxy that stops forwarding does the same.
func TestChaosPartition(t *testing.T) {
	n := chaosSize(200, 2000)
	var (
		srv       *streamstest.Server
		url       string
		cut, heal func()
		how       string
		wrap      []string
	)
	var link *netnsLink
	switch *chaosCut {
	case "auto", "netns":
		var err error
		if link, err = newNetnsLink(t); err != nil {
			if *chaosCut == "netns" {
				t.Fatalf("-chaos-partition=netns: %v", err)
			}
			t.Logf("cutting a1 off with a proxy: no network namespace: %v", err)
		}
	case "proxy":
		t.Logf("cutting a1 off with a proxy (-chaos-partition=proxy)")
	default:
		t.Fatalf("-chaos-partition=%q: use auto, netns or proxy", *chaosCut)
	}
	if link != nil {
		srv = streamstest.NewSingle(t, streamstest.WithConfig("bind 127.0.0.1 "+link.hostIP))
		_, port, _ := strings.Cut(srv.Addr(), ":")
		url, cut, heal, how, wrap = "redis://"+link.hostIP+":"+port, link.down, link.up, "took a1's link down (network namespace)", link.exec()
	} else {
		srv = streamstest.Single(t)
		proxy := streamstest.NewProxy(t, srv.Addr())
		url, cut, heal, how = proxy.URL(), proxy.Cut, proxy.Heal, "cut a1 off Redis (proxy)"
	}
	cr := newChaosRun(t, "partition", srv)
	cr.wrap = map[string][]string{"a1": wrap}
	cr.startAgent("a1", url)
	cr.startAgent("a2", srv.URL)
	cr.startAgent("a3", srv.URL)
	cr.waitHealthy("a1", "a2", "a3")
	submitted, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for round := 0; round < chaosSize(1, 3); round++ {
			if !cr.waitRunning("a1", submitted) {
				return
			}
			d := 2*chaosReclaimIdle + time.Second
			cut()
			cr.act("cut", "%s for %s", how, d)
			time.Sleep(d)
			heal()
			cr.act("heal", "healed a1's link")
			cr.waitHealthy("a1")
			cr.act("healthy", "a1 healthy again")
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cr.submit(ctx, n, 40, 1500*time.Millisecond)
	close(submitted)
	<-done
	res := cr.finish(3*time.Minute, false)
	if res.Acts["cut"] == 0 || res.Reclaimed == 0 {
		t.Errorf("%d cuts, %d reclaims: no task was reclaimed from the cut-off agent", res.Acts["cut"], res.Reclaimed)
	}
}

// netnsLink is a network namespace joined to the host by a veth pair:
// a process run in it (exec) reaches the host at hostIP.
type netnsLink struct {
	t                    *testing.T
	name, hostIf, hostIP string
}

// newNetnsLink makes a namespace and its link, removed when t ends, or
// says why it cannot.
func newNetnsLink(t *testing.T) (*netnsLink, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("not root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, err
	}
	id := rand.IntN(1 << 14) // a /30 of 10.213.0.0/16, and interface names under 15 bytes
	l := &netnsLink{t: t, name: fmt.Sprintf("celeroot-%d", id), hostIf: fmt.Sprintf("crh%d", id),
		hostIP: fmt.Sprintf("10.213.%d.%d", id/64, id%64*4+1)}
	nsIf, nsIP := fmt.Sprintf("crn%d", id), fmt.Sprintf("10.213.%d.%d", id/64, id%64*4+2)
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", l.name).Run() // and its end of the pair, and so the other
		_ = exec.Command("ip", "link", "del", l.hostIf).Run()
	})
	for _, args := range [][]string{
		{"netns", "add", l.name},
		{"link", "add", l.hostIf, "type", "veth", "peer", "name", nsIf},
		{"link", "set", nsIf, "netns", l.name},
		{"addr", "add", l.hostIP + "/30", "dev", l.hostIf},
		{"link", "set", l.hostIf, "up"},
		{"-n", l.name, "addr", "add", nsIP + "/30", "dev", nsIf},
		{"-n", l.name, "link", "set", nsIf, "up"},
		{"-n", l.name, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return l, nil
}

// exec is the command a program is run under to run in the namespace.
func (l *netnsLink) exec() []string { return []string{"ip", "netns", "exec", l.name} }

func (l *netnsLink) down() { l.ip("link", "set", l.hostIf, "down") }
func (l *netnsLink) up()   { l.ip("link", "set", l.hostIf, "up") }

func (l *netnsLink) ip(args ...string) {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// Redis at its memory limit (maxmemory, noeviction) mid-run: submissions
// are refused with Redis's OOM error and the CLI says so; reading still
// works; agents keep their unwritten results; nothing half-written is left
// behind; when room returns, every acknowledged task completes.
func TestChaosOutOfMemory(t *testing.T) {
	n := chaosSize(300, 3000)
	srv := streamstest.NewSingle(t, streamstest.WithConfig("maxmemory 64mb", "maxmemory-policy noeviction"))
	cr := newChaosRun(t, "oom", srv)
	cr.startAgents(3, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	done := make(chan struct{})
	var cliOut, statusErr string
	cliCode, statusCode := -1, -1
	go func() {
		defer close(done)
		if !cr.waitAcknowledged(ctx, n/3) {
			return
		}
		// Lower the limit under what is in use: every write is refused.
		c, err := streams.Counters(ctx, admin)
		if err != nil {
			t.Error(err)
			return
		}
		if err := admin.ConfigSet(ctx, "maxmemory", fmt.Sprint(c.Memory/2)).Err(); err != nil {
			t.Error(err)
			return
		}
		defer func() {
			if err := admin.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
				t.Error(err)
			}
			cr.act("room", "maxmemory lifted")
		}()
		cr.act("full", "maxmemory set to %d bytes, under the %d in use", c.Memory/2, c.Memory)
		_, cliOut, cliCode = runNoEnv("--redis", srv.URL, "--cluster", cr.cluster, "task", "run", "command", "--target", "role:webserver", "--", "true")
		cr.act("cli", "task run while full: exit %d", cliCode)
		_, statusErr, statusCode = runNoEnv("--redis", srv.URL, "--cluster", cr.cluster, "cluster", "status")
		cr.act("cli", "cluster status while full: exit %d", statusCode)
		time.Sleep(3 * time.Second)
	}()
	cr.submit(ctx, n, 300, 300*time.Millisecond)
	<-done
	res := cr.finish(3*time.Minute, false)
	if cliCode != 1 || !strings.Contains(cliOut, "maxmemory") {
		t.Errorf("task run while Redis is full: exit %d, stderr %q; want exit 1 and the memory limit named", cliCode, cliOut)
	}
	if statusCode != 0 {
		t.Errorf("cluster status while Redis is full: exit %d, %s; reading needs no room", statusCode, statusErr)
	}
	oom := false
	for _, r := range res.Refusals {
		oom = oom || strings.Contains(r, "OOM")
	}
	if !oom {
		t.Errorf("no submission was refused with OOM: %v", res.Refusals)
	}
	t.Logf("task run while full said: %s", strings.TrimSpace(cliOut))
}
