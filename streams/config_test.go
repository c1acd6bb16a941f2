package streams_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/streams"
	"github.com/redis/go-redis/v9"
)

func configEvent(rev int64, doc string) events.Envelope {
	sum := sha256.Sum256([]byte(doc))
	return src.New(events.ConfigApplied{Revision: rev, Document: doc, Hash: hex.EncodeToString(sum[:])})
}

func TestApplyConfig(t *testing.T) {
	each(t, func(t *testing.T, rdb redis.UniversalClient, keys streams.Keys) {
		ctx := context.Background()
		log := streams.NewLog(rdb, keys)
		if rev, _, err := log.ConfigHead(ctx); err != nil || rev != 0 {
			t.Fatalf("head of a new cluster = %d, %v; want 0", rev, err)
		}
		if r, err := log.ApplyConfig(ctx, configEvent(1, `{"a":1}`)); err != nil || r.Revision != 1 || r.Unchanged {
			t.Fatalf("first apply = %+v, %v", r, err)
		}
		// The same content again: unchanged, nothing appended.
		if r, err := log.ApplyConfig(ctx, configEvent(2, `{"a":1}`)); err != nil || !r.Unchanged || r.Revision != 1 {
			t.Fatalf("identical apply = %+v, %v; want unchanged at 1", r, err)
		}
		// Expecting an old revision is a conflict.
		var ce *streams.ConflictError
		if _, err := log.ApplyConfig(ctx, configEvent(1, `{"a":2}`)); !errors.As(err, &ce) || ce.Current != 1 || !errors.Is(err, streams.ErrConflict) {
			t.Fatalf("stale apply error = %v, want a conflict at 1", err)
		}
		if r, err := log.ApplyConfig(ctx, configEvent(2, `{"a":2}`)); err != nil || r.Revision != 2 {
			t.Fatalf("second apply = %+v, %v", r, err)
		}
		hist, err := log.ConfigHistory(ctx, "+")
		if err != nil || len(hist) != 2 || hist[0].Applied.Revision != 1 || hist[1].Applied.Document != `{"a":2}` {
			t.Fatalf("history = %+v, %v", hist, err)
		}
		if r, ok, err := log.ConfigAt(ctx, 1); err != nil || !ok || r.Applied.Document != `{"a":1}` {
			t.Errorf("ConfigAt(1) = %+v, %v, %v", r, ok, err)
		}
		if _, ok, _ := log.ConfigAt(ctx, 9); ok {
			t.Error("ConfigAt(9) found a revision")
		}
	})
}

// Two appliers expecting the same revision: exactly one wins.
func TestApplyConfigConcurrent(t *testing.T) {
	each(t, func(t *testing.T, rdb redis.UniversalClient, keys streams.Keys) {
		ctx := context.Background()
		log := streams.NewLog(rdb, keys)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var wins, conflicts int
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := log.ApplyConfig(ctx, configEvent(1, fmt.Sprintf(`{"writer":%d}`, i)))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, streams.ErrConflict):
					conflicts++
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 || conflicts != 9 {
			t.Errorf("wins = %d, conflicts = %d; want 1 and 9", wins, conflicts)
		}
	})
}

// An applied revision is announced on the control stream of every worker
// in the index, and a heartbeat reads the head in the same round trip.
func TestApplyConfigAnnouncesAndHeartbeatReadsHead(t *testing.T) {
	each(t, func(t *testing.T, rdb redis.UniversalClient, keys streams.Keys) {
		ctx := context.Background()
		log := streams.NewLog(rdb, keys)
		hb := func() int64 {
			t.Helper()
			_, rev, err := log.Heartbeat(ctx, "web1", src.New(events.WorkerHeartbeat{Hostname: "web1", Seq: 1, HeartbeatMS: 1000}), true)
			if err != nil {
				t.Fatal(err)
			}
			return rev
		}
		if rev := hb(); rev != 0 {
			t.Errorf("heartbeat before any apply reads revision %d, want 0", rev)
		}
		if err := rdb.SAdd(ctx, keys.WorkerIndex(), "web1", "web2", "db1").Err(); err != nil {
			t.Fatal(err)
		}
		r, err := log.ApplyConfig(ctx, configEvent(1, `{"a":1}`))
		if err != nil || r.Announced != 3 || r.AnnounceErr != nil {
			t.Fatalf("apply = %+v, %v; want announced to 3 workers", r, err)
		}
		for _, h := range []string{"web1", "web2", "db1"} {
			msgs, err := rdb.XRange(ctx, keys.WorkerControl(h), "-", "+").Result()
			if err != nil || len(msgs) != 1 {
				t.Fatalf("control stream of %s = %v, %v; want one announcement", h, msgs, err)
			}
			e, err := events.Decode(msgs[0].Values)
			if p, ok := e.Payload.(events.ConfigAnnounced); err != nil || !ok || p.Revision != 1 {
				t.Errorf("announcement to %s = %+v, %v; want revision 1", h, e.Payload, err)
			}
		}
		// An unchanged apply announces nothing.
		if r, err := log.ApplyConfig(ctx, configEvent(2, `{"a":1}`)); err != nil || !r.Unchanged || r.Announced != 0 {
			t.Errorf("unchanged apply = %+v, %v; want no announcement", r, err)
		}
		if rev := hb(); rev != 1 {
			t.Errorf("heartbeat after the apply reads revision %d, want 1", rev)
		}
	})
}
