package projections

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/celeroot/celeroot/streams"
	"github.com/redis/go-redis/v9"
)

// ProjectorOptions configures a Projector.
type ProjectorOptions struct {
	// Consumer names this projector in the projector group; unique per
	// process (hostname and pid).
	Consumer string
	// Block bounds one blocking read. Default streams.DefaultBlock.
	Block time.Duration
	// ReclaimIdle is how long an entry may stay unacknowledged by another
	// projector before this one takes it over. Default 30s.
	ReclaimIdle time.Duration
	// Linger is how long the projector waits after applying a small batch
	// before it reads again, so that events arriving one by one are applied
	// a few at a time: it bounds the extra projection lag and saves three
	// round trips per event at low rates. Default 2ms; negative for none.
	Linger time.Duration
	// Adopt, if set, names the consumers that were earlier runs of this
	// projector (the same host before a restart): their unacknowledged
	// entries are taken over at start, without waiting for ReclaimIdle.
	Adopt  func(consumer string) bool
	Logger *slog.Logger
}

// Defaults of ProjectorOptions.
const (
	DefaultReclaimIdle = 30 * time.Second
	DefaultLinger      = 2 * time.Millisecond
	// lingerBelow is the batch size under which the projector lingers.
	lingerBelow = 64
)

// Projector consumes the event store and heartbeat shards through the
// group of the served projection namespace and keeps that namespace up to
// date. Any number of projectors may run, in agents or on their own: they
// share the group, so each event is applied by one of them, and an event
// left unacknowledged by a projector that died is reclaimed by another
// after ReclaimIdle. When a rebuild switches the served namespace, every
// projector moves to the new namespace's group within about a second.
type Projector struct {
	rdb  redis.UniversalClient
	keys streams.Keys
	opts ProjectorOptions

	mu      sync.Mutex
	served  int
	checked time.Time
}

// NewProjector returns a projector; call Run.
func NewProjector(rdb redis.UniversalClient, keys streams.Keys, opts ProjectorOptions) *Projector {
	if opts.Block <= 0 {
		opts.Block = streams.DefaultBlock
	}
	if opts.ReclaimIdle <= 0 {
		opts.ReclaimIdle = DefaultReclaimIdle
	}
	if opts.Linger == 0 {
		opts.Linger = DefaultLinger
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Projector{rdb: rdb, keys: keys, opts: opts, served: keys.Projections}
}

// Run consumes until ctx is cancelled, then returns nil. Redis errors are
// logged and retried with backoff; they never end Run.
func (p *Projector) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, g := range shardGroups(p.rdb, p.keys) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.consume(ctx, g)
		}()
	}
	wg.Wait()
	return nil
}

// shardGroups splits the streams a projector reads into the sets one
// XREADGROUP can read: on a single node every event store and heartbeat
// shard at once; on Redis Cluster, where the shards are in different
// slots, each shard's two streams (they share a hash tag).
func shardGroups(rdb redis.UniversalClient, k streams.Keys) [][]string {
	if _, ok := rdb.(*redis.ClusterClient); ok {
		var out [][]string
		for n := range k.EventShards() {
			out = append(out, []string{k.EventShard(n), k.HeartbeatShard(n)})
		}
		return out
	}
	return [][]string{append(k.EventShards(), k.HeartbeatShards()...)}
}

// archivesOf maps every event store shard to its archive state hash, for
// streams.ReaderOptions.Archives.
func archivesOf(k streams.Keys) map[string]string {
	m := map[string]string{}
	for n, s := range k.EventShards() {
		m[s] = k.ArchiveState(n)
	}
	return m
}

// version returns the served namespace, looked up at most every
// versionRefresh (at once with force).
func (p *Projector) version(ctx context.Context, force bool) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !force && time.Since(p.checked) < versionRefresh {
		return p.served, nil
	}
	v, err := streams.ProjectionVersion(ctx, p.rdb, p.keys)
	if err != nil {
		return p.served, err
	}
	p.served, p.checked = v, time.Now()
	return v, nil
}

func (p *Projector) consume(ctx context.Context, shards []string) {
	var (
		r       *streams.Reader
		store   *Store
		current = -1
		backoff streams.Backoff
		force   bool
		adopt   bool
	)
	nextReclaim := time.Now().Add(p.opts.ReclaimIdle / 2)
	for ctx.Err() == nil {
		v, err := p.version(ctx, force)
		force = false
		if err == nil && v != current {
			k := p.keys.WithProjections(v)
			r, err = streams.NewReader(p.rdb, streams.ReaderOptions{
				Streams: shards, Group: k.ProjectorGroup(), Consumer: p.opts.Consumer,
				Block: p.opts.Block, Count: 256, DeadLetter: k.DeadLetters(), Archives: archivesOf(k), Logger: p.opts.Logger,
			})
			if err != nil {
				p.opts.Logger.Error("projector cannot start", "err", err)
				return
			}
			if current >= 0 {
				p.opts.Logger.Info("projector moved to the rebuilt projections", "from", current, "to", v)
			}
			store, current = NewStoreAt(p.rdb, k), v
			adopt = p.opts.Adopt != nil
		}
		var msgs []streams.Message
		if err == nil && adopt {
			if msgs, err = r.Adopt(ctx, p.opts.Adopt, 0); err == nil && len(msgs) == 0 {
				adopt = false
			} else if err == nil {
				p.opts.Logger.Info("projector took over the entries of its previous run", "entries", len(msgs))
			}
		}
		if err == nil && len(msgs) == 0 {
			msgs, err = r.Fetch(ctx, 0)
		}
		if err == nil && time.Now().After(nextReclaim) {
			var more []streams.Message
			more, err = r.Reclaim(ctx, p.opts.ReclaimIdle, 0)
			msgs = append(msgs, more...)
			nextReclaim = time.Now().Add(p.opts.ReclaimIdle / 2)
		}
		if err == nil && len(msgs) > 0 {
			if err = store.Apply(ctx, msgs); err == nil {
				err = ackAll(ctx, r, msgs)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// A group that is gone was retired by a rebuild's switch:
			// look at the served namespace now rather than recreate it.
			force = strings.Contains(err.Error(), "NOGROUP")
			if r != nil {
				r.Rewind()
			}
			d := backoff.Next()
			p.opts.Logger.Warn("projector: retrying", "err", err, "in", d)
			streams.Sleep(ctx, d)
			continue
		}
		backoff.Reset()
		if n := len(msgs); n > 0 && n < lingerBelow && p.opts.Linger > 0 {
			streams.Sleep(ctx, p.opts.Linger)
		}
	}
}

// ackAll acknowledges applied messages, per stream.
func ackAll(ctx context.Context, r *streams.Reader, msgs []streams.Message) error {
	byStream := map[string][]string{}
	for _, m := range msgs {
		byStream[m.Stream] = append(byStream[m.Stream], m.ID)
	}
	return r.AckAll(ctx, byStream)
}
