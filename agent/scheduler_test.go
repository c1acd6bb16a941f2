package agent_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/celeroot/celeroot/agent"
	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/schema"
	"github.com/celeroot/celeroot/streams"
)

// perSecond fires every schedule at every whole second, so tests see many
// slots quickly (cron expressions have minutes at best).
func perSecond(_ *schema.Schedule, t time.Time) (time.Time, error) {
	return t.Truncate(time.Second).Add(time.Second), nil
}

func scheduled(c *agent.Config) { c.ScheduleNext = perSecond }

// tickSet is a config with one schedule "tick" of a task every worker runs.
func tickSet(t *testing.T, missed string) *schema.Set {
	t.Helper()
	set, errs := schema.Load("tick.yaml", strings.NewReader(fmt.Sprintf(`apiVersion: celeroot.io/v1
kind: Cluster
metadata:
  name: test
spec:
  schedules:
    - name: tick
      cron: "* * * * *"
      task: tick
      targets: all
      missed: %s
---
apiVersion: celeroot.io/v1
kind: Task
metadata:
  name: tick
spec:
  action:
    command: ["true"]
`, missed)))
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	return set
}

// scheduleEvents returns the fired slots (Unix ms, in stream order) and
// the skip events of the fires stream.
func (fx *fixture) scheduleEvents() (fired []int64, skipped []events.ScheduleSkipped) {
	fx.t.Helper()
	err := streams.Replay(context.Background(), fx.rdb, fx.keys.ScheduleFires(), "-", "+", 0, func(e streams.Entry) error {
		if e.Err != nil {
			return e.Err
		}
		switch p := e.Envelope.Payload.(type) {
		case events.ScheduleFired:
			if !p.Manual {
				fired = append(fired, p.SlotMS)
			}
		case events.ScheduleSkipped:
			skipped = append(skipped, p)
		}
		return nil
	})
	if err != nil {
		fx.t.Fatal(err)
	}
	return fired, skipped
}

func noDuplicates(t *testing.T, fired []int64) {
	t.Helper()
	seen := map[int64]bool{}
	for _, s := range fired {
		if seen[s] {
			t.Errorf("slot %s fired twice", time.UnixMilli(s).UTC().Format(time.RFC3339Nano))
		}
		seen[s] = true
	}
}

// Five evaluators racing for every slot of a per-second schedule fire each
// slot exactly once, and each fire becomes one task per worker.
//
// make test runs it for 10 s; make soak for 60 s (CELEROOT_SCHEDULE_SECONDS).
func TestSchedulerFiresEachSlotOnce(t *testing.T) {
	seconds := 10
	if v, err := strconv.Atoi(os.Getenv("CELEROOT_SCHEDULE_SECONDS")); err == nil && v > 0 {
		seconds = v
	}
	each(t, func(t *testing.T, fx *fixture) {
		fx.applyConfig(tickSet(t, "skip"), 1)
		var hosts []string
		for i := range 5 {
			h := fmt.Sprintf("sched%d", i)
			hosts = append(hosts, h)
			// Slow heartbeats: a busy test machine must not make a worker
			// look unhealthy, and so miss a task of a fire.
			fx.start(h, "webserver", func(c *agent.Config) { scheduled(c); c.Heartbeat = time.Second })
		}
		t0 := time.Now()
		time.Sleep(time.Duration(seconds) * time.Second)
		t1 := time.Now()
		fired, _ := fx.scheduleEvents()
		noDuplicates(t, fired)
		var in []int64
		for _, s := range fired {
			if s > t0.UnixMilli() && s <= t1.UnixMilli() {
				in = append(in, s)
			}
		}
		if want := int(t1.Unix() - t0.Unix()); len(in) < want-1 || len(in) > want+1 {
			t.Errorf("%d fires in %v, want %d ± 1", len(in), t1.Sub(t0).Round(time.Millisecond), want)
		}
		if len(in) < 3 {
			t.Fatalf("only %d fires", len(in))
		}
		// A fire of the middle: one task per worker, each succeeds.
		slot := in[len(in)/2]
		job := streams.ScheduleJobID("tick", slot)
		fx.waitFor("job "+job+" done", func() bool {
			j, err := fx.store.Job(context.Background(), job)
			if err != nil || len(j.Tasks) == 0 {
				return false
			}
			for _, task := range j.Tasks {
				if !task.Done() {
					return false
				}
			}
			return true
		})
		j, _ := fx.store.Job(context.Background(), job)
		var on []string
		for _, task := range j.Tasks {
			if task.Outcome != events.Succeeded {
				t.Errorf("task %s on %s = %s (%s), want succeeded", task.ID, task.Worker, task.Outcome, task.Error)
			}
			if want := streams.ScheduleTaskID(job, task.Target, slot); task.ID != want {
				t.Errorf("task id on %s = %s, want the derived %s", task.Target, task.ID, want)
			}
			on = append(on, task.Target)
		}
		slices.Sort(on)
		if !slices.Equal(on, hosts) {
			t.Errorf("job ran on %v, want %v", on, hosts)
		}
	})
}

