// Package gen writes the JSON Schema of the celeroot documents from their
// Go types in package schema.
//
// The types are the single source: their json tags give the field names,
// their jsonschema tags the enums, bounds and defaults, and their doc
// comments the descriptions. What tags cannot say (patterns of map keys, the
// shapes of Duration, Quantity, Targets and Selector) is added here, from
// the exported patterns of package schema. "make schema" runs this through
// "go generate"; a test in package schema fails when the checked-in files
// differ from what Generate returns.
package gen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/celeroot/celeroot/schema"
	"github.com/invopop/jsonschema"
)

// Files are the names Generate returns, relative to the schema package.
var Files = []string{"cluster.schema.json", "task.schema.json", "plugin.schema.json"}

// IDs of the generated schemas.
const (
	ClusterID = "https://celeroot.io/schemas/v1/cluster.json"
	TaskID    = "https://celeroot.io/schemas/v1/task.json"
	PluginID  = "https://celeroot.io/schemas/v1/plugin.json"
)

// Generate returns the JSON Schema files by name. srcDir is the directory
// of package schema, whose doc comments become descriptions.
func Generate(srcDir string) (map[string][]byte, error) {
	out := map[string][]byte{}
	docs := []struct {
		file, id, title string
		v               any
	}{
		{"cluster.schema.json", ClusterID, "celeroot Cluster", &schema.Cluster{}},
		{"task.schema.json", TaskID, "celeroot Task", &schema.Task{}},
		{"plugin.schema.json", PluginID, "celeroot task plugin description", &schema.Plugin{}},
	}
	for _, d := range docs {
		r := &jsonschema.Reflector{
			ExpandedStruct: true,
			Mapper:         mapType,
		}
		if err := r.AddGoComments("github.com/celeroot/celeroot/schema", srcDir); err != nil {
			return nil, fmt.Errorf("read doc comments in %s: %w", srcDir, err)
		}
		s := r.Reflect(d.v)
		s.ID = jsonschema.ID(d.id)
		s.Title = d.title
		if err := refine(s, reflect.TypeOf(d.v).Elem().Name()); err != nil {
			return nil, fmt.Errorf("%s: %w", d.file, err)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s); err != nil {
			return nil, fmt.Errorf("%s: %w", d.file, err)
		}
		// The schema types marshal with HTML escaping; undo it so the
		// descriptions read as written.
		b := bytes.ReplaceAll(buf.Bytes(), []byte(`\u003c`), []byte("<"))
		b = bytes.ReplaceAll(b, []byte(`\u003e`), []byte(">"))
		b = bytes.ReplaceAll(b, []byte(`\u0026`), []byte("&"))
		out[d.file] = b
	}
	return out, nil
}

func str(pattern string) *jsonschema.Schema {
	return &jsonschema.Schema{Type: "string", Pattern: pattern}
}

func u64(n uint64) *uint64 { return &n }

func labelMap() *jsonschema.Schema {
	return &jsonschema.Schema{
		Type:                 "object",
		PropertyNames:        &jsonschema.Schema{Pattern: schema.LabelPattern},
		AdditionalProperties: str(schema.LabelPattern),
	}
}

func selector() *jsonschema.Schema {
	s := labelMap()
	s.MinProperties = u64(1)
	s.Description = "Keys role, hostname or any label; a worker matches when every key matches."
	return s
}

// mapType gives the schema of the package's own value types. It returns a
// new schema on every call: the reflector adds tag keywords to it.
func mapType(t reflect.Type) *jsonschema.Schema {
	switch t {
	case reflect.TypeFor[schema.Duration]():
		return str(schema.DurationPattern)
	case reflect.TypeFor[schema.Quantity]():
		return &jsonschema.Schema{OneOf: []*jsonschema.Schema{
			str(schema.QuantityPattern),
			{Type: "integer", Minimum: "0"},
		}}
	case reflect.TypeFor[schema.Labels]():
		return labelMap()
	case reflect.TypeFor[schema.Selector]():
		return selector()
	case reflect.TypeFor[schema.Targets]():
		return &jsonschema.Schema{OneOf: []*jsonschema.Schema{
			{Type: "string", Enum: []any{"all"}},
			selector(),
		}}
	case reflect.TypeFor[schema.Queues]():
		return &jsonschema.Schema{
			Type:          "object",
			PropertyNames: &jsonschema.Schema{Pattern: schema.QueuePattern},
			AdditionalProperties: &jsonschema.Schema{
				Type:     "array",
				MinItems: u64(1),
				Items:    str(schema.TaskGlobPattern),
			},
		}
	}
	return nil
}

// refinements add what struct tags cannot express, by definition and
// property name. A name that does not exist is an error, so that renaming
// a field cannot silently drop a check.
var refinements = []struct {
	def, prop string
	edit      func(*jsonschema.Schema)
}{
	{"Metadata", "name", pattern(schema.NamePattern)},
	{"Metadata", "annotations", annotations},
	{"TaskMetadata", "name", pattern(schema.TaskNamePattern)},
	{"TaskMetadata", "annotations", annotations},
	{"WorkerGroup", "name", pattern(schema.NamePattern)},
	{"WorkerGroup", "role", pattern(schema.RolePattern)},
	{"WorkerGroup", "tasks", items(schema.TaskNamePattern)},
	{"Schedule", "name", pattern(schema.NamePattern)},
	{"Schedule", "cron", minLength},
	{"Schedule", "task", pattern(schema.TaskNamePattern)},
	{"Schedule", "timezone", minLength},
	{"Target", "name", pattern(schema.NamePattern)},
	{"Action", "command", func(s *jsonschema.Schema) { s.Items.MinLength = u64(1) }},
	{"ShellAction", "script", minLength},
	{"ShellAction", "interpreter", minLength},
	{"PackageAction", "name", minLength},
	{"ServiceAction", "name", minLength},
	{"FileAction", "path", pattern(schema.AbsPathPattern)},
	{"FileAction", "mode", pattern(schema.ModePattern)},
	{"FileAction", "owner", minLength},
	{"Plugin", "name", pattern(schema.TaskNamePattern)},
}

func pattern(p string) func(*jsonschema.Schema) {
	return func(s *jsonschema.Schema) { s.Pattern = p }
}

func items(p string) func(*jsonschema.Schema) {
	return func(s *jsonschema.Schema) { s.Items.Pattern = p }
}

func minLength(s *jsonschema.Schema) { s.MinLength = u64(1) }

func annotations(s *jsonschema.Schema) {
	s.PropertyNames = &jsonschema.Schema{Pattern: schema.LabelPattern}
}

func refine(root *jsonschema.Schema, rootName string) error {
	// The root document is expanded in place, so look it up under its
	// own name as well as in $defs.
	lookup := func(def string) *jsonschema.Schema {
		if def == rootName {
			return root
		}
		if d, ok := root.Definitions[def]; ok {
			return d
		}
		return nil
	}
	for _, r := range refinements {
		d := lookup(r.def)
		if d == nil {
			continue // the definition belongs to the other document
		}
		p, ok := d.Properties.Get(r.prop)
		if !ok {
			return fmt.Errorf("refinement %s.%s: no such property", r.def, r.prop)
		}
		r.edit(p)
	}
	if p, ok := root.Definitions["Params"]; ok {
		p.PropertyNames = &jsonschema.Schema{Pattern: schema.ParamNamePattern}
	}
	return nil
}
