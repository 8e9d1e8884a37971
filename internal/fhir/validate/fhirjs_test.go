package validate_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/mediflow/mediflow/internal/fhir/model"
	"github.com/mediflow/mediflow/internal/fhir/validate"
	"github.com/mediflow/mediflow/internal/testutil/peers"
	"github.com/mediflow/mediflow/internal/testutil/repo"
)

// fhirJSFalsePositives are valid R4 resources that FHIR.js (npm fhir
// 4.12.0) rejects, each with the known false positive that explains every
// error it gives (see peers.FhirJSFalsePositive for the reasons). None
// occurs in the corpus below; the list keeps the excuses honest: each must
// still be rejected by FHIR.js, excused only as stated, and accepted by our
// validator.
var fhirJSFalsePositives = []struct {
	name, resource, reason string
}{
	{"version-specific reference",
		`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/123/_history/2"}}`,
		peers.FhirJSVersionedReference},
	{"absolute version-specific reference",
		`{"resourceType":"Encounter","id":"e1","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"https://fhir.example.org/r4/Patient/123/_history/7"}}`,
		peers.FhirJSVersionedReference},
	{"required choice that is false",
		`{"resourceType":"Group","id":"g1","type":"person","actual":true,"characteristic":[{"code":{"text":"smoker"},"valueBoolean":false,"exclude":false}]}`,
		peers.FhirJSFalsyChoice},
	{"enableWhen answer that is false",
		`{"resourceType":"Questionnaire","id":"q1","status":"active","item":[{"linkId":"1","type":"boolean"},{"linkId":"2","type":"string","enableWhen":[{"question":"1","operator":"=","answerBoolean":false}]}]}`,
		peers.FhirJSFalsyChoice},
}

// fhirJSControls are invalid resources both validators must reject, so
// that the corpus passing means something.
var fhirJSControls = []struct{ name, resource string }{
	{"unknown element", `{"resourceType":"Patient","id":"p1","colour":"red"}`},
	{"single value for an array", `{"resourceType":"Patient","id":"p1","name":{"family":"Doe"}}`},
	{"missing required elements", `{"resourceType":"Observation","id":"o1"}`},
	{"code outside a required binding", `{"resourceType":"Patient","id":"p1","gender":"femal"}`},
	{"negative positiveInt", `{"resourceType":"Appointment","id":"a1","status":"booked","minutesDuration":-5,"participant":[{"actor":{"reference":"Patient/1"},"status":"accepted"}]}`},
	{"unknown resource type", `{"resourceType":"Patientt","id":"p1"}`},
	{"required choice absent", `{"resourceType":"Group","id":"g1","type":"person","actual":true,"characteristic":[{"code":{"text":"smoker"},"exclude":false}]}`},
}

// notExcused are real errors of FHIR.js shaped like a known false positive
// that must not be excused.
var notExcused = []struct{ name, resource string }{
	{"reference to a type the element does not allow", `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"Medication/1"}}`},
	{"required choice absent", `{"resourceType":"Group","id":"g1","type":"person","actual":true,"characteristic":[{"code":{"text":"smoker"},"exclude":false}]}`},
}

// corpusResource is one resource of the test corpus and where it came from.
type corpusResource struct {
	where string
	body  []byte
}

// emittedCorpus returns every resource of the 30 Synthea files (Bundle
// entries; a file that is not a Bundle counts as one resource) and every
// resource of the HL7 v2 → FHIR golden outputs.
func emittedCorpus(t *testing.T) []corpusResource {
	t.Helper()
	var out []corpusResource
	for _, f := range syntheaFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		if es := entries(t, data); len(es) > 0 {
			for i, e := range es {
				out = append(out, corpusResource{where: name + " entry " + strconv.Itoa(i), body: e})
			}
		} else {
			out = append(out, corpusResource{where: name, body: data})
		}
	}
	golden, err := filepath.Glob(filepath.Join(repo.RootT(t), "internal", "hl7", "v2fhir", "testdata", "golden", "*.json"))
	if err != nil || len(golden) == 0 {
		t.Fatalf("no v2fhir golden outputs (%v)", err)
	}
	for _, f := range golden {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var g struct {
			Resources []struct {
				Body json.RawMessage `json:"body"`
			} `json:"resources"`
		}
		if err := json.Unmarshal(data, &g); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for i, r := range g.Resources {
			out = append(out, corpusResource{where: filepath.Base(f) + " resource " + strconv.Itoa(i), body: r.Body})
		}
	}
	return out
}

