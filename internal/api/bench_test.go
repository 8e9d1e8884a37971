package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
)

// benchHandler builds the full handler (middleware, logging at info into a
// discarded writer, metrics) over st.
func benchHandler(b *testing.B, st store.Store) http.Handler {
	b.Helper()
	h, err := New(Config{Store: st, Apps: testApps(), Practices: testPractices,
		Logger: obs.NewLogger(discard{}, slog.LevelInfo, "json"), Metrics: obs.NewMetrics(), BaseURL: "http://bench.local"})
	if err != nil {
		b.Fatal(err)
	}
	return h
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// runSearches sends GET searches to h from parallel goroutines and reports requests/s.
func runSearches(b *testing.B, h http.Handler, path string) {
	b.Helper()
	b.ReportAllocs()
	// Many concurrent clients, as an HTTP server sees them: 8 per core.
	b.SetParallelism(8)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer "+keyAlpha)
		for pb.Next() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != 200 {
				panic(fmt.Sprintf("status %d: %s", rec.Code, rec.Body.String()))
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// benchDir and benchStore are the benchmark fixture's folder and store, removed by TestMain.
var (
	benchDir   string
	benchStore *sqlite.Store
)

func TestMain(m *testing.M) {
	code := m.Run()
	if benchStore != nil {
		_ = benchStore.Close()
	}
	if benchDir != "" {
		_ = os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// benchFixture is a real store holding ~50k resources, built once per test
// binary run because seeding takes seconds.
var benchFixture = sync.OnceValues(func() (*sqlite.Store, error) {
	dir, err := os.MkdirTemp("", "mediflow-api-bench-")
	if err != nil {
		return nil, err
	}
	benchDir = dir
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "bench.db"), sqlite.Options{})
	if err != nil {
		return nil, err
	}
	benchStore = st
	const patients, appts, batch = 25000, 25000, 1000
	families := []string{"Alvarez", "Brooks", "Chen", "Dubois", "Evans", "Fischer", "Garcia", "Hughes", "Ivanova", "Jensen"}
	var ws []store.ResourceWrite
	flush := func() error {
		if len(ws) == 0 {
			return nil
		}
		_, err := st.WriteResources(context.Background(), "alpha", ws)
		ws = ws[:0]
		return err
	}
	for i := 0; i < patients; i++ {
		id := fmt.Sprintf("pat-%05d", i)
		ws = append(ws, store.ResourceWrite{ResourceType: "Patient", ID: id, Connection: "ehr",
			Body: patientJSON(id, families[i%len(families)], "Sam", "1980-01-01")})
		if len(ws) == batch {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	for i := 0; i < appts; i++ {
		id := fmt.Sprintf("appt-%05d", i)
		ws = append(ws, store.ResourceWrite{ResourceType: "Appointment", ID: id, Connection: "ehr",
			Body: appointmentJSON(id, fmt.Sprintf("pat-%05d", i%patients))})
		if len(ws) == batch {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	return st, flush()
})

// BenchmarkSearch measures 20-result searches through the whole handler
// (middleware, auth, parsing, audit, Bundle writing) over the real SQLite
// store holding 50,000 resources. Target: ≥ 5,000 req/s on 2 cores.
func BenchmarkSearch(b *testing.B) {
	st, err := benchFixture()
	if err != nil {
		b.Fatalf("bench store: %v", err)
	}
	h := benchHandler(b, st)
	// One next-page link, to measure a continued search too.
	first := httptest.NewRequest(http.MethodGet, "/fhir/alpha/Patient?family=chen&_count=20", nil)
	first.Header.Set("Authorization", "Bearer "+keyAlpha)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, first)
	var bundle searchBundle
	if err := json.Unmarshal(rec.Body.Bytes(), &bundle); err != nil || bundle.link("next") == "" {
		b.Fatalf("first page: %d %s", rec.Code, rec.Body.String())
	}
	nextPath := strings.TrimPrefix(bundle.link("next"), "http://bench.local")
	for _, c := range []struct{ name, path string }{
		{"type", "/fhir/alpha/Patient?_count=20"},
		{"family", "/fhir/alpha/Patient?family=chen&_count=20"},
		{"family-next-page", nextPath},
		{"appointment-by-patient", "/fhir/alpha/Appointment?patient=Patient/pat-00042&_count=20"},
	} {
		b.Run(c.name, func(b *testing.B) { runSearches(b, h, c.path) })
	}
}
