package mask

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/mapping"
	"github.com/mediflow/mediflow/profiles"
)

const patient = `{
  "resourceType": "Patient",
  "id": "p1",
  "meta": {"versionId": "3", "lastUpdated": "2026-05-01T10:00:00Z"},
  "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Jane Q Public</div>"},
  "extension": [
    {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
     "extension": [
       {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2186-5", "display": "Not Hispanic or Latino"}},
       {"url": "text", "valueString": "Not Hispanic"}]}
  ],
  "identifier": [
    {"use": "usual", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}], "text": "EPI"},
     "system": "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14", "value": "Z6129"}
  ],
  "name": [{"use": "official", "family": "Public", "given": ["Jane", "Quinn"], "text": "Jane Quinn Public"}],
  "telecom": [{"system": "phone", "value": "+14695550100", "use": "home"}, {"system": "email", "value": "jane@example.com"}],
  "gender": "female",
  "birthDate": "1987-04-12",
  "_birthDate": {"extension": [{"url": "http://example.org/x", "valueString": "born at home"}]},
  "address": [{"use": "home", "line": ["123 Main St"], "city": "Dallas", "state": "TX", "postalCode": "75201-1234", "country": "US",
    "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/geolocation", "extension": [
      {"url": "latitude", "valueDecimal": 42.4697235419671}, {"url": "longitude", "valueDecimal": -71.0939297996}]}],
    "period": {"start": "2001-05-17"}}],
  "multipleBirthInteger": 2,
  "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M", "display": "Married"}], "text": "Married"},
  "generalPractitioner": [{"reference": "Practitioner/pr1", "display": "Dr. Alan Smith"}],
  "contact": [{"name": {"family": "Doe", "given": ["John"]}, "telecom": [{"system": "phone", "value": "469-555-0199"}]}],
  "vendorJunk": {"secret": "John's diary"}
}`

func TestResourceMasksPHIAndKeepsCodes(t *testing.T) {
	out, err := JSON([]byte(patient))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("masked output is not JSON: %v", err)
	}
	s := string(out)
	for _, phi := range []string{"Jane", "Quinn", "Public", "Z6129", "4695550100", "jane@", "123 Main", "Dallas", "75201", "04-12", "Alan Smith", "Doe", "John", "0199", "born at home", "Not Hispanic\"", "diary", "42.46", "71.09", "05-17"} {
		if strings.Contains(s, phi) {
			t.Errorf("masked resource still holds %q:\n%s", phi, s)
		}
	}
	for _, kept := range []string{
		`"resourceType":"Patient"`, `"id":"p1"`, `"gender":"female"`, `"birthDate":"1987-##-##"`,
		`"system":"urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14"`, `"code":"MR"`, `"value":"X####"`,
		`"family":"Xxxxxx"`, `"value":"+###########"`, `"postalCode":"#####-####"`, `"state":"TX"`, `"country":"US"`,
		`"display":"Married"`, `"text":"Married"`, `"reference":"Practitioner/pr1"`, `"display":"Not Hispanic or Latino"`,
		`"code":"2186-5"`, `"status":"generated"`, `"div":"` + strings.ReplaceAll(Narrative, `"`, `\"`) + `"`,
		`"lastUpdated":"2026-05-01T10:00:00Z"`, `"use":"official"`, `"value":"xxxx@xxxxxxx.xxx"`,
		`"valueDecimal":"##.#############"`, `"url":"latitude"`, `"start":"2001-##-##"`, `"multipleBirthInteger":2`,
	} {
		if !strings.Contains(s, kept) {
			t.Errorf("masked resource lacks %s:\n%s", kept, s)
		}
	}
}

