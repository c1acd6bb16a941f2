package projections_test

import (
	"context"
	"testing"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
)

// Once a worker's heartbeats have passed their retention, whether it was
// alive at a moment comes from the checkpoints in the event store: it is
// taken as alive up to a checkpoint interval longer, not shown dead
// between two checkpoints.
func TestAsOfFromCheckpoints(t *testing.T) {
	eachServer(t, func(t *testing.T, fx *fixture) {
		ctx := context.Background()
		_, err := fx.log.Record(ctx, "web1", fx.src.New(events.WorkerRegistered{Hostname: "web1", Role: "r", HeartbeatMS: 100}))
		fx.check(err)
		seq := int64(0)
		beats := func(n int, checkpoint bool) {
			for i := range n {
				seq++
				_, _, err := fx.log.Heartbeat(ctx, "web1", fx.src.New(events.WorkerHeartbeat{Hostname: "web1", Seq: seq, HeartbeatMS: 100}), checkpoint && i == 0)
				fx.check(err)
			}
		}
		beats(1, true) // the checkpoint
		time.Sleep(500 * time.Millisecond)
		beats(150, false) // every heartbeat: streams nodes of 100 entries
		at := time.Now()
		time.Sleep(20 * time.Millisecond)
		beats(250, false)
		fx.project()
		h := projections.NewHistory(fx.rdb, fx.keys, nil)
		var last time.Time
		state := func() (string, time.Duration) {
			t.Helper()
			snap, err := projections.AsOf(ctx, h, streams.IDAt(at), at, projections.Retention{})
			fx.check(err)
			ws := snap.Workers()
			if len(ws) != 1 {
				t.Fatalf("workers as of %s: %+v", at, ws)
			}
			last = ws[0].LastHeartbeat
			return ws[0].State(at), ws[0].Resolution
		}
		// Every heartbeat kept: the last one was just before, healthy.
		if st, res := state(); st != projections.WorkerHealthy || res != 0 {
			t.Errorf("with every heartbeat: %s (resolution %s), want healthy at full resolution", st, res)
		}
		// The heartbeats of that moment trimmed, only the checkpoint half a
		// second before it is left: five intervals, past three missed
		// heartbeats, but within a checkpoint interval, so still healthy.
		n := fx.keys.ShardOf("web1")
		_, err = streams.TrimBelow(ctx, fx.rdb, streams.Trim{Stream: fx.keys.HeartbeatShard(n), Before: streams.IDAt(time.Now().Add(time.Hour)),
			Archive: fx.keys.ArchiveState(n), Heartbeats: true})
		fx.check(err)
		if st, res := state(); st != projections.WorkerHealthy || res != projections.HeartbeatCheckpoint {
			t.Errorf("from checkpoints only: %s (resolution %s), want healthy at %s resolution", st, res, projections.HeartbeatCheckpoint)
		}
		if gap := at.Sub(last); gap < 400*time.Millisecond {
			t.Errorf("the fold still has a heartbeat %s before the moment; the trim left the ones it should have taken", gap)
		}
		later := at.Add(projections.HeartbeatCheckpoint + time.Second)
		snap, err := projections.AsOf(ctx, h, "+", later, projections.Retention{})
		fx.check(err)
		if st := snap.Workers()[0].State(later); st != projections.WorkerUnhealthy {
			t.Errorf("a checkpoint interval after the last checkpoint: %s, want unhealthy", st)
		}
	})
}
