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
	"github.com/celeroot/celeroot/schema"
	"github.com/celeroot/celeroot/streams"
	"github.com/urfave/cli/v3"
)

func workersCommand() *cli.Command {
	return &cli.Command{
		Name:  "workers",
		Usage: "look at, add, remove, drain and scale the workers of the cluster",
		Description: `Examples:
  celeroot workers list -o wide
  celeroot workers add --hostname webserver01 --role webserver --label tier=web
  celeroot workers scale --role webserver --replicas 3
  celeroot workers remove webserver01`,
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
					&cli.StringFlag{Name: "selector", Aliases: []string{"l"}, Usage: "only workers with these labels, k=v,k2=v2"},
					&cli.BoolFlag{Name: "all", Usage: "also workers removed with 'workers remove'"},
					atFlag(),
					archiveFlag(),
				},
				Action: workersList,
			},
			{
				Name:  "show",
				Usage: "show one worker",
				Description: `Examples:
  celeroot workers show web1
  celeroot workers show web1 -o json`,
				ArgsUsage: "<hostname>",
				Flags:     []cli.Flag{outputFlag()},
				Action:    workersShow,
			},
			{
				Name:  "add",
				Usage: "expect a worker: list it as expected and print how to start its agent",
				Description: `The worker is listed as expected until its agent registers.

Example:
  celeroot workers add --hostname webserver01 --role webserver --label tier=web --label environment=production`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "hostname", Required: true, Usage: "the worker's name"},
					&cli.StringFlag{Name: "role", Required: true, Usage: "its role"},
					&cli.StringSliceFlag{Name: "label", Usage: "label k=v (repeatable)"},
				},
				Action: workersAdd,
			},
			{
				Name:  "remove",
				Usage: "take a worker out: it drains and leaves, its queued tasks expire, and it is no longer listed",
				Description: `Example:
  celeroot workers remove webserver01`,
				ArgsUsage: "<hostname>",
				Action:    workersRemove,
			},
			{
				Name:  "scale",
				Usage: "set the desired number of workers of a role (a new config revision)",
				Description: `The print provider (the default) gives the agent command for each missing
worker; the local provider starts or stops agents on this machine and waits
for them (--wait), showing progress on stderr.

Examples:
  celeroot workers scale --role webserver --replicas 3
  celeroot workers scale --role webserver --replicas 1 --provider local
  celeroot workers scale --role webserver --group edge --replicas 2 --expect-revision 7`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "role", Required: true, Usage: "the role"},
					&cli.IntFlag{Name: "replicas", Required: true, Usage: "desired workers"},
					&cli.StringFlag{Name: "group", Usage: "the worker group, when several have the role"},
					&cli.IntFlag{Name: "expect-revision", Value: -1, Usage: "refuse unless the applied revision is this one"},
					&cli.StringFlag{Name: "message", Aliases: []string{"m"}, Usage: "why, kept with the revision"},
					&cli.BoolFlag{Name: "dry-run", Usage: "show what would change, apply nothing"},
					&cli.StringFlag{Name: "provider", Value: "print", Usage: "print (the join command for each missing worker), or local: start or stop agents on this machine to match"},
					&cli.StringFlag{Name: "state-dir", Usage: "the local provider's pid and log files (default: $XDG_STATE_HOME/celeroot/<cluster>)"},
					&cli.DurationFlag{Name: "wait", Value: 30 * time.Second, Usage: "with --provider local, how long to wait for started agents to become healthy and stopped ones to exit"},
				},
				Action: workersScale,
			},
			{
				Name:  "drain",
				Usage: "tell a worker to stop taking tasks, finish running ones and leave (as SIGTERM does)",
				Description: `Example:
  celeroot workers drain web1 --reason "kernel upgrade"`,
				ArgsUsage: "<hostname>",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "reason", Usage: "why, for the record"}},
				Action:    workersDrain,
			},
		},
	}
}

