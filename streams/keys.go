package streams

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/celeroot/celeroot/events"
	"github.com/redis/go-redis/v9"
	"hash/fnv"
	"regexp"
	"strconv"
	"strings"
)

// Every Redis key celeroot uses is built in this file, and nowhere else.
//
// All keys of a cluster start with "celeroot:<cluster>:", so several
// clusters share one Redis and an ACL can grant one cluster (~celeroot:prod:*)
// or one worker (~celeroot:prod:{w:web1}:*) alone. The text in braces is the
// Redis Cluster hash tag: keys that one Lua script or multi-key command
// touches share it.
//
//	celeroot:<c>:{meta}:cluster          hash   cluster metadata (shard count, created)
//	celeroot:<c>:{ev:<n>}:events         stream event store shard n (workers, tasks)
//	celeroot:<c>:{ev:<n>}:fence:<task>   hash   attempt epoch and state of a task in shard n
//	celeroot:<c>:{ev:<n>}:task:<task>    hash   task projection, in its shard's slot
//	celeroot:<c>:{ev:<n>}:heartbeats     stream every heartbeat of shard n's workers (short retention)
//	celeroot:<c>:{ev:<n>}:archive        hash   shard n's archive watermark, its trim lines
//	celeroot:<c>:{w:<host>}:dispatch     stream tasks sent to one worker
//	celeroot:<c>:{w:<host>}:control      stream commands to one worker (drain, cancel)
//	celeroot:<c>:{w:<host>}:worker       hash   worker projection
//	celeroot:<c>:{q:<role>}:dispatch     stream tasks queued for any worker of a role
//	celeroot:<c>:{t:<task>}:log          stream the task's output (task.log.v1 events)
//	celeroot:<c>:{j:<job>}:job           hash   job projection (the tasks of a fan-out run)
//	celeroot:<c>:{idx}:workers           set    hostnames with a worker projection
//	celeroot:<c>:{idx}:tasks             zset   task ids by submission time (ms)
//	celeroot:<c>:{cfg}:events            stream config revisions (config.applied.v1)
//	celeroot:<c>:{cfg}:head              hash   current revision, its hash and entry id
//	celeroot:<c>:{dead}:entries          stream dead letters
//	celeroot:<c>:{idem}:<sha256(key)>    string task ids submitted with an idempotency key
//	celeroot:<c>:{sched}:state           hash   per schedule: last:<s> slot ms, paused:<s>, lastjob:<s>
//	celeroot:<c>:{sched}:fires           stream schedule events (fired, skipped, paused, resumed)
//	celeroot:<c>:{meta}:janitor          string lease of the retention pass running now
//	celeroot:<c>:{meta}:archiver         string lease of the archive run running now
//	celeroot:<c>:{raw}:<name>            stream `celeroot bench raw` only (a throwaway cluster)
//
// Projections are versioned: a rebuild writes a new namespace and switches
// to it by changing the "projections" field of the metadata hash. Version
// 0 uses the names above; version n appends ".v<n>" to the record and
// index names ({ev:<n>}:task.v3:<task>, {w:<host>}:worker.v3,
// {idx}:tasks.v3) and is maintained by the consumer group "projector.v<n>".

// Consumer group names.
const (
	// GroupAgents reads dispatch and control streams; the consumer is the
	// worker's hostname.
	GroupAgents = "agents"
	// GroupProjector reads the event store and heartbeat shards and
	// maintains the projections (version 0; see Keys.ProjectorGroup); any
	// number of projector processes may share it.
	GroupProjector = "projector"
	// GroupScheduler reads the schedule fires stream and submits the tasks
	// of each fire; the consumer is the agent's hostname.
	GroupScheduler = "scheduler"
)

// DefaultShards is the number of event store shards of a new cluster. Each
// shard is one stream and so one Redis Cluster slot; an entity (a task, a
// worker) always lives in the same shard, so its events stay in order.
const DefaultShards = 8

