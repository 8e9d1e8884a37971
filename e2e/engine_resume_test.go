package e2e

import (
	"context"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// A sync is interrupted in the middle of paging through Observations (the
// process stops). A new engine started on the same store file continues from
// the saved page link instead of starting the search over, and ends with an
// exact copy.
func TestInterruptedSyncResumesFromItsCursorInANewEngine(t *testing.T) {
	const practice = "resumable"
	const pageSize = 10
	w := newWorld(t, practiceSpec{id: practice, seed: 41, pageSize: pageSize, classes: []string{"clinical"}})
	base := w.sim.BaseURL(practice)
	nObs := len(w.sim.Current(practice, "Observation"))
	totalPages := (nObs + pageSize - 1) / pageSize
	if totalPages < 6 {
		t.Fatalf("only %d Observation pages: too few to interrupt in the middle", totalPages)
	}

	// Engine 1: stop the sync as it asks for the 4th next page of Observations.
	ctx1, stop := context.WithCancel(withTimeout(t, 30*time.Second))
	t.Cleanup(stop)
	rl1 := newRequestLog()
	var nextPages atomic.Int32
	rl1.hook = func(u *url.URL) {
		if strings.HasSuffix(u.Path, "/Observation") && u.Query().Get("_page") != "" && nextPages.Add(1) == 4 {
			stop()
		}
	}
	eng1 := w.newEngine(engineOptions{transport: rl1})
	first := w.syncAll(ctx1, eng1)
	if first.err == nil {
		t.Fatal("the interrupted sync reported no error")
	}
	runs := first.runs[practice]
	if len(runs) != 1 || runs[0].Status != store.RunFailed || !strings.Contains(runs[0].Error, "cancel") {
		t.Fatalf("interrupted run: %+v, want one failed run saying it was cancelled", runs)
	}
	obs1 := first.stats[practice]["Observation"]
	if obs1 == nil || obs1.Pages == 0 || obs1.Pages >= totalPages {
		t.Fatalf("interrupted run committed %+v Observation pages of %d: not interrupted mid-type", obs1, totalPages)
	}
	if err := eng1.Close(); err != nil {
		t.Fatal(err)
	}

	// Engine 2: a new process on the same store file.
	rl2 := newRequestLog()
	eng2 := w.newEngine(engineOptions{transport: rl2})
	ctx := withTimeout(t, 30*time.Second)
	cur, err := eng2.Store().GetCursor(ctx, practice, e2eConnection, "Observation")
	if err != nil {
		t.Fatal(err)
	}
	if cur.PageURL == "" || !isNextPage(cur.PageURL) {
		t.Fatalf("saved cursor %+v has no next-page link to resume from", cur)
	}
	second := w.syncAll(ctx, eng2)
	w.requireSucceeded(second)

	obsReqs := rl2.searches(base, "Observation")
	if len(obsReqs) == 0 {
		t.Fatal("the resumed sync asked for no Observations")
	}
	if obsReqs[0] != cur.PageURL {
		t.Errorf("resumed sync started Observations at %s, want the saved page %s", obsReqs[0], cur.PageURL)
	}
	for _, u := range obsReqs {
		if !isNextPage(u) {
			t.Errorf("resumed sync restarted the Observation search from the first page (%s)", u)
		}
	}
	// At most the page in flight when the process stopped is fetched again.
	if max := totalPages - obs1.Pages + 1; len(obsReqs) > max {
		t.Errorf("resumed sync fetched %d Observation pages; %d of %d were already committed", len(obsReqs), obs1.Pages, totalPages)
	}
	obs2 := second.stats[practice]["Observation"]
	if obs1.New+obs2.New != nObs || obs2.Changed != 0 || obs2.Failed != 0 {
		t.Errorf("Observations new in run 1 + run 2 = %d + %d (changed %d, failed %d), want %d in all", obs1.New, obs2.New, obs2.Changed, obs2.Failed, nObs)
	}
	for _, rt := range []string{"Condition", "AllergyIntolerance", "MedicationRequest"} { // finished before the interruption
		if ts := second.stats[practice][rt]; ts == nil || ts.New != 0 || ts.Changed != 0 {
			t.Errorf("%s was complete before the interruption, yet the resumed sync found %+v", rt, ts)
		}
	}
	w.requireIdentical(eng2.Store())
}
