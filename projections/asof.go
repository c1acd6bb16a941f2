package projections

import (
	"context"

	"github.com/celeroot/celeroot/streams"
	"github.com/redis/go-redis/v9"
)

// AsOf folds the event store up to and including the stream entry ID
// until (a bare millisecond time such as "1732845600000" covers that whole
// millisecond) into in-memory records: the projections as they were then.
// It reads every shard from its beginning, so its cost grows with the
// history kept.
func AsOf(ctx context.Context, rdb redis.UniversalClient, keys streams.Keys, until string) (Records, error) {
	recs := Records{}
	for _, shard := range keys.EventShards() {
		err := streams.Replay(ctx, rdb, shard, "-", until, 0, func(e streams.Entry) error {
			if e.Err != nil {
				return nil // dead-lettered by the projector; not part of any view
			}
			for _, p := range Reduce(e.Envelope, e.ID) {
				recs.Apply(p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return recs, nil
}

// Workers returns the worker views of the records, sorted by role and
// hostname.
func (recs Records) Workers() []Worker {
	var out []Worker
	for ref, r := range recs {
		if ref.Kind == KindWorker {
			out = append(out, WorkerFromRecord(ref.ID, r))
		}
	}
	sortWorkers(out)
	return out
}

// Task returns the task view of the records, if the task existed.
func (recs Records) Task(id string) (Task, bool) {
	r, ok := recs[Ref{KindTask, id}]
	if !ok {
		return Task{}, false
	}
	return TaskFromRecord(id, r), true
}
