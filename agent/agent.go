package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// BuiltinTasks are the tasks every agent can run.
var BuiltinTasks = []string{"command"}

// agent is the state shared by an agent's components.
type agent struct {
	cfg     Config
	rdb     redis.UniversalClient
	log     *streams.Log
	src     events.Source
	running atomic.Int64
	// inflight holds the ids of tasks executing here, so a duplicate
	// delivery of a running task is not started twice.
	inflight sync.Map
	// cancels holds, per running task id, the function that cancels it.
	cancels sync.Map
	// slots bounds the tasks running at once, across all dispatch streams.
	slots chan struct{}
	// hardStop is cancelled when the shutdown grace period is over: running
	// tasks are then killed.
	hardStop context.Context
	// stop ends Run gracefully, with a cause (a remote drain).
	stop context.CancelCauseFunc
	// conf is the configuration in force; confMu orders its updates (a
	// config revision, a plugin scan).
	conf   atomic.Pointer[applied]
	confMu sync.Mutex
	// plugins are the task plugins of the plugin directory.
	plugins *pluginSet
	pid     int
	m       *metrics
	// consuming is true while the dispatchers run (for /readyz).
	consuming atomic.Bool
	// rec records results and acknowledges entries in batches.
	rec *recorder
	// freed is closed (and replaced) whenever a task slot is released, to
	// wake dispatchers waiting for one.
	freedMu sync.Mutex
	freed   chan struct{}
	// reloadMu serialises config reloads.
	reloadMu sync.Mutex
}

// freeSlots is the number of task slots free now.
func (a *agent) freeSlots() int { return cap(a.slots) - len(a.slots) }

// takeSlots takes up to n free task slots without waiting and returns how
// many it took.
func (a *agent) takeSlots(n int) int {
	for i := range n {
		select {
		case a.slots <- struct{}{}:
		default:
			return i
		}
	}
	return n
}

// release frees one task slot and wakes the dispatchers waiting for one.
func (a *agent) release() {
	<-a.slots
	a.freedMu.Lock()
	close(a.freed)
	a.freed = make(chan struct{})
	a.freedMu.Unlock()
}

// waitSlot returns when a slot is free, at most max later, or when ctx ends.
func (a *agent) waitSlot(ctx context.Context, max time.Duration) {
	a.freedMu.Lock()
	ch := a.freed
	a.freedMu.Unlock()
	if a.freeSlots() > 0 {
		return
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
	}
}

// isCluster reports whether rdb is a Redis Cluster client.
func isCluster(rdb redis.UniversalClient) bool {
	_, ok := rdb.(*redis.ClusterClient)
	return ok
}

