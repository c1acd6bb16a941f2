package ctl_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/celeroot/celeroot/streams/streamstest"
	"github.com/redis/go-redis/v9"
)

type benchFigures map[string]float64

// bench runs a bench scenario with -o json and returns its figures by name.
func runBench(t *testing.T, url string, args ...string) benchFigures {
	t.Helper()
	out, errs, code := runNoEnv(append([]string{"--redis", url, "bench"}, append(args, "-o", "json")...)...)
	if code != 0 {
		t.Fatalf("bench %v: exit %d\n%s", args, code, errs)
	}
	var res []struct {
		Scenario string `json:"scenario"`
		Figures  []struct {
			Name  string  `json:"name"`
			Value float64 `json:"value"`
		} `json:"figures"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 {
		t.Fatalf("bench %v: output %q: %v", args, out, err)
	}
	figs := benchFigures{}
	for _, f := range res[0].Figures {
		figs[f.Name] = f.Value
	}
	return figs
}

// Each scenario runs the real path end to end at a small size, reports
// what it measured, and leaves no key of its namespace behind.
func TestBenchScenarios(t *testing.T) {
	for _, srv := range streamstest.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			figs := runBench(t, srv.URL, "raw", "--tasks", "3000", "--consumers", "2")
			if figs["tasks per second"] <= 0 || figs["Redis commands per task"] < 2 {
				t.Errorf("raw figures = %v; want tasks per second and at least 2 commands per task", figs)
			}
			figs = runBench(t, srv.URL, "throughput", "--tasks", "300", "--agents", "2", "--concurrency", "16")
			if figs["tasks per second"] <= 0 || figs["Redis commands per task"] <= 0 || figs["round trips per task"] <= 0 {
				t.Errorf("throughput figures = %v; want tasks per second, commands and round trips per task", figs)
			}
			// In this process: this test binary cannot run as celeroot (bench.txtar
			// runs the agents in a process of their own).
			figs = runBench(t, srv.URL, "latency", "--rate", "200", "--duration", "1s", "--agents", "2", "--in-process")
			if figs["offered rate"] <= 0 || figs["submit to start p50"] <= 0 ||
				figs["submit to start p50"] > figs["submit to start max"] || figs["submit to start p50"] > figs["submit to result p50"] {
				t.Errorf("latency figures = %v; want ordered percentiles, start before result", figs)
			}
			figs = runBench(t, srv.URL, "fanout", "--workers", "30")
			if figs["targets resolved"] != 30 || figs["job tasks succeeded"] != 30 {
				t.Errorf("fanout figures = %v; want 30 targets, 30 succeeded", figs)
			}
			figs = runBench(t, srv.URL, "fleet", "--workers", "40", "--duration", "2s", "--heartbeat", "500ms")
			if figs["heartbeats observed"] < 1 || figs["cluster status p50"] <= 0 || figs["Redis clients"] < 40 {
				t.Errorf("fleet figures = %v; want heartbeats seen, status timed, a client per worker", figs)
			}
			figs = runBench(t, srv.URL, "rebuild", "--events", "3000")
			// 3000 events: 270 ten-event rounds of 9 task events (3 tasks)
			// and a heartbeat, 100 workers: 900 + 100 records, minus nothing.
			if figs["events per second"] <= 0 || figs["records written"] != 1000 {
				t.Errorf("rebuild figures = %v; want 1000 records (900 tasks, 100 workers)", figs)
			}
			// Nothing of the bench namespaces is left.
			rdb := srv.Client(t)
			ctx := context.Background()
			var mu sync.Mutex
			var left []string
			scan := func(ctx context.Context, c *redis.Client) error {
				keys, err := c.Keys(ctx, "celeroot:bench-*").Result()
				mu.Lock()
				defer mu.Unlock()
				left = append(left, keys...)
				return err
			}
			if cc, ok := rdb.(*redis.ClusterClient); ok {
				if err := cc.ForEachMaster(ctx, scan); err != nil {
					t.Fatal(err)
				}
			} else if err := scan(ctx, rdb.(*redis.Client)); err != nil {
				t.Fatal(err)
			}
			if len(left) > 0 {
				t.Errorf("bench left %d keys behind, such as %s", len(left), strings.Join(left[:min(3, len(left))], ", "))
			}
		})
	}
}
