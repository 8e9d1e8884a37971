package sync

import (
	"context"
	"errors"
	"fmt"
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

// ErrUnknownJob is returned by Trigger and Remove for a name never added.
var ErrUnknownJob = errors.New("sync: unknown job")

// Job is work the Scheduler runs at an interval.
type Job struct {
	// Name identifies the job (e.g. "practice/connection/scheduling").
	Name string
	// Interval is the pause between the end of one run and the start of the next.
	Interval time.Duration
	// Jitter is the largest fraction of Interval added at random to each
	// pause (0.1: up to 10% longer), so jobs do not run in lockstep.
	Jitter float64
	// RunAtStart runs the job as soon as the scheduler starts it.
	RunAtStart bool
	// Run does the work; trigger is TriggerStartup, TriggerSchedule or TriggerManual.
	Run func(ctx context.Context, trigger string) error
}

// Scheduler runs jobs at intervals: each job in its own goroutine, never two
// runs of the same job at once, manual triggers coalesced into one pending
// run. Its zero value is ready; call Start once.
type Scheduler struct {
	Logger *slog.Logger
	// Rand returns a uniform float in [0,1) for jitter (default math/rand/v2).
	// Jobs call it from their own goroutines: it must be safe for concurrent use.
	Rand func() float64

	mu      gosync.Mutex
	ctx     context.Context // nil until Start
	jobs    map[string]*jobState
	wg      gosync.WaitGroup
	stopped bool
}

type jobState struct {
	job     Job
	trigger chan struct{} // capacity 1: a pending manual run
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewScheduler returns a Scheduler that logs failed runs to logger (nil: not logged).
func NewScheduler(logger *slog.Logger) *Scheduler { return &Scheduler{Logger: logger} }

// Add registers a job; when the scheduler is running it starts at once.
func (s *Scheduler) Add(j Job) error {
	if j.Name == "" || j.Run == nil {
		return errors.New("sync: a job needs a name and a Run function")
	}
	if j.Interval <= 0 {
		return fmt.Errorf("sync: job %q needs a positive interval", j.Name)
	}
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
	js := &jobState{job: j, trigger: make(chan struct{}, 1), done: make(chan struct{})}
	s.jobs[j.Name] = js
	if s.ctx != nil {
		s.startLocked(js)
	}
	return nil
}

// Remove stops a job (waiting for a run in progress to end) and forgets it.
func (s *Scheduler) Remove(name string) error {
	s.mu.Lock()
	js, ok := s.jobs[name]
	if ok {
		delete(s.jobs, name)
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownJob, name)
	}
	if js.cancel != nil {
		js.cancel()
		<-js.done
	}
	return nil
}

// Trigger asks for a manual run of the job as soon as it is idle. Triggers
// made while a run is pending are merged into it.
func (s *Scheduler) Trigger(name string) error {
	s.mu.Lock()
	js, ok := s.jobs[name]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownJob, name)
	}
	select {
	case js.trigger <- struct{}{}:
	default: // one is already pending
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

// Run starts every job and blocks until ctx is cancelled, then waits for
// the runs in progress to return. It may be called once.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.ctx != nil || s.stopped {
		s.mu.Unlock()
		return errors.New("sync: scheduler already started")
	}
	s.ctx = ctx
	for _, js := range s.jobs {
		s.startLocked(js)
	}
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Scheduler) startLocked(js *jobState) {
	jctx, cancel := context.WithCancel(s.ctx)
	js.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(js.done)
		defer cancel()
		s.loop(jctx, js)
	}()
}

func (s *Scheduler) loop(ctx context.Context, js *jobState) {
	if js.job.RunAtStart {
		s.runOnce(ctx, js, TriggerStartup)
	}
	for {
		timer := time.NewTimer(s.pause(js.job))
		var trigger string
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
			trigger = TriggerSchedule
		case <-js.trigger:
			timer.Stop()
			trigger = TriggerManual
		}
		s.runOnce(ctx, js, trigger)
	}
}

func (s *Scheduler) runOnce(ctx context.Context, js *jobState, trigger string) {
	if ctx.Err() != nil {
		return
	}
	start := time.Now()
	err := js.job.Run(ctx, trigger)
	if err != nil && ctx.Err() == nil && s.Logger != nil {
		s.Logger.LogAttrs(ctx, slog.LevelWarn, "scheduled job failed", slog.String("job", js.job.Name),
			slog.String("trigger", trigger), slog.Duration("took", time.Since(start)), slog.String("error", err.Error()))
	}
}

// pause is the interval plus a random jitter.
func (s *Scheduler) pause(j Job) time.Duration {
	d := j.Interval
	if j.Jitter > 0 {
		r := rand.Float64
		if s.Rand != nil {
			r = s.Rand
		}
		d += time.Duration(r() * j.Jitter * float64(j.Interval))
	}
	return d
}
