package streams_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) { os.Exit(streamstest.Main(m)) }

// each runs f against the shared single node and the shared cluster.
func each(t *testing.T, f func(t *testing.T, rdb redis.UniversalClient, keys streams.Keys)) {
	for _, srv := range streamstest.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			keys, err := streams.NewKeys(streamstest.ClusterName(t), 4)
			if err != nil {
				t.Fatal(err)
			}
			f(t, srv.Client(t), keys)
		})
	}
}

var src = events.Source{Cluster: "test", Actor: "test"}

func submitted(id, host string) events.Envelope {
	return src.New(events.TaskSubmitted{TaskID: id, Task: "command", Argv: []string{"true"},
		Route: events.RouteWorker, Target: host})
}

func TestAppendAndReplayPages(t *testing.T) {
	each(t, func(t *testing.T, rdb redis.UniversalClient, keys streams.Keys) {
		ctx := context.Background()
		log := streams.NewLog(rdb, keys)
		stream := keys.EventsFor("web1")
		var want []string
		for i := range 23 {
			e := src.New(events.WorkerHeartbeat{Hostname: "web1", Seq: int64(i + 1), HeartbeatMS: 1000})
			if _, err := log.Append(ctx, stream, e, 0); err != nil {
				t.Fatal(err)
			}
			want = append(want, e.ID.String())
		}
		// A foreign entry is replayed too, with its decode error.
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"foo", "bar"}}).Err(); err != nil {
			t.Fatal(err)
		}
		var got []string
		var bad int
		err := streams.Replay(ctx, rdb, stream, "-", "+", 5, func(e streams.Entry) error {
			if e.Err != nil {
				bad++
				return nil
			}
			got = append(got, e.Envelope.ID.String())
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("Replay ids = %v, want %v", got, want)
		}
		if bad != 1 {
			t.Errorf("Replay undecodable entries = %d, want 1", bad)
		}
	})
}

