package bench

// The bulk ingest benchmark: the simulator (in a child process, like bench
// sync) holds the synthetic data set and serves a system-level FHIR Bulk
// Data export split into NDJSON files; the engine side is the production
// path, sync.BulkIngester with the bulk client (SMART backend-services
// auth), the production mapper and the engine's SQLite store. The whole
// export is timed: kick-off, status polls, manifest, then every file
// downloaded, parsed, stored raw, mapped and written.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"sort"
	"strings"
	gosync "sync"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/connector/bulk"
	"github.com/mediflow/mediflow/internal/engine"
	"github.com/mediflow/mediflow/internal/smart"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/sync"
)

// BulkOptions describes one bulk ingest benchmark.
type BulkOptions struct {
	// Setup is the simulator and engine: Resources (the least number of
	// resources the simulator holds and exports), Dir, Seed, Log, Progress
	// and SimCommand (the simulator in a child process, so PeakRSS is the
	// engine's alone). PageSize is not used.
	Setup
	// Workers is how many files are downloaded and ingested at once
	// (0: DefaultBulkWorkers).
	Workers int
	// BatchSize is the most resources per batch given to the ingester: one
	// raw payload and one store transaction each (0: DefaultBulkBatch).
	BatchSize int
	// NoMapping stores the resources as the simulator sent them, without
	// the production mapper. The engine maps; this only measures what
	// mapping costs.
	NoMapping bool
	// HeapProfile, when set, is a file that receives a heap profile
	// (pprof) each time the live heap reaches a new peak, at most every
	// half second: the last one written shows what the peak was made of.
	HeapProfile string
}

// Defaults of the bulk ingest benchmark. Two workers: the store has one
// writer, so while one worker writes its batch the other downloads and maps
// the next; more workers add memory (a batch each in flight) without
// adding throughput on two cores (docs/benchmarks.md, "Bulk ingest").
// Batches of 1,000 resources are the bulk client's default.
const (
	DefaultBulkWorkers = 2
	DefaultBulkBatch   = 1000
)

// BulkResult is what one bulk ingest measured.
type BulkResult struct {
	// Resources is the number of resources the export delivered and the
	// store holds; Types splits it by resource type.
	Resources int
	Types     map[string]int
	// Files is the number of NDJSON output files; Bytes their size.
	Files int
	Bytes int64
	// Duration is the wall time of the whole export: kick-off to the last
	// file stored. PerSecond is Resources / Duration.
	Duration  time.Duration
	PerSecond float64
	// Manifest is the time from kick-off to the manifest (the simulator
	// preparing the export and the status polls); Ingest the time from the
	// manifest to the last file stored (download, parse, raw store, map,
	// write); IngestPerSecond is Resources / Ingest.
	Manifest, Ingest time.Duration
	IngestPerSecond  float64
	// CPU is this process's user and system CPU time during the export
	// (the engine's alone when SimProcess).
	CPUUser, CPUSystem time.Duration
	// PeakRSS is this process's peak resident set size (VmHWM) in bytes,
	// the engine's alone when SimProcess; SimPeakRSS the simulator
	// process's.
	PeakRSS    int64
	SimProcess bool
	SimPeakRSS int64
	// SimCPU is the simulator process's CPU time (user + system) during
	// the export, -1 when unknown (the simulator in this process, or no
	// /proc): the share of the two cores the engine did not get.
	SimCPU time.Duration
	// HeapBase, HeapPeak and HeapAfter are the live heap before, at its
	// highest during, and after the export (see SyncResult).
	HeapBase, HeapPeak, HeapAfter int64
	// GoPeak is the most memory the Go runtime held from the OS during the
	// export (heap, stacks and runtime metadata, less what it released), as
	// sampled every 20 ms: PeakRSS minus it is, roughly, memory outside
	// Go's heap (SQLite's page caches through modernc's allocator) and the
	// binary's own pages.
	GoPeak int64
	// StoreBytes is the store's size on disk after closing it.
	StoreBytes int64
	// IO is what this process wrote and read during the export
	// (/proc/self/io; IO.ok false where unknown): the engine's alone when
	// SimProcess, including the HTTP download it read.
	IO ioCounts
	// Settings.
	Workers, BatchSize int
	Mapping            bool
	Patients           int
	GenerateTime       time.Duration
	Load               [2]string // /proc/loadavg's 1-minute figure before and after, "" where unknown
}

