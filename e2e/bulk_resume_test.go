package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/sync"
)

// The directory (reference data) is read nightly by Bulk Data export. The
// engine is stopped in the middle of an export; a new engine on the same
// store resumes the same job on the EHR (no second kick-off), downloads
// what was not done, and ends with exactly the EHR's data: nothing lost,
// nothing stored twice.
func TestEngineStoppedMidExportResumes(t *testing.T) {
	const practice = "northgate"
	w := newWorld(t, practiceSpec{id: practice, seed: 19, classes: []string{"reference"}, nightly: []string{"reference"}})
	if err := w.sim.SetBulkOptions(practice, sim.BulkOptions{Polls: 1, PerFile: 3}); err != nil {
		t.Fatal(err)
	}
	eng1 := w.newEngine(engineOptions{})
	st := eng1.Store()
	ctx1, stop := context.WithCancel(w.ctx)
	go func() {
		// Stop as soon as the first batch of the export is stored.
		for ctx1.Err() == nil {
			raws, _ := st.ListRaw(context.Background(), practice, store.RawFilter{Limit: 10})
			for _, r := range raws {
				if r.Source == sync.RawSourceBulk {
					stop()
					return
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	if err := eng1.SyncAll(ctx1, e2eTrigger); err == nil {
		t.Fatal("the stopped export reported no error")
	}
	stop()
	runs, _ := st.ListRuns(context.Background(), practice, "", 10)
	if len(runs) != 1 || runs[0].Status != store.RunFailed {
		t.Fatalf("runs after the stop: %+v", runs)
	}
	stopped := runs[0]
	if err := eng1.Close(); err != nil {
		t.Fatal(err)
	}

	eng2 := w.newEngine(engineOptions{})
	if err := eng2.SyncAll(w.ctx, e2eTrigger); err != nil {
		t.Fatalf("resumed export: %v", err)
	}
	st2 := eng2.Store()
	runs, _ = st2.ListRuns(context.Background(), practice, "", 10)
	if len(runs) != 1 || runs[0].ID != stopped.ID || runs[0].Status != store.RunSucceeded {
		t.Fatalf("the resumed export should finish run %d: %+v", stopped.ID, runs)
	}
	w.requireTypesIdentical(st2, practice, []string{"Practitioner", "Organization", "Location"})
	for _, rt := range []string{"Practitioner", "Organization", "Location"} {
		for id := range w.sim.Current(practice, rt) {
			h, err := st2.History(context.Background(), practice, rt, id)
			if err != nil || len(h) != 1 {
				t.Errorf("%s/%s has %d versions (%v): stored twice", rt, id, len(h), err)
			}
		}
	}
}
