package streamstest

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel-managed deployments (see [NewSentinel]).
const (
	// SentinelMasterName is the name the sentinels monitor the master under.
	SentinelMasterName = "celeroot"
	// sentinels is how many sentinels watch a deployment; two of them
	// (the quorum) must agree that the master is down.
	sentinels      = 3
	sentinelQuorum = 2
	// sentinelDownAfter is how long the master must be unreachable before a
	// sentinel considers it down (Redis' default is 30 s).
	sentinelDownAfter = 1000 * time.Millisecond
	// sentinelWaitTimeout bounds how long the harness waits for the
	// sentinels to know the whole deployment, or to agree on a new master.
	sentinelWaitTimeout = 30 * time.Second
)

var (
	sentinelOnce sync.Once
	sentinelSrv  *Server
	sentinelErr  error
)

// Sentinel returns the Sentinel-managed deployment shared by all tests of
// this binary (a master, one replica, three sentinels), starting it on first
// use. Tests must not fail it over, stop or kill its nodes; use
// [NewSentinel] for that.
func Sentinel(tb testing.TB) *Server {
	tb.Helper()
	bin := redisServer(tb)
	sentinelOnce.Do(func() {
		sentinelSrv, sentinelErr = startSentinel(bin, buildOptions([]Option{WithReplicas(1)}), true)
	})
	if sentinelErr != nil {
		tb.Fatalf("streamstest: shared sentinel deployment: %v", sentinelErr)
	}
	return sentinelSrv
}

// NewSentinel starts a private Sentinel-managed deployment for one test: a
// master, its replicas (one unless [WithReplicas] says otherwise), and three
// sentinels monitoring the master as [SentinelMasterName] with a quorum of
// two and a down-after of one second. It returns once every sentinel knows
// the master, every replica and the other sentinels, and every replica's
// link is up. [WithPassword] protects the data nodes (the sentinels
// authenticate to them; the sentinels themselves need no password);
// [WithConfig] applies to the data nodes. It is stopped and its
// directories removed when the test ends.
func NewSentinel(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	bin := redisServer(tb)
	o := buildOptions(append([]Option{WithReplicas(1)}, opts...))
	if o.replicas < 0 {
		tb.Fatalf("streamstest: NewSentinel: invalid topology: %d replicas", o.replicas)
	}
	s, err := startSentinel(bin, o, false)
	if err != nil {
		tb.Fatalf("streamstest: private sentinel deployment: %v", err)
	}
	tb.Cleanup(s.destroy)
	return s
}

// WithSentinelPassword makes the sentinels of [NewSentinel] require a
// password of their own (requirepass in sentinel mode), as
// $CELEROOT_SENTINEL_PASSWORD gives it to celeroot. [Server.Client] uses it.
func WithSentinelPassword(password string) Option {
	return func(o *options) { o.sentinelPassword = password }
}

// startSentinel launches the master, then its replicas, and once they
// replicate, the sentinels: a sentinel learns the replicas from the
// master's INFO, which it asks for on connecting and then only every 10 s.
func startSentinel(bin string, o options, shared bool) (*Server, error) {
	s := &Server{
		Name:       "sentinel",
		Sentinel:   true,
		MasterName: SentinelMasterName,
		Password:   o.password,
		shared:     shared,
		replicas:   o.replicas,

		SentinelPassword: o.sentinelPassword,
	}
	fail := func(err error) (*Server, error) {
		destroyNodes(s.nodes)
		return nil, err
	}
	master, err := launchNode(bin, false, o)
	if err != nil {
		return nil, err
	}
	s.nodes = []*node{master}
	ro := o
	ro.directives = append([]string{fmt.Sprintf("replicaof 127.0.0.1 %d", master.port)}, o.directives...)
	replicas, err := launchMany(o.replicas, func() (*node, error) { return launchNode(bin, false, ro) })
	s.nodes = append(s.nodes, replicas...)
	if err != nil {
		return fail(err)
	}
	if err := s.waitReplicas(sentinelWaitTimeout); err != nil {
		return fail(fmt.Errorf("replicas of %s: %v%s", master.addr(), err, sprintNodes(s.nodes)))
	}
	watchers, err := launchMany(sentinels, func() (*node, error) {
		return launch(func(dir string, port int) *node {
			return &node{bin: bin, port: port, dir: dir, password: o.sentinelPassword,
				sentinel: sentinelConfig(master.port, o.password, o.sentinelPassword)}
		}, false)
	})
	s.nodes = append(s.nodes, watchers...)
	if err != nil {
		return fail(err)
	}
	for _, n := range s.dataNodes() {
		s.Addrs = append(s.Addrs, n.addr())
	}
	for _, n := range s.sentinelNodes() {
		s.SentinelAddrs = append(s.SentinelAddrs, n.addr())
	}
	s.URL = buildURL("redis+sentinel", o.password, s.SentinelAddrs) + "/" + SentinelMasterName
	if err := s.waitSentinels(sentinelWaitTimeout, "", true); err != nil {
		return fail(fmt.Errorf("sentinel deployment %v: %v%s", s.Addrs, err, sprintNodes(s.nodes)))
	}
	register(s)
	return s, nil
}