// Run runs an agent until ctx is cancelled, then drains and returns. The
// caller owns rdb and closes it after Run returns.
func Run(ctx context.Context, rdb redis.UniversalClient, cfg Config) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	if cfg.MetricsListener != nil {
		defer cfg.MetricsListener.Close()
	}
	var err error
	a := &agent{
		cfg:   cfg,
		rdb:   rdb,
		log:   streams.NewLog(rdb, cfg.Keys),
		src:   events.Source{Cluster: cfg.Keys.Cluster, Actor: "agent:" + cfg.Hostname},
		slots: make(chan struct{}, cfg.Concurrency),
		freed: make(chan struct{}),
		pid:   os.Getpid(),
	}
	reg := prometheus.NewRegistry()
	a.m = newMetrics(reg, cfg.Version)
	if cfg.MetricsListener != nil {
		rdb.AddHook(redisHook{a.m.redisLatency})
	}
	lg := cfg.Logger.With("hostname", cfg.Hostname)
	if a.plugins, err = newPluginSet(cfg.PluginDir, cfg.PluginDescribeTimeout, lg.With("component", "plugins")); err != nil {
		return err
	}
	// The first registration advertises the plugins: read them first.
	a.plugins.scan(ctx, false)
	a.install(initialConfig())

	// A drain request from the control stream stops the agent as SIGTERM does.
	ctx, a.stop = context.WithCancelCause(ctx)
	defer a.stop(nil)
	if err := a.register(ctx); err != nil {
		return err
	}
	lg.Info("agent registered", "role", cfg.Role, "cluster", cfg.Keys.Cluster, "concurrency", cfg.Concurrency,
		"config_revision", a.conf.Load().Revision, "tasks", a.conf.Load().Tasks, "plugins", len(a.conf.Load().Plugins))

	hardStop, stopHard := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHard()
	a.hardStop = hardStop
	// The recorder serves the dispatchers until the last of their tasks
	// is recorded, so it stops after the group has returned.
	a.rec = newRecorder(a.log, rdb)
	recCtx, stopRec := context.WithCancel(hardStop)
	recDone := make(chan struct{})
	go func() {
		defer close(recDone)
		a.rec.Run(recCtx)
	}()
	defer func() { stopRec(); <-recDone }()
	go func() {
		select {
		case <-ctx.Done():
			lg.Info("agent stopping: no new tasks; waiting for running ones", "grace", cfg.ShutdownTimeout)
		case <-hardStop.Done():
			return
		}
		t := time.NewTimer(cfg.ShutdownTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			lg.Warn("shutdown grace period over; killing running tasks")
			stopHard()
		case <-hardStop.Done():
		}
	}()

	// Heartbeats go on while the agent drains, so it is shown draining,
	// not dead; they stop once the group has returned.
	hbCtx, stopHB := context.WithCancel(context.WithoutCancel(ctx))
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		a.heartbeat(hbCtx, ctx)
	}()

	var g run.Group
	{
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { <-ctx.Done(); return nil }, func(error) { cancel() })
	}
	// The worker's inbox: its control and dispatch streams and, where they
	// share a slot, its role's queue, in one blocking read; on Redis
	// Cluster the queue has a reader of its own.
	dispatch, control, queue := cfg.Keys.WorkerDispatch(cfg.Hostname), cfg.Keys.WorkerControl(cfg.Hostname), cfg.Keys.RoleQueue(cfg.Role)
	inboxes := []struct {
		tasks          []string
		control, queue string
	}{{[]string{dispatch, queue}, control, queue}}
	if isCluster(rdb) {
		inboxes = inboxes[:0]
		inboxes = append(inboxes, struct {
			tasks          []string
			control, queue string
		}{[]string{dispatch}, control, ""}, struct {
			tasks          []string
			control, queue string
		}{[]string{queue}, "", queue})
	}
	for _, in := range inboxes {
		d, err := a.newDispatcher(in.tasks, in.control, in.queue)
		if err != nil {
			stopHB()
			return err
		}
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { return d.Run(ctx) }, func(error) { cancel() })
	}
	if cfg.PluginDir != "" {
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error {
			a.plugins.watch(ctx, cfg.PluginRescan, cfg.Rescan, func() { a.reconfigure(ctx) })
			return nil
		}, func(error) { cancel() })
	}
	if l := cfg.MetricsListener; l != nil {
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { return a.serveHTTP(ctx, l, reg) }, func(error) { cancel() })
	}
	if cfg.Scheduler != SchedulerNever {
		ev := a.newEvaluator()
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { ev.run(ctx); return nil }, func(error) { cancel() })
	}
	if cfg.Scheduler != SchedulerNever {
		f, err := a.newFires()
		if err != nil {
			stopHB()
			return err
		}
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { return f.run(ctx) }, func(error) { cancel() })
	}
	if cfg.Projector {
		p := projections.NewProjector(rdb, cfg.Keys, projections.ProjectorOptions{
			Consumer: fmt.Sprintf("%s-%d", cfg.Hostname, os.Getpid()),
			Block:    cfg.Block,
			Adopt:    earlierProjector(cfg.Hostname),
			Logger:   lg.With("component", "projector"),
		})
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { return p.Run(ctx) }, func(error) { cancel() })
	}
	if cfg.Janitor {
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { return a.runJanitor(ctx) }, func(error) { cancel() })
	}
	a.consuming.Store(true)
	err = g.Run()
	a.consuming.Store(false)
	stopHB()
	<-hbDone

	leaveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	reason := "stopped"
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		reason = cause.Error()
	}
	left := a.src.New(events.WorkerLeft{Hostname: cfg.Hostname, Reason: reason})
	if id, lerr := a.log.Record(leaveCtx, cfg.Hostname, left); lerr != nil {
		lg.Warn("could not announce leaving", "err", lerr)
	} else {
		// Project it too: the projectors may all be stopping with this agent.
		// Applying is idempotent, so a projector applying it again is harmless.
		msg := streams.Message{Stream: cfg.Keys.EventsFor(cfg.Hostname), ID: id, Envelope: left}
		k, perr := projections.NewStore(rdb, cfg.Keys).Keys(leaveCtx) // the served namespace, after any rebuild
		if perr == nil {
			perr = projections.NewStoreAt(rdb, k).Apply(leaveCtx, []streams.Message{msg})
		}
		if perr != nil {
			lg.Warn("could not project leaving", "err", perr)
		}
	}
	lg.Info("agent stopped")
	return err
}

