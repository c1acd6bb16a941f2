package streams_test

import (
	"testing"

	"github.com/celeroot/celeroot/streams"
)

func TestProjectionVersionOf(t *testing.T) {
	k, _ := streams.NewKeys("prod", 8)
	v3 := k.WithProjections(3)
	tests := []struct {
		key     string
		version int
		ok      bool
	}{
		{k.TaskProjection("01J00"), 0, true},
		{v3.TaskProjection("01J00"), 3, true},
		{v3.TaskProjection("x.v2"), 3, true}, // a dot in the id is not a version
		{k.TaskProjection("x.v2"), 0, true},
		{k.WorkerProjection("web1"), 0, true},
		{v3.WorkerProjection("web.v1"), 3, true},
		{v3.JobProjection("j1"), 3, true},
		{k.WorkerIndex(), 0, true},
		{v3.TaskIndex(), 3, true},
		{k.TaskFence("01J00"), 0, false},
		{k.TaskLog("01J00"), 0, false},
		{k.EventShard(2), 0, false},
		{k.HeartbeatShard(2), 0, false},
		{k.ArchiveState(2), 0, false},
		{k.Meta(), 0, false},
		{"celeroot:other:{w:web1}:worker", 0, false},
		{k.Prefix() + "{w:web1}:worker.v0", 0, false},
	}
	for _, tt := range tests {
		v, ok := k.ProjectionVersionOf(tt.key)
		if v != tt.version || ok != tt.ok {
			t.Errorf("ProjectionVersionOf(%q) = %d, %v; want %d, %v", tt.key, v, ok, tt.version, tt.ok)
		}
	}
	if g := v3.ProjectorGroup(); g != "projector.v3" {
		t.Errorf("ProjectorGroup() = %q", g)
	}
	for _, tt := range []struct {
		group string
		v     int
		ok    bool
	}{{"projector", 0, true}, {"projector.v3", 3, true}, {"projector.v03", 0, false}, {"projector.v0", 0, false}, {"agents", 0, false}} {
		if v, ok := streams.IsProjectorGroup(tt.group); v != tt.v || ok != tt.ok {
			t.Errorf("IsProjectorGroup(%q) = %d, %v; want %d, %v", tt.group, v, ok, tt.v, tt.ok)
		}
	}
}

func TestStartsBefore(t *testing.T) {
	tests := []struct {
		from, id string
		want     bool
	}{
		{"-", "5-0", true},
		{"5-0", "5-0", false},
		{"4-9", "5-0", true},
		{"5", "5-3", true},
		{"6", "5-3", false},
		{"(5-2", "5-3", false},
		{"(5-1", "5-3", true},
		{"(6-0", "5-3", false},
	}
	for _, tt := range tests {
		if got := streams.StartsBefore(tt.from, tt.id); got != tt.want {
			t.Errorf("StartsBefore(%q, %q) = %v, want %v", tt.from, tt.id, got, tt.want)
		}
	}
}
