package sync

import (
	"context"
	"fmt"
	"slices"
	gosync "sync"
	"testing"
	"time"
)

// fakeClock is a manual Clock: time moves only by Advance, which fires the
// timers that come due.
type fakeClock struct {
	mu     gosync.Mutex
	now    time.Time
	timers []*fakeTimer
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{clock: c, c: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

// Advance moves the clock by d and fires every timer due by then.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		if t.active && !t.when.After(c.now) {
			t.active = false
			select {
			case t.c <- c.now:
			default:
			}
		}
	}
}

type fakeTimer struct {
	clock  *fakeClock
	c      chan time.Time
	when   time.Time
	active bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Reset(d time.Duration) {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	t.drain()
	if !slices.Contains(c.timers, t) {
		c.timers = append(c.timers, t)
	}
	t.when, t.active = c.now.Add(d), true
	if d <= 0 {
		t.active = false
		t.c <- c.now
	}
}

func (t *fakeTimer) Stop() {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	t.active = false
	t.drain()
}

func (t *fakeTimer) drain() {
	select {
	case <-t.c:
	default:
	}
}

// startRecorder is a Run function factory that records when (on the fake
// clock) and as what each job started.
type startRecorder struct {
	clock *fakeClock
	mu    gosync.Mutex
	runs  []recordedRun
}

type recordedRun struct {
	job, trigger string
	at           time.Time
}

func (r *startRecorder) run(name string) func(context.Context, string) error {
	return func(_ context.Context, trigger string) error {
		r.mu.Lock()
		r.runs = append(r.runs, recordedRun{name, trigger, r.clock.Now()})
		r.mu.Unlock()
		return nil
	}
}

func (r *startRecorder) snapshot() []recordedRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.runs)
}

func (r *startRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.runs)
}

// startOn starts s and waits until it has placed its jobs.
func startOn(t *testing.T, s *Scheduler) (stop func()) {
	t.Helper()
	stop = startScheduler(t, s)
	waitFor(t, "scheduler start", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.ctx != nil })
	return stop
}

// waitIdle waits until the scheduler has no run in progress and its
// dispatch loop is parked: no wake pending, and its timer (the only timer on
// clk) armed for the head of the queue. Only then may a test advance clk.
func waitIdle(t *testing.T, s *Scheduler, clk *fakeClock) {
	t.Helper()
	waitFor(t, "idle scheduler", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.running != 0 || len(s.wake) != 0 {
			return false
		}
		if len(s.queue) == 0 {
			return true
		}
		due := s.queue[0].due
		clk.mu.Lock()
		defer clk.mu.Unlock()
		for _, tm := range clk.timers {
			if tm.active && tm.when.Equal(due) {
				return true
			}
		}
		return false
	})
}

// TestSchedulerSpreadsFirstRuns: 1,000 jobs of one interval do not start
// together. Each first run is placed by a hash of its name within the
// interval (RunAtStart: within the start window), the same on every start.
func TestSchedulerSpreadsFirstRuns(t *testing.T) {
	for _, runAtStart := range []bool{false, true} {
		t.Run(fmt.Sprintf("RunAtStart=%v", runAtStart), func(t *testing.T) {
			const n, interval = 1000, time.Hour
			window := interval
			if runAtStart {
				window = 10 * time.Minute
			}
			places := func() []time.Duration {
				clk := newFakeClock()
				start := clk.Now()
				s := &Scheduler{Clock: clk, StartWindow: 10 * time.Minute}
				for i := range n {
					name := fmt.Sprintf("practice-%d/ehr/scheduling", i)
					if err := s.Add(Job{Name: name, Interval: interval, RunAtStart: runAtStart, Run: func(context.Context, string) error { return nil }}); err != nil {
						t.Fatal(err)
					}
				}
				stop := startOn(t, s)
				defer stop()
				out := make([]time.Duration, n)
				for i := range n {
					st, ok := s.Status(fmt.Sprintf("practice-%d/ehr/scheduling", i))
					if !ok || st.Next.IsZero() {
						t.Fatalf("job %d not placed: %+v", i, st)
					}
					want := TriggerSchedule
					if runAtStart {
						want = TriggerStartup
					}
					if st.Trigger != want {
						t.Fatalf("first trigger %q, want %q", st.Trigger, want)
					}
					out[i] = st.Next.Sub(start)
				}
				return out
			}
			first, second := places(), places()
			if !slices.Equal(first, second) {
				t.Error("first runs are placed differently on a second start")
			}
			// Ten equal slices of the window each get 100 ± 40 jobs.
			var slots [10]int
			for _, d := range first {
				if d < 0 || d >= window {
					t.Fatalf("first run at +%v, outside [0, %v)", d, window)
				}
				slots[int(d*10/window)]++
			}
			for i, c := range slots {
				if c < 60 || c > 140 {
					t.Errorf("slice %d of the window holds %d first runs (all: %v): not spread", i, c, slots)
				}
			}
		})
	}
}

