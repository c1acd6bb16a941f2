package streams

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Environment variables read by ParseURL when the URL carries no
// credentials, so that secrets never need to be on a command line.
const (
	EnvUsername         = "CELEROOT_REDIS_USERNAME"
	EnvPassword         = "CELEROOT_REDIS_PASSWORD"
	EnvSentinelPassword = "CELEROOT_SENTINEL_PASSWORD"
)

// Mode is the kind of Redis deployment a URL names.
type Mode string

// Deployment modes.
const (
	ModeAuto     Mode = "auto"     // redis:// or rediss://: single node, or a cluster node (detected)
	ModeCluster  Mode = "cluster"  // redis+cluster://
	ModeSentinel Mode = "sentinel" // redis+sentinel://
)

// ConnConfig is a parsed Redis URL.
type ConnConfig struct {
	Mode    Mode
	Options redis.UniversalOptions
	// Display is the URL with the password masked, for messages.
	Display string
}

// ParseURL parses a Redis URL:
//
//	redis://[user[:pass]@]host:port[/db]             single node (a cluster node is detected)
//	rediss://...                                      the same over TLS
//	redis+cluster://[user[:pass]@]h1:p1,h2:p2         Redis Cluster seed nodes
//	redis+sentinel://[user[:pass]@]s1:p1,s2:p2/master[/db]   Sentinel
//
// Query parameters: tls_ca, tls_cert, tls_key (file paths, and imply TLS),
// tls_server_name, dial_timeout (a Go duration). A password absent from the
// URL is taken from $CELEROOT_REDIS_PASSWORD (the username from
// $CELEROOT_REDIS_USERNAME, a Sentinel password from
// $CELEROOT_SENTINEL_PASSWORD).
func ParseURL(raw string) (*ConnConfig, error) {
	if raw == "" {
		return nil, errors.New("empty Redis URL: give one like redis://127.0.0.1:6379")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse refuses "h1:p1,h2:p2" hosts; parse those by hand below.
		u, err = parseMultiHost(raw)
		if err != nil {
			return nil, fmt.Errorf("redis URL %q: %w", RedactURL(raw), err)
		}
	}
	cfg := &ConnConfig{}
	useTLS := false
	switch u.Scheme {
	case "redis":
		cfg.Mode = ModeAuto
	case "rediss":
		cfg.Mode, useTLS = ModeAuto, true
	case "redis+cluster":
		cfg.Mode = ModeCluster
	case "rediss+cluster":
		cfg.Mode, useTLS = ModeCluster, true
	case "redis+sentinel":
		cfg.Mode = ModeSentinel
	case "rediss+sentinel":
		cfg.Mode, useTLS = ModeSentinel, true
	default:
		return nil, fmt.Errorf("redis URL %q: scheme %q is not one of redis, rediss, redis+cluster, rediss+cluster, redis+sentinel, rediss+sentinel", RedactURL(raw), u.Scheme)
	}
	o := &cfg.Options
	for _, h := range strings.Split(u.Host, ",") {
		if h == "" {
			continue
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			def := "6379"
			if cfg.Mode == ModeSentinel {
				def = "26379"
			}
			host, port = h, def
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return nil, fmt.Errorf("redis URL %q: port %q is not a number", RedactURL(raw), port)
		}
		o.Addrs = append(o.Addrs, net.JoinHostPort(host, port))
	}
	if len(o.Addrs) == 0 {
		return nil, fmt.Errorf("redis URL %q: no host: give one like redis://127.0.0.1:6379", RedactURL(raw))
	}
	if cfg.Mode == ModeAuto && len(o.Addrs) > 1 {
		return nil, fmt.Errorf("redis URL %q: several hosts need redis+cluster:// or redis+sentinel://", RedactURL(raw))
	}
	path := strings.Trim(u.Path, "/")
	var segs []string
	if path != "" {
		segs = strings.Split(path, "/")
	}
	if cfg.Mode == ModeSentinel {
		if len(segs) == 0 || segs[0] == "" {
			return nil, fmt.Errorf("redis URL %q: a sentinel URL names the master: redis+sentinel://host:26379/mymaster", RedactURL(raw))
		}
		o.MasterName, segs = segs[0], segs[1:]
	}
	if len(segs) > 1 || (len(segs) == 1 && cfg.Mode == ModeCluster) {
		return nil, fmt.Errorf("redis URL %q: unexpected path %q", RedactURL(raw), u.Path)
	}
	if len(segs) == 1 {
		db, err := strconv.Atoi(segs[0])
		if err != nil || db < 0 {
			return nil, fmt.Errorf("redis URL %q: database %q is not a number", RedactURL(raw), segs[0])
		}
		o.DB = db
	}
	if u.User != nil {
		o.Username = u.User.Username()
		o.Password, _ = u.User.Password()
	}
	if o.Username == "" {
		o.Username = os.Getenv(EnvUsername)
	}
	if o.Password == "" {
		o.Password = os.Getenv(EnvPassword)
	}
	if cfg.Mode == ModeSentinel {
		o.SentinelPassword = os.Getenv(EnvSentinelPassword)
	}
	q := u.Query()
	o.DialTimeout = 2 * time.Second
	if v := q.Get("dial_timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("redis URL %q: dial_timeout %q is not a positive duration like 2s", RedactURL(raw), v)
		}
		o.DialTimeout = d
	}
	if q.Get("tls_ca") != "" || q.Get("tls_cert") != "" {
		useTLS = true
	}
	if useTLS {
		tc, err := tlsConfig(q, o.Addrs[0])
		if err != nil {
			return nil, fmt.Errorf("redis URL %q: %w", RedactURL(raw), err)
		}
		o.TLSConfig = tc
	}
	// Fail fast: a few quick dial retries, not go-redis' default five.
	o.DialerRetries = 2
	o.IsClusterMode = cfg.Mode == ModeCluster
	cfg.Display = RedactURL(raw)
	return cfg, nil
}

