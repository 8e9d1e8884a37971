package v2fhir_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/testutil/peers"
)

// validation is one line of peers/fhir-validate.mjs's output.
type validation struct {
	Line         int    `json:"line"`
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	OK           bool   `json:"ok"`
	Issues       []struct {
		Severity   string   `json:"severity"`
		Code       string   `json:"code"`
		Expression []string `json:"expression"`
		Details    string   `json:"details"`
	} `json:"issues"`
}

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

// runValidator runs peers/fhir-validate.mjs over the bodies and returns
// its verdict on each, in order.
func runValidator(t *testing.T, bodies [][]byte) []validation {
	t.Helper()
	node := peers.Node(t)
	dir := peers.Dir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "fhir-validate.mjs"))
	cmd.Dir = dir
	var in bytes.Buffer
	for _, b := range bodies {
		in.Write(b)
		in.WriteByte('\n')
	}
	cmd.Stdin = &in
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("fhir-validate.mjs did not finish: %s", stderr.String())
	}
	if exit, ok := err.(*exec.ExitError); err != nil && (!ok || exit.ExitCode() != 1) {
		t.Fatalf("fhir-validate.mjs: %v\n%s", err, stderr.String())
	}
	out := make([]validation, len(bodies))
	seen := make([]bool, len(bodies))
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var v validation
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("fhir-validate.mjs printed %q: %v", sc.Text(), err)
		}
		if v.Line < 1 || v.Line > len(bodies) || seen[v.Line-1] {
			t.Fatalf("fhir-validate.mjs reported line %d of %d (twice?)", v.Line, len(bodies))
		}
		out[v.Line-1], seen[v.Line-1] = v, true
	}
	for i, ok := range seen {
		if !ok {
			t.Fatalf("fhir-validate.mjs said nothing about resource %d; stderr:\n%s", i+1, stderr.String())
		}
	}
	if err == nil {
		for _, v := range out {
			if !v.OK {
				t.Fatal("fhir-validate.mjs exited 0 but reported an invalid resource")
			}
		}
	}
	return out
}

// validateWithMedplum fails the test for every body Medplum finds invalid.
func validateWithMedplum(t *testing.T, bodies [][]byte, from []string) {
	t.Helper()
	for i, v := range runValidator(t, bodies) {
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
	got := runValidator(t, bodies)
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