// TestSchedulerKeepsItsPlaceAcrossRestarts: a job given its last start runs
// one interval after it, not at once; an overdue one runs within the start
// window as a startup run.
func TestSchedulerKeepsItsPlaceAcrossRestarts(t *testing.T) {
	clk := newFakeClock()
	now := clk.Now()
	rec := &startRecorder{clock: clk}
	s := &Scheduler{Clock: clk, StartWindow: 30 * time.Second}
	jobs := []Job{
		{Name: "recent", Interval: 10 * time.Minute, RunAtStart: true, LastRun: now.Add(-4 * time.Minute)},
		{Name: "overdue", Interval: 10 * time.Minute, RunAtStart: true, LastRun: now.Add(-3 * time.Hour)},
		{Name: "future", Interval: 10 * time.Minute, LastRun: now.Add(5 * time.Hour)}, // a clock that jumped: treated as unknown
	}
	for _, j := range jobs {
		j.Run = rec.run(j.Name)
		if err := s.Add(j); err != nil {
			t.Fatal(err)
		}
	}
	stop := startOn(t, s)
	defer stop()
	st, _ := s.Status("recent")
	if !st.Next.Equal(now.Add(6*time.Minute)) || st.Trigger != TriggerSchedule {
		t.Errorf("recent job: next %v (%s), want its last run + interval %v", st.Next.Sub(now), st.Trigger, 6*time.Minute)
	}
	for _, name := range []string{"overdue", "future"} {
		st, _ := s.Status(name)
		if d := st.Next.Sub(now); d < 0 || d >= 30*time.Second || st.Trigger != TriggerStartup {
			t.Errorf("%s job: next +%v (%s), want a startup run within the 30s start window", name, d, st.Trigger)
		}
	}
	waitIdle(t, s, clk)
	clk.Advance(30 * time.Second)
	waitFor(t, "the overdue runs", func() bool { return rec.count() == 2 })
	waitIdle(t, s, clk)
	for _, r := range rec.snapshot() {
		if r.job == "recent" {
			t.Errorf("the recent job ran at start")
		}
	}
	clk.Advance(6 * time.Minute)
	waitFor(t, "the recent job's run", func() bool { return rec.count() == 3 })
	if r := rec.snapshot()[2]; r.job != "recent" || r.trigger != TriggerSchedule {
		t.Errorf("third run = %+v", r)
	}
}

