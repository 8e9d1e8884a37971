package sync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/connector/fhirrest"
	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/vendors"
	"github.com/mediflow/mediflow/internal/vendors/epic"
)

var t0 = time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)

const practice, connection = "acme", "ehr1"

func newSource(t *testing.T, ehr *fakeEHR, prof vendors.Profile, types ...string) Source {
	t.Helper()
	c, err := fhirrest.New(fhirrest.Config{
		BaseURL: ehr.base(), Profile: prof, MaxRetries: 2, Timeout: 5 * time.Second,
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
	})
	if err != nil {
		t.Fatal(err)
	}
	return Source{Practice: practice, Connection: connection, Client: c, ResourceTypes: types, PageSize: 10}
}

func id(i int) string { return fmt.Sprintf("p%03d", i) }

// assertExact checks that the store holds exactly the server's resources of rt, byte for byte.
func assertExact(t *testing.T, st *memStore, ehr *fakeEHR, rt string) {
	t.Helper()
	ehr.mu.Lock()
	want := map[string]string{}
	for id, r := range ehr.data[rt] {
		want[id] = r.body
	}
	ehr.mu.Unlock()
	counts, _ := st.CountResources(context.Background(), practice)
	if counts[rt] != len(want) {
		t.Fatalf("store has %d %s, server %d", counts[rt], rt, len(want))
	}
	for id, body := range want {
		r, err := st.GetResource(context.Background(), practice, rt, id)
		if err != nil {
			t.Fatalf("%s/%s: %v", rt, id, err)
		}
		if string(r.Body) != body {
			t.Fatalf("%s/%s differs:\n got %s\nwant %s", rt, id, r.Body, body)
		}
	}
}

func wantStats(t *testing.T, got *store.TypeStats, fetched, new, changed, unchanged, failed int) {
	t.Helper()
	if got == nil {
		t.Fatal("no stats")
	}
	if got.Fetched != fetched || got.New != new || got.Changed != changed || got.Unchanged != unchanged || got.Failed != failed {
		t.Fatalf("stats = fetched %d new %d changed %d unchanged %d failed %d; want %d %d %d %d %d (failures %v)",
			got.Fetched, got.New, got.Changed, got.Unchanged, got.Failed, fetched, new, changed, unchanged, failed, got.Failures)
	}
	if got.Fetched != got.New+got.Changed+got.Unchanged+got.Failed {
		t.Fatalf("fetched %d != new+changed+unchanged+failed", got.Fetched)
	}
}

func TestSyncNewChangedUnchangedAndOverlap(t *testing.T) {
	ehr := newFakeEHR(t)
	for i := 0; i < 25; i++ {
		ehr.put("Patient", id(i), t0.Add(time.Duration(i)*time.Minute), "")
	}
	st := newMemStore()
	var pages int
	s := &Syncer{Store: st, Hooks: Hooks{Page: func(p, c, rt string, n int, d time.Duration) { pages++ }}}
	src := newSource(t, ehr, nil, "Patient")
	ctx := context.Background()

	run, err := s.Run(ctx, src, "manual")
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != store.RunSucceeded || pages != 3 || run.Stats["Patient"].Pages != 3 {
		t.Fatalf("run %+v pages %d", run, pages)
	}
	wantStats(t, run.Stats["Patient"], 25, 25, 0, 0, 0)
	if log := ehr.log(); log[0] != "search Patient " {
		t.Fatalf("first run must be a full search, got %v", log)
	}
	cur, _ := st.GetCursor(ctx, practice, connection, "Patient")
	if !cur.Watermark.Equal(t0.Add(24*time.Minute)) || cur.PageURL != "" {
		t.Fatalf("cursor after run 1: %+v", cur)
	}
	assertExact(t, st, ehr, "Patient")

	// Three changes and two new resources, all later than the watermark.
	for _, i := range []int{3, 10, 23} {
		ehr.put("Patient", id(i), t0.Add(30*time.Minute), `,"active":true`)
	}
	ehr.put("Patient", id(25), t0.Add(31*time.Minute), "")
	ehr.put("Patient", id(26), t0.Add(31*time.Minute), "")
	ehr.resetLog()
	run, err = s.Run(ctx, src, "schedule")
	if err != nil {
		t.Fatal(err)
	}
	// The overlap window (2m before t0+24m) brings back p022 and p024
	// unchanged; p023 changed, so it counts as changed.
	if log := ehr.log(); log[0] != "search Patient ge"+fhir.FormatInstant(t0.Add(22*time.Minute)) {
		t.Fatalf("incremental search: %v", log)
	}
	wantStats(t, run.Stats["Patient"], 7, 2, 3, 2, 0)
	cur, _ = st.GetCursor(ctx, practice, connection, "Patient")
	if !cur.Watermark.Equal(t0.Add(31 * time.Minute)) {
		t.Fatalf("watermark %v", cur.Watermark)
	}
	assertExact(t, st, ehr, "Patient")
	h, _ := st.History(ctx, practice, "Patient", id(10))
	if len(h) != 2 || h[0].Version != 2 {
		t.Fatalf("history of a changed resource: %d versions", len(h))
	}

	// Nothing changed: everything in the overlap is unchanged.
	run, _ = s.Run(ctx, src, "schedule")
	wantStats(t, run.Stats["Patient"], 5, 0, 0, 5, 0)
	if run.Status != store.RunSucceeded {
		t.Fatalf("status %s", run.Status)
	}
}

