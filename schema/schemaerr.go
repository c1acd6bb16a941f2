package schema

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// translator turns the validator's error tree into Errors that say, in the
// document's terms, what is wrong where and how to fix it. It reads the
// failing keyword's schema (enum values, patterns, property names) from the
// schema documents, so messages never depend on the validator's wording.
type translator struct {
	doc     *rawDoc
	prefix  string         // prepended to instance locations
	schemas map[string]any // schema documents by URL
	hint    string         // used when no better hint is known
	errs    []*Error
	// deep holds the pointers of values found wrong as a whole (wrong
	// type, not an allowed value, an unknown field): nothing inside them
	// is worth checking further.
	deep []string
}

// addDeep adds an error about the value at ptr as a whole.
func (t *translator) addDeep(ptr string, keyErr bool, hint, format string, args ...any) {
	t.deep = append(t.deep, ptr)
	t.add(ptr, keyErr, hint, format, args...)
}

func (t *translator) add(ptr string, keyErr bool, hint, format string, args ...any) {
	if hint == "" {
		hint = t.hint
	}
	t.errs = append(t.errs, t.doc.errorAt(ptr, keyErr, hint, format, args...))
}

// walk explains the leaves of the tree.
func (t *translator) walk(e *jsonschema.ValidationError) {
	switch lastToken(e.KeywordLocation) {
	case "oneOf", "anyOf":
		t.oneOf(e)
		return
	}
	if len(e.Causes) > 0 {
		for _, c := range e.Causes {
			t.walk(c)
		}
		return
	}
	t.leaf(e)
}

// normPointer turns the validator's instance location, whose tokens are
// URL-escaped, into a plain JSON pointer under the translator's prefix.
func (t *translator) pointer(loc string) string {
	if loc == "" {
		return t.prefix
	}
	toks := strings.Split(loc, "/")
	for i, tok := range toks {
		if u, err := url.PathUnescape(tok); err == nil {
			toks[i] = u
		}
	}
	return t.prefix + strings.Join(toks, "/")
}

// node returns the schema object at an absolute keyword location, or nil.
func (t *translator) node(loc string) map[string]any {
	u, ptr := splitLocation(loc)
	v, ok := t.schemas[u]
	if !ok {
		return nil
	}
	if ptr != "" {
		for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
			if s, err := url.PathUnescape(tok); err == nil {
				tok = s
			}
			tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
			switch c := v.(type) {
			case map[string]any:
				v = c[tok]
			case []any:
				i, err := strconv.Atoi(tok)
				if err != nil || i < 0 || i >= len(c) {
					return nil
				}
				v = c[i]
			default:
				return nil
			}
		}
	}
	m, _ := v.(map[string]any)
	return m
}

// container returns the schema object holding the failing keyword.
func (t *translator) container(e *jsonschema.ValidationError) map[string]any {
	loc := e.AbsoluteKeywordLocation
	if i := strings.LastIndexByte(loc, '/'); i > strings.IndexByte(loc, '#') {
		loc = loc[:i]
	}
	return t.node(loc)
}

func lastToken(loc string) string {
	return loc[strings.LastIndexByte(loc, '/')+1:]
}