// bulkPoll is the wait between status polls. The simulator's generic
// flavour answers Retry-After: 1; the benchmark polls sooner (clamped by
// the client's MaxPoll) so a poll's wait does not hide the time the
// simulator took to prepare the export. Production keeps the client's
// defaults.
const bulkPoll = 20 * time.Millisecond

// RunBulk starts the simulator and an engine on a fresh store (NewEnv),
// runs one system-level bulk export into it with sync.BulkIngester and the
// production mapper, and checks that the run succeeded, the export
// delivered every resource of the source once, and the store holds exactly
// as many resources of each type as the simulator.
func RunBulk(ctx context.Context, o BulkOptions) (*BulkResult, error) {
	if o.Workers == 0 {
		o.Workers = DefaultBulkWorkers
	}
	if o.BatchSize == 0 {
		o.BatchSize = DefaultBulkBatch
	}
	if o.Workers < 0 || o.BatchSize < 0 {
		return nil, errors.New("bench: bulk workers and batch size must be positive")
	}
	s := o.Setup
	s.PageSize = 1000 // unused by a bulk export; NewEnv's configuration needs one
	load0 := loadAverage()
	env, err := NewEnv(ctx, s)
	if err != nil {
		return nil, err
	}
	defer env.Close()
	res, err := env.Bulk(ctx, o)
	if err != nil {
		return nil, err
	}
	if env.child != nil {
		if res.SimPeakRSS, err = env.child.stop(); err != nil {
			return nil, err
		}
	}
	if err := env.Engine.Close(); err != nil {
		return nil, fmt.Errorf("bench: closing the store: %w", err)
	}
	res.StoreBytes = env.StoreBytes()
	res.Load = [2]string{load0, loadAverage()}
	return res, nil
}

