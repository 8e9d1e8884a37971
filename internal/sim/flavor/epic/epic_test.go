package epic

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/store"

	"github.com/mediflow/mediflow/internal/testutil/repo"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(repo.Shared(t, filepath.Join("fixtures", "vendors", "epic", name)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type capStmt struct {
	Software struct {
		Name, Version, ReleaseDate string
	} `json:"software"`
	FHIRVersion string `json:"fhirVersion"`
	Rest        []struct {
		Security struct {
			Extension []struct {
				URL string `json:"url"`
			} `json:"extension"`
		} `json:"security"`
		Resource []struct {
			Type        string `json:"type"`
			Interaction []struct {
				Code string `json:"code"`
			} `json:"interaction"`
			ReadHistory  bool `json:"readHistory"`
			UpdateCreate bool `json:"updateCreate"`
		} `json:"resource"`
	} `json:"rest"`
}

func interactions(cs capStmt) map[string][]string {
	out := map[string][]string{}
	for _, r := range cs.Rest[0].Resource {
		var codes []string
		for _, i := range r.Interaction {
			codes = append(codes, i.Code)
		}
		sort.Strings(codes)
		out[r.Type] = codes
	}
	return out
}

func endpoint(strict bool) flavor.Endpoint {
	return flavor.Endpoint{
		Tenant: "clinic", BaseURL: "http://127.0.0.1:1/clinic/api/FHIR/R4",
		TokenURL: "http://127.0.0.1:1/clinic/oauth2/token", AuthorizeURL: "http://127.0.0.1:1/clinic/oauth2/authorize",
		Now: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC), Strict: strict,
	}
}

// TestCapabilityStatementAgreesWithFixture compares our generated statement
// with the captured Epic R4 statement on software, FHIR version and the
// interactions of every type we serve.
func TestCapabilityStatementAgreesWithFixture(t *testing.T) {
	var want capStmt
	if err := json.Unmarshal(fixture(t, "r4-capabilitystatement.json"), &want); err != nil {
		t.Fatal(err)
	}
	for _, strict := range []bool{false, true} {
		raw, err := Flavor{}.CapabilityStatement(endpoint(strict))
		if err != nil {
			t.Fatal(err)
		}
		var got capStmt
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatalf("our statement is not valid JSON: %v", err)
		}
		if got.Software != want.Software {
			t.Errorf("software %+v, fixture %+v", got.Software, want.Software)
		}
		if got.FHIRVersion != want.FHIRVersion {
			t.Errorf("fhirVersion %q, fixture %q", got.FHIRVersion, want.FHIRVersion)
		}
		wi, gi := interactions(want), interactions(got)
		if len(gi) != len(Flavor{}.Info().ResourceTypes) {
			t.Errorf("statement lists %d types, flavour serves %d", len(gi), len(Flavor{}.Info().ResourceTypes))
		}
		for typ, codes := range gi {
			w, ok := wi[typ]
			if !ok {
				t.Errorf("we serve %s, Epic's R4 statement does not list it", typ)
				continue
			}
			if strings.Join(codes, ",") != strings.Join(w, ",") {
				t.Errorf("%s interactions %v, fixture %v", typ, codes, w)
			}
		}
		if len(got.Rest[0].Security.Extension) != 1 || got.Rest[0].Security.Extension[0].URL != flavor.OAuthURIsExtension {
			t.Errorf("security extension missing: %+v", got.Rest[0].Security)
		}
	}
	// Types the flavour must not serve: Epic R4 has no Schedule or Slot.
	wi := interactions(want)
	for _, typ := range []string{"Schedule", "Slot"} {
		if _, ok := wi[typ]; ok {
			t.Errorf("fixture unexpectedly lists %s", typ)
		}
		if (Flavor{}).Info().Serves(typ) {
			t.Errorf("flavour serves %s", typ)
		}
	}
	// Every type of the simulator that Epic's R4 API lists is served.
	for _, typ := range flavor.AllTypes() {
		if _, ok := wi[typ]; ok && !(Flavor{}).Info().Serves(typ) {
			t.Errorf("Epic lists %s but the flavour does not serve it", typ)
		}
	}
}

