package schema

import "regexp"

// The patterns names and labels must match. They are written into the JSON
// Schema (so editors check them too) and used by the semantic checks and
// ParseSelector. Each is also a valid ECMA-262 regular expression.
const (
	// NamePattern is a DNS label: the cluster name (it is part of every Redis
	// key of the cluster) and the names of worker groups, schedules and
	// targets.
	NamePattern = `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`
	// RolePattern is a worker role; a role may also contain '_'.
	RolePattern = `^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$`
	// QueuePattern is a queue name: a role followed by "_queue", or
	// "all_queue" (see QueueRole).
	QueuePattern = `^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?_queue$`
	// TaskNamePattern is a task name ("apt-management", "webserver_tasks.reload").
	TaskNamePattern = `^[a-z0-9]([a-z0-9._-]{0,251}[a-z0-9])?$`
	// TaskGlobPattern is a task-name glob in spec.queues: task-name
	// characters plus the path.Match metacharacters * ? [ ] ^.
	TaskGlobPattern = `^[a-z0-9._*?^\[\]-]{1,253}$`
	// ParamNamePattern is a task parameter name.
	ParamNamePattern = `^[a-z][a-z0-9_]{0,63}$`
	// LabelPattern is a label key or value, and a selector key or value
	// (role, hostname or any label).
	LabelPattern = `^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$`
	// DurationPattern is a non-negative Go duration ("0", "30s", "1h30m").
	DurationPattern = `^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// QuantityPattern is a byte quantity (see ParseQuantity).
	QuantityPattern = `^[0-9]+(Ki|Mi|Gi|Ti|K|M|G|T)?$`
	// ModePattern is an octal file mode written as a string ("0644").
	ModePattern = `^[0-7]{3,4}$`
	// AbsPathPattern is an absolute path, or a path that starts with a
	// parameter reference.
	AbsPathPattern = `^(/|\{\{)`
)

var labelRE = regexp.MustCompile(LabelPattern)

// patternHelp says in words what each pattern means; error messages use it
// instead of the regular expression.
var patternHelp = map[string]string{
	NamePattern:      "a name of 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit",
	RolePattern:      "a role of 1-63 lower-case letters, digits, '-' and '_', starting and ending with a letter or digit",
	QueuePattern:     `a queue name of the form <role>_queue, or all_queue`,
	TaskNamePattern:  "a task name of lower-case letters, digits, '.', '_' and '-', starting and ending with a letter or digit",
	TaskGlobPattern:  "a task-name pattern of lower-case letters, digits, '.', '_', '-' and the wildcards * ? [ ]",
	ParamNamePattern: "a parameter name of lower-case letters, digits and '_', starting with a letter (at most 64 characters)",
	LabelPattern:     "1-63 letters, digits, '.', '_', '/' and '-', starting and ending with a letter or digit",
	DurationPattern:  "a non-negative duration such as 30s, 5m or 1h30m",
	QuantityPattern:  "a byte quantity such as 512Mi, 1Gi, 2G or 1073741824",
	ModePattern:      `an octal file mode in quotes, such as "0644"`,
	AbsPathPattern:   "an absolute path",
}
