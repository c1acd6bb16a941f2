package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
)

// dispatcher reads a worker's inbox through the agents group, in one
// blocking XREADGROUP: the worker's control stream and its own dispatch
// stream (they share the worker's hash tag) and, where they are in one
// slot (a single node or Sentinel), its role's queue too. On Redis Cluster
// the queue is in another slot and has a dispatcher of its own. So an
// agent holds one blocking connection (two on a cluster), whatever it
// reads.
//
// A dispatcher never takes more tasks than there are free slots: entries
// of a read beyond them wait in a backlog (their claim is extended like
// that of running tasks) and the dispatcher reads no more tasks until the
// backlog is started. While every slot is busy it still reads control
// requests, without blocking, every saturatedPoll.
type dispatcher struct {
	a      *agent
	reader *streams.Reader
	lg     *slog.Logger
	// control is the worker's control stream, if this dispatcher reads it.
	control string
	// queue is the role's queue, if this dispatcher reads it: its entries
	// are reclaimed from other workers of the role that stopped.
	queue string
	// backlog holds task entries read but not yet started.
	backlog []streams.Message
	// running holds the entries read and not finished (backlog included),
	// whose claim is extended.
	mu      sync.Mutex
	running map[entryRef]bool
}

// entryRef names a stream entry.
type entryRef struct{ stream, id string }

// saturatedPoll is how often a dispatcher with no free slot reads its
// control stream.
const saturatedPoll = 100 * time.Millisecond

func (a *agent) newDispatcher(taskStreams []string, control, queue string) (*dispatcher, error) {
	all := append([]string(nil), taskStreams...)
	if control != "" {
		all = append([]string{control}, all...)
	}
	r, err := streams.NewReader(a.rdb, streams.ReaderOptions{
		Streams: all, Group: streams.GroupAgents, Consumer: a.cfg.Hostname,
		Block: a.cfg.Block, Count: int64(a.cfg.Concurrency), DeadLetter: a.cfg.Keys.DeadLetters(),
		Logger: a.cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	return &dispatcher{a: a, reader: r, control: control, queue: queue, running: map[entryRef]bool{},
		lg: a.cfg.Logger.With("hostname", a.cfg.Hostname, "streams", strings.Join(all, ","))}, nil
}

// Run reads and runs tasks, and handles control requests, until ctx is
// cancelled; then it starts what its backlog holds and waits for the tasks
// it started (bounded by the agent's shutdown grace period).
func (d *dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	// The claim of running entries is extended until the last one is
	// done, even while draining.
	extendCtx, stopExtend := context.WithCancel(d.a.hardStop)
	defer stopExtend()
	go d.extendClaims(extendCtx)
	var backoff streams.Backoff
	nextReclaim := time.Now().Add(d.a.cfg.ReclaimIdle / 3)
	for {
		free := d.a.freeSlots()
		if len(d.backlog) > 0 && free > 0 {
			// Entries read are this worker's now: run them even if the
			// agent is stopping (they then end within the grace period).
			// Another dispatcher may take slots meanwhile: start only as
			// many as this one gets.
			n := d.a.takeSlots(min(free, len(d.backlog)))
			d.start(d.backlog[:n], &wg)
			d.backlog = append(d.backlog[:0], d.backlog[n:]...)
			continue
		}
		if ctx.Err() != nil {
			if len(d.backlog) == 0 {
				return nil
			}
			d.a.waitSlot(d.a.hardStop, saturatedPoll)
			if d.a.hardStop.Err() != nil {
				return nil // left pending: delivered again
			}
			continue
		}
		var msgs []streams.Message
		var err error
		switch {
		case free == 0 || len(d.backlog) > 0:
			// Saturated: no more tasks until a slot frees up; control
			// requests are still read.
			if d.control != "" {
				msgs, err = d.reader.FetchFrom(ctx, 0, []string{d.control}, 0)
			}
			if err == nil && len(msgs) == 0 {
				d.a.waitSlot(ctx, saturatedPoll)
				continue
			}
		case d.queue != "" && time.Now().After(nextReclaim):
			msgs, err = d.reclaim(ctx, int64(free))
			nextReclaim = time.Now().Add(d.a.cfg.ReclaimIdle / 3)
			if err == nil && len(msgs) == 0 {
				msgs, err = d.reader.Fetch(ctx, int64(free))
			}
		default:
			msgs, err = d.reader.Fetch(ctx, int64(free))
		}
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			wait := backoff.Next()
			d.lg.Warn("reading dispatch streams failed; retrying", "err", err, "in", wait.Round(time.Millisecond))
			streams.Sleep(ctx, wait)
			continue
		}
		backoff.Reset()
		for _, m := range msgs {
			if m.Stream == d.control {
				d.a.handleControl(ctx, d.reader, m)
				continue
			}
			d.track(m, true)
			d.backlog = append(d.backlog, m)
		}
	}
}

// start starts msgs, whose slots are taken, in one round trip and runs
// each in its own goroutine.
func (d *dispatcher) start(msgs []streams.Message, wg *sync.WaitGroup) {
	if len(msgs) == 0 {
		return
	}
	jobs := make([]*job, len(msgs))
	for i, m := range msgs {
		jobs[i] = d.prepare(m)
	}
	d.startAll(jobs)
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer d.a.release()
			defer d.track(j.m, false)
			d.handle(j)
		}()
	}
}

