package agent

import (
	"context"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"
)

// metrics are the agent's Prometheus metrics. Labels are bounded: task
// names come from the catalog, outcomes and operations are fixed sets; no
// label carries a task id or another host's name.
type metrics struct {
	tasks         *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	queueWait     prometheus.Histogram
	attempts      prometheus.Counter
	retries       prometheus.Counter
	reclaims      prometheus.Counter
	deadLetters   prometheus.Counter
	heartbeats    prometheus.Counter
	heartbeatErrs prometheus.Counter
	redisErrors   *prometheus.CounterVec
	revision      prometheus.Gauge
	running       prometheus.Gauge
	pending       *prometheus.GaugeVec
	lag           *prometheus.GaugeVec
	redisLatency  *prometheus.HistogramVec
	// The retention pass, when this agent ran it.
	janitorPasses  prometheus.Counter
	janitorErrors  prometheus.Counter
	janitorTrimmed *prometheus.CounterVec
	janitorRemoved *prometheus.CounterVec
	janitorLast    prometheus.Gauge
	// plugins and pluginProblems count the task plugins served and the
	// plugin files refused.
	plugins        prometheus.Gauge
	pluginProblems prometheus.Gauge
}

// newMetrics registers the agent's metrics on reg (nil: not registered).
func newMetrics(reg prometheus.Registerer, version string) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		tasks: f.NewCounterVec(prometheus.CounterOpts{Name: "celeroot_agent_tasks_total",
			Help: "Task attempts executed by this agent, by task and outcome."}, []string{"task", "outcome"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{Name: "celeroot_agent_task_duration_seconds",
			Help: "How long task attempts ran.", Buckets: prometheus.ExponentialBuckets(0.005, 4, 10)}, []string{"task"}),
		queueWait: f.NewHistogram(prometheus.HistogramOpts{Name: "celeroot_agent_task_queue_wait_seconds",
			Help: "Time from a task's submission to the start of its attempt on this agent.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 12)}),
		attempts: f.NewCounter(prometheus.CounterOpts{Name: "celeroot_agent_task_attempts_total",
			Help: "Task attempts started by this agent."}),
		retries: f.NewCounter(prometheus.CounterOpts{Name: "celeroot_agent_task_retries_total",
			Help: "Failed attempts followed by a retry."}),
		reclaims: f.NewCounter(prometheus.CounterOpts{Name: "celeroot_agent_reclaims_total",
			Help: "Queue entries taken over from workers that stopped."}),
		deadLetters: f.NewCounter(prometheus.CounterOpts{Name: "celeroot_agent_dead_letters_total",
			Help: "Entries this agent moved to the dead-letter stream."}),
		heartbeats: f.NewCounter(prometheus.CounterOpts{Name: "celeroot_agent_heartbeats_total",
			Help: "Heartbeats sent."}),
		heartbeatErrs: f.NewCounter(prometheus.CounterOpts{Name: "celeroot_agent_heartbeat_failures_total",
			Help: "Heartbeats that could not be sent."}),
		redisErrors: f.NewCounterVec(prometheus.CounterOpts{Name: "celeroot_agent_redis_errors_total",
			Help: "Redis calls that failed (and were retried), by operation."}, []string{"op"}),
		revision: f.NewGauge(prometheus.GaugeOpts{Name: "celeroot_agent_config_revision",
			Help: "The config revision this agent runs (0: none applied)."}),
		running: f.NewGauge(prometheus.GaugeOpts{Name: "celeroot_agent_running_tasks",
			Help: "Tasks executing on this agent."}),
		pending: f.NewGaugeVec(prometheus.GaugeOpts{Name: "celeroot_agent_stream_pending_entries",
			Help: "Entries read but not acknowledged in the agent's dispatch streams (stream: worker or queue)."}, []string{"stream"}),
		lag: f.NewGaugeVec(prometheus.GaugeOpts{Name: "celeroot_agent_stream_lag_entries",
			Help: "Entries not yet read in the agent's dispatch streams (stream: worker or queue)."}, []string{"stream"}),
	}
	m.janitorPasses = f.NewCounter(prometheus.CounterOpts{Name: "celeroot_agent_retention_passes_total",
		Help: "Retention passes this agent ran (one agent at a time runs them)."})
	m.janitorErrors = f.NewCounter(prometheus.CounterOpts{Name: "celeroot_agent_retention_failures_total",
		Help: "Retention passes this agent started that failed."})
	m.janitorTrimmed = f.NewCounterVec(prometheus.CounterOpts{Name: "celeroot_agent_retention_trimmed_entries_total",
		Help: "Stream entries trimmed by this agent's retention passes, by kind of stream (events, heartbeats, dispatch, control, schedule)."}, []string{"kind"})
	m.janitorRemoved = f.NewCounterVec(prometheus.CounterOpts{Name: "celeroot_agent_retention_removed_total",
		Help: "Projections removed by this agent's retention passes, by kind (task, worker)."}, []string{"kind"})
	m.janitorLast = f.NewGauge(prometheus.GaugeOpts{Name: "celeroot_agent_retention_last_pass_timestamp_seconds",
		Help: "When this agent last completed a retention pass (0: never)."})
	m.plugins = f.NewGauge(prometheus.GaugeOpts{Name: "celeroot_agent_plugins",
		Help: "Task plugins this agent serves."})
	m.pluginProblems = f.NewGauge(prometheus.GaugeOpts{Name: "celeroot_agent_plugin_problems",
		Help: "Files of the plugin directory this agent refused (see its log, or celeroot workers show)."})
	m.redisLatency = f.NewHistogramVec(prometheus.HistogramOpts{Name: "celeroot_agent_redis_command_duration_seconds",
		Help:    "Round-trip time of the agent's Redis commands (blocking reads excluded), by command.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9)}, []string{"command"})
	f.NewGaugeFunc(prometheus.GaugeOpts{Name: "celeroot_build_info", Help: "The build of this agent; always 1.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()}}, func() float64 { return 1 })
	if reg != nil {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// redisHook times the agent's Redis commands. Blocking reads are left out:
// their duration is how long the stream stayed idle, not Redis' latency.
type redisHook struct{ hist *prometheus.HistogramVec }

func (h redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		name := cmd.Name()
		if name == "xreadgroup" || name == "xread" {
			return err
		}
		if name == "evalsha" || name == "eval" {
			name = "script"
		}
		h.hist.WithLabelValues(name).Observe(time.Since(start).Seconds())
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		h.hist.WithLabelValues("pipeline").Observe(time.Since(start).Seconds())
		return err
	}
}
