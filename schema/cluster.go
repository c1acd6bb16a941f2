package schema

import (
	"path"
	"sort"
	"strings"
	"time"
)

// APIVersion is the apiVersion of every document this package reads.
const APIVersion = "celeroot.io/v1"

// Document kinds.
const (
	KindCluster = "Cluster"
	KindTask    = "Task"
	// KindPlugin names the JSON Schema of a task plugin's description
	// (see Plugin); it is not a document kind of a configuration.
	KindPlugin = "Plugin"
)

// AllQueue is the queue any worker serves, whatever its role.
const AllQueue = "all_queue"

// Document is a *Cluster or a *Task.
type Document interface {
	document()
}

func (*Cluster) document() {}
func (*Task) document()    {}

// Cluster is the desired state of a cluster (kind: Cluster): its Redis,
// its worker groups, its schedules and how tasks are routed to workers.
type Cluster struct {
	// Always celeroot.io/v1.
	APIVersion string `json:"apiVersion" jsonschema:"enum=celeroot.io/v1"`
	// Always Cluster.
	Kind string `json:"kind" jsonschema:"enum=Cluster"`
	// The cluster's name and labels.
	Metadata Metadata `json:"metadata"`
	// The desired state.
	Spec ClusterSpec `json:"spec"`

	// File is the file the document was read from; it is not part of the
	// document.
	File string `json:"-"`
}

// Metadata names a cluster.
type Metadata struct {
	// The cluster name: a DNS label. It is part of every Redis key of the cluster.
	Name string `json:"name"`
	// Labels of the cluster.
	Labels Labels `json:"labels,omitempty"`
	// Free-form annotations (keys are labels, values any text).
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ClusterSpec is the desired state of a cluster.
type ClusterSpec struct {
	// The Redis deployment.
	Redis Redis `json:"redis,omitzero"`
	// Worker groups: agents with one role, selected by labels.
	Workers []WorkerGroup `json:"workers,omitempty"`
	// Scheduled task runs.
	Schedules []Schedule `json:"schedules,omitempty"`
	// Queue routing: queue name (<role>_queue or all_queue) to the task-name patterns it serves.
	Queues Queues `json:"queues,omitempty"`
	// Named target selectors.
	Targets []Target `json:"targets,omitempty"`
	// How long the cluster keeps events, heartbeats, finished tasks, gone workers and schedule events.
	Retention Retention `json:"retention,omitzero"`
}

// Redis describes the Redis deployment of a cluster.
type Redis struct {
	// Number of Redis replicas.
	Replicas int `json:"replicas,omitempty" jsonschema:"minimum=0"`
	// Memory limit: bytes, or a quantity such as 512Mi, 1Gi (powers of 1024) or 2G (powers of 1000).
	Memory Quantity `json:"memory,omitempty"`
	// Whether Redis persists its data (append-only file).
	Persistence bool `json:"persistence,omitempty"`
}

// WorkerGroup is a group of agents that share a role.
type WorkerGroup struct {
	// Name of the group, unique in the cluster.
	Name string `json:"name"`
	// Role of the group's agents; tasks are routed to roles.
	Role string `json:"role"`
	// Number of agents expected in the group.
	Replicas int `json:"replicas" jsonschema:"minimum=0"`
	// Which hosts belong to the group.
	Selector WorkerSelector `json:"selector,omitzero"`
	// Tasks the group runs; each must be declared (kind: Task) or built in.
	Tasks []string `json:"tasks,omitempty"`
}

// WorkerSelector selects the hosts of a worker group.
type WorkerSelector struct {
	// Labels a host must carry, all of them.
	Labels Labels `json:"labels,omitempty"`
}

// Labels are key-value pairs attached to hosts and clusters.
type Labels map[string]string

// Schedule runs a task at the times of a cron expression.
type Schedule struct {
	// Name of the schedule, unique in the cluster.
	Name string `json:"name"`
	// A cron expression of five fields (minute hour day-of-month month day-of-week) or a descriptor such as @daily.
	Cron string `json:"cron"`
	// The task to run.
	Task string `json:"task"`
	// Where to run it: all, or a selector such as {role: database}.
	Targets Targets `json:"targets"`
	// Task parameters.
	Params map[string]any `json:"params,omitempty"`
	// IANA time zone the cron expression is read in.
	Timezone string `json:"timezone,omitempty" jsonschema:"default=UTC"`
	// Random delay of up to this duration before each run, to spread load.
	Splay Duration `json:"splay,omitzero" jsonschema:"default=0s"`
	// Whether a run may start while the previous one is still running.
	Overlap string `json:"overlap,omitempty" jsonschema:"enum=allow,enum=skip,default=allow"`
	// What to do about runs missed while no scheduler was running: skip them, run the latest, or run all of them.
	Missed string `json:"missed,omitempty" jsonschema:"enum=skip,enum=latest,enum=all,default=skip"`
	// How far back missed runs are caught up when missed is all.
	MissedWindow Duration `json:"missedWindow,omitzero" jsonschema:"default=1h"`
}

// Schedule overlap policies.
const (
	OverlapAllow = "allow"
	OverlapSkip  = "skip"
)

// Schedule missed-run policies.
const (
	MissedSkip   = "skip"
	MissedLatest = "latest"
	MissedAll    = "all"
)

// Next returns the first time after t at which the schedule fires, in its
// time zone. It fails if the cron expression or the time zone is invalid.
func (s *Schedule) Next(t time.Time) (time.Time, error) {
	sched, err := parseCron(s.Cron)
	if err != nil {
		return time.Time{}, err
	}
	loc, err := loadLocation(s.Timezone)
	if err != nil {
		return time.Time{}, err
	}
	return sched.Next(t.In(loc)), nil
}

// Target is a named label selector (spec.targets).
type Target struct {
	// Optional name of the target, unique in the cluster.
	Name string `json:"name,omitempty"`
	// The selector: role, hostname or any label, all of which must match.
	Selector Selector `json:"selector"`
}

// Queues maps a queue name to the task-name patterns (path.Match globs such
// as "webserver_tasks.*") it serves.
//
// A queue is served by the workers of one role: queue "<role>_queue" by the
// workers whose role is <role>, and AllQueue ("all_queue") by every worker.
type Queues map[string][]string

// QueueRole returns the role whose workers serve queue: "webserver" for
// "webserver_queue". any is true for AllQueue, which every worker serves.
// role is empty if queue does not end in "_queue".
func QueueRole(queue string) (role string, any bool) {
	if queue == AllQueue {
		return "", true
	}
	role, ok := strings.CutSuffix(queue, "_queue")
	if !ok {
		return "", false
	}
	return role, false
}

// QueueFor returns the queue a task is routed to: the queue with a pattern
// that matches the task name. If several match, a pattern without
// wildcards wins over a glob, then the longer pattern, then the queue name
// that sorts first, so routing never depends on map order.
func (q Queues) QueueFor(task string) (queue string, ok bool) {
	type match struct {
		queue, pattern string
		exact          bool
	}
	var best *match
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, p := range q[name] {
			if m, err := path.Match(p, task); err != nil || !m {
				continue
			}
			cand := &match{queue: name, pattern: p, exact: !strings.ContainsAny(p, "*?[")}
			if best == nil ||
				(cand.exact && !best.exact) ||
				(cand.exact == best.exact && len(cand.pattern) > len(best.pattern)) {
				best = cand
			}
		}
	}
	if best == nil {
		return "", false
	}
	return best.queue, true
}
