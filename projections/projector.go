package projections

import (
	"context"
	"log/slog"
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
	Logger *slog.Logger
}

// Defaults of ProjectorOptions.
const (
	DefaultReclaimIdle = 30 * time.Second
	DefaultLinger      = 2 * time.Millisecond
	// lingerBelow is the batch size under which the projector lingers.
	lingerBelow = 64
)

// Projector consumes the event store shards through the projector group
// and keeps the Store up to date. Any number of projectors may run, in
// agents or on their own: they share the group, so each event is applied
// by one of them, and an event left unacknowledged by a projector that died
// is reclaimed by another after ReclaimIdle.
type Projector struct {
	rdb   redis.UniversalClient
	keys  streams.Keys
	store *Store
	opts  ProjectorOptions
}

// NewProjector returns a projector; call Run.
func NewProjector(rdb redis.UniversalClient, keys streams.Keys, store *Store, opts ProjectorOptions) *Projector {
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
	return &Projector{rdb: rdb, keys: keys, store: store, opts: opts}
}

// Run consumes until ctx is cancelled, then returns nil. Redis errors are
// logged and retried with backoff; they never end Run.
func (p *Projector) Run(ctx context.Context) error {
	// On a single node one XREADGROUP reads every shard; on Redis Cluster
	// the shards are in different slots, so each gets its own reader.
	var groups [][]string
	if _, ok := p.rdb.(*redis.ClusterClient); ok {
		for _, s := range p.keys.EventShards() {
			groups = append(groups, []string{s})
		}
	} else {
		groups = [][]string{p.keys.EventShards()}
	}
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.consume(ctx, g)
		}()
	}
	wg.Wait()
	return nil
}

func (p *Projector) consume(ctx context.Context, shards []string) {
	r, err := streams.NewReader(p.rdb, streams.ReaderOptions{
		Streams: shards, Group: streams.GroupProjector, Consumer: p.opts.Consumer,
		Block: p.opts.Block, Count: 256, DeadLetter: p.keys.DeadLetters(), Logger: p.opts.Logger,
	})
	if err != nil {
		p.opts.Logger.Error("projector cannot start", "err", err)
		return
	}
	var backoff streams.Backoff
	nextReclaim := time.Now().Add(p.opts.ReclaimIdle / 2)
	for ctx.Err() == nil {
		msgs, err := r.Fetch(ctx, 0)
		if err == nil && time.Now().After(nextReclaim) {
			var more []streams.Message
			more, err = r.Reclaim(ctx, p.opts.ReclaimIdle, 0)
			msgs = append(msgs, more...)
			nextReclaim = time.Now().Add(p.opts.ReclaimIdle / 2)
		}
		if err == nil {
			err = p.apply(ctx, r, msgs)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.Rewind()
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

func (p *Projector) apply(ctx context.Context, r *streams.Reader, msgs []streams.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := p.store.Apply(ctx, msgs); err != nil {
		return err
	}
	byStream := map[string][]string{}
	for _, m := range msgs {
		byStream[m.Stream] = append(byStream[m.Stream], m.ID)
	}
	return r.AckAll(ctx, byStream)
}
