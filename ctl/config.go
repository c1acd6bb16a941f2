package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/schema"
	"github.com/celeroot/celeroot/streams"
	"github.com/urfave/cli/v3"
)

func fileFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "filename", Aliases: []string{"f"}, Required: true,
		Usage: "a YAML file (several documents allowed), a directory of them, or - for standard input (repeatable)"}
}

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "validate, compare, apply and roll back the cluster's declarative configuration",
		Description: `The configuration is a Cluster document (workers, schedules, queues) and the
task catalog (Task documents). Every apply is a new revision, kept forever.

Examples:
  celeroot config validate -f cluster.yaml -f catalog/
  celeroot config diff -f cluster.yaml -f catalog/        # exit 0: same, 1: differences
  celeroot config apply -f cluster.yaml -f catalog/ --expect-revision 4 -m "more web workers"
  celeroot config history
  celeroot config rollback --to 3`,
		Commands: []*cli.Command{
			{
				Name:  "validate",
				Usage: "check documents without touching anything (no Redis needed)",
				Description: `Every problem is reported, as file:line:col: /json/pointer: what (hint: how
to fix); exit 1 if there is any.

Examples:
  celeroot config validate -f cluster.yaml
  celeroot config validate -f cluster.yaml -f catalog/
  cat cluster.yaml | celeroot config validate -f -`,
				Flags:  []cli.Flag{fileFlag()},
				Action: configValidate,
			},
			{
				Name:  "schema",
				Usage: "print the JSON Schema of a document kind, for editors",
				Description: `Examples:
  celeroot config schema > cluster.schema.json
  celeroot config schema --kind Task > task.schema.json
  celeroot config schema --kind Plugin > plugin.schema.json`,
				Flags:  []cli.Flag{&cli.StringFlag{Name: "kind", Value: schema.KindCluster, Usage: "Cluster, Task, or Plugin (what a task plugin answers to describe)"}},
				Action: configSchema,
			},
			{
				Name:  "diff",
				Usage: "compare documents with the applied revision; exit 0 when equal, 1 when different, >1 on error",
				Description: `Shows what changes per worker group, schedule, queue and task, and which
live workers gain or lose tasks; coloured on a terminal, unless --no-color
or $NO_COLOR.

Examples:
  celeroot config diff -f cluster.yaml -f catalog/
  celeroot config diff -f cluster.yaml -o json
  celeroot config diff -f cluster.yaml >/dev/null; echo $?   # 0 same, 1 different, 3 error`,
				Flags:  []cli.Flag{fileFlag(), &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text or json"}},
				Action: configDiff,
			},
			{
				Name:  "apply",
				Usage: "apply documents as a new revision",
				Description: `An identical configuration is reported unchanged and nothing is appended.

Examples:
  celeroot config apply -f cluster.yaml -f catalog/
  celeroot config apply -f cluster.yaml --expect-revision 4 -m "two more web workers"
  celeroot config apply -f cluster.yaml --dry-run`,
				Flags: []cli.Flag{fileFlag(),
					&cli.IntFlag{Name: "expect-revision", Value: -1, Usage: "refuse unless the applied revision is this one (0: nothing applied yet)"},
					&cli.StringFlag{Name: "message", Aliases: []string{"m"}, Usage: "why, kept with the revision"},
					&cli.BoolFlag{Name: "dry-run", Usage: "show what would change, apply nothing"},
				},
				Action: configApply,
			},
			{
				Name:  "history",
				Usage: "list applied revisions",
				Description: `Examples:
  celeroot config history
  celeroot config history -o json`,
				Flags:  []cli.Flag{outputFlag()},
				Action: configHistory,
			},
			{
				Name:  "show",
				Usage: "print an applied revision's documents",
				Description: `Examples:
  celeroot config show
  celeroot config show --revision 3 > cluster-r3.yaml`,
				Flags: []cli.Flag{&cli.IntFlag{Name: "revision", Usage: "revision to show (default: the current one)"},
					atFlag(),
					&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "yaml", Usage: "yaml or json"}},
				Action: configShow,
			},
			{
				Name:  "rollback",
				Usage: "apply an earlier revision's content again, as a new revision",
				Description: `Examples:
  celeroot config rollback --to 3
  celeroot config rollback --to 3 --expect-revision 5 -m "revert the scale-up"`,
				Flags: []cli.Flag{&cli.IntFlag{Name: "to", Required: true, Usage: "revision whose content to apply"},
					&cli.IntFlag{Name: "expect-revision", Value: -1, Usage: "refuse unless the applied revision is this one"},
					&cli.StringFlag{Name: "message", Aliases: []string{"m"}, Usage: "why, kept with the revision"}},
				Action: configRollback,
			},
		},
	}
}

