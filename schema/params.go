package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// ValidateParams checks parameters given on the command line (--param
// k=v) against the task's declarations and returns their typed values,
// defaults included.
//
// Each string is converted to its parameter's schema type: integer,
// number and boolean are parsed; an array is read as JSON if it starts
// with '[' and as a comma-separated list otherwise (each item converted to
// the items' type); an object must be JSON; anything else stays a string.
// The value must then match the parameter's schema. Unknown parameters
// (with the closest declared name as a hint) and missing required ones are
// errors. Errors have no file; their pointer is /params/NAME.
func (t *Task) ValidateParams(values map[string]string) (map[string]any, []*Error) {
	given := make(map[string]any, len(values))
	var errs []*Error
	names := sortedKeys(values)
	for _, name := range names {
		p, ok := t.Spec.Params[name]
		if !ok {
			given[name] = values[name] // reported as unknown below
			continue
		}
		v, err := coerce(values[name], p.Schema)
		if err != nil {
			errs = append(errs, &Error{Pointer: pointerJoin("/params", name), Msg: err.Error(), Hint: p.Description})
			continue
		}
		given[name] = v
	}
	d := &rawDoc{value: map[string]any{"params": given}, pos: map[string]nodePos{}}
	out, perrs := t.checkValues(d, "/params", func(name string) string {
		return fmt.Sprintf("pass --param %s=VALUE", name)
	})
	coerceErrs := errs
	for _, e := range perrs {
		if !coveredByPointer(e, coerceErrs) {
			errs = append(errs, e)
		}
	}
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Pointer < errs[j].Pointer })
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

func coveredByPointer(e *Error, errs []*Error) bool {
	for _, o := range errs {
		if pointerWithin(e.Pointer, o.Pointer) {
			return true
		}
	}
	return false
}

// checkValues checks the parameter values in d at ptr (a mapping) and
// returns them with defaults added and numbers normalized. howToAdd says
// how to give a missing parameter.
func (t *Task) checkValues(d *rawDoc, ptr string, howToAdd func(name string) string) (map[string]any, []*Error) {
	raw, _ := d.lookup(ptr)
	values, _ := raw.(map[string]any)
	out := map[string]any{}
	var errs []*Error
	declared := sortedKeys(t.Spec.Params)
	for _, name := range sortedKeys(values) {
		if _, ok := t.Spec.Params[name]; ok {
			continue
		}
		hint := "the task takes no parameters"
		if len(declared) > 0 {
			hint = "parameters of " + t.Metadata.Name + ": " + strings.Join(declared, ", ")
		}
		if m := suggest(name, declared); m != "" {
			hint = fmt.Sprintf("did you mean %s?", m)
		}
		errs = append(errs, d.errorAt(pointerJoin(ptr, name), true, hint, "unknown parameter %q of task %s", name, t.Metadata.Name))
	}
	for _, name := range declared {
		p := t.Spec.Params[name]
		v, ok := values[name]
		if !ok {
			switch {
			case p.Default != nil:
				out[name] = normalizeNumbers(p.Default)
			case p.Required:
				errs = append(errs, d.errorAt(pointerJoin(ptr, name), false, howToAdd(name), "missing required parameter %q of task %s", name, t.Metadata.Name))
			}
			continue
		}
		sch, docs, err := compileParam(p.Schema)
		if err != nil {
			errs = append(errs, d.errorAt(pointerJoin(ptr, name), false, "fix the task's declaration of the parameter", "the schema of parameter %q is invalid", name))
			continue
		}
		if verr := validateValue(sch, v); verr != nil {
			var ve *jsonschema.ValidationError
			if !errors.As(verr, &ve) {
				errs = append(errs, d.errorAt(pointerJoin(ptr, name), false, "", "cannot validate: %v", verr))
				continue
			}
			tr := &translator{doc: d, prefix: pointerJoin(ptr, name), schemas: docs, hint: p.Description}
			tr.walk(ve)
			errs = append(errs, tr.errs...)
			continue
		}
		out[name] = normalizeNumbers(v)
	}
	return out, errs
}

// paramSchemaURL is the URL every parameter schema is compiled under, each
// by a compiler of its own. (Not the parameter's name: that is user input,
// and a '#' in a URL makes the compiler panic.)
const paramSchemaURL = "https://celeroot.io/schemas/v1/param.json"

