package bench

// The write-back benchmark (bench writeback): how fast the engine's
// write-back accepts intents and delivers them to the simulator. The
// engine is built from a configuration with write-back on for the
// benchmark practice, so its Intents check every request against the
// generic vendor's write contract and mapping (contract.Validate) before
// the outbox stores it, exactly as the API does, and the outbox verifies
// every write by reading it back. The simulator (generic flavour, open
// auth, loopback) runs in this process or, with SimCommand, in a child
// process (`mediflow bench sim-writeback`, WritebackSimMain) that answers
// over pipes:
//
//   - the child writes one JSON line (writebackSimReady: its URL, the
//     patient ids, its CPU time so far);
//   - when its standard input closes it writes a second line
//     (writebackSimDone: the notes carrying mediflow's identifier, counted
//     per identifier, its CPU time and peak RSS) and exits.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/engine"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/flavor/generic"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/writeback"
	"github.com/mediflow/mediflow/internal/writeback/contract"
)

// Defaults of the write-back benchmark.
const (
	DefaultWritebackIntents     = 20000
	DefaultWritebackConcurrency = 8
	DefaultWritebackPatients    = 200
	// writebackTimeout bounds the delivery phase.
	writebackTimeout = 30 * time.Minute
)

// WritebackOptions configure RunWriteback.
type WritebackOptions struct {
	// Intents is the number of note intents submitted (0: 20,000).
	Intents int
	// Concurrency is the number of goroutines submitting (0: 8).
	Concurrency int
	// Patients is the number of patients in the simulator; the notes are
	// spread over them (0: 200). The outbox runs one intent per patient at
	// a time.
	Patients int
	// Seed drives the synthetic data (0: 1).
	Seed uint64
	// Dir holds the store and configuration; "" makes a temporary folder
	// that is removed afterwards.
	Dir string
	// SimCommand, when set, runs the simulator in a child process: the
	// program and leading arguments of a command that calls
	// WritebackSimMain, e.g. {"/usr/bin/mediflow", "bench", "sim-writeback"}.
	SimCommand []string
	Log        *slog.Logger // engine logs (nil: discarded)
	Progress   io.Writer    // one line per step (nil: none)
}

// WritebackResult is what one write-back run measured.
type WritebackResult struct {
	Intents, Concurrency, Patients int
	// SubmitTime is phase 1 (every intent accepted); Accepted is the
	// intents accepted per second.
	SubmitTime time.Duration
	Accepted   float64
	// DeliverTime is phase 2 (the outbox running until every intent is
	// final); Delivered is confirmed intents per second.
	DeliverTime time.Duration
	Delivered   float64
	// Statuses counts the intents per final status.
	Statuses map[string]int
	// Attempts is the total number of execution attempts.
	Attempts int
	// Notes is the number of records at the EHR that carry mediflow's
	// identifier, Identifiers the distinct identifiers among them, and
	// Duplicates the records beyond the first per identifier.
	Notes, Identifiers, Duplicates int
	// SubmitCPU and DeliverCPU are this (the engine's) process's CPU time
	// per phase in percent of one CPU; SimCPU is the simulator's over
	// both phases when it runs in a child process (-1: not measured).
	SubmitCPU, DeliverCPU, SimCPU float64
	SimProcess                    bool
	// Load is the load average before and after the run.
	LoadBefore, LoadAfter string
	// OutboxConcurrency (writes at once to the practice's EHR),
	// OutboxTotal (over all practices) and PollInterval are the engine
	// outbox's settings (its defaults; the benchmark does not change them).
	OutboxConcurrency, OutboxTotal int
	PollInterval                   time.Duration
	PeakRSS                        int64
}

// writebackSimReady is the simulator process's first line.
type writebackSimReady struct {
	BaseURL  string   `json:"baseURL"`
	Patients []string `json:"patients"`
	CPUNanos int64    `json:"cpuNanos"`
}

// writebackSimDone is its last line.
type writebackSimDone struct {
	Tally    noteTally `json:"tally"`
	CPUNanos int64     `json:"cpuNanos"`
	PeakRSS  int64     `json:"peakRSS"`
}

// noteTally counts the simulator's DocumentReferences written by mediflow.
type noteTally struct {
	Notes       int `json:"notes"`       // records with mediflow's identifier
	Identifiers int `json:"identifiers"` // distinct identifiers among them
}

