package sync

// End-to-end tests of the polling quirks against the EHR simulator's
// vendor flavours: each ends with the store equal to the simulator's
// ground truth (Sim.Current) after changes (Sim.Tick) and repeated runs,
// with exactly one stored version per distinct version the simulator held
// at the end of a run (no duplicate versions).

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/connector/fhirrest"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/fault"
	simathena "github.com/mediflow/mediflow/internal/sim/flavor/athenahealth"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/vendors"
	"github.com/mediflow/mediflow/internal/vendors/athenahealth"
	"github.com/mediflow/mediflow/internal/vendors/epic"
	"github.com/mediflow/mediflow/internal/vendors/oraclehealth"
)

// simClock is a settable clock for the simulator.
type simClock struct {
	mu gosync.Mutex
	t  time.Time
}

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *simClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// simEHR is a simulator tenant behind a loopback server that records the
// search requests it receives.
type simEHR struct {
	t      *testing.T
	sim    *sim.Sim
	tenant string
	clock  *simClock
	mu     gosync.Mutex
	reqs   []*url.URL
	// before, when set, sees each request before the simulator does.
	before func(r *http.Request)
	// versions: "type/id" → the simulator versionIds observed after runs.
	versions map[string]map[string]bool
}

func startSimEHR(t *testing.T, tc sim.TenantConfig) *simEHR {
	t.Helper()
	// After the generator's default anchor (2026-06-01), so that data is in
	// the simulator's past.
	clock := &simClock{t: time.Date(2026, 6, 1, 22, 0, 0, 0, time.UTC)}
	tc.OpenAuth = true
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{tc}, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e := &simEHR{t: t, sim: s, tenant: tc.ID, clock: clock, versions: map[string]map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.reqs = append(e.reqs, r.URL)
		before := e.before
		e.mu.Unlock()
		if before != nil {
			before(r)
		}
		s.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.SetRoot(srv.URL)
	return e
}

// requests returns the recorded requests for resourceType, oldest first,
// and forgets them.
func (e *simEHR) requests(resourceType string) []url.Values {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []url.Values
	for _, u := range e.reqs {
		if strings.HasSuffix(u.Path, "/"+resourceType) {
			out = append(out, u.Query())
		}
	}
	e.reqs = nil
	return out
}

func (e *simEHR) source(prof vendors.Profile, pageSize int, types ...string) Source {
	e.t.Helper()
	c, err := fhirrest.New(fhirrest.Config{
		BaseURL: e.sim.BaseURL(e.tenant), Profile: prof, MaxRetries: 2, Timeout: 10 * time.Second,
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return Source{Practice: practice, Connection: connection, Client: c, Profile: prof, ResourceTypes: types, PageSize: pageSize}
}

// observe records the simulator's current version of every resource of
// types: the store must end up with one version per distinct one observed.
func (e *simEHR) observe(types ...string) {
	e.t.Helper()
	for _, rt := range types {
		for id, b := range e.sim.Current(e.tenant, rt) {
			var h struct {
				Meta struct {
					VersionID string `json:"versionId"`
				} `json:"meta"`
			}
			if err := json.Unmarshal(b, &h); err != nil {
				e.t.Fatal(err)
			}
			k := rt + "/" + id
			if e.versions[k] == nil {
				e.versions[k] = map[string]bool{}
			}
			e.versions[k][h.Meta.VersionID] = true
		}
	}
}

// assertTruth checks that the store holds exactly the simulator's current
// resources of each type (byte for byte, nothing more), and that each has
// one stored version per distinct simulator version observed.
func (e *simEHR) assertTruth(st *memStore, types ...string) {
	e.t.Helper()
	ctx := context.Background()
	for _, rt := range types {
		want := e.sim.Current(e.tenant, rt)
		if len(want) == 0 {
			e.t.Fatalf("test data: the simulator holds no %s", rt)
		}
		refs, err := st.CurrentRefs(ctx, practice, rt)
		if err != nil {
			e.t.Fatal(err)
		}
		live := 0
		for _, r := range refs {
			if !r.Deleted {
				live++
			}
		}
		if live != len(want) {
			e.t.Fatalf("%s: store holds %d, simulator %d", rt, live, len(want))
		}
		for id, body := range want {
			r, err := st.GetResource(ctx, practice, rt, id)
			if err != nil {
				e.t.Fatalf("%s/%s: %v", rt, id, err)
			}
			if string(r.Body) != string(body) {
				e.t.Fatalf("%s/%s differs from the simulator's", rt, id)
			}
			h, err := st.History(ctx, practice, rt, id)
			if err != nil {
				e.t.Fatal(err)
			}
			if n := len(e.versions[rt+"/"+id]); len(h) != n {
				e.t.Fatalf("%s/%s: %d stored versions, %d distinct simulator versions observed", rt, id, len(h), n)
			}
		}
	}
}

func mustRun(t *testing.T, s *Syncer, src Source) store.Run {
	t.Helper()
	run, err := s.Run(context.Background(), src, "manual")
	if err != nil || run.Status != store.RunSucceeded {
		t.Fatalf("run: %v, status %s: %s", err, run.Status, run.Error)
	}
	return run
}

func sum(run store.Run, f func(*store.TypeStats) int) int {
	n := 0
	for _, ts := range run.Stats {
		n += f(ts)
	}
	return n
}

// athenahealth: _lastUpdated takes a date only (a time is a 400), every
// search names its practice, clinical types are searched per patient,
// Appointment is not searchable, paging runs on cursor.
func TestQuirkAthenaDateOnlyLastUpdated(t *testing.T) {
	e := startSimEHR(t, sim.TenantConfig{ID: "ah", Flavor: simathena.Name, Seed: 21, Strict: true,
		Data: &gen.Options{Patients: 8, PastDays: 20, FutureDays: 10}})
	typeLevel := []string{"Patient", "Practitioner"}
	perPatient := []string{"Observation", "Condition"}
	all := append(append([]string{}, typeLevel...), perPatient...)
	st := newMemStore()
	s := &Syncer{Store: st, Now: e.clock.Now}
	// Per-patient types first: the run must still sync Patient before them.
	src := e.source(athenahealth.New(simathena.SandboxPractice), 10, "Observation", "Appointment", "Condition", "Patient", "Practitioner")

	run := mustRun(t, s, src)
	if ap := run.Stats["Appointment"]; ap.Fetched != 0 || len(ap.Failures) != 1 || !strings.HasPrefix(ap.Failures[0], "skipped:") {
		t.Fatalf("Appointment stats %+v", ap)
	}
	if reqs := e.requests("Appointment"); len(reqs) != 0 {
		t.Fatalf("Appointment searched: %v", reqs)
	}
	e.observe(all...)
	e.assertTruth(st, all...)
	wm, _ := st.GetCursor(context.Background(), practice, connection, "Observation")
	if wm.Watermark.IsZero() {
		t.Fatal("no Observation watermark after the first run")
	}

	// A day and more later, changes; the incremental search asks for the
	// day before the watermark's date.
	e.clock.Advance(26 * time.Hour)
	if _, err := e.sim.Tick("ah", 25); err != nil {
		t.Fatal(err)
	}
	run = mustRun(t, s, src)
	patients := len(e.sim.Current("ah", "Patient"))
	obs := e.requests("Observation")
	if len(obs) < patients-2 { // the Tick may add a couple of patients
		t.Fatalf("%d Observation searches for %d patients", len(obs), patients)
	}
	wantLU := "ge" + wm.Watermark.Add(-DefaultOverlap).UTC().AddDate(0, 0, -1).Format(time.DateOnly)
	for _, q := range obs {
		if q.Get("patient") == "" || q.Get("ah-practice") != "Organization/a-1.Practice-"+simathena.SandboxPractice {
			t.Fatalf("per-patient search %v", q)
		}
		if lu := q.Get("_lastUpdated"); lu != wantLU {
			t.Fatalf("_lastUpdated %q, want %q (date only, a day before the watermark's)", lu, wantLU)
		}
	}
	if changed := sum(run, func(ts *store.TypeStats) int { return ts.New + ts.Changed }); changed == 0 {
		t.Fatal("the changes were not synced")
	}
	if run.Stats["Observation"].Unchanged == 0 {
		t.Fatal("the day-wide window re-read nothing: the test does not exercise the date-only overlap")
	}
	e.observe(all...)
	e.assertTruth(st, all...)

	// Nothing changed: everything re-read is unchanged.
	run = mustRun(t, s, src)
	if n := sum(run, func(ts *store.TypeStats) int { return ts.New + ts.Changed + ts.Failed }); n != 0 {
		t.Fatalf("a run without changes stored or failed %d", n)
	}
	e.observe(all...)
	e.assertTruth(st, all...)
}

// Oracle Health: the same id on two consecutive pages, per-patient searches
// (Appointment with a date window), Patient not listable (the roster comes
// from elsewhere, here written to the store as a bulk export would).
func TestQuirkOracleDuplicateIDsAcrossPages(t *testing.T) {
	e := startSimEHR(t, sim.TenantConfig{ID: "oh", Flavor: "oracle-health", Seed: 22, Strict: true,
		Data: &gen.Options{Patients: 6, PastDays: 10, FutureDays: 10}})
	types := []string{"Practitioner", "Observation", "Condition", "Coverage", "Appointment", "DocumentReference"}
	st := newMemStore()
	s := &Syncer{Store: st, Now: e.clock.Now}
	prof := oraclehealth.New(oraclehealth.Options{})
	src := e.source(prof, 2, append([]string{"Patient"}, types...)...)
	src.PatientConcurrency = 3
	ctx := context.Background()
	seedRoster := func() {
		var ws []store.ResourceWrite
		for id, b := range e.sim.Current("oh", "Patient") {
			ws = append(ws, store.ResourceWrite{ResourceType: "Patient", ID: id, Connection: connection, Body: b})
		}
		if _, err := st.WriteResources(ctx, practice, ws); err != nil {
			t.Fatal(err)
		}
	}
	seedRoster()

	for round := 0; round < 3; round++ {
		run := mustRun(t, s, src)
		if p := run.Stats["Patient"]; p.Fetched != 0 || len(p.Failures) != 1 {
			t.Fatalf("Patient must be skipped: %+v", p)
		}
		o := run.Stats["Observation"]
		if o.Pages < 2*len(e.sim.Current("oh", "Patient"))/2 || o.Fetched <= o.New+o.Changed {
			t.Fatalf("round %d: Observation stats %+v: no repeated entries seen", round, o)
		}
		for _, q := range e.requests("Appointment") {
			if q.Get("pageContext") != "" {
				continue
			}
			if q.Get("patient") == "" || len(q["date"]) != 2 {
				t.Fatalf("Appointment search %v", q)
			}
		}
		e.observe(append([]string{"Patient"}, types...)...)
		e.assertTruth(st, types...)
		if _, err := e.sim.Tick("oh", 15); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(10 * time.Minute)
		seedRoster() // new and changed patients arrive through the roster's own feed
	}
}

// A crash (here: cancellation) in the middle of a per-patient fan-out:
// the next run resumes after the last patient up to which every patient
// was done, and the store ends equal to the simulator's.
func TestQuirkFanOutCrashAndResume(t *testing.T) {
	e := startSimEHR(t, sim.TenantConfig{ID: "ah", Flavor: simathena.Name, Seed: 23, Strict: true,
		Data: &gen.Options{Patients: 12, PastDays: 20, FutureDays: 10}})
	st := newMemStore()
	s := &Syncer{Store: st, Now: e.clock.Now}
	prof := athenahealth.New(simathena.SandboxPractice)
	src := e.source(prof, 3, "Patient", "Observation")
	src.PatientConcurrency = 2
	mustRun(t, s, e.source(prof, 3, "Patient")) // the roster
	e.requests("Observation")

	// Cancel the run at the first Observation request, from the sixth
	// patient's search on, that finds some fan-out progress saved: a
	// request then belongs to a patient not yet done, so the crash lands
	// mid-fan-out whichever patient the two workers finish first.
	ctx, cancel := context.WithCancel(context.Background())
	var mu gosync.Mutex
	firstPages, cancelled := 0, false
	e.before = func(r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/Observation") {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Query().Get("cursor") == "" {
			firstPages++
		}
		if cancelled || firstPages < 6 {
			return
		}
		if prog, _ := st.GetCursor(context.Background(), practice, connection, "Observation"+FanOutSuffix); prog.PageURL != "" {
			cancelled = true
			cancel()
		}
	}
	run, err := s.Run(ctx, src, "manual")
	if err == nil || run.Status != store.RunFailed {
		t.Fatalf("cancelled run: %v %s", err, run.Status)
	}
	e.before = nil
	prog, _ := st.GetCursor(context.Background(), practice, connection, "Observation"+FanOutSuffix)
	p, ok := decodeProgress(prog)
	if !ok {
		t.Fatalf("no fan-out progress saved: %+v", prog)
	}
	if wm, _ := st.GetCursor(context.Background(), practice, connection, "Observation"); !wm.Watermark.IsZero() {
		t.Fatalf("the watermark moved before the fan-out completed: %v", wm.Watermark)
	}
	e.requests("Observation")

	run = mustRun(t, s, src)
	var searched []string
	for _, q := range e.requests("Observation") {
		if q.Get("cursor") == "" {
			searched = append(searched, q.Get("patient"))
		}
	}
	slices.Sort(searched)
	var want []string
	for id := range e.sim.Current("ah", "Patient") {
		if id > p.done {
			want = append(want, id)
		}
	}
	slices.Sort(want)
	if !slices.Equal(searched, want) {
		t.Fatalf("resumed run searched patients %v, want those after %s: %v", searched, p.done, want)
	}
	if len(want) == 0 || len(want) == len(e.sim.Current("ah", "Patient")) {
		t.Fatalf("the crash did not land mid-fan-out (%d of %d patients left)", len(want), len(e.sim.Current("ah", "Patient")))
	}
	if prog, _ := st.GetCursor(context.Background(), practice, connection, "Observation"+FanOutSuffix); prog.PageURL != "" {
		t.Fatalf("fan-out progress not cleared: %+v", prog)
	}
	wm, _ := st.GetCursor(context.Background(), practice, connection, "Observation")
	if wm.Watermark.IsZero() || wm.Watermark.After(e.clock.Now()) {
		t.Fatalf("watermark after the fan-out: %v", wm.Watermark)
	}
	e.observe("Patient", "Observation")
	e.assertTruth(st, "Patient", "Observation")

	// Changes, then a normal incremental run: still equal, no duplicates.
	e.clock.Advance(time.Hour)
	if _, err := e.sim.Tick("ah", 20); err != nil {
		t.Fatal(err)
	}
	mustRun(t, s, src)
	e.observe("Patient", "Observation")
	e.assertTruth(st, "Patient", "Observation")
}

// Epic drops cached search sessions (4113): the sync restarts the search
// from the watermark and the store still ends equal to the simulator's.
func TestQuirkEpic4113PageExpiry(t *testing.T) {
	e := startSimEHR(t, sim.TenantConfig{ID: "ep", Flavor: "epic", Seed: 24,
		Data:   &gen.Options{Patients: 10, PastDays: 20, FutureDays: 10},
		Faults: []fault.Fault{{Endpoint: "Observation", Kind: fault.PageExpiry, Every: 3, Limit: 2}}})
	types := []string{"Patient", "Observation", "Condition"}
	st := newMemStore()
	s := &Syncer{Store: st, Now: e.clock.Now}
	src := e.source(epic.New(), 10, types...)

	run := mustRun(t, s, src)
	fired := 0
	for _, f := range e.sim.Faults("ep") {
		fired += f.Fired
	}
	if fired != 2 {
		t.Fatalf("page-expiry fired %d times, want 2", fired)
	}
	o := run.Stats["Observation"]
	if o.Unchanged == 0 || o.New != len(e.sim.Current("ep", "Observation")) {
		t.Fatalf("Observation stats after restarts %+v", o)
	}
	e.observe(types...)
	e.assertTruth(st, types...)

	if err := e.sim.SetFaults("ep", []fault.Fault{{Endpoint: "Observation", Kind: fault.PageExpiry, Every: 2, Limit: 1}}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	if _, err := e.sim.Tick("ep", 60); err != nil {
		t.Fatal(err)
	}
	mustRun(t, s, src)
	e.observe(types...)
	e.assertTruth(st, types...)
}
