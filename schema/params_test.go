package schema

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// catalogTask loads one task of the example catalog.
func catalogTask(t *testing.T, name string) *Task {
	t.Helper()
	set, errs := LoadPath("../examples/catalog/"+name+".yaml", nil)
	if len(errs) != 0 {
		t.Fatalf("load %s:%s", name, errorStrings(errs))
	}
	return set.Tasks[0]
}

func TestValidateParamsInjection(t *testing.T) {
	tk := catalogTask(t, "install-package")
	got, errs := tk.ValidateParams(map[string]string{"package": "nginx"})
	if len(errs) != 0 || !cmp.Equal(got, map[string]any{"package": "nginx"}) {
		t.Errorf("ValidateParams(package=nginx) = %v, %v", got, errs)
	}
	for _, bad := range []string{"nginx; rm -rf /", "$(reboot)", "-oDpkg::Pre-Invoke=sh", "nginx\nrm", ""} {
		got, errs := tk.ValidateParams(map[string]string{"package": bad})
		if got != nil || len(errs) != 1 || errs[0].Pointer != "/params/package" || !strings.Contains(errs[0].Msg, "pattern ^[a-z0-9][a-z0-9+.-]*$") {
			t.Errorf("ValidateParams(package=%q) = %v,%s; want one pattern error", bad, got, errorStrings(errs))
		}
	}
	_, errs = tk.ValidateParams(map[string]string{"package": "nginx; rm -rf /"})
	want := `/params/package: must be a string matching the pattern ^[a-z0-9][a-z0-9+.-]*$, found "nginx; rm -rf /" (hint: Package name.)`
	if len(errs) != 1 || errs[0].Error() != want {
		t.Errorf("error = %s\nwant %s", errorStrings(errs), want)
	}
}

func TestValidateParams(t *testing.T) {
	src := task + `  params:
    count:
      schema: {type: integer, minimum: 1}
      default: 3
    ratio:
      schema: {type: number}
    force:
      schema: {type: boolean}
    hosts:
      schema: {type: array, items: {type: string, pattern: "^[a-z0-9.-]+$"}, maxItems: 3}
    ports:
      schema: {type: array, items: {type: integer}}
    extra:
      schema: {type: object}
    name:
      schema: {type: string}
      required: true
    either:
      schema: {type: [integer, string]}
  action:
    command: ["echo", "{{ .params.name }}"]
`
	set, errs := Load("t.yaml", strings.NewReader(src))
	if errs = append(errs, newValidator(t).Validate(set, nil)...); len(errs) != 0 {
		t.Fatalf("task:%s", errorStrings(errs))
	}
	tk := set.Tasks[0]
	tests := []struct {
		in      map[string]string
		want    map[string]any
		wantErr []string // rendered errors
	}{
		{
			in:   map[string]string{"name": "x"},
			want: map[string]any{"name": "x", "count": int64(3)},
		},
		{
			in: map[string]string{"name": "x", "count": "7", "ratio": "0.5", "force": "yes", "hosts": "a.example, b", "ports": "[80, 443]",
				"extra": `{"k": [1, "v"]}`, "either": "12"},
			want: map[string]any{"name": "x", "count": int64(7), "ratio": 0.5, "force": true, "hosts": []any{"a.example", "b"},
				"ports": []any{int64(80), int64(443)}, "extra": map[string]any{"k": []any{int64(1), "v"}}, "either": int64(12)},
		},
		{
			in:   map[string]string{"name": "x", "either": "twelve", "ports": "1,2", "hosts": ""},
			want: map[string]any{"name": "x", "count": int64(3), "either": "twelve", "ports": []any{int64(1), int64(2)}, "hosts": []any{}},
		},
		{
			in:      map[string]string{"name": "x", "count": "two"},
			wantErr: []string{`/params/count: must be an integer, found "two"`},
		},
		{
			in:      map[string]string{"name": "x", "count": "0"},
			wantErr: []string{"/params/count: must be >= 1, got 0"},
		},
		{
			in:      map[string]string{"name": "x", "force": "maybe"},
			wantErr: []string{`/params/force: must be a boolean (true or false), found "maybe"`},
		},
		{
			in:      map[string]string{"name": "x", "hosts": "a,b;c,d,e"},
			wantErr: []string{"/params/hosts: must have at most 3 items", `/params/hosts/1: must be a string matching the pattern ^[a-z0-9.-]+$, found "b;c"`},
		},
		{
			in:      map[string]string{"name": "x", "ports": "[80,"},
			wantErr: []string{"/params/ports: not a JSON list: unexpected EOF"},
		},
		{
			in:      map[string]string{"count": "2", "nmae": "x"},
			wantErr: []string{`/params/name: missing required parameter "name" of task t (hint: pass --param name=VALUE)`, `/params/nmae: unknown parameter "nmae" of task t (hint: did you mean name?)`},
		},
	}
	for _, tt := range tests {
		got, errs := tk.ValidateParams(tt.in)
		var gotErrs []string
		for _, e := range errs {
			gotErrs = append(gotErrs, e.Error())
		}
		if tt.wantErr != nil {
			if got != nil || len(gotErrs) != len(tt.wantErr) {
				t.Errorf("ValidateParams(%v) = %v,%v; want errors %q", tt.in, got, gotErrs, tt.wantErr)
				continue
			}
			for i := range gotErrs {
				if !strings.HasPrefix(gotErrs[i], tt.wantErr[i]) {
					t.Errorf("ValidateParams(%v) error %d = %q, want prefix %q", tt.in, i, gotErrs[i], tt.wantErr[i])
				}
			}
			continue
		}
		if len(errs) != 0 || !cmp.Equal(got, tt.want) {
			t.Errorf("ValidateParams(%v) = %v,%v; want %v%s", tt.in, got, gotErrs, tt.want, cmp.Diff(tt.want, got))
		}
	}

	// A task without parameters refuses any.
	noParams := catalogTask(t, "check-security-updates")
	_, errs = noParams.ValidateParams(map[string]string{"x": "1"})
	if len(errs) != 1 || errs[0].Hint != "the task takes no parameters" {
		t.Errorf("ValidateParams on a task without parameters = %v", errs)
	}
}

