package oraclehealth

import (
	"math/rand/v2"
	"net/http"
	"regexp"
	"testing"

	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/store"
)

func sp(names ...string) []store.SearchParam {
	var out []store.SearchParam
	for _, n := range names {
		out = append(out, store.SearchParam{Name: n, Values: []string{"x"}})
	}
	return out
}

func TestCheckSearch(t *testing.T) {
	f := New()
	for _, tc := range []struct {
		rt     string
		params []store.SearchParam
		refuse bool
	}{
		{"Patient", nil, true},
		{"Patient", sp("_count"), true},
		{"Patient", sp("family"), false},
		{"Patient", sp("_id"), false},
		{"Appointment", sp("patient"), true},
		{"Appointment", sp("date"), true},
		{"Appointment", sp("date", "location"), false},
		{"Appointment", sp("_id"), false},
		{"Coverage", sp("_id"), true},
		{"Coverage", sp("patient"), false},
		{"DocumentReference", nil, true},
		{"DocumentReference", sp("patient"), false},
		{"Observation", sp("category"), true},
		{"Observation", sp("subject"), false},
		{"Schedule", nil, true},
		{"Slot", sp("start"), false},
		{"Practitioner", nil, false},
	} {
		p := f.CheckSearch(tc.rt, tc.params, -1, true)
		if (p != nil) != tc.refuse || (p != nil && p.Kind != flavor.ParamMissing) {
			t.Errorf("%s %v: %+v", tc.rt, tc.params, p)
		}
		if p := f.CheckSearch(tc.rt, tc.params, -1, false); p != nil {
			t.Errorf("%s: refused when not strict: %+v", tc.rt, p)
		}
	}
	// More than 1000 matches: 422 too-costly (Patient).
	p := f.CheckSearch("Patient", sp("family"), TooManyMatches+1, true)
	if p == nil || p.Kind != flavor.TooManyResults {
		t.Fatalf("1001 patients: %+v", p)
	}
	if status, oo := f.Outcome(*p); status != http.StatusUnprocessableEntity || oo.Issue[0].Code != "too-costly" {
		t.Fatalf("outcome %d %+v", status, oo)
	}
	if p := f.CheckSearch("Patient", sp("family"), TooManyMatches, true); p != nil {
		t.Fatalf("1000 patients refused: %+v", p)
	}
	for kind, want := range map[flavor.Kind]int{flavor.StaleVersion: 409, flavor.Unprocessable: 422, flavor.ParamMissing: 400, flavor.NotFound: 404} {
		if status, _ := f.Outcome(flavor.Problem{Kind: kind}); status != want {
			t.Errorf("kind %d: status %d, want %d", kind, status, want)
		}
	}
}

func TestDecorateAndInfo(t *testing.T) {
	f := New()
	r := gen.O("resourceType", "Observation", "id", "1", "code", gen.O("coding", gen.A(gen.O("system", "http://loinc.org", "code", "8867-4", "display", "Heart rate"))))
	f.Decorate("Observation", r, gen.Facts{Tenant: "ten"})
	codings := r.Child("code").List("coding")
	if len(codings) != 2 {
		t.Fatalf("codings %v", codings)
	}
	prop := codings[0].(*gen.Obj)
	if prop.Str("system") != "https://fhir.cerner.com/ten/codeSet/72" || prop.Str("display") != "Heart rate" || prop.Str("code") == "" {
		t.Fatalf("proprietary coding %v", prop)
	}
	if v, _ := prop.Get("userSelected"); v != true {
		t.Fatalf("userSelected %v", v)
	}
	if codings[1].(*gen.Obj).Str("system") != "http://loinc.org" {
		t.Fatal("standard coding lost")
	}
	// Deterministic: the same standard code gets the same proprietary code.
	r2 := gen.O("code", gen.O("coding", gen.A(gen.O("system", "http://loinc.org", "code", "8867-4"))))
	f.Decorate("Observation", r2, gen.Facts{Tenant: "ten"})
	if r2.Child("code").List("coding")[0].(*gen.Obj).Str("code") != prop.Str("code") {
		t.Fatal("proprietary code not stable")
	}
	info := f.Info()
	if info.PageParam() != "pageContext" || info.Paging.Repeat != 1 || info.Paging.Extra != "direction=NEXT" || info.StaleStatus != 409 || !info.V1Scopes {
		t.Fatalf("info %+v", info)
	}
	if id := f.NewID("Patient", rand.New(rand.NewPCG(1, 1))); !regexp.MustCompile(`^[0-9]{8}$`).MatchString(id) {
		t.Fatalf("id %q", id)
	}
}
