package projections

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/celeroot/celeroot/events"
)

// Worker states, derived when read.
const (
	WorkerHealthy   = "healthy"
	WorkerUnhealthy = "unhealthy"
	WorkerDraining  = "draining"
	WorkerLeft      = "left"
	// WorkerExpected: added with `workers add`, its agent not started yet.
	WorkerExpected = "expected"
)

// MissedHeartbeats is how many heartbeat intervals may pass before a worker
// is shown unhealthy.
const MissedHeartbeats = 3

// Worker is the projection of one worker.
type Worker struct {
	Hostname string            `json:"hostname"`
	Role     string            `json:"role"`
	Labels   map[string]string `json:"labels,omitempty"`
	Version  string            `json:"version,omitempty"`
	Tasks    []string          `json:"tasks,omitempty"`
	// Plugins are the task plugins the worker serves (each also in Tasks),
	// and PluginProblems the plugin files it refused.
	Plugins           []events.Plugin        `json:"plugins,omitempty"`
	PluginProblems    []events.PluginProblem `json:"plugin_problems,omitempty"`
	PID               int                    `json:"pid,omitempty"`
	HeartbeatInterval time.Duration          `json:"-"`
	RegisteredAt      time.Time              `json:"registered_at"`
	LastHeartbeat     time.Time              `json:"last_heartbeat"`
	Running           int                    `json:"running"`
	Draining          bool                   `json:"draining,omitempty"`
	// Revision is the config revision the worker last reported running.
	Revision int64 `json:"revision"`
	// LeftAt is set when the worker's last lifecycle event was leaving.
	LeftAt     time.Time `json:"left_at,omitzero"`
	LeftReason string    `json:"left_reason,omitempty"`
	// Expected is set for a worker added with `workers add` that has not
	// registered yet; Removed for one taken out with `workers remove`
	// and not registered since.
	Expected bool `json:"expected,omitempty"`
	Removed  bool `json:"removed,omitempty"`
	// Resolution is how far apart the heartbeats behind this view may be:
	// 0 when every heartbeat is known, HeartbeatCheckpoint for a past
	// moment known only from the event store's checkpoints. It widens the
	// unhealthy threshold by as much.
	Resolution time.Duration `json:"-"`
}

// State returns healthy, unhealthy, draining or left, as of now.
func (w Worker) State(now time.Time) string {
	switch {
	case w.Expected:
		return WorkerExpected
	case !w.LeftAt.IsZero():
		return WorkerLeft
	case w.Draining:
		return WorkerDraining
	}
	iv := w.HeartbeatInterval
	if iv <= 0 {
		iv = 5 * time.Second
	}
	last := w.LastHeartbeat
	if w.RegisteredAt.After(last) {
		last = w.RegisteredAt
	}
	if now.Sub(last) > MissedHeartbeats*iv+w.Resolution {
		return WorkerUnhealthy
	}
	return WorkerHealthy
}

// WorkerFromRecord builds the worker view of a record.
func WorkerFromRecord(host string, r Record) Worker {
	w := Worker{
		Hostname: host,
		Role:     r["role"],
		Version:  r["version"],
	}
	_ = json.Unmarshal([]byte(r["labels"]), &w.Labels)
	_ = json.Unmarshal([]byte(r["tasks"]), &w.Tasks)
	_ = json.Unmarshal([]byte(r["plugins"]), &w.Plugins)
	_ = json.Unmarshal([]byte(r["plugin_problems"]), &w.PluginProblems)
	w.PID, _ = strconv.Atoi(r["pid"])
	w.RegisteredAt = parseTime(r["registered_at"])
	w.LastHeartbeat = parseTime(r["last_heartbeat"])
	w.Running, _ = strconv.Atoi(r["running"])
	w.Revision, _ = strconv.ParseInt(r["revision"], 10, 64)
	w.Draining = r["draining"] == "true"
	ms, _ := strconv.ParseInt(r["hb_interval_ms"], 10, 64)
	if ms == 0 {
		ms, _ = strconv.ParseInt(r["heartbeat_ms"], 10, 64)
	}
	w.HeartbeatInterval = time.Duration(ms) * time.Millisecond
	// The worker has left if its last lifecycle event (registration or
	// leaving) was leaving; a heartbeat after leaving (a restart that has
	// not re-registered yet) counts as alive too.
	if left := r[VersionPrefix+"left"]; left != "" &&
		Newer(left, r[VersionPrefix+"reg"]) && Newer(left, r[VersionPrefix+"hb"]) {
		w.LeftAt = parseTime(r["left_at"])
		w.LeftReason = r["left_reason"]
	}
	reg := r[VersionPrefix+"reg"]
	if reg == "" && r[VersionPrefix+"exp"] != "" {
		w.Expected = true
		w.Role = r["exp_role"]
		_ = json.Unmarshal([]byte(r["exp_labels"]), &w.Labels)
		w.RegisteredAt = parseTime(r["expected_at"])
	}
	if rm := r[VersionPrefix+"rm"]; rm != "" && Newer(rm, reg) && Newer(rm, r[VersionPrefix+"hb"]) {
		w.Removed = true
	}
	// A registration after the last heartbeat is a restart: what that
	// heartbeat said about running tasks and draining is over.
	if Newer(r[VersionPrefix+"reg"], r[VersionPrefix+"hb"]) || !w.LeftAt.IsZero() {
		w.Draining, w.Running = false, 0
	}
	return w
}