func newReader(t *testing.T, rdb redis.UniversalClient, keys streams.Keys, stream, consumer string) *streams.Reader {
	t.Helper()
	r, err := streams.NewReader(rdb, streams.ReaderOptions{
		Streams: []string{stream}, Group: streams.GroupAgents, Consumer: consumer,
		Block: 200 * time.Millisecond, DeadLetter: keys.DeadLetters(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func ids(msgs []streams.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.ID)
	}
	return out
}

func TestReaderRedeliversOwnPendingFirst(t *testing.T) {
	each(t, func(t *testing.T, rdb redis.UniversalClient, keys streams.Keys) {
		ctx := context.Background()
		log := streams.NewLog(rdb, keys)
		stream := keys.WorkerDispatch("web1")
		r := newReader(t, rdb, keys, stream, "web1")
		if msgs, err := r.Fetch(ctx, 0); err != nil || len(msgs) != 0 {
			t.Fatalf("Fetch on empty stream = %v, %v; want nothing", msgs, err)
		}
		for i := range 3 {
			if _, err := log.Append(ctx, stream, submitted(fmt.Sprint("t", i), "web1"), 0); err != nil {
				t.Fatal(err)
			}
		}
		first, err := r.Fetch(ctx, 2)
		if err != nil || len(first) != 2 {
			t.Fatalf("Fetch(2) = %d msgs, %v; want 2", len(first), err)
		}
		// The process "crashes" here: nothing acknowledged. A new reader
		// for the same consumer gets the two pending entries first.
		r2 := newReader(t, rdb, keys, stream, "web1")
		again, err := r2.Fetch(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(ids(again), ","), strings.Join(ids(first), ","); got != want {
			t.Fatalf("after restart Fetch = %s, want pending %s", got, want)
		}
		if err := r2.Ack(ctx, stream, ids(again)...); err != nil {
			t.Fatal(err)
		}
		rest, err := r2.Fetch(ctx, 0)
		if err != nil || len(rest) != 1 {
			t.Fatalf("Fetch after pending = %d msgs, %v; want the 1 new entry", len(rest), err)
		}
		if p := rdb.XPending(ctx, stream, streams.GroupAgents).Val(); p.Count != 1 {
			t.Errorf("pending = %d, want 1 (the unacknowledged new entry)", p.Count)
		}
	})
}

func TestReaderDeadLettersUndecodable(t *testing.T) {
	each(t, func(t *testing.T, rdb redis.UniversalClient, keys streams.Keys) {
		ctx := context.Background()
		stream := keys.WorkerDispatch("web1")
		r := newReader(t, rdb, keys, stream, "web1")
		if _, err := r.Fetch(ctx, 0); err != nil { // creates the group
			t.Fatal(err)
		}
		badID := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"type", "task.submitted.v7", "x", "y"}}).Val()
		if _, err := streams.NewLog(rdb, keys).Append(ctx, stream, submitted("good", "web1"), 0); err != nil {
			t.Fatal(err)
		}
		msgs, err := r.Fetch(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 1 || msgs[0].Envelope.Payload.(events.TaskSubmitted).TaskID != "good" {
			t.Fatalf("Fetch = %v, want only the good entry", msgs)
		}
		dead, err := streams.DeadLetters(ctx, rdb, keys.DeadLetters(), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) != 1 {
			t.Fatalf("dead letters = %d, want 1", len(dead))
		}
		d := dead[0]
		if d.EntryID != badID || d.Stream != stream || d.Fields["x"] != "y" || !strings.Contains(d.Reason, `field "id": missing`) {
			t.Errorf("dead letter = %+v, want entry %s of %s with its fields and the reason", d, badID, stream)
		}
		// The bad entry was acknowledged: only the good one is pending.
		if p := rdb.XPending(ctx, stream, streams.GroupAgents).Val(); p.Count != 1 {
			t.Errorf("pending = %d, want 1", p.Count)
		}
	})
}

func TestReaderHonoursCancellation(t *testing.T) {
	each(t, func(t *testing.T, rdb redis.UniversalClient, keys streams.Keys) {
		r, err := streams.NewReader(rdb, streams.ReaderOptions{
			Streams: []string{keys.WorkerDispatch("idle")}, Group: streams.GroupAgents, Consumer: "idle",
			Block: time.Second, DeadLetter: keys.DeadLetters(),
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			for {
				if _, err := r.Fetch(ctx, 0); err != nil {
					done <- err
					return
				}
			}
		}()
		time.Sleep(300 * time.Millisecond)
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("loop ended with %v, want context.Canceled", err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("reader loop did not stop within Block after cancellation")
		}
	})
}

func TestReclaimAndTrimmedWhilePending(t *testing.T) {
	each(t, func(t *testing.T, rdb redis.UniversalClient, keys streams.Keys) {
		ctx := context.Background()
		log := streams.NewLog(rdb, keys)
		stream := keys.RoleQueue("webserver")
		dead := newReader(t, rdb, keys, stream, "web1")
		if _, err := dead.Fetch(ctx, 0); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if _, err := log.Append(ctx, stream, submitted(fmt.Sprint("q", i), "webserver"), 0); err != nil {
				t.Fatal(err)
			}
		}
		taken, err := dead.Fetch(ctx, 0)
		if err != nil || len(taken) != 3 {
			t.Fatalf("Fetch = %d, %v; want 3", len(taken), err)
		}
		// web1 dies holding all three. One entry is trimmed away meanwhile.
		if err := rdb.XDel(ctx, stream, taken[0].ID).Err(); err != nil {
			t.Fatal(err)
		}
		live := newReader(t, rdb, keys, stream, "web2")
		if got, err := live.Reclaim(ctx, time.Hour, 0); err != nil || len(got) != 0 {
			t.Fatalf("Reclaim before the idle bound = %d, %v; want nothing", len(got), err)
		}
		time.Sleep(150 * time.Millisecond)
		got, err := live.Reclaim(ctx, 100*time.Millisecond, 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.Join(ids(taken[1:]), ","); strings.Join(ids(got), ",") != want {
			t.Errorf("Reclaim = %v, want %s", ids(got), want)
		}
		// A second reclaimer right after gets nothing: claiming reset the idle time.
		other := newReader(t, rdb, keys, stream, "web3")
		if again, _ := other.Reclaim(ctx, 100*time.Millisecond, 0); len(again) != 0 {
			t.Errorf("second Reclaim = %v, want nothing", ids(again))
		}
		wantTrimmedDeadLetter(t, rdb, keys, taken[0].ID)
	})
}

// Adopt takes over at once the entries of the consumers it is told are
// earlier runs, and leaves everyone else's alone; an entry trimmed while
// pending is dead-lettered.
func TestAdoptEarlierConsumers(t *testing.T) {
	each(t, func(t *testing.T, rdb redis.UniversalClient, keys streams.Keys) {
		ctx := context.Background()
		log := streams.NewLog(rdb, keys)
		stream := keys.RoleQueue("webserver")
		earlier := newReader(t, rdb, keys, stream, "web1-100")
		other := newReader(t, rdb, keys, stream, "web2-100")
		if _, err := earlier.Fetch(ctx, 0); err != nil {
			t.Fatal(err)
		}
		var taken, kept []streams.Message
		for i := range 4 {
			if _, err := log.Append(ctx, stream, submitted(fmt.Sprint("a", i), "webserver"), 0); err != nil {
				t.Fatal(err)
			}
			r := earlier
			if i == 3 {
				r = other
			}
			got, err := r.Fetch(ctx, 1)
			if err != nil || len(got) != 1 {
				t.Fatalf("Fetch = %d, %v; want 1", len(got), err)
			}
			if i == 3 {
				kept = got
			} else {
				taken = append(taken, got...)
			}
		}
		// web1-100 exits holding three, one of which is trimmed away.
		if err := rdb.XDel(ctx, stream, taken[0].ID).Err(); err != nil {
			t.Fatal(err)
		}
		next := newReader(t, rdb, keys, stream, "web1-200")
		isEarlier := func(c string) bool { return strings.HasPrefix(c, "web1-") }
		got, err := next.Adopt(ctx, isEarlier, 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.Join(ids(taken[1:]), ","); strings.Join(ids(got), ",") != want {
			t.Errorf("Adopt = %v, want %s (at once, whatever their idle time)", ids(got), want)
		}
		if again, err := next.Adopt(ctx, isEarlier, 0); err != nil || len(again) != 0 {
			t.Errorf("second Adopt = %v, %v; want nothing left", ids(again), err)
		}
		pend, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: streams.GroupAgents, Consumer: "web2-100", Start: "-", End: "+", Count: 10}).Result()
		if err != nil || len(pend) != 1 || pend[0].ID != kept[0].ID {
			t.Errorf("web2-100's pending = %+v, %v; want its entry %s left alone", pend, err, kept[0].ID)
		}
		wantTrimmedDeadLetter(t, rdb, keys, taken[0].ID)
	})
}

// wantTrimmedDeadLetter checks that the dead letters are one entry, id,
// dead-lettered because it was trimmed while pending.
func wantTrimmedDeadLetter(t *testing.T, rdb redis.UniversalClient, keys streams.Keys, id string) {
	t.Helper()
	dl, err := streams.DeadLetters(context.Background(), rdb, keys.DeadLetters(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 1 || dl[0].EntryID != id || !strings.Contains(dl[0].Reason, "deleted") {
		t.Errorf("dead letters = %+v, want the trimmed entry %s", dl, id)
	}
}

func started(id, worker string) events.Envelope {
	return src.New(events.TaskStarted{TaskID: id, Worker: worker})
}

func finished(id, worker string, attempt int64, o events.Outcome) events.Envelope {
	return src.New(events.TaskFinished{TaskID: id, Attempt: attempt, Worker: worker, Outcome: o})
}

func TestFencedAttempts(t *testing.T) {
	each(t, func(t *testing.T, rdb redis.UniversalClient, keys streams.Keys) {
		ctx := context.Background()
		log := streams.NewLog(rdb, keys)
		id := ulid.Make().String()
		sub := submitted(id, "web1")
		if _, err := log.Submit(ctx, sub); err != nil {
			t.Fatal(err)
		}
		// A retried submission records nothing more in the event store.
		if err := submitScriptTwice(ctx, log, sub); err != nil {
			t.Fatal(err)
		}
		if _, err := log.Start(ctx, started("never-submitted", "web1"), "s/1-0"); !errors.Is(err, streams.ErrUnknownTask) {
			t.Errorf("Start of an unknown task: err = %v, want ErrUnknownTask", err)
		}
		first := started(id, "web1")
		a1, err := log.Start(ctx, first, "q/1-0")
		if err != nil || a1.Attempt != 1 || a1.Done {
			t.Fatalf("first Start = %+v, %v; want attempt 1", a1, err)
		}
		// The same call retried (its reply lost) hands out the same epoch.
		if again, err := log.Start(ctx, first, "q/1-0"); err != nil || again.Attempt != 1 {
			t.Fatalf("retried Start = %+v, %v; want attempt 1 again", again, err)
		}
		// A duplicate dispatch entry of the running task is refused.
		if dup, err := log.Start(ctx, started(id, "web3"), "q/2-0"); err != nil || !dup.Duplicate || dup.Attempt != 0 {
			t.Fatalf("Start from a duplicate entry = %+v, %v; want Duplicate", dup, err)
		}
		// The same entry reclaimed by another worker starts attempt 2.
		a2, err := log.Start(ctx, started(id, "web2"), "q/1-0")
		if err != nil || a2.Attempt != 2 {
			t.Fatalf("second Start = %+v, %v; want attempt 2", a2, err)
		}
		// The superseded attempt's result is stale; the current one counts.
		if stale, err := log.Finish(ctx, finished(id, "web1", 1, events.Failed)); err != nil || !stale {
			t.Errorf("Finish of attempt 1 = stale %v, %v; want stale", stale, err)
		}
		win := finished(id, "web2", 2, events.Succeeded)
		if stale, err := log.Finish(ctx, win); err != nil || stale {
			t.Errorf("Finish of attempt 2 = stale %v, %v; want current", stale, err)
		}
		// Retried with the same event: same answer, nothing appended.
		if stale, err := log.Finish(ctx, win); err != nil || stale {
			t.Errorf("retried Finish of attempt 2 = stale %v, %v; want current again", stale, err)
		}
		// A duplicate finish of the current attempt is stale too: one outcome only.
		if stale, _ := log.Finish(ctx, finished(id, "web2", 2, events.Failed)); !stale {
			t.Error("second Finish of attempt 2 was not stale")
		}
		if r, err := log.Start(ctx, started(id, "web1"), "q/1-0"); err != nil || !r.Done {
			t.Errorf("Start after the outcome = %+v, %v; want Done", r, err)
		}
		// The event store holds exactly: submitted, 2 started, 3 finished (one current).
		var types []string
		var outcomes, stales int
		err = streams.Replay(ctx, rdb, keys.EventsFor(id), "-", "+", 0, func(e streams.Entry) error {
			if e.Err != nil {
				return e.Err
			}
			types = append(types, e.Envelope.Type)
			if f, ok := e.Envelope.Payload.(events.TaskFinished); ok {
				if f.Stale {
					stales++
				} else {
					outcomes++
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := "task.submitted.v1,task.started.v1,task.started.v1,task.finished.v1,task.finished.v1,task.finished.v1"
		if strings.Join(types, ",") != want {
			t.Errorf("event types = %v, want %s", types, want)
		}
		if outcomes != 1 || stales != 2 {
			t.Errorf("outcomes = %d, stale results = %d; want 1 and 2", outcomes, stales)
		}
		if ttl := rdb.TTL(ctx, keys.TaskFence(id)).Val(); ttl <= 0 || ttl > streams.DefaultFenceRetention {
			t.Errorf("fence TTL after the outcome = %v, want within (0, %v]", ttl, streams.DefaultFenceRetention)
		}
	})
}

// submitScriptTwice submits again and checks the dispatch stream grew but
// the shard did not.
func submitScriptTwice(ctx context.Context, log *streams.Log, e events.Envelope) error {
	rdb, keys := log.Client(), log.Keys()
	p := e.Payload.(events.TaskSubmitted)
	shardBefore := rdb.XLen(ctx, keys.EventsFor(p.TaskID)).Val()
	if _, err := log.Submit(ctx, e); err != nil {
		return err
	}
	if after := rdb.XLen(ctx, keys.EventsFor(p.TaskID)).Val(); after != shardBefore {
		return fmt.Errorf("event store grew from %d to %d on a repeated submission", shardBefore, after)
	}
	return nil
}

func TestKeysShareSlots(t *testing.T) {
	keys, err := streams.NewKeys("prod", 8)
	if err != nil {
		t.Fatal(err)
	}
	tag := func(k string) string { return k[strings.Index(k, "{"):strings.Index(k, "}")] }
	for _, id := range []string{"01J", "task-2", "x"} {
		if a, b := tag(keys.EventsFor(id)), tag(keys.TaskFence(id)); a != b {
			t.Errorf("task %s: shard tag %s, fence tag %s; want equal", id, a, b)
		}
		if a, b := tag(keys.TaskProjection(id)), tag(keys.TaskFence(id)); a != b {
			t.Errorf("task %s: projection tag %s, fence tag %s; want equal", id, a, b)
		}
		if got, want := streams.HashTag(keys.TaskProjection(id)), tag(keys.EventsFor(id))[1:]; got != want {
			t.Errorf("HashTag(%s) = %q, want %q", keys.TaskProjection(id), got, want)
		}
	}
	for _, k := range []string{keys.Meta(), keys.WorkerDispatch("w"), keys.RoleQueue("r"), keys.DeadLetters(), keys.EventShard(7)} {
		if !strings.HasPrefix(k, keys.Prefix()) {
			t.Errorf("key %s lacks the cluster prefix %s", k, keys.Prefix())
		}
	}
	if got := len(keys.EventShards()); got != 8 {
		t.Errorf("EventShards = %d, want 8", got)
	}
}

func TestNames(t *testing.T) {
	for _, bad := range []string{"", "a}b", "{x}", "a:b", "a b", "-x", "x-", strings.Repeat("a", 254)} {
		if streams.ValidateName("hostname", bad) == nil {
			t.Errorf("ValidateName(%q) = nil, want an error", bad)
		}
	}
	for _, good := range []string{"web1", "web-1.example.com", "db_2", "A"} {
		if err := streams.ValidateName("hostname", good); err != nil {
			t.Errorf("ValidateName(%q) = %v", good, err)
		}
	}
	for _, bad := range []string{"", "Prod", "a_b", "-a", strings.Repeat("a", 64)} {
		if streams.ValidateClusterName(bad) == nil {
			t.Errorf("ValidateClusterName(%q) = nil, want an error", bad)
		}
	}
	if _, err := streams.NewKeys("prod", streams.MaxShards+1); err == nil {
		t.Error("NewKeys accepted too many shards")
	}
}
