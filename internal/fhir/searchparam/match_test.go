package searchparam

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/store"
)

func mustExtract(t *testing.T, rt, body string) []Entry {
	t.Helper()
	es, err := Extract(rt, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func TestMatch(t *testing.T) {
	patient := mustExtract(t, "Patient", typicalPatient)
	obs := mustExtract(t, "Observation", `{"resourceType":"Observation","id":"o1","status":"final",
		"subject":{"reference":"Patient/pat-000123"},
		"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}],"text":"Heart rate"},
		"effectiveDateTime":"2024-03-10T08:30:00Z"}`)
	enc := mustExtract(t, "Encounter", `{"resourceType":"Encounter","id":"e1","status":"finished",
		"period":{"start":"2024-03-10T08:00:00Z","end":"2024-03-12T17:00:00Z"}}`)
	untyped := mustExtract(t, "Observation", `{"resourceType":"Observation","subject":{"reference":"urn:uuid:pat-000123"}}`)
	sp := func(name, prefix string, values ...string) store.SearchParam {
		return store.SearchParam{Name: name, Prefix: prefix, Values: values}
	}
	tests := []struct {
		name    string
		entries []Entry
		p       store.SearchParam
		want    bool
	}{
		// strings: starts-with, case- and accent-insensitive
		{"family prefix", patient, sp("family", "", "Hern"), true},
		{"family folded", patient, sp("family", "", "hernandez"), true},
		{"family accented query", patient, sp("family", "", "HERNÁNDEZ"), true},
		{"family not infix", patient, sp("family", "", "nandez"), false},
		{"family OR", patient, sp("family", "", "smith", "gomez"), true},
		{"family exact", patient, sp("family:exact", "", "Hernández"), true},
		{"family exact case", patient, sp("family:exact", "", "hernández"), false},
		{"family exact accents", patient, sp("family:exact", "", "Hernandez"), false},
		{"family contains", patient, sp("family:contains", "", "NAND"), true},
		{"family contains no", patient, sp("family:contains", "", "xyz"), false},
		{"name covers given", patient, sp("name", "", "luisa"), true},
		{"address line", patient, sp("address", "", "4821 oak"), true},
		{"postalcode", patient, sp("address-postalcode", "", "627"), true},
		// tokens
		{"gender code", patient, sp("gender", "", "female"), true},
		{"gender no system", patient, sp("gender", "", "|female"), true},
		{"gender wrong", patient, sp("gender", "", "male"), false},
		{"identifier value", patient, sp("identifier", "", "E1234567"), true},
		{"identifier system|value", patient, sp("identifier", "", "http://hl7.org/fhir/sid/us-ssn|999-45-6789"), true},
		{"identifier wrong system", patient, sp("identifier", "", "http://other|999-45-6789"), false},
		{"identifier |value has system", patient, sp("identifier", "", "|999-45-6789"), false},
		{"identifier system|", patient, sp("identifier", "", "http://hl7.org/fhir/sid/us-ssn|"), true},
		{"identifier other system|", patient, sp("identifier", "", "http://nope|"), false},
		{"phone", patient, sp("phone", "", "555-201-9988"), true},
		{"email is not phone", patient, sp("phone", "", "maria.hernandez@example.com"), false},
		{"active bool", patient, sp("active", "", "true"), true},
		{"_id", patient, sp("_id", "", "pat-000123"), true},
		{"_id other", patient, sp("_id", "", "pat-000124"), false},
		{"code loinc", obs, sp("code", "", "http://loinc.org|8867-4"), true},
		{"code bare", obs, sp("code", "", "8867-4"), true},
		{"code case sensitive", obs, sp("code", "", "8867-4X"), false},
		// references
		{"patient typed", obs, sp("patient", "", "Patient/pat-000123"), true},
		{"patient bare id", obs, sp("patient", "", "pat-000123"), true},
		{"patient absolute", obs, sp("patient", "", "https://x/fhir/Patient/pat-000123"), true},
		{"patient other", obs, sp("patient", "", "Patient/zzz"), false},
		{"subject other type", obs, sp("subject", "", "Group/pat-000123"), false},
		{"untyped ref typed query", untyped, sp("patient", "", "Patient/pat-000123"), true},
		// dates: instant 2024-03-10T08:30:00Z (1 s range)
		{"date eq day", obs, sp("date", "", "2024-03-10"), true},
		{"date eq day prefix", obs, sp("date", "eq", "2024-03-10"), true},
		{"date eq other day", obs, sp("date", "", "2024-03-11"), false},
		{"date ne", obs, sp("date", "ne", "2024-03-11"), true},
		{"date gt", obs, sp("date", "gt", "2024-03-09"), true},
		{"date gt same day", obs, sp("date", "gt", "2024-03-10"), false},
		{"date ge same day", obs, sp("date", "ge", "2024-03-10"), true},
		{"date lt", obs, sp("date", "lt", "2024-03-11"), true},
		{"date lt same day", obs, sp("date", "lt", "2024-03-10"), false},
		{"date le same day", obs, sp("date", "le", "2024-03-10"), true},
		{"date sa", obs, sp("date", "sa", "2024-03-09"), true},
		{"date eb", obs, sp("date", "eb", "2024-03-11"), true},
		{"date eb same", obs, sp("date", "eb", "2024-03-10"), false},
		{"date ap", obs, sp("date", "ap", "2024-03"), true},
		{"date value prefix", obs, sp("date", "", "ge2024-03-10", "lt2000"), true},
		{"date minute", obs, sp("date", "", "2024-03-10T08:30"), true},
		// periods: encounter 2024-03-10T08 .. 2024-03-12T17
		{"period eq day inside", enc, sp("date", "", "2024-03-11"), false},
		{"period eq month", enc, sp("date", "", "2024-03"), true},
		{"period gt overlaps", enc, sp("date", "gt", "2024-03-11"), true},
		{"period lt overlaps", enc, sp("date", "lt", "2024-03-11"), true},
		{"period sa no", enc, sp("date", "sa", "2024-03-11"), false},
		{"period eb", enc, sp("date", "eb", "2024-03-13"), true},
		{"period ge after end", enc, sp("date", "ge", "2024-03-13"), false},
		// missing
		{"missing true no", patient, sp("deceased:missing", "", "true"), true},
		{"missing false", patient, sp("birthdate:missing", "", "false"), true},
		{"missing true has", patient, sp("birthdate:missing", "", "true"), false},
		{"no entries", patient, sp("general-practitioner-x", "", "1"), false},
		{"invalid date never matches", obs, sp("date", "", "yesterday"), false},
	}
	for _, tc := range tests {
		if got := Match(tc.entries, tc.p); got != tc.want {
			t.Errorf("%s: Match(%+v) = %v, want %v", tc.name, tc.p, got, tc.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, p := range []store.SearchParam{
		{Name: "nope", Values: []string{"x"}},
		{Name: "gender:exact", Values: []string{"x"}},
		{Name: "family:fuzzy", Values: []string{"x"}},
		{Name: "birthdate", Values: []string{"1980-13-01"}},
		{Name: "birthdate", Prefix: "xx", Values: []string{"1980"}},
		{Name: "gender:missing", Values: []string{"maybe"}},
		{Name: "gender", Values: []string{"|"}},
		{Name: "family", Values: nil},
		{Name: "general-practitioner", Values: []string{"#x"}},
	} {
		if _, err := Compile("Patient", p); err == nil {
			t.Errorf("Compile(%+v): no error", p)
		}
	}
	if _, err := Compile("Observation", store.SearchParam{Name: "patient", Values: []string{"Group/1"}}); err == nil {
		t.Error("patient=Group/1 accepted")
	}
}

func TestParse(t *testing.T) {
	q := url.Values{
		"family":       {"Smith,Jones"},
		"birthdate":    {"ge1980-01-01", "lt1990"},
		"gender":       {""},
		"_count":       {"50"},
		"_sort":        {"-_lastUpdated"},
		"_total":       {"accurate"},
		"_include":     {"Patient:general-practitioner"},
		"_elements":    {"id,name"},
		"_format":      {"json"},
		"_cursor":      {"abc"},
		"name:exact":   {`O'Brien\, Jr`},
		"organization": {"Organization/1"},
	}
	params, ctl, err := Parse("Patient", q)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.SearchParam{
		{Name: "birthdate", Prefix: "ge", Values: []string{"1980-01-01"}},
		{Name: "birthdate", Prefix: "lt", Values: []string{"1990"}},
		{Name: "family", Values: []string{"Smith", "Jones"}},
		{Name: "name:exact", Values: []string{"O'Brien, Jr"}},
		{Name: "organization", Values: []string{"Organization/1"}},
	}
	if !reflect.DeepEqual(params, want) {
		t.Errorf("params:\n got %+v\nwant %+v", params, want)
	}
	wantCtl := Controls{Count: 50, CountSet: true, Sort: []string{"-_lastUpdated"}, Total: "accurate",
		Include: []string{"Patient:general-practitioner"}, Elements: []string{"id", "name"}, Format: "json", Cursor: "abc"}
	if !reflect.DeepEqual(ctl, wantCtl) {
		t.Errorf("controls:\n got %+v\nwant %+v", ctl, wantCtl)
	}
}

func TestParseMixedPrefixesAndTypeModifier(t *testing.T) {
	params, _, err := Parse("Observation", url.Values{"date": {"ge2024-01-01,lt2000"}, "subject:Patient": {"123"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.SearchParam{
		{Name: "date", Values: []string{"ge2024-01-01", "lt2000"}},
		{Name: "subject", Values: []string{"Patient/123"}},
	}
	if !reflect.DeepEqual(params, want) {
		t.Errorf("got %+v, want %+v", params, want)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		rt   string
		q    url.Values
		want string // substring of the error
	}{
		{"Patient", url.Values{"shoe-size": {"9"}}, "supported: _id, _lastUpdated, active, address"},
		{"Patient", url.Values{"birthdate": {"19800101"}}, `"birthdate"`},
		{"Patient", url.Values{"_count": {"-1"}}, `"_count"`},
		{"Patient", url.Values{"_count": {"ten"}}, `"_count"`},
		{"Patient", url.Values{"_total": {"lots"}}, `"_total"`},
		{"Patient", url.Values{"_sort": {"shoe-size"}}, `"_sort"`},
		{"Patient", url.Values{"general-practitioner.name": {"x"}}, "chained"},
		{"Patient", url.Values{"gender:contains": {"x"}}, "string"},
		{"Observation", url.Values{"patient:Group": {"1"}}, "not allowed"},
		{"Observation", url.Values{"date:missing": {"perhaps"}}, "true or false"},
	}
	for _, tc := range tests {
		_, _, err := Parse(tc.rt, tc.q)
		if err == nil {
			t.Errorf("Parse(%v): no error", tc.q)
			continue
		}
		var se *Error
		if !errors.As(err, &se) {
			t.Errorf("Parse(%v): error %T is not *Error", tc.q, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%v): error %q does not contain %q", tc.q, err, tc.want)
		}
	}
}

// TestErrorsDoNotEchoValues: search values are often PHI; error text must not carry them.
func TestErrorsDoNotEchoValues(t *testing.T) {
	secret := "Hernández-1984-07-19"
	for _, q := range []url.Values{
		{"birthdate": {secret}},
		{"gender:missing": {secret}},
		{"general-practitioner": {"#" + secret}},
		{"_count": {secret}},
	} {
		_, _, err := Parse("Patient", q)
		if err == nil {
			t.Fatalf("Parse(%v): no error", q)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error echoes the value: %v", err)
		}
	}
}

// TestParseThenMatch runs parsed URLs against extracted entries end to end.
func TestParseThenMatch(t *testing.T) {
	entries := mustExtract(t, "Patient", typicalPatient)
	tests := []struct {
		query string
		want  bool
	}{
		{"family=hern&birthdate=1984-07-19", true},
		{"family=hern&birthdate=1984-07-20", false},
		{"birthdate=ge1984-07-01&birthdate=le1984-07-31", true},
		{"birthdate=ge1984-08-01&birthdate=le1984-08-31", false},
		{"gender=male,female", true},
		{"phone=555-201-3344&email=maria.hernandez@example.com", true},
		{"organization:Organization=org-1", true},
		{"telecom=555-201-3344", true},
		{"address-postalcode=62704&_lastUpdated=gt2024-01-01", true},
		{"_lastUpdated=lt2024-01-01", false},
	}
	for _, tc := range tests {
		q, err := url.ParseQuery(tc.query)
		if err != nil {
			t.Fatal(err)
		}
		params, _, err := Parse("Patient", q)
		if err != nil {
			t.Fatalf("%s: %v", tc.query, err)
		}
		got := true
		for _, p := range params {
			if !Match(entries, p) {
				got = false
			}
		}
		if got != tc.want {
			t.Errorf("%s: matched=%v, want %v", tc.query, got, tc.want)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	entries, err := Extract("Patient", []byte(typicalPatient))
	if err != nil {
		b.Fatal(err)
	}
	p := store.SearchParam{Name: "family", Values: []string{"hern"}}
	b.ReportAllocs()
	for b.Loop() {
		if !Match(entries, p) {
			b.Fatal("no match")
		}
	}
}
