package agent_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/schema"
)

// echoPlugin describes itself with two parameters and a check form; run,
// it prints how it was called, its parameters as it received them (the
// environment and stdin), and exits with the code it was given.
const echoPlugin = `#!/bin/sh
case "$1" in
describe)
	[ "$CELEROOT_PLUGIN_CALL" = describe ] || exit 9
	cat <<'EOF'
{"protocol": 1, "name": "echo-params", "version": "VERSION", "description": "Print the parameters.",
 "params": {"msg": {"schema": {"type": "string"}, "required": true},
            "code": {"schema": {"type": "integer", "minimum": 0}, "default": 0}},
 "timeout": "1m", "check": true}
EOF
	;;
run|check)
	echo "call=$1 env_call=$CELEROOT_PLUGIN_CALL protocol=$CELEROOT_PLUGIN_PROTOCOL task=$CELEROOT_TASK attempt=$CELEROOT_TASK_ATTEMPT"
	printf 'msg=[%s]\n' "$CELEROOT_PARAM_MSG"
	cat
	echo "to stderr" >&2
	exit "$CELEROOT_PARAM_CODE"
	;;
*)
	exit 2
	;;
esac
`

// describing returns a plugin script whose describe prints json.
func describing(json string) string {
	return "#!/bin/sh\n[ \"$1\" = describe ] || exit 2\ncat <<'EOF'\n" + json + "\nEOF\n"
}

