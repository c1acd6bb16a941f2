package streams

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/celeroot/celeroot/events"
	"github.com/redis/go-redis/v9"
)

// applyConfigScript appends a config revision if the current revision is
// ARGV[1] and the content hash differs from the current one. ARGV[2] is the
// new hash, then the envelope fields. It returns {new revision, entry id},
// {0, current} when unchanged, or {-1, current} on a revision conflict.
var applyConfigScript = redis.NewScript(`
local rev = tonumber(redis.call('HGET', KEYS[2], 'revision') or '0')
if rev ~= tonumber(ARGV[1]) then return {-1, tostring(rev)} end
if redis.call('HGET', KEYS[2], 'hash') == ARGV[2] then return {0, tostring(rev)} end
local f = {}
for i = 3, #ARGV do f[#f+1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], '*', unpack(f))
redis.call('HSET', KEYS[2], 'revision', rev + 1, 'hash', ARGV[2], 'entry', id)
return {rev + 1, id}
`)

// ErrConflict is returned when the config revision moved under an apply
// that expected another.
var ErrConflict = errors.New("streams: config revision conflict")

// ConflictError says which revision an apply expected and which it found.
type ConflictError struct{ Expected, Current int64 }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("config is at revision %d, not %d: someone applied in between (review with 'celeroot config diff', then apply again)", e.Current, e.Expected)
}

// Unwrap matches ErrConflict.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// ApplyResult is the outcome of ApplyConfig.
type ApplyResult struct {
	// Revision is the new revision, or the current one when Unchanged.
	Revision  int64
	Unchanged bool
}

// ApplyConfig appends e (a config.applied.v1 whose Revision is the
// expected current revision + 1) atomically: it fails with a
// *ConflictError if the current revision is not Revision-1, and appends
// nothing when the content hash equals the current revision's.
func (l *Log) ApplyConfig(ctx context.Context, e events.Envelope) (ApplyResult, error) {
	p, ok := e.Payload.(events.ConfigApplied)
	if !ok {
		return ApplyResult{}, fmt.Errorf("apply config: payload is %T, want events.ConfigApplied", e.Payload)
	}
	fields, err := events.Encode(e)
	if err != nil {
		return ApplyResult{}, err
	}
	keys := []string{l.keys.ConfigStream(), l.keys.ConfigHead()}
	res, err := applyConfigScript.Run(ctx, l.rdb, keys, append([]any{p.Revision - 1, p.Hash}, fields...)...).Slice()
	if err != nil {
		return ApplyResult{}, fmt.Errorf("apply config revision %d: %w", p.Revision, err)
	}
	code, _ := res[0].(int64)
	detail, _ := res[1].(string)
	switch {
	case code < 0:
		cur, _ := strconv.ParseInt(detail, 10, 64)
		return ApplyResult{}, &ConflictError{Expected: p.Revision - 1, Current: cur}
	case code == 0:
		cur, _ := strconv.ParseInt(detail, 10, 64)
		return ApplyResult{Revision: cur, Unchanged: true}, nil
	}
	return ApplyResult{Revision: code}, nil
}

// ConfigHead returns the current config revision (0 before any apply) and
// its content hash.
func (l *Log) ConfigHead(ctx context.Context) (revision int64, hash string, err error) {
	m, err := l.rdb.HGetAll(ctx, l.keys.ConfigHead()).Result()
	if err != nil {
		return 0, "", fmt.Errorf("read config head: %w", err)
	}
	if m["revision"] == "" {
		return 0, "", nil
	}
	revision, err = strconv.ParseInt(m["revision"], 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("config head: revision %q is not a number", m["revision"])
	}
	return revision, m["hash"], nil
}

// ConfigRevision is one applied revision with its envelope.
type ConfigRevision struct {
	// EntryID is the config stream entry.
	EntryID  string
	Envelope events.Envelope
	Applied  events.ConfigApplied
}

// ConfigHistory returns every applied revision, oldest first, reading the
// config stream up to the entry id until ("+" for all).
func (l *Log) ConfigHistory(ctx context.Context, until string) ([]ConfigRevision, error) {
	var out []ConfigRevision
	err := Replay(ctx, l.rdb, l.keys.ConfigStream(), "-", until, 0, func(e Entry) error {
		if e.Err != nil {
			return nil // a foreign entry; the decode error is in the dead letters of readers
		}
		if p, ok := e.Envelope.Payload.(events.ConfigApplied); ok {
			out = append(out, ConfigRevision{EntryID: e.ID, Envelope: e.Envelope, Applied: p})
		}
		return nil
	})
	return out, err
}

// ConfigAt returns revision n (the current one if n is 0); ok is false if
// there is no such revision.
func (l *Log) ConfigAt(ctx context.Context, n int64) (ConfigRevision, bool, error) {
	if n == 0 {
		// The head names the current revision's entry: read just that.
		entry, err := l.rdb.HGet(ctx, l.keys.ConfigHead(), "entry").Result()
		if errors.Is(err, redis.Nil) {
			return ConfigRevision{}, false, nil
		}
		if err != nil {
			return ConfigRevision{}, false, fmt.Errorf("read config head: %w", err)
		}
		e, ok, err := Lookup(ctx, l.rdb, l.keys.ConfigStream(), entry)
		if err != nil || !ok {
			return ConfigRevision{}, false, err
		}
		p, isConfig := e.Envelope.Payload.(events.ConfigApplied)
		if e.Err != nil || !isConfig {
			return ConfigRevision{}, false, fmt.Errorf("config head names entry %s, which is not a config revision", entry)
		}
		return ConfigRevision{EntryID: entry, Envelope: e.Envelope, Applied: p}, true, nil
	}
	hist, err := l.ConfigHistory(ctx, "+")
	if err != nil {
		return ConfigRevision{}, false, err
	}
	for _, r := range hist {
		if r.Applied.Revision == n {
			return r, true, nil
		}
	}
	return ConfigRevision{}, false, nil
}

// WatchConfig calls fn with every config revision appended after the
// entry id after ("$" for only new ones, "0" for all), until ctx is done.
// Every watcher sees every revision: this is a plain XREAD, not a group.
// Redis errors are passed to onError and retried with backoff.
func (l *Log) WatchConfig(ctx context.Context, after string, onError func(error), fn func(ConfigRevision)) {
	last := after
	if last == "$" {
		// Resolve "$" once so nothing appended between calls is missed.
		last = "0"
		if msgs, err := l.rdb.XRevRangeN(ctx, l.keys.ConfigStream(), "+", "-", 1).Result(); err == nil && len(msgs) == 1 {
			last = msgs[0].ID
		}
	}
	var backoff Backoff
	for ctx.Err() == nil {
		res, err := l.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{l.keys.ConfigStream(), last}, Count: 16, Block: DefaultBlock}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			onError(fmt.Errorf("watch config: %w", err))
			Sleep(ctx, backoff.Next())
			continue
		}
		backoff.Reset()
		for _, st := range res {
			for _, m := range st.Messages {
				last = m.ID
				env, err := events.Decode(m.Values)
				if err != nil {
					continue
				}
				if p, ok := env.Payload.(events.ConfigApplied); ok {
					fn(ConfigRevision{EntryID: m.ID, Envelope: env, Applied: p})
				}
			}
		}
	}
}
