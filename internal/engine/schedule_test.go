package engine

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/dataclass"
	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/sync"
)

// policyConfig is a practice on baseURL syncing with the given sync entries
// (YAML flow mappings), stored in dir.
func policyConfig(t *testing.T, dir, baseURL string, entries ...string) *config.Config {
	t.Helper()
	var sync strings.Builder
	for _, e := range entries {
		sync.WriteString("          - " + e + "\n")
	}
	src := fmt.Sprintf(`server:
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
%sapps:
  - name: app
    key: {value: %s}
    practices: [clinic]
`, baseURL, sync.String(), strings.Repeat("k", 40))
	cfg, err := config.Parse(filepath.Join(dir, "mediflow.yaml"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestJobsFollowTheSyncPolicies: one job per (connection, class), at the
// policy's interval (the safety poll for realtime, the period for batches),
// on the connection's rate-limit keys.
func TestJobsFollowTheSyncPolicies(t *testing.T) {
	cfg := policyConfig(t, t.TempDir(), "http://127.0.0.1:1/fhir",
		"{class: clinical}",
		"{class: scheduling, interval: 30s}",
		"{class: reference, mode: nightly}",
		"{class: billing, mode: hourly, waiver: {reason: month-end reporting only}}",
	)
	eng, err := New(context.Background(), cfg, Options{Logger: obs.NewLogger(io.Discard, 0, "json")})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	want := map[string]time.Duration{
		"clinic/ehr/clinical":   5 * time.Minute, // realtime: its safety poll
		"clinic/ehr/scheduling": 30 * time.Second,
		"clinic/ehr/reference":  24 * time.Hour,
		"clinic/ehr/billing":    time.Hour,
		"clinic/ehr/reconcile":  24 * time.Hour, // the connection's sweep (reconcile: 24h by default)
	}
	jobs := eng.sched.Jobs()
	slices.Sort(jobs)
	if len(jobs) != len(want) {
		t.Fatalf("jobs %v, want %d", jobs, len(want))
	}
	for name, interval := range want {
		st, ok := eng.sched.Status(name)
		if !ok {
			t.Errorf("no job %s (jobs: %v)", name, jobs)
			continue
		}
		if st.Interval != interval {
			t.Errorf("%s: interval %v, want %v", name, st.Interval, interval)
		}
		if !slices.Equal(st.Limits, []string{"base:http://127.0.0.1:1/fhir"}) {
			t.Errorf("%s: limits %v", name, st.Limits)
		}
	}
}

func TestLimitKeys(t *testing.T) {
	c := &connection{cfg: config.Connection{BaseURL: "https://ehr.example.org/fhir", Auth: config.Auth{Type: config.AuthSMARTBackend}}}
	if got := limitKeys(c); !slices.Equal(got, []string{"base:https://ehr.example.org/fhir", "token:discovered-from:https://ehr.example.org/fhir"}) {
		t.Errorf("keys %v", got)
	}
	c.cfg.Auth.TokenURL = "https://ehr.example.org/oauth2/token"
	if got := limitKeys(c); !slices.Equal(got, []string{"base:https://ehr.example.org/fhir", "token:https://ehr.example.org/oauth2/token"}) {
		t.Errorf("keys %v", got)
	}
}

// TestOptionalTypesAreSyncedOnlyWhenServed: billing's ChargeItem and Claim
// are skipped until the CapabilityStatement lists them with search-type and
// the scopes allow them; a required type is tried until the statement says
// otherwise.
func TestOptionalTypesAreSyncedOnlyWhenServed(t *testing.T) {
	billing, _ := dataclass.Lookup("billing")
	c := &connection{cfg: config.Connection{Auth: config.Auth{Type: config.AuthNone}, Sync: []config.SyncPolicy{{Class: "billing"}}}}
	ok, skipped := c.searchable(billing)
	if !slices.Equal(ok, []string{"Encounter"}) || !slices.Equal(skipped, []string{"ChargeItem", "Claim"}) {
		t.Errorf("before the statement: sync %v, skip %v", ok, skipped)
	}
	c.caps = &fhir.ServerCapabilities{Interactions: map[string]map[string]bool{
		"Encounter":  {"search-type": true},
		"ChargeItem": {"search-type": true},
		"Claim":      {"read": true},
	}}
	ok, skipped = c.searchable(billing)
	if !slices.Equal(ok, []string{"Encounter", "ChargeItem"}) || !slices.Equal(skipped, []string{"Claim"}) {
		t.Errorf("served ChargeItem: sync %v, skip %v", ok, skipped)
	}
	// SMART default scopes name only the required types.
	c.cfg.Auth = config.Auth{Type: config.AuthSMARTBackend}
	if ok, _ = c.searchable(billing); !slices.Equal(ok, []string{"Encounter"}) {
		t.Errorf("default scopes: sync %v, want Encounter only", ok)
	}
	c.cfg.Auth.Scopes = []string{"system/*.rs"}
	if ok, _ = c.searchable(billing); !slices.Equal(ok, []string{"Encounter", "ChargeItem"}) {
		t.Errorf("system/*.rs: sync %v", ok)
	}
}

// TestBillingSyncSkipsUnservedTypes: against the simulator (which serves
// Encounter but neither ChargeItem nor Claim) a billing sync succeeds and
// never asks for the types the server lacks.
func TestBillingSyncSkipsUnservedTypes(t *testing.T) {
	s := startSim(t)
	cfg := policyConfig(t, t.TempDir(), s.BaseURL("clinic"), "{class: billing}")
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
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs %v, %v", runs, err)
	}
	r := runs[0]
	if r.Status != "succeeded" || r.Stats["Encounter"] == nil || r.Stats["Encounter"].New == 0 {
		t.Errorf("billing run: %s (%s), stats %v", r.Status, r.Error, r.Stats)
	}
	for _, rt := range []string{"ChargeItem", "Claim"} {
		if _, asked := r.Stats[rt]; asked {
			t.Errorf("the run asked for %s, which the server does not serve", rt)
		}
	}
}

// TestRestartKeepsEachJobsPlace: a new engine on the same store places each
// job one interval after its last run instead of running it at once.
func TestRestartKeepsEachJobsPlace(t *testing.T) {
	s := startSim(t)
	dir := t.TempDir()
	cfg := policyConfig(t, dir, s.BaseURL("clinic"), "{class: demographics, interval: 10m}", "{class: scheduling, interval: 10m}")
	ctx := context.Background()
	eng, err := New(ctx, cfg, Options{Logger: obs.NewLogger(io.Discard, 0, "json")})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := eng.SyncAll(ctx, "test"); err != nil {
		t.Fatalf("sync: %v", err)
	}
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}

	eng2, err := New(ctx, cfg, Options{Logger: obs.NewLogger(io.Discard, 0, "json")})
	if err != nil {
		t.Fatal(err)
	}
	defer eng2.Close()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- eng2.sched.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for _, name := range []string{"clinic/ehr/demographics", "clinic/ehr/scheduling"} {
		var st sync.JobStatus
		for {
			st, _ = eng2.sched.Status(name)
			if !st.Next.IsZero() || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		// The last run started after `before`; its next is an interval on.
		if st.Next.Before(before.Add(10*time.Minute)) || st.Next.After(time.Now().Add(10*time.Minute)) || st.Trigger != "schedule" {
			t.Errorf("%s: next run at %v (%s), want one interval after the last run of the earlier engine", name, time.Until(st.Next), st.Trigger)
		}
	}
}