// newWritebackSim generates patients patients (generic flavour, open auth)
// and serves them on 127.0.0.1:0 until ctx ends; wait waits for it.
func newWritebackSim(ctx context.Context, patients int, seed uint64) (s *sim.Sim, ids []string, err error) {
	s, err = sim.New(sim.Config{Tenants: []sim.TenantConfig{{ID: Practice, Flavor: generic.Name, Seed: seed, OpenAuth: true,
		Data: &gen.Options{Tenant: Practice, Seed: seed, Patients: patients, PastDays: 7, FutureDays: 7}}}})
	if err != nil {
		return nil, nil, fmt.Errorf("bench: simulator: %w", err)
	}
	if _, err := s.Start(ctx, "127.0.0.1:0"); err != nil {
		return nil, nil, fmt.Errorf("bench: simulator: %w", err)
	}
	for id := range s.Current(Practice, "Patient") {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return s, ids, nil
}

// tallyNotes counts the simulator's notes that carry mediflow's identifier.
func tallyNotes(s *sim.Sim) (noteTally, error) {
	var t noteTally
	seen := map[string]bool{}
	for _, body := range s.Current(Practice, "DocumentReference") {
		var doc struct {
			Identifier []struct{ System, Value string } `json:"identifier"`
		}
		if err := json.Unmarshal(body, &doc); err != nil {
			return t, fmt.Errorf("bench: a simulator DocumentReference is not JSON: %w", err)
		}
		for _, id := range doc.Identifier {
			if id.System == writeback.IdentifierSystem {
				t.Notes++
				seen[id.Value] = true
				break
			}
		}
	}
	t.Identifiers = len(seen)
	return t, nil
}

// WritebackSimMain is the simulator process of the write-back benchmark.
// args: --patients N, --seed S. See the comment at the top of this file
// for the protocol.
func WritebackSimMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sim-writeback", flag.ContinueOnError)
	fs.SetOutput(stderr)
	patients := fs.Int("patients", DefaultWritebackPatients, "patients")
	seed := fs.Uint64("seed", 1, "seed for the synthetic data")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("bench sim-writeback: %w", err)
	}
	if fs.NArg() > 0 || *patients <= 0 {
		return errors.New("bench sim-writeback: --patients must be positive and no arguments follow the flags")
	}
	simCtx, cancel := context.WithCancel(ctx)
	s, ids, err := newWritebackSim(simCtx, *patients, max(*seed, 1))
	if err != nil {
		cancel()
		return err
	}
	defer func() { cancel(); s.Wait() }()
	enc := json.NewEncoder(stdout)
	c := processCPU()
	if err := enc.Encode(writebackSimReady{BaseURL: s.BaseURL(Practice), Patients: ids, CPUNanos: int64(c.user + c.system)}); err != nil {
		return fmt.Errorf("bench sim-writeback: %w", err)
	}
	if err := waitStdinEOF(ctx, stdin); err != nil {
		return err
	}
	c = processCPU()
	t, err := tallyNotes(s)
	if err != nil {
		return err
	}
	if err := enc.Encode(writebackSimDone{Tally: t, CPUNanos: int64(c.user + c.system), PeakRSS: PeakRSS()}); err != nil {
		return fmt.Errorf("bench sim-writeback: %w", err)
	}
	return nil
}

// writebackSim is the simulator seen from the benchmark.
type writebackSim struct {
	baseURL  string
	patients []string
	// in-process
	sim    *sim.Sim
	cancel context.CancelFunc
	// child process
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *tailWriter
	cpu0   int64
}

