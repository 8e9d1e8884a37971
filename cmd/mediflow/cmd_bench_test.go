package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runBench(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cliEnv{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	code = run(context.Background(), env, append([]string{"bench"}, args...))
	return code, out.String(), errb.String()
}

func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"everything"},
		{"sync", "--page-size", "0"},
		{"sync", "extra"},
		{"api", "--concurrency", "0"},
		{"bulk", "--workers", "0"},
		{"bulk", "--batch", "-1"},
	} {
		if code, _, _ := runBench(t, args...); code != 2 {
			t.Errorf("bench %q: exit %d, want 2", args, code)
		}
	}
}

// A tiny `mediflow bench sync`, with flags after the word sync, prints the
// measurements and leaves the store in --dir.
func TestBenchSyncTiny(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runBench(t, "sync", "--resources", "1500", "--page-size", "200", "--dir", dir)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"mediflow bench sync", "CPUs", "resources/s", "peak RSS", "store size"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "bench.db")); err != nil {
		t.Errorf("no store in --dir: %v", err)
	}
}

// A tiny `mediflow bench bulk` runs a whole export into the store in --dir
// and prints its measurements; --mapping=false says so in the report.
func TestBenchBulkTiny(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runBench(t, "bulk", "--resources", "1500", "--workers", "2", "--batch", "300", "--mapping=false", "--dir", dir)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"mediflow bench bulk", "CPUs", "resources/s", "2 workers, batches of 300, no mapping", "peak RSS", "store size"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "bench.db")); err != nil {
		t.Errorf("no store in --dir: %v", err)
	}
}
