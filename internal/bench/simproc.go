package bench

// The simulator as a child process. The simulator keeps its whole data set
// in memory, so when it shares the engine's process, that process's peak
// RSS grows with the data set even though the store's memory is flat. With
// Setup.SimCommand the benchmark starts a child (`mediflow bench
// sim-source`, which calls SimSourceMain) and talks to it over pipes:
//
//   - the parent passes --resources, --seed and --jwks FILE (the public keys
//     of the engine's client);
//   - the child generates the data, serves it on 127.0.0.1:0 and writes one
//     JSON line (simSourceReady) on standard output;
//   - when its standard input closes, the child writes a second JSON line
//     (simSourceDone: its peak RSS) and exits;
//   - with --realtime (bench realtime) the client may also manage
//     Subscriptions, and until its standard input closes the child answers
//     one JSON command per line (rtCommand: list the subscriptions, make
//     changes at a rate) with one JSON line (rtReply); see realtime.go.
//
// A child whose parent dies sees its standard input close and exits too.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// simSourceReady is the simulator process's first line: where it serves
// and what it holds.
type simSourceReady struct {
	BaseURL       string         `json:"baseURL"`
	Resources     int            `json:"resources"`
	Patients      int            `json:"patients"`
	Counts        map[string]int `json:"counts"`
	GenerateNanos int64          `json:"generateNanos"`
}

// simSourceDone is the simulator process's last line, written once its
// standard input has closed.
type simSourceDone struct {
	PeakRSS int64 `json:"peakRSS"`
}

// SimSourceMain is the simulator process of a benchmark run with
// Setup.SimCommand. args are its flags: --resources N, --seed S and
// --jwks FILE. It generates the same data an in-process run would
// (SizeData(N, S)), serves it on 127.0.0.1:0 with the client
// "mediflow-bench" registered with the keys in FILE, writes one JSON line
// describing it to stdout, and returns once stdin reaches its end (or ctx
// ends), after writing a second line with its peak RSS. Progress goes to
// stderr.
func SimSourceMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sim-source", flag.ContinueOnError)
	fs.SetOutput(stderr)
	resources := fs.Int("resources", 0, "at least this many resources")
	seed := fs.Uint64("seed", 1, "seed for the synthetic data")
	jwksFile := fs.String("jwks", "", "`file` with the public JWKS of the client mediflow-bench")
	realtime := fs.Bool("realtime", false, "allow the client to manage Subscriptions and answer the real-time benchmark's commands on stdin")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("bench sim-source: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench sim-source: unexpected arguments %q", fs.Args())
	}
	if *resources <= 0 || *jwksFile == "" {
		return errors.New("bench sim-source: --resources must be positive and --jwks set")
	}
	if *seed == 0 {
		*seed = 1
	}
	jwks, err := os.ReadFile(*jwksFile)
	if err != nil {
		return fmt.Errorf("bench sim-source: %w", err)
	}
	src, err := startSource(ctx, *resources, *seed, jwks, func(format string, a ...any) {
		fmt.Fprintf(stderr, format+"\n", a...)
	})
	if err != nil {
		return err
	}
	defer src.stop()
	if *realtime {
		defer src.sim.StopSubscriptions()
		if err := registerRealtimeClient(src.sim, jwks); err != nil {
			return err
		}
	}
	enc := json.NewEncoder(stdout)
	ready := simSourceReady{BaseURL: src.sim.BaseURL(Practice), Resources: src.resources, Patients: src.patients,
		Counts: src.sim.Counts(Practice), GenerateNanos: int64(src.generateTime)}
	if err := enc.Encode(ready); err != nil {
		return fmt.Errorf("bench sim-source: %w", err)
	}

	if *realtime {
		// Commands (realtime.go) until stdin ends.
		if err := serveRealtimeCommands(ctx, src.sim, stdin, enc); err != nil {
			return err
		}
		if err := enc.Encode(simSourceDone{PeakRSS: PeakRSS()}); err != nil {
			return fmt.Errorf("bench sim-source: %w", err)
		}
		return nil
	}

	if err := waitStdinEOF(ctx, stdin); err != nil {
		return err
	}
	if err := enc.Encode(simSourceDone{PeakRSS: PeakRSS()}); err != nil {
		return fmt.Errorf("bench sim-source: %w", err)
	}
	return nil
}

