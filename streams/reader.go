package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/redis/go-redis/v9"
)

// Message is one decoded stream entry delivered to a consumer.
type Message struct {
	Stream   string
	ID       string
	Envelope events.Envelope
}

// ReaderOptions configures a Reader.
type ReaderOptions struct {
	// Streams to read. On Redis Cluster they must share a hash tag (one
	// XREADGROUP cannot span slots); use one Reader per slot otherwise.
	Streams  []string
	Group    string
	Consumer string
	// Block is how long one read waits for new entries before returning
	// empty, so the caller can check its context. Default 2s; at most 5s.
	Block time.Duration
	// Count caps the entries returned by one Fetch. Default 64.
	Count int64
	// DeadLetter is the stream undecodable entries are moved to.
	DeadLetter string
	// Archives maps event store shards among Streams to their archive
	// state hashes: a group created on one after it was trimmed starts at
	// the archive watermark (EnsureGroupAtWatermark) instead of at 0.
	Archives map[string]string
	Logger   *slog.Logger
}

// Defaults for ReaderOptions.
const (
	DefaultBlock = 2 * time.Second
	MaxBlock     = 5 * time.Second
	DefaultCount = 64
)

// Reader reads streams through a consumer group. It first re-delivers the
// consumer's own pending entries (those it read before a crash but never
// acknowledged), then new ones. Entries that do not decode are moved to the
// dead-letter stream with the reason and acknowledged; the reader goes on.
//
// A Reader is not safe for concurrent Fetch calls; Ack may be called from
// any goroutine.
type Reader struct {
	rdb     redis.UniversalClient
	opts    ReaderOptions
	created bool
	// pending holds, per stream, the cursor into the consumer's own PEL, or
	// "" once the PEL has been drained and new entries are read with ">".
	pending map[string]string
}

// NewReader returns a reader; the group is created on the first Fetch.
func NewReader(rdb redis.UniversalClient, opts ReaderOptions) (*Reader, error) {
	if len(opts.Streams) == 0 || opts.Group == "" || opts.Consumer == "" || opts.DeadLetter == "" {
		return nil, errors.New("streams: reader needs streams, group, consumer and dead-letter stream")
	}
	if opts.Block <= 0 {
		opts.Block = DefaultBlock
	}
	if opts.Block > MaxBlock {
		opts.Block = MaxBlock
	}
	if opts.Count <= 0 {
		opts.Count = DefaultCount
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Reader{rdb: rdb, opts: opts, pending: map[string]string{}}
	for _, s := range opts.Streams {
		r.pending[s] = "0-0"
	}
	return r, nil
}

// EnsureGroup creates group on stream (and the stream) if missing, starting
// at the beginning of the stream so no entry appended earlier is skipped.
func EnsureGroup(ctx context.Context, rdb redis.UniversalClient, stream, group string) error {
	err := rdb.XGroupCreateMkStream(ctx, stream, group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create group %s on %s: %w", group, stream, err)
	}
	return nil
}

func (r *Reader) ensureGroups(ctx context.Context) error {
	if r.created {
		return nil
	}
	for _, s := range r.opts.Streams {
		var err error
		if archive, ok := r.opts.Archives[s]; ok {
			err = EnsureGroupAtWatermark(ctx, r.rdb, s, archive, r.opts.Group)
		} else {
			err = EnsureGroup(ctx, r.rdb, s, r.opts.Group)
		}
		if err != nil {
			return err
		}
	}
	r.created = true
	return nil
}

// Fetch returns up to max (≤ Count; Count if max <= 0) entries per
// stream: the consumer's pending entries first, then new ones, waiting at
// most Block for new entries. It returns an empty slice, not an error,
// when none came.
func (r *Reader) Fetch(ctx context.Context, max int64) ([]Message, error) {
	return r.FetchFrom(ctx, max, nil, r.opts.Block)
}

// FetchFrom is Fetch over only some of the reader's streams (all if only
// is empty), waiting at most block (at most the reader's Block) for new
// entries, and not at all if block <= 0.
func (r *Reader) FetchFrom(ctx context.Context, max int64, only []string, block time.Duration) ([]Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := r.ensureGroups(ctx); err != nil {
		return nil, err
	}
	count := r.opts.Count
	if max > 0 && max < count {
		count = max
	}
	if block > r.opts.Block {
		block = r.opts.Block
	}
	if block <= 0 {
		block = -1 // go-redis: no BLOCK argument (0 would block forever)
	}
	from := r.opts.Streams
	if len(only) > 0 {
		from = only
	}
	var streams, ids []string
	for _, s := range from {
		if c := r.pending[s]; c != "" {
			streams, ids = append(streams, s), append(ids, c)
		}
	}
	if len(streams) > 0 {
		// Re-deliver this consumer's own pending entries (read before a
		// crash, never acknowledged). History reads never block.
		res, err := r.read(ctx, streams, ids, count, -1)
		if err != nil {
			return nil, err
		}
		got := map[string]int{}
		for _, st := range res {
			got[st.Stream] = len(st.Messages)
			if n := len(st.Messages); n > 0 {
				r.pending[st.Stream] = st.Messages[n-1].ID
			}
		}
		for _, s := range streams {
			if int64(got[s]) < count {
				r.pending[s] = "" // drained
			}
		}
		if out := r.decode(ctx, res); len(out) > 0 {
			return out, nil
		}
		for _, s := range streams {
			if r.pending[s] != "" {
				return nil, nil // more history to read next time
			}
		}
	}
	streams, ids = append(streams[:0], from...), ids[:0]
	for range streams {
		ids = append(ids, ">")
	}
	res, err := r.read(ctx, streams, ids, count, block)
	if err != nil {
		return nil, err
	}
	return r.decode(ctx, res), nil
}

func (r *Reader) read(ctx context.Context, streams, ids []string, count int64, block time.Duration) ([]redis.XStream, error) {
	res, err := r.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group:    r.opts.Group,
		Consumer: r.opts.Consumer,
		Streams:  append(append([]string(nil), streams...), ids...),
		Count:    count,
		Block:    block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		if strings.HasPrefix(err.Error(), "NOGROUP") {
			// The stream or group was deleted under us; recreate next time.
			r.created = false
		}
		return nil, fmt.Errorf("read %s as %s/%s: %w", strings.Join(streams, ","), r.opts.Group, r.opts.Consumer, err)
	}
	return res, nil
}

