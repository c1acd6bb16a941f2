package ctl

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/schema"
	"github.com/celeroot/celeroot/streams"
	"github.com/urfave/cli/v3"
)

func clusterCommand() *cli.Command {
	return &cli.Command{
		Name:  "cluster",
		Usage: "the cluster as a whole",
		Commands: []*cli.Command{
			{
				Name:  "status",
				Usage: "workers by role and state, desired against actual, config revision and who lags, queues, dead letters, Redis",
				Description: `Everything comes from the projections and the streams' own counters; no
stream is scanned.

Examples:
  celeroot cluster status
  celeroot cluster status -o json`,
				Flags:  []cli.Flag{outputFlag()},
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

// gatherCluster reads what cluster status and the exporter show.
func gatherCluster(ctx context.Context, e *env, now time.Time) (clusterView, error) {
	log := streams.NewLog(e.rdb, e.keys)
	v := clusterView{Cluster: e.keys.Cluster}
	var bundle *schema.Bundle
	if cur, ok, err := log.ConfigAt(ctx, 0); err != nil {
		return v, err
	} else if ok {
		v.Revision = cur.Applied.Revision
		if bundle, err = schema.ParseBundle(cur.Applied.Document); err != nil {
			return v, err
		}
	}
	workers, err := projections.NewStore(e.rdb, e.keys).Workers(ctx)
	if err != nil {
		return v, err
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
	for _, r := range v.Roles {
		st, err := streams.Stat(ctx, e.rdb, e.keys.RoleQueue(r.Role), streams.GroupAgents)
		if err != nil {
			return v, err
		}
		v.Queues = append(v.Queues, st)
	}
	for _, s := range e.keys.EventShards() {
		st, err := streams.Stat(ctx, e.rdb, s, streams.GroupProjector)
		if err != nil {
			return v, err
		}
		v.Projector = append(v.Projector, st)
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

type clusterView struct {
	Cluster      string               `json:"cluster"`
	Revision     int64                `json:"config_revision"`
	Lagging      []string             `json:"lagging_workers,omitempty"`
	Roles        []roleStatus         `json:"roles"`
	Queues       []streams.StreamStat `json:"queues"`
	Projector    []streams.StreamStat `json:"projector"`
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
	v, err := gatherCluster(ctx, e, time.Now())
	if err != nil {
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
		fmt.Fprintf(w, "Redis:            details unavailable (%s)\n", v.RedisProblem)
	}
	fmt.Fprintf(w, "Dead letters:     %d\n\n", v.DeadLetters)
	tw := newTable(w)
	fmt.Fprintln(tw, "ROLE\tDESIRED\tHEALTHY\tUNHEALTHY\tDRAINING\tLEFT\tQUEUE\tPENDING\tOLDEST PENDING")
	for i, r := range v.Roles {
		desired := "-"
		if r.HasDesire {
			desired = fmt.Sprint(r.Desired)
			if r.Healthy < r.Desired {
				desired += " (missing " + fmt.Sprint(r.Desired-r.Healthy) + ")"
			}
		}
		q := v.Queues[i]
		oldest := "-"
		if q.Pending > 0 {
			oldest = q.OldestPending.Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", r.Role, desired, r.Healthy, r.States[projections.WorkerUnhealthy],
			r.States[projections.WorkerDraining], r.States[projections.WorkerLeft], max(q.Lag, 0), q.Pending, oldest)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var lag, pending int64
	for _, p := range v.Projector {
		lag += max(p.Lag, 0)
		pending += p.Pending
	}
	fmt.Fprintf(w, "\nProjector:        %d events not yet read, %d pending, over %d shards\n", lag, pending, len(v.Projector))
	return nil
}
