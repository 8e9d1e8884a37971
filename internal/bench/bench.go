// Package bench is mediflow's benchmark harness: it measures sync
// throughput from the built-in EHR simulator (in this process or a child
// process, so the engine's memory is measured alone) into a fresh SQLite
// store (RunSync), and the app-facing FHIR API's request rate and latency under
// concurrent keep-alive load (RunAPI, with the same load generator optionally
// aimed at the Medplum peer server). `mediflow bench` and the package's
// go test benchmarks both call it; it checks correctness (the store holds
// what the source holds) but never asserts speed.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/dataclass"
	"github.com/mediflow/mediflow/internal/engine"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/flavor/generic"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/smart"
	"github.com/mediflow/mediflow/internal/smart/authserver"
)

// Practice is the simulator tenant and engine practice the benchmarks use.
const Practice = "bench"

// connectionName is the benchmark practice's one connection.
const connectionName = "ehr"

// Setup describes the simulated EHR and engine a benchmark runs against.
type Setup struct {
	// Resources is the minimum number of resources the simulator holds; the
	// synthetic data set is sized to reach it.
	Resources int
	// PageSize is the connection's page_size (1..1000).
	PageSize int
	// Dir holds the store, keys and configuration; "" makes a temporary
	// folder that Close removes.
	Dir string
	// Seed drives the synthetic data (0: 1).
	Seed uint64
	// Log receives the engine's logs (nil: discarded). Use obs.NewLogger.
	Log *slog.Logger
	// Progress, when set, receives one line per setup step (and the
	// simulator process's standard error).
	Progress io.Writer
	// SimCommand, when set, runs the simulator in a child process, so this
	// process's peak RSS is the engine's alone: the program and leading
	// arguments of a command that calls SimSourceMain with the arguments
	// NewEnv appends, e.g. {"/usr/bin/mediflow", "bench", "sim-source"}.
	// Empty: the simulator runs in this process (Env.Sim; RunAPI's Medplum
	// comparison needs that).
	SimCommand []string
}

// Env is a running simulator with its data, a signing key registered with
// it, a configuration file written for it, and an engine built from that
// file on a fresh store.
type Env struct {
	// Sim is the in-process simulator; nil when it runs in a child process
	// (Setup.SimCommand).
	Sim    *sim.Sim
	Engine *engine.Engine
	// Config is the configuration file the engine was loaded from.
	Config string
	// APIKey is the key of the "bench" app, allowed the benchmark practice.
	APIKey string
	// StorePath is the SQLite database file.
	StorePath string
	// Patients is the number of synthetic patients generated.
	Patients int
	// SourceResources is the number of resources in the simulator.
	SourceResources int
	// GenerateTime is how long sizing and generating the data took.
	GenerateTime time.Duration

	dir     string
	tempDir bool
	source  *source     // the in-process simulator, when it runs here
	child   *simProcess // the simulator process, when it runs in one
}

