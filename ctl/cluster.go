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
	"github.com/urfave/cli/v3"
)

func clusterCommand() *cli.Command {
	return &cli.Command{
		Name:  "cluster",
		Usage: "the cluster as a whole",
		Description: `Examples:
  celeroot cluster init --name production
  celeroot cluster deploy -f cluster.yaml -f catalog/ --provider local
  celeroot cluster status
  celeroot cluster destroy`,
		Commands: []*cli.Command{
			{
				Name:  "init",
				Usage: "create the cluster's namespace in Redis (metadata, streams, consumer groups); safe to run again",
				Description: `Examples:
  celeroot cluster init --name production
  celeroot cluster init                       # the --cluster flag or $CELEROOT_CLUSTER`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "name", Usage: "cluster name (default: --cluster)"},
					&cli.BoolFlag{Name: "force", Usage: "take over keys of a cluster of that name that was not created by init"},
				},
				Action: clusterInit,
			},
			{
				Name:  "deploy",
				Usage: "apply the config and converge towards it: check Redis against spec.redis, and bring each worker group to its replicas",
				Description: `The print provider (the default) says what is missing and the exact agent
command for each missing worker; the local provider starts and stops
'celeroot agent' processes on this machine.

Examples:
  celeroot cluster deploy -f cluster.yaml -f catalog/
  celeroot cluster deploy -f cluster.yaml --provider local`,
				Flags:  deployFlags(),
				Action: clusterDeploy,
			},
			{
				Name:  "destroy",
				Usage: "tell the workers to drain and leave, then delete every key of this cluster (and of no other)",
				Description: `Asks for the cluster's name unless --yes. Another cluster in the same Redis
is left untouched.

Examples:
  celeroot cluster destroy
  celeroot --cluster staging cluster destroy --yes`,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask for confirmation (for scripts)"},
					&cli.DurationFlag{Name: "wait", Value: 30 * time.Second, Usage: "how long to wait for workers to leave before deleting"},
					&cli.StringFlag{Name: "state-dir", Usage: "the local provider's pid and log files (default: $XDG_STATE_HOME/celeroot/<cluster>)"},
				},
				Action: clusterDestroy,
			},
			{
				Name:  "status",
				Usage: "workers by role and state, desired against actual, config revision and who lags, queues, dead letters, Redis",
				Description: `Everything comes from the projections and the streams' own counters; no
stream is scanned.

With --at, the fleet as it was at a past moment: workers by role and state,
the config revision then in force and who lagged behind it, folded from the
history (give --archive DIR once events before that moment were trimmed).

Examples:
  celeroot cluster status
  celeroot cluster status -o json
  celeroot cluster status --at 2026-11-24T02:00:00Z`,
				Flags:  []cli.Flag{outputFlag(), atFlag(), archiveFlag()},
				Action: clusterStatus,
			},
		},
	}
}

type roleStatus struct {
	Role      string         `json:"role"`
	States    map[string]int `json:"states"`
	Healthy   int            `json:"healthy"`
	Desired   int            `json:"desired"`
	HasDesire bool           `json:"-"`
}

