package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/streams"
	"github.com/redis/go-redis/v9"
)

// The retention pass (the janitor) bounds everything celeroot keeps in
// Redis. One pass:
//
//   - deletes the projection namespaces a rebuild switched away from, and
//     their consumer groups, NamespaceGrace after the switch;
//   - trims every stream below what its consumer groups still need
//     (streams.TrimBelow): the event store shards also below the archive
//     watermark and the event retention, the heartbeat streams below the
//     heartbeat retention, the schedule events below theirs, and the
//     dispatch and control streams below what the agents group has read
//     and acknowledged (the submission is in the event store);
//   - removes the projections of tasks that ended more than the task
//     retention ago, with their output and job entries; ends tasks that
//     waited past their deadline for a worker that never came (expired),
//     and dead-letters those whose worker went away while they ran
//     (abandoned), so their fences expire too;
//   - forgets workers gone for longer than the worker retention (their
//     dispatch and control streams too, when nothing in them is unread);
//   - warns when the dead letters near their cap.
//
// Passes are leaderless: whoever holds the retention lease
// (streams.Keys.JanitorLease) runs one; every step is safe if two
// overlapped.

// Bounds of one pass.
const (
	// janitorLeaseTTL is the retention lease's TTL; it is renewed every
	// third of it while a pass runs.
	janitorLeaseTTL = 30 * time.Second
	// NamespaceGrace is how long after a rebuild's switch the previous
	// projection namespace is kept, for readers and projectors that have
	// not moved yet.
	NamespaceGrace = time.Minute
	// taskScan bounds the tasks one pass looks at.
	taskScan = 10000
)

// JanitorOptions configures a Janitor.
type JanitorOptions struct {
	// Owner names this process in the lease.
	Owner string
	// Retention is the policy in force; it may change between passes.
	Retention func() Retention
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// DryRun computes what a pass would trim and remove and changes
	// nothing.
	DryRun bool
	Logger *slog.Logger
}

// Janitor runs retention passes.
type Janitor struct {
	rdb  redis.UniversalClient
	keys streams.Keys
	log  *streams.Log
	opts JanitorOptions
}

// NewJanitor returns a janitor for the cluster named by keys.
func NewJanitor(rdb redis.UniversalClient, keys streams.Keys, opts JanitorOptions) *Janitor {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Retention == nil {
		opts.Retention = func() Retention { return Retention{} }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Owner == "" {
		opts.Owner = "janitor"
	}
	return &Janitor{rdb: rdb, keys: keys, log: streams.NewLog(rdb, keys), opts: opts}
}

// JanitorReport says what one pass did (or, dry, would do).
type JanitorReport struct {
	Trims []streams.TrimResult `json:"trims"`
	// Removed counts the entries trimmed per kind of stream.
	Removed map[string]int64 `json:"removed"`
	// TasksRemoved, WorkersForgotten: projections removed.
	TasksRemoved     int `json:"tasks_removed"`
	WorkersForgotten int `json:"workers_forgotten"`
	// TasksExpired and TasksAbandoned were ended by this pass.
	TasksExpired   int `json:"tasks_expired"`
	TasksAbandoned int `json:"tasks_abandoned"`
	// OldNamespaces is the number of records of earlier projection
	// namespaces deleted.
	OldNamespaces int      `json:"old_namespace_keys"`
	DeadLetters   int64    `json:"dead_letters"`
	Warnings      []string `json:"warnings"`
}

func (r *JanitorReport) warn(format string, args ...any) {
	r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...))
}

// Stream kinds of JanitorReport.Removed.
const (
	KindEvents     = "events"
	KindHeartbeats = "heartbeats"
	KindDispatch   = "dispatch"
	KindControl    = "control"
	KindSchedule   = "schedule"
)

// Pass runs one retention pass under the lease, or fails with
// streams.ErrLeaseHeld if another process is running one.
func (j *Janitor) Pass(ctx context.Context) (JanitorReport, error) {
	var rep JanitorReport
	lease := streams.NewLease(j.rdb, j.keys.JanitorLease(), j.opts.Owner, janitorLeaseTTL)
	err := lease.Hold(ctx, func(ctx context.Context) error {
		var err error
		rep, err = j.pass(ctx)
		return err
	})
	return rep, err
}

