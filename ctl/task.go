package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/schema"
	"github.com/celeroot/celeroot/streams"
	"github.com/oklog/ulid/v2"
	"github.com/urfave/cli/v3"
)

func taskCommand() *cli.Command {
	return &cli.Command{
		Name:  "task",
		Usage: "run tasks and look at their status and output",
		Description: `Examples:
  celeroot task run install-package --target webserver01 --package nginx
  celeroot task run command --target role:webserver --wait -- uptime
  celeroot task status <task-id>
  celeroot task logs <task-id>`,
		Commands: []*cli.Command{
			{
				Name:      "run",
				Usage:     "submit a task to a worker, to every worker of a role, or to a role's queue",
				ArgsUsage: "<task> [-- command args...]",
				Description: `Targets:
  --target web1            the worker named web1
  --target role:webserver  every healthy worker of the role (one task each)
  --target all             every healthy worker
  --queue webserver        any one worker of the role (the first free one)

The built-in task 'command' runs the argv given after --, directly, never
through a shell.

Examples:
  celeroot task run command --target web1 --wait -- uname -a
  celeroot task run command --target role:webserver --wait -- systemctl is-active nginx
  celeroot task run command --queue database --timeout 10m -- /usr/local/bin/backup`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "target", Aliases: []string{"t"}, Usage: "hostname, role:<role>, or all"},
					&cli.StringFlag{Name: "queue", Aliases: []string{"q"}, Usage: "role whose queue takes the task (any one worker)"},
					&cli.StringFlag{Name: "selector", Aliases: []string{"l"}, Usage: "only workers with these labels, k=v,k2=v2 (alone: every healthy worker with them)"},
					&cli.StringSliceFlag{Name: "param", Aliases: []string{"p"}, Usage: "task parameter k=v (repeatable)"},
					&cli.DurationFlag{Name: "timeout", Usage: "kill the task after this long (0: no limit)", Value: time.Hour},
					&cli.BoolFlag{Name: "wait", Aliases: []string{"w"}, Usage: "stream the output and exit with the outcome (1 if any task did not succeed); on several workers, also the counts by state as they change and a line per task, on stderr"},
					&cli.IntFlag{Name: "max-attempts", Usage: "attempts a failing task gets before it fails for good", Value: 1},
					&cli.DurationFlag{Name: "retry-backoff", Usage: "delay before the first retry; doubles with each retry", Value: 5 * time.Second},
					&cli.DurationFlag{Name: "deadline", Usage: "a task not started within this long expires instead (its worker is offline or busy)", Value: DefaultDeadline},
					&cli.BoolFlag{Name: "check", Usage: "run the task's check (dry-run) form instead of its action"},
					&cli.StringFlag{Name: "idempotency-key", Usage: "a repeated run with the same key within " + fmtDuration(streams.DefaultIdempotencyWindow) + " returns the first run's task instead of submitting again"},
				},
				Action: runTask,
			},
			{
				Name:  "status",
				Usage: "show a task: state, attempts, worker, timings, outcome",
				Description: `A job id (a fan-out) shows the counts by state and every task.

Examples:
  celeroot task status 01J9Z4QK8M3V6T2X5B7C9D1E0F
  celeroot task status 01J9Z4QK8M3V6T2X5B7C9D1E0F -o json
  celeroot task status 01J9Z4QK8M3V6T2X5B7C9D1E0F --at 2026-11-29T02:00:00Z`,
				ArgsUsage: "<task-id>",
				Flags:     []cli.Flag{outputFlag(), atFlag(), archiveFlag()},
				Action:    taskStatus,
			},
			{
				Name:  "list",
				Usage: "list tasks, newest first",
				Description: `Examples:
  celeroot task list
  celeroot task list --state failed --since 1h
  celeroot task list --target web1 -o json`,
				Flags: []cli.Flag{
					outputFlag(),
					&cli.StringFlag{Name: "state", Usage: "only tasks in this state: waiting, running, succeeded, failed, timed_out"},
					&cli.StringFlag{Name: "target", Usage: "only tasks sent to this worker or queue"},
					&cli.StringFlag{Name: "task", Usage: "only tasks of this name"},
					&cli.DurationFlag{Name: "since", Usage: "only tasks submitted within this long"},
					&cli.IntFlag{Name: "limit", Usage: "show at most this many", Value: 20},
				},
				Action: taskList,
			},
			{
				Name:    "catalog",
				Aliases: []string{"defs"},
				Usage:   "list the tasks that can be run: the built-in ones and the applied catalog",
				Description: `Examples:
  celeroot task catalog
  celeroot task catalog -o json`,
				Flags:  []cli.Flag{outputFlag()},
				Action: taskCatalog,
			},
			{
				Name:  "cancel",
				Usage: "cancel a task: a waiting one never runs, a running one is killed",
				Description: `Example:
  celeroot task cancel 01J9Z4QK8M3V6T2X5B7C9D1E0F --reason "wrong host"`,
				ArgsUsage: "<task-id>",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "reason", Usage: "why, for the record"}},
				Action:    taskCancel,
			},
			{
				Name:  "dead",
				Usage: "list dead letters: tasks given up on, and entries that could not be read",
				Description: `Examples:
  celeroot task dead
  celeroot task dead --limit 10 -o json`,
				Flags:  []cli.Flag{outputFlag(), &cli.IntFlag{Name: "limit", Usage: "show at most this many", Value: 50}},
				Action: taskDead,
			},
			{
				Name:  "redrive",
				Usage: "submit an ended task again, as a new task with the same command and target",
				Description: `Example:
  celeroot task redrive 01J9Z4QK8M3V6T2X5B7C9D1E0F --wait`,
				ArgsUsage: "<task-id>",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "wait", Aliases: []string{"w"}, Usage: "follow the new task to its end"}},
				Action:    taskRedrive,
			},
			{
				Name:  "logs",
				Usage: "print a task's output",
				Description: `The task's stdout goes to stdout, its stderr to stderr.

Examples:
  celeroot task logs 01J9Z4QK8M3V6T2X5B7C9D1E0F
  celeroot task logs --follow 01J9Z4QK8M3V6T2X5B7C9D1E0F`,
				ArgsUsage: "<task-id>",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing output until the task ends"},
				},
				Action: taskLogs,
			},
		},
	}
}