// job is one dispatched entry on its way through the agent.
type job struct {
	m   streams.Message
	sub events.TaskSubmitted
	// ok is false for an entry that is not a submission.
	ok bool
	// dup is true when the task is already running here.
	dup bool
	// startEv and start are the first attempt's start, made for all jobs
	// of a read at once; started says it was tried, startErr is its error.
	startEv  events.Envelope
	start    streams.StartResult
	started  bool
	startErr error
}

// prepare classifies an entry just read; a submission that can start now
// gets its start event, to be sent with the others of its read.
func (d *dispatcher) prepare(m streams.Message) *job {
	j := &job{m: m}
	j.sub, j.ok = m.Envelope.Payload.(events.TaskSubmitted)
	if !j.ok {
		return j
	}
	if _, busy := d.a.inflight.LoadOrStore(j.sub.TaskID, true); busy {
		j.dup = true
		return j
	}
	if !j.sub.Deadline.IsZero() && time.Now().After(j.sub.Deadline) {
		return j // expire first; no start in the batch
	}
	j.startEv = d.newStart(m, j.sub)
	j.started = true
	return j
}

// startAll starts the first attempt of every job that can start, in one
// round trip.
func (d *dispatcher) startAll(jobs []*job) {
	var calls []streams.StartCall
	var which []*job
	for _, j := range jobs {
		if j.started {
			calls = append(calls, streams.StartCall{Event: j.startEv, Entry: j.m.Stream + "/" + j.m.ID})
			which = append(which, j)
		}
	}
	if len(calls) == 0 {
		return
	}
	res, errs := d.a.log.StartBatch(d.a.hardStop, calls)
	for i, j := range which {
		j.start, j.startErr = res[i], errs[i]
	}
}

func (d *dispatcher) newStart(m streams.Message, sub events.TaskSubmitted) events.Envelope {
	return d.a.src.New(events.TaskStarted{TaskID: sub.TaskID, Worker: d.a.cfg.Hostname},
		events.WithCorrelation(sub.TaskID), events.WithCausation(m.Envelope.ID.String()))
}

// handle runs one dispatched entry to its end: start (fenced), execute,
// finish (fenced), acknowledge. Redis calls are retried until the agent's
// hard stop; an entry whose processing is cut short stays pending and is
// delivered again.
func (d *dispatcher) handle(j *job) {
	ctx := d.a.hardStop
	m, sub := j.m, j.sub
	if !j.ok {
		d.deadLetter(ctx, m, fmt.Sprintf("unexpected %s event in a dispatch stream; only %s belongs here", m.Envelope.Type, events.TypeTaskSubmitted))
		return
	}
	lg := d.lg.With("task_id", sub.TaskID, "task", sub.Task)
	if j.dup {
		lg.Info("duplicate delivery of a running task; acknowledged without running")
		d.ack(ctx, m)
		return
	}
	defer d.a.inflight.Delete(sub.TaskID)

	if !j.started {
		if d.expire(ctx, m, sub, lg) {
			return
		}
	}
	for first := true; ; first = false {
		var startEv events.Envelope
		var res streams.StartResult
		var err error
		if first && j.started && j.startErr == nil {
			startEv, res = j.startEv, j.start
		} else {
			if first && j.started {
				startEv = j.startEv // a retried call keeps its event id
			} else {
				startEv = d.newStart(m, sub)
			}
			res, err = d.startOne(ctx, m, startEv, j.startErr)
		}
		if err != nil {
			return // stopping; the entry stays pending and is delivered again
		}
		final, acked, ok := d.attempt(ctx, m, sub, startEv, res, lg)
		if !ok {
			return
		}
		if final {
			if !acked {
				d.ack(ctx, m)
			}
			return
		}
	}
}

