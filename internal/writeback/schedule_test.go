package writeback

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// slowEHR is a reverse proxy in front of the simulator that holds every
// request for delay and counts the requests in flight.
type slowEHR struct {
	srv   *httptest.Server
	delay time.Duration

	mu             sync.Mutex
	inFlight, peak int
	total          *inFlight // shared by every slowEHR of a test
}

// inFlight counts requests in flight over several servers.
type inFlight struct {
	mu      sync.Mutex
	n, peak int
}

func (c *inFlight) add(d int) {
	c.mu.Lock()
	c.n += d
	c.peak = max(c.peak, c.n)
	c.mu.Unlock()
}

func startSlowEHR(t *testing.T, target string, delay time.Duration, total *inFlight) *slowEHR {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	e := &slowEHR{delay: delay, total: total}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.inFlight++
		e.peak = max(e.peak, e.inFlight)
		e.mu.Unlock()
		total.add(1)
		defer func() {
			total.add(-1)
			e.mu.Lock()
			e.inFlight--
			e.mu.Unlock()
		}()
		select {
		case <-time.After(e.delay):
		case <-r.Context().Done():
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *slowEHR) peakInFlight() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.peak
}

// TestEHRConcurrency: practices sharing an EHR (one FHIR base URL) share
// the smallest of their bounds, another EHR has its own, and Concurrency
// bounds them all; every bound is reached, none exceeded.
func TestEHRConcurrency(t *testing.T) {
	s := startSim(t, 8)
	pids := patientIDs(t, s, 8)
	total := &inFlight{}
	a := startSlowEHR(t, s.Root(), 15*time.Millisecond, total)
	b := startSlowEHR(t, s.Root(), 15*time.Millisecond, total)
	st, _ := openStore(t)
	clientA := fhirClient(t, a.srv.URL+simBasePath(s))
	targets := map[string]Target{
		"p1": {FHIR: clientA, Support: supports(true)},
		"p2": {FHIR: fhirClient(t, a.srv.URL+simBasePath(s)+"/"), Support: supports(true)}, // the same EHR
		"p3": {FHIR: fhirClient(t, b.srv.URL+simBasePath(s)), Support: supports(true)},
	}
	opts := testOptions(st, targets)
	opts.Concurrency = 4
	opts.EHRConcurrency = map[string]int{"p1": 5, "p2": 3, "p3": 2}
	ob := newOutbox(t, opts)
	for _, p := range []string{"p1", "p2", "p3"} {
		for i := range 24 {
			r := noteRequest(fmt.Sprintf("%s-%d", p, i), pids[i%len(pids)], "Tm90ZQ==")
			r.Practice = p
			submit(t, ob, r)
		}
	}
	stop := run(t, ob)
	deadline := time.Now().Add(60 * time.Second)
	for _, p := range []string{"p1", "p2", "p3"} {
		for {
			n, err := st.CountIntents(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			if n[store.IntentConfirmed] == 24 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v after 60 s", p, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	stop()
	if got := a.peakInFlight(); got != 3 {
		t.Errorf("requests in flight at the shared EHR: at most %d, want 3 (the smaller bound of p1 and p2)", got)
	}
	if got := b.peakInFlight(); got != 2 {
		t.Errorf("requests in flight at p3's EHR: at most %d, want 2", got)
	}
	total.mu.Lock()
	peak := total.peak
	total.mu.Unlock()
	if peak > 4 {
		t.Errorf("requests in flight over both EHRs: %d, above Concurrency 4", peak)
	}
}

// TestClaimedAheadHandedBack: intents claimed ahead of a free slot and not
// started when the outbox stops are due again at once, and a later run
// writes each exactly once.
func TestClaimedAheadHandedBack(t *testing.T) {
	s := startSim(t, 4)
	pids := patientIDs(t, s, 4)
	e := startSlowEHR(t, s.Root(), 300*time.Millisecond, &inFlight{})
	st, _ := openStore(t)
	opts := testOptions(st, map[string]Target{practice: {FHIR: fhirClient(t, e.srv.URL+simBasePath(s)), Support: supports(true)}})
	opts.Concurrency = 1
	ob := newOutbox(t, opts)
	var ins []Intent
	for i := range 3 {
		ins = append(ins, submit(t, ob, noteRequest(fmt.Sprintf("k%d", i), pids[i], "Tm90ZQ==")))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ob.Run(ctx) }()
	// One executes (its first request is held by the EHR), one more is
	// claimed ahead (the outbox holds twice its bound).
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := st.CountIntents(context.Background(), practice)
		if err != nil {
			t.Fatal(err)
		}
		if n[store.IntentSending] == 2 && e.peakInFlight() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("statuses %v, %d in flight", n, e.peakInFlight())
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopAt := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var handedBack, accepted int
	for _, in := range ins {
		got, err := st.GetIntent(context.Background(), practice, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		as, err := st.ListIntentAttempts(context.Background(), practice, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case got.Status == store.IntentAccepted:
			accepted++
		case got.Attempts == 1 && len(as) == 0:
			// Claimed, never started: due at once, not after the lease.
			handedBack++
			if got.NextAttempt.After(stopAt.Add(5 * time.Second)) {
				t.Errorf("handed back %s is due %v, after the stop", in.ID, got.NextAttempt)
			}
		}
	}
	if handedBack != 1 || accepted != 1 {
		t.Errorf("handed back %d, still accepted %d; want 1 and 1", handedBack, accepted)
	}
	// A new outbox writes all three, once each.
	ob2 := newOutbox(t, opts)
	run(t, ob2)
	var ids []string
	for _, in := range ins {
		ids = append(ids, in.ID)
	}
	for id, in := range waitFinal(t, st, 20*time.Second, ids...) {
		if in.Status != store.IntentConfirmed {
			t.Errorf("%s: %s (%s)", id, in.Status, in.LastError)
		}
	}
	for id, recs := range recordsByIntent(t, s.Current(practice, "DocumentReference")) {
		if len(recs) != 1 {
			t.Errorf("intent %s has %d records at the EHR", id, len(recs))
		}
	}
}
