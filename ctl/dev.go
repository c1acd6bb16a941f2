package ctl

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/examples"
	"github.com/celeroot/celeroot/schema"
	"github.com/celeroot/celeroot/streams"
	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v3"
)

// devWorkers are the local agents celeroot dev starts.
var devWorkers = []struct {
	host, role string
	labels     map[string]string
}{
	{"web1", "webserver", map[string]string{"tier": "web"}},
	{"web2", "webserver", map[string]string{"tier": "web"}},
	{"db1", "database", map[string]string{"tier": "data"}},
}

// DefaultDevPort is the port of the dev Redis.
const DefaultDevPort = 6390

func devCommand() *cli.Command {
	return &cli.Command{
		Name:  "dev",
		Usage: "run a whole cluster on this machine: a Redis and three agents",
		Description: `Starts a Redis (redis-server from PATH, with its data in --data-dir; or,
when none is installed, an embedded in-memory Redis-compatible server) and
three agents: web1 and web2 (role webserver, tier=web) and db1 (role
database, tier=data). Ctrl-C stops everything.

Examples:
  celeroot dev
  celeroot dev --port 0 --embedded`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "port", Usage: "port of the dev Redis on 127.0.0.1 (0: any free port)", Value: DefaultDevPort},
			&cli.StringFlag{Name: "data-dir", Usage: "directory for the Redis data (default: $XDG_DATA_HOME/celeroot/dev)"},
			&cli.BoolFlag{Name: "embedded", Usage: "use the embedded in-memory server even if redis-server is installed"},
			&cli.StringFlag{Name: "plugin-dir", Usage: "directory of task plugins for the agents, such as examples/plugins (default: none)"},
		},
		Action: runDev,
	}
}

func runDev(ctx context.Context, cmd *cli.Command) error {
	port := int(cmd.Int("port"))
	if port < 0 || port > 65535 {
		return usagef("--port %d: must be between 0 and 65535", port)
	}
	out, errw := cmd.Root().Writer, cmd.Root().ErrWriter
	logger, err := newLogger(cmd, errw)
	if err != nil {
		return err
	}
	// The example configuration; its cluster name unless --cluster is given.
	set, err := exampleSet()
	if err != nil {
		return err
	}
	cluster := cmd.String("cluster")
	if !cmd.IsSet("cluster") {
		cluster = set.Cluster.Metadata.Name
	}
	if err := streams.ValidateClusterName(cluster); err != nil {
		return usagef("--cluster: %v", err)
	}

	srv, err := startDevRedis(cmd, port)
	if err != nil {
		return err
	}
	defer srv.stop()

	cfg, err := streams.ParseURL(srv.url)
	if err != nil {
		return err
	}
	rdb, err := streams.Connect(ctx, cfg, 64, connectTimeout)
	if err != nil {
		return err
	}
	defer rdb.Close()
	keys, err := streams.LoadKeys(ctx, rdb, cluster)
	if err != nil {
		return err
	}
	rev, err := applyExample(ctx, rdb, keys, set)
	if err != nil {
		return err
	}

	actx, stopAgents := context.WithCancel(ctx)
	defer stopAgents()
	var wg sync.WaitGroup
	errs := make(chan error, len(devWorkers))
	for i, w := range devWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := agent.Run(actx, rdb, agent.Config{
				Keys: keys, Hostname: w.host, Role: w.role, Labels: w.labels, Version: Version,
				// Two projectors, so either can die without the views stalling.
				Projector:       i < 2,
				Janitor:         true,
				ShutdownTimeout: 5 * time.Second,
				PluginDir:       cmd.String("plugin-dir"),
				Logger:          logger,
			})
			if err != nil {
				errs <- fmt.Errorf("agent %s: %w", w.host, err)
			}
		}()
	}

	self := "celeroot"
	if _, err := exec.LookPath("celeroot"); err != nil {
		self = "go run ./cmd/celeroot"
	}
	fmt.Fprintf(out, `celeroot dev is running.

  Redis:    %s  (%s)
  Cluster:  %s (examples/cluster.yaml and examples/catalog/ applied: revision %d)
  Workers:  web1, web2 (role webserver, tier=web), db1 (role database, tier=data)

Try from another terminal:

  export CELEROOT_REDIS_URL=%s CELEROOT_CLUSTER=%s
  %s workers list
  %s task run command --target web1 --wait -- uname -a
  %s task run command --target role:webserver --wait -- hostname
  %s task run check-security-updates --target all --wait
  %s task status <task-id>
  %s task logs <task-id>
  %s config history

Press Ctrl-C to stop.
`, srv.url, srv.desc, cluster, rev, srv.url, cluster, self, self, self, self, self, self, self)

	select {
	case <-ctx.Done():
		fmt.Fprintln(out, "\nStopping: agents drain, then Redis stops.")
	case err := <-errs:
		stopAgents()
		wg.Wait()
		return err
	case err := <-srv.exited:
		stopAgents()
		wg.Wait()
		return fmt.Errorf("dev Redis exited: %w", err)
	}
	stopAgents()
	wg.Wait()
	fmt.Fprintln(out, "Stopped.")
	return nil
}

