package schema

import (
	"strings"
	"testing"
	"time"
)

func TestRetentionErrors(t *testing.T) {
	v := newValidator(t)
	src := cluster + "  retention:\n    events: 1m\n    archive: sometimes\n    tasks: 3 days\n"
	_, errs := loadAndValidate(t, v, "bad.yaml", src, seedCatalog)
	want := []wantErr{
		{7, 13, "/spec/retention/events", "retention 1m0s is too short", "at least 10m"},
		{8, 14, "/spec/retention/archive", "sometimes", "required"},
		{9, 12, "/spec/retention/tasks", "3 days", ""},
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:%s", len(errs), len(want), errorStrings(errs))
	}
	for i, w := range want {
		e := errs[i]
		if e.Line != w.line || e.Col != w.col || e.Pointer != w.ptr || !strings.Contains(e.Msg, w.msg) || !strings.Contains(e.Hint, w.hint) {
			t.Errorf("error %d = %q\nwant bad.yaml:%d:%d: %s: ...%s... (hint: ...%s...)", i, e.Error(), w.line, w.col, w.ptr, w.msg, w.hint)
		}
	}
}

// Spelling out the default retention is the same configuration as none;
// a real change shows in the diff with the defaults filled in.
func TestRetentionDefaultsAndDiff(t *testing.T) {
	load := func(src string) *Cluster {
		t.Helper()
		set, errs := loadAndValidate(t, newValidator(t), "c.yaml", src, seedCatalog)
		if len(errs) > 0 {
			t.Fatalf("load: %s", errorStrings(errs))
		}
		return set.Cluster
	}
	plain := load(cluster + "  workers: []\n")
	spelled := load(cluster + "  workers: []\n  retention:\n    events: 168h\n    archive: required\n    heartbeats: 1h\n")
	if Hash(plain) != Hash(spelled) {
		t.Errorf("spelling out the default retention changes the hash")
	}
	if d := Diff(plain, spelled); !d.Empty() {
		t.Errorf("Diff(defaults, spelled-out defaults) = %s, want none", d)
	}
	shorter := load(cluster + "  workers: []\n  retention:\n    events: 24h\n")
	d := Diff(plain, shorter)
	if got, want := d.String(), "~ retention.events: \"168h0m0s\" -> \"24h0m0s\"\n"; got != want {
		t.Errorf("Diff = %q, want %q", got, want)
	}
	if got := shorter.Spec.Retention.WithDefaults(); got.Events.Duration != 24*time.Hour || got.Tasks.Duration != DefaultTaskRetention || got.Archive != ArchiveRequired {
		t.Errorf("WithDefaults() = %+v", got)
	}
}
