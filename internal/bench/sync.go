package bench

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/metrics"
	"sort"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// SyncResult is what one full sync measured.
type SyncResult struct {
	// Resources is the number of resources the sync fetched and stored.
	Resources int
	// Pages is the number of search pages fetched.
	Pages int
	// Types is the number of resources per type.
	Types map[string]int
	// Duration is the wall time of the sync alone (data generation excluded).
	Duration time.Duration
	// PerSecond is Resources / Duration.
	PerSecond float64
	// PeakRSS is this process's peak resident set size in bytes (VmHWM):
	// the engine's alone when SimProcess, otherwise the simulator and its
	// in-memory data included.
	PeakRSS int64
	// SimProcess says the simulator ran in a child process; SimPeakRSS is
	// that process's peak resident set size in bytes (RunSync only; 0
	// where /proc is unavailable).
	SimProcess bool
	SimPeakRSS int64
	// HeapBase is the live Go heap before the sync (after a GC; with the
	// simulator's data loaded unless SimProcess); HeapPeak is the highest live heap any GC saw
	// during the sync; HeapAfter is the live heap after it (after a GC).
	// HeapPeak-HeapBase is what the sync held at its worst; for flat memory
	// it must not grow with Resources.
	HeapBase, HeapPeak, HeapAfter int64
	// StoreBytes is the size of the SQLite files after the sync (RunSync:
	// after closing the store, so the WAL is checkpointed into the database).
	StoreBytes int64
	// Patients and GenerateTime describe the synthetic data set.
	Patients     int
	GenerateTime time.Duration
	PageSize     int
}

// RunSync builds an Env, runs one full sync of every data class and checks
// the store holds exactly as many resources of each type as the source.
// With s.SimCommand it also stops the simulator process after the sync and
// reports its peak RSS.
func RunSync(ctx context.Context, s Setup) (*SyncResult, error) {
	env, err := NewEnv(ctx, s)
	if err != nil {
		return nil, err
	}
	defer env.Close()
	res, err := env.Sync(ctx)
	if err != nil {
		return nil, err
	}
	res.PageSize = s.PageSize
	if env.child != nil {
		if res.SimPeakRSS, err = env.child.stop(); err != nil {
			return nil, err
		}
	}
	// Closing checkpoints the WAL into the database file: measure that.
	if err := env.Engine.Close(); err != nil {
		return nil, fmt.Errorf("bench: closing the store: %w", err)
	}
	res.StoreBytes = env.StoreBytes()
	return res, nil
}

// Sync runs one full sync of the Env's engine, times it and verifies the
// resource counts against the simulator.
func (e *Env) Sync(ctx context.Context) (*SyncResult, error) {
	st := e.Engine.Store()
	runsBefore, err := st.ListRuns(ctx, Practice, "", 1)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	var lastRun int64
	if len(runsBefore) > 0 {
		lastRun = runsBefore[0].ID
	}
	runtime.GC()
	base := heapInUse()
	sampleCtx, stopSampling := context.WithCancel(ctx)
	peakc := make(chan int64, 1)
	go func() { peakc <- sampleHeap(sampleCtx, 20*time.Millisecond) }()
	start := time.Now()
	syncErr := e.Engine.SyncAll(ctx, "bench")
	took := time.Since(start)
	stopSampling()
	peak := <-peakc
	if syncErr != nil {
		return nil, fmt.Errorf("bench: sync: %w", syncErr)
	}
	runtime.GC()
	heapAfter := heapInUse()

	res := &SyncResult{Types: map[string]int{}, Duration: took, Patients: e.Patients, GenerateTime: e.GenerateTime,
		HeapBase: base, HeapPeak: max(peak, base), HeapAfter: heapAfter, SimProcess: e.child != nil}
	runs, err := st.ListRuns(ctx, Practice, "", 100)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	for _, r := range runs {
		if r.ID <= lastRun {
			continue
		}
		if r.Status != store.RunSucceeded {
			return nil, fmt.Errorf("bench: run %d ended %s: %s", r.ID, r.Status, r.Error)
		}
		for _, ts := range r.Stats {
			res.Resources += ts.Fetched
			res.Pages += ts.Pages
		}
	}
	counts, err := st.CountResources(ctx, Practice)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	want := e.sourceCounts()
	var diffs []string
	for rt, n := range want {
		if counts[rt] != n {
			diffs = append(diffs, fmt.Sprintf("%s: store %d, source %d", rt, counts[rt], n))
		}
		res.Types[rt] = counts[rt]
	}
	for rt, n := range counts {
		if _, ok := want[rt]; !ok && n > 0 {
			diffs = append(diffs, fmt.Sprintf("%s: store %d, source none", rt, n))
		}
	}
	if len(diffs) > 0 {
		sort.Strings(diffs)
		return nil, fmt.Errorf("bench: the store does not match the source: %s", strings.Join(diffs, "; "))
	}
	if res.Resources != e.SourceResources {
		return nil, fmt.Errorf("bench: the sync fetched %d resources, the source holds %d", res.Resources, e.SourceResources)
	}
	if took > 0 {
		res.PerSecond = float64(res.Resources) / took.Seconds()
	}
	res.PeakRSS = PeakRSS()
	res.StoreBytes = e.StoreBytes()
	return res, nil
}