// register loads the config, appends worker.registered, and creates the
// consumer groups the agent reads, retrying until Redis answers or ctx
// ends.
func (a *agent) register(ctx context.Context) error {
	return a.retry(ctx, "register", func(ctx context.Context) error {
		if err := a.loadConfig(ctx); err != nil {
			return err
		}
		for _, s := range []string{a.cfg.Keys.WorkerDispatch(a.cfg.Hostname), a.cfg.Keys.RoleQueue(a.cfg.Role), a.cfg.Keys.WorkerControl(a.cfg.Hostname)} {
			if err := streams.EnsureGroup(ctx, a.rdb, s, streams.GroupAgents); err != nil {
				return err
			}
		}
		_, err := a.log.Record(ctx, a.cfg.Hostname, a.registration())
		return err
	})
}

// heartbeat appends worker.heartbeat every interval until ctx is done.
// Once drain is done it reports the worker as draining. Every heartbeat
// goes to the worker's heartbeat stream; the first, then one every
// projections.HeartbeatCheckpoint and every one that reports a change of
// draining or config revision, go to the event store too (ADR 0008).
func (a *agent) heartbeat(ctx, drain context.Context) {
	t := time.NewTicker(a.cfg.Heartbeat)
	defer t.Stop()
	var seq int64
	var lastCheckpoint time.Time
	var last events.WorkerHeartbeat
	beat := func() {
		seq++
		hb := events.WorkerHeartbeat{Hostname: a.cfg.Hostname, Seq: seq, Running: int(a.running.Load()),
			HeartbeatMS: a.cfg.Heartbeat.Milliseconds(), Draining: drain.Err() != nil, Revision: a.conf.Load().Revision}
		checkpoint := seq == 1 || time.Since(lastCheckpoint) >= projections.HeartbeatCheckpoint ||
			hb.Draining != last.Draining || hb.Revision != last.Revision
		bctx, cancel := context.WithTimeout(ctx, a.cfg.Heartbeat)
		defer cancel()
		_, head, err := a.log.Heartbeat(bctx, a.cfg.Hostname, a.src.New(hb), checkpoint)
		if err != nil {
			if ctx.Err() == nil {
				a.m.heartbeatErrs.Inc()
				a.cfg.Logger.Warn("heartbeat failed", "hostname", a.cfg.Hostname, "err", err)
			}
			return
		}
		if checkpoint {
			lastCheckpoint = time.Now()
		}
		last = hb
		if head > hb.Revision {
			// An applied revision this agent was not told of.
			a.reloadConfig(bctx, "heartbeat")
		}
		a.m.heartbeats.Inc()
		a.m.revision.Set(float64(hb.Revision))
		a.m.running.Set(float64(hb.Running))
		if a.cfg.MetricsListener == nil {
			return // nobody scrapes the stream gauges: spare Redis the calls
		}
		for name, stream := range map[string]string{"worker": a.cfg.Keys.WorkerDispatch(a.cfg.Hostname), "queue": a.cfg.Keys.RoleQueue(a.cfg.Role)} {
			if st, err := streams.Stat(bctx, a.rdb, stream, streams.GroupAgents); err == nil {
				a.m.pending.WithLabelValues(name).Set(float64(st.Pending))
				a.m.lag.WithLabelValues(name).Set(float64(max(st.Lag, 0)))
			}
		}
	}
	beat()
	drained := drain.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-drained:
			drained = nil
			beat()
		case <-t.C:
			beat()
		}
	}
}

// retry calls f until it succeeds or ctx ends, backing off between tries.
func (a *agent) retry(ctx context.Context, what string, f func(context.Context) error) error {
	var b streams.Backoff
	for {
		err := f(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		a.m.redisErrors.WithLabelValues(what).Inc()
		d := b.Next()
		a.cfg.Logger.Warn("redis call failed; retrying", "op", what, "err", err, "in", d.Round(time.Millisecond))
		streams.Sleep(ctx, d)
	}
}

// earlierProjector reports whether a projector consumer name is one an
// earlier agent process on this host used ("<hostname>-<pid>"): hostnames
// are unique in a cluster, so that process has exited.
func earlierProjector(hostname string) func(consumer string) bool {
	self := strconv.Itoa(os.Getpid())
	return func(consumer string) bool {
		pid, ok := strings.CutPrefix(consumer, hostname+"-")
		if !ok || pid == self || pid == "" {
			return false
		}
		_, err := strconv.ParseUint(pid, 10, 32)
		return err == nil
	}
}
