package ctl

import (
	"context"
	"errors"
	"fmt"
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

func schedulesCommand() *cli.Command {
	return &cli.Command{
		Name:  "schedules",
		Usage: "look at, trigger, pause and export the cluster's schedules",
		Description: `Schedules are declared in the Cluster document (spec.schedules) and fired
by the agents, with no leader: each slot is fired once, atomically.

Examples:
  celeroot schedules list
  celeroot schedules trigger backup-configs
  celeroot schedules export --crontab > /etc/cron.d/celeroot`,
		Commands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list schedules with their next and last fire",
				Description: `Examples:
  celeroot schedules list
  celeroot schedules list -o json`,
				Flags:  []cli.Flag{outputFlag()},
				Action: schedulesList,
			},
			{
				Name:      "history",
				Usage:     "show a schedule's fires and skips, newest first",
				ArgsUsage: "<name>",
				Description: `Examples:
  celeroot schedules history security-updates
  celeroot schedules history backup-configs -n 5 -o json`,
				Flags: []cli.Flag{outputFlag(),
					&cli.IntFlag{Name: "limit", Aliases: []string{"n"}, Value: 20, Usage: "at most this many events"}},
				Action: schedulesHistory,
			},
			{
				Name:      "trigger",
				Usage:     "fire a schedule now, whatever its cron expression or pause; prints the job id",
				ArgsUsage: "<name>",
				Description: `The fire is recorded as manual; the schedule's next slot is not affected.

Example:
  celeroot schedules trigger backup-configs`,
				Action: schedulesTrigger,
			},
			{
				Name:      "pause",
				Usage:     "stop a schedule from firing until it is resumed",
				ArgsUsage: "<name>",
				Description: `Example:
  celeroot schedules pause security-updates`,
				Action: func(ctx context.Context, cmd *cli.Command) error { return schedulesPause(ctx, cmd, true) },
			},
			{
				Name:      "resume",
				Usage:     "let a paused schedule fire again from its next slot",
				ArgsUsage: "<name>",
				Description: `Example:
  celeroot schedules resume security-updates`,
				Action: func(ctx context.Context, cmd *cli.Command) error { return schedulesPause(ctx, cmd, false) },
			},
			{
				Name:  "export",
				Usage: "print the schedules in another format",
				Description: `With --crontab, prints /etc/cron.d lines that run each schedule with
'celeroot task run' (a fallback for hosts without agents).

Example:
  celeroot schedules export --crontab > /etc/cron.d/celeroot`,
				Flags:  []cli.Flag{&cli.BoolFlag{Name: "crontab", Usage: "as /etc/cron.d lines"}},
				Action: schedulesExport,
			},
		},
	}
}

// appliedSchedules returns the schedules of the applied config.
func appliedSchedules(ctx context.Context, e *env) ([]schema.Schedule, int64, error) {
	rev, _, b, err := applied(ctx, e)
	if err != nil || b == nil || b.Cluster == nil {
		return nil, rev, err
	}
	return b.Cluster.Spec.Schedules, rev, nil
}

