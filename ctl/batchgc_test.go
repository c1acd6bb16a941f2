package ctl

import (
	"runtime/debug"
	"testing"
)

// A batch command collects less often than Go's default, unless $GOGC
// says how often, and puts everything back afterwards.
func TestBatchGC(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	limit := debug.SetMemoryLimit(-1)

	restore := batchGC()
	if got := debug.SetGCPercent(-1); got != batchGCPercent {
		t.Errorf("GC percent during the batch = %d, want %d", got, batchGCPercent)
	}
	debug.SetGCPercent(batchGCPercent)
	if total := memTotal(); total > 0 {
		if got := debug.SetMemoryLimit(-1); got > total/2 {
			t.Errorf("memory limit during the batch = %d, want at most half of %d", got, total)
		}
	}
	restore()
	if got := debug.SetGCPercent(-1); got != 100 {
		t.Errorf("GC percent after the batch = %d, want 100 again", got)
	}
	debug.SetGCPercent(100)
	if got := debug.SetMemoryLimit(-1); got != limit {
		t.Errorf("memory limit after the batch = %d, want %d again", got, limit)
	}

	t.Setenv("GOGC", "50")
	debug.SetGCPercent(50)
	batchGC()()
	if got := debug.SetGCPercent(-1); got != 50 {
		t.Errorf("with $GOGC=50 the GC percent = %d, want 50 left alone", got)
	}
}
