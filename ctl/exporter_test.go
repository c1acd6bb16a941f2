package ctl_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/ctl"
	"github.com/celeroot/celeroot/streams/streamstest"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// The exporter serves the fleet as one scrape target, promlint-clean.
func TestExporter(t *testing.T) {
	srv := streamstest.Single(t)
	cluster := streamstest.ClusterName(t)
	startAgents(t, srv, cluster, "web1", "web2")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	t.Setenv("CELEROOT_REDIS_URL", srv.URL)
	t.Setenv("CELEROOT_CLUSTER", cluster)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var errb bytes.Buffer
	go func() {
		done <- ctl.Run(ctx, []string{"celeroot", "exporter", "--listen", addr}, strings.NewReader(""), io.Discard, &errb)
	}()
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exporter did not serve: %v (%s)", err, errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{
		"celeroot_cluster_exporter_up 1",
		`celeroot_cluster_workers{role="webserver",state="healthy"} 2`,
		`celeroot_cluster_queue_lag_entries{role="webserver"} 0`,
		"celeroot_cluster_dead_letters 0",
		"celeroot_cluster_config_revision 0",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exporter lacks %q:\n%s", want, body)
		}
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exporter exit %d: %s", code, errb.String())
	}
}
