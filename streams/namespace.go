package streams

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Fields of the cluster metadata hash that name the projection namespaces.
const (
	// metaProjections is the version status commands read (absent: 0).
	metaProjections = "projections"
	// metaProjectionsSeq hands out new versions to rebuilds.
	metaProjectionsSeq = "projections_seq"
	// metaProjectionsSwitched is when the served version last changed (ms).
	metaProjectionsSwitched = "projections_switched_ms"
	// metaProjectionsCollected is the served version whose predecessors
	// have all been deleted.
	metaProjectionsCollected = "projections_collected"
)

// Namespaces says which projection namespace is served and whether older
// ones are still waiting to be deleted.
type Namespaces struct {
	// Current is the version status commands read and projectors maintain.
	Current int
	// SwitchedAt is when Current became current (zero if it always was).
	SwitchedAt time.Time
	// Collected is true once every other namespace has been deleted.
	Collected bool
}

// ProjectionNamespaces reads the namespace state of the cluster.
func ProjectionNamespaces(ctx context.Context, rdb redis.UniversalClient, keys Keys) (Namespaces, error) {
	vals, err := rdb.HMGet(ctx, keys.Meta(), metaProjections, metaProjectionsSwitched, metaProjectionsCollected).Result()
	if err != nil {
		return Namespaces{}, fmt.Errorf("read projection version of cluster %s: %w", keys.Cluster, err)
	}
	var ns Namespaces
	if s, ok := vals[0].(string); ok {
		if ns.Current, err = strconv.Atoi(s); err != nil || ns.Current < 0 {
			return Namespaces{}, fmt.Errorf("cluster %s metadata: projections %q is not a version number", keys.Cluster, s)
		}
	}
	if s, ok := vals[1].(string); ok {
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
			ns.SwitchedAt = time.UnixMilli(ms)
		}
	}
	collected, _ := vals[2].(string)
	ns.Collected = ns.SwitchedAt.IsZero() || collected == strconv.Itoa(ns.Current)
	return ns, nil
}

// ProjectionVersion returns the projection namespace currently served.
func ProjectionVersion(ctx context.Context, rdb redis.UniversalClient, keys Keys) (int, error) {
	ns, err := ProjectionNamespaces(ctx, rdb, keys)
	return ns.Current, err
}

// NewProjectionVersion hands out a version no rebuild has used before.
func NewProjectionVersion(ctx context.Context, rdb redis.UniversalClient, keys Keys) (int, error) {
	v, err := rdb.HIncrBy(ctx, keys.Meta(), metaProjectionsSeq, 1).Result()
	if err != nil {
		return 0, fmt.Errorf("allocate a projection version for cluster %s: %w", keys.Cluster, err)
	}
	return int(v), nil
}

// switchScript makes ARGV[2] the served projection version if ARGV[1] still
// is; ARGV[3] is the time in ms.
var switchScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'projections') or '0'
if cur ~= ARGV[1] then return cur end
redis.call('HSET', KEYS[1], 'projections', ARGV[2], 'projections_switched_ms', ARGV[3])
return 'ok'
`)

// ErrSwitched is returned when another rebuild switched the projections
// first.
var ErrSwitched = errors.New("streams: the projections were switched by someone else")

// SwitchProjections makes version to the served namespace, atomically, if
// from is still the served one; otherwise it fails with ErrSwitched.
func SwitchProjections(ctx context.Context, rdb redis.UniversalClient, keys Keys, from, to int, now time.Time) error {
	res, err := switchScript.Run(ctx, rdb, []string{keys.Meta()}, from, to, now.UnixMilli()).Text()
	if err != nil {
		return fmt.Errorf("switch cluster %s to projections v%d: %w", keys.Cluster, to, err)
	}
	if res != "ok" {
		return fmt.Errorf("switch from v%d to v%d: now serving v%s: %w", from, to, res, ErrSwitched)
	}
	return nil
}

// MarkCollected records that every namespace other than version has been
// deleted, if version is still the served one.
func MarkCollected(ctx context.Context, rdb redis.UniversalClient, keys Keys, version int) error {
	err := markCollectedScript.Run(ctx, rdb, []string{keys.Meta()}, version).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("record the old projections of cluster %s as deleted: %w", keys.Cluster, err)
	}
	return nil
}

var markCollectedScript = redis.NewScript(`
if (redis.call('HGET', KEYS[1], 'projections') or '0') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'projections_collected', ARGV[1])
end
return 1
`)

// DeleteKeys deletes every key of the cluster for which match is true, on
// every node (one SCAN over the cluster's prefix, then UNLINK one key per
// command, since the keys of a batch may be in different slots). It
// returns the number deleted.
func DeleteKeys(ctx context.Context, rdb redis.UniversalClient, keys Keys, match func(key string) bool) (int, error) {
	deleted := 0
	err := forEachNode(ctx, rdb, func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, keys.Prefix()+"*", 1000).Iterator()
		var batch []string
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			pipe := c.Pipeline()
			for _, k := range batch {
				pipe.Unlink(ctx, k)
			}
			_, err := pipe.Exec(ctx)
			deleted += len(batch)
			batch = batch[:0]
			return err
		}
		for iter.Next(ctx) {
			if k := iter.Val(); match(k) {
				batch = append(batch, k)
			}
			if len(batch) == 500 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		return flush()
	})
	return deleted, err
}
