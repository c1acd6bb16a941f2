package streams

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff yields growing delays for retrying a failed Redis call: 100ms
// doubling up to 5s, with ±20% jitter so a fleet that lost Redis together
// does not reconnect in lockstep. The zero value is ready to use.
type Backoff struct{ d time.Duration }

// Backoff bounds.
const (
	BackoffMin = 100 * time.Millisecond
	BackoffMax = 5 * time.Second
)

// Next returns the next delay.
func (b *Backoff) Next() time.Duration {
	switch {
	case b.d == 0:
		b.d = BackoffMin
	case b.d < BackoffMax:
		b.d = min(2*b.d, BackoffMax)
	}
	jitter := time.Duration(rand.Int64N(int64(b.d)/5*2+1)) - b.d/5
	return b.d + jitter
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.d = 0 }

// Sleep waits for d or until ctx is done.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