// dispatchTarget is one resolved destination of a submission.
type dispatchTarget struct {
	route events.Route
	name  string
}

func runTask(ctx context.Context, cmd *cli.Command) error {
	args := cmd.Args().Slice()
	if len(args) == 0 {
		return usagef("missing the task name: celeroot task run <task> --target <host> [-- argv...]")
	}
	name, argv := args[0], args[1:]
	rawParams, err := parseParams(cmd.StringSlice("param"))
	if err != nil {
		return err
	}
	if name == "command" && len(argv) == 0 {
		return usagef("task command needs the command to run after --, as in: celeroot task run command --target web1 -- uname -a")
	}
	tflag, qflag := cmd.String("target"), cmd.String("queue")
	if tflag != "" && qflag != "" {
		return usagef("--target and --queue exclude each other")
	}
	if qflag != "" {
		if err := streams.ValidateName("role", qflag); err != nil {
			return usagef("--queue: %v", err)
		}
	}
	var selector map[string]string
	if sel := cmd.String("selector"); sel != "" {
		if qflag != "" {
			return usagef("--selector and --queue exclude each other: a queue task goes to any worker of the role")
		}
		if selector, err = schema.ParseSelector(sel); err != nil {
			return usagef("--selector %q: %v", sel, err)
		}
		if tflag == "" {
			tflag = "all"
		}
	}
	var target events.Target
	if tflag != "" {
		if target, err = events.ParseTarget(tflag); err != nil {
			return usagef("--target: %v", err) // before connecting
		}
	}
	timeout := cmd.Duration("timeout")
	if timeout < 0 {
		return usagef("--timeout %s: must be >= 0", timeout)
	}
	attempts := cmd.Int("max-attempts")
	if attempts < 1 || attempts > MaxAttempts {
		return usagef("--max-attempts %d: must be between 1 and %d", attempts, MaxAttempts)
	}
	backoff := cmd.Duration("retry-backoff")
	if backoff < 0 {
		return usagef("--retry-backoff %s: must be >= 0", backoff)
	}
	deadline := cmd.Duration("deadline")
	if deadline <= 0 {
		return usagef("--deadline %s: must be > 0", deadline)
	}
	idemKey := cmd.String("idempotency-key")
	if idemKey != "" && len(idemKey) > 200 {
		return usagef("--idempotency-key: at most 200 characters")
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	store := projections.NewStore(e.rdb, e.keys)

	// A catalog task: its parameters are checked against their schemas
	// before anything is submitted, and its policy gives the defaults. A
	// plugin task's are checked once its targets are known.
	var params map[string]any
	_, _, bundle, err := applied(ctx, e)
	if err != nil {
		return err
	}
	// A task that is neither built in nor in the catalog may be a plugin
	// some workers serve.
	var plugin *pluginTask
	var def *schema.Task
	var workers []projections.Worker
	now := time.Now()
	if name == "command" && cmd.Bool("check") {
		return usagef("the built-in task command has no check form")
	}
	if name == "command" {
		for k, v := range rawParams {
			if params == nil {
				params = map[string]any{}
			}
			params[k] = v
		}
	} else {
		if bundle != nil {
			def = bundle.Task(name)
		}
		if def == nil {
			if workers, err = store.Workers(ctx); err != nil {
				return err
			}
			if plugin = findPlugin(workers, name, now); plugin == nil {
				return unknownTask(name, bundle, pluginNames(workers, now))
			}
		}
		if len(argv) > 0 {
			return usagef("task %s takes parameters (--param name=value or --name value), not a command after --", name)
		}
	}
	if def != nil {
		if cmd.Bool("check") && def.Spec.Check == nil {
			return usagef("task %s has no check (dry-run) form", name)
		}
		var perrs []*schema.Error
		if params, perrs = def.ValidateParams(rawParams); len(perrs) > 0 {
			for _, pe := range perrs {
				fmt.Fprintf(cmd.Root().ErrWriter, "celeroot: task run: %s: %s\n", name, pe.Error())
			}
			return usagef("task %s: invalid parameters; nothing was submitted", name)
		}
		if !cmd.IsSet("timeout") && def.Spec.Timeout.Duration > 0 {
			timeout = def.Spec.Timeout.Duration
		}
		if !cmd.IsSet("max-attempts") && def.Spec.Retry.MaxAttempts > 0 {
			attempts = def.Spec.Retry.MaxAttempts
		}
		if !cmd.IsSet("retry-backoff") && def.Spec.Retry.Backoff.Duration > 0 {
			backoff = def.Spec.Retry.Backoff.Duration
		}
	}
	if tflag == "" && qflag == "" {
		// The configuration's queue routing: task-name pattern to role.
		if bundle != nil && bundle.Cluster != nil {
			if q, ok := bundle.Cluster.Spec.Queues.QueueFor(name); ok {
				if role, _ := schema.QueueRole(q); role != "" {
					qflag = role
				}
			}
		}
		if qflag == "" {
			return usagef("say where to run it: --target <hostname|role:R|all> or --queue <role> (no queue in the config routes %q)", name)
		}
	}

	var targets []dispatchTarget
	if qflag != "" {
		// --queue was checked above; a role from the config's queue
		// routing was checked with the document.
		targets = []dispatchTarget{{events.RouteQueue, qflag}}
	} else if targets, err = resolveTarget(ctx, store, target, selector, name); err != nil {
		var ue usageError
		if plugin != nil && !errors.As(err, &ue) {
			return fmt.Errorf("%w; plugin %s is served by: %s", err, name, plugin.where())
		}
		return err
	}
	if plugin != nil {
		// Checked against what the targets serve, before anything is
		// submitted.
		versions, err := plugin.forTargets(targets, workers, now)
		if err != nil {
			return err
		}
		if skipped := plugin.notServing(tflag, selector, workers, now); len(skipped) > 0 {
			fmt.Fprintf(cmd.Root().ErrWriter, "not sent to %s: plugin %s is not installed there\n", strings.Join(skipped, ", "), name)
		}
		if cmd.Bool("check") {
			for _, v := range versions {
				if !v.info.Check {
					return usagef("plugin %s on %s has no check (dry-run) form", plugin.label(v), strings.Join(v.workers, ", "))
				}
			}
		}
		var ok bool
		if params, ok = plugin.checkParams(versions, rawParams, cmd.Root().ErrWriter); !ok {
			return usagef("task %s: invalid parameters; nothing was submitted", name)
		}
		if !cmd.IsSet("timeout") {
			var longest time.Duration
			for _, v := range versions {
				longest = max(longest, time.Duration(v.info.TimeoutMS)*time.Millisecond)
			}
			if longest > 0 {
				timeout = longest
			}
		}
	}

	log := streams.NewLog(e.rdb, e.keys)
	src := events.Source{Cluster: e.keys.Cluster, Actor: actor()}
	if idemKey != "" {
		prev, err := log.Reserve(ctx, idemKey)
		if err != nil {
			return err
		}
		if len(prev) > 0 {
			fmt.Fprintf(cmd.Root().ErrWriter, "idempotency key %q was used within the last %s; not submitting again\n", idemKey, fmtDuration(streams.DefaultIdempotencyWindow))
			for _, id := range prev {
				fmt.Fprintln(cmd.Root().Writer, id)
			}
			if !cmd.Bool("wait") {
				return nil
			}
			return waitFor(ctx, cmd, e, prev, nil)
		}
	}
	jobID := ""
	if len(targets) > 1 {
		jobID = ulid.Make().String()
	}
	// All the tasks of a fan-out go in one batch: two round trips whatever
	// the number of workers.
	subs := make([]events.Envelope, len(targets))
	for i, t := range targets {
		id := ulid.Make().String()
		sub := events.TaskSubmitted{TaskID: id, JobID: jobID, Task: name, Params: params, Argv: argv,
			Route: t.route, Target: t.name, TimeoutMS: timeout.Milliseconds(),
			MaxAttempts: int64(attempts), BackoffMS: backoff.Milliseconds(), Deadline: time.Now().Add(deadline).UTC(),
			IdempotencyKey: idemKey, Check: cmd.Bool("check")}
		opts := []events.Option{events.WithCorrelation(id)}
		if jobID != "" {
			opts = []events.Option{events.WithCorrelation(jobID)}
		}
		subs[i] = src.New(sub, opts...)
	}
	_, errs := log.SubmitBatch(ctx, subs)
	var ids []string
	var failed []error
	for i, err := range errs {
		if err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", targets[i].name, err))
			continue
		}
		id := subs[i].Payload.(events.TaskSubmitted).TaskID
		ids = append(ids, id)
		fmt.Fprintln(cmd.Root().Writer, id)
	}
	if len(failed) > 0 {
		if idemKey != "" && len(ids) == 0 {
			_ = log.Forget(ctx, idemKey)
		} else if idemKey != "" {
			_ = log.Remember(ctx, idemKey, ids)
		}
		return fmt.Errorf("submitted %d of %d tasks: %w", len(ids), len(targets), errors.Join(failed...))
	}
	if idemKey != "" {
		if err := log.Remember(ctx, idemKey, ids); err != nil {
			return err
		}
	}
	errw := cmd.Root().ErrWriter
	if len(targets) > 1 {
		names := make([]string, len(targets))
		for i, t := range targets {
			names[i] = t.name
		}
		fmt.Fprintf(errw, "job %s: %d tasks on %s (status of all: celeroot task status %s)\n", jobID, len(ids), strings.Join(names, ", "), jobID)
	}
	if !cmd.Bool("wait") {
		return nil
	}
	var labels []string
	if len(targets) > 1 {
		for _, t := range targets {
			labels = append(labels, t.name)
		}
	}
	return waitFor(ctx, cmd, e, ids, labels)
}

