package schema

import (
	"strings"
	"testing"
)

// wantErr is one expected error: exact position and pointer, and
// substrings of the message and hint.
type wantErr struct {
	line, col int
	ptr       string
	msg       string
	hint      string
}

const cluster = "apiVersion: celeroot.io/v1\nkind: Cluster\nmetadata:\n  name: prod\nspec:\n"

// worker is the first lines of a worker group, at lines 6-8 after cluster.
const worker = "  workers:\n    - name: web\n      role: webserver\n"

// schedule is a schedule at lines 6-9 after cluster.
const schedule = "  schedules:\n    - name: nightly\n      cron: \"0 2 * * *\"\n      task: apt-management\n"

const task = "apiVersion: celeroot.io/v1\nkind: Task\nmetadata:\n  name: t\nspec:\n"

func TestBadDocuments(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []wantErr
	}{
		{
			name: "yaml syntax error",
			src:  "apiVersion: celeroot.io/v1\nkind: Cluster\nmetadata:\n  name: \"prod\nspec: {}\n",
			want: []wantErr{{4, 9, "", "YAML syntax error: could not find end character of double-quoted text", "quoting"}},
		},
		{
			name: "yaml syntax error in flow sequence",
			src:  cluster + worker + "      replicas: 1\n      tasks: [apt-management, nginx-config\n",
			want: []wantErr{{10, 14, "", "sequence end token ']' not found", ""}},
		},
		{
			name: "tab indentation",
			src:  "apiVersion: celeroot.io/v1\nkind: Cluster\nmetadata:\n\tname: prod\n",
			want: []wantErr{{4, 1, "", "tab character in indentation", "spaces"}},
		},
		{
			name: "duplicate key",
			src:  "apiVersion: celeroot.io/v1\nkind: Cluster\nmetadata:\n  name: prod\n  name: dev\nspec: {}\n",
			want: []wantErr{{5, 3, "", `duplicate key: "name" already defined at [4:3]`, "once"}},
		},
		{
			name: "wrong type",
			src:  cluster + worker + "      replicas: \"two\"\n",
			want: []wantErr{{9, 17, "/spec/workers/0/replicas", `must be an integer, found a string ("two")`, "whole number"}},
		},
		{
			name: "quoted number",
			src:  cluster + worker + "      replicas: \"2\"\n",
			want: []wantErr{{9, 17, "/spec/workers/0/replicas", "must be an integer", "remove the quotes: 2"}},
		},
		{
			name: "negative replicas",
			src:  cluster + worker + "      replicas: -1\n",
			want: []wantErr{{9, 17, "/spec/workers/0/replicas", "must be >= 0, got -1", ""}},
		},
		{
			name: "unknown field",
			src:  cluster + worker + "      replicas: 2\n      replica: 2\n",
			want: []wantErr{{10, 7, "/spec/workers/0/replica", `unknown field "replica"`, "did you mean replicas?"}},
		},
		{
			name: "unknown field without a close match",
			src:  cluster + "  redis:\n    flavour: vanilla\n",
			want: []wantErr{{7, 5, "/spec/redis/flavour", `unknown field "flavour"`, "valid fields here: memory, persistence, replicas"}},
		},
		{
			name: "misspelt task",
			src:  cluster + worker + "      replicas: 1\n      tasks:\n        - apt-managment\n",
			want: []wantErr{{11, 11, "/spec/workers/0/tasks/0", `unknown task "apt-managment"`, "did you mean apt-management?"}},
		},
		{
			name: "unknown kind",
			src:  "apiVersion: celeroot.io/v1\nkind: Clustr\nmetadata:\n  name: prod\n",
			want: []wantErr{{2, 7, "/kind", `unknown kind "Clustr"`, "did you mean Cluster?"}},
		},
		{
			name: "missing kind",
			src:  "apiVersion: celeroot.io/v1\nmetadata:\n  name: prod\n",
			want: []wantErr{{1, 1, "", "missing kind", "kind: Cluster or kind: Task"}},
		},
		{
			name: "wrong apiVersion",
			src:  "apiVersion: celeroot.io/v2\nkind: Cluster\nmetadata:\n  name: prod\nspec: {}\n",
			want: []wantErr{{1, 13, "/apiVersion", `unsupported apiVersion "celeroot.io/v2"`, "celeroot.io/v1"}},
		},
		{
			name: "missing metadata.name",
			src:  "apiVersion: celeroot.io/v1\nkind: Cluster\nmetadata:\n  labels:\n    tier: web\nspec: {}\n",
			want: []wantErr{{3, 1, "/metadata/name", `missing required field "name"`, "add name:"}},
		},
		{
			name: "bad cluster name",
			src:  "apiVersion: celeroot.io/v1\nkind: Cluster\nmetadata:\n  name: Prod_1\nspec: {}\n",
			want: []wantErr{{4, 9, "/metadata/name", `must be a name of 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit, found "Prod_1"`, ""}},
		},
		{
			name: "bad cron",
			src:  cluster + "  schedules:\n    - name: nightly\n      cron: \"61 * * * *\"\n      task: apt-management\n      targets: all\n",
			want: []wantErr{{8, 13, "/spec/schedules/0/cron", `invalid cron expression "61 * * * *": end of range (61) above maximum (59)`, "five fields"}},
		},
		{
			name: "cron with seconds",
			src:  cluster + "  schedules:\n    - name: nightly\n      cron: \"0 0 2 * * *\"\n      task: apt-management\n      targets: all\n",
			want: []wantErr{{8, 13, "/spec/schedules/0/cron", "seconds are not supported", ""}},
		},
		{
			name: "cron @every",
			src:  cluster + "  schedules:\n    - name: nightly\n      cron: \"@every 1h\"\n      task: apt-management\n      targets: all\n",
			want: []wantErr{{8, 13, "/spec/schedules/0/cron", "@every is not supported", ""}},
		},
		{
			name: "cron that never fires",
			src:  cluster + "  schedules:\n    - name: nightly\n      cron: \"0 0 30 2 *\"\n      task: apt-management\n      targets: all\n",
			want: []wantErr{{8, 13, "/spec/schedules/0/cron", "never fires", ""}},
		},
		{
			name: "bad timezone",
			src:  cluster + schedule + "      targets: all\n      timezone: Mars/Olympus\n",
			want: []wantErr{{11, 17, "/spec/schedules/0/timezone", `unknown time zone "Mars/Olympus"`, ""}},
		},
		{
			name: "overlap sometimes",
			src:  cluster + schedule + "      targets: all\n      overlap: sometimes\n",
			want: []wantErr{{11, 16, "/spec/schedules/0/overlap", `must be one of "allow", "skip", found "sometimes"`, "use one of: allow, skip"}},
		},
		{
			name: "missed never",
			src:  cluster + schedule + "      targets: all\n      missed: never\n",
			want: []wantErr{{11, 15, "/spec/schedules/0/missed", `must be one of "skip", "latest", "all", found "never"`, "use one of: skip, latest, all"}},
		},
		{
			name: "missed misspelt",
			src:  cluster + schedule + "      targets: all\n      missed: lates\n",
			want: []wantErr{{11, 15, "/spec/schedules/0/missed", `found "lates"`, "did you mean latest?"}},
		},
		{
			name: "negative splay",
			src:  cluster + schedule + "      targets: all\n      splay: -1s\n",
			want: []wantErr{{11, 14, "/spec/schedules/0/splay", `must not be negative, found "-1s"`, "0s or a positive duration"}},
		},
		{
			name: "splay without unit",
			src:  cluster + schedule + "      targets: all\n      splay: 30\n",
			want: []wantErr{{11, 14, "/spec/schedules/0/splay", "must be a string, found an integer (30)", `quote the value: "30"`}},
		},
		{
			name: "missedWindow without missed all",
			src:  cluster + schedule + "      targets: all\n      missedWindow: 2h\n",
			want: []wantErr{{11, 7, "/spec/schedules/0/missedWindow", "missedWindow applies only to missed: all", "set missed: all"}},
		},
		{
			name: "schedule targets an unknown role",
			src:  cluster + worker + "      replicas: 1\n" + schedule + "      targets:\n        role: database\n",
			want: []wantErr{{15, 15, "/spec/schedules/0/targets/role", `no worker group has role "database"`, "change the selector to one of: webserver"}},
		},
		{
			name: "schedule targets neither all nor a selector",
			src:  cluster + schedule + "      targets: some\n",
			want: []wantErr{{10, 16, "/spec/schedules/0/targets", `must be "all" or a mapping, found a string ("some")`, "selector"}},
		},
		{
			name: "unknown task in schedule",
			src:  cluster + "  schedules:\n    - name: nightly\n      cron: \"@daily\"\n      task: backup-configuration\n      targets: all\n",
			want: []wantErr{{9, 13, "/spec/schedules/0/task", `unknown task "backup-configuration"`, "did you mean backup-configurations?"}},
		},
		{
			name: "bad selector key",
			src:  cluster + worker + "      replicas: 1\n      selector:\n        labels:\n          \"bad key\": web\n",
			want: []wantErr{{12, 11, "/spec/workers/0/selector/labels/bad key", `key "bad key" must be 1-63 letters, digits`, ""}},
		},
		{
			name: "bad selector value",
			src:  cluster + worker + "      replicas: 1\n      selector:\n        labels:\n          tier: \"web tier\"\n",
			want: []wantErr{{12, 17, "/spec/workers/0/selector/labels/tier", `found "web tier"`, ""}},
		},
		{
			name: "duplicate worker name",
			src:  cluster + worker + "      replicas: 1\n    - name: web\n      role: webserver\n      replicas: 1\n",
			want: []wantErr{{10, 13, "/spec/workers/1/name", `duplicate worker group name "web" (first at line 7)`, "unique"}},
		},
		{
			name: "duplicate schedule name",
			src:  cluster + schedule + "      targets: all\n" + "    - name: nightly\n      cron: \"@daily\"\n      task: apt-management\n      targets: all\n",
			want: []wantErr{{11, 13, "/spec/schedules/1/name", `duplicate schedule name "nightly" (first at line 7)`, "unique"}},
		},
		{
			name: "memory 1Gb",
			src:  cluster + "  redis:\n    memory: 1Gb\n",
			want: []wantErr{{7, 13, "/spec/redis/memory", `quantity "1Gb": unknown unit "Gb"; did you mean 1Gi (powers of 1024) or 1G (powers of 1000)?`, ""}},
		},
		{
			name: "memory -1Gi",
			src:  cluster + "  redis:\n    memory: -1Gi\n",
			want: []wantErr{{7, 13, "/spec/redis/memory", `quantity "-1Gi" is negative`, ""}},
		},
		{
			name: "memory lots",
			src:  cluster + "  redis:\n    memory: lots\n",
			want: []wantErr{{7, 13, "/spec/redis/memory", `quantity "lots" does not start with a number`, ""}},
		},
		{
			name: "memory negative integer",
			src:  cluster + "  redis:\n    memory: -5\n",
			want: []wantErr{{7, 13, "/spec/redis/memory", "must be >= 0, got -5", ""}},
		},
		{
			name: "queue of a role no worker has",
			src:  cluster + worker + "      replicas: 1\n  queues:\n    database_queue:\n      - database_tasks.*\n",
			want: []wantErr{{11, 5, "/spec/queues/database_queue", `queue "database_queue" is served by role "database", but no worker group has that role`, "webserver"}},
		},
		{
			name: "queue name without _queue",
			src:  cluster + "  queues:\n    webservers:\n      - webserver_tasks.*\n",
			want: []wantErr{{7, 5, "/spec/queues/webservers", `key "webservers" must be a queue name of the form <role>_queue, or all_queue`, ""}},
		},
		{
			name: "malformed queue pattern",
			src:  cluster + "  queues:\n    all_queue:\n      - \"system_tasks.[\"\n",
			want: []wantErr{{8, 9, "/spec/queues/all_queue/0", `task pattern "system_tasks.[" is malformed`, ""}},
		},
		{
			name: "empty file",
			src:  "",
			want: []wantErr{{0, 0, "", "no documents", "empty"}},
		},
		{
			name: "only comments",
			src:  "# cluster.yaml\n# nothing yet\n\n",
			want: []wantErr{{0, 0, "", "no documents", "only comments"}},
		},
		{
			name: "binary garbage",
			src:  "\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00",
			want: []wantErr{{1, 1, "", "control character U+007F", "binary file"}},
		},
		{
			name: "NUL byte",
			src:  "apiVersion: celeroot.io/v1\nkind: Clu\x00ster\n",
			want: []wantErr{{2, 10, "", "control character U+0000", ""}},
		},
		{
			name: "invalid UTF-8",
			src:  "apiVersion: celeroot.io/v1\nkind: Cl\xffuster\n",
			want: []wantErr{{2, 9, "", "not valid UTF-8", "UTF-8"}},
		},
		{
			name: "UTF-16",
			src:  "\xff\xfea\x00:\x00",
			want: []wantErr{{0, 0, "", "UTF-16", "UTF-8"}},
		},
		{
			name: "document is a list",
			src:  "- name: web\n  role: webserver\n",
			want: []wantErr{{1, 1, "", "the document is a list, not a mapping", "apiVersion, kind"}},
		},
		{
			name: "unknown alias",
			src:  cluster + worker + "      replicas: *count\n",
			want: []wantErr{{9, 17, "/spec/workers/0/replicas", "unknown alias *count", "&count"}},
		},
		{
			name: "unsupported tag",
			src:  cluster + worker + "      replicas: !!binary AQ==\n",
			want: []wantErr{{9, 17, "/spec/workers/0/replicas", "unsupported tag !!binary", ""}},
		},
		{
			name: "two Clusters",
			src:  cluster + "  workers: []\n---\n" + cluster + "  workers: []\n",
			want: []wantErr{{9, 7, "/kind", "a second Cluster document; a configuration has one (the first is at bad.yaml:2:7)", "on its own"}},
		},
		{
			name: "task with two actions",
			src:  task + "  action:\n    command: [\"true\"]\n    shell:\n      script: exit 0\n",
			want: []wantErr{{6, 3, "/spec/action", "sets command and shell; set exactly one of command, shell, package, file, service", ""}},
		},
		{
			name: "task without action",
			src:  task + "  description: does nothing\n",
			want: []wantErr{{5, 1, "/spec/action", `missing required field "action"`, "add action:"}},
		},
		{
			name: "task with an empty action",
			src:  task + "  action: {}\n",
			want: []wantErr{{6, 3, "/spec/action", "must set one of command, shell, package, file, service", ""}},
		},
		{
			name: "task with a misspelt action",
			src:  task + "  action:\n    comand: [\"true\"]\n",
			want: []wantErr{{7, 5, "/spec/action/comand", `unknown field "comand"`, "did you mean command?"}},
		},
		{
			name: "param with an invalid JSON Schema",
			src:  task + "  params:\n    count:\n      schema:\n        type: strin\n  action:\n    command: [\"true\"]\n",
			want: []wantErr{{9, 15, "/spec/params/count/schema/type", "not a valid JSON Schema", ""}},
		},
		{
			name: "param schema with a remote reference",
			src:  task + "  params:\n    count:\n      schema:\n        $ref: \"https://example.com/s.json\"\n  action:\n    command: [\"true\"]\n",
			want: []wantErr{{8, 7, "/spec/params/count/schema", "references to other schema documents are not allowed", ""}},
		},
		{
			name: "bad param name",
			src:  task + "  params:\n    Count:\n      schema: {type: integer}\n  action:\n    command: [\"true\"]\n",
			want: []wantErr{{7, 5, "/spec/params/Count", `key "Count" must be a parameter name`, ""}},
		},
		{
			name: "param default does not match",
			src:  task + "  params:\n    count:\n      schema: {type: integer, minimum: 1}\n      default: 0\n  action:\n    command: [\"true\"]\n",
			want: []wantErr{{9, 16, "/spec/params/count/default", "must be >= 1, got 0", "match the parameter's schema"}},
		},
		{
			name: "reference to an undeclared param",
			src:  task + "  params:\n    package:\n      schema: {type: string}\n  action:\n    command: [\"apt-get\", \"install\", \"{{ .params.pakage }}\"]\n",
			want: []wantErr{{10, 37, "/spec/action/command/2", `reference to undeclared parameter "pakage"`, "did you mean package?"}},
		},
		{
			name: "program from a param",
			src:  task + "  params:\n    prog:\n      schema: {type: string}\n  action:\n    command: [\"{{ .params.prog }}\"]\n",
			want: []wantErr{{10, 15, "/spec/action/command/0", "the program to run must not come from a parameter", ""}},
		},
		{
			name: "template in a shell script",
			src:  task + "  action:\n    shell:\n      script: \"rm {{ .params.x }}\"\n",
			want: []wantErr{{8, 15, "/spec/action/shell/script", "a shell script is not a template", "CELEROOT_PARAM_NAME"}},
		},
		{
			name: "file mode without quotes",
			src:  task + "  action:\n    file:\n      path: /etc/motd\n      content: hello\n      mode: 0644\n",
			want: []wantErr{{10, 13, "/spec/action/file/mode", "must be a string, found an integer (420)", `quote the value: "0644"`}},
		},
		{
			name: "relative file path",
			src:  task + "  action:\n    file: {path: motd, content: hello}\n",
			want: []wantErr{{7, 18, "/spec/action/file/path", `must be an absolute path, found "motd"`, ""}},
		},
		{
			name: "invalid file template",
			src:  task + "  params:\n    site:\n      schema: {type: string}\n  action:\n    file:\n      path: \"/etc/{{ .params.site }}\"\n      template: \"{{ .params.site \"\n",
			want: []wantErr{{12, 17, "/spec/action/file/template", "invalid template: file:1: unclosed action", ""}},
		},
		{
			name: "zero timeout",
			src:  task + "  action:\n    command: [\"true\"]\n  timeout: 0s\n",
			want: []wantErr{{8, 12, "/spec/timeout", "must be longer than 0", ""}},
		},
		{
			name: "retry maxAttempts 0",
			src:  task + "  action:\n    command: [\"true\"]\n  retry:\n    maxAttempts: 0\n",
			want: []wantErr{{9, 18, "/spec/retry/maxAttempts", "must be >= 1, got 0", ""}},
		},
		{
			name: "bad task name",
			src:  "apiVersion: celeroot.io/v1\nkind: Task\nmetadata:\n  name: Install_Package\nspec:\n  action:\n    command: [\"true\"]\n",
			want: []wantErr{{4, 9, "/metadata/name", "must be a task name", ""}},
		},
		{
			name: "schedule params unknown to the task",
			src: cluster + "  schedules:\n    - name: nightly\n      cron: \"@daily\"\n      task: t\n      targets: all\n      params:\n        pkg: nginx\n" +
				"---\n" + task + "  params:\n    package:\n      schema: {type: string}\n      required: true\n  action:\n    package: {name: \"{{ .params.package }}\"}\n",
			want: []wantErr{
				{11, 7, "/spec/schedules/0/params/package", `missing required parameter "package" of task t`, "add package under params"},
				{12, 9, "/spec/schedules/0/params/pkg", `unknown parameter "pkg" of task t`, "parameters of t: package"},
			},
		},
		{
			name: "JSON input",
			src:  `{"apiVersion": "celeroot.io/v1", "kind": "Cluster", "metadata": {"name": "prod"}, "spec": {"workers": [{"name": "web", "role": "webserver", "replicas": -1}]}}`,
			want: []wantErr{{1, 153, "/spec/workers/0/replicas", "must be >= 0, got -1", ""}},
		},
		{
			name: "multiple errors in one file",
			src: cluster + worker +
				"      replicas: -1\n" + // 9
				"      replica: 2\n" + // 10
				"      tasks: [apt-managment]\n" + // 11
				"  schedules:\n" +
				"    - name: nightly\n" +
				"      cron: \"61 * * * *\"\n" + // 14
				"      task: apt-management\n" +
				"      targets: all\n" +
				"      overlap: sometimes\n" + // 17
				"  redis:\n" +
				"    memory: 1Gb\n", // 19
			want: []wantErr{
				{9, 17, "/spec/workers/0/replicas", "must be >= 0, got -1", ""},
				{10, 7, "/spec/workers/0/replica", `unknown field "replica"`, "did you mean replicas?"},
				{11, 15, "/spec/workers/0/tasks/0", `unknown task "apt-managment"`, "did you mean apt-management?"},
				{14, 13, "/spec/schedules/0/cron", "invalid cron expression", ""},
				{17, 16, "/spec/schedules/0/overlap", `found "sometimes"`, ""},
				{19, 13, "/spec/redis/memory", `unknown unit "Gb"`, ""},
			},
		},
	}
	v := newValidator(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := loadAndValidate(t, v, "bad.yaml", tt.src, seedCatalog)
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:%s", len(errs), len(tt.want), errorStrings(errs))
			}
			for i, w := range tt.want {
				e := errs[i]
				if e.File != "bad.yaml" || e.Line != w.line || e.Col != w.col || e.Pointer != w.ptr ||
					!strings.Contains(e.Msg, w.msg) || !strings.Contains(e.Hint, w.hint) {
					t.Errorf("error %d = %q\nwant bad.yaml:%d:%d: %s: ...%s... (hint: ...%s...)", i, e.Error(), w.line, w.col, w.ptr, w.msg, w.hint)
				}
			}
		})
	}
}

func TestMissingAPIVersion(t *testing.T) {
	_, errs := loadAndValidate(t, newValidator(t), "bad.yaml", "kind: Cluster\nmetadata: {name: prod}\nspec: {}\n", nil)
	want := `bad.yaml:1:1: /apiVersion: missing required field "apiVersion" (hint: add apiVersion: celeroot.io/v1)`
	if len(errs) != 1 || errs[0].Error() != want {
		t.Errorf("errors = %s\nwant %s", errorStrings(errs), want)
	}
}
