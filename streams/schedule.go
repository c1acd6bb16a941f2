package streams

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
)

// MaxScheduleEvents caps the schedule fires stream (approximately, on
// every append). The stream is a work queue and a short history, not the
// event store: at one fire a minute it keeps about two months.
const MaxScheduleEvents = 100000

// Fire outcomes, the reason Fire returns.
const (
	// FireFired: the slot was recorded and the fire appended.
	FireFired = "fired"
	// FireDuplicate: the slot, or a later one, was already fired.
	FireDuplicate = "duplicate"
	// FirePaused: the schedule is paused; the slot passes without a fire.
	FirePaused = "paused"
	// FireSkipped: the missed slots up to the slot were recorded as skipped.
	FireSkipped = "skipped"
)

// fireScript compare-and-sets a schedule's last slot and appends the event.
// KEYS[1] is the state hash, KEYS[2] the fires stream. ARGV[1] schedule,
// ARGV[2] slot (Unix ms), ARGV[3] "1" for a manual fire, ARGV[4] the job id
// ("" for a skip, which advances the slot and appends without a job),
// ARGV[5] and ARGV[6] the payload around the previous job id, ARGV[7] the
// stream cap, then the envelope fields without data.
//
// A non-manual call for a slot at or before the last one appends nothing;
// so two evaluators racing for a slot fire it once, and an evaluator that
// is late (slow clock) can never fire an older slot after a newer one. A
// paused schedule consumes the slot without firing. A manual call always
// fires and leaves the last slot alone.
var fireScript = redis.NewScript(`
local s = ARGV[1]
if ARGV[3] ~= '1' then
  local last = tonumber(redis.call('HGET', KEYS[1], 'last:' .. s) or '0')
  if tonumber(ARGV[2]) <= last then return 'duplicate' end
  redis.call('HSET', KEYS[1], 'last:' .. s, ARGV[2])
  if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'paused:' .. s) == '1' then return 'paused' end
end
local prev = ''
if ARGV[4] ~= '' then
  prev = redis.call('HGET', KEYS[1], 'lastjob:' .. s) or ''
  redis.call('HSET', KEYS[1], 'lastjob:' .. s, ARGV[4])
end
local f = {}
for i = 8, #ARGV do f[#f+1] = ARGV[i] end
f[#f+1] = 'data'
f[#f+1] = ARGV[5] .. prev .. ARGV[6]
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', unpack(f))
if ARGV[4] == '' then return 'skipped' end
return 'fired'
`)

// prevJobMark stands for the previous job id while a fire is encoded
// before the script knows it.
const prevJobMark = "celerootPreviousJobMark"

// Fire records a schedule's slot atomically: e is schedule.fired.v1, or
// schedule.skipped.v1 for slots missed under the skip policy (the slot
// becomes the last one without a fire). The fired event's PreviousJob is
// set from the state by the script. fired is true when the event was
// appended as a fire; reason is one of the Fire* outcomes.
func (l *Log) Fire(ctx context.Context, e events.Envelope) (fired bool, reason string, err error) {
	var sched, jobID, manual string
	var slot int64
	switch p := e.Payload.(type) {
	case events.ScheduleFired:
		sched, slot, jobID, manual = p.Schedule, p.SlotMS, p.JobID, "0"
		if p.Manual {
			manual = "1"
		}
		p.PreviousJob = prevJobMark
		e.Payload = p
	case events.ScheduleSkipped:
		sched, slot, manual = p.Schedule, p.SlotMS, "0"
	default:
		return false, "", fmt.Errorf("fire: payload is %T, want schedule.fired or schedule.skipped", e.Payload)
	}
	fields, data, err := encodeSplit(e)
	if err != nil {
		return false, "", err
	}
	prefix, suffix := data, ""
	if jobID != "" {
		var ok bool
		if prefix, suffix, ok = strings.Cut(data, prevJobMark); !ok {
			return false, "", errors.New("fire: previous job placeholder not found in payload")
		}
	}
	args := append([]any{sched, slot, manual, jobID, prefix, suffix, MaxScheduleEvents}, fields...)
	keys := []string{l.keys.ScheduleState(), l.keys.ScheduleFires()}
	reason, err = fireScript.Run(ctx, l.rdb, keys, args...).Text()
	if err != nil {
		return false, "", fmt.Errorf("fire schedule %s slot %d: %w", sched, slot, err)
	}
	return reason == FireFired, reason, nil
}

// pauseScript sets (ARGV[2] "1") or clears a schedule's paused flag
// ARGV[1] and appends the event, if that changes the flag. ARGV[3] is the
// stream cap, then the envelope fields. It returns 1 if changed.
var pauseScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if cur == '1' then return 0 end
  redis.call('HSET', KEYS[1], ARGV[1], '1')
else
  if not cur then return 0 end
  redis.call('HDEL', KEYS[1], ARGV[1])
