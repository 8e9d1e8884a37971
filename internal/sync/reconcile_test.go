package sync

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
)

type lagRecorder struct {
	classes []string
	lags    []time.Duration
}

func (l *lagRecorder) Observe(practice, class string, changedAt, readableAt time.Time) {
	l.classes = append(l.classes, practice+"/"+class)
	l.lags = append(l.lags, readableAt.Sub(changedAt))
}

// A reconciliation sweep stores a change incremental polling missed (the
// EHR did not move _lastUpdated) and turns records deleted at the EHR into
// tombstones that the change feed shows; a sweep with a failed resource
// deletes nothing.
func TestReconcileFindsMissedChangesAndDeletions(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "sync.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ehr := newFakeEHR(t)
	for i := 0; i < 30; i++ {
		ehr.put("Patient", id(i), t0.Add(time.Duration(i)*time.Minute), "")
	}
	src := newSource(t, ehr, nil, "Patient")
	lags := &lagRecorder{}
	s := &Syncer{Store: st, Freshness: lags}
	if run, err := s.Run(ctx, src, "startup"); err != nil || run.Stats["Patient"].New != 30 {
		t.Fatalf("first load: %v %+v", err, run.Stats["Patient"])
	}
	if len(lags.lags) != 0 {
		t.Fatalf("the first load was measured as freshness: %v", lags.classes)
	}
	// The EHR deletes two records and changes one without moving its
	// lastUpdated: an incremental run sees none of it.
	ehr.mu.Lock()
	delete(ehr.data["Patient"], id(3))
	delete(ehr.data["Patient"], id(17))
	ehr.mu.Unlock()
	ehr.put("Patient", id(5), t0.Add(5*time.Minute), `,"active":false`)
	run, err := s.Run(ctx, src, "schedule")
	if err != nil || run.Stats["Patient"].Changed != 0 || run.Stats["Patient"].Deleted != 0 {
		t.Fatalf("incremental run: %v %+v", err, run.Stats["Patient"])
	}
	before, _ := st.Changes(ctx, practice, 0, 1000)

	sweep := src
	sweep.Reconcile = true
	run, err = s.Run(ctx, sweep, "reconcile")
	if err != nil || run.Status != store.RunSucceeded {
		t.Fatalf("sweep: %v %s %s", err, run.Status, run.Error)
	}
	ps := run.Stats["Patient"]
	if ps.Fetched != 28 || ps.Changed != 1 || ps.Deleted != 2 || ps.Unchanged != 27 {
		t.Fatalf("sweep stats %+v, want 28 fetched, 1 changed, 2 deleted", ps)
	}
	for _, gone := range []string{id(3), id(17)} {
		r, err := st.GetResource(ctx, practice, "Patient", gone)
		if err != nil || !r.Deleted || r.Version != 2 {
			t.Errorf("%s: %+v %v, want a deleted version 2", gone, r, err)
		}
	}
	if r, _ := st.GetResource(ctx, practice, "Patient", id(5)); string(r.Body) != ehr.body("Patient", id(5)) {
		t.Errorf("missed change not stored: %s", r.Body)
	}
	after, _ := st.Changes(ctx, practice, 0, 1000)
	var tomb []string
	for _, c := range after[len(before):] {
		if c.Deleted {
			tomb = append(tomb, c.ID)
		}
	}
	if len(tomb) != 2 {
		t.Errorf("change feed tombstones %v, want 2", tomb)
	}
	// The missed change was measured (its lastUpdated is old: a large lag).
	if len(lags.classes) != 1 || lags.classes[0] != practice+"/demographics" || lags.lags[0] < time.Hour {
		t.Errorf("freshness observations %v %v", lags.classes, lags.lags)
	}

	// A second sweep changes nothing; tombstones stay single.
	run, err = s.Run(ctx, sweep, "reconcile")
	if err != nil || run.Stats["Patient"].Deleted != 0 || run.Stats["Patient"].Changed != 0 {
		t.Fatalf("second sweep: %v %+v", err, run.Stats["Patient"])
	}

	// A sweep where a resource fails deletes nothing, even if ids are gone.
	ehr.mu.Lock()
	delete(ehr.data["Patient"], id(20))
	ehr.mu.Unlock()
	ehr.extraEntries["Patient"] = []string{`{"resource":{"resourceType":"Patient"}}`}
	run, _ = s.Run(ctx, sweep, "reconcile")
	if ps := run.Stats["Patient"]; ps.Failed == 0 || ps.Deleted != 0 {
		t.Fatalf("sweep with a failed entry: %+v", ps)
	}
	if r, _ := st.GetResource(ctx, practice, "Patient", id(20)); r.Deleted {
		t.Error("a sweep with failures tombstoned a record")
	}
}
