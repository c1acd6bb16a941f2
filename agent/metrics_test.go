package agent_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/streams/streamstest"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A scrape after a known workload (3 succeeded, 2 failed, one reclaim)
// shows it; the metrics pass promlint; /readyz follows Redis going away
// and coming back.
func TestMetricsAndHealth(t *testing.T) {
	srv := streamstest.NewSingle(t)
	fx := newFixture(t, srv)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + l.Addr().String()
	id := fx.submit(events.RouteQueue, "webserver", time.Minute, "true")
	fx.zombie("web9", "webserver") // dies holding the entry: web1 reclaims it
	fx.start("web1", "webserver", func(c *agent.Config) {
		c.MetricsListener = l
		c.ReclaimIdle = 600 * time.Millisecond
		c.Version = "v9.9.9"
	})
	ids := []string{id}
	for range 2 {
		ids = append(ids, fx.submit(events.RouteWorker, "web1", time.Minute, "true"))
	}
	for range 2 {
		ids = append(ids, fx.submit(events.RouteWorker, "web1", time.Minute, "false"))
	}
	for _, id := range ids {
		fx.wait(id)
	}
	time.Sleep(300 * time.Millisecond) // the last heartbeat's gauges
	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`celeroot_agent_tasks_total{outcome="succeeded",task="command"} 3`,
		`celeroot_agent_tasks_total{outcome="failed",task="command"} 2`,
		`celeroot_agent_reclaims_total 1`,
		`celeroot_agent_task_attempts_total 5`,
		`celeroot_agent_task_duration_seconds_count{task="command"} 5`,
		`celeroot_agent_task_queue_wait_seconds_count`,
		`celeroot_agent_heartbeats_total`,
		`celeroot_agent_redis_command_duration_seconds_count{command="script"}`,
		`celeroot_agent_config_revision 0`,
		`celeroot_agent_stream_pending_entries{stream="queue"} 0`,
		`celeroot_build_info{goversion="go`,
		`version="v9.9.9"} 1`,
		`go_goroutines`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "celeroot_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d %s, want 200", code, body)
	}
	srv.Stop(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := get(t, base+"/readyz")
		if code == 503 && strings.Contains(body, "redis") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %q 5 s after Redis stopped", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	srv.Start(t)
	deadline = time.Now().Add(10 * time.Second)
	for {
		if code, _ := get(t, base+"/readyz"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz not ready again 10 s after Redis came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
