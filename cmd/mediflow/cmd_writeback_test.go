package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/writeback"
)

// startWritebackSim runs an open simulator with a generic and an Epic tenant.
func startWritebackSim(t *testing.T) *sim.Sim {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{
		{ID: "north", Flavor: "generic", Seed: 3, OpenAuth: true, Data: &gen.Options{Patients: 3}},
		{ID: "south", Flavor: "epic", Seed: 4, OpenAuth: true, Data: &gen.Options{Patients: 3}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); s.Wait() })
	return s
}

// writebackConfigFile writes a configuration with both tenants (write-back
// off: the command turns it on for the practice it tests).
func writebackConfigFile(t *testing.T, s *sim.Sim) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`store:
  path: mediflow.db
practices:
  - id: north
    name: North Clinic
    connections:
      - name: ehr
        vendor: generic
        base_url: %s
        auth:
          type: none
        sync:
          - class: demographics
            interval: 1m
  - id: south
    name: South Clinic
    connections:
      - name: ehr
        vendor: epic
        base_url: %s
        auth:
          type: none
        sync:
          - class: demographics
            interval: 1m
`, s.BaseURL("north"), s.BaseURL("south"))
	path := filepath.Join(dir, "mediflow.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// stepLine finds a step's line in the report.
func stepLine(t *testing.T, out, step string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "  "+step+" ") {
			return l
		}
	}
	t.Fatalf("no line for step %q in:\n%s", step, out)
	return ""
}

var intentInLine = regexp.MustCompile(`intent ([0-9A-Z]{26})`)

func TestWritebackTestAgainstTheGenericSimulator(t *testing.T) {
	s := startWritebackSim(t)
	path := writebackConfigFile(t, s)
	env, stdout, stderr := testEnv()
	code := run(context.Background(), env, []string{"writeback", "test", "--config", path, "--practice", "north"})
	out := stdout.String()
	t.Logf("report:\n%s", out)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	for _, step := range []string{"create note", "read note back", "book appointment", "update with If-Match", "stale update -> conflict", "duplicate idempotency key"} {
		if l := stepLine(t, out, step); !strings.HasPrefix(strings.TrimSpace(l), "PASS") {
			t.Errorf("step %q: %s", step, l)
		}
	}
	if !strings.Contains(out, "6 steps: 6 passed, 0 failed, 0 not supported, 0 skipped") {
		t.Errorf("summary missing:\n%s", out)
	}
	if l := stepLine(t, out, "update with If-Match"); !strings.Contains(l, `If-Match W/"1"`) {
		t.Errorf("update line: %s", l)
	}
	if l := stepLine(t, out, "stale update -> conflict"); !strings.Contains(l, "conflict as expected") {
		t.Errorf("conflict line: %s", l)
	}
	// Ground truth at the EHR: the note exists once.
	m := intentInLine.FindStringSubmatch(stepLine(t, out, "create note"))
	if m == nil {
		t.Fatalf("no intent id in the create line")
	}
	if recs := s.FindByIdentifier("north", "DocumentReference", writeback.IdentifierSystem, m[1]); len(recs) != 1 {
		t.Errorf("records at the EHR for intent %s: %v, want 1", m[1], recs)
	}
	// The temporary store is gone.
	if strings.Contains(stderr.String(), "kept in") {
		t.Errorf("stderr: %s", stderr)
	}
}

// Against Epic the appointment steps are not supported (Epic's FHIR R4 API
// does not book), and a note without an encounter breaks Epic's contract.
func TestWritebackTestReportsUnsupportedAndFailures(t *testing.T) {
	s := startWritebackSim(t)
	path := writebackConfigFile(t, s)

	env, stdout, stderr := testEnv()
	code := run(context.Background(), env, []string{"writeback", "test", "--config", path, "--practice", "south"})
	out := stdout.String()
	t.Logf("report:\n%s", out)
	if code != 1 || !strings.Contains(stderr.String(), "steps failed") {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	if l := stepLine(t, out, "create note"); !strings.HasPrefix(strings.TrimSpace(l), "FAIL") || !strings.Contains(l, "context.encounter") {
		t.Errorf("create note without an encounter: %s", l)
	}
	for _, step := range []string{"book appointment", "update with If-Match", "stale update -> conflict"} {
		if l := stepLine(t, out, step); !strings.HasPrefix(strings.TrimSpace(l), "N/A") || !strings.Contains(l, "not supported (") {
			t.Errorf("step %q: %s", step, l)
		}
	}
	if l := stepLine(t, out, "book appointment"); !strings.Contains(l, "Epic") {
		t.Errorf("the refusal does not give the contract's reason: %s", l)
	}
	for _, step := range []string{"read note back", "duplicate idempotency key"} {
		if l := stepLine(t, out, step); !strings.HasPrefix(strings.TrimSpace(l), "SKIP") {
			t.Errorf("step %q: %s", step, l)
		}
	}
}

func TestWritebackTestUsage(t *testing.T) {
	for _, args := range [][]string{
		{"writeback", "test"},
		{"writeback", "test", "--config", "x.yaml"},
		{"writeback", "test", "--config", "x.yaml", "--practice", "p", "extra"},
		{"writeback", "test", "--config", "x.yaml", "--practice", "p", "--timeout", "0s"},
	} {
		env, _, stderr := testEnv()
		if code := run(context.Background(), env, args); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, stderr)
		}
	}
	s := startWritebackSim(t)
	path := writebackConfigFile(t, s)
	env, _, stderr := testEnv()
	if code := run(context.Background(), env, []string{"writeback", "test", "--config", path, "--practice", "west"}); code != 1 ||
		!strings.Contains(stderr.String(), `practice "west" is not in`) {
		t.Errorf("unknown practice: exit %d, %s", code, stderr)
	}
}

// With an encounter Epic's contract is met: the note steps pass, the
// appointment steps stay not supported, and the run succeeds.
func TestWritebackTestEpicWithAnEncounter(t *testing.T) {
	s := startWritebackSim(t)
	path := writebackConfigFile(t, s)
	var patient, encounter string
	for id, body := range s.Current("south", "Encounter") {
		var enc struct {
			Subject struct{ Reference string } `json:"subject"`
		}
		if json.Unmarshal(body, &enc) == nil && strings.HasPrefix(enc.Subject.Reference, "Patient/") {
			patient, encounter = strings.TrimPrefix(enc.Subject.Reference, "Patient/"), id
			break
		}
	}
	if encounter == "" {
		t.Fatal("the simulator has no encounter with a patient")
	}
	env, stdout, stderr := testEnv()
	code := run(context.Background(), env, []string{"writeback", "test", "--config", path, "--practice", "south",
		"--patient", patient, "--encounter", encounter})
	out := stdout.String()
	t.Logf("report:\n%s", out)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	if !strings.Contains(out, "6 steps: 3 passed, 0 failed, 3 not supported, 0 skipped") {
		t.Errorf("summary:\n%s", out)
	}
	m := intentInLine.FindStringSubmatch(stepLine(t, out, "create note"))
	if m == nil {
		t.Fatalf("no intent id in the create line")
	}
	if recs := s.FindByIdentifier("south", "DocumentReference", writeback.IdentifierSystem, m[1]); len(recs) != 1 {
		t.Errorf("records at the EHR for intent %s: %v, want 1", m[1], recs)
	}
}
