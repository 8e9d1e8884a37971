package sim

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
)

func TestSearchPagingTotalAndParams(t *testing.T) {
	f := twoTenants(t, nil)
	tok := f.token("acme")
	base := f.sim.BaseURL("acme")

	// Walk all Observations in pages of 25.
	want := f.sim.Current("acme", "Observation")
	ids, _, total := f.walk(base+"/Observation?_count=25", tok, nil)
	if total != len(want) || len(ids) != len(want) {
		t.Fatalf("walked %d, total %d, source has %d", len(ids), total, len(want))
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("id %s on two pages", id)
		}
		seen[id] = true
		if want[id] == nil {
			t.Fatalf("id %s not in the source", id)
		}
	}
	// Default page size is the flavour's (generic: 50) and next links exist.
	r := f.get(base+"/Observation", tok)
	bu := bundleOf(t, r.body)
	if len(bu.Entry) != 50 || bu.NextLink() == "" || bu.Type != "searchset" || bu.LinkURL("self") == "" {
		t.Fatalf("default page: %d entries, next %q, type %s", len(bu.Entry), bu.NextLink(), bu.Type)
	}
	if !strings.HasPrefix(bu.Entry[0].FullURL, base+"/Observation/") || bu.Entry[0].Search.Mode != "match" {
		t.Errorf("entry fullUrl %q", bu.Entry[0].FullURL)
	}
	// _count above the maximum is clamped.
	r = f.get(base+"/Observation?_count=100000", tok)
	if n := len(bundleOf(t, r.body).Entry); n != min(1000, len(want)) {
		t.Errorf("_count=100000 gave %d entries", n)
	}
	// _count=0 and _summary=count: total only.
	for _, q := range []string{"_count=0", "_summary=count"} {
		r = f.get(base+"/Observation?"+q, tok)
		bu = bundleOf(t, r.body)
		if len(bu.Entry) != 0 || bu.Total == nil || *bu.Total != len(want) {
			t.Errorf("%s: %d entries, total %v", q, len(bu.Entry), bu.Total)
		}
	}

	// patient= matches exactly the observations referencing that patient.
	var pid string
	for id := range f.sim.Current("acme", "Patient") {
		pid = id
		break
	}
	expect := 0
	for _, b := range want {
		if strings.Contains(string(b), `"reference":"Patient/`+pid+`"`) {
			expect++
		}
	}
	ids, _, _ = f.walk(base+"/Observation?patient="+pid+"&_count=7", tok, nil)
	if len(ids) != expect {
		t.Errorf("patient=%s: %d results, want %d", pid, len(ids), expect)
	}
	// POST _search gives the same.
	form := url.Values{"patient": {pid}, "_count": {"1000"}}
	r = f.do("POST", base+"/Observation/_search", tok, []byte(form.Encode()), map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	if r.status != 200 || len(bundleOf(t, r.body).Entry) != expect {
		t.Errorf("POST _search: %d, %d entries, want %d", r.status, len(bundleOf(t, r.body).Entry), expect)
	}
	// family + gender
	var p struct {
		Name   []struct{ Family string }
		Gender string
	}
	_ = json.Unmarshal(f.sim.Current("acme", "Patient")[pid], &p)
	ids, bodies, _ := f.walk(base+"/Patient?family="+url.QueryEscape(p.Name[0].Family)+"&gender="+p.Gender, tok, nil)
	found := false
	for i, id := range ids {
		found = found || id == pid
		if !strings.Contains(string(bodies[i]), `"family":"`+p.Name[0].Family) || !strings.Contains(string(bodies[i]), `"gender":"`+p.Gender+`"`) {
			t.Errorf("family/gender search returned a non-matching patient %s", id)
		}
	}
	if !found {
		t.Errorf("family/gender search did not return the patient")
	}
	// Unknown parameter: 400 OperationOutcome; lenient handling ignores it.
	r = f.get(base+"/Patient?shoe-size=9", tok)
	if r.status != 400 || outcomeOf(t, r).Issue[0].Code != "invalid" {
		t.Errorf("unknown param: %d", r.status)
	}
	r = f.do("GET", base+"/Patient?shoe-size=9&_count=3", tok, nil, map[string]string{"Prefer": "handling=lenient"})
	if r.status != 200 || strings.Contains(bundleOf(t, r.body).LinkURL("self"), "shoe-size") {
		t.Errorf("lenient: %d self=%s", r.status, bundleOf(t, r.body).LinkURL("self"))
	}
	for _, q := range []string{"_include=Observation:patient", "_sort=birthdate", "_count=x", "birthdate=notadate"} {
		if r := f.get(base+"/Patient?"+q, tok); r.status != 400 {
			t.Errorf("%s: %d, want 400", q, r.status)
		}
	}
	// Page tokens that do not exist: the flavour's expiry answer.
	if r := f.get(base+"/Patient?_page=deadbeef.50", tok); r.status != http.StatusGone {
		t.Errorf("unknown page token: %d, want 410", r.status)
	}
}

