package bulk

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/smart"
	"github.com/mediflow/mediflow/internal/smart/authserver"
)

// simTenant starts the simulator with one tenant of the given flavour and
// returns it with a bulk client that authenticates through SMART Backend
// Services (a real signed assertion, the simulator's token endpoint).
func simTenant(t *testing.T, flavorName string, opts sim.BulkOptions, mod func(*Config)) (*sim.Sim, *Client) {
	t.Helper()
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{ID: "t", Flavor: flavorName, Seed: 11, Data: &gen.Options{Patients: 12}, Bulk: opts}}})
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
	cfg := Config{BaseURL: s.BaseURL("t"), HTTPClient: hc, Tokens: tokens, Workers: 3, MinPoll: time.Millisecond, MaxPoll: 5 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

// checkAgainstExpected compares what was delivered with what the simulator
// says the export holds: every resource once, byte for byte.
func checkAgainstExpected(t *testing.T, col *collector, want map[string]map[string][]byte) {
	t.Helper()
	total := 0
	for _, m := range want {
		total += len(m)
	}
	if total == 0 {
		t.Fatal("the simulator expects an empty export: the test would prove nothing")
	}
	if len(col.resources) != total {
		t.Errorf("%d resources delivered, %d expected", len(col.resources), total)
	}
	seen := map[string]bool{}
	for _, r := range col.resources {
		k := r.Type + "/" + r.ID
		if seen[k] {
			t.Errorf("%s delivered twice", k)
		}
		seen[k] = true
		body, ok := want[r.Type][r.ID]
		if !ok {
			t.Errorf("%s was not expected", k)
		} else if !bytes.Equal(bytes.TrimSpace(body), r.Body) {
			t.Errorf("%s: body differs from the simulator's", k)
		}
	}
}

// The generic flavour: system export with several files per type, files
// redirected to storage that refuses Authorization, then an incremental
// export that lists a deleted resource.
func TestBulkSimGenericSystemExportAndIncremental(t *testing.T) {
	s, c := simTenant(t, "generic", sim.BulkOptions{Polls: 2, PerFile: 5, Redirect: true}, nil)
	want, _, err := s.BulkExpected("t", sim.BulkQuery{})
	if err != nil {
		t.Fatal(err)
	}
	col := &collector{}
	res, err := c.Export(context.Background(), Request{}, col.options())
	if err != nil {
		t.Fatal(err)
	}
	checkAgainstExpected(t, col, want)
	polls := 0
	for _, p := range col.progress {
		if p.Phase == PhasePolling && p.XProgress != "" {
			polls++
		}
	}
	if polls < 2 || res.Job.Manifest == nil || len(res.Job.Manifest.Output) < 2 || res.Job.Manifest.TransactionTime.IsZero() {
		t.Errorf("%d in-progress polls, manifest %+v", polls, res.Job.Manifest)
	}

	// incremental: a deletion after the first export's transaction time
	var pid string
	for id := range want["Patient"] {
		pid = id
		break
	}
	if err := s.MarkDeleted("t", "Patient", pid); err != nil {
		t.Fatal(err)
	}
	since := res.Job.Manifest.TransactionTime
	want2, deleted, err := s.BulkExpected("t", sim.BulkQuery{Since: since, Types: []string{"Patient"}})
	if err != nil {
		t.Fatal(err)
	}
	col2 := &collector{}
	res2, err := c.Export(context.Background(), Request{Since: since, Types: []string{"Patient"}}, col2.options())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tb := range col2.tombs {
		got = append(got, tb.Type+"/"+tb.ID)
	}
	sort.Strings(got)
	sort.Strings(deleted)
	if !slices.Equal(got, deleted) || !slices.Contains(got, "Patient/"+pid) || res2.Deleted != int64(len(deleted)) {
		t.Errorf("tombstones %v, expected %v (deleted Patient/%s)", got, deleted, pid)
	}
	for _, r := range col2.resources {
		if _, ok := want2[r.Type][r.ID]; !ok {
			t.Errorf("incremental export delivered unexpected %s/%s", r.Type, r.ID)
		}
	}
}

// The Epic flavour: Group export only, one job per client (429 with
// Retry-After at a second kick-off), and a job resumed from its state.
func TestBulkSimEpicGroupBusyAndResume(t *testing.T) {
	s, c := simTenant(t, "epic", sim.BulkOptions{Polls: 3, PerFile: 4}, nil)
	req := Request{Level: LevelGroup, GroupID: sim.BulkAllPatients, Types: []string{"Patient", "Observation"}}
	job, err := c.Kickoff(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Kickoff(context.Background(), req)
	var be *Error
	if !errors.Is(err, ErrBusy) || !errors.As(err, &be) || be.RetryAfter != 120*time.Second {
		t.Fatalf("second kick-off: %v", err)
	}
	if _, err := c.Kickoff(context.Background(), Request{}); err == nil {
		t.Error("Epic accepted a system-level export")
	}
	want, _, err := s.BulkExpected("t", sim.BulkQuery{Level: flavor.BulkGroup, Group: sim.BulkAllPatients, Types: req.Types})
	if err != nil {
		t.Fatal(err)
	}
	col := &collector{}
	res, err := c.Resume(context.Background(), job, col.options())
	if err != nil {
		t.Fatal(err)
	}
	checkAgainstExpected(t, col, want)
	if !res.Job.Manifest.RequiresAccessToken || !res.Job.Complete() {
		t.Errorf("job %+v", res.Job)
	}
	// deleting the finished job; the client may kick off again
	if err := c.Cancel(context.Background(), job.StatusURL); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kickoff(context.Background(), req); err != nil {
		t.Errorf("kick-off after the job: %v", err)
	}
}
