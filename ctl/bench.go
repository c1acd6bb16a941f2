package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v3"
)

// The bench command runs workloads through the real code paths (the
// agents are agent.Run with a no-op executor, many in this process) against
// a Redis, in a cluster namespace of its own that it deletes afterwards.

// benchRole is the role of the bench's simulated workers.
const benchRole = "bench"

func benchCommand() *cli.Command {
	common := func(extra ...cli.Flag) []cli.Flag {
		return append([]cli.Flag{
			outputFlag(),
			&cli.BoolFlag{Name: "keep", Usage: "keep the bench cluster's keys afterwards (they are deleted by default)"},
			&cli.StringFlag{Name: "cpuprofile", Usage: "write a Go CPU profile of the run to this file"},
		}, extra...)
	}
	return &cli.Command{
		Name:  "bench",
		Usage: "measure throughput, latency, fan-out, a large fleet, rebuild and footprint against a Redis",
		Description: `Each scenario runs the real code (agents are 'celeroot agent' code with a
no-op executor, many in this process) against the Redis of --redis, by default
the one 'celeroot dev' starts (redis://127.0.0.1:6390), in a throwaway cluster
namespace (bench-<id>) whose keys are deleted afterwards. Nothing of another
cluster is touched.

CPU figures are this process's (submitters, agents and projectors together)
and the Redis server's, per task: they show what the work costs whatever else
runs on the machine. Round trips count the Redis calls this process made
(a pipeline counts once).

Examples:
  celeroot bench throughput --tasks 100000 --agents 4
  celeroot bench throughput --exec /bin/true --tasks 5000
  celeroot bench latency --rate 2000 --duration 10s
  celeroot bench fanout --workers 1000
  celeroot bench fleet --workers 10000 --duration 60s
  celeroot bench rebuild --events 1000000
  celeroot bench footprint
  celeroot bench all --short -o json`,
		Commands: []*cli.Command{
			{
				Name:  "throughput",
				Usage: "push N tasks through the full path (submit, dispatch, execute, result, projection) with K agents",
				Description: `The tasks are submitted in batches (--batch per round trip) to the role
queue of K in-process agents and counted once every one is projected as
ended. Tasks per second is from the first submission to the last result
projected.

Examples:
  celeroot bench throughput
  celeroot bench throughput --tasks 20000 --agents 2 --concurrency 64
  celeroot bench throughput --exec /bin/true --tasks 5000`,
				Flags: common(
					&cli.IntFlag{Name: "tasks", Usage: "tasks to run", Value: 100000},
					&cli.IntFlag{Name: "agents", Usage: "agents (each with its own connection pool, as separate processes would have)", Value: 4},
					&cli.IntFlag{Name: "concurrency", Usage: "tasks each agent runs at once", Value: 256},
					&cli.IntFlag{Name: "projectors", Usage: "agents that also run the projector", Value: 2},
					&cli.IntFlag{Name: "batch", Usage: "tasks per submission round trip", Value: 256},
					&cli.IntFlag{Name: "submitters", Usage: "goroutines submitting", Value: 2},
					&cli.StringFlag{Name: "exec", Usage: "run this command for each task (e.g. /bin/true) instead of the no-op executor"},
				),
				Action: benchAction(runThroughput),
			},
			{
				Name:  "latency",
				Usage: "submit tasks one by one at a fixed rate; submit-to-start and submit-to-result percentiles",
				Description: `Tasks are submitted one at a time, as 'celeroot task run' does, at a fixed
rate whatever the answers take (an open loop). Submit to start is from the
submission event to the start event; submit to result, to the finish event.
The agents run in a process of their own (as they do on their hosts), so
that their goroutines and the submitters' do not queue for the same Go
scheduler; --in-process runs them here, and the figures then include that
contention.

Examples:
  celeroot bench latency
  celeroot bench latency --rate 500 --duration 30s`,
				Flags: common(
					&cli.IntFlag{Name: "rate", Usage: "tasks per second", Value: 2000},
					&cli.DurationFlag{Name: "duration", Usage: "how long to submit", Value: 10 * time.Second},
					&cli.IntFlag{Name: "agents", Usage: "agents", Value: 4},
					&cli.IntFlag{Name: "concurrency", Usage: "tasks each agent runs at once", Value: 64},
					&cli.IntFlag{Name: "projectors", Usage: "agents that also run the projector", Value: 2},
					&cli.BoolFlag{Name: "in-process", Usage: "run the agents in this process, with the submitters, rather than in a process of their own"},
				),
				Action: benchAction(runLatency),
			},
			{
				Name:   "agents",
				Hidden: true,
				Usage:  "run simulated agents (no-op executor) for a bench running in another process, until standard input closes",
				Description: `'celeroot bench latency' starts it in a process of its own, with --cluster
naming the bench namespace; it prints "ready" once its agents run.

Examples:
  celeroot --cluster bench-0123456789 bench agents --agents 4 --projectors 2`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "prefix", Usage: "hostnames are <prefix><n>", Value: "agent"},
					&cli.IntFlag{Name: "agents", Usage: "agents", Value: 4},
					&cli.IntFlag{Name: "concurrency", Usage: "tasks each agent runs at once", Value: 64},
					&cli.IntFlag{Name: "projectors", Usage: "agents that also run the projector", Value: 2},
				},
				Action: benchAgents,
			},
			{
				Name:  "fanout",
				Usage: "one run targeted at all workers of a simulated fleet; time until every result is projected",
				Description: `What 'celeroot task run command --target all' does on a fleet of simulated
workers: resolve the targets, submit one task per worker in one batch, and
wait until every result is projected.

Examples:
  celeroot bench fanout
  celeroot bench fanout --workers 200`,
				Flags:  common(&cli.IntFlag{Name: "workers", Usage: "simulated workers", Value: 1000}),
				Action: benchAction(runFanout),
			},
			{
				Name:  "fleet",
				Usage: "a simulated fleet heartbeating; Redis CPU and memory, heartbeat-to-projection lag, status latency",
				Description: `Simulated workers register and heartbeat; meanwhile the heartbeats' lag
into the projections is sampled, and 'cluster status' and 'workers list'
are timed every 5 seconds. The open-file limit and Redis maxclients are raised
where allowed; otherwise the error says what to change.

Examples:
  celeroot bench fleet
  celeroot bench fleet --workers 1000 --duration 20s`,
				Flags: common(
					&cli.IntFlag{Name: "workers", Usage: "simulated workers", Value: 10000},
					&cli.DurationFlag{Name: "duration", Usage: "how long to watch once all are registered", Value: 60 * time.Second},
					&cli.DurationFlag{Name: "heartbeat", Usage: "heartbeat interval", Value: agent.DefaultHeartbeat},
				),
				Action: benchAction(runFleet),
			},
			{
				Name:  "rebuild",
				Usage: "rebuild the projections from a history of N events",
				Description: `Fills the event store with a history of tasks and heartbeats, then rebuilds
every projection from it, as 'celeroot projections rebuild' does.

Examples:
  celeroot bench rebuild
  celeroot bench rebuild --events 100000`,
				Flags:  common(&cli.IntFlag{Name: "events", Usage: "events in the history", Value: 1000000}),
				Action: benchAction(runRebuild),
			},
			{
				Name:  "footprint",
				Usage: "a real agent process's memory idle and under load; Redis memory per finished task and per worker",
				Description: `Starts a real 'celeroot agent' process, reads its resident memory once
idle and at its peak while it runs /bin/true tasks, then measures the Redis
memory a finished task and a registered worker take.

Examples:
  celeroot bench footprint
  celeroot bench footprint --tasks 500 --workers 200`,
				Flags: common(
					&cli.IntFlag{Name: "tasks", Usage: "tasks (/bin/true) run through the agent process", Value: 2000},
					&cli.IntFlag{Name: "workers", Usage: "simulated workers for the memory per worker", Value: 1000},
					&cli.DurationFlag{Name: "idle", Usage: "how long the agent idles before its memory is read", Value: 10 * time.Second},
				),
				Action: benchAction(runFootprint),
			},
			{
				Name:  "raw",
				Usage: "the bare Redis Streams cycle, for comparison: XADD, XREADGROUP, XADD a result and XACK",
				Description: `The ceiling the full path is compared with, on the same Redis at the same
time: tasks of 200 bytes appended in pipelines of 1000, read by K consumers
in reads of up to 1000, each answered with a result entry and acknowledged,
pipelined. No fence, no event envelope, no projection.

Examples:
  celeroot bench raw
  celeroot bench raw --tasks 200000 --consumers 4`,
				Flags: common(
					&cli.IntFlag{Name: "tasks", Usage: "tasks", Value: 500000},
					&cli.IntFlag{Name: "consumers", Usage: "consumers", Value: 4},
				),
				Action: benchAction(runRaw),
			},
			{
				Name:  "all",
				Usage: "every scenario, one after the other (--short: small sizes, for a quick check)",
				Description: `Examples:
  celeroot bench all
  celeroot bench all --short -o json > bench.json`,
				Flags:  common(&cli.BoolFlag{Name: "short", Usage: "small sizes: seconds, not minutes"}),
				Action: benchAll,
			},
		},
	}
}