// gatherCluster reads what cluster status and the exporter show. With a
// snapshot (cluster status --at), the workers and the config are those of
// the snapshot's moment, and what the history does not keep (queues,
// consumer lag, dead letters, Redis) is left out.
func gatherCluster(ctx context.Context, e *env, now time.Time, snap *projections.Snapshot) (clusterView, error) {
	log := streams.NewLog(e.rdb, e.keys)
	v := clusterView{Cluster: e.keys.Cluster}
	var workers []projections.Worker
	var bundle *schema.Bundle
	if snap != nil {
		v.AsOf = snap.At
		rev, ok, err := configAt(ctx, e, streams.IDAt(snap.At.Add(time.Millisecond)))
		if err != nil {
			return v, err
		}
		if ok {
			v.Revision = rev.Applied.Revision
			if bundle, err = schema.ParseBundle(rev.Applied.Document); err != nil {
				return v, err
			}
		}
		workers = snap.Workers()
	} else {
		rev, _, b, err := applied(ctx, e)
		if err != nil {
			return v, err
		}
		v.Revision, bundle = rev, b
		if workers, err = projections.NewStore(e.rdb, e.keys).WorkerStates(ctx); err != nil {
			return v, err
		}
	}
	roles := map[string]*roleStatus{}
	role := func(name string) *roleStatus {
		if roles[name] == nil {
			roles[name] = &roleStatus{Role: name, States: map[string]int{}}
		}
		return roles[name]
	}
	for _, w := range workers {
		st := w.State(now)
		r := role(w.Role)
		r.States[st]++
		if st == projections.WorkerHealthy {
			r.Healthy++
		}
		if st != projections.WorkerLeft && w.Revision < v.Revision {
			v.Lagging = append(v.Lagging, fmt.Sprintf("%s (revision %d)", w.Hostname, w.Revision))
		}
	}
	if bundle != nil && bundle.Cluster != nil {
		for _, g := range bundle.Cluster.Spec.Workers {
			r := role(g.Role)
			r.Desired += g.Replicas
			r.HasDesire = true
		}
		for _, s := range bundle.Cluster.Spec.Schedules {
			v.Schedules = append(v.Schedules, s.Name)
		}
	}
	for _, r := range roles {
		v.Roles = append(v.Roles, *r)
	}
	sort.Slice(v.Roles, func(i, j int) bool { return v.Roles[i].Role < v.Roles[j].Role })
	if snap != nil {
		return v, nil
	}
	for _, r := range v.Roles {
		st, err := streams.Stat(ctx, e.rdb, e.keys.RoleQueue(r.Role), streams.GroupAgents)
		if err != nil {
			return v, err
		}
		v.Queues = append(v.Queues, st)
	}
	k, err := projections.NewStore(e.rdb, e.keys).Keys(ctx)
	if err != nil {
		return v, err
	}
	for n := range e.keys.EventShards() {
		for _, s := range []string{e.keys.EventShard(n), e.keys.HeartbeatShard(n)} {
			st, err := streams.Stat(ctx, e.rdb, s, k.ProjectorGroup())
			if err != nil {
				return v, err
			}
			v.Projector = append(v.Projector, st)
		}
	}
	if v.EventStore, err = gatherEventStore(ctx, e, now); err != nil {
		return v, err
	}
	dead, err := streams.Stat(ctx, e.rdb, e.keys.DeadLetters(), "")
	if err != nil {
		return v, err
	}
	v.DeadLetters = dead.Length
	if len(v.Schedules) > 0 {
		if state, err := log.ScheduleState(ctx, v.Schedules); err == nil {
			v.LastFires = map[string]time.Time{}
			for name, st := range state {
				if !st.Last.IsZero() {
					v.LastFires[name] = st.Last
				}
			}
		}
	}
	if info, err := streams.Info(ctx, e.rdb); err == nil {
		v.Redis = &info
	} else {
		v.RedisProblem = err.Error()
	}
	return v, nil
}

// configAt returns the config revision in force at the stream bound
// until; ok is false if none was applied by then.
func configAt(ctx context.Context, e *env, until string) (streams.ConfigRevision, bool, error) {
	hist, err := streams.NewLog(e.rdb, e.keys).ConfigHistory(ctx, until)
	if err != nil || len(hist) == 0 {
		return streams.ConfigRevision{}, false, err
	}
	return hist[len(hist)-1], true, nil
}

// eventStoreView is what cluster status says of the event store's
// retention.
type eventStoreView struct {
	// Events is the number of events in Redis; Since the time of the
	// oldest.
	Events int64     `json:"events"`
	Since  time.Time `json:"since,omitzero"`
	// Unarchived is the time of the oldest event not archived yet (zero
	// when every event is); NeverArchived counts the shards with events
	// and no archive at all.
	Unarchived    time.Time `json:"oldest_unarchived,omitzero"`
	NeverArchived int       `json:"shards_never_archived"`
	// Trimmed is true once some shard was trimmed: folds need the archive.
	Trimmed bool `json:"trimmed"`
	// Retention is how long archived events stay in Redis.
	Retention time.Duration `json:"-"`
	Warnings  []string      `json:"warnings,omitempty"`
}

