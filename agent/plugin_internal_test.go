package agent

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/schema"
	"github.com/celeroot/celeroot/streams"
)

// Plugins whose descriptions would make the registration larger than one
// event are neither advertised nor served, and say so; the registration
// then encodes.
func TestInstallKeepsRegistrationWithinOneEvent(t *testing.T) {
	a := &agent{cfg: Config{Hostname: "web1", Role: "webserver", Heartbeat: DefaultHeartbeat, Logger: slog.New(slog.DiscardHandler)},
		m: newMetrics(nil, "test"), src: events.Source{Cluster: "c"}}
	served := map[string]*plugin{}
	big := json.RawMessage(`{"p":{"schema":{"description":"` + strings.Repeat("x", 10<<10) + `"}}}`)
	for i := range 40 {
		name := fmt.Sprintf("plugin-%02d", i)
		served[name] = &plugin{path: "/plugins/" + name, desc: &schema.Plugin{Name: name},
			info: events.Plugin{Name: name, Version: "1", Params: big, Hash: strings.Repeat("a", 64)}}
	}
	a.plugins = &pluginSet{state: pluginState{served: served}}
	ap := a.install(initialConfig())
	if n := len(ap.Plugins); n == 0 || n == 40 {
		t.Fatalf("%d of 40 plugins served, want some but not all", n)
	}
	if _, err := events.Encode(a.registration()); err != nil {
		t.Fatalf("the registration does not encode: %v", err)
	}
	if _, ok := ap.Plugins["plugin-00"]; !ok {
		t.Errorf("plugin-00 not served: the plugins last by name are the ones left out")
	}
	left := 0
	for _, pr := range ap.PluginProblems {
		if strings.Contains(pr.Error, "would make this worker's registration larger than") {
			left++
		}
	}
	if want := min(40-len(ap.Plugins), maxPluginProblems); left < want-1 {
		t.Errorf("%d problems say why a plugin is not served, want about %d: %v", left, want, ap.PluginProblems)
	}
	for name := range ap.Plugins {
		if !slices.Contains(ap.Tasks, name) {
			t.Errorf("served plugin %s is not among the tasks", name)
		}
	}
	for _, name := range sortedKeys(served) {
		if _, ok := ap.Plugins[name]; !ok && slices.Contains(ap.Tasks, name) {
			t.Errorf("plugin %s is not served but is among the tasks", name)
		}
	}
}

func TestBoundProblems(t *testing.T) {
	var problems []events.PluginProblem
	for i := range 40 {
		problems = append(problems, events.PluginProblem{File: fmt.Sprintf("/p/%02d", i), Error: strings.Repeat("é", 400)})
	}
	got := boundProblems(problems)
	if len(got) != maxPluginProblems {
		t.Fatalf("%d problems kept, want %d", len(got), maxPluginProblems)
	}
	if last := got[len(got)-1]; last.Error != "and 9 more plugin problems: see the agent's log" {
		t.Errorf("last problem = %+v", last)
	}
	for _, p := range got[:len(got)-1] {
		if len(p.Error) > maxProblemText+3 || !strings.HasSuffix(p.Error, "...") || !json.Valid([]byte(fmt.Sprintf("%q", p.Error))) {
			t.Errorf("problem text of %d bytes: %q", len(p.Error), p.Error[:20])
		}
	}
	if got := boundProblems(problems[:3]); len(got) != 3 {
		t.Errorf("3 problems bounded to %d", len(got))
	}
}

// A task's process does not inherit the agent's Redis passwords.
func TestChildEnvDropsSecrets(t *testing.T) {
	t.Setenv(streams.EnvPassword, "s3cret")
	t.Setenv(streams.EnvSentinelPassword, "s3cret2")
	t.Setenv("CELEROOT_TEST_KEPT", "yes")
	env := childEnv([]string{"EXTRA=1"})
	joined := strings.Join(env, "\n")
	if strings.Contains(joined, "s3cret") || !slices.Contains(env, "CELEROOT_TEST_KEPT=yes") || env[len(env)-1] != "EXTRA=1" {
		t.Errorf("childEnv = %v", env)
	}
}