// startOne starts an attempt, retrying until the hard stop. An unknown task
// is not an error: the zero result says so.
func (d *dispatcher) startOne(ctx context.Context, m streams.Message, startEv events.Envelope, prev error) (streams.StartResult, error) {
	var res streams.StartResult
	if errors.Is(prev, streams.ErrUnknownTask) {
		return res, nil
	}
	err := d.a.retry(ctx, "start task", func(ctx context.Context) error {
		var err error
		res, err = d.a.log.Start(ctx, startEv, m.Stream+"/"+m.ID)
		if errors.Is(err, streams.ErrUnknownTask) {
			return nil
		}
		return err
	})
	return res, err
}

// expire ends a task whose deadline passed before it started. It reports
// whether the entry was dealt with (false: the task is running elsewhere,
// from a reclaimed entry, and goes on).
func (d *dispatcher) expire(ctx context.Context, m streams.Message, sub events.TaskSubmitted, lg *slog.Logger) bool {
	ev := d.a.src.New(events.TaskEnded{TaskID: sub.TaskID, State: events.EndExpired,
		Reason: fmt.Sprintf("not started by its deadline %s (the worker was offline or busy)", sub.Deadline.Format(time.RFC3339))},
		events.WithCorrelation(sub.TaskID))
	var res streams.EndResult
	err := d.a.retry(ctx, "expire task", func(ctx context.Context) error {
		var err error
		res, err = d.a.log.End(ctx, ev)
		return err
	})
	if err != nil || res.State == "running" {
		return err != nil
	}
	if res.Ended {
		lg.Info("task expired before it started", "deadline", sub.Deadline)
	}
	d.ack(ctx, m)
	return true
}

// attempt runs one started attempt: execute, finish (fenced). It reports
// final when no further attempt follows, acked when the entry was
// acknowledged with the finish, and ok false when the agent is stopping
// before the attempt was recorded.
func (d *dispatcher) attempt(ctx context.Context, m streams.Message, sub events.TaskSubmitted, startEv events.Envelope,
	res streams.StartResult, lg *slog.Logger) (final, acked, ok bool) {
	switch {
	case res.Done:
		lg.Info("task already ended; acknowledged without running")
		return true, false, true
	case res.Duplicate:
		lg.Info("duplicate dispatch of a task running elsewhere; acknowledged without running")
		return true, false, true
	case res.Attempt == 0:
		d.deadLetter(ctx, m, fmt.Sprintf("task %s has no record (never submitted, or finished longer ago than the fence retention)", sub.TaskID))
		return true, true, true
	}
	lg = lg.With("attempt", res.Attempt)
	lg.Info("task started")
	d.a.m.attempts.Inc()
	if res.Attempt == 1 {
		d.a.m.queueWait.Observe(time.Since(m.Envelope.Time).Seconds())
	}
	d.a.running.Add(1)
	result, took := d.execute(sub, res.Attempt, lg)
	d.a.running.Add(-1)
	d.a.m.tasks.WithLabelValues(sub.Task, string(result.Outcome)).Inc()
	d.a.m.duration.WithLabelValues(sub.Task).Observe(took.Seconds())

	maxAttempts := max(sub.MaxAttempts, 1)
	failed := result.Outcome != events.Succeeded && result.Outcome != events.Cancelled
	retry := failed && res.Attempt < maxAttempts && d.a.hardStop.Err() == nil
	// A task that failed its last of several attempts is copied to the
	// dead letters before its entry is acknowledged.
	keepDead := failed && !retry && maxAttempts > 1
	fin := events.TaskFinished{TaskID: sub.TaskID, Attempt: res.Attempt, Worker: d.a.cfg.Hostname,
		Outcome: result.Outcome, ExitCode: result.ExitCode, Error: result.Error, DurationMS: took.Milliseconds(),
		WillRetry: retry}
	finEv := d.a.src.New(fin, events.WithCorrelation(sub.TaskID))
	var ackWith *streams.Message
	if !retry && !keepDead {
		ackWith = &m
	}
	rec := d.a.rec.finish(finEv, ackWith)
	stale, err := rec.stale, rec.err
	if err != nil {
		// The batch failed for it: retry on its own (idempotent on the event id).
		err = d.a.retry(ctx, "finish task", func(ctx context.Context) error {
			var err error
			stale, err = d.a.log.Finish(ctx, finEv)
			return err
		})
	}
	if err != nil {
		lg.Error("could not record the result; the task will run again", "err", err)
		return false, false, false
	}
	acked = rec.acked
	switch {
	case stale:
		lg.Warn("result recorded as stale: a newer attempt superseded this one", "outcome", result.Outcome)
		return true, acked, true
	case retry:
		d.a.m.retries.Inc()
		wait := retryBackoff(sub.BackoffMS, res.Attempt)
		lg.Info("attempt failed; retrying", "outcome", result.Outcome, "exit_code", result.ExitCode, "in", wait.Round(time.Millisecond),
			"attempts_left", maxAttempts-res.Attempt)
		streams.Sleep(d.a.hardStop, wait)
		if d.a.hardStop.Err() != nil {
			return false, false, false
		}
		return false, false, true
	}
	lg.Info("task finished", "outcome", result.Outcome, "exit_code", result.ExitCode, "duration", took.Round(time.Millisecond))
	if keepDead {
		// Retries are exhausted: keep the submission in the dead letters,
		// where it can be looked at and redriven.
		d.keepDead(ctx, m, sub, fmt.Sprintf("%s after %d attempts: %s", result.Outcome, res.Attempt, orReason(result)))
	}
	return true, acked, true
}

