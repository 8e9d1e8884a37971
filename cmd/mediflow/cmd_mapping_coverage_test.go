package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/mapping/coverage"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
)

// simBundle is a searchset Bundle of every Patient and Appointment of a
// small simulated Epic practice, and how many entries it has.
func simBundle(t *testing.T) ([]byte, int) {
	t.Helper()
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{ID: "c", Flavor: "epic", Seed: 3, Data: &gen.Options{Patients: 3}}}})
	if err != nil {
		t.Fatal(err)
	}
	var entries []string
	for _, rt := range []string{"Patient", "Appointment"} {
		for _, body := range s.Current("c", rt) {
			entries = append(entries, `{"resource":`+string(body)+`}`)
		}
	}
	return []byte(`{"resourceType":"Bundle","type":"searchset","entry":[` + strings.Join(entries, ",") + `]}`), len(entries)
}

const testADT = "MSH|^~\\&|EHR|CLINIC|MEDIFLOW|MF|20260601120000||ADT^A04|M1|P|2.5.1\rPID|1||HC9^^^CLINIC^MR||Doe^Jane||19700102|F\rPV1|1|O\r"

func TestMappingCoverageInput(t *testing.T) {
	dir := t.TempDir()
	bundle, n := simBundle(t)
	if err := os.WriteFile(filepath.Join(dir, "page.json"), bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "adt.hl7"), []byte(testADT), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runMappingSub(t, mappingCoverageCmd(), "--input", dir, "--vendor", "epic", "--vendor-version", "May 2026", "--format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep coverage.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	if rep.Vendor != "epic" || rep.VendorVersion != "May 2026" || rep.Totals.Resources < n+1 || rep.Totals.Problems != 0 || rep.Input != "folder "+dir {
		t.Errorf("report header and totals: %+v %+v", rep, rep.Totals)
	}
	found := false
	for _, r := range rep.ResourceTypes {
		for _, e := range r.Elements {
			if r.ResourceType == "Patient" && e.Rule == "patient.gender" && e.Total >= 1 && len(e.Examples) > 0 {
				found = true
			}
		}
	}
	if !found {
		t.Error("no Patient gender coverage with examples")
	}
	if strings.Contains(out, "HC9") || strings.Contains(out, "Doe") {
		t.Error("the report holds PHI of the HL7 message")
	}
	// HTML to a file.
	file := filepath.Join(t.TempDir(), "cov.html")
	code, _, errOut = runMappingSub(t, mappingCoverageCmd(), "--input", dir, "--vendor", "epic", "--out", file, "--examples", "0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	html, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(html), "<h1>Mapping coverage</h1>") || strings.Contains(string(html), `class="example small"><div>`) {
		t.Errorf("HTML report: %v (no examples expected with --examples 0)", err)
	}
}

func TestMappingCoverageStore(t *testing.T) {
	cfg := writeMappingConfig(t)
	dbPath := filepath.Join(filepath.Dir(cfg), "store", "mediflow.db")
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, dbPath, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bundle, n := simBundle(t)
	if _, err := st.PutRaw(ctx, store.RawPayload{Practice: "sunrise", Connection: "ehr", Source: "fhir-rest", FetchedAt: time.Now(), Body: bundle}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutRaw(ctx, store.RawPayload{Practice: "lakeside", Connection: "fhir", Source: "fhir-rest", FetchedAt: time.Now(), Body: bundle}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutHL7Messages(ctx, "sunrise", []store.HL7Message{{Direction: store.DirectionInbound, Channel: "adt-feed", ControlID: "M1", Body: []byte(testADT)}}, 0); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runMappingSub(t, mappingCoverageCmd(), "--config", cfg, "--practice", "sunrise", "--format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep coverage.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	// The practice's page (not lakeside's) and the ADT's resources.
	if rep.Practice != "sunrise" || rep.Vendor != "epic" || rep.Totals.Resources <= n || rep.Totals.Resources > n+3 {
		t.Errorf("practice %s vendor %s totals %+v (page has %d)", rep.Practice, rep.Vendor, rep.Totals, n)
	}
}

func TestMappingCoverageErrors(t *testing.T) {
	cfg := writeMappingConfig(t)
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{}, 2, "give --practice ID (stored data) or --input DIR"},
		{[]string{"--input", t.TempDir()}, 2, "give --practice ID (with --config FILE) or --vendor NAME"},
		{[]string{"--input", t.TempDir(), "--vendor", "epic", "--format", "csv"}, 2, "--format must be one of html, json"},
		{[]string{"--input", filepath.Join(t.TempDir(), "missing"), "--vendor", "epic"}, 1, "coverage: input"},
		{[]string{"--config", cfg, "--practice", "sunrise"}, 1, "no store at"},
		{[]string{"--input", t.TempDir(), "--vendor", "epic", "--max-pages", "0"}, 2, "--max-pages must be positive"},
	}
	for _, c := range cases {
		code, _, errOut := runMappingSub(t, mappingCoverageCmd(), c.args...)
		if code != c.code || !strings.Contains(errOut, c.msg) {
			t.Errorf("%v: exit %d, %q; want %d with %q", c.args, code, errOut, c.code, c.msg)
		}
	}
}
