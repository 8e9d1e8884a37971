package sim

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/sim/flavor/generic"
)

func anyID(m map[string][]byte) string {
	for k := range m {
		return k
	}
	return ""
}

func TestCreateUpdateIfMatch(t *testing.T) {
	f := twoTenants(t, nil)
	tok := f.token("acme")
	base := f.sim.BaseURL("acme")
	pid := anyID(f.sim.Current("acme", "Patient"))
	doc := `{"resourceType":"DocumentReference","id":"client-chosen","status":"current","type":{"text":"Progress note"},` +
		`"subject":{"reference":"Patient/` + pid + `"},"content":[{"attachment":{"contentType":"text/plain","data":"Tm90ZQ=="}}]}`

	r := f.do("POST", base+"/DocumentReference", tok, []byte(doc), nil)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	h, err := fhir.ParseHeader(r.body)
	if err != nil || h.ID == "" || h.ID == "client-chosen" || h.VersionID != "1" || h.LastUpdated.IsZero() {
		t.Fatalf("created resource header %+v %v", h, err)
	}
	if loc := r.header.Get("Location"); loc != base+"/DocumentReference/"+h.ID+"/_history/1" {
		t.Errorf("Location %q", loc)
	}
	if r.header.Get("ETag") != `W/"1"` {
		t.Errorf("ETag %q", r.header.Get("ETag"))
	}
	if got := f.sim.Current("acme", "DocumentReference")[h.ID]; string(got) != string(r.body) {
		t.Errorf("ground truth differs from the 201 body")
	}

	// Update with the current version: 200, version 2.
	var obj map[string]any
	_ = json.Unmarshal(r.body, &obj)
	obj["docStatus"] = "amended"
	upd, _ := json.Marshal(obj)
	u := base + "/DocumentReference/" + h.ID
	r = f.do("PUT", u, tok, upd, map[string]string{"If-Match": `W/"1"`})
	if r.status != http.StatusOK || r.header.Get("ETag") != `W/"2"` || !strings.Contains(string(r.body), `"docStatus":"amended"`) {
		t.Fatalf("update: %d ETag %q %s", r.status, r.header.Get("ETag"), r.body)
	}
	// Stale If-Match: 412 and nothing written.
	r = f.do("PUT", u, tok, upd, map[string]string{"If-Match": `W/"1"`})
	if r.status != http.StatusPreconditionFailed || outcomeOf(t, r).Issue[0].Code != "conflict" {
		t.Fatalf("stale If-Match: %d %s", r.status, r.body)
	}
	if v, _ := f.sim.Get("acme", "DocumentReference", h.ID); !strings.Contains(string(v), `"versionId":"2"`) {
		t.Errorf("stale write changed the resource")
	}
	// Without If-Match the update goes through (version 3).
	r = f.do("PUT", u, tok, upd, map[string]string{"Prefer": "return=minimal"})
	if r.status != 200 || len(r.body) != 0 || r.header.Get("ETag") != `W/"3"` {
		t.Fatalf("unconditional update, minimal: %d %q %s", r.status, r.header.Get("ETag"), r.body)
	}
	// Errors.
	cases := []struct {
		name, method, url, body string
		hdr                     map[string]string
		status                  int
	}{
		{"id mismatch", "PUT", u, strings.Replace(string(upd), h.ID, "other", 1), nil, 400},
		{"bad If-Match", "PUT", u, string(upd), map[string]string{"If-Match": "yesterday"}, 400},
		{"update missing", "PUT", base + "/DocumentReference/nope", strings.Replace(string(upd), h.ID, "nope", 1), nil, 404},
		{"not JSON", "POST", base + "/DocumentReference", "<xml/>", nil, 400},
		{"wrong type", "POST", base + "/DocumentReference", `{"resourceType":"Patient"}`, nil, 400},
		{"no content", "POST", base + "/DocumentReference", `{"resourceType":"DocumentReference","status":"current"}`, nil, 422},
		{"dangling patient", "POST", base + "/DocumentReference", strings.Replace(doc, pid, "ghost", 1), nil, 422},
		{"appointment no participant", "POST", base + "/Appointment", `{"resourceType":"Appointment","status":"booked"}`, nil, 422},
		{"appointment bad status", "POST", base + "/Appointment", `{"resourceType":"Appointment","status":"maybe","participant":[{"actor":{"reference":"Patient/` + pid + `"}}]}`, nil, 422},
		{"patient create not allowed", "POST", base + "/Patient", `{"resourceType":"Patient"}`, nil, 405},
		{"media type", "POST", base + "/DocumentReference", doc, map[string]string{"Content-Type": "text/plain"}, 415},
	}
	for _, c := range cases {
		r := f.do(c.method, c.url, tok, []byte(c.body), c.hdr)
		if r.status != c.status {
			t.Errorf("%s: %d, want %d: %s", c.name, r.status, c.status, r.body)
			continue
		}
		outcomeOf(t, r)
	}
	// Appointment create + update works on generic.
	appt := `{"resourceType":"Appointment","status":"booked","start":"2026-08-01T10:00:00Z","end":"2026-08-01T10:30:00Z","participant":[{"actor":{"reference":"Patient/` + pid + `"},"status":"accepted"}]}`
	if r := f.do("POST", base+"/Appointment", tok, []byte(appt), nil); r.status != 201 {
		t.Fatalf("appointment create: %d %s", r.status, r.body)
	}
}

