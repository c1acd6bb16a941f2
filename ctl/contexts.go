package ctl

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/celeroot/celeroot/streams"
	"github.com/goccy/go-yaml"
	"github.com/urfave/cli/v3"
)

// contextFile is the connection contexts file, like a kubeconfig:
//
//	current: prod
//	contexts:
//	  - name: prod
//	    redis: rediss://redis.internal:6380
//	    cluster: production
//	    username: celeroot
//	    passwordEnv: PROD_REDIS_PASSWORD   # or passwordFile: /etc/celeroot/redis.pass
//	    tlsCA: /etc/celeroot/ca.pem
//	    tlsCert: /etc/celeroot/client.pem
//	    tlsKey: /etc/celeroot/client.key
//
// A password is never stored in it: it names an environment variable or a
// file that holds it.
type contextFile struct {
	Current  string        `yaml:"current,omitempty"`
	Contexts []connContext `yaml:"contexts"`
}

type connContext struct {
	Name         string `yaml:"name"`
	Redis        string `yaml:"redis"`
	Cluster      string `yaml:"cluster,omitempty"`
	Username     string `yaml:"username,omitempty"`
	PasswordEnv  string `yaml:"passwordEnv,omitempty"`
	PasswordFile string `yaml:"passwordFile,omitempty"`
	TLSCA        string `yaml:"tlsCA,omitempty"`
	TLSCert      string `yaml:"tlsCert,omitempty"`
	TLSKey       string `yaml:"tlsKey,omitempty"`
}

// contextPath is $CELEROOT_CONFIG, or config.yaml in the user's config dir.
func contextPath() (string, error) {
	if p := os.Getenv("CELEROOT_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no config directory for contexts: %w (set $CELEROOT_CONFIG)", err)
	}
	return filepath.Join(dir, "celeroot", "config.yaml"), nil
}

func loadContexts() (*contextFile, string, error) {
	p, err := contextPath()
	if err != nil {
		return nil, "", err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return &contextFile{}, p, nil
	}
	if err != nil {
		return nil, p, err
	}
	var f contextFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, p, fmt.Errorf("%s: %w", p, err)
	}
	return &f, p, nil
}

func (f *contextFile) save(p string) error {
	b, err := yaml.Marshal(f)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func (f *contextFile) find(name string) (*connContext, bool) {
	for i := range f.Contexts {
		if f.Contexts[i].Name == name {
			return &f.Contexts[i], true
		}
	}
	return nil, false
}

// conn is where a command connects.
type conn struct {
	url, cluster string
	// username and password come from the context; they are used when
	// neither the URL nor the environment gives any.
	username, password string
}

// connection resolves where to connect: --redis and --cluster (or their
// environment variables) win; otherwise the selected context (--context,
// or the file's current one); otherwise the defaults. The URL carries the
// context's TLS file parameters.
//
// A flag set to the empty string (CELEROOT_REDIS_URL= in the environment)
// counts as not given.
func connection(cmd *cli.Command) (c conn, err error) {
	c.url, c.cluster = cmd.String("redis"), cmd.String("cluster")
	given := func(flag string) bool { return cmd.IsSet(flag) && cmd.String(flag) != "" }
	defer func() {
		if c.url == "" {
			c.url = DefaultRedisURL
		}
		if c.cluster == "" {
			c.cluster = DefaultCluster
		}
	}()
	name := cmd.String("context")
	f, path, err := loadContexts()
	if err != nil {
		return c, err
	}
	if name == "" {
		name = f.Current
	}
	if name == "" {
		return c, nil
	}
	cc, ok := f.find(name)
	if !ok {
		if given("context") {
			return c, usagef("--context %q: no such context in %s (see 'celeroot context list')", name, path)
		}
		return c, nil
	}
	if !given("redis") && cc.Redis != "" {
		u := cc.Redis
		q := url.Values{}
		for k, v := range map[string]string{"tls_ca": cc.TLSCA, "tls_cert": cc.TLSCert, "tls_key": cc.TLSKey} {
			if v != "" {
				q.Set(k, v)
			}
		}
		if len(q) > 0 {
			sep := "?"
			if strings.Contains(u, "?") {
				sep = "&"
			}
			u += sep + q.Encode()
		}
		c.url, c.username = u, cc.Username
		switch {
		case cc.PasswordEnv != "":
			c.password = os.Getenv(cc.PasswordEnv)
		case cc.PasswordFile != "":
			b, err := os.ReadFile(cc.PasswordFile)
			if err != nil {
				return c, fmt.Errorf("context %s: password file: %w", name, err)
			}
			c.password = strings.TrimSpace(string(b))
		}
	}
	if !given("cluster") && cc.Cluster != "" {
		c.cluster = cc.Cluster
	}
	return c, nil
}

// parse parses the URL and fills in the context's credentials where the
// URL and the environment give none.
func (c conn) parse() (*streams.ConnConfig, error) {
	cfg, err := streams.ParseURL(c.url)
	if err != nil {
		return nil, usagef("--redis: %v", err)
	}
	if cfg.Options.Username == "" {
		cfg.Options.Username = c.username
	}
	if cfg.Options.Password == "" {
		cfg.Options.Password = c.password
	}
	return cfg, nil
}

func contextCommand() *cli.Command {
	return &cli.Command{
		Name:  "context",
		Usage: "named connections (Redis URL, cluster, credentials source), like kubeconfig contexts",
		Description: `Contexts live in $CELEROOT_CONFIG or ~/.config/celeroot/config.yaml. --redis,
--cluster and their environment variables override the context.

Examples:
  celeroot context set prod --redis rediss://redis.internal:6380 --cluster production --password-env PROD_REDIS_PASSWORD
  celeroot context use prod
  celeroot context list
  celeroot --context staging workers list`,
		Commands: []*cli.Command{
			{Name: "list", Usage: "list the contexts; * marks the current one", Action: contextList,
				Description: "Example:\n  celeroot context list"},
			{Name: "use", Usage: "make a context the current one", ArgsUsage: "<name>", Action: contextUse,
				Description: "Example:\n  celeroot context use prod"},
			{
				Name: "set", Usage: "create or change a context", ArgsUsage: "<name>",
				Description: `Only the flags given change. The first context saved becomes the current
one. A password is never stored: name the variable or file that holds it.

Examples:
  celeroot context set prod --redis rediss://redis.internal:6380 --cluster production --password-env PROD_REDIS_PASSWORD
  celeroot context set ha --redis redis+sentinel://s1:26379,s2:26379,s3:26379/mymaster --cluster production
  celeroot context set prod --password-file /etc/celeroot/redis.pass`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "redis", Usage: "Redis URL (without a password)"},
					&cli.StringFlag{Name: "cluster", Usage: "cluster name"},
					&cli.StringFlag{Name: "username", Usage: "Redis user"},
					&cli.StringFlag{Name: "password-env", Usage: "environment variable that holds the password"},
					&cli.StringFlag{Name: "password-file", Usage: "file that holds the password"},
					&cli.StringFlag{Name: "tls-ca", Usage: "CA certificate file"},
					&cli.StringFlag{Name: "tls-cert", Usage: "client certificate file"},
					&cli.StringFlag{Name: "tls-key", Usage: "client key file"},
				},
				Action: contextSet,
			},
		},
	}
}

