package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/redis/go-redis/v9"
)

// Log appends events to streams and runs the scripts that keep a task's
// attempts fenced. It is safe for concurrent use.
type Log struct {
	rdb  redis.UniversalClient
	keys Keys
	// FenceRetention is how long a finished task's fence is kept, so a late
	// duplicate delivery is still recognised as done. Default 7 days.
	FenceRetention time.Duration
}

// DefaultFenceRetention is the default Log.FenceRetention.
const DefaultFenceRetention = 7 * 24 * time.Hour

// NewLog returns a Log for the cluster named by keys.
func NewLog(rdb redis.UniversalClient, keys Keys) *Log {
	return &Log{rdb: rdb, keys: keys, FenceRetention: DefaultFenceRetention}
}

// retentionSeconds is FenceRetention in seconds, the default if unset.
func (l *Log) retentionSeconds() int64 {
	if l.FenceRetention <= 0 {
		return int64(DefaultFenceRetention / time.Second)
	}
	return int64(l.FenceRetention / time.Second)
}

// Keys returns the key builder the log writes with.
func (l *Log) Keys() Keys { return l.keys }

// Client returns the underlying Redis client.
func (l *Log) Client() redis.UniversalClient { return l.rdb }

// Append adds e to stream and returns the entry ID. maxLen > 0 caps the
// stream approximately (for per-task logs and dispatch streams; the event
// store shards are never capped on append, see ADR 0002).
func (l *Log) Append(ctx context.Context, stream string, e events.Envelope, maxLen int64) (string, error) {
	fields, err := events.Encode(e)
	if err != nil {
		return "", err
	}
	args := &redis.XAddArgs{Stream: stream, Values: fields}
	if maxLen > 0 {
		args.MaxLen, args.Approx = maxLen, true
	}
	id, err := l.rdb.XAdd(ctx, args).Result()
	if err != nil {
		return "", fmt.Errorf("append %s to %s: %w", e.Type, stream, err)
	}
	return id, nil
}

// Record appends e to the event store shard of entity.
func (l *Log) Record(ctx context.Context, entity string, e events.Envelope) (string, error) {
	return l.Append(ctx, l.keys.EventsFor(entity), e, 0)
}

// ErrUnknownTask is returned when a task has no fence: it was never
// submitted, or finished longer ago than the fence retention.
var ErrUnknownTask = errors.New("streams: unknown task")

// submitScript records a submission once: a second call for the same task
// (a retried command) returns the first entry's ID and appends nothing.
var submitScript = redis.NewScript(`
local prev = redis.call('HGET', KEYS[2], 'submitted')
if prev then return prev end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV))
redis.call('HSET', KEYS[2], 'epoch', 0, 'state', 'waiting', 'submitted', id)
return id
`)

// Submit records a task.submitted event in the task's shard (creating its
// fence) and then appends the same envelope to the dispatch stream the
// submission routes to. It returns the dispatch entry ID.
//
// The two appends are in different slots and so not atomic: if the second
// fails, the task is recorded but not dispatched, and Submit returns the
// error so the caller can retry (the first append is idempotent).
func (l *Log) Submit(ctx context.Context, e events.Envelope) (string, error) {
	ids, errs := l.SubmitBatch(ctx, []events.Envelope{e})
	return ids[0], errs[0]
}

// SubmitBatch submits many tasks as Submit does, in two round trips (per
// Redis node) whatever their number: the submit scripts of all of them in
// one pipeline, then the dispatch appends of those recorded. ids[i] is the
// dispatch entry of es[i] and errs[i] its error: a task whose submission
// was not recorded is not dispatched either.
func (l *Log) SubmitBatch(ctx context.Context, es []events.Envelope) (ids []string, errs []error) {
	ids, errs = make([]string, len(es)), make([]error, len(es))
	calls := make([]scriptCall, len(es))
	subs := make([]events.TaskSubmitted, len(es))
	fields := make([][]any, len(es))
	for i, e := range es {
		p, ok := e.Payload.(events.TaskSubmitted)
		if !ok {
			errs[i] = fmt.Errorf("submit: payload is %T, want events.TaskSubmitted", e.Payload)
			continue
		}
		f, err := events.Encode(e)
		if err != nil {
			errs[i] = err
			continue
		}
		subs[i], fields[i] = p, f
		calls[i] = scriptCall{script: submitScript, keys: []string{l.keys.EventsFor(p.TaskID), l.keys.TaskFence(p.TaskID)}, args: f}
	}
	cmds := runScripts(ctx, l.rdb, calls)
	var dispatch []int
	for i, c := range cmds {
		switch {
		case errs[i] != nil:
		case c.Err() != nil:
			errs[i] = fmt.Errorf("record submission of task %s: %w", subs[i].TaskID, c.Err())
		default:
			dispatch = append(dispatch, i)
		}
	}
	if len(dispatch) == 0 {
		return ids, errs
	}
	adds := make([]*redis.StringCmd, len(dispatch))
	_, _ = l.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for j, i := range dispatch {
			adds[j] = pipe.XAdd(ctx, &redis.XAddArgs{Stream: l.Dispatch(subs[i]), Values: fields[i]})
		}
		return nil
	})
	for j, i := range dispatch {
		if err := adds[j].Err(); err != nil {
			errs[i] = fmt.Errorf("append %s to %s: %w", es[i].Type, l.Dispatch(subs[i]), err)
			continue
		}
		ids[i] = adds[j].Val()
	}
	return ids, errs
}

