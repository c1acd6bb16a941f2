package streams

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
)

// ClusterMeta is what `cluster init` records about a cluster.
type ClusterMeta struct {
	ID        string
	CreatedAt time.Time
	CreatedBy string
	Shards    int
}

// Init records the cluster's metadata and creates its streams and
// consumer groups. It reports existing metadata instead when the cluster
// was initialized before (created is then false).
func Init(ctx context.Context, rdb redis.UniversalClient, keys Keys, actor string) (meta ClusterMeta, created bool, err error) {
	id := ulid.Make().String()
	now := time.Now().UTC()
	ok, err := rdb.HSetNX(ctx, keys.Meta(), "id", id).Result()
	if err != nil {
		return meta, false, fmt.Errorf("init cluster %s: %w", keys.Cluster, err)
	}
	if ok {
		if err := rdb.HSet(ctx, keys.Meta(), "created_at", now.Format(time.RFC3339), "created_by", actor).Err(); err != nil {
			return meta, false, fmt.Errorf("init cluster %s: %w", keys.Cluster, err)
		}
		if err := rdb.HSetNX(ctx, keys.Meta(), "shards", keys.shards()).Err(); err != nil {
			return meta, false, err
		}
	}
	for n, s := range keys.EventShards() {
		if err := EnsureGroupAtWatermark(ctx, rdb, s, keys.ArchiveState(n), keys.ProjectorGroup()); err != nil {
			return meta, false, err
		}
		if err := EnsureGroup(ctx, rdb, keys.HeartbeatShard(n), keys.ProjectorGroup()); err != nil {
			return meta, false, err
		}
	}
	m, err := rdb.HGetAll(ctx, keys.Meta()).Result()
	if err != nil {
		return meta, false, err
	}
	meta = ClusterMeta{ID: m["id"], CreatedBy: m["created_by"]}
	meta.CreatedAt, _ = time.Parse(time.RFC3339, m["created_at"])
	fmt.Sscan(m["shards"], &meta.Shards)
	return meta, ok, nil
}

// Meta returns the cluster's metadata; ID is empty if `cluster init` never
// ran (the cluster may still have keys, written by agents or commands).
func Meta(ctx context.Context, rdb redis.UniversalClient, keys Keys) (ClusterMeta, error) {
	m, err := rdb.HGetAll(ctx, keys.Meta()).Result()
	if err != nil {
		return ClusterMeta{}, fmt.Errorf("read cluster %s metadata: %w", keys.Cluster, err)
	}
	meta := ClusterMeta{ID: m["id"], CreatedBy: m["created_by"]}
	meta.CreatedAt, _ = time.Parse(time.RFC3339, m["created_at"])
	fmt.Sscan(m["shards"], &meta.Shards)
	return meta, nil
}

// forEachNode runs f on every master of a Redis Cluster, or on the one node.
func forEachNode(ctx context.Context, rdb redis.UniversalClient, f func(context.Context, *redis.Client) error) error {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return f(ctx, c)
		})
	}
	if c, ok := rdb.(*redis.Client); ok {
		return f(ctx, c)
	}
	return fmt.Errorf("unsupported client %T", rdb)
}

// CountKeys returns how many keys the cluster has (SCAN over every node).
func CountKeys(ctx context.Context, rdb redis.UniversalClient, keys Keys) (int, error) {
	n := 0
	err := forEachNode(ctx, rdb, func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, keys.Prefix()+"*", 1000).Iterator()
		for iter.Next(ctx) {
			n++
		}
		return iter.Err()
	})
	return n, err
}

// DeleteCluster deletes every key of the cluster, on every node, and no
// other: the prefix "celeroot:<cluster>:" ends with a colon, so cluster
// "prod" never matches "prod-eu". It returns the number deleted.
func DeleteCluster(ctx context.Context, rdb redis.UniversalClient, keys Keys) (int, error) {
	deleted, err := DeleteKeys(ctx, rdb, keys, func(string) bool { return true })
	if err != nil {
		return deleted, fmt.Errorf("delete cluster %s: %w", keys.Cluster, err)
	}
	return deleted, nil
}
