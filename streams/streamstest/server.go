package streamstest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/celeroot/celeroot/streams"
)

// Server is a running Redis deployment: one node, or the nodes of a Redis
// Cluster. Its fields describe it and must not be modified.
type Server struct {
	// Name is a short label for subtests: "single", "cluster" or
	// "sentinel".
	Name string
	// URL addresses the deployment: "redis://127.0.0.1:PORT" for a single
	// node, "redis+cluster://127.0.0.1:P1,127.0.0.1:P2,..." for a cluster
	// (every node, masters first), "redis+sentinel://127.0.0.1:S1,...
	// /MASTER" for a Sentinel-managed deployment (every sentinel). A
	// password, if any, is in the userinfo: "redis://:PASSWORD@127.0.0.1:PORT".
	URL string
	// Addrs lists the "127.0.0.1:PORT" address of every data node; for a
	// cluster the initial masters come first, then their replicas; for a
	// Sentinel-managed deployment the initial master, then its replicas.
	Addrs []string
	// Cluster is true for a Redis Cluster.
	Cluster bool
	// Sentinel is true for a Sentinel-managed deployment (see
	// [NewSentinel]); SentinelAddrs then lists its sentinels and
	// MasterName the name they monitor the master under.
	Sentinel      bool
	SentinelAddrs []string
	MasterName    string
	// SentinelPassword is the sentinels' own requirepass (see
	// [WithSentinelPassword]), empty if none. It is not in URL.
	SentinelPassword string
	// Password is the requirepass password, empty if none.
	Password string

	shared   bool
	masters  int
	replicas int // per master

	mu        sync.Mutex // serialises Start/Stop/Kill and destroy
	nodes     []*node
	destroyed bool
}

var (
	registryMu sync.Mutex
	registry   = map[*Server]bool{}
)

func register(s *Server) {
	registryMu.Lock()
	registry[s] = true
	registryMu.Unlock()
}

// stopAll destroys every server still registered.
func stopAll() {
	registryMu.Lock()
	all := make([]*Server, 0, len(registry))
	for s := range registry {
		all = append(all, s)
	}
	registryMu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.destroy()
		}()
	}
	wg.Wait()
}

// destroy kills every node and removes its directory. It is idempotent.
func (s *Server) destroy() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.destroyed {
		return
	}
	s.destroyed = true
	destroyNodes(s.nodes)
	registryMu.Lock()
	delete(registry, s)
	registryMu.Unlock()
}

func destroyNodes(nodes []*node) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.kill()
			os.RemoveAll(n.dir)
		}()
	}
	wg.Wait()
}

func startSingle(bin, name string, o options, shared bool) (*Server, error) {
	n, err := launchNode(bin, false, o)
	if err != nil {
		return nil, err
	}
	s := &Server{
		Name:     name,
		Addrs:    []string{n.addr()},
		Password: o.password,
		shared:   shared,
		nodes:    []*node{n},
	}
	s.URL = buildURL("redis", o.password, s.Addrs)
	register(s)
	return s, nil
}

func buildURL(scheme, password string, addrs []string) string {
	u := url.URL{Scheme: scheme, Host: strings.Join(addrs, ",")}
	if password != "" {
		u.User = url.UserPassword("", password)
	}
	return u.String()
}

