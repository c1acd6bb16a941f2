package streamstest_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/celeroot/celeroot/streams/streamstest"
)

func TestMain(m *testing.M) { os.Exit(streamstest.Main(m)) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestServersAnswer(t *testing.T) {
	srvs := streamstest.Servers(t)
	if len(srvs) != 2 || srvs[0].Cluster || !srvs[1].Cluster {
		t.Fatalf("Servers: want single then cluster, got %+v", srvs)
	}
	for _, srv := range srvs {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			cl := srv.Client(t)
			ns := streamstest.ClusterName(t)
			if err := cl.Ping(ctx(t)).Err(); err != nil {
				t.Fatalf("PING %s: %v", srv.URL, err)
			}
			key := ns + ":greeting"
			if err := cl.Set(ctx(t), key, "hello", time.Minute).Err(); err != nil {
				t.Fatalf("SET: %v", err)
			}
			got, err := cl.Get(ctx(t), key).Result()
			if err != nil || got != "hello" {
				t.Fatalf("GET = %q, %v; want hello", got, err)
			}
		})
	}
}

func TestSharedServersAreShared(t *testing.T) {
	if a, b := streamstest.Single(t), streamstest.Single(t); a != b {
		t.Fatal("Single returned two different servers")
	}
	if a, b := streamstest.Cluster(t), streamstest.Cluster(t); a != b {
		t.Fatal("Cluster returned two different servers")
	}
}

func TestURLs(t *testing.T) {
	single := streamstest.Single(t)
	if want := "redis://" + single.Addrs[0]; single.URL != want || len(single.Addrs) != 1 {
		t.Errorf("single URL = %q, Addrs = %v", single.URL, single.Addrs)
	}
	cluster := streamstest.Cluster(t)
	if want := "redis+cluster://" + strings.Join(cluster.Addrs, ","); cluster.URL != want || len(cluster.Addrs) != 3 {
		t.Errorf("cluster URL = %q, Addrs = %v", cluster.URL, cluster.Addrs)
	}
	for _, a := range append(single.Addrs, cluster.Addrs...) {
		if !strings.HasPrefix(a, "127.0.0.1:") {
			t.Errorf("address %q is not on 127.0.0.1", a)
		}
	}
	if _, err := redis.ParseURL(single.URL); err != nil {
		t.Errorf("go-redis cannot parse %q: %v", single.URL, err)
	}
}

func TestClusterIsReal(t *testing.T) {
	srv := streamstest.Cluster(t)
	cl := srv.Client(t).(*redis.ClusterClient)
	ns := streamstest.ClusterName(t)
	ka, kb := "{a}"+ns, "{b}"+ns

	sa, err := cl.ClusterKeySlot(ctx(t), ka).Result()
	if err != nil {
		t.Fatal(err)
	}
	sb, err := cl.ClusterKeySlot(ctx(t), kb).Result()
	if err != nil {
		t.Fatal(err)
	}
	if sa == sb {
		t.Fatalf("{a} and {b} keys share slot %d", sa)
	}
	if ma, mb := srv.MasterFor(t, ka), srv.MasterFor(t, kb); ma == mb {
		t.Fatalf("{a} and {b} keys are both served by %s", ma)
	}
	if got := srv.Masters(t); len(got) != 3 {
		t.Fatalf("Masters = %v, want 3", got)
	}

	// Send MGET straight to one node: a real cluster refuses keys from
	// different slots in one command.
	node := redis.NewClient(&redis.Options{Addr: srv.Addrs[0]})
	defer node.Close()
	err = node.MGet(ctx(t), ka, kb).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
		t.Fatalf("MGET %s %s: got %v, want a CROSSSLOT error", ka, kb, err)
	}
	err = cl.Do(ctx(t), "MGET", ka, kb).Err()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("MGET via cluster client: got %v, want a CROSSSLOT error", err)
	}
}

func TestClusterNameIsSafeAndUnique(t *testing.T) {
	re := regexp.MustCompile(`^t-[0-9a-f]{8}$`)
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		n := streamstest.ClusterName(t)
		if !re.MatchString(n) {
			t.Fatalf("ClusterName = %q", n)
		}
		if seen[n] {
			t.Fatalf("ClusterName repeated %q", n)
		}
		seen[n] = true
	}
}

