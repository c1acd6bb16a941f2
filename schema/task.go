package schema

import "time"

// Task declares a task of the catalog (kind: Task): its parameters, what it
// does and how it is retried.
type Task struct {
	// Always celeroot.io/v1.
	APIVersion string `json:"apiVersion" jsonschema:"enum=celeroot.io/v1"`
	// Always Task.
	Kind string `json:"kind" jsonschema:"enum=Task"`
	// The task's name.
	Metadata TaskMetadata `json:"metadata"`
	// What the task does.
	Spec TaskSpec `json:"spec"`

	// File is the file the document was read from; it is not part of the
	// document.
	File string `json:"-"`
}

// TaskMetadata names a task.
type TaskMetadata struct {
	// The task name, as given to "celeroot task run".
	Name string `json:"name"`
	// Labels of the task.
	Labels Labels `json:"labels,omitempty"`
	// Free-form annotations (keys are labels, values any text).
	Annotations map[string]string `json:"annotations,omitempty"`
}

// TaskSpec is what a task does.
type TaskSpec struct {
	// One line saying what the task does.
	Description string `json:"description,omitempty"`
	// Parameters by name.
	Params Params `json:"params,omitempty"`
	// What the task does.
	Action Action `json:"action"`
	// A dry-run form of the action, run by "task run --check".
	Check *Action `json:"check,omitempty"`
	// How long one attempt may run before it is killed.
	Timeout Duration `json:"timeout,omitzero" jsonschema:"default=1h"`
	// How failed attempts are retried.
	Retry Retry `json:"retry,omitzero"`
	// Whether running the task twice has the same effect as running it once.
	Idempotent bool `json:"idempotent,omitempty"`
}

// Params maps a parameter name to its declaration.
type Params map[string]Param

// Param declares one task parameter.
type Param struct {
	// A JSON Schema the parameter's value must match, such as {type: string, pattern: "^[a-z]+$"}.
	Schema map[string]any `json:"schema"`
	// What the parameter means.
	Description string `json:"description,omitempty"`
	// Whether the parameter must be given.
	Required bool `json:"required,omitempty"`
	// The value used when the parameter is not given.
	Default any `json:"default,omitempty"`
}

// Action is what a task does: exactly one of its fields is set.
//
// Strings of a command, of a package or service name and of a file path
// may reference parameters as {{ .params.NAME }}; the agent substitutes
// them (see Expand and ExpandArgs). A command is run as an argv, never
// through a shell. A shell action is explicit and gets its parameters as
// environment variables CELEROOT_PARAM_<NAME> instead.
type Action struct {
	// Run a program: an argv whose elements may reference {{ .params.NAME }}.
	Command []string `json:"command,omitempty" jsonschema:"oneof_required=command,minItems=1"`
	// Run a script with an interpreter; parameters are passed as CELEROOT_PARAM_<NAME> environment variables.
	Shell *ShellAction `json:"shell,omitempty" jsonschema:"oneof_required=shell"`
	// Install, upgrade or remove a package with the host's package manager.
	Package *PackageAction `json:"package,omitempty" jsonschema:"oneof_required=package"`
	// Write a file from literal content or a template.
	File *FileAction `json:"file,omitempty" jsonschema:"oneof_required=file"`
	// Start, stop, restart or reload a service.
	Service *ServiceAction `json:"service,omitempty" jsonschema:"oneof_required=service"`
}

// ShellAction runs a script.
type ShellAction struct {
	// The script.
	Script string `json:"script"`
	// Absolute path of the interpreter.
	Interpreter string `json:"interpreter,omitempty" jsonschema:"default=/bin/sh"`
}

// PackageAction manages a package.
type PackageAction struct {
	// Package name; may reference {{ .params.NAME }}.
	Name string `json:"name"`
	// Desired state.
	State string `json:"state,omitempty" jsonschema:"enum=present,enum=absent,enum=latest,default=present"`
	// Package manager; auto detects apt, dnf or apk.
	Manager string `json:"manager,omitempty" jsonschema:"enum=auto,enum=apt,enum=dnf,enum=apk,default=auto"`
}

// FileAction writes a file; exactly one of Content and Template is set.
type FileAction struct {
	// Absolute path of the file; may reference {{ .params.NAME }}.
	Path string `json:"path"`
	// Literal content.
	Content *string `json:"content,omitempty" jsonschema:"oneof_required=content"`
	// A Go text/template rendered with .params.
	Template *string `json:"template,omitempty" jsonschema:"oneof_required=template"`
	// Octal file mode as a string, such as "0644".
	Mode string `json:"mode,omitempty"`
	// Owner as user or user:group.
	Owner string `json:"owner,omitempty"`
}

// ServiceAction manages a service.
type ServiceAction struct {
	// Service name; may reference {{ .params.NAME }}.
	Name string `json:"name"`
	// Desired state.
	State string `json:"state" jsonschema:"enum=started,enum=stopped,enum=restarted,enum=reloaded"`
	// Whether the service starts at boot; unchanged if not set.
	Enabled *bool `json:"enabled,omitempty"`
}

// Retry says how failed attempts are retried.
type Retry struct {
	// Attempts in all, the first included.
	MaxAttempts int `json:"maxAttempts,omitempty" jsonschema:"minimum=1,maximum=100,default=1"`
	// Delay before the second attempt; it doubles for each further attempt.
	Backoff Duration `json:"backoff,omitzero" jsonschema:"default=5s"`
	// Upper bound of the delay between attempts.
	MaxBackoff Duration `json:"maxBackoff,omitzero" jsonschema:"default=5m"`
}

// Defaults of optional fields, applied by Load and by Canonical.
const (
	DefaultTimezone     = "UTC"
	DefaultMissedWindow = time.Hour
	DefaultTimeout      = time.Hour
	DefaultMaxAttempts  = 1
	DefaultBackoff      = 5 * time.Second
	DefaultMaxBackoff   = 5 * time.Minute
	DefaultInterpreter  = "/bin/sh"
)