// builtinCatalog is the tasks every agent runs, known to validation.
func builtinCatalog() map[string]bool {
	m := map[string]bool{}
	for _, t := range agent.BuiltinTasks {
		m[t] = true
	}
	return m
}

// loadDocs loads every -f source. Problems are printed to stderr, one per
// line, and turn into one error.
func loadDocs(cmd *cli.Command) (*schema.Set, error) {
	var set *schema.Set
	var errs []*schema.Error
	for _, f := range cmd.StringSlice("filename") {
		s, e := schema.LoadPath(f, cmd.Root().Reader)
		errs = append(errs, e...)
		if s == nil {
			continue
		}
		if set == nil {
			set = s
		} else {
			errs = append(errs, set.Merge(s)...)
		}
	}
	if err := reportProblems(cmd, errs); err != nil {
		return nil, err
	}
	if set == nil {
		return nil, errors.New("no documents")
	}
	return set, nil
}

// validateDocs validates a set, printing every problem.
func validateDocs(cmd *cli.Command, set *schema.Set) error {
	v, err := schema.NewValidator()
	if err != nil {
		return err
	}
	return reportProblems(cmd, v.Validate(set, builtinCatalog()))
}

func reportProblems(cmd *cli.Command, errs []*schema.Error) error {
	if len(errs) == 0 {
		return nil
	}
	for _, e := range errs {
		fmt.Fprintln(cmd.Root().ErrWriter, e.Error())
	}
	if len(errs) == 1 {
		return errors.New("1 problem found")
	}
	return fmt.Errorf("%d problems found", len(errs))
}

// completeWithApplied fills in what the documents leave out from the
// applied revision: a Cluster applied alone keeps the task catalog in
// force, and a catalog applied alone keeps the Cluster.
func completeWithApplied(ctx context.Context, e *env, set *schema.Set) error {
	if set.Cluster != nil && len(set.Tasks) > 0 {
		return nil
	}
	_, _, old, err := applied(ctx, e)
	if err != nil || old == nil {
		return err
	}
	if set.Cluster == nil {
		set.Cluster = old.Cluster
	}
	if len(set.Tasks) == 0 {
		set.Tasks = old.Tasks
	}
	return nil
}

// loadForCluster loads the -f documents, connects to their cluster, fills
// in the applied half they leave out, and validates the whole.
func loadForCluster(ctx context.Context, cmd *cli.Command) (*schema.Set, *env, error) {
	set, err := loadDocs(cmd)
	if err != nil {
		return nil, nil, err
	}
	cluster, err := clusterFor(cmd, set)
	if err != nil {
		return nil, nil, err
	}
	e, err := connectTo(ctx, cmd, cluster)
	if err != nil {
		return nil, nil, err
	}
	if err := completeWithApplied(ctx, e, set); err != nil {
		e.rdb.Close()
		return nil, nil, err
	}
	if err := validateDocs(cmd, set); err != nil {
		e.rdb.Close()
		return nil, nil, err
	}
	return set, e, nil
}