func TestSyncCustomOverlap(t *testing.T) {
	ehr := newFakeEHR(t)
	ehr.put("Patient", id(1), t0, "")
	st := newMemStore()
	s := &Syncer{Store: st}
	src := newSource(t, ehr, nil, "Patient")
	src.Overlap = 10 * time.Minute
	st.PutCursor(context.Background(), store.Cursor{Practice: practice, Connection: connection, ResourceType: "Patient", Watermark: t0.Add(time.Hour)})
	if _, err := s.Run(context.Background(), src, "manual"); err != nil {
		t.Fatal(err)
	}
	if log := ehr.log(); log[0] != "search Patient ge"+fhir.FormatInstant(t0.Add(50*time.Minute)) {
		t.Fatalf("search: %v", log)
	}
}

func TestSyncSameIDOnTwoPages(t *testing.T) {
	ehr := newFakeEHR(t)
	ehr.dupAcrossPages = true
	for i := 0; i < 25; i++ {
		ehr.put("Patient", id(i), t0, "")
	}
	st := newMemStore()
	s := &Syncer{Store: st}
	run, err := s.Run(context.Background(), newSource(t, ehr, nil, "Patient"), "manual")
	if err != nil {
		t.Fatal(err)
	}
	// Pages: 10, 1+10, 1+5 → 27 entries, two of them repeats.
	wantStats(t, run.Stats["Patient"], 27, 25, 0, 2, 0)
	assertExact(t, st, ehr, "Patient")
	for i := 0; i < 25; i++ {
		if h, _ := st.History(context.Background(), practice, "Patient", id(i)); len(h) != 1 {
			t.Fatalf("%s has %d versions", id(i), len(h))
		}
	}
}

