package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/schema"
	"github.com/celeroot/celeroot/streams"
)

// JanitorEvery is how often an agent tries to run the retention pass. Every
// agent with the janitor on tries; the retention lease lets one run at a
// time, so a fleet runs about one pass per JanitorEvery between them.
const JanitorEvery = time.Minute

// RetentionOf is the retention policy of an applied configuration (the
// defaults when none is applied).
func RetentionOf(b *schema.Bundle) projections.Retention {
	var r schema.Retention
	if b != nil && b.Cluster != nil {
		r = b.Cluster.Spec.Retention
	}
	r = r.WithDefaults()
	return projections.Retention{
		Events:         r.Events.Duration,
		TrimUnarchived: r.Archive == schema.ArchiveNone,
		Heartbeats:     r.Heartbeats.Duration,
		Tasks:          r.Tasks.Duration,
		Workers:        r.Workers.Duration,
		ScheduleEvents: r.ScheduleEvents.Duration,
	}
}

// runJanitor runs the retention pass every JanitorEvery while this agent
// gets the lease, with the retention of the config in force, until ctx is
// done.
func (a *agent) runJanitor(ctx context.Context) error {
	lg := a.cfg.Logger.With("hostname", a.cfg.Hostname, "component", "janitor")
	j := projections.NewJanitor(a.rdb, a.cfg.Keys, projections.JanitorOptions{
		Owner:     fmt.Sprintf("%s-%d", a.cfg.Hostname, a.pid),
		Retention: func() projections.Retention { return RetentionOf(a.conf.Load().Bundle) },
		Logger:    lg,
	})
	// Start at a random point of the interval, so a fleet started together
	// does not contend for the lease at the same instant.
	var b streams.Backoff
	streams.Sleep(ctx, b.Next())
	t := time.NewTicker(JanitorEvery)
	defer t.Stop()
	for ctx.Err() == nil {
		start := time.Now()
		rep, err := j.Pass(ctx)
		switch {
		case errors.Is(err, streams.ErrLeaseHeld):
		case err != nil && ctx.Err() == nil:
			a.m.janitorErrors.Inc()
			lg.Warn("retention pass failed; trying again next time", "err", err)
		case err == nil:
			a.m.janitorPasses.Inc()
			for kind, n := range rep.Removed {
				a.m.janitorTrimmed.WithLabelValues(kind).Add(float64(n))
			}
			a.m.janitorRemoved.WithLabelValues("task").Add(float64(rep.TasksRemoved))
			a.m.janitorRemoved.WithLabelValues("worker").Add(float64(rep.WorkersForgotten))
			a.m.janitorLast.SetToCurrentTime()
			lg.Debug("retention pass done", "took", time.Since(start).Round(time.Millisecond), "removed", rep.Removed,
				"tasks", rep.TasksRemoved, "workers", rep.WorkersForgotten, "expired", rep.TasksExpired, "abandoned", rep.TasksAbandoned)
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	return nil
}
