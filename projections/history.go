package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/celeroot/celeroot/streams"
	"github.com/redis/go-redis/v9"
)

// ErrTrimmed is returned when a fold needs events that were trimmed from
// Redis and no archive was given to read them from.
var ErrTrimmed = errors.New("projections: the history was trimmed")

// History reads what the folds (rebuild, verify, as-of) are made of: for
// every event store shard, the archive (when the shard was trimmed)
// followed by the entries still in Redis after it; and the heartbeat
// streams, which are not archived.
type History struct {
	rdb     redis.UniversalClient
	keys    streams.Keys
	archive *streams.Archive
}

// NewHistory returns the history of the cluster named by keys; archive may
// be nil when nothing has been trimmed.
func NewHistory(rdb redis.UniversalClient, keys streams.Keys, archive *streams.Archive) *History {
	return &History{rdb: rdb, keys: keys, archive: archive}
}

// Events calls fn with every event of shard n with from <= entry ID <=
// until (XRANGE bounds: "-", "+", a bare millisecond time, an entry ID), in
// order: from the archive, for the part that was trimmed from Redis, then
// from Redis after the archive's last line. It fails with ErrTrimmed if
// the range reaches into the trimmed part and there is no archive, or the
// archive ends before what Redis still holds.
func (h *History) Events(ctx context.Context, n int, from, until string, fn func(streams.Entry) error) error {
	stream := h.keys.EventShard(n)
	st, err := streams.ReadArchiveState(ctx, h.rdb, h.keys, n)
	if err != nil {
		return err
	}
	if st.Trimmed != "" {
		first, err := streams.First(ctx, h.rdb, stream)
		if err != nil {
			return err
		}
		if first == "" || streams.StartsBefore(from, first) {
			if h.archive == nil {
				since := "none"
				if t, ok := streams.IDTime(first); ok && first != "" {
					since = t.UTC().Format(time.RFC3339)
				}
				return fmt.Errorf("event store shard %d keeps its events since %s only (older ones were trimmed, after they were archived to archive %s): give that archive with --archive DIR: %w",
					n, since, orDash(st.ArchiveID), ErrTrimmed)
			}
			last, err := h.archive.Last(n)
			if err != nil {
				return err
			}
			if first != "" && (last == "" || streams.CompareIDs(last, first) < 0) {
				return fmt.Errorf("archive %s holds shard %d up to %s, but Redis keeps it only from %s on: the events in between are missing (is this the archive the cluster was archived to, %s?): %w",
					h.archive.Dir(), n, orDash(last), first, orDash(st.ArchiveID), ErrTrimmed)
			}
			if err := h.archive.Entries(n, from, until, fn); err != nil {
				return err
			}
			if last == "" {
				return nil
			}
			from = "(" + last // after what the archive gave; XRANGE is empty if until is before it
		}
	}
	return streams.Replay(ctx, h.rdb, stream, from, until, 0, fn)
}

// Heartbeats calls fn with every heartbeat of shard n kept in Redis, up to
// until, in order.
func (h *History) Heartbeats(ctx context.Context, n int, until string, fn func(streams.Entry) error) error {
	return streams.Replay(ctx, h.rdb, h.keys.HeartbeatShard(n), "-", until, 0, fn)
}

// Fold folds every shard's events and heartbeats up to until into records.
func (h *History) Fold(ctx context.Context, until string) (Records, error) {
	recs := Records{}
	apply := func(e streams.Entry) error {
		if e.Err != nil {
			return nil // dead-lettered by the projector; not part of any view
		}
		for _, p := range Reduce(e.Envelope, e.ID) {
			recs.Apply(p)
		}
		return nil
	}
	for n := range h.keys.EventShards() {
		if err := h.Events(ctx, n, "-", until, apply); err != nil {
			return nil, err
		}
		if err := h.Heartbeats(ctx, n, until, apply); err != nil {
			return nil, err
		}
	}
	return recs, nil
}

// HeartbeatsTrimmed returns, per shard, the line below which its
// heartbeats were trimmed (absent if never): before it, a worker's liveness
// is known only from the event store's checkpoints.
func (h *History) HeartbeatsTrimmed(ctx context.Context) (map[int]time.Time, error) {
	out := map[int]time.Time{}
	for n := range h.keys.HeartbeatShards() {
		st, err := streams.ReadArchiveState(ctx, h.rdb, h.keys, n)
		if err != nil {
			return nil, err
		}
		if t, ok := streams.IDTime(st.HeartbeatsTrimmed); ok && st.HeartbeatsTrimmed != "" {
			out[n] = t
		}
	}
	return out, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