// NewEnv starts the simulator (on 127.0.0.1, SMART backend-services auth)
// with at least s.Resources resources, in this process or, with
// s.SimCommand, in a child process, and an engine on a new SQLite store.
// Close it when done.
func NewEnv(ctx context.Context, s Setup) (*Env, error) {
	if s.Resources <= 0 {
		return nil, errors.New("bench: Resources must be positive")
	}
	if s.PageSize <= 0 || s.PageSize > 1000 {
		return nil, fmt.Errorf("bench: page size %d must be between 1 and 1000", s.PageSize)
	}
	if s.Seed == 0 {
		s.Seed = 1
	}
	progress := func(format string, a ...any) {
		if s.Progress != nil {
			fmt.Fprintf(s.Progress, format+"\n", a...)
		}
	}
	e := &Env{dir: s.Dir}
	if e.dir == "" {
		d, err := os.MkdirTemp("", "mediflow-bench-")
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		e.dir, e.tempDir = d, true
	} else if err := os.MkdirAll(e.dir, 0o700); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	e.StorePath = filepath.Join(e.dir, "bench.db")
	// The SQLite file, its WAL and shared memory, and the search index folder.
	for _, suffix := range []string{"", "-wal", "-shm", ".index"} {
		if err := os.RemoveAll(e.StorePath + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			e.Close()
			return nil, fmt.Errorf("bench: removing the previous store: %w", err)
		}
	}

	key, err := smart.GenerateKey(smart.AlgES384)
	if err != nil {
		e.Close()
		return nil, err
	}
	pemBytes, err := smart.EncodePrivateKeyPEM(key)
	if err != nil {
		e.Close()
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(e.dir, "bench.key.pem"), pemBytes, 0o600); err != nil {
		e.Close()
		return nil, fmt.Errorf("bench: %w", err)
	}
	jwks, err := smart.PublicJWKS(key)
	if err != nil {
		e.Close()
		return nil, err
	}

	var baseURL string
	if len(s.SimCommand) > 0 {
		jwksFile := filepath.Join(e.dir, "bench.jwks.json")
		if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
			e.Close()
			return nil, fmt.Errorf("bench: %w", err)
		}
		progress("starting the simulator process")
		child, err := startSimProcess(ctx, s.SimCommand, s.Resources, s.Seed, jwksFile, s.Progress)
		if err != nil {
			e.Close()
			return nil, err
		}
		e.child = child
		baseURL = child.ready.BaseURL
		e.Patients, e.SourceResources = child.ready.Patients, child.ready.Resources
		e.GenerateTime = time.Duration(child.ready.GenerateNanos)
	} else {
		src, err := startSource(ctx, s.Resources, s.Seed, jwks, progress)
		if err != nil {
			e.Close()
			return nil, err
		}
		e.source, e.Sim = src, src.sim
		baseURL = src.sim.BaseURL(Practice)
		e.Patients, e.SourceResources, e.GenerateTime = src.patients, src.resources, src.generateTime
	}

	e.APIKey = "bench-api-key-" + strconv.FormatUint(s.Seed, 16) + "-0123456789abcdef"
	if err := os.WriteFile(filepath.Join(e.dir, "app.key"), []byte(e.APIKey+"\n"), 0o600); err != nil {
		e.Close()
		return nil, fmt.Errorf("bench: %w", err)
	}
	e.Config = filepath.Join(e.dir, "mediflow.yaml")
	if err := os.WriteFile(e.Config, []byte(configYAML(baseURL, filepath.Base(e.StorePath), s.PageSize)), 0o600); err != nil {
		e.Close()
		return nil, fmt.Errorf("bench: %w", err)
	}
	cfg, err := config.Load(e.Config, func(string) string { return "" })
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("bench: configuration: %w", err)
	}
	log := s.Log
	if log == nil {
		log = obs.NewLogger(io.Discard, slog.LevelError, "json")
	}
	eng, err := engine.New(ctx, cfg, engine.Options{Logger: log, Getenv: func(string) string { return "" }})
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("bench: engine: %w", err)
	}
	e.Engine = eng
	return e, nil
}

// source is a simulator serving the benchmark's synthetic data on
// 127.0.0.1 with the benchmark client registered. The in-process mode and
// the simulator process (SimSourceMain) both run one.
type source struct {
	sim          *sim.Sim
	cancel       context.CancelFunc
	patients     int
	resources    int
	generateTime time.Duration
}

// startSource generates at least resources resources from seed, serves
// them on 127.0.0.1:0 and registers the client "mediflow-bench" with the
// public keys jwks and a read/search scope for every resource type. Stop it
// with stop.
func startSource(ctx context.Context, resources int, seed uint64, jwks []byte, progress func(string, ...any)) (*source, error) {
	start := time.Now()
	data, err := SizeData(resources, seed)
	if err != nil {
		return nil, err
	}
	progress("generating synthetic data: %d patients for at least %d resources", data.Patients, resources)
	simulator, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{ID: Practice, Flavor: generic.Name, Seed: seed, Data: &data}}})
	if err != nil {
		return nil, fmt.Errorf("bench: simulator: %w", err)
	}
	src := &source{sim: simulator, patients: data.Patients, generateTime: time.Since(start)}
	for _, n := range simulator.Counts(Practice) {
		src.resources += n
	}
	progress("simulator holds %d resources (generated in %s)", src.resources, src.generateTime.Round(time.Millisecond))

	simCtx, cancel := context.WithCancel(ctx)
	if _, err := simulator.Start(simCtx, "127.0.0.1:0"); err != nil {
		cancel()
		return nil, fmt.Errorf("bench: simulator: %w", err)
	}
	src.cancel = cancel
	types := simulator.ResourceTypes(Practice)
	scopes := make([]string, 0, len(types))
	for _, rt := range types {
		scopes = append(scopes, "system/"+rt+".rs")
	}
	if err := simulator.RegisterClient(Practice, authserver.Client{ID: "mediflow-bench", JWKS: jwks, Scopes: scopes}); err != nil {
		src.stop()
		return nil, fmt.Errorf("bench: %w", err)
	}
	return src, nil
}

// stop stops serving and waits for the simulator's goroutines.
func (s *source) stop() {
	s.cancel()
	s.sim.Wait()
}

