package hl7out

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// BenchmarkEnqueue measures storing one outbound message (one commit each).
func BenchmarkEnqueue(b *testing.B) {
	st := openStore(b)
	s, err := New(Options{Store: st, Destinations: []Destination{{Practice: testPractice, Name: "ehr", Addr: "127.0.0.1:1"}}})
	if err != nil {
		b.Fatal(err)
	}
	msg := mdm("BENCH", "Doe")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Enqueue(context.Background(), testPractice, "ehr", msg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkDeliver measures delivery to a loopback receiver that answers AA
// at once: per message one round trip and two store updates (sent, acked),
// strictly one after the other.
func BenchmarkDeliver(b *testing.B) {
	st := openStore(b)
	p, _ := startPeer(b, "", aa)
	s, err := New(Options{Store: st, PollInterval: time.Hour,
		Destinations: []Destination{{Practice: testPractice, Name: "ehr", Addr: p.addr}}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var last int64
	for i := range b.N {
		if last, err = s.Enqueue(ctx, testPractice, "ehr", mdm(fmt.Sprintf("B%08d", i), "Doe")); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	for {
		m, err := st.GetHL7Message(ctx, testPractice, last)
		if err != nil {
			b.Fatal(err)
		}
		if m.Status == store.MsgAcked {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
