package projections

import (
	"context"
	"time"

	"github.com/celeroot/celeroot/streams"
)

// Snapshot is the projections as they were at a past moment: a fold of the
// history up to it.
type Snapshot struct {
	Records Records
	// At is the moment.
	At time.Time
	// coarse holds the shards whose every heartbeat of that moment has
	// passed its retention: their workers' liveness comes from the event
	// store's checkpoints (one a HeartbeatCheckpoint) only.
	coarse map[int]bool
	keys   streams.Keys
}

// AsOf folds the history up to and including the stream entry ID until (a
// bare millisecond time such as "1732845600000" covers that whole
// millisecond), the moment at, into the projections as they were then,
// with the retention at that moment applied. It reads every shard from its
// beginning (the archive first, where the shard was trimmed), so its cost
// grows with the history kept.
//
// Whether a worker was alive then is answered from its heartbeats while
// they are kept (Retention.Heartbeats), and from the checkpoints in the
// event store before that: a worker is then taken as alive up to
// HeartbeatCheckpoint longer after its last checkpoint.
func AsOf(ctx context.Context, h *History, until string, at time.Time, keep Retention) (Snapshot, error) {
	recs, err := h.Fold(ctx, until)
	if err != nil {
		return Snapshot{}, err
	}
	recs.Retain(at, keep)
	trimmed, err := h.HeartbeatsTrimmed(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	s := Snapshot{Records: recs, At: at, coarse: map[int]bool{}, keys: h.keys}
	for n, t := range trimmed {
		if t.After(at.Add(-HeartbeatCheckpoint)) {
			s.coarse[n] = true
		}
	}
	return s, nil
}

// Workers returns the worker views of the snapshot, sorted by role and
// hostname.
func (s Snapshot) Workers() []Worker {
	out := s.Records.Workers()
	for i, w := range out {
		if s.coarse[s.keys.ShardOf(w.Hostname)] {
			out[i].Resolution = HeartbeatCheckpoint
		}
	}
	return out
}

// Task returns the task view of the snapshot, if the task existed.
func (s Snapshot) Task(id string) (Task, bool) { return s.Records.Task(id) }

// Job returns a fan-out job of the snapshot with its tasks.
func (s Snapshot) Job(id string) (Job, bool) {
	r, ok := s.Records[Ref{KindJob, id}]
	if !ok {
		return Job{}, false
	}
	job := JobFromRecord(id, r)
	for _, t := range job.TaskIDs {
		task, _ := s.Records.Task(t)
		if task.ID == "" {
			task = TaskFromRecord(t, nil)
		}
		job.Tasks = append(job.Tasks, task)
	}
	return job, true
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