func (t *translator) leaf(e *jsonschema.ValidationError) {
	ptr := t.pointer(e.InstanceLocation)
	kw := lastToken(e.KeywordLocation)
	s := t.container(e)
	if s == nil {
		t.add(ptr, false, "", "%s", e.Message)
		return
	}
	val, _ := t.doc.lookup(ptr)
	if strings.Contains(e.KeywordLocation, "/propertyNames/") {
		_, key := pointerParent(ptr)
		help := "a valid key"
		if p, ok := s["pattern"].(string); ok {
			help = describePattern(p)
		}
		t.addDeep(ptr, true, "", "key %q must be %s", key, help)
		return
	}
	switch kw {
	case "type":
		t.typeError(ptr, s["type"], val)
	case "enum", "const":
		var allowed []any
		if kw == "enum" {
			allowed, _ = s["enum"].([]any)
		} else {
			allowed = []any{s["const"]}
		}
		t.enumError(ptr, allowed, val)
	case "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum":
		op := map[string]string{"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[kw]
		t.add(ptr, false, "", "must be %s %v, got %v", op, s[kw], val)
	case "multipleOf":
		t.add(ptr, false, "", "must be a multiple of %v, got %v", s[kw], val)
	case "pattern":
		p, _ := s["pattern"].(string)
		t.patternError(ptr, p, val)
	case "minLength", "minItems", "minProperties":
		if n, _ := s[kw].(json.Number); n == "1" {
			t.add(ptr, false, "", "must not be empty")
		} else {
			t.add(ptr, false, "", "must have at least %v %s", s[kw], unit(kw))
		}
	case "maxLength", "maxItems", "maxProperties":
		t.add(ptr, false, "", "must have at most %v %s", s[kw], unit(kw))
	case "uniqueItems":
		t.add(ptr, false, "", "must not repeat items: %s", strings.TrimPrefix(e.Message, "items "))
	case "format":
		t.addDeep(ptr, false, "", "must be a valid %v, found %s", s["format"], describe(val))
	case "not":
		t.addDeep(ptr, false, "", "must not be %s", describeForm(s["not"]))
	case "required":
		t.required(ptr, s, val)
	case "additionalProperties":
		t.unknownFields(ptr, s, val)
	default:
		if kw == "" && e.Message == "not allowed" {
			t.add(ptr, true, "", "not allowed here")
			return
		}
		t.add(ptr, false, "", "%s", e.Message)
	}
}

func unit(kw string) string {
	switch kw {
	case "minLength", "maxLength":
		return "characters"
	case "minItems", "maxItems":
		return "items"
	}
	return "entries"
}

var typeNames = map[string]string{
	"string": "a string", "integer": "an integer", "number": "a number",
	"boolean": "a boolean (true or false)", "object": "a mapping", "array": "a list", "null": "null",
}

func (t *translator) typeError(ptr string, want, val any) {
	var names, types []string
	switch w := want.(type) {
	case string:
		types = []string{w}
	case []any:
		for _, x := range w {
			if s, ok := x.(string); ok {
				types = append(types, s)
			}
		}
	}
	for _, ty := range types {
		names = append(names, typeNames[ty])
	}
	hint := ""
	if s, ok := val.(string); ok && len(types) == 1 {
		switch types[0] {
		case "integer":
			if _, err := strconv.ParseInt(s, 10, 64); err == nil {
				hint = "remove the quotes: " + s
			} else {
				hint = "use a whole number such as 2"
			}
		case "number":
			if _, err := strconv.ParseFloat(s, 64); err == nil {
				hint = "remove the quotes: " + s
			}
		case "boolean":
			switch strings.ToLower(s) {
			case "yes", "on", "y":
				hint = "write true"
			case "no", "off", "n":
				hint = "write false"
			default:
				hint = "write true or false"
			}
		}
	}
	if len(types) == 1 && types[0] == "string" {
		switch v := val.(type) {
		case json.Number:
			text := v.String()
			if p, ok := t.doc.pos[ptr]; ok && p.text != "" {
				text = p.text
			}
			hint = fmt.Sprintf("quote the value: %q", text)
		case bool:
			hint = fmt.Sprintf("quote the value: \"%t\"", v)
		}
	}
	t.addDeep(ptr, false, hint, "must be %s, found %s", strings.Join(names, " or "), describe(val))
}

func (t *translator) enumError(ptr string, allowed []any, val any) {
	var quoted, strs []string
	for _, a := range allowed {
		b, _ := json.Marshal(a)
		quoted = append(quoted, string(b))
		if s, ok := a.(string); ok {
			strs = append(strs, s)
		}
	}
	got := describe(val)
	if s, ok := val.(string); ok {
		got = strconv.Quote(s)
	}
	if len(quoted) == 1 {
		t.addDeep(ptr, false, "", "must be %s, found %s", quoted[0], got)
		return
	}
	hint := "use one of: " + strings.Join(strs, ", ")
	if s, ok := val.(string); ok {
		if m := suggest(s, strs); m != "" {
			hint = fmt.Sprintf("did you mean %s?", m)
		}
	}
	t.addDeep(ptr, false, hint, "must be one of %s, found %s", strings.Join(quoted, ", "), got)
}

func describePattern(p string) string {
	if h, ok := patternHelp[p]; ok {
		return h
	}
	return "a string matching the pattern " + p
}

func (t *translator) patternError(ptr, p string, val any) {
	s, _ := val.(string)
	switch p {
	case QuantityPattern:
		if _, err := ParseQuantity(s); err != nil {
			t.addDeep(ptr, false, "", "%v", err)
			return
		}
	case DurationPattern:
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			t.addDeep(ptr, false, "use a duration such as 30s, 5m or 1h30m", "%q is not a duration", s)
			return
		case d < 0:
			t.addDeep(ptr, false, "use 0s or a positive duration such as 30s", "must not be negative, found %q", s)
			return
		}
	}
	t.addDeep(ptr, false, "", "must be %s, found %q", describePattern(p), s)
}

// required reports each missing property at the pointer it would have,
// positioned at the mapping that lacks it.
func (t *translator) required(ptr string, s map[string]any, val any) {
	m, _ := val.(map[string]any)
	req, _ := s["required"].([]any)
	props, _ := s["properties"].(map[string]any)
	for _, r := range req {
		name, _ := r.(string)
		if _, ok := m[name]; ok {
			continue
		}
		hint := "add " + name + ":"
		if p, ok := props[name].(map[string]any); ok {
			if e, ok := p["enum"].([]any); ok && len(e) == 1 {
				hint += fmt.Sprintf(" %v", e[0]) // the one value it can have
			} else if d, ok := p["description"].(string); ok {
				hint += " " + lowerFirst(strings.TrimSuffix(d, "."))
			}
		}
		t.add(pointerJoin(ptr, name), false, hint, "missing required field %q", name)
	}
}