// Dispatch returns the stream a submission is delivered through.
func (l *Log) Dispatch(p events.TaskSubmitted) string {
	if p.Route == events.RouteQueue {
		return l.keys.RoleQueue(p.Target)
	}
	return l.keys.WorkerDispatch(p.Target)
}

// startScript hands out the next attempt epoch and records task.started
// with it, unless the task already ended. The payload is ARGV[1] .. epoch ..
// ARGV[2]; ARGV[3] is the worker, ARGV[4] the event id, ARGV[5] the
// dispatch entry being run; the rest are the envelope fields, ending with
// "data" and a placeholder the script replaces with the payload.
//
// A call repeated with the same event id (a retry whose reply was lost)
// returns the epoch it handed out. A second dispatch entry of a task that is
// running from another entry (a duplicated dispatch append) is refused, so
// one submission never runs twice at once; the same entry delivered again
// (a restart, a reclaim) starts a new attempt.
var startScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[2], 'state', 'start_event', 'epoch', 'entry')
local st = h[1]
if not st then return {-1, 'unknown'} end
if st == 'done' or st == 'dead' or st == 'ended' then return {0, 'done'} end
if h[2] == ARGV[4] then return {tonumber(h[3]), 'again'} end
if st == 'running' and h[4] ~= ARGV[5] then return {0, 'duplicate'} end
local epoch = tonumber(h[3] or '0') + 1
redis.call('HSET', KEYS[2], 'epoch', epoch, 'state', 'running', 'worker', ARGV[3], 'start_event', ARGV[4], 'entry', ARGV[5])
ARGV[#ARGV] = ARGV[1] .. epoch .. ARGV[2]
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 6))
return {epoch, id}
`)

// attemptMark stands for the attempt number while a payload is encoded
// before the script knows it.
const attemptMark = 987654321987

var attemptMarkText = strconv.FormatInt(attemptMark, 10)

// StartResult is the outcome of Start.
type StartResult struct {
	// Attempt is the fencing epoch of the new attempt; 0 if not to run.
	Attempt int64
	// Done is true when the task already has an outcome: do not run it.
	Done bool
	// Duplicate is true when another dispatch entry of the task is running:
	// this entry is a duplicate and must not run.
	Duplicate bool
}

// Start begins a new attempt of a task on worker: atomically it bumps the
// task's epoch and appends task.started with that epoch. e is the started
// event's envelope (its payload's Attempt is filled in by the script);
// entry identifies the dispatch entry being run ("<stream>/<id>"). Retrying
// Start with the same envelope is safe.
func (l *Log) Start(ctx context.Context, e events.Envelope, entry string) (StartResult, error) {
	res, errs := l.StartBatch(ctx, []StartCall{{Event: e, Entry: entry}})
	return res[0], errs[0]
}

// StartCall is one attempt to start, for StartBatch.
type StartCall struct {
	Event events.Envelope
	Entry string
}

// StartBatch runs Start for every call in one round trip (per Redis node).
// res[i] and errs[i] are the outcome of calls[i].
func (l *Log) StartBatch(ctx context.Context, calls []StartCall) (res []StartResult, errs []error) {
	res, errs = make([]StartResult, len(calls)), make([]error, len(calls))
	sc := make([]scriptCall, len(calls))
	ids := make([]string, len(calls))
	for i, c := range calls {
		sc[i], ids[i], errs[i] = l.startCall(c.Event, c.Entry)
	}
	for i, cmd := range runScripts(ctx, l.rdb, sc) {
		if errs[i] != nil {
			continue
		}
		res[i], errs[i] = parseStart(ids[i], cmd)
	}
	return res, errs
}

func (l *Log) startCall(e events.Envelope, entry string) (scriptCall, string, error) {
	p, ok := e.Payload.(events.TaskStarted)
	if !ok {
		return scriptCall{}, "", fmt.Errorf("start: payload is %T, want events.TaskStarted", e.Payload)
	}
	p.Attempt = attemptMark
	e.Payload = p
	fields, data, err := encodeSplit(e)
	if err != nil {
		return scriptCall{}, p.TaskID, err
	}
	prefix, suffix, ok := strings.Cut(data, attemptMarkText)
	if !ok {
		return scriptCall{}, p.TaskID, errors.New("start: attempt placeholder not found in payload")
	}
	args := make([]any, 0, 5+len(fields)+2)
	args = append(args, prefix, suffix, p.Worker, e.ID.String(), entry)
	args = append(append(args, fields...), events.FieldData, "")
	keys := []string{l.keys.EventsFor(p.TaskID), l.keys.TaskFence(p.TaskID)}
	return scriptCall{script: startScript, keys: keys, args: args}, p.TaskID, nil
}

func parseStart(taskID string, cmd *redis.Cmd) (StartResult, error) {
	res, err := cmd.Slice()
	if err != nil {
		return StartResult{}, fmt.Errorf("start task %s: %w", taskID, err)
	}
	if len(res) != 2 {
		return StartResult{}, fmt.Errorf("start task %s: unexpected reply %v", taskID, res)
	}
	epoch, _ := res[0].(int64)
	why, _ := res[1].(string)
	switch {
	case epoch < 0:
		return StartResult{}, fmt.Errorf("start task %s: %w", taskID, ErrUnknownTask)
	case epoch == 0:
		return StartResult{Done: why == "done", Duplicate: why == "duplicate"}, nil
	}
	return StartResult{Attempt: epoch}, nil
}

// finishScript records task.finished: as the outcome when the attempt is the
// task's current one, as stale otherwise. ARGV[1] attempt, ARGV[2] payload,
// ARGV[3] stale payload, ARGV[4] fence retention in seconds, ARGV[5] outcome,
// ARGV[6] event id, ARGV[7] "1" if the task is retried after this attempt,
// then the envelope fields, ending with "data" and a placeholder the script
// replaces with the payload. A call repeated with the same event id appends
// nothing and answers as the first did.
var finishScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[2], 'finish_event', 'finish_stale', 'epoch', 'state')
if h[1] == ARGV[6] then return {tonumber(h[2]), 'again'} end
local data, stale = ARGV[3], 1
if h[4] == 'running' and tonumber(h[3]) == tonumber(ARGV[1]) then
  data, stale = ARGV[2], 0
  if ARGV[7] == '1' then
    redis.call('HSET', KEYS[2], 'state', 'retrying', 'finish_event', ARGV[6], 'finish_stale', 0)
  else
    redis.call('HSET', KEYS[2], 'state', 'done', 'outcome', ARGV[5], 'finish_event', ARGV[6], 'finish_stale', 0)
    redis.call('EXPIRE', KEYS[2], ARGV[4])
  end
elseif h[4] then
  redis.call('HSET', KEYS[2], 'finish_event', ARGV[6], 'finish_stale', 1)
end
ARGV[#ARGV] = data
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 8))
return {stale, id}
`)

