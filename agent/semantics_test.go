package agent_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/projections"
	"github.com/celeroot/celeroot/streams"
	"github.com/oklog/ulid/v2"
)

func (fx *fixture) submitWith(sub events.TaskSubmitted) string {
	fx.t.Helper()
	if sub.TaskID == "" {
		sub.TaskID = ulid.Make().String()
	}
	if sub.Task == "" {
		sub.Task = "command"
	}
	if _, err := fx.log.Submit(context.Background(), events.Source{Cluster: fx.keys.Cluster, Actor: "test"}.New(sub)); err != nil {
		fx.t.Fatal(err)
	}
	return sub.TaskID
}

func TestRetriesThenDeadLetter(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		fx.start("web1", "webserver", nil)
		id := fx.submitWith(events.TaskSubmitted{Route: events.RouteWorker, Target: "web1", Argv: []string{"sh", "-c", "echo try; exit 7"},
			MaxAttempts: 3, BackoffMS: 50})
		task := fx.wait(id)
		if task.Outcome != events.Failed || task.ExitCode != 7 || len(task.Attempts) != 3 {
			t.Fatalf("task = %s exit %d after %d attempts; want failed, 7, 3 attempts", task.Outcome, task.ExitCode, len(task.Attempts))
		}
		for i, a := range task.Attempts {
			if a.Number != int64(i+1) || a.WillRetry != (i < 2) || a.Outcome != events.Failed {
				t.Errorf("attempt %d = %+v, want number %d, will_retry %v", i, a, i+1, i < 2)
			}
		}
		if stdout, _, _ := fx.output(id); stdout != "try\ntry\ntry\n" {
			t.Errorf("output = %q, want three tries", stdout)
		}
		dead, err := streams.DeadLetters(context.Background(), fx.rdb, fx.keys.DeadLetters(), 10)
		if err != nil || len(dead) != 1 || !strings.Contains(dead[0].Reason, "failed after 3 attempts") {
			t.Fatalf("dead letters = %+v, %v; want the task, failed after 3 attempts", dead, err)
		}
	})
}

func TestRetrySucceedsOnSecondAttempt(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		fx.start("web1", "webserver", nil)
		flag := t.TempDir() + "/once"
		id := fx.submitWith(events.TaskSubmitted{Route: events.RouteWorker, Target: "web1",
			Argv: []string{"sh", "-c", `if [ -e "$0" ]; then echo second; else touch "$0"; exit 1; fi`, flag}, MaxAttempts: 3, BackoffMS: 10})
		task := fx.wait(id)
		if task.Outcome != events.Succeeded || len(task.Attempts) != 2 || task.Attempts[1].Outcome != events.Succeeded {
			t.Errorf("task = %s after %d attempts, want succeeded on the second", task.Outcome, len(task.Attempts))
		}
	})
}

func TestCancelRunningTask(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		fx.start("web1", "webserver", nil)
		ctx := context.Background()
		id := fx.submitWith(events.TaskSubmitted{Route: events.RouteWorker, Target: "web1", Argv: []string{"sleep", "30"}, MaxAttempts: 3})
		fx.waitFor("task running", func() bool {
			task, err := fx.store.Task(ctx, id)
			return err == nil && task.State == projections.TaskRunning
		})
		src := events.Source{Cluster: fx.keys.Cluster, Actor: "test"}
		res, err := fx.log.End(ctx, src.New(events.TaskEnded{TaskID: id, State: events.EndCancelled, Reason: "test"}))
		if err != nil || res.Ended || res.State != "running" || res.Worker != "web1" {
			t.Fatalf("End of a running task = %+v, %v; want running on web1", res, err)
		}
		if _, err := fx.log.Append(ctx, fx.keys.WorkerControl("web1"), src.New(events.TaskCancel{TaskID: id, Reason: "test"}), 0); err != nil {
			t.Fatal(err)
		}
		task := fx.wait(id)
		if task.Outcome != events.Cancelled || len(task.Attempts) != 1 || !strings.Contains(task.Error, "cancelled on request") {
			t.Errorf("task = %s (%q) after %d attempts; want cancelled, not retried", task.Outcome, task.Error, len(task.Attempts))
		}
		if d := task.FinishedAt.Sub(task.Attempts[0].StartedAt); d > 10*time.Second {
			t.Errorf("cancel took %v", d)
		}
	})
}

