package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lease is a short-lived exclusive claim on a key (SET NX PX), so that one
// process at a time runs some job (a retention pass, an archive run) with
// no leader: whoever takes the lease runs it, and a holder that dies loses
// it when the TTL runs out. A lease is not a lock for correctness: every
// step the holder takes must be safe if a second holder overlapped (a
// paused holder can outlive its TTL); it only keeps the work from being
// done twice at once.
type Lease struct {
	rdb   redis.UniversalClient
	key   string
	owner string
	ttl   time.Duration
}

// NewLease returns a lease on key for owner (unique per process).
func NewLease(rdb redis.UniversalClient, key, owner string, ttl time.Duration) *Lease {
	return &Lease{rdb: rdb, key: key, owner: owner, ttl: ttl}
}

// ErrLeaseHeld is returned by Acquire when someone else holds the lease.
var ErrLeaseHeld = errors.New("streams: lease held by another process")

// Acquire takes the lease, or fails with ErrLeaseHeld (wrapped, naming
// the holder) if another owner has it. Taking a lease this owner already
// holds renews it.
func (l *Lease) Acquire(ctx context.Context) error {
	ok, err := l.rdb.SetNX(ctx, l.key, l.owner, l.ttl).Result()
	if err != nil {
		return fmt.Errorf("take lease %s: %w", l.key, err)
	}
	if ok {
		return nil
	}
	if renewed, err := l.Renew(ctx); err != nil || renewed {
		return err
	}
	holder, _ := l.rdb.Get(ctx, l.key).Result()
	return fmt.Errorf("held by %s: %w", holder, ErrLeaseHeld)
}

var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// Renew extends the lease by its TTL if this owner still holds it, and
// reports whether it does.
func (l *Lease) Renew(ctx context.Context) (bool, error) {
	n, err := renewScript.Run(ctx, l.rdb, []string{l.key}, l.owner, l.ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("renew lease %s: %w", l.key, err)
	}
	return n == 1, nil
}

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Release gives the lease up if this owner holds it.
func (l *Lease) Release(ctx context.Context) error {
	if err := releaseScript.Run(ctx, l.rdb, []string{l.key}, l.owner).Err(); err != nil {
		return fmt.Errorf("release lease %s: %w", l.key, err)
	}
	return nil
}

// Hold runs f while holding the lease, renewing it every TTL/3; f's
// context is cancelled if the lease is lost. It fails with ErrLeaseHeld
// without running f if someone else holds it.
func (l *Lease) Hold(ctx context.Context, f func(ctx context.Context) error) error {
	if err := l.Acquire(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(l.ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if ok, err := l.Renew(ctx); err == nil && !ok {
					cancel(fmt.Errorf("lease %s lost: %w", l.key, ErrLeaseHeld))
					return
				}
			}
		}
	}()
	err := f(ctx)
	cancel(nil)
	<-done
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer rcancel()
	if rerr := l.Release(rctx); err == nil {
		err = rerr
	}
	return err
}
