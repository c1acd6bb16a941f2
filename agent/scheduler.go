package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/schema"
	"github.com/celeroot/celeroot/streams"
)

// Values of Config.Scheduler.
const (
	SchedulerAuto   = "auto"
	SchedulerAlways = "always"
	SchedulerNever  = "never"
)

// SchedulerRole is the role whose workers, if the config has a worker
// group of it, are the only ones to evaluate schedules in auto mode.
const SchedulerRole = "scheduler"

// Scheduling bounds and defaults (ADR 0005).
const (
	// DefaultOnTimeGrace is the default Config.OnTimeGrace.
	DefaultOnTimeGrace = 30 * time.Second
	// DefaultMissedWindow is how far back missed slots are fired under
	// missed: all when the schedule sets no missedWindow.
	DefaultMissedWindow = time.Hour
	// MaxCatchUp bounds the missed slots one evaluation fires under
	// missed: all (the newest ones are kept).
	MaxCatchUp = 1000
	// FireDeadline is how long after its slot a fire's tasks may still
	// start; a fire processed later than that is skipped.
	FireDeadline = time.Hour
	// scheduleTick is how often schedules are evaluated, aligned to the
	// wall clock so every evaluator looks at the same instants.
	scheduleTick = 200 * time.Millisecond
	// firesReclaimEvery and firesReclaimIdle: fires read by a scheduler
	// that stopped before acknowledging them are taken over after
	// firesReclaimIdle, looked for every firesReclaimEvery.
	firesReclaimEvery = 10 * time.Second
	firesReclaimIdle  = 30 * time.Second
	// maxSlotScan bounds the slots counted between two times.
	maxSlotScan = 100000
)

// evaluates reports whether this agent evaluates schedules and processes
// their fires now, under the applied config.
func (a *agent) evaluates() bool {
	switch a.cfg.Scheduler {
	case SchedulerAlways:
		return true
	case SchedulerNever:
		return false
	}
	if a.cfg.Role == SchedulerRole {
		return true
	}
	ap := a.conf.Load()
	if ap.Bundle == nil || ap.Bundle.Cluster == nil {
		return true
	}
	for _, g := range ap.Bundle.Cluster.Spec.Workers {
		if g.Role == SchedulerRole {
			return false
		}
	}
	return true
}

// evaluator fires the schedules of the applied config at their slots.
// Every evaluating agent runs one; the fire script lets one fire per slot
// through, so they need no leader.
type evaluator struct {
	a   *agent
	lg  *slog.Logger
	mem map[string]*slotMemory
}

// slotMemory is what an evaluator remembers of one schedule.
type slotMemory struct {
	// key identifies the schedule's timing; a change resets the memory.
	key string
	// cur is the latest slot found at or before the last evaluation, next
	// the slot after it.
	cur, next time.Time
	// handled is the latest slot this evaluator has dealt with (fired,
	// found fired, skipped).
	handled time.Time
	// failing is set while the schedule cannot be evaluated, so the error
	// is logged once.
	failing bool
}

func (a *agent) newEvaluator() *evaluator {
	return &evaluator{a: a, lg: a.cfg.Logger.With("hostname", a.cfg.Hostname, "component", "scheduler"),
		mem: map[string]*slotMemory{}}
}

