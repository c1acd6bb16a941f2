package streams

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// extendScript resets the idle time of the entries ARGV[3..] of the group
// ARGV[1] that consumer ARGV[2] still owns, and returns those it no longer
// owns (another consumer reclaimed them). XCLAIM with JUSTID does not
// count a delivery.
var extendScript = redis.NewScript(`
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost+1] = ARGV[i]
  end
end
return lost
`)

// Extend tells the group that this consumer is still working on ids of
// stream, so they are not reclaimed: it resets their idle time. It returns
// the ids that another consumer has reclaimed meanwhile (this consumer was
// presumed dead); their results will be recorded as stale.
func (r *Reader) Extend(ctx context.Context, stream string, ids ...string) (lost []string, err error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(ids)+2)
	args = append(args, r.opts.Group, r.opts.Consumer)
	for _, id := range ids {
		args = append(args, id)
	}
	lost, err = extendScript.Run(ctx, r.rdb, []string{stream}, args...).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("extend claim on %d entries of %s: %w", len(ids), stream, err)
	}
	return lost, nil
}

// Pending is an entry another consumer read but has not acknowledged.
type Pending struct {
	Stream     string
	ID         string
	Consumer   string
	Idle       time.Duration
	Deliveries int64
}

// Stale lists up to max entries of stream pending on other consumers for
// longer than minIdle(consumer), with their delivery counts.
func (r *Reader) Stale(ctx context.Context, stream string, minIdle func(consumer string) time.Duration, max int64) ([]Pending, error) {
	if err := r.ensureGroups(ctx); err != nil {
		return nil, err
	}
	sum, err := r.rdb.XPending(ctx, stream, r.opts.Group).Result()
	if err != nil {
		return nil, fmt.Errorf("pending summary of %s: %w", stream, err)
	}
	var out []Pending
	for c := range sum.Consumers {
		if c == r.opts.Consumer || int64(len(out)) >= max {
			continue
		}
		ext, err := r.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: stream, Group: r.opts.Group, Idle: minIdle(c), Start: "-", End: "+",
			Count: max - int64(len(out)), Consumer: c,
		}).Result()
		if err != nil {
			return out, fmt.Errorf("pending entries of %s on %s: %w", c, stream, err)
		}
		for _, p := range ext {
			out = append(out, Pending{Stream: stream, ID: p.ID, Consumer: p.Consumer, Idle: p.Idle, Deliveries: p.RetryCount})
		}
	}
	return out, nil
}

// Claim takes over pending entries that are still idle for at least
// minIdle (the check makes racing claimers safe: the first resets the idle
// time, the second gets nothing) and returns them decoded. An entry that
// was trimmed while pending is dead-lettered and acknowledged.
func (r *Reader) Claim(ctx context.Context, stream string, minIdle time.Duration, ids ...string) ([]Message, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	msgs, err := r.rdb.XClaim(ctx, &redis.XClaimArgs{
		Stream: stream, Group: r.opts.Group, Consumer: r.opts.Consumer, MinIdle: minIdle, Messages: ids,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("claim %d entries of %s: %w", len(ids), stream, err)
	}
	got := map[string]bool{}
	for _, m := range msgs {
		got[m.ID] = true
	}
	for _, id := range ids {
		if got[id] {
			continue
		}
		// Not claimed: taken by another consumer, acknowledged meanwhile,
		// or its data was trimmed (XCLAIM then drops it from the list).
		if n, err := r.rdb.XRangeN(ctx, stream, id, id, 1).Result(); err == nil && len(n) == 0 {
			if p, err := r.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: r.opts.Group,
				Start: id, End: id, Count: 1}).Result(); err == nil && len(p) == 0 {
				r.deadLetter(ctx, stream, redis.XMessage{ID: id}, reasonDeleted)
			}
		}
	}
	return r.decode(ctx, []redis.XStream{{Stream: stream, Messages: msgs}}), nil
}
