package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediflow/mediflow/internal/hl7/ack"
	"github.com/mediflow/mediflow/internal/hl7/mllp"
	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
	"github.com/mediflow/mediflow/internal/ingest/hl7in"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
)

// HL7IngestOptions shape the HL7 v2 ingest benchmark.
type HL7IngestOptions struct {
	// Messages are sent as fast as the ACKs come back in the throughput
	// phase (0: 100,000).
	Messages int
	// Conns is the number of MLLP connections, each sending one message at
	// a time and waiting for its ACK (0: 8).
	Conns int
	// Rate and RateDuration shape the latency phase: messages sent on a
	// fixed schedule of Rate per second for RateDuration (0: 1,000/s, 10 s;
	// Rate < 0 skips the phase).
	Rate         int
	RateDuration time.Duration
	// Process also runs the conversion to FHIR while messages arrive (as
	// the engine does); without it only receiving is measured and the
	// stored messages stay received.
	Process bool
	// Dir holds the store ("" : a temporary folder, removed afterwards).
	Dir string
	// Log receives the pipeline's logs (nil: discarded).
	Log *slog.Logger
	// Progress, when set, receives one line per phase.
	Progress io.Writer
}

// HL7IngestResult is what the HL7 v2 ingest benchmark measured.
type HL7IngestResult struct {
	Messages    int
	Conns       int
	Process     bool
	Duration    time.Duration // throughput phase, first send to last ACK
	PerSecond   float64       // Messages / Duration
	Batches     int           // commits (PutHL7Messages calls) in the throughput phase
	PhaseOneP99 time.Duration // ACK latency p99 during the flood (each connection waits for its ACK)

	Rate          int
	RateSent      int
	RateDuration  time.Duration
	P50, P90, P99 time.Duration // ACK latency at the fixed rate, from each message's scheduled send time
	Max           time.Duration
	Late          int // messages whose send started more than 1 ms after their scheduled time

	// Process only: the time from the end of the throughput phase until
	// every message sent in it was processed (the conversion backlog), and
	// the end-to-end rate: messages ÷ (throughput phase + drain).
	Drain    time.Duration
	EndToEnd float64

	Stored     int   // messages in the store at the end
	Processed  int   // of them processed (Process only)
	PeakRSS    int64 // VmHWM of the process: server, store and load generator together
	HeapPeak   int64 // highest live heap seen during the throughput phase
	StoreBytes int64
}

// countingStore counts group commits.
type countingStore struct {
	hl7in.Store
	puts atomic.Int64
}

func (s *countingStore) PutHL7Messages(ctx context.Context, practice string, msgs []store.HL7Message, w time.Duration) ([]store.HL7PutResult, error) {
	s.puts.Add(1)
	return s.Store.PutHL7Messages(ctx, practice, msgs, w)
}