// run evaluates the schedules every scheduleTick until ctx is done.
func (ev *evaluator) run(ctx context.Context) {
	for {
		now := time.Now()
		t := time.NewTimer(now.Truncate(scheduleTick).Add(scheduleTick).Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if !ev.a.evaluates() {
			clear(ev.mem)
			continue
		}
		ev.tick(ctx, time.Now())
	}
}

// tick evaluates every schedule of the applied config as of now.
func (ev *evaluator) tick(ctx context.Context, now time.Time) {
	ap := ev.a.conf.Load()
	if ap.Bundle == nil || ap.Bundle.Cluster == nil {
		return
	}
	seen := map[string]bool{}
	for i := range ap.Bundle.Cluster.Spec.Schedules {
		s := &ap.Bundle.Cluster.Spec.Schedules[i]
		seen[s.Name] = true
		if err := ev.evaluate(ctx, ap, s, now); err != nil && ctx.Err() == nil {
			ev.lg.Warn("schedule evaluation failed; retrying", "schedule", s.Name, "err", err)
		}
	}
	maps.DeleteFunc(ev.mem, func(name string, _ *slotMemory) bool { return !seen[name] })
}

// slot returns the latest slot at or before now and the one after it.
func (ev *evaluator) slot(m *slotMemory, s *schema.Schedule, now time.Time) (cur, next time.Time, err error) {
	if !m.next.IsZero() && !m.next.After(now) {
		// Step forward from the known slot; a long pause restarts the search.
		for i := 0; i < 1000 && !m.next.After(now); i++ {
			n, err := ev.a.cfg.ScheduleNext(s, m.next)
			if err != nil {
				return time.Time{}, time.Time{}, err
			}
			m.cur, m.next = m.next, n
		}
	}
	if m.next.IsZero() || !m.next.After(now) || m.cur.After(now) {
		if m.cur, m.next, err = latestSlot(ev.a.cfg.ScheduleNext, s, now); err != nil {
			return time.Time{}, time.Time{}, err
		}
	}
	return m.cur, m.next, nil
}

// latestSlot finds the latest slot at or before now, and the next one,
// by stepping Next from ever earlier starts (cron can only look forward).
func latestSlot(nextFn func(*schema.Schedule, time.Time) (time.Time, error), s *schema.Schedule, now time.Time) (cur, next time.Time, err error) {
	for _, back := range []time.Duration{2 * time.Second, time.Minute, time.Hour, 25 * time.Hour, 8 * 24 * time.Hour,
		32 * 24 * time.Hour, 367 * 24 * time.Hour, 5 * 367 * 24 * time.Hour} {
		first, err := nextFn(s, now.Add(-back))
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		if first.IsZero() || first.After(now) {
			continue
		}
		cur = first
		for i := 0; i < maxSlotScan; i++ {
			n, err := nextFn(s, cur)
			if err != nil {
				return time.Time{}, time.Time{}, err
			}
			if n.IsZero() || n.After(now) {
				return cur, n, nil
			}
			cur = n
		}
		return time.Time{}, time.Time{}, fmt.Errorf("schedule %s: too many slots to scan", s.Name)
	}
	next, err = nextFn(s, now)
	return time.Time{}, next, err
}

// slotsBetween returns the slots strictly between from and to, oldest
// first, keeping the newest keep of them, and how many there are (counted
// up to maxSlotScan).
func slotsBetween(nextFn func(*schema.Schedule, time.Time) (time.Time, error), s *schema.Schedule, from, to time.Time, keep int) ([]time.Time, int, error) {
	var out []time.Time
	n := 0
	for t := from; n < maxSlotScan; n++ {
		next, err := nextFn(s, t)
		if err != nil {
			return nil, 0, err
		}
		if next.IsZero() || !next.Before(to) {
			break
		}
		out = append(out, next)
		if len(out) > keep {
			out = out[1:]
		}
		t = next
	}
	return out, n, nil
}

// evaluate fires s if a slot of it is due.
func (ev *evaluator) evaluate(ctx context.Context, ap *applied, s *schema.Schedule, now time.Time) error {
	key := s.Cron + "|" + s.Timezone
	m := ev.mem[s.Name]
	if m == nil || m.key != key {
		m = &slotMemory{key: key}
		ev.mem[s.Name] = m
	}
	slot, next, err := ev.slot(m, s, now)
	if err != nil {
		if !m.failing {
			m.failing = true
			ev.lg.Error("cannot compute the schedule's slots", "schedule", s.Name, "err", err)
		}
		return nil
	}
	m.failing = false
	if slot.IsZero() || !slot.After(m.handled) {
		return nil
	}
	grace := ev.a.cfg.OnTimeGrace
	if iv := next.Sub(slot); !next.IsZero() && iv/2 < grace {
		grace = iv / 2
	}
	late := now.Sub(slot) > grace
	nextFn := ev.a.cfg.ScheduleNext

	// The common case: the slot after the one handled, on time.
	if !late && !m.handled.IsZero() {
		if n, err := nextFn(s, m.handled); err == nil && n.Equal(slot) {
			if _, err := ev.fire(ctx, ap, s, slot); err != nil {
				return err
			}
			m.handled = slot
			return nil
		}
	}

	// First look, or a gap: what was fired last decides what was missed.
	st, err := ev.a.log.ScheduleState(ctx, []string{s.Name})
	if err != nil {
		return err
	}
	last := st[s.Name].Last
	switch {
	case !last.Before(slot):
		m.handled = slot // another evaluator was there first
		return nil
	case last.IsZero():
		// Never fired: nothing was missed; a late first slot is let go.
		if !late {
			if _, err := ev.fire(ctx, ap, s, slot); err != nil {
				return err
			}
		}
		m.handled = slot
		return nil
	}
	window := s.MissedWindow.Duration
	if window <= 0 {
		window = DefaultMissedWindow
	}
	switch s.Missed {
	case schema.MissedAll:
		from := last
		if w := slot.Add(-window); w.After(from) {
			from = w
		}
		missed, _, err := slotsBetween(nextFn, s, from, slot, MaxCatchUp)
		if err != nil {
			return err
		}
		for _, t := range append(missed, slot) {
			if _, err := ev.fire(ctx, ap, s, t); err != nil {
				return err
			}
		}
	case schema.MissedLatest:
		if _, err := ev.fire(ctx, ap, s, slot); err != nil {
			return err
		}
	default: // skip
		missed, n, err := slotsBetween(nextFn, s, last, slot, 1)
		if err != nil {
			return err
		}
		upTo := slot
		if !late {
			if len(missed) > 0 {
				upTo = missed[len(missed)-1]
			} else {
				upTo = time.Time{}
			}
		} else {
			n++
		}
		if !upTo.IsZero() {
			reason := fmt.Sprintf("%d slots missed while no scheduler ran (missed: skip)", n)
			if n >= maxSlotScan {
				reason = fmt.Sprintf("at least %d slots missed while no scheduler ran (missed: skip)", maxSlotScan)
			}
			e := ev.a.src.New(events.ScheduleSkipped{Schedule: s.Name, SlotMS: upTo.UnixMilli(), Reason: reason})
			if _, why, err := ev.a.log.Fire(ctx, e); err != nil {
				return err
			} else if why == streams.FireSkipped {
				ev.lg.Info("missed slots skipped", "schedule", s.Name, "slots", n, "up_to", upTo)
			}
		}
		if !late {
			if _, err := ev.fire(ctx, ap, s, slot); err != nil {
				return err
			}
		}
	}
	m.handled = slot
	return nil
}

// fire records a fire of s for slot; of all evaluators, one succeeds.
func (ev *evaluator) fire(ctx context.Context, ap *applied, s *schema.Schedule, slot time.Time) (bool, error) {
	p := scheduleFire(s, slot.UnixMilli(), ap.Revision, false)
	ok, why, err := ev.a.log.Fire(ctx, ev.a.src.New(p, events.WithCorrelation(p.JobID)))
	if err != nil {
		return false, err
	}
	if ok {
		ev.lg.Info("schedule fired", "schedule", s.Name, "slot", slot, "job", p.JobID)
	} else {
		ev.lg.Debug("schedule not fired", "schedule", s.Name, "slot", slot, "reason", why)
	}
	return ok, nil
}

// scheduleFire is the fire event of s for a slot.
func scheduleFire(s *schema.Schedule, slotMS, revision int64, manual bool) events.ScheduleFired {
	overlap := s.Overlap
	if overlap == "" {
		overlap = schema.OverlapAllow
	}
	p := events.ScheduleFired{Schedule: s.Name, SlotMS: slotMS, Task: s.Task, Params: s.Params,
		All: s.Targets.All, Manual: manual, Revision: revision, JobID: streams.ScheduleJobID(s.Name, slotMS),
		Overlap: overlap, SplayMS: s.Splay.Duration.Milliseconds()}
	if !s.Targets.All {
		p.Selector = map[string]string(s.Targets.Selector)
	}
	return p
}

// fires turns schedule fires into tasks: it reads the fires stream through
// the scheduler consumer group, so each fire is processed by one agent.
type fires struct {
	a     *agent
	r     *streams.Reader
	store *projections.Store
	lg    *slog.Logger
}

func (a *agent) newFires() (*fires, error) {
	lg := a.cfg.Logger.With("hostname", a.cfg.Hostname, "component", "scheduler")
	r, err := streams.NewReader(a.rdb, streams.ReaderOptions{
		Streams: []string{a.cfg.Keys.ScheduleFires()}, Group: streams.GroupScheduler, Consumer: a.cfg.Hostname,
		Block: a.cfg.Block, DeadLetter: a.cfg.Keys.DeadLetters(), Logger: lg,
	})
	if err != nil {
		return nil, err
	}
	return &fires{a: a, r: r, store: projections.NewStore(a.rdb, a.cfg.Keys), lg: lg}, nil
}

// run processes fires until ctx is done. A fire is acknowledged once all
// its tasks are submitted; one interrupted is processed again (by this
// agent after a restart, or by another after firesReclaimIdle) and
// submits the same task ids.
func (f *fires) run(ctx context.Context) error {
	var b streams.Backoff
	lastReclaim := time.Now()
	for ctx.Err() == nil {
		if !f.a.evaluates() {
			streams.Sleep(ctx, time.Second)
			continue
		}
		msgs, err := f.r.Fetch(ctx, 16)
		if err == nil && time.Since(lastReclaim) >= firesReclaimEvery {
			lastReclaim = time.Now()
			var more []streams.Message
			more, err = f.r.Reclaim(ctx, firesReclaimIdle, 16)
			msgs = append(msgs, more...)
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			d := b.Next()
			f.lg.Warn("reading schedule fires failed; retrying", "err", err, "in", d.Round(time.Millisecond))
			streams.Sleep(ctx, d)
			continue
		}
		b = streams.Backoff{}
		for _, m := range msgs {
			if err := f.process(ctx, m.Envelope); err != nil {
				if ctx.Err() == nil {
					f.lg.Warn("processing a schedule fire failed; retrying", "entry", m.ID, "err", err)
					streams.Sleep(ctx, b.Next())
				}
				f.r.Rewind()
				break
			}
			if err := f.r.Ack(ctx, m.Stream, m.ID); err != nil && ctx.Err() == nil {
				f.lg.Warn("ack of a schedule fire failed", "entry", m.ID, "err", err)
			}
		}
	}
	return nil
}

// process submits the tasks of one fire.
func (f *fires) process(ctx context.Context, e events.Envelope) error {
	p, ok := e.Payload.(events.ScheduleFired)
	if !ok {
		return nil // paused, resumed, skipped: a record only
	}
	slot := time.UnixMilli(p.SlotMS)
	skip := func(reason string) error {
		f.lg.Info("schedule fire skipped", "schedule", p.Schedule, "job", p.JobID, "reason", reason)
		_, err := f.a.log.RecordSchedule(ctx, f.a.src.New(events.ScheduleSkipped{Schedule: p.Schedule, SlotMS: p.SlotMS,
			Reason: reason, JobID: p.JobID}, events.WithCorrelation(p.JobID), events.WithCausation(e.ID.String())))
		return err
	}
	now := time.Now()
	if now.Sub(slot) > FireDeadline {
		return skip(fmt.Sprintf("processed %s after its slot, past the %s deadline", now.Sub(slot).Round(time.Second), FireDeadline))
	}
	if p.Overlap == schema.OverlapSkip && p.PreviousJob != "" {
		job, err := f.store.Job(ctx, p.PreviousJob)
		switch {
		case errors.Is(err, projections.ErrNotFound):
		case err != nil:
			return err
		default:
			for _, t := range job.Tasks {
				if !t.Done() {
					return skip(fmt.Sprintf("previous run %s is still running (overlap: skip)", p.PreviousJob))
				}
			}
		}
	}
	workers, err := f.store.Workers(ctx)
	if err != nil {
		return err
	}
	hosts := matchWorkers(workers, p, now)
	if len(hosts) == 0 {
		return skip(fmt.Sprintf("no healthy worker matches targets %s and runs %s", describeTargets(p), p.Task))
	}
	var timeout, backoff time.Duration
	var attempts int
	if ap := f.a.conf.Load(); ap.Bundle != nil {
		if def := ap.Bundle.Task(p.Task); def != nil {
			timeout, attempts, backoff = def.Spec.Timeout.Duration, def.Spec.Retry.MaxAttempts, def.Spec.Retry.Backoff.Duration
		}
	}
	envelope := func(h string) events.Envelope {
		sub := events.TaskSubmitted{TaskID: streams.ScheduleTaskID(p.JobID, h, p.SlotMS), JobID: p.JobID, Task: p.Task, Params: p.Params,
			Route: events.RouteWorker, Target: h, TimeoutMS: timeout.Milliseconds(), MaxAttempts: int64(attempts),
			BackoffMS: backoff.Milliseconds(), Deadline: slot.Add(FireDeadline).UTC()}
		return f.a.src.New(sub, events.WithCorrelation(p.JobID), events.WithCausation(e.ID.String()))
	}
	var errs []error
	if p.SplayMS <= 0 {
		// All at once: one batch, two round trips whatever the fleet size.
		subs := make([]events.Envelope, len(hosts))
		for i, h := range hosts {
			subs[i] = envelope(h)
		}
		_, errs = f.a.log.SubmitBatch(ctx, subs)
	} else {
		// Each host's task after its own random delay.
		errs = make([]error, len(hosts))
		var wg sync.WaitGroup
		for i := range hosts {
			wg.Go(func() {
				t := time.NewTimer(time.Duration(rand.Int64N(p.SplayMS+1)) * time.Millisecond)
				defer t.Stop()
				select {
				case <-ctx.Done():
					errs[i] = ctx.Err()
					return
				case <-t.C:
				}
				_, errs[i] = f.a.log.Submit(ctx, envelope(hosts[i]))
			})
		}
		wg.Wait()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("submit job %s of schedule %s: %w", p.JobID, p.Schedule, err)
	}
	f.lg.Info("schedule job submitted", "schedule", p.Schedule, "job", p.JobID, "tasks", len(hosts))
	return nil
}

// matchWorkers returns the hostnames of the healthy workers a fire
// targets that run its task, sorted.
func matchWorkers(workers []projections.Worker, p events.ScheduleFired, now time.Time) []string {
	var out []string
	for _, w := range workers {
		if w.State(now) != projections.WorkerHealthy {
			continue
		}
		if len(w.Tasks) > 0 && !slices.Contains(w.Tasks, p.Task) {
			continue
		}
		if !p.All && !selects(p.Selector, w) {
			continue
		}
		out = append(out, w.Hostname)
	}
	slices.Sort(out)
	return out
}

// selects reports whether a worker has every key of sel: role and hostname
// match those fields, other keys the worker's labels.
func selects(sel map[string]string, w projections.Worker) bool {
	for k, v := range sel {
		var got string
		var ok bool
		switch k {
		case schema.SelectorRole:
			got, ok = w.Role, true
		case schema.SelectorHostname:
			got, ok = w.Hostname, true
		default:
			got, ok = w.Labels[k]
		}
		if !ok || got != v {
			return false
		}
	}
	return true
}

func describeTargets(p events.ScheduleFired) string {
	if p.All {
		return "all"
	}
	return strings.TrimSpace(schema.Selector(p.Selector).String())
}
