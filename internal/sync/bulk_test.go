package sync

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/connector/bulk"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/smart"
	"github.com/mediflow/mediflow/internal/smart/authserver"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
)

// bulkSim starts the simulator (generic flavour) and returns it with a
// bulk client authenticated by SMART Backend Services.
func bulkSim(t *testing.T, opts sim.BulkOptions) (*sim.Sim, *bulk.Client) {
	t.Helper()
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{ID: "t", Flavor: "generic", Seed: 5, Data: &gen.Options{Patients: 15}, Bulk: opts}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	s.SetRoot(srv.URL)
	key, err := smart.GenerateKey("ES384")
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := smart.PublicJWKS(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterClient("t", authserver.Client{ID: "mf", JWKS: jwks, Scopes: []string{"system/*.rs"}}); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{}}
	tokens, err := smart.NewClient(smart.ClientConfig{ClientID: "mf", FHIRBaseURL: s.BaseURL("t"), Key: key, Scopes: []string{"system/*.rs"}, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	c, err := bulk.New(bulk.Config{BaseURL: s.BaseURL("t"), HTTPClient: hc, Tokens: tokens, Workers: 3, MinPoll: time.Millisecond, MaxPoll: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

// storeMatchesSim checks that the store holds exactly the simulator's
// current resources of every type, byte for byte (unmapped ingest).
func storeMatchesSim(t *testing.T, st store.Store, s *sim.Sim, deleted map[string]bool) {
	t.Helper()
	ctx := context.Background()
	for _, rt := range []string{"Patient", "Appointment", "Observation", "Coverage"} {
		cur := s.Current("t", rt)
		if len(cur) == 0 {
			t.Fatalf("simulator has no %s: the check would prove nothing", rt)
		}
		live := 0
		for id, body := range cur {
			r, err := st.GetResource(ctx, practice, rt, id)
			if deleted[rt+"/"+id] {
				if err != nil || !r.Deleted {
					t.Errorf("%s/%s: want a tombstone, got %+v %v", rt, id, r.Deleted, err)
				}
				continue
			}
			live++
			if err != nil {
				t.Errorf("%s/%s missing: %v", rt, id, err)
				continue
			}
			if string(r.Body) != string(body) {
				t.Errorf("%s/%s differs from the simulator", rt, id)
			}
			if h, _ := st.History(ctx, practice, rt, id); len(h) != 1 && !deleted[rt+"/"+id] {
				// Every resource changed at most once in these tests.
				if len(h) > 2 {
					t.Errorf("%s/%s has %d versions", rt, id, len(h))
				}
			}
		}
		counts, _ := st.CountResources(ctx, practice)
		if counts[rt] != live {
			t.Errorf("%s: store has %d, simulator %d live", rt, counts[rt], live)
		}
	}
}

// A full export, an engine "killed" in the middle of an export that then
// resumes the same job, and an incremental export with a change and a
// deletion: the store ends equal to the simulator, each export's raw
// batches stored, nothing written twice.
func TestBulkIngestFullResumeIncremental(t *testing.T) {
	ctx := context.Background()
	s, c := bulkSim(t, sim.BulkOptions{Polls: 1, PerFile: 7, Redirect: true})
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "bulk.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	lags := &lagRecorder{}
	in := &BulkIngester{Store: st, Freshness: lags}
	src := BulkSource{Practice: practice, Connection: connection, Client: c,
		Request: bulk.Request{Level: bulk.LevelSystem, Types: []string{"Patient", "Appointment", "Observation", "Coverage"}}}

	// 1. Killed after the first batch.
	killCtx, kill := context.WithCancel(ctx)
	src.Progress = func(p bulk.Progress) {
		if p.Phase == bulk.PhaseDownloading && p.Resources > 0 {
			kill()
		}
	}
	run, err := in.Run(killCtx, src, "nightly")
	if err == nil || run.Status != store.RunFailed {
		t.Fatalf("killed export: %v %s", err, run.Status)
	}
	raw, _ := st.GetState(ctx, practice, bulkStateKey(connection))
	if len(raw) == 0 {
		t.Fatal("no export state saved")
	}
	src.Progress = nil
	run2, err := in.Run(ctx, src, "nightly")
	if err != nil || run2.Status != store.RunSucceeded {
		t.Fatalf("resumed export: %v %s %s", err, run2.Status, run2.Error)
	}
	if run2.ID != run.ID {
		t.Errorf("resume started run %d, the job belongs to run %d", run2.ID, run.ID)
	}
	storeMatchesSim(t, st, s, nil)
	if len(lags.lags) != 0 {
		t.Errorf("a first full export was measured as freshness")
	}
	rawRows, _ := st.ListRaw(ctx, practice, store.RawFilter{Limit: 1000})
	for _, r := range rawRows {
		if r.Source != RawSourceBulk || r.ContentType != bulk.NDJSON {
			t.Fatalf("raw payload %d: source %q type %q", r.ID, r.Source, r.ContentType)
		}
	}
	if len(rawRows) == 0 {
		t.Fatal("no raw batches stored")
	}

	// 2. Changes and a deletion, then an incremental export (_since). The
	// deleted Coverage is one the first export stored (the tick may create
	// Coverages too: one deleted before any export saw it leaves nothing
	// to tombstone).
	var stored []string
	for id := range s.Current("t", "Coverage") {
		stored = append(stored, id)
	}
	slices.Sort(stored)
	time.Sleep(5 * time.Millisecond)
	if _, err := s.Tick("t", 10); err != nil {
		t.Fatal(err)
	}
	gone := stored[0]
	if err := s.MarkDeleted("t", "Coverage", gone); err != nil {
		t.Fatal(err)
	}
	run3, err := in.Run(ctx, src, "nightly")
	if err != nil || run3.Status != store.RunSucceeded {
		t.Fatalf("incremental export: %v %s %s", err, run3.Status, run3.Error)
	}
	fetched, changed, added := 0, 0, 0
	for _, ts := range run3.Stats {
		fetched += ts.Fetched
		changed += ts.Changed
		added += ts.New
	}
	if fetched == 0 || fetched > 30 || changed+added == 0 {
		t.Errorf("incremental export fetched %d (changed %d, new %d): not incremental", fetched, changed, added)
	}
	if run3.Stats["Coverage"].Deleted != 1 {
		t.Errorf("coverage stats %+v, want 1 deleted", run3.Stats["Coverage"])
	}
	storeMatchesSim(t, st, s, map[string]bool{"Coverage/" + gone: true})
	if len(lags.lags) != changed+added {
		t.Errorf("%d freshness observations for %d changes", len(lags.lags), changed+added)
	}
}

// An expired job is dropped: the next run starts a new export from the
// same point instead of failing forever.
func TestBulkIngestExpiredJobStartsOver(t *testing.T) {
	ctx := context.Background()
	_, c := bulkSim(t, sim.BulkOptions{Polls: 1})
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "bulk.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	in := &BulkIngester{Store: st}
	src := BulkSource{Practice: practice, Connection: connection, Client: c, Request: bulk.Request{Types: []string{"Patient"}}}
	// A saved job whose status URL the server no longer knows.
	if err := st.PutState(ctx, practice, bulkStateKey(connection), []byte(`{"job":{"kickoff_url":"x","status_url":"`+c.BaseURL()+`/$export-poll-status?_jobId=gone"}}`)); err != nil {
		t.Fatal(err)
	}
	run, err := in.Run(ctx, src, "nightly")
	if err == nil || !errors.Is(err, bulk.ErrExpired) {
		t.Fatalf("run on an expired job: %v (%s)", err, run.Error)
	}
	run, err = in.Run(ctx, src, "nightly")
	if err != nil || run.Status != store.RunSucceeded || run.Stats["Patient"].New == 0 {
		t.Fatalf("the next run: %v %s %+v", err, run.Status, run.Stats["Patient"])
	}
}
