package main

import (
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/testutil/repo"
)

// mappingTestConfig is a configuration with an Epic practice that receives
// HL7 v2 and a generic one without.
const mappingTestConfig = `
store:
  path: ./store/mediflow.db
practices:
  - id: sunrise
    name: Sunrise Family Medicine
    connections:
      - name: ehr
        vendor: epic
        base_url: https://fhir.example.org/api/FHIR/R4
        auth: {type: none}
        sync:
          - class: demographics
            interval: 5m
          - class: scheduling
            interval: 1m
    hl7_listeners:
      - name: adt-feed
        listen: 127.0.0.1:2575
  - id: lakeside
    name: Lakeside Pediatrics
    connections:
      - name: fhir
        vendor: generic
        base_url: https://ehr.lakeside.example.net/fhir/r4
        auth: {type: none}
        sync:
          - class: clinical
`

func writeMappingConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "mediflow.yaml")
	if err := os.WriteFile(file, []byte(mappingTestConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// runMappingSub runs one mapping subcommand in-process and returns its exit
// code, standard output and standard error.
func runMappingSub(t *testing.T, c *command, args ...string) (int, string, string) {
	t.Helper()
	env, stdout, stderr := testEnv()
	code := runCommand(context.Background(), env, "mediflow mapping", []*command{c}, append([]string{c.name}, args...))
	return code, stdout.String(), stderr.String()
}

func TestMappingDocPractice(t *testing.T) {
	cfg := writeMappingConfig(t)
	code, out, errOut := runMappingSub(t, mappingDocCmd(), "--config", cfg, "--practice", "sunrise", "--vendor-version", "May 2026")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"# Data mapping: Sunrise Family Medicine (sunrise)",
		"| EHR | Epic, version May 2026 |",
		"Rule `patient.gender` · set by the vendor layer (epic)",
		"| demographics | patients | Patient | FHIR connection ehr (epic), every 5m0s |",
		"HL7 v2 listener adt-feed",
		"## HL7 v2 messages",
		"## Code tables",
		"by mediflow " + version,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the document lacks %q", want)
		}
	}
	// The generic practice has no HL7 section, and CSV goes to --out.
	file := filepath.Join(t.TempDir(), "doc.csv")
	code, out, errOut = runMappingSub(t, mappingDocCmd(), "--config", cfg, "--practice", "lakeside", "--format", "csv", "--out", file)
	if code != 0 || out != "" {
		t.Fatalf("exit %d, stdout %q: %s", code, out, errOut)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(string(data))).ReadAll()
	if err != nil || len(rows) < 10 || rows[1][0] != "lakeside" || rows[1][1] != "generic" {
		t.Fatalf("CSV: %v, %d rows", err, len(rows))
	}
	for _, r := range rows {
		if r[4] == "hl7v2" {
			t.Fatal("HL7 rows for a practice without listeners")
		}
	}
}

func TestMappingDocVendorSampleOverrides(t *testing.T) {
	dir := t.TempDir()
	over := filepath.Join(dir, "overrides.yaml")
	if err := os.WriteFile(over, []byte(`
name: practice
params: {timeZone: America/Chicago}
resource: Patient
rules:
  - id: patient.birthDate
    rationale: Sunrise checks birth dates at every visit.
`), 0o644); err != nil {
		t.Fatal(err)
	}
	sample := repo.Shared(t, "fixtures/vendors/oracle-health")
	code, out, errOut := runMappingSub(t, mappingDocCmd(), "--vendor", "oracle-health", "--overrides", over, "--sample", sample, "--format", "html")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"<!DOCTYPE html>", "Sunrise checks birth dates at every visit.", "practice@", `class="example"><code>`} {
		if !strings.Contains(out, want) {
			t.Errorf("the document lacks %q", want)
		}
	}
	// The overrides folder form gives the same rules.
	code, out2, errOut := runMappingSub(t, mappingDocCmd(), "--vendor", "oracle-health", "--overrides", dir, "--sample", sample, "--format", "html")
	if code != 0 || !strings.Contains(out2, "Sunrise checks birth dates at every visit.") {
		t.Errorf("overrides folder: exit %d: %s", code, errOut)
	}
}

func TestMappingDocErrors(t *testing.T) {
	cfg := writeMappingConfig(t)
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{}, 2, "give --practice ID"},
		{[]string{"--vendor", "epic", "--format", "pdf"}, 2, "--format must be one of md, html, csv"},
		{[]string{"--config", cfg, "--practice", "nope"}, 2, `no practice "nope" (practices: sunrise, lakeside)`},
		{[]string{"--config", cfg, "--practice", "sunrise", "--vendor", "generic"}, 2, "practice sunrise connects to epic"},
		{[]string{"--vendor", "nosuch"}, 1, `unknown vendor profile "nosuch"`},
		{[]string{"--vendor", "epic", "--vendor-version", "x.y"}, 1, "vendor version"},
		{[]string{"--vendor", "epic", "--overrides", filepath.Join(t.TempDir(), "missing.yaml")}, 1, "overrides:"},
		{[]string{"--vendor", "epic", "--sample", "store"}, 2, "needs --practice"},
		{[]string{"--config", cfg, "--practice", "sunrise", "--sample", "store"}, 1, "no store at"},
		{[]string{"--vendor", "epic", "extra"}, 2, "takes no arguments"},
	}
	for _, c := range cases {
		code, _, errOut := runMappingSub(t, mappingDocCmd(), c.args...)
		if code != c.code || !strings.Contains(errOut, c.msg) {
			t.Errorf("%v: exit %d, %q; want %d with %q", c.args, code, errOut, c.code, c.msg)
		}
	}
	// A bad override names its file and line.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("resource: Patient\nrules:\n  - id: patient.gender\n    targt: gender\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runMappingSub(t, mappingDocCmd(), "--vendor", "epic", "--overrides", bad)
	if code != 1 || !strings.Contains(errOut, "bad.yaml:4") {
		t.Errorf("bad override: exit %d, %q", code, errOut)
	}
	// An --out file that cannot be created is an error.
	code, _, errOut = runMappingSub(t, mappingDocCmd(), "--vendor", "epic", "--out", filepath.Join(t.TempDir(), "no", "such", "dir.md"))
	if code != 1 || !strings.Contains(errOut, "create") {
		t.Errorf("unwritable --out: exit %d, %q", code, errOut)
	}
}
