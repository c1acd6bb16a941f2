package streams

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/celeroot/celeroot/events"
	"github.com/redis/go-redis/v9"
)

// Heartbeat records a worker's heartbeat e in its heartbeat stream (every
// heartbeat; short retention) and, with checkpoint, also in its event store
// shard (kept and archived like every event); in the same round trip it
// reads the current config revision (0 before any apply), so an agent that
// missed an announcement catches up within one interval. It returns the
// heartbeat stream's entry ID.
func (l *Log) Heartbeat(ctx context.Context, host string, e events.Envelope, checkpoint bool) (entry string, revision int64, err error) {
	fields, err := events.Encode(e)
	if err != nil {
		return "", 0, err
	}
	var add, cp, head *redis.StringCmd
	_, err = l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		add = p.XAdd(ctx, &redis.XAddArgs{Stream: l.keys.HeartbeatsFor(host), Values: fields})
		if checkpoint {
			cp = p.XAdd(ctx, &redis.XAddArgs{Stream: l.keys.EventsFor(host), Values: fields})
		}
		head = p.HGet(ctx, l.keys.ConfigHead(), "revision")
		return nil
	})
	if err := add.Err(); err != nil {
		return "", 0, fmt.Errorf("append %s to %s: %w", e.Type, l.keys.HeartbeatsFor(host), err)
	}
	if cp != nil && cp.Err() != nil {
		return add.Val(), 0, fmt.Errorf("append %s to %s: %w", e.Type, l.keys.EventsFor(host), cp.Err())
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return add.Val(), 0, fmt.Errorf("read config head: %w", err)
	}
	if v := head.Val(); v != "" {
		revision, _ = strconv.ParseInt(v, 10, 64)
	}
	return add.Val(), revision, nil
}
