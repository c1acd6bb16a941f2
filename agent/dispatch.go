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

// dispatcher reads one dispatch stream (the worker's own, or its role's
// queue) through the agents group and runs what it reads.
type dispatcher struct {
	a      *agent
	stream string
	reader *streams.Reader
	lg     *slog.Logger
	// queue is true for a role's queue, whose entries other workers of the
	// role reclaim from a worker that stopped.
	queue bool
	// running holds the entry ids being worked on, whose claim is extended.
	mu      sync.Mutex
	running map[string]bool
}

func (a *agent) newDispatcher(stream string, queue bool) (*dispatcher, error) {
	r, err := streams.NewReader(a.rdb, streams.ReaderOptions{
		Streams: []string{stream}, Group: streams.GroupAgents, Consumer: a.cfg.Hostname,
		Block: a.cfg.Block, Count: int64(a.cfg.Concurrency), DeadLetter: a.cfg.Keys.DeadLetters(),
		Logger: a.cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	return &dispatcher{a: a, stream: stream, reader: r, queue: queue, running: map[string]bool{},
		lg: a.cfg.Logger.With("hostname", a.cfg.Hostname, "stream", stream)}, nil
}

// Run reads and runs tasks until ctx is cancelled, then waits for the
// tasks it started (bounded by the agent's shutdown grace period).
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
		// Wait for a free slot without taking it, so the worker's other
		// dispatch stream is not starved while this one blocks on Redis;
		// a slot is taken per entry read.
		n := d.waitFree(ctx)
		if n == 0 {
			return nil
		}
		var msgs []streams.Message
		var err error
		if d.queue && time.Now().After(nextReclaim) {
			msgs, err = d.reclaim(ctx, int64(n))
			nextReclaim = time.Now().Add(d.a.cfg.ReclaimIdle / 3)
		}
		if err == nil && len(msgs) == 0 {
			msgs, err = d.reader.Fetch(ctx, int64(n))
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			wait := backoff.Next()
			d.lg.Warn("reading dispatch stream failed; retrying", "err", err, "in", wait.Round(time.Millisecond))
			streams.Sleep(ctx, wait)
			continue
		}
		backoff.Reset()
		for _, m := range msgs {
			// Entries read are this worker's now: run them even if the
			// agent is stopping (they then end within the grace period).
			d.a.slots <- struct{}{}
			d.track(m.ID, true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer d.release(1)
				defer d.track(m.ID, false)
				d.handle(m)
			}()
		}
	}
}

// waitFree returns the number of free task slots once there is at least
// one, or 0 when ctx is done.
func (d *dispatcher) waitFree(ctx context.Context) int {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		if n := cap(d.a.slots) - len(d.a.slots); n > 0 {
			return n
		}
		select {
		case <-ctx.Done():
			return 0
		case <-t.C:
		}
	}
}

func (d *dispatcher) release(n int) {
	for range n {
		<-d.a.slots
	}
}

