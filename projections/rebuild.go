package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/celeroot/celeroot/streams"
	"github.com/redis/go-redis/v9"
)

// Mismatch is a record whose stored projection differs from a fresh fold
// of the history.
type Mismatch struct {
	Ref Ref
	// Stored and Folded are the differing fields (absent: "").
	Stored, Folded map[string]string
}

// fold is a fresh fold of the history that remembers, when fieldsOf is
// set (for Verify), which fields each guard of each record writes.
type fold struct {
	recs     Records
	fieldsOf map[Ref]map[string][]string // guard -> fields
}

func newFold() *fold { return &fold{recs: Records{}, fieldsOf: map[Ref]map[string][]string{}} }

// newPlainFold is a fold that only keeps the records (for a rebuild).
func newPlainFold() *fold { return &fold{recs: Records{}} }

func (f *fold) add(e streams.Entry) error {
	if e.Err != nil {
		return nil // dead-lettered by the projector; not part of any view
	}
	for _, p := range Reduce(e.Envelope, e.ID) {
		f.recs.Apply(p)
		if f.fieldsOf == nil {
			continue
		}
		g := f.fieldsOf[p.Ref]
		if g == nil {
			g = map[string][]string{}
			f.fieldsOf[p.Ref] = g
		}
		if g[p.Guard] == nil {
			for _, fl := range p.Fields {
				g[p.Guard] = append(g[p.Guard], fl.Name)
			}
		}
	}
	return nil
}

// foldTo folds every shard up to the ends given per shard (events and
// heartbeats; "+" for all).
func (h *History) foldTo(ctx context.Context, f *fold, events, heartbeats func(n int) string) error {
	for n := range h.keys.EventShards() {
		if err := h.Events(ctx, n, "-", events(n), f.add); err != nil {
			return err
		}
		if err := h.Heartbeats(ctx, n, heartbeats(n), f.add); err != nil {
			return err
		}
	}
	return nil
}

func all(int) string { return "+" }

// Verify folds the whole history (the archive where it was trimmed, then
// Redis), applies the retention at now as the retention pass does, and
// compares every record with the served projection, guard by guard. A
// guard whose stored order differs from the fold's is in flux (an event
// arrived between the fold and the read, or a projector is behind) and is
// not compared; fields stored but unknown to the history are reported.
// Records that exist only in the store (their events were trimmed, or they
// passed their retention since the last pass) are not reported.
func Verify(ctx context.Context, h *History, keep Retention, now time.Time) ([]Mismatch, int, error) {
	f := newFold()
	if err := h.foldTo(ctx, f, all, all); err != nil {
		return nil, 0, err
	}
	f.recs.Retain(now, keep)
	k, err := NewStore(h.rdb, h.keys).Keys(ctx)
	if err != nil {
		return nil, 0, err
	}
	store := NewStoreAt(h.rdb, k)
	refs := sortedRefs(f.recs)
	var out []Mismatch
	for _, ref := range refs {
		got, err := store.Record(ctx, ref)
		if err != nil {
			return nil, 0, err
		}
		want := f.recs[ref]
		m := Mismatch{Ref: ref, Stored: map[string]string{}, Folded: map[string]string{}}
		known := map[string]bool{}
		for guard, fields := range f.fieldsOf[ref] {
			vf := VersionPrefix + guard
			known[vf] = true
			for _, k := range fields {
				known[k] = true
			}
			if _, kept := want[vf]; !kept {
				continue // a job entry of a task past its retention
			}
			if got[vf] != want[vf] {
				continue // in flux
			}
			for _, k := range fields {
				if got[k] != want[k] {
					m.Stored[k], m.Folded[k] = got[k], want[k]
				}
			}
		}
		for k, v := range got {
			if !known[k] {
				m.Stored[k], m.Folded[k] = v, ""
			}
		}
		if len(m.Stored) > 0 {
			out = append(out, m)
		}
	}
	return out, len(refs), nil
}

