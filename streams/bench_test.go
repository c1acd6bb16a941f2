package streams_test

import (
	"context"
	"testing"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
	"github.com/oklog/ulid/v2"
)

func BenchmarkAppend(b *testing.B) {
	srv := streamstest.Single(b)
	rdb := srv.Client(b)
	keys, _ := streams.NewKeys(streamstest.ClusterName(b), 0)
	log := streams.NewLog(rdb, keys)
	e := src.New(events.WorkerHeartbeat{Hostname: "web1", Seq: 1, Running: 2, HeartbeatMS: 5000})
	stream := keys.EventsFor("web1")
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := log.Append(ctx, stream, e, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkSubmit(b *testing.B) {
	srv := streamstest.Single(b)
	rdb := srv.Client(b)
	keys, _ := streams.NewKeys(streamstest.ClusterName(b), 0)
	log := streams.NewLog(rdb, keys)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := log.Submit(ctx, submitted(ulid.Make().String(), "web1")); err != nil {
			b.Fatal(err)
		}
	}
}
