package sync

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	gosync "sync"
	"time"
)

// Trigger values passed to jobs.
const (
	TriggerStartup  = "startup"
	TriggerSchedule = "schedule"
	TriggerManual   = "manual"
)

// Scheduler defaults.
const (
	// DefaultWorkers bounds the runs in progress at once.
	DefaultWorkers = 64
	// DefaultStartWindow is the window over which the first runs of
	// RunAtStart and overdue jobs are spread.
	DefaultStartWindow = time.Minute
)

// ErrUnknownJob is returned by Trigger and Remove for a name never added.
var ErrUnknownJob = errors.New("sync: unknown job")

// Job is work the Scheduler runs at an interval.
type Job struct {
	// Name identifies the job (e.g. "practice/connection/scheduling"). It
	// also places the job's first run: see Scheduler.
	Name string
	// Interval is the pause between the end of one run and the start of the next.
	Interval time.Duration
	// Jitter is the largest fraction of Interval added at random to each
	// pause (0.1: up to 10% longer), so jobs do not run in lockstep.
	Jitter float64
	// RunAtStart runs the job soon after the scheduler starts it (within
	// its start window) instead of within its first interval.
	RunAtStart bool
	// Limits names the rate limits each run counts against, e.g.
	// "base:https://ehr.example.org/fhir" and "token:https://ehr.example.org/token"
	// (see Scheduler.SetLimit). A run starts only once every one of them
	// grants it; it waits in the queue meanwhile, holding no worker. Keys
	// without a configured limit do not limit.
	Limits []string
	// LastRun is when the job last started before this scheduler (for
	// example read from the store's run records); zero when unknown. With it,
	// the first run comes LastRun+Interval, as if the process had never
	// stopped, or soon after start, spread, when that time has passed.
	LastRun time.Time
	// Run does the work; trigger is TriggerStartup, TriggerSchedule or TriggerManual.
	Run func(ctx context.Context, trigger string) error
}

// Limit is a token bucket: on average Rate runs start per second, and up
// to Burst at once after a quiet spell.
type Limit struct {
	Rate  float64 // runs per second; 0 or less: no limit
	Burst int     // tokens the bucket holds; less than 1 means 1
}

// Clock is the time source of a Scheduler; tests give it a fake one.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is a Clock's timer. After Stop or Reset returns, no value from an
// earlier setting is received (the semantics of time.Timer since Go 1.23).
type Timer interface {
	C() <-chan time.Time
	Reset(d time.Duration)
	Stop()
}

// Scheduler runs jobs at intervals from one dispatching goroutine that keeps
// every job in a heap ordered by its due time, and starts due runs on a
// bounded pool of workers. Its guarantees:
//
//   - never two runs of one job at once;
//   - manual triggers are coalesced: a trigger while the job runs, or while
//     a manual run is already pending, becomes one run after the current one;
//   - no thundering herd: the first run of each job is placed by a stable
//     hash of its name, within its interval (or, with RunAtStart, within
//     the start window), plus jitter; every later pause adds jitter too;
//   - rate limits per key (Job.Limits): a run waits for every key's token
//     bucket without holding a worker, waiting runs are served in the order
//     they became due, and a limited key never delays a job that does not
//     use it;
//   - restarts keep their place: a job given its LastRun runs
//     LastRun+Interval; one without (or overdue) is spread over the start
//     window. The sync cursors themselves are durable in the store.
//
// Its zero value is ready; set the exported fields before Run, which may be
// called once.
type Scheduler struct {
	Logger *slog.Logger
	// Rand returns a uniform float in [0,1) for jitter (default
	// math/rand/v2). It is called with the scheduler's lock held.
	Rand func() float64
	// Clock is the time source (default: the real clock).
	Clock Clock
	// Workers bounds the runs in progress at once (default DefaultWorkers).
	Workers int
	// StartWindow is the window over which RunAtStart and overdue jobs are
	// spread when the scheduler starts (default DefaultStartWindow; never
	// more than a job's Interval).
	StartWindow time.Duration

	mu      gosync.Mutex
	ctx     context.Context // nil until Run
	jobs    map[string]*jobState
	queue   jobQueue
	limits  map[string]*bucket
	running int
	seq     uint64
	wake    chan struct{}
	wg      gosync.WaitGroup
	stopped bool
	stats   Stats
}

