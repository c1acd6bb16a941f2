package ctl_test

import (
	"context"
	"strings"
	"testing"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/streams"
	"github.com/celeroot/celeroot/streams/streamstest"
)

// After a mixed run, a fresh fold of the history equals the projections
// built incrementally; a damaged record is found and rebuilt.
func TestProjectionsVerifyAndRebuild(t *testing.T) {
	for _, srv := range streamstest.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			cluster := streamstest.ClusterName(t)
			startAgents(t, srv, cluster, "web1", "web2")
			env := []string{"CELEROOT_REDIS_URL=" + srv.URL, "CELEROOT_CLUSTER=" + cluster}
			run(t, env, "task", "run", "command", "--target", "all", "--wait", "--", "true")
			run(t, env, "task", "run", "command", "--queue", "webserver", "--max-attempts", "2", "--retry-backoff", "10ms", "--wait", "--", "false")
			out, _, _ := run(t, env, "task", "run", "command", "--target", "web2", "--wait", "--", "echo", "x")
			id := strings.Fields(out)[0]

			out, errOut, code := run(t, env, "projections", "verify")
			if code != 0 || !strings.Contains(out, "records match the history") {
				t.Fatalf("verify after the run: exit %d\n%s%s", code, out, errOut)
			}
			keys, _ := streams.NewKeys(cluster, 0)
			rdb := srv.Client(t)
			if err := rdb.HSet(context.Background(), keys.TaskProjection(id), "outcome", "failed").Err(); err != nil {
				t.Fatal(err)
			}
			out, errOut, code = run(t, env, "projections", "verify")
			if code != 1 || !strings.Contains(out, "task "+id+": outcome: stored \"failed\", history says \"succeeded\"") {
				t.Fatalf("verify of a damaged record: exit %d\n%s%s", code, out, errOut)
			}
			if out, errOut, code = run(t, env, "projections", "rebuild"); code != 0 || !strings.Contains(out, "rebuilt") {
				t.Fatalf("rebuild: exit %d\n%s%s", code, out, errOut)
			}
			if out, errOut, code = run(t, env, "projections", "verify"); code != 0 {
				t.Fatalf("verify after rebuild: exit %d\n%s%s", code, out, errOut)
			}
			if out, _, _ = run(t, env, "task", "status", id); !strings.Contains(out, "State:      succeeded") {
				t.Errorf("task after rebuild:\n%s", out)
			}
		})
	}
}

// events verify passes after a mixed run and names a task with two
// outcomes.
func TestEventsVerify(t *testing.T) {
	srv := streamstest.Single(t)
	cluster := streamstest.ClusterName(t)
	startAgents(t, srv, cluster, "web1", "web2")
	env := []string{"CELEROOT_REDIS_URL=" + srv.URL, "CELEROOT_CLUSTER=" + cluster}
	run(t, env, "task", "run", "command", "--target", "all", "--wait", "--", "true")
	run(t, env, "task", "run", "command", "--queue", "webserver", "--max-attempts", "2", "--retry-backoff", "10ms", "--wait", "--", "false")
	out, _, _ := run(t, env, "task", "run", "command", "--target", "web1", "--wait", "--", "true")
	id := strings.Fields(out)[0]
	out, errOut, code := run(t, env, "events", "verify")
	if code != 0 || !strings.Contains(out, "tasks: 4 (1 failed, 3 succeeded; 0 open)") {
		t.Fatalf("verify: exit %d\n%s%s", code, out, errOut)
	}
	// A second outcome written behind the fence's back is a violation.
	keys, _ := streams.NewKeys(cluster, 0)
	log := streams.NewLog(srv.Client(t), keys)
	dup := events.Source{Cluster: cluster, Actor: "test"}.New(events.TaskFinished{TaskID: id, Attempt: 1, Worker: "web1", Outcome: events.Failed})
	if _, err := log.Record(context.Background(), id, dup); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = run(t, env, "events", "verify")
	if code != 1 || !strings.Contains(out, "VIOLATION: task "+id+": 2 outcomes recorded") {
		t.Fatalf("verify with two outcomes: exit %d\n%s%s", code, out, errOut)
	}
}
