package ctl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/urfave/cli/v3"
)

func workersCommand() *cli.Command {
	return &cli.Command{
		Name:  "workers",
		Usage: "look at the workers of the cluster",
		Commands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list workers with their role, state, labels and last heartbeat",
				Description: `A worker is healthy while its heartbeats arrive, unhealthy after ` + fmt.Sprint(projections.MissedHeartbeats) + ` missed
intervals, draining while it finishes its tasks before stopping, and left
once it stopped cleanly.

Examples:
  celeroot workers list
  celeroot workers list --role webserver -o json`,
				Flags: []cli.Flag{
					outputFlag(),
					&cli.StringFlag{Name: "role", Usage: "only workers of this role"},
					atFlag(),
				},
				Action: workersList,
			},
			{
				Name:      "show",
				Usage:     "show one worker",
				ArgsUsage: "<hostname>",
				Flags:     []cli.Flag{outputFlag()},
				Action:    workersShow,
			},
			{
				Name:      "drain",
				Usage:     "tell a worker to stop taking tasks, finish running ones and leave (as SIGTERM does)",
				ArgsUsage: "<hostname>",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "reason", Usage: "why, for the record"}},
				Action:    workersDrain,
			},
		},
	}
}

func workersShow(ctx context.Context, cmd *cli.Command) error {
	host, err := oneArg(cmd, "hostname")
	if err != nil {
		return err
	}
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	w, err := projections.NewStore(e.rdb, e.keys).Worker(ctx, host)
	if errors.Is(err, projections.ErrNotFound) {
		return fmt.Errorf("no worker %s in cluster %s (see 'celeroot workers list')", host, e.keys.Cluster)
	}
	if err != nil {
		return err
	}
	now := time.Now()
	out := cmd.Root().Writer
	if ok, err := writeData(out, format, workerView{w, w.State(now)}); ok {
		return err
	}
	tw := newTable(out)
	fmt.Fprintf(tw, "Hostname:\t%s\n", w.Hostname)
	fmt.Fprintf(tw, "Role:\t%s\n", w.Role)
	fmt.Fprintf(tw, "State:\t%s\n", w.State(now))
	fmt.Fprintf(tw, "Labels:\t%s\n", formatLabels(w.Labels))
	fmt.Fprintf(tw, "Tasks:\t%s\n", strings.Join(w.Tasks, ", "))
	fmt.Fprintf(tw, "Version:\t%s\n", orDash(w.Version))
	fmt.Fprintf(tw, "PID:\t%d\n", w.PID)
	fmt.Fprintf(tw, "Registered:\t%s (%s)\n", fmtTime(w.RegisteredAt), ago(now, w.RegisteredAt))
	fmt.Fprintf(tw, "Last heartbeat:\t%s (%s, every %s)\n", fmtTime(w.LastHeartbeat), ago(now, w.LastHeartbeat), w.HeartbeatInterval)
	fmt.Fprintf(tw, "Running tasks:\t%d\n", w.Running)
	if !w.LeftAt.IsZero() {
		fmt.Fprintf(tw, "Left:\t%s (%s): %s\n", fmtTime(w.LeftAt), ago(now, w.LeftAt), orDash(w.LeftReason))
	}
	return tw.Flush()
}

func workersDrain(ctx context.Context, cmd *cli.Command) error {
	host, err := oneArg(cmd, "hostname")
	if err != nil {
		return err
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	w, err := projections.NewStore(e.rdb, e.keys).Worker(ctx, host)
	if errors.Is(err, projections.ErrNotFound) {
		return fmt.Errorf("no worker %s in cluster %s (see 'celeroot workers list')", host, e.keys.Cluster)
	}
	if err != nil {
		return err
	}
	if st := w.State(time.Now()); st == projections.WorkerLeft {
		return fmt.Errorf("worker %s has already left", host)
	}
	src := events.Source{Cluster: e.keys.Cluster, Actor: actor()}
	req := src.New(events.WorkerDrain{Hostname: host, Reason: cmd.String("reason")})
	if _, err := streams.NewLog(e.rdb, e.keys).Append(ctx, e.keys.WorkerControl(host), req, 1000); err != nil {
		return err
	}
	fmt.Fprintf(cmd.Root().Writer, "asked %s to drain: it takes no new tasks, finishes running ones, then leaves\n", host)
	return nil
}

// workerView is a worker as printed by JSON and YAML output.
type workerView struct {
	projections.Worker
	State string `json:"state"`
}

func workersList(ctx context.Context, cmd *cli.Command) error {
	if cmd.Args().Len() > 0 {
		return usagef("unexpected argument %q", cmd.Args().First())
	}
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	now := time.Now()
	var all []projections.Worker
	if bound, at, ok, err := parseAt(cmd); err != nil {
		return err
	} else if ok {
		recs, err := projections.AsOf(ctx, e.rdb, e.keys, bound)
		if err != nil {
			return err
		}
		all, now = recs.Workers(), at
		fmt.Fprintf(cmd.Root().ErrWriter, "As of %s:\n", at.Local().Format(time.RFC3339))
	} else if all, err = projections.NewStore(e.rdb, e.keys).Workers(ctx); err != nil {
		return err
	}
	views := []workerView{}
	for _, w := range all {
		if r := cmd.String("role"); r != "" && w.Role != r {
			continue
		}
		views = append(views, workerView{w, w.State(now)})
	}
	out := cmd.Root().Writer
	if ok, err := writeData(out, format, views); ok {
		return err
	}
	if len(views) == 0 {
		fmt.Fprintf(cmd.Root().ErrWriter, "No workers in cluster %s. Start one with: celeroot agent --role <role>\n", e.keys.Cluster)
		return nil
	}
	tw := newTable(out)
	if format == "wide" {
		fmt.Fprintln(tw, "HOSTNAME\tROLE\tSTATE\tLABELS\tLAST HEARTBEAT\tRUNNING\tVERSION\tPID\tTASKS")
	} else {
		fmt.Fprintln(tw, "HOSTNAME\tROLE\tSTATE\tLABELS\tLAST HEARTBEAT\tRUNNING")
	}
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d", v.Hostname, v.Role, v.State, formatLabels(v.Labels), ago(now, v.LastHeartbeat), v.Running)
		if format == "wide" {
			fmt.Fprintf(tw, "\t%s\t%d\t%s", orDash(v.Version), v.PID, strings.Join(v.Tasks, ","))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// osUser returns "user@host" of whoever runs the CLI.
func osUser() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	if host != "" {
		return name + "@" + strings.Split(host, ".")[0]
	}
	return name
}