// MaxShards bounds the shard count (each projector holds one blocking
// connection per shard on Redis Cluster).
const MaxShards = 256

var (
	clusterName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// ValidateClusterName reports whether name can name a cluster: lower-case
// letters, digits and '-', at most 63 characters, like a DNS label.
func ValidateClusterName(name string) error {
	if !clusterName.MatchString(name) {
		return fmt.Errorf("cluster name %q: use 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit", name)
	}
	return nil
}

// ValidateName reports whether name can be a hostname, role or task id in a
// key (see events.ValidateName). Braces, colons and spaces are refused so a
// name can never change a hash tag.
func ValidateName(kind, name string) error { return events.ValidateName(kind, name) }

// Keys builds the key names of one cluster.
type Keys struct {
	Cluster string
	// Shards is the number of event store shards; DefaultShards if zero.
	Shards int
	// Projections is the version of the projection namespace the record
	// and index names are built for (0: the original names).
	Projections int
}

// NewKeys returns the key builder of a cluster with the given shard count.
func NewKeys(cluster string, shards int) (Keys, error) {
	if err := ValidateClusterName(cluster); err != nil {
		return Keys{}, err
	}
	if shards == 0 {
		shards = DefaultShards
	}
	if shards < 1 || shards > MaxShards {
		return Keys{}, fmt.Errorf("shards %d: must be between 1 and %d", shards, MaxShards)
	}
	return Keys{Cluster: cluster, Shards: shards}, nil
}

func (k Keys) shards() int {
	if k.Shards <= 0 {
		return DefaultShards
	}
	return k.Shards
}

func (k Keys) key(tag, name string) string {
	return "celeroot:" + k.Cluster + ":{" + tag + "}:" + name
}

// HashTag returns the Redis Cluster hash tag of key: the text between the
// first "{" and the next "}", or the whole key if it has none. Keys with
// the same tag are in the same slot.
func HashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// Prefix is the prefix of every key of the cluster, for ACLs and SCAN.
func (k Keys) Prefix() string { return "celeroot:" + k.Cluster + ":" }

// Meta is the cluster metadata hash.
func (k Keys) Meta() string { return k.key("meta", "cluster") }

// ShardOf returns the event store shard of an entity (task id, hostname).
func (k Keys) ShardOf(entity string) int {
	h := fnv.New32a()
	h.Write([]byte(entity))
	return int(h.Sum32() % uint32(k.shards()))
}

// EventShard is the event store stream of shard n.
func (k Keys) EventShard(n int) string { return k.key("ev:"+strconv.Itoa(n), "events") }

// EventShards lists every event store stream.
func (k Keys) EventShards() []string {
	out := make([]string, k.shards())
	for i := range out {
		out[i] = k.EventShard(i)
	}
	return out
}

// EventsFor is the event store stream that holds an entity's events.
func (k Keys) EventsFor(entity string) string { return k.EventShard(k.ShardOf(entity)) }

// HeartbeatShard is the stream of every heartbeat of the workers of shard
// n. It shares the shard's hash tag, so one XREADGROUP reads both, and its
// entry IDs come from the same server clock as the shard's.
func (k Keys) HeartbeatShard(n int) string { return k.key("ev:"+strconv.Itoa(n), "heartbeats") }

// HeartbeatShards lists every heartbeat stream, in shard order.
func (k Keys) HeartbeatShards() []string {
	out := make([]string, k.shards())
	for i := range out {
		out[i] = k.HeartbeatShard(i)
	}
	return out
}

// HeartbeatsFor is the heartbeat stream of a worker.
func (k Keys) HeartbeatsFor(host string) string { return k.HeartbeatShard(k.ShardOf(host)) }

// ArchiveState is the hash holding shard n's archive watermark (the last
// entry written to the archive and fsynced) and its trim line. It shares the
// shard's hash tag, so the trim script reads the watermark and trims in one
// atomic step.
func (k Keys) ArchiveState(n int) string { return k.key("ev:"+strconv.Itoa(n), "archive") }

// JanitorLease is the key held by the process running a retention pass,
// so only one runs at a time.
func (k Keys) JanitorLease() string { return k.key("meta", "janitor") }

// ArchiverLease is the key held by the process running events archive, so
// two archive runs never write the same entries.
func (k Keys) ArchiverLease() string { return k.key("meta", "archiver") }

// WithProjections returns the key builder for projection namespace v.
func (k Keys) WithProjections(v int) Keys {
	k.Projections = v
	return k
}

// projection is the name of a projection record or index in the
// namespace k.Projections.
func (k Keys) projection(tag, name string) string {
	if k.Projections > 0 {
		name += ".v" + strconv.Itoa(k.Projections)
	}
	return k.key(tag, name)
}

// ProjectorGroup is the consumer group that maintains projection namespace
// k.Projections: GroupProjector for version 0, "projector.v<n>" otherwise.
func (k Keys) ProjectorGroup() string {
	if k.Projections > 0 {
		return GroupProjector + ".v" + strconv.Itoa(k.Projections)
	}
	return GroupProjector
}

// IsProjectorGroup reports whether group maintains some projection
// namespace, and which.
func IsProjectorGroup(group string) (version int, ok bool) {
	if group == GroupProjector {
		return 0, true
	}
	rest, found := strings.CutPrefix(group, GroupProjector+".v")
	if !found {
		return 0, false
	}
	v, err := strconv.Atoi(rest)
	if err != nil || v < 1 || strconv.Itoa(v) != rest {
		return 0, false
	}
	return v, true
}

// ProjectionVersionOf reports whether key is a projection record or index
// of this cluster, and of which namespace.
func (k Keys) ProjectionVersionOf(key string) (version int, ok bool) {
	rest, found := strings.CutPrefix(key, k.Prefix()+"{")
	if !found {
		return 0, false
	}
	tag, name, found := strings.Cut(rest, "}:")
	if !found {
		return 0, false
	}
	name, id, hasID := strings.Cut(name, ":")
	base, v, versioned := strings.Cut(name, ".v")
	if versioned {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || strconv.Itoa(n) != v {
			return 0, false
		}
		version = n
	}
	kind, _, _ := strings.Cut(tag, ":")
	switch {
	case kind == "ev" && base == "task" && hasID && id != "",
		!hasID && (kind == "w" && base == "worker" || kind == "j" && base == "job" ||
			tag == "idx" && (base == "workers" || base == "tasks")):
		return version, true
	}
	return 0, false
}

// TaskFence is the hash holding a task's attempt epoch and state. It shares
// the hash tag of the task's event shard, so one script can check the fence
// and append the event atomically.
func (k Keys) TaskFence(taskID string) string {
	return k.key("ev:"+strconv.Itoa(k.ShardOf(taskID)), "fence:"+taskID)
}

// WorkerDispatch is the stream of tasks sent to one worker.
func (k Keys) WorkerDispatch(host string) string { return k.key("w:"+host, "dispatch") }

// WorkerControl is the stream of commands sent to one worker.
func (k Keys) WorkerControl(host string) string { return k.key("w:"+host, "control") }

// WorkerProjection is the projection hash of one worker.
func (k Keys) WorkerProjection(host string) string { return k.projection("w:"+host, "worker") }

// RoleQueue is the stream of tasks any worker of a role may take.
func (k Keys) RoleQueue(role string) string { return k.key("q:"+role, "dispatch") }

// TaskProjection is the projection hash of one task. It lives in the slot
// of the task's event shard, beside its fence: the projector then updates
// all the tasks of a shard's batch in one script call, and a failover rolls
// a task's projection back together with the events it was built from.
func (k Keys) TaskProjection(taskID string) string {
	return k.projection("ev:"+strconv.Itoa(k.ShardOf(taskID)), "task") + ":" + taskID
}

// JobProjection is the projection hash of one fan-out job.
func (k Keys) JobProjection(jobID string) string { return k.projection("j:"+jobID, "job") }

// TaskLog is the stream of a task's output.
func (k Keys) TaskLog(taskID string) string { return k.key("t:"+taskID, "log") }

// WorkerIndex is the set of hostnames that have a worker projection.
func (k Keys) WorkerIndex() string { return k.projection("idx", "workers") }

// TaskIndex is the sorted set of task ids scored by submission time in ms.
func (k Keys) TaskIndex() string { return k.projection("idx", "tasks") }

// Idempotency is the key remembering the tasks submitted with an
// idempotency key (hashed, so any key text is safe).
func (k Keys) Idempotency(key string) string {
	sum := sha256.Sum256([]byte(key))
	return k.key("idem", hex.EncodeToString(sum[:16]))
}

// ConfigStream is the stream of config revisions. It is never trimmed:
// every revision stays available to show, diff and roll back to.
func (k Keys) ConfigStream() string { return k.key("cfg", "events") }

// ConfigHead is the hash holding the current config revision; it shares the
// config stream's hash tag so an apply checks and appends atomically.
func (k Keys) ConfigHead() string { return k.key("cfg", "head") }

// DeadLetters is the dead-letter stream.
func (k Keys) DeadLetters() string { return k.key("dead", "entries") }

// ScheduleState is the hash of every schedule's firing state: the last
// slot fired, whether it is paused and the job of its last fire. It shares
// the fires stream's hash tag, so one script compares, sets and appends.
func (k Keys) ScheduleState() string { return k.key("sched", "state") }

// ScheduleFires is the stream of schedule events.
func (k Keys) ScheduleFires() string { return k.key("sched", "fires") }

// RawStream is a stream of `celeroot bench raw`, the bare Redis Streams
// cycle the full path is compared with; name is "tasks" or "results".
func (k Keys) RawStream(name string) string { return k.key("raw", name) }

// LoadKeys returns the key builder of cluster with the shard count recorded
// in the cluster's metadata and the projection namespace currently served.
// The first process to see the cluster records DefaultShards (HSETNX, so
// concurrent first users agree); a different count needs a drain of the
// event store and is never changed here.
func LoadKeys(ctx context.Context, rdb redis.UniversalClient, cluster string) (Keys, error) {
	k, err := NewKeys(cluster, 0)
	if err != nil {
		return Keys{}, err
	}
	// Read first and write only for a cluster not seen yet, so that commands
	// that only read still work against a Redis that refuses writes (out of
	// memory, a read-only replica).
	vals, err := rdb.HMGet(ctx, k.Meta(), "shards", metaProjections).Result()
	if err != nil {
		return Keys{}, fmt.Errorf("read cluster %s metadata: %w", cluster, err)
	}
	if vals[0] == nil {
		if err := rdb.HSetNX(ctx, k.Meta(), "shards", DefaultShards).Err(); err != nil {
			return Keys{}, fmt.Errorf("record cluster %s metadata: %w", cluster, err)
		}
		if vals, err = rdb.HMGet(ctx, k.Meta(), "shards", metaProjections).Result(); err != nil {
			return Keys{}, fmt.Errorf("read cluster %s metadata: %w", cluster, err)
		}
	}
	v, _ := vals[0].(string)
	n, err := strconv.Atoi(v)
	if err != nil {
		return Keys{}, fmt.Errorf("cluster %s metadata: shards %q is not a number", cluster, v)
	}
	if k, err = NewKeys(cluster, n); err != nil {
		return Keys{}, err
	}
	if p, ok := vals[1].(string); ok {
		if k.Projections, err = strconv.Atoi(p); err != nil || k.Projections < 0 {
			return Keys{}, fmt.Errorf("cluster %s metadata: projections %q is not a version number", cluster, p)
		}
	}
	return k, nil
}
