package streams_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/celeroot/celeroot/events"
	"github.com/celeroot/celeroot/streams"
	"github.com/redis/go-redis/v9"
)

func fired(sched string, slot int64, manual bool) events.Envelope {
	return src.New(events.ScheduleFired{Schedule: sched, SlotMS: slot, Task: "command", All: true,
		Manual: manual, JobID: streams.ScheduleJobID(sched, slot)})
}

func TestFireCompareAndSet(t *testing.T) {
	each(t, func(t *testing.T, rdb redis.UniversalClient, keys streams.Keys) {
		ctx := context.Background()
		log := streams.NewLog(rdb, keys)
		const s = "nightly"
		fire := func(slot int64, manual bool, want bool, wantReason string) {
			t.Helper()
			ok, reason, err := log.Fire(ctx, fired(s, slot, manual))
			if err != nil {
				t.Fatal(err)
			}
			if ok != want || reason != wantReason {
				t.Errorf("Fire(slot %d, manual %v) = %v, %q; want %v, %q", slot, manual, ok, reason, want, wantReason)
			}
		}
		fire(2000, false, true, streams.FireFired)
		fire(2000, false, false, streams.FireDuplicate)
		fire(1000, false, false, streams.FireDuplicate) // older slot refused
		fire(1500, true, true, streams.FireFired)       // manual always fires
		fire(3000, false, true, streams.FireFired)

		if _, err := log.PauseSchedule(ctx, src.New(events.SchedulePaused{Schedule: s})); err != nil {
			t.Fatal(err)
		}
		if changed, _ := log.PauseSchedule(ctx, src.New(events.SchedulePaused{Schedule: s})); changed {
			t.Error("PauseSchedule of a paused schedule reported a change")
		}
		fire(4000, false, false, streams.FirePaused)
		fire(4500, true, true, streams.FireFired) // manual fires while paused
		if changed, err := log.ResumeSchedule(ctx, src.New(events.ScheduleResumed{Schedule: s})); err != nil || !changed {
			t.Fatalf("ResumeSchedule = %v, %v; want a change", changed, err)
		}
		fire(4000, false, false, streams.FireDuplicate) // consumed while paused
		fire(5000, false, true, streams.FireFired)

		// A skip advances the slot without a fire.
		ok, reason, err := log.Fire(ctx, src.New(events.ScheduleSkipped{Schedule: s, SlotMS: 7000, Reason: "2 slots missed, policy skip"}))
		if err != nil || ok || reason != streams.FireSkipped {
			t.Errorf("Fire(skip 7000) = %v, %q, %v; want false, skipped", ok, reason, err)
		}
		fire(6000, false, false, streams.FireDuplicate)

		st, err := log.ScheduleState(ctx, []string{s, "other"})
		if err != nil {
			t.Fatal(err)
		}
		if got := st[s]; got.Last.UnixMilli() != 7000 || got.Paused || got.LastJob != streams.ScheduleJobID(s, 5000) {
			t.Errorf("state = %+v, want last 7000, not paused, last job of slot 5000", got)
		}
		if got := st["other"]; !got.Last.IsZero() || got.Paused || got.LastJob != "" {
			t.Errorf("state of a schedule that never fired = %+v, want zero", got)
		}

		hist, err := log.ScheduleHistory(ctx, s, 100)
		if err != nil {
			t.Fatal(err)
		}
		var types []string
		var prevJobs []string
		for _, m := range hist {
			types = append(types, m.Envelope.Type)
			if f, ok := m.Envelope.Payload.(events.ScheduleFired); ok {
				prevJobs = append(prevJobs, f.PreviousJob)
			}
		}
		want := []string{events.TypeScheduleSkipped, events.TypeScheduleFired, events.TypeScheduleResumed,
			events.TypeScheduleFired, events.TypeSchedulePaused, events.TypeScheduleFired, events.TypeScheduleFired, events.TypeScheduleFired}
		if len(types) != len(want) {
			t.Fatalf("history = %v, want %v", types, want)
		}
		for i := range want {
			if types[i] != want[i] {
				t.Errorf("history[%d] = %s, want %s", i, types[i], want[i])
			}
		}
		// Each fire names the job of the fire before it, newest first.
		wantPrev := []string{streams.ScheduleJobID(s, 4500), streams.ScheduleJobID(s, 3000),
			streams.ScheduleJobID(s, 1500), streams.ScheduleJobID(s, 2000), ""}
		for i := range wantPrev {
			if prevJobs[i] != wantPrev[i] {
				t.Errorf("fire %d previous job = %q, want %q", i, prevJobs[i], wantPrev[i])
			}
		}
		if h, _ := log.ScheduleHistory(ctx, s, 2); len(h) != 2 {
			t.Errorf("ScheduleHistory(n=2) returned %d events", len(h))
		}
	})
}

func TestFireRaceFiresOnce(t *testing.T) {
	each(t, func(t *testing.T, rdb redis.UniversalClient, keys streams.Keys) {
		ctx := context.Background()
		log := streams.NewLog(rdb, keys)
		slot := time.Now().Truncate(time.Second).UnixMilli()
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for range 10 {
			wg.Go(func() {
				ok, _, err := log.Fire(ctx, fired("race", slot, false))
				if err != nil {
					t.Error(err)
				}
				if ok {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if wins != 1 {
			t.Errorf("10 concurrent fires of one slot: %d fired, want 1", wins)
		}
		if n := rdb.XLen(ctx, keys.ScheduleFires()).Val(); n != 1 {
			t.Errorf("fires stream has %d entries, want 1", n)
		}
	})
}

func TestScheduleIDsAreDeterministic(t *testing.T) {
	slot := time.Date(2026, 11, 29, 2, 0, 0, 0, time.UTC).UnixMilli()
	job := streams.ScheduleJobID("nightly", slot)
	if job != streams.ScheduleJobID("nightly", slot) {
		t.Error("ScheduleJobID differs between calls")
	}
	if job == streams.ScheduleJobID("nightly", slot+60000) || job == streams.ScheduleJobID("other", slot) {
		t.Error("ScheduleJobID collides across slots or schedules")
	}
	if err := events.ValidateName("job", job); err != nil {
		t.Error(err)
	}
	task := streams.ScheduleTaskID(job, "web1", slot)
	if task != streams.ScheduleTaskID(job, "web1", slot) || task == streams.ScheduleTaskID(job, "web2", slot) {
		t.Error("ScheduleTaskID is not deterministic per (job, host)")
	}
}
