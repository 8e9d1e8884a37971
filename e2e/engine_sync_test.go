package e2e

import (
	"bytes"
	"net/http"
	"slices"
	"sort"
	"testing"
	"time"
)

// A practice on each vendor flavour connects with SMART backend services.
// The first sync copies the EHR exactly; a second sync finds nothing new;
// after the EHR changes, an incremental sync picks up exactly those changes,
// and the change feed lists them.
func TestPracticeSyncsExactCopyThenKeepsUpWithChanges(t *testing.T) {
	for _, flavor := range []string{"generic", "epic"} {
		t.Run(flavor, func(t *testing.T) {
			t.Parallel()
			const practice = "valley"
			w := newWorld(t, practiceSpec{id: practice, flavor: flavor, seed: 11})
			eng := w.newEngine(engineOptions{})
			ctx := withTimeout(t, 40*time.Second)

			// 1. First sync: everything is new, and the store equals the source.
			first := w.syncAll(ctx, eng)
			w.requireSucceeded(first)
			w.wantFirstSync(first)
			w.requireIdentical(eng.Store())

			// 2. Nothing changed at the source: nothing new or changed.
			second := w.syncAll(ctx, eng)
			w.requireSucceeded(second)
			for rt, ts := range second.stats[practice] {
				if ts.New != 0 || ts.Changed != 0 || ts.Failed != 0 || ts.Unchanged != ts.Fetched {
					t.Errorf("second sync %s: fetched/new/changed/unchanged/failed = %d/%d/%d/%d/%d, want all unchanged",
						rt, ts.Fetched, ts.New, ts.Changed, ts.Unchanged, ts.Failed)
				}
			}
			if seq := latestSeq(t, eng.Store(), practice); seq != second.seq[practice] {
				t.Errorf("a sync without source changes moved the change feed from %d to %d", second.seq[practice], seq)
			}

			// 3. The EHR changes: updates of existing records and new ones.
			// What changed is read from the source itself (before/after), and
			// every change the generator reports must be among it.
			types := w.practices[0].syncedTypes(w.sim)
			before := sourceSnapshot(w, practice, types)
			changes, err := w.sim.Tick(practice, 30)
			if err != nil {
				t.Fatal(err)
			}
			created, updated := diffSnapshots(before, sourceSnapshot(w, practice, types))
			for _, c := range changes {
				if !created[c.ResourceType][c.ID] && !updated[c.ResourceType][c.ID] {
					t.Fatalf("the generator reports a change of %s/%s the source does not show", c.ResourceType, c.ID)
				}
			}
			var wantFeed []string
			for _, m := range []map[string]map[string]bool{created, updated} {
				for rt, ids := range m {
					for id := range ids {
						wantFeed = append(wantFeed, rt+"/"+id)
					}
				}
			}
			if len(created) == 0 || len(updated) == 0 {
				t.Fatalf("the change generator made no creations or no updates (%d changes): the test needs both", len(changes))
			}

			third := w.syncAll(ctx, eng)
			w.requireSucceeded(third)
			for _, rt := range types {
				ts := third.stats[practice][rt]
				if ts == nil {
					t.Fatalf("incremental sync: no stats for %s", rt)
				}
				wantNew, wantChanged := len(created[rt]), len(updated[rt])
				if ts.New != wantNew || ts.Changed != wantChanged || ts.Failed != 0 || ts.Unchanged != ts.Fetched-wantNew-wantChanged {
					t.Errorf("incremental sync %s: fetched/new/changed/unchanged/failed = %d/%d/%d/%d/%d, want new %d changed %d, rest unchanged",
						rt, ts.Fetched, ts.New, ts.Changed, ts.Unchanged, ts.Failed, wantNew, wantChanged)
				}
			}
			w.requireIdentical(eng.Store())

			// 4. The change feed lists exactly what changed, once each.
			apiURL := serveAPI(t, eng)
			feed := changeFeed(t, http.DefaultClient, apiURL, w.apiKey, practice, third.seq[practice])
			sort.Strings(feed)
			sort.Strings(wantFeed)
			if !slices.Equal(feed, wantFeed) {
				t.Errorf("change feed since the incremental sync:\n got  %v\n want %v", feed, wantFeed)
			}
		})
	}
}

// sourceSnapshot is the source's current resources of the types: type → id → JSON.
func sourceSnapshot(w *world, practice string, types []string) map[string]map[string][]byte {
	out := map[string]map[string][]byte{}
	for _, rt := range types {
		out[rt] = w.sim.Current(practice, rt)
	}
	return out
}

// diffSnapshots returns the ids created and the ids whose JSON changed
// between two snapshots, per type.
func diffSnapshots(before, after map[string]map[string][]byte) (created, updated map[string]map[string]bool) {
	created, updated = map[string]map[string]bool{}, map[string]map[string]bool{}
	add := func(m map[string]map[string]bool, rt, id string) {
		if m[rt] == nil {
			m[rt] = map[string]bool{}
		}
		m[rt][id] = true
	}
	for rt, ids := range after {
		for id, body := range ids {
			old, existed := before[rt][id]
			switch {
			case !existed:
				add(created, rt, id)
			case !bytes.Equal(old, body):
				add(updated, rt, id)
			}
		}
	}
	return created, updated
}