func (j *Janitor) pass(ctx context.Context) (JanitorReport, error) {
	rep := JanitorReport{Removed: map[string]int64{}, Trims: []streams.TrimResult{}, Warnings: []string{}}
	keep := j.opts.Retention().WithDefaults()
	now := j.opts.Now()
	var errs []error
	step := func(what string, err error) {
		if err != nil && ctx.Err() == nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	step("old projections", j.collectNamespaces(ctx, now, &rep))
	store := NewStore(j.rdb, j.keys)
	k, err := store.Keys(ctx)
	if err != nil {
		return rep, err
	}
	store = NewStoreAt(j.rdb, k)
	workers, err := store.Workers(ctx)
	if err != nil {
		return rep, err
	}
	step("trim", j.trimStreams(ctx, now, keep, workers, &rep))
	step("tasks", j.tasks(ctx, k, now, keep, workers, &rep))
	step("workers", j.workers(ctx, k, store, now, keep, &rep))
	if n, err := j.rdb.XLen(ctx, j.keys.DeadLetters()).Result(); err == nil {
		rep.DeadLetters = n
		if n >= streams.DeadLetterWarnAt {
			rep.warn("%d dead letters: beyond about %d the oldest are dropped; look at them with 'celeroot task dead' and redrive or accept them",
				n, streams.MaxDeadLetters)
		}
	} else {
		step("dead letters", err)
	}
	for _, w := range rep.Warnings {
		j.opts.Logger.Warn("retention: " + w)
	}
	return rep, errors.Join(errs...)
}

// trimStreams trims every stream of the cluster.
func (j *Janitor) trimStreams(ctx context.Context, now time.Time, keep Retention, workers []Worker, rep *JanitorReport) error {
	type trim struct {
		kind string
		t    streams.Trim
	}
	var trims []trim
	for n := range j.keys.EventShards() {
		trims = append(trims,
			trim{KindEvents, streams.Trim{Stream: j.keys.EventShard(n), Before: streams.IDAt(now.Add(-keep.Events)),
				Archive: j.keys.ArchiveState(n), RequireArchive: !keep.TrimUnarchived}},
			trim{KindHeartbeats, streams.Trim{Stream: j.keys.HeartbeatShard(n), Before: streams.IDAt(now.Add(-keep.Heartbeats)),
				Archive: j.keys.ArchiveState(n), Heartbeats: true}})
	}
	// Dispatch and control streams: once the agents group has read and
	// acknowledged an entry it is of no more use (the submission is in the
	// event store, the request done). A stream no group reads is kept.
	roles := map[string]bool{}
	for _, w := range workers {
		trims = append(trims,
			trim{KindDispatch, streams.Trim{Stream: j.keys.WorkerDispatch(w.Hostname), Before: streams.IDAt(now), NeedGroup: true}},
			trim{KindControl, streams.Trim{Stream: j.keys.WorkerControl(w.Hostname), Before: streams.IDAt(now), NeedGroup: true}})
		if w.Role != "" && !roles[w.Role] {
			roles[w.Role] = true
			trims = append(trims, trim{KindDispatch, streams.Trim{Stream: j.keys.RoleQueue(w.Role), Before: streams.IDAt(now), NeedGroup: true}})
		}
	}
	trims = append(trims, trim{KindSchedule, streams.Trim{Stream: j.keys.ScheduleFires(),
		Before: streams.IDAt(now.Add(-keep.ScheduleEvents)), NeedGroup: true}})
	var errs []error
	for _, t := range trims {
		t.t.DryRun = j.opts.DryRun
		res, err := streams.TrimBelow(ctx, j.rdb, t.t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rep.Removed[t.kind] += res.Removed
		if res.Removed > 0 || t.kind == KindEvents {
			rep.Trims = append(rep.Trims, res)
		}
		if t.kind == KindEvents && res.Limit == "nothing archived yet" && keep.Events > 0 {
			if first, err := streams.First(ctx, j.rdb, t.t.Stream); err == nil {
				if at, ok := streams.IDTime(first); ok && now.Sub(at) > keep.Events {
					rep.warn("%s has never been archived and holds events from %s on, older than the %s retention: run 'celeroot events archive --dir DIR' (from cron), or set spec.retention.archive: none",
						t.t.Stream, at.UTC().Format(time.RFC3339), keep.Events)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// collectNamespaces deletes, with their consumer groups, the projection
// namespaces of rebuilds that never switched (a rebuild holds the
// retention lease while it works, so one whose group is still there while
// this pass holds the lease died), and, NamespaceGrace after a switch, the
// namespaces switched away from. Their groups would otherwise hold every
// trim of the event store back for ever.
func (j *Janitor) collectNamespaces(ctx context.Context, now time.Time, rep *JanitorReport) error {
	ns, err := streams.ProjectionNamespaces(ctx, j.rdb, j.keys)
	if err != nil {
		return err
	}
	old := !ns.Collected && now.Sub(ns.SwitchedAt) >= NamespaceGrace
	gone := map[int]bool{}
	for n := range j.keys.EventShards() {
		for _, s := range []string{j.keys.EventShard(n), j.keys.HeartbeatShard(n)} {
			groups, err := streams.Groups(ctx, j.rdb, s)
			if err != nil {
				return err
			}
			for _, g := range groups {
				v, ok := streams.IsProjectorGroup(g)
				if !ok || v == ns.Current || (v < ns.Current && !old) {
					continue
				}
				gone[v] = true
				if j.opts.DryRun {
					continue
				}
				if err := streams.DestroyGroup(ctx, j.rdb, s, g); err != nil {
					return err
				}
			}
		}
	}
	if j.opts.DryRun || (len(gone) == 0 && !old) {
		return nil
	}
	deleted, err := streams.DeleteKeys(ctx, j.rdb, j.keys, func(key string) bool {
		v, ok := j.keys.ProjectionVersionOf(key)
		return ok && (gone[v] || (old && v < ns.Current))
	})
	rep.OldNamespaces += deleted
	if err != nil || !old {
		return err
	}
	return streams.MarkCollected(ctx, j.rdb, j.keys, ns.Current)
}

// tasks removes the projections of tasks past their retention, and ends
// the old open ones nobody will end otherwise.
func (j *Janitor) tasks(ctx context.Context, k streams.Keys, now time.Time, keep Retention, workers []Worker, rep *JanitorReport) error {
	byHost := map[string]Worker{}
	for _, w := range workers {
		byHost[w.Hostname] = w
	}
	// A task ends after it was submitted, so only tasks submitted before
	// the retention line can be past it.
	max := fmt.Sprint(now.Add(-keep.Tasks).UnixMilli())
	var offset int64
	for scanned := 0; scanned < taskScan; {
		ids, err := j.rdb.ZRangeByScore(ctx, k.TaskIndex(), &redis.ZRangeBy{Min: "-inf", Max: max, Offset: offset, Count: 500}).Result()
		if err != nil {
			return fmt.Errorf("read task index: %w", err)
		}
		if len(ids) == 0 {
			return nil
		}
		scanned += len(ids)
		cmds := make([]*redis.MapStringStringCmd, len(ids))
		if _, err := j.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for i, id := range ids {
				cmds[i] = pipe.HGetAll(ctx, k.TaskProjection(id))
			}
			return nil
		}); err != nil {
			return fmt.Errorf("read tasks: %w", err)
		}
		var remove []Task
		kept := 0
		for i, id := range ids {
			r := cmds[i].Val()
			t := TaskFromRecord(id, r).At(now)
			switch {
			case len(r) == 0 || TaskPastRetention(t, now, keep.Tasks):
				remove = append(remove, t)
				continue
			case !t.Done():
				if err := j.endOpen(ctx, t, byHost, now, rep); err != nil {
					return err
				}
			}
			kept++
		}
		if err := j.removeTasks(ctx, k, remove); err != nil {
			return err
		}
		rep.TasksRemoved += len(remove)
		if j.opts.DryRun {
			kept += len(remove)
		}
		offset += int64(kept)
	}
	return nil
}

// removeTasks deletes tasks' projections, output, index and job entries.
func (j *Janitor) removeTasks(ctx context.Context, k streams.Keys, tasks []Task) error {
	if len(tasks) == 0 || j.opts.DryRun {
		return nil
	}
	_, err := j.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, t := range tasks {
			pipe.Unlink(ctx, k.TaskProjection(t.ID)) // in its shard's slot, beside its fence
			pipe.Unlink(ctx, k.TaskLog(t.ID))
			pipe.ZRem(ctx, k.TaskIndex(), t.ID)
			if t.JobID != "" {
				pipe.HDel(ctx, k.JobProjection(t.JobID), JobTaskFields(t.ID)...)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove %d tasks past their retention: %w", len(tasks), err)
	}
	return nil
}

// endOpen ends a task submitted before the task retention line that is
// still open, when nobody else will: expired if it is still waiting past
// its deadline (its worker never came), dead if it was running or
// retrying on a worker that is no longer alive and no other took it over.
// A task running on a live worker is left alone: it may be a long one.
func (j *Janitor) endOpen(ctx context.Context, t Task, byHost map[string]Worker, now time.Time, rep *JanitorReport) error {
	src := events.Source{Cluster: j.keys.Cluster, Actor: "janitor:" + j.opts.Owner, Now: j.opts.Now}
	switch t.State {
	case TaskExpired:
		if j.opts.DryRun {
			rep.TasksExpired++
			return nil
		}
		ev := src.New(events.TaskEnded{TaskID: t.ID, State: events.EndExpired,
			Reason: fmt.Sprintf("its deadline %s passed before a worker took it", t.Deadline.UTC().Format(time.RFC3339))},
			events.WithCorrelation(t.ID))
		res, err := j.log.End(ctx, ev)
		if err != nil {
			return err
		}
		if res.Ended {
			rep.TasksExpired++
		}
	case TaskRunning, TaskRetrying:
		w, known := byHost[t.Worker]
		if known {
			if st := w.State(now); st == WorkerHealthy || st == WorkerDraining {
				return nil
			}
		}
		if j.opts.DryRun {
			rep.TasksAbandoned++
			return nil
		}
		since := "it is no longer listed"
		if known {
			since = "its last heartbeat was at " + w.LastHeartbeat.UTC().Format(time.RFC3339)
		}
		reason := fmt.Sprintf("abandoned: %s on worker %s, which went away (%s), and no worker took it over", t.State, orDash(t.Worker), since)
		err := streams.DeadLetter(ctx, j.rdb, j.keys.DeadLetters(), streams.DeadEntry{
			Stream: dispatchOf(j.keys, t), Group: streams.GroupAgents, Consumer: src.Actor, Reason: reason,
			Fields: map[string]any{"task_id": t.ID},
		})
		if err != nil {
			return err
		}
		ev := src.New(events.TaskDeadLettered{TaskID: t.ID, Reason: reason, Stream: dispatchOf(j.keys, t)}, events.WithCorrelation(t.ID))
		res, err := j.log.End(ctx, ev)
		if err != nil {
			return err
		}
		if res.Ended {
			rep.TasksAbandoned++
		}
	}
	return nil
}

func dispatchOf(k streams.Keys, t Task) string {
	if t.Route == events.RouteQueue {
		return k.RoleQueue(t.Target)
	}
	return k.WorkerDispatch(t.Target)
}

// forgetScript removes a worker's projection (KEYS[1]) if its guards are
// still those read (ARGV[i] for the guard names ARGV[n+i]; the worker did
// not come back meanwhile), and its dispatch and control streams (KEYS[2],
// KEYS[3]; one slot, {w:<host>}) if nothing in them is pending or unread.
// It returns 0 if the worker changed, 1 if forgotten, 2 if its streams went
// too.
var forgetScript = redis.NewScript(streams.LuaCompareIDs + `
local n = #ARGV / 2
for i = 1, n do
  if (redis.call('HGET', KEYS[1], ARGV[i]) or '') ~= ARGV[n + i] then return 0 end
end
redis.call('DEL', KEYS[1])
local function done(s)
  if redis.call('EXISTS', s) == 0 then return true end
  local last = redis.call('XREVRANGE', s, '+', '-', 'COUNT', 1)
  if #last == 0 then return true end
  local groups = redis.call('XINFO', 'GROUPS', s)
  if #groups == 0 then return false end
  for _, g in ipairs(groups) do
    local pending, delivered = 0, '0-0'
    for i = 1, #g, 2 do
      if g[i] == 'pending' then pending = g[i+1] elseif g[i] == 'last-delivered-id' then delivered = g[i+1] end
    end
    if pending > 0 or less(delivered, last[1][1]) then return false end
  end
  return true
end
if done(KEYS[2]) and done(KEYS[3]) then
  redis.call('DEL', KEYS[2], KEYS[3])
  return 2
end
return 1
`)

// workerGuards are the guards of a worker record that change when it
// comes back or is touched by a command.
var workerGuards = []string{"reg", "hb", "left", "exp", "rm"}

// workers forgets the workers gone for longer than the worker retention.
func (j *Janitor) workers(ctx context.Context, k streams.Keys, store *Store, now time.Time, keep Retention, rep *JanitorReport) error {
	hosts, err := j.rdb.SMembers(ctx, k.WorkerIndex()).Result()
	if err != nil {
		return fmt.Errorf("read worker index: %w", err)
	}
	sort.Strings(hosts)
	var errs []error
	for _, h := range hosts {
		r, err := store.Record(ctx, Ref{KindWorker, h})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(r) > 0 && !WorkerPastRetention(WorkerFromRecord(h, r), r, now, keep.Workers) {
			continue
		}
		if j.opts.DryRun {
			rep.WorkersForgotten++
			continue
		}
		args := make([]any, 0, 2*len(workerGuards))
		for _, g := range workerGuards {
			args = append(args, VersionPrefix+g)
		}
		for _, g := range workerGuards {
			args = append(args, r[VersionPrefix+g])
		}
		res, err := forgetScript.Run(ctx, j.rdb, []string{k.WorkerProjection(h), k.WorkerDispatch(h), k.WorkerControl(h)}, args...).Int()
		if err != nil {
			errs = append(errs, fmt.Errorf("forget worker %s: %w", h, err))
			continue
		}
		if res == 0 {
			continue // it came back
		}
		if err := j.rdb.SRem(ctx, k.WorkerIndex(), h).Err(); err != nil {
			errs = append(errs, fmt.Errorf("forget worker %s: %w", h, err))
			continue
		}
		rep.WorkersForgotten++
	}
	return errors.Join(errs...)
}
