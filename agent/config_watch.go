package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/schema"
	"github.com/celeroot/celeroot/streams"
)

// applied is the configuration an agent runs: a revision of the cluster's
// config, and what it means for this worker.
type applied struct {
	Revision int64
	Bundle   *schema.Bundle
	// Groups are the worker groups this worker belongs to (role and labels).
	Groups []string
	// Tasks are the task names this worker runs: the built-ins, the tasks
	// of its groups, and its plugins.
	Tasks []string
	// Plugins are the plugins this worker serves, by task name: those of
	// the plugin directory whose name no catalog task has.
	Plugins map[string]*plugin
	// PluginProblems are the plugin files not served, and why.
	PluginProblems []events.PluginProblem
	// catalogTasks are Tasks without the plugins.
	catalogTasks []string
}

func (ap *applied) serves(task string) bool { return slices.Contains(ap.Tasks, task) }

// install makes ap, the configuration of a revision, the one in force,
// with the plugins of the last scan of the plugin directory. Names are
// resolved in this order: built-in tasks, then catalog tasks, then
// plugins; a plugin named like a catalog task is not served while that
// task is in the catalog. A nil ap installs the configuration in force
// again.
func (a *agent) install(ap *applied) *applied {
	a.confMu.Lock()
	defer a.confMu.Unlock()
	if ap == nil {
		ap = a.conf.Load()
	}
	served, problems := a.plugins.current()
	next := &applied{Revision: ap.Revision, Bundle: ap.Bundle, Groups: ap.Groups, catalogTasks: ap.catalogTasks,
		Plugins: map[string]*plugin{}}
	problems = slices.Clone(problems)
	for _, name := range sortedKeys(served) {
		p := served[name]
		if ap.Bundle != nil && ap.Bundle.Task(name) != nil {
			problems = append(problems, events.PluginProblem{File: p.path, Error: fmt.Sprintf(
				"not served: the catalog (config revision %d) has a task named %q, which takes precedence; rename the plugin or the catalog task", ap.Revision, name)})
			continue
		}
		next.Plugins[name] = p
	}
	sort.SliceStable(problems, func(i, j int) bool { return problems[i].File < problems[j].File })
	// The registration must fit in one event: plugins that would make it
	// too large are not advertised, so not served either.
	for {
		next.Tasks = append(slices.Clone(next.catalogTasks), sortedKeys(next.Plugins)...)
		sort.Strings(next.Tasks)
		next.PluginProblems = boundProblems(problems)
		if len(next.Plugins) == 0 || registrationSize(a.registrationOf(next)) <= events.MaxPayloadBytes {
			break
		}
		names := sortedKeys(next.Plugins)
		last := next.Plugins[names[len(names)-1]]
		delete(next.Plugins, last.desc.Name)
		problems = append(problems, events.PluginProblem{File: last.path, Error: fmt.Sprintf(
			"not served: the plugins' descriptions would make this worker's registration larger than %d bytes; shorten them or remove plugins", events.MaxPayloadBytes)})
	}
	old := a.conf.Load()
	for _, pr := range next.PluginProblems {
		if strings.HasPrefix(pr.Error, "not served: ") && (old == nil || !slices.Contains(old.PluginProblems, pr)) {
			a.cfg.Logger.Warn("plugin not served", "hostname", a.cfg.Hostname, "file", pr.File, "err", strings.TrimPrefix(pr.Error, "not served: "))
		}
	}
	a.conf.Store(next)
	a.m.plugins.Set(float64(len(next.Plugins)))
	a.m.pluginProblems.Set(float64(len(problems)))
	return next
}

// boundProblems keeps at most maxPluginProblems problems, each of at most
// maxProblemText characters, for the registration.
func boundProblems(problems []events.PluginProblem) []events.PluginProblem {
	out := make([]events.PluginProblem, 0, min(len(problems), maxPluginProblems))
	for i, pr := range problems {
		if i == maxPluginProblems-1 && len(problems) > maxPluginProblems {
			out = append(out, events.PluginProblem{File: pr.File, Error: fmt.Sprintf("and %d more plugin problems: see the agent's log", len(problems)-i)})
			break
		}
		if len(pr.Error) > maxProblemText {
			pr.Error = strings.ToValidUTF8(pr.Error[:maxProblemText], "") + "..."
		}
		out = append(out, pr)
	}
	return out
}

