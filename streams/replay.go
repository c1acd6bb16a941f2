package streams

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

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
	// Fields are the raw entry fields (set by Lookup, and for an entry that
	// does not decode).
	Fields map[string]any
	// Line is the entry's JSON line as read from the archive (nil for an
	// entry read from Redis).
	Line []byte
}

// entryOf decodes one stream entry.
func entryOf(stream string, m redis.XMessage) Entry {
	e := Entry{Stream: stream, ID: m.ID}
	e.Envelope, e.Err = events.Decode(m.Values)
	if e.Err != nil {
		e.Fields = m.Values
	}
	return e
}

// parseEntryID splits a stream entry ID into its parts.
func parseEntryID(id string) (ms, seq uint64, ok bool) {
	m, sq, found := strings.Cut(id, "-")
	if !found {
		return 0, 0, false
	}
	var err1, err2 error
	ms, err1 = strconv.ParseUint(m, 10, 64)
	seq, err2 = strconv.ParseUint(sq, 10, 64)
	return ms, seq, err1 == nil && err2 == nil
}

// CompareIDs compares two stream entry IDs as numbers: -1 if a is before
// b, 0 if equal, +1 if after. "" sorts before every ID.
func CompareIDs(a, b string) int {
	am, as, aok := parseEntryID(a)
	bm, bs, bok := parseEntryID(b)
	switch {
	case !aok && !bok:
		return 0
	case !aok:
		return -1
	case !bok:
		return 1
	case am != bm:
		return cmpUint(am, bm)
	}
	return cmpUint(as, bs)
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// DefaultPage is the XRANGE page size of Replay.
const DefaultPage = 500

// Replay calls fn for every entry of stream with from <= id <= to, in
// order, reading XRANGE pages of page entries ("-" and "+" are the ends).
// The next page is read while fn works through the current one. It stops
// at the first error fn returns.
func Replay(ctx context.Context, rdb redis.UniversalClient, stream, from, to string, page int64, fn func(Entry) error) error {
	if page <= 0 {
		page = DefaultPage
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		msgs []redis.XMessage
		err  error
	}
	pages := make(chan result, 1)
	go func() {
		defer close(pages)
		start := from
		for {
			msgs, err := rdb.XRangeN(ctx, stream, start, to, page).Result()
			if err != nil {
				err = fmt.Errorf("replay %s from %s: %w", stream, start, err)
			}
			select {
			case pages <- result{msgs, err}:
			case <-ctx.Done():
				return
			}
			if err != nil || int64(len(msgs)) < page {
				return
			}
			start = "(" + msgs[len(msgs)-1].ID
		}
	}()
	for p := range pages {
		if p.err != nil {
			return p.err
		}
		for _, m := range p.msgs {
			if err := fn(entryOf(stream, m)); err != nil {
				return err
			}
		}
	}
	return nil
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
		out[i] = entryOf(stream, m)
	}
	return out, nil
}

// AfterEach is After for several streams, in one round trip per node:
// out[i] holds up to n entries of streams[i] after afters[i].
func AfterEach(ctx context.Context, rdb redis.UniversalClient, streams, afters []string, n int64) ([][]Entry, error) {
	cmds := make([]*redis.XMessageSliceCmd, len(streams))
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range streams {
			start := "-"
			if a := afters[i]; a != "" && a != "-" {
				start = "(" + a
			}
			cmds[i] = p.XRangeN(ctx, s, start, "+", n)
		}
		return nil
	})
	if err != nil {
		for i, c := range cmds {
			if c.Err() != nil {
				return nil, fmt.Errorf("read %s after %s: %w", streams[i], afters[i], c.Err())
			}
		}
		return nil, fmt.Errorf("read %d streams: %w", len(streams), err)
	}
	out := make([][]Entry, len(streams))
	for i, c := range cmds {
		msgs := c.Val()
		out[i] = make([]Entry, len(msgs))
		for j, m := range msgs {
			out[i][j] = entryOf(streams[i], m)
		}
	}
	return out, nil
}

// WaitAfter waits up to block for an entry of stream after the entry id
// after ("" for any), with a blocking XREAD, and returns as soon as one is
// there (nothing, not an error, if none came).
func WaitAfter(ctx context.Context, rdb redis.UniversalClient, stream, after string, block time.Duration) error {
	if after == "" {
		after = "0-0"
	}
	err := rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{stream, after}, Count: 1, Block: block}).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("wait for %s after %s: %w", stream, after, err)
	}
	return nil
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
		out[len(msgs)-1-i] = entryOf(stream, m)
	}
	return out, nil
}