func startWritebackSim(ctx context.Context, o WritebackOptions) (*writebackSim, error) {
	if len(o.SimCommand) == 0 {
		simCtx, cancel := context.WithCancel(ctx)
		s, ids, err := newWritebackSim(simCtx, o.Patients, o.Seed)
		if err != nil {
			cancel()
			return nil, err
		}
		return &writebackSim{baseURL: s.BaseURL(Practice), patients: ids, sim: s, cancel: cancel}, nil
	}
	args := append(append([]string(nil), o.SimCommand[1:]...), "--patients", strconv.Itoa(o.Patients), "--seed", strconv.FormatUint(o.Seed, 10))
	cmd := exec.CommandContext(ctx, o.SimCommand[0], args...)
	cmd.WaitDelay = 5 * time.Second
	w := &writebackSim{cmd: cmd, stderr: &tailWriter{max: 4096}}
	cmd.Stderr = w.stderr
	var err error
	if w.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("bench: simulator process: %w", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: simulator process: %w", err)
	}
	w.stdout = bufio.NewReader(out)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: starting the simulator process: %w", err)
	}
	var ready writebackSimReady
	line, err := w.stdout.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &ready)
	}
	if err == nil && (ready.BaseURL == "" || len(ready.Patients) == 0) {
		err = errors.New("incomplete ready line")
	}
	if err != nil {
		_ = cmd.Process.Kill()
		waitErr := cmd.Wait()
		return nil, fmt.Errorf("bench: the simulator process failed to start (%v; %v)%s", err, waitErr, w.stderr.suffix())
	}
	w.baseURL, w.patients, w.cpu0 = ready.BaseURL, ready.Patients, ready.CPUNanos
	return w, nil
}

// finish stops the simulator and returns its tally and, for a child
// process, its CPU time since it was ready (-1 in-process).
func (w *writebackSim) finish() (noteTally, time.Duration, error) {
	if w.sim != nil {
		t, err := tallyNotes(w.sim)
		w.close()
		return t, -1, err
	}
	kill := time.AfterFunc(simStopTimeout, func() { _ = w.cmd.Process.Kill() })
	defer kill.Stop()
	_ = w.stdin.Close()
	var done writebackSimDone
	line, readErr := w.stdout.ReadBytes('\n')
	if readErr == nil {
		readErr = json.Unmarshal(line, &done)
	}
	waitErr := w.cmd.Wait()
	w.cmd = nil
	switch {
	case waitErr != nil:
		return done.Tally, 0, fmt.Errorf("bench: the simulator process: %w%s", waitErr, w.stderr.suffix())
	case readErr != nil:
		return done.Tally, 0, fmt.Errorf("bench: the simulator process's last line: %w", readErr)
	}
	return done.Tally, time.Duration(done.CPUNanos - w.cpu0), nil
}

// close stops the simulator without reading its tally (idempotent).
func (w *writebackSim) close() {
	if w.sim != nil {
		w.cancel()
		w.sim.Wait()
		w.sim = nil
	}
	if w.cmd != nil {
		_ = w.stdin.Close()
		_ = w.cmd.Process.Kill()
		_ = w.cmd.Wait()
		w.cmd = nil
	}
}

// writebackConfigYAML: one practice with write-back on, its connection to
// the simulator without auth (loopback), the generic vendor.
func writebackConfigYAML(baseURL, storeFile string) string {
	return fmt.Sprintf(`store:
  driver: sqlite
  path: %s
log:
  level: error
practices:
  - id: %s
    name: Benchmark Practice
    writeback:
      enabled: true
    connections:
      - name: %s
        vendor: generic
        base_url: %s
        timeout: 60s
        auth:
          type: none
        sync:
          - class: demographics
            interval: 10m
`, storeFile, Practice, connectionName, baseURL)
}

// writebackNote is the canonical note submitted for intent i.
func writebackNote(patient string, i int) []byte {
	note := map[string]any{
		"resourceType": "DocumentReference",
		"status":       "current",
		"type":         map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}}},
		"subject":      map[string]any{"reference": "Patient/" + patient},
		"content": []any{map[string]any{"attachment": map[string]any{
			"contentType": "text/plain",
			"data":        base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "Benchmark progress note %d.", i)),
		}}},
	}
	b, _ := json.Marshal(note)
	return b
}