// Task states, derived when read.
const (
	TaskWaiting = "waiting"
	TaskRunning = "running"
	// TaskDead: given up on and moved to the dead-letter stream.
	TaskDead = "dead"
	// TaskRetrying: an attempt failed and the next one is due.
	TaskRetrying = "retrying"
	// TaskExpired and TaskCancelled end a task that never ran to an outcome.
	TaskExpired   = "expired"
	TaskCancelled = "cancelled"
)

// Attempt is one attempt at running a task.
type Attempt struct {
	Number     int64          `json:"number"`
	Worker     string         `json:"worker"`
	StartedAt  time.Time      `json:"started_at"`
	FinishedAt time.Time      `json:"finished_at,omitzero"`
	Outcome    events.Outcome `json:"outcome,omitempty"`
	ExitCode   int            `json:"exit_code"`
	Error      string         `json:"error,omitempty"`
	DurationMS int64          `json:"duration_ms,omitempty"`
	// Stale marks a result reported by an attempt that had been superseded.
	Stale bool `json:"stale,omitempty"`
	// WillRetry marks a failed attempt followed by another.
	WillRetry bool `json:"will_retry,omitempty"`
}

// Task is the projection of one task.
type Task struct {
	ID          string         `json:"id"`
	Task        string         `json:"task"`
	JobID       string         `json:"job_id,omitempty"`
	Route       events.Route   `json:"route"`
	Target      string         `json:"target"`
	Params      map[string]any `json:"params,omitempty"`
	Argv        []string       `json:"argv,omitempty"`
	TimeoutMS   int64          `json:"timeout_ms,omitempty"`
	SubmittedAt time.Time      `json:"submitted_at"`
	SubmittedBy string         `json:"submitted_by,omitempty"`
	// State is waiting, running, or the outcome.
	State      string         `json:"state"`
	Outcome    events.Outcome `json:"outcome,omitempty"`
	ExitCode   int            `json:"exit_code"`
	Error      string         `json:"error,omitempty"`
	FinishedAt time.Time      `json:"finished_at,omitzero"`
	// Worker is the worker of the attempt that produced the outcome, or of
	// the latest attempt while none has.
	Worker   string    `json:"worker,omitempty"`
	Attempts []Attempt `json:"attempts"`
	// DeadAt and DeadReason are set when the task was dead-lettered.
	DeadAt     time.Time `json:"dead_at,omitzero"`
	DeadReason string    `json:"dead_reason,omitempty"`
	// EndedAt and EndReason are set when it expired or was cancelled
	// before it ran.
	EndedAt     time.Time `json:"ended_at,omitzero"`
	EndReason   string    `json:"end_reason,omitempty"`
	MaxAttempts int64     `json:"max_attempts"`
	// Deadline is when the task expires if it has not started by then.
	Deadline       time.Time `json:"deadline,omitzero"`
	IdempotencyKey string    `json:"idempotency_key,omitempty"`
	// CancelRequestedAt is set once someone asked to cancel the task.
	CancelRequestedAt time.Time `json:"cancel_requested_at,omitzero"`
	// RedrivenTo is the task submitted again in its place.
	RedrivenTo string `json:"redriven_to,omitempty"`
	// Check is set for a run of the task's check (dry-run) form.
	Check bool `json:"check,omitempty"`
}

// Done reports whether the task has ended: with an outcome, dead-lettered,
// expired or cancelled.
func (t Task) Done() bool { return t.Outcome != "" || !t.DeadAt.IsZero() || !t.EndedAt.IsZero() }

// At returns the task as seen at now: a task still waiting after its
// deadline is shown expired (the worker that would record it is offline).
func (t Task) At(now time.Time) Task {
	if t.State == TaskWaiting && !t.Deadline.IsZero() && now.After(t.Deadline) {
		t.State = TaskExpired
	}
	return t
}

