package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/schema"
	"github.com/celeroot/celeroot/streams"
	"github.com/urfave/cli/v3"
)

// provider brings workers into being, or tells how to.
type provider interface {
	// Converge acts on what is missing and what is extra for one group.
	Converge(ctx context.Context, g groupPlan) error
}

// groupPlan is the state of one worker group against its desired replicas.
type groupPlan struct {
	Group   schema.WorkerGroup
	Healthy []string // live workers of the group
	Missing int      // desired - healthy, if positive
	Extra   int      // healthy - desired, if positive
}

func deployFlags() []cli.Flag {
	return []cli.Flag{
		fileFlag(),
		&cli.StringFlag{Name: "provider", Value: "print", Usage: "how workers come to be: print (the join command for each missing worker) or local (start and stop agents on this machine)"},
		&cli.StringFlag{Name: "state-dir", Usage: "where the local provider keeps its agents' pid and log files (default: $XDG_STATE_HOME/celeroot/<cluster>)"},
		&cli.DurationFlag{Name: "wait", Value: 30 * time.Second, Usage: "how long to wait for started agents to become healthy"},
		&cli.IntFlag{Name: "expect-revision", Value: -1, Usage: "refuse unless the applied revision is this one"},
		&cli.StringFlag{Name: "message", Aliases: []string{"m"}, Usage: "why, kept with the revision"},
		&cli.BoolFlag{Name: "dry-run", Usage: "show what would change, apply nothing"},
	}
}