// retryBackoff is the delay before attempt n+1: base doubling with each
// retry, capped at MaxRetryBackoff, with up to 20% jitter either way.
func retryBackoff(baseMS, n int64) time.Duration {
	base := time.Duration(baseMS) * time.Millisecond
	if base <= 0 {
		base = DefaultRetryBackoff
	}
	d := base
	for i := int64(1); i < n && d < MaxRetryBackoff; i++ {
		d *= 2
	}
	d = min(d, MaxRetryBackoff)
	jitter := time.Duration(rand.Int64N(int64(d)/5*2+1)) - d/5
	return d + jitter
}

func orReason(r Result) string {
	if r.Error != "" {
		return r.Error
	}
	return fmt.Sprintf("exit code %d", r.ExitCode)
}

// keepDead copies a failed task's dispatch entry to the dead-letter stream
// (it has its outcome; the copy is for `task dead` and `task redrive`).
func (d *dispatcher) keepDead(ctx context.Context, m streams.Message, sub events.TaskSubmitted, reason string) {
	values := events.Fields(m.Envelope)
	err := d.a.retry(ctx, "dead-letter", func(ctx context.Context) error {
		return streams.DeadLetter(ctx, d.a.rdb, d.a.cfg.Keys.DeadLetters(), streams.DeadEntry{
			Stream: m.Stream, EntryID: m.ID, Group: streams.GroupAgents, Consumer: d.a.cfg.Hostname,
			Reason: reason, Fields: values,
		})
	})
	if err != nil {
		d.lg.Warn("could not keep the failed task in the dead letters", "task_id", sub.TaskID, "err", err)
		return
	}
	d.a.m.deadLetters.Inc()
}

