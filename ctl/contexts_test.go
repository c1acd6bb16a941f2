package ctl_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/celeroot/celeroot/streams/streamstest"
)

// Contexts name a Redis, a cluster and where the password comes from;
// flags override them.
func TestContexts(t *testing.T) {
	srv := streamstest.NewSingle(t, streamstest.WithPassword("s3cret"))
	cluster := streamstest.ClusterName(t)
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	t.Setenv("CELEROOT_CONFIG", cfg)
	t.Setenv("CTX_TEST_PASSWORD", "s3cret")
	os.Unsetenv("CELEROOT_REDIS_URL")
	os.Unsetenv("CELEROOT_CLUSTER")
	os.Unsetenv("CELEROOT_REDIS_PASSWORD")

	if _, errOut, code := run(t, nil, "context", "set", "bad", "--redis", "redis://:pw@"+srv.Addr()); code != 2 || !strings.Contains(errOut, "keep the password out of the URL") {
		t.Errorf("context with a password in the URL: exit %d %s", code, errOut)
	}
	out, errOut, code := run(t, nil, "context", "set", "test", "--redis", "redis://"+srv.Addr(), "--cluster", cluster, "--password-env", "CTX_TEST_PASSWORD")
	if code != 0 || !strings.Contains(out, "context test saved") {
		t.Fatalf("context set: exit %d %s%s", code, out, errOut)
	}
	b, _ := os.ReadFile(cfg)
	if strings.Contains(string(b), "s3cret") {
		t.Errorf("the contexts file holds the password:\n%s", b)
	}
	run(t, nil, "context", "set", "other", "--redis", "redis://127.0.0.1:1")
	if out, _, _ = run(t, nil, "context", "list"); !strings.Contains(out, "*        test") || !strings.Contains(out, "$CTX_TEST_PASSWORD") {
		t.Errorf("context list:\n%s", out)
	}
	// The current context is used: right Redis, password from its variable.
	if out, errOut, code = run(t, nil, "cluster", "init"); code != 0 || !strings.Contains(out, "initialized cluster "+cluster) {
		t.Fatalf("init through the context: exit %d %s%s", code, out, errOut)
	}
	if _, errOut, code = run(t, nil, "--context", "other", "workers", "list"); code != 1 || !strings.Contains(errOut, "127.0.0.1:1") {
		t.Errorf("--context other: exit %d %s", code, errOut)
	}
	if _, errOut, code = run(t, nil, "--context", "nope", "workers", "list"); code != 2 || !strings.Contains(errOut, "no such context") {
		t.Errorf("--context nope: exit %d %s", code, errOut)
	}
	if out, _, code = run(t, nil, "context", "use", "other"); code != 0 {
		t.Errorf("context use: %s", out)
	}
	// Flags win over the current context (and then the password comes
	// from the environment, not from the context).
	if out, errOut, code = run(t, []string{"CELEROOT_REDIS_PASSWORD=s3cret"}, "--redis", "redis://"+srv.Addr(), "--cluster", cluster, "--context", "test", "cluster", "init"); code != 0 || !strings.Contains(out, "already initialized") {
		t.Errorf("flags over context: exit %d %s%s", code, out, errOut)
	}
}