// findSchedule returns the named schedule, or an error naming the known ones.
func findSchedule(scheds []schema.Schedule, name string) (*schema.Schedule, error) {
	var names []string
	for i := range scheds {
		if scheds[i].Name == name {
			return &scheds[i], nil
		}
		names = append(names, scheds[i].Name)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no schedule %q: the applied config has no schedules", name)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("no schedule %q; known schedules: %s", name, strings.Join(names, ", "))
}

// scheduleView is one row of schedules list.
type scheduleView struct {
	Name     string         `json:"name"`
	Cron     string         `json:"cron"`
	Timezone string         `json:"timezone"`
	Task     string         `json:"task"`
	Targets  string         `json:"targets"`
	Next     time.Time      `json:"next,omitzero"`
	Last     time.Time      `json:"last,omitzero"`
	LastJob  string         `json:"last_job,omitempty"`
	Outcome  map[string]int `json:"last_outcome,omitempty"`
	Paused   bool           `json:"paused"`
}

func targetsText(t schema.Targets) string {
	if t.All {
		return "all"
	}
	return t.Selector.String()
}

// scheduleViews computes the rows of schedules list as of now.
func scheduleViews(scheds []schema.Schedule, state map[string]streams.ScheduleStatus, now time.Time) []scheduleView {
	out := make([]scheduleView, 0, len(scheds))
	for i := range scheds {
		s := &scheds[i]
		tz := s.Timezone
		if tz == "" {
			tz = "UTC"
		}
		v := scheduleView{Name: s.Name, Cron: s.Cron, Timezone: tz, Task: s.Task, Targets: targetsText(s.Targets)}
		if next, err := s.Next(now); err == nil {
			v.Next = next.UTC()
		}
		st := state[s.Name]
		v.LastJob, v.Paused = st.LastJob, st.Paused
		// The job id carries the slot of the last fire, manual ones too.
		if id, err := ulid.ParseStrict(st.LastJob); err == nil {
			v.Last = ulid.Time(id.Time()).UTC()
		}
		out = append(out, v)
	}
	return out
}

func schedulesList(ctx context.Context, cmd *cli.Command) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	scheds, _, err := appliedSchedules(ctx, e)
	if err != nil {
		return err
	}
	names := make([]string, len(scheds))
	for i, s := range scheds {
		names[i] = s.Name
	}
	state, err := streams.NewLog(e.rdb, e.keys).ScheduleState(ctx, names)
	if err != nil {
		return err
	}
	now := time.Now()
	views := scheduleViews(scheds, state, now)
	store := projections.NewStore(e.rdb, e.keys)
	for i := range views {
		if views[i].LastJob == "" {
			continue
		}
		job, err := store.Job(ctx, views[i].LastJob)
		if errors.Is(err, projections.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		views[i].Outcome = job.Counts(now)
	}
	out := cmd.Root().Writer
	if ok, err := writeData(out, format, views); ok {
		return err
	}
	tw := newTable(out)
	fmt.Fprintln(tw, "NAME\tCRON\tTIMEZONE\tTASK\tTARGETS\tNEXT\tLAST\tLAST OUTCOME\tPAUSED")
	for _, v := range views {
		next := "-"
		if !v.Next.IsZero() {
			next = fmtTime(v.Next)
		}
		last := "-"
		if !v.Last.IsZero() {
			last = fmtTime(v.Last) + " (" + ago(now, v.Last) + ")"
		}
		paused := "no"
		if v.Paused {
			paused = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.Cron, v.Timezone, v.Task, v.Targets, next, last, counts(v.Outcome), paused)
	}
	return tw.Flush()
}

// counts formats job counts by state: "succeeded=3 failed=1".
func counts(c map[string]int) string {
	if len(c) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, c[k])
	}
	return strings.Join(parts, " ")
}

// historyView is one event of schedules history.
type historyView struct {
	Time   time.Time `json:"time"`
	Event  string    `json:"event"`
	Slot   time.Time `json:"slot,omitzero"`
	Job    string    `json:"job,omitempty"`
	Manual bool      `json:"manual,omitempty"`
	Detail string    `json:"detail,omitempty"`
	Actor  string    `json:"actor"`
}

