package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Type names. The suffix is the payload's schema version; a change that is
// not purely additive gets a new version and an upcaster from the old one.
const (
	TypeWorkerRegistered = "worker.registered.v1"
	TypeWorkerHeartbeat  = "worker.heartbeat.v1"
	TypeWorkerLeft       = "worker.left.v1"
	TypeTaskSubmitted    = "task.submitted.v1"
	TypeTaskStarted      = "task.started.v1"
	TypeTaskLog          = "task.log.v1"
	TypeTaskFinished     = "task.finished.v1"
	TypeConfigApplied    = "config.applied.v1"
	TypeTaskDeadLettered = "task.deadlettered.v1"
	TypeTaskCancel       = "task.cancel.v1"
	TypeTaskEnded        = "task.ended.v1"
	TypeTaskRedriven     = "task.redriven.v1"
	TypeWorkerDrain      = "worker.drain.v1"
	TypeWorkerExpected   = "worker.expected.v1"
	TypeWorkerRemoved    = "worker.removed.v1"
	TypeScheduleFired    = "schedule.fired.v1"
	TypeSchedulePaused   = "schedule.paused.v1"
	TypeScheduleResumed  = "schedule.resumed.v1"
	TypeScheduleSkipped  = "schedule.skipped.v1"
	TypeConfigAnnounced  = "config.announced.v1"
)

// Outcome is how a task attempt ended.
type Outcome string

// Outcomes of a task attempt.
const (
	Succeeded Outcome = "succeeded"
	Failed    Outcome = "failed"
	TimedOut  Outcome = "timed_out"
	// Cancelled: stopped by `celeroot task cancel`.
	Cancelled Outcome = "cancelled"
)

// Valid reports whether o is a known outcome.
func (o Outcome) Valid() bool {
	return o == Succeeded || o == Failed || o == TimedOut || o == Cancelled
}

// Route says how a task reaches a worker.
type Route string

// Routes of a task submission.
const (
	// RouteWorker sends the task to one named worker's dispatch stream.
	RouteWorker Route = "worker"
	// RouteQueue sends the task to a role's shared stream, where any one
	// worker of the role takes it.
	RouteQueue Route = "queue"
)

// WorkerRegistered is appended by an agent when it starts.
type WorkerRegistered struct {
	Hostname string            `json:"hostname"`
	Role     string            `json:"role"`
	Labels   map[string]string `json:"labels,omitempty"`
	Version  string            `json:"version,omitempty"`
	// Tasks are the task names this worker can run, its plugins included.
	Tasks []string `json:"tasks,omitempty"`
	PID   int      `json:"pid,omitempty"`
	// HeartbeatMS is the heartbeat interval the worker promises to keep.
	HeartbeatMS int64 `json:"heartbeat_ms"`
	// Plugins are the task plugins this worker serves, as they described
	// themselves; each is also in Tasks.
	Plugins []Plugin `json:"plugins,omitempty"`
	// PluginProblems are the executables of the plugin directory that the
	// worker refused, and why.
	PluginProblems []PluginProblem `json:"plugin_problems,omitempty"`
}

// Plugin is a task plugin as a worker advertises it.
type Plugin struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	Description string `json:"description,omitempty"`
	// Params are the parameter declarations, as JSON in the shape of a
	// catalog task's spec.params.
	Params    json.RawMessage `json:"params,omitempty"`
	TimeoutMS int64           `json:"timeout_ms,omitempty"`
	// Idempotent and Check are as in a catalog task: running it twice has
	// the effect of once; it has a check (dry-run) form.
	Idempotent bool `json:"idempotent,omitempty"`
	Check      bool `json:"check,omitempty"`
	// Hash is the SHA-256 of the plugin's description in canonical JSON,
	// hex: workers with the same plugin advertise the same hash.
	Hash string `json:"hash"`
}

// PluginProblem is a file of the plugin directory that is not served.
type PluginProblem struct {
	// File is the executable's path.
	File string `json:"file"`
	// Error says why it is not served, and how to fix it.
	Error string `json:"error"`
}

// EventType implements Payload.
func (WorkerRegistered) EventType() string { return TypeWorkerRegistered }

// Validate implements Payload.
func (p WorkerRegistered) Validate() error {
	errs := []error{
		name("hostname", p.Hostname),
		name("role", p.Role),
		positive("heartbeat_ms", p.HeartbeatMS),
	}
	for i, pl := range p.Plugins {
		if err := pl.validate(); err != nil {
			errs = append(errs, fmt.Errorf("plugins[%d]: %w", i, err))
		}
	}
	for i, pp := range p.PluginProblems {
		if pp.File == "" || pp.Error == "" {
			errs = append(errs, fmt.Errorf("plugin_problems[%d]: file and error are required", i))
		}
	}
	return joinErrs(errs...)
}