func TestRestartKeepsData(t *testing.T) {
	srv := streamstest.NewSingle(t)
	cl := srv.Client(t)
	if err := cl.XAdd(ctx(t), &redis.XAddArgs{Stream: "s", ID: "1-1", Values: []any{"k", "v"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Set(ctx(t), "before", "restart", 0).Err(); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	srv.Restart(t)
	if srv.Addr() != addr {
		t.Fatalf("address changed across restart: %s -> %s", addr, srv.Addr())
	}
	if got, err := cl.Get(ctx(t), "before").Result(); err != nil || got != "restart" {
		t.Fatalf("after restart GET = %q, %v", got, err)
	}
	if n, err := cl.XLen(ctx(t), "s").Result(); err != nil || n != 1 {
		t.Fatalf("after restart XLEN = %d, %v", n, err)
	}
	if _, err := os.Stat(srv.Dir(t, addr) + "/appendonlydir"); err != nil {
		t.Fatalf("no AOF directory: %v", err)
	}
}

func TestStopStartAndKill(t *testing.T) {
	srv := streamstest.NewSingle(t, streamstest.WithConfig("appendfsync always"))
	cl := srv.Client(t)
	if err := cl.Set(ctx(t), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)
	if srv.Running(t, srv.Addr()) {
		t.Fatal("running after Stop")
	}
	short, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := cl.Ping(short).Err(); err == nil {
		t.Fatal("PING succeeded while stopped")
	}
	srv.Start(t)
	// With appendfsync always a SIGKILL loses nothing acknowledged.
	if err := cl.Set(ctx(t), "k2", "v2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Kill(t)
	srv.Start(t)
	for _, k := range []string{"k", "k2"} {
		if err := cl.Get(ctx(t), k).Err(); err != nil {
			t.Fatalf("GET %s after kill: %v", k, err)
		}
	}
}

func TestPrivateConfig(t *testing.T) {
	srv := streamstest.NewSingle(t, streamstest.WithConfig("maxmemory 10mb", "maxmemory-policy noeviction"))
	cfg, err := srv.Client(t).ConfigGet(ctx(t), "maxmemory").Result()
	if err != nil {
		t.Fatal(err)
	}
	if cfg["maxmemory"] != "10485760" {
		t.Fatalf("maxmemory = %q", cfg["maxmemory"])
	}
}

func TestPassword(t *testing.T) {
	srv := streamstest.NewSingle(t, streamstest.WithPassword("s3cret"))
	if !strings.Contains(srv.URL, ":s3cret@") {
		t.Errorf("URL %q does not carry the password", srv.URL)
	}
	if err := srv.Client(t).Ping(ctx(t)).Err(); err != nil {
		t.Fatalf("PING with password: %v", err)
	}
	opt, err := redis.ParseURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	withURL := redis.NewClient(opt)
	defer withURL.Close()
	if err := withURL.Ping(ctx(t)).Err(); err != nil {
		t.Fatalf("PING via URL: %v", err)
	}
	anon := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer anon.Close()
	err = anon.Set(ctx(t), "k", "v", 0).Err()
	if err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("SET without password: got %v, want NOAUTH", err)
	}
}

func TestSharedServersRefuseFaults(t *testing.T) {
	ft := &fatalRecorder{TB: t}
	func() {
		defer func() {
			if r := recover(); r != nil && r != ft {
				panic(r)
			}
		}()
		streamstest.Single(t).Restart(ft)
	}()
	if !strings.Contains(ft.msg, "NewSingle") {
		t.Fatalf("Restart on the shared server: got %q, want a refusal", ft.msg)
	}
	if err := streamstest.Single(t).Client(t).Ping(ctx(t)).Err(); err != nil {
		t.Fatalf("shared server disturbed: %v", err)
	}
}

// fatalRecorder records Fatalf instead of failing the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f)
}

func TestClusterFailover(t *testing.T) {
	start := time.Now()
	srv := streamstest.NewCluster(t, streamstest.WithReplicas(1))
	t.Logf("cluster with replicas formed in %v", time.Since(start))
	if len(srv.Addrs) != 6 {
		t.Fatalf("Addrs = %v, want 6 nodes", srv.Addrs)
	}
	cl := srv.Client(t)
	key := "{failover}k"
	if err := cl.Set(ctx(t), key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	old := srv.MasterFor(t, key)
	replicas := srv.Replicas(t, old)
	if len(replicas) != 1 {
		t.Fatalf("replicas of %s = %v, want 1", old, replicas)
	}
	// Let the write reach the replica before the master dies.
	node := redis.NewClient(&redis.Options{Addr: old})
	defer node.Close()
	if err := node.Do(ctx(t), "WAIT", 1, 5000).Err(); err != nil {
		t.Fatal(err)
	}

	if got := srv.KillMaster(t, key); got != old {
		t.Fatalf("KillMaster killed %s, want %s", got, old)
	}
	start = time.Now()
	srv.WaitHealthy(t)
	t.Logf("failover took %v", time.Since(start))
	if now := srv.MasterFor(t, key); now != replicas[0] {
		t.Fatalf("after failover %s is served by %s, want the replica %s", key, now, replicas[0])
	}
	// A cluster client learns the new topology on its next reload.
	cl.(*redis.ClusterClient).ReloadState(ctx(t))
	if got, err := cl.Get(ctx(t), key).Result(); err != nil || got != "v" {
		t.Fatalf("GET after failover = %q, %v", got, err)
	}

	// The old master comes back as a replica of the new one.
	start = time.Now()
	srv.StartNode(t, old)
	srv.WaitHealthy(t)
	t.Logf("old master rejoined as a replica in %v", time.Since(start))
	if got := srv.Replicas(t, replicas[0]); len(got) != 1 || got[0] != old {
		t.Fatalf("replicas of new master = %v, want [%s]", got, old)
	}
}