func registrationSize(e events.Envelope) int {
	b, err := json.Marshal(e.Payload)
	if err != nil {
		return events.MaxPayloadBytes + 1
	}
	return len(b)
}

// reconfigure installs the configuration in force again, with the plugins
// of the last scan, and announces it.
func (a *agent) reconfigure(ctx context.Context) {
	a.install(nil)
	a.announce(ctx)
}

// announce appends a registration for the configuration in force,
// retrying until it is recorded or ctx ends.
func (a *agent) announce(ctx context.Context) {
	_ = a.retry(ctx, "re-register", func(ctx context.Context) error {
		_, err := a.log.Record(ctx, a.cfg.Hostname, a.registration())
		return err
	})
}

// configure computes what revision rev means for this worker.
func (a *agent) configure(rev streams.ConfigRevision) (*applied, error) {
	b, err := schema.ParseBundle(rev.Applied.Document)
	if err != nil {
		return nil, fmt.Errorf("config revision %d: %w", rev.Applied.Revision, err)
	}
	ap := &applied{Revision: rev.Applied.Revision, Bundle: b}
	tasks := map[string]bool{}
	for _, t := range BuiltinTasks {
		tasks[t] = true
	}
	for _, g := range b.Cluster.GroupsOf(a.cfg.Role, a.cfg.Labels) {
		ap.Groups = append(ap.Groups, g.Name)
	}
	for _, t := range b.TasksFor(a.cfg.Role, a.cfg.Labels) {
		tasks[t] = true
	}
	for t := range tasks {
		ap.catalogTasks = append(ap.catalogTasks, t)
	}
	sort.Strings(ap.catalogTasks)
	return ap, nil
}

// initialConfig is what an agent runs before any config was applied.
func initialConfig() *applied {
	return &applied{catalogTasks: append([]string(nil), BuiltinTasks...)}
}

// loadConfig loads the current revision at start.
func (a *agent) loadConfig(ctx context.Context) error {
	rev, ok, err := a.log.ConfigAt(ctx, 0)
	if err != nil {
		return err
	}
	if !ok {
		a.install(initialConfig())
		return nil
	}
	ap, err := a.configure(rev)
	if err != nil {
		// A revision this agent cannot read: keep running what it has, and
		// say so; the next apply may fix it.
		a.cfg.Logger.Error("cannot use the applied config; running without it", "err", err)
		a.install(initialConfig())
		return nil
	}
	a.install(ap)
	return nil
}

// reloadConfig loads the current config revision, if it is newer than
// the one in force, and announces the worker again, so the projection shows
// the tasks it now runs. It is called when the revision is announced on the
// control stream, and when a heartbeat finds the head ahead of the agent
// (an announcement it missed). Concurrent calls load once.
func (a *agent) reloadConfig(ctx context.Context, why string) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	lg := a.cfg.Logger.With("hostname", a.cfg.Hostname)
	rev, ok, err := a.log.ConfigAt(ctx, 0)
	if err != nil {
		lg.Warn("loading the config failed; retrying at the next heartbeat", "err", err)
		return
	}
	if !ok || rev.Applied.Revision <= a.conf.Load().Revision {
		return
	}
	ap, err := a.configure(rev)
	if err != nil {
		lg.Error("cannot use the applied config; keeping the previous one", "revision", rev.Applied.Revision, "err", err)
		return
	}
	ap = a.install(ap)
	lg.Info("config applied", "revision", ap.Revision, "groups", ap.Groups, "tasks", ap.Tasks, "noticed", why)
	a.announce(ctx)
}

// registration is the worker.registered event for the current config.
func (a *agent) registration() events.Envelope { return a.registrationOf(a.conf.Load()) }

func (a *agent) registrationOf(ap *applied) events.Envelope {
	var plugins []events.Plugin
	for _, name := range sortedKeys(ap.Plugins) {
		plugins = append(plugins, ap.Plugins[name].info)
	}
	return a.src.New(events.WorkerRegistered{
		Hostname: a.cfg.Hostname, Role: a.cfg.Role, Labels: a.cfg.Labels, Version: a.cfg.Version,
		Tasks: ap.Tasks, PID: a.pid, HeartbeatMS: a.cfg.Heartbeat.Milliseconds(),
		Plugins: plugins, PluginProblems: ap.PluginProblems,
	})
}