func (p Plugin) validate() error {
	var hashErr, paramsErr error
	if len(p.Hash) != 64 {
		hashErr = fmt.Errorf("hash must be 64 hex digits, got %d characters", len(p.Hash))
	}
	if len(p.Params) > 0 && !json.Valid(p.Params) {
		paramsErr = errors.New("params is not valid JSON")
	}
	return joinErrs(name("name", p.Name), required("version", p.Version), nonNegative("timeout_ms", p.TimeoutMS), hashErr, paramsErr)
}

// WorkerHeartbeat is appended by an agent every heartbeat interval.
type WorkerHeartbeat struct {
	Hostname string `json:"hostname"`
	// Seq counts heartbeats since the agent started.
	Seq int64 `json:"seq"`
	// Running is the number of tasks executing on the worker.
	Running     int   `json:"running"`
	HeartbeatMS int64 `json:"heartbeat_ms"`
	Draining    bool  `json:"draining,omitempty"`
	// Revision is the config revision the agent runs; 0 before any apply.
	Revision int64 `json:"revision,omitempty"`
}

// EventType implements Payload.
func (WorkerHeartbeat) EventType() string { return TypeWorkerHeartbeat }

// Validate implements Payload.
func (p WorkerHeartbeat) Validate() error {
	return joinErrs(name("hostname", p.Hostname), positive("heartbeat_ms", p.HeartbeatMS),
		nonNegative("running", int64(p.Running)))
}

