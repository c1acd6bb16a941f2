package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/oklog/ulid/v2"
)

func testSource() Source {
	var n uint64
	return Source{
		Cluster: "prod",
		Actor:   "cli:alice",
		NewID: func() ulid.ULID {
			n++
			var id ulid.ULID
			_ = id.SetTime(1700000000000)
			id[15] = byte(n)
			return id
		},
		Now: func() time.Time { return time.Date(2026, 11, 29, 10, 0, 0, 123456789, time.UTC) },
	}
}

func samplePayloads() []Payload {
	return []Payload{
		WorkerRegistered{Hostname: "web1", Role: "webserver", Labels: map[string]string{"tier": "web"},
			Version: "1.0.0", Tasks: []string{"command"}, PID: 42, HeartbeatMS: 2000},
		WorkerRegistered{Hostname: "web2", Role: "webserver", Tasks: []string{"command", "disk-usage"}, HeartbeatMS: 2000,
			Plugins: []Plugin{{Name: "disk-usage", Version: "1.2.0", Description: "Disk usage of a path.",
				Params: json.RawMessage(`{"path":{"required":true,"schema":{"pattern":"^/","type":"string"}}}`), TimeoutMS: 30000,
				Idempotent: true, Check: true, Hash: strings.Repeat("cd", 32)}},
			PluginProblems: []PluginProblem{{File: "/etc/celeroot/plugins/broken", Error: "describe timed out after 5s"}}},
		WorkerHeartbeat{Hostname: "web1", Seq: 7, Running: 2, HeartbeatMS: 2000, Draining: true, Revision: 4},
		WorkerLeft{Hostname: "web1", Reason: "SIGTERM"},
		TaskSubmitted{TaskID: "01J", JobID: "01K", Task: "command", Argv: []string{"uname", "-a"},
			Params: map[string]any{"package": "nginx; rm -rf /"}, Route: RouteQueue, Target: "webserver", TimeoutMS: 5000,
			MaxAttempts: 3, BackoffMS: 1000, Deadline: time.Date(2026, 11, 29, 11, 0, 0, 0, time.UTC), IdempotencyKey: "deploy-42", Check: true},
		TaskStarted{TaskID: "01J", Attempt: 2, Worker: "web2"},
		TaskLog{TaskID: "01J", Attempt: 2, Stream: "stderr", Seq: 3, Data: "line\n\x00bin\u00e4ry", Truncated: true},
		TaskFinished{TaskID: "01J", Attempt: 2, Worker: "web2", Outcome: Failed, ExitCode: 127,
			Error: "exec: \"nope\": executable file not found in $PATH", DurationMS: 12, Stale: true, WillRetry: true},
		TaskCancel{TaskID: "01J", Reason: "wrong host"},
		WorkerDrain{Hostname: "web1", Reason: "kernel upgrade"},
		WorkerExpected{Hostname: "web3", Role: "webserver", Labels: map[string]string{"tier": "web"}},
		WorkerRemoved{Hostname: "web3", Reason: "decommissioned"},
		TaskEnded{TaskID: "01J", State: EndExpired, Reason: "deadline passed"},
		TaskRedriven{TaskID: "01J", NewTaskID: "01K"},
		TaskDeadLettered{TaskID: "01J", Reason: "delivered 5 times without a result", Deliveries: 5, Stream: "s", EntryID: "1-0"},
		ConfigApplied{Revision: 3, Document: `{"kind":"Cluster"}`, Hash: strings.Repeat("ab", 32), Message: "more web", RollbackOf: 1},
		ScheduleFired{Schedule: "backup-configs", SlotMS: 1700000000000, Task: "backup-configurations",
			Params: map[string]any{"dest": "/backup"}, Selector: map[string]string{"role": "database"}, Manual: true,
			Revision: 4, JobID: "01K", PreviousJob: "01J", Overlap: "skip", SplayMS: 30000},
		ScheduleFired{Schedule: "security-updates", SlotMS: 1700000000000, Task: "check-security-updates", All: true, JobID: "01K"},
		SchedulePaused{Schedule: "backup-configs"},
		ScheduleResumed{Schedule: "backup-configs"},
		ScheduleSkipped{Schedule: "backup-configs", SlotMS: 1700000000000, Reason: "previous run still running", JobID: "01K"},
		ConfigAnnounced{Revision: 4},
	}
}