func workersShow(ctx context.Context, cmd *cli.Command) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	e, w, err := workerArg(ctx, cmd)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
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
	if len(w.Plugins) > 0 {
		ps := make([]string, len(w.Plugins))
		for i, p := range w.Plugins {
			ps[i] = p.Name + " " + p.Version
		}
		fmt.Fprintf(tw, "Plugins:\t%s\n", strings.Join(ps, ", "))
	}
	for _, p := range w.PluginProblems {
		fmt.Fprintf(tw, "Plugin refused:\t%s: %s\n", p.File, p.Error)
	}
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
	e, w, err := workerArg(ctx, cmd)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	host := w.Hostname
	if st := w.State(time.Now()); st == projections.WorkerLeft {
		return fmt.Errorf("worker %s has already left", host)
	}
	src := events.Source{Cluster: e.keys.Cluster, Actor: actor()}
	req := src.New(events.WorkerDrain{Hostname: host, Reason: cmd.String("reason")})
	if _, err := streams.NewLog(e.rdb, e.keys).Append(ctx, e.keys.WorkerControl(host), req, streams.ControlMaxLen); err != nil {
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
	if snap, ok, err := asOf(ctx, cmd, e); err != nil {
		return err
	} else if ok {
		all, now = snap.Workers(), snap.At
	} else if all, err = projections.NewStore(e.rdb, e.keys).Workers(ctx); err != nil {
		return err
	}
	views := []workerView{}
	var sel map[string]string
	if v := cmd.String("selector"); v != "" {
		if sel, err = schema.ParseSelector(v); err != nil {
			return usagef("--selector %q: %v", v, err)
		}
	}
	for _, w := range all {
		if r := cmd.String("role"); r != "" && w.Role != r {
			continue
		}
		if (w.Removed && !cmd.Bool("all")) || !matchesSelector(w, sel) {
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

func workersAdd(ctx context.Context, cmd *cli.Command) error {
	host, role := cmd.String("hostname"), cmd.String("role")
	if err := streams.ValidateName("hostname", host); err != nil {
		return usagef("--hostname: %v", err)
	}
	if err := streams.ValidateName("role", role); err != nil {
		return usagef("--role: %v", err)
	}
	labels, err := parseLabels(cmd.StringSlice("label"))
	if err != nil {
		return err
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	if w, err := projections.NewStore(e.rdb, e.keys).Worker(ctx, host); err == nil && !w.Expected && !w.Removed &&
		w.State(time.Now()) != projections.WorkerLeft {
		return fmt.Errorf("worker %s is already in cluster %s (%s)", host, e.keys.Cluster, w.State(time.Now()))
	}
	ev := events.Source{Cluster: e.keys.Cluster, Actor: actor()}.New(events.WorkerExpected{Hostname: host, Role: role, Labels: labels})
	if err := recordAndProject(ctx, e, host, ev); err != nil {
		return err
	}
	args := []string{"celeroot", "agent", "--redis", shellQuote(e.url), "--cluster", e.keys.Cluster, "--hostname", host, "--role", role}
	for _, k := range sortedKeys(labels) {
		args = append(args, "--label", shellQuote(k+"="+labels[k]))
	}
	fmt.Fprintf(cmd.Root().Writer, `worker %s is expected in cluster %s. Start its agent on that host:

  %s

(set CELEROOT_REDIS_PASSWORD in its environment if Redis needs one; examples/celeroot-agent.service runs it under systemd)
`, host, e.keys.Cluster, strings.Join(args, " "))
	return nil
}

// recordAndProject records a worker event and applies it to the projection
// at once (idempotent; the projectors apply it again later).
func recordAndProject(ctx context.Context, e *env, host string, ev events.Envelope) error {
	id, err := streams.NewLog(e.rdb, e.keys).Record(ctx, host, ev)
	if err != nil {
		return err
	}
	return projections.NewStore(e.rdb, e.keys).Apply(ctx, []streams.Message{{Stream: e.keys.EventsFor(host), ID: id, Envelope: ev}})
}

func workersRemove(ctx context.Context, cmd *cli.Command) error {
	e, w, err := workerArg(ctx, cmd)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	host := w.Hostname
	src := events.Source{Cluster: e.keys.Cluster, Actor: actor()}
	log := streams.NewLog(e.rdb, e.keys)
	out := cmd.Root().Writer
	if st := w.State(time.Now()); st != projections.WorkerLeft && st != projections.WorkerExpected {
		if _, err := log.Append(ctx, e.keys.WorkerControl(host), src.New(events.WorkerDrain{Hostname: host, Reason: "removed"}), streams.ControlMaxLen); err != nil {
			return err
		}
		fmt.Fprintf(out, "asked %s to drain and leave\n", host)
	}
	if err := recordAndProject(ctx, e, host, src.New(events.WorkerRemoved{Hostname: host, Reason: "removed by " + src.Actor})); err != nil {
		return err
	}
	// Its queued tasks will never run there: end them now, with the reason.
	expired := 0
	err = streams.Replay(ctx, e.rdb, e.keys.WorkerDispatch(host), "-", "+", 0, func(en streams.Entry) error {
		sub, ok := en.Envelope.Payload.(events.TaskSubmitted)
		if en.Err != nil || !ok {
			return nil
		}
		res, err := log.End(ctx, src.New(events.TaskEnded{TaskID: sub.TaskID, State: events.EndExpired,
			Reason: fmt.Sprintf("worker %s was removed from the cluster before the task ran", host)}, events.WithCorrelation(sub.TaskID)))
		if err == nil && res.Ended {
			expired++
		}
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "removed %s from cluster %s; %d queued tasks expired\n", host, e.keys.Cluster, expired)
	return nil
}

func workersScale(ctx context.Context, cmd *cli.Command) error {
	role, replicas := cmd.String("role"), int(cmd.Int("replicas"))
	if replicas < 0 {
		return usagef("--replicas %d: must be >= 0", replicas)
	}
	if err := checkProvider(cmd); err != nil {
		return err
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	rev, _, b, err := applied(ctx, e)
	if err != nil {
		return err
	}
	if b == nil {
		return fmt.Errorf("cluster %s has no applied config; describe its worker groups with 'celeroot config apply -f cluster.yaml'", e.keys.Cluster)
	}
	if b.Cluster == nil {
		return fmt.Errorf("the applied config of cluster %s has no Cluster document", e.keys.Cluster)
	}
	var idx []int
	var names []string
	for i, g := range b.Cluster.Spec.Workers {
		if g.Role == role && (cmd.String("group") == "" || g.Name == cmd.String("group")) {
			idx = append(idx, i)
			names = append(names, g.Name)
		}
	}
	switch {
	case len(idx) == 0:
		return fmt.Errorf("no worker group with role %s in the applied config (revision %d)", role, rev)
	case len(idx) > 1:
		return usagef("several worker groups have role %s (%s): say which with --group", role, strings.Join(names, ", "))
	}
	// A bad --provider is refused before anything is applied.
	p, err := newProvider(cmd, e)
	if err != nil {
		return err
	}
	b.Cluster.Spec.Workers[idx[0]].Replicas = replicas
	if cmd.String("message") == "" {
		_ = cmd.Set("message", fmt.Sprintf("scale %s (role %s) to %d", names[0], role, replicas))
	}
	if err := apply(ctx, cmd, e, b.Set(), 0); err != nil {
		return err
	}
	if cmd.Bool("dry-run") {
		return nil
	}
	return converge(ctx, cmd, e, b.Cluster, p, cmd.Duration("wait"))
}

// workerArg connects and reads the worker named by the command's one
// argument; the caller closes env.rdb.
func workerArg(ctx context.Context, cmd *cli.Command) (*env, projections.Worker, error) {
	host, err := oneArg(cmd, "hostname")
	if err != nil {
		return nil, projections.Worker{}, err
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return nil, projections.Worker{}, err
	}
	w, err := projections.NewStore(e.rdb, e.keys).Worker(ctx, host)
	if err != nil {
		e.rdb.Close()
		if errors.Is(err, projections.ErrNotFound) {
			return nil, projections.Worker{}, fmt.Errorf("no worker %s in cluster %s (see 'celeroot workers list')", host, e.keys.Cluster)
		}
		return nil, projections.Worker{}, err
	}
	return e, w, nil
}