func sortedRefs(recs Records) []Ref {
	refs := make([]Ref, 0, len(recs))
	for ref := range recs {
		refs = append(refs, ref)
	}
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].Kind != refs[j].Kind {
			return refs[i].Kind < refs[j].Kind
		}
		return refs[i].ID < refs[j].ID
	})
	return refs
}

// RebuildOptions configures Rebuild.
type RebuildOptions struct {
	// Retention is applied to the fold as the retention pass applies it.
	Retention Retention
	// Consumer names the rebuild in the new namespace's consumer group
	// while it catches up (unique per process).
	Consumer string
	// LeaseWait bounds how long to wait for a retention pass to finish
	// (nothing is trimmed while a rebuild folds). Default 2 minutes.
	LeaseWait time.Duration
	// Now is the clock; time.Now if nil.
	Now    func() time.Time
	Logger *slog.Logger
}

// RebuildResult says what Rebuild did.
type RebuildResult struct {
	// Previous and Version are the namespaces served before and after.
	Previous, Version int
	// Records is the number of records the fold wrote; CaughtUp the events
	// applied after the fold, before the switch.
	Records, CaughtUp int
}

// Rebuild builds fresh projections from the history into a new namespace
// and switches readers to it atomically:
//
//  1. It takes the retention lease, so nothing is trimmed while it reads.
//  2. It notes where every shard ends and creates the new namespace's
//     consumer group there: the group delivers exactly what the fold does
//     not cover.
//  3. It folds the archive (where a shard was trimmed) and Redis up to
//     those ends, applies the retention, and writes the records into the
//     new namespace, which nobody reads yet.
//  4. It catches up by consuming the new group itself until it is empty.
//  5. It makes the new namespace the served one (a compare-and-set on the
//     cluster metadata). Status commands read it from then on; projectors
//     move to its group within about a second and go on from where the
//     rebuild stopped. The old namespace and its group are deleted by the
//     next retention pass a minute later.
//
// If another rebuild switched first, this one deletes what it wrote and
// fails with streams.ErrSwitched.
func Rebuild(ctx context.Context, h *History, opts RebuildOptions) (RebuildResult, error) {
	var res RebuildResult
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.LeaseWait <= 0 {
		opts.LeaseWait = 2 * time.Minute
	}
	if opts.Consumer == "" {
		opts.Consumer = "rebuild"
	}
	rdb, keys := h.rdb, h.keys
	lease := streams.NewLease(rdb, keys.JanitorLease(), "rebuild:"+opts.Consumer, janitorLeaseTTL)
	err := holdWaiting(ctx, lease, opts.LeaseWait, func(ctx context.Context) error {
		var err error
		res, err = rebuild(ctx, h, opts)
		return err
	})
	return res, err
}

// holdWaiting runs f under the lease, waiting up to wait for its holder to
// let go.
func holdWaiting(ctx context.Context, lease *streams.Lease, wait time.Duration, f func(context.Context) error) error {
	deadline := time.Now().Add(wait)
	var b streams.Backoff
	for {
		err := lease.Hold(ctx, f)
		if !errors.Is(err, streams.ErrLeaseHeld) || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		streams.Sleep(ctx, b.Next())
	}
}