// decode turns entries into messages, dead-lettering those that cannot be
// processed: deleted while pending, or not decodable.
func (r *Reader) decode(ctx context.Context, res []redis.XStream) []Message {
	n := 0
	for _, st := range res {
		n += len(st.Messages)
	}
	if n == 0 {
		return nil
	}
	out := make([]Message, 0, n)
	for _, st := range res {
		for _, m := range st.Messages {
			if m.Values == nil {
				r.deadLetter(ctx, st.Stream, m, reasonDeleted)
				continue
			}
			env, err := events.Decode(m.Values)
			if err != nil {
				r.deadLetter(ctx, st.Stream, m, err.Error())
				continue
			}
			out = append(out, Message{Stream: st.Stream, ID: m.ID, Envelope: env})
		}
	}
	return out
}

// reasonDeleted is the dead-letter reason of an entry trimmed while pending.
const reasonDeleted = "entry deleted from the stream while pending (trimmed before it was processed)"

// Ack acknowledges processed entries of one stream.
func (r *Reader) Ack(ctx context.Context, stream string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := r.rdb.XAck(ctx, stream, r.opts.Group, ids...).Err(); err != nil {
		return fmt.Errorf("ack %d entries of %s: %w", len(ids), stream, err)
	}
	return nil
}

// AckAll acknowledges processed entries of several streams (by stream) in
// one round trip per node.
func (r *Reader) AckAll(ctx context.Context, ids map[string][]string) error {
	cmds := make(map[string]*redis.IntCmd, len(ids))
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for s, list := range ids {
			if len(list) > 0 {
				cmds[s] = p.XAck(ctx, s, r.opts.Group, list...)
			}
		}
		return nil
	})
	if err != nil {
		var errs []error
		for s, c := range cmds {
			if c.Err() != nil {
				errs = append(errs, fmt.Errorf("ack %d entries of %s: %w", len(ids[s]), s, c.Err()))
			}
		}
		if len(errs) == 0 {
			errs = append(errs, fmt.Errorf("ack: %w", err))
		}
		return errors.Join(errs...)
	}
	return nil
}

// deadLetter moves an entry that cannot be processed to the dead-letter
// stream, then acknowledges it. The append comes first: a crash in between
// yields a duplicate dead letter, never a lost entry.
func (r *Reader) deadLetter(ctx context.Context, stream string, m redis.XMessage, reason string) {
	err := DeadLetter(ctx, r.rdb, r.opts.DeadLetter, DeadEntry{
		Stream: stream, EntryID: m.ID, Group: r.opts.Group, Consumer: r.opts.Consumer,
		Reason: reason, Fields: m.Values,
	})
	if err != nil {
		// Leave it pending: it is re-read (and re-tried) after a restart.
		r.opts.Logger.Error("dead-letter failed; entry left pending", "stream", stream, "entry", m.ID, "err", err)
		return
	}
	r.opts.Logger.Warn("entry dead-lettered", "stream", stream, "entry", m.ID, "reason", reason)
	if err := r.Ack(ctx, stream, m.ID); err != nil {
		r.opts.Logger.Error("ack of dead-lettered entry failed", "stream", stream, "entry", m.ID, "err", err)
	}
}