// toValues mimics what go-redis returns for an entry: a map of strings.
func toValues(t *testing.T, fields []any) map[string]any {
	t.Helper()
	if len(fields)%2 != 0 {
		t.Fatalf("odd number of fields: %d", len(fields))
	}
	m := make(map[string]any, len(fields)/2)
	for i := 0; i < len(fields); i += 2 {
		m[fields[i].(string)] = fmt.Sprint(fields[i+1])
	}
	return m
}

func TestRoundTrip(t *testing.T) {
	src := testSource()
	for _, p := range samplePayloads() {
		t.Run(p.EventType(), func(t *testing.T) {
			in := src.New(p, WithCorrelation("01J"), WithCausation("01H"))
			fields, err := Encode(in)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			out, err := Decode(toValues(t, fields))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(in, out); diff != "" {
				t.Errorf("Decode(Encode(e)) mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEveryTypeHasSample(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range samplePayloads() {
		seen[p.EventType()] = true
	}
	for _, typ := range Types() {
		if !seen[typ] {
			t.Errorf("type %s has no round-trip sample", typ)
		}
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	src := testSource()
	tests := []struct {
		name string
		p    Payload
		want string
	}{
		{"missing hostname", WorkerHeartbeat{HeartbeatMS: 1}, "hostname is required"},
		{"plugin without hash", WorkerRegistered{Hostname: "w", Role: "r", HeartbeatMS: 1,
			Plugins: []Plugin{{Name: "p", Version: "1"}}}, "plugins[0]: hash must be 64 hex digits"},
		{"plugin with bad name", WorkerRegistered{Hostname: "w", Role: "r", HeartbeatMS: 1,
			Plugins: []Plugin{{Name: "a b", Version: "1", Hash: strings.Repeat("0", 64)}}}, `plugins[0]: name "a b"`},
		{"plugin problem without error", WorkerRegistered{Hostname: "w", Role: "r", HeartbeatMS: 1,
			PluginProblems: []PluginProblem{{File: "/x"}}}, "plugin_problems[0]: file and error are required"},
		{"bad outcome", TaskFinished{TaskID: "x", Attempt: 1, Worker: "w", Outcome: "great"}, `outcome "great"`},
		{"zero attempt", TaskStarted{TaskID: "x", Worker: "w"}, "attempt must be > 0"},
		{"bad route", TaskSubmitted{TaskID: "x", Task: "t", Route: "bus", Target: "w"}, `route "bus"`},
		{"invalid utf-8", TaskLog{TaskID: "x", Attempt: 1, Stream: "stdout", Data: "\xff"}, "not valid UTF-8"},
		{"too large", TaskLog{TaskID: "x", Attempt: 1, Stream: "stdout", Data: strings.Repeat("a", MaxPayloadBytes)}, "payload too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Encode(src.New(tt.p))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Encode(%v) error = %v, want containing %q", tt.p, err, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	good, err := Encode(testSource().New(TaskStarted{TaskID: "t1", Attempt: 1, Worker: "w"}))
	if err != nil {
		t.Fatal(err)
	}
	with := func(k string, v any) map[string]any {
		m := toValues(t, good)
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name   string
		values map[string]any
		kind   error
		field  string
		want   string
	}{
		{"empty", map[string]any{}, ErrMalformed, "id", "missing"},
		{"bad id", with("id", "not-a-ulid"), ErrMalformed, "id", "not a ULID"},
		{"non-string field", with("cluster", 12), ErrMalformed, "cluster", "type int"},
		{"missing type", with("type", nil), ErrMalformed, "type", "missing"},
		{"unversioned type", with("type", "task.started"), ErrMalformed, "type", "not a versioned type"},
		{"unknown version", with("type", "task.started.v9"), ErrUnsupportedVersion, "type", "knows v1"},
		{"unknown type", with("type", "gizmo.exploded.v1"), ErrUnknownType, "type", "gizmo.exploded.v1"},
		{"bad time", with("time", "yesterday"), ErrMalformed, "time", "RFC 3339"},
		{"missing cluster", with("cluster", nil), ErrMalformed, "cluster", "missing"},
		{"missing data", with("data", nil), ErrMalformed, "data", "missing"},
		{"bad json", with("data", "{"), ErrMalformed, "data", "invalid JSON"},
		{"trailing json", with("data", `{"task_id":"t","attempt":1,"worker":"w"} {}`), ErrMalformed, "data", "trailing"},
		{"wrong json type", with("data", `{"task_id":1}`), ErrMalformed, "data", "invalid JSON"},
		{"fails validation", with("data", `{"task_id":"t","attempt":0,"worker":"w"}`), ErrMalformed, "data", "attempt must be > 0"},
		{"too large", with("data", strings.Repeat(" ", MaxPayloadBytes+1)), ErrTooLarge, "data", "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.values)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("Decode error = %v (%T), want *DecodeError", err, err)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("Decode error kind = %v, want %v", de.Kind, tt.kind)
			}
			if de.Field != tt.field {
				t.Errorf("Decode error field = %q, want %q", de.Field, tt.field)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode error = %q, want containing %q", err, tt.want)
			}
		})
	}
}

func TestPayloadJSONIsStable(t *testing.T) {
	// The JSON field names are part of the stored format: renaming one breaks
	// every stream written before. This pins them.
	b, err := json.Marshal(TaskFinished{TaskID: "t", Attempt: 1, Worker: "w", Outcome: Succeeded, DurationMS: 5})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"task_id":"t","attempt":1,"worker":"w","outcome":"succeeded","exit_code":0,"duration_ms":5}`
	if string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
}

func FuzzDecode(f *testing.F) {
	for _, p := range samplePayloads() {
		fields, err := Encode(testSource().New(p))
		if err != nil {
			f.Fatal(err)
		}
		v := map[string]string{}
		for i := 0; i < len(fields); i += 2 {
			v[fields[i].(string)] = fmt.Sprint(fields[i+1])
		}
		f.Add(v["id"], v["type"], v["time"], v["cluster"], v["data"])
	}
	f.Fuzz(func(t *testing.T, id, typ, tm, cluster, data string) {
		values := map[string]any{"id": id, "type": typ, "time": tm, "cluster": cluster, "data": data}
		e, err := Decode(values)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("Decode error %v is not a *DecodeError", err)
			}
			return
		}
		// Whatever decodes must encode again and decode to the same envelope.
		fields, err := Encode(e)
		if err != nil {
			t.Fatalf("Encode after successful Decode: %v", err)
		}
		m := map[string]any{}
		for i := 0; i < len(fields); i += 2 {
			m[fields[i].(string)] = fields[i+1]
		}
		again, err := Decode(m)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(x))): %v", err)
		}
		if again.ID != e.ID || again.Type != e.Type || !again.Time.Equal(e.Time) {
			t.Fatalf("re-decode changed the envelope: %v vs %v", again, e)
		}
	})
}

// FuzzParseTarget checks that a target parses into exactly one kind, with a
// valid name, and that its canonical form parses back to the same target.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"all", "role:all", "role:webserver", "web1", "web-1.example.com", "role:", "role:role:x", "ROLE:x", " all", "a..b", "-x", strings.Repeat("a", 254)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseTarget(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("ParseTarget(%q): empty error", s)
			}
			return
		}
		kinds := 0
		for _, set := range []bool{tg.All, tg.Role != "", tg.Host != ""} {
			if set {
				kinds++
			}
		}
		if kinds != 1 {
			t.Fatalf("ParseTarget(%q) = %+v: want exactly one of all, role, host", s, tg)
		}
		if tg.Role != "" && ValidateName("role", tg.Role) != nil || tg.Host != "" && ValidateName("hostname", tg.Host) != nil {
			t.Fatalf("ParseTarget(%q) = %+v: invalid name accepted", s, tg)
		}
		if tg.Host == "all" || strings.HasPrefix(tg.Host, "role:") {
			t.Fatalf("ParseTarget(%q) = %+v: a fan-out taken for a hostname", s, tg)
		}
		back, err := ParseTarget(tg.String())
		if err != nil || back != tg {
			t.Fatalf("ParseTarget(%q) = %+v; its form %q parses to %+v, %v", s, tg, tg.String(), back, err)
		}
	})
}