func writePlugin(t *testing.T, dir, name string, mode os.FileMode, script string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	// Written beside and renamed, as a package manager installs a file:
	// a running agent never sees it half-written.
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// pluginsOf returns what the projection shows of a worker's plugins.
func (fx *fixture) pluginsOf(host string) (projections.Worker, map[string]string) {
	w, err := fx.store.Worker(context.Background(), host)
	if err != nil {
		return w, nil
	}
	problems := map[string]string{}
	for _, p := range w.PluginProblems {
		problems[filepath.Base(p.File)] = p.Error
	}
	return w, problems
}

// Plugins are discovered, advertised, refused with a reason of each kind,
// and run with their parameters as literal values, never through a shell.
func TestPlugins(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		dir := t.TempDir()
		writePlugin(t, dir, "echo-params", 0o755, strings.Replace(echoPlugin, "VERSION", "1.0.0", 1))
		writePlugin(t, dir, "not-executable", 0o644, describing(`{"protocol": 1, "name": "x", "version": "1"}`))
		writePlugin(t, dir, "group-writable", 0o775, describing(`{"protocol": 1, "name": "gw", "version": "1"}`))
		writePlugin(t, dir, "garbage", 0o755, "#!/bin/sh\necho 'usage: garbage [options]'\n")
		writePlugin(t, dir, "slow", 0o755, "#!/bin/sh\nexec sleep 30\n")
		writePlugin(t, dir, "failing", 0o755, "#!/bin/sh\necho 'cannot open /etc/thing.conf' >&2\nexit 3\n")
		writePlugin(t, dir, "builtin-name", 0o755, describing(`{"protocol": 1, "name": "command", "version": "1"}`))
		writePlugin(t, dir, "zz-same-name", 0o755, describing(`{"protocol": 1, "name": "echo-params", "version": "9"}`))
		writePlugin(t, dir, "newer-protocol", 0o755, describing(`{"protocol": 2, "name": "future", "version": "1"}`))
		writePlugin(t, dir, "bad-schema", 0o755, describing(`{"protocol": 1, "name": "bad-schema", "version": "1", "params": {"n": {"schema": {"type": "int"}}}}`))
		writePlugin(t, dir, "backup~", 0o755, "not a plugin")
		marker := filepath.Join(t.TempDir(), "dependency")
		writePlugin(t, dir, "needs-marker", 0o755, "#!/bin/sh\n[ -e "+marker+" ] || { echo 'dependency missing' >&2; exit 1; }\n"+
			strings.TrimPrefix(describing(`{"protocol": 1, "name": "needs-marker", "version": "1"}`), "#!/bin/sh\n"))
		if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o755); err != nil {
			t.Fatal(err)
		}
		rescan := make(chan struct{})
		fx.start("web1", "webserver", func(c *agent.Config) {
			c.PluginDir, c.PluginRescan, c.PluginDescribeTimeout, c.Rescan = dir, time.Hour, 500*time.Millisecond, rescan
		})
		fx.start("web2", "webserver", nil) // no plugins

		w, problems := fx.pluginsOf("web1")
		if !slices.Contains(w.Tasks, "echo-params") || len(w.Plugins) != 1 {
			t.Fatalf("web1 tasks %v, plugins %+v; want echo-params advertised", w.Tasks, w.Plugins)
		}
		p := w.Plugins[0]
		var params schema.Params
		if err := json.Unmarshal(p.Params, &params); err != nil || params["msg"].Required != true || p.Version != "1.0.0" ||
			!p.Check || p.TimeoutMS != 60000 || len(p.Hash) != 64 || p.Description != "Print the parameters." {
			t.Errorf("advertised plugin = %+v (params %v, %v)", p, params, err)
		}
		wantProblems := map[string]string{
			"not-executable": "not executable: chmod +x " + filepath.Join(dir, "not-executable"),
			"group-writable": "writable by users other than its owner, who could run code as this agent: chmod go-w " + filepath.Join(dir, "group-writable"),
			"garbage":        "invalid description: " + filepath.Join(dir, "garbage") + " describe:1:1: not JSON: invalid character 'u' looking for beginning of value",
			"slow":           "describe did not answer within 500ms",
			"failing":        "describe failed (exit code 3): cannot open /etc/thing.conf; a plugin answers 'failing describe' with its description on stdout and exit code 0",
			"builtin-name":   `the plugin's name "command" is a built-in task: rename the plugin`,
			"zz-same-name":   `the plugin's name "echo-params" is already served by ` + filepath.Join(dir, "echo-params") + ": rename one of them, or remove one",
			"newer-protocol": "invalid description: " + filepath.Join(dir, "newer-protocol") + " describe:1:14: /protocol: plugin protocol 2 is not supported",
			"bad-schema":     "invalid description: " + filepath.Join(dir, "bad-schema") + " describe:1:91: /params/n/schema/type: not a valid JSON Schema",
			"needs-marker":   "describe failed (exit code 1): dependency missing",
		}
		for file, want := range wantProblems {
			if got := problems[file]; !strings.HasPrefix(got, want) {
				t.Errorf("problem of %s = %q, want it to start with %q", file, got, want)
			}
		}
		if len(problems) != len(wantProblems) {
			t.Errorf("problems = %v, want exactly those of %d files (no backup~, no subdir)", problems, len(wantProblems))
		}

		// A run: the parameters reach the plugin as one literal value each,
		// in the environment and on stdin.
		evil := `x; touch /tmp/celeroot-pwned $(id) "quoted" 'single'`
		id := fx.submitWith(events.TaskSubmitted{Route: events.RouteWorker, Target: "web1", Task: "echo-params",
			Params: map[string]any{"msg": evil}})
		task := fx.wait(id)
		stdout, stderr, _ := fx.output(id)
		if task.Outcome != events.Succeeded {
			t.Fatalf("plugin run = %s (%s): %s %s", task.Outcome, task.Error, stdout, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if len(lines) != 3 || lines[0] != "call=run env_call=run protocol=1 task=echo-params attempt=1" || lines[1] != "msg=["+evil+"]" {
			t.Errorf("plugin output =\n%s", stdout)
		}
		var input map[string]any
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &input); err != nil {
			t.Fatalf("stdin line %q: %v", lines[len(lines)-1], err)
		}
		want := map[string]any{"protocol": 1.0, "call": "run", "task": "echo-params", "task_id": id, "attempt": 1.0,
			"params": map[string]any{"msg": evil, "code": 0.0}}
		if !jsonEqual(input, want) {
			t.Errorf("stdin = %v, want %v", input, want)
		}
		if stderr != "to stderr\n" {
			t.Errorf("stderr = %q", stderr)
		}
		if _, err := os.Stat("/tmp/celeroot-pwned"); err == nil {
			t.Errorf("a parameter was run through a shell")
		}

		// The check form, an exit code, and parameters the plugin refuses.
		id = fx.submitWith(events.TaskSubmitted{Route: events.RouteWorker, Target: "web1", Task: "echo-params", Check: true,
			Params: map[string]any{"msg": "m"}})
		if task := fx.wait(id); task.Outcome != events.Succeeded {
			t.Errorf("check = %s", task.Outcome)
		} else if out, _, _ := fx.output(id); !strings.HasPrefix(out, "call=check env_call=check") {
			t.Errorf("check output = %q", out)
		}
		id = fx.submitWith(events.TaskSubmitted{Route: events.RouteWorker, Target: "web1", Task: "echo-params",
			Params: map[string]any{"msg": "m", "code": 4}})
		if task := fx.wait(id); task.Outcome != events.Failed || task.ExitCode != 4 {
			t.Errorf("exit 4: %s, exit code %d", task.Outcome, task.ExitCode)
		}
		id = fx.submitWith(events.TaskSubmitted{Route: events.RouteWorker, Target: "web1", Task: "echo-params",
			Params: map[string]any{"code": -1, "extra": true}})
		task = fx.wait(id)
		if task.Outcome != events.Failed || task.ExitCode != agent.ExitNotRunable ||
			!strings.Contains(task.Error, "invalid parameters for plugin echo-params 1.0.0") ||
			!strings.Contains(task.Error, `/params/extra: unknown parameter "extra"`) ||
			!strings.Contains(task.Error, `/params/msg: missing required parameter "msg"`) ||
			!strings.Contains(task.Error, "/params/code: must be >= 0") {
			t.Errorf("invalid parameters: %s exit %d: %s", task.Outcome, task.ExitCode, task.Error)
		}

		// A worker without the plugin does not run it, and says why.
		id = fx.submitWith(events.TaskSubmitted{Route: events.RouteWorker, Target: "web2", Task: "echo-params", Params: map[string]any{"msg": "m"}})
		if task := fx.wait(id); task.Outcome != events.Failed || !strings.Contains(task.Error, `task "echo-params" is not available on worker web2`) {
			t.Errorf("on web2: %s (%s)", task.Outcome, task.Error)
		}

		// A plugin replaced since it was described is described again
		// before it runs: here its new version takes no msg.
		writePlugin(t, dir, "echo-params", 0o755, strings.Replace(strings.Replace(echoPlugin, "VERSION", "2.0.0", 1),
			`"msg": {"schema": {"type": "string"}, "required": true},`, "", 1))
		id = fx.submitWith(events.TaskSubmitted{Route: events.RouteWorker, Target: "web1", Task: "echo-params", Params: map[string]any{"msg": "m"}})
		if task := fx.wait(id); task.Outcome != events.Failed || !strings.Contains(task.Error, `invalid parameters for plugin echo-params 2.0.0: /params/msg: unknown parameter "msg"`) {
			t.Errorf("run after replacing the plugin: %s (%s)", task.Outcome, task.Error)
		}
		// The change is advertised without waiting for the next rescan.
		fx.waitFor("version 2.0.0 advertised", func() bool {
			w, _ := fx.pluginsOf("web1")
			return len(w.Plugins) == 1 && w.Plugins[0].Version == "2.0.0" && w.Plugins[0].Hash != p.Hash
		})

		// Files fixed, added and removed are seen at the next rescan; a
		// rescan asked for describes every file again, so a plugin whose
		// file did not change but whose dependency appeared is served.
		writePlugin(t, dir, "not-executable", 0o755, describing(`{"protocol": 1, "name": "now-fine", "version": "1"}`))
		if err := os.Remove(filepath.Join(dir, "failing")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(marker, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		rescan <- struct{}{}
		fx.waitFor("rescan seen", func() bool {
			w, problems := fx.pluginsOf("web1")
			_, failing := problems["failing"]
			_, notExec := problems["not-executable"]
			_, marked := problems["needs-marker"]
			return slices.Contains(w.Tasks, "now-fine") && slices.Contains(w.Tasks, "needs-marker") && !failing && !notExec && !marked && len(w.Plugins) == 3
		})
		id = fx.submitWith(events.TaskSubmitted{Route: events.RouteWorker, Target: "web1", Task: "now-fine"})
		if task := fx.wait(id); task.Outcome != events.Failed || task.ExitCode != 2 {
			// describing() exits 2 for any call but describe.
			t.Errorf("now-fine = %s exit %d", task.Outcome, task.ExitCode)
		}
	})
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// A plugin named like a catalog task is not served while the catalog has
// that task (the catalog takes precedence), and is served again once the
// catalog drops it; the directory is reread every PluginRescan.
func TestPluginShadowedByCatalog(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		dir := t.TempDir()
		fx.start("web1", "webserver", func(c *agent.Config) {
			c.PluginDir, c.PluginRescan = dir, 100*time.Millisecond
		})
		writePlugin(t, dir, "disk-usage", 0o755, describing(`{"protocol": 1, "name": "disk-usage", "version": "1"}`))
		fx.waitFor("disk-usage found by the periodic rescan", func() bool {
			w, _ := fx.pluginsOf("web1")
			return len(w.Plugins) == 1
		})
		fx.applyConfig(catalogOf(t, "disk-usage", "echo", "from the catalog"), 1)
		fx.waitFor("the plugin shadowed", func() bool {
			w, problems := fx.pluginsOf("web1")
			return len(w.Plugins) == 0 && slices.Contains(w.Tasks, "disk-usage") &&
				strings.Contains(problems["disk-usage"], `not served: the catalog (config revision 1) has a task named "disk-usage", which takes precedence`)
		})
		id := fx.submitWith(events.TaskSubmitted{Route: events.RouteWorker, Target: "web1", Task: "disk-usage"})
		if task := fx.wait(id); task.Outcome != events.Succeeded {
			t.Errorf("disk-usage = %s (%s)", task.Outcome, task.Error)
		} else if out, _, _ := fx.output(id); out != "from the catalog\n" {
			t.Errorf("disk-usage output = %q, want the catalog task's", out)
		}
		fx.applyConfig(catalogOf(t, "other", "true"), 2)
		fx.waitFor("the plugin served again", func() bool {
			w, problems := fx.pluginsOf("web1")
			return len(w.Plugins) == 1 && len(problems) == 0
		})
	})
}