// benchAction connects, runs a scenario in a fresh cluster namespace,
// prints its result and cleans up.
func benchAction(run func(ctx context.Context, b *bench, cmd *cli.Command) (benchResult, error)) cli.ActionFunc {
	return func(ctx context.Context, cmd *cli.Command) error {
		format, err := outputFormat(cmd)
		if err != nil {
			return err
		}
		if err := checkFlags(cmd); err != nil {
			return err
		}
		b, err := newBench(ctx, cmd)
		if err != nil {
			return err
		}
		defer b.close(ctx, cmd.Bool("keep"))
		if path := cmd.String("cpuprofile"); path != "" {
			f, err := os.Create(path)
			if err != nil {
				return usagef("--cpuprofile: %v", err)
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
		}
		res, err := run(ctx, b, cmd)
		if err != nil {
			return err
		}
		return printBench(cmd.Root().Writer, format, []benchResult{res})
	}
}

// checkFlags refuses, before anything connects, a size or duration flag
// that is not positive, more projectors than agents, and an --exec
// command that cannot be found (every task would fail, and the figures
// would be of the failures).
func checkFlags(cmd *cli.Command) error {
	for _, f := range cmd.Flags {
		name := f.Names()[0]
		switch f.(type) {
		case *cli.IntFlag:
			if cmd.Int(name) < 1 {
				return usagef("--%s %d: must be at least 1", name, cmd.Int(name))
			}
		case *cli.DurationFlag:
			if cmd.Duration(name) <= 0 {
				return usagef("--%s %s: must be a positive duration, such as 10s", name, cmd.Duration(name))
			}
		}
	}
	if lookupFlag(cmd, "projectors") != nil && lookupFlag(cmd, "agents") != nil {
		if p, a := cmd.Int("projectors"), cmd.Int("agents"); p > a {
			return usagef("--projectors %d: at most --agents (%d); projectors run in agents", p, a)
		}
	}
	if c := cmd.String("exec"); c != "" {
		if _, err := exec.LookPath(c); err != nil {
			return usagef("--exec %q: %v (give a program on $PATH or its path, as in /bin/true)", c, errors.Unwrap(err))
		}
	}
	return nil
}

// bench is one run's connection and namespace.
type bench struct {
	// where is where it connects, for a process of agents to connect to
	// the same Redis.
	where conn
	conn  *streams.ConnConfig
	admin redis.UniversalClient
	keys  streams.Keys
	// trips counts the Redis calls of every client the bench made.
	trips atomic.Int64
	logw  io.Writer
}

func newBench(ctx context.Context, cmd *cli.Command) (*bench, error) {
	b, err := openBench(ctx, cmd, benchPrefix+strings.ToLower(ulid.Make().String()[16:]))
	if err != nil {
		return nil, err
	}
	if _, _, err := streams.Init(ctx, b.admin, b.keys, "bench"); err != nil {
		b.close(ctx, false)
		return nil, err
	}
	return b, nil
}

// benchPrefix starts the name of every bench namespace.
const benchPrefix = "bench-"

// openBench connects to the Redis of the global flags (by default the dev
// one) and to the cluster namespace name, or --cluster's if name is "".
func openBench(ctx context.Context, cmd *cli.Command, name string) (*bench, error) {
	c, err := connection(cmd)
	if err != nil {
		return nil, err
	}
	if !cmd.IsSet("redis") && c.url == DefaultRedisURL {
		c.url = fmt.Sprintf("redis://127.0.0.1:%d", DefaultDevPort)
	}
	if name == "" {
		name = c.cluster
	}
	cfg, err := c.parse()
	if err != nil {
		return nil, err
	}
	admin, err := streams.Connect(ctx, cfg, 0, connectTimeout)
	if err != nil {
		return nil, fmt.Errorf("%w; or start one with 'celeroot dev', which bench uses when --redis is not given", err)
	}
	keys, err := streams.LoadKeys(ctx, admin, name)
	if err != nil {
		admin.Close()
		return nil, err
	}
	return &bench{where: c, conn: cfg, admin: admin, keys: keys, logw: cmd.Root().ErrWriter}, nil
}

func (b *bench) close(ctx context.Context, keep bool) {
	if !keep {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if _, err := streams.DeleteCluster(ctx, b.admin, b.keys); err != nil {
			fmt.Fprintf(b.logw, "celeroot: bench: could not delete the bench cluster %s: %v\n", b.keys.Cluster, err)
		}
	} else {
		fmt.Fprintf(b.logw, "bench cluster kept: --cluster %s\n", b.keys.Cluster)
	}
	b.admin.Close()
}

// client opens a client of its own (with its own pool of at most pool
// connections) that counts its round trips.
func (b *bench) client(ctx context.Context, pool int) (redis.UniversalClient, error) {
	cfg := *b.conn
	cfg.Options.MaxActiveConns = pool
	rdb, err := streams.Connect(ctx, &cfg, pool, connectTimeout)
	if err != nil {
		return nil, err
	}
	rdb.AddHook(tripHook{&b.trips})
	return rdb, nil
}

// tripHook counts commands and pipelines (a pipeline counts once).
type tripHook struct{ n *atomic.Int64 }

func (h tripHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h tripHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h tripHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// fleet is a set of agents running in this process.
type fleet struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	clients []redis.UniversalClient
	mu      sync.Mutex
	errs    []error
}

// agentSpec says how to run the simulated agents of a scenario.
type agentSpec struct {
	n int
	// perClient agents share one client (1: each has its own pool).
	perClient   int
	concurrency int
	projectors  int
	exec        agent.Executor
	heartbeat   time.Duration
}

// startFleet starts spec.n agents named <prefix><i> of role bench and
// returns once they run.
func (b *bench) startFleet(ctx context.Context, prefix string, spec agentSpec) (*fleet, error) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f := &fleet{cancel: cancel}
	logger := slog.New(slog.NewTextHandler(b.logw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if spec.perClient < 1 {
		spec.perClient = 1
	}
	cfgs := make([]agent.Config, spec.n)
	for i := range cfgs {
		cfgs[i] = agent.Config{Keys: b.keys, Hostname: fmt.Sprintf("%s%d", prefix, i), Role: benchRole,
			Version: Version, Concurrency: spec.concurrency, Projector: i < spec.projectors, Exec: spec.exec,
			Heartbeat: spec.heartbeat, Scheduler: agent.SchedulerNever, ShutdownTimeout: 5 * time.Second, Logger: logger}
	}
	// Every client first, then the agents, at most startRate a second: a
	// fleet does not start in one instant.
	pool := cfgs[0].PoolSize()
	if spec.perClient > 1 {
		// Shared by many agents: a connection for each one's blocking
		// read, and a few for everything else they send.
		pool = spec.perClient + 16
	}
	for i := 0; i < spec.n; i += spec.perClient {
		rdb, err := b.client(ctx, pool)
		if err != nil {
			f.stop()
			return nil, err
		}
		f.clients = append(f.clients, rdb)
	}
	const startRate = 2000
	began := time.Now()
	for i, cfg := range cfgs {
		if d := time.Until(began.Add(time.Duration(i) * time.Second / startRate)); d > 0 {
			time.Sleep(d)
		}
		rdb := f.clients[i/spec.perClient]
		f.wg.Add(1)
		go func(rdb redis.UniversalClient) {
			defer f.wg.Done()
			if err := agent.Run(ctx, rdb, cfg); err != nil && ctx.Err() == nil {
				f.mu.Lock()
				f.errs = append(f.errs, fmt.Errorf("agent %s: %w", cfg.Hostname, err))
				f.mu.Unlock()
			}
		}(rdb)
	}
	return f, nil
}

// agentProcess is a fleet of simulated agents in a process of its own
// ('celeroot bench agents'), as agents on their hosts are: their
// goroutines do not share a Go scheduler with the submitters.
type agentProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
	out   bytes.Buffer // its standard error
}

// startAgentProcess starts spec's agents (no-op executor) in a child
// process of this program, connected to the same Redis and bench
// namespace, and returns once it says they run.
func (b *bench) startAgentProcess(ctx context.Context, prefix string, spec agentSpec) (*agentProcess, error) {
	bin, err := selfBinary()
	if err != nil {
		return nil, err
	}
	p := &agentProcess{done: make(chan struct{})}
	p.cmd = exec.Command(bin, "--log-level", "warn", "bench", "agents", "--prefix", prefix,
		"--agents", strconv.Itoa(spec.n), "--concurrency", strconv.Itoa(spec.concurrency), "--projectors", strconv.Itoa(spec.projectors))
	// The connection goes in the environment, never in argv.
	p.cmd.Env = append(os.Environ(), "CELEROOT_REDIS_URL="+b.where.url, "CELEROOT_CLUSTER="+b.keys.Cluster,
		streams.EnvUsername+"="+b.conn.Options.Username, streams.EnvPassword+"="+b.conn.Options.Password, "CELEROOT_CONTEXT=")
	p.cmd.Stderr = &p.out
	ready, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the agent process: %w", err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	line := make(chan error, 1)
	go func() {
		buf := make([]byte, 6)
		_, err := io.ReadFull(ready, buf)
		if err == nil && string(buf) != "ready\n" {
			err = fmt.Errorf("said %q", buf)
		}
		line <- err
	}()
	select {
	case err = <-line:
	case <-time.After(time.Minute):
		err = errors.New("not ready within a minute")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("agent process: %v: %s", err, strings.TrimSpace(p.out.String()))
	}
	return p, nil
}

// cpu is the process's CPU time so far.
func (p *agentProcess) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces): utime and
	// stime are the 12th and 13th, in clock ticks (100 a second here).
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// err says that the process exited, which it does only when stopped.
func (p *agentProcess) err() error {
	select {
	case <-p.done:
		return fmt.Errorf("agent process exited: %s: %s", p.cmd.ProcessState, strings.TrimSpace(p.out.String()))
	default:
		return nil
	}
}

