package streams

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// StreamStat describes a stream and one consumer group on it.
type StreamStat struct {
	Stream string `json:"stream"`
	// Length is the number of entries kept.
	Length int64 `json:"length"`
	// Pending is the number of entries read by the group but not
	// acknowledged; OldestPending is how long the oldest has waited.
	Pending       int64         `json:"pending"`
	OldestPending time.Duration `json:"oldest_pending_ns"`
	// Lag is the number of entries the group has not read yet; -1 when
	// Redis cannot tell.
	Lag int64 `json:"lag"`
}

// Stat returns the state of stream as seen by group. A stream that does
// not exist yet is empty.
func Stat(ctx context.Context, rdb redis.UniversalClient, stream, group string) (StreamStat, error) {
	st := StreamStat{Stream: stream, Lag: -1}
	n, err := rdb.XLen(ctx, stream).Result()
	if err != nil {
		return st, fmt.Errorf("length of %s: %w", stream, err)
	}
	st.Length = n
	if n == 0 {
		st.Lag = 0
		return st, nil
	}
	groups, err := rdb.XInfoGroups(ctx, stream).Result()
	if err != nil && !strings.Contains(err.Error(), "no such key") {
		return st, fmt.Errorf("groups of %s: %w", stream, err)
	}
	found := false
	for _, g := range groups {
		if g.Name == group {
			st.Pending, st.Lag, found = g.Pending, g.Lag, true
		}
	}
	if !found {
		st.Lag = n // nobody has read anything
		return st, nil
	}
	if st.Pending > 0 {
		p, err := rdb.XPending(ctx, stream, group).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return st, fmt.Errorf("pending of %s: %w", stream, err)
		}
		if err == nil && p.Lower != "" {
			if ms, _, ok := strings.Cut(p.Lower, "-"); ok {
				var v int64
				fmt.Sscan(ms, &v)
				st.OldestPending = time.Since(time.UnixMilli(v))
			}
		}
	}
	return st, nil
}

// ServerInfo is what status commands show about the Redis deployment.
type ServerInfo struct {
	Version    string `json:"version"`
	Mode       string `json:"mode"`
	Role       string `json:"role"`
	UsedMemory string `json:"used_memory"`
	MaxMemory  string `json:"max_memory"`
	// MaxMemoryBytes is maxmemory in bytes; 0 for no limit.
	MaxMemoryBytes int64  `json:"max_memory_bytes"`
	AOF            bool   `json:"aof"`
	AppendFsync    string `json:"appendfsync,omitempty"`
	Replicas       int    `json:"connected_replicas"`
}

// Info reads INFO from Redis (one node of a cluster).
func Info(ctx context.Context, rdb redis.UniversalClient) (ServerInfo, error) {
	raw, err := rdb.Info(ctx, "server", "memory", "persistence", "replication", "cluster").Result()
	if err != nil {
		return ServerInfo{}, fmt.Errorf("redis info: %w", err)
	}
	kv := map[string]string{}
	for _, line := range strings.Split(raw, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			kv[k] = v
		}
	}
	si := ServerInfo{Version: kv["redis_version"], Mode: kv["redis_mode"], Role: kv["role"],
		UsedMemory: kv["used_memory_human"], MaxMemory: kv["maxmemory_human"], AOF: kv["aof_enabled"] == "1"}
	fmt.Sscan(kv["connected_slaves"], &si.Replicas)
	fmt.Sscan(kv["maxmemory"], &si.MaxMemoryBytes)
	if si.AOF {
		if v, err := rdb.ConfigGet(ctx, "appendfsync").Result(); err == nil {
			si.AppendFsync = v["appendfsync"]
		}
	}
	return si, nil
}

// ServerCounters are cumulative figures of the Redis deployment, summed
// over every master of a cluster, for measuring what a workload costs.
type ServerCounters struct {
	// CPU is the server's CPU time (used_cpu_user + used_cpu_sys).
	CPU time.Duration `json:"cpu_ns"`
	// Commands is total_commands_processed.
	Commands int64 `json:"commands"`
	// Memory is used_memory, in bytes.
	Memory int64 `json:"memory_bytes"`
	// Clients is connected_clients.
	Clients int64 `json:"clients"`
	// Nodes is how many masters were summed.
	Nodes int `json:"nodes"`
}

// Counters reads ServerCounters from every master.
func Counters(ctx context.Context, rdb redis.UniversalClient) (ServerCounters, error) {
	var sc ServerCounters
	err := forEachNode(ctx, rdb, func(ctx context.Context, c *redis.Client) error {
		raw, err := c.Info(ctx, "cpu", "stats", "memory", "clients").Result()
		if err != nil {
			return err
		}
		var user, sys float64
		for _, line := range strings.Split(raw, "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok {
				continue
			}
			switch k {
			case "used_cpu_user":
				user, _ = strconv.ParseFloat(v, 64)
			case "used_cpu_sys":
				sys, _ = strconv.ParseFloat(v, 64)
			case "total_commands_processed":
				n, _ := strconv.ParseInt(v, 10, 64)
				sc.Commands += n
			case "used_memory":
				n, _ := strconv.ParseInt(v, 10, 64)
				sc.Memory += n
			case "connected_clients":
				n, _ := strconv.ParseInt(v, 10, 64)
				sc.Clients += n
			}
		}
		sc.CPU += time.Duration((user + sys) * float64(time.Second))
		sc.Nodes++
		return nil
	})
	if err != nil {
		return ServerCounters{}, fmt.Errorf("redis counters: %w", err)
	}
	return sc, nil
}
