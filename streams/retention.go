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

// Stream retention. Every trim here is an XTRIM MINID ~ below a cut that is
// computed, in the same Lua script and so atomically with the trim, as the
// minimum of:
//
//   - the retention policy's line (entries older than it may go);
//   - for the event store, the archive watermark: nothing is trimmed that
//     has not been written to the archive and fsynced;
//   - for every consumer group of the stream, its oldest pending entry
//     (XPENDING summary) and its last-delivered ID: nothing a group has not
//     read or not acknowledged is ever trimmed.
//
// MAXLEN and XDEL are never used on the event store.

// LuaCompareIDs defines, for a Lua script, parse(id) (the two numbers of a
// stream entry ID; a bare millisecond time has sequence 0) and less(x, y)
// (x is before y). IDs must be compared as numbers: as strings, "9-0"
// sorts after "10-0".
const LuaCompareIDs = `
local function parse(id)
  local a, b = string.match(id, '^(%d+)-(%d+)$')
  if not a then a = string.match(id, '^(%d+)$'); b = 0 end
  return tonumber(a), tonumber(b)
end
local function less(x, y)
  local xm, xs = parse(x)
  local ym, ys = parse(y)
  return xm < ym or (xm == ym and xs < ys)
end
`

// trimScript trims KEYS[1] below the cut described above. KEYS[2], if
// given, is the shard's archive state hash: with ARGV[4] == '1' nothing
// above its watermark goes, and the highest cut is recorded there in the
// field ARGV[6]. ARGV[1] is the policy line, ARGV[2] the most entries to
// remove in one call, ARGV[3] '1' to compute the cut only, ARGV[5] '1' to
// keep everything of a stream that no consumer group reads. It returns
// {removed, cut, what limited it}.
var trimScript = redis.NewScript(LuaCompareIDs + `
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, '', 'the stream is empty'} end
local cut, why = ARGV[1], 'retention'
if KEYS[2] and ARGV[4] == '1' then
  local wm = redis.call('HGET', KEYS[2], 'archived')
  if not wm then return {0, '0-0', 'nothing archived yet'} end
  if less(wm, cut) then cut, why = wm, 'archive watermark' end
end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 and ARGV[5] == '1' then return {0, '0-0', 'no consumer group reads it'} end
for _, g in ipairs(groups) do
  local name, last
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i+1] elseif g[i] == 'last-delivered-id' then last = g[i+1] end
  end
  if last and less(last, cut) then cut, why = last, 'group ' .. name .. ' has read no further' end
  local p = redis.call('XPENDING', KEYS[1], name)
  if p[2] and less(p[2], cut) then cut, why = p[2], 'group ' .. name .. ' has entries pending from there' end
end
if ARGV[3] == '1' then return {0, cut, why} end
local n = redis.call('XTRIM', KEYS[1], 'MINID', '~', cut, 'LIMIT', ARGV[2])
if KEYS[2] and n > 0 and ARGV[6] ~= '' then
  local prev = redis.call('HGET', KEYS[2], ARGV[6])
  if not prev or less(prev, cut) then redis.call('HSET', KEYS[2], ARGV[6], cut) end
end
return {n, cut, why}
`)

// Trim describes one retention trim.
type Trim struct {
	Stream string
	// Before is the policy line: entries with lower IDs are old enough to
	// go. An entry ID or a bare millisecond time.
	Before string
	// Archive is the shard's archive state hash, for the event store and
	// heartbeat streams ("" for other streams): the trim line is recorded
	// there (field trimmed, or heartbeats_trimmed for a heartbeat stream).
	Archive string
	// Heartbeats says the stream is a heartbeat stream.
	Heartbeats bool
	// RequireArchive keeps everything above the archive watermark.
	RequireArchive bool
	// NeedGroup keeps everything of a stream no consumer group reads
	// (entries nobody has read yet, such as tasks for a worker that never
	// started).
	NeedGroup bool
	// DryRun computes the cut and removes nothing.
	DryRun bool
}

