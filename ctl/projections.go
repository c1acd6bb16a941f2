package ctl

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/celeroot/celeroot/projections"
	"github.com/urfave/cli/v3"
)

func projectionsCommand() *cli.Command {
	return &cli.Command{
		Name:  "projections",
		Usage: "check and rebuild the status views from the event history",
		Description: `Projections are disposable: they are folds of the event history, and a fresh
fold must equal what the projectors built incrementally. A rebuild writes a
fresh fold into a new namespace, catches up with what happened meanwhile and
then switches every reader to it at once; the projectors follow within a
second, and the old namespace is deleted a minute later.

Where events were trimmed from Redis, the fold reads them from the archive:
give --archive DIR ($CELEROOT_ARCHIVE).

Examples:
  celeroot projections verify     # exit 1 and the differences if they disagree
  celeroot projections rebuild    # build fresh projections and switch to them
  celeroot projections rebuild --archive /var/lib/celeroot/archive`,
		Commands: []*cli.Command{
			{Name: "verify", Usage: "compare every projection record with a fresh fold of the history",
				Description: `Exit 0 when they agree, 1 and the differences otherwise.

Examples:
  celeroot projections verify
  celeroot projections verify --archive /var/lib/celeroot/archive`,
				Flags: []cli.Flag{archiveFlag()}, Action: projectionsVerify},
			{Name: "rebuild", Usage: "build fresh projections from the history and switch to them atomically",
				Description: `The fold goes into a new namespace that nobody reads yet; the rebuild then
applies what was appended meanwhile and switches every reader to it at once,
so agents may keep running. Projectors move to it within a second; the old
namespace is deleted a minute later.

Examples:
  celeroot projections rebuild && celeroot projections verify
  celeroot projections rebuild --archive /var/lib/celeroot/archive`,
				Flags: []cli.Flag{archiveFlag()}, Action: projectionsRebuild},
		},
	}
}

func projectionsVerify(ctx context.Context, cmd *cli.Command) error {
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	h, keep, err := historyOf(ctx, cmd, e)
	if err != nil {
		return err
	}
	bad, n, err := projections.Verify(ctx, h, keep, time.Now())
	if err != nil {
		return err
	}
	w := cmd.Root().Writer
	for _, m := range bad {
		fields := make([]string, 0, len(m.Stored))
		for k := range m.Stored {
			fields = append(fields, k)
		}
		sort.Strings(fields)
		for _, k := range fields {
			fmt.Fprintf(w, "%s %s: %s: stored %q, history says %q\n", m.Ref.Kind, m.Ref.ID, k, m.Stored[k], m.Folded[k])
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d records differ from the history (fix with 'celeroot projections rebuild')", len(bad), n)
	}
	fmt.Fprintf(w, "%d records match the history\n", n)
	return nil
}

// Garbage collection of a batch command (a rebuild folds the whole history
// in memory, and most of what it allocates is garbage at once): the heap
// may grow to batchGCPercent % above what is live, rather than Go's 100 %,
// unless $GOGC says otherwise; and the soft memory limit is at most
// batchMemoryShare of the machine's memory, unless $GOMEMLIMIT says
// otherwise, so that the collector works harder before memory runs out.
const (
	batchGCPercent   = 200
	batchMemoryShare = 0.5
)

// batchGC sets the batch command's collector settings and returns what
// restores the previous ones.
func batchGC() (restore func()) {
	prevPercent, prevLimit := -2, int64(-1)
	if os.Getenv("GOGC") == "" {
		prevPercent = debug.SetGCPercent(batchGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		if total := memTotal(); total > 0 {
			limit := int64(float64(total) * batchMemoryShare)
			if cur := debug.SetMemoryLimit(-1); limit < cur {
				prevLimit = debug.SetMemoryLimit(limit)
			}
		}
	}
	return func() {
		if prevPercent != -2 {
			debug.SetGCPercent(prevPercent)
		}
		if prevLimit >= 0 {
			debug.SetMemoryLimit(prevLimit)
		}
	}
}

// memTotal is the machine's memory in bytes (MemTotal of /proc/meminfo),
// or 0 where it cannot be read.
func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

func projectionsRebuild(ctx context.Context, cmd *cli.Command) error {
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	h, keep, err := historyOf(ctx, cmd, e)
	if err != nil {
		return err
	}
	defer batchGC()()
	host, _ := os.Hostname()
	res, err := projections.Rebuild(ctx, h, projections.RebuildOptions{
		Retention: keep, Consumer: fmt.Sprintf("rebuild-%s-%d", host, os.Getpid()),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.Root().Writer, "rebuilt %d records from the history (and %d events since) as projections v%d; switched from v%d\n",
		res.Records, res.CaughtUp, res.Version, res.Previous)
	return nil
}
