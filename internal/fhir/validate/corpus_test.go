package validate_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/mediflow/mediflow/internal/fhir/model"
	"github.com/mediflow/mediflow/internal/fhir/validate"
	"github.com/mediflow/mediflow/internal/testutil/repo"
)

// syntheaFiles returns the Synthea R4 files of the shared test data.
func syntheaFiles(tb testing.TB) []string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(repo.Shared(tb, "testdata/synthea-r4"), "*.json"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(files) != 30 {
		tb.Fatalf("%d Synthea files, want 30", len(files))
	}
	return files
}

// entries returns the resources of a Bundle's entries (none for another
// resource).
func entries(tb testing.TB, data []byte) []json.RawMessage {
	tb.Helper()
	var b struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		tb.Fatal(err)
	}
	var out []json.RawMessage
	for _, e := range b.Entry {
		out = append(out, e.Resource)
	}
	return out
}

// Every Synthea file (28 patient transaction Bundles, a practitioner Bundle
// and a Group) is valid, as a whole and entry by entry. Synthea's R4 output
// breaks none of the checked rules, so no exception is listed.
func TestSyntheaIsValid(t *testing.T) {
	v := validate.New(model.R4(), validate.WithMaxIssues(0))
	resources := 0
	for _, f := range syntheaFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		for _, is := range v.Validate(data) {
			t.Errorf("%s: %+v", name, is)
		}
		resources++
		for i, r := range entries(t, data) {
			resources++
			for _, is := range v.Validate(r) {
				t.Errorf("%s entry %d: %+v", name, i, is)
			}
		}
	}
	if resources < 6000 {
		t.Errorf("only %d resources checked", resources)
	}
}

// Every resource the HL7 v2 → FHIR conversion's golden files hold is valid.
func TestV2FHIRGoldenIsValid(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repo.RootT(t), "internal", "hl7", "v2fhir", "testdata", "golden", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	v := validate.New(model.R4(), validate.WithMaxIssues(0))
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var g struct {
			Resources []struct {
				Type string          `json:"type"`
				ID   string          `json:"id"`
				Body json.RawMessage `json:"body"`
			} `json:"resources"`
		}
		if err := json.Unmarshal(data, &g); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, r := range g.Resources {
			n++
			for _, is := range v.Validate(r.Body) {
				t.Errorf("%s %s/%s: %+v", filepath.Base(f), r.Type, r.ID, is)
			}
		}
	}
	if n < 50 {
		t.Errorf("only %d golden resources", n)
	}
}
