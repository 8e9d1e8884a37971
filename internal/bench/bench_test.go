package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/sim/flavor/generic"
	"github.com/mediflow/mediflow/internal/sim/gen"
)

// A tiny sync benchmark runs end to end and its numbers are consistent:
// the store matches the source (RunSync checks it per type) and the counts
// reported add up. Speed is never asserted.
func TestBenchSyncSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	res, err := RunSync(ctx, Setup{Resources: 2000, PageSize: 100, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if res.Resources < 2000 {
		t.Errorf("synced %d resources, asked for at least 2000", res.Resources)
	}
	sum := 0
	for _, n := range res.Types {
		sum += n
	}
	if sum != res.Resources {
		t.Errorf("per-type counts add up to %d, total says %d", sum, res.Resources)
	}
	if res.Pages < res.Resources/100 {
		t.Errorf("%d pages for %d resources with page size 100", res.Pages, res.Resources)
	}
	if res.Duration <= 0 || res.PerSecond <= 0 || res.StoreBytes <= 0 || res.PeakRSS <= 0 || res.HeapBase <= 0 || res.HeapPeak < res.HeapBase {
		t.Errorf("missing measurements: %+v", res)
	}
	var b strings.Builder
	res.Print(&b)
	for _, want := range []string{"resources/s", "peak RSS", "live heap", "store size"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	if _, err := os.Stat(dir + "/bench.db"); err != nil {
		t.Errorf("store not in --dir: %v", err)
	}
}

// SizeData reaches the requested size without grossly overshooting it.
func TestSizeData(t *testing.T) {
	for _, n := range []int{500, 5000, 30000} {
		o, err := SizeData(n, 3)
		if err != nil {
			t.Fatal(err)
		}
		st, err := gen.Generate(o, generic.New(), func(gen.Resource) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Total(); got < n || got > n+n/5 {
			t.Errorf("asked for %d resources: %d patients make %d", n, o.Patients, got)
		}
	}
}

// A tiny API benchmark serves real searches and counts them; a wrong page
// size or key would fail its page check.
func TestBenchAPISmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := RunAPI(ctx, APIOptions{
		Setup:       Setup{Resources: 1500, PageSize: 200},
		Concurrency: 2, Duration: 300 * time.Millisecond, Warmup: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 2 {
		t.Fatalf("%d results, want Patient and Observation", len(res.Results))
	}
	for _, r := range res.Results {
		if r.Requests == 0 || r.Errors != 0 || r.PerSecond <= 0 || r.P50 <= 0 || r.P99 < r.P50 || r.Max < r.P99 || r.BytesPerReq == 0 {
			t.Errorf("%s: implausible result %+v", r.Name, r)
		}
	}
}

// The load generator counts exactly the answers the server gave, and
// counts non-200 answers as errors.
func TestLoadCountsRequestsAndErrors(t *testing.T) {
	// The failing target keeps its own counter: a request of the first run
	// cut off at its end may still reach the server during the second run,
	// and must not shift the alternation.
	var served, failing atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("fail") != "" {
			if failing.Add(1)%2 == 0 {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			_, _ = w.Write([]byte("ok"))
			return
		}
		n := served.Add(1)
		_, _ = w.Write([]byte("ok:" + strconv.FormatInt(n, 10)))
	}))
	defer srv.Close()
	hc := NewLoadClient(3)
	ctx := context.Background()
	r, err := Load(ctx, hc, Target{Name: "ok", URL: srv.URL}, 3, 0, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests == 0 || r.Errors != 0 || int64(r.Requests) > served.Load() {
		t.Errorf("ok target: %+v with %d served", r, served.Load())
	}
	r, err = Load(ctx, hc, Target{Name: "half failing", URL: srv.URL + "?fail=1"}, 1, 0, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors == 0 || r.Requests == 0 || r.FirstError != "status 500" {
		t.Errorf("half-failing target: %+v", r)
	}
	if diff := r.Requests - r.Errors; diff < -1 || diff > 1 {
		t.Errorf("alternating answers: %d ok and %d errors", r.Requests, r.Errors)
	}
}

// BenchmarkEndToEndSync syncs a generic-flavour simulator (SMART auth, real
// HTTP on loopback) into a fresh SQLite store per iteration and reports
// resources/s. Size it with MEDIFLOW_BENCH_RESOURCES (default 200000);
// run it with -benchtime=1x for one full sync.
func BenchmarkEndToEndSync(b *testing.B) {
	n := 200000
	if v := os.Getenv("MEDIFLOW_BENCH_RESOURCES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("MEDIFLOW_BENCH_RESOURCES=%q is not a positive integer", v)
		}
	}
	ctx := context.Background()
	var total int
	var took time.Duration
	var heapGrowth int64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		env, err := NewEnv(ctx, Setup{Resources: n, PageSize: 500, Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := env.Sync(ctx)
		b.StopTimer()
		env.Close()
		if err != nil {
			b.Fatal(err)
		}
		total += res.Resources
		took += res.Duration
		heapGrowth = max(heapGrowth, res.HeapPeak-res.HeapBase)
	}
	b.ReportMetric(float64(total)/took.Seconds(), "resources/s")
	b.ReportMetric(float64(PeakRSS())/(1<<20), "peakRSS-MiB")
	b.ReportMetric(float64(heapGrowth)/(1<<20), "syncHeap-MiB")
}

// BenchmarkAPISearch measures GET /fhir/{p}/Patient?_count=20 against a
// synced store over loopback from parallel keep-alive clients.
func BenchmarkAPISearch(b *testing.B) {
	ctx := context.Background()
	env, err := NewEnv(ctx, Setup{Resources: 50000, PageSize: 500, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer env.Close()
	if _, err := env.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(env.Engine.Handler())
	defer srv.Close()
	target := Target{Name: "Patient", URL: srv.URL + "/fhir/" + Practice + "/Patient?_count=20",
		Header: http.Header{"Authorization": {"Bearer " + env.APIKey}}}
	hc := NewLoadClient(16)
	if err := checkPage(ctx, hc, target, PageSize); err != nil {
		b.Fatal(err)
	}
	var failed atomic.Int64
	b.SetParallelism(4) // 4 × GOMAXPROCS clients: 8 on the 2-core reference machine
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		w := &worker{}
		for pb.Next() {
			w.once(ctx, hc, target)
		}
		failed.Add(int64(w.errors))
	})
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d requests failed", n)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}