// Rewind makes the next Fetch re-read the consumer's own pending entries,
// for a caller that failed to process what it fetched.
func (r *Reader) Rewind() {
	for _, s := range r.opts.Streams {
		r.pending[s] = "0-0"
	}
}

// Adopt takes over, whatever their idle time, the pending entries of the
// group's other consumers for which earlier returns true: earlier runs of
// this consumer (a process restarted after a crash, with a new consumer
// name), whose entries would otherwise wait for Reclaim's idle bound. It
// returns at most max entries (Count if max <= 0), decoded; call it until
// it returns none.
func (r *Reader) Adopt(ctx context.Context, earlier func(consumer string) bool, max int64) ([]Message, error) {
	max, err := r.claimBound(ctx, max)
	if err != nil {
		return nil, err
	}
	var out []Message
	for _, s := range r.opts.Streams {
		sum, err := r.rdb.XPending(ctx, s, r.opts.Group).Result()
		if err != nil {
			return out, fmt.Errorf("pending summary of %s: %w", s, err)
		}
		for consumer := range sum.Consumers {
			if consumer == r.opts.Consumer || !earlier(consumer) || int64(len(out)) >= max {
				continue
			}
			pend, err := r.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
				Stream: s, Group: r.opts.Group, Consumer: consumer, Start: "-", End: "+", Count: max - int64(len(out)),
			}).Result()
			if err != nil {
				return out, fmt.Errorf("pending entries of %s in %s: %w", consumer, s, err)
			}
			if len(pend) == 0 {
				continue
			}
			ids := make([]string, len(pend))
			for i, p := range pend {
				ids[i] = p.ID
			}
			msgs, err := r.rdb.XClaim(ctx, &redis.XClaimArgs{
				Stream: s, Group: r.opts.Group, Consumer: r.opts.Consumer, Messages: ids,
			}).Result()
			if err != nil {
				return out, fmt.Errorf("adopt %d entries of %s in %s: %w", len(ids), consumer, s, err)
			}
			// Entries trimmed while pending are dropped from the list by
			// XCLAIM and not returned.
			got := make(map[string]bool, len(msgs))
			for _, m := range msgs {
				got[m.ID] = true
			}
			for _, id := range ids {
				if !got[id] {
					r.deadLetter(ctx, s, redis.XMessage{ID: id}, reasonDeleted)
				}
			}
			out = append(out, r.decode(ctx, []redis.XStream{{Stream: s, Messages: msgs}})...)
		}
	}
	return out, nil
}

// claimBound makes sure the groups exist and returns how many entries a
// claim may take at most: max, or Count if max <= 0.
func (r *Reader) claimBound(ctx context.Context, max int64) (int64, error) {
	if err := r.ensureGroups(ctx); err != nil {
		return 0, err
	}
	if max <= 0 {
		max = r.opts.Count
	}
	return max, nil
}

// Reclaim takes over entries that other consumers of the group read but
// did not acknowledge within minIdle (their process died or hung), with
// XAUTOCLAIM, and returns them decoded. Entries that were trimmed while
// pending are dead-lettered by ID and acknowledged; undecodable ones too.
// Claiming resets an entry's idle time, so two reclaimers never both get
// the same entry.
func (r *Reader) Reclaim(ctx context.Context, minIdle time.Duration, max int64) ([]Message, error) {
	max, err := r.claimBound(ctx, max)
	if err != nil {
		return nil, err
	}
	var out []Message
	for _, s := range r.opts.Streams {
		start := "0-0"
		for int64(len(out)) < max {
			msgs, next, deleted, err := r.rdb.XAutoClaimWithDeleted(ctx, &redis.XAutoClaimArgs{
				Stream: s, Group: r.opts.Group, Consumer: r.opts.Consumer,
				MinIdle: minIdle, Start: start, Count: max - int64(len(out)),
			}).Result()
			if err != nil {
				return out, fmt.Errorf("reclaim %s: %w", s, err)
			}
			for _, id := range deleted {
				r.deadLetter(ctx, s, redis.XMessage{ID: id}, reasonDeleted)
			}
			out = append(out, r.decode(ctx, []redis.XStream{{Stream: s, Messages: msgs}})...)
			if next == "0-0" || next == "" {
				break
			}
			start = next
		}
	}
	return out, nil
}
