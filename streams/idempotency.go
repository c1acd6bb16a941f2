package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultIdempotencyWindow is how long an idempotency key is remembered.
const DefaultIdempotencyWindow = 24 * time.Hour

// reservedMark is the value of a key whose submission is in progress.
const reservedMark = "reserved"

// Reserve claims an idempotency key for a submission about to be made. It
// returns nil when the key is new (the caller submits, then calls
// Remember, or Forget if the submission failed), or the task ids of the
// earlier submission with this key. A key reserved by a submission still in
// progress is waited for, up to 5 s.
func (l *Log) Reserve(ctx context.Context, key string) ([]string, error) {
	k := l.keys.Idempotency(key)
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, err := l.rdb.SetNX(ctx, k, reservedMark, DefaultIdempotencyWindow).Result()
		if err != nil {
			return nil, fmt.Errorf("reserve idempotency key: %w", err)
		}
		if ok {
			return nil, nil
		}
		v, err := l.rdb.Get(ctx, k).Result()
		if errors.Is(err, redis.Nil) {
			continue // expired just now
		}
		if err != nil {
			return nil, fmt.Errorf("read idempotency key: %w", err)
		}
		if v != reservedMark {
			return strings.Split(v, ","), nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("idempotency key %q: another submission with it is still in progress (or died; the key is released after %s)", key, DefaultIdempotencyWindow)
		}
		Sleep(ctx, 100*time.Millisecond)
	}
}

// Remember records the task ids submitted under a reserved key.
func (l *Log) Remember(ctx context.Context, key string, ids []string) error {
	if err := l.rdb.Set(ctx, l.keys.Idempotency(key), strings.Join(ids, ","), DefaultIdempotencyWindow).Err(); err != nil {
		return fmt.Errorf("remember idempotency key: %w", err)
	}
	return nil
}

// Forget releases a reserved key whose submission failed.
func (l *Log) Forget(ctx context.Context, key string) error {
	return l.rdb.Del(ctx, l.keys.Idempotency(key)).Err()
}