// TaskFromRecord builds the task view of a record.
func TaskFromRecord(id string, r Record) Task {
	t := Task{
		ID:          id,
		Task:        r["task"],
		JobID:       r["job"],
		Route:       events.Route(r["route"]),
		Target:      r["target"],
		SubmittedAt: parseTime(r["submitted_at"]),
		SubmittedBy: r["submitted_by"],
		Outcome:     events.Outcome(r["outcome"]),
		Error:       r["error"],
		FinishedAt:  parseTime(r["finished_at"]),
		Worker:      r["worker"],
		DeadAt:      parseTime(r["dead_at"]),
		DeadReason:  r["dead_reason"],
		EndedAt:     parseTime(r["ended_at"]),
		EndReason:   r["ended_reason"],
		Deadline:    parseTime(r["deadline"]),

		IdempotencyKey:    r["idem_key"],
		CancelRequestedAt: parseTime(r["cancel_requested_at"]),
		RedrivenTo:        r["redriven_to"],
	}
	t.MaxAttempts, _ = strconv.ParseInt(r["max_attempts"], 10, 64)
	t.Check = r["check"] == "true"
	_ = json.Unmarshal([]byte(r["params"]), &t.Params)
	_ = json.Unmarshal([]byte(r["argv"]), &t.Argv)
	t.TimeoutMS, _ = strconv.ParseInt(r["timeout_ms"], 10, 64)
	t.ExitCode, _ = strconv.Atoi(r["exit_code"])
	byNum := map[int64]*Attempt{}
	for k, v := range r {
		if len(k) < 2 || k[0] != 'a' {
			continue
		}
		num, field, ok := strings.Cut(k[1:], ".")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			continue
		}
		a := byNum[n]
		if a == nil {
			a = &Attempt{Number: n}
			byNum[n] = a
		}
		switch field {
		case "worker":
			a.Worker = v
		case "end_worker":
			if a.Worker == "" {
				a.Worker = v
			}
		case "started_at":
			a.StartedAt = parseTime(v)
		case "finished_at":
			a.FinishedAt = parseTime(v)
		case "outcome":
			a.Outcome = events.Outcome(v)
		case "exit_code":
			a.ExitCode, _ = strconv.Atoi(v)
		case "error":
			a.Error = v
		case "duration_ms":
			a.DurationMS, _ = strconv.ParseInt(v, 10, 64)
		case "stale":
			a.Stale = v == "true"
		case "will_retry":
			a.WillRetry = v == "true"
		}
	}
	for _, a := range byNum {
		t.Attempts = append(t.Attempts, *a)
	}
	sort.Slice(t.Attempts, func(i, j int) bool { return t.Attempts[i].Number < t.Attempts[j].Number })
	switch {
	case t.Outcome != "":
		t.State = string(t.Outcome)
	case !t.DeadAt.IsZero():
		t.State = TaskDead
	case !t.EndedAt.IsZero():
		t.State = r["ended_state"]
	case len(t.Attempts) > 0 && t.Attempts[len(t.Attempts)-1].FinishedAt.IsZero():
		t.State = TaskRunning
	case len(t.Attempts) > 0 && t.Attempts[len(t.Attempts)-1].WillRetry:
		t.State = TaskRetrying
	default:
		t.State = TaskWaiting
	}
	if t.Worker == "" && len(t.Attempts) > 0 {
		t.Worker = t.Attempts[len(t.Attempts)-1].Worker
	}
	return t
}

func parseTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, _ := time.Parse(timeLayout, s)
	return t
}

// Job is a fan-out run: one task per matching worker.
type Job struct {
	ID          string    `json:"id"`
	Task        string    `json:"task"`
	SubmittedAt time.Time `json:"submitted_at"`
	TaskIDs     []string  `json:"-"`
	// Tasks are the job's tasks, in task id order.
	Tasks []Task `json:"tasks"`
}

// JobFromRecord builds the job view of a record (without its tasks).
func JobFromRecord(id string, r Record) Job {
	j := Job{ID: id}
	for k := range r {
		if t, ok := strings.CutPrefix(k, "t."); ok {
			j.TaskIDs = append(j.TaskIDs, t)
			j.Task = r["n."+t]
			if at := parseTime(r["s."+t]); j.SubmittedAt.IsZero() || at.Before(j.SubmittedAt) {
				j.SubmittedAt = at
			}
		}
	}
	sort.Strings(j.TaskIDs)
	return j
}

// Counts tallies the job's tasks by state, as of now.
func (j Job) Counts(now time.Time) map[string]int {
	c := map[string]int{}
	for _, t := range j.Tasks {
		c[t.At(now).State]++
	}
	return c
}
