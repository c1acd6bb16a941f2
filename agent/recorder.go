package agent

import (
	"context"
	"errors"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/streams"
	"github.com/redis/go-redis/v9"
)

// recorder records the ends of attempts and acknowledges dispatch entries
// for every task of the agent, in batches: whatever arrives while one
// batch is on the wire goes in the next. Under load many tasks share one
// round trip for their results and one for their acknowledgements; an
// idle agent sends each at once, so nothing waits for a timer.
//
// A batch does its finishes first and then the acknowledgements of the
// entries whose finish was recorded, so an entry is never acknowledged
// before its result is in the store. A call that fails in a batch is
// reported to its caller, which retries it on its own (the calls are
// idempotent on their event ids).
type recorder struct {
	log *streams.Log
	rdb redis.UniversalClient
	in  chan recordReq
	// done is closed when Run returns; later calls fail at once.
	done chan struct{}
}

// maxRecordBatch bounds the calls sent in one round trip.
const maxRecordBatch = 512

// recordReq is a finish to record (ev set) and/or an entry to acknowledge
// once it is recorded (ack set). The answer comes on reply.
type recordReq struct {
	ev    *events.Envelope
	ack   *streams.Message
	reply chan recordRes
}

type recordRes struct {
	stale bool
	// err is the finish's error: nothing was acknowledged.
	err error
	// acked reports that the entry was acknowledged; ackErr why not.
	acked  bool
	ackErr error
}

var errRecorderStopped = errors.New("agent: recorder stopped")

func newRecorder(log *streams.Log, rdb redis.UniversalClient) *recorder {
	return &recorder{log: log, rdb: rdb, in: make(chan recordReq, maxRecordBatch), done: make(chan struct{})}
}

// call sends one request and waits for its answer.
func (r *recorder) call(req recordReq) recordRes {
	stopped := recordRes{err: errRecorderStopped, ackErr: errRecorderStopped}
	req.reply = make(chan recordRes, 1)
	select {
	case r.in <- req:
	case <-r.done:
		return stopped
	}
	select {
	case res := <-req.reply:
		return res
	case <-r.done:
		select {
		case res := <-req.reply:
			return res
		default:
			return stopped
		}
	}
}

// finish records the end of an attempt and, if ack is set and the finish
// was recorded, acknowledges the entry.
func (r *recorder) finish(ev events.Envelope, ack *streams.Message) recordRes {
	return r.call(recordReq{ev: &ev, ack: ack})
}

// ackEntry acknowledges one entry.
func (r *recorder) ackEntry(m streams.Message) error {
	res := r.call(recordReq{ack: &m})
	if res.ackErr != nil {
		return res.ackErr
	}
	return nil
}

// Run serves requests until ctx is done. Calls made after that fail with
// errRecorderStopped.
func (r *recorder) Run(ctx context.Context) {
	defer func() {
		close(r.done)
		for {
			select {
			case req := <-r.in:
				req.reply <- recordRes{err: errRecorderStopped, ackErr: errRecorderStopped}
			default:
				return
			}
		}
	}()
	batch := make([]recordReq, 0, maxRecordBatch)
	for {
		select {
		case req := <-r.in:
			batch = append(batch[:0], req)
		case <-ctx.Done():
			return
		}
	more:
		for len(batch) < maxRecordBatch {
			select {
			case req := <-r.in:
				batch = append(batch, req)
			default:
				break more
			}
		}
		r.flush(ctx, batch)
	}
}

// flush sends the finishes of batch in one pipeline, then the
// acknowledgements of the entries whose finish was recorded (and of those
// with no finish) in another, and answers every request.
func (r *recorder) flush(ctx context.Context, batch []recordReq) {
	res := make([]recordRes, len(batch))
	var evs []events.Envelope
	var which []int
	for i, req := range batch {
		if req.ev != nil {
			evs = append(evs, *req.ev)
			which = append(which, i)
		}
	}
	if len(evs) > 0 {
		stale, errs := r.log.FinishBatch(ctx, evs)
		for j, i := range which {
			res[i].stale, res[i].err = stale[j], errs[j]
		}
	}
	// Acknowledge per stream, one XACK with every id of the stream.
	type group struct {
		ids  []string
		reqs []int
	}
	var order []string
	byStream := map[string]*group{}
	for i, req := range batch {
		if req.ack == nil || res[i].err != nil {
			continue
		}
		g := byStream[req.ack.Stream]
		if g == nil {
			g = &group{}
			byStream[req.ack.Stream] = g
			order = append(order, req.ack.Stream)
		}
		g.ids = append(g.ids, req.ack.ID)
		g.reqs = append(g.reqs, i)
	}
	if len(order) > 0 {
		cmds := make([]*redis.IntCmd, len(order))
		_, _ = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for k, s := range order {
				cmds[k] = p.XAck(ctx, s, streams.GroupAgents, byStream[s].ids...)
			}
			return nil
		})
		for k, s := range order {
			err := cmds[k].Err()
			for _, i := range byStream[s].reqs {
				res[i].acked, res[i].ackErr = err == nil, err
			}
		}
	}
	for i, req := range batch {
		req.reply <- res[i]
	}
}