// TrimResult says what a trim did.
type TrimResult struct {
	Stream string `json:"stream"`
	// Cut is the line entries below which were allowed to go ("" for an
	// empty stream).
	Cut string `json:"cut,omitempty"`
	// Removed is the number of entries removed.
	Removed int64 `json:"removed"`
	// Limit says what held the cut back: the retention policy, the archive
	// watermark, or a consumer group.
	Limit string `json:"limit,omitempty"`
}

// trimBatch bounds the entries one script call removes, so no call blocks
// Redis for long; TrimBelow calls it until nothing more goes.
const trimBatch = 10000

// maxTrimCalls bounds the calls of one TrimBelow.
const maxTrimCalls = 100

// TrimBelow trims t.Stream with MINID ~ below the cut (see the package
// comment above): the approximate form removes whole stream nodes only, so
// up to one node of entries (100 by default) below the cut may stay.
func TrimBelow(ctx context.Context, rdb redis.UniversalClient, t Trim) (TrimResult, error) {
	keys := []string{t.Stream}
	if t.Archive != "" {
		keys = append(keys, t.Archive)
	}
	flag := func(b bool) string {
		if b {
			return "1"
		}
		return "0"
	}
	field := "trimmed"
	if t.Heartbeats {
		field = "heartbeats_trimmed"
	}
	res := TrimResult{Stream: t.Stream}
	for i := 0; i < maxTrimCalls; i++ {
		out, err := trimScript.Run(ctx, rdb, keys, t.Before, trimBatch, flag(t.DryRun), flag(t.RequireArchive), flag(t.NeedGroup), field).Slice()
		if err != nil {
			return res, fmt.Errorf("trim %s: %w", t.Stream, err)
		}
		n, _ := out[0].(int64)
		res.Cut, _ = out[1].(string)
		res.Limit, _ = out[2].(string)
		res.Removed += n
		if n < trimBatch {
			break
		}
	}
	return res, nil
}

// IDAt is the stream entry ID bound of a moment: entries with lower IDs
// were appended before it (the ID's first part is the server's ms clock).
func IDAt(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) + "-0" }

// IDTime is the server time an entry ID was made at; ok is false if id is
// not an entry ID.
func IDTime(id string) (t time.Time, ok bool) {
	ms, _, found := strings.Cut(id, "-")
	if !found {
		ms = id
	}
	v, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(v), true
}

// CapDeadLetters trims the dead-letter stream to about max entries
// (MAXLEN ~: the oldest go). It has no consumer group; `task dead` reads it
// newest first.
func CapDeadLetters(ctx context.Context, rdb redis.UniversalClient, dlq string, max int64) (int64, error) {
	n, err := rdb.XTrimMaxLenApprox(ctx, dlq, max, 0).Result()
	if err != nil {
		return 0, fmt.Errorf("cap %s at %d entries: %w", dlq, max, err)
	}
	return n, nil
}

// ensureGroupScript creates group ARGV[1] on KEYS[1] (and the stream), at
// the archive watermark if the stream has been trimmed (KEYS[2] is its
// archive state hash), else at the beginning. It returns the start ID, or
// "" if the group existed.
var ensureGroupScript = redis.NewScript(`
local start = '0'
if redis.call('HGET', KEYS[2], 'trimmed') then
  start = redis.call('HGET', KEYS[2], 'archived') or '0'
end
local r = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], start, 'MKSTREAM')
if type(r) == 'table' and r.err then
  if string.find(r.err, 'BUSYGROUP', 1, true) then return '' end
  return redis.error_reply(r.err)
end
return start
`)

// EnsureGroupAtWatermark creates group on an event store shard if it is
// missing. A group created after the shard was trimmed starts at the
// archive watermark, not at 0: what came before is only in the archive, and
// a consumer starting there must know it (a rebuild folds the archive
// first). archive is the shard's archive state hash.
func EnsureGroupAtWatermark(ctx context.Context, rdb redis.UniversalClient, stream, archive, group string) error {
	if err := ensureGroupScript.Run(ctx, rdb, []string{stream, archive}, group).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("create group %s on %s: %w", group, stream, err)
	}
	return nil
}

