package ctl

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/streams"
	"github.com/goccy/go-yaml"
	"github.com/urfave/cli/v3"
)

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "run the worker daemon on this host",
		Description: `Registers this host as a worker, heartbeats, and runs the tasks sent to it
or to its role's queue. SIGTERM (or Ctrl-C) drains: no new tasks are taken,
running ones get --shutdown-timeout to finish, then the agent leaves.

Examples:
  celeroot agent --redis redis://10.0.0.5:6379 --role webserver --label tier=web
  CELEROOT_REDIS_PASSWORD=... celeroot agent --hostname web1 --role webserver`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "hostname", Usage: "worker name (default: this host's name)", Sources: cli.EnvVars("CELEROOT_HOSTNAME")},
			&cli.StringFlag{Name: "config", Usage: "a YAML file of agent settings named like these flags (labels as a mapping); flags and environment variables override it"},
			&cli.StringFlag{Name: "role", Usage: "worker role, such as webserver (required)", Sources: cli.EnvVars("CELEROOT_ROLE")},
			&cli.StringSliceFlag{Name: "label", Usage: "label k=v (repeatable)"},
			&cli.IntFlag{Name: "concurrency", Usage: "tasks run at once", Value: agent.DefaultConcurrency},
			&cli.DurationFlag{Name: "heartbeat", Usage: "heartbeat interval", Value: agent.DefaultHeartbeat},
			&cli.DurationFlag{Name: "reclaim-idle", Value: agent.DefaultReclaimIdle,
				Usage: "how long a queue task may go unacknowledged before another worker of the role takes it over (a running task renews its claim every third of this)"},
			&cli.IntFlag{Name: "max-deliveries", Value: agent.DefaultMaxDeliveries,
				Usage: "deliveries of a task without a result before it is dead-lettered"},
			&cli.DurationFlag{Name: "shutdown-timeout", Usage: "how long running tasks may finish after SIGTERM", Value: agent.DefaultShutdownTimeout},
			&cli.BoolFlag{Name: "projector", Usage: "also maintain the projections (status views); run it in at least two agents", Value: true},
			&cli.BoolFlag{Name: "janitor", Usage: "take turns at the retention pass (trimming streams, removing finished tasks and gone workers; one agent at a time runs it)", Value: true},
			&cli.StringFlag{Name: "metrics-listen", Value: ":9464", Sources: cli.EnvVars("CELEROOT_METRICS_LISTEN"),
				Usage: "address for /metrics, /healthz and /readyz; off to serve none"},
			&cli.StringFlag{Name: "scheduler", Value: agent.SchedulerAuto,
				Usage: "evaluate the cluster's schedules: auto (if this worker's role is scheduler, or no worker group has that role), always, never"},
			&cli.StringFlag{Name: "plugin-dir", Value: DefaultPluginDir, Sources: cli.EnvVars("CELEROOT_PLUGIN_DIR"),
				Usage: "directory of task plugins: each executable in it that answers 'describe' is a task this worker runs; off for none"},
			&cli.DurationFlag{Name: "plugin-rescan", Value: agent.DefaultPluginRescan,
				Usage: "how often the plugin directory is read again (SIGHUP reads it at once)"},
			&cli.DurationFlag{Name: "plugin-describe-timeout", Value: agent.DefaultPluginDescribeTimeout,
				Usage: "how long a plugin may take to answer 'describe'"},
		},
		Action: runAgent,
	}
}

// DefaultPluginDir is where "celeroot agent" looks for task plugins.
const DefaultPluginDir = "/etc/celeroot/plugins"