// waitFor follows tasks to their end and reports their outcome.
func waitFor(ctx context.Context, cmd *cli.Command, e *env, ids, labels []string) error {
	if labels == nil {
		labels = make([]string, len(ids))
		if len(ids) > 1 {
			copy(labels, ids)
		}
	}
	errw := cmd.Root().ErrWriter
	store := projections.NewStore(e.rdb, e.keys)
	if len(ids) == 1 {
		done, err := follow(ctx, e, store, ids, labels, cmd.Root().Writer, errw, nil)
		if err != nil {
			return err
		}
		return summarize(done, errw)
	}
	// A fan-out: the counts by state as they change, the output of each
	// task as it comes, then one line per task.
	p := newProgress(cmd)
	show := func(states []string) {
		counts := map[string]int{}
		for _, st := range states {
			counts[st]++
		}
		p.Update(append([]span{{text: fmt.Sprintf("%d tasks: ", len(ids))}}, countSpans(counts, taskStateOrder)...)...)
	}
	done, err := follow(ctx, e, store, ids, labels, p.Writer(cmd.Root().Writer), p.Writer(errw), show)
	if err != nil {
		p.Done()
		return err
	}
	counts := map[string]int{}
	for _, t := range done {
		counts[t.State]++
	}
	p.Done(append([]span{{text: fmt.Sprintf("%d tasks: ", len(done))}}, countSpans(counts, taskStateOrder)...)...)
	printOutcomes(errw, done, labels)
	return summarize(done, errw)
}

// taskStateOrder is the order of task states in progress lines.
var taskStateOrder = []string{projections.TaskWaiting, projections.TaskRunning, projections.TaskRetrying,
	string(events.Succeeded), string(events.Failed), string(events.TimedOut), projections.TaskExpired,
	projections.TaskCancelled, projections.TaskDead}

