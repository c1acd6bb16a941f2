package streamstest_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/celeroot/celeroot/streams/streamstest"
)

// A cut proxy makes commands time out (nothing closed, nothing through); a
// dropped one fails them at once; healed, the same client gets through.
func TestProxyCutDropHeal(t *testing.T) {
	srv := streamstest.Single(t)
	p := streamstest.NewProxy(t, srv.Addr())
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond,
		DialTimeout: 300 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	ctx := context.Background()
	ping := func() (time.Duration, error) {
		start := time.Now()
		err := rdb.Ping(ctx).Err()
		return time.Since(start), err
	}
	if _, err := ping(); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}

	p.Cut()
	took, err := ping()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || took < 250*time.Millisecond {
		t.Fatalf("cut: PING = %v after %v; want a timeout after the read timeout", err, took)
	}
	p.Heal()
	if err := waitPing(ping); err != nil {
		t.Fatalf("healed after a cut: %v", err)
	}

	p.Drop()
	took, err = ping()
	if err == nil || took > 250*time.Millisecond {
		t.Fatalf("dropped: PING = %v after %v; want a fast failure", err, took)
	}
	p.Heal()
	if err := waitPing(ping); err != nil {
		t.Fatalf("healed after a drop: %v", err)
	}
}

// waitPing pings until it succeeds: the first command after a heal may
// still meet a connection closed by it.
func waitPing(ping func() (time.Duration, error)) error {
	var err error
	for range 5 {
		if _, err = ping(); err == nil {
			return nil
		}
	}
	return err
}
