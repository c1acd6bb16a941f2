package streams_test

import (
	"context"
	"testing"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/streams"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
)

// flushScripts empties the script cache of every master, as a restart or a
// failover would.
func flushScripts(t *testing.T, ctx context.Context, rdb redis.UniversalClient) {
	t.Helper()
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestBatchesMatchSingleCalls runs a whole cycle of many tasks through the
// batch calls, with the script cache flushed before each, and checks every
// item gets the answer the single call gives.
func TestBatchesMatchSingleCalls(t *testing.T) {
	each(t, func(t *testing.T, rdb redis.UniversalClient, keys streams.Keys) {
		ctx := context.Background()
		log := streams.NewLog(rdb, keys)
		const n = 50
		var subs []events.Envelope
		for range n {
			subs = append(subs, submitted(ulid.Make().String(), "web1"))
		}
		// A bad item fails alone.
		subs = append(subs, src.New(events.TaskStarted{TaskID: "x", Worker: "web1"}))

		flushScripts(t, ctx, rdb)
		ids, errs := log.SubmitBatch(ctx, subs)
		for i := range n {
			if errs[i] != nil || ids[i] == "" {
				t.Fatalf("SubmitBatch item %d = %q, %v; want an entry id", i, ids[i], errs[i])
			}
		}
		if errs[n] == nil {
			t.Errorf("SubmitBatch of a started event: no error")
		}
		if got, err := rdb.XLen(ctx, keys.WorkerDispatch("web1")).Result(); err != nil || got != n {
			t.Errorf("dispatch stream length = %d, %v; want %d", got, err, n)
		}
		// Submitting again appends nothing to the event store: the fence
		// remembers the first submission.
		before := eventCount(t, ctx, rdb, keys)
		if _, errs := log.SubmitBatch(ctx, subs[:n]); errs[0] != nil {
			t.Fatal(errs[0])
		}
		if after := eventCount(t, ctx, rdb, keys); after != before {
			t.Errorf("event store grew from %d to %d on a repeated submission", before, after)
		}

		var starts []streams.StartCall
		for i := range n {
			sub := subs[i].Payload.(events.TaskSubmitted)
			starts = append(starts, streams.StartCall{
				Event: src.New(events.TaskStarted{TaskID: sub.TaskID, Worker: "web1"}), Entry: "d/" + ids[i]})
		}
		starts = append(starts, streams.StartCall{Event: src.New(events.TaskStarted{TaskID: ulid.Make().String(), Worker: "web1"}), Entry: "d/1-1"})
		flushScripts(t, ctx, rdb)
		res, errs := log.StartBatch(ctx, starts)
		for i := range n {
			if errs[i] != nil || res[i].Attempt != 1 {
				t.Fatalf("StartBatch item %d = %+v, %v; want attempt 1", i, res[i], errs[i])
			}
		}
		if errs[n] == nil {
			t.Errorf("StartBatch of an unknown task: no error")
		}
		// The same calls again (a retry after a lost reply) return the same attempts.
		res, errs = log.StartBatch(ctx, starts[:n])
		for i := range n {
			if errs[i] != nil || res[i].Attempt != 1 {
				t.Fatalf("repeated StartBatch item %d = %+v, %v; want attempt 1", i, res[i], errs[i])
			}
		}

		var fins []events.Envelope
		for i := range n {
			sub := subs[i].Payload.(events.TaskSubmitted)
			attempt := int64(1)
			if i%2 == 1 {
				attempt = 7 // not the current attempt: recorded as stale
			}
			fins = append(fins, src.New(events.TaskFinished{TaskID: sub.TaskID, Attempt: attempt, Worker: "web1", Outcome: events.Succeeded}))
		}
		flushScripts(t, ctx, rdb)
		stale, errs := log.FinishBatch(ctx, fins)
		for i := range n {
			if errs[i] != nil || stale[i] != (i%2 == 1) {
				t.Fatalf("FinishBatch item %d = stale %v, %v; want stale %v", i, stale[i], errs[i], i%2 == 1)
			}
		}
		// Each single call agrees with its batch.
		for i := range 4 {
			st, err := log.Finish(ctx, fins[i])
			if err != nil || st != stale[i] {
				t.Errorf("Finish item %d = %v, %v; want %v", i, st, err, stale[i])
			}
		}
	})
}

func eventCount(t *testing.T, ctx context.Context, rdb redis.UniversalClient, keys streams.Keys) int64 {
	t.Helper()
	var n int64
	for _, s := range keys.EventShards() {
		l, err := rdb.XLen(ctx, s).Result()
		if err != nil {
			t.Fatal(err)
		}
		n += l
	}
	return n
}
