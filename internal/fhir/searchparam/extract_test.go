package searchparam

import (
	"encoding/json"
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

func TestExtractAppointmentParticipants(t *testing.T) {
	body := `{"resourceType":"Appointment","id":"a1","status":"booked",
	 "start":"2024-03-01T09:00:00-05:00","end":"2024-03-01T09:30:00-05:00",
	 "participant":[
	  {"actor":{"reference":"Patient/p1"},"status":"accepted"},
	  {"actor":{"reference":"https://ehr.example/fhir/Practitioner/dr9/_history/3"},"status":"accepted"},
	  {"actor":{"reference":"#contained"},"status":"accepted"}]}`
	es, err := Extract("Appointment", []byte(body))
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

func TestExtractPolymorphicAndPeriods(t *testing.T) {
	tests := []struct {
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
	for _, tc := range tests {
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

func TestExtractErrors(t *testing.T) {
	for _, body := range []string{
		``,
		`[]`,
		`{"resourceType":"Patient","name":[{"family":"x"}`,
		`{"resourceType":"Patient","name":[{"family":"x}]}`,
		`{"resourceType":"Patient" "id":"1"}`,
		`{"resourceType":"Observation","id":"1"}`, // wrong type
	} {
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