func configValidate(ctx context.Context, cmd *cli.Command) error {
	set, err := loadDocs(cmd)
	if err != nil {
		return err
	}
	if err := validateDocs(cmd, set); err != nil {
		return err
	}
	what := fmt.Sprintf("%d tasks", len(set.Tasks))
	if set.Cluster != nil {
		what = fmt.Sprintf("cluster %s (%d worker groups, %d schedules) and %s", set.Cluster.Metadata.Name,
			len(set.Cluster.Spec.Workers), len(set.Cluster.Spec.Schedules), what)
	}
	fmt.Fprintf(cmd.Root().Writer, "valid: %s\n", what)
	return nil
}

func configSchema(ctx context.Context, cmd *cli.Command) error {
	kind := cmd.String("kind")
	for _, k := range []string{schema.KindCluster, schema.KindTask, schema.KindPlugin} {
		if strings.EqualFold(kind, k) {
			kind = k
		}
	}
	b, err := schema.JSONSchema(kind)
	if err != nil {
		return usageError{err}
	}
	_, err = cmd.Root().Writer.Write(b)
	return err
}

// clusterFor picks the cluster to apply to: --cluster (or its environment
// variable) if given, else the Cluster document's name.
func clusterFor(cmd *cli.Command, set *schema.Set) (string, error) {
	c, err := connection(cmd)
	if err != nil {
		return "", err
	}
	flag := c.cluster
	if set.Cluster == nil {
		return flag, nil
	}
	name := set.Cluster.Metadata.Name
	if cmd.IsSet("cluster") && flag != name {
		return "", usagef("the documents describe cluster %q but --cluster is %q: use the same name, or leave --cluster out", name, flag)
	}
	return name, nil
}

// connectTo connects to cluster, whatever --cluster says.
func connectTo(ctx context.Context, cmd *cli.Command, cluster string) (*env, error) {
	c, err := connection(cmd)
	if err != nil {
		return nil, err
	}
	cfg, err := c.parse()
	if err != nil {
		return nil, err
	}
	if err := streams.ValidateClusterName(cluster); err != nil {
		return nil, err
	}
	rdb, err := streams.Connect(ctx, cfg, 0, connectTimeout)
	if err != nil {
		return nil, err
	}
	keys, err := streams.LoadKeys(ctx, rdb, cluster)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return &env{rdb: rdb, keys: keys, url: cfg.Display}, nil
}

// plan compares a set with the applied revision.
type plan struct {
	Cluster  string             `json:"cluster"`
	Revision int64              `json:"revision"`
	Hash     string             `json:"hash"`
	Changed  bool               `json:"changed"`
	Diff     schema.ClusterDiff `json:"diff"`
	Tasks    []taskChange       `json:"tasks,omitempty"`
	Workers  []workerChange     `json:"workers,omitempty"`

	doc []byte
}

type taskChange struct {
	Name string    `json:"name"`
	Op   schema.Op `json:"op"`
}

// workerChange is what an apply means for one live worker.
type workerChange struct {
	Hostname string   `json:"hostname"`
	Gains    []string `json:"gains,omitempty"`
	Loses    []string `json:"loses,omitempty"`
}

