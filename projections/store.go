package projections

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/celeroot/celeroot/streams"
	"github.com/redis/go-redis/v9"
)

// ErrNotFound is returned for a worker or task with no projection.
var ErrNotFound = errors.New("projections: not found")

// applyScript applies patches to the records KEYS, all in one slot: each
// guard's fields are written only if the patch's order (a stream entry ID)
// is newer than the guard's current order, compared as numbers (as
// strings, "9-0" would sort after "10-0"). Per record, ARGV holds the
// number of guards g, then each guard's number of fields, then per guard
// the field holding its order (VersionPrefix and its name), its order, and
// its field/value pairs: a guard's arguments are an HSET's, and a record's
// guards together too. A record costs one HMGET and, when every guard is
// newer (the usual case), one HSET of its arguments as they are passed;
// otherwise one HSET per newer guard. Each guard appears at most once per
// record (the caller keeps the newest patch of a guard).
var applyScript = redis.NewScript(`
local function newer(a, b)
  if not b then return true end
  local da, db = string.find(a, '-', 1, true), string.find(b, '-', 1, true)
  if not db then return true end
  -- The same number of digits in both parts: the strings compare as the numbers do.
  if da == db and #a == #b then return a > b end
  local am, as = tonumber(string.sub(a, 1, da - 1)), tonumber(string.sub(a, da + 1))
  local bm, bs = tonumber(string.sub(b, 1, db - 1)), tonumber(string.sub(b, db + 1))
  if not bm or not bs then return true end
  return am > bm or (am == bm and as > bs)
end
local i, applied = 1, 0
for k = 1, #KEYS do
  local g = tonumber(ARGV[i])
  local names, at = {}, {}
  local p = i + 1 + g
  for x = 1, g do
    at[x] = p
    names[x] = ARGV[p]
    p = p + 2 + 2 * tonumber(ARGV[i + x])
  end
  at[g + 1] = p
  local cur = redis.call('HMGET', KEYS[k], unpack(names))
  local fresh, n = {}, 0
  for x = 1, g do
    fresh[x] = newer(ARGV[at[x] + 1], cur[x])
    if fresh[x] then n = n + 1 end
  end
  if n == g then
    redis.call('HSET', KEYS[k], unpack(ARGV, at[1], p - 1))
  elseif n > 0 then
    for x = 1, g do
      if fresh[x] then redis.call('HSET', KEYS[k], unpack(ARGV, at[x], at[x + 1] - 1)) end
    end
  end
  applied = applied + n
  i = p
end
return applied
`)

// maxRecordsPerCall bounds the records one applyScript call updates, and
// maxGuardsPerRecord the guards of one record in it: a Lua call unpacks at
// most about 8000 values, and one record's HSET is at most 128 guards of
// at most 13 fields (a submission's) each, 3,584 values.
const (
	maxRecordsPerCall  = 128
	maxGuardsPerRecord = 128
)

// Store keeps projections in Redis hashes and answers queries on them.
//
// Projections are versioned (see streams.Keys.Projections): Apply writes
// the namespace the store was made for, and the queries of a store made
// with NewStore read the namespace the cluster serves, which a rebuild
// switches; they look it up at most every versionRefresh, so a
// long-running process follows a switch within about a second.
type Store struct {
	rdb  redis.UniversalClient
	keys streams.Keys
	// follow makes queries read the served namespace, not keys.Projections.
	follow bool

	mu      sync.Mutex
	served  int
	checked time.Time
}

// versionRefresh bounds how stale a following store's idea of the served
// projection namespace may be.
const versionRefresh = time.Second

// NewStore returns the projection store of the cluster named by keys: its
// queries read the namespace the cluster serves; Apply writes
// keys.Projections.
func NewStore(rdb redis.UniversalClient, keys streams.Keys) *Store {
	return &Store{rdb: rdb, keys: keys, follow: true}
}

// NewStoreAt returns a store bound to projection namespace
// keys.Projections, for queries and Apply alike (a projector's, a
// rebuild's).
func NewStoreAt(rdb redis.UniversalClient, keys streams.Keys) *Store {
	return &Store{rdb: rdb, keys: keys}
}

