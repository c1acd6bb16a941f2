package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	if err := checkProvider(cmd); err != nil {
		return err
	}
	set, e, err := loadForCluster(ctx, cmd)
	if err != nil {
		return err
	}
	defer e.rdb.Close()
	if set.Cluster == nil {
		return errors.New("deploy needs a Cluster document (kind: Cluster)")
	}
	// A bad --provider is refused before anything is applied.
	p, err := newProvider(cmd, e)
	if err != nil {
		return err
	}
	if err := apply(ctx, cmd, e, set, 0); err != nil {
		return err
	}
	if cmd.Bool("dry-run") {
		return nil
	}
	redisDrift(ctx, e, set.Cluster.Spec.Redis, cmd.Root().Writer)
	return converge(ctx, cmd, e, set.Cluster, p, cmd.Duration("wait"))
}

// converge brings each worker group of c to its replicas through p. With
// the local provider it then waits, showing the groups come up, until every
// group has its replicas and every agent it stopped has exited, or until
// wait is over.
func converge(ctx context.Context, cmd *cli.Command, e *env, c *schema.Cluster, p provider, wait time.Duration) error {
	w := cmd.Root().Writer
	plans, err := planGroups(ctx, e, c)
	if err != nil {
		return err
	}
	for _, g := range plans {
		fmt.Fprintf(w, "worker group %s (role %s): %d of %d healthy\n", g.Group.Name, g.Group.Role, len(g.Healthy), g.Group.Replicas)
		if err := p.Converge(ctx, g); err != nil {
			return err
		}
	}
	lp, ok := p.(*localProvider)
	if !ok {
		return nil
	}
	prog := newProgress(cmd)
	defer prog.Done()
	deadline := time.Now().Add(wait)
	for {
		plans, err = planGroups(ctx, e, c)
		if err != nil {
			return err
		}
		healthy := map[string]bool{}
		missing := 0
		status := []span{{text: "waiting for workers: "}}
		for i, g := range plans {
			missing += g.Missing
			for _, h := range g.Healthy {
				healthy[h] = true
			}
			if i > 0 {
				status = append(status, span{text: ", "})
			}
			color := colorYellow
			if len(g.Healthy) == g.Group.Replicas {
				color = colorGreen
			}
			status = append(status, span{fmt.Sprintf("%s %d/%d", g.Group.Name, len(g.Healthy), g.Group.Replicas), color})
		}
		stopping := lp.stopping()
		if missing == 0 && len(stopping) == 0 {
			prog.Done()
			fmt.Fprintln(w, "converged: every worker group has its replicas")
			return nil
		}
		if len(stopping) > 0 {
			status = append(status, span{text: "; stopping "}, span{strings.Join(stopping, ", "), colorCyan})
		}
		prog.Update(status...)
		// An agent that exited before it became healthy will not become
		// healthy: say why at once rather than at the deadline.
		if name, ok := lp.exited(healthy); ok {
			return fmt.Errorf("local agent %s exited before it became healthy%s", name, lp.logHint(name))
		}
		if time.Now().After(deadline) {
			var why []string
			for _, name := range lp.started {
				if !healthy[name] {
					why = append(why, name+" is not healthy"+lp.logHint(name))
				}
			}
			for _, name := range stopping {
				why = append(why, name+" has not exited")
			}
			if len(why) == 0 {
				why = append(why, "see the logs of the agents started before, in "+lp.dir)
			}
			return fmt.Errorf("not converged after %s (--wait): %d workers missing; %s", wait, missing, strings.Join(why, "; "))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped waiting for the workers (the agents go on starting; see 'celeroot cluster status'): %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
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
// <group>-<n>, with pid and log files in dir. It remembers the agents it
// started and stopped, for converge to wait on.
type localProvider struct {
	w        io.Writer
	e        *env
	dir      string
	redis    string
	password string // passed to the agents in their environment, never in argv

	started  []string
	children map[string]chan struct{} // closed when the started agent exits
	stopped  map[string]int           // name -> pid
}

// providers are the values of --provider.
var providers = []string{"print", "local"}

// checkProvider refuses an unknown --provider before anything connects.
func checkProvider(cmd *cli.Command) error {
	if p := cmd.String("provider"); !slices.Contains(providers, p) {
		return usagef("--provider %q: use %s", p, strings.Join(providers, " or "))
	}
	return nil
}

// newProvider returns the provider named by --provider.
func newProvider(cmd *cli.Command, e *env) (provider, error) {
	if err := checkProvider(cmd); err != nil {
		return nil, err
	}
	w := cmd.Root().Writer
	if cmd.String("provider") == "print" {
		return printProvider{w: w, e: e}, nil
	}
	// local
	dir, err := stateDir(cmd, e.keys.Cluster)
	if err != nil {
		return nil, err
	}
	c, err := connection(cmd)
	if err != nil {
		return nil, err
	}
	return &localProvider{w: w, e: e, dir: dir, redis: c.url, password: c.password,
		children: map[string]chan struct{}{}, stopped: map[string]int{}}, nil
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
		name := strings.TrimSuffix(filepath.Base(m), ".pid")
		if _, err := strconv.Atoi(strings.TrimPrefix(name, group+"-")); err != nil {
			continue // another group's agent, as web-extra-1 for group web
		}
		b, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || !alive(pid) {
			os.Remove(m)
			continue
		}
		out[name] = pid
	}
	return out
}

// alive reports whether the process pid exists.
func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func (p *localProvider) Converge(_ context.Context, g groupPlan) error {
	have := p.running(g.Group.Name)
	self := os.Getenv("CELEROOT_AGENT_EXECUTABLE")
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return err
		}
	}
	// Healthy workers of the group that run elsewhere count towards its
	// replicas; local agents make up the rest.
	others := 0
	for _, h := range g.Healthy {
		if _, local := have[h]; !local {
			others++
		}
	}
	want := max(g.Group.Replicas-others, 0)
	// Start agents named <group>-1.. until the group has its replicas.
	for i := 1; len(have) < want; i++ {
		name := fmt.Sprintf("%s-%d", g.Group.Name, i)
		if _, ok := have[name]; ok {
			continue
		}
		args := []string{"--redis", p.redis, "--cluster", p.e.keys.Cluster, "agent", "--hostname", name,
			"--role", g.Group.Role, "--metrics-listen", "off", "--log-format", "json"}
		for _, k := range sortedKeys(g.Group.Selector.Labels) {
			args = append(args, "--label", k+"="+g.Group.Selector.Labels[k])
		}
		logPath := filepath.Join(p.dir, name+".log")
		logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		c := exec.Command(self, args...)
		c.Stdout, c.Stderr = logf, logf
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if p.password != "" {
			c.Env = append(os.Environ(), streams.EnvPassword+"="+p.password)
		}
		if err := c.Start(); err != nil {
			logf.Close()
			return fmt.Errorf("start agent %s: %w", name, err)
		}
		logf.Close()
		pid := c.Process.Pid
		if err := os.WriteFile(filepath.Join(p.dir, name+".pid"), []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
			return err
		}
		exited := make(chan struct{})
		go func() { // reap it if it exits while this command runs
			c.Wait()
			close(exited)
		}()
		have[name] = pid
		p.started = append(p.started, name)
		p.children[name] = exited
		fmt.Fprintf(p.w, "  started local agent %s (pid %d, log %s)\n", name, pid, logPath)
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
		p.stopped[name] = have[name]
		delete(have, name)
		fmt.Fprintf(p.w, "  stopped local agent %s (it drains, then leaves)\n", name)
	}
	return nil
}