// A scheduler stopped and started again applies the schedule's missed
// policy to the slots it missed: skip records them once and goes on, all
// fires every one of them, oldest first.
func TestSchedulerMissedPolicy(t *testing.T) {
	for _, missed := range []string{"skip", "all"} {
		t.Run(missed, func(t *testing.T) {
			t.Parallel()
			each(t, func(t *testing.T, fx *fixture) {
				fx.applyConfig(tickSet(t, missed), 1)
				stop := fx.start("sched1", "webserver", scheduled)
				fx.waitFor("two fires", func() bool { f, _ := fx.scheduleEvents(); return len(f) >= 2 })
				stop()
				stoppedAt := time.Now()
				time.Sleep(3 * time.Second)
				restarted := time.Now()
				fx.start("sched1", "webserver", scheduled)
				fx.waitFor("a fire after the restart", func() bool {
					f, _ := fx.scheduleEvents()
					return len(f) > 0 && f[len(f)-1] > restarted.UnixMilli()+1000
				})
				fired, skipped := fx.scheduleEvents()
				noDuplicates(t, fired)
				if !slices.IsSorted(fired) {
					t.Errorf("slots fired out of order: %v", fired)
				}
				var missedSkips []events.ScheduleSkipped
				for _, s := range skipped {
					if strings.Contains(s.Reason, "slots missed") {
						missedSkips = append(missedSkips, s)
					}
				}
				skipped = missedSkips
				var gaps []int64
				for i := 1; i < len(fired); i++ {
					if d := fired[i] - fired[i-1]; d != 1000 {
						gaps = append(gaps, d)
					}
				}
				switch missed {
				case "all":
					if len(gaps) > 0 || len(skipped) > 0 {
						t.Errorf("missed: all left gaps %v ms and skips %v; want every slot fired", gaps, skipped)
					}
				case "skip":
					if len(gaps) != 1 || gaps[0] < 3000 {
						t.Errorf("gaps between fired slots = %v ms, want one of at least 3s (the slots missed while stopped)", gaps)
					}
					if len(skipped) != 1 || !strings.Contains(skipped[0].Reason, "slots missed") ||
						skipped[0].SlotMS <= stoppedAt.UnixMilli() {
						t.Errorf("skip events = %+v, want one summing up the missed slots", skipped)
					}
				}
			})
		})
	}
}

// A paused schedule does not fire, not even under missed: all, and fires
// again from the next slot once resumed.
func TestSchedulePauseResume(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		ctx := context.Background()
		fx.applyConfig(tickSet(t, "all"), 1)
		fx.start("sched1", "webserver", scheduled)
		fx.waitFor("a fire", func() bool { f, _ := fx.scheduleEvents(); return len(f) >= 1 })
		src := events.Source{Cluster: fx.keys.Cluster, Actor: "test"}
		if _, err := fx.log.PauseSchedule(ctx, src.New(events.SchedulePaused{Schedule: "tick"})); err != nil {
			t.Fatal(err)
		}
		paused := time.Now()
		time.Sleep(2500 * time.Millisecond)
		if f, _ := fx.scheduleEvents(); f[len(f)-1] > paused.UnixMilli() {
			t.Errorf("slot %d fired while paused (since %d)", f[len(f)-1], paused.UnixMilli())
		}
		st, err := fx.log.ScheduleState(ctx, []string{"tick"})
		if err != nil || !st["tick"].Paused {
			t.Errorf("state = %+v, %v; want paused", st["tick"], err)
		}
		if _, err := fx.log.ResumeSchedule(ctx, src.New(events.ScheduleResumed{Schedule: "tick"})); err != nil {
			t.Fatal(err)
		}
		resumed := time.Now()
		fx.waitFor("a fire after resume", func() bool {
			f, _ := fx.scheduleEvents()
			return f[len(f)-1] > paused.UnixMilli()
		})
		fired, _ := fx.scheduleEvents()
		noDuplicates(t, fired)
		var after []int64
		for _, s := range fired {
			if s > paused.UnixMilli() {
				after = append(after, s)
			}
		}
		from := resumed.Truncate(time.Second)
		if after[0] < from.UnixMilli() || after[0] > from.Add(time.Second).UnixMilli() {
			t.Errorf("first slot fired after resume = %s, want the next slot after %s (paused slots are not caught up)",
				time.UnixMilli(after[0]).UTC().Format(time.RFC3339Nano), resumed.UTC().Format(time.RFC3339Nano))
		}
	})
}