func TestSmartConfigurationAgreesWithFixture(t *testing.T) {
	var want, got map[string]any
	if err := json.Unmarshal(fixture(t, "smart-configuration.json"), &want); err != nil {
		t.Fatal(err)
	}
	raw, err := Flavor{}.SmartConfiguration(endpoint(false))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"token_endpoint_auth_methods_supported", "capabilities", "grant_types_supported", "code_challenge_methods_supported", "scopes_supported", "response_types_supported"} {
		w, _ := json.Marshal(want[k])
		g, _ := json.Marshal(got[k])
		if string(w) != string(g) {
			t.Errorf("%s: ours %s, fixture %s", k, g, w)
		}
	}
	if got["token_endpoint"] != endpoint(false).TokenURL || got["authorization_endpoint"] != endpoint(false).AuthorizeURL {
		t.Errorf("endpoints: %v %v", got["token_endpoint"], got["authorization_endpoint"])
	}
	caps := strings.Join(toStrings(got["capabilities"]), " ")
	for _, c := range []string{"permission-v1", "permission-v2", "client-confidential-asymmetric"} {
		if !strings.Contains(caps, c) {
			t.Errorf("capabilities lack %s", c)
		}
	}
	if !strings.Contains(strings.Join(toStrings(got["token_endpoint_auth_methods_supported"]), " "), "private_key_jwt") {
		t.Error("private_key_jwt missing")
	}
	if strings.Join(toStrings(got["token_endpoint_auth_signing_alg_values_supported"]), ",") != "RS384,ES384" {
		t.Errorf("signing algs %v", got["token_endpoint_auth_signing_alg_values_supported"])
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestOutcomeCodes(t *testing.T) {
	for kind, want := range map[flavor.Kind]struct {
		status int
		code   string
	}{
		flavor.NoResults:      {200, CodeNoResults},
		flavor.ParamMissing:   {400, CodeParamMissing},
		flavor.PageExpired:    {400, CodeSessionExpired},
		flavor.TooManyResults: {400, CodeTooMany},
	} {
		status, oo := Flavor{}.Outcome(flavor.Problem{Kind: kind, Diagnostics: "x"})
		d := oo.Issue[0].Details
		if status != want.status || d == nil || len(d.Coding) != 1 || d.Coding[0].System != ErrorSystem || d.Coding[0].Code != want.code {
			t.Errorf("kind %d: status %d details %+v", kind, status, d)
		}
	}
	if _, oo := (Flavor{}).Outcome(flavor.Problem{Kind: flavor.NoResults}); oo.Issue[0].Severity != "warning" {
		t.Errorf("4101 severity %q, want warning", oo.Issue[0].Severity)
	}
	status, oo := Flavor{}.Outcome(flavor.Problem{Kind: flavor.NotFound})
	if status != 404 || oo.Issue[0].Details != nil {
		t.Errorf("not found: %d %+v", status, oo.Issue[0])
	}
}

func TestDecorateQuirks(t *testing.T) {
	var pats, pracs, appts []*gen.Obj
	_, err := gen.Generate(gen.Options{Tenant: "clinic", Seed: 3, Patients: 40}, Flavor{}, func(r gen.Resource) error {
		switch r.Type {
		case "Patient":
			pats = append(pats, r.Obj)
		case "Practitioner":
			pracs = append(pracs, r.Obj)
		case "Appointment":
			appts = append(appts, r.Obj)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	idRE := regexp.MustCompile(`^e[A-Za-z0-9.\-]{22}3$`)
	phoneRE := regexp.MustCompile(`^\d{3}-\d{3}-\d{4}$`)
	legal := 0
	for _, p := range pats {
		if !idRE.MatchString(p.Str("id")) {
			t.Errorf("patient id %q not Epic-shaped", p.Str("id"))
		}
		types := map[string]string{}
		for _, x := range p.List("identifier") {
			o := x.(*gen.Obj)
			typ := o.Child("type")
			if typ == nil || typ.Len() != 1 || typ.Str("text") == "" {
				t.Fatalf("identifier type must carry only text: %v", mustBytes(typ))
			}
			types[typ.Str("text")] = o.Str("value")
			if typ.Str("text") == "EPI" && !strings.HasPrefix(o.Str("system"), "urn:oid:1.2.840.114350.1.13.") {
				t.Errorf("EPI system %q is not a per-install Epic OID", o.Str("system"))
			}
		}
		for _, want := range []string{"EPI", "INTERNAL", "EXTERNAL", "FHIR", "EPIC"} {
			if types[want] == "" {
				t.Errorf("identifier %s missing", want)
			}
		}
		if in := types["INTERNAL"]; len(in) != 10 || !strings.HasPrefix(in, " ") || strings.TrimLeft(in, " ") != types["EXTERNAL"] {
			t.Errorf("INTERNAL %q should be EXTERNAL %q left-padded to 10", in, types["EXTERNAL"])
		}
		names := p.List("name")
		if len(names) != 2 || names[0].(*gen.Obj).Str("use") != "official" || names[1].(*gen.Obj).Str("use") != "usual" ||
			string(mustBytes(names[0].(*gen.Obj).Child("given"))) != string(mustBytes(names[1].(*gen.Obj).Child("given"))) {
			t.Errorf("want duplicate official+usual names, got %s", mustList(names))
		}
		for _, x := range p.List("telecom") {
			o := x.(*gen.Obj)
			if o.Str("system") == "phone" && !phoneRE.MatchString(o.Str("value")) {
				t.Errorf("phone %q not like 469-555-5555", o.Str("value"))
			}
		}
		if ms := p.Child("maritalStatus"); ms != nil && (ms.Len() != 1 || ms.Str("text") == "") {
			t.Errorf("maritalStatus should be text only: %s", mustBytes(ms))
		}
		for _, x := range p.List("extension") {
			if x.(*gen.Obj).Str("url") == LegalSexExtension {
				legal++
			}
		}
	}
	if legal < len(pats)*9/10 {
		t.Errorf("legal-sex extension on %d of %d patients", legal, len(pats))
	}
	for _, p := range pracs {
		found := false
		for _, x := range p.List("identifier") {
			found = found || x.(*gen.Obj).Child("type").Str("text") == "NPI"
		}
		if !found {
			t.Error("practitioner without NPI identifier")
		}
	}
	for _, a := range appts {
		if _, ok := a.Get("slot"); ok {
			t.Error("Epic appointment references a Slot")
		}
	}
}

func mustBytes(o *gen.Obj) []byte {
	if o == nil {
		return []byte("null")
	}
	b, _ := o.Bytes()
	return b
}

func mustList(l []any) string {
	b, _ := gen.AppendJSON(nil, l)
	return string(b)
}

func TestCheckSearchStrict(t *testing.T) {
	p := func(names ...string) []store.SearchParam {
		var out []store.SearchParam
		for _, n := range names {
			out = append(out, store.SearchParam{Name: n, Values: []string{"x"}})
		}
		return out
	}
	f := Flavor{}
	cases := []struct {
		rt     string
		params []store.SearchParam
		total  int
		want   flavor.Kind // 0: allowed
	}{
		{"Patient", p("family"), -1, flavor.ParamMissing},
		{"Patient", p("given", "family", "birthdate"), -1, 0},
		{"Patient", p("given", "family", "gender", "phone"), -1, 0},
		{"Patient", p("identifier"), -1, 0},
		{"Patient", p("_id"), -1, 0},
		{"Patient", p("identifier"), 101, flavor.TooManyResults},
		{"Patient", p("identifier"), 100, 0},
		{"Observation", p("patient"), -1, flavor.ParamMissing},
		{"Observation", p("patient", "category"), -1, 0},
		{"Condition", nil, -1, flavor.ParamMissing},
		{"Condition", p("patient"), -1, 0},
		{"Coverage", p("beneficiary"), -1, 0},
		{"Practitioner", nil, -1, 0},
	}
	for _, c := range cases {
		got := f.CheckSearch(c.rt, c.params, c.total, true)
		if (got == nil) != (c.want == 0) || (got != nil && got.Kind != c.want) {
			t.Errorf("%s %v total %d: %+v, want kind %d", c.rt, c.params, c.total, got, c.want)
		}
		if f.CheckSearch(c.rt, c.params, c.total, false) != nil {
			t.Errorf("%s: lenient mode refused", c.rt)
		}
	}
}
