package sync

import (
	"context"
	"errors"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func startScheduler(t *testing.T, s *Scheduler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("scheduler did not stop")
		}
	}
}

func TestSchedulerRunsAtIntervalsWithoutOverlap(t *testing.T) {
	var runs, active, maxActive atomic.Int32
	var mu gosync.Mutex
	var triggers []string
	s := &Scheduler{}
	err := s.Add(Job{Name: "a", Interval: 5 * time.Millisecond, RunAtStart: true, Run: func(ctx context.Context, trigger string) error {
		n := active.Add(1)
		defer active.Add(-1)
		for {
			m := maxActive.Load()
			if n <= m || maxActive.CompareAndSwap(m, n) {
				break
			}
		}
		mu.Lock()
		triggers = append(triggers, trigger)
		mu.Unlock()
		time.Sleep(10 * time.Millisecond) // longer than the interval
		runs.Add(1)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	stop := startScheduler(t, s)
	waitFor(t, "four runs", func() bool { return runs.Load() >= 4 })
	// Manual triggers during a run coalesce: never two at once.
	for i := 0; i < 20; i++ {
		if err := s.Trigger("a"); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a manual run", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, tr := range triggers {
			if tr == TriggerManual {
				return true
			}
		}
		return false
	})
	stop()
	if maxActive.Load() != 1 {
		t.Fatalf("%d runs of the same job overlapped", maxActive.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if triggers[0] != TriggerStartup || triggers[1] != TriggerSchedule {
		t.Fatalf("triggers %v", triggers)
	}
}

func TestSchedulerTriggerAndStop(t *testing.T) {
	started := make(chan string, 4)
	var cancelled atomic.Bool
	s := &Scheduler{}
	s.Add(Job{Name: "slow", Interval: time.Hour, Run: func(ctx context.Context, trigger string) error {
		started <- trigger
		<-ctx.Done() // runs until the scheduler stops
		cancelled.Store(true)
		return ctx.Err()
	}})
	if err := s.Trigger("nope"); !errors.Is(err, ErrUnknownJob) {
		t.Fatalf("err = %v", err)
	}
	if err := s.Add(Job{Name: "slow", Interval: time.Hour, Run: func(context.Context, string) error { return nil }}); err == nil {
		t.Fatal("duplicate job accepted")
	}
	stop := startScheduler(t, s)
	select {
	case <-started:
		t.Fatal("job ran before its interval without a trigger")
	case <-time.After(30 * time.Millisecond):
	}
	s.Trigger("slow")
	select {
	case tr := <-started:
		if tr != TriggerManual {
			t.Fatalf("trigger %q", tr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("manual trigger did not run the job")
	}
	stop() // must cancel the running job and wait for it
	if !cancelled.Load() {
		t.Fatal("Run returned before the job's context was cancelled")
	}
	if err := s.Add(Job{Name: "late", Interval: time.Second, Run: func(context.Context, string) error { return nil }}); err == nil {
		t.Fatal("Add after stop accepted")
	}
}

func TestSchedulerAddWhileRunningAndRemove(t *testing.T) {
	var runs atomic.Int32
	s := &Scheduler{}
	stop := startScheduler(t, s)
	defer stop()
	waitFor(t, "scheduler start", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.ctx != nil })
	if err := s.Add(Job{Name: "b", Interval: time.Millisecond, Run: func(context.Context, string) error { runs.Add(1); return nil }}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "runs of a job added late", func() bool { return runs.Load() >= 3 })
	if err := s.Remove("b"); err != nil {
		t.Fatal(err)
	}
	n := runs.Load()
	time.Sleep(20 * time.Millisecond)
	if runs.Load() != n {
		t.Fatal("removed job still runs")
	}
	if err := s.Remove("b"); !errors.Is(err, ErrUnknownJob) {
		t.Fatalf("err = %v", err)
	}
}

func TestSchedulerJitterBounds(t *testing.T) {
	j := Job{Interval: time.Minute, Jitter: 0.2}
	for _, tc := range []struct {
		r    float64
		want time.Duration
	}{{0, time.Minute}, {0.5, 66 * time.Second}, {0.999999, time.Minute + 12*time.Second - 12*time.Microsecond}} {
		s := &Scheduler{Rand: func() float64 { return tc.r }}
		if got := s.pause(j); got != tc.want {
			t.Fatalf("r=%v: pause %v, want %v", tc.r, got, tc.want)
		}
	}
	s := &Scheduler{}
	for i := 0; i < 1000; i++ {
		if d := s.pause(j); d < time.Minute || d >= time.Minute+12*time.Second {
			t.Fatalf("pause %v outside [1m, 1m12s)", d)
		}
	}
	if err := s.Add(Job{Name: "x", Run: func(context.Context, string) error { return nil }}); err == nil {
		t.Fatal("zero interval accepted")
	}
}