// gatherEventStore reads the event store's length and archive state.
func gatherEventStore(ctx context.Context, e *env, now time.Time) (eventStoreView, error) {
	var h eventStoreView
	keep, err := retentionOf(ctx, e)
	if err != nil {
		return h, err
	}
	keep = keep.WithDefaults()
	h.Retention = keep.Events
	for n, s := range e.keys.EventShards() {
		length, err := e.rdb.XLen(ctx, s).Result()
		if err != nil {
			return h, fmt.Errorf("length of %s: %w", s, err)
		}
		h.Events += length
		st, err := streams.ReadArchiveState(ctx, e.rdb, e.keys, n)
		if err != nil {
			return h, err
		}
		h.Trimmed = h.Trimmed || st.Trimmed != ""
		if length == 0 {
			continue
		}
		first, err := streams.First(ctx, e.rdb, s)
		if err != nil {
			return h, err
		}
		if ft, ok := streams.IDTime(first); ok && (h.Since.IsZero() || ft.Before(h.Since)) {
			h.Since = ft
		}
		// The oldest unarchived event is the first one after the watermark.
		if st.Archived == "" {
			h.NeverArchived++
		}
		next, err := streams.After(ctx, e.rdb, s, st.Archived, 1)
		if err != nil {
			return h, err
		}
		if len(next) == 1 {
			if t, ok := streams.IDTime(next[0].ID); ok && (h.Unarchived.IsZero() || t.Before(h.Unarchived)) {
				h.Unarchived = t
			}
		}
	}
	if !h.Unarchived.IsZero() && now.Sub(h.Unarchived) > keep.Events {
		if keep.TrimUnarchived {
			h.Warnings = append(h.Warnings, fmt.Sprintf("events from %s on were never archived and are past the %s retention: they are trimmed unarchived (spec.retention.archive: none)",
				fmtTime(h.Unarchived), fmtDuration(keep.Events)))
		} else {
			h.Warnings = append(h.Warnings, fmt.Sprintf("events from %s on are past the %s retention but not archived, so Redis keeps them: run 'celeroot events archive --dir DIR' (from cron)",
				fmtTime(h.Unarchived), fmtDuration(keep.Events)))
		}
	}
	return h, nil
}

type clusterView struct {
	Cluster string `json:"cluster"`
	// AsOf is set for a view of the past (cluster status --at).
	AsOf         time.Time            `json:"as_of,omitzero"`
	Revision     int64                `json:"config_revision"`
	Lagging      []string             `json:"lagging_workers,omitempty"`
	Roles        []roleStatus         `json:"roles"`
	Queues       []streams.StreamStat `json:"queues,omitempty"`
	Projector    []streams.StreamStat `json:"projector,omitempty"`
	EventStore   eventStoreView       `json:"event_store,omitzero"`
	DeadLetters  int64                `json:"dead_letters"`
	Schedules    []string             `json:"-"`
	LastFires    map[string]time.Time `json:"schedule_last_fires,omitempty"`
	Redis        *streams.ServerInfo  `json:"redis,omitempty"`
	RedisProblem string               `json:"redis_problem,omitempty"`
}

