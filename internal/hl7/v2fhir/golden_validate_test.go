package v2fhir_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/testutil/peers"
)

// goldenBodies returns every resource body of the golden files, with the
// file each came from.
func goldenBodies(t *testing.T) (bodies [][]byte, from []string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var g goldenResult
		if err := json.Unmarshal(data, &g); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, r := range g.Resources {
			var compact bytes.Buffer
			if err := json.Compact(&compact, r.Body); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			bodies = append(bodies, compact.Bytes())
			from = append(from, filepath.Base(f)+" "+r.Type+"/"+r.ID)
		}
	}
	if len(bodies) == 0 {
		t.Fatal("no golden resources")
	}
	return bodies, from
}

// validateWithMedplum fails the test for every body Medplum finds invalid.
func validateWithMedplum(t *testing.T, bodies [][]byte, from []string) {
	t.Helper()
	for i, v := range peers.ValidateMedplum(t, bodies) {
		if v.OK {
			continue
		}
		var msgs []string
		for _, is := range v.Issues {
			msgs = append(msgs, is.Severity+" "+strings.Join(is.Expression, ",")+": "+is.Details)
		}
		t.Errorf("%s is not valid FHIR R4: %s", from[i], strings.Join(msgs, "; "))
	}
}

// The validator is not a rubber stamp: it rejects what FHIR forbids.
func TestValidatorRejectsInvalidResources(t *testing.T) {
	cases := []struct {
		body, issue string
	}{
		{`{"resourceType":"Observation","id":"o1","code":{"text":"x"}}`, "Observation.status"},
		{`{"resourceType":"Patient","id":"p1","birthDate":"1970-13-01"}`, "Patient.birthDate"},
		{`{"resourceType":"Patient","id":"p2","name":{"family":"A"}}`, "Patient.name"},
		{`{"resourceType":"Patient","id":"p3","telecom":[{"system":"phone","value":""}]}`, "Patient.telecom[0].value"},
		{`{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"IMP"},"bogus":1}`, "Encounter.bogus"},
		{`{"resourceType":"Appointment","id":"a1","status":"booked","participant":[{"status":"accepted"}]}`, "Appointment"},
	}
	var bodies [][]byte
	for _, c := range cases {
		bodies = append(bodies, []byte(c.body))
	}
	bodies = append(bodies, []byte(`{"resourceType":"Patient","id":"ok","gender":"female"}`))
	got := peers.ValidateMedplum(t, bodies)
	for i, c := range cases {
		if got[i].OK {
			t.Errorf("%s: accepted", c.body)
			continue
		}
		found := false
		for _, is := range got[i].Issues {
			for _, e := range is.Expression {
				found = found || strings.HasPrefix(e, c.issue)
			}
		}
		if !found {
			t.Errorf("%s: no issue at %s: %+v", c.body, c.issue, got[i].Issues)
		}
	}
	if !got[len(cases)].OK {
		t.Errorf("a valid Patient was rejected: %+v", got[len(cases)].Issues)
	}
}

// Every resource in the golden files is valid FHIR R4 to Medplum's
// validator (element names, cardinalities, primitive formats, required
// elements, invariants).
func TestGoldenResourcesAreValidFHIR(t *testing.T) {
	bodies, from := goldenBodies(t)
	validateWithMedplum(t, bodies, from)
}
