package schema

import (
	"strings"
	"testing"
	"time"
)

func TestQueueRole(t *testing.T) {
	tests := []struct {
		queue, role string
		any         bool
	}{
		{"webserver_queue", "webserver", false},
		{"database_queue", "database", false},
		{"web_server_queue", "web_server", false},
		{"all_queue", "", true},
		{"webservers", "", false},
		{"_queue", "", false},
	}
	for _, tt := range tests {
		role, any := QueueRole(tt.queue)
		if role != tt.role || any != tt.any {
			t.Errorf("QueueRole(%q) = %q, %v; want %q, %v", tt.queue, role, any, tt.role, tt.any)
		}
	}
}

func TestQueueFor(t *testing.T) {
	q := Queues{
		"webserver_queue": {"webserver_tasks.*"},
		"database_queue":  {"database_tasks.*", "webserver_tasks.backup"},
		"all_queue":       {"system_tasks.*", "*"},
	}
	tests := []struct {
		task, queue string
		ok          bool
	}{
		{"webserver_tasks.reload", "webserver_queue", true},
		{"webserver_tasks.backup", "database_queue", true}, // exact name beats a glob
		{"database_tasks.vacuum", "database_queue", true},  // longer pattern beats "*"
		{"system_tasks.reboot", "all_queue", true},
		{"anything", "all_queue", true},
	}
	for _, tt := range tests {
		queue, ok := q.QueueFor(tt.task)
		if queue != tt.queue || ok != tt.ok {
			t.Errorf("QueueFor(%q) = %q, %v; want %q, %v", tt.task, queue, ok, tt.queue, tt.ok)
		}
	}
	if queue, ok := (Queues{"a_queue": {"x.*"}}).QueueFor("y"); ok {
		t.Errorf("QueueFor(unrouted) = %q, true", queue)
	}
}

func TestScheduleNext(t *testing.T) {
	s := Schedule{Cron: "0 2 * * *", Timezone: "Europe/Paris"}
	after := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	got, err := s.Next(after)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC) // 02:00 in Paris (CEST, UTC+2)
	if !got.Equal(want) {
		t.Errorf("Next(%v) = %v, want %v", after, got, want)
	}
	if _, err := (&Schedule{Cron: "@daily", Timezone: "Local"}).Next(after); err == nil {
		t.Errorf("Next with timezone Local succeeded")
	}
	if _, err := (&Schedule{Cron: "TZ=UTC"}).Next(after); err == nil {
		t.Errorf("Next with a TZ= prefix succeeded")
	}
}

func TestParseCron(t *testing.T) {
	good := []string{"0 2 * * *", "*/5 * * * *", "0 3 * * 0", "0 0 1 jan *", "0 9 * * mon-fri", "@daily", "@hourly", "@yearly", " 0 2 * * * ", "0 0 29 2 *"}
	for _, e := range good {
		if _, err := parseCron(e); err != nil {
			t.Errorf("parseCron(%q) = %v", e, err)
		}
	}
	bad := map[string]string{
		"":                      "empty",
		"61 * * * *":            "above maximum",
		"* * *":                 "expected 5 fields",
		"0 0 0 * * *":           "seconds are not supported",
		"@every 5m":             "@every is not supported",
		"@often":                "unknown descriptor",
		"TZ=UTC":                "time zone prefixes",
		"CRON_TZ=UTC 0 * * * *": "time zone prefixes",
		"0 0 31 2 *":            "never fires",
		"*/0 * * * *":           "should be a positive number",
		"5-1 * * * *":           "beyond end of range",
	}
	for e, want := range bad {
		if _, err := parseCron(e); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseCron(%q) = %v, want error containing %q", e, err, want)
		}
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "cluster.yaml", Line: 12, Col: 7, Pointer: "/spec/workers/0/replicas", Msg: "must be >= 0, got -1", Hint: "use 0 or more"},
			"cluster.yaml:12:7: /spec/workers/0/replicas: must be >= 0, got -1 (hint: use 0 or more)"},
		{Error{File: "big.yaml", Msg: "too large"}, "big.yaml: too large"},
		{Error{Pointer: "/params/package", Msg: "bad"}, "/params/package: bad"},
		{Error{File: "a.yaml", Line: 1, Col: 1, Msg: "missing kind"}, "a.yaml:1:1: missing kind"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}