func TestCancelWaitingTaskNeverRuns(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		ctx := context.Background()
		id := fx.submitWith(events.TaskSubmitted{Route: events.RouteWorker, Target: "web1", Argv: []string{"echo", "ran"}})
		res, err := fx.log.End(ctx, events.Source{Cluster: fx.keys.Cluster}.New(events.TaskEnded{TaskID: id, State: events.EndCancelled, Reason: "changed my mind"}))
		if err != nil || !res.Ended {
			t.Fatalf("End of a waiting task = %+v, %v; want ended", res, err)
		}
		fx.start("web1", "webserver", nil) // the worker comes online afterwards
		task := fx.wait(id)
		if task.State != projections.TaskCancelled || len(task.Attempts) != 0 || task.EndReason != "changed my mind" {
			t.Errorf("task = %s with %d attempts (%q); want cancelled without running", task.State, len(task.Attempts), task.EndReason)
		}
		fx.waitFor("entry acknowledged", func() bool {
			return fx.rdb.XPending(ctx, fx.keys.WorkerDispatch("web1"), streams.GroupAgents).Val().Count == 0
		})
		if stdout, _, _ := fx.output(id); stdout != "" {
			t.Errorf("a cancelled task ran: %q", stdout)
		}
	})
}

func TestEndUnknownTask(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		res, err := fx.log.End(context.Background(), events.Source{Cluster: fx.keys.Cluster}.New(events.TaskEnded{
			TaskID: ulid.Make().String(), State: events.EndCancelled, Reason: "x"}))
		if err != nil || res.Ended || res.State != "" {
			t.Errorf("End of an unknown task = %+v, %v; want not ended, no state", res, err)
		}
	})
}

func TestDeadlineExpiresTaskOfOfflineWorker(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		deadline := time.Now().Add(300 * time.Millisecond)
		id := fx.submitWith(events.TaskSubmitted{Route: events.RouteWorker, Target: "web9", Argv: []string{"echo", "late"}, Deadline: deadline})
		// Before the worker exists, status derives the expiry from the clock.
		fx.start("obs", "observer", nil)
		var task projections.Task
		var err error
		fx.waitFor("task projected", func() bool {
			task, err = fx.store.Task(context.Background(), id)
			return err == nil
		})
		if got := task.At(deadline.Add(time.Second)).State; got != projections.TaskExpired {
			t.Errorf("state after the deadline = %s, want expired", got)
		}
		if got := task.At(deadline.Add(-time.Millisecond)).State; got != projections.TaskWaiting {
			t.Errorf("state before the deadline = %s, want waiting", got)
		}
		time.Sleep(time.Until(deadline))
		fx.start("web9", "webserver", nil) // comes back too late
		task = fx.wait(id)
		if task.State != projections.TaskExpired || len(task.Attempts) != 0 || !strings.Contains(task.EndReason, "deadline") {
			t.Errorf("task = %s, %d attempts, %q; want expired without running", task.State, len(task.Attempts), task.EndReason)
		}
	})
}

func TestRemoteDrain(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		fx.start("obs", "observer", nil)
		fx.start("web1", "webserver", nil)
		ctx := context.Background()
		id := fx.submitWith(events.TaskSubmitted{Route: events.RouteWorker, Target: "web1", Argv: []string{"sh", "-c", "sleep 1; echo finished"}})
		fx.waitFor("task running", func() bool {
			task, err := fx.store.Task(ctx, id)
			return err == nil && task.State == projections.TaskRunning
		})
		req := events.Source{Cluster: fx.keys.Cluster, Actor: "cli:ops"}.New(events.WorkerDrain{Hostname: "web1", Reason: "kernel upgrade"})
		if _, err := fx.log.Append(ctx, fx.keys.WorkerControl("web1"), req, 0); err != nil {
			t.Fatal(err)
		}
		if task := fx.wait(id); task.Outcome != events.Succeeded {
			t.Errorf("running task during drain = %s, want succeeded", task.Outcome)
		}
		var w projections.Worker
		fx.waitFor("web1 left", func() bool {
			var err error
			w, err = fx.store.Worker(ctx, "web1")
			return err == nil && w.State(time.Now()) == projections.WorkerLeft
		})
		if !strings.Contains(w.LeftReason, "drained by cli:ops: kernel upgrade") {
			t.Errorf("left reason = %q", w.LeftReason)
		}
	})
}
