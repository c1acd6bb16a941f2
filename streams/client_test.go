package streams_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
)

func TestParseURL(t *testing.T) {
	t.Setenv(streams.EnvPassword, "")
	tests := []struct {
		url      string
		mode     streams.Mode
		addrs    string
		db       int
		master   string
		password string
		tls      bool
		display  string
	}{
		{url: "redis://127.0.0.1:6379", mode: streams.ModeAuto, addrs: "127.0.0.1:6379", display: "redis://127.0.0.1:6379"},
		{url: "redis://:s3cret@h:7000/2", mode: streams.ModeAuto, addrs: "h:7000", db: 2, password: "s3cret", display: "redis://:xxxxx@h:7000/2"},
		{url: "rediss://h", mode: streams.ModeAuto, addrs: "h:6379", tls: true, display: "rediss://h"},
		{url: "redis+cluster://a:1,b:2,c:3", mode: streams.ModeCluster, addrs: "a:1,b:2,c:3", display: "redis+cluster://a:1,b:2,c:3"},
		{url: "redis+cluster://u:p@a:1,b:2", mode: streams.ModeCluster, addrs: "a:1,b:2", password: "p", display: "redis+cluster://u:xxxxx@a:1,b:2"},
		{url: "redis+sentinel://s1:26379,s2/mymaster/1", mode: streams.ModeSentinel, addrs: "s1:26379,s2:26379", db: 1, master: "mymaster", display: "redis+sentinel://s1:26379,s2/mymaster/1"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			c, err := streams.ParseURL(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			o := c.Options
			if c.Mode != tt.mode || strings.Join(o.Addrs, ",") != tt.addrs || o.DB != tt.db || o.MasterName != tt.master ||
				o.Password != tt.password || (o.TLSConfig != nil) != tt.tls || c.Display != tt.display {
				t.Errorf("ParseURL(%q) = mode %s addrs %v db %d master %q password %q tls %v display %q",
					tt.url, c.Mode, o.Addrs, o.DB, o.MasterName, o.Password, o.TLSConfig != nil, c.Display)
			}
		})
	}
	t.Run("password from the environment", func(t *testing.T) {
		t.Setenv(streams.EnvPassword, "from-env")
		c, err := streams.ParseURL("redis://h:1")
		if err != nil || c.Options.Password != "from-env" {
			t.Errorf("password = %q, %v; want from-env", c.Options.Password, err)
		}
	})
}

func TestParseURLErrors(t *testing.T) {
	tests := []struct{ url, want string }{
		{"", "empty Redis URL"},
		{"http://h:1", `scheme "http"`},
		{"redis://", "no host"},
		{"redis://a:1,b:2", "several hosts need redis+cluster"},
		{"redis://h:port", "port"},
		{"redis://h:1/x", `database "x"`},
		{"redis+sentinel://s:26379", "names the master"},
		{"redis://:secret@h:1/x", "xxxxx"},
		{"redis://h:1?dial_timeout=soon", "dial_timeout"},
		{"rediss://h:1?tls_cert=/nonexistent", "tls_cert and tls_key go together"},
	}
	for _, tt := range tests {
		_, err := streams.ParseURL(tt.url)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseURL(%q) error = %v, want containing %q", tt.url, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseURL(%q) error shows the password: %v", tt.url, err)
		}
	}
}

func TestConnectUnreachable(t *testing.T) {
	cfg, err := streams.ParseURL("redis://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = streams.Connect(context.Background(), cfg, 0, 5*time.Second)
	if !errors.Is(err, streams.ErrUnreachable) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("Connect error = %v, want ErrUnreachable naming the address", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Connect took %v, want at most 5s", d)
	}
}

func TestConnectCredentials(t *testing.T) {
	srv := streamstest.NewSingle(t, streamstest.WithPassword("right"))
	for _, tt := range []struct {
		env     string
		wantErr error
	}{{"wrong", streams.ErrAuth}, {"", streams.ErrAuth}, {"right", nil}} {
		t.Run("password="+tt.env, func(t *testing.T) {
			t.Setenv(streams.EnvPassword, tt.env)
			cfg, err := streams.ParseURL("redis://" + srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			rdb, err := streams.Connect(context.Background(), cfg, 0, 5*time.Second)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Connect error = %v, want %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), streams.EnvPassword) {
				t.Errorf("error %q does not say where the password goes", err)
			}
			if rdb != nil {
				rdb.Close()
			}
		})
	}
}

