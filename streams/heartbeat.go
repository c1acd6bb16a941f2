package streams

import (
	"context"
	"fmt"

	"github.com/celeroot/celeroot/events"
	"github.com/redis/go-redis/v9"
)

// heartbeatScript appends a heartbeat to the worker's heartbeat stream
// (KEYS[1]) and, when ARGV[1] is '1', the same event to its event store
// shard (KEYS[2], same slot) as a checkpoint. It returns the heartbeat
// stream entry ID.
var heartbeatScript = redis.NewScript(`
local f = {}
for i = 2, #ARGV do f[#f+1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], '*', unpack(f))
if ARGV[1] == '1' then redis.call('XADD', KEYS[2], '*', unpack(f)) end
return id
`)

// Heartbeat records a worker.heartbeat.v1 in the worker's heartbeat stream
// (every heartbeat; short retention) and, with checkpoint, also in its event
// store shard (kept and archived like every event), in one atomic step.
func (l *Log) Heartbeat(ctx context.Context, e events.Envelope, checkpoint bool) (string, error) {
	p, ok := e.Payload.(events.WorkerHeartbeat)
	if !ok {
		return "", fmt.Errorf("heartbeat: payload is %T, want events.WorkerHeartbeat", e.Payload)
	}
	fields, err := events.Encode(e)
	if err != nil {
		return "", err
	}
	flag := "0"
	if checkpoint {
		flag = "1"
	}
	keys := []string{l.keys.HeartbeatsFor(p.Hostname), l.keys.EventsFor(p.Hostname)}
	id, err := heartbeatScript.Run(ctx, l.rdb, keys, append([]any{flag}, fields...)...).Text()
	if err != nil {
		return "", fmt.Errorf("record heartbeat of %s: %w", p.Hostname, err)
	}
	return id, nil
}