func schedulesHistory(ctx context.Context, cmd *cli.Command) error {
	name, err := oneArg(cmd, "name")
	if err != nil {
		return err
	}
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	n := cmd.Int("limit")
	if n < 1 {
		return usagef("--limit %d: must be at least 1", n)
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	scheds, _, err := appliedSchedules(ctx, e)
	if err != nil {
		return err
	}
	if _, err := findSchedule(scheds, name); err != nil {
		return err
	}
	msgs, err := streams.NewLog(e.rdb, e.keys).ScheduleHistory(ctx, name, int(n))
	if err != nil {
		return err
	}
	views := make([]historyView, 0, len(msgs))
	for _, m := range msgs {
		v := historyView{Time: m.Envelope.Time, Actor: m.Envelope.Actor}
		switch p := m.Envelope.Payload.(type) {
		case events.ScheduleFired:
			v.Event, v.Slot, v.Job, v.Manual = "fired", time.UnixMilli(p.SlotMS).UTC(), p.JobID, p.Manual
			if p.Manual {
				v.Detail = "manual trigger"
			}
		case events.ScheduleSkipped:
			v.Event, v.Slot, v.Job, v.Detail = "skipped", time.UnixMilli(p.SlotMS).UTC(), p.JobID, p.Reason
		case events.SchedulePaused:
			v.Event = "paused"
		case events.ScheduleResumed:
			v.Event = "resumed"
		}
		views = append(views, v)
	}
	out := cmd.Root().Writer
	if ok, err := writeData(out, format, views); ok {
		return err
	}
	tw := newTable(out)
	fmt.Fprintln(tw, "TIME\tEVENT\tSLOT\tJOB\tBY\tDETAIL")
	for _, v := range views {
		slot := "-"
		if !v.Slot.IsZero() {
			slot = fmtTime(v.Slot)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", fmtTime(v.Time), v.Event, slot, orDash(v.Job), v.Actor, orDash(v.Detail))
	}
	return tw.Flush()
}

func schedulesTrigger(ctx context.Context, cmd *cli.Command) error {
	name, err := oneArg(cmd, "name")
	if err != nil {
		return err
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	scheds, rev, err := appliedSchedules(ctx, e)
	if err != nil {
		return err
	}
	s, err := findSchedule(scheds, name)
	if err != nil {
		return err
	}
	slot := time.Now().UnixMilli()
	overlap := s.Overlap
	if overlap == "" {
		overlap = schema.OverlapAllow
	}
	p := events.ScheduleFired{Schedule: s.Name, SlotMS: slot, Task: s.Task, Params: s.Params, All: s.Targets.All,
		Manual: true, Revision: rev, JobID: streams.ScheduleJobID(s.Name, slot), Overlap: overlap,
		SplayMS: s.Splay.Duration.Milliseconds()}
	if !s.Targets.All {
		p.Selector = map[string]string(s.Targets.Selector)
	}
	src := events.Source{Cluster: e.keys.Cluster, Actor: actor()}
	if _, _, err := streams.NewLog(e.rdb, e.keys).Fire(ctx, src.New(p, events.WithCorrelation(p.JobID))); err != nil {
		return err
	}
	fmt.Fprintln(cmd.Root().Writer, p.JobID)
	fmt.Fprintf(cmd.Root().ErrWriter, "schedule %s fired; its tasks are submitted by a scheduler agent (status: celeroot task status %s)\n", s.Name, p.JobID)
	return nil
}

func schedulesPause(ctx context.Context, cmd *cli.Command, pause bool) error {
	name, err := oneArg(cmd, "name")
	if err != nil {
		return err
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	scheds, _, err := appliedSchedules(ctx, e)
	if err != nil {
		return err
	}
	if _, err := findSchedule(scheds, name); err != nil {
		return err
	}
	log := streams.NewLog(e.rdb, e.keys)
	src := events.Source{Cluster: e.keys.Cluster, Actor: actor()}
	var changed bool
	verb := "paused"
	if pause {
		changed, err = log.PauseSchedule(ctx, src.New(events.SchedulePaused{Schedule: name}))
	} else {
		verb = "resumed"
		changed, err = log.ResumeSchedule(ctx, src.New(events.ScheduleResumed{Schedule: name}))
	}
	if err != nil {
		return err
	}
	if !changed {
		fmt.Fprintf(cmd.Root().ErrWriter, "schedule %s was already %s\n", name, verb)
		return nil
	}
	fmt.Fprintf(cmd.Root().ErrWriter, "schedule %s %s\n", name, verb)
	return nil
}

func schedulesExport(ctx context.Context, cmd *cli.Command) error {
	if !cmd.Bool("crontab") {
		return usagef("say which format: --crontab")
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	scheds, _, err := appliedSchedules(ctx, e)
	if err != nil {
		return err
	}
	lines, err := crontab(scheds)
	if err != nil {
		return err
	}
	_, err = fmt.Fprint(cmd.Root().Writer, lines)
	return err
}

// crontab renders schedules as /etc/cron.d lines running celeroot task run.
func crontab(scheds []schema.Schedule) (string, error) {
	var b strings.Builder
	b.WriteString("# celeroot schedules, as exported by 'celeroot schedules export --crontab'\n")
	for _, s := range scheds {
		target, err := crontabTarget(s)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "\n# %s\n", s.Name)
		if s.Timezone != "" && s.Timezone != "UTC" {
			fmt.Fprintf(&b, "CRON_TZ=%s\n", s.Timezone)
		}
		fmt.Fprintf(&b, "%s root celeroot task run %s --target %s", s.Cron, s.Task, target)
		keys := make([]string, 0, len(s.Params))
		for k := range s.Params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, " --param %s", shellQuote(fmt.Sprintf("%s=%v", k, s.Params[k])))
		}
		b.WriteString("\n")
		if s.Timezone != "" && s.Timezone != "UTC" {
			b.WriteString("CRON_TZ=UTC\n")
		}
	}
	return b.String(), nil
}

// crontabTarget is the --target of a schedule: role:all, role:<R> or a
// hostname; other selectors have no --target form.
func crontabTarget(s schema.Schedule) (string, error) {
	if s.Targets.All {
		return "role:all", nil
	}
	sel := s.Targets.Selector
	if len(sel) == 1 {
		if r, ok := sel[schema.SelectorRole]; ok {
			return "role:" + r, nil
		}
		if h, ok := sel[schema.SelectorHostname]; ok {
			return h, nil
		}
	}
	return "", fmt.Errorf("schedule %s: targets %s have no --target form (use role or hostname alone)", s.Name, sel)
}

// shellQuote quotes s for a crontab command line (run by /bin/sh).
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,@+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