// CreateGroupAt creates group on stream at entry id (the stream too); it
// fails if the group exists.
func CreateGroupAt(ctx context.Context, rdb redis.UniversalClient, stream, group, id string) error {
	if err := rdb.XGroupCreateMkStream(ctx, stream, group, id).Err(); err != nil {
		return fmt.Errorf("create group %s on %s at %s: %w", group, stream, id, err)
	}
	return nil
}

// Groups returns the names of the consumer groups of stream (none if the
// stream does not exist).
func Groups(ctx context.Context, rdb redis.UniversalClient, stream string) ([]string, error) {
	gs, err := rdb.XInfoGroups(ctx, stream).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return nil, nil
		}
		return nil, fmt.Errorf("groups of %s: %w", stream, err)
	}
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.Name
	}
	return out, nil
}

// DestroyGroup removes a consumer group from stream.
func DestroyGroup(ctx context.Context, rdb redis.UniversalClient, stream, group string) error {
	if err := rdb.XGroupDestroy(ctx, stream, group).Err(); err != nil {
		return fmt.Errorf("remove group %s from %s: %w", group, stream, err)
	}
	return nil
}

// ArchiveState is what the archive state hash of a shard says.
type ArchiveState struct {
	// Archived is the last entry written to the archive and fsynced ("" if
	// none).
	Archived string
	// Trimmed is the highest cut the shard was trimmed below ("" if never).
	Trimmed string
	// HeartbeatsTrimmed is the same for the shard's heartbeat stream.
	HeartbeatsTrimmed string
	// ArchiveID names the archive the entries went to.
	ArchiveID string
	// At is when the watermark last moved.
	At time.Time
}

// ReadArchiveState reads the archive state of shard n.
func ReadArchiveState(ctx context.Context, rdb redis.UniversalClient, keys Keys, n int) (ArchiveState, error) {
	m, err := rdb.HGetAll(ctx, keys.ArchiveState(n)).Result()
	if err != nil {
		return ArchiveState{}, fmt.Errorf("read archive state of shard %d: %w", n, err)
	}
	st := ArchiveState{Archived: m["archived"], Trimmed: m["trimmed"], HeartbeatsTrimmed: m["heartbeats_trimmed"], ArchiveID: m["archive_id"]}
	if ms, err := strconv.ParseInt(m["archived_at"], 10, 64); err == nil {
		st.At = time.UnixMilli(ms)
	}
	return st, nil
}

// advanceScript moves the archive watermark KEYS[1] forward to ARGV[1]
// (never back), for archive ARGV[2], at ARGV[3] ms.
var advanceScript = redis.NewScript(LuaCompareIDs + `
local cur = redis.call('HGET', KEYS[1], 'archived')
if cur and not less(cur, ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'archived', ARGV[1], 'archive_id', ARGV[2], 'archived_at', ARGV[3])
return 1
`)

// AdvanceWatermark records that every entry of shard n up to id is in the
// archive archiveID, durably. The watermark only moves forward.
func AdvanceWatermark(ctx context.Context, rdb redis.UniversalClient, keys Keys, n int, id, archiveID string, now time.Time) error {
	if err := advanceScript.Run(ctx, rdb, []string{keys.ArchiveState(n)}, id, archiveID, now.UnixMilli()).Err(); err != nil {
		return fmt.Errorf("advance the archive watermark of shard %d to %s: %w", n, id, err)
	}
	return nil
}

// First returns the oldest entry ID of stream ("" if empty).
func First(ctx context.Context, rdb redis.UniversalClient, stream string) (string, error) {
	msgs, err := rdb.XRangeN(ctx, stream, "-", "+", 1).Result()
	if err != nil {
		return "", fmt.Errorf("read the start of %s: %w", stream, err)
	}
	if len(msgs) == 0 {
		return "", nil
	}
	return msgs[0].ID, nil
}

// LastID returns the newest entry ID of stream ("" if empty).
func LastID(ctx context.Context, rdb redis.UniversalClient, stream string) (string, error) {
	msgs, err := rdb.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("read the end of %s: %w", stream, err)
	}
	if len(msgs) == 0 {
		return "", nil
	}
	return msgs[0].ID, nil
}