// compileParam compiles a parameter's schema. It returns the schema
// documents by URL, to explain validation errors. The schema is user
// input: a panic in the compiler is turned into an error.
func compileParam(s map[string]any) (sch *jsonschema.Schema, docs map[string]any, err error) {
	defer func() {
		if r := recover(); r != nil {
			sch, docs, err = nil, nil, fmt.Errorf("cannot compile the schema: %v", r)
		}
	}()
	if _, ok := s["$id"]; ok {
		// The schema is compiled under a URL of its own; an $id would
		// move it, and its error locations, elsewhere.
		cp := make(map[string]any, len(s))
		for k, v := range s {
			if k != "$id" {
				cp[k] = v
			}
		}
		s = cp
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, nil, err
	}
	doc, err := decodeJSON(b)
	if err != nil {
		return nil, nil, err
	}
	u := paramSchemaURL
	c := newCompiler()
	if err := c.AddResource(u, bytes.NewReader(b)); err != nil {
		return nil, nil, err
	}
	if sch, err = c.Compile(u); err != nil {
		return nil, nil, err
	}
	return sch, map[string]any{u: doc}, nil
}

// validateValue validates v against a parameter schema, turning a panic
// in the validator into an error.
func validateValue(sch *jsonschema.Schema, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cannot validate: %v", r)
		}
	}()
	return sch.Validate(v)
}

// schemaProblem explains why a parameter schema does not compile: the
// pointer inside the schema and what is wrong there.
func schemaProblem(err error) (ptr, msg string) {
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		leaf := ve
		for len(leaf.Causes) > 0 {
			leaf = leaf.Causes[0]
		}
		loc := leaf.InstanceLocation
		return loc, fmt.Sprintf("not a valid JSON Schema: %s", leaf.Message)
	}
	if errors.Is(err, errNoRemote) {
		return "", "not a valid parameter schema: " + errNoRemote.Error()
	}
	msg = err.Error()
	msg = strings.TrimPrefix(msg, "jsonschema ")
	if i := strings.Index(msg, "compilation failed: "); i >= 0 {
		msg = msg[i+len("compilation failed: "):]
	}
	return "", "not a valid JSON Schema: " + msg
}

// coerce converts a command-line string to the type its schema declares.
func coerce(s string, sch map[string]any) (any, error) {
	for _, ty := range schemaTypes(sch) {
		switch ty {
		case "string":
			return s, nil
		case "integer":
			if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
				return n, nil
			}
		case "number":
			if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
				return f, nil
			}
		case "boolean":
			switch strings.ToLower(strings.TrimSpace(s)) {
			case "true", "yes", "on", "1":
				return true, nil
			case "false", "no", "off", "0":
				return false, nil
			}
		case "null":
			if s == "" || s == "null" {
				return nil, nil
			}
		case "array":
			if strings.HasPrefix(strings.TrimSpace(s), "[") {
				v, err := decodeJSON([]byte(s))
				if err != nil {
					return nil, fmt.Errorf("not a JSON list: %v", err)
				}
				return normalizeNumbers(v), nil
			}
			items, _ := sch["items"].(map[string]any)
			out := []any{}
			if strings.TrimSpace(s) == "" {
				return out, nil
			}
			for _, part := range strings.Split(s, ",") {
				v, err := coerce(strings.TrimSpace(part), items)
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			}
			return out, nil
		case "object":
			v, err := decodeJSON([]byte(s))
			if err != nil {
				return nil, fmt.Errorf("not a JSON object: %v", err)
			}
			return normalizeNumbers(v), nil
		}
	}
	types := schemaTypes(sch)
	if len(types) == 1 && types[0] == "string" || len(types) == 0 {
		return s, nil
	}
	var names []string
	for _, ty := range types {
		names = append(names, typeNames[ty])
	}
	return nil, fmt.Errorf("must be %s, found %q", strings.Join(names, " or "), s)
}