func clusterStatus(ctx context.Context, cmd *cli.Command) error {
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
	var v clusterView
	if snap, ok, err := asOf(ctx, cmd, e); err != nil {
		return err
	} else if ok {
		now = snap.At
		v, err = gatherCluster(ctx, e, now, &snap)
		if err != nil {
			return err
		}
	} else if v, err = gatherCluster(ctx, e, now, nil); err != nil {
		return err
	}
	w := cmd.Root().Writer
	if ok, err := writeData(w, format, v); ok {
		return err
	}
	fmt.Fprintf(w, "Cluster:          %s\n", v.Cluster)
	if v.Revision == 0 {
		fmt.Fprintln(w, "Config revision:  none applied (celeroot config apply -f cluster.yaml)")
	} else {
		fmt.Fprintf(w, "Config revision:  %d\n", v.Revision)
	}
	if len(v.Lagging) > 0 {
		fmt.Fprintf(w, "Lagging workers:  %s\n", strings.Join(v.Lagging, ", "))
	}
	past := !v.AsOf.IsZero()
	if !past {
		if v.Redis != nil {
			r := v.Redis
			persist := "no persistence"
			if r.AOF {
				persist = "AOF appendfsync " + r.AppendFsync
			}
			maxMem := r.MaxMemory
			if maxMem == "" || maxMem == "0B" {
				maxMem = "no limit"
			}
			fmt.Fprintf(w, "Redis:            %s %s, %s, memory %s (limit %s), %s, %d replicas\n",
				r.Version, r.Mode, r.Role, r.UsedMemory, maxMem, persist, r.Replicas)
		} else {
			fmt.Fprintf(w, "Redis:            not reported by this server (%s)\n", v.RedisProblem)
		}
		h := v.EventStore
		since := "-"
		if !h.Since.IsZero() {
			since = fmt.Sprintf("since %s (%s)", fmtTime(h.Since), ago(now, h.Since))
		}
		archived := "all archived"
		switch {
		case h.Events == 0:
			archived = "nothing to archive"
		case h.Unarchived.IsZero():
		case h.NeverArchived > 0 && !h.Trimmed && h.Since.Equal(h.Unarchived):
			archived = "never archived ('celeroot events archive --dir DIR')"
		default:
			archived = fmt.Sprintf("not archived since %s (%s)", fmtTime(h.Unarchived), ago(now, h.Unarchived))
		}
		fmt.Fprintf(w, "Event store:      %d events in Redis %s, %s\n", h.Events, since, archived)
		dead := fmt.Sprint(v.DeadLetters)
		if v.DeadLetters >= streams.DeadLetterWarnAt {
			dead += fmt.Sprintf(" (near the cap of about %d: beyond it the oldest are dropped; see 'celeroot task dead')", streams.MaxDeadLetters)
		}
		fmt.Fprintf(w, "Dead letters:     %s\n", dead)
		for _, m := range h.Warnings {
			fmt.Fprintf(w, "WARNING:          %s\n", m)
		}
	}
	fmt.Fprintln(w)
	tw := newTable(w)
	if past {
		fmt.Fprintln(tw, "ROLE\tDESIRED\tHEALTHY\tUNHEALTHY\tDRAINING\tLEFT")
	} else {
		fmt.Fprintln(tw, "ROLE\tDESIRED\tHEALTHY\tUNHEALTHY\tDRAINING\tLEFT\tQUEUE\tPENDING\tOLDEST PENDING")
	}
	for i, r := range v.Roles {
		desired := "-"
		if r.HasDesire {
			desired = fmt.Sprint(r.Desired)
			if r.Healthy < r.Desired {
				desired += " (missing " + fmt.Sprint(r.Desired-r.Healthy) + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d", r.Role, desired, r.Healthy, r.States[projections.WorkerUnhealthy],
			r.States[projections.WorkerDraining], r.States[projections.WorkerLeft])
		if !past {
			q := v.Queues[i]
			oldest := "-"
			if q.Pending > 0 {
				oldest = q.OldestPending.Round(time.Second).String()
			}
			fmt.Fprintf(tw, "\t%d\t%d\t%s", max(q.Lag, 0), q.Pending, oldest)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if past {
		fmt.Fprintln(w, "\n(Queues, consumer lag, dead letters and Redis are not kept in the history; shown for now only.)")
		return nil
	}
	var lag, pending int64
	for _, p := range v.Projector {
		lag += max(p.Lag, 0)
		pending += p.Pending
	}
	fmt.Fprintf(w, "\nProjector:        %d events not yet read, %d pending, over %d shards\n", lag, pending, len(e.keys.EventShards()))
	return nil
}

func clusterInit(ctx context.Context, cmd *cli.Command) error {
	if n := cmd.String("name"); n != "" {
		if err := cmd.Set("cluster", n); err != nil {
			return err
		}
	}
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	meta, err := streams.Meta(ctx, e.rdb, e.keys)
	if err != nil {
		return err
	}
	if meta.ID == "" && !cmd.Bool("force") {
		// Keys without init metadata: another tool, or agents started first.
		n, err := streams.CountKeys(ctx, e.rdb, e.keys)
		if err != nil {
			return err
		}
		if n > 1 { // the shard count alone is written by any command
			return fmt.Errorf("cluster %s already has %d keys in this Redis but was not created by 'cluster init'; pass --force to take it over", e.keys.Cluster, n)
		}
	}
	meta, created, err := streams.Init(ctx, e.rdb, e.keys, actor())
	if err != nil {
		return err
	}
	w := cmd.Root().Writer
	if created {
		fmt.Fprintf(w, "initialized cluster %s (id %s, %d event shards) in %s\n", e.keys.Cluster, meta.ID, meta.Shards, e.url)
	} else {
		fmt.Fprintf(w, "cluster %s is already initialized (id %s, created %s by %s); nothing changed\n",
			e.keys.Cluster, meta.ID, meta.CreatedAt.Local().Format(time.RFC3339), orDash(meta.CreatedBy))
	}
	fmt.Fprintf(w, `
Next:
  celeroot config apply -f cluster.yaml -f catalog/     # describe the cluster
  celeroot agent --role <role> --label k=v              # on every host (see examples/celeroot-agent.service)
  celeroot cluster status
`)
	return nil
}

func clusterDestroy(ctx context.Context, cmd *cli.Command) error {
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	n, err := streams.CountKeys(ctx, e.rdb, e.keys)
	if err != nil {
		return err
	}
	w := cmd.Root().Writer
	if n <= 1 {
		// Connecting records the shard count of a cluster it does not
		// know yet; that key alone is no cluster.
		if meta, err := streams.Meta(ctx, e.rdb, e.keys); err == nil && meta.ID == "" {
			if _, err := streams.DeleteCluster(ctx, e.rdb, e.keys); err != nil {
				return err
			}
			fmt.Fprintf(w, "cluster %s has no keys in %s; nothing to destroy\n", e.keys.Cluster, e.url)
			return nil
		}
	}
	if !cmd.Bool("yes") {
		fmt.Fprintf(w, "This deletes cluster %s from %s: %d keys, its whole history. Type the cluster name to go on: ", e.keys.Cluster, e.url, n)
		var answer string
		if _, err := fmt.Fscanln(cmd.Root().Reader, &answer); err != nil || answer != e.keys.Cluster {
			return errors.New("not confirmed; nothing was deleted (use --yes in scripts)")
		}
	}
	store := projections.NewStore(e.rdb, e.keys)
	workers, err := store.Workers(ctx)
	if err != nil {
		return err
	}
	log := streams.NewLog(e.rdb, e.keys)
	src := events.Source{Cluster: e.keys.Cluster, Actor: actor()}
	var waiting []string
	for _, wk := range workers {
		if st := wk.State(time.Now()); st == projections.WorkerHealthy || st == projections.WorkerDraining {
			req := src.New(events.WorkerDrain{Hostname: wk.Hostname, Reason: "cluster destroyed"})
			if _, err := log.Append(ctx, e.keys.WorkerControl(wk.Hostname), req, streams.ControlMaxLen); err != nil {
				return err
			}
			waiting = append(waiting, wk.Hostname)
		}
	}
	if len(waiting) > 0 {
		fmt.Fprintf(w, "asked %d workers to drain and leave: %s\n", len(waiting), strings.Join(waiting, ", "))
		deadline := time.Now().Add(cmd.Duration("wait"))
		prog := newProgress(cmd)
		asked := len(waiting)
		for len(waiting) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
			prog.Update(span{text: "waiting for workers to leave: "}, span{fmt.Sprintf("%d of %d left", asked-len(waiting), asked), colorYellow},
				span{text: "; still there: " + strings.Join(waiting, ", ")})
			time.Sleep(200 * time.Millisecond)
			var still []string
			for _, h := range waiting {
				if wk, err := store.Worker(ctx, h); err == nil && wk.State(time.Now()) != projections.WorkerLeft {
					still = append(still, h)
				}
			}
			waiting = still
		}
		if len(waiting) == 0 {
			prog.Done(span{text: "waiting for workers to leave: "}, span{fmt.Sprintf("%d of %d left", asked, asked), colorGreen})
		} else {
			prog.Done()
		}
		if len(waiting) > 0 {
			fmt.Fprintf(w, "still running after %s (their next Redis calls will fail): %s\n", cmd.Duration("wait"), strings.Join(waiting, ", "))
		}
	}
	// Local agents that left are on their way out: let them exit before
	// their keys go, so that none writes after the delete.
	if dir, err := stateDir(cmd, e.keys.Cluster); err == nil {
		stopped, running := stopLocal(dir, 10*time.Second)
		if len(stopped) > 0 {
			fmt.Fprintf(w, "stopped local agents: %s\n", strings.Join(stopped, ", "))
		}
		if len(running) > 0 {
			fmt.Fprintf(w, "local agents still running after 10s (their next Redis calls will fail): %s\n", strings.Join(running, ", "))
		}
	}
	deleted, err := streams.DeleteCluster(ctx, e.rdb, e.keys)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "destroyed cluster %s: deleted %d keys\n", e.keys.Cluster, deleted)
	return nil
}