// TestSchedulerRateLimits: runs limited by one key start at its rate, in the
// order they became due, every one of them eventually; a job on another key
// is not held back by them; a run needing two keys waits for both.
func TestSchedulerRateLimits(t *testing.T) {
	clk := newFakeClock()
	start := clk.Now()
	rec := &startRecorder{clock: clk}
	s := &Scheduler{Clock: clk, StartWindow: time.Second}
	s.SetLimit("base:a", Limit{Rate: 1, Burst: 1})     // one run a second
	s.SetLimit("token:t", Limit{Rate: 0.25, Burst: 1}) // one run every 4 seconds
	add := func(name string, keys ...string) {
		t.Helper()
		if err := s.Add(Job{Name: name, Interval: time.Hour, Limits: keys, Run: rec.run(name)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		add(fmt.Sprintf("a%d", i), "base:a")
	}
	add("b", "base:b") // no limit configured for base:b
	add("both", "base:a", "token:t")
	stop := startOn(t, s)
	defer stop()
	// Make every job due now, in a known order.
	for _, n := range []string{"a0", "a1", "both", "a2", "a3", "a4", "b"} {
		if err := s.Trigger(n); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Millisecond)
	}
	// Step the clock through 10s.
	for range 100 {
		waitIdle(t, s, clk)
		clk.Advance(100 * time.Millisecond)
	}
	waitFor(t, "all runs", func() bool { return rec.count() == 7 })
	runs := rec.snapshot()
	at := map[string]time.Duration{}
	var order []string
	for _, r := range runs {
		at[r.job] = r.at.Sub(start)
		order = append(order, r.job)
	}
	if at["b"] > 10*time.Millisecond {
		t.Errorf("the job on an unlimited key waited until +%v behind the limited ones", at["b"])
	}
	var aStarts []time.Duration
	for _, n := range order {
		if n != "b" {
			aStarts = append(aStarts, at[n])
		}
	}
	for i := 1; i < len(aStarts); i++ {
		if gap := aStarts[i] - aStarts[i-1]; gap < 900*time.Millisecond {
			t.Errorf("runs on base:a %v apart (%v): faster than 1/s", gap, order)
		}
	}
	// FIFO on base:a: the order in which they were triggered.
	var got []string
	for _, n := range order {
		if n != "b" {
			got = append(got, n)
		}
	}
	if want := []string{"a0", "a1", "both", "a2", "a3", "a4"}; !slices.Equal(got, want) {
		t.Errorf("runs on base:a started in the order %v, want %v", got, want)
	}
	st := s.Stats()
	if st.Runs != 7 || st.MaxLag < 4*time.Second {
		t.Errorf("stats %+v: want 7 runs and a lag of seconds on base:a", st)
	}
}

// TestSchedulerRateLimitHoldsNoWorker: with a single worker, a run waiting
// for its rate limit does not keep another job from running.
func TestSchedulerRateLimitHoldsNoWorker(t *testing.T) {
	clk := newFakeClock()
	rec := &startRecorder{clock: clk}
	s := &Scheduler{Clock: clk, Workers: 1}
	s.SetLimit("base:slow", Limit{Rate: 1.0 / 3600, Burst: 1}) // one run an hour
	for _, n := range []string{"slow1", "slow2"} {
		if err := s.Add(Job{Name: n, Interval: time.Hour, Limits: []string{"base:slow"}, Run: rec.run(n)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Add(Job{Name: "free", Interval: time.Minute, Run: rec.run("free")}); err != nil {
		t.Fatal(err)
	}
	stop := startOn(t, s)
	defer stop()
	s.Trigger("slow1")
	s.Trigger("slow2")
	waitFor(t, "slow1", func() bool { return rec.count() == 1 })
	waitIdle(t, s, clk)
	s.Trigger("free")
	waitFor(t, "free while slow2 waits for its token", func() bool { return rec.count() == 2 })
	if r := rec.snapshot()[1]; r.job != "free" {
		t.Errorf("second run %q, want free", r.job)
	}
	if st := s.Stats(); st.Waiting != 1 || st.Running != 0 {
		t.Errorf("stats %+v: want slow2 waiting, holding no worker", st)
	}
	if st, _ := s.Status("slow2"); !st.Next.After(clk.Now().Add(59 * time.Minute)) {
		t.Errorf("slow2 next at %v, want its token in about an hour", st.Next)
	}
}

// TestSchedulerBoundsWorkers: no more runs at once than workers, and every
// due job still runs.
func TestSchedulerBoundsWorkers(t *testing.T) {
	const workers, n = 3, 12
	release := make(chan struct{})
	var mu gosync.Mutex
	active, peak, done := 0, 0, 0
	s := &Scheduler{Workers: workers}
	for i := range n {
		err := s.Add(Job{Name: fmt.Sprintf("j%d", i), Interval: time.Hour, Run: func(ctx context.Context, _ string) error {
			mu.Lock()
			active++
			peak = max(peak, active)
			mu.Unlock()
			select {
			case <-release:
			case <-ctx.Done():
			}
			mu.Lock()
			active--
			done++
			mu.Unlock()
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	stop := startOn(t, s)
	defer stop()
	for i := range n {
		s.Trigger(fmt.Sprintf("j%d", i))
	}
	waitFor(t, "the pool to fill", func() bool { mu.Lock(); defer mu.Unlock(); return active == workers })
	if st := s.Stats(); st.Running != workers || st.Waiting != n-workers {
		t.Errorf("stats %+v: want %d running and %d waiting", st, workers, n-workers)
	}
	close(release)
	waitFor(t, "every run", func() bool { mu.Lock(); defer mu.Unlock(); return done == n })
	if peak != workers {
		t.Errorf("%d runs at once, want at most (and, here, exactly) %d", peak, workers)
	}
}

// TestSchedulerTriggerWhileRunningCoalesces: triggers during a run become
// exactly one manual run after it, and the job then returns to its interval.
func TestSchedulerTriggerWhileRunningCoalesces(t *testing.T) {
	clk := newFakeClock()
	entered := make(chan string, 10)
	release := make(chan struct{})
	s := &Scheduler{Clock: clk}
	err := s.Add(Job{Name: "j", Interval: time.Hour, Run: func(_ context.Context, trigger string) error {
		entered <- trigger
		<-release
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	s.Trigger("j") // before Run: the first run is manual
	stop := startOn(t, s)
	defer func() { close(release); stop() }()
	if tr := <-entered; tr != TriggerManual {
		t.Fatalf("first trigger %q", tr)
	}
	for range 5 {
		s.Trigger("j")
	}
	release <- struct{}{}
	if tr := <-entered; tr != TriggerManual {
		t.Fatalf("after the run: trigger %q", tr)
	}
	release <- struct{}{}
	waitIdle(t, s, clk)
	select {
	case tr := <-entered:
		t.Fatalf("five triggers during one run made a second extra run (%s)", tr)
	default:
	}
	st, _ := s.Status("j")
	if st.Trigger != TriggerSchedule || !st.Next.Equal(clk.Now().Add(time.Hour)) {
		t.Errorf("after the manual run: next %v (%s), want one interval on", st.Next, st.Trigger)
	}
}

func TestBucket(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := &bucket{rate: 2, burst: 3, tokens: 3}
	for i := range 3 {
		if at := b.reserve(now); !at.Equal(now) {
			t.Fatalf("burst token %d granted at +%v", i, at.Sub(now))
		}
	}
	if at := b.reserve(now); at.Sub(now) != 500*time.Millisecond {
		t.Errorf("4th token at +%v, want +500ms", at.Sub(now))
	}
	if at := b.reserve(now); at.Sub(now) != time.Second {
		t.Errorf("5th token at +%v, want +1s (queued behind the 4th)", at.Sub(now))
	}
	// After a long pause the bucket is full again, not more.
	later := now.Add(time.Hour)
	for range 3 {
		if at := b.reserve(later); !at.Equal(later) {
			t.Fatal("bucket did not refill")
		}
	}
	if at := b.reserve(later); !at.After(later) {
		t.Error("bucket refilled beyond its burst")
	}
}
