package sim

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mediflow/mediflow/internal/sim/gen"
)

// discardWriter is a ResponseWriter that drops the body, to measure the
// simulator's own cost per page without a network or a client.
type discardWriter struct {
	h http.Header
	n int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { d.n += len(b); return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

func benchSim(b *testing.B) (*fixture, string, string) {
	b.Helper()
	f := newFixture(b, Config{Tenants: []TenantConfig{{ID: "bench", Seed: 1, Data: &gen.Options{Patients: 1000, PastDays: 10, FutureDays: 10}}}})
	tok := f.token("bench")
	return f, tok, f.sim.BaseURL("bench") + "/Observation?_count=100"
}

// BenchmarkServePage100 measures the handler alone: one 100-resource page
// of a paged Observation search per iteration.
func BenchmarkServePage100(b *testing.B) {
	f, tok, first := benchSim(b)
	r := f.get(first, tok)
	next := bundleOf(b, r.body).NextLink()
	req := httptest.NewRequest("GET", next, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.h)
		f.sim.ServeHTTP(w, req)
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "resources/s")
	b.ReportMetric(float64(w.n)/float64(b.N), "bytes/page")
}

// BenchmarkSyncOverHTTP walks paged searches over loopback HTTP the way a
// sync engine does (100 per page), reading every body.
func BenchmarkSyncOverHTTP(b *testing.B) {
	_, tok, first := benchSim(b)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	url := first
	resources := 0
	buf := make([]byte, 0, 1<<20)
	b.ResetTimer()
	for b.Loop() {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		buf = buf[:0]
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			n, err := res.Body.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		res.Body.Close()
		b.StopTimer()
		bu := bundleOf(b, buf)
		resources += len(bu.Entry)
		url = bu.NextLink()
		if url == "" {
			url = first
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(resources)/b.Elapsed().Seconds(), "resources/s")
}

// BenchmarkTick measures the change generator (one change per op).
func BenchmarkTick(b *testing.B) {
	s, err := New(Config{Tenants: []TenantConfig{{ID: "t", Seed: 1, Data: &gen.Options{Patients: 1000, PastDays: 10, FutureDays: 10}}}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Tick("t", 1); err != nil {
			b.Fatal(err)
		}
	}
}