// Stats are counters of a Scheduler since Run.
type Stats struct {
	Jobs    int // registered
	Running int // runs in progress
	Waiting int // due now, held by a rate limit or waiting for a worker
	Runs    uint64
	// Lag sums, over all runs started, the time from when the run was due
	// to when it started; MaxLag is the largest.
	Lag, MaxLag time.Duration
}

// JobStatus is where one job stands.
type JobStatus struct {
	Interval time.Duration
	Limits   []string
	Running  bool
	// Next is when the next run is due (zero while the job runs, or
	// before Run); Trigger is what it will be started as.
	Next    time.Time
	Trigger string
	// LastStart and LastEnd are of the last run in this process.
	LastStart, LastEnd time.Time
}

type jobState struct {
	job                Job
	due                time.Time // when to pop it from the queue
	since              time.Time // when this run first became due (queue fairness, lag)
	trigger            string
	seq                uint64
	index              int  // in the queue; -1 when not queued
	reserved           bool // its rate-limit tokens are taken; run at due
	running            bool
	pending            bool // a manual trigger arrived while it ran
	removed            bool
	cancel             context.CancelFunc
	done               chan struct{} // closed when the current run ends
	lastStart, lastEnd time.Time
}

// NewScheduler returns a Scheduler that logs failed runs to logger (nil: not logged).
func NewScheduler(logger *slog.Logger) *Scheduler { return &Scheduler{Logger: logger} }

// SetLimit sets (or replaces) the rate limit of a key; see Job.Limits.
func (s *Scheduler) SetLimit(key string, l Limit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limits == nil {
		s.limits = make(map[string]*bucket)
	}
	if l.Rate <= 0 {
		delete(s.limits, key)
		return
	}
	burst := float64(max(l.Burst, 1))
	if b, ok := s.limits[key]; ok {
		b.rate, b.burst = l.Rate, burst
		b.tokens = min(b.tokens, burst)
		return
	}
	s.limits[key] = &bucket{rate: l.Rate, burst: burst, tokens: burst}
}

// Add registers a job; when the scheduler is running it is placed at once.
func (s *Scheduler) Add(j Job) error {
	if j.Name == "" || j.Run == nil {
		return errors.New("sync: a job needs a name and a Run function")
	}
	if j.Interval <= 0 {
		return fmt.Errorf("sync: job %q needs a positive interval", j.Name)
	}
	j.Limits = append([]string(nil), j.Limits...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("sync: scheduler is stopped")
	}
	if s.jobs == nil {
		s.jobs = make(map[string]*jobState)
	}
	if _, dup := s.jobs[j.Name]; dup {
		return fmt.Errorf("sync: job %q already exists", j.Name)
	}
	js := &jobState{job: j, index: -1}
	s.jobs[j.Name] = js
	if s.ctx != nil {
		s.placeFirstLocked(js, s.clock().Now())
		s.poke()
	}
	return nil
}

// Remove forgets a job, cancelling a run in progress and waiting for it to
// return.
func (s *Scheduler) Remove(name string) error {
	s.mu.Lock()
	js, ok := s.jobs[name]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("%w %q", ErrUnknownJob, name)
	}
	delete(s.jobs, name)
	js.removed = true
	if js.index >= 0 {
		heap.Remove(&s.queue, js.index)
	}
	var done chan struct{}
	if js.running {
		js.cancel()
		done = js.done
	}
	s.mu.Unlock()
	if done != nil {
		<-done
	}
	return nil
}

// Trigger asks for a manual run of the job as soon as it is idle. Triggers
// made while a manual run is pending are merged into it.
func (s *Scheduler) Trigger(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	js, ok := s.jobs[name]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownJob, name)
	}
	switch {
	case js.running || s.ctx == nil:
		js.pending = true
	case js.index >= 0:
		if js.trigger == TriggerManual && !js.due.After(s.clock().Now()) {
			return nil // a manual run is already due
		}
		js.trigger = TriggerManual
		if !js.reserved { // a run waiting for its rate limit keeps its slot
			now := s.clock().Now()
			js.due, js.since = now, now
			heap.Fix(&s.queue, js.index)
		}
		s.poke()
	}
	return nil
}

// Jobs returns the names of the registered jobs.
func (s *Scheduler) Jobs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.jobs))
	for n := range s.jobs {
		out = append(out, n)
	}
	return out
}