func clusterDeploy(ctx context.Context, cmd *cli.Command) error {
	set, e, err := loadForCluster(ctx, cmd)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	if set.Cluster == nil {
		return errors.New("deploy needs a Cluster document (kind: Cluster)")
	}
	if err := apply(ctx, cmd, e, set, 0); err != nil {
		return err
	}
	if cmd.Bool("dry-run") {
		return nil
	}
	w := cmd.Root().Writer
	redisDrift(ctx, e, set.Cluster.Spec.Redis, w)
	var p provider
	switch cmd.String("provider") {
	case "print":
		p = printProvider{w: w, e: e}
	case "local":
		dir, err := stateDir(cmd, e.keys.Cluster)
		if err != nil {
			return err
		}
		c, err := connection(cmd)
		if err != nil {
			return err
		}
		p = &localProvider{w: w, e: e, dir: dir, redis: c.url}
	default:
		return usagef("--provider %q: use print or local", cmd.String("provider"))
	}
	plans, err := planGroups(ctx, e, set.Cluster)
	if err != nil {
		return err
	}
	for _, g := range plans {
		fmt.Fprintf(w, "worker group %s (role %s): %d of %d healthy\n", g.Group.Name, g.Group.Role, len(g.Healthy), g.Group.Replicas)
		if err := p.Converge(ctx, g); err != nil {
			return err
		}
	}
	if cmd.String("provider") != "local" {
		return nil
	}
	// Wait for the local agents to show up healthy.
	deadline := time.Now().Add(cmd.Duration("wait"))
	for {
		plans, err = planGroups(ctx, e, set.Cluster)
		if err != nil {
			return err
		}
		missing := 0
		for _, g := range plans {
			missing += g.Missing
		}
		if missing == 0 {
			fmt.Fprintln(w, "converged: every worker group has its replicas")
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%d workers still missing after %s (see the agent logs in the state directory)", missing, cmd.Duration("wait"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// planGroups compares each group's desired replicas with its live workers.
func planGroups(ctx context.Context, e *env, c *schema.Cluster) ([]groupPlan, error) {
	workers, err := projections.NewStore(e.rdb, e.keys).Workers(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []groupPlan
	for _, g := range c.Spec.Workers {
		p := groupPlan{Group: g}
		for _, wk := range workers {
			if wk.State(now) != projections.WorkerHealthy || wk.Removed {
				continue
			}
			for _, mg := range c.GroupsOf(wk.Role, wk.Labels) {
				if mg.Name == g.Name {
					p.Healthy = append(p.Healthy, wk.Hostname)
				}
			}
		}
		sort.Strings(p.Healthy)
		p.Missing = max(g.Replicas-len(p.Healthy), 0)
		p.Extra = max(len(p.Healthy)-g.Replicas, 0)
		out = append(out, p)
	}
	return out, nil
}

// redisDrift reports where the connected Redis differs from spec.redis.
func redisDrift(ctx context.Context, e *env, want schema.Redis, w io.Writer) {
	info, err := streams.Info(ctx, e.rdb)
	if err != nil {
		fmt.Fprintf(w, "redis: cannot check against spec.redis: %v\n", err)
		return
	}
	var drift []string
	if want.Persistence && !info.AOF {
		drift = append(drift, "persistence is off: set appendonly yes (and appendfsync everysec or always) in redis.conf")
	}
	if want.Memory != "" {
		if bytes, err := want.Memory.Bytes(); err == nil {
			have := info.MaxMemoryBytes
			if have == 0 {
				drift = append(drift, fmt.Sprintf("no memory limit: set maxmemory %d (%s)", bytes, want.Memory))
			} else if have != bytes {
				drift = append(drift, fmt.Sprintf("maxmemory is %d, spec.redis.memory is %s (%d): set maxmemory %d", have, want.Memory, bytes, bytes))
			}
		}
	}
	if want.Replicas > 0 && info.Mode != "cluster" && info.Replicas != want.Replicas {
		drift = append(drift, fmt.Sprintf("%d replicas connected, spec.redis.replicas is %d: add replicas with replicaof <this host> <port>", info.Replicas, want.Replicas))
	}
	if len(drift) == 0 {
		fmt.Fprintf(w, "redis: matches spec.redis (%s %s)\n", info.Version, info.Mode)
		return
	}
	for _, d := range drift {
		fmt.Fprintf(w, "redis drift: %s\n", d)
	}
}

// printProvider tells the operator what to start.
type printProvider struct {
	w io.Writer
	e *env
}

func (p printProvider) Converge(_ context.Context, g groupPlan) error {
	for i := range g.Missing {
		args := []string{"celeroot", "agent", "--redis", shellQuote(p.e.url), "--cluster", p.e.keys.Cluster,
			"--hostname", "<host>", "--role", g.Group.Role}
		for _, k := range sortedKeys(g.Group.Selector.Labels) {
			args = append(args, "--label", shellQuote(k+"="+g.Group.Selector.Labels[k]))
		}
		fmt.Fprintf(p.w, "  missing worker %d of %d; on its host run:\n    %s\n", len(g.Healthy)+i+1, g.Group.Replicas, strings.Join(args, " "))
	}
	if g.Extra > 0 {
		fmt.Fprintf(p.w, "  %d more than desired; retire some with: celeroot workers remove <host>\n", g.Extra)
	}
	return nil
}

// localProvider runs agents as processes on this machine, named
// <group>-<n>, with pid and log files in dir.
type localProvider struct {
	w     io.Writer
	e     *env
	dir   string
	redis string
}

func stateDir(cmd *cli.Command, cluster string) (string, error) {
	dir := cmd.String("state-dir")
	if dir == "" {
		base := os.Getenv("XDG_STATE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("no --state-dir and no home directory: %w", err)
			}
			base = filepath.Join(home, ".local", "state")
		}
		dir = filepath.Join(base, "celeroot", cluster)
	}
	return dir, os.MkdirAll(dir, 0o700)
}

// running returns the local agents of a group that are alive, by name.
func (p *localProvider) running(group string) map[string]int {
	out := map[string]int{}
	matches, _ := filepath.Glob(filepath.Join(p.dir, group+"-*.pid"))
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || syscall.Kill(pid, 0) != nil {
			os.Remove(m)
			continue
		}
		out[strings.TrimSuffix(filepath.Base(m), ".pid")] = pid
	}
	return out
}

func (p *localProvider) Converge(_ context.Context, g groupPlan) error {
	have := p.running(g.Group.Name)
	self := os.Getenv("CELEROOT_AGENT_EXECUTABLE")
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return err
		}
	}
	// Start agents named <group>-1.. until the group has its replicas.
	want := g.Group.Replicas
	for i := 1; len(have) < want && i <= want+len(have)+100; i++ {
		name := fmt.Sprintf("%s-%d", g.Group.Name, i)
		if _, ok := have[name]; ok {
			continue
		}
		args := []string{"--redis", p.redis, "--cluster", p.e.keys.Cluster, "agent", "--hostname", name,
			"--role", g.Group.Role, "--metrics-listen", "off", "--log-format", "json"}
		for _, k := range sortedKeys(g.Group.Selector.Labels) {
			args = append(args, "--label", k+"="+g.Group.Selector.Labels[k])
		}
		logf, err := os.OpenFile(filepath.Join(p.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		c := exec.Command(self, args...)
		c.Stdout, c.Stderr = logf, logf
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := c.Start(); err != nil {
			logf.Close()
			return fmt.Errorf("start agent %s: %w", name, err)
		}
		logf.Close()
		pid := c.Process.Pid
		if err := os.WriteFile(filepath.Join(p.dir, name+".pid"), []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
			return err
		}
		go c.Wait() // reap it if it exits while this command runs
		have[name] = pid
		fmt.Fprintf(p.w, "  started local agent %s (pid %d, log %s)\n", name, pid, filepath.Join(p.dir, name+".log"))
	}
	// Stop the highest-numbered local agents beyond the replicas.
	names := make([]string, 0, len(have))
	for n := range have {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return suffixNum(names[i]) > suffixNum(names[j]) })
	for i := 0; len(have) > want && i < len(names); i++ {
		name := names[i]
		_ = syscall.Kill(have[name], syscall.SIGTERM)
		os.Remove(filepath.Join(p.dir, name+".pid"))
		delete(have, name)
		fmt.Fprintf(p.w, "  stopped local agent %s (it drains, then leaves)\n", name)
	}
	return nil
}

func suffixNum(name string) int {
	i := strings.LastIndex(name, "-")
	n, _ := strconv.Atoi(name[i+1:])
	return n
}

// stopLocal stops every local agent recorded in the cluster's state
// directory and forgets them; it returns their names.
func stopLocal(dir string) []string {
	var stopped []string
	matches, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	for _, m := range matches {
		if b, err := os.ReadFile(m); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && syscall.Kill(pid, syscall.SIGTERM) == nil {
				stopped = append(stopped, strings.TrimSuffix(filepath.Base(m), ".pid"))
			}
		}
		os.Remove(m)
	}
	return stopped
}

// convergeLocal brings every group to its replicas with the local provider.
func convergeLocal(ctx context.Context, cmd *cli.Command, e *env) error {
	_, _, b, err := applied(ctx, e)
	if err != nil || b == nil || b.Cluster == nil {
		return err
	}
	dir, err := stateDir(cmd, e.keys.Cluster)
	if err != nil {
		return err
	}
	c, err := connection(cmd)
	if err != nil {
		return err
	}
	p := &localProvider{w: cmd.Root().Writer, e: e, dir: dir, redis: c.url}
	plans, err := planGroups(ctx, e, b.Cluster)
	if err != nil {
		return err
	}
	for _, g := range plans {
		if err := p.Converge(ctx, g); err != nil {
			return err
		}
	}
	return nil
}
