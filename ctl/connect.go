package ctl

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/celeroot/celeroot/streams"
	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v3"
)

// Defaults of the global flags.
const (
	DefaultRedisURL = "redis://127.0.0.1:6379"
	DefaultCluster  = "default"
	// connectTimeout bounds how long a command waits for Redis to answer.
	connectTimeout = 5 * time.Second
)

func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "redis", Usage: "Redis URL: redis://host:port, rediss://..., redis+cluster://h1:p1,h2:p2, redis+sentinel://s1:p1/master; the password may come from $" + streams.EnvPassword,
			Value: DefaultRedisURL, Sources: cli.EnvVars("CELEROOT_REDIS_URL")},
		&cli.StringFlag{Name: "cluster", Usage: "name of the celeroot cluster (key namespace) in that Redis",
			Value: DefaultCluster, Sources: cli.EnvVars("CELEROOT_CLUSTER")},
		&cli.StringFlag{Name: "context", Usage: "named connection from the contexts file (see 'celeroot context')", Sources: cli.EnvVars("CELEROOT_CONTEXT")},
		&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", Value: "info", Sources: cli.EnvVars("CELEROOT_LOG_LEVEL")},
		&cli.StringFlag{Name: "log-format", Usage: "text, json, or auto (text on a terminal, JSON otherwise)", Value: "auto", Sources: cli.EnvVars("CELEROOT_LOG_FORMAT")},
		&cli.BoolFlag{Name: "no-color", Usage: "no colours, even on a terminal (so does $NO_COLOR set to anything)"},
	}
}

// env is what a command needs to talk to a cluster.
type env struct {
	rdb  redis.UniversalClient
	keys streams.Keys
	url  string
}

// connect opens the Redis client named by the global flags. Callers close
// env.rdb.
func connect(ctx context.Context, cmd *cli.Command, poolSize int) (*env, error) {
	c, err := connection(cmd)
	if err != nil {
		return nil, err
	}
	cluster := c.cluster
	if err := streams.ValidateClusterName(cluster); err != nil {
		return nil, usagef("--cluster: %v", err)
	}
	cfg, err := c.parse()
	if err != nil {
		return nil, err
	}
	rdb, err := streams.Connect(ctx, cfg, poolSize, connectTimeout)
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

// newLogger builds the slog logger of the --log-* flags, writing to w.
func newLogger(cmd *cli.Command, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cmd.String("log-level"))); err != nil {
		return nil, usagef("--log-level %q: use debug, info, warn or error", cmd.String("log-level"))
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f := strings.ToLower(cmd.String("log-format")); f {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "auto":
		if isTerminal(w) {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, usagef("--log-format %q: use text, json or auto", f)
	}
}
