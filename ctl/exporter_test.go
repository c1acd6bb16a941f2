package ctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/ctl"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
	"github.com/goccy/go-yaml"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// scrape GETs a /metrics page, waiting up to 10 s for it to be served.
func scrape(t *testing.T, url string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metricNames returns the names declared by "# TYPE" lines.
func metricNames(page string) map[string]bool {
	names := map[string]bool{}
	for _, l := range strings.Split(page, "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			names[f[2]] = true
		}
	}
	return names
}

// The example dashboard and alert rules parse, and every metric they use
// is served by an agent or by the exporter.
func TestDashboardAndAlertsUseRealMetrics(t *testing.T) {
	srv := streamstest.Single(t)
	cluster := streamstest.ClusterName(t)
	keys, _ := streams.NewKeys(cluster, 0)
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agentDone := make(chan error, 1)
	go func() {
		agentDone <- agent.Run(ctx, srv.Client(t), agent.Config{Keys: keys, Hostname: "web1", Role: "webserver",
			Heartbeat: 300 * time.Millisecond, Block: 200 * time.Millisecond, MetricsListener: al, Projector: true})
	}()
	defer func() { cancel(); <-agentDone }()
	names := metricNames(scrape(t, "http://"+al.Addr().String()+"/metrics"))

	el, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	eaddr := el.Addr().String()
	el.Close()
	t.Setenv("CELEROOT_REDIS_URL", srv.URL)
	t.Setenv("CELEROOT_CLUSTER", cluster)
	exDone := make(chan int, 1)
	go func() {
		exDone <- ctl.Run(ctx, []string{"celeroot", "exporter", "--listen", eaddr}, strings.NewReader(""), io.Discard, io.Discard)
	}()
	defer func() { cancel(); <-exDone }()
	// Per-role series appear once the worker is projected.
	deadline := time.Now().Add(10 * time.Second)
	page := scrape(t, "http://"+eaddr+"/metrics")
	for !strings.Contains(page, "celeroot_cluster_workers{") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		page = scrape(t, "http://"+eaddr+"/metrics")
	}
	for n := range metricNames(page) {
		names[n] = true
	}
	// Labelled series that exist only once there is something to report:
	// a task run, a Redis error, a schedule fired, a config with groups.
	for _, n := range []string{"celeroot_agent_tasks_total", "celeroot_agent_task_duration_seconds",
		"celeroot_agent_redis_errors_total", "celeroot_cluster_schedule_last_fire_timestamp_seconds",
		"celeroot_cluster_desired_workers"} {
		names[n] = true
	}

	var exprs []string
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile("../examples/observability/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	b, err = os.ReadFile("../examples/observability/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("rule %+v lacks a name or an expression", r)
			}
			exprs = append(exprs, r.Expr)
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("only %d expressions found", len(exprs))
	}
	metricRE := regexp.MustCompile(`\b(celeroot_[a-z_]+|process_[a-z_]+)`)
	for _, e := range exprs {
		for _, m := range metricRE.FindAllString(e, -1) {
			base := m
			for _, suf := range []string{"_bucket", "_count", "_sum"} {
				base = strings.TrimSuffix(base, suf)
			}
			if !names[m] && !names[base] {
				t.Errorf("expression %q uses %s, which no agent or exporter serves", e, m)
			}
		}
	}
}

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