func makePlan(ctx context.Context, e *env, set *schema.Set) (*plan, error) {
	doc, hash, err := set.Bundle()
	if err != nil {
		return nil, err
	}
	rev, curHash, old, err := applied(ctx, e)
	if err != nil {
		return nil, err
	}
	p := &plan{Cluster: e.keys.Cluster, Hash: hash, doc: doc, Revision: rev}
	p.Changed = old == nil || curHash != hash
	if old == nil {
		old = &schema.Bundle{}
	}
	newB, err := schema.ParseBundle(string(doc))
	if err != nil {
		return nil, err
	}
	oldCluster, newCluster := old.Cluster, newB.Cluster
	if oldCluster == nil {
		oldCluster = &schema.Cluster{}
	}
	if newCluster == nil {
		newCluster = &schema.Cluster{}
	}
	p.Diff = schema.Diff(oldCluster, newCluster)
	oldTasks, newTasks := map[string]string{}, map[string]string{}
	for _, t := range old.Tasks {
		oldTasks[t.Metadata.Name] = schema.Hash(t)
	}
	for _, t := range newB.Tasks {
		newTasks[t.Metadata.Name] = schema.Hash(t)
	}
	for name, h := range newTasks {
		switch o, had := oldTasks[name]; {
		case !had:
			p.Tasks = append(p.Tasks, taskChange{name, schema.Added})
		case o != h:
			p.Tasks = append(p.Tasks, taskChange{name, schema.Changed})
		}
	}
	for name := range oldTasks {
		if _, has := newTasks[name]; !has {
			p.Tasks = append(p.Tasks, taskChange{name, schema.Removed})
		}
	}
	sort.Slice(p.Tasks, func(i, j int) bool { return p.Tasks[i].Name < p.Tasks[j].Name })
	// What each live worker gains or loses.
	workers, err := projections.NewStore(e.rdb, e.keys).Workers(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	for _, w := range workers {
		if w.State(now) == projections.WorkerLeft {
			continue
		}
		before, after := servedTasks(old, w), servedTasks(newB, w)
		wc := workerChange{Hostname: w.Hostname}
		for _, t := range after {
			if !slices.Contains(before, t) {
				wc.Gains = append(wc.Gains, t)
			}
		}
		for _, t := range before {
			if !slices.Contains(after, t) {
				wc.Loses = append(wc.Loses, t)
			}
		}
		if len(wc.Gains)+len(wc.Loses) > 0 {
			p.Workers = append(p.Workers, wc)
		}
	}
	return p, nil
}

// servedTasks is the catalog tasks a worker runs under a bundle.
func servedTasks(b *schema.Bundle, w projections.Worker) []string {
	return b.TasksFor(w.Role, w.Labels)
}

// print writes the plan for people, coloured when color is set.
func (p *plan) print(w io.Writer, color bool) {
	colour := func(line string) string {
		if !color || line == "" {
			return line
		}
		return paint(line, map[byte]string{'+': colorGreen, '-': colorRed, '~': colorYellow}[line[0]])
	}
	for _, l := range strings.Split(strings.TrimRight(p.Diff.String(), "\n"), "\n") {
		if l != "" {
			fmt.Fprintln(w, colour(l))
		}
	}
	for _, t := range p.Tasks {
		sign := map[schema.Op]string{schema.Added: "+", schema.Removed: "-", schema.Changed: "~"}[t.Op]
		fmt.Fprintln(w, colour(fmt.Sprintf("%s task %s", sign, t.Name)))
	}
	if len(p.Workers) > 0 {
		fmt.Fprintln(w, "\nWorkers affected:")
		for _, wc := range p.Workers {
			var parts []string
			if len(wc.Gains) > 0 {
				parts = append(parts, "gains "+strings.Join(wc.Gains, ", "))
			}
			if len(wc.Loses) > 0 {
				parts = append(parts, "loses "+strings.Join(wc.Loses, ", "))
			}
			fmt.Fprintf(w, "  %s: %s\n", wc.Hostname, strings.Join(parts, "; "))
		}
	}
}

func configDiff(ctx context.Context, cmd *cli.Command) error {
	format := cmd.String("output")
	if format != "text" && format != "json" {
		return usagef("--output %q: use text or json", format)
	}
	// kubectl's convention: 0 same, 1 different, >1 trouble.
	trouble := func(err error) error {
		var ue usageError
		if errors.As(err, &ue) {
			return err
		}
		return exitError{code: 3, msg: explainRedis(err).Error()}
	}
	set, e, err := loadForCluster(ctx, cmd)
	if err != nil {
		return trouble(err)
	}
	defer e.rdb.Close()
	p, err := makePlan(ctx, e, set)
	if err != nil {
		return trouble(err)
	}
	out := cmd.Root().Writer
	if format == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(p); err != nil {
			return trouble(err)
		}
	} else if p.Changed {
		fmt.Fprintf(out, "cluster %s, applied revision %d -> new revision %d:\n", p.Cluster, p.Revision, p.Revision+1)
		p.print(out, useColor(cmd, out))
	} else {
		fmt.Fprintf(out, "no differences with revision %d of cluster %s\n", p.Revision, p.Cluster)
	}
	if p.Changed {
		return exitError{code: 1}
	}
	return nil
}