func TestSyncResumesAfterCrash(t *testing.T) {
	ehr := newFakeEHR(t)
	for i := 0; i < 50; i++ {
		ehr.put("Patient", id(i), t0.Add(time.Duration(i)*time.Second), "")
	}
	st := newMemStore()
	const k = 2
	ctx, crash := context.WithCancel(context.Background())
	committed := 0
	s := &Syncer{Store: st, Hooks: Hooks{Page: func(string, string, string, int, time.Duration) {
		committed++
		if committed == k {
			crash()
		}
	}}}
	src := newSource(t, ehr, nil, "Patient")
	run1, err := s.Run(ctx, src, "schedule")
	if !errors.Is(err, context.Canceled) || run1.Status != store.RunFailed {
		t.Fatalf("crashed run: status %s err %v", run1.Status, err)
	}
	if committed != k {
		t.Fatalf("%d pages committed after the crash point", committed)
	}
	cur, _ := st.GetCursor(context.Background(), practice, connection, "Patient")
	if !strings.Contains(cur.PageURL, "_page=3") || cur.RunID != run1.ID || !cur.Watermark.IsZero() {
		t.Fatalf("cursor after crash: %+v", cur)
	}
	if n, _ := st.CountResources(context.Background(), practice); n["Patient"] != 20 {
		t.Fatalf("after the crash the store has %d patients, want 20", n["Patient"])
	}

	// The restarted process: a new client (its requests are tagged by its
	// User-Agent, so run 1's in-flight prefetch cannot be mistaken for them).
	src2 := newSource(t, ehr, nil, "Patient")
	src2.Client, _ = fhirrest.New(fhirrest.Config{BaseURL: ehr.base(), UserAgent: "restarted"})
	s2 := &Syncer{Store: st}
	run2, err := s2.Run(context.Background(), src2, "startup")
	if err != nil || run2.Status != store.RunSucceeded {
		t.Fatalf("resumed run: %v %s", err, run2.Status)
	}
	var log []string
	for _, r := range ehr.log() {
		if strings.HasSuffix(r, "@restarted") {
			log = append(log, strings.TrimSuffix(r, "@restarted"))
		}
	}
	if strings.Join(log, "|") != "page 1 3|page 1 4|page 1 5" {
		t.Fatalf("resumed run requests: %v (want pages 3-5 only)", log)
	}
	wantStats(t, run2.Stats["Patient"], 30, 30, 0, 0, 0)
	assertExact(t, st, ehr, "Patient")
	cur, _ = st.GetCursor(context.Background(), practice, connection, "Patient")
	if cur.PageURL != "" || !cur.Watermark.Equal(t0.Add(49*time.Second)) {
		t.Fatalf("cursor after resume: %+v", cur)
	}
}

func TestWatermarkNeverMovesBackwards(t *testing.T) {
	ehr := newFakeEHR(t)
	ehr.ignoreLastUpdated = true // like a server that ignores _lastUpdated
	for i := 0; i < 5; i++ {
		ehr.put("Patient", id(i), t0.Add(time.Duration(i)*time.Minute), "")
	}
	st := newMemStore()
	future := t0.Add(48 * time.Hour)
	st.PutCursor(context.Background(), store.Cursor{Practice: practice, Connection: connection, ResourceType: "Patient", Watermark: future})
	s := &Syncer{Store: st}
	run, err := s.Run(context.Background(), newSource(t, ehr, nil, "Patient"), "manual")
	if err != nil {
		t.Fatal(err)
	}
	wantStats(t, run.Stats["Patient"], 5, 5, 0, 0, 0)
	cur, _ := st.GetCursor(context.Background(), practice, connection, "Patient")
	if !cur.Watermark.Equal(future) {
		t.Fatalf("watermark moved from %v to %v", future, cur.Watermark)
	}
}

func TestWatermarkCappedByServerClock(t *testing.T) {
	ehr := newFakeEHR(t)
	ehr.serverTime = t0.Add(5 * time.Minute)
	ehr.put("Patient", id(1), t0, "")
	ehr.put("Patient", id(2), t0.Add(10*time.Minute), "") // stamped after the search began
	st := newMemStore()
	s := &Syncer{Store: st}
	if _, err := s.Run(context.Background(), newSource(t, ehr, nil, "Patient"), "manual"); err != nil {
		t.Fatal(err)
	}
	cur, _ := st.GetCursor(context.Background(), practice, connection, "Patient")
	if !cur.Watermark.Equal(t0.Add(5 * time.Minute)) {
		t.Fatalf("watermark %v, want the server's search time", cur.Watermark)
	}
}

