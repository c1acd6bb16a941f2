package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/urfave/cli/v3"
)

func eventsCommand() *cli.Command {
	return &cli.Command{
		Name:  "events",
		Usage: "read the event history, for people and for audit tooling",
		Description: `The history is the event store (every worker and task event, sharded; a worker's
heartbeat once a minute) and the config stream. Each line of -o jsonl is one
event:

  {"stream":"...","entry_id":"1732871234567-0","id":"01J...","type":"task.started.v1",
   "time":"...","cluster":"...","actor":"...","correlation":"...","causation":"...","data":{...}}

Lines are ordered by entry id (the Redis server's clock), then stream name, so
replaying the same range twice gives byte-identical output. Entries that do
not decode are written with "error" and their raw "fields" instead of "data".

Events older than the retention are trimmed from Redis once 'events archive'
has written them to the archive directory; replay and verify read them there
with --archive DIR ($CELEROOT_ARCHIVE), giving the same lines as before.

Examples:
  celeroot events tail --type task.finished.v1
  celeroot events tail -f
  celeroot events replay --from 2026-11-29T02:00:00Z --to 2026-11-29T03:00:00Z -o jsonl > audit.jsonl
  celeroot events archive --dir /var/lib/celeroot/archive --trim
  celeroot events replay --archive /var/lib/celeroot/archive -o jsonl > everything.jsonl`,
		Commands: []*cli.Command{
			{
				Name:  "tail",
				Usage: "print the latest events; -f keeps printing new ones",
				Description: `Examples:
  celeroot events tail -n 50
  celeroot events tail -f --type task.started.v1 --type task.finished.v1
  celeroot events tail --since 10m -o jsonl`,
				Flags: []cli.Flag{
					&cli.IntFlag{Name: "lines", Aliases: []string{"n"}, Value: 20, Usage: "how many past events to print"},
					&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new events"},
					&cli.StringSliceFlag{Name: "type", Usage: "only events of this type, such as task.finished.v1 (repeatable)"},
					&cli.DurationFlag{Name: "since", Usage: "only events of the last duration"},
					&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text or jsonl"},
				},
				Action: eventsTail,
			},
			{
				Name:  "verify",
				Usage: "check the history against the guarantees: one outcome per task, increasing attempts, one fire per schedule slot, projections equal to a fresh fold",
				Description: `Exit 0 when every guarantee holds, 1 and the violations otherwise. Where
events were trimmed from Redis, give the archive they went to.

Examples:
  celeroot events verify
  celeroot events verify -o json
  celeroot events verify --archive /var/lib/celeroot/archive`,
				Flags:  []cli.Flag{outputFlag(), archiveFlag()},
				Action: eventsVerify,
			},
			archiveCommand(),
			trimCommand(),
			{
				Name:  "replay",
				Usage: "print every event in a range, oldest first",
				Description: `Examples:
  celeroot events replay > history.jsonl
  celeroot events replay --from 2026-11-29T02:00:00Z --to 2026-11-29T03:00:00Z
  celeroot events replay --type config.applied.v1 -o text`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "from", Usage: "start: an RFC 3339 time or an entry id (default: the beginning)"},
					&cli.StringFlag{Name: "to", Usage: "end, included: an RFC 3339 time or an entry id (default: now)"},
					&cli.StringSliceFlag{Name: "type", Usage: "only events of this type (repeatable)"},
					&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "jsonl", Usage: "jsonl or text"},
					archiveFlag(),
				},
				Action: eventsReplay,
			},
		},
	}
}

// parseBound turns --from/--to into a stream range bound.
func parseBound(flag, v string, end bool) (string, error) {
	if v == "" {
		if end {
			return "+", nil
		}
		return "-", nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return strconv.FormatInt(t.UnixMilli(), 10), nil
	}
	if ms, seq, ok := strings.Cut(v, "-"); ok {
		if _, err1 := strconv.ParseUint(ms, 10, 64); err1 == nil {
			if _, err2 := strconv.ParseUint(seq, 10, 64); err2 == nil {
				return v, nil
			}
		}
	}
	return "", usagef("--%s %q: give an RFC 3339 time (2026-11-29T02:00:00Z) or an entry id (1732845600000-0)", flag, v)
}

// collect reads the range of the history, merged in entry id order (ties
// by stream name), keeping those that pass keep: every event store shard
// (from the archive, where the range reaches into what was trimmed from
// Redis) and the config stream (never trimmed).
func collect(ctx context.Context, e *env, h *projections.History, from, to string, keep func(streams.Entry) bool) ([]streams.Entry, error) {
	var all []streams.Entry
	add := func(en streams.Entry) error {
		if keep(en) {
			all = append(all, en)
		}
		return nil
	}
	for n := range e.keys.EventShards() {
		if err := h.Events(ctx, n, from, to, add); err != nil {
			return nil, err
		}
	}
	if err := streams.Replay(ctx, e.rdb, e.keys.ConfigStream(), from, to, 0, add); err != nil {
		return nil, err
	}
	sortEntries(all)
	return all, nil
}

