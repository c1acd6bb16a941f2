package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/celeroot/celeroot/schema"
	"github.com/celeroot/celeroot/streams"
)

// Config configures an agent. Zero values take the defaults below.
type Config struct {
	// Keys names the cluster's keys.
	Keys     streams.Keys
	Hostname string
	Role     string
	Labels   map[string]string
	Version  string
	// Heartbeat is the heartbeat interval. Default 5s.
	Heartbeat time.Duration
	// Concurrency is how many tasks run at once. Default 8.
	Concurrency int
	// Projector runs a projector in this agent.
	Projector bool
	// Janitor makes this agent take its turn at the retention pass (one
	// agent of the cluster at a time runs it, every JanitorEvery).
	Janitor bool
	// LogLimit caps the output kept per task attempt, in bytes; output past
	// it is dropped after a "truncated" marker. Default 1 MiB.
	LogLimit int64
	// ShutdownTimeout bounds how long running tasks may take to finish
	// after the agent is told to stop. Default 30s.
	ShutdownTimeout time.Duration
	// Block bounds one blocking read. Default streams.DefaultBlock.
	Block time.Duration
	// ReclaimIdle is how long a queue entry may stay unacknowledged by its
	// worker before another worker of the role takes it over. A running
	// task extends its claim every ReclaimIdle/3, so only a worker that
	// stopped (crashed, hung, cut off) loses its entries. Default 30s.
	ReclaimIdle time.Duration
	// MaxDeliveries is how many times an entry is delivered without a
	// result before the task is dead-lettered. Default 5.
	MaxDeliveries int64
	// Scheduler says whether this agent evaluates the cluster's schedules
	// and submits the tasks they fire: SchedulerAuto (the default),
	// SchedulerAlways or SchedulerNever. In auto mode it does when its role
	// is SchedulerRole, or when no worker group of the applied config has
	// that role (then every agent does; the firing script keeps each slot
	// to one fire).
	Scheduler string
	// OnTimeGrace is how late a slot may be evaluated and still count as on
	// time; a later slot was missed and follows the schedule's missed
	// policy. It is at most half of the schedule's interval. Default 30s.
	OnTimeGrace time.Duration
	// ScheduleNext, if set, replaces the cron expression of every schedule:
	// it returns the first slot after t. Nil uses (*schema.Schedule).Next;
	// tests fire every second with it.
	ScheduleNext func(s *schema.Schedule, t time.Time) (time.Time, error)
	// PluginDir is the directory of task plugins: every executable in it
	// that describes itself validly is a task this agent runs (ADR 0007).
	// Empty: no plugins. A directory that does not exist holds none, until
	// it is created.
	PluginDir string
	// PluginRescan is how often the plugin directory is read again.
	// Default DefaultPluginRescan.
	PluginRescan time.Duration
	// PluginDescribeTimeout bounds one "describe" call of a plugin.
	// Default DefaultPluginDescribeTimeout.
	PluginDescribeTimeout time.Duration
	// Rescan, if set, makes the agent read the plugin directory again at
	// each receive (celeroot agent sends one on SIGHUP).
	Rescan <-chan struct{}
	// MetricsListener, if set, serves /metrics, /healthz and /readyz; the
	// agent closes it when Run returns.
	MetricsListener net.Listener
	// Exec runs a task; nil runs real commands. Benchmarks use a no-op.
	Exec Executor
	// Logger receives the agent's structured logs.
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultHeartbeat       = 5 * time.Second
	DefaultConcurrency     = 8
	DefaultLogLimit        = 1 << 20
	DefaultShutdownTimeout = 30 * time.Second
	DefaultReclaimIdle     = 30 * time.Second
	// DefaultRetryBackoff is the delay before a task's first retry when the
	// submission sets none; it doubles per retry up to MaxRetryBackoff.
	DefaultRetryBackoff  = 5 * time.Second
	MaxRetryBackoff      = 5 * time.Minute
	DefaultMaxDeliveries = 5
	// DeadWorkerIdle is the reclaim bound for entries of a worker that the
	// projections already show unhealthy or gone.
	DeadWorkerIdle = time.Second
	// MaxConcurrency bounds Concurrency.
	MaxConcurrency = 1024
	// MinHeartbeat and MinReclaimIdle bound Heartbeat and ReclaimIdle.
	MinHeartbeat   = 100 * time.Millisecond
	MinReclaimIdle = 300 * time.Millisecond
)

