package projections

import (
	"strings"
	"time"
)

// Retention is how long the cluster keeps what it records. Zero fields
// take the defaults below; the applied config's spec.retention sets them.
type Retention struct {
	// Events is how long an archived event stays in Redis.
	Events time.Duration
	// TrimUnarchived trims events after Events even if they were never
	// archived, losing them (spec.retention.archive: none). By default an
	// event stays in Redis until it is archived.
	TrimUnarchived bool
	// Heartbeats is how long every heartbeat is kept.
	Heartbeats time.Duration
	// Tasks is how long an ended task's projection, log and job entry
	// are kept.
	Tasks time.Duration
	// Workers is how long a worker that left, was removed or went silent
	// is still listed.
	Workers time.Duration
	// ScheduleEvents is how long schedule events are kept.
	ScheduleEvents time.Duration
}

// Retention defaults (the same as schema's, which projections does not
// import).
const (
	DefaultEventRetention         = 7 * 24 * time.Hour
	DefaultHeartbeatRetention     = time.Hour
	DefaultTaskRetention          = 7 * 24 * time.Hour
	DefaultWorkerRetention        = 7 * 24 * time.Hour
	DefaultScheduleEventRetention = 30 * 24 * time.Hour
)

// HeartbeatCheckpoint is how often an agent also records its heartbeat in
// the event store (and whenever it starts draining or changes config
// revision): the event store keeps a worker's liveness at this resolution
// for as long as it keeps events, while every heartbeat is kept for
// Retention.Heartbeats only.
const HeartbeatCheckpoint = time.Minute

// WithDefaults fills the unset fields.
func (r Retention) WithDefaults() Retention {
	set := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	set(&r.Events, DefaultEventRetention)
	set(&r.Heartbeats, DefaultHeartbeatRetention)
	set(&r.Tasks, DefaultTaskRetention)
	set(&r.Workers, DefaultWorkerRetention)
	set(&r.ScheduleEvents, DefaultScheduleEventRetention)
	return r
}

// TaskPastRetention reports whether an ended task's projection is past its
// retention at now: it ended (with an outcome, dead-lettered, expired or
// cancelled) more than keep ago.
func TaskPastRetention(t Task, now time.Time, keep time.Duration) bool {
	end := taskEnd(t)
	return !end.IsZero() && now.Sub(end) > keep
}

// taskEnd is when a task ended, or zero while it has not.
func taskEnd(t Task) time.Time {
	return endOf(t.Outcome != "", t.FinishedAt, t.DeadAt, t.EndedAt)
}

// recordTaskEnd is taskEnd of the task a record holds, read from the
// fields it needs only (a rebuild asks it of every task).
func recordTaskEnd(r Record) time.Time {
	return endOf(r["outcome"] != "", parseTime(r["finished_at"]), parseTime(r["dead_at"]), parseTime(r["ended_at"]))
}

// endOf is when a task with these fields ended: the latest of its finish,
// dead-lettering and end (expiry, cancellation), once it has an outcome,
// was dead-lettered or ended (Task.Done); zero before.
func endOf(outcome bool, finished, dead, ended time.Time) time.Time {
	if !outcome && dead.IsZero() && ended.IsZero() {
		return time.Time{}
	}
	end := finished
	for _, at := range []time.Time{dead, ended} {
		if at.After(end) {
			end = at
		}
	}
	return end
}

// WorkerPastRetention reports whether a worker's projection is past its
// retention at now: it left, was removed or stopped heartbeating more than
// keep ago. A worker added with `workers add` that never registered stays
// until it is removed.
func WorkerPastRetention(w Worker, r Record, now time.Time, keep time.Duration) bool {
	switch w.State(now) {
	case WorkerHealthy, WorkerDraining:
		if !w.Removed {
			return false
		}
	case WorkerExpected:
		if !w.Removed {
			return false
		}
	}
	last := workerLastSeen(w, r)
	return !last.IsZero() && now.Sub(last) > keep
}

// workerLastSeen is the latest sign of a worker: registration,
// heartbeat, leaving, being expected or removed.
func workerLastSeen(w Worker, r Record) time.Time {
	last := w.LastHeartbeat
	for _, at := range []time.Time{w.RegisteredAt, w.LeftAt, parseTime(r["removed_at"]), parseTime(r["expected_at"])} {
		if at.After(last) {
			last = at
		}
	}
	return last
}

// Retain removes from recs what the retention pass removes from the
// stored projections at now: tasks ended more than keep.Tasks ago (and
// their job entries; a job with none left goes too), and workers gone for
// more than keep.Workers. It is what makes a rebuilt projection equal the
// one kept up incrementally.
func (recs Records) Retain(now time.Time, keep Retention) {
	keep = keep.WithDefaults()
	for ref, r := range recs {
		switch ref.Kind {
		case KindTask:
			if end := recordTaskEnd(r); !end.IsZero() && now.Sub(end) > keep.Tasks {
				delete(recs, ref)
				if job := r["job"]; job != "" {
					if jr := recs[Ref{KindJob, job}]; jr != nil {
						for _, f := range JobTaskFields(ref.ID) {
							delete(jr, f)
						}
					}
				}
			}
		case KindWorker:
			if WorkerPastRetention(WorkerFromRecord(ref.ID, r), r, now, keep.Workers) {
				delete(recs, ref)
			}
		}
	}
	for ref, r := range recs {
		if ref.Kind == KindJob && !jobHasTasks(r) {
			delete(recs, ref)
		}
	}
}

// JobTaskFields are the fields of a job record that belong to one of its
// tasks (see Reduce of task.submitted.v1), its guard's order included.
func JobTaskFields(task string) []string {
	return []string{"t." + task, "n." + task, "s." + task, VersionPrefix + "t." + task}
}

func jobHasTasks(r Record) bool {
	for k := range r {
		if strings.HasPrefix(k, "t.") {
			return true
		}
	}
	return false
}
