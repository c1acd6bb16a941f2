package schema

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// PluginProtocol is the version of the task plugin protocol this build
// speaks: what "describe" answers and how a plugin is run (see ADR 0007).
const PluginProtocol = 1

// MaxPluginDescription bounds what a plugin may print in answer to
// "describe".
const MaxPluginDescription = 64 << 10

// Plugin is a task plugin's description: what an executable in an agent's
// plugin directory prints, as one JSON object, when run as
// "<executable> describe". It makes the executable a task like a catalog
// one: the agent advertises it, and "celeroot task run" checks parameters
// against it before anything is submitted.
type Plugin struct {
	// The plugin protocol the plugin speaks: 1.
	Protocol int `json:"protocol" jsonschema:"enum=1"`
	// The task name, as given to "celeroot task run".
	Name string `json:"name"`
	// The plugin's version, such as 1.2.0.
	Version string `json:"version" jsonschema:"minLength=1,maxLength=64"`
	// One line saying what the task does.
	Description string `json:"description,omitempty" jsonschema:"maxLength=1024"`
	// Parameters by name, declared as in a Task document's spec.params.
	Params Params `json:"params,omitempty"`
	// How long one run may take before it is killed, unless "task run --timeout" says otherwise.
	Timeout Duration `json:"timeout,omitzero"`
	// Whether running the task twice has the same effect as running it once.
	Idempotent bool `json:"idempotent,omitempty"`
	// Whether the plugin has a check (dry-run) form, run as "<executable> check" by "task run --check".
	Check bool `json:"check,omitempty"`
}

// Task returns the plugin as a task declaration: its name, description,
// parameters, timeout and idempotency, and no action (the agent runs the
// executable). ValidateParams and CheckParams of the result check a
// plugin's parameters exactly as a catalog task's.
func (p *Plugin) Task() *Task {
	return &Task{APIVersion: APIVersion, Kind: KindTask,
		Metadata: TaskMetadata{Name: p.Name},
		Spec:     TaskSpec{Description: p.Description, Params: p.Params, Timeout: p.Timeout, Idempotent: p.Idempotent}}
}

// Hash returns the hex SHA-256 of the description's canonical JSON (keys
// sorted, no insignificant white space): two agents with the same plugin
// advertise the same hash, however the plugin formats its answer.
func (p *Plugin) Hash() string {
	b, err := p.Canonical()
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Canonical returns the description's canonical JSON.
func (p *Plugin) Canonical() ([]byte, error) { return canonicalJSON(p) }

// ParsePlugin reads a plugin's answer to "describe". name says where it
// came from in errors ("/etc/celeroot/plugins/disk-usage describe"). It
// returns every problem found, each with its line:col and JSON pointer:
// output that is empty, too large or not one JSON object; a protocol
// other than PluginProtocol (only that is reported then, since the rest
// of the answer follows another protocol's rules); unknown or missing
// fields and values of the wrong shape (the plugin JSON Schema, see
// JSONSchema(KindPlugin)); parameter schemas that are not valid JSON
// Schema, defaults that do not match them; a timeout that is not a
// positive duration.
func (v *Validator) ParsePlugin(name string, data []byte) (*Plugin, []*Error) {
	fail := func(line, col int, hint, format string, args ...any) (*Plugin, []*Error) {
		return nil, []*Error{{File: name, Line: line, Col: col, Msg: fmt.Sprintf(format, args...), Hint: hint}}
	}
	const how = `print one JSON object such as {"protocol": 1, "name": "disk-usage", "version": "1.0.0"} on stdout`
	if len(data) > MaxPluginDescription {
		return fail(0, 0, "keep the description under 64 KiB", "the description is larger than %d bytes", MaxPluginDescription)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return fail(0, 0, how, "printed nothing")
	}
	if !utf8.Valid(data) {
		return fail(0, 0, how, "the description is not UTF-8 text")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var value any
	if err := dec.Decode(&value); err != nil {
		line, col := 0, 0
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line, col = offsetPosition(data, se.Offset-1) // Offset is just past the bad byte
		}
		msg := strings.TrimPrefix(err.Error(), "json: ")
		if errors.Is(err, io.ErrUnexpectedEOF) {
			msg = "the JSON ends too early"
		}
		return fail(line, col, how, "not JSON: %s", msg)
	}
	if off := dec.InputOffset(); len(bytes.TrimSpace(data[off:])) > 0 {
		line, col := offsetPosition(data, off+int64(len(data[off:])-len(bytes.TrimLeft(data[off:], " \t\r\n"))))
		return fail(line, col, "print only the JSON object; write messages to stderr", "more output after the JSON object")
	}
	if _, ok := value.(map[string]any); !ok {
		return fail(1, 1, how, "the description is %s, not a JSON object", describe(value))
	}
	// The answer is JSON, and JSON is YAML: the YAML reader gives every
	// value its position.
	docs, errs := decodeYAML(name, data)
	if len(errs) > 0 {
		return nil, errs
	}
	if len(docs) != 1 {
		return fail(0, 0, how, "not one JSON object")
	}
	d := docs[0]
	m := d.value.(map[string]any)
	switch pv, ok := m["protocol"]; {
	case !ok:
		return nil, []*Error{d.errorAt("", false, fmt.Sprintf(`add "protocol": %d`, PluginProtocol), "missing protocol")}
	case fmt.Sprint(pv) != fmt.Sprint(PluginProtocol):
		return nil, []*Error{d.errorAt("/protocol", false,
			fmt.Sprintf("this agent speaks plugin protocol %d: upgrade celeroot on this host, or install a version of the plugin for protocol %d", PluginProtocol, PluginProtocol),
			"plugin protocol %s is not supported", truncate(fmt.Sprint(pv), 20))}
	}
	p := &Plugin{}
	decodeLenient(d.value, p)
	t := v.schemaErrors(d, v.plugin)
	c := &checker{}
	c.params(d, "/params", p.Params)
	c.duration(d, "/timeout", true)
	errs = t.errs
	for _, e := range c.errs {
		if !t.covers(e.err.Pointer) {
			errs = append(errs, e.err)
		}
	}
	if len(errs) > 0 {
		return nil, (&Set{}).sortErrors(errs)
	}
	return p, nil
}

// offsetPosition turns a byte offset into a 1-based line and column (in
// characters).
func offsetPosition(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	if i := bytes.LastIndexByte(before, '\n'); i >= 0 {
		before = before[i+1:]
	}
	return line, utf8.RuneCount(before) + 1
}

// CheckParams checks typed parameter values (as submitted, read back from
// an event) against the task's declarations, as ValidateParams checks
// command-line strings: unknown parameters, missing required ones and
// values that do not match their schema are errors, each with the
// pointer /params/NAME. It returns the values with defaults added and
// numbers as int64 or float64.
func (t *Task) CheckParams(values map[string]any) (map[string]any, []*Error) {
	if values == nil {
		values = map[string]any{}
	}
	d := &rawDoc{value: map[string]any{"params": values}, pos: map[string]nodePos{}}
	out, errs := t.checkValues(d, "/params", func(name string) string {
		return fmt.Sprintf("pass --param %s=VALUE", name)
	})
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}
