package sync

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
)

// TestSyncIntoSQLite runs a crash, a resume and an incremental run against
// the real embedded store and checks the data, history and raw links there.
func TestSyncIntoSQLite(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "sync.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ehr := newFakeEHR(t)
	ehr.dupAcrossPages = true
	for i := 0; i < 45; i++ {
		ehr.put("Patient", id(i), t0.Add(time.Duration(i)*time.Minute), "")
	}
	src := newSource(t, ehr, nil, "Patient")

	crashCtx, crash := context.WithCancel(ctx)
	s := &Syncer{Store: st, Hooks: Hooks{Page: func(string, string, string, int, time.Duration) { crash() }}}
	if _, err := s.Run(crashCtx, src, "schedule"); !errors.Is(err, context.Canceled) {
		t.Fatalf("crashed run: %v", err)
	}
	cur, err := st.GetCursor(ctx, practice, connection, "Patient")
	if err != nil || !strings.Contains(cur.PageURL, "_page=2") {
		t.Fatalf("cursor %+v %v", cur, err)
	}

	s = &Syncer{Store: st}
	run, err := s.Run(ctx, src, "startup")
	if err != nil || run.Status != store.RunSucceeded {
		t.Fatalf("resumed run %s: %v %s", run.Status, err, run.Error)
	}
	// Pages 2..5 of 10 (+1 repeated entry each): 35 new, 4 repeats.
	wantStats(t, run.Stats["Patient"], 39, 35, 0, 4, 0)

	ehr.put("Patient", id(7), t0.Add(time.Hour), `,"active":false`)
	run, err = s.Run(ctx, src, "schedule")
	if err != nil {
		t.Fatal(err)
	}
	wantStats(t, run.Stats["Patient"], 4, 0, 1, 3, 0) // p007 changed; p042-p044 in the overlap window

	counts, _ := st.CountResources(ctx, practice)
	if counts["Patient"] != 45 {
		t.Fatalf("store has %d patients", counts["Patient"])
	}
	for i := 0; i < 45; i++ {
		r, err := st.GetResource(ctx, practice, "Patient", id(i))
		if err != nil || string(r.Body) != ehr.body("Patient", id(i)) {
			t.Fatalf("%s: %v\n got %s\nwant %s", id(i), err, r.Body, ehr.body("Patient", id(i)))
		}
		raw, err := st.GetRaw(ctx, practice, r.RawID)
		if err != nil || !bytes.Contains(raw.Body, r.Body) || raw.Source != RawSource {
			t.Fatalf("%s: raw %d does not hold this version: %v", id(i), r.RawID, err)
		}
	}
	if h, _ := st.History(ctx, practice, "Patient", id(7)); len(h) != 2 {
		t.Fatalf("p007 has %d versions", len(h))
	}
	stored, err := st.GetRun(ctx, practice, run.ID)
	if err != nil || stored.Status != store.RunSucceeded || stored.Stats["Patient"].Changed != 1 {
		t.Fatalf("stored run %+v %v", stored, err)
	}
	cur, _ = st.GetCursor(ctx, practice, connection, "Patient")
	if cur.PageURL != "" || !cur.Watermark.Equal(t0.Add(time.Hour)) {
		t.Fatalf("final cursor %+v", cur)
	}
}
