package schema

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const goodPlugin = `{
  "protocol": 1,
  "name": "disk-usage",
  "version": "1.2.0",
  "description": "Report the disk usage of a path.",
  "params": {
    "path": {"schema": {"type": "string", "pattern": "^/"}, "required": true, "description": "Absolute path."},
    "depth": {"schema": {"type": "integer", "minimum": 0, "maximum": 5}, "default": 1}
  },
  "timeout": "30s",
  "idempotent": true,
  "check": true
}
`

func TestParsePlugin(t *testing.T) {
	v := newValidator(t)
	p, errs := v.ParsePlugin("disk-usage describe", []byte(goodPlugin))
	if len(errs) != 0 {
		t.Fatalf("ParsePlugin(good) errors:%s", errorStrings(errs))
	}
	if p.Name != "disk-usage" || p.Version != "1.2.0" || !p.Check || !p.Idempotent || p.Timeout.Seconds() != 30 || len(p.Params) != 2 {
		t.Errorf("ParsePlugin(good) = %+v", p)
	}
	// The same description, formatted otherwise, has the same hash.
	compact := strings.Join(strings.Fields(goodPlugin), " ")
	q, errs := v.ParsePlugin("compact", []byte(compact))
	if len(errs) != 0 {
		t.Fatalf("ParsePlugin(compact) errors:%s", errorStrings(errs))
	}
	if p.Hash() == "" || p.Hash() != q.Hash() {
		t.Errorf("Hash() = %q and %q, want equal and set", p.Hash(), q.Hash())
	}
	other := strings.Replace(goodPlugin, "1.2.0", "1.3.0", 1)
	if r, _ := v.ParsePlugin("other", []byte(other)); r == nil || r.Hash() == p.Hash() {
		t.Errorf("another version has the same hash")
	}

	// Its parameters are checked as a catalog task's: strings from the
	// command line, typed values from a submission, defaults added.
	got, perrs := p.Task().ValidateParams(map[string]string{"path": "/var"})
	if len(perrs) != 0 || !cmp.Equal(got, map[string]any{"path": "/var", "depth": int64(1)}) {
		t.Errorf("ValidateParams(path=/var) = %v,%s", got, errorStrings(perrs))
	}
	got, perrs = p.Task().CheckParams(map[string]any{"path": "/var", "depth": int64(3)})
	if len(perrs) != 0 || !cmp.Equal(got, map[string]any{"path": "/var", "depth": int64(3)}) {
		t.Errorf("CheckParams(typed) = %v,%s", got, errorStrings(perrs))
	}
	_, perrs = p.Task().CheckParams(map[string]any{"path": "relative; rm -rf /", "deep": 1})
	want := []string{
		`/params/deep: unknown parameter "deep" of task disk-usage (hint: parameters of disk-usage: depth, path)`,
		`/params/path: must be a string matching the pattern ^/, found "relative; rm -rf /" (hint: Absolute path.)`,
	}
	if diff := cmp.Diff(want, errorList(perrs)); diff != "" {
		t.Errorf("CheckParams(bad) errors (-want +got):\n%s", diff)
	}
	_, perrs = p.Task().CheckParams(nil)
	if len(perrs) != 1 || !strings.Contains(perrs[0].Error(), `missing required parameter "path"`) {
		t.Errorf("CheckParams(nil) =%s", errorStrings(perrs))
	}
}

