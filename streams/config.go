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
	// Announced is how many workers were told of the new revision through
	// their control streams; AnnounceErr why not all (they then notice it
	// with their next heartbeat).
	Announced   int
	AnnounceErr error
}

// ControlMaxLen caps a worker's control stream (approximately).
const ControlMaxLen = 1000

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
	res2 := ApplyResult{Revision: code}
	res2.Announced, res2.AnnounceErr = l.announce(ctx, code)
	return res2, nil
}

// announce tells every worker with a projection that revision rev was
// applied, one control stream entry each, in one pipeline. Agents follow
// the config this way rather than each holding a blocking read of the
// config stream, which would cost a connection per agent; an agent that
// misses the announcement sees the new head in its next heartbeat.
func (l *Log) announce(ctx context.Context, rev int64) (int, error) {
	hosts, err := l.rdb.SMembers(ctx, l.keys.WorkerIndex()).Result()
	if err != nil {
		return 0, fmt.Errorf("announce config revision %d: %w", rev, err)
	}
	if len(hosts) == 0 {
		return 0, nil
	}
	fields, err := events.Encode(events.Source{Cluster: l.keys.Cluster, Actor: "config"}.New(events.ConfigAnnounced{Revision: rev}))
	if err != nil {
		return 0, err
	}
	cmds := make([]*redis.StringCmd, len(hosts))
	_, _ = l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, h := range hosts {
			if ValidateName("hostname", h) != nil {
				continue
			}
			cmds[i] = p.XAdd(ctx, &redis.XAddArgs{Stream: l.keys.WorkerControl(h), Values: fields, MaxLen: ControlMaxLen, Approx: true})
		}
		return nil
	})
	n := 0
	var errs []error
	for i, c := range cmds {
		if c == nil {
			continue
		}
		if err := c.Err(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", hosts[i], err))
			continue
		}
		n++
	}
	if len(errs) > 0 {
		return n, fmt.Errorf("announce config revision %d to %d of %d workers failed: %w", rev, len(errs), len(hosts), errs[0])
	}
	return n, nil
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