func runAgent(ctx context.Context, cmd *cli.Command) error {
	if f := cmd.String("config"); f != "" {
		if err := loadAgentConfig(cmd, f); err != nil {
			return err
		}
	}
	if cmd.String("role") == "" {
		return usagef("the agent needs a role: --role, $CELEROOT_ROLE, or role: in --config")
	}
	host := cmd.String("hostname")
	if host == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("no --hostname given and the host name is unknown: %w", err)
		}
		host = strings.Split(h, ".")[0]
	}
	labels, err := parseLabels(cmd.StringSlice("label"))
	if err != nil {
		return err
	}
	// The agent package's bounds, checked here before connecting so that
	// the error names the flag; unlike the package, which reads a zero
	// setting as its default, a flag given as 0 is refused.
	if err := streams.ValidateName("role", cmd.String("role")); err != nil {
		return usagef("--role: %v", err)
	}
	if err := streams.ValidateName("hostname", host); err != nil {
		if cmd.IsSet("hostname") {
			return usagef("--hostname: %v", err)
		}
		return usagef("this host's name %q is not a valid worker hostname (%v): give one with --hostname", host, err)
	}
	if d := cmd.Duration("heartbeat"); d < agent.MinHeartbeat {
		return usagef("--heartbeat %s: must be at least %s (default %s)", d, agent.MinHeartbeat, agent.DefaultHeartbeat)
	}
	if n := cmd.Int("concurrency"); n < 1 || n > agent.MaxConcurrency {
		return usagef("--concurrency %d: must be between 1 and %d (default %d)", n, agent.MaxConcurrency, agent.DefaultConcurrency)
	}
	if d := cmd.Duration("shutdown-timeout"); d < 0 {
		return usagef("--shutdown-timeout %s: must be >= 0 (default %s)", d, agent.DefaultShutdownTimeout)
	}
	if d := cmd.Duration("reclaim-idle"); d < agent.MinReclaimIdle {
		return usagef("--reclaim-idle %s: must be at least %s (default %s)", d, agent.MinReclaimIdle, agent.DefaultReclaimIdle)
	}
	if n := cmd.Int("max-deliveries"); n < 1 {
		return usagef("--max-deliveries %d: must be at least 1 (default %d)", n, agent.DefaultMaxDeliveries)
	}
	logger, err := newLogger(cmd, cmd.Root().ErrWriter)
	if err != nil {
		return err
	}
	cfg := agent.Config{
		Hostname: host, Role: cmd.String("role"), Labels: labels, Version: Version,
		Heartbeat: cmd.Duration("heartbeat"), Concurrency: int(cmd.Int("concurrency")),
		ReclaimIdle: cmd.Duration("reclaim-idle"), MaxDeliveries: int64(cmd.Int("max-deliveries")),
		ShutdownTimeout: cmd.Duration("shutdown-timeout"), Projector: cmd.Bool("projector"), Janitor: cmd.Bool("janitor"),
		Scheduler: cmd.String("scheduler"),
		Logger:    logger,
	}
	if dir := cmd.String("plugin-dir"); dir != "" && dir != "off" {
		if cmd.Duration("plugin-rescan") < time.Second {
			return usagef("--plugin-rescan %s: must be at least 1s", cmd.Duration("plugin-rescan"))
		}
		if d := cmd.Duration("plugin-describe-timeout"); d <= 0 || d > time.Minute {
			return usagef("--plugin-describe-timeout %s: must be more than 0 and at most 1m", d)
		}
		cfg.PluginDir, cfg.PluginRescan, cfg.PluginDescribeTimeout = dir, cmd.Duration("plugin-rescan"), cmd.Duration("plugin-describe-timeout")
		// SIGHUP rereads the plugin directory, as daemons reread their
		// configuration.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		rescan := make(chan struct{})
		cfg.Rescan = rescan
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			for {
				select {
				case <-hup:
					select {
					case rescan <- struct{}{}:
					case <-ctx.Done():
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	if addr := cmd.String("metrics-listen"); addr != "" && addr != "off" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("--metrics-listen %s: %w (another agent on this host? give another address, or off)", addr, err)
		}
		cfg.MetricsListener = l
	}
	e, err := connect(ctx, cmd, cfg.PoolSize())
	if err != nil {
		if cfg.MetricsListener != nil {
			cfg.MetricsListener.Close()
		}
		return err
	}
	defer e.rdb.Close()
	cfg.Keys = e.keys
	return agent.Run(ctx, e.rdb, cfg)
}

// parseLabels parses k=v pairs (each may also be a comma-separated list).
func parseLabels(in []string) (map[string]string, error) {
	out := map[string]string{}
	for _, item := range in {
		for _, kv := range strings.Split(item, ",") {
			k, v, ok := strings.Cut(kv, "=")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if !ok || k == "" {
				return nil, usagef("--label %q: use key=value, as in --label tier=web", kv)
			}
			out[k] = v
		}
	}
	return out, nil
}

// loadAgentConfig sets, from a YAML file, every agent flag not given on
// the command line or by an environment variable.
func loadAgentConfig(cmd *cli.Command, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var settings map[string]any
	if err := yaml.Unmarshal(b, &settings); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	flags := map[string]*cli.Command{}
	for _, c := range []*cli.Command{cmd.Root(), cmd} {
		for _, f := range c.Flags {
			flags[f.Names()[0]] = c
		}
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := settings[k]
		name := k
		if k == "labels" {
			name = "label"
		}
		owner, ok := flags[name]
		if !ok || name == "config" || name == "help" {
			known := make([]string, 0, len(flags))
			for n := range flags {
				if n != "config" && n != "help" && n != "label" && n != "version" {
					known = append(known, n)
				}
			}
			sort.Strings(known)
			return fmt.Errorf("--config %s: unknown setting %q (known: labels, %s)", path, k, strings.Join(known, ", "))
		}
		if owner.IsSet(name) {
			continue // the command line or the environment wins
		}
		if k == "labels" {
			m, ok := v.(map[string]any)
			if !ok {
				return fmt.Errorf("--config %s: labels must be a mapping such as {tier: web}", path)
			}
			for _, lk := range sortedKeys(m) {
				if err := owner.Set("label", fmt.Sprintf("%s=%v", lk, m[lk])); err != nil {
					return fmt.Errorf("--config %s: labels: %w", path, err)
				}
			}
			continue
		}
		if err := owner.Set(name, fmt.Sprint(v)); err != nil {
			return fmt.Errorf("--config %s: %s: %w", path, k, err)
		}
	}
	return nil
}