// printOutcomes writes one line per ended task of a fan-out: its worker
// (or label), state, exit code and how long its last attempt ran.
func printOutcomes(w io.Writer, tasks []projections.Task, labels []string) {
	tw := newTable(w)
	fmt.Fprintln(tw, "WORKER\tTASK\tSTATE\tEXIT\tDURATION")
	for i, t := range tasks {
		exit, took := "-", "-"
		if t.Outcome != "" {
			exit = fmt.Sprint(t.ExitCode)
		}
		if n := len(t.Attempts); n > 0 && t.Attempts[n-1].DurationMS > 0 {
			took = fmtDuration(time.Duration(t.Attempts[n-1].DurationMS) * time.Millisecond)
		}
		worker := t.Worker
		if worker == "" {
			worker = labels[i]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", orDash(worker), t.ID, strings.ReplaceAll(t.State, "_", " "), exit, took)
	}
	tw.Flush()
}

// unknownTask explains a task name that is neither built in nor in the
// applied catalog.
func unknownTask(name string, b *schema.Bundle, plugins []string) error {
	known := append([]string{"command"}, plugins...)
	if b != nil {
		for _, t := range b.Tasks {
			known = append(known, t.Metadata.Name)
		}
	}
	sort.Strings(known)
	msg := fmt.Sprintf("unknown task %q", name)
	if best := closest(name, known); best != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", best)
	}
	if b == nil {
		msg += "; no task catalog is applied yet (celeroot config apply -f catalog/)"
	}
	return fmt.Errorf("%s; the tasks are: %s", msg, strings.Join(known, ", "))
}

