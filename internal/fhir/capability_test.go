package fhir

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mediflow/mediflow/internal/testutil/repo"
)

func TestParseCapabilitiesVendorFixtures(t *testing.T) {
	dir := repo.Shared(t, filepath.Join("fixtures", "vendors"))
	cases := []struct {
		file        string
		fhirVersion string
		search      []string // types that must support search-type
		noSearch    []string // types that must not be listed with search-type
	}{
		{"epic/r4-capabilitystatement.json", "4.0.1", []string{"Patient", "Appointment", "Observation"}, []string{"Schedule", "Slot"}},
		{"oracle-health/r4_auth_metadata.json", "4.0.1", []string{"Patient", "Appointment", "Slot"}, nil},
	}
	for _, c := range cases {
		body, err := os.ReadFile(filepath.Join(dir, c.file))
		if err != nil {
			t.Fatal(err)
		}
		caps, err := ParseCapabilities(body)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if caps.FHIRVersion != c.fhirVersion {
			t.Errorf("%s: fhirVersion %q, want %q", c.file, caps.FHIRVersion, c.fhirVersion)
		}
		for _, rt := range c.search {
			if !caps.Supports(rt, "search-type") {
				t.Errorf("%s: %s should support search-type", c.file, rt)
			}
		}
		for _, rt := range c.noSearch {
			if caps.Supports(rt, "search-type") {
				t.Errorf("%s: %s should not support search-type", c.file, rt)
			}
		}
	}
}

func TestParseCapabilitiesRejectsOtherResources(t *testing.T) {
	if _, err := ParseCapabilities([]byte(`{"resourceType":"Patient"}`)); err == nil {
		t.Fatal("a Patient is not a CapabilityStatement")
	}
	if _, err := ParseCapabilities([]byte(`{`)); err == nil {
		t.Fatal("bad JSON must fail")
	}
}