func lowerFirst(s string) string {
	if s == "" || len(s) > 1 && s[1] >= 'A' && s[1] <= 'Z' {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// unknownFields reports each property the schema does not allow, at its
// key, suggesting the closest valid name.
func (t *translator) unknownFields(ptr string, s map[string]any, val any) {
	m, _ := val.(map[string]any)
	props, _ := s["properties"].(map[string]any)
	var known []string
	for k := range props {
		known = append(known, k)
	}
	sort.Strings(known)
	var unknown []string
	for k := range m {
		if _, ok := props[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		hint := "valid fields here: " + strings.Join(known, ", ")
		if len(known) == 0 {
			hint = "no fields are allowed here"
		}
		if m := suggest(k, known); m != "" {
			hint = fmt.Sprintf("did you mean %s?", m)
		}
		t.addDeep(pointerJoin(ptr, k), true, hint, "unknown field %q", k)
	}
}

// oneOf explains a value that matches none, or more than one, of the
// allowed forms.
func (t *translator) oneOf(e *jsonschema.ValidationError) {
	ptr := t.pointer(e.InstanceLocation)
	s := t.container(e)
	kw := lastToken(e.KeywordLocation)
	branches, _ := s[kw].([]any)
	val, _ := t.doc.lookup(ptr)
	if s == nil || len(branches) == 0 {
		t.add(ptr, false, "", "%s", e.Message)
		return
	}
	desc, _ := s["description"].(string)
	// Branches that only require a property ("exactly one of command,
	// shell, ...") are explained by the properties present.
	var choices []string
	for _, b := range branches {
		bm, _ := b.(map[string]any)
		req, _ := bm["required"].([]any)
		if len(bm) == 0 || len(req) != 1 || bm["type"] != nil {
			choices = nil
			break
		}
		name, _ := req[0].(string)
		choices = append(choices, name)
	}
	if len(e.Causes) == 0 { // more than one branch matched
		if choices != nil {
			m, _ := val.(map[string]any)
			var present []string
			for _, c := range choices {
				if _, ok := m[c]; ok {
					present = append(present, c)
				}
			}
			t.add(ptr, false, "keep one of them", "sets %s; set exactly one of %s", strings.Join(present, " and "), strings.Join(choices, ", "))
			return
		}
		t.add(ptr, false, desc, "matches more than one of the allowed forms")
		return
	}
	if choices != nil {
		if t.hasUnknownField(ptr, val, choices) {
			return // the misspelt field is reported on its own
		}
		t.add(ptr, false, "", "must set one of %s", strings.Join(choices, ", "))
		return
	}
	// Explain the one branch whose form the value has, if there is one.
	var candidates []*jsonschema.ValidationError
	for _, c := range e.Causes {
		if !shapeMismatch(c, e.InstanceLocation) {
			candidates = append(candidates, c)
		}
	}
	if len(candidates) == 1 {
		t.walk(candidates[0])
		return
	}
	var forms []string
	for _, b := range branches {
		forms = append(forms, describeForm(b))
	}
	t.addDeep(ptr, false, desc, "must be %s, found %s", strings.Join(forms, " or "), describe(val))
}

// hasUnknownField reports whether the object at ptr has a field that is
// none of choices and would be reported as unknown.
func (t *translator) hasUnknownField(ptr string, val any, choices []string) bool {
	m, ok := val.(map[string]any)
	if !ok {
		return false
	}
	for k := range m {
		if !slices.Contains(choices, k) {
			return true
		}
	}
	return false
}

// shapeMismatch reports whether every leaf of a branch's error says the
// value itself has the wrong type or is not the constant: the value is not
// of that branch's form at all.
func shapeMismatch(e *jsonschema.ValidationError, loc string) bool {
	if len(e.Causes) == 0 {
		kw := lastToken(e.KeywordLocation)
		return e.InstanceLocation == loc && (kw == "type" || kw == "enum" || kw == "const")
	}
	for _, c := range e.Causes {
		if !shapeMismatch(c, loc) {
			return false
		}
	}
	return true
}

// describeForm names the form a oneOf branch allows.
func describeForm(b any) string {
	m, _ := b.(map[string]any)
	if e, ok := m["enum"].([]any); ok {
		var q []string
		for _, v := range e {
			j, _ := json.Marshal(v)
			q = append(q, string(j))
		}
		return strings.Join(q, " or ")
	}
	if c, ok := m["const"]; ok {
		j, _ := json.Marshal(c)
		return string(j)
	}
	if ty, ok := m["type"].(string); ok {
		return typeNames[ty]
	}
	return "another form"
}