// waitStdinEOF returns when stdin ends (the benchmark closed it), or with
// ctx's error when ctx ends first. The reader ends when stdin does; on ctx's
// end, closing stdin (when it can be closed) ends it too, and otherwise the
// process's exit does.
func waitStdinEOF(ctx context.Context, stdin io.Reader) error {
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		close(eof)
	}()
	select {
	case <-eof:
		return nil
	case <-ctx.Done():
		if c, ok := stdin.(io.Closer); ok {
			_ = c.Close()
		}
		return ctx.Err()
	}
}

// simProcess is a running simulator process seen from the benchmark.
type simProcess struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *tailWriter
	ready  simSourceReady

	stopped bool
	peakRSS int64
	err     error
}

// simStopTimeout bounds how long a simulator process may take to exit once
// its standard input is closed.
const simStopTimeout = 30 * time.Second

// startSimProcess starts command with the simulator's flags and waits for
// its ready line. The process is killed if ctx ends. Its standard error is
// copied to progress (when set) and its end kept for error messages.
func startSimProcess(ctx context.Context, command []string, resources int, seed uint64, jwksFile string, progress io.Writer) (*simProcess, error) {
	args := append(append([]string(nil), command[1:]...),
		"--resources", strconv.Itoa(resources), "--seed", strconv.FormatUint(seed, 10), "--jwks", jwksFile)
	cmd := exec.CommandContext(ctx, command[0], args...)
	cmd.WaitDelay = 5 * time.Second
	p := &simProcess{cmd: cmd, stderr: &tailWriter{max: 4096}}
	cmd.Stderr = p.stderr
	if progress != nil {
		cmd.Stderr = io.MultiWriter(progress, p.stderr)
	}
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("bench: simulator process: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: simulator process: %w", err)
	}
	p.stdout = bufio.NewReader(stdout)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: starting the simulator process: %w", err)
	}
	// The read ends with the line, or when the process exits (on its own or
	// killed because ctx ended).
	line, err := p.stdout.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &p.ready)
		if err == nil && (p.ready.BaseURL == "" || p.ready.Counts == nil) {
			err = fmt.Errorf("incomplete ready line %q", strings.TrimSpace(string(line)))
		}
	}
	if err != nil {
		_ = cmd.Process.Kill()
		waitErr := cmd.Wait()
		return nil, fmt.Errorf("bench: the simulator process failed to start (%v; %v)%s", err, waitErr, p.stderr.suffix())
	}
	return p, nil
}

// stop closes the process's standard input, reads its peak RSS and waits
// for it to exit. It is safe to call again; later calls return the first
// result.
func (p *simProcess) stop() (peakRSS int64, err error) {
	if p.stopped {
		return p.peakRSS, p.err
	}
	p.stopped = true
	kill := time.AfterFunc(simStopTimeout, func() { _ = p.cmd.Process.Kill() })
	defer kill.Stop()
	_ = p.stdin.Close()
	var done simSourceDone
	line, readErr := p.stdout.ReadBytes('\n')
	if readErr == nil {
		readErr = json.Unmarshal(line, &done)
	}
	waitErr := p.cmd.Wait()
	switch {
	case waitErr != nil:
		p.err = fmt.Errorf("bench: the simulator process: %w%s", waitErr, p.stderr.suffix())
	case readErr != nil:
		p.err = fmt.Errorf("bench: the simulator process's last line: %w", readErr)
	}
	p.peakRSS = done.PeakRSS
	return p.peakRSS, p.err
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailWriter) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

// suffix is ": " and the kept text, trimmed, or "" when there is none.
func (t *tailWriter) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.buf))
	if s == "" {
		return ""
	}
	return ": " + s
}