// Finish records the end of an attempt. It reports stale == true when the
// attempt had been superseded (or the task already had an outcome): the
// event is then recorded with Stale set and does not count as the outcome.
// Retrying Finish with the same envelope is safe.
func (l *Log) Finish(ctx context.Context, e events.Envelope) (stale bool, err error) {
	st, errs := l.FinishBatch(ctx, []events.Envelope{e})
	return st[0], errs[0]
}

// FinishBatch runs Finish for every envelope in one round trip (per Redis
// node). stale[i] and errs[i] are the outcome of es[i].
func (l *Log) FinishBatch(ctx context.Context, es []events.Envelope) (stale []bool, errs []error) {
	stale, errs = make([]bool, len(es)), make([]error, len(es))
	sc := make([]scriptCall, len(es))
	ids := make([]string, len(es))
	for i, e := range es {
		sc[i], ids[i], errs[i] = l.finishCall(e)
	}
	for i, cmd := range runScripts(ctx, l.rdb, sc) {
		if errs[i] != nil {
			continue
		}
		res, err := cmd.Slice()
		if err != nil {
			errs[i] = fmt.Errorf("finish task %s: %w", ids[i], err)
			continue
		}
		if len(res) != 2 {
			errs[i] = fmt.Errorf("finish task %s: unexpected reply %v", ids[i], res)
			continue
		}
		s, _ := res[0].(int64)
		stale[i] = s == 1
	}
	return stale, errs
}