func configApply(ctx context.Context, cmd *cli.Command) error {
	set, e, err := loadForCluster(ctx, cmd)
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			return err
		}
		return fmt.Errorf("%w; nothing was applied", err)
	}
	defer e.rdb.Close()
	return apply(ctx, cmd, e, set, 0)
}

// apply appends set as a new revision (rollbackOf > 0 when it re-applies
// an earlier one).
func apply(ctx context.Context, cmd *cli.Command, e *env, set *schema.Set, rollbackOf int64) error {
	p, err := makePlan(ctx, e, set)
	if err != nil {
		return err
	}
	out := cmd.Root().Writer
	expect := int64(cmd.Int("expect-revision"))
	if cmd.IsSet("expect-revision") && expect < 0 {
		return usagef("--expect-revision %d: revisions start at 1 (0: nothing applied yet)", expect)
	}
	if expect >= 0 && expect != p.Revision {
		return &streams.ConflictError{Expected: expect, Current: p.Revision}
	}
	if !p.Changed {
		fmt.Fprintf(out, "unchanged: cluster %s is at revision %d with this content; nothing applied\n", p.Cluster, p.Revision)
		return nil
	}
	if cmd.Bool("dry-run") {
		fmt.Fprintf(out, "dry run: would apply revision %d to cluster %s:\n", p.Revision+1, p.Cluster)
		p.print(out, useColor(cmd, out))
		return nil
	}
	src := events.Source{Cluster: e.keys.Cluster, Actor: actor()}
	ev := src.New(events.ConfigApplied{Revision: p.Revision + 1, Document: string(p.doc), Hash: p.Hash,
		Message: cmd.String("message"), RollbackOf: rollbackOf})
	res, err := streams.NewLog(e.rdb, e.keys).ApplyConfig(ctx, ev)
	if err != nil {
		var ee *events.DecodeError
		if errors.As(err, &ee) && errors.Is(err, events.ErrTooLarge) {
			return fmt.Errorf("the configuration is too large to apply (%s); split the catalog", ee.Detail)
		}
		if _, ok := streams.Refused(err); ok {
			// The apply is one script: refused, it wrote nothing.
			return fmt.Errorf("%w; nothing was applied", err)
		}
		return err
	}
	if res.Unchanged {
		fmt.Fprintf(out, "unchanged: cluster %s is at revision %d with this content; nothing applied\n", p.Cluster, res.Revision)
		return nil
	}
	fmt.Fprintf(out, "applied revision %d to cluster %s\n", res.Revision, p.Cluster)
	p.print(out, useColor(cmd, out))
	return nil
}

// revisionView is one revision as listed.
type revisionView struct {
	Revision   int64     `json:"revision"`
	Time       time.Time `json:"time"`
	Actor      string    `json:"actor"`
	Hash       string    `json:"hash"`
	Message    string    `json:"message,omitempty"`
	RollbackOf int64     `json:"rollback_of,omitempty"`
}

