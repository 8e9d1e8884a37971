package sqlite

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// BenchmarkReadUncached reads versions with the version cache off, so every
// read goes to SQLite (and decodes the stored body): GetResource of random
// ids, search pages (one patient's Observations) and histories. 50,000
// resources, half Patients, half Observations.
func BenchmarkReadUncached(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "read.db"), Options{BodyCacheMB: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const total, batch = 50000, 1000
	loadPatientsAndObservations(b, s, total, batch)
	rnd := rand.New(rand.NewPCG(7, 8))
	b.Run("get", func(b *testing.B) {
		defer reportCPU(b)()
		for b.Loop() {
			id := fmt.Sprint("pat-", rnd.IntN(total/2))
			r, err := s.GetResource(ctx, "p1", "Patient", id)
			if err != nil {
				b.Fatal(err)
			}
			if len(r.Body) < 100 {
				b.Fatal("short body")
			}
		}
	})
	b.Run("search-page", func(b *testing.B) {
		// The Observations of a random patient (five each), so pages are
		// not the same few over and over.
		defer reportCPU(b)()
		for b.Loop() {
			q := store.Query{ResourceType: "Observation", Count: 20,
				Params: []store.SearchParam{{Name: "patient", Values: []string{fmt.Sprint("Patient/pat-", rnd.IntN(5000))}}}}
			page, err := s.Search(ctx, "p1", q)
			if err != nil {
				b.Fatal(err)
			}
			if len(page.Resources) == 0 {
				b.Fatal("no results")
			}
		}
	})
	b.Run("history", func(b *testing.B) {
		defer reportCPU(b)()
		for b.Loop() {
			id := fmt.Sprint("obs-", rnd.IntN(total/2))
			h, err := s.History(ctx, "p1", "Observation", id)
			if err != nil || len(h) != 1 {
				b.Fatal(err, len(h))
			}
		}
	})
}

// reportCPU reports the process's CPU time (user + system) per operation
// from its call to the call of the function it returns: on a shared
// machine a steadier figure than wall time per operation.
func reportCPU(b *testing.B) func() {
	start := readBenchCPU()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((readBenchCPU()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}

func readBenchCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