// closest returns the candidate nearest to s by edit distance, if close.
func closest(s string, candidates []string) string {
	best, bestD := "", len(s)/2+2
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// resolveTarget turns a parsed --target into destinations, checked
// against the worker projection.
func resolveTarget(ctx context.Context, store *projections.Store, parsed events.Target, selector map[string]string, task string) ([]dispatchTarget, error) {
	target := parsed.String()
	all, err := store.Workers(ctx)
	if err != nil {
		return nil, err
	}
	// The selector narrows the workers first: labels, or role and hostname.
	workers := all[:0:0]
	for _, w := range all {
		if matchesSelector(w, selector) {
			workers = append(workers, w)
		}
	}
	what := "--target " + target
	if len(selector) > 0 {
		what += " --selector " + schema.Selector(selector).String()
		if len(workers) == 0 && len(all) > 0 {
			return nil, fmt.Errorf("--selector %s matched no worker (labels in use: %s)", schema.Selector(selector).String(), labelsInUse(all))
		}
	}
	now := time.Now()
	canRun := func(w projections.Worker) bool { return len(w.Tasks) == 0 || slices.Contains(w.Tasks, task) }
	var out []dispatchTarget
	if parsed.FanOut() {
		roles := map[string]bool{}
		var unhealthy []string
		for _, w := range workers {
			roles[w.Role] = true
			if !parsed.All && w.Role != parsed.Role {
				continue
			}
			if st := w.State(now); st != projections.WorkerHealthy {
				unhealthy = append(unhealthy, w.Hostname+" ("+st+")")
				continue
			}
			if canRun(w) {
				out = append(out, dispatchTarget{events.RouteWorker, w.Hostname})
			}
		}
		if len(out) == 0 {
			msg := fmt.Sprintf("%s matched no healthy worker that runs %q", what, task)
			if len(unhealthy) > 0 {
				msg += "; not healthy: " + strings.Join(unhealthy, ", ")
			}
			if known := sortedKeys(roles); len(known) > 0 {
				msg += "; known roles: " + strings.Join(known, ", ")
			} else {
				msg += "; no worker has registered yet (start one with 'celeroot agent')"
			}
			return nil, errors.New(msg)
		}
		return out, nil
	}
	for _, w := range all {
		if w.Hostname == target {
			if !matchesSelector(w, selector) {
				return nil, fmt.Errorf("worker %s does not match --selector %s (its labels: %s)", target, schema.Selector(selector).String(), formatLabels(w.Labels))
			}
			if !canRun(w) {
				return nil, fmt.Errorf("worker %s cannot run %q: it runs %s", target, task, strings.Join(w.Tasks, ", "))
			}
			return []dispatchTarget{{events.RouteWorker, target}}, nil
		}
	}
	names := make([]string, 0, len(all))
	for _, w := range all {
		names = append(names, w.Hostname)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("--target %s: no worker has registered yet (start one with 'celeroot agent')", target)
	}
	return nil, fmt.Errorf("--target %s: no such worker; known workers: %s", target, strings.Join(names, ", "))
}

// matchesSelector reports whether a worker has every label of sel; the
// keys role and hostname match those fields unless the worker has a label
// of that name.
func matchesSelector(w projections.Worker, sel map[string]string) bool {
	for k, v := range sel {
		got, ok := w.Labels[k]
		if !ok {
			switch k {
			case "role":
				got, ok = w.Role, true
			case "hostname":
				got, ok = w.Hostname, true
			}
		}
		if !ok || got != v {
			return false
		}
	}
	return true
}

func labelsInUse(ws []projections.Worker) string {
	seen := map[string]bool{}
	for _, w := range ws {
		for k, v := range w.Labels {
			seen[k+"="+v] = true
		}
	}
	if len(seen) == 0 {
		return "none"
	}
	return strings.Join(sortedKeys(seen), ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func parseParams(in []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range in {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("--param %q: use name=value, as in --param package=nginx", kv)
		}
		out[k] = v
	}
	return out, nil
}

// actor names the user running the CLI, for the audit trail.
func actor() string {
	u := "unknown"
	if v := osUser(); v != "" {
		u = v
	}
	return "cli:" + u
}

// pollEvery is how often a follower looks for new output and for the end.
const pollEvery = 150 * time.Millisecond

// follow prints the output of tasks as it comes, until every task has an
// outcome, and returns their final projections. With several tasks, each
// line is prefixed by its label. show, if not nil, gets the state of every
// task after each look at them.
func follow(ctx context.Context, e *env, store *projections.Store, ids, labels []string, stdout, stderr io.Writer, show func(states []string)) ([]projections.Task, error) {
	last := make([]string, len(ids)) // last entry read of each task's log
	done := make([]*projections.Task, len(ids))
	states := make([]string, len(ids))
	for i := range states {
		states[i] = projections.TaskWaiting
	}
	partial := make([]map[string]string, len(ids)) // unterminated line per stream
	for i := range partial {
		partial[i] = map[string]string{}
	}
	write := func(i int, stream, data string) {
		w := stdout
		if stream == "stderr" {
			w = stderr
		}
		if labels[i] == "" {
			io.WriteString(w, data)
			return
		}
		data = partial[i][stream] + data
		lines := strings.SplitAfter(data, "\n")
		partial[i][stream] = lines[len(lines)-1]
		for _, l := range lines[:len(lines)-1] {
			fmt.Fprintf(w, "%s | %s", labels[i], l)
		}
	}
	for {
		// Every unfinished task's state in one round trip, then its
		// output in another: output written before a task ended is then
		// certainly read below, on a cluster too (where the two are on
		// different nodes).
		var open []int
		for i := range ids {
			if done[i] == nil {
				open = append(open, i)
			}
		}
		openIDs := make([]string, len(open))
		logs := make([]string, len(open))
		afters := make([]string, len(open))
		for j, i := range open {
			openIDs[j], logs[j], afters[j] = ids[i], e.keys.TaskLog(ids[i]), last[i]
		}
		tasks, err := store.TasksByID(ctx, openIDs)
		if err != nil {
			return nil, err
		}
		byID := make(map[string]projections.Task, len(tasks))
		for _, t := range tasks {
			byID[t.ID] = t.At(time.Now())
		}
		for len(open) > 0 {
			out, err := streams.AfterEach(ctx, e.rdb, logs, afters, 500)
			if err != nil {
				return nil, fmt.Errorf("read output: %w", err)
			}
			var more []int
			for j, i := range open {
				for _, en := range out[j] {
					last[i], afters[j] = en.ID, en.ID
					if l, ok := en.Envelope.Payload.(events.TaskLog); ok && en.Err == nil {
						write(i, l.Stream, l.Data)
					}
				}
				if len(out[j]) == 500 {
					more = append(more, j)
				}
			}
			if len(more) == 0 {
				break
			}
			// Some logs have more: read on, those only.
			var o []int
			var l, a []string
			for _, j := range more {
				o, l, a = append(o, open[j]), append(l, logs[j]), append(a, afters[j])
			}
			open, logs, afters = o, l, a
		}
		remaining := 0
		for i := range ids {
			if done[i] != nil {
				continue
			}
			t, ok := byID[ids[i]]
			if ok {
				states[i] = t.State
			}
			if !ok || !(t.Done() || t.State == projections.TaskExpired) {
				remaining++
				continue
			}
			for stream, rest := range partial[i] {
				if rest != "" {
					write(i, stream, "\n")
				}
			}
			done[i] = &t
		}
		if show != nil {
			show(states)
		}
		if remaining == 0 {
			out := make([]projections.Task, len(done))
			for i, t := range done {
				out[i] = *t
			}
			return out, nil
		}
		if remaining == 1 {
			// One task left: wait for its output with a blocking read, so
			// it is printed as it comes, then look at its state again.
			for i := range ids {
				if done[i] == nil {
					if err := streams.WaitAfter(ctx, e.rdb, e.keys.TaskLog(ids[i]), last[i], pollEvery); err != nil && ctx.Err() == nil {
						return nil, err
					}
				}
			}
			if ctx.Err() == nil {
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stopped waiting (the tasks go on; see 'celeroot task status %s'): %w", ids[0], ctx.Err())
		case <-time.After(pollEvery):
		}
	}
}

// summarize reports the outcome of waited tasks: nil if all succeeded.
func summarize(tasks []projections.Task, stderr io.Writer) error {
	failed := 0
	for _, t := range tasks {
		if t.Outcome == events.Succeeded {
			continue
		}
		failed++
		msg := fmt.Sprintf("task %s %s", t.ID, strings.ReplaceAll(t.State, "_", " "))
		if t.Worker != "" {
			msg += " on " + t.Worker
		}
		if t.Outcome == events.Failed {
			msg += fmt.Sprintf(" (exit code %d", t.ExitCode)
			if len(t.Attempts) > 1 {
				msg += fmt.Sprintf(", %d attempts", len(t.Attempts))
			}
			msg += ")"
		}
		for _, why := range []string{t.Error, t.DeadReason, t.EndReason} {
			if why != "" {
				msg += ": " + why
				break
			}
		}
		fmt.Fprintf(stderr, "celeroot: %s\n", msg)
	}
	if failed == 0 {
		return nil
	}
	if len(tasks) > 1 {
		return exitError{code: ExitFailure, msg: fmt.Sprintf("%d of %d tasks did not succeed", failed, len(tasks))}
	}
	return exitError{code: ExitFailure}
}

func taskStatus(ctx context.Context, cmd *cli.Command) error {
	id, err := oneArg(cmd, "task-id")
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
	store := projections.NewStore(e.rdb, e.keys)
	if snap, ok, err := asOf(ctx, cmd, e); err != nil {
		return err
	} else if ok {
		at := snap.At
		if t, found := snap.Task(id); found {
			return printTask(cmd, format, t.At(at), at)
		}
		if job, found := snap.Job(id); found {
			return jobStatus(cmd, format, job, at)
		}
		return fmt.Errorf("no task or job %s in cluster %s as of %s", id, e.keys.Cluster, at.Local().Format(time.RFC3339))
	}
	t, err := store.Task(ctx, id)
	if errors.Is(err, projections.ErrNotFound) {
		job, jerr := store.Job(ctx, id)
		if jerr == nil {
			return jobStatus(cmd, format, job, time.Now())
		}
		return fmt.Errorf("no task or job %s in cluster %s (list recent tasks with 'celeroot task list')", id, e.keys.Cluster)
	}
	if err != nil {
		return err
	}
	now := time.Now()
	return printTask(cmd, format, t.At(now), now)
}

// printTask prints a task as of now.
func printTask(cmd *cli.Command, format string, t projections.Task, now time.Time) error {
	w := cmd.Root().Writer
	if ok, err := writeData(w, format, t); ok {
		return err
	}
	tw := newTable(w)
	target := t.Target
	if t.Route == events.RouteQueue {
		target = "queue " + t.Target
	}
	fmt.Fprintf(tw, "Task:\t%s\n", t.ID)
	if t.Check {
		fmt.Fprintf(tw, "Name:\t%s (check: dry run)\n", t.Task)
	} else {
		fmt.Fprintf(tw, "Name:\t%s\n", t.Task)
	}
	if len(t.Argv) > 0 {
		fmt.Fprintf(tw, "Command:\t%s\n", quoteArgv(t.Argv))
	}
	if t.JobID != "" {
		fmt.Fprintf(tw, "Job:\t%s\n", t.JobID)
	}
	fmt.Fprintf(tw, "Target:\t%s\n", target)
	fmt.Fprintf(tw, "State:\t%s\n", t.State)
	if t.Done() {
		fmt.Fprintf(tw, "Exit code:\t%d\n", t.ExitCode)
	}
	if t.Error != "" {
		fmt.Fprintf(tw, "Error:\t%s\n", t.Error)
	}
	if t.DeadReason != "" {
		fmt.Fprintf(tw, "Dead-lettered:\t%s (%s)\n", t.DeadReason, ago(now, t.DeadAt))
	}
	if t.EndReason != "" {
		fmt.Fprintf(tw, "Ended:\t%s (%s)\n", t.EndReason, ago(now, t.EndedAt))
	}
	if t.State == projections.TaskExpired && t.EndReason == "" {
		fmt.Fprintf(tw, "Expired:\tnot started by its deadline %s; the worker is offline or busy\n", fmtTime(t.Deadline))
	}
	if !t.CancelRequestedAt.IsZero() && !t.Done() {
		fmt.Fprintf(tw, "Cancel:\trequested %s\n", ago(now, t.CancelRequestedAt))
	}
	if t.MaxAttempts > 1 {
		fmt.Fprintf(tw, "Max attempts:\t%d\n", t.MaxAttempts)
	}
	if !t.Deadline.IsZero() && !t.Done() && len(t.Attempts) == 0 {
		fmt.Fprintf(tw, "Deadline:\t%s\n", fmtTime(t.Deadline))
	}
	if t.RedrivenTo != "" {
		fmt.Fprintf(tw, "Redriven as:\t%s\n", t.RedrivenTo)
	}
	fmt.Fprintf(tw, "Submitted:\t%s (%s) by %s\n", fmtTime(t.SubmittedAt), ago(now, t.SubmittedAt), orDash(t.SubmittedBy))
	if !t.FinishedAt.IsZero() {
		fmt.Fprintf(tw, "Finished:\t%s (%s)\n", fmtTime(t.FinishedAt), ago(now, t.FinishedAt))
	}
	tw.Flush()
	if len(t.Attempts) == 0 {
		fmt.Fprintln(w, "\nNo attempt yet.")
		return nil
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintln(tw, "ATTEMPT\tWORKER\tSTARTED\tDURATION\tOUTCOME\tEXIT")
	for _, a := range t.Attempts {
		outcome := orDash(string(a.Outcome))
		if a.Stale {
			outcome += " (stale)"
		}
		dur, exit := "-", "-"
		if !a.FinishedAt.IsZero() {
			dur = (time.Duration(a.DurationMS) * time.Millisecond).String()
			exit = fmt.Sprint(a.ExitCode)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", a.Number, orDash(a.Worker), fmtTime(a.StartedAt), dur, outcome, exit)
	}
	return tw.Flush()
}

func taskLogs(ctx context.Context, cmd *cli.Command) error {
	id, err := oneArg(cmd, "task-id")
	if err != nil {
		return err
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	store := projections.NewStore(e.rdb, e.keys)
	if _, err := store.Task(ctx, id); errors.Is(err, projections.ErrNotFound) {
		return fmt.Errorf("no task %s in cluster %s", id, e.keys.Cluster)
	} else if err != nil {
		return err
	}
	out, errw := cmd.Root().Writer, cmd.Root().ErrWriter
	if cmd.Bool("follow") {
		_, err := follow(ctx, e, store, []string{id}, []string{""}, out, errw, nil)
		return err
	}
	return streams.Replay(ctx, e.rdb, e.keys.TaskLog(id), "-", "+", 0, func(en streams.Entry) error {
		if l, ok := en.Envelope.Payload.(events.TaskLog); ok && en.Err == nil {
			w := out
			if l.Stream == "stderr" {
				w = errw
			}
			_, err := io.WriteString(w, l.Data)
			return err
		}
		return nil
	})
}

func oneArg(cmd *cli.Command, name string) (string, error) {
	switch cmd.Args().Len() {
	case 0:
		return "", usagef("missing <%s>", name)
	case 1:
		return cmd.Args().First(), nil
	}
	return "", usagef("one <%s> expected, got %d arguments", name, cmd.Args().Len())
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05.000")
}

func quoteArgv(argv []string) string {
	parts := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`;&|<>*?()[]{}!#~") {
			parts[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		} else {
			parts[i] = a
		}
	}
	return strings.Join(parts, " ")
}

// DefaultDeadline is how long a task may wait to start before it expires.
const DefaultDeadline = time.Hour

// MaxAttempts bounds --max-attempts.
const MaxAttempts = 100

// listScanLimit bounds how many tasks one `task list` reads while filtering.
const listScanLimit = 10000

func taskList(ctx context.Context, cmd *cli.Command) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	states := []string{projections.TaskWaiting, projections.TaskRunning, projections.TaskRetrying, string(events.Succeeded),
		string(events.Failed), string(events.TimedOut), string(events.Cancelled), projections.TaskExpired, projections.TaskDead}
	state := cmd.String("state")
	if state != "" && !slices.Contains(states, state) {
		return usagef("--state %q: use one of %s", state, strings.Join(states, ", "))
	}
	limit := int(cmd.Int("limit"))
	if limit < 1 {
		return usagef("--limit %d: must be at least 1", limit)
	}
	var since time.Time
	if d := cmd.Duration("since"); d > 0 {
		since = time.Now().Add(-d)
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	store := projections.NewStore(e.rdb, e.keys)
	now := time.Now()
	out := []projections.Task{}
scan:
	for scanned := 0; len(out) < limit && scanned < listScanLimit; {
		page, err := store.Tasks(ctx, int64(scanned), 200)
		if err != nil {
			return err
		}
		for _, t := range page {
			t = t.At(now)
			if !since.IsZero() && t.SubmittedAt.Before(since) {
				break scan // older ones follow
			}
			if (state == "" || t.State == state) && (cmd.String("target") == "" || t.Target == cmd.String("target")) &&
				(cmd.String("task") == "" || t.Task == cmd.String("task")) && len(out) < limit {
				out = append(out, t)
			}
		}
		scanned += len(page)
		if len(page) < 200 {
			break
		}
	}
	w := cmd.Root().Writer
	if ok, err := writeData(w, format, out); ok {
		return err
	}
	if len(out) == 0 {
		fmt.Fprintln(cmd.Root().ErrWriter, "No tasks match.")
		return nil
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "TASK ID\tTASK\tTARGET\tSTATE\tATTEMPTS\tSUBMITTED\tWORKER")
	for _, t := range out {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", t.ID, t.Task, t.Target, t.State, len(t.Attempts), ago(now, t.SubmittedAt), orDash(t.Worker))
	}
	return tw.Flush()
}

func taskCancel(ctx context.Context, cmd *cli.Command) error {
	id, err := oneArg(cmd, "task-id")
	if err != nil {
		return err
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	log := streams.NewLog(e.rdb, e.keys)
	src := events.Source{Cluster: e.keys.Cluster, Actor: actor()}
	reason := cmd.String("reason")
	if reason == "" {
		reason = "cancelled by " + src.Actor
	}
	res, err := log.End(ctx, src.New(events.TaskEnded{TaskID: id, State: events.EndCancelled, Reason: reason}, events.WithCorrelation(id)))
	if err != nil {
		return err
	}
	w := cmd.Root().Writer
	switch {
	case res.Ended:
		fmt.Fprintf(w, "task %s cancelled before it ran\n", id)
		return nil
	case res.State == "running":
		req := src.New(events.TaskCancel{TaskID: id, Reason: reason}, events.WithCorrelation(id))
		if _, err := log.Record(ctx, id, req); err != nil {
			return err
		}
		if _, err := log.Append(ctx, e.keys.WorkerControl(res.Worker), req, streams.ControlMaxLen); err != nil {
			return err
		}
		fmt.Fprintf(w, "task %s is running on %s: asked it to stop (follow with 'celeroot task status %s')\n", id, res.Worker, id)
		return nil
	case res.State == "":
		return fmt.Errorf("no task %s in cluster %s", id, e.keys.Cluster)
	}
	return fmt.Errorf("task %s has already ended (%s); nothing to cancel", id, res.State)
}

// deadView is a dead letter as printed.
type deadView struct {
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
	TaskID  string    `json:"task_id,omitempty"`
	Stream  string    `json:"stream"`
	EntryID string    `json:"entry_id"`
	Reason  string    `json:"reason"`
}

func taskDead(ctx context.Context, cmd *cli.Command) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	dead, err := streams.DeadLetters(ctx, e.rdb, e.keys.DeadLetters(), int64(cmd.Int("limit")))
	if err != nil {
		return err
	}
	views := []deadView{}
	for _, d := range dead {
		v := deadView{ID: d.ID, Time: d.Time, Stream: d.Stream, EntryID: d.EntryID, Reason: d.Reason}
		if env, err := events.Decode(d.Fields); err == nil {
			if sub, ok := env.Payload.(events.TaskSubmitted); ok {
				v.TaskID = sub.TaskID
			}
		}
		views = append(views, v)
	}
	w := cmd.Root().Writer
	if ok, err := writeData(w, format, views); ok {
		return err
	}
	if len(views) == 0 {
		fmt.Fprintln(cmd.Root().ErrWriter, "No dead letters.")
		return nil
	}
	now := time.Now()
	tw := newTable(w)
	fmt.Fprintln(tw, "WHEN\tTASK ID\tREASON")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", ago(now, v.Time), orDash(v.TaskID), v.Reason)
	}
	return tw.Flush()
}

func taskRedrive(ctx context.Context, cmd *cli.Command) error {
	id, err := oneArg(cmd, "task-id")
	if err != nil {
		return err
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	t, err := projections.NewStore(e.rdb, e.keys).Task(ctx, id)
	if errors.Is(err, projections.ErrNotFound) {
		return fmt.Errorf("no task %s in cluster %s", id, e.keys.Cluster)
	}
	if err != nil {
		return err
	}
	if !t.Done() {
		return fmt.Errorf("task %s is %s; only an ended task can be redriven", id, t.State)
	}
	if t.Outcome == events.Succeeded {
		return fmt.Errorf("task %s succeeded; run it again with 'celeroot task run' if that is what you want", id)
	}
	log := streams.NewLog(e.rdb, e.keys)
	src := events.Source{Cluster: e.keys.Cluster, Actor: actor()}
	newID := ulid.Make().String()
	deadline := DefaultDeadline
	sub := events.TaskSubmitted{TaskID: newID, Task: t.Task, Params: t.Params, Argv: t.Argv, Route: t.Route, Target: t.Target,
		TimeoutMS: t.TimeoutMS, MaxAttempts: t.MaxAttempts, Deadline: time.Now().Add(deadline).UTC()}
	if _, err := log.Submit(ctx, src.New(sub, events.WithCorrelation(newID), events.WithCausation(id))); err != nil {
		return err
	}
	if _, err := log.Record(ctx, id, src.New(events.TaskRedriven{TaskID: id, NewTaskID: newID}, events.WithCorrelation(id))); err != nil {
		return fmt.Errorf("task %s submitted, but recording the redrive on %s failed: %w", newID, id, err)
	}
	fmt.Fprintln(cmd.Root().Writer, newID)
	if cmd.Bool("wait") {
		return waitFor(ctx, cmd, e, []string{newID}, nil)
	}
	return nil
}

// fmtDuration prints a duration without trailing zero units: 24h, 1h30m.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// jobView is a job as printed by JSON and YAML output.
type jobView struct {
	projections.Job
	Counts map[string]int `json:"counts"`
}

// jobStatus prints a job as of now.
func jobStatus(cmd *cli.Command, format string, job projections.Job, now time.Time) error {
	for i := range job.Tasks {
		job.Tasks[i] = job.Tasks[i].At(now)
	}
	counts := job.Counts(now)
	w := cmd.Root().Writer
	if ok, err := writeData(w, format, jobView{job, counts}); ok {
		return err
	}
	var parts []string
	for _, st := range []string{string(events.Succeeded), string(events.Failed), string(events.TimedOut), string(events.Cancelled),
		projections.TaskRunning, projections.TaskRetrying, projections.TaskWaiting, projections.TaskExpired, projections.TaskDead} {
		if n := counts[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	fmt.Fprintf(w, "Job:        %s\nTask:       %s\nSubmitted:  %s (%s)\nTasks:      %d: %s\n\n",
		job.ID, job.Task, fmtTime(job.SubmittedAt), ago(now, job.SubmittedAt), len(job.Tasks), strings.Join(parts, ", "))
	tw := newTable(w)
	fmt.Fprintln(tw, "TASK ID\tTARGET\tSTATE\tATTEMPTS\tEXIT\tWORKER")
	for _, t := range job.Tasks {
		exit := "-"
		if t.Outcome != "" {
			exit = fmt.Sprint(t.ExitCode)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", t.ID, t.Target, t.State, len(t.Attempts), exit, orDash(t.Worker))
	}
	return tw.Flush()
}

// catalogEntry is one runnable task as listed.
type catalogEntry struct {
	Name        string         `json:"name"`
	Description string         `json:"description,omitempty"`
	Action      string         `json:"action"`
	Params      map[string]any `json:"params,omitempty"`
	Timeout     string         `json:"timeout,omitempty"`
	MaxAttempts int            `json:"max_attempts,omitempty"`
	Idempotent  bool           `json:"idempotent,omitempty"`
	// Workers are the live workers that run it.
	Workers []string `json:"workers"`
	// Versions are a plugin task's versions, by the workers serving each.
	Versions []catalogPluginVersion `json:"versions,omitempty"`
}

// catalogPluginVersion is one version of a plugin task as listed.
type catalogPluginVersion struct {
	Version string         `json:"version"`
	Hash    string         `json:"hash"`
	Check   bool           `json:"check,omitempty"`
	Params  map[string]any `json:"params,omitempty"`
	Workers []string       `json:"workers"`
}

// paramsView is how the catalog lists parameter declarations.
func paramsView(ps schema.Params) map[string]any {
	var out map[string]any
	for name, p := range ps {
		if out == nil {
			out = map[string]any{}
		}
		out[name] = map[string]any{"schema": p.Schema, "required": p.Required, "description": p.Description}
	}
	return out
}

func taskCatalog(ctx context.Context, cmd *cli.Command) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	_, _, bundle, err := applied(ctx, e)
	if err != nil {
		return err
	}
	workers, err := projections.NewStore(e.rdb, e.keys).Workers(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	runs := func(task string) []string {
		out := []string{}
		for _, w := range workers {
			if st := w.State(now); st != projections.WorkerLeft && slices.Contains(w.Tasks, task) {
				out = append(out, w.Hostname)
			}
		}
		return out
	}
	list := []catalogEntry{{Name: "command", Description: "Run the argv given after --, directly, never through a shell (built in).",
		Action: "command", Workers: runs("command")}}
	if bundle != nil {
		for _, t := range bundle.Tasks {
			ce := catalogEntry{Name: t.Metadata.Name, Description: t.Spec.Description, Action: actionKind(t.Spec.Action),
				MaxAttempts: t.Spec.Retry.MaxAttempts, Idempotent: t.Spec.Idempotent, Workers: runs(t.Metadata.Name)}
			if t.Spec.Timeout.Duration > 0 {
				ce.Timeout = fmtDuration(t.Spec.Timeout.Duration)
			}
			ce.Params = paramsView(t.Spec.Params)
			list = append(list, ce)
		}
	}
	// Plugins, as the live workers advertise them; a catalog task of the
	// same name takes precedence, so agents do not advertise such a one.
	for _, name := range pluginNames(workers, now) {
		if bundle != nil && bundle.Task(name) != nil {
			continue
		}
		pt := findPlugin(workers, name, now)
		first := pt.versions[0]
		ce := catalogEntry{Name: name, Description: first.info.Description, Action: "plugin " + first.info.Version,
			Params: paramsView(first.task.Spec.Params), Idempotent: first.info.Idempotent, Workers: []string{}}
		if len(pt.versions) > 1 {
			ce.Action = fmt.Sprintf("plugin (%d versions)", len(pt.versions))
		}
		if first.info.TimeoutMS > 0 {
			ce.Timeout = fmtDuration(time.Duration(first.info.TimeoutMS) * time.Millisecond)
		}
		for _, v := range pt.versions {
			ce.Workers = append(ce.Workers, v.workers...)
			ce.Versions = append(ce.Versions, catalogPluginVersion{Version: v.info.Version, Hash: v.info.Hash, Check: v.info.Check,
				Params: paramsView(v.task.Spec.Params), Workers: v.workers})
		}
		sort.Strings(ce.Workers)
		list = append(list, ce)
	}
	w := cmd.Root().Writer
	if ok, err := writeData(w, format, list); ok {
		return err
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "TASK\tACTION\tPARAMETERS\tWORKERS\tDESCRIPTION")
	for _, c := range list {
		var ps []string
		for name, p := range c.Params {
			spec := p.(map[string]any)
			typ, _ := spec["schema"].(map[string]any)["type"].(string)
			if typ == "" {
				typ = "any"
			}
			if spec["required"] == true {
				name += "*"
			}
			ps = append(ps, name+":"+typ)
		}
		sort.Strings(ps)
		workers := strings.Join(c.Workers, ",")
		if workers == "" {
			workers = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, c.Action, orDash(strings.Join(ps, " ")), workers, c.Description)
	}
	if bundle == nil {
		fmt.Fprintf(cmd.Root().ErrWriter, "No task catalog applied to cluster %s yet (celeroot config apply -f catalog/).\n", e.keys.Cluster)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range list {
		if len(c.Versions) > 1 {
			fmt.Fprintf(w, "\n%s: the workers serve %d versions:\n", c.Name, len(c.Versions))
			for _, v := range c.Versions {
				fmt.Fprintf(w, "  %s (%s): %s\n", v.Version, v.Hash[:12], strings.Join(v.Workers, ", "))
			}
		}
	}
	return nil
}

func actionKind(a schema.Action) string {
	switch {
	case len(a.Command) > 0:
		return "command"
	case a.Shell != nil:
		return "shell"
	case a.Package != nil:
		return "package"
	case a.File != nil:
		return "file"
	case a.Service != nil:
		return "service"
	}
	return "-"
}