func TestTextAndDate(t *testing.T) {
	cases := []struct {
		fn       func(string) string
		in, want string
	}{
		{Text, "Jane O'Neil-Smith", "Xxxx X'Xxxx-Xxxxx"},
		{Text, "(469) 555-0100", "(###) ###-####"},
		{Text, "Zoë", "Xxx"},
		{Text, strings.Repeat("a", MaxText+5), strings.Repeat("x", MaxText) + "…"},
		{Text, "line1\nline2", "xxxx# xxxx#"},
		{Date, "1987-04-12", "1987-##-##"},
		{Date, "1987", "1987"},
		{Date, "1987-04-12T10:22:00-05:00", "1987-##-##T##:##:##-##:##"},
		{Date, "04/12/1987", "##/##/####"},
	}
	for _, c := range cases {
		if got := c.fn(c.in); got != c.want {
			t.Errorf("mask(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestBundleAndContained(t *testing.T) {
	b := `{"resourceType":"Bundle","type":"searchset","link":[{"relation":"next","url":"https://ehr/fhir/Patient?page=2"}],
	 "entry":[{"fullUrl":"https://ehr/fhir/Patient/1","resource":{"resourceType":"Patient","id":"1","name":[{"family":"Smith"}],
	  "contained":[{"resourceType":"RelatedPerson","id":"c","birthDate":"1950-01-02","name":[{"text":"Mary Smith"}]}]},
	  "search":{"mode":"match"}}]}`
	out, err := JSON([]byte(b))
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if strings.Contains(s, "Smith") || strings.Contains(s, "01-02") {
		t.Errorf("PHI left in %s", s)
	}
	for _, kept := range []string{`"fullUrl":"https://ehr/fhir/Patient/1"`, `"mode":"match"`, `"relation":"next"`, `"birthDate":"1950-##-##"`, `"family":"Xxxxx"`} {
		if !strings.Contains(s, kept) {
			t.Errorf("lacks %s: %s", kept, s)
		}
	}
}

func TestUnknownResourceTypeMaskedWhole(t *testing.T) {
	out, err := JSON([]byte(`{"resourceType":"Nope","id":"x","name":"Jane","code":"abc","n":3}`))
	if err != nil {
		t.Fatal(err)
	}
	if s := string(out); !strings.Contains(s, `"name":"Xxxx"`) || !strings.Contains(s, `"id":"x"`) || !strings.Contains(s, `"n":3`) {
		t.Errorf("got %s", s)
	}
	if _, err := JSON([]byte(`[1]`)); err == nil {
		t.Error("an array is not a resource")
	}
}

func TestPickerExamples(t *testing.T) {
	set, err := mapping.Load(profiles.FS, "generic", "")
	if err != nil {
		t.Fatal(err)
	}
	in := `{"resourceType":"Patient","id":"p1","gender":"F",
	  "name":[{"family":"Public","given":["Jane"]}],
	  "telecom":[{"system":"email","value":"a@b.org"},{"system":"phone","value":"(469) 555-0100"}],
	  "birthDate":"1987-04-12",
	  "address":[{"line":["1  Main   St"],"city":"Dallas","state":"texas","postalCode":"752011234"}]}`
	out, rep, err := set.Map(context.Background(), []byte(in), mapping.MapOptions{KeepValues: true})
	if err != nil {
		t.Fatal(err)
	}
	exs, err := NewPicker(set).Pick(context.Background(), out, rep, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range exs {
		got[e.Rule] = e.Value
		if strings.Contains(e.Value, "Public") || strings.Contains(e.Value, "Jane") || strings.Contains(e.Value, "555") || strings.Contains(e.Value, "Dallas") {
			t.Errorf("%s: example holds PHI: %s", e.Rule, e.Value)
		}
	}
	want := map[string]string{
		"patient.gender":        "female",
		"patient.birthDate":     "1987-##-##",
		"patient.telecom.phone": "+###########",
	}
	for rule, w := range want {
		if got[rule] != w {
			t.Errorf("%s: example %q, want %q (all: %v)", rule, got[rule], w, got)
		}
	}
	for _, rule := range []string{"patient.name.parts", "patient.address"} {
		if got[rule] == "" {
			t.Errorf("no example for %s (all: %v)", rule, got)
		}
	}
	if !strings.Contains(got["patient.address"], `"state":"TX"`) || !strings.Contains(got["patient.address"], `"postalCode":"#####-####"`) {
		t.Errorf("address example %s does not show the cleaned state and ZIP", got["patient.address"])
	}
	if _, ok := got["resource.prune"]; ok {
		t.Error("a whole-resource rule got an example")
	}
	// want filters.
	exs, _ = NewPicker(set).Pick(context.Background(), out, rep, func(e mapping.ElementResult) bool { return e.Rule == "patient.gender" })
	if len(exs) != 1 || exs[0].Rule != "patient.gender" {
		t.Errorf("filtered pick gave %v", exs)
	}
}

func TestElementExpr(t *testing.T) {
	cases := []struct {
		e    mapping.ElementResult
		want string
	}{
		{mapping.ElementResult{Each: "telecom.where(system = 'phone')", Index: 1, Target: "value"}, "(telecom.where(system = 'phone'))[1].value"},
		{mapping.ElementResult{Each: "name", Index: 0, Target: "$this"}, "(name)[0]"},
		{mapping.ElementResult{Index: -1, Target: "gender"}, "gender"},
		{mapping.ElementResult{Index: -1, Target: "$this"}, ""},
		{mapping.ElementResult{Each: "name", Index: -1, Target: "$this"}, ""},
	}
	for _, c := range cases {
		if got := elementExpr(c.e); got != c.want {
			t.Errorf("elementExpr(%+v) = %q, want %q", c.e, got, c.want)
		}
	}
}