// configYAML is the benchmark's configuration: one practice, one SMART
// connection to the simulator syncing every data class, one app.
func configYAML(baseURL, storeFile string, pageSize int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "server:\n  listen: 127.0.0.1:0\nstore:\n  driver: sqlite\n  path: %s\nlog:\n  level: error\n", storeFile)
	fmt.Fprintf(&b, "practices:\n  - id: %s\n    name: Benchmark Practice\n    connections:\n", Practice)
	fmt.Fprintf(&b, "      - name: %s\n        vendor: generic\n        base_url: %s\n        timeout: 60s\n        page_size: %d\n", connectionName, baseURL, pageSize)
	b.WriteString("        auth:\n          type: smart-backend\n          client_id: mediflow-bench\n")
	b.WriteString("          private_key: {file: bench.key.pem}\n          algorithm: ES384\n        sync:\n")
	for _, c := range dataclass.Names() {
		fmt.Fprintf(&b, "          - class: %s\n            interval: 10m\n", c)
	}
	fmt.Fprintf(&b, "apps:\n  - name: bench\n    key: {file: app.key}\n    practices: [%s]\n", Practice)
	return b.String()
}

// Close stops the simulator (in-process or child process), closes the
// engine's store and removes a temporary folder.
func (e *Env) Close() {
	if e.Engine != nil {
		_ = e.Engine.Close()
	}
	if e.source != nil {
		e.source.stop()
	}
	if e.child != nil {
		_, _ = e.child.stop()
	}
	if e.tempDir {
		_ = os.RemoveAll(e.dir)
	}
}

// sourceCounts is the number of resources per type the simulator holds.
func (e *Env) sourceCounts() map[string]int {
	if e.child != nil {
		return e.child.ready.Counts
	}
	return e.Sim.Counts(Practice)
}

// StoreBytes is the size of the store on disk: the SQLite files (database,
// WAL, shared memory) and the search index folder beside them.
func (e *Env) StoreBytes() int64 {
	var n int64
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if fi, err := os.Stat(e.StorePath + suffix); err == nil {
			n += fi.Size()
		}
	}
	_ = filepath.WalkDir(e.StorePath+".index", func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// SizeData returns generator options (default per-patient means) whose
// data set has at least resources resources. The directory, schedules and
// slots are a fixed cost that grows with the schedule window, so small sets
// get a shorter window; then the number of patients is estimated from a
// trial generation and corrected until the count is reached.
func SizeData(resources int, seed uint64) (gen.Options, error) {
	count := func(o gen.Options) (int, error) {
		st, err := gen.Generate(o, generic.New(), func(gen.Resource) error { return nil })
		if err != nil {
			return 0, fmt.Errorf("bench: sizing the data: %w", err)
		}
		return st.Total(), nil
	}
	o := gen.Options{Tenant: Practice, Seed: seed, Patients: -1, PastDays: 60, FutureDays: 30}
	fixed, err := count(o)
	if err != nil {
		return o, err
	}
	if limit := resources / 5; fixed > limit {
		f := float64(limit) / float64(fixed)
		o.PastDays = max(1, int(60*f))
		o.FutureDays = max(1, int(30*f))
		if fixed, err = count(o); err != nil {
			return o, err
		}
	}
	o.Patients = 100
	n, err := count(o)
	if err != nil {
		return o, err
	}
	perPatient := float64(n-fixed) / float64(o.Patients)
	o.Patients = max(1, int(float64(resources-fixed)/perPatient*1.02)+1)
	for range 8 {
		if n, err = count(o); err != nil {
			return o, err
		}
		if n >= resources {
			return o, nil
		}
		o.Patients = max(o.Patients+1, int(float64(o.Patients)*float64(resources)/float64(n)*1.01)+1)
	}
	return o, fmt.Errorf("bench: could not size a data set of %d resources", resources)
}

// PeakRSS is the process's peak resident set size (VmHWM in
// /proc/self/status), in bytes; 0 where /proc is unavailable.
func PeakRSS() int64 { return procFields("/proc/self/status")["VmHWM"] * 1024 }

// procFields reads a /proc file of "key: number [unit]" lines (status,
// meminfo, io) into the first number of each; nil where it cannot be read.
func procFields(path string) map[string]int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if f := strings.Fields(v); len(f) > 0 {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				out[k] = n
			}
		}
	}
	return out
}

// Machine describes where a benchmark ran.
type Machine struct {
	CPUs      int
	CPUModel  string
	MemTotal  int64 // bytes
	GoVersion string
	OS, Arch  string
}

// ThisMachine reads the CPU model and memory from /proc where available.
func ThisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	m.MemTotal = procFields("/proc/meminfo")["MemTotal"] * 1024
	return m
}

// String is a one-line description.
func (m Machine) String() string {
	model := m.CPUModel
	if model == "" {
		model = "unknown CPU"
	}
	return fmt.Sprintf("%d CPUs (%s), %.1f GiB RAM, %s %s/%s", m.CPUs, model, float64(m.MemTotal)/(1<<30), m.GoVersion, m.OS, m.Arch)
}
