package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/smart"
)

// simChildArg makes this test binary act as the simulator process, as
// `mediflow bench sim-source` does for the real binary.
const simChildArg = "bench-test-sim-source"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == simChildArg {
		if err := SimSourceMain(context.Background(), os.Args[2:], os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// simCommand is the SimCommand that starts this test binary as the
// simulator process.
func simCommand(t *testing.T) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{exe, simChildArg}
}

// With the simulator in a child process the sync still matches the source
// per type (RunSync checks it against the child's counts), and both
// processes' peak RSS are reported under their own labels.
func TestBenchSyncSimProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	progress := &tailWriter{max: 1 << 20}
	res, err := RunSync(ctx, Setup{Resources: 2000, PageSize: 100, Dir: dir, SimCommand: simCommand(t), Progress: progress})
	if err != nil {
		t.Fatal(err)
	}
	if !res.SimProcess || res.SimPeakRSS <= 0 || res.PeakRSS <= 0 {
		t.Errorf("process measurements missing: SimProcess %v, SimPeakRSS %d, PeakRSS %d", res.SimProcess, res.SimPeakRSS, res.PeakRSS)
	}
	if res.Resources < 2000 || res.Patients <= 0 || res.GenerateTime <= 0 {
		t.Errorf("data set not described: %d resources, %d patients, generated in %s", res.Resources, res.Patients, res.GenerateTime)
	}
	sum := 0
	for _, n := range res.Types {
		sum += n
	}
	if sum != res.Resources {
		t.Errorf("per-type counts add up to %d, total says %d", sum, res.Resources)
	}
	// The child's progress reaches the parent's.
	if !strings.Contains(progress.suffix(), "simulator holds") {
		t.Errorf("the simulator process's progress is missing:\n%s", progress.suffix())
	}
	var b strings.Builder
	res.Print(&b)
	for _, want := range []string{"engine process", "sim peak RSS", "simulator process", "resources/s"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "in-process simulator") {
		t.Errorf("report claims an in-process simulator:\n%s", b.String())
	}
}

// The same seed and size give the child the same data the in-process
// simulator would hold.
func TestSimProcessSameData(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	inProc, err := NewEnv(ctx, Setup{Resources: 1200, PageSize: 100, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	want := inProc.sourceCounts()
	wantPatients := inProc.Patients
	inProc.Close()

	child, err := NewEnv(ctx, Setup{Resources: 1200, PageSize: 100, Seed: 7, SimCommand: simCommand(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer child.Close()
	if child.Sim != nil {
		t.Error("Env.Sim is set although the simulator runs in a child process")
	}
	got := child.sourceCounts()
	if len(got) != len(want) || child.Patients != wantPatients {
		t.Fatalf("child holds %v (%d patients), in-process %v (%d patients)", got, child.Patients, want, wantPatients)
	}
	for rt, n := range want {
		if got[rt] != n {
			t.Errorf("%s: child %d, in-process %d", rt, got[rt], n)
		}
	}
	peak, err := child.child.stop()
	if err != nil || peak <= 0 {
		t.Errorf("stopping the child: peak RSS %d, %v", peak, err)
	}
	if again, err2 := child.child.stop(); again != peak || err2 != err {
		t.Errorf("a second stop returned %d, %v; the first %d, %v", again, err2, peak, err)
	}
}

// SimSourceMain serves its data until stdin ends, then reports its peak
// RSS and returns.
func TestSimSourceMainProtocol(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	jwksFile := writeJWKS(t)
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := SimSourceMain(ctx, []string{"--resources", "800", "--seed", "3", "--jwks", jwksFile}, stdinR, stdoutW, io.Discard)
		stdoutW.CloseWithError(fmt.Errorf("returned: %v", err))
		done <- err
	}()
	out := bufio.NewReader(stdoutR)
	line, err := out.ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	var ready simSourceReady
	if err := json.Unmarshal(line, &ready); err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, n := range ready.Counts {
		sum += n
	}
	if ready.Resources < 800 || sum != ready.Resources || ready.Patients <= 0 || ready.GenerateNanos <= 0 {
		t.Errorf("ready line %s", line)
	}
	if !strings.HasPrefix(ready.BaseURL, "http://127.0.0.1:") {
		t.Errorf("base URL %q is not on loopback", ready.BaseURL)
	}
	resp, err := http.Get(ready.BaseURL + "/metadata")
	if err != nil {
		t.Fatalf("the simulator does not serve: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET metadata: status %d", resp.StatusCode)
	}
	select {
	case err := <-done:
		t.Fatalf("returned before stdin closed: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	stdinW.Close()
	line, err = out.ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	var last simSourceDone
	if err := json.Unmarshal(line, &last); err != nil || last.PeakRSS <= 0 {
		t.Errorf("last line %s: %v", line, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(ready.BaseURL + "/metadata"); err == nil {
		t.Error("the simulator still serves after SimSourceMain returned")
	}
}

// Bad flags are refused before anything is generated.
func TestSimSourceMainFlags(t *testing.T) {
	jwksFile := writeJWKS(t)
	for _, args := range [][]string{
		{"--resources", "0", "--jwks", jwksFile},
		{"--resources", "10"},
		{"--resources", "10", "--jwks", jwksFile, "extra"},
		{"--resources", "10", "--jwks", filepath.Join(t.TempDir(), "missing.json")},
	} {
		var out strings.Builder
		if err := SimSourceMain(context.Background(), args, strings.NewReader(""), &out, io.Discard); err == nil || out.Len() > 0 {
			t.Errorf("%q: err %v, stdout %q", args, err, out.String())
		}
	}
}

// A simulator process that fails before it is ready is reported with the
// end of its standard error.
func TestSimProcessStartFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	missing := filepath.Join(t.TempDir(), "missing.json")
	_, err := startSimProcess(ctx, simCommand(t), 100, 1, missing, nil)
	if err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Fatalf("got %v, want an error naming the missing JWKS file", err)
	}
}

// writeJWKS writes a fresh client's public JWKS and returns the file.
func writeJWKS(t *testing.T) string {
	t.Helper()
	key, err := smart.GenerateKey(smart.AlgES384)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := smart.PublicJWKS(key)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(f, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// tailWriter keeps only the end of what it is given.
func TestTailWriter(t *testing.T) {
	w := &tailWriter{max: 5}
	for _, s := range []string{"abc", "defg", "hi"} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got := w.suffix(); got != ": efghi" {
		t.Errorf("suffix %q, want the last 5 bytes", got)
	}
	if got := (&tailWriter{max: 5}).suffix(); got != "" {
		t.Errorf("empty writer's suffix %q", got)
	}
}
