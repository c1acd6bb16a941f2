package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/urfave/cli/v3"
)

// archiveFlag is --archive: where to read the history trimmed from Redis.
func archiveFlag() cli.Flag {
	return &cli.StringFlag{Name: "archive", Sources: cli.EnvVars("CELEROOT_ARCHIVE"),
		Usage: "the directory 'events archive' writes to: read the events trimmed from Redis there"}
}

// openHistory returns the history of the cluster, with the archive of
// --archive if given.
func openHistory(cmd *cli.Command, e *env) (*projections.History, error) {
	dir := cmd.String("archive")
	if dir == "" {
		return projections.NewHistory(e.rdb, e.keys, nil), nil
	}
	a, err := streams.OpenArchive(dir, e.keys, false)
	if err != nil {
		return nil, fmt.Errorf("--archive: %w", err)
	}
	return projections.NewHistory(e.rdb, e.keys, a), nil
}

// historyOf opens the history (--archive) and the retention of the applied
// config, for the commands that fold the history.
func historyOf(ctx context.Context, cmd *cli.Command, e *env) (*projections.History, projections.Retention, error) {
	h, err := openHistory(cmd, e)
	if err != nil {
		return nil, projections.Retention{}, err
	}
	keep, err := retentionOf(ctx, e)
	return h, keep, err
}

// retentionOf is the retention of the applied config.
func retentionOf(ctx context.Context, e *env) (projections.Retention, error) {
	_, _, b, err := applied(ctx, e)
	if err != nil {
		return projections.Retention{}, err
	}
	return agent.RetentionOf(b), nil
}

func archiveCommand() *cli.Command {
	return &cli.Command{
		Name:  "archive",
		Usage: "write the events not archived yet to the archive directory, so the retention pass may trim them from Redis",
		Description: `The archive is a directory of JSON-lines files, one per shard and segment, in
the format of 'events replay -o jsonl'. Lines are fsynced before each shard's
watermark in Redis moves, and nothing above the watermark is ever trimmed. A
run is idempotent and resumable: it starts after the last complete line of
each shard's files (a torn last line, left by a crash, is cut off).

Run it from cron on one host, always into the same directory (keep that
directory backed up: it is the history beyond the retention):

  */15 * * * *  celeroot events archive --dir /var/lib/celeroot/archive

Examples:
  celeroot events archive --dir /var/lib/celeroot/archive
  celeroot events archive --dir /var/lib/celeroot/archive --trim   # then run a retention pass
  celeroot events replay --archive /var/lib/celeroot/archive --from 2026-11-01T00:00:00Z`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "the archive directory (created if missing)", Required: true},
			&cli.BoolFlag{Name: "trim", Usage: "run a retention pass afterwards, trimming what is archived and past the retention"},
			&cli.BoolFlag{Name: "new-archive", Usage: "start a new archive here although the cluster was archived elsewhere (it begins with the oldest event still in Redis)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text or json"},
		},
		Action: eventsArchive,
	}
}

func trimCommand() *cli.Command {
	return &cli.Command{
		Name:  "trim",
		Usage: "run a retention pass now: trim every stream below what its consumers still need, remove old tasks and gone workers",
		Description: `The agents run this pass every minute between them (one at a time, by a lease);
run it yourself to see what it does (--dry-run), or from cron when agents run
with --janitor=false. The bounds come from spec.retention of the applied
config (see ADR 0008). The event store is only trimmed below what is
archived, unless spec.retention.archive is none.

Examples:
  celeroot events trim --dry-run
  celeroot events trim -o json`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Usage: "say what would be trimmed and removed, change nothing"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text or json"},
		},
		Action: eventsTrim,
	}
}

func textOrJSON(cmd *cli.Command) (string, error) {
	f := cmd.String("output")
	if f != "text" && f != "json" {
		return "", usagef("--output %q: use text or json", f)
	}
	return f, nil
}

// archiveReport is what events archive prints.
type archiveReport struct {
	Dir     string                     `json:"dir"`
	Archive string                     `json:"archive_id"`
	Shards  []streams.ArchiveResult    `json:"shards"`
	Trim    *projections.JanitorReport `json:"trim,omitempty"`
}