// Keys returns the key builder of the namespace the store's queries read.
func (s *Store) Keys(ctx context.Context) (streams.Keys, error) {
	if !s.follow {
		return s.keys, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.checked) < versionRefresh {
		return s.keys.WithProjections(s.served), nil
	}
	v, err := streams.ProjectionVersion(ctx, s.rdb, s.keys)
	if err != nil {
		return streams.Keys{}, err
	}
	s.served, s.checked = v, time.Now()
	return s.keys.WithProjections(v), nil
}

func (s *Store) recordKey(ref Ref) string { return recordKey(s.keys, ref) }

func recordKey(k streams.Keys, ref Ref) string {
	switch ref.Kind {
	case KindWorker:
		return k.WorkerProjection(ref.ID)
	case KindJob:
		return k.JobProjection(ref.ID)
	}
	return k.TaskProjection(ref.ID)
}

// patchSet is the patches of one record in a batch, a guard at most once.
type patchSet struct {
	key     string
	patches []Patch
}

// Apply reduces msgs and applies the patches, in one pipeline: one script
// call per slot for the records that share it (at most maxRecordsPerCall
// each), plus the index updates. It is idempotent: applying the same
// messages again changes nothing.
func (s *Store) Apply(ctx context.Context, msgs []streams.Message) error {
	type guardRef struct {
		Ref
		guard string
	}
	var (
		recs    []*patchSet
		byRef   = make(map[Ref]*patchSet, len(msgs))
		byGuard = make(map[guardRef]int, len(msgs)) // where a guard's patch is in its record
		workers []any
		tasks   []redis.Z
	)
	for _, m := range msgs {
		for _, p := range Reduce(m.Envelope, m.ID) {
			r := byRef[p.Ref]
			if r == nil {
				r = &patchSet{key: s.recordKey(p.Ref)}
				byRef[p.Ref] = r
				recs = append(recs, r)
				if p.Ref.Kind == KindWorker {
					workers = append(workers, p.Ref.ID)
				}
			}
			// Of two patches of one guard, only the newer can apply.
			if i, ok := byGuard[guardRef{p.Ref, p.Guard}]; !ok {
				byGuard[guardRef{p.Ref, p.Guard}] = len(r.patches)
				r.patches = append(r.patches, p)
			} else if Newer(p.Order, r.patches[i].Order) {
				r.patches[i] = p
			}
			if p.Ref.Kind == KindTask && p.Guard == "sub" {
				tasks = append(tasks, redis.Z{Score: float64(m.Envelope.Time.UnixMilli()), Member: p.Ref.ID})
			}
		}
	}
	if len(recs) == 0 {
		return nil
	}
	// Records of one slot go in one call (at most maxRecordsPerCall); a
	// call's arguments are a stretch of one slice, sized for every call.
	type call struct {
		keys     []string
		from, to int // its arguments: args[from:to]
	}
	var (
		tags   []string
		bySlot = map[string][]*patchSet{}
		n      int
	)
	for _, r := range recs {
		tag := streams.HashTag(r.key)
		if bySlot[tag] == nil {
			tags = append(tags, tag)
		}
		bySlot[tag] = append(bySlot[tag], r)
		for _, p := range r.patches {
			n += 3 + 2*len(p.Fields)
		}
	}
	args := make([]any, 0, n+len(recs))
	var calls []call
	for _, tag := range tags {
		fresh := true
		for _, r := range bySlot[tag] {
			// A record with many guards (a large job) is sent in parts, so
			// no part exceeds what one Lua call can unpack.
			for part := range slices.Chunk(r.patches, maxGuardsPerRecord) {
				if fresh || len(calls[len(calls)-1].keys) == maxRecordsPerCall {
					calls = append(calls, call{from: len(args)})
					fresh = false
				}
				c := &calls[len(calls)-1]
				c.keys = append(c.keys, r.key)
				args = append(args, len(part))
				for _, p := range part {
					args = append(args, len(p.Fields))
				}
				for _, p := range part {
					args = append(args, VersionPrefix+p.Guard, p.Order)
					for _, f := range p.Fields {
						args = append(args, f.Name, f.Value)
					}
				}
				c.to = len(args)
			}
		}
	}
	run := func() error {
		_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for _, c := range calls {
				applyScript.EvalSha(ctx, pipe, c.keys, args[c.from:c.to]...)
			}
			if len(workers) > 0 {
				pipe.SAdd(ctx, s.keys.WorkerIndex(), workers...)
			}
			if len(tasks) > 0 {
				pipe.ZAdd(ctx, s.keys.TaskIndex(), tasks...)
			}
			return nil
		})
		return err
	}
	err := run()
	if err != nil && strings.Contains(err.Error(), "NOSCRIPT") {
		if lerr := applyScript.Load(ctx, s.rdb).Err(); lerr != nil {
			return fmt.Errorf("load projection script: %w", lerr)
		}
		err = run()
	}
	if err != nil {
		return fmt.Errorf("apply %d events to projections: %w", len(msgs), err)
	}
	return nil
}

