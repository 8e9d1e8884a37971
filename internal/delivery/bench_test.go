package delivery

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// benchReceiver verifies each request, de-duplicates by event id and records
// the latency from the change's storage (occurredAt) to its arrival.
type benchReceiver struct {
	mu        sync.Mutex
	secret    []byte
	seen      map[string]bool
	latencies []time.Duration
	bad       int
	all       chan struct{} // closed when want distinct events arrived
	want      int
}

func (r *benchReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	body, _ := io.ReadAll(req.Body)
	var ev Event
	err := json.Unmarshal(body, &ev)
	if err == nil {
		err = Verify(r.secret, req.Header.Get(SignatureHeader), body, now, 0)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.bad++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if !r.seen[ev.ID] {
		r.seen[ev.ID] = true
		r.latencies = append(r.latencies, now.Sub(ev.OccurredAt))
		if len(r.seen) == r.want {
			close(r.all)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *benchReceiver) reset(want int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen, r.latencies, r.want, r.all = map[string]bool{}, nil, want, make(chan struct{})
}

// benchSetup returns a running dispatcher with one webhook on a loopback
// receiver, over a SQLite store in a temporary folder.
func benchSetup(b *testing.B) (store.Store, *Dispatcher, *benchReceiver) {
	st := openStore(b, "")
	rcv := &benchReceiver{}
	srv := httptest.NewServer(rcv)
	b.Cleanup(srv.Close)
	d := newDispatcher(b, Options{Store: st, Practices: []string{"p1"}, SecretKey: testKey})
	_, secret, err := d.CreateWebhook(b.Context(), WebhookSpec{Practice: "p1", App: "bench", URL: srv.URL + "/hook"})
	if err != nil {
		b.Fatal(err)
	}
	rcv.secret = []byte(secret)
	start(b, d)
	return st, d, rcv
}

func (r *benchReceiver) wait(b *testing.B) {
	select {
	case <-r.all:
	case <-time.After(5 * time.Minute):
		b.Fatalf("not every event arrived")
	}
	if r.bad > 0 {
		b.Fatalf("%d requests failed verification", r.bad)
	}
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

// BenchmarkDeliver measures webhook delivery to a loopback receiver that
// verifies every signature: "throughput" stores b.N changes in batches of
// 500 and reports events/s until all are delivered; "rate=200/s" stores one
// change every 5 ms and reports the latency from a change being stored to
// its delivery (p50, p99, max).
func BenchmarkDeliver(b *testing.B) {
	b.Run("throughput", func(b *testing.B) {
		st, d, rcv := benchSetup(b)
		rcv.reset(b.N)
		b.ResetTimer()
		for n, batch := 0, 0; n < b.N; n, batch = n+500, batch+1 {
			writePatients(b, st, "p1", fmt.Sprintf("t%d", batch), min(500, b.N-n))
			d.Notify("p1")
		}
		rcv.wait(b)
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("rate=200/s", func(b *testing.B) {
		st, d, rcv := benchSetup(b)
		rcv.reset(b.N)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		b.ResetTimer()
		for i := range b.N {
			<-tick.C
			writePatients(b, st, "p1", fmt.Sprintf("r%d", i), 1)
			d.Notify("p1")
		}
		rcv.wait(b)
		b.StopTimer()
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		b.ReportMetric(float64(percentile(rcv.latencies, 0.50).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(percentile(rcv.latencies, 0.99).Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(slices.Max(rcv.latencies).Microseconds())/1000, "max-ms")
	})
}
