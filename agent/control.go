package agent

import (
	"context"
	"errors"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/streams"
)

// control reads the worker's control stream: requests addressed to this
// worker (cancel a running task).
type control struct {
	a      *agent
	reader *streams.Reader
}

func (a *agent) newControl() (*control, error) {
	r, err := streams.NewReader(a.rdb, streams.ReaderOptions{
		Streams: []string{a.cfg.Keys.WorkerControl(a.cfg.Hostname)}, Group: streams.GroupAgents,
		Consumer: a.cfg.Hostname, Block: a.cfg.Block, DeadLetter: a.cfg.Keys.DeadLetters(), Logger: a.cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	return &control{a: a, reader: r}, nil
}

// Run handles control requests until ctx is cancelled.
func (c *control) Run(ctx context.Context) error {
	lg := c.a.cfg.Logger.With("hostname", c.a.cfg.Hostname)
	var backoff streams.Backoff
	for {
		msgs, err := c.reader.Fetch(ctx, 0)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			d := backoff.Next()
			lg.Warn("reading the control stream failed; retrying", "err", err, "in", d.Round(time.Millisecond))
			streams.Sleep(ctx, d)
			continue
		}
		backoff.Reset()
		for _, m := range msgs {
			switch p := m.Envelope.Payload.(type) {
			case events.TaskCancel:
				if cancel, ok := c.a.cancels.Load(p.TaskID); ok {
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
				c.a.stop(errors.New(reason))
			default:
				lg.Warn("unexpected event in the control stream; ignored", "type", m.Envelope.Type, "entry", m.ID)
			}
			if err := c.reader.Ack(ctx, m.Stream, m.ID); err != nil {
				lg.Warn("ack of a control request failed", "entry", m.ID, "err", err)
			}
		}
	}
}