end
local f = {}
for i = 4, #ARGV do f[#f+1] = ARGV[i] end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(f))
return 1
`)

// PauseSchedule pauses a schedule (e is schedule.paused.v1): its slots
// pass without firing until it is resumed. changed is false if it was
// already paused (nothing is appended then).
func (l *Log) PauseSchedule(ctx context.Context, e events.Envelope) (changed bool, err error) {
	p, ok := e.Payload.(events.SchedulePaused)
	if !ok {
		return false, fmt.Errorf("pause schedule: payload is %T, want events.SchedulePaused", e.Payload)
	}
	return l.setPaused(ctx, p.Schedule, "1", e)
}

// ResumeSchedule resumes a paused schedule (e is schedule.resumed.v1); it
// fires again from its next slot. changed is false if it was not paused.
func (l *Log) ResumeSchedule(ctx context.Context, e events.Envelope) (changed bool, err error) {
	p, ok := e.Payload.(events.ScheduleResumed)
	if !ok {
		return false, fmt.Errorf("resume schedule: payload is %T, want events.ScheduleResumed", e.Payload)
	}
	return l.setPaused(ctx, p.Schedule, "0", e)
}

func (l *Log) setPaused(ctx context.Context, sched, flag string, e events.Envelope) (bool, error) {
	fields, err := events.Encode(e)
	if err != nil {
		return false, err
	}
	keys := []string{l.keys.ScheduleState(), l.keys.ScheduleFires()}
	n, err := pauseScript.Run(ctx, l.rdb, keys, append([]any{"paused:" + sched, flag, MaxScheduleEvents}, fields...)...).Int()
	if err != nil {
		return false, fmt.Errorf("set schedule %s paused=%s: %w", sched, flag, err)
	}
	return n == 1, nil
}

// RecordSchedule appends a schedule event that changes no state (a fire
// skipped by its consumer) to the fires stream.
func (l *Log) RecordSchedule(ctx context.Context, e events.Envelope) (string, error) {
	return l.Append(ctx, l.keys.ScheduleFires(), e, MaxScheduleEvents)
}

// ScheduleStatus is the firing state of one schedule.
type ScheduleStatus struct {
	// Last is the last slot fired (or consumed while paused, or skipped);
	// zero if none.
	Last    time.Time
	Paused  bool
	LastJob string
}

// ScheduleState returns the firing state of the named schedules; a
// schedule that never fired has a zero status.
func (l *Log) ScheduleState(ctx context.Context, names []string) (map[string]ScheduleStatus, error) {
	h, err := l.rdb.HGetAll(ctx, l.keys.ScheduleState()).Result()
	if err != nil {
		return nil, fmt.Errorf("read schedule state: %w", err)
	}
	out := make(map[string]ScheduleStatus, len(names))
	for _, n := range names {
		var st ScheduleStatus
		if v, err := strconv.ParseInt(h["last:"+n], 10, 64); err == nil && v > 0 {
			st.Last = time.UnixMilli(v).UTC()
		}
		st.Paused = h["paused:"+n] == "1"
		st.LastJob = h["lastjob:"+n]
		out[n] = st
	}
	return out, nil
}

// maxHistoryScan bounds how many fires stream entries ScheduleHistory
// reads looking for one schedule's events.
const maxHistoryScan = 20000

// ScheduleHistory returns up to n events of one schedule (fired, skipped,
// paused, resumed), newest first. Entries that do not decode are left out.
func (l *Log) ScheduleHistory(ctx context.Context, name string, n int) ([]Message, error) {
	stream := l.keys.ScheduleFires()
	var out []Message
	end, scanned := "+", 0
	const page = 500
	for len(out) < n && scanned < maxHistoryScan {
		msgs, err := l.rdb.XRevRangeN(ctx, stream, end, "-", page).Result()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", stream, err)
		}
		for _, m := range msgs {
			scanned++
			env, err := events.Decode(m.Values)
			if err != nil || ScheduleOf(env.Payload) != name {
				continue
			}
			out = append(out, Message{Stream: stream, ID: m.ID, Envelope: env})
			if len(out) == n {
				break
			}
		}
		if len(msgs) < page {
			break
		}
		end = "(" + msgs[len(msgs)-1].ID
	}
	return out, nil
}

// ScheduleOf returns the schedule a schedule event is about, "" for other
// payloads.
func ScheduleOf(p events.Payload) string {
	switch v := p.(type) {
	case events.ScheduleFired:
		return v.Schedule
	case events.ScheduleSkipped:
		return v.Schedule
	case events.SchedulePaused:
		return v.Schedule
	case events.ScheduleResumed:
		return v.Schedule
	}
	return ""
}

// ScheduleJobID is the job id of a schedule's fire for a slot: a ULID
// whose time is the slot and whose entropy comes from the schedule name
// and the slot, so every evaluator derives the same id.
func ScheduleJobID(schedule string, slotMS int64) string {
	return derivedID(slotMS, schedule+":"+strconv.FormatInt(slotMS, 10))
}

// ScheduleTaskID is the id of a scheduled job's task on one worker,
// derived like ScheduleJobID: a fire processed twice submits the same
// task ids, and Log.Submit records each once.
func ScheduleTaskID(jobID, host string, slotMS int64) string {
	return derivedID(slotMS, jobID+":"+host)
}

func derivedID(ms int64, seed string) string {
	var id ulid.ULID
	if ms < 0 {
		ms = 0
	}
	_ = id.SetTime(uint64(ms))
	sum := sha256.Sum256([]byte(seed))
	copy(id[6:], sum[:10])
	return id.String()
}