// stop closes the process's standard input, which stops its agents, and
// waits for it to exit.
func (p *agentProcess) stop() error {
	_ = p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	if !p.cmd.ProcessState.Success() {
		return fmt.Errorf("agent process: %s: %s", p.cmd.ProcessState, strings.TrimSpace(p.out.String()))
	}
	return nil
}

// benchAgents is 'celeroot bench agents': the other side of
// startAgentProcess.
func benchAgents(ctx context.Context, cmd *cli.Command) error {
	// Simulated agents in a real cluster would take its tasks: only a
	// bench namespace (which 'celeroot bench' creates and deletes) is
	// served.
	if c := cmd.String("cluster"); !strings.HasPrefix(c, benchPrefix) {
		return usagef("--cluster %q: bench agents serves a bench namespace only (%s..., made by 'celeroot bench latency'), never a real cluster", c, benchPrefix)
	}
	b, err := openBench(ctx, cmd, "")
	if err != nil {
		return err
	}
	defer b.admin.Close()
	f, err := b.startFleet(ctx, cmd.String("prefix"), agentSpec{n: int(cmd.Int("agents")), concurrency: int(cmd.Int("concurrency")),
		projectors: int(cmd.Int("projectors")), exec: agent.NopExecutor{}})
	if err != nil {
		return err
	}
	fmt.Fprint(cmd.Root().Writer, "ready\n")
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, cmd.Root().Reader)
		close(eof)
	}()
	select {
	case <-eof:
	case <-ctx.Done():
	}
	return f.stop()
}

func (f *fleet) stop() error {
	f.cancel()
	f.wg.Wait()
	for _, c := range f.clients {
		c.Close()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return errors.Join(f.errs...)
}

func (f *fleet) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return errors.Join(f.errs...)
}

// agentSet is where a scenario's simulated agents run: a fleet in this
// process or an agentProcess. err reports their failure.
type agentSet interface{ err() error }

