package ctl_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/ctl"
	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
	"github.com/redis/go-redis/v9"
)

// Sizes of the status benchmark's projections.
const (
	benchWorkers = 10000
	benchTasks   = 100000
)

// fillProjections builds the projections of a fleet of benchWorkers
// workers (in 20 roles, healthy) and benchTasks finished tasks, through
// the projector's Apply, as the events would have.
func fillProjections(b *testing.B, rdb redis.UniversalClient, keys streams.Keys) {
	b.Helper()
	ctx := context.Background()
	store := projections.NewStoreAt(rdb, keys)
	src := events.Source{Cluster: keys.Cluster, Actor: "bench"}
	ms := time.Now().Add(-time.Hour).UnixMilli()
	var seq int64
	var batch []streams.Message
	add := func(stream string, p events.Payload, at time.Time) {
		seq++
		e := src.New(p)
		e.Time = at
		batch = append(batch, streams.Message{Stream: stream, ID: fmt.Sprintf("%d-%d", ms+seq/100, seq%100), Envelope: e})
		if len(batch) == 512 {
			if err := store.Apply(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	now := time.Now()
	for i := range benchWorkers {
		h := fmt.Sprintf("w%05d", i)
		add(keys.EventsFor(h), events.WorkerRegistered{Hostname: h, Role: fmt.Sprintf("role%02d", i%20), Labels: map[string]string{"tier": "web", "rack": fmt.Sprint(i % 40)},
			Tasks: []string{"command"}, HeartbeatMS: 5000, Version: "dev"}, now.Add(-time.Hour))
	}
	for i := range benchTasks {
		id := fmt.Sprintf("T%07d", i)
		h := fmt.Sprintf("w%05d", i%benchWorkers)
		at := now.Add(-time.Hour + time.Duration(i)*time.Millisecond)
		add(keys.EventsFor(id), events.TaskSubmitted{TaskID: id, Task: "command", Argv: []string{"true"}, Route: events.RouteQueue, Target: fmt.Sprintf("role%02d", i%20)}, at)
		add(keys.EventsFor(id), events.TaskStarted{TaskID: id, Attempt: 1, Worker: h}, at)
		outcome := events.Succeeded
		if i%7 == 0 {
			outcome = events.Failed
		}
		add(keys.EventsFor(id), events.TaskFinished{TaskID: id, Attempt: 1, Worker: h, Outcome: outcome, DurationMS: 3}, at)
	}
	for i := range benchWorkers {
		h := fmt.Sprintf("w%05d", i)
		add(keys.HeartbeatsFor(h), events.WorkerHeartbeat{Hostname: h, Seq: 1, HeartbeatMS: 5000}, time.Now())
	}
	if err := store.Apply(ctx, batch); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkStatus times the status commands over projections of 10,000
// workers and 100,000 tasks: cluster status, workers list and task list,
// each a whole command run in-process (connect, query, format).
func BenchmarkStatus(b *testing.B) {
	for _, srv := range streamstest.Servers(b) {
		b.Run(srv.Name, func(b *testing.B) {
			cluster := streamstest.ClusterName(b)
			rdb := srv.Client(b)
			keys, err := streams.LoadKeys(context.Background(), rdb, cluster)
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			fillProjections(b, rdb, keys)
			b.Logf("filled %d workers and %d tasks in %s", benchWorkers, benchTasks, time.Since(start).Round(time.Millisecond))
			for _, args := range [][]string{
				{"cluster", "status"},
				{"cluster", "status", "-o", "json"},
				{"workers", "list"},
				{"task", "list"},
				{"task", "list", "--state", "failed", "--limit", "100"},
			} {
				b.Run(strings.Join(args, "_"), func(b *testing.B) {
					argv := append([]string{"celeroot", "--redis", srv.URL, "--cluster", cluster}, args...)
					for b.Loop() {
						if code := ctl.Run(context.Background(), argv, strings.NewReader(""), io.Discard, io.Discard); code != 0 {
							b.Fatalf("%v: exit %d", args, code)
						}
					}
				})
			}
		})
	}
}
