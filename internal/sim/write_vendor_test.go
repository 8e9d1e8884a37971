package sim

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/sim/fault"
	"github.com/mediflow/mediflow/internal/sim/flavor/athenahealth"
	"github.com/mediflow/mediflow/internal/sim/flavor/eclinicalworks"
	"github.com/mediflow/mediflow/internal/sim/flavor/epic"
	"github.com/mediflow/mediflow/internal/sim/flavor/oraclehealth"
	"github.com/mediflow/mediflow/internal/sim/gen"
)

const testIDSystem = "urn:mediflow:test:write-intent"

// noteWithIdentifier is a generic-valid DocumentReference carrying an
// identifier (the write intent's key).
func noteWithIdentifier(pid, value string) string {
	return `{"resourceType":"DocumentReference","identifier":[{"system":"` + testIDSystem + `","value":"` + value + `"}],` +
		`"status":"current","subject":{"reference":"Patient/` + pid + `"},` +
		`"content":[{"attachment":{"contentType":"text/plain","data":"Tm90ZQ=="}}]}`
}

// firstWhere returns the id of a resource of rt whose JSON satisfies ok.
func firstWhere(t *testing.T, s *Sim, tenant, rt string, ok func(o *gen.Obj) bool) string {
	t.Helper()
	for id, b := range s.Current(tenant, rt) {
		o, err := gen.ParseObj(b)
		if err == nil && ok(o) {
			return id
		}
	}
	t.Fatalf("no %s in %s matches", rt, tenant)
	return ""
}

func TestConditionalCreateGeneric(t *testing.T) {
	f := newFixture(t, Config{Tenants: []TenantConfig{{ID: "g", Seed: 3, Data: smallData(5)}}})
	tok := f.token("g")
	base := f.sim.BaseURL("g")
	pid := anyID(f.sim.Current("g", "Patient"))
	cond := map[string]string{"If-None-Exist": "identifier=" + url.QueryEscape(testIDSystem+"|n-1")}

	r := f.do("POST", base+"/DocumentReference", tok, []byte(noteWithIdentifier(pid, "n-1")), cond)
	if r.status != http.StatusCreated {
		t.Fatalf("first conditional create: %d %s", r.status, r.body)
	}
	h1, _ := fhir.ParseHeader(r.body)
	r = f.do("POST", base+"/DocumentReference", tok, []byte(noteWithIdentifier(pid, "n-1")), cond)
	h2, _ := fhir.ParseHeader(r.body)
	if r.status != http.StatusOK || h2.ID != h1.ID || r.header.Get("ETag") != `W/"1"` {
		t.Fatalf("repeated conditional create: %d id %q (first %q) ETag %q", r.status, h2.ID, h1.ID, r.header.Get("ETag"))
	}
	if ids := f.sim.FindByIdentifier("g", "DocumentReference", testIDSystem, "n-1"); len(ids) != 1 || ids[0] != h1.ID {
		t.Fatalf("ground truth after two conditional creates: %v", ids)
	}
	// A second record with the same identifier (written around the API):
	// the condition is now ambiguous, 412, and nothing more is created.
	if _, _, _, err := f.sim.Put("g", []byte(noteWithIdentifier(pid, "n-1"))); err != nil {
		t.Fatal(err)
	}
	r = f.do("POST", base+"/DocumentReference", tok, []byte(noteWithIdentifier(pid, "n-1")), cond)
	if r.status != http.StatusPreconditionFailed {
		t.Fatalf("ambiguous conditional create: %d %s", r.status, r.body)
	}
	outcomeOf(t, r)
	if n := len(f.sim.FindByIdentifier("g", "DocumentReference", testIDSystem, "n-1")); n != 2 {
		t.Fatalf("%d records, want 2", n)
	}
	// Without the header the same body creates another one.
	if r := f.do("POST", base+"/DocumentReference", tok, []byte(noteWithIdentifier(pid, "n-1")), nil); r.status != 201 {
		t.Fatalf("plain create: %d", r.status)
	}
	if n := len(f.sim.FindByIdentifier("g", "DocumentReference", testIDSystem, "n-1")); n != 3 {
		t.Fatalf("%d records, want 3", n)
	}
	if r := f.do("POST", base+"/DocumentReference", tok, []byte(noteWithIdentifier(pid, "n-2")), map[string]string{"If-None-Exist": "nonsense-param=1"}); r.status != 400 {
		t.Fatalf("bad condition: %d", r.status)
	}
	// The CapabilityStatement says so.
	r = f.get(base+"/metadata", "")
	if !strings.Contains(string(r.body), `"type":"DocumentReference"`) || !strings.Contains(string(r.body), `"conditionalCreate":true`) {
		t.Fatalf("metadata does not declare conditional create")
	}
}

func TestConditionalCreateRefusedByEpicAndOracle(t *testing.T) {
	f := newFixture(t, Config{Tenants: []TenantConfig{
		{ID: "ep", Flavor: epic.Name, Seed: 4, Data: smallData(5)},
		{ID: "oh", Flavor: oraclehealth.Name, Seed: 5, Data: smallData(5), OpenAuth: true},
	}})
	for _, tc := range []struct{ tenant, tok string }{{"ep", f.token("ep")}, {"oh", ""}} {
		pid := anyID(f.sim.Current(tc.tenant, "Patient"))
		body := `{"resourceType":"Condition","identifier":[{"system":"` + testIDSystem + `","value":"c-1"}],"subject":{"reference":"Patient/` + pid + `"},"code":{"text":"x"}}`
		r := f.do("POST", f.sim.BaseURL(tc.tenant)+"/Condition", tc.tok, []byte(body), map[string]string{"If-None-Exist": "identifier=" + testIDSystem + "|c-1"})
		if r.status != http.StatusBadRequest || !strings.Contains(outcomeOf(t, r).Issue[0].Diagnostics, "If-None-Exist") {
			t.Errorf("%s: conditional create: %d %s", tc.tenant, r.status, r.body)
		}
		if n := len(f.sim.FindByIdentifier(tc.tenant, "Condition", testIDSystem, "c-1")); n != 0 {
			t.Errorf("%s: refused conditional create wrote %d records", tc.tenant, n)
		}
	}
}