// waitWorkers waits until n workers are registered in the projections.
func (b *bench) waitWorkers(ctx context.Context, f agentSet, n int, within time.Duration) error {
	store := projections.NewStore(b.admin, b.keys)
	deadline := time.Now().Add(within)
	for {
		ws, err := store.Workers(ctx)
		if err != nil {
			return err
		}
		if len(ws) >= n {
			return nil
		}
		if err := f.err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d workers registered after %s", len(ws), n, within)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// waitEnded waits until every task of ids is projected as ended and
// returns when the last one was seen.
func (b *bench) waitEnded(ctx context.Context, f agentSet, ids []string, within time.Duration) (time.Time, error) {
	store := projections.NewStore(b.admin, b.keys)
	start := time.Now()
	deadline := start.Add(within)
	left := ids
	for {
		// Tasks end roughly in order: look at the newest first, and count
		// everything only once it is done.
		probe := left[len(left)-min(len(left), 16):]
		n, err := store.CountEnded(ctx, probe)
		if err != nil {
			return time.Time{}, err
		}
		if n == len(probe) {
			if n, err = store.CountEnded(ctx, left); err != nil {
				return time.Time{}, err
			}
			if n == len(left) {
				return time.Now(), nil
			}
		}
		if err := f.err(); err != nil {
			return time.Time{}, err
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%d of %d tasks not ended after %s", len(left)-n, len(ids), within)
		}
		// Polled often enough to time the end within half a percent, and
		// no more often: the polls are Redis work the figures would count.
		if err := sleepCtx(ctx, min(max(time.Since(start)/200, 2*time.Millisecond), 20*time.Millisecond)); err != nil {
			return time.Time{}, err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// usage is what a measured stretch cost.
type usage struct {
	wall time.Duration
	// selfCPU is this process's CPU time, and its agent process's.
	selfCPU time.Duration
	server  streams.ServerCounters
	trips   int64
	// tripsHere is set when agents ran in a process of their own: trips
	// then counts this process's calls only.
	tripsHere bool
}

type meter struct {
	b      *bench
	start  time.Time
	cpu    time.Duration
	server streams.ServerCounters
	trips  int64
	// child, if set, is the agent process whose CPU time counts too, from
	// childCPU on.
	child    *agentProcess
	childCPU time.Duration
}

// watch makes the agent process p's CPU time from now on count.
func (m *meter) watch(p *agentProcess) {
	if p != nil {
		m.child, m.childCPU = p, p.cpu()
	}
}

func (b *bench) meter(ctx context.Context) (*meter, error) {
	sc, err := streams.Counters(ctx, b.admin)
	if err != nil {
		return nil, err
	}
	return &meter{b: b, start: time.Now(), cpu: selfCPU(), server: sc, trips: b.trips.Load()}, nil
}

func (m *meter) read(ctx context.Context) (usage, error) {
	u := usage{wall: time.Since(m.start), selfCPU: selfCPU() - m.cpu, trips: m.b.trips.Load() - m.trips}
	if m.child != nil {
		u.selfCPU += m.child.cpu() - m.childCPU
		u.tripsHere = true
	}
	sc, err := streams.Counters(ctx, m.b.admin)
	if err != nil {
		return u, err
	}
	u.server = streams.ServerCounters{CPU: sc.CPU - m.server.CPU, Commands: sc.Commands - m.server.Commands,
		Memory: sc.Memory - m.server.Memory, Clients: sc.Clients, Nodes: sc.Nodes}
	return u, nil
}

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchResult is one scenario's figures, in the order they are printed.
type benchResult struct {
	Scenario string         `json:"scenario"`
	Params   map[string]any `json:"params"`
	Figures  []benchFigure  `json:"figures"`
}

type benchFigure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

func (r *benchResult) add(name string, v float64, unit string) {
	r.Figures = append(r.Figures, benchFigure{Name: name, Value: v, Unit: unit})
}

// addUsage adds the per-task costs of u over n tasks.
func (r *benchResult) addUsage(u usage, n int) {
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
	r.add("client CPU per task", per(u.selfCPU), "µs")
	r.add("Redis CPU per task", per(u.server.CPU), "µs")
	r.add("Redis commands per task", float64(u.server.Commands)/float64(n), "")
	if u.tripsHere {
		r.add("round trips per task of the submitters", float64(u.trips)/float64(n), "")
	} else {
		r.add("round trips per task", float64(u.trips)/float64(n), "")
	}
	r.add("client CPU", 100*u.selfCPU.Seconds()/u.wall.Seconds(), "% of a core")
	r.add("Redis CPU", 100*u.server.CPU.Seconds()/u.wall.Seconds(), "% of a core")
}

func printBench(w io.Writer, format string, results []benchResult) error {
	if ok, err := writeData(w, format, results); ok || err != nil {
		return err
	}
	for i, r := range results {
		if i > 0 {
			fmt.Fprintln(w)
		}
		var params []string
		for _, k := range sortedKeys(r.Params) {
			params = append(params, fmt.Sprintf("%s=%v", k, r.Params[k]))
		}
		fmt.Fprintf(w, "%s (%s)\n", r.Scenario, strings.Join(params, " "))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, f := range r.Figures {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", f.Name, formatFigure(f.Value), f.Unit)
		}
		tw.Flush()
	}
	return nil
}

func formatFigure(v float64) string {
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return fmt.Sprintf("%d", int64(v))
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// machine describes where the bench ran, for the record.
func (b *bench) machine(ctx context.Context) map[string]any {
	m := map[string]any{"cpus": runtime.NumCPU(), "go": runtime.Version()}
	if si, err := streams.Info(ctx, b.admin); err == nil {
		m["redis"] = si.Version
		m["redis_mode"] = si.Mode
		m["aof"] = si.AOF
		if si.AppendFsync != "" {
			m["appendfsync"] = si.AppendFsync
		}
	}
	return m
}

func runThroughput(ctx context.Context, b *bench, cmd *cli.Command) (benchResult, error) {
	n, agents := int(cmd.Int("tasks")), int(cmd.Int("agents"))
	batch, submitters := max(int(cmd.Int("batch")), 1), max(int(cmd.Int("submitters")), 1)
	spec := agentSpec{n: agents, concurrency: int(cmd.Int("concurrency")), projectors: int(cmd.Int("projectors")),
		exec: agent.NopExecutor{}}
	argv := []string{"true"}
	if c := cmd.String("exec"); c != "" {
		spec.exec, argv = agent.CommandExecutor{}, []string{c}
	}
	params := b.machine(ctx)
	for k, v := range map[string]any{"tasks": n, "agents": agents, "concurrency": spec.concurrency,
		"projectors": spec.projectors, "batch": batch, "submitters": submitters, "exec": strings.Join(argv, " ")} {
		params[k] = v
	}
	if cmd.String("exec") == "" {
		params["exec"] = "no-op"
	}
	f, err := b.startFleet(ctx, "tp", spec)
	if err != nil {
		return benchResult{}, err
	}
	defer f.stop()
	if err := b.waitWorkers(ctx, f, agents, 30*time.Second); err != nil {
		return benchResult{}, err
	}
	sub, err := b.client(ctx, submitters*2)
	if err != nil {
		return benchResult{}, err
	}
	defer sub.Close()
	log := streams.NewLog(sub, b.keys)
	src := events.Source{Cluster: b.keys.Cluster, Actor: "bench"}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = ulid.Make().String()
	}
	m, err := b.meter(ctx)
	if err != nil {
		return benchResult{}, err
	}
	var wg sync.WaitGroup
	var subErr atomic.Pointer[error]
	next := atomic.Int64{}
	for range submitters {
		wg.Go(func() {
			evs := make([]events.Envelope, 0, batch)
			for {
				lo := int(next.Add(int64(batch))) - batch
				if lo >= n {
					return
				}
				evs = evs[:0]
				for _, id := range ids[lo:min(lo+batch, n)] {
					evs = append(evs, src.New(events.TaskSubmitted{TaskID: id, Task: "command", Argv: argv,
						Route: events.RouteQueue, Target: benchRole}, events.WithCorrelation(id)))
				}
				if _, errs := log.SubmitBatch(ctx, evs); errors.Join(errs...) != nil {
					err := errors.Join(errs...)
					subErr.Store(&err)
					return
				}
			}
		})
	}
	wg.Wait()
	if p := subErr.Load(); p != nil {
		return benchResult{}, fmt.Errorf("submit: %w", *p)
	}
	submitted := time.Since(m.start)
	end, err := b.waitEnded(ctx, f, ids, 10*time.Minute)
	if err != nil {
		return benchResult{}, err
	}
	u, err := m.read(ctx)
	if err != nil {
		return benchResult{}, err
	}
	took := end.Sub(m.start)
	res := benchResult{Scenario: "throughput", Params: params}
	res.add("tasks per second", float64(n)/took.Seconds(), "tasks/s")
	res.add("submissions per second", float64(n)/submitted.Seconds(), "tasks/s")
	res.add("elapsed", took.Seconds(), "s")
	res.addUsage(u, n)
	return res, f.err()
}

// percentiles of ds (sorted in place): p50, p99, p99.9, max.
func percentiles(ds []time.Duration) (p50, p99, p999, mx time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration {
		i := int(math.Ceil(q*float64(len(ds)))) - 1
		return ds[max(0, min(i, len(ds)-1))]
	}
	return at(0.50), at(0.99), at(0.999), ds[len(ds)-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func runLatency(ctx context.Context, b *bench, cmd *cli.Command) (benchResult, error) {
	rate, dur, agents := int(cmd.Int("rate")), cmd.Duration("duration"), int(cmd.Int("agents"))
	spec := agentSpec{n: agents, concurrency: int(cmd.Int("concurrency")), projectors: int(cmd.Int("projectors")),
		exec: agent.NopExecutor{}}
	params := b.machine(ctx)
	for k, v := range map[string]any{"rate": rate, "duration": dur.String(), "agents": agents,
		"concurrency": spec.concurrency, "projectors": spec.projectors} {
		params[k] = v
	}
	var f agentSet
	var child *agentProcess
	if cmd.Bool("in-process") {
		params["agents_in"] = "this process"
		fl, err := b.startFleet(ctx, "lat", spec)
		if err != nil {
			return benchResult{}, err
		}
		defer fl.stop()
		f = fl
	} else {
		params["agents_in"] = "their own process"
		var err error
		if child, err = b.startAgentProcess(ctx, "lat", spec); err != nil {
			return benchResult{}, err
		}
		defer child.stop()
		f = child
	}
	if err := b.waitWorkers(ctx, f, agents, 30*time.Second); err != nil {
		return benchResult{}, err
	}
	// Submitters are independent of one another (an open loop): a slow
	// submission does not hold back the next one.
	sub, err := b.client(ctx, 64)
	if err != nil {
		return benchResult{}, err
	}
	defer sub.Close()
	log := streams.NewLog(sub, b.keys)
	src := events.Source{Cluster: b.keys.Cluster, Actor: "bench"}
	total := int(float64(rate) * dur.Seconds())
	ids := make([]string, 0, total)
	interval := time.Second / time.Duration(rate)
	m, err := b.meter(ctx)
	if err != nil {
		return benchResult{}, err
	}
	m.watch(child)
	// A pool of submitters fed at the pace: a slow submission holds back
	// only its own submitter, not the schedule.
	var wg sync.WaitGroup
	var failed atomic.Int64
	due := make(chan string, 1024)
	for range 64 {
		wg.Go(func() {
			for id := range due {
				e := src.New(events.TaskSubmitted{TaskID: id, Task: "command", Argv: []string{"true"},
					Route: events.RouteQueue, Target: benchRole}, events.WithCorrelation(id))
				if _, err := log.Submit(ctx, e); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	start := time.Now()
	for i := range total {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		id := ulid.Make().String()
		ids = append(ids, id)
		due <- id
		if ctx.Err() != nil {
			break
		}
	}
	close(due)
	wg.Wait()
	offered := time.Since(start)
	if n := failed.Load(); n > 0 {
		return benchResult{}, fmt.Errorf("%d submissions failed", n)
	}
	if _, err := b.waitEnded(ctx, f, ids, 5*time.Minute); err != nil {
		return benchResult{}, err
	}
	u, err := m.read(ctx)
	if err != nil {
		return benchResult{}, err
	}
	store := projections.NewStore(b.admin, b.keys)
	var toStart, toResult []time.Duration
	for chunk := range slices.Chunk(ids, 500) {
		tasks, err := store.TasksByID(ctx, chunk)
		if err != nil {
			return benchResult{}, err
		}
		for _, t := range tasks {
			if len(t.Attempts) == 0 || t.FinishedAt.IsZero() {
				continue
			}
			toStart = append(toStart, t.Attempts[0].StartedAt.Sub(t.SubmittedAt))
			toResult = append(toResult, t.FinishedAt.Sub(t.SubmittedAt))
		}
	}
	res := benchResult{Scenario: "latency", Params: params}
	res.add("offered rate", float64(len(ids))/offered.Seconds(), "tasks/s")
	for _, s := range []struct {
		name string
		ds   []time.Duration
	}{{"submit to start", toStart}, {"submit to result", toResult}} {
		p50, p99, p999, mx := percentiles(s.ds)
		res.add(s.name+" p50", ms(p50), "ms")
		res.add(s.name+" p99", ms(p99), "ms")
		res.add(s.name+" p99.9", ms(p999), "ms")
		res.add(s.name+" max", ms(mx), "ms")
	}
	res.addUsage(u, len(ids))
	return res, f.err()
}

// fleetClients sizes the simulated fleets: agents per shared client.
const fleetAgentsPerClient = 100

// raiseOpenFiles lifts this process's open-file limit to at least n, as
// far as the system allows, and reports the limit in force.
func raiseOpenFiles(n uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= n {
		return lim.Cur, nil
	}
	want := lim
	want.Cur = n
	if want.Max < n {
		want.Max = n // allowed to a privileged process only
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		want.Cur, want.Max = lim.Max, lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			return lim.Cur, err
		}
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	return lim.Cur, nil
}

// ensureConnections makes sure this process and Redis can hold about n
// more connections, raising the limits where allowed, or says what to do.
func (b *bench) ensureConnections(ctx context.Context, n int) error {
	need := uint64(n + 1024)
	got, err := raiseOpenFiles(need)
	if err != nil || got < need {
		return fmt.Errorf("this fleet needs about %d connections but this process may open %d files; raise the limit (ulimit -n %d) or use fewer --workers", n, got, need)
	}
	sc, err := streams.Counters(ctx, b.admin)
	if err != nil {
		return err
	}
	want := int(sc.Clients) + n + 1024
	return forEachMaster(ctx, b.admin, func(ctx context.Context, c *redis.Client) error {
		v, err := c.ConfigGet(ctx, "maxclients").Result()
		if err != nil {
			return fmt.Errorf("read Redis maxclients: %w", err)
		}
		var have int
		fmt.Sscan(v["maxclients"], &have)
		if have >= want {
			return nil
		}
		if err := c.ConfigSet(ctx, "maxclients", fmt.Sprint(want)).Err(); err != nil {
			return fmt.Errorf("this fleet needs Redis maxclients of at least %d (it is %d, and raising it failed: %v); start redis-server with --maxclients %d and an open-file limit above it, or use fewer --workers", want, have, err, want)
		}
		return nil
	})
}

func forEachMaster(ctx context.Context, rdb redis.UniversalClient, f func(context.Context, *redis.Client) error) error {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, f)
	}
	if c, ok := rdb.(*redis.Client); ok {
		return f(ctx, c)
	}
	return fmt.Errorf("unsupported client %T", rdb)
}

func runFanout(ctx context.Context, b *bench, cmd *cli.Command) (benchResult, error) {
	n := int(cmd.Int("workers"))
	params := b.machine(ctx)
	params["workers"] = n
	if err := b.ensureConnections(ctx, n+n/2); err != nil {
		return benchResult{}, err
	}
	spec := agentSpec{n: n, perClient: fleetAgentsPerClient, concurrency: 1, projectors: 2, exec: agent.NopExecutor{}}
	f, err := b.startFleet(ctx, "fan", spec)
	if err != nil {
		return benchResult{}, err
	}
	defer f.stop()
	if err := b.waitWorkers(ctx, f, n, 2*time.Minute); err != nil {
		return benchResult{}, err
	}
	store := projections.NewStore(b.admin, b.keys)
	log := streams.NewLog(b.admin, b.keys)
	src := events.Source{Cluster: b.keys.Cluster, Actor: "bench"}
	m, err := b.meter(ctx)
	if err != nil {
		return benchResult{}, err
	}
	// What `task run command --target all` does: resolve, then submit one
	// task per worker as one job.
	targets, err := resolveTarget(ctx, store, events.Target{All: true}, nil, "command")
	if err != nil {
		return benchResult{}, err
	}
	resolved := time.Since(m.start)
	jobID := ulid.Make().String()
	subs := make([]events.Envelope, len(targets))
	ids := make([]string, len(targets))
	for i, t := range targets {
		ids[i] = ulid.Make().String()
		subs[i] = src.New(events.TaskSubmitted{TaskID: ids[i], JobID: jobID, Task: "command", Argv: []string{"true"},
			Route: t.route, Target: t.name}, events.WithCorrelation(jobID))
	}
	if _, errs := log.SubmitBatch(ctx, subs); errors.Join(errs...) != nil {
		return benchResult{}, fmt.Errorf("submit: %w", errors.Join(errs...))
	}
	submitted := time.Since(m.start)
	end, err := b.waitEnded(ctx, f, ids, 5*time.Minute)
	if err != nil {
		return benchResult{}, err
	}
	u, err := m.read(ctx)
	if err != nil {
		return benchResult{}, err
	}
	job, err := store.Job(ctx, jobID)
	if err != nil {
		return benchResult{}, err
	}
	res := benchResult{Scenario: "fanout", Params: params}
	res.add("targets resolved", float64(len(targets)), "workers")
	res.add("resolve targets", ms(resolved), "ms")
	res.add("submitted (one batch)", ms(submitted), "ms")
	res.add("all results projected", ms(end.Sub(m.start)), "ms")
	res.add("job tasks succeeded", float64(job.Counts(time.Now())[string(events.Succeeded)]), "")
	res.addUsage(u, len(targets))
	return res, f.err()
}

// statusEvery is how often the fleet scenario times the status commands:
// each reads every worker's record, so more often would load the Redis it
// measures.
const statusEvery = 5 * time.Second

func runFleet(ctx context.Context, b *bench, cmd *cli.Command) (benchResult, error) {
	n, dur := int(cmd.Int("workers")), cmd.Duration("duration")
	hb := cmd.Duration("heartbeat")
	params := b.machine(ctx)
	params["workers"], params["duration"], params["heartbeat"] = n, dur.String(), hb.String()
	if err := b.ensureConnections(ctx, n+n/2); err != nil {
		return benchResult{}, err
	}
	before, err := streams.Counters(ctx, b.admin)
	if err != nil {
		return benchResult{}, err
	}
	spec := agentSpec{n: n, perClient: fleetAgentsPerClient, concurrency: 1, projectors: 2, exec: agent.NopExecutor{}, heartbeat: hb}
	started := time.Now()
	f, err := b.startFleet(ctx, "fl", spec)
	if err != nil {
		return benchResult{}, err
	}
	defer f.stop()
	if err := b.waitWorkers(ctx, f, n, 5*time.Minute); err != nil {
		return benchResult{}, err
	}
	registered := time.Since(started)
	m, err := b.meter(ctx)
	if err != nil {
		return benchResult{}, err
	}
	store := projections.NewStore(b.admin, b.keys)
	e := &env{rdb: b.admin, keys: b.keys}
	// Heartbeat lag: watch a sample of workers' projections and note, for
	// every new heartbeat seen, how long after it was sent it showed.
	sample := min(n, 50)
	var lags []time.Duration
	var statusTook, listTook []time.Duration
	lastSeq := map[string]string{}
	nextStatus := time.Now()
	stop := time.Now().Add(dur)
	for time.Now().Before(stop) {
		cmds := make([]*redis.SliceCmd, sample)
		_, err := b.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range sample {
				cmds[i] = p.HMGet(ctx, b.keys.WorkerProjection(fmt.Sprintf("fl%d", i*n/sample)), "seq", "last_heartbeat")
			}
			return nil
		})
		if err != nil {
			return benchResult{}, err
		}
		now := time.Now()
		for i, c := range cmds {
			v := c.Val()
			seq, _ := v[0].(string)
			at, _ := v[1].(string)
			key := fmt.Sprint(i)
			if prev, ok := lastSeq[key]; ok && seq != prev && at != "" {
				if t, err := time.Parse(time.RFC3339Nano, at); err == nil {
					lags = append(lags, now.Sub(t))
				}
			}
			lastSeq[key] = seq
		}
		if now.After(nextStatus) {
			t0 := time.Now()
			if _, err := gatherCluster(ctx, e, t0, nil); err != nil {
				return benchResult{}, fmt.Errorf("cluster status: %w", err)
			}
			statusTook = append(statusTook, time.Since(t0))
			t0 = time.Now()
			if _, err := store.Workers(ctx); err != nil {
				return benchResult{}, fmt.Errorf("workers list: %w", err)
			}
			listTook = append(listTook, time.Since(t0))
			nextStatus = time.Now().Add(statusEvery)
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return benchResult{}, err
		}
	}
	u, err := m.read(ctx)
	if err != nil {
		return benchResult{}, err
	}
	after, err := streams.Counters(ctx, b.admin)
	if err != nil {
		return benchResult{}, err
	}
	beats := float64(n) * dur.Seconds() / hb.Seconds()
	res := benchResult{Scenario: "fleet", Params: params}
	res.add("workers registered in", registered.Seconds(), "s")
	p50, p99, _, mx := percentiles(lags)
	res.add("heartbeat to projection p50", ms(p50), "ms")
	res.add("heartbeat to projection p99", ms(p99), "ms")
	res.add("heartbeat to projection max", ms(mx), "ms")
	res.add("heartbeats observed", float64(len(lags)), "")
	p50, _, _, mx = percentiles(statusTook)
	res.add("cluster status p50", ms(p50), "ms")
	res.add("cluster status max", ms(mx), "ms")
	p50, _, _, mx = percentiles(listTook)
	res.add("workers list p50", ms(p50), "ms")
	res.add("workers list max", ms(mx), "ms")
	res.add("Redis CPU", 100*u.server.CPU.Seconds()/u.wall.Seconds(), "% of a core")
	res.add("Redis commands per second", float64(u.server.Commands)/u.wall.Seconds(), "/s")
	res.add("Redis clients", float64(after.Clients), "")
	res.add("Redis memory", float64(after.Memory)/(1<<20), "MiB")
	res.add("Redis memory per worker", float64(after.Memory-before.Memory)/float64(n)/1024, "KiB")
	res.add("client CPU", 100*u.selfCPU.Seconds()/u.wall.Seconds(), "% of a core")
	res.add("heartbeats per second", beats/dur.Seconds(), "/s")
	return res, f.err()
}

// fillHistory appends n events to the event store, as a run of tasks
// (submitted, started, finished) with a heartbeat of one of 100 workers
// every tenth event, in pipelines of a thousand.
func (b *bench) fillHistory(ctx context.Context, n int) error {
	src := events.Source{Cluster: b.keys.Cluster, Actor: "bench"}
	var evs []events.Envelope
	var entities []string
	var task string
	seq := int64(0)
	for i := 0; len(evs) < n; i++ {
		if i%10 == 9 {
			seq++
			h := fmt.Sprintf("w%d", seq%100)
			evs = append(evs, src.New(events.WorkerHeartbeat{Hostname: h, Seq: seq, HeartbeatMS: 5000}))
			entities = append(entities, h)
			continue
		}
		var p events.Payload
		switch i % 3 {
		case 0:
			task = ulid.Make().String()
			p = events.TaskSubmitted{TaskID: task, Task: "command", Argv: []string{"true"}, Route: events.RouteQueue, Target: benchRole}
		case 1:
			p = events.TaskStarted{TaskID: task, Attempt: 1, Worker: "w1"}
		default:
			p = events.TaskFinished{TaskID: task, Attempt: 1, Worker: "w1", Outcome: events.Succeeded, DurationMS: 1}
		}
		evs = append(evs, src.New(p, events.WithCorrelation(task)))
		entities = append(entities, task)
	}
	for lo := 0; lo < len(evs); lo += 1000 {
		hi := min(lo+1000, len(evs))
		_, err := b.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := lo; i < hi; i++ {
				fields, err := events.Encode(evs[i])
				if err != nil {
					return err
				}
				p.XAdd(ctx, &redis.XAddArgs{Stream: b.keys.EventsFor(entities[i]), Values: fields})
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("fill the history: %w", err)
		}
	}
	return nil
}

func runRebuild(ctx context.Context, b *bench, cmd *cli.Command) (benchResult, error) {
	n := int(cmd.Int("events"))
	params := b.machine(ctx)
	params["events"] = n
	if err := b.fillHistory(ctx, n); err != nil {
		return benchResult{}, err
	}
	m, err := b.meter(ctx)
	if err != nil {
		return benchResult{}, err
	}
	restoreGC := batchGC() // as 'celeroot projections rebuild' runs
	rebuilt, err := projections.Rebuild(ctx, projections.NewHistory(b.admin, b.keys, nil), projections.RebuildOptions{Consumer: "bench-rebuild"})
	restoreGC()
	if err != nil {
		return benchResult{}, err
	}
	u, err := m.read(ctx)
	if err != nil {
		return benchResult{}, err
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	res := benchResult{Scenario: "rebuild", Params: params}
	res.add("events per second", float64(n)/u.wall.Seconds(), "events/s")
	res.add("elapsed", u.wall.Seconds(), "s")
	res.add("records written", float64(rebuilt.Records), "")
	res.add("client CPU per event", float64(u.selfCPU.Microseconds())/float64(n), "µs")
	res.add("Redis CPU per event", float64(u.server.CPU.Microseconds())/float64(n), "µs")
	res.add("peak RSS of this process", float64(ru.Maxrss)/1024, "MiB")
	return res, nil
}

// selfBinary is the path of the celeroot binary running now, as it was
// invoked (so a celeroot reached through a link named celeroot runs as
// celeroot again).
func selfBinary() (string, error) {
	if p, err := exec.LookPath(os.Args[0]); err == nil {
		return p, nil
	}
	return os.Executable()
}

// rss reads a process's resident set (VmRSS) and its peak (VmHWM), in bytes.
func rss(pid int) (cur, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		var v int64
		if _, err := fmt.Sscanf(line, "VmRSS: %d kB", &v); err == nil {
			cur = v << 10
		}
		if _, err := fmt.Sscanf(line, "VmHWM: %d kB", &v); err == nil {
			peak = v << 10
		}
	}
	return cur, peak, nil
}

func runFootprint(ctx context.Context, b *bench, cmd *cli.Command) (benchResult, error) {
	tasks, workers := int(cmd.Int("tasks")), int(cmd.Int("workers"))
	idle := cmd.Duration("idle")
	params := b.machine(ctx)
	params["tasks"], params["workers"], params["idle"] = tasks, workers, idle.String()
	res := benchResult{Scenario: "footprint", Params: params}

	// A real agent process, as on a managed host.
	exe, err := selfBinary()
	if err != nil {
		return res, err
	}
	proc := exec.CommandContext(ctx, exe, "--redis", b.conn.Display, "--cluster", b.keys.Cluster, "--log-level", "warn",
		"agent", "--hostname", "footprint", "--role", benchRole, "--metrics-listen", "off", "--plugin-dir", "off", "--scheduler", "never")
	proc.Env = os.Environ()
	if pw := b.conn.Options.Password; pw != "" {
		proc.Env = append(proc.Env, streams.EnvPassword+"="+pw)
	}
	proc.Stderr = b.logw
	if err := proc.Start(); err != nil {
		return res, fmt.Errorf("start an agent process: %w", err)
	}
	defer func() {
		_ = proc.Process.Signal(syscall.SIGTERM)
		_ = proc.Wait()
	}()
	store := projections.NewStore(b.admin, b.keys)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := store.Worker(ctx, "footprint"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return res, errors.New("the agent process did not register within 30s")
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return res, err
		}
	}
	if err := sleepCtx(ctx, idle); err != nil {
		return res, err
	}
	idleRSS, _, err := rss(proc.Process.Pid)
	if err != nil {
		return res, err
	}
	res.add("agent RSS idle", float64(idleRSS)/(1<<20), "MiB")

	// Under load: real commands (/bin/true) through that agent.
	before, err := streams.Counters(ctx, b.admin)
	if err != nil {
		return res, err
	}
	log := streams.NewLog(b.admin, b.keys)
	src := events.Source{Cluster: b.keys.Cluster, Actor: "bench"}
	ids := make([]string, tasks)
	evs := make([]events.Envelope, tasks)
	for i := range ids {
		ids[i] = ulid.Make().String()
		evs[i] = src.New(events.TaskSubmitted{TaskID: ids[i], Task: "command", Argv: []string{"true"},
			Route: events.RouteWorker, Target: "footprint"}, events.WithCorrelation(ids[i]))
	}
	for chunk := range slices.Chunk(evs, 500) {
		if _, errs := log.SubmitBatch(ctx, chunk); errors.Join(errs...) != nil {
			return res, errors.Join(errs...)
		}
	}
	var peakUnderLoad int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if cur, _, err := rss(proc.Process.Pid); err == nil && cur > peakUnderLoad {
				peakUnderLoad = cur
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if n, err := store.CountEnded(ctx, ids[len(ids)-1:]); err == nil && n == 1 {
				return
			}
		}
	}()
	if _, err := b.waitEnded(ctx, &fleet{}, ids, 10*time.Minute); err != nil {
		return res, err
	}
	<-done
	after, err := streams.Counters(ctx, b.admin)
	if err != nil {
		return res, err
	}
	res.add("agent RSS under load", float64(peakUnderLoad)/(1<<20), "MiB")
	res.add("Redis memory per finished task", float64(after.Memory-before.Memory)/float64(tasks), "bytes")

	// Redis memory per worker: simulated workers registered and beating.
	before, err = streams.Counters(ctx, b.admin)
	if err != nil {
		return res, err
	}
	f, err := b.startFleet(ctx, "mem", agentSpec{n: workers, perClient: fleetAgentsPerClient, concurrency: 1, exec: agent.NopExecutor{}})
	if err != nil {
		return res, err
	}
	defer f.stop()
	if err := b.waitWorkers(ctx, f, workers+1, time.Minute); err != nil {
		return res, err
	}
	after, err = streams.Counters(ctx, b.admin)
	if err != nil {
		return res, err
	}
	res.add("Redis memory per worker, with its connection", float64(after.Memory-before.Memory)/float64(workers)/1024, "KiB")
	res.add("Redis clients per worker", float64(after.Clients-before.Clients)/float64(workers), "")
	return res, f.err()
}

// benchAll runs every scenario with its default sizes, or small ones with
// --short, one after the other, each in a namespace of its own: each is the
// scenario's own command, run with those sizes.
func benchAll(ctx context.Context, cmd *cli.Command) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	quick := map[string][]string{
		"raw":        {"--tasks", "50000"},
		"throughput": {"--tasks", "5000"},
		"latency":    {"--duration", "2s", "--rate", "1000"},
		"fanout":     {"--workers", "200"},
		"fleet":      {"--workers", "1000", "--duration", "10s"},
		"rebuild":    {"--events", "50000"},
		"footprint":  {"--tasks", "200", "--workers", "100", "--idle", "2s"},
	}
	var global []string
	for _, name := range []string{"redis", "context", "log-level"} {
		if cmd.IsSet(name) {
			global = append(global, "--"+name, cmd.String(name))
		}
	}
	var results []benchResult
	for _, name := range []string{"raw", "throughput", "latency", "fanout", "fleet", "rebuild", "footprint"} {
		args := append(append([]string{"celeroot"}, global...), "bench", name, "-o", "json")
		if cmd.Bool("keep") {
			args = append(args, "--keep")
		}
		if cmd.Bool("short") {
			args = append(args, quick[name]...)
		}
		var out strings.Builder
		// A context with this one's cancellation but not its values: the
		// command tree keeps its current command in the context, and the
		// scenario's tree must not take it for its parent.
		sctx, cancel := context.WithCancel(context.Background())
		stop := context.AfterFunc(ctx, cancel)
		code := Run(sctx, args, cmd.Root().Reader, &out, cmd.Root().ErrWriter)
		stop()
		cancel()
		if code != ExitOK {
			return exitError{code: code, msg: fmt.Sprintf("scenario %s failed (see above)", name)}
		}
		var res []benchResult
		if err := json.Unmarshal([]byte(out.String()), &res); err != nil || len(res) != 1 {
			return fmt.Errorf("scenario %s: unexpected output %q", name, out.String())
		}
		results = append(results, res[0])
		if format == "table" {
			if err := printBench(cmd.Root().Writer, format, res); err != nil {
				return err
			}
			fmt.Fprintln(cmd.Root().Writer)
		}
	}
	if format == "table" {
		return nil
	}
	return printBench(cmd.Root().Writer, format, results)
}

// runRaw is the bare Redis Streams cycle the full path is measured
// against: pipelined XADD of a 200-byte task, XREADGROUP by K consumers,
// then XADD of a result and XACK, pipelined, with no fence, no event, no
// projection. Nothing else of celeroot runs.
func runRaw(ctx context.Context, b *bench, cmd *cli.Command) (benchResult, error) {
	n, consumers := int(cmd.Int("tasks")), int(cmd.Int("consumers"))
	params := b.machine(ctx)
	params["tasks"], params["consumers"] = n, consumers
	tasks, results := b.keys.RawStream("tasks"), b.keys.RawStream("results")
	rdb, err := b.client(ctx, consumers+4)
	if err != nil {
		return benchResult{}, err
	}
	defer rdb.Close()
	if err := streams.EnsureGroup(ctx, rdb, tasks, "raw"); err != nil {
		return benchResult{}, err
	}
	payload := strings.Repeat("x", 200)
	m, err := b.meter(ctx)
	if err != nil {
		return benchResult{}, err
	}
	var done atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, consumers+1)
	wg.Go(func() {
		for lo := 0; lo < n; lo += 1000 {
			_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for range min(1000, n-lo) {
					p.XAdd(ctx, &redis.XAddArgs{Stream: tasks, Values: []any{"data", payload}})
				}
				return nil
			})
			if err != nil {
				errc <- err
				return
			}
		}
	})
	for c := range consumers {
		wg.Go(func() {
			for done.Load() < int64(n) && ctx.Err() == nil {
				res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "raw", Consumer: fmt.Sprint("c", c),
					Streams: []string{tasks, ">"}, Count: 1000, Block: 100 * time.Millisecond}).Result()
				if errors.Is(err, redis.Nil) {
					continue
				}
				if err != nil {
					errc <- err
					return
				}
				var ids []string
				_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
					for _, st := range res {
						for _, msg := range st.Messages {
							ids = append(ids, msg.ID)
							p.XAdd(ctx, &redis.XAddArgs{Stream: results, Values: []any{"task", msg.ID, "outcome", "succeeded"}})
						}
					}
					if len(ids) > 0 {
						p.XAck(ctx, tasks, "raw", ids...)
					}
					return nil
				})
				if err != nil {
					errc <- err
					return
				}
				done.Add(int64(len(ids)))
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return benchResult{}, err
	}
	u, err := m.read(ctx)
	if err != nil {
		return benchResult{}, err
	}
	res := benchResult{Scenario: "raw", Params: params}
	res.add("tasks per second", float64(n)/u.wall.Seconds(), "tasks/s")
	res.add("elapsed", u.wall.Seconds(), "s")
	res.addUsage(u, n)
	return res, nil
}