// WorkerLeft is appended by an agent that stops cleanly.
type WorkerLeft struct {
	Hostname string `json:"hostname"`
	Reason   string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (WorkerLeft) EventType() string { return TypeWorkerLeft }

// Validate implements Payload.
func (p WorkerLeft) Validate() error { return name("hostname", p.Hostname) }

// TaskSubmitted records an accepted task. The same envelope is the entry in
// the dispatch stream the worker reads.
type TaskSubmitted struct {
	TaskID string `json:"task_id"`
	// JobID groups the tasks of one fan-out run; empty for a single task.
	JobID string `json:"job_id,omitempty"`
	// Task is the catalog name of the task, such as "command".
	Task   string         `json:"task"`
	Params map[string]any `json:"params,omitempty"`
	// Argv is the command line for the built-in "command" task.
	Argv  []string `json:"argv,omitempty"`
	Route Route    `json:"route"`
	// Target is the worker hostname (RouteWorker) or role (RouteQueue).
	Target    string `json:"target"`
	TimeoutMS int64  `json:"timeout_ms,omitempty"`
	// MaxAttempts is how many attempts a failing task gets (0 or 1: one).
	MaxAttempts int64 `json:"max_attempts,omitempty"`
	// BackoffMS is the delay before the first retry; it doubles with each
	// retry, with jitter.
	BackoffMS int64 `json:"backoff_ms,omitempty"`
	// Deadline is when a task that has not started yet expires instead.
	Deadline time.Time `json:"deadline,omitzero"`
	// IdempotencyKey, if set, made a repeated submission return this task.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// Check runs the task's dry-run (check) form instead of its action.
	Check bool `json:"check,omitempty"`
}

// EventType implements Payload.
func (TaskSubmitted) EventType() string { return TypeTaskSubmitted }

// Timeout returns the task's timeout, zero for none.
func (p TaskSubmitted) Timeout() time.Duration { return time.Duration(p.TimeoutMS) * time.Millisecond }

// Validate implements Payload.
func (p TaskSubmitted) Validate() error {
	var routeErr error
	if p.Route != RouteWorker && p.Route != RouteQueue {
		routeErr = fmt.Errorf("route %q is not %q or %q", p.Route, RouteWorker, RouteQueue)
	}
	return joinErrs(
		name("task_id", p.TaskID),
		required("task", p.Task),
		routeErr,
		name("target", p.Target),
		nonNegative("timeout_ms", p.TimeoutMS),
		nonNegative("max_attempts", p.MaxAttempts),
		nonNegative("backoff_ms", p.BackoffMS),
	)
}

// TaskStarted records that a worker began an attempt. Attempt is the
// fencing epoch handed out atomically by the store: it increases with every
// attempt of the task, and only the newest attempt's result counts.
type TaskStarted struct {
	TaskID  string `json:"task_id"`
	Attempt int64  `json:"attempt"`
	Worker  string `json:"worker"`
}

// EventType implements Payload.
func (TaskStarted) EventType() string { return TypeTaskStarted }

// Validate implements Payload.
func (p TaskStarted) Validate() error {
	return joinErrs(name("task_id", p.TaskID), positive("attempt", p.Attempt), name("worker", p.Worker))
}

// TaskLog carries a chunk of a task's output.
type TaskLog struct {
	TaskID  string `json:"task_id"`
	Attempt int64  `json:"attempt"`
	// Stream is "stdout" or "stderr".
	Stream string `json:"stream"`
	// Seq orders the chunks of one attempt.
	Seq int64 `json:"seq"`
	// Data is UTF-8 text; producers replace invalid bytes with U+FFFD.
	Data string `json:"data"`
	// Truncated marks the chunk after which output was dropped because the
	// per-task log limit was reached.
	Truncated bool `json:"truncated,omitempty"`
}

// EventType implements Payload.
func (TaskLog) EventType() string { return TypeTaskLog }

// Validate implements Payload.
func (p TaskLog) Validate() error {
	var streamErr error
	if p.Stream != "stdout" && p.Stream != "stderr" {
		streamErr = fmt.Errorf("stream %q is not stdout or stderr", p.Stream)
	}
	var textErr error
	if !utf8.ValidString(p.Data) {
		textErr = errors.New("data is not valid UTF-8 (replace invalid bytes, see strings.ToValidUTF8)")
	}
	return joinErrs(name("task_id", p.TaskID), positive("attempt", p.Attempt), streamErr, textErr)
}

// TaskFinished records how an attempt ended. Stale is set by the store
// when the attempt was superseded by a newer one (its worker was presumed
// dead and the task reclaimed): a stale result is kept for the record and
// never taken as the task's outcome.
type TaskFinished struct {
	TaskID     string  `json:"task_id"`
	Attempt    int64   `json:"attempt"`
	Worker     string  `json:"worker"`
	Outcome    Outcome `json:"outcome"`
	ExitCode   int     `json:"exit_code"`
	Error      string  `json:"error,omitempty"`
	DurationMS int64   `json:"duration_ms"`
	Stale      bool    `json:"stale,omitempty"`
	// WillRetry marks a failed attempt after which the task is retried:
	// the attempt ended, the task did not.
	WillRetry bool `json:"will_retry,omitempty"`
}

// EventType implements Payload.
func (TaskFinished) EventType() string { return TypeTaskFinished }

// Validate implements Payload.
func (p TaskFinished) Validate() error {
	var outErr error
	if !p.Outcome.Valid() {
		outErr = fmt.Errorf("outcome %q is not one of succeeded, failed, timed_out, cancelled", p.Outcome)
	}
	return joinErrs(name("task_id", p.TaskID), positive("attempt", p.Attempt),
		name("worker", p.Worker), outErr, nonNegative("duration_ms", p.DurationMS))
}

// ValidateName reports whether name can be a hostname, role or task id:
// letters, digits, '.', '_' and '-', at most 253, starting and ending with
// a letter or digit. They become parts of Redis key names, so braces,
// colons and spaces are refused. kind names it in the error ("hostname").
//
// It is called for every name of every event encoded or decoded, so it is
// a plain loop rather than a regular expression.
func ValidateName(kind, name string) error {
	if !validName(name) {
		return fmt.Errorf("%s %q: use letters, digits, '.', '_' and '-' (at most 253), starting and ending with a letter or digit", kind, trunc(name))
	}
	return nil
}

// validName is ^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$.
func validName(s string) bool {
	n := len(s)
	if n == 0 || n > 253 || !alnum(s[0]) || !alnum(s[n-1]) {
		return false
	}
	for i := 1; i < n-1; i++ {
		if c := s[i]; !alnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func alnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// name is ValidateName for a required payload field.
func name(field, v string) error {
	if v == "" {
		return fmt.Errorf("%s is required", field)
	}
	return ValidateName(field, v)
}

func required(name, v string) error {
	if v == "" {
		return fmt.Errorf("%s is required", name)
	}
	return nil
}

func positive(name string, v int64) error {
	if v <= 0 {
		return fmt.Errorf("%s must be > 0, got %d", name, v)
	}
	return nil
}

func nonNegative(name string, v int64) error {
	if v < 0 {
		return fmt.Errorf("%s must be >= 0, got %d", name, v)
	}
	return nil
}

func joinErrs(errs ...error) error { return errors.Join(errs...) }

// ConfigApplied records a new revision of the cluster's declarative
// configuration. Revisions count up from 1 without gaps; the store refuses
// an append whose Revision is not the current one plus one.
type ConfigApplied struct {
	Revision int64 `json:"revision"`
	// Document is the canonical JSON of the applied documents (the Cluster
	// and the task catalog).
	Document string `json:"document"`
	// Hash is the SHA-256 of Document, hex.
	Hash    string `json:"hash"`
	Message string `json:"message,omitempty"`
	// RollbackOf is the revision whose content this one re-applies, if any.
	RollbackOf int64 `json:"rollback_of,omitempty"`
}

// EventType implements Payload.
func (ConfigApplied) EventType() string { return TypeConfigApplied }

// Validate implements Payload.
func (p ConfigApplied) Validate() error {
	var hashErr error
	if len(p.Hash) != 64 {
		hashErr = fmt.Errorf("hash must be 64 hex digits, got %d characters", len(p.Hash))
	}
	return joinErrs(positive("revision", p.Revision), required("document", p.Document), hashErr,
		nonNegative("rollback_of", p.RollbackOf))
}

// TaskDeadLettered records that a task was given up on: its dispatch entry
// was delivered the maximum number of times without a result, or was
// trimmed while pending. The entry is in the dead-letter stream.
type TaskDeadLettered struct {
	TaskID     string `json:"task_id"`
	Reason     string `json:"reason"`
	Deliveries int64  `json:"deliveries"`
	// Stream and EntryID name the dispatch entry that was dead-lettered.
	Stream  string `json:"stream"`
	EntryID string `json:"entry_id"`
}

// EventType implements Payload.
func (TaskDeadLettered) EventType() string { return TypeTaskDeadLettered }

// Validate implements Payload.
func (p TaskDeadLettered) Validate() error {
	return joinErrs(name("task_id", p.TaskID), required("reason", p.Reason), nonNegative("deliveries", p.Deliveries))
}

// TaskCancel asks for a task to be cancelled. It is recorded in the task's
// shard and, for a running task, sent to the worker's control stream.
type TaskCancel struct {
	TaskID string `json:"task_id"`
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (TaskCancel) EventType() string { return TypeTaskCancel }

// Validate implements Payload.
func (p TaskCancel) Validate() error { return name("task_id", p.TaskID) }

// End states of a task that ended without an attempt's outcome.
const (
	// EndExpired: a task that had not started when its deadline passed.
	EndExpired = "expired"
	// EndCancelled: a task cancelled before it started.
	EndCancelled = "cancelled"
)

// TaskEnded records that a task ended without running to an outcome:
// cancelled while waiting, or expired at its deadline.
type TaskEnded struct {
	TaskID string `json:"task_id"`
	// State is EndExpired or EndCancelled.
	State  string `json:"state"`
	Reason string `json:"reason"`
}

// EventType implements Payload.
func (TaskEnded) EventType() string { return TypeTaskEnded }

// Validate implements Payload.
func (p TaskEnded) Validate() error {
	var stErr error
	if p.State != EndExpired && p.State != EndCancelled {
		stErr = fmt.Errorf("state %q is not %s or %s", p.State, EndExpired, EndCancelled)
	}
	return joinErrs(name("task_id", p.TaskID), stErr, required("reason", p.Reason))
}

// TaskRedriven records that a task was submitted again as NewTaskID (from
// the dead letters, or after it failed).
type TaskRedriven struct {
	TaskID    string `json:"task_id"`
	NewTaskID string `json:"new_task_id"`
}

// EventType implements Payload.
func (TaskRedriven) EventType() string { return TypeTaskRedriven }

// Validate implements Payload.
func (p TaskRedriven) Validate() error {
	return joinErrs(name("task_id", p.TaskID), name("new_task_id", p.NewTaskID))
}

// ConfigAnnounced tells a worker, through its control stream, that config
// revision Revision was applied, so it loads it at once instead of noticing
// it with its next heartbeat.
type ConfigAnnounced struct {
	Revision int64 `json:"revision"`
}

// EventType implements Payload.
func (ConfigAnnounced) EventType() string { return TypeConfigAnnounced }

// Validate implements Payload.
func (p ConfigAnnounced) Validate() error { return positive("revision", p.Revision) }

// WorkerDrain asks a worker, through its control stream, to drain and stop:
// take no new tasks, let running ones finish, leave.
type WorkerDrain struct {
	Hostname string `json:"hostname"`
	Reason   string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (WorkerDrain) EventType() string { return TypeWorkerDrain }

// Validate implements Payload.
func (p WorkerDrain) Validate() error { return name("hostname", p.Hostname) }

// ScheduleFired records that a schedule fired for one slot: the evaluator
// that won the slot appended it, and the scheduler consumers turn it into
// one task per target. Processing it twice submits the same task ids.
type ScheduleFired struct {
	Schedule string `json:"schedule"`
	// SlotMS is the cron slot fired, in Unix milliseconds; for a manual
	// trigger, the time of the trigger.
	SlotMS int64  `json:"slot_ms"`
	Task   string `json:"task"`
	// Params are the task parameters of the schedule.
	Params map[string]any `json:"params,omitempty"`
	// All targets every healthy worker that runs Task; otherwise Selector
	// (role, hostname or labels) picks the workers.
	All      bool              `json:"all,omitempty"`
	Selector map[string]string `json:"selector,omitempty"`
	// Manual marks a fire asked for with `celeroot schedules trigger`.
	Manual bool `json:"manual,omitempty"`
	// Revision is the config revision the schedule was read from.
	Revision int64 `json:"revision,omitempty"`
	// JobID is the job of the fire's tasks, derived from the schedule and
	// the slot.
	JobID string `json:"job_id"`
	// PreviousJob is the job of the schedule's previous fire, filled in
	// atomically when the fire is recorded.
	PreviousJob string `json:"previous_job,omitempty"`
	// Overlap is the schedule's overlap policy: "allow" or "skip".
	Overlap string `json:"overlap,omitempty"`
	// SplayMS bounds the random delay before each target's submission.
	SplayMS int64 `json:"splay_ms,omitempty"`
}

// EventType implements Payload.
func (ScheduleFired) EventType() string { return TypeScheduleFired }

// Validate implements Payload.
func (p ScheduleFired) Validate() error {
	var targetErr error
	if !p.All && len(p.Selector) == 0 {
		targetErr = errors.New("all or selector is required")
	}
	return joinErrs(required("schedule", p.Schedule), positive("slot_ms", p.SlotMS), required("task", p.Task),
		targetErr, name("job_id", p.JobID), nonNegative("revision", p.Revision), nonNegative("splay_ms", p.SplayMS))
}

// SchedulePaused records that a schedule was paused: its slots pass
// without firing until it is resumed.
type SchedulePaused struct {
	Schedule string `json:"schedule"`
}

// EventType implements Payload.
func (SchedulePaused) EventType() string { return TypeSchedulePaused }

// Validate implements Payload.
func (p SchedulePaused) Validate() error { return required("schedule", p.Schedule) }

// ScheduleResumed records that a paused schedule was resumed.
type ScheduleResumed struct {
	Schedule string `json:"schedule"`
}

// EventType implements Payload.
func (ScheduleResumed) EventType() string { return TypeScheduleResumed }

// Validate implements Payload.
func (p ScheduleResumed) Validate() error { return required("schedule", p.Schedule) }

// ScheduleSkipped records that a schedule did not run for a slot: the
// previous run was still going (overlap skip), no worker matched, or slots
// were missed while no scheduler ran (one event sums those up).
type ScheduleSkipped struct {
	Schedule string `json:"schedule"`
	SlotMS   int64  `json:"slot_ms"`
	Reason   string `json:"reason"`
	// JobID is the job the skipped fire would have run, if it was fired.
	JobID string `json:"job_id,omitempty"`
}

// EventType implements Payload.
func (ScheduleSkipped) EventType() string { return TypeScheduleSkipped }

// Validate implements Payload.
func (p ScheduleSkipped) Validate() error {
	return joinErrs(required("schedule", p.Schedule), positive("slot_ms", p.SlotMS), required("reason", p.Reason))
}

// WorkerExpected pre-registers a worker that is to join: it is listed, as
// expected, until its agent registers.
type WorkerExpected struct {
	Hostname string            `json:"hostname"`
	Role     string            `json:"role"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// EventType implements Payload.
func (WorkerExpected) EventType() string { return TypeWorkerExpected }

// Validate implements Payload.
func (p WorkerExpected) Validate() error {
	return joinErrs(name("hostname", p.Hostname), name("role", p.Role))
}

// WorkerRemoved records that a worker was taken out of the cluster: it is
// no longer listed unless its agent registers again.
type WorkerRemoved struct {
	Hostname string `json:"hostname"`
	Reason   string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (WorkerRemoved) EventType() string { return TypeWorkerRemoved }

// Validate implements Payload.
func (p WorkerRemoved) Validate() error { return name("hostname", p.Hostname) }
