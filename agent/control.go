package agent

import (
	"context"
	"errors"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/streams"
)

// handleControl acts on one entry of the worker's control stream (read by
// the dispatcher with the worker's tasks): cancel a running task, drain
// and stop, or load a newly applied config revision. The entry is
// acknowledged once handled.
func (a *agent) handleControl(ctx context.Context, r *streams.Reader, m streams.Message) {
	lg := a.cfg.Logger.With("hostname", a.cfg.Hostname)
	switch p := m.Envelope.Payload.(type) {
	case events.TaskCancel:
		if cancel, ok := a.cancels.Load(p.TaskID); ok {
			lg.Info("cancelling task on request", "task_id", p.TaskID, "by", m.Envelope.Actor)
			cancel.(context.CancelCauseFunc)(&CancelError{Reason: p.Reason})
		} else {
			lg.Info("cancel request for a task not running here", "task_id", p.TaskID)
		}
	case events.WorkerDrain:
		lg.Info("drain requested", "by", m.Envelope.Actor, "reason", p.Reason)
		reason := "drained by " + m.Envelope.Actor
		if p.Reason != "" {
			reason += ": " + p.Reason
		}
		a.stop(errors.New(reason))
	case events.ConfigAnnounced:
		if p.Revision > a.conf.Load().Revision {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			a.reloadConfig(rctx, "announced")
			cancel()
		}
	default:
		lg.Warn("unexpected event in the control stream; ignored", "type", m.Envelope.Type, "entry", m.ID)
	}
	if err := a.rec.ackEntry(m); err != nil {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := r.Ack(actx, m.Stream, m.ID); err != nil {
			lg.Warn("ack of a control request failed", "entry", m.ID, "err", err)
		}
	}
}
