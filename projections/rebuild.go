package projections

import (
	"context"
	"fmt"
	"sort"

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

// Verify folds the whole history and compares every record with the
// stored projection, guard by guard. A guard whose stored order differs
// from the fold's is in flux (an event arrived between the fold and the
// read, or a projector is behind) and is not compared; fields stored but
// unknown to the history are reported. Records that exist only in the
// store (their events were trimmed) are not reported.
func Verify(ctx context.Context, rdb redis.UniversalClient, keys streams.Keys) ([]Mismatch, int, error) {
	recs := Records{}
	fieldsOf := map[Ref]map[string][]string{} // guard -> fields
	for _, shard := range keys.EventShards() {
		err := streams.Replay(ctx, rdb, shard, "-", "+", 0, func(e streams.Entry) error {
			if e.Err != nil {
				return nil
			}
			for _, p := range Reduce(e.Envelope, e.ID) {
				recs.Apply(p)
				g := fieldsOf[p.Ref]
				if g == nil {
					g = map[string][]string{}
					fieldsOf[p.Ref] = g
				}
				if g[p.Guard] == nil {
					for k := range p.Fields {
						g[p.Guard] = append(g[p.Guard], k)
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, 0, err
		}
	}
	store := NewStore(rdb, keys)
	refs := sortedRefs(recs)
	var out []Mismatch
	for _, ref := range refs {
		got, err := store.Record(ctx, ref)
		if err != nil {
			return nil, 0, err
		}
		want := recs[ref]
		m := Mismatch{Ref: ref, Stored: map[string]string{}, Folded: map[string]string{}}
		known := map[string]bool{}
		for guard, fields := range fieldsOf[ref] {
			vf := VersionPrefix + guard
			known[vf] = true
			for _, k := range fields {
				known[k] = true
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

// replaceScript replaces a record with the given fields, atomically.
var replaceScript = redis.NewScript(`
redis.call('DEL', KEYS[1])
if #ARGV > 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return 1
`)

// Rebuild folds the whole history and replaces every projection record
// with the fold's, each record atomically, then applies again what was
// appended while it worked (guards make that idempotent). It returns the
// number of records written.
func Rebuild(ctx context.Context, rdb redis.UniversalClient, keys streams.Keys) (int, error) {
	// Remember where each shard ended before folding, to catch up after.
	ends := map[string]string{}
	for _, shard := range keys.EventShards() {
		last, err := streams.Last(ctx, rdb, shard, 1, "-")
		if err != nil {
			return 0, err
		}
		ends[shard] = "0-0"
		if len(last) == 1 {
			ends[shard] = last[0].ID
		}
	}
	recs := Records{}
	for _, shard := range keys.EventShards() {
		err := streams.Replay(ctx, rdb, shard, "-", ends[shard], 0, func(e streams.Entry) error {
			if e.Err == nil {
				for _, p := range Reduce(e.Envelope, e.ID) {
					recs.Apply(p)
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	store := NewStore(rdb, keys)
	refs := sortedRefs(recs)
	const batch = 500
	for i := 0; i < len(refs); i += batch {
		chunk := refs[i:min(i+batch, len(refs))]
		_, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for _, ref := range chunk {
				args := make([]any, 0, 2*len(recs[ref]))
				fields := make([]string, 0, len(recs[ref]))
				for k := range recs[ref] {
					fields = append(fields, k)
				}
				sort.Strings(fields)
				for _, k := range fields {
					args = append(args, k, recs[ref][k])
				}
				replaceScript.Eval(ctx, pipe, []string{store.recordKey(ref)}, args...)
				switch ref.Kind {
				case KindWorker:
					pipe.SAdd(ctx, keys.WorkerIndex(), ref.ID)
				case KindTask:
					if t, ok := recs.Task(ref.ID); ok && !t.SubmittedAt.IsZero() {
						pipe.ZAdd(ctx, keys.TaskIndex(), redis.Z{Score: float64(t.SubmittedAt.UnixMilli()), Member: ref.ID})
					}
				}
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("write rebuilt projections: %w", err)
		}
	}
	// Catch up with what the projectors applied meanwhile.
	for _, shard := range keys.EventShards() {
		for after := ends[shard]; ; {
			entries, err := streams.After(ctx, rdb, shard, after, 500)
			if err != nil {
				return 0, err
			}
			var msgs []streams.Message
			for _, e := range entries {
				after = e.ID
				if e.Err == nil {
					msgs = append(msgs, streams.Message{Stream: shard, ID: e.ID, Envelope: e.Envelope})
				}
			}
			if err := store.Apply(ctx, msgs); err != nil {
				return 0, err
			}
			if len(entries) < 500 {
				break
			}
		}
	}
	return len(refs), nil
}
