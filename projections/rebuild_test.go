package projections_test

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/google/go-cmp/cmp"
)

// records reads every record of namespace v.
func (fx *fixture) records(v int) projections.Records {
	fx.t.Helper()
	recs, err := projections.NewStoreAt(fx.rdb, fx.keys.WithProjections(v)).Records(context.Background())
	fx.check(err)
	return recs
}

// A rebuild writes a fresh fold into a new namespace equal to the one
// built incrementally, switches readers and projectors to it, and the old
// namespace goes a minute later; with the event store trimmed it needs the
// archive, and from it gives the same projections again.
func TestRebuildSwitchesNamespaces(t *testing.T) {
	eachServer(t, func(t *testing.T, fx *fixture) {
		ctx := context.Background()
		fx.register("web1")
		fx.register("web2")
		fx.submit("t1", "j1", "web1", events.Succeeded, true)
		fx.submit("t2", "j1", "web2", events.Failed, true)
		fx.submit("t3", "", "web1", "", true)
		fx.project()
		before := fx.records(0)
		if len(before) != 6 {
			t.Fatalf("incremental projections hold %d records, want 6", len(before))
		}

		pctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- projections.NewProjector(fx.rdb, fx.keys, projections.ProjectorOptions{Consumer: "p1", Block: 100 * time.Millisecond}).Run(pctx)
		}()
		var once sync.Once
		stopProjector := func() { once.Do(func() { stop(); <-done }) }
		defer stopProjector()

		h := projections.NewHistory(fx.rdb, fx.keys, nil)
		res, err := projections.Rebuild(ctx, h, projections.RebuildOptions{Consumer: "rb"})
		fx.check(err)
		if res.Previous != 0 || res.Version != 1 || res.Records != 6 {
			t.Errorf("Rebuild = %+v, want v0 -> v1 with 6 records", res)
		}
		if diff := cmp.Diff(before, fx.records(1)); diff != "" {
			t.Errorf("rebuilt projections differ from the incremental ones (-incremental +rebuilt):\n%s", diff)
		}
		store := projections.NewStore(fx.rdb, fx.keys)
		if k, err := store.Keys(ctx); err != nil || k.Projections != 1 {
			t.Errorf("served namespace after the rebuild: %v, %v; want 1", k.Projections, err)
		}
		// The projector follows the switch: a new event lands in v1.
		_, err = fx.log.Record(ctx, "t1", fx.src.New(events.TaskRedriven{TaskID: "t1", NewTaskID: "t9"}))
		fx.check(err)
		deadline := time.Now().Add(15 * time.Second)
		for {
			if tk, err := store.Task(ctx, "t1"); err == nil && tk.RedrivenTo == "t9" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("an event appended after the switch never reached the rebuilt projections")
			}
			time.Sleep(50 * time.Millisecond)
		}
		// A rebuild that lost the race to another switch changes nothing.
		if err := streams.SwitchProjections(ctx, fx.rdb, fx.keys, 0, 7, time.Now()); !errors.Is(err, streams.ErrSwitched) {
			t.Errorf("switch from a namespace no longer served: %v, want ErrSwitched", err)
		}
		// The old namespace stays for a minute, then the retention pass
		// deletes it and its consumer group.
		pass := func(now time.Time) projections.JanitorReport {
			t.Helper()
			rep, err := projections.NewJanitor(fx.rdb, fx.keys, projections.JanitorOptions{Owner: "test", Now: func() time.Time { return now }}).Pass(ctx)
			fx.check(err)
			return rep
		}
		if rep := pass(time.Now()); rep.OldNamespaces != 0 || len(fx.records(0)) == 0 {
			t.Errorf("old namespace deleted within its grace: %+v", rep)
		}
		if rep := pass(time.Now().Add(2 * time.Minute)); rep.OldNamespaces < 6 || len(fx.records(0)) != 0 {
			t.Errorf("old namespace after its grace: %d keys deleted, %d records left", rep.OldNamespaces, len(fx.records(0)))
		}
		for n := range fx.keys.EventShards() {
			groups, err := streams.Groups(ctx, fx.rdb, fx.keys.EventShard(n))
			fx.check(err)
			for _, g := range groups {
				if g == streams.GroupProjector {
					t.Errorf("shard %d still has the old projector group", n)
				}
			}
		}

		// Archive everything and trim it from Redis (approximate trimming
		// removes whole stream nodes of 100 entries: make some).
		for i := range 250 {
			_, _, err := fx.log.Heartbeat(ctx, "web1", fx.src.New(events.WorkerHeartbeat{Hostname: "web1", Seq: int64(i + 2), HeartbeatMS: 1000}), true)
			fx.check(err)
		}
		fx.check(waitHeartbeat(ctx, fx, "web1", 251))
		dir := filepath.Join(t.TempDir(), "archive")
		a, err := streams.OpenArchive(dir, fx.keys, true)
		fx.check(err)
		for n := range fx.keys.EventShards() {
			_, err := streams.ArchiveShard(ctx, fx.rdb, fx.keys, a, n, streams.ArchiveOptions{})
			fx.check(err)
			_, err = streams.TrimBelow(ctx, fx.rdb, streams.Trim{Stream: fx.keys.EventShard(n), Before: streams.IDAt(time.Now().Add(time.Hour)),
				Archive: fx.keys.ArchiveState(n), RequireArchive: true})
			fx.check(err)
		}
		stopProjector()
		before = fx.records(1)
		if _, err := projections.Rebuild(ctx, h, projections.RebuildOptions{Consumer: "rb"}); !errors.Is(err, projections.ErrTrimmed) {
			t.Fatalf("rebuild of a trimmed history without the archive: %v, want ErrTrimmed", err)
		}
		res, err = projections.Rebuild(ctx, projections.NewHistory(fx.rdb, fx.keys, a), projections.RebuildOptions{Consumer: "rb"})
		fx.check(err)
		if diff := cmp.Diff(before, fx.records(res.Version)); diff != "" {
			t.Errorf("projections rebuilt from the archive differ (-before +rebuilt):\n%s", diff)
		}
		// The failed attempt left nothing behind: its namespace was deleted.
		if res.Version != 3 || len(fx.records(2)) != 0 {
			t.Errorf("rebuild from the archive is v%d; the failed attempt's v2 holds %d records", res.Version, len(fx.records(2)))
		}
	})
}

func waitHeartbeat(ctx context.Context, fx *fixture, host string, seq int) error {
	store := projections.NewStore(fx.rdb, fx.keys)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if r, err := store.Record(ctx, projections.Ref{Kind: projections.KindWorker, ID: host}); err == nil && r["seq"] == strconv.Itoa(seq) {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("not projected")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