// Client returns a client connected to the server, closed when tb ends: a
// *redis.ClusterClient over all Addrs for a cluster, a failover client that
// asks the sentinels for the master for a Sentinel-managed deployment, a
// *redis.Client otherwise.
func (s *Server) Client(tb testing.TB) redis.UniversalClient {
	tb.Helper()
	var c redis.UniversalClient
	switch {
	case s.Cluster:
		c = streams.NewClusterClient(&redis.ClusterOptions{Addrs: s.Addrs, Password: s.Password})
	case s.Sentinel:
		c = redis.NewFailoverClient(&redis.FailoverOptions{MasterName: s.MasterName, SentinelAddrs: s.SentinelAddrs,
			Password: s.Password, SentinelPassword: s.SentinelPassword})
	default:
		c = redis.NewClient(&redis.Options{Addr: s.Addrs[0], Password: s.Password})
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Addr returns the address of the first node: the single node's address.
func (s *Server) Addr() string { return s.Addrs[0] }

// Dir returns the data directory of the node at addr (the AOF lives in its
// appendonlydir subdirectory). It fails tb if addr is not a node of s.
func (s *Server) Dir(tb testing.TB, addr string) string {
	tb.Helper()
	return s.node(tb, addr).dir
}

func (s *Server) mutable(tb testing.TB, op string) {
	tb.Helper()
	if s.shared {
		tb.Fatalf("streamstest: %s on the shared %s server would disturb other tests; use NewSingle or NewCluster", op, s.Name)
	}
	if s.destroyed {
		tb.Fatalf("streamstest: %s on a server that has been torn down", op)
	}
}

func (s *Server) node(tb testing.TB, addr string) *node {
	tb.Helper()
	for _, n := range s.nodes {
		if n.addr() == addr {
			return n
		}
	}
	tb.Fatalf("streamstest: %s is not a node of this server (%v)", addr, s.Addrs)
	return nil
}

// Stop shuts every node down gracefully (SIGTERM: Redis flushes and fsyncs
// its AOF first). Data and ports are kept for [Server.Start]. Only for
// private servers.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mutable(tb, "Stop")
	if err := eachNode(s.nodes, (*node).stop); err != nil {
		tb.Fatalf("streamstest: Stop: %v", err)
	}
}

// Kill ends every node with SIGKILL, as a crash or power loss would: writes
// not yet fsynced to the AOF are lost. Only for private servers.
func (s *Server) Kill(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mutable(tb, "Kill")
	eachNode(s.nodes, func(n *node) error { n.kill(); return nil })
}

// Start starts every stopped node again on its old port and directory, so it
// reloads its data, and waits until it answers; for a cluster, until the
// cluster is healthy again (see [Server.WaitHealthy]). Only for private
// servers.
func (s *Server) Start(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mutable(tb, "Start")
	err := eachNode(s.nodes, func(n *node) error {
		if n.isRunning() {
			return nil
		}
		return n.restart()
	})
	if err != nil {
		tb.Fatalf("streamstest: Start: %v", err)
	}
	if s.Cluster {
		if err := s.waitHealthy(clusterWaitTimeout, false); err != nil {
			tb.Fatalf("streamstest: Start: %v", err)
		}
	}
}

// Restart stops every node gracefully and starts it again on the same port
// and directory, keeping its data. Only for private servers.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Stop(tb)
	s.Start(tb)
}

// StopNode shuts the node at addr down gracefully. Only for private servers.
func (s *Server) StopNode(tb testing.TB, addr string) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mutable(tb, "StopNode")
	if err := s.node(tb, addr).stop(); err != nil {
		tb.Fatalf("streamstest: StopNode: %v", err)
	}
}

// KillNode ends the node at addr with SIGKILL. Only for private servers.
func (s *Server) KillNode(tb testing.TB, addr string) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mutable(tb, "KillNode")
	s.node(tb, addr).kill()
}

// StartNode starts the stopped node at addr again on its old port and
// directory and waits until it answers PING; it does not wait for the
// cluster to converge (see [Server.WaitHealthy]). Only for private servers.
func (s *Server) StartNode(tb testing.TB, addr string) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mutable(tb, "StartNode")
	if err := s.node(tb, addr).restart(); err != nil {
		tb.Fatalf("streamstest: StartNode: %v", err)
	}
}

// Running reports whether the process of the node at addr is alive.
func (s *Server) Running(tb testing.TB, addr string) bool {
	tb.Helper()
	return s.node(tb, addr).isRunning()
}

func eachNode(nodes []*node, f func(*node) error) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(n)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// adminClient returns a plain client for the node at addr that does not
// retry, for harness bookkeeping.
func (s *Server) adminClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:            addr,
		Password:        s.Password,
		DialTimeout:     time.Second,
		ReadTimeout:     2 * time.Second,
		WriteTimeout:    2 * time.Second,
		MaxRetries:      -1,
		PoolSize:        2,
		DisableIdentity: true,
	})
}

func withTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// sprintNodes is used in error messages.
func sprintNodes(nodes []*node) string {
	var b strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&b, "\n=== node %s (dir %s)\n%s", n.addr(), n.dir, n.logTail())
	}
	return b.String()
}