func TestSearchExpiredRestartsFromWatermark(t *testing.T) {
	ehr := newFakeEHR(t)
	for i := 0; i < 30; i++ {
		ehr.put("Patient", id(i), t0, "")
	}
	ehr.expirePages[2] = true
	st := newMemStore()
	s := &Syncer{Store: st}
	run, err := s.Run(context.Background(), newSource(t, ehr, epic.New(), "Patient"), "manual")
	if err != nil || run.Status != store.RunSucceeded {
		t.Fatalf("run: %v %s %v", err, run.Status, run.Error)
	}
	want := []string{"search Patient ", "page 1 2", "search Patient ", "page 2 2", "page 2 3"}
	if got := ehr.log(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("requests %v, want %v", got, want)
	}
	// Page 1 was fetched twice: its second copy counts as unchanged.
	wantStats(t, run.Stats["Patient"], 40, 30, 0, 10, 0)
	assertExact(t, st, ehr, "Patient")

	// A saved page link whose session is gone (410) also restarts.
	st.PutCursor(context.Background(), store.Cursor{Practice: practice, Connection: connection, ResourceType: "Patient",
		Watermark: t0.Add(time.Hour), PageURL: ehr.base() + "?_getpages=999&_page=4&_count=10", RunID: 1})
	ehr.resetLog()
	run, err = s.Run(context.Background(), newSource(t, ehr, nil, "Patient"), "manual")
	if err != nil || run.Status != store.RunSucceeded {
		t.Fatalf("run: %v %s", err, run.Status)
	}
	if got := ehr.log(); len(got) != 2 || got[0] != "page 999 4" || !strings.HasPrefix(got[1], "search Patient ge") {
		t.Fatalf("requests %v", got)
	}
}

