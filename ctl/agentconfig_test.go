package ctl_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/ctl"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
)

// celeroot agent --config reads its settings from a file; flags win; an
// unknown setting is refused by name.
func TestAgentConfigFile(t *testing.T) {
	srv := streamstest.Single(t)
	cluster := streamstest.ClusterName(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "agent.yaml")
	plugins := filepath.Join(dir, "plugins")
	os.Mkdir(plugins, 0o755)
	os.WriteFile(filepath.Join(plugins, "hello"), []byte("#!/bin/sh\necho '{\"protocol\": 1, \"name\": \"hello\", \"version\": \"0.1\"}'\n"), 0o755)
	os.WriteFile(file, []byte("redis: "+srv.URL+"\ncluster: "+cluster+"\nhostname: fromfile\nrole: webserver\nlabels: {tier: web}\nmetrics-listen: \"off\"\nheartbeat: 500ms\n"+
		"plugin-dir: "+plugins+"\nplugin-rescan: 1m\n"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var errb bytes.Buffer
	go func() {
		done <- ctl.Run(ctx, []string{"celeroot", "agent", "--config", file, "--hostname", "fromflag"}, strings.NewReader(""), &errb, &errb)
	}()
	keys, _ := streams.NewKeys(cluster, 0)
	store := projections.NewStore(srv.Client(t), keys)
	deadline := time.Now().Add(10 * time.Second)
	var w projections.Worker
	var err error
	for {
		if w, err = store.Worker(context.Background(), "fromflag"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("agent from --config did not register: %v\n%s", err, errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("agent exit %d: %s", code, errb.String())
	}
	if w.Role != "webserver" || w.Labels["tier"] != "web" || w.HeartbeatInterval != 500*time.Millisecond {
		t.Errorf("worker = role %q labels %v heartbeat %v; want the file's settings", w.Role, w.Labels, w.HeartbeatInterval)
	}
	if len(w.Plugins) != 1 || w.Plugins[0].Name != "hello" {
		t.Errorf("worker plugins = %+v, want hello from the file's plugin-dir", w.Plugins)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("role: web\nconcurency: 4\n"), 0o644)
	if _, errOut, code := run(t, nil, "agent", "--config", bad); code != 1 || !strings.Contains(errOut, `unknown setting "concurency"`) {
		t.Errorf("bad config: exit %d %s", code, errOut)
	}
}

// An address for /metrics that another process holds fails the agent at
// once, before it registers, saying what to do.
func TestAgentMetricsAddressInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()
	_, errOut, code := runNoEnv("--redis", "redis://127.0.0.1:1", "agent", "--role", "webserver", "--hostname", "web1", "--metrics-listen", addr)
	want := "celeroot: agent: --metrics-listen " + addr + ": listen tcp " + addr + ": bind: address already in use (another agent on this host? give another address, or off)\n"
	if code != 1 || errOut != want {
		t.Errorf("agent with a busy metrics address: exit %d, stderr %q; want exit 1 and %q", code, errOut, want)
	}
}
