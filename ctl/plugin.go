package ctl

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/schema"
)

// pluginTask is a task served by plugins: every version of it that live
// workers advertise.
type pluginTask struct {
	name     string
	versions []*pluginVersion
	// byWorker is the version each worker serves.
	byWorker map[string]*pluginVersion
}

// pluginVersion is one description of a plugin (one hash), and the live
// workers that advertise it.
type pluginVersion struct {
	info    events.Plugin
	task    *schema.Task
	workers []string
}

// live reports whether a worker's advertisement counts: it has not left
// and was not removed.
func live(w projections.Worker, now time.Time) bool {
	st := w.State(now)
	return st != projections.WorkerLeft && st != projections.WorkerExpected && !w.Removed
}

// findPlugin returns the plugin task called name as the live workers
// advertise it, or nil if none does.
func findPlugin(workers []projections.Worker, name string, now time.Time) *pluginTask {
	pt := &pluginTask{name: name, byWorker: map[string]*pluginVersion{}}
	byHash := map[string]*pluginVersion{}
	for _, w := range workers {
		if !live(w, now) {
			continue
		}
		for _, p := range w.Plugins {
			if p.Name != name {
				continue
			}
			v := byHash[p.Hash]
			if v == nil {
				var params schema.Params
				if len(p.Params) > 0 {
					// Agents advertise what they validated; a record that
					// does not decode is left without parameters and the
					// agent's own check refuses what it must.
					_ = json.Unmarshal(p.Params, &params)
				}
				v = &pluginVersion{info: p, task: (&schema.Plugin{Name: p.Name, Description: p.Description, Params: params,
					Timeout: schema.Duration{Duration: time.Duration(p.TimeoutMS) * time.Millisecond}, Idempotent: p.Idempotent}).Task()}
				byHash[p.Hash] = v
				pt.versions = append(pt.versions, v)
			}
			v.workers = append(v.workers, w.Hostname)
			pt.byWorker[w.Hostname] = v
		}
	}
	if len(pt.versions) == 0 {
		return nil
	}
	sort.Slice(pt.versions, func(i, j int) bool {
		a, b := pt.versions[i], pt.versions[j]
		if a.info.Version != b.info.Version {
			return a.info.Version < b.info.Version
		}
		return a.info.Hash < b.info.Hash
	})
	for _, v := range pt.versions {
		sort.Strings(v.workers)
	}
	return pt
}

// pluginNames returns the names of the plugins live workers advertise.
func pluginNames(workers []projections.Worker, now time.Time) []string {
	seen := map[string]bool{}
	for _, w := range workers {
		if live(w, now) {
			for _, p := range w.Plugins {
				seen[p.Name] = true
			}
		}
	}
	return sortedKeys(seen)
}

// where says which workers serve the plugin, by version:
// "web1, web2 (1.0.0); db1 (1.1.0)".
func (pt *pluginTask) where() string {
	parts := make([]string, len(pt.versions))
	for i, v := range pt.versions {
		parts[i] = fmt.Sprintf("%s (%s)", strings.Join(v.workers, ", "), v.info.Version)
	}
	return strings.Join(parts, "; ")
}

// label names a version in messages: "disk-usage 1.0.0", with its hash
// when two versions share a version string.
func (pt *pluginTask) label(v *pluginVersion) string {
	n := 0
	for _, o := range pt.versions {
		if o.info.Version == v.info.Version {
			n++
		}
	}
	if n > 1 {
		return fmt.Sprintf("%s %s (%s)", pt.name, v.info.Version, v.info.Hash[:12])
	}
	return pt.name + " " + v.info.Version
}

// forTargets returns the versions the targets serve. A queue task may be
// taken by any healthy worker of the role, so every one of them must
// serve the plugin.
func (pt *pluginTask) forTargets(targets []dispatchTarget, workers []projections.Worker, now time.Time) ([]*pluginVersion, error) {
	seen := map[*pluginVersion]bool{}
	add := func(v *pluginVersion) { seen[v] = true }
	for _, t := range targets {
		if t.route == events.RouteWorker {
			if v := pt.byWorker[t.name]; v != nil {
				add(v)
			}
			continue
		}
		var without []string
		n := 0
		for _, w := range workers {
			if w.Role != t.name || w.State(now) != projections.WorkerHealthy {
				continue
			}
			n++
			if v := pt.byWorker[w.Hostname]; v != nil {
				add(v)
			} else {
				without = append(without, w.Hostname)
			}
		}
		switch {
		case n == 0:
			return nil, fmt.Errorf("--queue %s: no healthy worker of role %s serves plugin %s; it is served by: %s", t.name, t.name, pt.name, pt.where())
		case len(without) > 0:
			return nil, fmt.Errorf("--queue %s: any healthy worker of role %s may take the task, and plugin %s is not on %s (it is served by: %s); target workers that serve it, as in --target %s, or install the plugin on every worker of the role",
				t.name, t.name, pt.name, strings.Join(without, ", "), pt.where(), pt.versions[0].workers[0])
		}
	}
	var out []*pluginVersion
	for _, v := range pt.versions {
		if seen[v] {
			out = append(out, v)
		}
	}
	return out, nil
}

// checkParams checks command-line parameters against every version the
// targets serve, printing each problem to errw, and returns the values to
// submit: the given parameters, converted to their schema types. Defaults
// are not added: each agent adds its own version's.
func (pt *pluginTask) checkParams(versions []*pluginVersion, raw map[string]string, errw io.Writer) (map[string]any, bool) {
	var submit map[string]any
	ok := true
	for _, v := range versions {
		values, perrs := v.task.ValidateParams(raw)
		for _, pe := range perrs {
			prefix := pt.name
			if len(versions) > 1 {
				prefix = pt.label(v) + " on " + strings.Join(v.workers, ", ")
			}
			fmt.Fprintf(errw, "celeroot: task run: %s: %s\n", prefix, pe.Error())
		}
		if len(perrs) > 0 {
			ok = false
			continue
		}
		if submit == nil {
			submit = map[string]any{}
			for k := range raw {
				submit[k] = values[k]
			}
		}
	}
	if !ok {
		return nil, false
	}
	if len(submit) == 0 {
		submit = nil
	}
	return submit, true
}

// notServing returns the healthy workers a fan-out to target (all or
// role:R) and selector skipped because they do not serve the plugin.
func (pt *pluginTask) notServing(target string, selector map[string]string, workers []projections.Worker, now time.Time) []string {
	t, err := events.ParseTarget(target)
	if err != nil || !t.FanOut() {
		return nil
	}
	var out []string
	for _, w := range workers {
		if (t.All || w.Role == t.Role) && matchesSelector(w, selector) &&
			w.State(now) == projections.WorkerHealthy && pt.byWorker[w.Hostname] == nil {
			out = append(out, w.Hostname)
		}
	}
	return out
}
