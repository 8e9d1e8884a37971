package searchparam

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/testutil/repo"
)

// sharedPath returns ../shared/<rel>, skipping the test when it is absent.
func sharedPath(t testing.TB, rel string) string { return repo.Shared(t, rel) }

// oracleResource reads an Oracle Health example; entries are unwrapped.
func oracleResource(t testing.TB, name string) (string, []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sharedPath(t, "fixtures/vendors/oracle-health"), name))
	if err != nil {
		t.Fatal(err)
	}
	var probe struct {
		ResourceType string          `json:"resourceType"`
		Resource     json.RawMessage `json:"resource"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		t.Fatal(err)
	}
	if len(probe.Resource) > 0 {
		b = probe.Resource
		if err := json.Unmarshal(b, &probe); err != nil {
			t.Fatal(err)
		}
	}
	return probe.ResourceType, b
}

// entryStrings renders entries as "name=value" (dates as name=lo..hi) for comparisons.
func entryStrings(es []Entry) []string {
	var out []string
	for _, e := range es {
		switch e.Type {
		case Date:
			hi := e.High.UTC().Format(time.RFC3339Nano)
			if e.High.Equal(MaxTime()) {
				hi = "max"
			}
			lo := e.Low.UTC().Format(time.RFC3339Nano)
			if e.Low.IsZero() {
				lo = "min"
			}
			out = append(out, e.Name+"="+lo+".."+hi)
		case String:
			out = append(out, e.Name+"="+e.Value+"|exact="+e.Exact)
		default:
			out = append(out, e.Name+"="+e.Value)
		}
	}
	sort.Strings(out)
	return out
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestExtractOracleExamples(t *testing.T) {
	tests := []struct {
		file    string
		want    []string
		notWant []string
	}{
		{
			file: "r4_patient_entry.json",
			want: []string{
				"_id=|12724067",
				"_lastUpdated=2020-07-06T21:21:22Z..2020-07-06T21:21:22.000999999Z",
				"identifier=urn:oid:2.16.840.1.113883.6.1000|6931",
				"family=smart|exact=SMART",
				"given=joe|exact=JOE",
				"given=stephen|exact=STEPHEN",
				"name=smart, joe|exact=SMART, JOE",
				"name=allen|exact=ALLEN",
				"birthdate=1976-04-29T00:00:00Z..1976-04-29T23:59:59.999999999Z",
				"gender=|male",
				"phone=|8168888886",
				"email=|joesmart@yopmail.com",
				"telecom=|8168888886",
				"telecom=|joesmart@yopmail.com",
				"address-postalcode=64116|exact=64116",
				"address-city=kansas city|exact=Kansas city",
				"address=jackson|exact=Jackson",
				"address=12345 main st\\nkansas city, mo 64116\\nus|exact=12345 Main St\\nKansas city, MO 64116\\nUS",
			},
			notWant: []string{
				"phone=|joesmart@yopmail.com",
				"email=|8168888886",
				"name=official|exact=official", // HumanName.use is not searchable text
			},
		},
		{
			file: "r4_observation_entry.json",
			want: []string{
				"patient=Patient/12724066",
				"subject=Patient/12724066",
				"encounter=Encounter/97953477",
				"category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
				"code=http://loinc.org|8328-7",
				"status=|final",
				"date=2020-07-06T21:11:00Z..2020-07-06T21:11:00.000999999Z",
			},
		},
		{
			file: "r4_condition_entry.json",
			want: []string{
				"patient=Patient/12724066",
				"clinical-status=http://terminology.hl7.org/CodeSystem/condition-clinical|resolved",
				"category=http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item",
				"code=http://snomed.info/sct|77386006",
				"onset-date=2019-06-12T00:00:00Z..2019-06-12T23:59:59.999999999Z",
			},
		},
		{
			file: "r4_encounter.json",
			want: []string{
				"patient=Patient/12724066",
				"status=|finished",
				"class=http://terminology.hl7.org/CodeSystem/v3-ActCode|IMP",
				"date=2019-12-26T15:38:02Z..2020-01-07T06:00:00.000999999Z",
			},
		},
		{
			file: "r4_document_reference.json",
			want: []string{
				"patient=Patient/12769853",
				"encounter=Encounter/97966172",
				"status=|current",
				"date=2022-07-07T09:43:56Z..2022-07-07T09:43:56.999999999Z",
				"category=http://terminology.hl7.org/CodeSystem/data-absent-reason|unknown",
			},
		},
		{
			file: "r4_slot_entry.json",
			want: []string{
				"schedule=Schedule/4047611-32216049-61518614-0",
				"status=|free",
				"start=2017-01-23T06:00:00Z..2017-01-23T06:00:00.999999999Z",
			},
		},
		{
			file: "r4_schedule_entry.json",
			want: []string{"actor=Practitioner/593923"},
		},
		{
			file: "r4_appointment_entry.json",
			want: []string{
				"location=Location/32216049",
				"actor=Location/32216049",
				"status=|cancelled",
				"service-type=http://snomed.info/sct|394576009",
				"date=2020-01-23T22:10:00Z..2020-01-23T22:10:00.999999999Z",
			},
			notWant: []string{"patient=Location/32216049", "practitioner=Location/32216049"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			rt, body := oracleResource(t, tc.file)
			es, err := Extract(rt, body)
			if err != nil {
				t.Fatal(err)
			}
			got := entryStrings(es)
			for _, w := range tc.want {
				if !has(got, w) {
					t.Errorf("missing entry %q\ngot:\n  %s", w, strings.Join(got, "\n  "))
				}
			}
			for _, w := range tc.notWant {
				if has(got, w) {
					t.Errorf("unexpected entry %q", w)
				}
			}
			seen := map[string]bool{}
			for _, g := range got {
				if seen[g] {
					t.Errorf("duplicate entry %q", g)
				}
				seen[g] = true
			}
		})
	}
}

const appointmentParticipants = `{"resourceType":"Appointment","id":"a1","status":"booked",
	 "start":"2024-03-01T09:00:00-05:00","end":"2024-03-01T09:30:00-05:00",
	 "participant":[
	  {"actor":{"reference":"Patient/p1"},"status":"accepted"},
	  {"actor":{"reference":"https://ehr.example/fhir/Practitioner/dr9/_history/3"},"status":"accepted"},
	  {"actor":{"reference":"#contained"},"status":"accepted"}]}`

func TestExtractAppointmentParticipants(t *testing.T) {
	es, err := Extract("Appointment", []byte(appointmentParticipants))
	if err != nil {
		t.Fatal(err)
	}
	got := entryStrings(es)
	for _, w := range []string{"patient=Patient/p1", "practitioner=Practitioner/dr9", "actor=Patient/p1", "actor=Practitioner/dr9",
		"date=2024-03-01T14:00:00Z..2024-03-01T14:00:00.999999999Z"} {
		if !has(got, w) {
			t.Errorf("missing %q in %v", w, got)
		}
	}
	for _, g := range got {
		if strings.Contains(g, "contained") {
			t.Errorf("contained reference indexed: %q", g)
		}
		if strings.HasPrefix(g, "patient=Practitioner") || strings.HasPrefix(g, "practitioner=Patient") {
			t.Errorf("reference indexed under the wrong target: %q", g)
		}
	}
}

var polymorphicCases = []struct {
	rt, body string
	want     []string
}{
	{"Observation", `{"resourceType":"Observation","effectivePeriod":{"start":"2021-05-01"},"valueString":"Élevé"}`,
		[]string{"date=2021-05-01T00:00:00Z..max", "value-string=eleve|exact=Élevé"}},
	{"Observation", `{"resourceType":"Observation","effectiveInstant":"2021-05-01T10:00:00.5+02:00","valueDateTime":"2021"}`,
		[]string{"date=2021-05-01T08:00:00.5Z..2021-05-01T08:00:00.599999999Z", "value-date=2021-01-01T00:00:00Z..2021-12-31T23:59:59.999999999Z"}},
	{"Observation", `{"resourceType":"Observation","effectiveTiming":{"event":["2020-02","2020-03-04"]}}`,
		[]string{"date=2020-02-01T00:00:00Z..2020-02-29T23:59:59.999999999Z", "date=2020-03-04T00:00:00Z..2020-03-04T23:59:59.999999999Z"}},
	{"Condition", `{"resourceType":"Condition","onsetPeriod":{"end":"2019-12-31"}}`,
		[]string{"onset-date=min..2019-12-31T23:59:59.999999999Z"}},
	{"Schedule", `{"resourceType":"Schedule","active":true,"planningHorizon":{"start":"2024-01-01","end":"2024-01-31"}}`,
		[]string{"active=|true", "date=2024-01-01T00:00:00Z..2024-01-31T23:59:59.999999999Z"}},
	{"Encounter", `{"resourceType":"Encounter","participant":[{"individual":{"reference":"Practitioner/x"}},{"individual":{"reference":"RelatedPerson/y"}}]}`,
		[]string{"practitioner=Practitioner/x", "participant=Practitioner/x", "participant=RelatedPerson/y"}},
	{"Coverage", `{"resourceType":"Coverage","beneficiary":{"reference":"Patient/7"},"payor":[{"reference":"Organization/ins"}],"status":"active"}`,
		[]string{"patient=Patient/7", "beneficiary=Patient/7", "payor=Organization/ins", "status=|active"}},
	{"Observation", `{"resourceType":"Observation","subject":{"reference":"urn:uuid:abc-1"}}`,
		[]string{"patient=/abc-1", "subject=/abc-1"}},
	{"Observation", `{"resourceType":"Observation","subject":{"reference":"abc-2","type":"Patient"}}`,
		[]string{"patient=Patient/abc-2"}},
	{"Patient", `{"resourceType":"Patient","name":[{"family":"M\u00fcller","given":["Zo\u00eb"]}]}`,
		[]string{"family=muller|exact=Müller", "given=zoe|exact=Zoë"}},
	{"Basic", `{"resourceType":"Basic","id":"b1","meta":{"lastUpdated":"2022-01-01T00:00:00Z"}}`,
		[]string{"_id=|b1", "_lastUpdated=2022-01-01T00:00:00Z..2022-01-01T00:00:00.999999999Z"}},
}

func TestExtractPolymorphicAndPeriods(t *testing.T) {
	for _, tc := range polymorphicCases {
		es, err := Extract(tc.rt, []byte(tc.body))
		if err != nil {
			t.Fatalf("%s: %v", tc.body, err)
		}
		got := entryStrings(es)
		for _, w := range tc.want {
			if !has(got, w) {
				t.Errorf("%s: missing %q\ngot %v", tc.body, w, got)
			}
		}
	}
}

var malformedPatients = []string{
	``,
	`[]`,
	`{"resourceType":"Patient","name":[{"family":"x"}`,
	`{"resourceType":"Patient","name":[{"family":"x}]}`,
	`{"resourceType":"Patient" "id":"1"}`,
	`{"resourceType":"Observation","id":"1"}`, // wrong type
}

func TestExtractErrors(t *testing.T) {
	for _, body := range malformedPatients {
		if _, err := Extract("Patient", []byte(body)); err == nil {
			t.Errorf("Extract(%q): no error", body)
		}
	}
}

// TestExtractSynthea runs extraction over every resource of the Synthea
// bundles: nothing may fail, and clinical resources must point at a patient.
func TestExtractSynthea(t *testing.T) {
	dir := sharedPath(t, "testdata/synthea-r4")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Skipf("no synthea bundles in %s", dir)
	}
	if testing.Short() {
		files = files[:3]
	}
	counts := map[string]int{}
	bundles := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var bundle struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(b, &bundle); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(filepath.Base(f), "Information") {
			bundles++ // one bundle per patient; the others hold a Group and practitioners
		}
		for _, e := range bundle.Entry {
			var h struct{ ResourceType, ID string }
			if err := json.Unmarshal(e.Resource, &h); err != nil {
				t.Fatal(err)
			}
			es, err := Extract(h.ResourceType, e.Resource)
			if err != nil {
				t.Fatalf("%s %s/%s: %v", filepath.Base(f), h.ResourceType, h.ID, err)
			}
			got := entryStrings(es)
			if !has(got, "_id=|"+h.ID) {
				t.Errorf("%s/%s: no _id entry", h.ResourceType, h.ID)
			}
			switch h.ResourceType {
			case "Observation", "Condition", "Encounter", "MedicationRequest":
				found := false
				for _, g := range got {
					if strings.HasPrefix(g, "patient=") {
						found = true
					}
				}
				if !found {
					t.Errorf("%s/%s: no patient entry: %v", h.ResourceType, h.ID, got)
				}
			case "Patient":
				if !strings.Contains(strings.Join(got, " "), "birthdate=") {
					t.Errorf("Patient/%s: no birthdate", h.ID)
				}
			}
			counts[h.ResourceType]++
		}
	}
	if counts["Patient"] != bundles || bundles == 0 {
		t.Errorf("patients: got %d, want one per patient bundle (%d)", counts["Patient"], bundles)
	}
}

func TestDateRange(t *testing.T) {
	tests := []struct {
		in     string
		lo, hi string
		ok     bool
	}{
		{"2020", "2020-01-01T00:00:00Z", "2020-12-31T23:59:59.999999999Z", true},
		{"2020-02", "2020-02-01T00:00:00Z", "2020-02-29T23:59:59.999999999Z", true},
		{"2021-02-28", "2021-02-28T00:00:00Z", "2021-02-28T23:59:59.999999999Z", true},
		{"2021-02-29", "", "", false},
		{"2020-01-02T03:04", "2020-01-02T03:04:00Z", "2020-01-02T03:04:59.999999999Z", true},
		{"2020-01-02T03:04:05Z", "2020-01-02T03:04:05Z", "2020-01-02T03:04:05.999999999Z", true},
		{"2020-01-02T03:04:05.12Z", "2020-01-02T03:04:05.12Z", "2020-01-02T03:04:05.129999999Z", true},
		{"2020-01-02T03:04:05-05:30", "2020-01-02T08:34:05Z", "2020-01-02T08:34:05.999999999Z", true},
		{"2020-13", "", "", false},
		{"20x0", "", "", false},
		{"2020-01-02T25:00:00Z", "", "", false},
		{"2020-01-02T03:04:05+0500", "", "", false},
		{"2020-01-02 03:04", "", "", false},
	}
	for _, tc := range tests {
		lo, hi, ok := DateRange(tc.in)
		if ok != tc.ok {
			t.Errorf("DateRange(%q) ok=%v, want %v", tc.in, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		if g := lo.UTC().Format(time.RFC3339Nano); g != tc.lo {
			t.Errorf("DateRange(%q) lo=%s, want %s", tc.in, g, tc.lo)
		}
		if g := hi.UTC().Format(time.RFC3339Nano); g != tc.hi {
			t.Errorf("DateRange(%q) hi=%s, want %s", tc.in, g, tc.hi)
		}
	}
}

func TestFold(t *testing.T) {
	for in, want := range map[string]string{
		"smith": "smith", "SMITH": "smith", "José": "jose", "MÜLLER": "muller", "Straße": "strasse",
		"Łukasz": "lukasz", "Ørsted": "orsted", "Þór": "thor", "O'Brien": "o'brien", "Иван": "иван",
	} {
		if got := Fold(in); got != want {
			t.Errorf("Fold(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplitReference(t *testing.T) {
	tests := []struct{ in, typ, id string }{
		{"Patient/1", "Patient", "1"},
		{"http://x/fhir/Patient/1", "Patient", "1"},
		{"Patient/1/_history/2", "Patient", "1"},
		{"urn:uuid:abc", "", "abc"},
		{"abc", "", "abc"},
	}
	for _, tc := range tests {
		typ, id, ok := SplitReference(tc.in)
		if !ok || typ != tc.typ || id != tc.id {
			t.Errorf("SplitReference(%q) = %q %q %v", tc.in, typ, id, ok)
		}
	}
	for _, bad := range []string{"", "#c1", "patient/1", "Patient/"} {
		if _, _, ok := SplitReference(bad); ok {
			t.Errorf("SplitReference(%q) accepted", bad)
		}
	}
}

func TestDefsCoverage(t *testing.T) {
	required := map[string][]string{
		"Patient":            {"identifier", "name", "family", "given", "birthdate", "gender", "phone", "email", "telecom", "address-postalcode"},
		"Practitioner":       {"identifier", "name", "family", "given"},
		"Organization":       {"identifier", "name"},
		"Location":           {"identifier", "name", "organization"},
		"Appointment":        {"identifier", "patient", "practitioner", "location", "actor", "date", "status", "service-type"},
		"Schedule":           {"actor", "active", "date"},
		"Slot":               {"schedule", "start", "status"},
		"Coverage":           {"identifier", "patient", "beneficiary", "payor", "status"},
		"Encounter":          {"identifier", "patient", "subject", "date", "status", "class", "practitioner"},
		"Condition":          {"patient", "subject", "clinical-status", "category", "code", "onset-date", "encounter"},
		"Observation":        {"patient", "subject", "category", "code", "date", "status", "encounter"},
		"AllergyIntolerance": {"patient", "clinical-status", "code"},
		"MedicationRequest":  {"patient", "subject", "status", "intent", "authoredon", "encounter"},
		"DocumentReference":  {"patient", "subject", "type", "category", "date", "status", "encounter", "identifier"},
		"DiagnosticReport":   {"patient", "subject", "identifier", "code", "category", "status", "date", "encounter", "result"},
	}
	if got := len(ResourceTypes()); got != len(required) {
		t.Errorf("ResourceTypes: %d types, want %d", got, len(required))
	}
	for rt, names := range required {
		for _, n := range append(names, "_id", "_lastUpdated") {
			d, ok := Lookup(rt, n)
			if !ok {
				t.Errorf("%s: no parameter %q", rt, n)
				continue
			}
			if d.Doc == "" || len(d.Paths) == 0 || d.Type == 0 {
				t.Errorf("%s.%s: incomplete definition %+v", rt, n, d)
			}
		}
	}
	if _, ok := Lookup("Binary", "_id"); !ok {
		t.Error("types without definitions must still have _id")
	}
	// Defs returns a copy.
	ds := Defs("Patient")
	ds[0].Name = "changed"
	ds[0].Paths[0] = "changed"
	if d := Defs("Patient")[0]; d.Name == "changed" || d.Paths[0] == "changed" {
		t.Error("Defs exposes internal state")
	}
	d, _ := Lookup("Patient", "family")
	d.Paths[0] = "changed"
	if d, _ := Lookup("Patient", "family"); d.Paths[0] != "name.family" {
		t.Error("Lookup exposes internal state")
	}
}

// typicalPatient is a ~1.5 KB Patient shaped like what the simulator and
// US Core servers produce.
const typicalPatient = `{"resourceType":"Patient","id":"pat-000123","meta":{"versionId":"3","lastUpdated":"2024-05-02T14:03:11.482Z","profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
"extension":[{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race","extension":[{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2106-3","display":"White"}},{"url":"text","valueString":"White"}]},
{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex","valueCode":"F"}],
"identifier":[{"use":"usual","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR","display":"Medical record number"}]},"system":"urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14","value":"E1234567"},
{"use":"official","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"SS"}]},"system":"http://hl7.org/fhir/sid/us-ssn","value":"999-45-6789"}],
"active":true,
"name":[{"use":"official","family":"Hernández","given":["María","Luisa"],"prefix":["Mrs."]},{"use":"maiden","family":"Gómez","given":["María"]}],
"telecom":[{"system":"phone","value":"555-201-3344","use":"home"},{"system":"phone","value":"555-201-9988","use":"mobile"},{"system":"email","value":"maria.hernandez@example.com"}],
"gender":"female","birthDate":"1984-07-19",
"address":[{"use":"home","line":["4821 Oak Street","Apt 12"],"city":"Springfield","state":"IL","postalCode":"62704","country":"US"}],
"maritalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"M","display":"Married"}]},
"communication":[{"language":{"coding":[{"system":"urn:ietf:bcp:47","code":"es","display":"Spanish"}]},"preferred":true}],
"generalPractitioner":[{"reference":"Practitioner/prac-0042","display":"Dr. Alan Chu"}],
"managingOrganization":{"reference":"Organization/org-1"}}`

func TestTypicalPatient(t *testing.T) {
	es, err := Extract("Patient", []byte(typicalPatient))
	if err != nil {
		t.Fatal(err)
	}
	got := entryStrings(es)
	for _, w := range []string{"family=hernandez|exact=Hernández", "given=maria|exact=María", "name=mrs.|exact=Mrs.",
		"phone=|555-201-3344", "phone=|555-201-9988", "email=|maria.hernandez@example.com", "general-practitioner=Practitioner/prac-0042",
		"organization=Organization/org-1", "active=|true", "identifier=http://hl7.org/fhir/sid/us-ssn|999-45-6789"} {
		if !has(got, w) {
			t.Errorf("missing %q in %v", w, got)
		}
	}
	if n := strings.Count(strings.Join(got, "\n"), "given=maria|"); n != 1 {
		t.Errorf("given=maria appears %d times, want 1 (dedupe)", n)
	}
}

func BenchmarkExtractPatient(b *testing.B) {
	body := []byte(typicalPatient)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Extract("Patient", body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExtractOracleObservation(b *testing.B) {
	_, body := oracleResource(b, "r4_observation_entry.json")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Extract("Observation", body); err != nil {
			b.Fatal(err)
		}
	}
}

// onePassCases are bodies aimed at the places where Extract reads a value
// differently from the extractor it replaced (oldExtract in
// extract_old_test.go): values read in one pass (codings, references,
// periods) holding members of unexpected kinds, scalars with quotes or
// brackets in them, escapes, whitespace, repeated members, truncations.
var onePassCases = []struct{ rt, body string }{
	{"Observation", "{\n  \"resourceType\" : \"Observation\",\n\t\"id\" :\"o1\" ,\r\n \"code\" : { \"coding\" : [ { \"system\" : \"http://loinc.org\" , \"code\" : \"8867-4\" } ] , \"text\" : \"HR\" } ,\n \"subject\" : { \"reference\" : \"Patient/p1\" , \"display\" : \"x\" } ,\n \"effectivePeriod\" : { \"start\" : \"2020-01-01\" , \"end\" : \"2020-02\" } \n}\n"},
	{"Observation", `{"resourceType":"Observation","code":{"coding":[{"system":"s","code":"c","userSelected":tr"ue}]}}`},
	{"Observation", `{"resourceType":"Observation","code":{"coding":[{"system":"s","code":"c","x":1{}]}]},"status":"final"}`},
	{"Observation", `{"resourceType":"Observation","code":{"coding":[{"system":"s","code":"c","x":1[]}]},"status":"final"}`},
	{"Observation", `{"resourceType":"Observation","code":{"coding":[{"system":"s","code":"c","x":1[}]}],"status":"final"}`},
	{"Observation", `{"resourceType":"Observation","code":{"coding":["x",1,null,{"code":"a"},[1,2],{}]},"status":"final"}`},
	{"Observation", `{"resourceType":"Observation","code":{"coding":{"system":"s","code":"c"},"system":"t","code":"d"}}`},
	{"Observation", `{"resourceType":"Observation","code":{"system":"s","code":"a","code":"b","value":"v"}}`},
	{"Observation", `{"resourceType":"Observation","code":{"coding":[{"system":"s","system":"t","code":"","code":"d"}]}}`},
	{"Observation", `{"resourceType":"Observation","code":{"coding":[{"system":"http:\/\/x","code":"a\"b"}]}}`},
	{"Observation", `{"resourceType":"Observation","code":{"coding":[{"system":"s","code":"a\qb"}]}}`},
	{"Observation", `{"resourceType":"Observation","code":{"coding":[{"system":"s","code":"c"}],"text":"x"x}}`},
	{"Observation", `{"resourceType":"Observation","code":{"coding":[{"system":"s","code":"c"}]]},"status":"final"}`},
	{"Observation", `{"resourceType":"Observation","code":{"coding":[{"system":"s","code":"c"},]},"status":"final"}`},
	{"Observation", `{"resourceType":"Observation","code":{"coding":[{"system":"s","code":"c"}],},"status":"final"}`},
	{"Observation", `{"resourceType":"Observation","code":{"coding":[{"system":"s","code":"c"}] "text":"t"},"status":"final"}`},
	{"Observation", `{"resourceType":"Observation","code":{"coding":[{"system":"s","code":"c"}],"text":}}`},
	{"Observation", `{"resourceType":"Observation","code":{"coding":[{"system":"s","code":"c"}],"n":1,"m":-2.5e+3,"t":true,"f":false,"z":null}}`},
	{"Observation", `{"resourceType":"Observation","code":{"x":1:2,"coding":[{"code":"c"}]}}`},
	{"Observation", `{"resourceType":"Observation","code":{"x":1\"2,"coding":[{"code":"c"}]}}`},
	{"Observation", `{"resourceType":"Observation","code":{}, "category":[{}], "status":""}`},
	{"Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/1","type":"Patient","identifier":{"value":"x","period":{"start":"2020"}}}}`},
	{"Observation", `{"resourceType":"Observation","subject":{"reference":"abc","type":"Pat\u0069ent"}}`},
	{"Observation", `{"resourceType":"Observation","subject":{"type":"Group","reference":"abc","type":"Patient"}}`},
	{"Observation", `{"resourceType":"Observation","subject":{"reference":"abc","type":"bad\q"}}`},
	{"Observation", `{"resourceType":"Observation","subject":{"reference":"abc","type":5}}`},
	{"Observation", `{"resourceType":"Observation","subject":{"reference":"urn:uuid:u1"}}`},
	{"Observation", `{"resourceType":"Observation","subject":{"reference":""}}`},
	{"Observation", `{"resourceType":"Observation","subject":{"display":"x"}}`},
	{"Observation", `{"resourceType":"Observation","subject":{"reference":1,"reference":"Patient/2"}}`},
	{"Observation", `{"resourceType":"Observation","subject":{"reference":"#c"}}`},
	{"Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/1","reference":"Patient/2"}}`},
	{"Observation", `{"resourceType":"Observation","subject":{"reference":"Pat\"ient/1"}}`},
	{"Observation", `{"resourceType":"Observation","subject":{"reference":"Pat\qient/1"}}`},
	{"Observation", `{"resourceType":"Observation","subject":{"reference":"Patient\/1"}}`},
	{"Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/1" "display":"x"}}`},
	{"Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/1","x":tr{ue}}}`},
	{"Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/1","x":t"rue"}}`},
	{"Observation", `{"resourceType":"Observation","subject":{"reference":"Location/1"},"performer":[{"reference":"Practitioner/1"},{"reference":"Organization/o"},"x",7]}`},
	{"Observation", `{"resourceType":"Observation","subject":"Patient/1"}`},
	{"Observation", `{"resourceType":"Observation","subject":[[{"reference":"Patient/1"}],[]]}`},
	{"Observation", `{"resourceType":"Observation","subject":{"reference":"http://x/fhir/Patient/9/_history/2"}}`},
	{"Observation", `{"resourceType":"Observation","effectivePeriod":{"start":"bad","end":"2020"}}`},
	{"Observation", `{"resourceType":"Observation","effectivePeriod":{"end":"2020","start":5,"start":"2019"}}`},
	{"Observation", `{"resourceType":"Observation","effectivePeriod":{"start":"2019\u002d01"}}`},
	{"Observation", `{"resourceType":"Observation","effectiveTiming":{"event":["2020",5,"x",{},"2021-02-03T04:05:06.7+01:00"],"repeat":{"count":1}}}`},
	{"Observation", `{"resourceType":"Observation","effectiveTiming":{"event":"2020"}}`},
	{"Observation", `{"resourceType":"Observation","effectiveDateTime":"2020-02-30","valueQuantity":{"value":1.5e3,"unit":"x"}}`},
	{"Observation", `{"resourceType":"Observation","valuePeriod":{"start":"2020-01-01T00:00:00Z"},"valueString":"ÉLEVÉ \u00e9"}`},
	{"Observation", `{"resourceType":"Observation","valueCodeableConcept":{"coding":[{"code":"x"}]},"valueBoolean":true}`},
	{"Observation", `{"resourceType":"Observation","meta":{"lastUpdated":"2020-01-01T00:00:00+14:00","tag":[]},"id":"x"}`},
	{"Observation", `{"resourceType":"Observation","id":5}`},
	{"Observation", `{"resourceType":"Observation","id":{"a":1}}`},
	{"Observation", `{"resourceType":"Observation","id":"a\\b"}`},
	{"Observation", `{"resourceType":"Observation","resourceType":"Patient"}`},
	{"Observation", `{"resourceType":"Patient","resourceType":"Observation"}`},
	{"Observation", `{"resourceType":5}`},
	{"Observation", `{"resourceType":"Observation","status":`},
	{"Observation", `{"resourceType":"Observation","status":  `},
	{"Observation", `{"resourceType":`},
	{"Observation", `{"resourceType":"Observation","code":{"coding":[{"code":`},
	{"Observation", `{"resourceType":"Observation","code":{"coding":[`},
	{"Observation", `{"resourceType":"Observation","subject":{"reference":`},
	{"Observation", `{"resourceType":"Observation","other":`},
	{"Observation", `{"resourceType":"Observation"}trailing`},
	{"Observation", `  {"resourceType":"Observation"}  `},
	{"Encounter", `{"resourceType":"Encounter","participant":[{"individual":{"reference":"Practitioner/x"},"period":{"start":"2020"}},{"individual":{"reference":"RelatedPerson/y"}}],"location":[{"location":{"reference":"Location/l"}}],"class":{"system":"s","code":"AMB"}}`},
	{"Appointment", `{"resourceType":"Appointment","participant":[{"actor":{"reference":"Patient/p"}},{"actor":{"reference":"Device/d","type":"Device"}},{"actor":{"reference":"d2","type":"Location"}}]}`},
	{"Patient", `{"resourceType":"Patient","name":[{"family":"O\"Brien","given":["A","A"]}],"telecom":[{"system":"phone","value":"1"},{"value":"2","system":"email"},{"system":"phone","value":"1"}],"address":[{"line":["1 Main"],"city":"X"}],"gender":"other","active":false,"identifier":[{"system":"s","value":"v"},{"value":"v","system":"s"}]}`},
	{"Patient", `{"resourceType":"Patient","telecom":[{"system":"phone","value":1},{"system":"email","value":"a\u0040b"}],"active":"true","birthDate":"1970"}`},
	{"DocumentReference", `{"resourceType":"DocumentReference","masterIdentifier":{"system":"s","value":"m"},"identifier":[{"value":"i"}],"context":{"encounter":[{"reference":"Encounter/e"}],"period":{"start":"2020-01-01T10:00:00Z"}},"content":[{"attachment":{"data":"` + longBase64 + `"}}],"date":"2020-01-01T10:00:00.123456789Z"}`},
	{"Basic", `{"resourceType":"Basic","id":"b","meta":{"lastUpdated":"2020"}}`},
}

// longBase64 is a long string value, past the length at which the string
// scanner changes method, with an escaped quote and backslashes near its
// end.
var longBase64 = strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=", 12) + `\"\\\\x`

// extractInputs are the bodies of the tests above, with their types.
func extractInputs() []struct{ rt, body string } {
	in := []struct{ rt, body string }{{"Patient", typicalPatient}, {"Appointment", appointmentParticipants}}
	for _, c := range polymorphicCases {
		in = append(in, struct{ rt, body string }{c.rt, c.body})
	}
	for _, b := range malformedPatients {
		in = append(in, struct{ rt, body string }{"Patient", b})
	}
	return append(in, onePassCases...)
}

// sharedResources returns every resource of the vendor fixtures and
// Synthea bundles in ../shared (the files' top-level resources, bundle
// entries and contained resources), or none when it is absent (CI always
// has it).
func sharedResources(t *testing.T) []struct{ rt, body string } {
	root, err := repo.Root()
	if err != nil {
		t.Fatal(err)
	}
	var out []struct{ rt, body string }
	var walk func(raw json.RawMessage)
	walk = func(raw json.RawMessage) {
		var r struct {
			ResourceType string
			Entry        []struct{ Resource json.RawMessage }
			Contained    []json.RawMessage
		}
		if json.Unmarshal(raw, &r) != nil || r.ResourceType == "" {
			return
		}
		out = append(out, struct{ rt, body string }{r.ResourceType, string(raw)})
		for _, e := range r.Entry {
			walk(e.Resource)
		}
		for _, c := range r.Contained {
			walk(c)
		}
	}
	for _, dir := range []string{"fixtures/vendors", "testdata/synthea-r4"} {
		_ = filepath.WalkDir(filepath.Join(root, "..", "shared", dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			walk(b)
			return nil
		})
	}
	return out
}

// TestExtractMatchesOld compares Extract with the extractor it replaced
// on the bodies of the tests above, each also asked for as every other
// type and cut short at every byte, and on every resource of the vendor
// fixtures and Synthea bundles in ../shared.
func TestExtractMatchesOld(t *testing.T) {
	types := append(ResourceTypes(), "Basic")
	for _, c := range extractInputs() {
		if d := DiffFromOld(c.rt, []byte(c.body)); d != "" {
			t.Errorf("%s %s: %s", c.rt, c.body, d)
		}
		for _, rt := range types {
			if d := DiffFromOld(rt, []byte(c.body)); d != "" {
				t.Errorf("as %s: %s: %s", rt, c.body, d)
			}
		}
		for k := range len(c.body) {
			if d := DiffFromOld(c.rt, []byte(c.body[:k])); d != "" {
				t.Errorf("%s %q: %s", c.rt, c.body[:k], d)
			}
		}
	}
	shared := sharedResources(t)
	for _, c := range shared {
		if d := DiffFromOld(c.rt, []byte(c.body)); d != "" {
			t.Errorf("%s %s: %s", c.rt, c.body, d)
		}
	}
	t.Logf("%d test bodies, %d resources from ../shared", len(extractInputs()), len(shared))
}

// TestExtractOnePassCasesIndex checks that onePassCases reach the
// extraction code, not only its error paths.
func TestExtractOnePassCasesIndex(t *testing.T) {
	ok, entries := 0, 0
	for _, c := range onePassCases {
		es, err := Extract(c.rt, []byte(c.body))
		if err == nil {
			ok++
			entries += len(es)
		}
	}
	if ok < len(onePassCases)/2 || entries < ok {
		t.Errorf("%d of %d bodies extracted, %d entries", ok, len(onePassCases), entries)
	}
}

// FuzzExtractMatchesOld compares Extract with the extractor it replaced
// on any body (go test -fuzz FuzzExtractMatchesOld).
func FuzzExtractMatchesOld(f *testing.F) {
	for _, c := range onePassCases {
		f.Add(c.rt, []byte(c.body))
	}
	f.Add("Patient", []byte(typicalPatient))
	f.Add("Appointment", []byte(appointmentParticipants))
	for _, c := range polymorphicCases {
		f.Add(c.rt, []byte(c.body))
	}
	f.Fuzz(func(t *testing.T, rt string, body []byte) {
		if d := DiffFromOld(rt, body); d != "" {
			t.Fatalf("%s %q: %s", rt, body, d)
		}
	})
}

// TestStringEndMatchesOld compares the string scanner with the one it
// replaced (a vector search for the quote, then a count of the backslashes
// before it) on strings of every length up to past the switch to the
// vector search, with quotes and runs of backslashes at every position.
func TestStringEndMatchesOld(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const alphabet = `ab"\\\\\\é{`
	for range 50000 {
		n := rng.IntN(300)
		b := make([]byte, n)
		for k := range b {
			if rng.IntN(8) == 0 {
				b[k] = alphabet[rng.IntN(len(alphabet))]
			} else {
				b[k] = 'a' + byte(rng.IntN(26))
			}
		}
		i := 0
		if n > 0 {
			i = rng.IntN(n + 1)
		}
		q, esc := stringEnd(b, i)
		wq := oldClosingQuote(b, i)
		if q != wq {
			t.Fatalf("stringEnd(%q, %d) = %d, want %d", b, i, q, wq)
		}
		if q >= 0 {
			if wesc := bytes.IndexByte(b[i:q], '\\') >= 0; esc != wesc {
				t.Fatalf("stringEnd(%q, %d) esc = %v, want %v", b, i, esc, wesc)
			}
		}
	}
}

// TestDateRangeMatchesOld compares DateRange with the one it replaced
// (time.Date and AddDate) on every day of years around the calendar's
// corner cases, at every precision, and on random strings of date
// characters.
func TestDateRangeMatchesOld(t *testing.T) {
	check := func(s string) {
		lo, hi, ok := DateRange(s)
		wlo, whi, wok := oldDateRange(s)
		// == on time.Time compares the representation, not only the instant.
		if ok != wok || lo != wlo || hi != whi {
			t.Fatalf("DateRange(%q) = %v %v %v, want %v %v %v", s, lo, hi, ok, wlo, whi, wok)
		}
	}
	years := []int{0, 1, 3, 4, 99, 100, 399, 400, 1582, 1600, 1677, 1678, 1899, 1900, 1969, 1970, 1999, 2000, 2024, 2100, 2261, 2262, 9998, 9999}
	times := []string{"T00:00", "T23:59", "T12:30:45Z", "T00:00:00.1Z", "T23:59:60.999999999+14:00", "T01:02:03-12:30", "T10:00:00.123+05:45", "T24:00", "T10:60"}
	for _, y := range years {
		check(fmt.Sprintf("%04d", y))
		for m := 0; m <= 13; m++ {
			check(fmt.Sprintf("%04d-%02d", y, m))
			for d := 0; d <= 32; d++ {
				day := fmt.Sprintf("%04d-%02d-%02d", y, m, d)
				check(day)
				for _, tm := range times {
					check(day + tm)
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	const chars = "0123456789-:T.Z+ 0123456789"
	for range 50000 {
		b := []byte("2024-02-29T12:34:56.789+01:00")[:rng.IntN(30)]
		for range rng.IntN(4) {
			if len(b) > 0 {
				b[rng.IntN(len(b))] = chars[rng.IntN(len(chars))]
			}
		}
		check(string(b))
	}
}
