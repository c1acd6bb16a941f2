// Package streamstest starts real Redis servers for tests: a shared single
// node and a shared three-master Redis Cluster per test binary, plus private
// servers for tests that need to stop, restart or kill them. A
// Sentinel-managed deployment (a master, a replica, three sentinels; see
// [Sentinel] and [NewSentinel]) is started only by the tests that ask for
// one.
//
// Typical use:
//
//	func TestMain(m *testing.M) { os.Exit(streamstest.Main(m)) }
//
//	func TestX(t *testing.T) {
//		for _, srv := range streamstest.Servers(t) {
//			t.Run(srv.Name, func(t *testing.T) {
//				cl := srv.Client(t)
//				ns := streamstest.ClusterName(t)
//				_, _ = cl, ns
//			})
//		}
//	}
//
// Servers run the redis-server binary found on PATH (or named by
// CELEROOT_REDIS_SERVER) as child processes listening on 127.0.0.1 only, on
// random free ports, each in its own temporary directory. A missing binary
// fails the test; it is never skipped. Shared servers are started lazily, at
// most once per test binary, and are stopped by [Main]; private servers are
// stopped by the test's cleanup. On Linux every server also dies with the
// test binary, even if the binary is killed before [Main] returns.
//
// Tests sharing a server must keep to their own keys: use [ClusterName] as a
// namespace and never flush the shared servers.
package streamstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// EnvRedisServer names the environment variable that, when set, points at the
// redis-server binary to use instead of the one found on PATH.
const EnvRedisServer = "CELEROOT_REDIS_SERVER"

// InstallHint is the command that installs Redis on Debian and Ubuntu. It is
// part of the failure message when no redis-server binary is found.
const InstallHint = "apt-get install -y redis-server redis-tools"

// Main runs the tests of m, then stops every Redis server the harness started
// in this test binary and removes their directories. It returns the exit code
// of m.Run, for use as os.Exit(streamstest.Main(m)) in TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	stopAll()
	return code
}

// Option configures a private server created by [NewSingle] or [NewCluster].
type Option func(*options)

type options struct {
	directives       []string
	password         string
	sentinelPassword string
	masters          int
	replicas         int
}

// WithConfig appends configuration directives, one per string, to the server's
// configuration file, for example "appendfsync always" or "maxmemory 10mb".
// They come after the harness defaults, so they override them.
func WithConfig(directives ...string) Option {
	return func(o *options) { o.directives = append(o.directives, directives...) }
}

// WithPassword makes the server require a password (requirepass; for cluster
// replicas also masterauth). [Server.Client] and [Server.URL] carry it.
func WithPassword(password string) Option {
	return func(o *options) { o.password = password }
}

// WithReplicas gives every cluster master n replicas, attached with CLUSTER
// REPLICATE. It applies to [NewCluster] only; the default is 0.
func WithReplicas(n int) Option {
	return func(o *options) { o.replicas = n }
}

// WithMasters sets the number of cluster masters (default 3). It applies to
// [NewCluster] only.
func WithMasters(n int) Option {
	return func(o *options) { o.masters = n }
}

func buildOptions(opts []Option) options {
	o := options{masters: 3}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

var (
	singleOnce sync.Once
	singleSrv  *Server
	singleErr  error

	clusterOnce sync.Once
	clusterSrv  *Server
	clusterErr  error
)

// Single returns the single-node server shared by all tests of this binary,
// starting it on first use. It runs with appendonly yes and appendfsync
// everysec. Tests must not stop or restart it; use [NewSingle] for that.
func Single(tb testing.TB) *Server {
	tb.Helper()
	bin := redisServer(tb)
	singleOnce.Do(func() {
		singleSrv, singleErr = startSingle(bin, "single", options{}, true)
	})
	if singleErr != nil {
		tb.Fatalf("streamstest: shared single-node redis: %v", singleErr)
	}
	return singleSrv
}

// Cluster returns the three-master Redis Cluster (no replicas) shared by all
// tests of this binary, starting it on first use. Tests must not stop or kill
// its nodes; use [NewCluster] for that.
func Cluster(tb testing.TB) *Server {
	tb.Helper()
	bin := redisServer(tb)
	clusterOnce.Do(func() {
		clusterSrv, clusterErr = startCluster(bin, "cluster", options{masters: 3}, true)
	})
	if clusterErr != nil {
		tb.Fatalf("streamstest: shared redis cluster: %v", clusterErr)
	}
	return clusterSrv
}

// Servers returns the shared servers every data-plane test should run
// against: the single node first, then the cluster.
func Servers(tb testing.TB) []*Server {
	tb.Helper()
	return []*Server{Single(tb), Cluster(tb)}
}

// NewSingle starts a private single-node server for one test, typically one
// that restarts, stops or kills it. It is stopped and its directory removed
// when the test ends.
func NewSingle(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	bin := redisServer(tb)
	s, err := startSingle(bin, "single", buildOptions(opts), false)
	if err != nil {
		tb.Fatalf("streamstest: private single-node redis: %v", err)
	}
	tb.Cleanup(s.destroy)
	return s
}

// NewCluster starts a private Redis Cluster for one test (three masters by
// default, see [WithMasters] and [WithReplicas]) and waits until every node
// reports cluster_state:ok and agrees on the slot map. It is stopped and its
// directories removed when the test ends.
func NewCluster(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	bin := redisServer(tb)
	o := buildOptions(opts)
	if o.masters < 1 || o.replicas < 0 {
		tb.Fatalf("streamstest: NewCluster: invalid topology: %d masters, %d replicas each", o.masters, o.replicas)
	}
	s, err := startCluster(bin, "cluster", o, false)
	if err != nil {
		tb.Fatalf("streamstest: private redis cluster: %v", err)
	}
	tb.Cleanup(s.destroy)
	return s
}

var (
	namesMu sync.Mutex
	names   = map[string]bool{}
)

// ClusterName returns a new name, unique within the test binary and random
// across binaries, to use as a key namespace: "t-" followed by 8 lowercase
// hex digits. It contains only lowercase letters, digits and '-'.
func ClusterName(tb testing.TB) string {
	tb.Helper()
	namesMu.Lock()
	defer namesMu.Unlock()
	for {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			tb.Fatalf("streamstest: ClusterName: %v", err)
		}
		n := "t-" + hex.EncodeToString(b[:])
		if !names[n] {
			names[n] = true
			return n
		}
	}
}

// RedisServerPath returns the redis-server binary the harness runs: the value
// of CELEROOT_REDIS_SERVER if set, else redis-server looked up on PATH. The
// test fails, naming the install command, if there is none.
func RedisServerPath(tb testing.TB) string {
	tb.Helper()
	return redisServer(tb)
}

func redisServer(tb testing.TB) string {
	tb.Helper()
	path, err := findRedisServer()
	if err != nil {
		tb.Fatalf("streamstest: %v", err)
	}
	return path
}

func findRedisServer() (string, error) {
	if p := os.Getenv(EnvRedisServer); p != "" {
		path, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("%s=%q is not an executable redis-server: %v", EnvRedisServer, p, err)
		}
		return path, nil
	}
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server not found on PATH; these tests need a real Redis (7.0 or newer). "+
			"Install it with `%s` on Debian/Ubuntu (prefix with sudo if not root), "+
			"or run `make test`, which installs it automatically (scripts/ensure-redis); "+
			"or point %s at a redis-server binary", InstallHint, EnvRedisServer)
	}
	return path, nil
}