func TestExpand(t *testing.T) {
	params := map[string]any{"site": "blog", "port": int64(8080), "on": true, "pkgs": []any{"a", "b c"}}
	tests := []struct {
		in, want, wantErr string
	}{
		{"/etc/nginx/conf.d/{{ .params.site }}.conf", "/etc/nginx/conf.d/blog.conf", ""},
		{"{{.params.port}}", "8080", ""},
		{"{{- .params.on -}}x", "truex", ""},
		{"{{ .params.pkgs }}", "a,b c", ""},
		{"plain", "plain", ""},
		{"{{ .params.missing }}", "", `parameter "missing" has no value`},
		{"{{ .params.site ", "", "not closed"},
		{"{{ .Site }}", "", "not a parameter reference"},
		{"a }} b", "", "without"},
	}
	for _, tt := range tests {
		got, err := Expand(tt.in, params)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Expand(%q) = %q, %v; want error %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	argv, err := ExpandArgs([]string{"apt-get", "install", "-y", "{{ .params.pkgs }}", "--opt={{ .params.pkgs }}", "{{ .params.site }}; rm -rf /"}, params)
	want := []string{"apt-get", "install", "-y", "a", "b c", "--opt=a,b c", "blog; rm -rf /"}
	if err != nil || !cmp.Equal(argv, want) {
		t.Errorf("ExpandArgs = %q, %v; want %q", argv, err, want)
	}
}

func TestParamSchemaKeywords(t *testing.T) {
	src := task + `  params:
    addr:
      schema: {type: string, format: ipv4, $id: "https://example.com/elsewhere.json"}
    level:
      schema: {oneOf: [{type: integer, minimum: 1}, {type: string, enum: [low, high]}]}
    word:
      schema: {type: string, not: {enum: [root]}}
  action:
    command: ["echo", "{{ .params.addr }}", "{{ .params.level }}", "{{ .params.word }}"]
`
	set, errs := Load("t.yaml", strings.NewReader(src))
	if errs = append(errs, newValidator(t).Validate(set, nil)...); len(errs) != 0 {
		t.Fatalf("task:%s", errorStrings(errs))
	}
	tk := set.Tasks[0]
	tests := []struct {
		in   map[string]string
		want string
	}{
		{map[string]string{"addr": "10.0.0.300"}, `/params/addr: must be a valid ipv4, found a string ("10.0.0.300")`},
		{map[string]string{"level": "0"}, "/params/level: must be >= 1, got 0"},
		{map[string]string{"level": "medium"}, `/params/level: must be an integer or "low" or "high", found a string ("medium")`},
		{map[string]string{"word": "root"}, `/params/word: must not be "root"`},
	}
	for _, tt := range tests {
		_, errs := tk.ValidateParams(tt.in)
		if len(errs) != 1 || errs[0].Error() != tt.want {
			t.Errorf("ValidateParams(%v) = %s\nwant %s", tt.in, errorStrings(errs), tt.want)
		}
	}
	if got, errs := tk.ValidateParams(map[string]string{"addr": "10.0.0.1", "level": "2", "word": "user"}); len(errs) != 0 ||
		!cmp.Equal(got, map[string]any{"addr": "10.0.0.1", "level": int64(2), "word": "user"}) {
		t.Errorf("ValidateParams(valid) = %v,%s", got, errorStrings(errs))
	}
}
