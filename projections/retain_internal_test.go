package projections

import (
	"testing"
)

// recordTaskEnd, read from a record's fields, agrees with taskEnd of the
// task view built from the whole record.
func TestRecordTaskEnd(t *testing.T) {
	at := func(s string) string { return "2026-12-03T10:00:0" + s + "Z" }
	for name, r := range map[string]Record{
		"waiting":             {"submitted_at": at("0")},
		"running":             {"submitted_at": at("0"), "a1.started_at": at("1")},
		"retrying":            {"submitted_at": at("0"), "finished_at": at("2"), "a1.outcome": "failed"},
		"succeeded":           {"submitted_at": at("0"), "finished_at": at("2"), "outcome": "succeeded"},
		"dead after a finish": {"finished_at": at("2"), "dead_at": at("5"), "dead_reason": "x"},
		"expired":             {"ended_at": at("3"), "ended_state": "expired"},
		"cancelled, later":    {"outcome": "cancelled", "finished_at": at("4"), "ended_at": at("3")},
		"empty":               {},
	} {
		if got, want := recordTaskEnd(r), taskEnd(TaskFromRecord("t", r)); !got.Equal(want) {
			t.Errorf("%s: recordTaskEnd = %v, taskEnd = %v", name, got, want)
		}
	}
}
