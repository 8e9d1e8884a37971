package writeback

import (
	"context"
	"fmt"
	"testing"
	"time"
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
// over 50 patients with the default concurrency.
func BenchmarkDeliverToSim(b *testing.B) {
	s := startSim(b, 50)
	st, _ := openStore(b)
	opts := testOptions(st, map[string]Target{practice: {FHIR: fhirClient(b, s.BaseURL(practice)), Support: supports(false)}})
	ob := newOutbox(b, opts)
	pids := patientIDs(b, s, 50)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		if _, _, err := ob.Submit(ctx, noteRequest(fmt.Sprintf("bench-%d", i), pids[i%len(pids)], "QmVuY2g=")); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	stop := run(b, ob)
	n := waitAllFinal(b, st, 10*time.Minute)
	b.StopTimer()
	stop()
	if n["confirmed"] != b.N {
		b.Fatalf("statuses %v", n)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}