func (c *Config) setDefaults() error {
	var errs []error
	if err := streams.ValidateClusterName(c.Keys.Cluster); err != nil {
		errs = append(errs, err)
	}
	if err := streams.ValidateName("hostname", c.Hostname); err != nil {
		errs = append(errs, err)
	}
	if err := streams.ValidateName("role", c.Role); err != nil {
		errs = append(errs, err)
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.Heartbeat < MinHeartbeat {
		errs = append(errs, fmt.Errorf("heartbeat %s: must be at least %s", c.Heartbeat, MinHeartbeat))
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Concurrency < 1 || c.Concurrency > MaxConcurrency {
		errs = append(errs, fmt.Errorf("concurrency %d: must be between 1 and %d", c.Concurrency, MaxConcurrency))
	}
	if c.LogLimit == 0 {
		c.LogLimit = DefaultLogLimit
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Block == 0 {
		c.Block = streams.DefaultBlock
	}
	if c.ReclaimIdle == 0 {
		c.ReclaimIdle = DefaultReclaimIdle
	}
	if c.ReclaimIdle < MinReclaimIdle {
		errs = append(errs, fmt.Errorf("reclaim idle %s: must be at least %s", c.ReclaimIdle, MinReclaimIdle))
	}
	if c.MaxDeliveries == 0 {
		c.MaxDeliveries = DefaultMaxDeliveries
	}
	if c.MaxDeliveries < 1 {
		errs = append(errs, fmt.Errorf("max deliveries %d: must be at least 1", c.MaxDeliveries))
	}
	switch c.Scheduler {
	case "":
		c.Scheduler = SchedulerAuto
	case SchedulerAuto, SchedulerAlways, SchedulerNever:
	default:
		errs = append(errs, fmt.Errorf("scheduler %q: use %s, %s or %s", c.Scheduler, SchedulerAuto, SchedulerAlways, SchedulerNever))
	}
	if c.OnTimeGrace == 0 {
		c.OnTimeGrace = DefaultOnTimeGrace
	}
	if c.OnTimeGrace < 0 {
		errs = append(errs, fmt.Errorf("on-time grace %s: must be > 0", c.OnTimeGrace))
	}
	if c.PluginRescan == 0 {
		c.PluginRescan = DefaultPluginRescan
	}
	if c.PluginRescan < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("plugin rescan %s: must be at least 100ms", c.PluginRescan))
	}
	if c.PluginDescribeTimeout == 0 {
		c.PluginDescribeTimeout = DefaultPluginDescribeTimeout
	}
	if c.PluginDescribeTimeout < 0 {
		errs = append(errs, fmt.Errorf("plugin describe timeout %s: must be > 0", c.PluginDescribeTimeout))
	}
	if c.ScheduleNext == nil {
		c.ScheduleNext = (*schema.Schedule).Next
	}
	if c.Exec == nil {
		c.Exec = CommandExecutor{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return errors.Join(errs...)
}

// PoolSize is the Redis connection pool an agent with this config needs
// (per node on Redis Cluster): each blocking reader pins a connection for
// up to Block, and every running task may hold one for its writes.
func (c Config) PoolSize() int {
	concurrency := c.Concurrency
	if concurrency == 0 {
		concurrency = DefaultConcurrency
	}
	readers := 2 // the worker's inbox, and its role's queue on Redis Cluster
	if c.Scheduler != SchedulerNever {
		readers++ // the schedule fires stream
	}
	if c.Projector {
		shards := c.Keys.Shards
		if shards == 0 {
			shards = streams.DefaultShards
		}
		readers += shards
	}
	return concurrency + readers + 4
}
