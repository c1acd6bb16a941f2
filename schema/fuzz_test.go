package schema

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzLoad checks that no input makes Load or Validate panic, and that
// every error names the file.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(seedClusterYAML))
	for _, dir := range []string{"../examples", "../examples/catalog"} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("<<: {a: 1}\nb: !!str 2\n"))
	f.Add([]byte("--- |\n  text\n---\n- 1\n"))
	f.Add([]byte("\xef\xbb\xbfkind: Task\n"))
	v := newValidator(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		set, errs := Load("fuzz.yaml", strings.NewReader(string(data)))
		if set == nil {
			t.Fatal("Load returned a nil Set")
		}
		errs = append(errs, v.Validate(set, map[string]bool{"apt-management": true})...)
		for _, e := range errs {
			if e.File != "fuzz.yaml" {
				t.Errorf("error without the file name: %#v", e)
			}
			if e.Msg == "" || (e.Line > 0) != (e.Col > 0) {
				t.Errorf("malformed error: %#v", e)
			}
		}
		for _, d := range set.documents() {
			if _, err := Canonical(d); err != nil {
				t.Errorf("Canonical(%T) = %v", d, err)
			}
		}
	})
}

// FuzzParseSelector checks that a parsed selector holds only valid keys and
// values, and survives a round trip through its string form.
func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"tier=web", "tier=web,environment=production", " a = b ", "a=b,a=c", "=", ",", "a!=b", "k=v=w", "celeroot.io/zone=eu-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseSelector(s)
		if err != nil {
			if sel != nil {
				t.Errorf("ParseSelector(%q) = %v with error %v", s, sel, err)
			}
			return
		}
		if len(sel) == 0 {
			t.Fatalf("ParseSelector(%q) = empty selector without error", s)
		}
		for k, v := range sel {
			if !labelRE.MatchString(k) || !labelRE.MatchString(v) {
				t.Errorf("ParseSelector(%q) accepted %q=%q", s, k, v)
			}
		}
		back, err := ParseSelector(Selector(sel).String())
		if err != nil || len(back) != len(sel) {
			t.Fatalf("round trip of %q: %v, %v", s, back, err)
		}
		for k, v := range sel {
			if back[k] != v {
				t.Errorf("round trip of %q: %s=%q, want %q", s, k, back[k], v)
			}
		}
	})
}

// FuzzParseQuantity checks that a parsed quantity is never negative and that
// a plain number of bytes parses to itself.
func FuzzParseQuantity(f *testing.F) {
	for _, s := range []string{"1Gi", "512Mi", "2G", "1073741824", "1Gb", "-1Gi", "lots", "9223372036854775807", "8388608Ti", "1.5Gi", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseQuantity(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseQuantity(%q) = %d", s, n)
		}
		if m, err := ParseQuantity(strconv.FormatInt(n, 10)); err != nil || m != n {
			t.Errorf("ParseQuantity(%d) = %d, %v", n, m, err)
		}
	})
}

// FuzzCron checks that validating a cron expression never panics (the cron
// package must not reach its own panics: parseCron refuses those inputs
// first) and that a valid expression has a next time after any reference.
func FuzzCron(f *testing.F) {
	for _, s := range []string{"0 2 * * *", "*/5 * * * *", "0 3 * * 0", "@daily", "61 * * * *", "TZ=UTC", "TZ=", "CRON_TZ=Europe/Paris 0 * * * *",
		"@every 1s", "0 0 30 2 *", "*/0 * * * *", "1-2-3 * * * *", "0 0 * * mon-fri", "? ? ? ? ?", "0-59/18446744073709551615 * * * *"} {
		f.Add(s)
	}
	ref := time.Date(2030, 3, 31, 1, 30, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		sched, err := parseCron(s)
		if errors.Is(err, errCronPanic) {
			t.Fatalf("parseCron(%q): the cron package panicked", s)
		}
		if err != nil {
			return
		}
		next := sched.Next(ref)
		if !next.After(ref) {
			t.Errorf("parseCron(%q).Next(%v) = %v", s, ref, next)
		}
	})
}

// FuzzParsePlugin checks that no answer to "describe" makes ParsePlugin
// panic, that it returns a description or errors (never both, never
// neither), and that every error names its source.
func FuzzParsePlugin(f *testing.F) {
	f.Add([]byte(goodPlugin))
	f.Add([]byte(`{"protocol": 1, "name": "x", "version": "1", "params": {"a": {"schema": {"$ref": "#/a"}}}}`))
	f.Add([]byte(`{"protocol": 1, "name": "x", "version": "1", "params": {"a": {"schema": {"pattern": "("}}}}`))
	f.Add([]byte(`{"protocol": 1} {"protocol": 1}`))
	v := newValidator(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, errs := v.ParsePlugin("describe", data)
		if (p == nil) == (len(errs) == 0) {
			t.Fatalf("ParsePlugin = %v, %d errors: want exactly one of them", p, len(errs))
		}
		for _, e := range errs {
			if e.File != "describe" || e.Msg == "" {
				t.Errorf("error without its source or message: %#v", e)
			}
		}
		if p != nil && p.Hash() == "" {
			t.Errorf("a description without a hash: %+v", p)
		}
	})
}

// FuzzValidateParams checks that no --param value makes ValidateParams
// panic, that it returns values or errors (never both, never neither for a
// given name), and that every error points at a parameter.
func FuzzValidateParams(f *testing.F) {
	src := task + `  params:
    count: {schema: {type: integer, minimum: 1}, default: 3}
    ratio: {schema: {type: number}}
    force: {schema: {type: boolean}}
    hosts: {schema: {type: array, items: {type: string, pattern: "^[a-z0-9.-]+$"}, maxItems: 3}}
    ports: {schema: {type: array, items: {type: integer}}}
    extra: {schema: {type: object}}
    level: {schema: {type: string, enum: [low, high]}}
    either: {schema: {type: [integer, string]}}
    name: {schema: {type: string, maxLength: 8}, required: true}
  action:
    command: ["echo", "{{ .params.name }}"]
`
	set, errs := Load("t.yaml", strings.NewReader(src))
	if errs = append(errs, newValidator(f).Validate(set, nil)...); len(errs) != 0 {
		f.Fatalf("task: %v", errs)
	}
	tk := set.Tasks[0]
	for _, s := range [][2]string{{"count", "2"}, {"count", "0"}, {"ratio", "1e400"}, {"force", "yes"}, {"hosts", "a,b,c,d"},
		{"hosts", `["a", 1]`}, {"ports", "1,x"}, {"extra", `{"a": [1, {"b": null}]}`}, {"level", "mid"}, {"either", "-0"}, {"nmae", "x"}, {"name", "ünïcødé"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name, value string) {
		in := map[string]string{name: value}
		if name != "name" {
			in["name"] = "x"
		}
		out, errs := tk.ValidateParams(in)
		if (out == nil) == (len(errs) == 0) {
			t.Fatalf("ValidateParams(%q=%q) = %v, %v: want values or errors", name, value, out, errs)
		}
		for _, e := range errs {
			if !strings.HasPrefix(e.Pointer, "/params") || e.Msg == "" {
				t.Errorf("ValidateParams(%q=%q): malformed error %#v", name, value, e)
			}
		}
		if out != nil {
			if _, err := json.Marshal(out); err != nil {
				t.Errorf("ValidateParams(%q=%q) = %v: values do not marshal: %v", name, value, out, err)
			}
		}
	})
}
