package engine

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/dataclass"
	"github.com/mediflow/mediflow/internal/mapping"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/profiles"
)

// mappingConfig is testConfig with a mapping block and an HL7 listener.
func mappingConfig(t *testing.T, baseURL, block string, files map[string]string) *config.Config {
	t.Helper()
	cfg := testConfig(t, baseURL)
	for name, data := range files {
		p := filepath.Join(cfg.BaseDir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	yaml := `server:
  listen: 127.0.0.1:0
store:
  path: mediflow.db
practices:
  - id: clinic
    name: Test Clinic
` + block + `    connections:
      - name: ehr
        vendor: epic
        base_url: ` + baseURL + `
        auth:
          type: none
        sync:
          - class: demographics
            interval: 1m
    hl7_listeners:
      - name: adt
        listen: 127.0.0.1:0
apps:
  - name: app
    key: {value: ` + strings.Repeat("k", 40) + `}
    practices: [clinic]
`
	c, err := config.Parse(filepath.Join(cfg.BaseDir, "mediflow.yaml"), []byte(yaml), config.WithSecretCheck(config.SecretsRequired))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func discard() Options { return Options{Logger: obs.NewLogger(io.Discard, 0, "json")} }

// Synced resources are stored mapped with the connection's vendor profile
// and carry its version; raw pages keep what the EHR sent.
func TestSyncStoresCanonicalResources(t *testing.T) {
	s := startSim(t)
	cfg := mappingConfig(t, s.BaseURL("clinic"), "", nil)
	ctx := context.Background()
	eng, err := New(ctx, cfg, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	set := eng.MappingSet("clinic", "ehr")
	if set == nil || set.Vendor() != "epic" {
		t.Fatalf("connection set %v, want the epic profile", set)
	}
	if hs := eng.MappingSet("clinic", "adt"); hs != set {
		t.Errorf("the HL7 listener should use the practice's first connection's profile")
	}
	if err := eng.SyncAll(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	want, err := mapping.Load(profiles.FS, "epic", "")
	if err != nil {
		t.Fatal(err)
	}
	src := s.Current("clinic", "Patient")
	if len(src) == 0 {
		t.Fatal("the simulator has no patients")
	}
	for id, body := range src {
		got, err := eng.Store().GetResource(ctx, "clinic", "Patient", id)
		if err != nil {
			t.Fatal(err)
		}
		exp, _, err := want.Map(ctx, body, mapping.MapOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Body, exp) {
			t.Errorf("Patient/%s is not the mapped source:\n got %s\nwant %s", id, got.Body, exp)
		}
		if !bytes.Contains(got.Body, []byte(mapping.ProfileTagSystem)) || !bytes.Contains(got.Body, []byte(want.Version())) {
			t.Errorf("Patient/%s does not record the profile version %s", id, want.Version())
		}
		raw, err := eng.Store().GetRaw(ctx, "clinic", got.RawID)
		if err != nil || !bytes.Contains(raw.Body, body) {
			t.Errorf("Patient/%s: raw page %d does not hold the resource as served (%v)", id, got.RawID, err)
		}
	}
}

// With mapping disabled the store holds what the EHR sent.
func TestSyncWithMappingDisabled(t *testing.T) {
	s := startSim(t)
	cfg := mappingConfig(t, s.BaseURL("clinic"), "    mapping:\n      enabled: false\n", nil)
	ctx := context.Background()
	eng, err := New(ctx, cfg, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	if eng.MappingSet("clinic", "ehr") != nil {
		t.Fatal("a disabled practice has a mapping set")
	}
	if err := eng.SyncAll(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	for id, body := range s.Current("clinic", "Patient") {
		got, err := eng.Store().GetResource(ctx, "clinic", "Patient", id)
		if err != nil || !bytes.Equal(got.Body, body) {
			t.Fatalf("Patient/%s: stored %s, want as served (%v)", id, got.Body, err)
		}
	}
}

// A practice's overrides are loaded at New: good ones change the profile
// version, bad ones stop New with file:line messages.
func TestNewLoadsPracticeOverrides(t *testing.T) {
	good := "resource: Patient\nrules:\n  - id: patient.birthDate\n    enabled: false\n    rationale: We keep birth dates as sent.\n"
	bad := "resource: Patient\nrules:\n  - id: x\n    target: gendr\n    rationale: r\n"
	ctx := context.Background()

	cfg := mappingConfig(t, "http://127.0.0.1:1/fhir", "    mapping:\n      overrides: rules\n      time_zone: America/Chicago\n      vendor_version: May 2024\n",
		map[string]string{"rules/overrides.yaml": good})
	eng, err := New(ctx, cfg, discard())
	if err != nil {
		t.Fatalf("good overrides: %v", err)
	}
	defer eng.Close()
	set := eng.MappingSet("clinic", "ehr")
	if set == nil || !strings.Contains(set.Version(), "practice@") || set.VendorVersion() != "May 2024" {
		t.Fatalf("set version %q vendor version %q, want a practice layer for May 2024", set.Version(), set.VendorVersion())
	}
	for _, r := range set.Rules("Patient") {
		if r.ID == "patient.birthDate" {
			t.Errorf("the override did not disable patient.birthDate")
		}
	}

	cfg = mappingConfig(t, "http://127.0.0.1:1/fhir", "    mapping:\n      overrides: bad.yaml\n", map[string]string{"bad.yaml": bad})
	_, err = New(ctx, cfg, discard())
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:4:") || !strings.Contains(err.Error(), "practice clinic") {
		t.Fatalf("bad overrides: %v, want an error naming bad.yaml:4 and the practice", err)
	}
}

// Mapping issues are counted per rule in the metrics: an Observation
// without a code leaves the required observation.code empty.
func TestMappingIssuesAreCounted(t *testing.T) {
	cfg := mappingConfig(t, "http://127.0.0.1:1", "", nil)
	m, err := NewMapper(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.metrics = obs.NewMetrics()
	body := []byte(`{"resourceType":"Observation","id":"o1","status":"final","subject":{"reference":"Patient/p1"}}`)
	for range 2 {
		if _, err := m.Map(context.Background(), "clinic", "adt", "Observation", body); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := m.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got float64
	for _, mf := range mfs {
		if mf.GetName() != "mediflow_mapping_issues_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["practice"] == "clinic" && labels["resource_type"] == "Observation" && labels["rule"] == "observation.code" && labels["kind"] == obs.MappingRequiredEmpty {
				got = mt.GetCounter().GetValue()
			}
		}
	}
	if got != 2 {
		t.Errorf("mediflow_mapping_issues_total{rule=observation.code,kind=required-empty} = %v, want 2", got)
	}
}

// MapWithIssues returns the mapping issues of one resource as
// "<rule id>: <kind>", one entry per occurrence, PHI-free; with the error
// of a resource the mapping rejects; and none for a type without rules.
func TestMapperReportsIssues(t *testing.T) {
	cfg := mappingConfig(t, "http://127.0.0.1:1", "", nil)
	m, err := NewMapper(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct {
		name, rt, body string
		want           []string
		fails          bool
	}{
		{"required element empty", "Observation", `{"resourceType":"Observation","id":"o1","status":"final","subject":{"reference":"Patient/p1"}}`,
			[]string{"observation.code: required-empty"}, false},
		{"two phones that cannot be read", "Patient", `{"resourceType":"Patient","id":"p1","gender":"female","telecom":[{"system":"phone","value":"12"},{"system":"fax","value":"34"}]}`,
			[]string{"patient.telecom.phone: failed", "patient.telecom.phone: failed"}, false},
		{"code the table lacks, error policy", "Appointment", `{"resourceType":"Appointment","id":"a1","status":"zzz-secret-status","participant":[{"status":"accepted","actor":{"reference":"Patient/p1"}}]}`,
			[]string{"appointment.status: failed", "appointment.status: unmapped-code"}, true},
		{"a newly covered type", "Slot", `{"resourceType":"Slot","id":"s1","status":"free","start":"2026-05-05T14:30:00Z","end":"2026-05-05T15:00:00Z"}`,
			[]string{"slot.schedule: required-empty"}, false},
		{"nothing wrong", "Slot", `{"resourceType":"Slot","id":"s2","schedule":{"reference":"Schedule/x"},"status":"free","start":"2026-05-05T14:30:00Z","end":"2026-05-05T15:00:00Z"}`,
			nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, issues, err := m.MapWithIssues(ctx, "clinic", "ehr", c.rt, []byte(c.body))
			if (err != nil) != c.fails {
				t.Fatalf("error %v, want failure %v", err, c.fails)
			}
			if !c.fails && !bytes.Contains(out, []byte(mapping.ProfileTagSystem)) {
				t.Errorf("output does not carry the profile tag: %s", out)
			}
			if strings.Join(issues, "|") != strings.Join(c.want, "|") {
				t.Errorf("issues %q, want %q", issues, c.want)
			}
			for _, is := range issues {
				if strings.Contains(is, "secret") || strings.Contains(is, "12") {
					t.Errorf("issue %q quotes a value", is)
				}
			}
			// Map gives the same result without the issues.
			plain, perr := m.Map(ctx, "clinic", "ehr", c.rt, []byte(c.body))
			if !bytes.Equal(plain, out) || (perr != nil) != c.fails {
				t.Errorf("Map and MapWithIssues differ: %s / %v", plain, perr)
			}
		})
	}

	// A type no layer has rules for comes back as sent, without issues.
	body := []byte(`{"resourceType":"Basic","id":"b1","code":{"text":"x"},"note":[]}`)
	if m.MapsType("clinic", "ehr", "Basic") {
		t.Fatal("Basic has no rules, yet MapsType says it is mapped")
	}
	out, issues, err := m.MapWithIssues(ctx, "clinic", "ehr", "Basic", body)
	if err != nil || !bytes.Equal(out, body) || issues != nil {
		t.Errorf("Basic: %s %q %v, want the body unchanged and no issues", out, issues, err)
	}
}

// Every type of the sync's data classes has canonical rules: resources of
// the types once stored unmapped (DocumentReference, MedicationRequest,
// DiagnosticReport, Slot, Schedule, Location, Organization) carry the
// profile tag.
func TestEverySyncedTypeIsMapped(t *testing.T) {
	cfg := mappingConfig(t, "http://127.0.0.1:1", "", nil)
	m, err := NewMapper(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := startSim(t)
	version := m.Set("clinic", "ehr").Version()
	for _, rt := range s.ResourceTypes("clinic") {
		if !m.MapsType("clinic", "ehr", rt) {
			t.Errorf("%s: not mapped", rt)
			continue
		}
		src := s.Current("clinic", rt)
		if len(src) == 0 {
			t.Errorf("%s: the simulator has none", rt)
		}
		for id, body := range src {
			out, err := m.Map(context.Background(), "clinic", "ehr", rt, body)
			if err != nil {
				t.Fatalf("%s/%s: %v", rt, id, err)
			}
			if !bytes.Contains(out, []byte(version)) {
				t.Errorf("%s/%s does not record the profile version %s", rt, id, version)
			}
			break
		}
	}
	n := 0
	for _, c := range dataclass.All() {
		for _, rt := range c.ResourceTypes {
			n++
			if !m.MapsType("clinic", "ehr", rt) {
				t.Errorf("%s (data class %s): MapsType false, want mapped by its canonical rules", rt, c.Name)
			}
		}
	}
	if n < 15 {
		t.Errorf("the data classes name only %d types", n)
	}
}
