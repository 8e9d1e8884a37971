package fhirpath

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

const testPatient = `{
  "resourceType": "Patient",
  "id": "p1",
  "extension": [{"url": "http://example.org/race", "valueCoding": {"system": "urn:race", "code": "2106-3"}}],
  "identifier": [
    {"system": "http://hospital.example.org/mrn", "value": "MRN-1"},
    {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-11-2222"}
  ],
  "name": [
    {"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
    {"use": "nickname", "given": ["Jim"]}
  ],
  "telecom": [
    {"system": "phone", "value": "555-1234", "use": "home"},
    {"system": "email", "value": "pc@example.org", "use": "work"}
  ],
  "gender": "male",
  "birthDate": "1974-12-25",
  "_birthDate": {"id": "bd", "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
  "active": true,
  "deceasedBoolean": false,
  "contained": [{"resourceType": "Organization", "id": "org1", "name": "Acme"}],
  "managingOrganization": {"reference": "#org1"}
}`

const testObservation = `{
  "resourceType": "Observation",
  "id": "o1",
  "status": "final",
  "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body Weight"}]},
  "subject": {"reference": "Patient/p1"},
  "effectiveDateTime": "2020-03-01T10:00:00-05:00",
  "valueQuantity": {"value": 185.50, "unit": "lbs", "system": "http://unitsofmeasure.org", "code": "[lb_av]"}
}`