func eventsArchive(ctx context.Context, cmd *cli.Command) error {
	format, err := textOrJSON(cmd)
	if err != nil {
		return err
	}
	dir := cmd.String("dir")
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	a, err := streams.OpenArchive(dir, e.keys, true)
	if err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	unlock, err := a.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	rep := archiveReport{Dir: a.Dir(), Archive: a.ID()}
	host, _ := os.Hostname()
	lease := streams.NewLease(e.rdb, e.keys.ArchiverLease(), fmt.Sprintf("%s:%d:%s", host, os.Getpid(), a.Dir()), time.Minute)
	var errs []error
	err = lease.Hold(ctx, func(ctx context.Context) error {
		for n := range e.keys.EventShards() {
			res, err := streams.ArchiveShard(ctx, e.rdb, e.keys, a, n, streams.ArchiveOptions{NewArchive: cmd.Bool("new-archive")})
			if err != nil {
				if ctx.Err() != nil {
					return err
				}
				errs = append(errs, err)
			}
			rep.Shards = append(rep.Shards, res)
		}
		return nil
	})
	if errors.Is(err, streams.ErrLeaseHeld) {
		return fmt.Errorf("another events archive of cluster %s is running (%v); try again when it is done", e.keys.Cluster, err)
	}
	if err != nil {
		return err
	}
	if cmd.Bool("trim") && len(errs) == 0 {
		keep, err := retentionOf(ctx, e)
		if err != nil {
			return err
		}
		t, err := retentionPass(ctx, e, keep, false)
		if err != nil {
			return err
		}
		rep.Trim = &t
	}
	w := cmd.Root().Writer
	if format == "json" {
		if _, err := writeData(w, "json", rep); err != nil {
			return err
		}
	} else {
		written := 0
		for _, s := range rep.Shards {
			written += s.Written
		}
		fmt.Fprintf(w, "archive %s (%s): %d events written\n", rep.Dir, rep.Archive, written)
		tw := newTable(w)
		fmt.Fprintln(tw, "SHARD\tWRITTEN\tARCHIVED THROUGH")
		for _, s := range rep.Shards {
			fmt.Fprintf(tw, "%d\t%d\t%s\n", s.Shard, s.Written, describeID(s.Complete))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if rep.Trim != nil {
			fmt.Fprintln(w)
			printPass(w, *rep.Trim, false)
		}
	}
	return errors.Join(errs...)
}

// describeID shows an entry id with its time.
func describeID(id string) string {
	if id == "" {
		return "-"
	}
	if t, ok := streams.IDTime(id); ok {
		return fmt.Sprintf("%s (%s)", id, t.Local().Format("2006-01-02 15:04:05"))
	}
	return id
}

// retentionPass runs one retention pass from the command line.
func retentionPass(ctx context.Context, e *env, keep projections.Retention, dry bool) (projections.JanitorReport, error) {
	host, _ := os.Hostname()
	j := projections.NewJanitor(e.rdb, e.keys, projections.JanitorOptions{
		Owner: fmt.Sprintf("cli:%s:%d", host, os.Getpid()), Retention: func() projections.Retention { return keep }, DryRun: dry,
	})
	rep, err := j.Pass(ctx)
	if errors.Is(err, streams.ErrLeaseHeld) {
		return rep, fmt.Errorf("a retention pass of cluster %s is running now (%v); try again in a minute", e.keys.Cluster, err)
	}
	return rep, err
}

func eventsTrim(ctx context.Context, cmd *cli.Command) error {
	format, err := textOrJSON(cmd)
	if err != nil {
		return err
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	keep, err := retentionOf(ctx, e)
	if err != nil {
		return err
	}
	rep, err := retentionPass(ctx, e, keep, cmd.Bool("dry-run"))
	if err != nil {
		return err
	}
	w := cmd.Root().Writer
	if format == "json" {
		_, err := writeData(w, "json", rep)
		return err
	}
	printPass(w, rep, cmd.Bool("dry-run"))
	return nil
}

// printPass prints a retention pass for people.
func printPass(w io.Writer, rep projections.JanitorReport, dry bool) {
	removed, ended, forgotten := "removed", "ended now", "forgotten"
	if dry {
		fmt.Fprintln(w, "Dry run: nothing was changed. The cuts below are where each stream would be trimmed.")
		removed, ended, forgotten = "would be removed", "would be ended now", "would be forgotten"
	} else {
		kinds := make([]string, 0, len(rep.Removed))
		for k := range rep.Removed {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		var parts []string
		for _, k := range kinds {
			parts = append(parts, fmt.Sprintf("%d %s", rep.Removed[k], k))
		}
		fmt.Fprintf(w, "Trimmed:       %s entries\n", orDash(strings.Join(parts, ", ")))
	}
	fmt.Fprintf(w, "Tasks:         %d %s (ended before their retention); %d expired and %d abandoned %s\n",
		rep.TasksRemoved, removed, rep.TasksExpired, rep.TasksAbandoned, ended)
	fmt.Fprintf(w, "Workers:       %d %s (gone for longer than their retention)\n", rep.WorkersForgotten, forgotten)
	if rep.OldNamespaces > 0 {
		fmt.Fprintf(w, "Old projections: %d keys deleted (replaced by a rebuild)\n", rep.OldNamespaces)
	}
	fmt.Fprintf(w, "Dead letters:  %d (cap about %d)\n\n", rep.DeadLetters, streams.MaxDeadLetters)
	tw := newTable(w)
	fmt.Fprintln(tw, "STREAM\tTRIMMED\tTRIM LINE\tLIMITED BY")
	for _, t := range rep.Trims {
		cut := describeID(t.Cut)
		if t.Cut == "0-0" {
			cut = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", t.Stream, t.Removed, cut, orDash(t.Limit))
	}
	_ = tw.Flush()
	for _, m := range rep.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", m)
	}
}