// RunWriteback runs the write-back benchmark: phase 1 submits o.Intents
// note intents through the engine's write-back (contract validation and
// mapping included) from o.Concurrency goroutines, with the outbox
// stopped; phase 2 runs the outbox until every intent is final. It fails
// unless every intent is confirmed and the simulator holds exactly one
// note per intent.
func RunWriteback(ctx context.Context, o WritebackOptions) (_ *WritebackResult, err error) {
	o.Intents = cmpOr(o.Intents, DefaultWritebackIntents)
	o.Concurrency = cmpOr(o.Concurrency, DefaultWritebackConcurrency)
	o.Patients = cmpOr(o.Patients, DefaultWritebackPatients)
	o.Seed = cmpOr(o.Seed, 1)
	if o.Intents < 0 || o.Concurrency < 0 || o.Patients < 0 {
		return nil, errors.New("bench: write-back: intents, concurrency and patients must be positive")
	}
	progress := func(format string, a ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", a...)
		}
	}
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "mediflow-bench-writeback-"); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	storePath := filepath.Join(dir, "writeback.db")
	for _, suffix := range []string{"", "-wal", "-shm", ".index"} {
		if err := os.RemoveAll(storePath + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("bench: removing the previous store: %w", err)
		}
	}
	res := &WritebackResult{Intents: o.Intents, Concurrency: o.Concurrency, Patients: o.Patients, SimCPU: -1,
		SimProcess: len(o.SimCommand) > 0, LoadBefore: loadAverages(),
		// The engine builds its outbox with writeback's defaults: the
		// configuration leaves writeback.concurrency at its default.
		OutboxConcurrency: writeback.DefaultEHRConcurrency, OutboxTotal: writeback.DefaultConcurrency, PollInterval: time.Second}

	progress("starting the simulator (%d patients)", o.Patients)
	ws, err := startWritebackSim(ctx, o)
	if err != nil {
		return nil, err
	}
	defer ws.close()
	cfgPath := filepath.Join(dir, "mediflow.yaml")
	if err := os.WriteFile(cfgPath, []byte(writebackConfigYAML(ws.baseURL, filepath.Base(storePath))), 0o600); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	cfg, err := config.Load(cfgPath, func(string) string { return "" })
	if err != nil {
		return nil, fmt.Errorf("bench: configuration: %w", err)
	}
	log := o.Log
	if log == nil {
		log = obs.NewLogger(io.Discard, slog.LevelError, "json")
	}
	eng, err := engine.New(ctx, cfg, engine.Options{Logger: log, Getenv: func(string) string { return "" }})
	if err != nil {
		return nil, fmt.Errorf("bench: engine: %w", err)
	}
	defer eng.Close()
	wb := eng.Intents()
	if wb == nil {
		return nil, errors.New("bench: the engine has no write-back")
	}

	// Phase 1: submit.
	progress("phase 1: submitting %d note intents from %d goroutines", o.Intents, o.Concurrency)
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	subCtx, cancelSub := context.WithCancel(ctx)
	c0, t0 := processCPU(), time.Now()
	var wg sync.WaitGroup
	for range o.Concurrency {
		wg.Go(func() {
			for subCtx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= o.Intents {
					return
				}
				p := ws.patients[i%len(ws.patients)]
				_, created, err := wb.Submit(subCtx, writeback.Request{Practice: Practice, App: "bench",
					IdempotencyKey: "bench-note-" + strconv.Itoa(i), Kind: contract.NoteCreate,
					PatientRef: "Patient/" + p, Body: writebackNote(p, i)})
				if err == nil && !created {
					err = errors.New("an idempotency key named an existing intent")
				}
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("bench: submitting intent %d: %w", i, err); cancelSub() })
					return
				}
			}
		})
	}
	wg.Wait()
	cancelSub()
	res.SubmitTime = time.Since(t0)
	res.SubmitCPU = cpuPercent(c0, processCPU(), res.SubmitTime)
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.Accepted = float64(o.Intents) / res.SubmitTime.Seconds()
	progress("accepted %d intents in %.2f s (%.0f/s)", o.Intents, res.SubmitTime.Seconds(), res.Accepted)

	// Phase 2: deliver.
	progress("phase 2: running the outbox until every intent is final")
	st := eng.Store()
	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	c0, t0 = processCPU(), time.Now()
	go func() { runDone <- wb.Run(runCtx) }()
	counts, waitErr := waitIntentsFinal(ctx, st, writebackTimeout)
	res.DeliverTime = time.Since(t0)
	res.DeliverCPU = cpuPercent(c0, processCPU(), res.DeliverTime)
	stopRun()
	if err := <-runDone; err != nil && waitErr == nil {
		waitErr = fmt.Errorf("bench: the outbox: %w", err)
	}
	if waitErr != nil {
		return nil, waitErr
	}
	res.Statuses = counts
	res.Delivered = float64(counts[store.IntentConfirmed]) / res.DeliverTime.Seconds()
	for f := (store.IntentFilter{Limit: 10000}); ; {
		ins, err := st.ListIntents(ctx, Practice, f)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		for _, in := range ins {
			res.Attempts += in.Attempts
			f.BeforeSeq = in.Seq
		}
		if len(ins) < f.Limit {
			break
		}
	}

	tally, simCPU, err := ws.finish()
	if err != nil {
		return nil, err
	}
	res.Notes, res.Identifiers = tally.Notes, tally.Identifiers
	res.Duplicates = tally.Notes - tally.Identifiers
	if simCPU >= 0 {
		res.SimCPU = 100 * float64(simCPU) / float64(res.SubmitTime+res.DeliverTime)
	}
	res.LoadAfter = loadAverages()
	res.PeakRSS = PeakRSS()
	progress("delivered in %.2f s", res.DeliverTime.Seconds())

	switch {
	case counts[store.IntentConfirmed] != o.Intents:
		return res, fmt.Errorf("bench: %d of %d intents confirmed (statuses %v)", counts[store.IntentConfirmed], o.Intents, counts)
	case res.Duplicates != 0:
		return res, fmt.Errorf("bench: %d duplicate notes at the EHR", res.Duplicates)
	case tally.Identifiers != o.Intents:
		return res, fmt.Errorf("bench: the EHR holds notes for %d intents, want %d", tally.Identifiers, o.Intents)
	}
	return res, nil
}