// execute runs the task with its timeout, streaming output to its log.
func (d *dispatcher) execute(sub events.TaskSubmitted, attempt int64, lg *slog.Logger) (Result, time.Duration) {
	ctx, cancel := context.WithCancelCause(d.a.hardStop)
	defer cancel(nil)
	d.a.cancels.Store(sub.TaskID, cancel)
	defer d.a.cancels.Delete(sub.TaskID)
	if sub.TimeoutMS > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, sub.Timeout())
		defer stop()
	}
	logKey := d.a.cfg.Keys.TaskLog(sub.TaskID)
	out := newOutput(sub.TaskID, attempt, d.a.cfg.LogLimit, func(l events.TaskLog) {
		wctx, cancel := context.WithTimeout(d.a.hardStop, 2*time.Second)
		defer cancel()
		if _, err := d.a.log.Append(wctx, logKey, d.a.src.New(l, events.WithCorrelation(sub.TaskID)), logMaxEntries); err != nil {
			lg.Warn("task output lost", "err", err, "bytes", len(l.Data))
		}
	})
	start := time.Now()
	var res Result
	conf := d.a.conf.Load()
	_, nop := d.a.cfg.Exec.(NopExecutor)
	switch {
	case !conf.serves(sub.Task):
		msg := fmt.Sprintf("task %q is not available on worker %s (config revision %d; it runs: %s)",
			sub.Task, d.a.cfg.Hostname, conf.Revision, strings.Join(conf.Tasks, ", "))
		fmt.Fprintf(out.stream("stderr"), "celeroot: %s\n", msg)
		res = Result{Outcome: events.Failed, ExitCode: ExitNotRunable, Error: msg}
	case slices.Contains(BuiltinTasks, sub.Task) || nop:
		res = d.a.cfg.Exec.Exec(ctx, sub, out.stream("stdout"), out.stream("stderr"))
	case conf.Plugins[sub.Task] != nil:
		res = d.a.runPlugin(ctx, conf.Plugins[sub.Task], sub, attempt, out.stream("stdout"), out.stream("stderr"))
	default:
		task := conf.Bundle.Task(sub.Task)
		action := task.Spec.Action
		if sub.Check {
			if task.Spec.Check == nil {
				msg := fmt.Sprintf("task %q has no check (dry-run) form", sub.Task)
				fmt.Fprintf(out.stream("stderr"), "celeroot: %s\n", msg)
				res = Result{Outcome: events.Failed, ExitCode: ExitNotRunable, Error: msg}
				break
			}
			action = *task.Spec.Check
		}
		res = runAction(ctx, action, sub.Params, sub.Timeout(), out.stream("stdout"), out.stream("stderr"))
	}
	took := time.Since(start)
	out.Close()
	return res, took
}

// ack acknowledges an entry, batched with the agent's other
// acknowledgements; if that fails it retries on its own until the hard stop.
func (d *dispatcher) ack(ctx context.Context, m streams.Message) {
	if d.a.rec.ackEntry(m) == nil {
		return
	}
	err := d.a.retry(ctx, "ack", func(ctx context.Context) error { return d.reader.Ack(ctx, m.Stream, m.ID) })
	if err != nil {
		d.lg.Warn("ack failed; the entry will be delivered again", "entry", m.ID, "err", err)
	}
}

func (d *dispatcher) deadLetter(ctx context.Context, m streams.Message, reason string) {
	values := events.Fields(m.Envelope)
	err := d.a.retry(ctx, "dead-letter", func(ctx context.Context) error {
		return streams.DeadLetter(ctx, d.a.rdb, d.a.cfg.Keys.DeadLetters(), streams.DeadEntry{
			Stream: m.Stream, EntryID: m.ID, Group: streams.GroupAgents, Consumer: d.a.cfg.Hostname,
			Reason: reason, Fields: values,
		})
	})
	if err != nil {
		return
	}
	d.a.m.deadLetters.Inc()
	d.lg.Warn("entry dead-lettered", "entry", m.ID, "reason", reason)
	d.ack(ctx, m)
}

func (d *dispatcher) track(m streams.Message, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if on {
		d.running[entryRef{m.Stream, m.ID}] = true
	} else {
		delete(d.running, entryRef{m.Stream, m.ID})
	}
}

// extendClaims resets the idle time of the entries being worked on every
// ReclaimIdle/3, so a long task is never taken for the task of a dead worker.
func (d *dispatcher) extendClaims(ctx context.Context) {
	t := time.NewTicker(d.a.cfg.ReclaimIdle / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.mu.Lock()
		byStream := map[string][]string{}
		for e := range d.running {
			byStream[e.stream] = append(byStream[e.stream], e.id)
		}
		d.mu.Unlock()
		for stream, ids := range byStream {
			lost, err := d.reader.Extend(ctx, stream, ids...)
			if err != nil {
				d.lg.Warn("extending the claim of running tasks failed", "err", err)
				continue
			}
			for _, id := range lost {
				d.lg.Warn("entry reclaimed by another worker; this attempt's result will be recorded as stale", "entry", id)
			}
		}
	}
}