func contextList(_ context.Context, cmd *cli.Command) error {
	f, path, err := loadContexts()
	if err != nil {
		return err
	}
	w := cmd.Root().Writer
	if len(f.Contexts) == 0 {
		fmt.Fprintf(cmd.Root().ErrWriter, "No contexts in %s; add one with 'celeroot context set'.\n", path)
		return nil
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "CURRENT\tNAME\tREDIS\tCLUSTER\tPASSWORD FROM")
	for _, c := range f.Contexts {
		cur := ""
		if c.Name == f.Current {
			cur = "*"
		}
		from := "-"
		if c.PasswordEnv != "" {
			from = "$" + c.PasswordEnv
		} else if c.PasswordFile != "" {
			from = c.PasswordFile
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cur, c.Name, c.Redis, orDash(c.Cluster), from)
	}
	return tw.Flush()
}

func contextUse(_ context.Context, cmd *cli.Command) error {
	name, err := oneArg(cmd, "name")
	if err != nil {
		return err
	}
	f, path, err := loadContexts()
	if err != nil {
		return err
	}
	if _, ok := f.find(name); !ok {
		return fmt.Errorf("no context %q in %s", name, path)
	}
	f.Current = name
	if err := f.save(path); err != nil {
		return err
	}
	fmt.Fprintf(cmd.Root().Writer, "now using context %s\n", name)
	return nil
}

func contextSet(_ context.Context, cmd *cli.Command) error {
	name, err := oneArg(cmd, "name")
	if err != nil {
		return err
	}
	if u := cmd.String("redis"); u != "" {
		if streams.RedactURL(u) != u {
			return usagef("--redis: keep the password out of the URL; use --password-env or --password-file")
		}
	}
	f, path, err := loadContexts()
	if err != nil {
		return err
	}
	c, ok := f.find(name)
	if !ok {
		f.Contexts = append(f.Contexts, connContext{Name: name})
		c = &f.Contexts[len(f.Contexts)-1]
	}
	for flag, dst := range map[string]*string{"redis": &c.Redis, "cluster": &c.Cluster, "username": &c.Username,
		"password-env": &c.PasswordEnv, "password-file": &c.PasswordFile, "tls-ca": &c.TLSCA, "tls-cert": &c.TLSCert, "tls-key": &c.TLSKey} {
		if cmd.IsSet(flag) {
			*dst = cmd.String(flag)
		}
	}
	if c.Redis == "" {
		return usagef("context %s needs --redis", name)
	}
	if f.Current == "" {
		f.Current = name
	}
	if err := f.save(path); err != nil {
		return err
	}
	fmt.Fprintf(cmd.Root().Writer, "context %s saved in %s\n", name, path)
	return nil
}
