package mapping_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/mediflow/mediflow/internal/fhir/model"
	"github.com/mediflow/mediflow/internal/fhir/validate"
	"github.com/mediflow/mediflow/internal/mapping"
	"github.com/mediflow/mediflow/internal/testutil/peers"
	"github.com/mediflow/mediflow/internal/testutil/repo"
	"github.com/mediflow/mediflow/profiles"
)

// TestEmittedResourcesValidateWithBothValidators: every canonical resource
// the shipped profiles emit — the golden outputs of every vendor profile
// (vendor fixtures and simulator data) and every resource of the 30 Synthea
// bundles mapped with the generic profile — is valid FHIR R4 for our
// validator and for npm fhir's (FHIR.js), apart from FHIR.js's known false
// positives (peers.FhirJSFalsePositive).
func TestEmittedResourcesValidateWithBothValidators(t *testing.T) {
	var emitted [][]byte
	var names []string

	goldens, err := filepath.Glob(filepath.Join("testdata", "golden", "*", "*.json"))
	if err != nil || len(goldens) == 0 {
		t.Fatalf("no golden outputs (%v)", err)
	}
	for _, f := range goldens {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cases []struct {
			Resource json.RawMessage `json:"resource"`
		}
		if err := json.Unmarshal(data, &cases); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, c := range cases {
			if len(c.Resource) > 0 && string(c.Resource) != "null" {
				emitted = append(emitted, c.Resource)
				names = append(names, f)
			}
		}
	}
	nGolden := len(emitted)

	set, err := mapping.Load(profiles.FS, "generic", "")
	if err != nil {
		t.Fatal(err)
	}
	dir := repo.Shared(t, "testdata/synthea-r4")
	bundles, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(bundles) == 0 {
		t.Fatalf("no Synthea bundles in %s (%v)", dir, err)
	}
	ctx := context.Background()
	for _, f := range bundles {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var b struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(data, &b); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, e := range b.Entry {
			if len(e.Resource) == 0 {
				continue
			}
			out, _, err := set.Map(ctx, e.Resource, mapping.MapOptions{})
			if err != nil {
				t.Errorf("%s: mapping: %v", filepath.Base(f), err)
				continue
			}
			emitted = append(emitted, out)
			names = append(names, filepath.Base(f))
		}
	}
	if nGolden < 40 || len(emitted)-nGolden < 6000 {
		t.Fatalf("only %d golden and %d Synthea resources", nGolden, len(emitted)-nGolden)
	}

	m := model.R4()
	for i, r := range emitted {
		if issues := validate.Validate(m, r); validate.HasErrors(issues) {
			t.Errorf("%s resource %d: our validator: %v", names[i], i, issues)
		}
	}
	verdicts := peers.ValidateFhirJS(t, emitted)
	if len(verdicts) != len(emitted) {
		t.Fatalf("FHIR.js answered %d verdicts for %d resources", len(verdicts), len(emitted))
	}
	excused := 0
	for i, v := range verdicts {
		for _, e := range v.Errors() {
			if _, ok := peers.FhirJSFalsePositive(emitted[i], e); ok {
				excused++
				continue
			}
			t.Errorf("%s resource %d (%s): FHIR.js: %+v", names[i], i, v.ResourceType, e)
		}
	}
	t.Logf("%d golden and %d mapped Synthea resources valid for both validators (%d known FHIR.js false positives)", nGolden, len(emitted)-nGolden, excused)
}
