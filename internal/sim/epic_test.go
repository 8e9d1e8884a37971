package sim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/sim/flavor/epic"
)

func TestEpicSearchBehaviour(t *testing.T) {
	f := newFixture(t, Config{Tenants: []TenantConfig{
		{ID: "lenient", Flavor: "epic", Seed: 9, Data: smallData(120)},
		{ID: "strict", Flavor: "epic", Seed: 9, Data: smallData(120), Strict: true},
	}})
	for _, id := range []string{"lenient", "strict"} {
		tok := f.token(id)
		base := f.sim.BaseURL(id)
		// 4101: an empty searchset carries a warning outcome entry.
		r := f.get(base+"/Condition?patient=nobody", tok)
		bu := bundleOf(t, r.body)
		if r.status != 200 || bu.Total == nil || *bu.Total != 0 || len(bu.Entry) != 1 || bu.Entry[0].Search.Mode != "outcome" ||
			!strings.Contains(string(bu.Entry[0].Resource), `"code":"4101"`) || !strings.Contains(string(bu.Entry[0].Resource), epic.ErrorSystem) {
			t.Errorf("%s empty search: %d %s", id, r.status, r.body)
		}
		// Epic spells _lastUpdated in lower case for DocumentReference.
		if r := f.get(base+"/DocumentReference?_lastupdated=ge2000-01-01&patient="+anyID(f.sim.Current(id, "Patient")), tok); r.status != 200 {
			t.Errorf("%s _lastupdated: %d %s", id, r.status, r.body)
		}
		// Identifiers: only type.text.
		pid := anyID(f.sim.Current(id, "Patient"))
		r = f.get(base+"/Patient/"+pid, tok)
		if !strings.Contains(string(r.body), `"type":{"text":"EPI"}`) || strings.Contains(string(r.body), "v2-0203") {
			t.Errorf("%s patient identifiers not Epic-shaped: %.400s", id, r.body)
		}
	}

	// Strict mode: required parameters (4111), the 100-patient limit (4127),
	// parameters Epic does not list.
	tok := f.token("strict")
	base := f.sim.BaseURL("strict")
	r := f.get(base+"/Patient", tok)
	if oo := outcomeOf(t, r); r.status != 400 || oo.Issue[0].Details.Coding[0].Code != epic.CodeParamMissing {
		t.Errorf("strict Patient without criteria: %d %s", r.status, r.body)
	}
	r = f.get(base+"/Observation?patient="+anyID(f.sim.Current("strict", "Patient")), tok)
	if oo := outcomeOf(t, r); r.status != 400 || oo.Issue[0].Details.Coding[0].Code != epic.CodeParamMissing {
		t.Errorf("strict Observation without category: %d %s", r.status, r.body)
	}
	// All 120 patients share the EPI system: identifier=system| matches them all.
	var epiSystem string
	body, _ := f.sim.Get("strict", "Patient", anyID(f.sim.Current("strict", "Patient")))
	if i := strings.Index(string(body), `"type":{"text":"EPI"},"system":"`); i >= 0 {
		rest := string(body)[i+len(`"type":{"text":"EPI"},"system":"`):]
		epiSystem = rest[:strings.IndexByte(rest, '"')]
	}
	r = f.get(base+"/Patient?identifier="+url.QueryEscape(epiSystem+"|"), tok)
	if oo := outcomeOf(t, r); r.status != 400 || oo.Issue[0].Details.Coding[0].Code != epic.CodeTooMany {
		t.Errorf("strict Patient over 100: %d %s", r.status, r.body)
	}
	if r := f.get(f.sim.BaseURL("lenient")+"/Patient?identifier="+url.QueryEscape(epiSystem+"|"), f.token("lenient")); r.status != 200 {
		t.Errorf("lenient Patient over 100: %d", r.status)
	}
	// Epic's demographic minimum set with legal-sex and phone.
	var p struct {
		Name []struct {
			Family string
			Given  []string
		}
		Gender  string
		Telecom []struct{ System, Value string }
	}
	pid := anyID(f.sim.Current("strict", "Patient"))
	body, _ = f.sim.Get("strict", "Patient", pid)
	_ = json.Unmarshal(body, &p)
	q := url.Values{"given": {p.Name[0].Given[0]}, "family": {p.Name[0].Family}, "legal-sex": {p.Gender}, "telecom": {p.Telecom[0].Value}}
	r = f.get(base+"/Patient?"+q.Encode(), tok)
	if bu := bundleOf(t, r.body); r.status != 200 || len(bu.Entry) == 0 || !strings.Contains(string(r.body), pid) {
		t.Errorf("strict Patient by given+family+legal-sex+telecom: %d %.300s", r.status, r.body)
	}
	if r := f.get(base+"/Organization?name=x", tok); r.status != http.StatusBadRequest {
		t.Errorf("strict Organization?name: %d, want 400", r.status)
	}
	if r := f.get(base+"/Patient?_lastUpdated=ge2020-01-01&_id=x", tok); r.status != http.StatusBadRequest {
		t.Errorf("strict Patient?_lastUpdated: %d, want 400", r.status)
	}
	// The strict statement declares only Epic's parameters.
	declared := func(tenant, rt string) map[string]bool {
		var cs struct {
			Rest []struct {
				Resource []struct {
					Type        string
					SearchParam []struct{ Name string }
				}
			}
		}
		if err := json.Unmarshal(f.get(f.sim.BaseURL(tenant)+"/metadata", "").body, &cs); err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, r := range cs.Rest[0].Resource {
			if r.Type == rt {
				for _, p := range r.SearchParam {
					out[p.Name] = true
				}
			}
		}
		return out
	}
	if sp := declared("strict", "Patient"); sp["_lastUpdated"] || !sp["family"] {
		t.Errorf("strict Patient parameters %v", sp)
	}
	if sp := declared("strict", "DocumentReference"); !sp["_lastUpdated"] {
		t.Errorf("strict DocumentReference lacks _lastUpdated: %v", sp)
	}
	if sp := declared("lenient", "Patient"); !sp["_lastUpdated"] {
		t.Errorf("lenient Patient lacks _lastUpdated: %v", sp)
	}
}
