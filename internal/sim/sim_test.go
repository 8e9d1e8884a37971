package sim

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
)

func twoTenants(t testing.TB, now func() time.Time) *fixture {
	return newFixture(t, Config{
		Now: now,
		Tenants: []TenantConfig{
			{ID: "acme", Flavor: "generic", Seed: 1, Data: smallData(40)},
			{ID: "epicclinic", Flavor: "epic", Seed: 2, Data: smallData(40)},
		},
	})
}

func TestDiscoveryAndURLs(t *testing.T) {
	f := twoTenants(t, nil)
	if got, want := f.sim.BaseURL("acme"), f.srv.URL+"/acme/fhir/r4"; got != want {
		t.Errorf("generic base %q, want %q", got, want)
	}
	if got, want := f.sim.BaseURL("epicclinic"), f.srv.URL+"/epicclinic/api/FHIR/R4"; got != want {
		t.Errorf("epic base %q, want %q", got, want)
	}
	if got, want := f.sim.TokenURL("epicclinic"), f.srv.URL+"/epicclinic/oauth2/token"; got != want {
		t.Errorf("epic token URL %q, want %q", got, want)
	}
	for _, id := range f.sim.Tenants() {
		r := f.get(f.sim.BaseURL(id)+"/metadata", "")
		if r.status != 200 {
			t.Fatalf("%s metadata: %d", id, r.status)
		}
		var cs struct {
			ResourceType string
			FHIRVersion  string `json:"fhirVersion"`
			Rest         []struct {
				Security struct {
					Extension []struct {
						URL       string `json:"url"`
						Extension []struct {
							URL      string `json:"url"`
							ValueURI string `json:"valueUri"`
						} `json:"extension"`
					} `json:"extension"`
				} `json:"security"`
			} `json:"rest"`
		}
		if err := json.Unmarshal(r.body, &cs); err != nil || cs.ResourceType != "CapabilityStatement" || cs.FHIRVersion != "4.0.1" {
			t.Fatalf("%s metadata: %v %.200s", id, err, r.body)
		}
		token := ""
		for _, e := range cs.Rest[0].Security.Extension {
			for _, x := range e.Extension {
				if e.URL == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris" && x.URL == "token" {
					token = x.ValueURI
				}
			}
		}
		if token != f.sim.TokenURL(id) {
			t.Errorf("%s oauth-uris token %q, want %q", id, token, f.sim.TokenURL(id))
		}
		r = f.get(f.sim.BaseURL(id)+"/.well-known/smart-configuration", "")
		var sc struct {
			TokenEndpoint string   `json:"token_endpoint"`
			Capabilities  []string `json:"capabilities"`
		}
		if err := json.Unmarshal(r.body, &sc); err != nil || sc.TokenEndpoint != f.sim.TokenURL(id) {
			t.Errorf("%s smart-configuration: %v %.200s", id, err, r.body)
		}
		if !strings.Contains(strings.Join(sc.Capabilities, " "), "permission-v2") {
			t.Errorf("%s smart-configuration lacks permission-v2", id)
		}
	}
	// The index lists tenants.
	r := f.get(f.srv.URL+"/", "")
	if r.status != 200 || !strings.Contains(string(r.body), `"epicclinic"`) {
		t.Errorf("index: %d %s", r.status, r.body)
	}
}

func TestAuthRequired(t *testing.T) {
	f := twoTenants(t, nil)
	base := f.sim.BaseURL("acme")
	r := f.get(base+"/Patient", "")
	if r.status != http.StatusUnauthorized {
		t.Fatalf("no token: status %d, want 401", r.status)
	}
	if oo := outcomeOf(t, r); oo.Issue[0].Code != "login" {
		t.Errorf("401 issue code %q", oo.Issue[0].Code)
	}
	if r.header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	r = f.get(base+"/Patient", "not-a-token")
	if r.status != http.StatusUnauthorized {
		t.Fatalf("bogus token: status %d, want 401", r.status)
	}
	patientOnly := f.token("acme", "system/Patient.rs")
	if r := f.get(base+"/Patient?_count=1", patientOnly); r.status != 200 {
		t.Fatalf("Patient with Patient scope: %d %.200s", r.status, r.body)
	}
	r = f.get(base+"/Observation", patientOnly)
	if r.status != http.StatusForbidden {
		t.Fatalf("Observation with Patient-only scope: %d, want 403", r.status)
	}
	if oo := outcomeOf(t, r); oo.Issue[0].Code != "forbidden" {
		t.Errorf("403 issue code %q", oo.Issue[0].Code)
	}
	// Read-only scopes cannot write.
	ro := f.token("acme", "system/*.read")
	doc := []byte(`{"resourceType":"DocumentReference","status":"current","content":[{"attachment":{"contentType":"text/plain","data":"aGk="}}]}`)
	if r := f.do("POST", base+"/DocumentReference", ro, doc, nil); r.status != http.StatusForbidden {
		t.Fatalf("create with read scope: %d, want 403", r.status)
	}
	// A token of one tenant is not valid at another.
	if r := f.get(f.sim.BaseURL("epicclinic")+"/Patient?_count=1", patientOnly); r.status != http.StatusUnauthorized {
		t.Fatalf("acme token at epicclinic: %d, want 401", r.status)
	}
	// Open tenants need no token.
	open := newFixture(t, Config{Tenants: []TenantConfig{{ID: "open", OpenAuth: true, Data: smallData(5)}}})
	if r := open.get(open.sim.BaseURL("open")+"/Patient", ""); r.status != 200 {
		t.Fatalf("open tenant: %d", r.status)
	}
}

