package writeback

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// BenchmarkSubmit measures intents accepted per second (stored, with the
// idempotency check), without executing them.
func BenchmarkSubmit(b *testing.B) {
	st, _ := openStore(b)
	c := fhirClient(b, "http://127.0.0.1:9/fhir")
	ob := newOutbox(b, testOptions(st, map[string]Target{practice: {FHIR: c, Support: supports(false)}}))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := ob.Submit(ctx, noteRequest(fmt.Sprintf("bench-%d", i), fmt.Sprintf("p%d", i%100), "QmVuY2g=")); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "intents/s")
}

// BenchmarkDeliverToSim measures writes delivered per second to the
// simulator (search, create, read-back and verification, all recorded),
// over 50 patients with the outbox's default concurrency and polling
// (DefaultConcurrency, DefaultEHRConcurrency, 1 s). b.N intents are
// submitted first, so b.N is also the backlog at the start; the metric
// cpu-ms/write is this process's CPU time (engine and the in-process
// simulator) per delivered write.
func BenchmarkDeliverToSim(b *testing.B) {
	s := startSim(b, 50)
	st, _ := openStore(b)
	opts := testOptions(st, map[string]Target{practice: {FHIR: fhirClient(b, s.BaseURL(practice)), Support: supports(false)}})
	opts.Concurrency, opts.PollInterval = 0, 0
	ob := newOutbox(b, opts)
	pids := patientIDs(b, s, 50)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		if _, _, err := ob.Submit(ctx, noteRequest(fmt.Sprintf("bench-%d", i), pids[i%len(pids)], "QmVuY2g=")); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	cpu0 := processCPUTime(b)
	stop := run(b, ob)
	n := waitNoneOpen(b, st, 10*time.Minute)
	b.StopTimer()
	cpu1 := processCPUTime(b)
	stop()
	if n["confirmed"] != b.N {
		b.Fatalf("statuses %v", n)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	if cpu0 >= 0 {
		b.ReportMetric(float64((cpu1-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/write")
	}
}

// waitNoneOpen polls until no intent of the practice is open and returns
// the counts per status. A poll looks for one intent in each open status
// (an index seek each) rather than counting them all, so polling costs
// the measured process little whatever the backlog.
func waitNoneOpen(b *testing.B, st Store, timeout time.Duration) map[string]int {
	b.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for {
		open := false
		for _, s := range []string{store.IntentAccepted, store.IntentSending, store.IntentSent} {
			ins, err := st.ListIntents(ctx, practice, store.IntentFilter{Status: []string{s}, Limit: 1})
			if err != nil {
				b.Fatal(err)
			}
			if len(ins) > 0 {
				open = true
				break
			}
		}
		if !open || time.Now().After(deadline) {
			n, err := st.CountIntents(ctx, practice)
			if err != nil {
				b.Fatal(err)
			}
			if open {
				b.Fatalf("intents still open after %s: %v", timeout, n)
			}
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}