// Bulk runs one system-level bulk export of the Env's simulator into its
// engine's store, times it and checks the store against the simulator.
// Only o's Workers, BatchSize and NoMapping are read.
func (e *Env) Bulk(ctx context.Context, o BulkOptions) (*BulkResult, error) {
	workers, batch := o.Workers, o.BatchSize
	if workers <= 0 {
		workers = DefaultBulkWorkers
	}
	if batch <= 0 {
		batch = DefaultBulkBatch
	}
	cfg, err := config.Load(e.Config, func(string) string { return "" })
	if err != nil {
		return nil, fmt.Errorf("bench: configuration: %w", err)
	}
	conn := cfg.Practices[0].Connections[0]
	var mapper sync.Mapper
	if !o.NoMapping {
		m, err := engine.NewMapper(cfg, nil)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		mapper = m
	}
	pemBytes, err := os.ReadFile(filepath.Join(e.dir, "bench.key.pem"))
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	key, err := smart.DecodePrivateKeyPEM(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	want := e.sourceCounts()
	types := make([]string, 0, len(want))
	for rt := range want {
		types = append(types, rt)
	}
	sort.Strings(types)
	scopes := make([]string, len(types))
	for i, rt := range types {
		scopes[i] = "system/" + rt + ".rs"
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = workers + 2
	tr.ReadBufferSize = 64 << 10 // as the engine's client (internal/engine newHTTPClient)
	hc := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	tokens, err := smart.NewClient(smart.ClientConfig{ClientID: conn.Auth.ClientID, FHIRBaseURL: conn.BaseURL,
		Key: key, Algorithm: conn.Auth.Algorithm, Scopes: scopes, HTTPClient: hc})
	if err != nil {
		return nil, fmt.Errorf("bench: smart client: %w", err)
	}
	client, err := bulk.New(bulk.Config{BaseURL: conn.BaseURL, HTTPClient: hc, Tokens: tokens,
		Workers: workers, BatchSize: batch, MinPoll: bulkPoll, MaxPoll: bulkPoll})
	if err != nil {
		return nil, fmt.Errorf("bench: bulk client: %w", err)
	}
	// The token is fetched before the clock starts, as a running engine
	// holds one already.
	if _, err := tokens.Token(ctx); err != nil {
		return nil, fmt.Errorf("bench: token: %w", err)
	}
	st := e.Engine.Store()
	bst, ok := st.(sync.BulkStore)
	if !ok {
		return nil, errors.New("bench: the engine's store cannot keep bulk export state")
	}
	in := &sync.BulkIngester{Store: bst, Mapper: mapper}

	var mu gosync.Mutex
	var manifestAt time.Time
	var last bulk.Progress
	src := sync.BulkSource{Practice: Practice, Connection: conn.Name, Client: client,
		Request: bulk.Request{Level: bulk.LevelSystem},
		Progress: func(p bulk.Progress) {
			mu.Lock()
			defer mu.Unlock()
			if p.Phase == bulk.PhaseDownloading && manifestAt.IsZero() {
				manifestAt = time.Now()
			}
			last = p
		}}

	runtime.GC()
	base := heapInUse()
	sampleCtx, stopSampling := context.WithCancel(ctx)
	peakc := make(chan [2]int64, 1)
	go func() { peakc <- sampleMemory(sampleCtx, 20*time.Millisecond, o.HeapProfile) }()
	simPID := 0
	if e.child != nil && e.child.cmd.Process != nil {
		simPID = e.child.cmd.Process.Pid
	}
	sim0 := time.Duration(-1)
	if simPID != 0 {
		sim0 = childCPU(simPID)
	}
	io0, cpu0 := processIO(), processCPU()
	start := time.Now()
	run, runErr := in.Run(ctx, src, "bench")
	took := time.Since(start)
	cpu1, io1 := processCPU(), processIO()
	simCPU := time.Duration(-1)
	if sim1 := childCPU(simPID); simPID != 0 && sim0 >= 0 && sim1 >= 0 {
		simCPU = sim1 - sim0
	}
	stopSampling()
	peak := <-peakc
	if runErr != nil {
		return nil, fmt.Errorf("bench: bulk export: %w", runErr)
	}
	if run.Status != store.RunSucceeded {
		return nil, fmt.Errorf("bench: bulk run %d ended %s: %s", run.ID, run.Status, run.Error)
	}
	runtime.GC()

	mu.Lock()
	res := &BulkResult{Types: map[string]int{}, Duration: took, Files: last.FilesTotal, Bytes: last.Bytes,
		CPUUser: cpu1.user - cpu0.user, CPUSystem: cpu1.system - cpu0.system, IO: io1.sub(io0),
		HeapBase: base, HeapPeak: max(peak[0], base), HeapAfter: heapInUse(), GoPeak: peak[1], SimProcess: e.child != nil, SimCPU: simCPU,
		Workers: workers, BatchSize: batch, Mapping: mapper != nil, Patients: e.Patients, GenerateTime: e.GenerateTime}
	if !manifestAt.IsZero() {
		res.Manifest = manifestAt.Sub(start)
		res.Ingest = took - res.Manifest
	}
	mu.Unlock()

	fetched := 0
	var diffs []string
	for rt, ts := range run.Stats {
		fetched += ts.Fetched
		if ts.Failed > 0 {
			diffs = append(diffs, fmt.Sprintf("%s: %d failed", rt, ts.Failed))
		}
	}
	counts, err := st.CountResources(ctx, Practice)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	for rt, n := range want {
		if counts[rt] != n {
			diffs = append(diffs, fmt.Sprintf("%s: store %d, source %d", rt, counts[rt], n))
		}
		res.Types[rt] = counts[rt]
		res.Resources += counts[rt]
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
	if fetched != e.SourceResources || res.Resources != e.SourceResources {
		return nil, fmt.Errorf("bench: the export delivered %d resources and the store holds %d; the source holds %d",
			fetched, res.Resources, e.SourceResources)
	}
	if took > 0 {
		res.PerSecond = float64(res.Resources) / took.Seconds()
	}
	if res.Ingest > 0 {
		res.IngestPerSecond = float64(res.Resources) / res.Ingest.Seconds()
	}
	res.PeakRSS = PeakRSS()
	res.StoreBytes = e.StoreBytes()
	return res, nil
}

// Print writes the result as a short report.
func (r *BulkResult) Print(w io.Writer) {
	mapping := "production mapper"
	if !r.Mapping {
		mapping = "no mapping"
	}
	fmt.Fprintf(w, "resources      %d (%d patients) in %d NDJSON files, %.1f MiB\n", r.Resources, r.Patients, r.Files, float64(r.Bytes)/(1<<20))
	fmt.Fprintf(w, "settings       %d workers, batches of %d, %s\n", r.Workers, r.BatchSize, mapping)
	fmt.Fprintf(w, "export time    %.2f s (kick-off to manifest %.2f s, download + ingest %.2f s)\n",
		r.Duration.Seconds(), r.Manifest.Seconds(), r.Ingest.Seconds())
	fmt.Fprintf(w, "throughput     %.0f resources/s (whole export); %.0f resources/s download + ingest\n", r.PerSecond, r.IngestPerSecond)
	cpu := r.CPUUser + r.CPUSystem
	fmt.Fprintf(w, "engine CPU     %.2f s (user %.2f s, system %.2f s): %.2f cores on average; %.1f µs per resource\n",
		cpu.Seconds(), r.CPUUser.Seconds(), r.CPUSystem.Seconds(), cpu.Seconds()/max(r.Duration.Seconds(), 1e-9),
		float64(cpu.Microseconds())/float64(max(r.Resources, 1)))
	loaded := " (simulator data loaded)"
	if r.SimProcess {
		loaded = ""
		fmt.Fprintf(w, "peak RSS       %.0f MiB engine process (VmHWM; the simulator runs in a separate process)\n", float64(r.PeakRSS)/(1<<20))
		fmt.Fprintf(w, "sim peak RSS   %.0f MiB simulator process (VmHWM; holds the whole synthetic data set)\n", float64(r.SimPeakRSS)/(1<<20))
		if r.SimCPU >= 0 {
			fmt.Fprintf(w, "sim CPU        %.2f s during the export (%.2f cores on average; %.1f µs per resource)\n",
				r.SimCPU.Seconds(), r.SimCPU.Seconds()/max(r.Duration.Seconds(), 1e-9), float64(r.SimCPU.Microseconds())/float64(max(r.Resources, 1)))
		}
	} else {
		fmt.Fprintf(w, "peak RSS       %.0f MiB (VmHWM; includes the in-process simulator and its data)\n", float64(r.PeakRSS)/(1<<20))
	}
	fmt.Fprintf(w, "live heap      %.0f MiB before the export%s, peak %.0f MiB during it (+%.0f MiB), %.0f MiB after it\n",
		float64(r.HeapBase)/(1<<20), loaded, float64(r.HeapPeak)/(1<<20), float64(r.HeapPeak-r.HeapBase)/(1<<20), float64(r.HeapAfter)/(1<<20))
	fmt.Fprintf(w, "Go memory      %.0f MiB at most held by the Go runtime (heap, stacks, metadata); the rest of the peak RSS is outside it\n", float64(r.GoPeak)/(1<<20))
	fmt.Fprintf(w, "store size     %.1f MiB\n", float64(r.StoreBytes)/(1<<20))
	if r.IO.ok && r.Resources > 0 {
		n := float64(r.Resources)
		fmt.Fprintf(w, "I/O            per resource: written %.0f B in %.2f write calls (%.0f B sent to storage), read %.0f B in %.2f read calls (download included)\n",
			float64(r.IO.wchar)/n, float64(r.IO.syscw)/n, float64(r.IO.writeBytes)/n, float64(r.IO.rchar)/n, float64(r.IO.syscr)/n)
	}
	if r.Load[0] != "" || r.Load[1] != "" {
		fmt.Fprintf(w, "load average   %s before, %s after (1 min)\n", r.Load[0], r.Load[1])
	}
	fmt.Fprintf(w, "data generated in %.2f s (not part of the export time)\n", r.GenerateTime.Seconds())
	types := make([]string, 0, len(r.Types))
	for rt := range r.Types {
		types = append(types, rt)
	}
	sort.Strings(types)
	parts := make([]string, 0, len(types))
	for _, rt := range types {
		parts = append(parts, fmt.Sprintf("%s %d", rt, r.Types[rt]))
	}
	fmt.Fprintf(w, "per type       %s\n", strings.Join(parts, ", "))
}

// sampleMemory samples the live heap and the memory the Go runtime holds
// every interval until ctx ends and returns the highest of each. With
// heapProfile set, a new peak of the live heap writes a heap profile there
// (at most every half second).
func sampleMemory(ctx context.Context, interval time.Duration, heapProfile string) [2]int64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	var peak [2]int64
	var written time.Time
	read := func() {
		metrics.Read(s)
		for _, x := range s {
			if x.Value.Kind() != metrics.KindUint64 {
				return
			}
		}
		live := int64(s[0].Value.Uint64())
		if live > peak[0] && heapProfile != "" && time.Since(written) >= 500*time.Millisecond {
			if f, err := os.Create(heapProfile); err == nil {
				_ = pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
				written = time.Now()
			}
		}
		peak[0] = max(peak[0], live)
		peak[1] = max(peak[1], int64(s[1].Value.Uint64())-int64(s[2].Value.Uint64()))
	}
	read()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			read()
			return peak
		case <-t.C:
			read()
		}
	}
}

// loadAverage is the 1-minute load average from /proc/loadavg ("" where
// unavailable).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return ""
}