// reclaim takes over up to max queue entries that other workers of the
// role read but did not finish: after ReclaimIdle, or after DeadWorkerIdle
// when the projections show the worker unhealthy or gone. Entries
// delivered MaxDeliveries times already are dead-lettered instead.
func (d *dispatcher) reclaim(ctx context.Context, max int64) ([]streams.Message, error) {
	store := projections.NewStore(d.a.rdb, d.a.cfg.Keys)
	now := time.Now()
	idle := map[string]time.Duration{}
	minIdle := func(consumer string) time.Duration {
		if v, ok := idle[consumer]; ok {
			return v
		}
		v := d.a.cfg.ReclaimIdle
		if w, err := store.Worker(ctx, consumer); err == nil {
			if st := w.State(now); st == projections.WorkerUnhealthy || st == projections.WorkerLeft {
				v = DeadWorkerIdle
			}
		}
		idle[consumer] = v
		return v
	}
	stale, err := d.reader.Stale(ctx, d.queue, minIdle, max)
	if err != nil {
		return nil, err
	}
	var out []streams.Message
	for _, p := range stale {
		if p.Deliveries >= d.a.cfg.MaxDeliveries {
			d.giveUp(ctx, p)
			continue
		}
		msgs, err := d.reader.Claim(ctx, d.queue, minIdle(p.Consumer), p.ID)
		if err != nil {
			return out, err
		}
		for _, m := range msgs {
			d.a.m.reclaims.Inc()
			d.lg.Info("reclaimed an entry from a stopped worker", "entry", m.ID, "from", p.Consumer,
				"idle", p.Idle.Round(time.Millisecond), "deliveries", p.Deliveries+1)
		}
		out = append(out, msgs...)
	}
	return out, nil
}

// giveUp dead-letters a queue entry delivered too often: the entry goes to
// the dead-letter stream with its fields, the task ends as dead.
func (d *dispatcher) giveUp(ctx context.Context, p streams.Pending) {
	reason := fmt.Sprintf("delivered %d times without a result (last to %s); max deliveries is %d", p.Deliveries, p.Consumer, d.a.cfg.MaxDeliveries)
	var taskID string
	var fields map[string]any
	e, ok, err := streams.Lookup(ctx, d.a.rdb, p.Stream, p.ID)
	if err != nil {
		d.lg.Warn("could not read the entry to dead-letter; will retry", "entry", p.ID, "err", err)
		return
	}
	if ok {
		fields = e.Fields
		if sub, isSub := e.Envelope.Payload.(events.TaskSubmitted); e.Err == nil && isSub {
			taskID = sub.TaskID
		}
	}
	// The dead letter first, then the task's end, then the ack: a task
	// shown dead is always in the dead letters, and a crash in between
	// repeats a step instead of losing one.
	err = streams.DeadLetter(ctx, d.a.rdb, d.a.cfg.Keys.DeadLetters(), streams.DeadEntry{
		Stream: p.Stream, EntryID: p.ID, Group: streams.GroupAgents, Consumer: d.a.cfg.Hostname, Reason: reason, Fields: fields,
	})
	if err != nil {
		d.lg.Warn("could not dead-letter entry; will retry", "entry", p.ID, "err", err)
		return
	}
	if taskID != "" {
		ev := d.a.src.New(events.TaskDeadLettered{TaskID: taskID, Reason: reason, Deliveries: p.Deliveries,
			Stream: p.Stream, EntryID: p.ID}, events.WithCorrelation(taskID))
		if _, err := d.a.log.End(ctx, ev); err != nil {
			d.lg.Warn("could not record the dead-lettered task; will retry", "entry", p.ID, "err", err)
			return
		}
	}
	if err := d.reader.Ack(ctx, p.Stream, p.ID); err != nil {
		d.lg.Warn("could not acknowledge the dead-lettered entry; will retry", "entry", p.ID, "err", err)
		return
	}
	d.a.m.deadLetters.Inc()
	d.lg.Warn("task dead-lettered", "entry", p.ID, "task_id", taskID, "reason", reason)
}
