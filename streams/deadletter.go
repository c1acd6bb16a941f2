package streams

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Dead-letter entry fields. The original entry's fields are kept under
// "orig.<name>" so nothing of it is lost.
const (
	deadReason   = "reason"
	deadStream   = "stream"
	deadEntryID  = "entry_id"
	deadGroup    = "group"
	deadConsumer = "consumer"
	deadTime     = "time"
	deadOrig     = "orig."
)

// DeadEntry is an entry that could not be processed.
type DeadEntry struct {
	// ID is the dead-letter stream's entry ID (set when read back).
	ID       string
	Stream   string
	EntryID  string
	Group    string
	Consumer string
	Reason   string
	Time     time.Time
	// Fields are the original entry's fields (nil if it was deleted).
	Fields map[string]any
}

// MaxDeadLetters caps the dead-letter stream, approximately (MAXLEN ~ on
// every append): beyond it the oldest dead letters are dropped. The stream
// has no consumer group; status commands and the janitor warn from
// DeadLetterWarnAt on, before anything is dropped.
const MaxDeadLetters = 100000

// DeadLetterWarnAt is the dead-letter count from which cluster status and
// the retention pass warn that the oldest will soon be dropped.
const DeadLetterWarnAt = MaxDeadLetters * 8 / 10

// DeadLetter appends d to the dead-letter stream dlq.
func DeadLetter(ctx context.Context, rdb redis.UniversalClient, dlq string, d DeadEntry) error {
	vals := []any{
		deadReason, d.Reason, deadStream, d.Stream, deadEntryID, d.EntryID,
		deadGroup, d.Group, deadConsumer, d.Consumer, deadTime, time.Now().UTC().Format(time.RFC3339Nano),
	}
	names := make([]string, 0, len(d.Fields))
	for k := range d.Fields {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		vals = append(vals, deadOrig+k, d.Fields[k])
	}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: dlq, Values: vals, MaxLen: MaxDeadLetters, Approx: true}).Err(); err != nil {
		return fmt.Errorf("dead-letter %s %s: %w", d.Stream, d.EntryID, err)
	}
	return nil
}

// DeadLetters returns up to n dead letters, newest first.
func DeadLetters(ctx context.Context, rdb redis.UniversalClient, dlq string, n int64) ([]DeadEntry, error) {
	msgs, err := rdb.XRevRangeN(ctx, dlq, "+", "-", n).Result()
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	out := make([]DeadEntry, 0, len(msgs))
	for _, m := range msgs {
		d := DeadEntry{ID: m.ID, Fields: map[string]any{}}
		for k, v := range m.Values {
			s, _ := v.(string)
			switch {
			case k == deadReason:
				d.Reason = s
			case k == deadStream:
				d.Stream = s
			case k == deadEntryID:
				d.EntryID = s
			case k == deadGroup:
				d.Group = s
			case k == deadConsumer:
				d.Consumer = s
			case k == deadTime:
				d.Time, _ = time.Parse(time.RFC3339Nano, s)
			case strings.HasPrefix(k, deadOrig):
				d.Fields[strings.TrimPrefix(k, deadOrig)] = v
			}
		}
		out = append(out, d)
	}
	return out, nil
}
