package writeback

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// TestChaosExactlyOnce: 1,000 intents over 30 patients while 20% of all
// requests to the EHR fail (500, 503, 429, a dropped connection, or a
// write committed whose answer is lost) and the outbox is stopped and
// restarted at random moments. At the end the EHR holds exactly one
// record per intent and every intent is confirmed.
func TestChaosExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test: skipped with -short")
	}
	const n, patients = 1000, 30
	s := startSim(t, patients)
	px := startProxy(t, s.Root())
	rng := rand.New(rand.NewPCG(20260501, 6))
	faults := []action{fail500, fail503, fail429, dropBefore, commitThenDrop}
	injected := map[action]int{}
	var mu sync.Mutex
	px.set(func(r *http.Request, _ []byte) action {
		mu.Lock()
		defer mu.Unlock()
		if rng.Float64() >= 0.20 {
			return pass
		}
		a := faults[rng.IntN(len(faults))]
		if a == commitThenDrop && r.Method == http.MethodGet {
			a = dropBefore
		}
		injected[a]++
		return a
	}, nil)
	st, _ := openStore(t)
	opts := testOptions(st, map[string]Target{practice: {FHIR: fhirClient(t, px.url(simBasePath(s))), Support: supports(false)}})
	opts.Concurrency = 8
	opts.Lease = 2 * time.Second
	pids := patientIDs(t, s, patients)

	// The API side submits while the executors come and go.
	api := newOutbox(t, opts)
	ids := make([]string, 0, n)
	submitted := make(chan struct{})
	go func() {
		defer close(submitted)
		for i := 0; i < n; i++ {
			in, _, err := api.Submit(context.Background(), noteRequest(fmt.Sprintf("chaos-%04d", i), pids[i%patients], "Q2hhb3M="))
			if err != nil {
				t.Errorf("submit %d: %v", i, err)
				return
			}
			mu.Lock()
			ids = append(ids, in.ID)
			mu.Unlock()
		}
	}()
	restarts := 0
	deadline := time.Now().Add(4 * time.Minute)
	for {
		ob := newOutbox(t, opts)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- ob.Run(ctx) }()
		mu.Lock()
		life := time.Duration(50+rng.IntN(450)) * time.Millisecond
		mu.Unlock()
		time.Sleep(life)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		restarts++
		select {
		case <-submitted:
		default:
			continue
		}
		counts, err := st.CountIntents(context.Background(), practice)
		if err != nil {
			t.Fatal(err)
		}
		if counts[store.IntentAccepted]+counts[store.IntentSending]+counts[store.IntentSent] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not finished after %d restarts: %v", restarts, counts)
		}
	}
	counts, _ := st.CountIntents(context.Background(), practice)
	recs := recordsByIntent(t, s.Current(practice, "DocumentReference"))
	dups, lost := 0, 0
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		switch len(recs[id]) {
		case 0:
			lost++
		case 1:
		default:
			dups++
		}
	}
	records := 0
	for _, r := range recs {
		records += len(r)
	}
	var kinds []string
	for a, c := range injected {
		kinds = append(kinds, fmt.Sprintf("%s=%d", actionName(a), c))
	}
	sort.Strings(kinds)
	t.Logf("chaos: %d intents, %d restarts, faults injected %v; at the EHR %d records for %d intents, %d duplicated, %d lost; statuses %v",
		len(ids), restarts, kinds, records, len(recs), dups, lost, counts)
	if len(ids) != n || records != n || len(recs) != n || dups != 0 || lost != 0 {
		t.Errorf("want exactly %d records, one per intent", n)
	}
	if counts[store.IntentConfirmed] != n {
		t.Errorf("statuses %v, want all %d confirmed", counts, n)
	}
	for _, id := range ids[:50] {
		in, _ := st.GetIntent(context.Background(), practice, id)
		if len(recs[id]) == 1 && in.ExternalID != recs[id][0] {
			t.Errorf("intent %s names record %s, the EHR has %v", id, in.ExternalID, recs[id])
		}
	}
}

func actionName(a action) string {
	return [...]string{"pass", "500", "503", "429", "drop", "commit-then-drop", "commit-then-hold"}[a]
}
