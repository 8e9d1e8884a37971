//go:build unix

package sync

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// processCPU is the CPU time (user + system) this process has used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkScheduler1000x4 measures the CPU the scheduler costs for 1,000
// practices × 4 polled data classes (demographics, scheduling, insurance,
// clinical) at 1-minute intervals: 4,000 jobs, ~67 runs a second, each on
// its practice's base-URL and token-endpoint rate limits, with a trivial Run.
//
// Scaling: waiting for real minutes would make the measurement long and
// its signal tiny, so the jobs run at 1-second intervals instead: the same
// 4,000 jobs, 60 times the dispatch rate. A parked scheduler costs nothing
// (one goroutine in select, one timer), so its CPU is proportional to the
// number of runs it dispatches; the cost at 1-minute intervals is the
// measured cost divided by 60. The process's whole CPU time (getrusage:
// dispatch loop, heap, rate limiters, worker goroutines, timers, GC and the
// trivial Run) over the measured window counts as overhead, so the figure
// is an upper bound. Reported:
//
//	%core@1m     overhead at 1-minute intervals, in % of one core (must be < 5)
//	%core@1s     the measured overhead at 1-second intervals
//	cpu-µs/run   CPU per dispatched run
//	runs/s       runs dispatched per second (4,000 expected)
//	lag-ms/run   mean time from due to start (the scheduler keeps up when ≈ 0)
func BenchmarkScheduler1000x4(b *testing.B) {
	const (
		practices = 1000
		interval  = time.Second
		scale     = float64(time.Minute / interval)
		window    = 5 * time.Second // measured per b.N
	)
	classes := []string{"demographics", "scheduling", "insurance", "clinical"}
	s := &Scheduler{StartWindow: interval}
	var runs atomic.Int64
	run := func(context.Context, string) error { runs.Add(1); return nil }
	for p := range practices {
		base := fmt.Sprintf("base:https://ehr-%04d.example.org/fhir", p)
		token := fmt.Sprintf("token:https://ehr-%04d.example.org/oauth2/token", p)
		// 4 runs a second per practice at this scale; the limits let them
		// through but are consulted on every run.
		s.SetLimit(base, Limit{Rate: 10, Burst: 10})
		s.SetLimit(token, Limit{Rate: 10, Burst: 10})
		for _, c := range classes {
			err := s.Add(Job{Name: fmt.Sprintf("practice-%04d/ehr/%s", p, c), Interval: interval, Jitter: 0.1,
				RunAtStart: true, Limits: []string{base, token}, Run: run})
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	time.Sleep(2 * interval) // past the spread first runs: steady state

	b.ResetTimer()
	st0, runs0, cpu0, wall0 := s.Stats(), runs.Load(), processCPU(b), time.Now()
	time.Sleep(time.Duration(b.N) * window)
	cpu, wall := processCPU(b)-cpu0, time.Since(wall0)
	n, st := runs.Load()-runs0, s.Stats()
	b.StopTimer()

	if n == 0 {
		b.Fatal("no run in the measured window")
	}
	core := cpu.Seconds() / wall.Seconds() * 100
	b.ReportMetric(core/scale, "%core@1m")
	b.ReportMetric(core, "%core@1s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/run")
	b.ReportMetric(float64(n)/wall.Seconds(), "runs/s")
	b.ReportMetric(float64((st.Lag-st0.Lag).Milliseconds())/float64(st.Runs-st0.Runs), "lag-ms/run")
	b.ReportMetric(0, "ns/op") // one op is a whole window; the metrics above say what matters
	if core/scale >= 5 {
		b.Errorf("scheduler overhead at 1-minute intervals is %.2f%% of a core, want < 5%%", core/scale)
	}
	if rate := float64(n) / wall.Seconds(); rate < 0.9*practices*float64(len(classes)) {
		b.Errorf("dispatched %.0f runs/s, want about %d: the scheduler does not keep up", rate, practices*len(classes))
	}
}