func evalJSON(t *testing.T, expr, input string, opts ...Option) string {
	t.Helper()
	x, err := Compile(expr, opts...)
	if err != nil {
		t.Fatalf("Compile(%q): %v", expr, err)
	}
	var in any
	if input != "" {
		if in, err = DecodeJSON([]byte(input)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := x.Eval(context.Background(), in, nil)
	if err != nil {
		t.Fatalf("Eval(%q): %v", expr, err)
	}
	b, err := got.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestEvalOverResources(t *testing.T) {
	bundle := `{"resourceType": "Bundle", "type": "collection", "entry": [
	  {"fullUrl": "urn:uuid:aaa", "resource": ` + testObservation + `},
	  {"fullUrl": "http://x.org/fhir/Patient/p1", "resource": ` + testPatient + `}]}`
	tests := []struct {
		input, expr, want string
	}{
		{testPatient, "Patient.name.given", `["Peter","James","Jim"]`},
		{testPatient, "name.where(use = 'official').family", `["Chalmers"]`},
		{testPatient, "identifier.where(system = 'http://hospital.example.org/mrn').value", `["MRN-1"]`},
		{testPatient, "telecom.where(use = 'work').value.first()", `["pc@example.org"]`},
		{testPatient, "Patient.birthDate", `["1974-12-25"]`},
		{testPatient, "Patient.birthDate + 1 year", `["1975-12-25"]`},
		{testPatient, "Patient.birthDate.extension('http://hl7.org/fhir/StructureDefinition/patient-birthTime').value", `["1974-12-25T14:35:45-05:00"]`},
		{testPatient, "Patient.birthDate.id", `["bd"]`},
		{testPatient, "Patient.birthDate.hasValue()", `[true]`},
		{testPatient, "Patient.birthDate.type().name", `["date"]`},
		{testPatient, "Patient.deceased", `[false]`},
		{testPatient, "Patient.deceased is boolean", `[true]`},
		{testPatient, "Patient.extension('http://example.org/race').value.code", `["2106-3"]`},
		{testPatient, "Patient.managingOrganization.resolve().name", `["Acme"]`},
		{testPatient, "Patient.contained.ofType(Organization).id", `["org1"]`},
		{testPatient, "%resource.id & '-' & %context.gender", `["p1-male"]`},
		{testPatient, "Patient.name.given.count() > 2 and Patient.active", `[true]`},
		{testPatient, "Patient.name.select(given.first() + ' ' + family)", `["Peter Chalmers"]`},
		{testPatient, "birthDate < @2000-01-01", `[true]`},
		{testPatient, "birthDate = @1974-12-25T10:00", `[]`},
		{testObservation, "Observation.value", `[{"code":"[lb_av]","system":"http://unitsofmeasure.org","unit":"lbs","value":185.50}]`},
		{testObservation, "Observation.value.value", `[185.50]`},
		{testObservation, "Observation.value > 80 'kg'", `[true]`},
		{testObservation, "Observation.value < 85 'kg'", `[true]`},
		{testObservation, "Observation.value.as(Quantity).value * 2", `[371.00]`},
		{testObservation, "Observation.value.toQuantity('kg').value.round(2)", `[84.14]`},
		{testObservation, "Observation.effective", `["2020-03-01T10:00:00-05:00"]`},
		{testObservation, "Observation.effective + 2 hours", `["2020-03-01T12:00:00-05:00"]`},
		{testObservation, "code.coding.where(system = %loinc).code", `["29463-7"]`},
		{testObservation, "Observation.valueQuantity.unit", `["lbs"]`},
		{testObservation, "iif(value.exists(), 'has', 'none')", `["has"]`},
		{bundle, "Bundle.entry.resource.ofType(Observation).subject.resolve().name.family", `["Chalmers"]`},
		{bundle, "Bundle.entry.resource.ofType(Patient).managingOrganization.resolve().name", `["Acme"]`},
		{bundle, "entry.where(fullUrl = 'urn:uuid:aaa').resource.id", `["o1"]`},
		{"", "1 + 2 * 3", `[7]`},
		{"", "0.1 + 0.2 = 0.3", `[true]`},
		{"", "10 / 4", `[2.5]`},
		{"", "1.50 * 2", `[3.00]`},
		{"", "@2020-01-31 + 1 month", `["2020-02-29"]`},
		{"", "@T10:30 + 45 minutes", `["11:15"]`},
		{"", "@2020-01-01T10:00:00Z - 1 'd'", `["2019-12-31T10:00:00Z"]`},
		{"", "5 'mg' + 1 'g'", `[{"value":1005,"unit":"mg"}]`},
		{"", "1 'm' = 100 'cm'", `[true]`},
		{"", "1 year = 12 months", `[true]`},
		{"", "1 year = 1 'a'", `[]`},
		{"", "1 year ~ 1 'a'", `[true]`},
		{"", "'abc'.matches('^a.c$')", `[true]`},
		{"", "'a-b-c'.replaceMatches('-(.)', '_$1')", `["a_b_c"]`},
		{"", "'Hello'.substring(1, 3).upper()", `["ELL"]`},
		{"", "(3 | 1 | 2).sort()", `[1,2,3]`},
		{"", "(1 | 2 | 3).aggregate($this + $total, 0)", `[6]`},
		{"", "{} | 1", `[1]`},
		{"", "today() > @2020-01-01", `[true]`},
		{"", "%ucum", `["http://unitsofmeasure.org"]`},
		{"", "%`vs-administrative-gender`", `["http://hl7.org/fhir/ValueSet/administrative-gender"]`},
	}
	for _, tc := range tests {
		if got := evalJSON(t, tc.expr, tc.input); got != tc.want {
			t.Errorf("%s\n got %s\nwant %s", tc.expr, got, tc.want)
		}
	}
}

func TestWithoutModel(t *testing.T) {
	tests := []struct{ expr, want string }{
		{"Patient.name.given", `["Peter","James","Jim"]`},
		{"Patient.value", `[]`},
		{"Patient.deceasedBoolean", `[false]`},
		{"Patient.birthDate = @1974-12-25", `[true]`},
		{"Patient.birthDate.extension.url", `["http://hl7.org/fhir/StructureDefinition/patient-birthTime"]`},
		{"Patient.active.is(Boolean)", `[true]`},
		{"Patient.is(Patient)", `[true]`},
		{"Patient.birthDate.type().namespace", `["System"]`},
	}
	for _, tc := range tests {
		if got := evalJSON(t, tc.expr, testPatient, WithoutModel()); got != tc.want {
			t.Errorf("%s\n got %s\nwant %s", tc.expr, got, tc.want)
		}
	}
	// With the model, choice elements are found by their short name.
	if got := evalJSON(t, "Observation.value.value", testObservation); got != `[185.50]` {
		t.Errorf("with model: %s", got)
	}
	if got := evalJSON(t, "Observation.value.value", testObservation, WithoutModel()); got != `[]` {
		t.Errorf("without model: %s", got)
	}
}

func TestSyntaxErrorsHavePositions(t *testing.T) {
	tests := []struct{ expr, want string }{
		{"Patient.name.where(use = 'x'))", "1:30: unexpected ')'"},
		{"Patient.name.", "1:14: expected a name after '.', found end of expression"},
		{"1 +", "1:4: unexpected end of expression"},
		{"Patient.\n  name.foo(", "2:12: unexpected end of expression"},
		{"'abc", "1:1: unterminated string"},
		{"2 + 2 /* open", "1:7: unterminated comment"},
		{"Patient.nosuch()", "1:9: unknown function 'nosuch'"},
		{"Patient.first(1)", "1:9: first() takes 0 arguments, got 1"},
		{"Patient.is(Nope)", "1:12: unknown type Nope"},
		{"x is System.Foo", "1:6: unknown type System.Foo"},
		{"@2020-13-01", "1:1: invalid date @2020-13-01"},
		{"", "1:1: empty expression"},
		{"a # b", "1:3: unexpected character '#'"},
	}
	for _, tc := range tests {
		_, err := Compile(tc.expr)
		if err == nil {
			t.Errorf("Compile(%q): no error", tc.expr)
			continue
		}
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Compile(%q): %T, want *SyntaxError", tc.expr, err)
		}
		if err.Error() != tc.want {
			t.Errorf("Compile(%q) = %q, want %q", tc.expr, err, tc.want)
		}
	}
}

func TestEvalErrorsHavePositions(t *testing.T) {
	in, _ := DecodeJSON([]byte(testPatient))
	tests := []struct{ expr, want string }{
		{"Patient.name.single()", "1:14: single() on 2 items"},
		{"name.given + 1", "1:12: '+' needs single items, got 3 and 1"},
		{"1 + 'a'", "1:3: cannot apply '+' to System.Integer and System.String"},
		{"%missing", "1:1: undefined variable %missing"},
		{"gender.memberOf('http://x')", "1:8: memberOf() needs a terminology service, which this engine does not have"},
		{"iif(name, 1, 2)", "1:5: iif() criterion has 2 items"},
	}
	for _, tc := range tests {
		x, err := Compile(tc.expr)
		if err != nil {
			t.Fatalf("Compile(%q): %v", tc.expr, err)
		}
		_, err = x.Eval(context.Background(), in, nil)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Eval(%q) = %v, want %q", tc.expr, err, tc.want)
		}
	}
}

func TestEnvironmentAndInputs(t *testing.T) {
	x := MustCompile("%a + %b.value + %c.count()")
	env := map[string]any{
		"a": 1,
		"b": []byte(`{"value": 2}`),
		"c": Collection{String("x"), String("y")},
	}
	got, err := x.Eval(context.Background(), nil, env)
	if err != nil || got.String() != "[5]" {
		t.Fatalf("got %v, %v", got, err)
	}
	// raw JSON input
	got, err = MustCompile("Patient.id").Eval(context.Background(), []byte(testPatient), nil)
	if err != nil || got.String() != `["p1"]` {
		t.Fatalf("got %v, %v", got, err)
	}
	// a cancelled context stops the evaluation
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := x.Eval(ctx, nil, env); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestTraceClockAndLocation(t *testing.T) {
	var traced []string
	fixed := time.Date(2024, 2, 29, 23, 30, 0, 0, time.UTC)
	loc := time.FixedZone("x", 2*3600)
	x := MustCompile("now().trace('n') | today() | timeOfDay()",
		WithClock(func() time.Time { return fixed }), WithLocation(loc),
		WithTrace(func(name string, c Collection) { traced = append(traced, name+"="+c.String()) }))
	got, err := x.Eval(context.Background(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := `["2024-03-01T01:30:00.000+02:00","2024-03-01","01:30:00.000"]`; got.String() != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if len(traced) != 1 || traced[0] != `n=["2024-03-01T01:30:00.000+02:00"]` {
		t.Errorf("trace: %v", traced)
	}
}

type mapResolver map[string]string

func (m mapResolver) Resolve(_ context.Context, ref string) (any, bool, error) {
	s, ok := m[ref]
	if !ok {
		return nil, false, nil
	}
	v, err := DecodeJSON([]byte(s))
	return v, err == nil, err
}

func TestResolver(t *testing.T) {
	x := MustCompile("subject.resolve().gender", WithResolver(mapResolver{"Patient/p1": testPatient}))
	got, err := x.Eval(context.Background(), []byte(testObservation), nil)
	if err != nil || got.String() != `["male"]` {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestConcurrentEval(t *testing.T) {
	x := MustCompile("name.where(use = 'official').given.first() & ' ' & birthDate.toString()")
	in, _ := DecodeJSON([]byte(testPatient))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				got, err := x.Eval(context.Background(), in, nil)
				if err != nil || got.String() != `["Peter 1974-12-25"]` {
					errs <- errors.New(got.String())
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestCheck(t *testing.T) {
	ok := []struct{ expr, root string }{
		{"Patient.name.given", "Patient"},
		{"name.where(use = 'official').family", "Patient"},
		{"Observation.value.unit", "Observation"},
		{"Observation.valueQuantity.value", "Observation"},
		{"Patient.birthDate.extension.value", "Patient"},
		{"Bundle.entry.resource.name", "Bundle"},
		{"Bundle.entry.resource.ofType(Patient).name.given", "Bundle"},
		{"contact.name.family | name.family", "Patient"},
		{"subject.resolve().anything", "Observation"},
		{"extension('x').value.code", "Patient"},
	}
	for _, tc := range ok {
		if err := Check(tc.expr, tc.root); err != nil {
			t.Errorf("Check(%q, %s): %v", tc.expr, tc.root, err)
		}
	}
	bad := []struct{ expr, root, want string }{
		{"Patient.nmae", "Patient", "Patient.nmae: Patient has no element nmae"},
		{"name.where(use = 'x').famly", "Patient", "name.where(use = 'x').famly: HumanName has no element famly"},
		{"nmae.given", "Patient", "nmae: Patient has no element nmae"},
		{"Observation.value.foo", "Observation", ""},
		{"name.given1", "Patient", "name.given1: HumanName has no element given1"},
		{"telecom.where(sytem = 'phone')", "Patient", "sytem: ContactPoint has no element sytem"},
		{"Bundle.entry.resource.ofType(Patient).nmae", "Bundle", "Bundle.entry.resource.ofType(Patient).nmae: Patient has no element nmae"},
	}
	for _, tc := range bad {
		err := Check(tc.expr, tc.root)
		var ce *CheckError
		if !errors.As(err, &ce) {
			t.Errorf("Check(%q): %v, want a CheckError", tc.expr, err)
			continue
		}
		if tc.want != "" && err.Error() != tc.want {
			t.Errorf("Check(%q) = %q, want %q", tc.expr, err, tc.want)
		}
		if tc.want == "" && !strings.Contains(err.Error(), "has no element foo") {
			t.Errorf("Check(%q) = %q", tc.expr, err)
		}
	}
	if err := Check("Patient.name", "Nope"); err == nil {
		t.Error("unknown root type accepted")
	}
}

func TestDecimalExactness(t *testing.T) {
	tests := []struct{ expr, want string }{
		{"0.1 + 0.2", "[0.3]"},
		{"1.10 + 2.205", "[3.305]"},
		{"1 / 3", "[0.33333333333333333333]"},
		{"(1 / 3) * 3 = 1", "[false]"},
		{"(1 / 3) * 3 ~ 1", "[true]"},
		{"12345678901234567890.5 + 1", "[12345678901234567891.5]"},
		{"3.14159.round(3)", "[3.142]"},
		{"(-2.5).round()", "[-3]"},
		{"2.5.truncate()", "[2]"},
		{"7 mod 3", "[1]"},
		{"-7 div 2", "[-3]"},
		{"1.587.lowBoundary(2)", "[1.58]"},
	}
	for _, tc := range tests {
		if got := evalJSON(t, tc.expr, ""); got != tc.want {
			t.Errorf("%s = %s, want %s", tc.expr, got, tc.want)
		}
	}
}

func TestValueAccessors(t *testing.T) {
	in, _ := DecodeJSON([]byte(testObservation))
	res, err := MustCompile("status | value | value.value | (1 + 1) | true | @2020-01-01").Eval(context.Background(), in, nil)
	if err != nil || len(res) != 6 {
		t.Fatalf("%v %v", res, err)
	}
	wantTypes := []string{"FHIR.code", "FHIR.Quantity", "FHIR.decimal", "System.Integer", "System.Boolean", "System.Date"}
	for i, v := range res {
		if got := v.TypeName(); got != wantTypes[i] {
			t.Errorf("item %d: TypeName %s, want %s", i, got, wantTypes[i])
		}
	}
	if s, ok := res[0].Text(); !ok || s != "final" || !res[0].IsNode() || res[0].FHIRType() != "code" {
		t.Errorf("status: %q %v", s, ok)
	}
	if q, ok := res[1].Quantity(); !ok || q.String() != "185.50 '[lb_av]'" {
		t.Errorf("value as quantity: %v %v", q, ok)
	}
	if d, ok := res[2].Decimal(); !ok || d.String() != "185.50" {
		t.Errorf("value.value: %v %v", d, ok)
	}
	if n, ok := res[3].Int(); !ok || n != 2 {
		t.Errorf("1 + 1: %v %v", n, ok)
	}
	if b, ok := res[4].Bool(); !ok || !b {
		t.Errorf("true: %v %v", b, ok)
	}
	if _, ok := res[0].Bool(); ok {
		t.Error("a code read as a Boolean")
	}
	if s, _ := res[5].Text(); s != "2020-01-01" {
		t.Errorf("date text %q", s)
	}
}

func TestQuantityUnits(t *testing.T) {
	tests := []struct{ expr, want string }{
		{"1 'kg' = 1000 'g'", "[true]"},
		{"250 'mg' = 0.25 'g'", "[true]"},
		{"1 '[in_i]' = 2.54 'cm'", "[true]"},
		{"1 '[lb_av]' = 453.59237 'g'", "[true]"},
		{"120 'mm[Hg]' > 15 'kPa'", "[true]"},
		{"1 'L' = 1000 'mL'", "[true]"},
		{"1 'mg/dL' = 10 'mg/L'", "[true]"},
		{"72 '/min' = 1.2 '/s'", "[true]"},
		{"5 '10*3/uL' = 5000 '/uL'", "[true]"},
		{"1 'wk' = 7 'd'", "[true]"},
		{"1 'h' = 60 'min'", "[true]"},
		{"1 'a' = 12 'mo'", "[true]"},
		{"5 '{score}' = 5 '1'", "[true]"},
		{"1 '%' = 0.01 '1'", "[true]"},
		{"1 'Cel' = 1 'K'", "[]"},
		{"1 'kg' = 1 'm'", "[]"},
		{"1 'kg' < 1 'm'", "[]"},
		{"1 'kg' ~ 1000.4 'g'", "[true]"},
		{"2 'm' * 3 'm'", `[{"value":6,"unit":"m.m"}]`},
		{"(2 'm' * 3 'm') = 6 'm2'", "[true]"},
		{"1 'g' + 1 'kg'", `[{"value":1001,"unit":"g"}]`},
		{"3 days + 1 week", `[{"value":10,"unit":"days"}]`},
		{"1 year = 12 months", "[true]"},
		{"1 month = 30 days", "[]"},
		{"1 day = 24 hours", "[true]"},
		{"'5 mg'.toQuantity()", "[]"},
		{"'5 \\'mg\\''.toQuantity('g')", `[{"value":0.005,"unit":"g"}]`},
		{"2 'kg'.comparable(3 'lb')", "[false]"},
		{"2 'kg'.comparable(3 '[lb_av]')", "[true]"},
	}
	for _, tc := range tests {
		if got := evalJSON(t, tc.expr, ""); got != tc.want {
			t.Errorf("%s = %s, want %s", tc.expr, got, tc.want)
		}
	}
}

func TestDateTimeSemantics(t *testing.T) {
	tests := []struct{ expr, want string }{
		{"@2020-02-29 + 1 year", `["2021-02-28"]`},
		{"@2020-03-31 - 1 month", `["2020-02-29"]`},
		{"@2020 + 18 months", `["2021"]`},
		{"@2020-01 + 45 days", `["2020-02"]`},
		{"@2020-01-01 + 36 hours", `["2020-01-02"]`},
		{"@2020-01-01T23:30:00+02:00 + 1 hour", `["2020-01-02T00:30:00+02:00"]`},
		{"@2020-01-01T10:00:00.000Z + 1.5 's'", `["2020-01-01T10:00:01.500Z"]`},
		{"@T23:30 + 1 hour", `["00:30"]`},
		{"@2020-01-01T10:00:00Z = @2020-01-01T12:00:00+02:00", "[true]"},
		{"@2020-01-01T10:00:00Z = @2020-01-01T10:00:00", "[]"},
		{"@2020-01-01 = @2020-01-01T10:00:00Z", "[]"},
		{"@2020-01-01 < @2020-01-02T10:00:00Z", "[true]"},
		{"@2020-01 < @2020-02-15", "[true]"},
		{"@2020-01 = @2020-01-15", "[]"},
		{"@2020-01 ~ @2020-01-15", "[false]"},
		{"@T10:00 < @T10:00:01", "[]"},
		{"@2020-01-01T10:00:00 = @2020-01-01T10:00:00.000", "[true]"},
		{"@2014-03.lowBoundary(8)", `["2014-03-01"]`},
		{"@2014-02.highBoundary(8)", `["2014-02-28"]`},
		{"@2014-01-01T10:30Z.highBoundary()", `["2014-01-01T10:30:59.999Z"]`},
		{"@2014-01-01T10:30:00.5Z.precision()", "[17]"},
		{"'2020-01-01T10:00:00Z'.toDateTime() + 1 day", `["2020-01-02T10:00:00Z"]`},
		{"'2020-13-01'.convertsToDate()", "[false]"},
		{"@2020-01-01.toString()", `["2020-01-01"]`},
	}
	for _, tc := range tests {
		if got := evalJSON(t, tc.expr, ""); got != tc.want {
			t.Errorf("%s = %s, want %s", tc.expr, got, tc.want)
		}
	}
}