// The seed schedules are accepted and their next fire times are computed
// in their time zone; an agent runs them without firing before time.
func TestSeedSchedules(t *testing.T) {
	set := exampleSet(t)
	doc, _, err := set.Bundle()
	if err != nil {
		t.Fatal(err)
	}
	b, err := schema.ParseBundle(string(doc))
	if err != nil {
		t.Fatal(err)
	}
	// Sunday 29 November 2026, 10:00 UTC.
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	want := map[string]time.Time{
		"security-updates": time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC),
		"backup-configs":   time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC),
	}
	if len(b.Cluster.Spec.Schedules) != len(want) {
		t.Fatalf("seed schedules = %d, want %d", len(b.Cluster.Spec.Schedules), len(want))
	}
	for i := range b.Cluster.Spec.Schedules {
		s := &b.Cluster.Spec.Schedules[i]
		got, err := s.Next(now)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equal(want[s.Name]) {
			t.Errorf("%s (%s).Next(%s) = %s, want %s", s.Name, s.Cron, now, got, want[s.Name])
		}
	}
	// Before the first slot (2:00 on a Sunday 03:00): Next from just before.
	s := b.Cluster.Spec.Schedules[1]
	if got, _ := s.Next(time.Date(2026, 11, 29, 2, 59, 59, 0, time.UTC)); !got.Equal(time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC)) {
		t.Errorf("backup-configs next before 03:00 on a Sunday = %s, want that 03:00", got)
	}
	tz := schema.Schedule{Name: "paris", Cron: "0 2 * * *", Timezone: "Europe/Paris"}
	if got, _ := tz.Next(now); !got.Equal(time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)) {
		t.Errorf("0 2 * * * in Europe/Paris next = %s, want 01:00 UTC", got.UTC())
	}

	each(t, func(t *testing.T, fx *fixture) {
		fx.applyConfig(set, 1)
		fx.start("db1", "database", func(c *agent.Config) { c.Labels = map[string]string{"tier": "data"} })
		time.Sleep(time.Second)
		if fired, skipped := fx.scheduleEvents(); len(fired)+len(skipped) > 0 {
			t.Errorf("seed schedules fired %v, skipped %v outside their slots", fired, skipped)
		}
	})
}

// With overlap: skip, a fire while the previous run still runs submits
// nothing and records why; with the default (allow) runs overlap.
func TestScheduleOverlapSkip(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		set, errs := schema.Load("slow.yaml", strings.NewReader(`apiVersion: celeroot.io/v1
kind: Cluster
metadata:
  name: test
spec:
  schedules:
    - name: slow
      cron: "* * * * *"
      task: slow
      targets: all
      overlap: skip
---
apiVersion: celeroot.io/v1
kind: Task
metadata:
  name: slow
spec:
  action:
    command: ["sleep", "2.5"]
`))
		if len(errs) > 0 {
			t.Fatal(errs[0])
		}
		fx.applyConfig(set, 1)
		fx.start("web1", "webserver", func(c *agent.Config) { scheduled(c); c.Heartbeat = time.Second })
		fx.waitFor("a skip for overlap", func() bool {
			_, skipped := fx.scheduleEvents()
			for _, s := range skipped {
				if strings.Contains(s.Reason, "still running") {
					return true
				}
			}
			return false
		})
		fired, skipped := fx.scheduleEvents()
		var overlapSkips int
		for _, s := range skipped {
			if strings.Contains(s.Reason, "still running") {
				overlapSkips++
			}
		}
		// Every fire either ran or was skipped for overlap; never two runs
		// at once: the jobs that ran are at least the task's length apart.
		var ran []int64
		for _, slot := range fired {
			j, err := fx.store.Job(context.Background(), streams.ScheduleJobID("slow", slot))
			if err == nil && len(j.Tasks) > 0 {
				ran = append(ran, slot)
			}
		}
		for i := 1; i < len(ran); i++ {
			if ran[i]-ran[i-1] < 2000 {
				t.Errorf("runs at %d and %d overlap (task takes 2.5 s)", ran[i-1], ran[i])
			}
		}
		if overlapSkips == 0 || len(ran) == 0 {
			t.Errorf("fired %d, ran %d, skipped for overlap %d; want runs and skips", len(fired), len(ran), overlapSkips)
		}
	})
}