func errorList(errs []*Error) []string {
	out := []string{}
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

// Every kind of bad description is refused with its position, the pointer
// of the value at fault and a hint.
func TestParsePluginBad(t *testing.T) {
	v := newValidator(t)
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"empty", "", []string{`p: printed nothing (hint: print one JSON object such as {"protocol": 1, "name": "disk-usage", "version": "1.0.0"} on stdout)`}},
		{"blank", " \n\t\n", []string{`p: printed nothing (hint: print one JSON object such as {"protocol": 1, "name": "disk-usage", "version": "1.0.0"} on stdout)`}},
		{"text", "usage: disk-usage [path]\n", []string{`p:1:1: not JSON: invalid character 'u' looking for beginning of value (hint: print one JSON object such as {"protocol": 1, "name": "disk-usage", "version": "1.0.0"} on stdout)`}},
		{"truncated", `{"protocol": 1, "name": "x"`, []string{`p: not JSON: the JSON ends too early (hint: print one JSON object such as {"protocol": 1, "name": "disk-usage", "version": "1.0.0"} on stdout)`}},
		{"syntax on line 3", "{\n  \"protocol\": 1,\n  \"name\": \"x\",,\n}", []string{`p:3:15: not JSON: invalid character ',' looking for beginning of object key string (hint: print one JSON object such as {"protocol": 1, "name": "disk-usage", "version": "1.0.0"} on stdout)`}},
		{"trailing output", "{\"protocol\": 1, \"name\": \"x\", \"version\": \"1\"}\ndone\n", []string{`p:2:1: more output after the JSON object (hint: print only the JSON object; write messages to stderr)`}},
		{"array", `[1, 2]`, []string{`p:1:1: the description is a list, not a JSON object (hint: print one JSON object such as {"protocol": 1, "name": "disk-usage", "version": "1.0.0"} on stdout)`}},
		{"binary", "\xff\xfe\x00", []string{`p: the description is not UTF-8 text (hint: print one JSON object such as {"protocol": 1, "name": "disk-usage", "version": "1.0.0"} on stdout)`}},
		{"too large", `{"protocol": 1, "description": "` + strings.Repeat("x", MaxPluginDescription) + `"}`, []string{`p: the description is larger than 65536 bytes (hint: keep the description under 64 KiB)`}},
		{"no protocol", `{"name": "x", "version": "1"}`, []string{`p:1:1: missing protocol (hint: add "protocol": 1)`}},
		{"newer protocol", `{"protocol": 2, "name": "x", "version": "1", "flavour": "new"}`, []string{
			`p:1:14: /protocol: plugin protocol 2 is not supported (hint: this agent speaks plugin protocol 1: upgrade celeroot on this host, or install a version of the plugin for protocol 1)`}},
		{"missing name and version", `{"protocol": 1}`, []string{
			`p:1:1: /name: missing required field "name" (hint: add name: the task name, as given to "celeroot task run")`,
			`p:1:1: /version: missing required field "version" (hint: add version: the plugin's version, such as 1.2.0)`}},
		{"misspelt field", `{"protocol": 1, "name": "x", "version": "1", "parms": {}}`, []string{
			`p:1:46: /parms: unknown field "parms" (hint: did you mean params?)`}},
		{"bad name", `{"protocol": 1, "name": "Disk Usage", "version": "1"}`, []string{
			`p:1:25: /name: must be a task name of lower-case letters, digits, '.', '_' and '-', starting and ending with a letter or digit, found "Disk Usage"`}},
		{"wrong types", `{"protocol": 1, "name": "x", "version": 1.5, "check": "yes"}`, []string{
			`p:1:41: /version: must be a string, found a number (1.5) (hint: quote the value: "1.5")`,
			`p:1:55: /check: must be a boolean (true or false), found a string ("yes") (hint: write true)`}},
		{"bad timeout", `{"protocol": 1, "name": "x", "version": "1", "timeout": "0s"}`, []string{
			`p:1:57: /timeout: must be longer than 0 (hint: use a positive duration such as 10m)`}},
		{"param schema invalid", `{"protocol": 1, "name": "x", "version": "1", "params": {"path": {"schema": {"type": "strin"}}}}`, []string{
			`p:1:85: /params/path/schema/type: not a valid JSON Schema: value must be one of "array", "boolean", "integer", "null", "number", "object", "string" (hint: see https://json-schema.org/understanding-json-schema/)`}},
		{"param without schema", `{"protocol": 1, "name": "x", "version": "1", "params": {"path": {"required": true}}}`, []string{
			`p:1:57: /params/path/schema: missing required field "schema" (hint: add schema: a JSON Schema the parameter's value must match, such as {type: string, pattern: "^[a-z]+$"})`}},
		{"bad param name", `{"protocol": 1, "name": "x", "version": "1", "params": {"Path": {"schema": {}}}}`, []string{
			`p:1:57: /params/Path: key "Path" must be a parameter name of lower-case letters, digits and '_', starting with a letter (at most 64 characters)`}},
		{"default against schema", `{"protocol": 1, "name": "x", "version": "1", "params": {"n": {"schema": {"type": "integer"}, "default": "two"}}}`, []string{
			`p:1:105: /params/n/default: must be an integer, found a string ("two") (hint: use a whole number such as 2)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, errs := v.ParsePlugin("p", []byte(tc.src))
			if p != nil {
				t.Errorf("ParsePlugin(%.60q) = %+v, want nil", tc.src, p)
			}
			if diff := cmp.Diff(tc.want, errorList(errs)); diff != "" {
				t.Errorf("ParsePlugin(%.60q) errors (-want +got):\n%s", tc.src, diff)
			}
		})
	}
}