func rebuild(ctx context.Context, h *History, opts RebuildOptions) (RebuildResult, error) {
	rdb, keys := h.rdb, h.keys
	var res RebuildResult
	prev, err := streams.ProjectionVersion(ctx, rdb, keys)
	if err != nil {
		return res, err
	}
	v, err := streams.NewProjectionVersion(ctx, rdb, keys)
	if err != nil {
		return res, err
	}
	res.Previous, res.Version = prev, v
	nk := keys.WithProjections(v)
	group := nk.ProjectorGroup()

	evEnds, hbEnds := map[int]string{}, map[int]string{}
	for n := range keys.EventShards() {
		for _, s := range []struct {
			stream string
			ends   map[int]string
		}{{keys.EventShard(n), evEnds}, {keys.HeartbeatShard(n), hbEnds}} {
			last, err := streams.LastID(ctx, rdb, s.stream)
			if err != nil {
				return res, err
			}
			if last == "" {
				last = "0-0"
			}
			s.ends[n] = last
			if err := streams.CreateGroupAt(ctx, rdb, s.stream, group, last); err != nil {
				return res, err
			}
		}
	}
	discard := func(cause error) error {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := deleteNamespace(dctx, rdb, keys, v); err != nil {
			opts.Logger.Warn("could not delete an unused projection namespace; the next retention pass will", "version", v, "err", err)
		}
		return cause
	}

	records, err := h.foldShards(ctx, nk, evEnds, hbEnds, opts)
	if err != nil {
		return res, discard(err)
	}
	res.Records = records

	n, err := catchUp(ctx, rdb, nk, opts)
	if err != nil {
		return res, discard(err)
	}
	res.CaughtUp = n
	if err := streams.SwitchProjections(ctx, rdb, keys, prev, v, opts.Now()); err != nil {
		return res, discard(err)
	}
	opts.Logger.Info("projections switched", "from", prev, "to", v, "records", res.Records, "caught_up", n)
	return res, nil
}

