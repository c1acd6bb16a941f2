package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

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
	// LogLimit caps the output kept per task attempt, in bytes; output past
	// it is dropped after a "truncated" marker. Default 1 MiB.
	LogLimit int64
	// ShutdownTimeout bounds how long running tasks may take to finish
	// after the agent is told to stop. Default 30s.
	ShutdownTimeout time.Duration
	// Block bounds one blocking read. Default streams.DefaultBlock.
	Block time.Duration
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
	// MaxConcurrency bounds Concurrency.
	MaxConcurrency = 1024
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
	if c.Heartbeat < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("heartbeat %s: must be at least 100ms", c.Heartbeat))
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
	readers := 2 // the worker's dispatch stream and its role's queue
	if c.Projector {
		shards := c.Keys.Shards
		if shards == 0 {
			shards = streams.DefaultShards
		}
		readers += shards
	}
	return concurrency + readers + 4
}