// Print writes the result as a short report.
func (r *SyncResult) Print(w io.Writer) {
	fmt.Fprintf(w, "resources      %d (%d patients, %d pages of %d)\n", r.Resources, r.Patients, r.Pages, r.PageSize)
	fmt.Fprintf(w, "sync time      %.2f s\n", r.Duration.Seconds())
	fmt.Fprintf(w, "throughput     %.0f resources/s\n", r.PerSecond)
	loaded := " (simulator data loaded)"
	if r.SimProcess {
		loaded = ""
		fmt.Fprintf(w, "peak RSS       %.0f MiB engine process (VmHWM; the simulator runs in a separate process)\n", float64(r.PeakRSS)/(1<<20))
		fmt.Fprintf(w, "sim peak RSS   %.0f MiB simulator process (VmHWM; holds the whole synthetic data set)\n", float64(r.SimPeakRSS)/(1<<20))
	} else {
		fmt.Fprintf(w, "peak RSS       %.0f MiB (VmHWM; includes the in-process simulator and its data)\n", float64(r.PeakRSS)/(1<<20))
	}
	fmt.Fprintf(w, "live heap      %.0f MiB before the sync%s, peak %.0f MiB during it (+%.0f MiB), %.0f MiB after it\n",
		float64(r.HeapBase)/(1<<20), loaded, float64(r.HeapPeak)/(1<<20), float64(r.HeapPeak-r.HeapBase)/(1<<20), float64(r.HeapAfter)/(1<<20))
	fmt.Fprintf(w, "store size     %.1f MiB\n", float64(r.StoreBytes)/(1<<20))
	fmt.Fprintf(w, "data generated in %.2f s (not part of the sync time)\n", r.GenerateTime.Seconds())
	types := make([]string, 0, len(r.Types))
	for rt := range r.Types {
		types = append(types, rt)
	}
	sort.Strings(types)
	var parts []string
	for _, rt := range types {
		parts = append(parts, fmt.Sprintf("%s %d", rt, r.Types[rt]))
	}
	fmt.Fprintf(w, "per type       %s\n", strings.Join(parts, ", "))
}

// heapInUse is the live heap as of the last GC, in bytes.
func heapInUse() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}

// sampleHeap samples the live heap every interval until ctx ends and returns the highest value.
func sampleHeap(ctx context.Context, interval time.Duration) int64 {
	t := time.NewTicker(interval)
	defer t.Stop()
	peak := heapInUse()
	for {
		select {
		case <-ctx.Done():
			return max(peak, heapInUse())
		case <-t.C:
			peak = max(peak, heapInUse())
		}
	}
}