// waitIntentsFinal polls until the benchmark practice has no open intent
// and returns the counts per status. A poll looks for one intent in each
// open status (an index seek each), not a count of every intent, so the
// poller's cost does not grow with the backlog and does not take CPU from
// the outbox it measures; the counts are read once at the end.
func waitIntentsFinal(ctx context.Context, st store.Store, timeout time.Duration) (map[string]int, error) {
	deadline := time.Now().Add(timeout)
	for {
		open := false
		for _, s := range []string{store.IntentAccepted, store.IntentSending, store.IntentSent} {
			ins, err := st.ListIntents(ctx, Practice, store.IntentFilter{Status: []string{s}, Limit: 1})
			if err != nil {
				return nil, fmt.Errorf("bench: looking for open intents: %w", err)
			}
			if len(ins) > 0 {
				open = true
				break
			}
		}
		if !open {
			n, err := st.CountIntents(ctx, Practice)
			if err != nil {
				return nil, fmt.Errorf("bench: counting intents: %w", err)
			}
			return n, nil
		}
		if time.Now().After(deadline) {
			n, err := st.CountIntents(ctx, Practice)
			if err != nil {
				return nil, fmt.Errorf("bench: counting intents: %w", err)
			}
			return nil, fmt.Errorf("bench: intents still open after %s (statuses %v)", timeout, n)
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
}

// Print writes the result as a short report.
func (r *WritebackResult) Print(w io.Writer) {
	fmt.Fprintf(w, "intents        %d notes over %d patients, contract validation and read-back verification on\n", r.Intents, r.Patients)
	fmt.Fprintf(w, "accepted       %.0f intents/s (%.2f s, %d submitting goroutines, engine CPU %.0f%%)\n", r.Accepted, r.SubmitTime.Seconds(), r.Concurrency, r.SubmitCPU)
	fmt.Fprintf(w, "delivered      %.0f writes/s confirmed (%.2f s, outbox concurrency %d per EHR, %d in all, poll %s, engine CPU %.0f%%)\n",
		r.Delivered, r.DeliverTime.Seconds(), r.OutboxConcurrency, r.OutboxTotal, r.PollInterval, r.DeliverCPU)
	statuses := make([]string, 0, len(r.Statuses))
	for s := range r.Statuses {
		statuses = append(statuses, s)
	}
	sort.Strings(statuses)
	fmt.Fprint(w, "final status  ")
	for _, s := range statuses {
		fmt.Fprintf(w, " %s %d", s, r.Statuses[s])
	}
	fmt.Fprintf(w, " (%d attempts)\n", r.Attempts)
	fmt.Fprintf(w, "at the EHR     %d notes with mediflow's identifier, %d distinct, %d duplicates\n", r.Notes, r.Identifiers, r.Duplicates)
	if r.SimProcess {
		fmt.Fprintf(w, "simulator      child process, CPU %.0f%% over both phases\n", r.SimCPU)
	} else {
		fmt.Fprintln(w, "simulator      in this process (engine CPU includes it)")
	}
	fmt.Fprintf(w, "peak RSS       %.0f MiB engine process (VmHWM)\n", float64(r.PeakRSS)/(1<<20))
	fmt.Fprintf(w, "load average   %s before, %s after\n", r.LoadBefore, r.LoadAfter)
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