// Worker returns the projection of one worker.
func (s *Store) Worker(ctx context.Context, host string) (Worker, error) {
	k, err := s.Keys(ctx)
	if err != nil {
		return Worker{}, err
	}
	r, err := s.rdb.HGetAll(ctx, k.WorkerProjection(host)).Result()
	if err != nil {
		return Worker{}, fmt.Errorf("read worker %s: %w", host, err)
	}
	if len(r) == 0 {
		return Worker{}, fmt.Errorf("worker %s: %w", host, ErrNotFound)
	}
	return WorkerFromRecord(host, r), nil
}

// Workers returns every worker, sorted by role and hostname.
func (s *Store) Workers(ctx context.Context) ([]Worker, error) {
	k, err := s.Keys(ctx)
	if err != nil {
		return nil, err
	}
	hosts, err := s.rdb.SMembers(ctx, k.WorkerIndex()).Result()
	if err != nil {
		return nil, fmt.Errorf("read worker index: %w", err)
	}
	cmds := make([]*redis.MapStringStringCmd, len(hosts))
	_, err = s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, h := range hosts {
			cmds[i] = pipe.HGetAll(ctx, k.WorkerProjection(h))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read workers: %w", err)
	}
	out := make([]Worker, 0, len(hosts))
	for i, h := range hosts {
		if r := cmds[i].Val(); len(r) > 0 {
			out = append(out, WorkerFromRecord(h, r))
		}
	}
	sortWorkers(out)
	return out, nil
}

// stateFields are the fields of a worker record that its role, state and
// config revision are derived from (see WorkerFromRecord).
var stateFields = []string{"role", "version", "pid", "registered_at", "last_heartbeat", "running", "revision", "draining",
	"hb_interval_ms", "heartbeat_ms", "left_at", "left_reason", "exp_role", "expected_at",
	VersionPrefix + "left", VersionPrefix + "reg", VersionPrefix + "hb", VersionPrefix + "exp", VersionPrefix + "rm"}