// handle runs one dispatched entry to its end: start (fenced), execute,
// finish (fenced), acknowledge. Redis calls are retried until the agent's
// hard stop; an entry whose processing is cut short stays pending and is
// delivered again.
func (d *dispatcher) handle(m streams.Message) {
	ctx := d.a.hardStop
	sub, ok := m.Envelope.Payload.(events.TaskSubmitted)
	if !ok {
		d.deadLetter(ctx, m, fmt.Sprintf("unexpected %s event in a dispatch stream; only %s belongs here", m.Envelope.Type, events.TypeTaskSubmitted))
		return
	}
	lg := d.lg.With("task_id", sub.TaskID, "task", sub.Task)
	if _, busy := d.a.inflight.LoadOrStore(sub.TaskID, true); busy {
		lg.Info("duplicate delivery of a running task; acknowledged without running")
		d.ack(ctx, m)
		return
	}
	defer d.a.inflight.Delete(sub.TaskID)

	if !sub.Deadline.IsZero() && time.Now().After(sub.Deadline) {
		if d.expire(ctx, m, sub, lg) {
			return
		}
	}
	for {
		final, ok := d.attempt(ctx, m, sub, lg)
		if !ok {
			return // stopping; the entry stays pending and is delivered again
		}
		if final {
			break
		}
	}
	d.ack(ctx, m)
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

// attempt runs one attempt: start (fenced), execute, finish (fenced). It
// reports final when no further attempt follows, and ok false when the
// agent is stopping before the attempt was recorded.
func (d *dispatcher) attempt(ctx context.Context, m streams.Message, sub events.TaskSubmitted, lg *slog.Logger) (final, ok bool) {
	// One envelope for all tries: the store recognises a retried call by
	// its event id.
	startEv := d.a.src.New(events.TaskStarted{TaskID: sub.TaskID, Worker: d.a.cfg.Hostname},
		events.WithCorrelation(sub.TaskID), events.WithCausation(m.Envelope.ID.String()))
	var res streams.StartResult
	err := d.a.retry(ctx, "start task", func(ctx context.Context) error {
		var err error
		res, err = d.a.log.Start(ctx, startEv, m.Stream+"/"+m.ID)
		if errors.Is(err, streams.ErrUnknownTask) {
			return nil
		}
		return err
	})
	switch {
	case err != nil:
		return false, false
	case res.Done:
		lg.Info("task already ended; acknowledged without running")
		return true, true
	case res.Duplicate:
		lg.Info("duplicate dispatch of a task running elsewhere; acknowledged without running")
		return true, true
	case res.Attempt == 0:
		d.deadLetter(ctx, m, fmt.Sprintf("task %s has no record (never submitted, or finished longer ago than the fence retention)", sub.TaskID))
		return true, true
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
	retry := result.Outcome != events.Succeeded && result.Outcome != events.Cancelled &&
		res.Attempt < maxAttempts && d.a.hardStop.Err() == nil
	fin := events.TaskFinished{TaskID: sub.TaskID, Attempt: res.Attempt, Worker: d.a.cfg.Hostname,
		Outcome: result.Outcome, ExitCode: result.ExitCode, Error: result.Error, DurationMS: took.Milliseconds(),
		WillRetry: retry}
	finEv := d.a.src.New(fin, events.WithCorrelation(sub.TaskID))
	var stale bool
	err = d.a.retry(ctx, "finish task", func(ctx context.Context) error {
		var err error
		stale, err = d.a.log.Finish(ctx, finEv)
		return err
	})
	if err != nil {
		lg.Error("could not record the result; the task will run again", "err", err)
		return false, false
	}
	switch {
	case stale:
		lg.Warn("result recorded as stale: a newer attempt superseded this one", "outcome", result.Outcome)
		return true, true
	case retry:
		d.a.m.retries.Inc()
		wait := retryBackoff(sub.BackoffMS, res.Attempt)
		lg.Info("attempt failed; retrying", "outcome", result.Outcome, "exit_code", result.ExitCode, "in", wait.Round(time.Millisecond),
			"attempts_left", maxAttempts-res.Attempt)
		streams.Sleep(d.a.hardStop, wait)
		if d.a.hardStop.Err() != nil {
			return false, false
		}
		return false, true
	}
	lg.Info("task finished", "outcome", result.Outcome, "exit_code", result.ExitCode, "duration", took.Round(time.Millisecond))
	if result.Outcome != events.Succeeded && result.Outcome != events.Cancelled && maxAttempts > 1 {
		// Retries are exhausted: keep the submission in the dead letters,
		// where it can be looked at and redriven.
		d.keepDead(ctx, m, sub, fmt.Sprintf("%s after %d attempts: %s", result.Outcome, res.Attempt, orReason(result)))
	}
	return true, true
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

func (d *dispatcher) ack(ctx context.Context, m streams.Message) {
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

func (d *dispatcher) track(id string, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if on {
		d.running[id] = true
	} else {
		delete(d.running, id)
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
		ids := make([]string, 0, len(d.running))
		for id := range d.running {
			ids = append(ids, id)
		}
		d.mu.Unlock()
		lost, err := d.reader.Extend(ctx, d.stream, ids...)
		if err != nil {
			d.lg.Warn("extending the claim of running tasks failed", "err", err)
			continue
		}
		for _, id := range lost {
			d.lg.Warn("entry reclaimed by another worker; this attempt's result will be recorded as stale", "entry", id)
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
	stale, err := d.reader.Stale(ctx, d.stream, minIdle, max)
	if err != nil {
		return nil, err
	}
	var out []streams.Message
	for _, p := range stale {
		if p.Deliveries >= d.a.cfg.MaxDeliveries {
			d.giveUp(ctx, p)
			continue
		}
		msgs, err := d.reader.Claim(ctx, d.stream, minIdle(p.Consumer), p.ID)
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
	e, ok, err := streams.Lookup(ctx, d.a.rdb, d.stream, p.ID)
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
		Stream: d.stream, EntryID: p.ID, Group: streams.GroupAgents, Consumer: d.a.cfg.Hostname, Reason: reason, Fields: fields,
	})
	if err != nil {
		d.lg.Warn("could not dead-letter entry; will retry", "entry", p.ID, "err", err)
		return
	}
	if taskID != "" {
		ev := d.a.src.New(events.TaskDeadLettered{TaskID: taskID, Reason: reason, Deliveries: p.Deliveries,
			Stream: d.stream, EntryID: p.ID}, events.WithCorrelation(taskID))
		if _, err := d.a.log.End(ctx, ev); err != nil {
			d.lg.Warn("could not record the dead-lettered task; will retry", "entry", p.ID, "err", err)
			return
		}
	}
	if err := d.reader.Ack(ctx, d.stream, p.ID); err != nil {
		d.lg.Warn("could not acknowledge the dead-lettered entry; will retry", "entry", p.ID, "err", err)
		return
	}
	d.a.m.deadLetters.Inc()
	d.lg.Warn("task dead-lettered", "entry", p.ID, "task_id", taskID, "reason", reason)
}
