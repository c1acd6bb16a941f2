// Package schema reads and checks celeroot's declarative documents: the
// Cluster (kind: Cluster, the desired state of a cluster: Redis, worker
// groups, schedules, queue routing, targets) and the task catalog (kind:
// Task, one document per task: parameters with a JSON Schema each, the
// action, timeout and retry policy).
//
// Unlike a plain YAML decode into structs, loading keeps the position of
// every value, and validation reports every problem at once, each with
// file:line:col, the JSON pointer of the value, what is wrong and how to fix
// it:
//
//	cluster.yaml:12:7: /spec/workers/0/replica: unknown field "replica" (hint: did you mean replicas?)
//
// Validation has two layers. The JSON Schema of each kind is generated from
// the Go types of this package (schema/internal/gen, "make schema"), checked
// in as cluster.schema.json and task.schema.json, embedded, and compiled
// once by NewValidator; editors can use the same files. Then semantic checks
// cover what a schema cannot say: unique names, tasks that exist, cron
// expressions, time zones, roles that exist, parameter schemas that compile,
// parameter references that resolve (see Validator.Validate).
//
// A typical use:
//
//	v, err := schema.NewValidator() // once
//	...
//	set, errs := schema.LoadPath("cluster.yaml", os.Stdin)
//	cat, more := schema.LoadPath("catalog/", nil)
//	errs = append(errs, more...)
//	errs = append(errs, set.Merge(cat)...)
//	errs = append(errs, v.Validate(set, builtins)...)
//	for _, e := range errs {
//		fmt.Fprintln(os.Stderr, e)
//	}
//
// Diff summarizes what applying a new Cluster changes, per worker group,
// schedule and queue. Canonical and Hash give a document's canonical JSON
// (defaults applied, keys sorted) and its SHA-256, so that a configuration
// applied again unchanged is recognised however it is formatted.
//
// For the command line, ParseSelector reads "k=v,k2=v2" selectors and
// Task.ValidateParams turns --param strings into typed, validated values.
// Tasks run as an argv: Expand and ExpandArgs substitute
// {{ .params.NAME }} references without a shell.
//
// Queues. spec.queues maps a queue name to task-name globs. The queue
// "<role>_queue" is served by the workers of that role ("webserver_queue" by
// role webserver) and "all_queue" by every worker; see QueueRole and
// Queues.QueueFor.
//
// Bounds: a file (or standard input) may hold at most MaxFileSize bytes;
// a document at most 2^20 values after YAML aliases are expanded; flow
// collections nest at most 64 deep.
//
// The package imports nothing from the rest of celeroot. It is pure: no
// I/O except reading the files given to LoadPath, no global mutable state.
package schema