// WorkerStates returns every worker as Workers does, but read without its
// labels, tasks and plugins: what `cluster status` needs (role, state,
// revision), for a fraction of the bytes and none of the JSON decoding.
func (s *Store) WorkerStates(ctx context.Context) ([]Worker, error) {
	k, err := s.Keys(ctx)
	if err != nil {
		return nil, err
	}
	hosts, err := s.rdb.SMembers(ctx, k.WorkerIndex()).Result()
	if err != nil {
		return nil, fmt.Errorf("read worker index: %w", err)
	}
	cmds := make([]*redis.SliceCmd, len(hosts))
	_, err = s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, h := range hosts {
			cmds[i] = pipe.HMGet(ctx, k.WorkerProjection(h), stateFields...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read workers: %w", err)
	}
	out := make([]Worker, 0, len(hosts))
	r := Record{}
	for i, h := range hosts {
		clear(r)
		for j, v := range cmds[i].Val() {
			if v, ok := v.(string); ok {
				r[stateFields[j]] = v
			}
		}
		if len(r) > 0 {
			out = append(out, WorkerFromRecord(h, r))
		}
	}
	sortWorkers(out)
	return out, nil
}

func sortWorkers(out []Worker) {
	sort.Slice(out, func(i, j int) bool {
		if out[i].Role != out[j].Role {
			return out[i].Role < out[j].Role
		}
		return out[i].Hostname < out[j].Hostname
	})
}

// Task returns the projection of one task.
func (s *Store) Task(ctx context.Context, id string) (Task, error) {
	k, err := s.Keys(ctx)
	if err != nil {
		return Task{}, err
	}
	r, err := s.rdb.HGetAll(ctx, k.TaskProjection(id)).Result()
	if err != nil {
		return Task{}, fmt.Errorf("read task %s: %w", id, err)
	}
	if len(r) == 0 {
		return Task{}, fmt.Errorf("task %s: %w", id, ErrNotFound)
	}
	return TaskFromRecord(id, r), nil
}

// Tasks returns up to n tasks, newest first, skipping the offset newest.
func (s *Store) Tasks(ctx context.Context, offset, n int64) ([]Task, error) {
	k, err := s.Keys(ctx)
	if err != nil {
		return nil, err
	}
	ids, err := s.rdb.ZRevRange(ctx, k.TaskIndex(), offset, offset+n-1).Result()
	if err != nil {
		return nil, fmt.Errorf("read task index: %w", err)
	}
	return s.TasksByID(ctx, ids)
}

// TasksByID returns the tasks of ids that have a projection, in the order
// of ids, in one round trip.
func (s *Store) TasksByID(ctx context.Context, ids []string) ([]Task, error) {
	k, err := s.Keys(ctx)
	if err != nil {
		return nil, err
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = pipe.HGetAll(ctx, k.TaskProjection(id))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read tasks: %w", err)
	}
	out := make([]Task, 0, len(ids))
	for i, id := range ids {
		if r := cmds[i].Val(); len(r) > 0 {
			out = append(out, TaskFromRecord(id, r))
		}
	}
	return out, nil
}

// Record returns the raw record of a worker or task (for rebuild checks).
func (s *Store) Record(ctx context.Context, ref Ref) (Record, error) {
	k, err := s.Keys(ctx)
	if err != nil {
		return nil, err
	}
	r, err := s.rdb.HGetAll(ctx, recordKey(k, ref)).Result()
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", ref.Kind, ref.ID, err)
	}
	return r, nil
}

// Job returns a fan-out job with its tasks.
func (s *Store) Job(ctx context.Context, id string) (Job, error) {
	k, err := s.Keys(ctx)
	if err != nil {
		return Job{}, err
	}
	r, err := s.rdb.HGetAll(ctx, k.JobProjection(id)).Result()
	if err != nil {
		return Job{}, fmt.Errorf("read job %s: %w", id, err)
	}
	if len(r) == 0 {
		return Job{}, fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	job := JobFromRecord(id, r)
	cmds := make([]*redis.MapStringStringCmd, len(job.TaskIDs))
	_, err = s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, t := range job.TaskIDs {
			cmds[i] = pipe.HGetAll(ctx, k.TaskProjection(t))
		}
		return nil
	})
	if err != nil {
		return Job{}, fmt.Errorf("read tasks of job %s: %w", id, err)
	}
	for i, t := range job.TaskIDs {
		job.Tasks = append(job.Tasks, TaskFromRecord(t, cmds[i].Val()))
	}
	return job, nil
}

// CountEnded returns how many of the tasks ids have ended (an outcome,
// dead-lettered, expired or cancelled), reading only the fields that say
// so, in pipelines of a thousand.
func (s *Store) CountEnded(ctx context.Context, ids []string) (int, error) {
	k, err := s.Keys(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), 1000)]
		ids = ids[len(chunk):]
		cmds := make([]*redis.SliceCmd, len(chunk))
		_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for i, id := range chunk {
				cmds[i] = pipe.HMGet(ctx, k.TaskProjection(id), "outcome", "dead_at", "ended_at")
			}
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("read tasks: %w", err)
		}
		for _, c := range cmds {
			for _, v := range c.Val() {
				if s, ok := v.(string); ok && s != "" {
					n++
					break
				}
			}
		}
	}
	return n, nil
}