func TestEpicWriteRules(t *testing.T) {
	f := twoTenants(t, nil)
	tok := f.token("epicclinic")
	base := f.sim.BaseURL("epicclinic")
	aid := anyID(f.sim.Current("epicclinic", "Appointment"))
	appt, _ := f.sim.Get("epicclinic", "Appointment", aid)
	r := f.do("PUT", base+"/Appointment/"+aid, tok, appt, nil)
	if r.status != http.StatusMethodNotAllowed || !strings.Contains(r.header.Get("Allow"), "GET") || strings.Contains(r.header.Get("Allow"), "PUT") {
		t.Fatalf("epic appointment update: %d Allow=%q", r.status, r.header.Get("Allow"))
	}
	for _, rt := range []string{"Appointment", "Coverage", "Encounter", "Practitioner"} {
		if r := f.do("POST", base+"/"+rt, tok, []byte(`{"resourceType":"`+rt+`"}`), nil); r.status != http.StatusMethodNotAllowed {
			t.Errorf("epic %s create: %d, want 405", rt, r.status)
		}
	}
	pid := anyID(f.sim.Current("epicclinic", "Patient"))
	doc := `{"resourceType":"DocumentReference","status":"current","subject":{"reference":"Patient/` + pid + `"},"content":[{"attachment":{"contentType":"text/plain","data":"Tm90ZQ=="}}]}`
	r = f.do("POST", base+"/DocumentReference", tok, []byte(doc), nil)
	if r.status != 201 {
		t.Fatalf("epic note create: %d %s", r.status, r.body)
	}
	h, _ := fhir.ParseHeader(r.body)
	if !strings.HasPrefix(h.ID, "e") || !strings.HasSuffix(h.ID, "3") {
		t.Errorf("epic-style id expected, got %q", h.ID)
	}
	if r := f.do("PUT", base+"/DocumentReference/"+h.ID, tok, r.body, map[string]string{"If-Match": `W/"1"`}); r.status != 200 {
		t.Errorf("epic note update: %d", r.status)
	}
}

// conflictFlavor is the generic flavour answering 409 on stale versions (as
// Oracle Health does), to show the status comes from the flavour.
type conflictFlavor struct{ generic.Flavor }

func (c conflictFlavor) Info() flavor.Info {
	i := c.Flavor.Info()
	i.StaleStatus = http.StatusConflict
	return i
}

func TestStaleVersion409ByFlavor(t *testing.T) {
	f := newFixture(t, Config{
		Flavors: map[string]flavor.Flavor{"conflicting": conflictFlavor{}},
		Tenants: []TenantConfig{{ID: "c", Flavor: "conflicting", Data: smallData(5)}},
	})
	tok := f.token("c")
	aid := anyID(f.sim.Current("c", "Appointment"))
	body, _ := f.sim.Get("c", "Appointment", aid)
	u := f.sim.BaseURL("c") + "/Appointment/" + aid
	if r := f.do("PUT", u, tok, body, map[string]string{"If-Match": `W/"1"`}); r.status != 200 {
		t.Fatalf("first update: %d %s", r.status, r.body)
	}
	r := f.do("PUT", u, tok, body, map[string]string{"If-Match": `W/"1"`})
	if r.status != http.StatusConflict || outcomeOf(t, r).Issue[0].Code != "conflict" {
		t.Fatalf("stale update: %d, want 409", r.status)
	}
}