// launchMany starts n nodes at once; it returns those that started, and
// the errors of those that did not.
func launchMany(n int, start func() (*node, error)) ([]*node, error) {
	nodes := make([]*node, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = start()
		}()
	}
	wg.Wait()
	started := nodes[:0]
	for _, nd := range nodes {
		if nd != nil {
			started = append(started, nd)
		}
	}
	return started, errors.Join(errs...)
}

// waitReplicas waits until every replica's link to the master is up.
func (s *Server) waitReplicas(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, n := range s.nodes[1:] {
		for {
			ctx, cancel := withTimeout(2 * time.Second)
			c := s.adminClient(n.addr())
			repl, err := c.Info(ctx, "replication").Result()
			c.Close()
			cancel()
			if err == nil && strings.Contains(repl, "master_link_status:up") {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("replica %s: link to the master not up after %v (%v)", n.addr(), timeout, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// sentinelConfig is the configuration of a sentinel watching the master on
// masterPort.
func sentinelConfig(masterPort int, password, sentinelPassword string) []string {
	m := SentinelMasterName
	c := []string{
		fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", m, masterPort, sentinelQuorum),
		fmt.Sprintf("sentinel down-after-milliseconds %s %d", m, sentinelDownAfter.Milliseconds()),
		fmt.Sprintf("sentinel failover-timeout %s 10000", m),
		fmt.Sprintf("sentinel parallel-syncs %s 1", m),
	}
	if password != "" {
		c = append(c, fmt.Sprintf("sentinel auth-pass %s %s", m, confQuote(password)))
	}
	if sentinelPassword != "" {
		// The sentinels talk to each other with it too.
		c = append(c, "requirepass "+confQuote(sentinelPassword), "sentinel sentinel-pass "+confQuote(sentinelPassword))
	}
	return c
}

// dataNodes returns the master and replicas, sentinelNodes the sentinels.
func (s *Server) dataNodes() []*node     { return s.nodes[:1+s.replicas] }
func (s *Server) sentinelNodes() []*node { return s.nodes[1+s.replicas:] }

func (s *Server) sentinelClient(n *node) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{
		Addr: n.addr(), Password: s.SentinelPassword, DialTimeout: time.Second, ReadTimeout: 2 * time.Second,
		WriteTimeout: 2 * time.Second, MaxRetries: -1, PoolSize: 2, DisableIdentity: true,
	})
}

// MasterAddr returns the address of the master as the first running
// sentinel names it. Only for Sentinel-managed deployments.
func (s *Server) MasterAddr(tb testing.TB) string {
	tb.Helper()
	s.mustSentinel(tb, "MasterAddr")
	ctx, cancel := withTimeout(5 * time.Second)
	defer cancel()
	for _, n := range s.sentinelNodes() {
		if !n.isRunning() {
			continue
		}
		c := s.sentinelClient(n)
		addr, err := c.GetMasterAddrByName(ctx, s.MasterName).Result()
		c.Close()
		if err != nil {
			tb.Fatalf("streamstest: SENTINEL GET-MASTER-ADDR-BY-NAME on %s: %v", n.addr(), err)
		}
		return net.JoinHostPort(addr[0], addr[1])
	}
	tb.Fatalf("streamstest: no sentinel is running")
	return ""
}

// Failover makes the sentinels promote a replica, as an operator does with
// SENTINEL FAILOVER before maintenance on the master, and waits until every
// sentinel names the new master, it serves as master, and every other
// running data node (the old master included) replicates from it with its
// link up. It returns the new master's address. Only for private
// Sentinel-managed deployments with a replica.
func (s *Server) Failover(tb testing.TB) string {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mustSentinel(tb, "Failover")
	s.mutable(tb, "Failover")
	if s.replicas == 0 {
		tb.Fatalf("streamstest: Failover: the deployment has no replica to promote")
	}
	old := s.MasterAddr(tb)
	c := s.sentinelClient(s.sentinelNodes()[0])
	defer c.Close()
	deadline := time.Now().Add(sentinelWaitTimeout)
	for {
		ctx, cancel := withTimeout(5 * time.Second)
		err := c.Failover(ctx, s.MasterName).Err()
		cancel()
		if err == nil {
			break
		}
		// NOGOODSLAVE: the sentinel has not yet seen a replica fit to be
		// promoted (its INFO is refreshed every 10 s at first); INPROG: a
		// failover is already running.
		if msg := err.Error(); !strings.Contains(msg, "NOGOODSLAVE") && !strings.Contains(msg, "INPROG") || time.Now().After(deadline) {
			tb.Fatalf("streamstest: SENTINEL FAILOVER: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := s.waitSentinels(sentinelWaitTimeout, old, false); err != nil {
		tb.Fatalf("streamstest: Failover: %v%s", err, sprintNodes(s.nodes))
	}
	return s.MasterAddr(tb)
}

// WaitMaster waits until the sentinels agree on a master other than old
// (after old was killed or stopped, say), it serves as master and every
// other running data node replicates from it. It returns the new master's
// address. Only for Sentinel-managed deployments.
func (s *Server) WaitMaster(tb testing.TB, old string) string {
	tb.Helper()
	s.mustSentinel(tb, "WaitMaster")
	if err := s.waitSentinels(sentinelWaitTimeout, old, false); err != nil {
		tb.Fatalf("streamstest: WaitMaster: %v%s", err, sprintNodes(s.nodes))
	}
	return s.MasterAddr(tb)
}

func (s *Server) mustSentinel(tb testing.TB, op string) {
	tb.Helper()
	if !s.Sentinel {
		tb.Fatalf("streamstest: %s: %s is not a Sentinel-managed deployment", op, s.Name)
	}
}

// waitSentinels waits until the deployment is whole: see sentinelProblem.
func (s *Server) waitSentinels(timeout time.Duration, notMaster string, full bool) error {
	deadline := time.Now().Add(timeout)
	for {
		why := s.sentinelProblem(notMaster, full)
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sentinels not settled after %v: %s", timeout, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sentinelProblem returns why the deployment is not settled, or "" if it
// is: every running sentinel names the same master (not notMaster, if
// given), sees it up and knows the other running sentinels; the master has
// the master role and every other running data node replicates from it
// with its link up. With full set (the deployment as it starts), every
// sentinel must also see every running replica up, so that a failover finds
// one to promote. After a failover that view lags: a sentinel asks a
// replica for its INFO only every 10 s.
func (s *Server) sentinelProblem(notMaster string, full bool) string {
	ctx, cancel := withTimeout(5 * time.Second)
	defer cancel()
	var master string
	liveSentinels := 0
	for _, n := range s.sentinelNodes() {
		if n.isRunning() {
			liveSentinels++
		}
	}
	liveData := 0
	for _, n := range s.dataNodes() {
		if n.isRunning() {
			liveData++
		}
	}
	for _, n := range s.sentinelNodes() {
		if !n.isRunning() {
			continue
		}
		why := func() string {
			c := s.sentinelClient(n)
			defer c.Close()
			m, err := c.Master(ctx, s.MasterName).Result()
			if err != nil {
				return fmt.Sprintf("SENTINEL MASTER on %s: %v", n.addr(), err)
			}
			addr := net.JoinHostPort(m["ip"], m["port"])
			switch {
			case master == "":
				master = addr
			case addr != master:
				return fmt.Sprintf("sentinels disagree on the master: %s and %s", master, addr)
			}
			if addr == notMaster {
				return fmt.Sprintf("sentinel %s still names %s as master", n.addr(), addr)
			}
			if m["flags"] != "master" {
				return fmt.Sprintf("sentinel %s sees master %s as %q", n.addr(), addr, m["flags"])
			}
			if got, want := m["num-other-sentinels"], strconv.Itoa(liveSentinels-1); got != want {
				return fmt.Sprintf("sentinel %s knows %s other sentinels, want %s", n.addr(), got, want)
			}
			if !full {
				return ""
			}
			replicas, err := c.Replicas(ctx, s.MasterName).Result()
			if err != nil {
				return fmt.Sprintf("SENTINEL REPLICAS on %s: %v", n.addr(), err)
			}
			up := 0
			for _, r := range replicas {
				if r["flags"] == "slave" && r["master-link-status"] == "ok" {
					up++
				}
			}
			if up != liveData-1 {
				return fmt.Sprintf("sentinel %s sees %d replicas up, want %d", n.addr(), up, liveData-1)
			}
			return ""
		}()
		if why != "" {
			return why
		}
	}
	if liveSentinels == 0 {
		return "no sentinel is running"
	}
	for _, n := range s.dataNodes() {
		if !n.isRunning() {
			continue
		}
		c := s.adminClient(n.addr())
		repl, err := c.Info(ctx, "replication").Result()
		c.Close()
		if err != nil {
			return fmt.Sprintf("INFO replication on %s: %v", n.addr(), err)
		}
		if n.addr() == master {
			if !strings.Contains(repl, "role:master") {
				return fmt.Sprintf("%s is named master but is not one yet", master)
			}
			continue
		}
		_, port, _ := net.SplitHostPort(master)
		if !strings.Contains(repl, "role:slave") || !strings.Contains(repl, "master_port:"+port+"\r\n") ||
			!strings.Contains(repl, "master_link_status:up") {
			return fmt.Sprintf("%s does not replicate from %s yet", n.addr(), master)
		}
	}
	return ""
}
