package ctl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/celeroot/celeroot/streams"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v3"
)

func exporterCommand() *cli.Command {
	return &cli.Command{
		Name:  "exporter",
		Usage: "serve cluster-wide Prometheus metrics from the projections, one scrape target for the whole fleet",
		Description: `Each scrape reads the projections and the streams' counters (as 'cluster
status' does): workers by role and state, desired replicas, queue backlog and
oldest pending age, projector backlog, dead letters, config revision, and each
schedule's last fire time.

Example:
  celeroot exporter --listen :9465`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: ":9465", Usage: "address to serve /metrics on"},
		},
		Action: runExporter,
	}
}

var (
	descUp        = prometheus.NewDesc("celeroot_cluster_exporter_up", "1 if the last scrape could read the cluster, else 0.", nil, nil)
	descWorkers   = prometheus.NewDesc("celeroot_cluster_workers", "Workers by role and state (healthy, unhealthy, draining, left).", []string{"role", "state"}, nil)
	descDesired   = prometheus.NewDesc("celeroot_cluster_desired_workers", "Workers the applied config asks for, by role.", []string{"role"}, nil)
	descQueueLag  = prometheus.NewDesc("celeroot_cluster_queue_lag_entries", "Queue entries no worker of the role has read yet.", []string{"role"}, nil)
	descQueuePend = prometheus.NewDesc("celeroot_cluster_queue_pending_entries", "Queue entries read but not acknowledged, by role.", []string{"role"}, nil)
	descQueueAge  = prometheus.NewDesc("celeroot_cluster_queue_oldest_pending_seconds", "Age of the oldest unacknowledged queue entry, by role.", []string{"role"}, nil)
	descProjLag   = prometheus.NewDesc("celeroot_cluster_projector_lag_entries", "Events the projectors have not read yet.", nil, nil)
	descProjPend  = prometheus.NewDesc("celeroot_cluster_projector_pending_entries", "Events read by a projector but not acknowledged.", nil, nil)
	descDead      = prometheus.NewDesc("celeroot_cluster_dead_letters", "Entries in the dead-letter stream.", nil, nil)
	descDeadCap   = prometheus.NewDesc("celeroot_cluster_dead_letters_capacity", "About how many dead letters are kept; beyond it the oldest are dropped.", nil, nil)
	descEvents    = prometheus.NewDesc("celeroot_cluster_event_store_entries", "Events in the event store in Redis (all shards).", nil, nil)
	descUnarch    = prometheus.NewDesc("celeroot_cluster_event_store_unarchived_seconds", "Age of the oldest event not archived yet (0 when every event is).", nil, nil)
	descEvRetain  = prometheus.NewDesc("celeroot_cluster_event_retention_seconds", "How long archived events stay in Redis (spec.retention.events).", nil, nil)
	descRevision  = prometheus.NewDesc("celeroot_cluster_config_revision", "The applied config revision.", nil, nil)
	descLagging   = prometheus.NewDesc("celeroot_cluster_lagging_workers", "Workers running an older config revision than the applied one.", nil, nil)
	descLastFire  = prometheus.NewDesc("celeroot_cluster_schedule_last_fire_timestamp_seconds", "When each schedule last fired (Unix time).", []string{"schedule"}, nil)
)

// clusterCollector gathers the cluster's state on every scrape.
type clusterCollector struct{ e *env }

func (c clusterCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c clusterCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := gatherCluster(ctx, c.e, time.Now(), nil)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 1)
	for i, r := range v.Roles {
		for _, st := range []string{"healthy", "unhealthy", "draining", "left"} {
			ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(r.States[st]), r.Role, st)
		}
		if r.HasDesire {
			ch <- prometheus.MustNewConstMetric(descDesired, prometheus.GaugeValue, float64(r.Desired), r.Role)
		}
		q := v.Queues[i]
		ch <- prometheus.MustNewConstMetric(descQueueLag, prometheus.GaugeValue, float64(max(q.Lag, 0)), r.Role)
		ch <- prometheus.MustNewConstMetric(descQueuePend, prometheus.GaugeValue, float64(q.Pending), r.Role)
		ch <- prometheus.MustNewConstMetric(descQueueAge, prometheus.GaugeValue, q.OldestPending.Seconds(), r.Role)
	}
	var lag, pending int64
	for _, p := range v.Projector {
		lag += max(p.Lag, 0)
		pending += p.Pending
	}
	ch <- prometheus.MustNewConstMetric(descProjLag, prometheus.GaugeValue, float64(lag))
	ch <- prometheus.MustNewConstMetric(descProjPend, prometheus.GaugeValue, float64(pending))
	ch <- prometheus.MustNewConstMetric(descDead, prometheus.GaugeValue, float64(v.DeadLetters))
	ch <- prometheus.MustNewConstMetric(descDeadCap, prometheus.GaugeValue, streams.MaxDeadLetters)
	ch <- prometheus.MustNewConstMetric(descEvents, prometheus.GaugeValue, float64(v.EventStore.Events))
	unarchived := 0.0
	if !v.EventStore.Unarchived.IsZero() {
		unarchived = time.Since(v.EventStore.Unarchived).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(descUnarch, prometheus.GaugeValue, unarchived)
	ch <- prometheus.MustNewConstMetric(descEvRetain, prometheus.GaugeValue, v.EventStore.Retention.Seconds())
	ch <- prometheus.MustNewConstMetric(descRevision, prometheus.GaugeValue, float64(v.Revision))
	ch <- prometheus.MustNewConstMetric(descLagging, prometheus.GaugeValue, float64(len(v.Lagging)))
	for name, at := range v.LastFires {
		ch <- prometheus.MustNewConstMetric(descLastFire, prometheus.GaugeValue, float64(at.UnixMilli())/1000, name)
	}
}

func runExporter(ctx context.Context, cmd *cli.Command) error {
	e, err := connect(ctx, cmd, 0)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	l, err := net.Listen("tcp", cmd.String("listen"))
	if err != nil {
		return fmt.Errorf("--listen %s: %w", cmd.String("listen"), err)
	}
	return serveExporter(ctx, e, l, cmd)
}

func serveExporter(ctx context.Context, e *env, l net.Listener, cmd *cli.Command) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(clusterCollector{e})
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(cmd.Root().ErrWriter, "serving cluster %s metrics on http://%s/metrics\n", e.keys.Cluster, l.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
