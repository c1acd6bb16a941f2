package ctl

import (
	"context"
	"fmt"
	"sort"

	"github.com/celeroot/celeroot/projections"
	"github.com/urfave/cli/v3"
)

func projectionsCommand() *cli.Command {
	return &cli.Command{
		Name:  "projections",
		Usage: "check and rebuild the status views from the event history",
		Description: `Projections are disposable: they are folds of the event history, and a fresh
fold must equal what the projectors built incrementally.

Examples:
  celeroot projections verify     # exit 1 and the differences if they disagree
  celeroot projections rebuild    # replace every record with a fresh fold`,
		Commands: []*cli.Command{
			{Name: "verify", Usage: "compare every projection record with a fresh fold of the history",
				Description: `Exit 0 when they agree, 1 and the differences otherwise.

Example:
  celeroot projections verify`,
				Action: projectionsVerify},
			{Name: "rebuild", Usage: "replace every projection record with a fresh fold of the history",
				Description: `Each record is replaced atomically; events appended while it works are
applied again after, so agents may keep running.

Example:
  celeroot projections rebuild && celeroot projections verify`,
				Action: projectionsRebuild},
		},
	}
}

func projectionsVerify(ctx context.Context, cmd *cli.Command) error {
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	bad, n, err := projections.Verify(ctx, e.rdb, e.keys)
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

func projectionsRebuild(ctx context.Context, cmd *cli.Command) error {
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	n, err := projections.Rebuild(ctx, e.rdb, e.keys)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.Root().Writer, "rebuilt %d records from the history\n", n)
	return nil
}