// historyStreams are the streams events tail follows (the part of the
// history still in Redis).
func historyStreams(k streams.Keys) []string {
	return append(k.EventShards(), k.ConfigStream())
}

// sortEntries orders entries of several streams by entry id (the Redis
// server's clock), then stream name, so the order is the same every time.
func sortEntries(list []streams.Entry) {
	sort.SliceStable(list, func(i, j int) bool {
		if c := streams.CompareIDs(list[i].ID, list[j].ID); c != 0 {
			return c < 0
		}
		return list[i].Stream < list[j].Stream
	})
}

func typeFilter(types []string) func(streams.Entry) bool {
	return func(en streams.Entry) bool {
		if len(types) == 0 {
			return true
		}
		for _, t := range types {
			if en.Err == nil && en.Envelope.Type == t {
				return true
			}
		}
		return false
	}
}

func writeEvents(w io.Writer, format string, list []streams.Entry) error {
	for _, en := range list {
		if format == "jsonl" {
			if _, err := w.Write(streams.EncodeLine(en)); err != nil {
				return err
			}
			continue
		}
		if _, err := fmt.Fprintln(w, describeEvent(en)); err != nil {
			return err
		}
	}
	return nil
}

// describeEvent renders one event on one line for people.
func describeEvent(en streams.Entry) string {
	if en.Err != nil {
		return fmt.Sprintf("%s  %s  (undecodable: %v)", en.ID, en.Stream, en.Err)
	}
	env := en.Envelope
	var what string
	switch p := env.Payload.(type) {
	case events.WorkerRegistered:
		what = fmt.Sprintf("%s registered (role %s, %s)", p.Hostname, p.Role, formatLabels(p.Labels))
	case events.WorkerHeartbeat:
		what = fmt.Sprintf("%s heartbeat #%d (%d running, revision %d)", p.Hostname, p.Seq, p.Running, p.Revision)
	case events.WorkerLeft:
		what = fmt.Sprintf("%s left: %s", p.Hostname, p.Reason)
	case events.TaskSubmitted:
		what = fmt.Sprintf("task %s submitted: %s to %s %s", p.TaskID, p.Task, p.Route, p.Target)
	case events.TaskStarted:
		what = fmt.Sprintf("task %s attempt %d started on %s", p.TaskID, p.Attempt, p.Worker)
	case events.TaskFinished:
		what = fmt.Sprintf("task %s attempt %d %s on %s (exit %d)", p.TaskID, p.Attempt, p.Outcome, p.Worker, p.ExitCode)
		if p.Stale {
			what += " [stale]"
		}
		if p.WillRetry {
			what += " [will retry]"
		}
	case events.ConfigApplied:
		what = fmt.Sprintf("config revision %d applied: %s", p.Revision, orDash(p.Message))
	default:
		b, _ := json.Marshal(env.Payload)
		what = string(b)
	}
	return fmt.Sprintf("%s  %-22s %-20s %s", env.Time.Local().Format("2006-01-02 15:04:05.000"), env.Type, env.Actor, what)
}

func eventsFormat(cmd *cli.Command) (string, error) {
	f := cmd.String("output")
	if f != "jsonl" && f != "text" {
		return "", usagef("--output %q: use jsonl or text", f)
	}
	return f, nil
}

