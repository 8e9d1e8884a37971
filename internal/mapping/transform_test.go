package mapping

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/mapping/conceptmap"
	"github.com/mediflow/mediflow/profiles"
)

// applyTransform compiles a transform as a rule would and runs it on in.
func applyTransform(t *testing.T, set *Set, name string, args map[string]any, in ...any) ([]any, error) {
	t.Helper()
	d, ok := registry[name]
	if !ok {
		t.Fatalf("no transform %s", name)
	}
	if err := checkArgs(d, args); err != nil {
		t.Fatal(err)
	}
	params := map[string]string{"mrnSystem": "urn:practice:mrn"}
	if set != nil {
		params = set.params
	}
	fn, err := d.compile(args, &compileCtx{set: set, params: params})
	if err != nil {
		t.Fatalf("%s: compile: %v", name, err)
	}
	chicago, _ := time.LoadLocation("America/Chicago")
	st := &runState{}
	tc := &tctx{ctx: context.Background(), loc: chicago, st: st}
	return fn(tc, append([]any(nil), in...))
}

func jsonOf(t *testing.T, s string) any {
	t.Helper()
	v, err := decodeJSON([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestPhoneE164(t *testing.T) {
	for in, want := range map[string]string{
		"(469) 555-0100":      "+14695550100",
		"469-555-0100":        "+14695550100",
		"469.555.0100":        "+14695550100",
		"4695550100":          "+14695550100",
		"1-469-555-0100":      "+14695550100",
		"+1 469 555 0100":     "+14695550100",
		" 469 555 0100 x123":  "+14695550100;ext=123",
		"469-555-0100 ext. 7": "+14695550100;ext=7",
		"469-555-0100#12":     "+14695550100;ext=12",
		"1-800-FLOWERS":       "+18003569377",
		"+44 20 7946 0958":    "+442079460958",
		"011 44 20 7946 0958": "+442079460958",
		"tel:+14695550100":    "+14695550100",
	} {
		got, err := toE164(in)
		if err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"555-0100", "1234567890", "(069) 555-0100", "911-555-0100", "+1 469 555 010", "12345678901234567", "call me", "+0 123 4567 890"} {
		if got, err := toE164(in); err == nil {
			t.Errorf("%q: got %q, want an error", in, got)
		}
	}
}

func TestAddressTransform(t *testing.T) {
	out, err := applyTransform(t, nil, "address", nil, jsonOf(t, `{"line":["  12  Main St ", " "],"city":" Kansas   City","state":"missouri","postalCode":"641161234","country":"USA","use":"home"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := jsonOf(t, `{"line":["12 Main St"],"city":"Kansas City","state":"MO","postalCode":"64116-1234","country":"US","use":"home"}`)
	if !reflect.DeepEqual(out[0], want) {
		t.Errorf("got %v", out[0])
	}
	out, _ = applyTransform(t, nil, "address", nil, jsonOf(t, `{"state":"MA","postalCode":"1810"}`))
	if z := out[0].(map[string]any)["postalCode"]; z != "01810" {
		t.Errorf("lost leading zero: %v", z)
	}
	in := jsonOf(t, `{"state":"tx","postalCode":"750"}`)
	if _, err := applyTransform(t, nil, "address", nil, in); err == nil || !strings.Contains(err.Error(), "ZIP") {
		t.Errorf("bad ZIP: %v", err)
	}
	if in.(map[string]any)["state"] != "tx" {
		t.Error("a failed transform changed its input")
	}
	// Other countries keep their codes.
	out, _ = applyTransform(t, nil, "address", nil, jsonOf(t, `{"state":"on","postalCode":"K1A 0B1","country":"CA"}`))
	if m := out[0].(map[string]any); m["state"] != "on" || m["postalCode"] != "K1A 0B1" {
		t.Errorf("Canadian address changed: %v", m)
	}
}

func TestNameParts(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"family":"Pham","given":["Quang","Gregory"],"suffix":["Jr."]}`, `{"family":"Pham","given":["Quang","Gregory"],"suffix":["Jr."],"text":"Quang Gregory Pham Jr."}`},
		{`{"text":"SMART, JOE"}`, `{"text":"SMART, JOE","family":"SMART","given":["JOE"]}`},
		{`{"text":"Dr. Jane  Q Public MD"}`, `{"text":"Jane Q Public","prefix":["Dr."],"family":"Public","given":["Jane","Q"],"suffix":["MD"]}`},
		{`{"text":"Cher"}`, `{"text":"Cher","family":"Cher"}`},
		{`{"text":"A B","family":"B"}`, `{"text":"A B","family":"B"}`},
	} {
		out, err := applyTransform(t, nil, "name-parts", nil, jsonOf(t, c.in))
		if err != nil {
			t.Fatal(err)
		}
		want := jsonOf(t, c.want).(map[string]any)
		got := out[0].(map[string]any)
		if c.in == `{"text":"Dr. Jane  Q Public MD"}` {
			want["text"] = "Dr. Jane  Q Public MD" // the text is kept as sent
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %v, want %v", c.in, got, want)
		}
	}
	out, _ := applyTransform(t, nil, "name-parts", map[string]any{"fill": "text"}, jsonOf(t, `{"text":"SMART, JOE"}`))
	if _, ok := out[0].(map[string]any)["family"]; ok {
		t.Error("fill: text split the text")
	}
}

func TestDateTimeTransforms(t *testing.T) {
	for _, c := range []struct {
		name string
		args map[string]any
		in   string
		want string
	}{
		{"datetime", nil, "2026-06-10T15:00:00Z", "2026-06-10T10:00:00-05:00"},
		{"datetime", nil, "2026-01-10T15:00:00.120Z", "2026-01-10T09:00:00.120-06:00"},
		{"datetime", nil, "2026-06-10T15:00", "2026-06-10T15:00:00-05:00"},
		{"datetime", nil, "2026-06-10 15:00:00+0200", "2026-06-10T08:00:00-05:00"},
		{"datetime", nil, "202606101500", "2026-06-10T15:00:00-05:00"},
		{"datetime", nil, "20260610150000-0400", "2026-06-10T14:00:00-05:00"},
		{"datetime", nil, "06/10/2026", "2026-06-10"},
		{"datetime", nil, "2026-06", "2026-06"},
		{"datetime", map[string]any{"zone": "utc"}, "2026-06-10T10:00:00-05:00", "2026-06-10T15:00:00Z"},
		{"datetime", map[string]any{"zone": "keep"}, "2026-06-10T10:00:00+02:00", "2026-06-10T10:00:00+02:00"},
		{"date", nil, "1976-04-29T00:00:00Z", "1976-04-29"},
		{"date", nil, "1976", "1976"},
		{"date", nil, "04/29/1976", "1976-04-29"},
		{"date", nil, "19760429", "1976-04-29"},
		{"date", map[string]any{"zone": "practice"}, "2026-06-10T02:00:00Z", "2026-06-09"},
	} {
		out, err := applyTransform(t, nil, c.name, c.args, c.in)
		if err != nil || len(out) != 1 || out[0] != c.want {
			t.Errorf("%s(%q): got %v, %v; want %q", c.name, c.in, out, err, c.want)
		}
	}
	for _, bad := range []string{"2026-02-30", "2026-13-01", "yesterday", "2026-06-10T25:00:00Z", "2026-6-1"} {
		if out, err := applyTransform(t, nil, "datetime", nil, bad); err == nil {
			t.Errorf("%q: got %v, want an error", bad, out)
		}
	}
}

func TestIdentifierSystem(t *testing.T) {
	args := map[string]any{"to": "%mrnSystem", "type": "MR", "systems": map[string]any{"urn:oid:1.2.3": "urn:other"}}
	out, err := applyTransform(t, nil, "identifier-system", args,
		jsonOf(t, `{"system":"urn:oid:9.9","_system":{"id":"x"},"value":"1","type":{"text":"EPI"}}`),
		jsonOf(t, `{"system":"urn:oid:1.2.3","value":"2","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	want0 := jsonOf(t, `{"system":"urn:practice:mrn","value":"1","type":{"text":"EPI","coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR","display":"Medical record number"}]}}`)
	want1 := jsonOf(t, `{"system":"urn:other","value":"2","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]}}`)
	if !reflect.DeepEqual(out[0], want0) || !reflect.DeepEqual(out[1], want1) {
		t.Errorf("got %v", out)
	}
}

func TestSmallTransforms(t *testing.T) {
	check := func(name string, args map[string]any, in []any, want string) {
		t.Helper()
		out, err := applyTransform(t, nil, name, args, in...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, _ := json.Marshal(out)
		if string(b) != want {
			t.Errorf("%s: got %s, want %s", name, b, want)
		}
	}
	check("trim", nil, []any{"  a  b ", "   ", json.Number("1")}, `["a  b",1]`)
	check("trim", map[string]any{"collapse": true}, []any{"  a \t b "}, `["a b"]`)
	check("uppercase", nil, []any{"mo"}, `["MO"]`)
	check("lowercase", nil, []any{"A@B.COM"}, `["a@b.com"]`)
	check("constant", map[string]any{"value": "official"}, []any{"usual", "x"}, `["official"]`)
	check("constant", map[string]any{"value": "%mrnSystem"}, nil, `["urn:practice:mrn"]`)
	check("default", map[string]any{"value": "unknown"}, nil, `["unknown"]`)
	check("default", map[string]any{"value": "unknown"}, []any{"male"}, `["male"]`)
	check("first", nil, []any{"a", "b"}, `["a"]`)
	check("integer", nil, []any{"1", " 2 ", json.Number("3")}, `[1,2,3]`)
	check("drop-codings", map[string]any{"prefix": "https://fhir.cerner.com/"},
		[]any{jsonOf(t, `{"coding":[{"system":"https://fhir.cerner.com/t/codeSet/4","code":"1"},{"system":"http://loinc.org","code":"2"}],"text":"x"}`)},
		`[{"coding":[{"code":"2","system":"http://loinc.org"}],"text":"x"}]`)
	check("prune", nil, []any{jsonOf(t, `{"a":"","b":[],"c":{"d":null},"e":"x"}`)}, `[{"e":"x"}]`)
	if _, err := applyTransform(t, nil, "integer", nil, "1.5"); err == nil {
		t.Error("integer accepted 1.5")
	}
}

func TestTransformArgumentErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		args map[string]any
		msg  string
	}{
		{"trim", map[string]any{"colapse": true}, `no argument "colapse"`},
		{"constant", nil, `needs the argument "value"`},
		{"first", map[string]any{"x": 1}, "takes no arguments"},
	} {
		err := checkArgs(registry[c.name], c.args)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s %v: %v, want %q", c.name, c.args, err, c.msg)
		}
	}
	for _, c := range []struct {
		name string
		args map[string]any
	}{
		{"datetime", map[string]any{"zone": "mars"}},
		{"phone-e164", map[string]any{"region": "GB"}},
		{"constant", map[string]any{"value": "%nosuch"}},
		{"drop-codings", map[string]any{"prefix": ""}},
	} {
		if _, err := registry[c.name].compile(c.args, &compileCtx{params: map[string]string{}}); err == nil {
			t.Errorf("%s %v compiled", c.name, c.args)
		}
	}
}

func TestCodeTransform(t *testing.T) {
	set, err := Load(profiles.FS, "generic", "")
	if err != nil {
		t.Fatal(err)
	}
	gender := "http://mediflow.dev/fhir/ConceptMap/administrative-gender"
	marital := "http://mediflow.dev/fhir/ConceptMap/marital-status"
	run := func(args map[string]any, in ...any) ([]any, []UnmappedCode, error) {
		t.Helper()
		d := registry["code"]
		if err := checkArgs(d, args); err != nil {
			t.Fatal(err)
		}
		fn, err := d.compile(args, &compileCtx{set: set, params: set.params})
		if err != nil {
			t.Fatal(err)
		}
		var counter conceptmap.Unmapped
		st := &runState{opts: MapOptions{Unmapped: &counter}, cur: &ElementResult{}}
		out, err := fn(&tctx{ctx: context.Background(), loc: time.UTC, st: st}, in)
		if n := counter.Total(); n != len(st.cur.Unmapped) {
			t.Errorf("counter %d, element %d", n, len(st.cur.Unmapped))
		}
		return out, st.cur.Unmapped, err
	}
	// A v2 code (any source system) becomes the FHIR code.
	out, un, err := run(map[string]any{"map": gender, "output": "code"}, "F")
	if err != nil || out[0] != "female" || len(un) != 0 {
		t.Errorf("F: %v %v %v", out, un, err)
	}
	// Epic's per-site legal-sex system, as a Coding, into a code.
	out, _, _ = run(map[string]any{"map": gender, "output": "code"},
		jsonOf(t, `{"system":"urn:oid:1.2.840.114350.1.13.425.2.7.10.698084.130.657370.19999000","code":"female"}`))
	if out[0] != "female" {
		t.Errorf("Epic legal sex: %v", out)
	}
	// Unmapped under each policy.
	out, un, err = run(map[string]any{"map": gender, "output": "code", "unmapped": "default", "default": "unknown"}, "nonbinary-x")
	if err != nil || out[0] != "unknown" || len(un) != 1 || un[0].Code != "nonbinary-x" || un[0].Policy != "default" {
		t.Errorf("default: %v %v %v", out, un, err)
	}
	out, un, _ = run(map[string]any{"map": gender, "output": "code"}, "zz")
	if out[0] != "zz" || len(un) != 1 {
		t.Errorf("pass-through: %v %v", out, un)
	}
	_, _, err = run(map[string]any{"map": gender, "unmapped": "error"}, "zz")
	var te *transformError
	if err == nil || !strings.Contains(err.Error(), "zz") || !asTransformError(err, &te) || !te.strict {
		t.Errorf("error policy: %v", err)
	}
	// A CodeableConcept gains the standard coding and keeps its own.
	out, _, _ = run(map[string]any{"map": marital, "output": "concept"},
		jsonOf(t, `{"coding":[{"system":"https://fhir.cerner.com/abc/codeSet/38","code":"309237","display":"Married"}],"text":"Married"}`))
	b, _ := json.Marshal(out[0])
	if !strings.Contains(string(b), `"code":"309237"`) || !strings.Contains(string(b), `"code":"M"`) || !strings.Contains(string(b), "v3-MaritalStatus") {
		t.Errorf("concept: %s", b)
	}
	// keep: false keeps only the translation (and the text).
	out, _, _ = run(map[string]any{"map": marital, "output": "concept", "keep": false},
		jsonOf(t, `{"coding":[{"system":"https://fhir.cerner.com/abc/codeSet/38","code":"309237"}],"text":"Married"}`))
	b, _ = json.Marshal(out[0])
	if strings.Contains(string(b), "309237") || !strings.Contains(string(b), `"text":"Married"`) {
		t.Errorf("keep false: %s", b)
	}
	// Text only: nothing to translate, nothing counted.
	out, un, _ = run(map[string]any{"map": marital, "output": "concept"}, jsonOf(t, `{"text":"Widowed"}`))
	if len(un) != 0 || out[0].(map[string]any)["text"] != "Widowed" {
		t.Errorf("text only: %v %v", out, un)
	}
	// Reverse: canonical → the v2 code for write-back.
	out, _, _ = run(map[string]any{"map": gender, "output": "code", "reverse": true, "to": "http://terminology.hl7.org/CodeSystem/v2-0001"}, "female")
	if out[0] != "F" {
		t.Errorf("reverse: %v", out)
	}
	// Load-time errors.
	for _, args := range []map[string]any{
		{"map": "http://nosuch"},
		{"map": gender, "unmapped": "ignore"},
		{"map": gender, "unmapped": "default"},
		{"map": gender, "to": "x"},
		{"map": gender, "output": "text"},
	} {
		if _, err := registry["code"].compile(args, &compileCtx{set: set, params: set.params}); err == nil {
			t.Errorf("%v compiled", args)
		}
	}
}

func asTransformError(err error, te **transformError) bool {
	e, ok := err.(*transformError)
	*te = e
	return ok
}