// Status returns where a job stands.
func (s *Scheduler) Status(name string) (JobStatus, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	js, ok := s.jobs[name]
	if !ok {
		return JobStatus{}, false
	}
	st := JobStatus{Interval: js.job.Interval, Limits: append([]string(nil), js.job.Limits...),
		Running: js.running, LastStart: js.lastStart, LastEnd: js.lastEnd}
	if js.index >= 0 {
		st.Next, st.Trigger = js.due, js.trigger
	}
	return st, true
}

// Stats returns the scheduler's counters.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Jobs, st.Running = len(s.jobs), s.running
	now := s.clock().Now()
	for _, js := range s.queue {
		if !js.since.After(now) {
			st.Waiting++
		}
	}
	return st
}

// Run places every job and dispatches due runs until ctx is cancelled, then
// waits for the runs in progress (whose contexts are cancelled) to return.
// It may be called once.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.ctx != nil || s.stopped {
		s.mu.Unlock()
		return errors.New("sync: scheduler already started")
	}
	s.ctx = ctx
	s.wake = make(chan struct{}, 1)
	now := s.clock().Now()
	for _, js := range s.jobs {
		s.placeFirstLocked(js, now)
	}
	s.mu.Unlock()

	s.loop(ctx)

	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Scheduler) clock() Clock {
	if s.Clock != nil {
		return s.Clock
	}
	return realClock{}
}

// poke wakes the dispatch loop (without blocking; one pending wake suffices).
func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// loop is the dispatcher: it starts every due run a worker is free for,
// then sleeps until the next due time, a change (Add, Trigger, a run's end)
// or the end of ctx.
func (s *Scheduler) loop(ctx context.Context) {
	timer := s.clock().NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		now := s.clock().Now()
		s.dispatchLocked(now)
		wait, ok := time.Duration(0), false
		if s.running < s.workers() && len(s.queue) > 0 {
			wait, ok = max(s.queue[0].due.Sub(now), 0), true
		}
		s.mu.Unlock()
		if ok {
			timer.Reset(wait)
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-timer.C():
		case <-s.wake:
		}
	}
}

func (s *Scheduler) workers() int {
	if s.Workers > 0 {
		return s.Workers
	}
	return DefaultWorkers
}

// dispatchLocked starts the due runs, oldest first, while workers are free.
// A run whose rate limits are exhausted reserves its tokens and goes back
// into the queue until they are granted.
func (s *Scheduler) dispatchLocked(now time.Time) {
	for len(s.queue) > 0 && s.running < s.workers() {
		js := s.queue[0]
		if js.due.After(now) {
			return
		}
		heap.Pop(&s.queue)
		if !js.reserved && len(js.job.Limits) > 0 {
			js.reserved = true
			if at := s.reserveLocked(js.job.Limits, now); at.After(now) {
				js.due = at
				heap.Push(&s.queue, js)
				continue
			}
		}
		js.reserved = false
		s.startLocked(js, now)
	}
}

// reserveLocked takes one token from every limited key and returns when the
// last of them is granted (now when all are available).
func (s *Scheduler) reserveLocked(keys []string, now time.Time) time.Time {
	at := now
	for _, k := range keys {
		if b, ok := s.limits[k]; ok {
			if t := b.reserve(now); t.After(at) {
				at = t
			}
		}
	}
	return at
}

func (s *Scheduler) startLocked(js *jobState, now time.Time) {
	lag := now.Sub(js.since)
	s.stats.Runs++
	s.stats.Lag += lag
	s.stats.MaxLag = max(s.stats.MaxLag, lag)
	s.running++
	js.running = true
	js.lastStart = now
	ctx, cancel := context.WithCancel(s.ctx)
	js.cancel = cancel
	js.done = make(chan struct{})
	trigger := js.trigger
	s.wg.Add(1)
	go s.run(ctx, cancel, js.done, js, trigger)
}

