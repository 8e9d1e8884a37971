package mapping

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/mediflow/mediflow/internal/fhir/model"
	"github.com/mediflow/mediflow/internal/fhir/validate"
	"github.com/mediflow/mediflow/internal/mapping/conceptmap"
	"github.com/mediflow/mediflow/profiles"
)

func loadSet(t testing.TB, vendor string, overrides ...Source) *Set {
	t.Helper()
	set, err := Load(profiles.FS, vendor, "", overrides...)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func mapJSON(t *testing.T, set *Set, in string, opts MapOptions) (map[string]any, *Report) {
	t.Helper()
	out, rep, err := set.Map(context.Background(), []byte(in), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, is := range validate.Validate(model.R4(), out) {
		if is.Severity == validate.SeverityError {
			t.Errorf("output not valid: %s: %s\n%s", is.Path, is.Message, out)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m, rep
}

func result(rep *Report, rule string) []ElementResult {
	var out []ElementResult
	for _, e := range rep.Elements {
		if e.Rule == rule {
			out = append(out, e)
		}
	}
	return out
}

func TestMapEpicPatient(t *testing.T) {
	set := loadSet(t, "epic", Source{Name: "p.yaml", Data: []byte("params:\n  mrnSystem: urn:oid:2.16.840.1.113883.3.9999.1\n")})
	in := `{"resourceType":"Patient","id":"e1",
	 "extension":[{"url":"http://open.epic.com/FHIR/StructureDefinition/extension/legal-sex","valueCodeableConcept":{"coding":[{"system":"urn:oid:1.2.840.114350.1.13.861.1.7.10.698084.130.657370.19999000","code":"Female"}]}},
	   {"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race","extension":[{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2106-3"}}]},
	   {"url":"http://vendor/custom","valueString":"kept"}],
	 "identifier":[{"type":{"text":"EPI"},"system":"urn:oid:1.2.840.114350.1.13.861.1.7.5.737384.0","value":"203713"},{"type":{"text":"INTERNAL"},"value":"     Z6129"}],
	 "name":[{"family":"Lopez","given":["Camila","Maria"]}],
	 "telecom":[{"system":"phone","value":"469-555-5555","use":"home"},{"system":"email","value":" c@example.com "}],
	 "gender":"male","birthDate":"1987-09-12",
	 "address":[{"line":["3268  West Johnson St."],"city":"Garland","state":"tx","postalCode":"750430000"}],
	 "maritalStatus":{"text":"Married"}}`
	m, rep := mapJSON(t, set, in, MapOptions{})
	b, _ := json.Marshal(m)
	s := string(b)
	for _, want := range []string{
		`"gender":"female"`, // legal sex wins over Patient.gender
		`"system":"urn:oid:2.16.840.1.113883.3.9999.1","type":{"coding":[{"code":"MR"`,
		`"value":"Z6129"`,
		`"value":"+14695555555"`,
		`"value":"c@example.com"`,
		`"family":"Lopez","given":["Camila","Maria"],"text":"Camila Maria Lopez","use":"official"`,
		`"postalCode":"75043-0000","state":"TX"`,
		`"line":["3268 West Johnson St."]`,
		`{"url":"http://vendor/custom","valueString":"kept"}`,
		`"maritalStatus":{"text":"Married"}`,
		`"tag":[{"code":"epic@2 + canonical@2 + practice@`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %s:\n%s", want, s)
		}
	}
	if r := result(rep, "patient.gender"); len(r) != 1 || r[0].Status != StatusPopulated {
		t.Errorf("gender: %+v", r)
	}
	if r := result(rep, "epic.patient.identifier.trim"); len(r) != 2 || r[1].Element() != "identifier[1].value" {
		t.Errorf("trim results: %+v", r)
	}
	// Without the legal-sex extension Patient.gender is translated.
	m, _ = mapJSON(t, set, `{"resourceType":"Patient","gender":"M"}`, MapOptions{})
	if m["gender"] != "male" {
		t.Errorf("gender from Patient.gender: %v", m["gender"])
	}
}

func TestMapStatuses(t *testing.T) {
	set := loadSet(t, "generic")
	_, rep := mapJSON(t, set, `{"resourceType":"Patient","name":[{"use":"usual","family":"A"}],"telecom":[{"system":"phone","value":"555-0100"}]}`, MapOptions{KeepValues: true})
	check := func(rule string, i int, status Status) {
		t.Helper()
		r := result(rep, rule)
		if len(r) <= i || r[i].Status != status {
			t.Errorf("%s[%d]: %+v, want %s", rule, i, r, status)
		}
	}
	check("patient.gender", 0, StatusPopulated) // default unknown
	check("patient.birthDate", 0, StatusEmpty)
	check("patient.address", 0, StatusEmpty)
	check("patient.name.official", 0, StatusSkipped) // the name has a use
	check("patient.telecom.phone", 0, StatusFailed)
	if r := result(rep, "patient.telecom.phone")[0]; !strings.Contains(r.Reason, "area code") || r.Element() != "telecom.where(system = 'phone' or system = 'fax' or system = 'sms')[0].value" {
		t.Errorf("phone failure: %+v", r)
	}
	if r := result(rep, "patient.gender")[0]; len(r.Values) != 1 || r.Values[0] != "unknown" || !r.Required || !r.Defaulted {
		t.Errorf("gender values: %+v", r)
	}
	issues := rep.Issues()
	if len(issues) != 1 || issues[0].Rule != "patient.telecom.phone" {
		t.Errorf("issues: %+v", issues)
	}
	// A required element left empty is an issue; kept elements are not.
	_, rep = mapJSON(t, set, `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB","system":"http://terminology.hl7.org/CodeSystem/v3-ActCode"}}`, MapOptions{})
	var missing []string
	for _, is := range rep.Issues() {
		missing = append(missing, is.Rule)
	}
	if strings.Join(missing, ",") != "encounter.subject" {
		t.Errorf("issues: %v", missing)
	}
	if r := result(rep, "encounter.subject"); r[0].Status != StatusEmpty {
		t.Errorf("subject: %+v", r)
	}
}

func TestMapDefaultsAndCodes(t *testing.T) {
	set := loadSet(t, "generic")
	var counter conceptmap.Unmapped
	m, rep := mapJSON(t, set, `{"resourceType":"Encounter","status":"in-progress","subject":{"reference":"Patient/1"}}`, MapOptions{Unmapped: &counter})
	cls, _ := json.Marshal(m["class"])
	if string(cls) != `{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"unknown"}]}` {
		t.Errorf("class default: %s", cls)
	}
	if r := result(rep, "encounter.class")[0]; r.Status != StatusPopulated {
		t.Errorf("class: %+v", r)
	}
	// Epic's patient class is translated; an unknown class is kept and counted.
	m, rep = mapJSON(t, set, `{"resourceType":"Encounter","status":"finished","subject":{"reference":"Patient/1"},"class":{"system":"urn:oid:1.2.840.114350.1.72.1.7.7.10.696784.13260","code":"5"}}`, MapOptions{Unmapped: &counter})
	if c := m["class"].(map[string]any); c["system"] != "http://terminology.hl7.org/CodeSystem/v3-ActCode" {
		t.Errorf("Epic class: %v", c)
	}
	m, rep = mapJSON(t, set, `{"resourceType":"Encounter","status":"finished","subject":{"reference":"Patient/1"},"class":{"system":"urn:local","code":"X"}}`, MapOptions{Unmapped: &counter})
	if c := m["class"].(map[string]any); c["code"] != "X" || c["system"] != "urn:local" {
		t.Errorf("unknown class: %v", c)
	}
	if u := result(rep, "encounter.class")[0].Unmapped; len(u) != 1 || u[0].Code != "X" || u[0].Policy != "pass-through" {
		t.Errorf("unmapped: %+v", u)
	}
	if counter.Counts()[conceptmap.Key("http://mediflow.dev/fhir/ConceptMap/encounter-class", "urn:local", "X")] != 1 {
		t.Errorf("counts: %v", counter.Counts())
	}
}

func TestMapErrorPolicyFailsTheResource(t *testing.T) {
	set := loadSet(t, "generic")
	out, rep, err := set.Map(context.Background(), []byte(`{"resourceType":"Appointment","status":"tentative","participant":[{"status":"accepted"}]}`), MapOptions{})
	var me *MapError
	if !errors.As(err, &me) || out != nil || rep == nil {
		t.Fatalf("got %s, %v", out, err)
	}
	if len(me.Failures) != 1 || me.Failures[0].Rule != "appointment.status" || !strings.Contains(err.Error(), "tentative") {
		t.Errorf("%v", err)
	}
}

func TestMapOut(t *testing.T) {
	set := loadSet(t, "oracle-health", Source{Name: "p.yaml", Data: []byte("params:\n  mrnSystem: urn:practice\n  vendorMrnSystem: urn:oid:2.16.840.1.113883.6.1000\n")})
	in := `{"resourceType":"Patient","meta":{"tag":[{"system":"urn:mediflow:mapping-profile","code":"old"},{"system":"urn:x","code":"y"}]},
		"identifier":[{"system":"urn:practice","value":"6931","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]}}],
		"maritalStatus":{"coding":[{"system":"https://fhir.cerner.com/t/codeSet/38","code":"309237"},{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"M"}]}}`
	m, rep := mapJSON(t, set, in, MapOptions{Direction: DirectionOut})
	b, _ := json.Marshal(m)
	s := string(b)
	for _, want := range []string{`"system":"urn:oid:2.16.840.1.113883.6.1000"`, `"maritalStatus":{"coding":[{"code":"M"`, `"tag":[{"code":"y","system":"urn:x"}]`} {
		if !strings.Contains(s, want) {
			t.Errorf("lacks %s: %s", want, s)
		}
	}
	if strings.Contains(s, "codeSet") || strings.Contains(s, "mapping-profile") {
		t.Errorf("out kept Oracle codes or the profile tag: %s", s)
	}
	if rep.Direction != DirectionOut || len(result(rep, "patient.gender")) != 0 {
		t.Errorf("in rules ran out: %+v", rep.Elements)
	}
	if _, _, err := set.Map(context.Background(), []byte(in), MapOptions{Direction: "sideways"}); err == nil {
		t.Error("bad direction accepted")
	}
}

func TestMapRejectsBadInput(t *testing.T) {
	set := loadSet(t, "generic")
	for _, in := range []string{`[]`, `{"id":"1"}`, `{"resourceType":"Nope"}`, `{"resourceType":"DomainResource"}`, `{"resourceType":"Patient"`} {
		if _, _, err := set.Map(context.Background(), []byte(in), MapOptions{}); err == nil {
			t.Errorf("%s: no error", in)
		}
	}
	// Types without rules still pass through, tagged.
	m, _ := mapJSON(t, set, `{"resourceType":"Provenance","target":[{"reference":"Patient/1"}],"recorded":"2020-01-01T00:00:00Z","agent":[{"who":{"display":"x"}}],"text":{"status":"generated","div":""}}`, MapOptions{})
	if m["meta"] == nil || m["text"] != nil {
		t.Errorf("pass-through: %v", m)
	}
}

func TestMapTagReplaced(t *testing.T) {
	set := loadSet(t, "generic")
	m, _ := mapJSON(t, set, `{"resourceType":"Patient","meta":{"tag":[{"system":"urn:mediflow:mapping-profile","code":"generic@0 + canonical@0"}]}}`, MapOptions{})
	tags := m["meta"].(map[string]any)["tag"].([]any)
	if len(tags) != 1 || tags[0].(map[string]any)["code"] != set.Version() {
		t.Errorf("tags: %v", tags)
	}
}

// Map is used from many goroutines at once (the sync path maps in
// parallel); states and decoders are pooled, so results must not leak
// between calls.
func TestMapConcurrent(t *testing.T) {
	set := loadSet(t, "epic")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				phone := fmt.Sprintf("469-555-%04d", g*1000+i)
				in := fmt.Sprintf(`{"resourceType":"Patient","id":"p%d-%d","telecom":[{"system":"phone","value":%q}],"name":[{"text":"A%d B"}]}`, g, i, phone, i)
				out, _, err := set.Map(context.Background(), []byte(in), MapOptions{})
				if err != nil {
					errs <- err
					return
				}
				want := fmt.Sprintf(`"value":"+1469555%04d"`, g*1000+i)
				if !strings.Contains(string(out), want) || !strings.Contains(string(out), fmt.Sprintf(`"id":"p%d-%d"`, g, i)) {
					errs <- fmt.Errorf("mixed results: %s", out)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
