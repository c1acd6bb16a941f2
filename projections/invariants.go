package projections

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/streams"
)

// Report is the result of checking the history against celeroot's
// guarantees.
type Report struct {
	Tasks int `json:"tasks"`
	// Ended counts tasks by how they ended (succeeded, failed, timed_out,
	// cancelled, expired, dead); Open counts those still waiting, running
	// or retrying.
	Ended map[string]int `json:"ended"`
	Open  int            `json:"open"`
	// Attempts and StaleResults count attempts started and results
	// recorded as stale (from superseded attempts).
	Attempts     int `json:"attempts"`
	StaleResults int `json:"stale_results"`
	// Retries counts failed attempts after which the task was retried;
	// Reclaims counts attempts superseded by a newer one before they
	// recorded a result (their worker stopped or was cut off, and another
	// took the task over); Duplicated counts tasks with more than one
	// outcome recorded (each is also a violation, and must be 0).
	Retries    int `json:"retries"`
	Reclaims   int `json:"reclaims"`
	Duplicated int `json:"duplicated"`
	Fires      int `json:"schedule_fires"`
	// Records is the number of projection records compared with a fold.
	Records int `json:"projection_records"`
	// Undecodable counts entries of the event store and the schedule
	// events that are not celeroot events this build can read (written by
	// something else, or by a newer version); each is also a violation,
	// since what it recorded cannot be accounted for.
	Undecodable int      `json:"undecodable"`
	Violations  []string `json:"violations"`
}

func (r *Report) undecodable(e streams.Entry) {
	r.Undecodable++
	r.Violations = append(r.Violations, fmt.Sprintf("entry %s of %s cannot be read (%v): what it recorded is not accounted for", e.ID, e.Stream, e.Err))
}

type taskHistory struct {
	submitted bool
	ends      []string       // outcomes and end states, in order
	attempts  []int64        // attempt numbers started, in stream order
	results   map[int64]bool // attempts that recorded a result that counted
}

// CheckInvariants replays the event store (the archive first, where it was
// trimmed) and the schedule events kept, and verifies: every task has at
// most one outcome (its end is recorded once); attempt numbers only
// increase; no schedule slot fired twice; and the projections equal a
// fresh fold of the history (see Verify).
func CheckInvariants(ctx context.Context, h *History, keep Retention, now time.Time) (Report, error) {
	rdb, keys := h.rdb, h.keys
	r := Report{Ended: map[string]int{}, Violations: []string{}}
	tasks := map[string]*taskHistory{}
	task := func(id string) *taskHistory {
		if tasks[id] == nil {
			tasks[id] = &taskHistory{}
		}
		return tasks[id]
	}
	for n := range keys.EventShards() {
		err := h.Events(ctx, n, "-", "+", func(e streams.Entry) error {
			if e.Err != nil {
				r.undecodable(e)
				return nil
			}
			switch p := e.Envelope.Payload.(type) {
			case events.TaskSubmitted:
				task(p.TaskID).submitted = true
			case events.TaskStarted:
				t := task(p.TaskID)
				if n := len(t.attempts); n > 0 && p.Attempt <= t.attempts[n-1] {
					r.Violations = append(r.Violations, fmt.Sprintf("task %s: attempt %d started after attempt %d (epochs must increase)", p.TaskID, p.Attempt, t.attempts[n-1]))
				}
				t.attempts = append(t.attempts, p.Attempt)
				r.Attempts++
			case events.TaskFinished:
				t := task(p.TaskID)
				if !p.Stale {
					if t.results == nil {
						t.results = map[int64]bool{}
					}
					t.results[p.Attempt] = true
				}
				switch {
				case p.Stale:
					r.StaleResults++
				case p.WillRetry:
					r.Retries++
				default:
					t.ends = append(t.ends, string(p.Outcome))
				}
			case events.TaskEnded:
				task(p.TaskID).ends = append(task(p.TaskID).ends, p.State)
			case events.TaskDeadLettered:
				task(p.TaskID).ends = append(task(p.TaskID).ends, TaskDead)
			}
			return nil
		})
		if err != nil {
			return r, err
		}
	}
	ids := make([]string, 0, len(tasks))
	for id, t := range tasks {
		if t.submitted {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		t := tasks[id]
		r.Tasks++
		for i, a := range t.attempts {
			if i < len(t.attempts)-1 && !t.results[a] {
				r.Reclaims++
			}
		}
		switch len(t.ends) {
		case 0:
			r.Open++
		case 1:
			r.Ended[t.ends[0]]++
		default:
			r.Ended[t.ends[0]]++
			r.Duplicated++
			r.Violations = append(r.Violations, fmt.Sprintf("task %s: %d outcomes recorded (%v); a task ends once", id, len(t.ends), t.ends))
		}
	}
	fired := map[string]bool{}
	err := streams.Replay(ctx, rdb, keys.ScheduleFires(), "-", "+", 0, func(e streams.Entry) error {
		if e.Err != nil {
			r.undecodable(e)
			return nil
		}
		if p, ok := e.Envelope.Payload.(events.ScheduleFired); ok && !p.Manual {
			r.Fires++
			k := fmt.Sprintf("%s@%d", p.Schedule, p.SlotMS)
			if fired[k] {
				r.Violations = append(r.Violations, fmt.Sprintf("schedule %s: slot %d fired twice", p.Schedule, p.SlotMS))
			}
			fired[k] = true
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	bad, n, err := Verify(ctx, h, keep, now)
	if err != nil {
		return r, err
	}
	r.Records = n
	for _, m := range bad {
		r.Violations = append(r.Violations, fmt.Sprintf("%s %s: projection differs from the history in %d fields", m.Ref.Kind, m.Ref.ID, len(m.Stored)))
	}
	return r, nil
}