// run is one run of a job on a worker.
func (s *Scheduler) run(ctx context.Context, cancel context.CancelFunc, done chan struct{}, js *jobState, trigger string) {
	defer s.wg.Done()
	clk := s.clock()
	start := clk.Now()
	err := js.job.Run(ctx, trigger)
	if err != nil && ctx.Err() == nil && s.Logger != nil {
		s.Logger.LogAttrs(ctx, slog.LevelWarn, "scheduled job failed", slog.String("job", js.job.Name),
			slog.String("trigger", trigger), slog.Duration("took", clk.Now().Sub(start)), slog.String("error", err.Error()))
	}
	cancel()

	s.mu.Lock()
	now := clk.Now()
	s.running--
	js.running = false
	js.lastEnd = now
	close(done)
	if !js.removed && !s.stopped && s.ctx.Err() == nil {
		if js.pending {
			js.pending = false
			js.trigger, js.due = TriggerManual, now
		} else {
			js.trigger, js.due = TriggerSchedule, now.Add(s.pause(js.job))
		}
		s.pushLocked(js)
	}
	s.mu.Unlock()
	s.poke()
}

// placeFirstLocked queues a job's first run.
func (s *Scheduler) placeFirstLocked(js *jobState, now time.Time) {
	j := js.job
	window := s.StartWindow
	if window <= 0 {
		window = DefaultStartWindow
	}
	window = min(window, j.Interval)
	js.trigger = TriggerSchedule
	switch next := j.LastRun.Add(j.Interval); {
	case js.pending:
		js.pending = false
		js.trigger, js.due = TriggerManual, now
	case !j.LastRun.IsZero() && next.After(now) && !next.After(now.Add(j.Interval)):
		js.due = next // keep the place the job had before the restart
	case !j.LastRun.IsZero() || j.RunAtStart: // overdue, or wanted at start
		js.trigger = TriggerStartup
		js.due = now.Add(s.spread(j, window))
	default:
		js.due = now.Add(s.spread(j, j.Interval))
	}
	s.pushLocked(js)
}

// spread is the first-run offset of a job within window: a stable hash of
// its name (so the same jobs land in the same places after every restart)
// plus the job's jitter.
func (s *Scheduler) spread(j Job, window time.Duration) time.Duration {
	d := time.Duration(nameFraction(j.Name) * float64(window))
	if j.Jitter > 0 {
		d += time.Duration(s.rand() * j.Jitter * float64(window))
	}
	return d
}

// nameFraction maps a name to [0,1), stably.
func nameFraction(name string) float64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return float64(h.Sum64()>>11) / (1 << 53)
}

func (s *Scheduler) pushLocked(js *jobState) {
	js.since = js.due
	s.seq++
	js.seq = s.seq
	heap.Push(&s.queue, js)
}

func (s *Scheduler) rand() float64 {
	if s.Rand != nil {
		return s.Rand()
	}
	return rand.Float64()
}

// pause is the interval plus a random jitter.
func (s *Scheduler) pause(j Job) time.Duration {
	d := j.Interval
	if j.Jitter > 0 {
		d += time.Duration(s.rand() * j.Jitter * float64(j.Interval))
	}
	return d
}

// jobQueue is a min-heap of queued jobs by due time; jobs due at the same
// time go in the order they first became due, then in the order queued.
type jobQueue []*jobState

func (q jobQueue) Len() int { return len(q) }
func (q jobQueue) Less(i, j int) bool {
	a, b := q[i], q[j]
	if !a.due.Equal(b.due) {
		return a.due.Before(b.due)
	}
	if !a.since.Equal(b.since) {
		return a.since.Before(b.since)
	}
	return a.seq < b.seq
}
func (q jobQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *jobQueue) Push(x any) {
	js := x.(*jobState)
	js.index = len(*q)
	*q = append(*q, js)
}
func (q *jobQueue) Pop() any {
	old := *q
	js := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	js.index = -1
	return js
}

// bucket is a token bucket that may go into debt: a reservation is always
// granted, at the time the bucket will have refilled its token.
type bucket struct {
	rate, burst float64
	tokens      float64
	last        time.Time
}

func (b *bucket) reserve(now time.Time) time.Time {
	if b.last.IsZero() {
		b.last = now
	}
	if now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
	b.tokens--
	if b.tokens >= 0 {
		return now
	}
	return now.Add(time.Duration(-b.tokens / b.rate * float64(time.Second)))
}

// realClock is the system clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) NewTimer(d time.Duration) Timer {
	return realTimer{time.NewTimer(d)}
}

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time   { return t.t.C }
func (t realTimer) Reset(d time.Duration) { t.t.Reset(d) }
func (t realTimer) Stop()                 { t.t.Stop() }