func (l *Log) finishCall(e events.Envelope) (scriptCall, string, error) {
	p, ok := e.Payload.(events.TaskFinished)
	if !ok {
		return scriptCall{}, "", fmt.Errorf("finish: payload is %T, want events.TaskFinished", e.Payload)
	}
	p.Stale = false
	e.Payload = p
	fields, data, err := encodeSplit(e)
	if err != nil {
		return scriptCall{}, p.TaskID, err
	}
	retry := "0"
	if p.WillRetry {
		retry = "1"
	}
	p.Stale, p.WillRetry = true, false
	staleData, err := json.Marshal(p)
	if err != nil {
		return scriptCall{}, p.TaskID, err
	}
	args := make([]any, 0, 7+len(fields)+2)
	args = append(args, p.Attempt, data, string(staleData), l.retentionSeconds(), string(p.Outcome), e.ID.String(), retry)
	args = append(append(args, fields...), events.FieldData, "")
	keys := []string{l.keys.EventsFor(p.TaskID), l.keys.TaskFence(p.TaskID)}
	return scriptCall{script: finishScript, keys: keys, args: args}, p.TaskID, nil
}

// encodeSplit encodes e and returns the fields without "data", and data.
func encodeSplit(e events.Envelope) (fields []any, data string, err error) {
	all, err := events.Encode(e)
	if err != nil {
		return nil, "", err
	}
	fields = all[:0] // filtered in place: each pair is read before it is overwritten
	for i := 0; i < len(all); i += 2 {
		if all[i] == events.FieldData {
			data = all[i+1].(string)
			continue
		}
		fields = append(fields, all[i], all[i+1])
	}
	return fields, data, nil
}

// endScript ends a task that has no outcome, as dead (ARGV[2] = "dead")
// or ended (expired or cancelled, "ended"), and appends the event. A task
// that is running is ended only if ARGV[3] is "1" (a dead-lettered entry
// whose workers all died). It returns {"ok"} or {state, worker}.
var endScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[2], 'state')
if not st and ARGV[3] ~= '1' then return {'', ''} end
if st == 'done' or st == 'dead' or st == 'ended' then return {st, ''} end
if st == 'running' and ARGV[3] ~= '1' then
  return {st, redis.call('HGET', KEYS[2], 'worker') or ''}
end
if st then
  redis.call('HSET', KEYS[2], 'state', ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
local f = {}
for i = 4, #ARGV do f[#f+1] = ARGV[i] end
redis.call('XADD', KEYS[1], '*', unpack(f))
return {'ok', ''}
`)

// EndResult says what End found.
type EndResult struct {
	// Ended is true when the task was ended by this call.
	Ended bool
	// State is the fence state found when not ended: "running", "done",
	// "dead" or "ended"; "" for a task with no record.
	State string
	// Worker runs the task when State is "running".
	Worker string
}

// End ends a task without an outcome of its own: e is task.deadlettered
// (which may end a running task: all its deliveries failed) or task.ended
// (expired or cancelled; refused while the task runs). Nothing is recorded
// for a task that already ended.
func (l *Log) End(ctx context.Context, e events.Envelope) (EndResult, error) {
	var taskID, state, running string
	switch p := e.Payload.(type) {
	case events.TaskDeadLettered:
		taskID, state, running = p.TaskID, "dead", "1"
	case events.TaskEnded:
		taskID, state, running = p.TaskID, "ended", "0"
	default:
		return EndResult{}, fmt.Errorf("end: payload is %T, want task.deadlettered or task.ended", e.Payload)
	}
	fields, err := events.Encode(e)
	if err != nil {
		return EndResult{}, err
	}
	retention := l.retentionSeconds()
	keys := []string{l.keys.EventsFor(taskID), l.keys.TaskFence(taskID)}
	res, err := endScript.Run(ctx, l.rdb, keys, append([]any{retention, state, running}, fields...)...).StringSlice()
	if err != nil {
		return EndResult{}, fmt.Errorf("end task %s: %w", taskID, err)
	}
	if res[0] == "ok" {
		return EndResult{Ended: true}, nil
	}
	return EndResult{State: res[0], Worker: res[1]}, nil
}