func TestLastUpdatedAndSort(t *testing.T) {
	clk := newClock(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))
	f := twoTenants(t, clk.Now)
	tok := f.token("acme")
	base := f.sim.BaseURL("acme")
	all := f.sim.Current("acme", "Appointment")

	// Everything generated is older than the clock; changes made now are newer.
	clk.Advance(time.Minute)
	since := clk.Now()
	changes, err := f.sim.Tick("acme", 40)
	if err != nil {
		t.Fatal(err)
	}
	changedAppts := map[string]bool{}
	for _, c := range changes {
		if c.ResourceType == "Appointment" {
			changedAppts[c.ID] = true
		}
	}
	if len(changedAppts) == 0 {
		t.Fatal("40 changes touched no appointment")
	}
	ids, bodies, _ := f.walk(base+"/Appointment?_lastUpdated=ge"+since.Format(time.RFC3339)+"&_count=5", tok, nil)
	if len(ids) != len(changedAppts) {
		t.Fatalf("_lastUpdated=ge%s: %d results, want %d changed appointments", since.Format(time.RFC3339), len(ids), len(changedAppts))
	}
	for i, id := range ids {
		if !changedAppts[id] {
			t.Errorf("unchanged appointment %s returned", id)
		}
		h, _ := fhir.ParseHeader(bodies[i])
		if h.LastUpdated.Before(since) {
			t.Errorf("lastUpdated %v before %v", h.LastUpdated, since)
		}
	}
	// lt is the complement; gt with millisecond precision excludes the instant.
	ids, _, _ = f.walk(base+"/Appointment?_lastUpdated=lt"+since.Format(time.RFC3339)+"&_count=1000", tok, nil)
	if len(ids)+len(changedAppts) != len(f.sim.Current("acme", "Appointment")) {
		t.Errorf("lt: %d + ge %d != %d", len(ids), len(changedAppts), len(all))
	}
	// Time zone offsets, including an unescaped '+' that arrives as a space.
	later := since.Add(-time.Hour).In(time.FixedZone("x", 2*3600)).Format("2006-01-02T15:04:05-07:00")
	r := f.get(base+"/Appointment?_lastUpdated=ge"+strings.ReplaceAll(later, "+", "%2B")+"&_summary=count", tok)
	r2 := f.get(base+"/Appointment?_lastUpdated=ge"+later+"&_summary=count", tok)
	if a, b := bundleOf(t, r.body).Total, bundleOf(t, r2.body).Total; a == nil || b == nil || *a != *b || *a != len(changedAppts) {
		t.Errorf("offset forms disagree: %v %v, want %d", a, b, len(changedAppts))
	}
	// Ascending by default, descending with _sort=-_lastUpdated.
	for _, sortq := range []string{"", "&_sort=_lastUpdated", "&_sort=-_lastUpdated"} {
		_, bodies, _ := f.walk(base+"/Observation?_count=1000"+sortq, tok, nil)
		times := make([]time.Time, len(bodies))
		for i, b := range bodies {
			h, _ := fhir.ParseHeader(b)
			times[i] = h.LastUpdated
		}
		desc := strings.Contains(sortq, "-")
		if !sort.SliceIsSorted(times, func(i, j int) bool {
			if desc {
				return times[i].After(times[j])
			}
			return times[i].Before(times[j])
		}) {
			t.Errorf("sort %q: not ordered", sortq)
		}
	}
}

// TestPagingStableUnderChanges pages through a search while the change
// generator updates and creates resources: the walk must return exactly the
// result set as of the first page, each id once, with a constant total.
func TestPagingStableUnderChanges(t *testing.T) {
	f := twoTenants(t, nil)
	tok := f.token("acme")
	base := f.sim.BaseURL("acme")
	before := f.sim.Current("acme", "Appointment")

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = f.sim.RunChanges(ctx, "acme", 200)
	}()
	ids, _, total := f.walk(base+"/Appointment?_count=3", tok, func(int) {
		if _, err := f.sim.Tick("acme", 5); err != nil {
			t.Error(err)
		}
	})
	cancel()
	wg.Wait()
	if total != len(before) || len(ids) != len(before) {
		t.Fatalf("walked %d ids, total %d; %d appointments existed when the search ran", len(ids), total, len(before))
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] || before[id] == nil {
			t.Fatalf("id %s duplicated or created after the search", id)
		}
		seen[id] = true
	}
	after := f.sim.Current("acme", "Appointment")
	if len(after) <= len(before) {
		t.Fatalf("the change generator created no appointments (%d -> %d)", len(before), len(after))
	}
	// A fresh search sees the new state.
	_, _, total = f.walk(base+"/Appointment?_count=1000", tok, nil)
	if total != len(after) {
		t.Fatalf("fresh search total %d, want %d", total, len(after))
	}
}

func TestSearchSessionExpiresByTTL(t *testing.T) {
	clk := newClock(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))
	f := newFixture(t, Config{Now: clk.Now, PageTTL: time.Minute, Tenants: []TenantConfig{
		{ID: "g", Data: smallData(10)}, {ID: "e", Flavor: "epic", Data: smallData(10)},
	}})
	for _, tc := range []struct {
		tenant string
		status int
		code   string
	}{{"g", http.StatusGone, ""}, {"e", http.StatusBadRequest, "4113"}} {
		tok := f.token(tc.tenant)
		r := f.get(f.sim.BaseURL(tc.tenant)+"/Observation?_count=2", tok)
		next := bundleOf(t, r.body).NextLink()
		if next == "" {
			t.Fatal("no next link")
		}
		clk.Advance(30 * time.Second)
		if r := f.get(next, tok); r.status != 200 {
			t.Fatalf("%s: page within TTL: %d", tc.tenant, r.status)
		}
		clk.Advance(2 * time.Minute)
		r = f.get(next, tok)
		if r.status != tc.status {
			t.Fatalf("%s: expired page: %d, want %d", tc.tenant, r.status, tc.status)
		}
		oo := outcomeOf(t, r)
		if tc.code != "" && (oo.Issue[0].Details == nil || oo.Issue[0].Details.Coding[0].Code != tc.code) {
			t.Errorf("%s: expired page outcome %+v", tc.tenant, oo.Issue[0])
		}
	}
}
