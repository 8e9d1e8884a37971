package mllp

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkRoundTrip sends messages through Clients to a Server over
// loopback and waits for each ACK; the handler returns a fixed ACK.
func BenchmarkRoundTrip(b *testing.B) {
	fixed := []byte("MSH|^~\\&|MF|CLINIC|LAB|HOSP|20240102030405||ACK^A01^ACK|ACK1|P|2.5.1\rMSA|AA|CTRL1\r")
	msg := []byte("MSH|^~\\&|LAB|HOSP|MF|CLINIC|20240102030405||ORU^R01^ORU_R01|CTRL1|P|2.5.1\r" +
		"PID|1||12345^^^HOSP^MR||Doe^Jane||19800101|F\r" +
		"OBR|1|PL1|FL1|24331-1^Lipid panel^LN|||20240102030000\r" +
		"OBX|1|NM|2093-3^Cholesterol^LN||185|mg/dL|<200|N|||F\r" +
		"OBX|2|NM|2571-8^Triglyceride^LN||140|mg/dL|<150|N|||F\r")
	h := HandlerFunc(func(context.Context, *Request) ([]byte, error) { return fixed, nil })
	for _, conns := range []int{1, 8} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			ts := startServer(b, ServerConfig{}, h)
			clients := make([]*Client, conns)
			for i := range clients {
				clients[i] = NewClient(ClientConfig{Addr: ts.addr, MaxAttempts: 1})
				defer clients[i].Close()
				if _, err := clients[i].Send(context.Background(), msg); err != nil {
					b.Fatal(err)
				}
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for _, c := range clients {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if _, err := c.Send(context.Background(), msg); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