func oracleFixture(t *testing.T) *fixture {
	return newFixture(t, Config{Tenants: []TenantConfig{{ID: "oh", Flavor: oraclehealth.Name, Seed: 6, Data: smallData(8), OpenAuth: true}}})
}

// oracleDocument is Oracle Health's own DocumentReference create example
// with its references pointed at the tenant's data.
func oracleDocument(t *testing.T, f *fixture) *gen.Obj {
	t.Helper()
	b, err := os.ReadFile(sharedPath(t, "fixtures/vendors/oracle-health/r4_document_reference_post.json"))
	if err != nil {
		t.Fatal(err)
	}
	o, err := gen.ParseObj(b)
	if err != nil {
		t.Fatal(err)
	}
	o.Set("subject", gen.O("reference", "Patient/"+anyID(f.sim.Current("oh", "Patient"))))
	o.Set("author", gen.A(gen.O("reference", "Practitioner/"+anyID(f.sim.Current("oh", "Practitioner")))))
	return o
}

func objBytes(t *testing.T, o *gen.Obj) []byte {
	t.Helper()
	b, err := o.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOracleCreateUpdateVersions(t *testing.T) {
	f := oracleFixture(t)
	base := f.sim.BaseURL("oh")
	doc := oracleDocument(t, f)

	r := f.do("POST", base+"/DocumentReference", "", objBytes(t, doc), nil)
	if r.status != http.StatusCreated || len(r.body) != 0 || r.header.Get("ETag") != `W/"0"` {
		t.Fatalf("create: %d ETag %q body %q", r.status, r.header.Get("ETag"), r.body)
	}
	loc := r.header.Get("Location")
	id := strings.TrimPrefix(loc, base+"/DocumentReference/")
	if id == loc || !isDigits(id) {
		t.Fatalf("Location %q: want %s/DocumentReference/{numeric id}", loc, base)
	}
	// Read-back: version 0 in the ETag and the body.
	rb := f.get(loc, "")
	if rb.status != 200 || rb.header.Get("ETag") != `W/"0"` || !strings.Contains(string(rb.body), `"versionId":"0"`) {
		t.Fatalf("read-back: %d ETag %q %.200s", rb.status, rb.header.Get("ETag"), rb.body)
	}
	// Update: If-Match is required (412 without), 409 when stale.
	upd, _ := gen.ParseObj(rb.body)
	upd.Set("docStatus", "amended")
	r = f.do("PUT", loc, "", objBytes(t, upd), nil)
	if r.status != http.StatusPreconditionFailed {
		t.Fatalf("update without If-Match: %d %s", r.status, r.body)
	}
	r = f.do("PUT", loc, "", objBytes(t, upd), map[string]string{"If-Match": `W/"0"`})
	if r.status != http.StatusOK || len(r.body) != 0 || r.header.Get("ETag") != `W/"1"` {
		t.Fatalf("update: %d ETag %q body %q", r.status, r.header.Get("ETag"), r.body)
	}
	r = f.do("PUT", loc, "", objBytes(t, upd), map[string]string{"If-Match": `W/"0"`})
	if r.status != http.StatusConflict || outcomeOf(t, r).Issue[0].Code != "conflict" {
		t.Fatalf("stale update: %d %s", r.status, r.body)
	}
	if cur, _ := f.sim.Get("oh", "DocumentReference", id); !strings.Contains(string(cur), `"versionId":"1"`) {
		t.Fatalf("stale update changed the record: %.200s", cur)
	}
	// Generated data serves version 0 too.
	oid := anyID(f.sim.Current("oh", "Observation"))
	if r := f.get(base+"/Observation/"+oid, ""); r.header.Get("ETag") != `W/"0"` {
		t.Fatalf("generated observation ETag %q", r.header.Get("ETag"))
	}
	// Not writable types: 405; PUT of a patch-only type: 405.
	if r := f.do("POST", base+"/Location", "", []byte(`{"resourceType":"Location"}`), nil); r.status != 405 {
		t.Errorf("Location create: %d", r.status)
	}
	aid := anyID(f.sim.Current("oh", "Appointment"))
	appt, _ := f.sim.Get("oh", "Appointment", aid)
	if r := f.do("PUT", base+"/Appointment/"+aid, "", appt, map[string]string{"If-Match": `W/"0"`}); r.status != 405 || !strings.Contains(r.header.Get("Allow"), "PATCH") {
		t.Errorf("Appointment PUT: %d Allow %q", r.status, r.header.Get("Allow"))
	}
	md := f.get(base+"/metadata", "")
	var cs struct {
		Rest []struct {
			Resource []struct {
				Type        string `json:"type"`
				Interaction []struct {
					Code string `json:"code"`
				} `json:"interaction"`
			} `json:"resource"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(md.body, &cs); err != nil {
		t.Fatal(err)
	}
	for _, res := range cs.Rest[0].Resource {
		if res.Type != "Appointment" {
			continue
		}
		var codes []string
		for _, in := range res.Interaction {
			codes = append(codes, in.Code)
		}
		if strings.Join(codes, ",") != "create,patch,read,search-type" {
			t.Errorf("Appointment interactions %v", codes)
		}
	}
}

func TestOracleDocumentRules(t *testing.T) {
	f := oracleFixture(t)
	base := f.sim.BaseURL("oh")
	loincType := gen.O("system", "http://loinc.org", "code", "11506-3")
	for _, tc := range []struct {
		name   string
		change func(o *gen.Obj)
	}{
		{"status", func(o *gen.Obj) { o.Set("status", "superseded") }},
		{"docStatus", func(o *gen.Obj) { o.Set("docStatus", "preliminary") }},
		{"type loinc and proprietary", func(o *gen.Obj) {
			o.Child("type").Set("coding", append(o.Child("type").List("coding"), loincType))
		}},
		{"type other system", func(o *gen.Obj) {
			o.Set("type", gen.O("coding", gen.A(gen.O("system", "http://snomed.info/sct", "code", "371530004"))))
		}},
		{"subject not a patient", func(o *gen.Obj) { o.Set("subject", gen.O("reference", "Group/1")) }},
		{"author not a practitioner", func(o *gen.Obj) { o.Set("author", gen.A(gen.O("reference", "Organization/1"))) }},
		{"two authors", func(o *gen.Obj) { o.Set("author", append(o.List("author"), o.List("author")[0])) }},
		{"two contents", func(o *gen.Obj) { o.Set("content", append(o.List("content"), o.List("content")[0])) }},
		{"no charset", func(o *gen.Obj) {
			o.List("content")[0].(*gen.Obj).Child("attachment").Set("contentType", "application/xml")
		}},
		{"url instead of data", func(o *gen.Obj) {
			att := o.List("content")[0].(*gen.Obj).Child("attachment")
			att.Delete("data")
			att.Set("url", "Binary/1")
		}},
		{"no period end", func(o *gen.Obj) { o.Child("context").Child("period").Delete("end") }},
		{"date without time", func(o *gen.Obj) { o.Child("context").Child("period").Set("start", "2020-01-01") }},
	} {
		doc := oracleDocument(t, f)
		tc.change(doc)
		r := f.do("POST", base+"/DocumentReference", "", objBytes(t, doc), nil)
		if r.status != http.StatusUnprocessableEntity || outcomeOf(t, r).Issue[0].Code != "business-rule" {
			t.Errorf("%s: %d %s", tc.name, r.status, r.body)
		}
	}
	// The example itself, and with a LOINC type instead, are accepted.
	ok := oracleDocument(t, f)
	if r := f.do("POST", base+"/DocumentReference", "", objBytes(t, ok), nil); r.status != 201 {
		t.Fatalf("valid document: %d %s", r.status, r.body)
	}
	ok.Set("type", gen.O("coding", gen.A(loincType)))
	if r := f.do("POST", base+"/DocumentReference", "", objBytes(t, ok), nil); r.status != 201 {
		t.Fatalf("valid LOINC document: %d %s", r.status, r.body)
	}
}

func TestOracleMixedCodings(t *testing.T) {
	f := oracleFixture(t)
	base := f.sim.BaseURL("oh")
	// A generated Observation carries a proprietary coding beside LOINC in
	// code.coding: written back as read, it is refused.
	oid := anyID(f.sim.Current("oh", "Observation"))
	body, _ := f.sim.Get("oh", "Observation", oid)
	r := f.do("PUT", base+"/Observation/"+oid, "", body, map[string]string{"If-Match": `W/"0"`})
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(outcomeOf(t, r).Issue[0].Diagnostics, "Observation.code.coding") {
		t.Fatalf("mixed codings update: %d %s", r.status, r.body)
	}
	// With the proprietary coding dropped it goes through.
	o, _ := gen.ParseObj(body)
	var std []any
	for _, c := range o.Child("code").List("coding") {
		if !strings.HasPrefix(c.(*gen.Obj).Str("system"), oraclehealth.CodeSetBase) {
			std = append(std, c)
		}
	}
	o.Child("code").Set("coding", std)
	if r := f.do("PUT", base+"/Observation/"+oid, "", objBytes(t, o), map[string]string{"If-Match": `W/"0"`}); r.status != 200 {
		t.Fatalf("standard-only update: %d %s", r.status, r.body)
	}
	// Oracle's own Observation create example (standard codes only).
	b, err := os.ReadFile(sharedPath(t, "fixtures/vendors/oracle-health/r4_observation_create.json"))
	if err != nil {
		t.Fatal(err)
	}
	ob, _ := gen.ParseObj(b)
	ob.Set("subject", gen.O("reference", "Patient/"+anyID(f.sim.Current("oh", "Patient"))))
	if r := f.do("POST", base+"/Observation", "", objBytes(t, ob), nil); r.status != 201 {
		t.Fatalf("observation example: %d %s", r.status, r.body)
	}
	ob.Child("code").Set("coding", append(ob.Child("code").List("coding"),
		gen.O("system", oraclehealth.CodeSetBase+"oh/codeSet/72", "code", "703558", "userSelected", true)))
	if r := f.do("POST", base+"/Observation", "", objBytes(t, ob), nil); r.status != 422 {
		t.Fatalf("mixed create: %d %s", r.status, r.body)
	}
}

func TestOracleAppointmentCreateAndPatch(t *testing.T) {
	f := oracleFixture(t)
	base := f.sim.BaseURL("oh")
	pid := anyID(f.sim.Current("oh", "Patient"))
	lid := anyID(f.sim.Current("oh", "Location"))
	free := firstWhere(t, f.sim, "oh", "Slot", func(o *gen.Obj) bool { return o.Str("status") == "free" })
	booked := func(slot string) []byte {
		return []byte(`{"resourceType":"Appointment","status":"booked","slot":[{"reference":"Slot/` + slot + `"}],` +
			`"participant":[{"actor":{"reference":"Patient/` + pid + `"},"status":"accepted"}],"reasonCode":[{"text":"cramp"}]}`)
	}
	r := f.do("POST", base+"/Appointment", "", booked(free), nil)
	if r.status != http.StatusCreated || r.header.Get("ETag") != `W/"0"` {
		t.Fatalf("booked create: %d %s", r.status, r.body)
	}
	aid := strings.TrimPrefix(r.header.Get("Location"), base+"/Appointment/")
	if s, _ := f.sim.Get("oh", "Slot", free); !strings.Contains(string(s), `"status":"busy"`) {
		t.Fatalf("the booked slot is not busy")
	}
	for _, tc := range []struct{ name, body string }{
		{"slot taken", string(booked(free))},
		{"no slot", `{"resourceType":"Appointment","status":"booked","participant":[{"actor":{"reference":"Patient/` + pid + `"},"status":"accepted"}]}`},
		{"participant not accepted", strings.Replace(string(booked(free)), `"accepted"`, `"tentative"`, 1)},
		{"created arrived", strings.Replace(string(booked(free)), `"booked"`, `"arrived"`, 1)},
		{"proposed without location", `{"resourceType":"Appointment","status":"proposed","serviceType":[{"text":"x"}],"participant":[{"actor":{"reference":"Patient/` + pid + `"},"status":"needs-action"}]}`},
	} {
		if r := f.do("POST", base+"/Appointment", "", []byte(tc.body), nil); r.status != 422 {
			t.Errorf("%s: %d %s", tc.name, r.status, r.body)
		}
	}
	proposed := `{"resourceType":"Appointment","status":"proposed","serviceType":[{"coding":[{"system":"http://snomed.info/sct","code":"408443003"}]}],` +
		`"participant":[{"actor":{"reference":"Patient/` + pid + `"},"status":"needs-action"},{"actor":{"reference":"Location/` + lid + `"},"status":"needs-action"}]}`
	if r := f.do("POST", base+"/Appointment", "", []byte(proposed), nil); r.status != 201 {
		t.Fatalf("proposed create: %d %s", r.status, r.body)
	}

	u := base + "/Appointment/" + aid
	patch := func(ops, ifMatch string) resp {
		hdr := map[string]string{"Content-Type": jsonPatchType}
		if ifMatch != "" {
			hdr["If-Match"] = ifMatch
		}
		return f.do("PATCH", u, "", []byte(ops), hdr)
	}
	status := func(s string) string { return `[{"op":"replace","path":"/status","value":"` + s + `"}]` }
	if r := patch(status("checked-in"), ""); r.status != http.StatusPreconditionFailed {
		t.Fatalf("patch without If-Match: %d", r.status)
	}
	if r := f.do("PATCH", u, "", []byte(status("checked-in")), map[string]string{"If-Match": `W/"0"`}); r.status != http.StatusUnsupportedMediaType {
		t.Fatalf("patch as fhir+json: %d", r.status)
	}
	if r := patch(status("fulfilled"), `W/"0"`); r.status != 422 {
		t.Fatalf("booked→fulfilled: %d %s", r.status, r.body)
	}
	r = patch(status("checked-in"), `W/"0"`)
	if r.status != 200 || r.header.Get("ETag") != `W/"1"` || len(r.body) != 0 {
		t.Fatalf("booked→checked-in: %d %q %s", r.status, r.header.Get("ETag"), r.body)
	}
	if r := patch(status("fulfilled"), `W/"0"`); r.status != http.StatusConflict {
		t.Fatalf("stale patch: %d", r.status)
	}
	if r := patch(status("booked"), `W/"1"`); r.status != 422 {
		t.Fatalf("checked-in→booked: %d", r.status)
	}
	mixed := `[{"op":"add","path":"/serviceType","value":[{"coding":[{"system":"https://fhir.cerner.com/oh/codeSet/14249","code":"1"},{"system":"http://snomed.info/sct","code":"2"}]}]}]`
	if r := patch(mixed, `W/"1"`); r.status != 422 {
		t.Fatalf("patch adding mixed codings: %d", r.status)
	}
	if r := patch(status("fulfilled"), `W/"1"`); r.status != 200 {
		t.Fatalf("checked-in→fulfilled: %d %s", r.status, r.body)
	}
	cur, _ := f.sim.Get("oh", "Appointment", aid)
	if !strings.Contains(string(cur), `"status":"fulfilled"`) || !strings.Contains(string(cur), `"versionId":"2"`) {
		t.Fatalf("after patches: %.300s", cur)
	}
}

func TestEpicWriteVocabulary(t *testing.T) {
	f := newFixture(t, Config{Tenants: []TenantConfig{{ID: "ep", Flavor: epic.Name, Seed: 7, Data: smallData(5)}}})
	tok := f.token("ep")
	base := f.sim.BaseURL("ep")
	epicCode := func(r resp) string {
		oo := outcomeOf(t, r)
		if d := oo.Issue[0].Details; d != nil && len(d.Coding) > 0 && d.Coding[0].System == epic.ErrorSystem {
			return d.Coding[0].Code
		}
		return ""
	}
	pat := `{"resourceType":"Patient","identifier":[{"system":"` + testIDSystem + `","value":"p-1"}],"name":[{"family":"Test","given":["Dup"]}],"birthDate":"1980-01-01"}`
	if r := f.do("POST", base+"/Patient", tok, []byte(pat), nil); r.status != 201 {
		t.Fatalf("patient create: %d %s", r.status, r.body)
	}
	r := f.do("POST", base+"/Patient", tok, []byte(pat), nil)
	if r.status != http.StatusBadRequest || epicCode(r) != epic.CodeDuplicate {
		t.Fatalf("duplicate create: %d %s", r.status, r.body)
	}
	if n := len(f.sim.FindByIdentifier("ep", "Patient", testIDSystem, "p-1")); n != 1 {
		t.Fatalf("%d patients after a refused duplicate", n)
	}
	pid := anyID(f.sim.Current("ep", "Patient"))
	vital := func(coding string) []byte {
		return []byte(`{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],` +
			`"code":{` + coding + `"text":"x"},"subject":{"reference":"Patient/` + pid + `"},"effectiveDateTime":"2026-05-01T10:00:00Z","valueQuantity":{"value":70,"unit":"/min"}}`)
	}
	if r := f.do("POST", base+"/Observation", tok, vital(`"coding":[{"system":"http://loinc.org","code":"8867-4"}],`), nil); r.status != 201 {
		t.Fatalf("mapped vital: %d %s", r.status, r.body)
	}
	if r := f.do("POST", base+"/Observation", tok, vital(`"coding":[{"system":"http://loinc.org","code":"99999-9"}],`), nil); r.status != 422 || epicCode(r) != epic.CodeFlowsheetUnmapped {
		t.Fatalf("unmapped vital: %d %s", r.status, r.body)
	}
	if r := f.do("POST", base+"/Observation", tok, vital(``), nil); r.status != 422 || epicCode(r) != epic.CodeFlowsheetMissing {
		t.Fatalf("vital without LOINC: %d %s", r.status, r.body)
	}
	// Only documented types: an Encounter create and a Condition update are refused.
	if r := f.do("POST", base+"/Encounter", tok, []byte(`{"resourceType":"Encounter","status":"planned"}`), nil); r.status != 405 || strings.Contains(r.header.Get("Allow"), "POST") {
		t.Fatalf("encounter create: %d Allow %q", r.status, r.header.Get("Allow"))
	}
	cid := anyID(f.sim.Current("ep", "Condition"))
	cb, _ := f.sim.Get("ep", "Condition", cid)
	if r := f.do("PUT", base+"/Condition/"+cid, tok, cb, nil); r.status != 405 {
		t.Fatalf("condition update: %d", r.status)
	}
}

func athenaFixture(t *testing.T) (*fixture, string) {
	f := newFixture(t, Config{Tenants: []TenantConfig{{ID: "ah", Flavor: athenahealth.Name, Seed: 8, Data: smallData(5)}}})
	return f, f.srv.URL + "/ah/v1/" + athenahealth.SandboxPractice
}

func (f *fixture) form(method, u, tok string, v url.Values) resp {
	f.t.Helper()
	return f.do(method, u, tok, []byte(v.Encode()), map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
}

func TestAthenaV1BookingReadsBackThroughFHIR(t *testing.T) {
	f, v1 := athenaFixture(t)
	tok := f.token("ah")
	base := f.sim.BaseURL("ah")
	// FHIR is read-only.
	if r := f.do("POST", base+"/Appointment", tok, []byte(`{"resourceType":"Appointment"}`), nil); r.status != 405 {
		t.Fatalf("FHIR create: %d", r.status)
	}
	prov := athenaLocal(anyID(f.sim.Current("ah", "Practitioner")))
	dept := athenaLocal(anyID(f.sim.Current("ah", "Location")))

	// Register a patient.
	reg := url.Values{"departmentid": {dept}, "dob": {"03/04/1970"}, "firstname": {"Ada"}, "lastname": {"Writeback"}, "sex": {"F"}}
	r := f.form("POST", v1+"/patients", tok, reg)
	var created []map[string]string
	if r.status != 200 || json.Unmarshal(r.body, &created) != nil || len(created) != 1 || created[0]["patientid"] == "" {
		t.Fatalf("patient registration: %d %s", r.status, r.body)
	}
	patientID := created[0]["patientid"]
	fhirPatient := "a-" + athenahealth.SandboxPractice + ".E-" + patientID
	pb, ok := f.sim.Get("ah", "Patient", fhirPatient)
	if !ok || !strings.Contains(string(pb), `"birthDate":"1970-03-04"`) {
		t.Fatalf("registered patient not served through FHIR: %s", pb)
	}
	// No idempotency: the same registration again makes a second patient.
	if r := f.form("POST", v1+"/patients", tok, reg); r.status != 200 {
		t.Fatalf("second registration: %d", r.status)
	}

	// Open a slot, list it, book it.
	r = f.form("POST", v1+"/appointments/open", tok, url.Values{"departmentid": {dept}, "providerid": {prov},
		"appointmentdate": {"07/01/2026"}, "appointmenttime": {"09:30"}, "appointmenttypeid": {"82"}})
	var opened struct {
		AppointmentIDs map[string]string `json:"appointmentids"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &opened) != nil || opened.AppointmentIDs["09:30"] == "" {
		t.Fatalf("open slot: %d %s", r.status, r.body)
	}
	apptID := opened.AppointmentIDs["09:30"]
	r = f.get(v1+"/appointments/open?departmentid="+dept, tok)
	if r.status != 200 || !strings.Contains(string(r.body), `"appointmentid":"`+apptID+`"`) {
		t.Fatalf("open list: %d %s", r.status, r.body)
	}
	r = f.form("PUT", v1+"/appointments/"+apptID, tok, url.Values{"patientid": {patientID}, "appointmenttypeid": {"82"}})
	var booked []map[string]any
	if r.status != 200 || json.Unmarshal(r.body, &booked) != nil || len(booked) != 1 || booked[0]["appointmentstatus"] != "f" || booked[0]["patientid"] != patientID {
		t.Fatalf("booking: %d %s", r.status, r.body)
	}
	// Read back through FHIR.
	fhirAppt := "a-" + athenahealth.SandboxPractice + ".appointment-" + apptID
	r = f.get(base+"/Appointment/"+fhirAppt, tok)
	if r.status != 200 || !strings.Contains(string(r.body), `"status":"booked"`) || !strings.Contains(string(r.body), `"reference":"Patient/`+fhirPatient+`"`) {
		t.Fatalf("FHIR read-back: %d %s", r.status, r.body)
	}
	if r.header.Get("ETag") != `W/"2"` {
		t.Fatalf("booked appointment ETag %q", r.header.Get("ETag"))
	}
	// Booking it again (a retry) is refused: no idempotency key.
	r = f.form("PUT", v1+"/appointments/"+apptID, tok, url.Values{"patientid": {patientID}})
	if r.status != 400 || !strings.Contains(string(r.body), `"error"`) {
		t.Fatalf("second booking: %d %s", r.status, r.body)
	}
	// Errors in v1's shape.
	for _, tc := range []struct {
		name, method, path string
		form               url.Values
		status             int
		want               string
	}{
		{"first name too long", "POST", "/patients", url.Values{"departmentid": {dept}, "dob": {"03/04/1970"}, "firstname": {strings.Repeat("a", 21)}, "lastname": {"X"}}, 400, `"field":"firstname"`},
		{"last name 30 ok, 31 too long", "POST", "/patients", url.Values{"departmentid": {dept}, "dob": {"03/04/1970"}, "firstname": {"A"}, "lastname": {strings.Repeat("b", 31)}}, 400, `"field":"lastname"`},
		{"address too long", "POST", "/patients", url.Values{"departmentid": {dept}, "dob": {"03/04/1970"}, "firstname": {"A"}, "lastname": {"B"}, "address1": {strings.Repeat("c", 101)}}, 400, `"field":"address1"`},
		{"missing fields", "POST", "/patients", url.Values{"firstname": {"A"}}, 400, `"missingfields":["departmentid","dob","lastname"]`},
		{"unknown patient", "PUT", "/appointments/" + apptID, url.Values{"patientid": {"1"}}, 400, `"field":"patientid"`},
		{"unknown appointment", "PUT", "/appointments/42", url.Values{"patientid": {patientID}}, 404, `"error"`},
	} {
		r := f.form(tc.method, v1+tc.path, tok, tc.form)
		if r.status != tc.status || !strings.Contains(string(r.body), tc.want) {
			t.Errorf("%s: %d %s", tc.name, r.status, r.body)
		}
	}
	long := url.Values{"departmentid": {dept}, "dob": {"03/04/1970"}, "firstname": {"A"}, "lastname": {strings.Repeat("b", 30)}, "address1": {strings.Repeat("c", 100)}}
	if r := f.form("POST", v1+"/patients", tok, long); r.status != 200 {
		t.Errorf("fields at their limits: %d %s", r.status, r.body)
	}
	if r := f.form("POST", f.srv.URL+"/ah/v1/1/patients", tok, reg); r.status != 403 {
		t.Errorf("other practice: %d", r.status)
	}
	if r := f.form("POST", v1+"/patients", "", reg); r.status != 401 {
		t.Errorf("no token: %d", r.status)
	}
}

func TestECWWriteback(t *testing.T) {
	f := newFixture(t, Config{Tenants: []TenantConfig{{ID: "ecw", Flavor: eclinicalworks.Name, Seed: 9, Data: smallData(30)}}})
	tok := f.token("ecw")
	base := f.sim.BaseURL("ecw")
	wb := f.srv.URL + "/ecw/writeback/"
	answer := func(r resp) (status int, msg, id string) {
		var a struct {
			Status  int    `json:"status"`
			Message string `json:"message"`
			ID      string `json:"id"`
		}
		if err := json.Unmarshal(r.body, &a); err != nil {
			t.Fatalf("writeback answer %d %s: %v", r.status, r.body, err)
		}
		return a.Status, a.Message, a.ID
	}
	if r := f.do("POST", base+"/Patient", tok, []byte(`{"resourceType":"Patient"}`), nil); r.status != 405 {
		t.Fatalf("FHIR create: %d", r.status)
	}
	pat := `{"resourceType":"Patient","identifier":[{"system":"` + testIDSystem + `","value":"e-1"}],"name":[{"family":"Writeback","given":["Eve"]}],"birthDate":"1975-05-06"}`
	r := f.do("POST", wb+"Patient", tok, []byte(pat), nil)
	st, msg, id := answer(r)
	if r.status != 200 || st != ECWSuccess || msg != "SUCCESS" || id == "" {
		t.Fatalf("patient writeback: %d %s", r.status, r.body)
	}
	if rb := f.get(base+"/Patient/"+id, tok); rb.status != 200 || !strings.Contains(string(rb.body), `"family":"Writeback"`) {
		t.Fatalf("FHIR read-back: %d", rb.status)
	}
	// The same patient again: 202, by identifier and by name and birth date.
	r = f.do("POST", wb+"Patient", tok, []byte(pat), nil)
	if st, msg, _ := answer(r); r.status != 200 || st != ECWPatientAlreadyExists || msg != "INVALID_PATIENT_ALREADY_EXIST" {
		t.Fatalf("duplicate patient: %d %s", r.status, r.body)
	}
	samePerson := strings.Replace(pat, `"e-1"`, `"e-2"`, 1)
	if st, _, _ := answer(f.do("POST", wb+"Patient", tok, []byte(samePerson), nil)); st != ECWPatientAlreadyExists {
		t.Fatalf("same person, other identifier: status %d", st)
	}
	if n := len(f.sim.FindByIdentifier("ecw", "Patient", testIDSystem, "e-1")) + len(f.sim.FindByIdentifier("ecw", "Patient", testIDSystem, "e-2")); n != 1 {
		t.Fatalf("%d patients, want 1", n)
	}
	allergy := `{"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/` + id + `"},"code":{"text":"Peanut"}}`
	if st, _, aid := answer(f.do("POST", wb+"AllergyIntolerance", tok, []byte(allergy), nil)); st != ECWSuccess || aid == "" {
		t.Fatalf("allergy writeback: status %d", st)
	}
	ghost := strings.Replace(allergy, id, "404404", 1)
	if st, msg, _ := answer(f.do("POST", wb+"AllergyIntolerance", tok, []byte(ghost), nil)); st != ECWInvalidPatient || msg != "INVALID_PATIENT" {
		t.Fatalf("unknown patient: %d %s", st, msg)
	}
	if r := f.do("POST", wb+"AllergyIntolerance", tok, []byte(`{"resourceType":"Patient"}`), nil); r.status != 400 {
		t.Fatalf("type mismatch: %d", r.status)
	}
	if r := f.do("POST", wb+"Appointment", tok, []byte(`{"resourceType":"Appointment"}`), nil); r.status != 404 {
		t.Fatalf("unsupported type: %d", r.status)
	}
	if r := f.do("POST", wb+"Patient", "", []byte(pat), nil); r.status != 401 {
		t.Fatalf("no token: %d", r.status)
	}
	// FHIR side: paging on "page"; 429 without Retry-After.
	r = f.get(base+"/Observation?_count=2", tok)
	if next := bundleOf(t, r.body).NextLink(); !strings.Contains(next, "page=") {
		t.Fatalf("next link %q", next)
	}
	if err := f.sim.SetFaults("ecw", []fault.Fault{{Endpoint: "Patient", Kind: fault.TooManyRequests}}); err != nil {
		t.Fatal(err)
	}
	if r := f.get(base+"/Patient/"+id, tok); r.status != 429 || r.header.Get("Retry-After") != "" {
		t.Fatalf("throttled: %d Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
}

// rawClient sends one request with its own timeout and reports the error.
func rawRequest(method, u, tok string, body []byte, hdr map[string]string, timeout time.Duration) (*http.Response, error) {
	req, err := http.NewRequest(method, u, strings.NewReader(string(body)))
	if err != nil {
		return nil, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := c.Do(req)
	if err == nil {
		_ = res.Body.Close()
	}
	return res, err
}

func TestFaultTimeoutAfterCommit(t *testing.T) {
	f := newFixture(t, Config{Tenants: []TenantConfig{{ID: "g", Seed: 10, Data: smallData(5)}}})
	tok := f.token("g")
	base := f.sim.BaseURL("g")
	pid := anyID(f.sim.Current("g", "Patient"))

	// Hold until the client gives up: the client times out, the write is there.
	if err := f.sim.SetFaults("g", []fault.Fault{{Endpoint: "write:DocumentReference", Kind: fault.TimeoutAfterCommit, Limit: 1}}); err != nil {
		t.Fatal(err)
	}
	_, err := rawRequest("POST", base+"/DocumentReference", tok, []byte(noteWithIdentifier(pid, "t-1")), nil, 300*time.Millisecond)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("want a client timeout, got %v", err)
	}
	if ids := f.sim.FindByIdentifier("g", "DocumentReference", testIDSystem, "t-1"); len(ids) != 1 {
		t.Fatalf("committed records %v, want exactly one", ids)
	}
	// Reads are not affected, and the rule (limit 1) is spent: the next write answers.
	if r := f.do("POST", base+"/DocumentReference", tok, []byte(noteWithIdentifier(pid, "t-2")), nil); r.status != 201 {
		t.Fatalf("write after the fault: %d", r.status)
	}

	// Hold for a fixed time, then close without an answer: the client sees
	// the connection end (not a timeout), the update is committed.
	if err := f.sim.SetFaults("g", []fault.Fault{{Endpoint: "write", Kind: fault.TimeoutAfterCommit, Latency: fault.Duration(50 * time.Millisecond)}}); err != nil {
		t.Fatal(err)
	}
	id := f.sim.FindByIdentifier("g", "DocumentReference", testIDSystem, "t-2")[0]
	cur, _ := f.sim.Get("g", "DocumentReference", id)
	o, _ := gen.ParseObj(cur)
	o.Set("docStatus", "amended")
	start := time.Now()
	_, err = rawRequest("PUT", base+"/DocumentReference/"+id, tok, objBytes(t, o), map[string]string{"If-Match": `W/"1"`}, 10*time.Second)
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("want the connection closed without an answer, got %v", err)
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Fatalf("answer came before the hold ended")
	}
	if cur, _ := f.sim.Get("g", "DocumentReference", id); !strings.Contains(string(cur), `"docStatus":"amended"`) || !strings.Contains(string(cur), `"versionId":"2"`) {
		t.Fatalf("update not committed: %.200s", cur)
	}
	// Searches and reads never hit it.
	if r := f.get(base+"/DocumentReference/"+id, tok); r.status != 200 {
		t.Fatalf("read under a write fault: %d", r.status)
	}
}

func TestFaultsBeforeCommitWriteNothing(t *testing.T) {
	f := newFixture(t, Config{Tenants: []TenantConfig{{ID: "g", Seed: 11, Data: smallData(5)}}})
	tok := f.token("g")
	base := f.sim.BaseURL("g")
	pid := anyID(f.sim.Current("g", "Patient"))
	for i, tc := range []struct {
		kind   fault.Kind
		status int
	}{
		{fault.ServerError, 500}, {fault.Unavailable, 503}, {fault.TooManyRequests, 429}, {fault.Drop, 0},
	} {
		if err := f.sim.SetFaults("g", []fault.Fault{{Endpoint: "write:DocumentReference", Kind: tc.kind}}); err != nil {
			t.Fatal(err)
		}
		value := "b-" + string(rune('a'+i))
		res, err := rawRequest("POST", base+"/DocumentReference", tok, []byte(noteWithIdentifier(pid, value)), nil, 5*time.Second)
		switch {
		case tc.status == 0 && err == nil:
			t.Errorf("%s: got an answer %d", tc.kind, res.StatusCode)
		case tc.status != 0 && (err != nil || res.StatusCode != tc.status):
			t.Errorf("%s: %v %v", tc.kind, res, err)
		}
		if tc.status == 429 || tc.status == 503 {
			if res.Header.Get("Retry-After") == "" {
				t.Errorf("%s without Retry-After", tc.kind)
			}
		}
		if n := len(f.sim.FindByIdentifier("g", "DocumentReference", testIDSystem, value)); n != 0 {
			t.Errorf("%s: %d records written", tc.kind, n)
		}
		// Reads and searches of the type are untouched by write rules.
		if r := f.get(base+"/DocumentReference?patient="+pid, tok); r.status != 200 {
			t.Errorf("%s: search under a write fault: %d", tc.kind, r.status)
		}
	}
}

func TestFaultTimeoutAfterCommitVendorAPI(t *testing.T) {
	f, v1 := athenaFixture(t)
	tok := f.token("ah")
	dept := athenaLocal(anyID(f.sim.Current("ah", "Location")))
	if err := f.sim.SetFaults("ah", []fault.Fault{{Endpoint: "write:Patient", Kind: fault.TimeoutAfterCommit, Latency: fault.Duration(20 * time.Millisecond)}}); err != nil {
		t.Fatal(err)
	}
	before := len(f.sim.Current("ah", "Patient"))
	form := url.Values{"departmentid": {dept}, "dob": {"01/02/1990"}, "firstname": {"Tim"}, "lastname": {"Out"}}
	req, _ := http.NewRequestWithContext(context.Background(), "POST", v1+"/patients", strings.NewReader(form.Encode()))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err == nil {
		_ = res.Body.Close()
		t.Fatalf("got an answer %d", res.StatusCode)
	}
	if after := len(f.sim.Current("ah", "Patient")); after != before+1 {
		t.Fatalf("patients %d → %d: the registration was not committed once", before, after)
	}
}

func TestJSONPatch(t *testing.T) {
	doc := func() *gen.Obj {
		o, _ := gen.ParseObj([]byte(`{"a":1,"b":{"c":[1,2,3]},"d~/e":"x"}`))
		return o
	}
	for _, tc := range []struct {
		ops, want string
		fail      bool
	}{
		{`[{"op":"add","path":"/z","value":{"k":true}}]`, `{"a":1,"b":{"c":[1,2,3]},"d~/e":"x","z":{"k":true}}`, false},
		{`[{"op":"add","path":"/b/c/1","value":9}]`, `{"a":1,"b":{"c":[1,9,2,3]},"d~/e":"x"}`, false},
		{`[{"op":"add","path":"/b/c/-","value":4}]`, `{"a":1,"b":{"c":[1,2,3,4]},"d~/e":"x"}`, false},
		{`[{"op":"remove","path":"/b/c/0"}]`, `{"a":1,"b":{"c":[2,3]},"d~/e":"x"}`, false},
		{`[{"op":"replace","path":"/d~0~1e","value":"y"}]`, `{"a":1,"b":{"c":[1,2,3]},"d~/e":"y"}`, false},
		{`[{"op":"move","from":"/a","path":"/b/a"}]`, `{"b":{"c":[1,2,3],"a":1},"d~/e":"x"}`, false},
		{`[{"op":"copy","from":"/b/c","path":"/c2"}]`, `{"a":1,"b":{"c":[1,2,3]},"d~/e":"x","c2":[1,2,3]}`, false},
		{`[{"op":"test","path":"/b/c","value":[1,2,3]},{"op":"replace","path":"/a","value":2}]`, `{"a":2,"b":{"c":[1,2,3]},"d~/e":"x"}`, false},
		{`[{"op":"test","path":"/a","value":2}]`, ``, true},
		{`[{"op":"replace","path":"/missing","value":2}]`, ``, true},
		{`[{"op":"remove","path":"/b/c/7"}]`, ``, true},
		{`[{"op":"add","path":"","value":{}}]`, ``, true},
	} {
		ops, err := parseJSONPatch([]byte(tc.ops))
		if err != nil {
			t.Fatalf("%s: %v", tc.ops, err)
		}
		d := doc()
		err = applyJSONPatch(d, ops)
		if tc.fail {
			if err == nil {
				t.Errorf("%s: applied, want an error", tc.ops)
			}
			continue
		}
		got, _ := d.Bytes()
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: %s %v, want %s", tc.ops, got, err, tc.want)
		}
	}
	for _, bad := range []string{`{}`, `[]`, `[{"op":"jump","path":"/a"}]`, `[{"op":"add","path":"/a"}]`, `[{"op":"move","path":"/a"}]`} {
		if _, err := parseJSONPatch([]byte(bad)); err == nil {
			t.Errorf("%s parsed", bad)
		}
	}
}

func TestConcurrentCreatesOneRecordPerIntent(t *testing.T) {
	f := newFixture(t, Config{Tenants: []TenantConfig{
		{ID: "g", Seed: 12, Data: smallData(5)},
		{ID: "ep", Flavor: epic.Name, Seed: 13, Data: smallData(5)},
	}})
	for _, tenant := range []string{"g", "ep"} {
		tok := f.token(tenant)
		base := f.sim.BaseURL(tenant)
		pid := anyID(f.sim.Current(tenant, "Patient"))
		var hdr map[string]string
		if tenant == "g" {
			hdr = map[string]string{"If-None-Exist": "identifier=" + url.QueryEscape(testIDSystem+"|race")}
		}
		const n = 12
		statuses := make(chan int, n)
		for range n {
			go func() {
				res, err := rawRequest("POST", base+"/DocumentReference", tok, []byte(noteWithIdentifier(pid, "race")), hdr, 10*time.Second)
				if err != nil {
					statuses <- -1
					return
				}
				statuses <- res.StatusCode
			}()
		}
		got := map[int]int{}
		for range n {
			got[<-statuses]++
		}
		if ids := f.sim.FindByIdentifier(tenant, "DocumentReference", testIDSystem, "race"); len(ids) != 1 {
			t.Errorf("%s: %d records after %d concurrent creates (answers %v)", tenant, len(ids), n, got)
		}
		// generic: one 201, the rest 200 (the existing one); Epic: one 201, the rest 59141.
		other := http.StatusOK
		if tenant == "ep" {
			other = http.StatusBadRequest
		}
		if got[201] != 1 || got[other] != n-1 {
			t.Errorf("%s: answers %v", tenant, got)
		}
	}
}

func TestOraclePatchMayNotMixCodings(t *testing.T) {
	f := oracleFixture(t)
	base := f.sim.BaseURL("oh")
	// Generated appointments carry a mixed appointmentType.coding: a status
	// patch leaves it alone and goes through; a patch adding a standard
	// coding to a proprietary-only array makes a new mixed one: 422.
	aid := firstWhere(t, f.sim, "oh", "Appointment", func(o *gen.Obj) bool { return o.Str("status") == "booked" })
	u := base + "/Appointment/" + aid
	hdr := func(v string) map[string]string {
		return map[string]string{"Content-Type": jsonPatchType, "If-Match": v}
	}
	if r := f.do("PATCH", u, "", []byte(`[{"op":"replace","path":"/status","value":"arrived"}]`), hdr(`W/"0"`)); r.status != 200 {
		t.Fatalf("status patch on served data: %d %s", r.status, r.body)
	}
	ops := `[{"op":"add","path":"/serviceType","value":[{"coding":[{"system":"https://fhir.cerner.com/oh/codeSet/34","code":"1"}]}]},` +
		`{"op":"add","path":"/serviceType/0/coding/-","value":{"system":"http://snomed.info/sct","code":"2"}}]`
	r := f.do("PATCH", u, "", []byte(ops), hdr(`W/"1"`))
	if r.status != 422 || !strings.Contains(outcomeOf(t, r).Issue[0].Diagnostics, "serviceType") {
		t.Fatalf("patch building a mixed array: %d %s", r.status, r.body)
	}
}
