package athenahealth

import (
	"encoding/json"
	"math/rand/v2"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/store"
)

func TestCheckQuery(t *testing.T) {
	f := ForPractice("42").(Flavor)
	ok := "Organization/a-1.Practice-42"
	for _, tc := range []struct {
		q    url.Values
		want flavor.Kind // 0: accepted
	}{
		{url.Values{}, flavor.ParamMissing},
		{url.Values{PracticeParam: {""}}, flavor.ParamMissing},
		{url.Values{PracticeParam: {"Organization/a-1.Practice-43"}}, flavor.Forbidden},
		{url.Values{PracticeParam: {ok, ok}}, flavor.Forbidden},
		{url.Values{PracticeParam: {ok}}, 0},
		{url.Values{PracticeParam: {ok}, "_lastUpdated": {"ge2025-05-31"}}, 0},
		{url.Values{PracticeParam: {ok}, "_lastUpdated": {"2025-05-31"}}, 0},
		{url.Values{PracticeParam: {ok}, "_lastUpdated": {"ge2025-05-31", "lt2025-06-02"}}, 0},
		{url.Values{PracticeParam: {ok}, "_lastUpdated": {"ge2025-05-31T00:00:00Z"}}, flavor.BadRequest},
		{url.Values{PracticeParam: {ok}, "_lastUpdated": {"ge2025-05"}}, flavor.BadRequest},
		{url.Values{PracticeParam: {ok}, "_lastUpdated": {"ge2025-05-31,2025-06-01T10:00"}}, flavor.BadRequest},
	} {
		p := f.CheckQuery("Patient", tc.q, false)
		switch {
		case tc.want == 0 && p != nil:
			t.Errorf("%v refused: %+v", tc.q, p)
		case tc.want != 0 && (p == nil || p.Kind != tc.want):
			t.Errorf("%v: %+v, want kind %d", tc.q, p, tc.want)
		}
	}
	q := url.Values{PracticeParam: {ok}, "ah-department": {"1"}, "patient": {"x"}}
	f.NormalizeQuery("Observation", q)
	if len(q) != 1 || q.Get("patient") != "x" {
		t.Fatalf("normalized %v", q)
	}
}

func TestCheckSearchStrict(t *testing.T) {
	f := New()
	sp := func(names ...string) []store.SearchParam {
		var out []store.SearchParam
		for _, n := range names {
			out = append(out, store.SearchParam{Name: n, Values: []string{"x"}})
		}
		return out
	}
	for _, tc := range []struct {
		rt     string
		params []store.SearchParam
		strict bool
		refuse bool
	}{
		{"Observation", nil, true, true},
		{"Observation", nil, false, false},
		{"Observation", sp("patient"), true, false},
		{"Observation", sp("_id"), true, false},
		{"Coverage", sp("_lastUpdated"), true, true},
		{"Appointment", sp("patient"), true, true},
		{"Appointment", sp("_id"), true, false},
		{"Patient", nil, true, false},
		{"Practitioner", nil, true, false},
	} {
		p := f.CheckSearch(tc.rt, tc.params, -1, tc.strict)
		if (p != nil) != tc.refuse || (p != nil && p.Kind != flavor.ParamMissing) {
			t.Errorf("%s %v strict=%v: %+v", tc.rt, tc.params, tc.strict, p)
		}
	}
	if p := f.CheckSearch("Observation", nil, 10, true); p != nil {
		t.Fatalf("after the search: %+v", p)
	}
}

func TestInfoIDsAndDiscovery(t *testing.T) {
	f := New()
	info := f.Info()
	if info.Name != Name || info.PageParam() != "cursor" || len(info.Creates)+len(info.Updates) != 0 || info.Serves("Slot") || !info.Serves("Observation") {
		t.Fatalf("info %+v", info)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	if id := f.NewID("Patient", rng); !regexp.MustCompile(`^a-195900\.E-[0-9]{7}$`).MatchString(id) {
		t.Fatalf("patient id %q", id)
	}
	if id := f.NewID("Observation", rng); !regexp.MustCompile(`^a-195900\.observation-[0-9]{7}$`).MatchString(id) {
		t.Fatalf("observation id %q", id)
	}
	e := flavor.Endpoint{Tenant: "t", BaseURL: "http://127.0.0.1/t/fhir/r4", TokenURL: "http://127.0.0.1/t/oauth2/v1/token", Now: time.Now(), Strict: true}
	b, err := f.CapabilityStatement(e)
	if err != nil {
		t.Fatal(err)
	}
	var cs struct {
		Software map[string]string `json:"software"`
	}
	if err := json.Unmarshal(b, &cs); err != nil || cs.Software["name"] != SoftwareName || cs.Software["version"] != "" {
		t.Fatalf("software %v %v", cs.Software, err)
	}
	b, err = f.SmartConfiguration(e)
	if err != nil {
		t.Fatal(err)
	}
	var sc struct {
		TokenEndpoint string   `json:"token_endpoint"`
		Grants        []string `json:"grant_types_supported"`
	}
	if err := json.Unmarshal(b, &sc); err != nil || sc.TokenEndpoint != e.TokenURL || len(sc.Grants) != 2 {
		t.Fatalf("smart configuration %+v %v", sc, err)
	}
}