func parseMultiHost(raw string) (*url.URL, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, errors.New("not a URL: give one like redis://127.0.0.1:6379")
	}
	u := &url.URL{Scheme: scheme}
	if i := strings.IndexAny(rest, "?"); i >= 0 {
		q, err := url.ParseQuery(rest[i+1:])
		if err != nil {
			return nil, err
		}
		u.RawQuery = q.Encode()
		rest = rest[:i]
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		userinfo := rest[:at]
		rest = rest[at+1:]
		user, pass, hasPass := strings.Cut(userinfo, ":")
		var err error
		if user, err = url.PathUnescape(user); err != nil {
			return nil, err
		}
		if hasPass {
			if pass, err = url.PathUnescape(pass); err != nil {
				return nil, err
			}
			u.User = url.UserPassword(user, pass)
		} else {
			u.User = url.User(user)
		}
	}
	host, path, _ := strings.Cut(rest, "/")
	u.Host, u.Path = host, "/"+path
	return u, nil
}

func tlsConfig(q url.Values, addr string) (*tls.Config, error) {
	host, _, _ := net.SplitHostPort(addr)
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if v := q.Get("tls_server_name"); v != "" {
		tc.ServerName = v
	}
	if ca := q.Get("tls_ca"); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("tls_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls_ca %s: no PEM certificate found", ca)
		}
		tc.RootCAs = pool
	}
	cert, key := q.Get("tls_cert"), q.Get("tls_key")
	if (cert == "") != (key == "") {
		return nil, errors.New("tls_cert and tls_key go together")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// RedactURL masks the password of a URL for display.
func RedactURL(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return raw
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return raw
	}
	return scheme + "://" + user + ":xxxxx@" + rest[at+1:]
}

// Connect opens a client for cfg and checks, within timeout, that Redis
// answers and accepts the credentials. A redis:// URL that points at a
// Redis Cluster node yields a cluster client. poolSize 0 keeps go-redis'
// default. The error names the address and says what to check.
func Connect(ctx context.Context, cfg *ConnConfig, poolSize int, timeout time.Duration) (redis.UniversalClient, error) {
	o := cfg.Options
	o.PoolSize = poolSize
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if cfg.Mode == ModeAuto {
		probe := redis.NewClient(o.Simple())
		info, err := ping(ctx, probe, cfg)
		probe.Close()
		if err != nil {
			return nil, err
		}
		o.IsClusterMode = strings.Contains(info, "cluster_enabled:1")
	}
	var rdb redis.UniversalClient
	if o.MasterName == "" && (o.IsClusterMode || len(o.Addrs) > 1) {
		rdb = NewClusterClient(o.Cluster())
	} else {
		rdb = redis.NewUniversalClient(&o)
	}
	if _, err := ping(ctx, rdb, cfg); err != nil {
		rdb.Close()
		return nil, err
	}
	return rdb, nil
}