// RunHL7Ingest starts an HL7 listener on loopback with a fresh SQLite
// store and measures it: first Messages messages over Conns connections as
// fast as ACKs return (commit-then-ACK: each ACK means stored), then a
// fixed Rate for RateDuration with the ACK latency of every message. It
// checks every ACK (AA, MSA-2 = the message's control id) and that the
// store holds each message exactly once; it never asserts speed.
func RunHL7Ingest(ctx context.Context, o HL7IngestOptions) (*HL7IngestResult, error) {
	if o.Messages == 0 {
		o.Messages = 100_000
	}
	if o.Conns == 0 {
		o.Conns = 8
	}
	if o.Rate == 0 {
		o.Rate = 1000
	}
	if o.RateDuration == 0 {
		o.RateDuration = 10 * time.Second
	}
	if o.Messages < 0 || o.Conns < 0 {
		return nil, errors.New("bench: messages and connections must be positive")
	}
	progress := func(format string, a ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", a...)
		}
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "mediflow-bench-hl7-")
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	dbPath := filepath.Join(dir, "hl7bench.db")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(dbPath + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("bench: removing the previous store: %w", err)
		}
	}
	if err := os.RemoveAll(dbPath + ".index"); err != nil {
		return nil, fmt.Errorf("bench: removing the previous store: %w", err)
	}
	st, err := sqlite.Open(ctx, dbPath, sqlite.Options{})
	if err != nil {
		return nil, err
	}
	closed := false
	defer func() {
		if !closed {
			st.Close()
		}
	}()
	if err := st.Migrate(ctx); err != nil {
		return nil, err
	}
	conv, err := v2fhir.New(v2fhir.Options{})
	if err != nil {
		return nil, err
	}
	cs := &countingStore{Store: st}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// done counts processing outcomes (any final status), so waiting for the
	// backlog costs no store queries.
	var done atomic.Int64
	waitProcessed := func(n int64) error {
		for done.Load() < n {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
		return nil
	}
	p, err := hl7in.New(hl7in.Options{Store: cs, Converter: conv, Logger: log, DisableProcessing: !o.Process,
		OnProcessed: func(ev hl7in.Event) {
			if ev.Status != store.MsgFailed {
				done.Add(1)
			}
		}},
		[]hl7in.Listener{{Practice: Practice, Name: "bench", Addr: "127.0.0.1:0", MaxConns: o.Conns + 8, DedupWindow: 24 * time.Hour}})
	if err != nil {
		return nil, err
	}
	if err := p.Listen(); err != nil {
		return nil, err
	}
	addr := p.Addr(Practice, "bench").String()
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(runCtx) }()
	stopped := false
	stopPipeline := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stop()
		return <-runErr
	}
	defer stopPipeline()

	clients := make([]*mllp.Client, o.Conns)
	for i := range clients {
		clients[i] = mllp.NewClient(mllp.ClientConfig{Addr: addr, MaxAttempts: 1, AckTimeout: 30 * time.Second})
		defer clients[i].Close()
	}
	res := &HL7IngestResult{Messages: o.Messages, Conns: o.Conns, Process: o.Process, Rate: max(o.Rate, 0)}

	// Phase 1: flood.
	progress("throughput: %d messages over %d connections to %s (processing %v)", o.Messages, o.Conns, addr, o.Process)
	heapCtx, heapStop := context.WithCancel(ctx)
	heapPeak := make(chan int64, 1)
	go func() { heapPeak <- sampleHeap(heapCtx, 20*time.Millisecond) }()
	var next atomic.Int64
	lat1 := make([][]time.Duration, o.Conns)
	start := time.Now()
	err = parallel(o.Conns, func(c int) error {
		for {
			i := int(next.Add(1)) - 1
			if i >= o.Messages {
				return nil
			}
			msg, ctrl := benchMessage(i)
			t0 := time.Now()
			a, err := clients[c].Send(ctx, msg)
			if err != nil {
				return fmt.Errorf("message %d: %w", i, err)
			}
			lat1[c] = append(lat1[c], time.Since(t0))
			if err := checkAck(a, ctrl); err != nil {
				return fmt.Errorf("message %d: %w", i, err)
			}
		}
	})
	res.Duration = time.Since(start)
	heapStop()
	res.HeapPeak = <-heapPeak
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	res.PerSecond = float64(o.Messages) / res.Duration.Seconds()
	res.Batches = int(cs.puts.Load())
	all := slices.Concat(lat1...)
	slices.Sort(all)
	res.PhaseOneP99 = quantile(all, 0.99)
	progress("  %.0f messages/s in %d commits", res.PerSecond, res.Batches)
	if o.Process {
		// The conversion backlog drains before the latency phase, so that
		// phase measures a steady state, not the flood's aftermath.
		progress("waiting for the conversion backlog")
		t0 := time.Now()
		if err := waitProcessed(int64(o.Messages)); err != nil {
			return nil, err
		}
		res.Drain = time.Since(t0)
		res.EndToEnd = float64(o.Messages) / (res.Duration + res.Drain).Seconds()
		progress("  drained in %.2f s: %.0f messages/s end to end", res.Drain.Seconds(), res.EndToEnd)
	}

	// Phase 2: fixed rate.
	if o.Rate > 0 {
		n := int(float64(o.Rate) * o.RateDuration.Seconds())
		progress("latency: %d messages/s for %s", o.Rate, o.RateDuration)
		type slot struct {
			i  int
			at time.Time
		}
		slots := make(chan slot, n)
		lat := make([][]time.Duration, o.Conns)
		late := make([]int, o.Conns)
		begin := time.Now().Add(10 * time.Millisecond)
		go func() {
			defer close(slots)
			for k := range n {
				at := begin.Add(time.Duration(k) * time.Second / time.Duration(o.Rate))
				if d := time.Until(at); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return
					}
				}
				slots <- slot{o.Messages + k, at}
			}
		}()
		err := parallel(o.Conns, func(c int) error {
			for s := range slots {
				msg, ctrl := benchMessage(s.i)
				if time.Since(s.at) > time.Millisecond {
					late[c]++
				}
				a, err := clients[c].Send(ctx, msg)
				if err != nil {
					return fmt.Errorf("message %d: %w", s.i, err)
				}
				lat[c] = append(lat[c], time.Since(s.at))
				if err := checkAck(a, ctrl); err != nil {
					return fmt.Errorf("message %d: %w", s.i, err)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		all := slices.Concat(lat...)
		slices.Sort(all)
		res.RateSent, res.RateDuration = len(all), o.RateDuration
		res.P50, res.P90, res.P99 = quantile(all, 0.5), quantile(all, 0.9), quantile(all, 0.99)
		if len(all) > 0 {
			res.Max = all[len(all)-1]
		}
		for _, l := range late {
			res.Late += l
		}
	}

	if o.Process {
		progress("waiting for processing to finish")
		if err := waitProcessed(int64(o.Messages + res.RateSent)); err != nil {
			return nil, err
		}
	}
	if err := stopPipeline(); err != nil {
		return nil, fmt.Errorf("bench: pipeline: %w", err)
	}
	counts, err := st.CountHL7Messages(ctx, Practice, store.DirectionInbound)
	if err != nil {
		return nil, err
	}
	for _, n := range counts {
		res.Stored += n
	}
	res.Processed = counts[store.MsgProcessed]
	if want := o.Messages + res.RateSent; res.Stored != want {
		return nil, fmt.Errorf("bench: the store holds %d messages, %d were acknowledged", res.Stored, want)
	}
	res.PeakRSS = PeakRSS()
	closed = true
	if err := st.Close(); err != nil {
		return nil, err
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if fi, err := os.Stat(dbPath + suffix); err == nil {
			res.StoreBytes += fi.Size()
		}
	}
	return res, nil
}

// Print writes the result as a short report.
func (r *HL7IngestResult) Print(w io.Writer) {
	what := "receive + store + ACK"
	if r.Process {
		what += ", conversion running"
	}
	fmt.Fprintf(w, "throughput     %.0f messages/s (%d messages over %d connections in %.2f s; %s)\n",
		r.PerSecond, r.Messages, r.Conns, r.Duration.Seconds(), what)
	if r.Batches > 0 {
		fmt.Fprintf(w, "group commit   %d commits, %.1f messages per commit; ACK p99 under flood %.2f ms\n",
			r.Batches, float64(r.Messages)/float64(r.Batches), ms(r.PhaseOneP99))
	}
	if r.Process {
		fmt.Fprintf(w, "end to end     %.0f messages/s converted to FHIR and written (backlog drained %.2f s after the last ACK)\n",
			r.EndToEnd, r.Drain.Seconds())
	}
	if r.RateSent > 0 {
		fmt.Fprintf(w, "ACK latency    at %d messages/s for %s (%d messages): p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms (%d sent late)\n",
			r.Rate, r.RateDuration, r.RateSent, ms(r.P50), ms(r.P90), ms(r.P99), ms(r.Max), r.Late)
	}
	fmt.Fprintf(w, "stored         %d messages", r.Stored)
	if r.Process {
		fmt.Fprintf(w, ", %d processed", r.Processed)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "peak RSS       %.0f MiB (VmHWM; server, store and load generator in one process); live heap peak %.0f MiB\n",
		float64(r.PeakRSS)/(1<<20), float64(r.HeapPeak)/(1<<20))
	fmt.Fprintf(w, "store size     %.1f MiB\n", float64(r.StoreBytes)/(1<<20))
}

// benchMessage is message i: an ADT^A08 or ORU^R01 of one of 20 sending
// facilities, about 700 bytes, with control id B<i>.
func benchMessage(i int) ([]byte, string) {
	ctrl := "B" + strconv.Itoa(i)
	fac := "FAC" + strconv.Itoa(i%20)
	mrn := strconv.Itoa(100000 + i%5000)
	var b []byte
	b = append(b, "MSH|^~\\&|EHR|"...)
	b = append(b, fac...)
	b = append(b, "|MEDIFLOW|BENCH|20240501120000||"...)
	if i%2 == 0 {
		b = append(b, "ADT^A08^ADT_A01|"...)
		b = append(b, ctrl...)
		b = append(b, "|P|2.5.1\rEVN|A08|20240501120000\rPID|1||"...)
		b = append(b, mrn...)
		b = append(b, "^^^HOSP^MR||Testpatient^Alex^J||19700101|F|||1 Main St^^Springfield^IL^62701||555-0100\r"...)
		b = append(b, "PV1|1|O|CLINIC^101^1||||1234^Careful^Carla|||||||||||V"...)
		b = append(b, ctrl...)
		b = append(b, "\r"...)
	} else {
		b = append(b, "ORU^R01^ORU_R01|"...)
		b = append(b, ctrl...)
		b = append(b, "|P|2.5.1\rPID|1||"...)
		b = append(b, mrn...)
		b = append(b, "^^^HOSP^MR||Testpatient^Alex^J||19700101|F\r"...)
		b = append(b, "OBR|1|ORD"...)
		b = append(b, ctrl...)
		b = append(b, "||24323-8^Comprehensive metabolic panel^LN|||20240501110000\r"...)
		b = append(b, "OBX|1|NM|2345-7^Glucose^LN||98|mg/dL|70-99||||F|||20240501110000\r"...)
		b = append(b, "OBX|2|NM|2160-0^Creatinine^LN||0.9|mg/dL|0.6-1.2||||F|||20240501110000\r"...)
	}
	return b, ctrl
}

// checkAck checks an ACK accepts the message with control id ctrl.
func checkAck(a []byte, ctrl string) error {
	r, err := ack.Parse(a)
	if err != nil {
		return fmt.Errorf("ACK does not parse: %w", err)
	}
	if r.Code != "AA" || r.ControlID != ctrl {
		return fmt.Errorf("ACK %s for %s, want AA for %s", r.Code, r.ControlID, ctrl)
	}
	return nil
}

// parallel runs f(0..n-1) on n goroutines and returns the first error.
func parallel(n int, f func(i int) error) error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// quantile of sorted durations.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}
