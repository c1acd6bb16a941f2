package agent_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
	"github.com/oklog/ulid/v2"
)

// BenchmarkCycle measures the full path of a no-op task: submit, dispatch
// through a role queue, start (fenced), execute, finish (fenced), ack, and
// the projection showing the outcome. One op is one task; 4 agents.
func BenchmarkCycle(b *testing.B) {
	srv := streamstest.Single(b)
	rdb := srv.Client(b)
	keys, _ := streams.NewKeys(streamstest.ClusterName(b), 0)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 4 {
		cfg := agent.Config{Keys: keys, Hostname: fmt.Sprintf("bench%d", i), Role: "bench",
			Concurrency: 64, Projector: i < 2, Exec: agent.NopExecutor{}, Block: time.Second}
		// Each agent has its own pool, as each agent process would.
		conn, err := streams.ParseURL(srv.URL)
		if err != nil {
			b.Fatal(err)
		}
		ardb, err := streams.Connect(ctx, conn, cfg.PoolSize(), 5*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		defer ardb.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := agent.Run(ctx, ardb, cfg); err != nil {
				b.Error(err)
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	log := streams.NewLog(rdb, keys)
	store := projections.NewStore(rdb, keys)
	src := events.Source{Cluster: keys.Cluster, Actor: "bench"}
	b.ResetTimer()
	start := time.Now()
	ids := make(chan string, 1024)
	var subWG sync.WaitGroup
	const submitters = 8
	for s := range submitters {
		subWG.Add(1)
		go func() {
			defer subWG.Done()
			for i := s; i < b.N; i += submitters {
				id := ulid.Make().String()
				_, err := log.Submit(ctx, src.New(events.TaskSubmitted{TaskID: id, Task: "command", Argv: []string{"true"},
					Route: events.RouteQueue, Target: "bench"}))
				if err != nil {
					b.Error(err)
					return
				}
				ids <- id
			}
		}()
	}
	go func() { subWG.Wait(); close(ids) }()
	var last string
	for id := range ids {
		last = id
	}
	// Tasks finish roughly in order; wait for the last submitted, then all.
	deadline := time.Now().Add(time.Minute)
	for {
		n, err := rdb.ZCard(ctx, keys.TaskIndex()).Result()
		if err != nil {
			b.Fatal(err)
		}
		if t, err := store.Task(ctx, last); err == nil && t.Done() && n >= int64(b.N) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("tasks not all projected after a minute")
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
}
