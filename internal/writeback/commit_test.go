package writeback

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// TestUpdatesShareCommits: updates made at once by many executions are
// batched, and each caller gets its own intent's result.
func TestUpdatesShareCommits(t *testing.T) {
	st, _ := openStore(t)
	ob := newOutbox(t, testOptions(st, map[string]Target{practice: {FHIR: fhirClient(t, "http://127.0.0.1:9/fhir"), Support: supports(false)}}))
	ctx := context.Background()
	const n = 40
	for i := range n {
		submit(t, ob, noteRequest(fmt.Sprintf("k%d", i), fmt.Sprintf("p%d", i), "Tm90ZQ=="))
	}
	c, err := st.ClaimIntents(ctx, practice, time.Now(), time.Minute, n)
	if err != nil || len(c.Intents) != n {
		t.Fatalf("claimed %d: %v", len(c.Intents), err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, in := range c.Intents {
		wg.Go(func() {
			u := store.IntentUpdate{Attempt: in.Attempts, Status: store.IntentSent, ExternalID: "doc-" + in.ID,
				Exchanges: []store.IntentAttempt{{IntentID: in.ID, Attempt: in.Attempts, Step: "create", Method: "POST", Path: "/fhir/DocumentReference", Status: 201}}}
			if i%10 == 0 {
				u.Attempt++ // a claim that is gone
			}
			got, err := ob.updateIntent(ctx, practice, in.ID, u)
			switch {
			case i%10 == 0 && !errors.Is(err, store.ErrIntentState):
				errs <- fmt.Errorf("stale update of %s: %v, want ErrIntentState", in.ID, err)
			case i%10 != 0 && (err != nil || got.ID != in.ID || got.ExternalID != "doc-"+in.ID || got.Status != store.IntentSent):
				errs <- fmt.Errorf("update of %s: got %s %s %s, %v", in.ID, got.ID, got.ExternalID, got.Status, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, in := range c.Intents {
		as, err := st.ListIntentAttempts(ctx, practice, in.ID)
		if err != nil || len(as) != 1 {
			t.Errorf("%s: %d exchanges recorded (%v), want 1", in.ID, len(as), err)
		}
	}
	// The last batch's writer lets go of the queue just after its callers
	// have their results.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		ob.commits.mu.Lock()
		busy, queued := ob.commits.busy, len(ob.commits.queue)
		ob.commits.mu.Unlock()
		if !busy && queued == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the commit queue is left busy=%v with %d updates", busy, queued)
		}
	}
}
