package bench

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/sim/flavor/generic"
	"github.com/mediflow/mediflow/internal/sim/gen"
)

// A small bulk ingest runs end to end through the production path (SMART
// auth, kick-off, polls, manifest, parallel NDJSON files, raw batches,
// mapping, SQLite) and the store ends with exactly the resources the
// simulator generated, per type. The expected counts come from generating
// the same data set again, independently of the simulator and the store.
func TestRunBulkSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 5000
	dir := t.TempDir()
	res, err := RunBulk(ctx, BulkOptions{Setup: Setup{Resources: n, Dir: dir, Seed: 7}, Workers: 3, BatchSize: 250})
	if err != nil {
		t.Fatal(err)
	}
	o, err := SizeData(n, 7)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	total := 0
	if _, err := gen.Generate(o, generic.New(), func(r gen.Resource) error {
		want[r.Type]++
		total++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(want) < 8 || want["Patient"] == 0 || want["Observation"] == 0 || want["Appointment"] == 0 {
		t.Fatalf("the generated data set is not the realistic mix the benchmark needs: %v", want)
	}
	if res.Resources != total || total < n {
		t.Errorf("stored %d resources; the data set has %d (asked for at least %d)", res.Resources, total, n)
	}
	for rt, c := range want {
		if res.Types[rt] != c {
			t.Errorf("%s: store %d, generated %d", rt, res.Types[rt], c)
		}
	}
	for rt := range res.Types {
		if _, ok := want[rt]; !ok {
			t.Errorf("%s in the store but not generated", rt)
		}
	}
	// The simulator cuts files of at most 10,000 resources of one type.
	if res.Files < len(want) {
		t.Errorf("%d files for %d resource types", res.Files, len(want))
	}
	if !res.Mapping || res.Workers != 3 || res.BatchSize != 250 {
		t.Errorf("settings not applied: %+v", res)
	}
	if res.Duration <= 0 || res.PerSecond <= 0 || res.Manifest <= 0 || res.Ingest <= 0 || res.Ingest >= res.Duration ||
		res.Bytes <= 0 || res.StoreBytes <= 0 || res.PeakRSS <= 0 || res.HeapPeak < res.HeapBase {
		t.Errorf("missing or inconsistent measurements: %+v", res)
	}
	var b strings.Builder
	res.Print(&b)
	for _, want := range []string{"resources/s", "kick-off to manifest", "engine CPU", "peak RSS", "production mapper", "Observation "} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	if _, err := os.Stat(dir + "/bench.db"); err != nil {
		t.Errorf("store not in Dir: %v", err)
	}
}

// BenchmarkBulkIngest runs one system-level bulk export of a generic-flavour
// simulator (SMART auth, loopback) into a fresh SQLite store per iteration,
// with the production mapper, and reports resources/s and the CPU cores
// used (engine and the in-process simulator together). Size it with
// MEDIFLOW_BENCH_BULK_RESOURCES (default 20000); run it with -benchtime=1x
// for one export.
func BenchmarkBulkIngest(b *testing.B) {
	n := 20000
	if v := os.Getenv("MEDIFLOW_BENCH_BULK_RESOURCES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("MEDIFLOW_BENCH_BULK_RESOURCES=%q is not a positive integer", v)
		}
	}
	ctx := context.Background()
	var total int
	var took, cpu time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		env, err := NewEnv(ctx, Setup{Resources: n, PageSize: 1000, Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := env.Bulk(ctx, BulkOptions{})
		b.StopTimer()
		env.Close()
		if err != nil {
			b.Fatal(err)
		}
		total += res.Resources
		took += res.Duration
		cpu += res.CPUUser + res.CPUSystem
	}
	b.ReportMetric(float64(total)/took.Seconds(), "resources/s")
	b.ReportMetric(cpu.Seconds()/took.Seconds(), "cores")
	b.ReportMetric(float64(PeakRSS())/(1<<20), "peakRSS-MiB")
}
