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

// loadConfig loads the current revision; it returns the config stream
// entry to watch from.
func (a *agent) loadConfig(ctx context.Context) (string, error) {
	rev, ok, err := a.log.ConfigAt(ctx, 0)
	if err != nil {
		return "", err
	}
	if !ok {
		a.conf.Store(initialConfig())
		return "0", nil
	}
	ap, err := a.configure(rev)
	if err != nil {
		// A revision this agent cannot read: keep running what it has, and
		// say so; the next apply may fix it.
		a.cfg.Logger.Error("cannot use the applied config; running without it", "err", err)
		a.conf.Store(initialConfig())
		return rev.EntryID, nil
	}
	a.conf.Store(ap)
	return rev.EntryID, nil
}

// watchConfig follows new config revisions until ctx is done; each one is
// applied at once and announced with a new registration, so the projection
// shows the tasks this worker now runs.
func (a *agent) watchConfig(ctx context.Context, after string) {
	lg := a.cfg.Logger.With("hostname", a.cfg.Hostname)
	a.log.WatchConfig(ctx, after, func(err error) { lg.Warn("config watch failed; retrying", "err", err) },
		func(rev streams.ConfigRevision) {
			ap, err := a.configure(rev)
			if err != nil {
				lg.Error("cannot use the applied config; keeping the previous one", "err", err)
				return
			}
			a.conf.Store(ap)
			lg.Info("config applied", "revision", ap.Revision, "groups", ap.Groups, "tasks", ap.Tasks)
			if err := a.retry(ctx, "re-register", func(ctx context.Context) error {
				_, err := a.log.Record(ctx, a.cfg.Hostname, a.registration())
				return err
			}); err != nil {
				return
			}
		})
}

// registration is the worker.registered event for the current config.
func (a *agent) registration() events.Envelope {
	return a.src.New(events.WorkerRegistered{
		Hostname: a.cfg.Hostname, Role: a.cfg.Role, Labels: a.cfg.Labels, Version: a.cfg.Version,
		Tasks: a.conf.Load().Tasks, PID: a.pid, HeartbeatMS: a.cfg.Heartbeat.Milliseconds(),
	})
}