// catalogOf is a catalog of one task running argv.
func catalogOf(t *testing.T, name string, argv ...string) *schema.Set {
	t.Helper()
	cmd, _ := json.Marshal(argv)
	set, errs := schema.Load("catalog.yaml", strings.NewReader("apiVersion: celeroot.io/v1\nkind: Task\nmetadata:\n  name: "+name+
		"\nspec:\n  action:\n    command: "+string(cmd)+"\n"))
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	return set
}

// The example plugin, examples/plugins/disk-usage, describes itself
// validly and runs: its report, its threshold, its check form.
func TestExamplePlugin(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		src, err := os.ReadFile("../examples/plugins/disk-usage")
		if err != nil {
			t.Fatal(err)
		}
		// A copy, so the checkout's permissions (a umask that lets the
		// group write) do not matter.
		dir := t.TempDir()
		writePlugin(t, dir, "disk-usage", 0o755, string(src))
		fx.start("web1", "webserver", func(c *agent.Config) { c.PluginDir = dir })
		w, problems := fx.pluginsOf("web1")
		if len(w.Plugins) != 1 || w.Plugins[0].Name != "disk-usage" || len(problems) != 0 {
			t.Fatalf("plugins %+v, problems %v", w.Plugins, problems)
		}
		runs := []struct {
			params  map[string]any
			check   bool
			outcome events.Outcome
			stdout  string
			stderr  string
		}{
			{map[string]any{"path": "/"}, false, events.Succeeded, "%", ""},
			{map[string]any{"path": "/", "threshold": 1}, false, events.Failed, "%", "at or above the threshold of 1%"},
			{map[string]any{"path": "/celeroot/no/such/path"}, true, events.Failed, "", "/celeroot/no/such/path does not exist"},
			{nil, true, events.Succeeded, "would report the disk usage of the file system holding /\n", ""},
		}
		for _, r := range runs {
			id := fx.submitWith(events.TaskSubmitted{Route: events.RouteWorker, Target: "web1", Task: "disk-usage", Params: r.params, Check: r.check})
			task := fx.wait(id)
			stdout, stderr, _ := fx.output(id)
			if task.Outcome != r.outcome || !strings.Contains(stdout, r.stdout) || !strings.Contains(stderr, r.stderr) {
				t.Errorf("disk-usage %v (check %v) = %s: %q %q", r.params, r.check, task.Outcome, stdout, stderr)
			}
		}
	})
}

// A plugin directory that does not exist holds no plugins, without
// complaint, until it is created; one every user can write to is not read.
func TestPluginDirectory(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		dir := filepath.Join(t.TempDir(), "plugins")
		fx.start("web1", "webserver", func(c *agent.Config) { c.PluginDir, c.PluginRescan = dir, 100*time.Millisecond })
		if w, problems := fx.pluginsOf("web1"); len(w.Plugins) != 0 || len(problems) != 0 {
			t.Errorf("without the directory: plugins %v, problems %v; want none", w.Plugins, problems)
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writePlugin(t, dir, "hello", 0o755, describing(`{"protocol": 1, "name": "hello", "version": "1"}`))
		fx.waitFor("the plugin of the new directory", func() bool {
			w, _ := fx.pluginsOf("web1")
			return len(w.Plugins) == 1
		})
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		fx.waitFor("the world-writable directory refused", func() bool {
			w, _ := fx.pluginsOf("web1")
			return len(w.Plugins) == 0 && len(w.PluginProblems) == 1 && w.PluginProblems[0].File == dir &&
				w.PluginProblems[0].Error == "the plugin directory is writable by every user, who could add a task to this agent: chmod o-w "+dir
		})
	})
}