// devRedis is the Redis celeroot dev runs.
type devRedis struct {
	url    string
	desc   string
	exited chan error
	stop   func()
}

func startDevRedis(cmd *cli.Command, port int) (*devRedis, error) {
	bin, lookErr := exec.LookPath("redis-server")
	if cmd.Bool("embedded") || lookErr != nil {
		return startEmbedded(port)
	}
	dir := cmd.String("data-dir")
	if dir == "" {
		base := os.Getenv("XDG_DATA_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return nil, fmt.Errorf("no --data-dir given and no home directory: %w", err)
			}
			base = filepath.Join(home, ".local", "share")
		}
		dir = filepath.Join(base, "celeroot", "dev")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	if port == 0 {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		port = p
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("port %d is in use (another celeroot dev?); stop it or pass --port 0 for a free port", port)
	}
	logPath := filepath.Join(dir, "redis.log")
	c := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
		"--logfile", logPath)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- c.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			break
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("redis-server exited at start (%v); its log %s ends with:\n%s", err, logPath, tail(logPath, 5))
		default:
		}
		if time.Now().After(deadline) {
			_ = c.Process.Kill()
			return nil, fmt.Errorf("redis-server did not listen on %s within 10s; see %s", addr, logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
	version := "redis-server"
	if v, err := exec.Command(bin, "--version").Output(); err == nil {
		version = strings.TrimSpace(string(v))
		if f := strings.Fields(version); len(f) >= 3 {
			version = "redis-server " + strings.TrimPrefix(f[2], "v=")
		}
	}
	return &devRedis{
		url:    "redis://" + addr,
		desc:   fmt.Sprintf("%s, data in %s", version, dir),
		exited: exited,
		stop: func() {
			_ = c.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				_ = c.Process.Kill()
			}
		},
	}, nil
}

func startEmbedded(port int) (*devRedis, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr(net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err != nil {
		return nil, fmt.Errorf("start the embedded Redis on port %d: %w (pass --port 0 for a free port)", port, err)
	}
	// The embedded server expires keys only when told time passed.
	stopTick := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopTick:
				return
			case <-t.C:
				m.FastForward(time.Second)
			}
		}
	}()
	return &devRedis{
		url:    "redis://" + m.Addr(),
		desc:   "embedded in-memory server: data is lost when dev stops; install redis-server for a persistent one",
		exited: make(chan error),
		stop: func() {
			close(stopTick)
			m.Close()
		},
	}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log)"
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// exampleSet loads and validates the embedded example configuration.
func exampleSet() (*schema.Set, error) {
	var set *schema.Set
	var errs []*schema.Error
	err := fs.WalkDir(examples.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := examples.FS.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		s, e := schema.Load("examples/"+path, f)
		errs = append(errs, e...)
		if set == nil {
			set = s
		} else if s != nil {
			errs = append(errs, set.Merge(s)...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(errs) == 0 {
		v, err := schema.NewValidator()
		if err != nil {
			return nil, err
		}
		errs = v.Validate(set, builtinCatalog())
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("the example configuration is invalid: %w", errs[0])
	}
	return set, nil
}

// applyExample applies the example configuration unless it is in force.
func applyExample(ctx context.Context, rdb redis.UniversalClient, keys streams.Keys, set *schema.Set) (int64, error) {
	doc, hash, err := set.Bundle()
	if err != nil {
		return 0, err
	}
	log := streams.NewLog(rdb, keys)
	rev, cur, err := log.ConfigHead(ctx)
	if err != nil || cur == hash {
		return rev, err
	}
	res, err := log.ApplyConfig(ctx, events.Source{Cluster: keys.Cluster, Actor: "dev"}.New(events.ConfigApplied{
		Revision: rev + 1, Document: string(doc), Hash: hash, Message: "celeroot dev: the example configuration"}))
	if err != nil {
		return 0, err
	}
	return res.Revision, nil
}
