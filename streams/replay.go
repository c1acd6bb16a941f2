package streams

import (
	"context"
	"fmt"

	"github.com/celeroot/celeroot/events"
	"github.com/redis/go-redis/v9"
)

// Entry is a raw stream entry as replayed: decoded when it decodes, with
// the decode error otherwise, so audit tooling sees everything.
type Entry struct {
	Stream   string
	ID       string
	Envelope events.Envelope
	Err      error
	// Fields are the raw entry fields (set by Lookup).
	Fields map[string]any
}

// DefaultPage is the XRANGE page size of Replay.
const DefaultPage = 500

// Replay calls fn for every entry of stream with from <= id <= to, in
// order, reading XRANGE pages of page entries ("-" and "+" are the ends).
// It stops at the first error fn returns.
func Replay(ctx context.Context, rdb redis.UniversalClient, stream, from, to string, page int64, fn func(Entry) error) error {
	if page <= 0 {
		page = DefaultPage
	}
	start := from
	for {
		msgs, err := rdb.XRangeN(ctx, stream, start, to, page).Result()
		if err != nil {
			return fmt.Errorf("replay %s from %s: %w", stream, start, err)
		}
		for _, m := range msgs {
			e := Entry{Stream: stream, ID: m.ID}
			e.Envelope, e.Err = events.Decode(m.Values)
			if err := fn(e); err != nil {
				return err
			}
		}
		if int64(len(msgs)) < page {
			return nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

// After returns up to n entries of stream that come after the entry ID
// after ("" or "-" for the beginning), decoded like Replay's.
func After(ctx context.Context, rdb redis.UniversalClient, stream, after string, n int64) ([]Entry, error) {
	start := "-"
	if after != "" && after != "-" {
		start = "(" + after
	}
	msgs, err := rdb.XRangeN(ctx, stream, start, "+", n).Result()
	if err != nil {
		return nil, fmt.Errorf("read %s after %s: %w", stream, after, err)
	}
	out := make([]Entry, len(msgs))
	for i, m := range msgs {
		out[i] = Entry{Stream: stream, ID: m.ID}
		out[i].Envelope, out[i].Err = events.Decode(m.Values)
	}
	return out, nil
}

// Lookup returns the entry id of stream; ok is false if it is not there
// (never written, or trimmed).
func Lookup(ctx context.Context, rdb redis.UniversalClient, stream, id string) (e Entry, ok bool, err error) {
	msgs, err := rdb.XRangeN(ctx, stream, id, id, 1).Result()
	if err != nil {
		return Entry{}, false, fmt.Errorf("read %s entry %s: %w", stream, id, err)
	}
	if len(msgs) == 0 {
		return Entry{}, false, nil
	}
	e = Entry{Stream: stream, ID: id, Fields: msgs[0].Values}
	e.Envelope, e.Err = events.Decode(msgs[0].Values)
	return e, true, nil
}

// Last returns up to n of the newest entries of stream that are at or
// after from ("-" for no bound), oldest first.
func Last(ctx context.Context, rdb redis.UniversalClient, stream string, n int64, from string) ([]Entry, error) {
	msgs, err := rdb.XRevRangeN(ctx, stream, "+", from, n).Result()
	if err != nil {
		return nil, fmt.Errorf("read the end of %s: %w", stream, err)
	}
	out := make([]Entry, len(msgs))
	for i, m := range msgs {
		e := Entry{Stream: stream, ID: m.ID}
		e.Envelope, e.Err = events.Decode(m.Values)
		out[len(msgs)-1-i] = e
	}
	return out, nil
}
