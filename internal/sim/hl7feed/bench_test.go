package hl7feed

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/gen"
)

func benchSource(b *testing.B, patients int) Source {
	b.Helper()
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{ID: "bench", Seed: 1, Data: &gen.Options{Patients: patients}}}})
	if err != nil {
		b.Fatal(err)
	}
	return FromSim(s, "bench")
}

// BenchmarkLoad reads and indexes a 200-patient tenant (what Run does at
// start and every Refresh).
func BenchmarkLoad(b *testing.B) {
	src := benchSource(b, 200)
	b.ReportAllocs()
	for b.Loop() {
		load(src)
	}
}

// BenchmarkBuild builds one message (default mix) from a loaded tenant.
func BenchmarkBuild(b *testing.B) {
	snap := load(benchSource(b, 200))
	bl, err := newBuilder(FeedConfig{ControlIDPrefix: "B"}, 1)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	var n int
	for b.Loop() {
		msg, _, err := bl.next(snap, now)
		if err != nil {
			b.Fatal(err)
		}
		n += len(msg)
	}
	b.ReportMetric(float64(n)/float64(b.N), "bytes/msg")
}

// BenchmarkFeedLoopback sends unpaced through the feed to a receiver that
// ACKs on loopback: messages per second over one connection.
func BenchmarkFeedLoopback(b *testing.B) {
	src := benchSource(b, 200)
	r := NewReceiver(ReceiverConfig{Keep: 1})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	f := NewFeed(src, FeedConfig{To: ln.Addr().String(), Count: b.N})
	b.ResetTimer()
	start := time.Now()
	if err := f.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	if st := f.Stats(); st.Accepted != int64(b.N) {
		b.Fatalf("stats %+v", st)
	}
}
