package engine

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
)

// startSim runs an open (no auth) simulator with one Epic tenant.
func startSim(t *testing.T) *sim.Sim {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{
		ID: "clinic", Flavor: "epic", Seed: 7, OpenAuth: true, Data: &gen.Options{Patients: 5},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	return s
}

func testConfig(t *testing.T, baseURL string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	yaml := fmt.Sprintf(`server:
  listen: 127.0.0.1:0
store:
  path: mediflow.db
practices:
  - id: clinic
    name: Test Clinic
    connections:
      - name: ehr
        vendor: epic
        base_url: %s
        auth:
          type: none
        sync:
          - class: scheduling
            interval: 1m
          - class: demographics
            interval: 1m
apps:
  - name: app
    key: {value: %s}
    practices: [clinic]
`, baseURL, strings.Repeat("k", 40))
	cfg, err := config.Parse(filepath.Join(dir, "mediflow.yaml"), []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestSyncSkipsTypesTheServerDoesNotSearch(t *testing.T) {
	s := startSim(t)
	cfg := testConfig(t, s.BaseURL("clinic"))
	ctx := context.Background()
	eng, err := New(ctx, cfg, Options{Logger: obs.NewLogger(io.Discard, 0, "json")})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	if err := eng.SyncAll(ctx, "test"); err != nil {
		t.Fatalf("sync: %v", err)
	}
	runs, err := eng.Store().ListRuns(ctx, "clinic", "ehr", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 {
		t.Fatalf("%d runs, want 2 (scheduling, demographics)", len(runs))
	}
	for _, r := range runs {
		if r.Status != store.RunSucceeded {
			t.Errorf("run %d: %s (%s), want succeeded", r.ID, r.Status, r.Error)
		}
		for _, rt := range []string{"Schedule", "Slot"} {
			if _, ok := r.Stats[rt]; ok {
				t.Errorf("run %d asked the Epic server for %s, which its CapabilityStatement does not list", r.ID, rt)
			}
		}
	}
	counts, err := eng.Store().CountResources(ctx, "clinic")
	if err != nil {
		t.Fatal(err)
	}
	want := s.Counts("clinic")
	for _, rt := range []string{"Patient", "Appointment"} {
		if counts[rt] == 0 || counts[rt] != want[rt] {
			t.Errorf("%s: store holds %d, simulator %d", rt, counts[rt], want[rt])
		}
	}

	st := eng.Status(ctx)
	if len(st.Practices) != 1 || len(st.Practices[0].Connections) != 1 {
		t.Fatalf("status: %+v", st)
	}
	cs := st.Practices[0].Connections[0]
	if cs.State != "ok" || cs.LastRun == nil || cs.Vendor != "epic" {
		t.Errorf("connection status %+v, want ok with a last run", cs)
	}
	if strings.Contains(cs.BaseURLHost, "/") {
		t.Errorf("status shows more than the host: %q", cs.BaseURLHost)
	}
}

func TestNewClosesRunsAbandonedByAnEarlierProcess(t *testing.T) {
	s := startSim(t)
	cfg := testConfig(t, s.BaseURL("clinic"))
	ctx := context.Background()
	st, err := sqlite.Open(ctx, cfg.Abs(cfg.Store.Path), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := st.StartRun(ctx, store.Run{Practice: "clinic", Connection: "ehr", Trigger: "schedule",
		Status: store.RunRunning, StartedAt: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	eng, err := New(ctx, cfg, Options{Logger: obs.NewLogger(io.Discard, 0, "json")})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	r, err := eng.Store().GetRun(ctx, "clinic", id)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != store.RunFailed || !strings.Contains(r.Error, "abandoned") || r.FinishedAt.IsZero() {
		t.Fatalf("abandoned run: status %q error %q finished %v", r.Status, r.Error, r.FinishedAt)
	}
}

func TestNewRefusesThePostgresDriverClearly(t *testing.T) {
	cfg := testConfig(t, "http://127.0.0.1:1/fhir")
	cfg.Store.Driver = "postgres"
	_, err := New(context.Background(), cfg, Options{Logger: obs.NewLogger(io.Discard, 0, "json")})
	if err == nil || !strings.Contains(err.Error(), "postgres") {
		t.Fatalf("err = %v, want a clear postgres error", err)
	}
}
