package agent

import (
	"context"
	"fmt"
	"slices"
	"sort"

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
	// Tasks are the task names this worker runs: the built-ins and the
	// tasks of its groups.
	Tasks []string
}

func (ap *applied) serves(task string) bool { return slices.Contains(ap.Tasks, task) }

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
		ap.Tasks = append(ap.Tasks, t)
	}
	sort.Strings(ap.Tasks)
	return ap, nil
}

// initialConfig is what an agent runs before any config was applied.
func initialConfig() *applied {
	return &applied{Tasks: append([]string(nil), BuiltinTasks...)}
}

// loadConfig loads the current revision at start.
func (a *agent) loadConfig(ctx context.Context) error {
	rev, ok, err := a.log.ConfigAt(ctx, 0)
	if err != nil {
		return err
	}
	if !ok {
		a.conf.Store(initialConfig())
		return nil
	}
	ap, err := a.configure(rev)
	if err != nil {
		// A revision this agent cannot read: keep running what it has, and
		// say so; the next apply may fix it.
		a.cfg.Logger.Error("cannot use the applied config; running without it", "err", err)
		a.conf.Store(initialConfig())
		return nil
	}
	a.conf.Store(ap)
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
	a.conf.Store(ap)
	lg.Info("config applied", "revision", ap.Revision, "groups", ap.Groups, "tasks", ap.Tasks, "noticed", why)
	_ = a.retry(ctx, "re-register", func(ctx context.Context) error {
		_, err := a.log.Record(ctx, a.cfg.Hostname, a.registration())
		return err
	})
}

// registration is the worker.registered event for the current config.
func (a *agent) registration() events.Envelope {
	return a.src.New(events.WorkerRegistered{
		Hostname: a.cfg.Hostname, Role: a.cfg.Role, Labels: a.cfg.Labels, Version: a.cfg.Version,
		Tasks: a.conf.Load().Tasks, PID: a.pid, HeartbeatMS: a.cfg.Heartbeat.Milliseconds(),
	})
}
