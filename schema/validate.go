package schema

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// The JSON Schema of each kind, generated from the Go types by
// internal/gen ("make schema") and checked in.
//
//go:embed cluster.schema.json task.schema.json plugin.schema.json
var schemaFiles embed.FS

// IDs of the embedded schemas; the files' $id.
const (
	ClusterSchemaID = "https://celeroot.io/schemas/v1/cluster.json"
	TaskSchemaID    = "https://celeroot.io/schemas/v1/task.json"
	PluginSchemaID  = "https://celeroot.io/schemas/v1/plugin.json"
)

// Validator checks documents against their JSON Schema and against the
// rules a schema cannot express (see Validate). It is safe for concurrent
// use; build one with NewValidator and keep it.
type Validator struct {
	cluster, task, plugin *jsonschema.Schema
	docs                  map[string]any // the schema documents by $id, to explain errors
}

// NewValidator compiles the embedded schemas. It fails only if they are
// broken, which the package's tests rule out.
func NewValidator() (*Validator, error) {
	v := &Validator{docs: map[string]any{}}
	c := newCompiler()
	for _, f := range []struct {
		name, id string
		dst      **jsonschema.Schema
	}{
		{"cluster.schema.json", ClusterSchemaID, &v.cluster},
		{"task.schema.json", TaskSchemaID, &v.task},
		{"plugin.schema.json", PluginSchemaID, &v.plugin},
	} {
		b, err := schemaFiles.ReadFile(f.name)
		if err != nil {
			return nil, fmt.Errorf("schema: %w", err)
		}
		doc, err := decodeJSON(b)
		if err != nil {
			return nil, fmt.Errorf("schema: %s: %w", f.name, err)
		}
		v.docs[f.id] = doc
		if err := c.AddResource(f.id, bytes.NewReader(b)); err != nil {
			return nil, fmt.Errorf("schema: %s: %w", f.name, err)
		}
		if *f.dst, err = c.Compile(f.id); err != nil {
			return nil, fmt.Errorf("schema: %s: %w", f.name, err)
		}
	}
	return v, nil
}

// errNoRemote refuses to load a schema by URL: every schema celeroot
// compiles is in memory, and a parameter schema must not make the
// validator read files or the network.
var errNoRemote = errors.New("references to other schema documents are not allowed")

func newCompiler() *jsonschema.Compiler {
	c := jsonschema.NewCompiler()
	c.LoadURL = func(string) (io.ReadCloser, error) { return nil, errNoRemote }
	c.AssertFormat = true // a parameter schema's format: ipv4 is checked
	return c
}

// Validate checks every document of set and returns every problem found,
// sorted by file (in load order) and position. catalog names tasks that
// exist without a kind: Task document (built-in tasks, plugins); it may be
// nil.
//
// Each document is checked against its JSON Schema. Then:
//   - names of worker groups, schedules, targets and tasks are unique;
//   - every task named by a worker group or a schedule is declared in set
//     or in catalog (queue patterns are globs and need not match a task);
//   - cron expressions parse and fire, time zones exist, durations are
//     valid, and missedWindow is only set with missed: all;
//   - a selector's role (schedule targets, spec.targets) and a queue's role
//     (see QueueRole) is the role of some worker group;
//   - the Redis memory is a valid quantity;
//   - a task's parameter schemas are valid JSON Schema, defaults match
//     them, and {{ .params.NAME }} references name declared parameters;
//   - a schedule's params are valid for its task.
//
// A problem with a value the schema already rejected is not reported
// twice.
func (v *Validator) Validate(set *Set, catalog map[string]bool) []*Error {
	if set == nil {
		return nil
	}
	var errs []*Error
	raws := map[Document]*rawDoc{}
	byDoc := map[*rawDoc]*translator{}
	for _, doc := range set.documents() {
		sch := v.task
		if _, ok := doc.(*Cluster); ok {
			sch = v.cluster
		}
		d := set.rawOf(doc)
		raws[doc] = d
		t := v.schemaErrors(d, sch)
		byDoc[d] = t
		errs = append(errs, t.errs...)
	}
	for _, e := range check(set, raws, catalog) {
		if t := byDoc[e.doc]; t == nil || !t.covers(e.err.Pointer) {
			errs = append(errs, e.err)
		}
	}
	return set.sortErrors(errs)
}

// documents returns the documents of s, the Cluster first.
func (s *Set) documents() []Document {
	var docs []Document
	if s.Cluster != nil {
		docs = append(docs, s.Cluster)
	}
	for _, t := range s.Tasks {
		docs = append(docs, t)
	}
	return docs
}

// covers reports whether the schema errors already say what is wrong at
// ptr: there is an error at ptr, or the value that holds ptr is wrong as a
// whole.
func (t *translator) covers(ptr string) bool {
	for _, e := range t.errs {
		if e.Pointer == ptr {
			return true
		}
	}
	for _, p := range t.deep {
		if pointerWithin(ptr, p) {
			return true
		}
	}
	return false
}

// sortErrors sorts errors by file (in load order), line and column, and
// drops exact duplicates.
func (s *Set) sortErrors(errs []*Error) []*Error {
	order := map[string]int{}
	for i, f := range s.files {
		order[f] = i
	}
	fileRank := func(f string) int {
		if i, ok := order[f]; ok {
			return i
		}
		return len(order)
	}
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i], errs[j]
		if ra, rb := fileRank(a.File), fileRank(b.File); ra != rb {
			return ra < rb
		}
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	out := errs[:0]
	seen := map[Error]bool{}
	for _, e := range errs {
		if seen[*e] {
			continue
		}
		seen[*e] = true
		out = append(out, e)
	}
	return out
}

// schemaErrors validates a document against a schema and explains every
// failure.
func (v *Validator) schemaErrors(d *rawDoc, sch *jsonschema.Schema) *translator {
	t := &translator{doc: d, schemas: v.docs}
	err := sch.Validate(d.value)
	if err == nil {
		return t
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		t.addDeep("", false, "", "cannot validate the document: %v", err)
		return t
	}
	t.walk(ve)
	return t
}

// splitLocation splits an absolute keyword location into the schema
// document's URL and the JSON pointer inside it.
func splitLocation(loc string) (url, ptr string) {
	url, ptr, _ = strings.Cut(loc, "#")
	return url, ptr
}