func TestConnectDetectsCluster(t *testing.T) {
	srv := streamstest.Cluster(t)
	cfg, err := streams.ParseURL("redis://" + srv.Addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	rdb, err := streams.Connect(context.Background(), cfg, 0, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	// Keys in other slots work only through a cluster client.
	ctx := context.Background()
	for _, k := range []string{"{a}x", "{b}y", "{c}z"} {
		if err := rdb.Set(ctx, k, "1", time.Minute).Err(); err != nil {
			t.Errorf("SET %s through a redis:// URL of a cluster node: %v", k, err)
		}
	}
}

// A redis+sentinel:// URL finds the master through the sentinels; its
// password comes from the environment like any other.
func TestConnectSentinel(t *testing.T) {
	srv := streamstest.Sentinel(t)
	url := "redis+sentinel://" + strings.Join(srv.SentinelAddrs, ",") + "/" + srv.MasterName
	cfg, err := streams.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Mode != streams.ModeSentinel {
		t.Fatalf("ParseURL(%q).Mode = %s, want sentinel", url, cfg.Mode)
	}
	ctx := context.Background()
	rdb, err := streams.Connect(ctx, cfg, 0, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	key := streamstest.ClusterName(t) + ":s"
	id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []string{"k", "v"}}).Result()
	if err != nil {
		t.Fatalf("XADD through the sentinels: %v", err)
	}
	msgs, err := rdb.XRange(ctx, key, "-", "+").Result()
	if err != nil || len(msgs) != 1 || msgs[0].ID != id {
		t.Fatalf("XRANGE = %v, %v; want the entry %s", msgs, err, id)
	}
	// It is the master the sentinels name that answered.
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(srv.MasterAddr(t), ":")
	if !strings.Contains(info, "tcp_port:"+port+"\r\n") {
		t.Errorf("the client talks to a node other than the master %s", srv.MasterAddr(t))
	}

	t.Run("unknown master", func(t *testing.T) {
		cfg, err := streams.ParseURL("redis+sentinel://" + srv.SentinelAddrs[0] + "/nosuchmaster")
		if err != nil {
			t.Fatal(err)
		}
		_, err = streams.Connect(ctx, cfg, 0, 5*time.Second)
		if !errors.Is(err, streams.ErrUnreachable) || !strings.Contains(err.Error(), "nosuchmaster") {
			t.Errorf("Connect to an unknown master = %v, want ErrUnreachable naming it", err)
		}
	})
}

// With passwords on the data nodes and on the sentinels, each comes from
// its own environment variable; a wrong or missing one is an auth error
// that says where the password goes.
func TestConnectSentinelPasswords(t *testing.T) {
	srv := streamstest.NewSentinel(t, streamstest.WithPassword("data-pw"), streamstest.WithSentinelPassword("sentinel-pw"))
	url := "redis+sentinel://" + strings.Join(srv.SentinelAddrs, ",") + "/" + srv.MasterName
	for _, tt := range []struct {
		name, data, sentinel string
		wantErr              error
		wantHint             string
	}{
		{"both", "data-pw", "sentinel-pw", nil, ""},
		{"no sentinel password", "data-pw", "", streams.ErrAuth, streams.EnvSentinelPassword},
		{"wrong data password", "nope", "sentinel-pw", streams.ErrAuth, streams.EnvPassword},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(streams.EnvPassword, tt.data)
			t.Setenv(streams.EnvSentinelPassword, tt.sentinel)
			cfg, err := streams.ParseURL(url)
			if err != nil {
				t.Fatal(err)
			}
			rdb, err := streams.Connect(context.Background(), cfg, 0, 5*time.Second)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Connect error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tt.wantHint) {
					t.Errorf("error %q does not name $%s", err, tt.wantHint)
				}
				return
			}
			defer rdb.Close()
			if err := rdb.Set(context.Background(), streamstest.ClusterName(t)+":k", "v", time.Minute).Err(); err != nil {
				t.Errorf("SET: %v", err)
			}
		})
	}
}

// A cluster client follows a failover as soon as it cannot dial the dead
// master, pipelines included, rather than at its next periodic reload:
// with that reload an hour away, a pipeline sent after the replica took
// over reaches it within a few tries. go-redis' own client, with the same
// options, keeps sending it to the dead master.
func TestClusterClientFollowsFailover(t *testing.T) {
	t.Parallel()
	srv := streamstest.NewCluster(t, streamstest.WithReplicas(1))
	ctx := context.Background()
	const key = "{failover}:k"
	opts := func() *redis.ClusterOptions {
		return &redis.ClusterOptions{Addrs: srv.Addrs, Password: srv.Password, MaxRetries: -1, DialTimeout: time.Second,
			ClusterStateReloadInterval: time.Hour}
	}
	ours := streams.NewClusterClient(opts())
	defer ours.Close()
	plain := redis.NewClusterClient(opts())
	defer plain.Close()
	pipelinedSet := func(c *redis.ClusterClient) error {
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, key, "v", 0)
			return nil
		})
		return err
	}
	for _, c := range []*redis.ClusterClient{ours, plain} {
		if err := pipelinedSet(c); err != nil {
			t.Fatalf("before the failover: %v", err)
		}
	}
	dead := srv.KillMaster(t, key)
	srv.WaitHealthy(t)
	if now := srv.MasterFor(t, key); now == dead {
		t.Fatalf("the slot of %s is still served by the killed %s", key, dead)
	}

	// The first pipeline of each still goes to the dead master.
	_ = pipelinedSet(ours)
	_ = pipelinedSet(plain)
	var err error
	for try := 0; try < 10; try++ {
		time.Sleep(300 * time.Millisecond) // the reload runs in the background
		if err = pipelinedSet(ours); err == nil {
			break
		}
	}
	if err != nil {
		t.Errorf("streams.NewClusterClient after the failover: %v; want the pipeline to reach the new master", err)
	}
	if err := pipelinedSet(plain); err == nil || !strings.Contains(err.Error(), dead) {
		t.Errorf("go-redis' own client: %v; want a dial error naming %s", err, dead)
	}
}