// schemaTypes returns the types a schema allows, looking into oneOf, anyOf
// and allOf and at enum and const values when it has no type. The most
// specific come first, strings last, so that "1" becomes an integer where
// an integer, a boolean and a string are all allowed; no types
// means any value, which a command-line string keeps as a string.
func schemaTypes(sch map[string]any) []string {
	seen := map[string]bool{}
	var types []string
	addType := func(t string) {
		if !seen[t] {
			seen[t] = true
			types = append(types, t)
		}
	}
	var walk func(s map[string]any, depth int)
	walk = func(s map[string]any, depth int) {
		if depth > 4 {
			return
		}
		switch ty := s["type"].(type) {
		case string:
			addType(ty)
			return
		case []any:
			for _, x := range ty {
				if t, ok := x.(string); ok {
					addType(t)
				}
			}
			return
		}
		for _, kw := range []string{"oneOf", "anyOf", "allOf"} {
			branches, _ := s[kw].([]any)
			for _, b := range branches {
				if bm, ok := b.(map[string]any); ok {
					walk(bm, depth+1)
				}
			}
		}
		values, _ := s["enum"].([]any)
		if c, ok := s["const"]; ok {
			values = append(values, c)
		}
		for _, v := range values {
			switch v := v.(type) {
			case string:
				addType("string")
			case bool:
				addType("boolean")
			case json.Number:
				if strings.ContainsAny(v.String(), ".eE") {
					addType("number")
				} else {
					addType("integer")
				}
			case nil:
				addType("null")
			}
		}
	}
	walk(sch, 0)
	rank := func(t string) int {
		switch t {
		case "integer":
			return 0
		case "number":
			return 1
		case "boolean":
			return 2
		case "null":
			return 4
		case "string":
			return 5
		}
		return 3
	}
	sort.SliceStable(types, func(i, j int) bool { return rank(types[i]) < rank(types[j]) })
	return types
}

// normalizeNumbers turns json.Number values into int64 or float64, so
// that parameter values have plain Go types.
func normalizeNumbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return n
		}
		if f, err := v.Float64(); err == nil {
			return f
		}
		return v.String()
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = normalizeNumbers(x)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = normalizeNumbers(x)
		}
		return out
	}
	return v
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// refRE matches one parameter reference.
var refRE = regexp.MustCompile(`^\{\{-?\s*\.params\.([a-z][a-z0-9_]*)\s*-?\}\}$`)

// refs splits s into literal text and {{ ... }} references. It fails on an
// unclosed "{{" and on a reference that is not {{ .params.NAME }}.
func refs(s string) (parts []string, names []string, err error) {
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			if strings.Contains(s, "}}") {
				return nil, nil, errors.New(`"}}" without "{{"`)
			}
			return append(parts, s), names, nil
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			return nil, nil, errors.New(`"{{" is not closed by "}}"`)
		}
		ref := s[i : i+j+2]
		m := refRE.FindStringSubmatch(ref)
		if m == nil {
			return nil, nil, fmt.Errorf("%s is not a parameter reference; write {{ .params.NAME }}", ref)
		}
		if s[:i] != "" {
			parts = append(parts, s[:i])
		}
		parts = append(parts, ref)
		names = append(names, m[1])
		s = s[i+j+2:]
		if s == "" {
			return parts, names, nil
		}
	}
}

// Expand substitutes the {{ .params.NAME }} references of s with the
// parameters' values: strings as they are, numbers and booleans in their
// JSON form, lists as comma-separated items, objects as JSON. A reference
// to a parameter without a value is an error.
func Expand(s string, params map[string]any) (string, error) {
	parts, _, err := refs(s)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, p := range parts {
		m := refRE.FindStringSubmatch(p)
		if m == nil {
			b.WriteString(p)
			continue
		}
		v, ok := params[m[1]]
		if !ok {
			return "", fmt.Errorf("parameter %q has no value", m[1])
		}
		b.WriteString(formatParam(v))
	}
	return b.String(), nil
}

// ExpandArgs expands the references of an argv (see Expand), without a
// shell: a value never splits into several arguments, except that an
// element that is exactly one reference to a list becomes one argument
// per item.
func ExpandArgs(argv []string, params map[string]any) ([]string, error) {
	out := make([]string, 0, len(argv))
	for _, a := range argv {
		if m := refRE.FindStringSubmatch(a); m != nil {
			if list, ok := params[m[1]].([]any); ok {
				for _, item := range list {
					out = append(out, formatParam(item))
				}
				continue
			}
		}
		s, err := Expand(a, params)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func formatParam(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case nil:
		return ""
	case []any:
		items := make([]string, len(v))
		for i, x := range v {
			items[i] = formatParam(x)
		}
		return strings.Join(items, ",")
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
