package sync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	gosync "sync"
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

// keepingStore keeps the body of every resource write without copying it,
// as a store is free to: what the bulk writer hands over must stay intact
// after its sink call returns.
type keepingStore struct {
	*sqlite.Store
	mu   gosync.Mutex
	kept map[string][]byte // Type/id → body as written
}

func (k *keepingStore) WriteResources(ctx context.Context, practice string, ws []store.ResourceWrite) ([]store.WriteResult, error) {
	k.mu.Lock()
	for _, w := range ws {
		if !w.Deleted {
			k.kept[w.ResourceType+"/"+w.ID] = w.Body
		}
	}
	k.mu.Unlock()
	return k.Store.WriteResources(ctx, practice, ws)
}

// sameMapper maps every resource to itself, handing back its input as the
// engine's mapper does for a type it has no rules for.
type sameMapper struct{}

func (sameMapper) Map(_ context.Context, _, _, _ string, body []byte) ([]byte, error) {
	return body, nil
}

// Each raw batch is the NDJSON lines as the server sent them, and the
// bodies written (unmapped, or mapped to themselves) are still intact
// after the export although the client reuses its buffers from batch to
// batch.
func TestBulkIngestRawBatchesAndKeptBodies(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mapper Mapper
	}{{"unmapped", nil}, {"mapper returns its input", sameMapper{}}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, c := bulkSim(t, sim.BulkOptions{Polls: 1, PerFile: 7})
			db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "bulk.db"), sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			st := &keepingStore{Store: db, kept: map[string][]byte{}}
			in := &BulkIngester{Store: st, Mapper: tc.mapper}
			types := []string{"Patient", "Appointment", "Observation", "Coverage"}
			src := BulkSource{Practice: practice, Connection: connection, Client: c,
				Request: bulk.Request{Level: bulk.LevelSystem, Types: types}}
			run, err := in.Run(ctx, src, "nightly")
			if err != nil || run.Status != store.RunSucceeded {
				t.Fatalf("export: %v %s %s", err, run.Status, run.Error)
			}
			storeMatchesSim(t, db, s, nil)

			want := map[string][]byte{}
			for _, rt := range types {
				for id, body := range s.Current("t", rt) {
					want[rt+"/"+id] = body
				}
			}
			if len(st.kept) != len(want) {
				t.Errorf("%d bodies written, the simulator has %d", len(st.kept), len(want))
			}
			for k, body := range st.kept {
				if string(body) != string(want[k]) {
					t.Errorf("%s: the body written was overwritten after its batch", k)
				}
			}

			raws, err := db.ListRaw(ctx, practice, store.RawFilter{Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			if len(raws) < 2 {
				t.Fatalf("%d raw batches: the test needs several", len(raws))
			}
			lines := 0
			for _, r := range raws {
				if len(r.Body) == 0 || r.Body[len(r.Body)-1] != '\n' {
					t.Fatalf("raw %d does not end with a newline", r.ID)
				}
				for _, l := range bytes.Split(r.Body[:len(r.Body)-1], []byte("\n")) {
					lines++
					var h struct{ ResourceType, ID string }
					if err := json.Unmarshal(l, &h); err != nil {
						t.Fatalf("raw %d: line %q: %v", r.ID, l, err)
					}
					if b, ok := want[h.ResourceType+"/"+h.ID]; !ok || !bytes.Equal(l, b) {
						t.Errorf("raw %d: line of %s/%s differs from what the server sent", r.ID, h.ResourceType, h.ID)
					}
				}
			}
			if lines != len(want) {
				t.Errorf("raw batches hold %d lines, the export had %d resources", lines, len(want))
			}
		})
	}
}

// cloneMapper maps every resource to a copy of itself, as a mapper that
// writes its own output does.
type cloneMapper struct{}

func (cloneMapper) Map(_ context.Context, _, _, _ string, body []byte) ([]byte, error) {
	return bytes.Clone(body), nil
}

// nullBulkStore is the null store (bench_test.go) as a bulk store for the
// writer alone: the writer's batch path keeps no state, so the state
// methods are left unimplemented (nil).
type nullBulkStore struct {
	*nullStore
	store.StateStore
}

// BenchmarkBulkWriterBatch is the bulk writer's share of one batch of
// 1000 resources of about 1 KiB as the bulk client hands it over, with the
// storage and the mapping reduced to a minimum.
func BenchmarkBulkWriterBatch(b *testing.B) {
	pad := strings.Repeat("x", 800)
	var nd []byte
	var ends []int
	for i := 0; i < 1000; i++ {
		nd = fmt.Appendf(nd, `{"resourceType":"Observation","id":"o%d","meta":{"versionId":"1","lastUpdated":"2026-01-01T00:00:00Z"},"status":"final","note":[{"text":"%s"}]}`, i, pad)
		ends = append(ends, len(nd))
		nd = append(nd, '\n')
	}
	batch := make([]bulk.Resource, len(ends))
	start := 0
	for i, e := range ends {
		batch[i] = bulk.Resource{Type: "Observation", ID: fmt.Sprintf("o%d", i), Body: nd[start:e:e], File: "http://x/o.ndjson", Line: i + 1}
		start = e + 1
	}
	for _, m := range []struct {
		name   string
		mapper Mapper
	}{{"mapped", cloneMapper{}}, {"unmapped", nil}} {
		b.Run(m.name, func(b *testing.B) {
			run := store.Run{Stats: map[string]*store.TypeStats{}}
			w := &bulkWriter{b: &BulkIngester{Store: nullBulkStore{nullStore: newNullStore()}, Mapper: m.mapper},
				src: BulkSource{Practice: practice, Connection: connection}, run: &run}
			ctx := context.Background()
			b.SetBytes(int64(len(nd)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if err := w.resources(ctx, bulk.Batch{Resources: batch, NDJSON: nd}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