func configHistory(ctx context.Context, cmd *cli.Command) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	hist, err := streams.NewLog(e.rdb, e.keys).ConfigHistory(ctx, "+")
	if err != nil {
		return err
	}
	views := []revisionView{}
	for i := len(hist) - 1; i >= 0; i-- {
		r := hist[i]
		views = append(views, revisionView{Revision: r.Applied.Revision, Time: r.Envelope.Time, Actor: r.Envelope.Actor,
			Hash: r.Applied.Hash, Message: r.Applied.Message, RollbackOf: r.Applied.RollbackOf})
	}
	w := cmd.Root().Writer
	if ok, err := writeData(w, format, views); ok {
		return err
	}
	if len(views) == 0 {
		fmt.Fprintf(cmd.Root().ErrWriter, "No configuration applied to cluster %s yet (celeroot config apply -f ...).\n", e.keys.Cluster)
		return nil
	}
	now := time.Now()
	tw := newTable(w)
	fmt.Fprintln(tw, "REVISION\tAPPLIED\tBY\tHASH\tMESSAGE")
	for _, v := range views {
		msg := v.Message
		if v.RollbackOf > 0 {
			msg = strings.TrimSpace(fmt.Sprintf("rollback to %d. %s", v.RollbackOf, msg))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", v.Revision, ago(now, v.Time), v.Actor, v.Hash[:12], orDash(msg))
	}
	return tw.Flush()
}

func configShow(ctx context.Context, cmd *cli.Command) error {
	format := cmd.String("output")
	if format != "yaml" && format != "json" {
		return usagef("--output %q: use yaml or json", format)
	}
	rev := int64(cmd.Int("revision"))
	bound, at, past, err := parseAt(cmd)
	if err != nil {
		return err
	}
	if past && rev != 0 {
		return usagef("--revision and --at: give one of them")
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	var r streams.ConfigRevision
	var ok bool
	if past {
		// The config stream is never trimmed: its history is all there.
		if r, ok, err = configAt(ctx, e, bound); err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no configuration was applied to cluster %s by %s", e.keys.Cluster, at.Local().Format(time.RFC3339))
		}
		fmt.Fprintf(cmd.Root().ErrWriter, "As of %s: revision %d, applied %s by %s\n", at.Local().Format(time.RFC3339),
			r.Applied.Revision, r.Envelope.Time.Local().Format(time.RFC3339), r.Envelope.Actor)
	} else {
		if r, ok, err = streams.NewLog(e.rdb, e.keys).ConfigAt(ctx, rev); err != nil {
			return err
		}
		if !ok {
			if rev == 0 {
				return fmt.Errorf("no configuration applied to cluster %s yet", e.keys.Cluster)
			}
			return fmt.Errorf("cluster %s has no revision %d (see 'celeroot config history')", e.keys.Cluster, rev)
		}
	}
	var v any
	if err := json.Unmarshal([]byte(r.Applied.Document), &v); err != nil {
		return err
	}
	_, err = writeData(cmd.Root().Writer, format, v)
	return err
}

func configRollback(ctx context.Context, cmd *cli.Command) error {
	to := int64(cmd.Int("to"))
	if to < 1 {
		return usagef("--to %d: revisions start at 1", to)
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	r, ok, err := streams.NewLog(e.rdb, e.keys).ConfigAt(ctx, to)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("cluster %s has no revision %d (see 'celeroot config history')", e.keys.Cluster, to)
	}
	b, err := schema.ParseBundle(r.Applied.Document)
	if err != nil {
		return err
	}
	if cmd.String("message") == "" {
		_ = cmd.Set("message", fmt.Sprintf("rollback to revision %d", to))
	}
	return apply(ctx, cmd, e, b.Set(), to)
}

// applied returns the applied config revision, its hash and its documents;
// b is nil (and rev 0) when nothing was applied yet.
func applied(ctx context.Context, e *env) (rev int64, hash string, b *schema.Bundle, err error) {
	cur, ok, err := streams.NewLog(e.rdb, e.keys).ConfigAt(ctx, 0)
	if err != nil || !ok {
		return 0, "", nil, err
	}
	if b, err = schema.ParseBundle(cur.Applied.Document); err != nil {
		return 0, "", nil, err
	}
	return cur.Applied.Revision, cur.Applied.Hash, b, nil
}