// foldShards folds the history shard by shard, a few shards at a time,
// and writes each shard's records into the namespace of nk as soon as its
// fold is done, so that only the shards being folded are held in memory.
// A task's and a worker's events are all in their own shard; a job's are
// in the shards of its tasks, each task's part of the job record a guard of
// its own, so the parts of a job folded in different shards are joined
// (their fields never overlap) and written last. It returns the number of
// records written.
func (h *History) foldShards(ctx context.Context, nk streams.Keys, evEnds, hbEnds map[int]string, opts RebuildOptions) (int, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu      sync.Mutex
		jobs    = Records{}
		records int
		wg      sync.WaitGroup
	)
	sem := make(chan struct{}, max(1, min(runtime.GOMAXPROCS(0), 4)))
	for n := range h.keys.EventShards() {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f := newPlainFold()
			if err := h.Events(ctx, n, "-", evEnds[n], f.add); err != nil {
				cancel(err)
				return
			}
			if err := h.Heartbeats(ctx, n, hbEnds[n], f.add); err != nil {
				cancel(err)
				return
			}
			f.recs.Retain(opts.Now(), opts.Retention)
			shardJobs := Records{}
			for ref, r := range f.recs {
				if ref.Kind == KindJob {
					shardJobs[ref] = r
					delete(f.recs, ref)
				}
			}
			if err := writeRecords(ctx, h.rdb, nk, f.recs); err != nil {
				cancel(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			records += len(f.recs)
			for ref, r := range shardJobs {
				if jobs[ref] == nil {
					jobs[ref] = r
					continue
				}
				for k, v := range r {
					jobs[ref][k] = v
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return 0, err
	}
	if err := writeRecords(ctx, h.rdb, nk, jobs); err != nil {
		return 0, err
	}
	return records + len(jobs), nil
}

// writeRecords writes a fold into an unused namespace, with its indexes.
func writeRecords(ctx context.Context, rdb redis.UniversalClient, k streams.Keys, recs Records) error {
	refs := sortedRefs(recs)
	const batch = 500
	for i := 0; i < len(refs); i += batch {
		chunk := refs[i:min(i+batch, len(refs))]
		_, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for _, ref := range chunk {
				r := recs[ref]
				if len(r) == 0 {
					continue
				}
				args := make([]any, 0, 2*len(r))
				for f, v := range r {
					args = append(args, f, v)
				}
				pipe.HSet(ctx, recordKey(k, ref), args...)
				switch ref.Kind {
				case KindWorker:
					pipe.SAdd(ctx, k.WorkerIndex(), ref.ID)
				case KindTask:
					if at := parseTime(r["submitted_at"]); !at.IsZero() {
						pipe.ZAdd(ctx, k.TaskIndex(), redis.Z{Score: float64(at.UnixMilli()), Member: ref.ID})
					}
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("write rebuilt projections: %w", err)
		}
	}
	return nil
}

// catchUpCount is how many events a rebuild's catch-up reads at a time.
const catchUpCount = 256

// catchUp consumes the namespace's group until nothing is left, applying
// to the namespace, and returns the number of events applied.
func catchUp(ctx context.Context, rdb redis.UniversalClient, k streams.Keys, opts RebuildOptions) (int, error) {
	store := NewStoreAt(rdb, k)
	applied := 0
	for _, shards := range shardGroups(rdb, k) {
		r, err := streams.NewReader(rdb, streams.ReaderOptions{
			Streams: shards, Group: k.ProjectorGroup(), Consumer: opts.Consumer, Block: 50 * time.Millisecond,
			Count: catchUpCount, DeadLetter: k.DeadLetters(), Archives: archivesOf(k), Logger: opts.Logger,
		})
		if err != nil {
			return applied, err
		}
		for {
			msgs, err := r.Fetch(ctx, 0)
			if err != nil {
				return applied, err
			}
			if len(msgs) == 0 {
				break
			}
			head := len(msgs) < catchUpCount
			if err := store.Apply(ctx, msgs); err != nil {
				return applied, err
			}
			if err := ackAll(ctx, r, msgs); err != nil {
				return applied, err
			}
			applied += len(msgs)
			if head {
				break // at the head of the streams: the projectors take it from here
			}
		}
		for _, s := range shards {
			// Nothing of the rebuild's is pending: leave the group to the projectors.
			if err := rdb.XGroupDelConsumer(ctx, s, k.ProjectorGroup(), opts.Consumer).Err(); err != nil {
				return applied, fmt.Errorf("leave group %s on %s: %w", k.ProjectorGroup(), s, err)
			}
		}
	}
	return applied, nil
}

// deleteNamespace deletes projection namespace v: its consumer groups and
// its records and indexes.
func deleteNamespace(ctx context.Context, rdb redis.UniversalClient, keys streams.Keys, v int) error {
	group := keys.WithProjections(v).ProjectorGroup()
	for n := range keys.EventShards() {
		for _, s := range []string{keys.EventShard(n), keys.HeartbeatShard(n)} {
			groups, err := streams.Groups(ctx, rdb, s)
			if err != nil {
				return err
			}
			for _, g := range groups {
				if g == group {
					if err := streams.DestroyGroup(ctx, rdb, s, g); err != nil {
						return err
					}
				}
			}
		}
	}
	_, err := streams.DeleteKeys(ctx, rdb, keys, func(key string) bool {
		ver, ok := keys.ProjectionVersionOf(key)
		return ok && ver == v
	})
	return err
}

// Records returns every record of the store's namespace that its indexes
// reach: every indexed worker and task, and the jobs of those tasks (for
// comparing namespaces; it reads one record per round trip).
func (s *Store) Records(ctx context.Context) (Records, error) {
	k, err := s.Keys(ctx)
	if err != nil {
		return nil, err
	}
	hosts, err := s.rdb.SMembers(ctx, k.WorkerIndex()).Result()
	if err != nil {
		return nil, fmt.Errorf("read worker index: %w", err)
	}
	tasks, err := s.rdb.ZRange(ctx, k.TaskIndex(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("read task index: %w", err)
	}
	at := NewStoreAt(s.rdb, k)
	out := Records{}
	read := func(ref Ref) (Record, error) {
		r, err := at.Record(ctx, ref)
		if err == nil {
			out[ref] = r
		}
		return r, err
	}
	for _, h := range hosts {
		if _, err := read(Ref{KindWorker, h}); err != nil {
			return nil, err
		}
	}
	for _, id := range tasks {
		r, err := read(Ref{KindTask, id})
		if err != nil {
			return nil, err
		}
		if job := r["job"]; job != "" {
			if _, done := out[Ref{KindJob, job}]; !done {
				if _, err := read(Ref{KindJob, job}); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}