// ClusterStateReload bounds how stale a cluster client's map of slots to
// masters may get while no command fails (go-redis' default is 60s).
const ClusterStateReload = 10 * time.Second

// NewClusterClient returns a Redis Cluster client that reloads its map of
// slots to masters as soon as a node cannot be dialled: after a failover,
// go-redis would otherwise keep sending pipelines (every fenced script
// call) to the dead master until its next periodic reload, a minute later.
// Reloads are asynchronous and coalesced (at most one every 200ms). The
// periodic reload is every ClusterStateReload unless o sets another.
func NewClusterClient(o *redis.ClusterOptions) *redis.ClusterClient {
	if o.ClusterStateReloadInterval == 0 {
		o.ClusterStateReloadInterval = ClusterStateReload
	}
	c := redis.NewClusterClient(o)
	c.OnNewNode(func(node *redis.Client) {
		node.AddHook(reloadOnDialError{c})
	})
	return c
}

// reloadOnDialError is a node client hook of NewClusterClient.
type reloadOnDialError struct{ c *redis.ClusterClient }

func (h reloadOnDialError) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil && ctx.Err() == nil {
			h.c.ReloadState(ctx)
		}
		return conn, err
	}
}

func (reloadOnDialError) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (reloadOnDialError) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// ping runs INFO cluster with a deadline the client cannot ignore.
func ping(ctx context.Context, rdb redis.UniversalClient, cfg *ConnConfig) (string, error) {
	display := cfg.Display
	type result struct {
		info string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		info, err := rdb.Info(ctx, "cluster").Result()
		if cfg.Mode == ModeSentinel && errors.Is(err, redis.Nil) {
			// The sentinels answered, but none of them monitors that name.
			err = fmt.Errorf("no sentinel there monitors a master named %q (the name in the URL path; SENTINEL MASTERS on a sentinel lists them)", cfg.Options.MasterName)
		}
		var rerr redis.Error
		if errors.As(err, &rerr) && !isAuthError(err) && !errors.Is(err, redis.Nil) {
			// The server answered but has no cluster section (an embedded
			// Redis-compatible server): it is reachable and not a cluster.
			info, err = "", nil
		}
		ch <- result{info, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil && cfg.Mode == ModeSentinel && isAuthError(r.err) && strings.Contains(r.err.Error(), "all sentinels") {
			// go-redis joins the answer of every sentinel: say it once.
			first, _, _ := strings.Cut(strings.TrimPrefix(r.err.Error(), "redis: all sentinels specified in configuration are unreachable: "), "\n")
			return "", &connError{kind: ErrAuth, msg: fmt.Sprintf("the sentinels at %s rejected the credentials: %s (set the sentinels' password in $%s)", display, first, EnvSentinelPassword)}
		}
		if r.err != nil {
			return "", ConnError(display, r.err)
		}
		return r.info, nil
	case <-ctx.Done():
		return "", ConnError(display, fmt.Errorf("no answer: %w", ctx.Err()))
	}
}

// ErrUnreachable and ErrAuth classify connection failures.
var (
	ErrUnreachable = errors.New("streams: redis unreachable")
	ErrAuth        = errors.New("streams: redis rejected the credentials")
)

// ConnError explains a failure to reach Redis at display, with what to
// check. It matches ErrAuth or ErrUnreachable with errors.Is.
func ConnError(display string, err error) error {
	if isAuthError(err) {
		return &connError{kind: ErrAuth, msg: fmt.Sprintf("redis at %s rejected the credentials: %v (set the password in the URL or in $%s)", display, err, EnvPassword)}
	}
	return &connError{kind: ErrUnreachable, msg: fmt.Sprintf("redis unreachable at %s: %v (is Redis running there? check --redis or $CELEROOT_REDIS_URL)", display, err)}
}

// connError reads well to a user and still matches its sentinel.
type connError struct {
	kind error
	msg  string
}

func (e *connError) Error() string { return e.msg }
func (e *connError) Unwrap() error { return e.kind }

func isAuthError(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "WRONGPASS") || strings.Contains(msg, "NOAUTH") ||
		strings.Contains(msg, "invalid password") || strings.Contains(msg, "invalid username-password")
}
