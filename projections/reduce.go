package projections

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/celeroot/celeroot/events"
)

// Kind is the kind of entity a record describes.
type Kind string

// Record kinds.
const (
	KindWorker Kind = "worker"
	KindTask   Kind = "task"
	// KindJob is a fan-out run: the tasks submitted together.
	KindJob Kind = "job"
)

// Ref names a record.
type Ref struct {
	Kind Kind
	ID   string
}

// Patch sets the fields of one guard of a record, if Order is newer than
// the guard's current order.
type Patch struct {
	Ref   Ref
	Guard string
	// Order is the stream entry ID ("<ms>-<seq>") of the event.
	Order string
	// Fields are the guard's fields, each named once.
	Fields []Field
}

// Field is one field of a record and its value.
type Field struct{ Name, Value string }

// VersionPrefix prefixes the field that holds a guard's order.
const VersionPrefix = "_v."

// timeLayout is how times are stored in records.
const timeLayout = time.RFC3339Nano

// Reduce returns the patches an event makes. order is the event's stream
// entry ID. Events that do not affect a projection return nil.
func Reduce(e events.Envelope, order string) []Patch {
	at := e.Time.UTC().Format(timeLayout)
	switch p := e.Payload.(type) {
	case events.WorkerRegistered:
		return []Patch{{Ref: Ref{KindWorker, p.Hostname}, Guard: "reg", Order: order, Fields: []Field{
			{"role", p.Role},
			{"labels", jsonString(p.Labels)},
			{"version", p.Version},
			{"tasks", jsonString(p.Tasks)},
			{"plugins", jsonString(p.Plugins)},
			{"plugin_problems", jsonString(p.PluginProblems)},
			{"pid", strconv.Itoa(p.PID)},
			{"heartbeat_ms", strconv.FormatInt(p.HeartbeatMS, 10)},
			{"registered_at", at},
		}}}
	case events.WorkerHeartbeat:
		return []Patch{{Ref: Ref{KindWorker, p.Hostname}, Guard: "hb", Order: order, Fields: []Field{
			{"last_heartbeat", at},
			{"seq", strconv.FormatInt(p.Seq, 10)},
			{"running", strconv.Itoa(p.Running)},
			{"draining", strconv.FormatBool(p.Draining)},
			{"hb_interval_ms", strconv.FormatInt(p.HeartbeatMS, 10)},
			{"revision", strconv.FormatInt(p.Revision, 10)},
		}}}
	case events.WorkerExpected:
		return []Patch{{Ref: Ref{KindWorker, p.Hostname}, Guard: "exp", Order: order, Fields: []Field{
			{"exp_role", p.Role},
			{"exp_labels", jsonString(p.Labels)},
			{"expected_at", at},
		}}}
	case events.WorkerRemoved:
		return []Patch{{Ref: Ref{KindWorker, p.Hostname}, Guard: "rm", Order: order, Fields: []Field{
			{"removed_at", at},
			{"removed_reason", p.Reason},
		}}}
	case events.WorkerLeft:
		return []Patch{{Ref: Ref{KindWorker, p.Hostname}, Guard: "left", Order: order, Fields: []Field{
			{"left_at", at},
			{"left_reason", p.Reason},
		}}}
	case events.TaskSubmitted:
		var job []Patch
		if p.JobID != "" {
			// Each task is its own guard of the job record, with fields of
			// its own (guards never share a field, or the order of arrival
			// would matter): t.<task> = target, n.<task> = task name,
			// s.<task> = submission time.
			job = []Patch{{Ref: Ref{KindJob, p.JobID}, Guard: "t." + p.TaskID, Order: order, Fields: []Field{
				{"t." + p.TaskID, p.Target},
				{"n." + p.TaskID, p.Task},
				{"s." + p.TaskID, at},
			}}}
		}
		return append(job, Patch{Ref: Ref{KindTask, p.TaskID}, Guard: "sub", Order: order, Fields: nonEmpty([]Field{
			{"task", p.Task},
			{"job", p.JobID},
			{"route", string(p.Route)},
			{"target", p.Target},
			{"params", jsonString(p.Params)},
			{"argv", jsonString(p.Argv)},
			{"timeout_ms", strconv.FormatInt(p.TimeoutMS, 10)},
			{"max_attempts", strconv.FormatInt(max(p.MaxAttempts, 1), 10)},
			{"deadline", formatTime(p.Deadline)},
			{"idem_key", p.IdempotencyKey},
			{"check", strconv.FormatBool(p.Check)},
			{"submitted_at", at},
			{"submitted_by", e.Actor},
		})})
	case events.TaskStarted:
		a := attemptPrefix(p.Attempt)
		return []Patch{{Ref: Ref{KindTask, p.TaskID}, Guard: a + "s", Order: order, Fields: []Field{
			{a + "worker", p.Worker},
			{a + "started_at", at},
		}}}
	case events.TaskFinished:
		a := attemptPrefix(p.Attempt)
		end := []Field{
			{a + "outcome", string(p.Outcome)},
			{a + "exit_code", strconv.Itoa(p.ExitCode)},
			{a + "error", p.Error},
			{a + "finished_at", at},
			{a + "duration_ms", strconv.FormatInt(p.DurationMS, 10)},
			{a + "stale", strconv.FormatBool(p.Stale)},
			{a + "will_retry", strconv.FormatBool(p.WillRetry)},
			{a + "end_worker", p.Worker},
		}
		patches := make([]Patch, 1, 2)
		patches[0] = Patch{Ref: Ref{KindTask, p.TaskID}, Guard: a + "f", Order: order, Fields: nonEmpty(end)}
		if !p.Stale && !p.WillRetry {
			patches = append(patches, Patch{Ref: Ref{KindTask, p.TaskID}, Guard: "out", Order: order, Fields: nonEmpty([]Field{
				{"outcome", string(p.Outcome)},
				{"exit_code", strconv.Itoa(p.ExitCode)},
				{"error", p.Error},
				{"finished_at", at},
				{"attempt", strconv.FormatInt(p.Attempt, 10)},
				{"worker", p.Worker},
			})})
		}
		return patches
	case events.TaskEnded:
		return []Patch{{Ref: Ref{KindTask, p.TaskID}, Guard: "end", Order: order, Fields: []Field{
			{"ended_at", at},
			{"ended_state", p.State},
			{"ended_reason", p.Reason},
		}}}
	case events.TaskCancel:
		return []Patch{{Ref: Ref{KindTask, p.TaskID}, Guard: "cancel", Order: order, Fields: []Field{
			{"cancel_requested_at", at},
			{"cancel_reason", p.Reason},
			{"cancel_by", e.Actor},
		}}}
	case events.TaskRedriven:
		return []Patch{{Ref: Ref{KindTask, p.TaskID}, Guard: "redrive", Order: order, Fields: []Field{
			{"redriven_to", p.NewTaskID},
			{"redriven_at", at},
		}}}
	case events.TaskDeadLettered:
		return []Patch{{Ref: Ref{KindTask, p.TaskID}, Guard: "dead", Order: order, Fields: []Field{
			{"dead_at", at},
			{"dead_reason", p.Reason},
			{"dead_deliveries", strconv.FormatInt(p.Deliveries, 10)},
		}}}
	}
	return nil
}

// nonEmpty drops the empty fields of a guard that one event writes once
// (a task's submission, an attempt's end, the outcome): a missing field
// reads as empty, and a third of a task's fields are usually empty. Guards
// that later events rewrite keep every field, or an old value would stay.
func nonEmpty(fields []Field) []Field {
	return slices.DeleteFunc(fields, func(f Field) bool { return f.Value == "" })
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeLayout)
}

func attemptPrefix(n int64) string { return "a" + strconv.FormatInt(n, 10) + "." }

func jsonString(v any) string {
	b, err := json.Marshal(v)
	if err != nil || string(b) == "null" {
		return ""
	}
	return string(b)
}
