package schema

import "time"

// Retention bounds how long a cluster keeps what it records in Redis
// (spec.retention). Every field is optional; an unset field takes its
// default, and a section that spells out only defaults is the same
// configuration as no section (it does not change the hash).
type Retention struct {
	// How long events stay in Redis once they are archived; older ones are trimmed from the event store (and stay in the archive).
	Events Duration `json:"events,omitzero" jsonschema:"default=168h"`
	// required: events are trimmed only once 'celeroot events archive' has written them to the archive; none: they are trimmed after the events retention even if never archived, and are then lost.
	Archive string `json:"archive,omitempty" jsonschema:"enum=required,enum=none,default=required"`
	// How long every heartbeat is kept; the event store keeps one a minute per worker (and every change of draining or revision) for longer.
	Heartbeats Duration `json:"heartbeats,omitzero" jsonschema:"default=1h"`
	// How long a task's status, output and job entry are kept after it ended (succeeded, failed, expired, cancelled, dead).
	Tasks Duration `json:"tasks,omitzero" jsonschema:"default=168h"`
	// How long a worker that left, was removed or stopped heartbeating is still listed.
	Workers Duration `json:"workers,omitzero" jsonschema:"default=168h"`
	// How long schedule events (fired, skipped, paused, resumed) are kept.
	ScheduleEvents Duration `json:"scheduleEvents,omitzero" jsonschema:"default=720h"`
}

// Archive policies of Retention.Archive.
const (
	ArchiveRequired = "required"
	ArchiveNone     = "none"
)

// Retention defaults and the shortest values allowed.
const (
	DefaultEventRetention         = 7 * 24 * time.Hour
	DefaultHeartbeatRetention     = time.Hour
	DefaultTaskRetention          = 7 * 24 * time.Hour
	DefaultWorkerRetention        = 7 * 24 * time.Hour
	DefaultScheduleEventRetention = 30 * 24 * time.Hour
	// MinRetention is the shortest retention of any kind: shorter ones
	// would trim what a status command or a slow consumer is still using.
	MinRetention = 10 * time.Minute
)

// WithDefaults returns r with every unset field set to its default.
func (r Retention) WithDefaults() Retention {
	set := func(d *Duration, def time.Duration) {
		if d.Duration == 0 {
			d.Duration = def
		}
	}
	set(&r.Events, DefaultEventRetention)
	set(&r.Heartbeats, DefaultHeartbeatRetention)
	set(&r.Tasks, DefaultTaskRetention)
	set(&r.Workers, DefaultWorkerRetention)
	set(&r.ScheduleEvents, DefaultScheduleEventRetention)
	if r.Archive == "" {
		r.Archive = ArchiveRequired
	}
	return r
}

// normalize fills the defaults and then clears the section if it holds
// only defaults, so that spelling them out is not a change.
func (r *Retention) normalize() {
	*r = r.WithDefaults()
	if *r == (Retention{}).WithDefaults() {
		*r = Retention{}
	}
}