func eventsReplay(ctx context.Context, cmd *cli.Command) error {
	format, err := eventsFormat(cmd)
	if err != nil {
		return err
	}
	from, err := parseBound("from", cmd.String("from"), false)
	if err != nil {
		return err
	}
	to, err := parseBound("to", cmd.String("to"), true)
	if err != nil {
		return err
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	h, err := openHistory(cmd, e)
	if err != nil {
		return err
	}
	list, err := collect(ctx, e, h, from, to, typeFilter(cmd.StringSlice("type")))
	if err != nil {
		return err
	}
	return writeEvents(cmd.Root().Writer, format, list)
}

func eventsTail(ctx context.Context, cmd *cli.Command) error {
	format, err := eventsFormat(cmd)
	if err != nil {
		return err
	}
	n := int(cmd.Int("lines"))
	if n < 0 {
		return usagef("--lines %d: must be >= 0", n)
	}
	from := "-"
	if d := cmd.Duration("since"); d > 0 {
		from = strconv.FormatInt(time.Now().Add(-d).UnixMilli(), 10)
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	keep := typeFilter(cmd.StringSlice("type"))
	// The last n of each stream are enough to find the last n overall.
	var list []streams.Entry
	last := map[string]string{}
	for _, s := range historyStreams(e.keys) {
		entries, err := streams.Last(ctx, e.rdb, s, int64(max(n, 1))*4+16, from)
		if err != nil {
			return err
		}
		last[s] = "0-0"
		if newest, err := streams.Last(ctx, e.rdb, s, 1, "-"); err == nil && len(newest) == 1 {
			last[s] = newest[0].ID
		}
		for _, en := range entries {
			if keep(en) {
				list = append(list, en)
			}
		}
	}
	sortEntries(list)
	if len(list) > n {
		list = list[len(list)-n:]
	}
	w := cmd.Root().Writer
	if err := writeEvents(w, format, list); err != nil {
		return err
	}
	if !cmd.Bool("follow") {
		return nil
	}
	for ctx.Err() == nil {
		var batch []streams.Entry
		for _, s := range historyStreams(e.keys) {
			entries, err := streams.After(ctx, e.rdb, s, last[s], 500)
			if err != nil {
				return err
			}
			for _, en := range entries {
				last[s] = en.ID
				if keep(en) {
					batch = append(batch, en)
				}
			}
		}
		sortEntries(batch)
		if err := writeEvents(w, format, batch); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(pollEvery):
		}
	}
	return nil
}

// atFlag is --at: show the state as of a past moment.
func atFlag() cli.Flag {
	return &cli.StringFlag{Name: "at", Usage: "show the state as it was at an RFC 3339 time or an event entry id (folded from the history)"}
}

// parseAt returns the stream bound and the moment of --at; ok is false
// when --at is not given.
func parseAt(cmd *cli.Command) (bound string, at time.Time, ok bool, err error) {
	v := cmd.String("at")
	if v == "" {
		return "", time.Time{}, false, nil
	}
	bound, err = parseBound("at", v, true)
	if err != nil {
		return "", time.Time{}, false, err
	}
	msPart, _, _ := strings.Cut(bound, "-")
	ms, _ := strconv.ParseInt(msPart, 10, 64)
	at = time.UnixMilli(ms)
	if t, perr := time.Parse(time.RFC3339Nano, v); perr == nil {
		at = t
	}
	if at.After(time.Now()) {
		return "", time.Time{}, false, usagef("--at %s is in the future", v)
	}
	return bound, at, true, nil
}

// asOf folds the history up to --at; ok is false when --at is not given.
// It prints "As of <time>:" to stderr.
func asOf(ctx context.Context, cmd *cli.Command, e *env) (snap projections.Snapshot, ok bool, err error) {
	bound, at, ok, err := parseAt(cmd)
	if err != nil || !ok {
		return projections.Snapshot{}, false, err
	}
	h, keep, err := historyOf(ctx, cmd, e)
	if err != nil {
		return projections.Snapshot{}, false, err
	}
	if snap, err = projections.AsOf(ctx, h, bound, at, keep); err != nil {
		return projections.Snapshot{}, false, err
	}
	fmt.Fprintf(cmd.Root().ErrWriter, "As of %s:\n", at.Local().Format(time.RFC3339))
	return snap, true, nil
}

func eventsVerify(ctx context.Context, cmd *cli.Command) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	h, keep, err := historyOf(ctx, cmd, e)
	if err != nil {
		return err
	}
	r, err := projections.CheckInvariants(ctx, h, keep, time.Now())
	if err != nil {
		return err
	}
	w := cmd.Root().Writer
	if ok, err := writeData(w, format, r); !ok {
		states := make([]string, 0, len(r.Ended))
		for st := range r.Ended {
			states = append(states, st)
		}
		sort.Strings(states)
		var parts []string
		for _, st := range states {
			parts = append(parts, fmt.Sprintf("%d %s", r.Ended[st], st))
		}
		fmt.Fprintf(w, "tasks: %d (%s; %d open)\n", r.Tasks, orDash(strings.Join(parts, ", ")), r.Open)
		fmt.Fprintf(w, "attempts: %d (%d retried after failing, %d reclaimed from a stopped worker; %d stale results)\n", r.Attempts, r.Retries, r.Reclaims, r.StaleResults)
		fmt.Fprintf(w, "tasks with more than one outcome: %d\n", r.Duplicated)
		fmt.Fprintf(w, "schedule fires: %d\n", r.Fires)
		fmt.Fprintf(w, "projection records checked: %d\n", r.Records)
		if r.Undecodable > 0 {
			fmt.Fprintf(w, "undecodable entries: %d\n", r.Undecodable)
		}
		for _, v := range r.Violations {
			fmt.Fprintf(w, "VIOLATION: %s\n", v)
		}
	} else if err != nil {
		return err
	}
	if len(r.Violations) > 0 {
		return fmt.Errorf("%d violations of celeroot's guarantees found", len(r.Violations))
	}
	return nil
}