func TestReadVReadHistoryETag(t *testing.T) {
	f := twoTenants(t, nil)
	tok := f.token("acme")
	base := f.sim.BaseURL("acme")
	cur := f.sim.Current("acme", "Patient")
	var id string
	for k := range cur {
		id = k
		break
	}
	r := f.get(base+"/Patient/"+id, tok)
	if r.status != 200 || string(r.body) != string(cur[id]) {
		t.Fatalf("read: %d, body equal %v", r.status, string(r.body) == string(cur[id]))
	}
	if r.header.Get("ETag") != `W/"1"` || r.header.Get("Last-Modified") == "" {
		t.Errorf("read headers: ETag %q Last-Modified %q", r.header.Get("ETag"), r.header.Get("Last-Modified"))
	}
	h, _ := fhir.ParseHeader(r.body)
	if h.ID != id || h.VersionID != "1" || h.LastUpdated.IsZero() {
		t.Errorf("meta: %+v", h)
	}
	// Conditional read.
	if r := f.do("GET", base+"/Patient/"+id, tok, nil, map[string]string{"If-None-Match": `W/"1"`}); r.status != http.StatusNotModified {
		t.Errorf("If-None-Match current: %d, want 304", r.status)
	}
	// New version via the change generator path (direct Put), then vread both.
	if _, _, v, err := f.sim.Put("acme", cur[id]); err != nil || v != 2 {
		t.Fatalf("put: v%d %v", v, err)
	}
	if r := f.get(base+"/Patient/"+id+"/_history/1", tok); r.status != 200 || !strings.Contains(string(r.body), `"versionId":"1"`) {
		t.Errorf("vread 1: %d", r.status)
	}
	if r := f.get(base+"/Patient/"+id+"/_history/2", tok); r.status != 200 || r.header.Get("ETag") != `W/"2"` {
		t.Errorf("vread 2: %d %s", r.status, r.header.Get("ETag"))
	}
	r = f.get(base+"/Patient/"+id+"/_history", tok)
	if bu := bundleOf(t, r.body); bu.Type != "history" || len(bu.Entry) != 2 {
		t.Errorf("history: type %s, %d entries", bu.Type, len(bu.Entry))
	}
	r = f.get(base+"/Patient/does-not-exist", tok)
	if r.status != 404 || outcomeOf(t, r).Issue[0].Code != "not-found" {
		t.Errorf("missing: %d", r.status)
	}
	r = f.do("DELETE", base+"/Patient/"+id, tok, nil, nil)
	if r.status != 405 || r.header.Get("Allow") == "" {
		t.Errorf("DELETE: %d Allow=%q", r.status, r.header.Get("Allow"))
	}
	outcomeOf(t, r)
	// Epic has no vread.
	etok := f.token("epicclinic")
	for pid := range f.sim.Current("epicclinic", "Patient") {
		if r := f.get(f.sim.BaseURL("epicclinic")+"/Patient/"+pid+"/_history/1", etok); r.status != 405 {
			t.Errorf("epic vread: %d, want 405", r.status)
		}
		break
	}
	// Unknown type / not served type.
	if r := f.get(base+"/Claim", tok); r.status != 404 {
		t.Errorf("Claim: %d", r.status)
	}
	if r := f.get(f.sim.BaseURL("epicclinic")+"/Slot", etok); r.status != 404 || outcomeOf(t, r).Issue[0].Code != "not-supported" {
		t.Errorf("epic Slot: %d", r.status)
	}
	if r := f.do("GET", base+"/Patient/"+id, tok, nil, map[string]string{"Accept": "application/fhir+xml"}); r.status != http.StatusNotAcceptable {
		t.Errorf("xml accept: %d", r.status)
	}
}

func TestServeStartAndStop(t *testing.T) {
	s, err := New(Config{Tenants: []TenantConfig{{ID: "a", OpenAuth: true, Data: smallData(3), ChangeRate: 200}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	root, err := s.Start(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	before := s.Counts("a")["Observation"] + s.Counts("a")["Appointment"]
	res, err := http.Get(root + "/a/fhir/r4/metadata")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("metadata over Start: %v %v", err, res)
	}
	res.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if s.Counts("a")["Observation"]+s.Counts("a")["Appointment"] > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the background change generator made no new resources")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	s.Wait()
	if _, err := http.Get(root + "/a/fhir/r4/metadata"); err == nil {
		t.Fatal("server still answering after cancel")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no tenants":     {},
		"bad id":         {Tenants: []TenantConfig{{ID: "Bad Id"}}},
		"dup":            {Tenants: []TenantConfig{{ID: "a"}, {ID: "a"}}},
		"unknown flavor": {Tenants: []TenantConfig{{ID: "a", Flavor: "cerner-ish"}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSyntheaTenant(t *testing.T) {
	dir := sharedPath(t, "testdata/synthea-r4")
	f := newFixture(t, Config{Tenants: []TenantConfig{{ID: "syn", SyntheaDir: dir}, {ID: "synepic", Flavor: "epic"}}})
	counts := f.sim.Counts("syn")
	if counts["Patient"] < 20 || counts["Observation"] < 1000 || counts["Claim"] != 0 {
		t.Fatalf("counts %v", counts)
	}
	tok := f.token("syn")
	pid := anyID(f.sim.Current("syn", "Patient"))
	ids, _, _ := f.walk(f.sim.BaseURL("syn")+"/Encounter?patient=Patient/"+pid+"&_count=100", tok, nil)
	if len(ids) == 0 {
		t.Fatal("no encounters found by patient reference after the urn:uuid rewrite")
	}
	// Loading later into an Epic tenant keeps only the types Epic serves.
	st, err := f.sim.LoadSynthea("synepic", dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Loaded["Patient"] != counts["Patient"] {
		t.Errorf("epic tenant loaded %d patients, generic %d", st.Loaded["Patient"], counts["Patient"])
	}
}
