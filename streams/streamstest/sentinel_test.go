package streamstest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/streams/streamstest"
)

// A Sentinel-managed deployment: the sentinels name the first data node as
// master, the client finds it through them, a failover promotes the replica
// and demotes the old master, and the same client goes on writing.
func TestSentinelDeployment(t *testing.T) {
	srv := streamstest.NewSentinel(t, streamstest.WithPassword("pw"))
	if !srv.Sentinel || len(srv.Addrs) != 2 || len(srv.SentinelAddrs) != 3 || srv.MasterName != streamstest.SentinelMasterName {
		t.Fatalf("NewSentinel = %+v, want 2 data nodes, 3 sentinels, master name %s", srv, streamstest.SentinelMasterName)
	}
	wantURL := "redis+sentinel://:pw@" + strings.Join(srv.SentinelAddrs, ",") + "/" + streamstest.SentinelMasterName
	if srv.URL != wantURL {
		t.Errorf("URL = %q, want %q", srv.URL, wantURL)
	}
	if got := srv.MasterAddr(t); got != srv.Addrs[0] {
		t.Fatalf("MasterAddr = %s, want the first data node %s", got, srv.Addrs[0])
	}
	cl := srv.Client(t)
	key := streamstest.ClusterName(t) + ":k"
	if err := cl.Set(ctx(t), key, "before", time.Minute).Err(); err != nil {
		t.Fatalf("SET through the sentinels: %v", err)
	}
	// The write reaches the replica before the failover, so it survives it.
	if n, err := cl.Do(ctx(t), "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v; want 1", n, err)
	}

	start := time.Now()
	newMaster := srv.Failover(t)
	t.Logf("failover took %v", time.Since(start))
	if newMaster != srv.Addrs[1] {
		t.Fatalf("Failover promoted %s, want the replica %s", newMaster, srv.Addrs[1])
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := cl.Set(ctx(t), key+"2", "after", time.Minute).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SET after the failover still fails: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got, err := cl.Get(ctx(t), key).Result(); err != nil || got != "before" {
		t.Errorf("GET %s after the failover = %q, %v; want before", key, got, err)
	}
	// The old master now replicates from the new one.
	srv.WaitHealthy(t)
	if got := srv.MasterAddr(t); got != newMaster {
		t.Errorf("MasterAddr after WaitHealthy = %s, want %s", got, newMaster)
	}
}

func TestSharedSentinelIsShared(t *testing.T) {
	if a, b := streamstest.Sentinel(t), streamstest.Sentinel(t); a != b {
		t.Fatal("Sentinel returned two different deployments")
	}
}