func TestEntryFailuresRecordedWithReasons(t *testing.T) {
	ehr := newFakeEHR(t)
	ehr.put("Patient", id(1), t0, "")
	ehr.extraEntries["Patient"] = []string{
		`{"resource":{"resourceType":"Patient","name":[{"family":"Zebediah"}]}}`,              // no id
		`{"resource":{"resourceType":"Observation","id":"o1"}}`,                               // wrong type
		`{"resource":{"resourceType":"Patient","id":"Zebediah Quill"}}`,                       // invalid id
		`{"resource":{"resourceType":"Patient","id":"p9","meta":{"lastUpdated":"Zebediah"}}}`, // bad instant
		`{"resource":["Zebediah"]}`, // not an object
		`{"fullUrl":"x"}`,           // no resource
		`{"resource":{"resourceType":"OperationOutcome","issue":[{"severity":"warning","code":"informational"}]},"search":{"mode":"outcome"}}`, // skipped
	}
	st := newMemStore()
	var logs bytes.Buffer
	s := &Syncer{Store: st, Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	run, err := s.Run(context.Background(), newSource(t, ehr, nil, "Patient"), "manual")
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != store.RunPartial {
		t.Fatalf("status %s", run.Status)
	}
	ts := run.Stats["Patient"]
	wantStats(t, ts, 7, 1, 0, 0, 6)
	wantReasons := []string{"no id", "is a Observation", "not a valid FHIR id", "not a FHIR instant", "not a valid JSON object", "no resource"}
	if len(ts.Failures) != len(wantReasons) {
		t.Fatalf("failures %v", ts.Failures)
	}
	for i, w := range wantReasons {
		if !strings.Contains(ts.Failures[i], w) || !strings.HasPrefix(ts.Failures[i], "raw 1 entry ") {
			t.Fatalf("failure %d = %q, want it to mention %q", i, ts.Failures[i], w)
		}
	}
	// The page is stored raw, failing entries included.
	raw, err := st.GetRaw(context.Background(), practice, 1)
	if err != nil || !bytes.Contains(raw.Body, []byte(`"id":"Zebediah Quill"`)) {
		t.Fatalf("raw page: %v", err)
	}
	stored, _ := st.GetRun(context.Background(), practice, run.ID)
	if stored.Stats["Patient"].Failed != 6 || stored.Status != store.RunPartial {
		t.Fatalf("stored run %+v", stored)
	}
	for _, s := range append(ts.Failures, run.Error, logs.String()) {
		if strings.Contains(s, "Zebediah") || strings.Contains(s, "Quill") || strings.Contains(s, "1961-07-04") {
			t.Fatalf("PHI in failures or logs: %s", s)
		}
	}
}

func TestMalformedPageFailsOnlyItsType(t *testing.T) {
	ehr := newFakeEHR(t)
	ehr.put("Patient", id(1), t0, "")
	ehr.put("Observation", "o1", t0, "")
	ehr.malformedTypes["Observation"] = true
	st := newMemStore()
	var logs bytes.Buffer
	s := &Syncer{Store: st, Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
	run, err := s.Run(context.Background(), newSource(t, ehr, nil, "Observation", "Patient"), "manual")
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != store.RunPartial || !strings.Contains(run.Error, "Observation: ") || !strings.Contains(run.Error, "bad-response") {
		t.Fatalf("run %s: %q", run.Status, run.Error)
	}
	searches := 0
	for _, r := range ehr.log() {
		if r == "search Observation " {
			searches++
		}
	}
	if searches != 3 { // first try + MaxRetries 2
		t.Fatalf("malformed page fetched %d times", searches)
	}
	if f := run.Stats["Observation"].Failures; len(f) != 1 || !strings.HasPrefix(f[0], "search failed: ") {
		t.Fatalf("observation failures %v", f)
	}
	wantStats(t, run.Stats["Patient"], 1, 1, 0, 0, 0)
	cur, _ := st.GetCursor(context.Background(), practice, connection, "Observation")
	if !cur.Watermark.IsZero() {
		t.Fatalf("failed type moved its watermark")
	}
	for _, s := range []string{run.Error, logs.String()} {
		if strings.Contains(s, "Zebediah") {
			t.Fatalf("PHI leaked: %s", s)
		}
	}

	// Every type failing fails the run.
	ehr.malformedTypes["Patient"] = true
	run, err = s.Run(context.Background(), newSource(t, ehr, nil, "Observation", "Patient"), "manual")
	if err == nil || run.Status != store.RunFailed {
		t.Fatalf("run %s err %v", run.Status, err)
	}
}

func TestRawStoredBeforeResources(t *testing.T) {
	ehr := newFakeEHR(t)
	for i := 0; i < 15; i++ {
		ehr.put("Patient", id(i), t0, "")
	}
	st := newMemStore()
	s := &Syncer{Store: st}
	if _, err := s.Run(context.Background(), newSource(t, ehr, nil, "Patient"), "manual"); err != nil {
		t.Fatal(err)
	}
	// Every write comes after the raw page it names.
	rawSeen := map[string]bool{}
	for _, op := range st.ops {
		var n int
		if _, err := fmt.Sscanf(op, "raw %d", &n); err == nil {
			rawSeen[fmt.Sprint(n)] = true
			continue
		}
		if i := strings.LastIndex(op, " raw "); strings.HasPrefix(op, "write ") && i > 0 {
			if !rawSeen[op[i+5:]] {
				t.Fatalf("%q before its raw page was stored (ops %v)", op, st.ops)
			}
		}
	}
	for i := 0; i < 15; i++ {
		r, _ := st.GetResource(context.Background(), practice, "Patient", id(i))
		raw, err := st.GetRaw(context.Background(), practice, r.RawID)
		if err != nil {
			t.Fatalf("%s: raw %d: %v", id(i), r.RawID, err)
		}
		if !bytes.Contains(raw.Body, r.Body) || raw.Source != RawSource || raw.Connection != connection ||
			!strings.HasPrefix(raw.RequestURL, ehr.srv.URL) || raw.FetchedAt.IsZero() || raw.ContentType != "application/fhir+json" {
			t.Fatalf("%s: raw %d does not hold it: %+v", id(i), r.RawID, raw.RequestURL)
		}
		if r.Connection != connection || r.SourceVersionID == "" || !r.SourceLastUpdated.Equal(t0) {
			t.Fatalf("resource header not carried: %+v", r)
		}
	}
}

func TestStoreFailureFailsTheType(t *testing.T) {
	ehr := newFakeEHR(t)
	for i := 0; i < 15; i++ {
		ehr.put("Patient", id(i), t0, "")
	}
	st := newMemStore()
	st.failWriteAfter = 1
	s := &Syncer{Store: st}
	run, err := s.Run(context.Background(), newSource(t, ehr, nil, "Patient"), "manual")
	if err == nil || run.Status != store.RunFailed || !strings.Contains(run.Error, "disk full") {
		t.Fatalf("run %s %q err %v", run.Status, run.Error, err)
	}
	cur, _ := st.GetCursor(context.Background(), practice, connection, "Patient")
	if !strings.Contains(cur.PageURL, "_page=2") {
		t.Fatalf("cursor should point at the uncommitted page: %+v", cur)
	}
}

func TestFetchCapabilities(t *testing.T) {
	ehr := newFakeEHR(t)
	st := newMemStore()
	s := &Syncer{Store: st}
	// The fake server serves no /metadata: an error, not a stored capability.
	if err := s.FetchCapabilities(context.Background(), newSource(t, ehr, nil)); err == nil {
		t.Fatal("want an error")
	}
	mux := newCapServer(t, `{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1","software":{"name":"Epic","version":"May 2026"}}`)
	c, _ := fhirrest.New(fhirrest.Config{BaseURL: mux})
	if err := s.FetchCapabilities(context.Background(), Source{Practice: practice, Connection: connection, Client: c}); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetCapability(context.Background(), practice, connection)
	if err != nil || got.FHIRVersion != "4.0.1" || got.Software != "Epic May 2026" || got.FetchedAt.IsZero() || !bytes.Contains(got.Body, []byte("CapabilityStatement")) {
		t.Fatalf("capability %+v %v", got, err)
	}
}

func TestRunHookAndProgress(t *testing.T) {
	ehr := newFakeEHR(t)
	for i := 0; i < 30; i++ {
		ehr.put("Patient", id(i), t0, "")
	}
	st := newMemStore()
	var final store.Run
	var progress []int
	s := &Syncer{Store: st}
	s.Hooks = Hooks{
		Run: func(r store.Run) { final = r },
		Page: func(string, string, string, int, time.Duration) {
			r, _ := st.GetRun(context.Background(), practice, 1)
			progress = append(progress, r.Stats["Patient"].Fetched)
		},
	}
	run, _ := s.Run(context.Background(), newSource(t, ehr, nil, "Patient", "Patient"), "manual")
	if final.ID != run.ID || final.Status != store.RunSucceeded || final.FinishedAt.IsZero() {
		t.Fatalf("hook run %+v", final)
	}
	if fmt.Sprint(progress) != "[10 20 30]" {
		t.Fatalf("progress seen by a dashboard: %v", progress)
	}
	if len(run.Stats) != 1 {
		t.Fatalf("duplicate type synced twice: %v", run.Stats)
	}
}

// tokens hands out tok1, tok2, ... and moves on when a token is invalidated.
type tokens struct {
	mu          gosync.Mutex
	n           int
	invalidated []string
}

func (tk *tokens) Token(context.Context) (string, error) {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	return fmt.Sprintf("tok%d", tk.n+1), nil
}

func (tk *tokens) Invalidate(tok string) {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if tok == fmt.Sprintf("tok%d", tk.n+1) {
		tk.n++
	}
	tk.invalidated = append(tk.invalidated, tok)
}

func TestTokenExpiryMidPaging(t *testing.T) {
	ehr := newFakeEHR(t)
	for i := 0; i < 50; i++ {
		ehr.put("Patient", id(i), t0, "")
	}
	ehr.requireToken = "tok1"
	tk := &tokens{}
	c, err := fhirrest.New(fhirrest.Config{BaseURL: ehr.base(), Tokens: tk, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	st := newMemStore()
	s := &Syncer{Store: st, Hooks: Hooks{Page: func(_, _, _ string, _ int, _ time.Duration) {
		ehr.mu.Lock()
		ehr.requireToken = "tok2" // the first token expires after page 1
		ehr.mu.Unlock()
	}}}
	run, err := s.Run(context.Background(), Source{Practice: practice, Connection: connection, Client: c, ResourceTypes: []string{"Patient"}, PageSize: 10}, "manual")
	if err != nil || run.Status != store.RunSucceeded {
		t.Fatalf("run %s %v: %s", run.Status, err, run.Error)
	}
	if len(tk.invalidated) != 1 || tk.invalidated[0] != "tok1" || ehr.unauthorized != 1 {
		t.Fatalf("invalidated %v, 401s %d", tk.invalidated, ehr.unauthorized)
	}
	wantStats(t, run.Stats["Patient"], 50, 50, 0, 0, 0)
	assertExact(t, st, ehr, "Patient")
}