// stopping returns the agents this provider stopped that have not exited
// yet, sorted.
func (p *localProvider) stopping() []string {
	var out []string
	for name, pid := range p.stopped {
		if ch, child := p.children[name]; child {
			select {
			case <-ch:
				continue
			default:
			}
		} else if !alive(pid) {
			continue
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// exited returns an agent this provider started that has exited without
// becoming healthy.
func (p *localProvider) exited(healthy map[string]bool) (string, bool) {
	for _, name := range p.started {
		select {
		case <-p.children[name]:
			if _, stopped := p.stopped[name]; !healthy[name] && !stopped {
				return name, true
			}
		default:
		}
	}
	return "", false
}

// logHint names an agent's log file and quotes its last line.
func (p *localProvider) logHint(name string) string {
	path := filepath.Join(p.dir, name+".log")
	b, err := os.ReadFile(path)
	if err != nil {
		return " (log " + path + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	last := lines[len(lines)-1]
	if last == "" {
		return " (log " + path + " is empty)"
	}
	if len(last) > 300 {
		last = last[:300] + "…"
	}
	return fmt.Sprintf(" (log %s ends: %s)", path, last)
}

func suffixNum(name string) int {
	i := strings.LastIndex(name, "-")
	n, _ := strconv.Atoi(name[i+1:])
	return n
}

// stopLocal stops every local agent recorded in the cluster's state
// directory, waits up to wait for their processes to exit, and forgets
// them; it returns their names and those still running at the end.
func stopLocal(dir string, wait time.Duration) (stopped, running []string) {
	pids := map[string]int{}
	matches, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	for _, m := range matches {
		if b, err := os.ReadFile(m); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && syscall.Kill(pid, syscall.SIGTERM) == nil {
				name := strings.TrimSuffix(filepath.Base(m), ".pid")
				stopped = append(stopped, name)
				pids[name] = pid
			}
		}
		os.Remove(m)
	}
	deadline := time.Now().Add(wait)
	for {
		running = running[:0]
		for _, name := range stopped {
			if alive(pids[name]) {
				running = append(running, name)
			}
		}
		if len(running) == 0 || time.Now().After(deadline) {
			return stopped, running
		}
		time.Sleep(100 * time.Millisecond)
	}
}
