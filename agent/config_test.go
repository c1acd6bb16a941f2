package agent_test

import (
	"context"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/examples"
	"github.com/celeroot/celeroot/schema"
)

// exampleSet loads the example cluster and catalog.
func exampleSet(t *testing.T) *schema.Set {
	t.Helper()
	var set *schema.Set
	err := fs.WalkDir(examples.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := examples.FS.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		s, errs := schema.Load(path, f)
		if len(errs) > 0 {
			t.Fatalf("%s: %v", path, errs[0])
		}
		if set == nil {
			set = s
		} else if errs := set.Merge(s); len(errs) > 0 {
			t.Fatal(errs[0])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func (fx *fixture) applyConfig(set *schema.Set, rev int64) {
	fx.t.Helper()
	doc, hash, err := set.Bundle()
	if err != nil {
		fx.t.Fatal(err)
	}
	e := events.Source{Cluster: fx.keys.Cluster, Actor: "test"}.New(events.ConfigApplied{Revision: rev, Document: string(doc), Hash: hash})
	if _, err := fx.log.ApplyConfig(context.Background(), e); err != nil {
		fx.t.Fatal(err)
	}
}

// The seed configuration applied while agents run: each picks up the tasks
// of its group within a second, and reports the revision it runs.
func TestAgentsPickUpAppliedConfig(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		web := func(c *agent.Config) { c.Labels = map[string]string{"tier": "web"} }
		data := func(c *agent.Config) { c.Labels = map[string]string{"tier": "data"} }
		fx.start("web1", "webserver", web)
		fx.start("db1", "database", data)
		fx.start("odd1", "webserver", nil) // no tier label: in no group
		set := exampleSet(t)
		applied := time.Now()
		fx.applyConfig(set, 1)
		ctx := context.Background()
		fx.waitFor("agents report revision 1", func() bool {
			for _, h := range []string{"web1", "db1", "odd1"} {
				w, err := fx.store.Worker(ctx, h)
				if err != nil || !slices.Contains(w.Tasks, "check-security-updates") {
					return false
				}
			}
			return true
		})
		if d := time.Since(applied); d > 2*time.Second {
			t.Errorf("agents took %v to pick up the config, want about a second at most", d)
		}
		tasks := func(h string) []string { w, _ := fx.store.Worker(ctx, h); return w.Tasks }
		if ts := tasks("web1"); !slices.Contains(ts, "nginx-config") || slices.Contains(ts, "mysql-management") {
			t.Errorf("web1 runs %v, want nginx-config and not mysql-management", ts)
		}
		if ts := tasks("db1"); !slices.Contains(ts, "mysql-management") || slices.Contains(ts, "nginx-config") {
			t.Errorf("db1 runs %v, want mysql-management and not nginx-config", ts)
		}
		if ts := tasks("odd1"); slices.Contains(ts, "nginx-config") || slices.Contains(ts, "apt-management") || !slices.Contains(ts, "install-package") {
			t.Errorf("odd1 (no group) runs %v, want only unassigned catalog tasks and built-ins", ts)
		}
		// A task the worker does not serve fails with a reason.
		id := fx.submitWith(events.TaskSubmitted{Route: events.RouteWorker, Target: "db1", Task: "nginx-config",
			Params: map[string]any{"site": "x"}})
		if task := fx.wait(id); task.Outcome != events.Failed || !strings.Contains(task.Error, "not available on worker db1") {
			t.Errorf("nginx-config on db1 = %s (%q), want failed, not available", task.Outcome, task.Error)
		}
	})
}

// A catalog command gets its parameters as single argv elements: a value
// full of shell syntax reaches the program literally.
func TestCatalogParametersAreNotShell(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		fx.start("web1", "webserver", nil)
		set, errs := schema.Load("echo.yaml", strings.NewReader(`apiVersion: celeroot.io/v1
kind: Task
metadata:
  name: echo-param
spec:
  params:
    text:
      schema: {type: string}
  action:
    command: ["printf", "%s|%s\n", "{{ .params.text }}", "end"]
---
apiVersion: celeroot.io/v1
kind: Task
metadata:
  name: shell-param
spec:
  params:
    text:
      schema: {type: string}
  action:
    shell:
      script: 'printf "%s\n" "$CELEROOT_PARAM_TEXT"'
`))
		if len(errs) > 0 {
			t.Fatal(errs[0])
		}
		fx.applyConfig(set, 1)
		fx.waitFor("web1 runs echo-param", func() bool {
			w, _ := fx.store.Worker(context.Background(), "web1")
			return slices.Contains(w.Tasks, "shell-param")
		})
		evil := `nginx; rm -rf /tmp/celeroot-nope $(id) "quoted"`
		for task, want := range map[string]string{"echo-param": evil + "|end\n", "shell-param": evil + "\n"} {
			id := fx.submitWith(events.TaskSubmitted{Route: events.RouteWorker, Target: "web1", Task: task, Params: map[string]any{"text": evil}})
			if got := fx.wait(id); got.Outcome != events.Succeeded {
				t.Fatalf("%s = %s (%s)", task, got.Outcome, got.Error)
			}
			if stdout, _, _ := fx.output(id); stdout != want {
				t.Errorf("%s output = %q, want %q", task, stdout, want)
			}
		}
	})
}

// --check runs a task's check (dry-run) form instead of its action.
func TestCheckForm(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		fx.start("web1", "webserver", nil)
		set, errs := schema.Load("check.yaml", strings.NewReader(`apiVersion: celeroot.io/v1
kind: Task
metadata:
  name: with-check
spec:
  action:
    command: ["echo", "changed things"]
  check:
    command: ["echo", "would change things"]
---
apiVersion: celeroot.io/v1
kind: Task
metadata:
  name: without-check
spec:
  action:
    command: ["echo", "changed things"]
`))
		if len(errs) > 0 {
			t.Fatal(errs[0])
		}
		fx.applyConfig(set, 1)
		fx.waitFor("web1 runs the tasks", func() bool {
			w, _ := fx.store.Worker(context.Background(), "web1")
			return slices.Contains(w.Tasks, "without-check")
		})
		id := fx.submitWith(events.TaskSubmitted{Route: events.RouteWorker, Target: "web1", Task: "with-check", Check: true})
		if task := fx.wait(id); task.Outcome != events.Succeeded || !task.Check {
			t.Fatalf("check run = %s, check %v", task.Outcome, task.Check)
		}
		if stdout, _, _ := fx.output(id); stdout != "would change things\n" {
			t.Errorf("check run output = %q, want the check form's", stdout)
		}
		id = fx.submitWith(events.TaskSubmitted{Route: events.RouteWorker, Target: "web1", Task: "without-check", Check: true})
		if task := fx.wait(id); task.Outcome != events.Failed || !strings.Contains(task.Error, "no check") {
			t.Errorf("check of a task without a check form = %s (%q), want failed", task.Outcome, task.Error)
		}
	})
}