// Everything mediflow emits from the Synthea bundles and the HL7 v2 golden
// messages is valid by our validator and by FHIR.js, the validator of npm
// fhir, run once over all of it (about 6,800 resources).
func TestEmittedResourcesValidateWithFhirJS(t *testing.T) {
	corpus := emittedCorpus(t)
	if len(corpus) < 6000 {
		t.Fatalf("corpus of %d resources; expected the Synthea entries and the v2 golden resources", len(corpus))
	}
	v := validate.New(model.R4(), validate.WithMaxIssues(0))

	// One Node process: the corpus, then the false positives, the controls
	// and the look-alikes.
	var bodies [][]byte
	for _, c := range corpus {
		bodies = append(bodies, c.body)
	}
	fpAt := len(bodies)
	for _, fp := range fhirJSFalsePositives {
		bodies = append(bodies, []byte(fp.resource))
	}
	ctlAt := len(bodies)
	for _, c := range fhirJSControls {
		bodies = append(bodies, []byte(c.resource))
	}
	neAt := len(bodies)
	for _, c := range notExcused {
		bodies = append(bodies, []byte(c.resource))
	}
	verdicts := peers.ValidateFhirJS(t, bodies)

	t.Run("corpus", func(t *testing.T) {
		excused := map[string]int{}
		for i, c := range corpus {
			for _, is := range v.Validate(c.body) {
				if is.Severity == validate.SeverityError {
					t.Errorf("ours: %s: %s: %s", c.where, is.Path, is.Message)
				}
			}
			for _, m := range verdicts[i].Errors() {
				if reason, ok := peers.FhirJSFalsePositive(c.body, m); ok {
					excused[reason]++
					continue
				}
				t.Errorf("FHIR.js: %s (%s): %s: %s", c.where, verdicts[i].ResourceType, m.Location, m.Message)
			}
		}
		t.Logf("%d resources valid by both validators; FHIR.js errors excused as known false positives: %v", len(corpus), excused)
	})

	t.Run("known false positives", func(t *testing.T) {
		for i, fp := range fhirJSFalsePositives {
			if issues := v.Validate([]byte(fp.resource)); validate.HasErrors(issues) {
				t.Errorf("%s: our validator rejects it (%+v), so it is no false positive", fp.name, issues)
			}
			errs := verdicts[fpAt+i].Errors()
			if len(errs) == 0 {
				t.Errorf("%s: FHIR.js accepts it now; remove it from the list", fp.name)
			}
			for _, m := range errs {
				if reason, ok := peers.FhirJSFalsePositive([]byte(fp.resource), m); !ok || reason != fp.reason {
					t.Errorf("%s: FHIR.js error %s: %s excused as %q, want %q", fp.name, m.Location, m.Message, reason, fp.reason)
				}
			}
		}
	})

	t.Run("controls", func(t *testing.T) {
		for i, c := range fhirJSControls {
			if !validate.HasErrors(v.Validate([]byte(c.resource))) {
				t.Errorf("%s: our validator accepts it", c.name)
			}
			if errs := verdicts[ctlAt+i].Errors(); len(errs) == 0 {
				t.Errorf("%s: FHIR.js accepts it", c.name)
			}
		}
		for i, c := range notExcused {
			errs := verdicts[neAt+i].Errors()
			if len(errs) == 0 {
				t.Errorf("%s: FHIR.js accepts it", c.name)
			}
			for _, m := range errs {
				if reason, ok := peers.FhirJSFalsePositive([]byte(c.resource), m); ok {
					t.Errorf("%s: real error %s: %s excused as %q", c.name, m.Location, m.Message, reason)
				}
			}
		}
	})
}
