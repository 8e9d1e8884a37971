package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/mediflow/mediflow/internal/store"
)

func seededEnv(t *testing.T, opts ...envOpt) *env {
	t.Helper()
	st := openTestStore(t)
	seed(t, st)
	return newEnv(t, st, opts...)
}

func TestRead(t *testing.T) {
	e := seededEnv(t)
	r := e.get("/fhir/alpha/Patient/pat-007", keyAlpha)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Errorf("Content-Type %q", ct)
	}
	if et := r.header.Get("ETag"); et != `W/"1"` {
		t.Errorf("ETag %q, want W/\"1\"", et)
	}
	if r.header.Get("Last-Modified") == "" {
		t.Error("no Last-Modified")
	}
	stored, err := e.st.GetResource(context.Background(), "alpha", "Patient", "pat-007")
	if err != nil {
		t.Fatal(err)
	}
	if string(r.body) != string(stored.Body) {
		t.Errorf("body differs from the stored bytes:\n got %s\nwant %s", r.body, stored.Body)
	}
	// The same id in another practice is another resource.
	rb := e.get("/fhir/beta/Patient/pat-001", keyBeta)
	if rb.status != 200 || !strings.Contains(string(rb.body), "Betafamily") {
		t.Fatalf("beta read: %d %s", rb.status, rb.body)
	}
	// X-API-Key works as well as Bearer.
	rx := e.get("/fhir/alpha/Patient/pat-007", "", "X-API-Key", keyAlpha)
	if rx.status != 200 {
		t.Errorf("X-API-Key: status %d", rx.status)
	}
	// Conditional read.
	r304 := e.get("/fhir/alpha/Patient/pat-007", keyAlpha, "If-None-Match", `W/"1"`)
	if r304.status != http.StatusNotModified || len(r304.body) != 0 {
		t.Errorf("If-None-Match: status %d body %q", r304.status, r304.body)
	}
	// _format and Accept.
	if r := e.get("/fhir/alpha/Patient/pat-007?_format=json", keyAlpha); r.status != 200 {
		t.Errorf("_format=json: %d", r.status)
	}
	if r := e.get("/fhir/alpha/Patient/pat-007?_format=application/fhir%2Bjson", keyAlpha); r.status != 200 {
		t.Errorf("_format=application/fhir+json: %d", r.status)
	}
	wantOutcome(t, e.get("/fhir/alpha/Patient/pat-007?_format=xml", keyAlpha), http.StatusNotAcceptable, "not-supported")
	wantOutcome(t, e.get("/fhir/alpha/Patient/pat-007", keyAlpha, "Accept", "application/fhir+xml"), http.StatusNotAcceptable, "not-supported")
	if r := e.get("/fhir/alpha/Patient/pat-007", keyAlpha, "Accept", "text/html,application/xhtml+xml,*/*;q=0.8"); r.status != 200 {
		t.Errorf("browser Accept: %d", r.status)
	}
	// HEAD answers headers only.
	rh := e.do(http.MethodHead, "/fhir/alpha/Patient/pat-007", keyAlpha, nil)
	if rh.status != 200 || len(rh.body) != 0 || rh.header.Get("ETag") != `W/"1"` {
		t.Errorf("HEAD: %d %q %q", rh.status, rh.body, rh.header.Get("ETag"))
	}
}

func TestReadErrors(t *testing.T) {
	e := seededEnv(t)
	is := wantOutcome(t, e.get("/fhir/alpha/Patient/nope", keyAlpha), 404, "not-found")
	if !strings.Contains(fmt.Sprint(is["diagnostics"]), "Patient/nope") {
		t.Errorf("diagnostics %v", is["diagnostics"])
	}
	wantOutcome(t, e.get("/fhir/alpha/Frobnicator/1", keyAlpha), 404, "not-supported")
	wantOutcome(t, e.get("/fhir/alpha/Patient/bad%20id", keyAlpha), 404, "not-found")
	// alpha's resource is not visible through beta, even to a key that may read both.
	wantOutcome(t, e.get("/fhir/beta/Patient/pat-007", keyAll), 404, "not-found")

	// A deleted resource answers 410.
	_, err := e.st.WriteResources(context.Background(), "alpha", []store.ResourceWrite{
		{ResourceType: "Patient", ID: "pat-045", Connection: "ehr", Deleted: true, Body: []byte(`{"resourceType":"Patient","id":"pat-045"}`)}})
	if err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, e.get("/fhir/alpha/Patient/pat-045", keyAlpha), http.StatusGone, "deleted")
}

func TestHistoryAndVread(t *testing.T) {
	e := seededEnv(t)
	ctx := context.Background()
	for _, fam := range []string{"Secondname", "Thirdname"} {
		if _, err := e.st.WriteResources(ctx, "alpha", []store.ResourceWrite{{ResourceType: "Patient", ID: "pat-002",
			Connection: "ehr", Body: patientJSON("pat-002", fam, "Zebulon", phiBirthDate)}}); err != nil {
			t.Fatal(err)
		}
	}
	r := e.get("/fhir/alpha/Patient/pat-002", keyAlpha)
	if r.header.Get("ETag") != `W/"3"` || !strings.Contains(string(r.body), "Thirdname") {
		t.Fatalf("current version: %s %s", r.header.Get("ETag"), r.body)
	}
	h := e.get("/fhir/alpha/Patient/pat-002/_history", keyAlpha)
	if h.status != 200 {
		t.Fatalf("history %d %s", h.status, h.body)
	}
	var b struct {
		Type  string `json:"type"`
		Total int    `json:"total"`
		Entry []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
			Request  struct{ Method, URL string }
			Response struct{ Status, Etag string }
		} `json:"entry"`
	}
	if err := json.Unmarshal(h.body, &b); err != nil {
		t.Fatalf("history is not JSON: %v: %s", err, h.body)
	}
	if b.Type != "history" || b.Total != 3 || len(b.Entry) != 3 {
		t.Fatalf("history bundle: type %s total %d entries %d", b.Type, b.Total, len(b.Entry))
	}
	for i, want := range []struct{ etag, method, family string }{{`W/"3"`, "PUT", "Thirdname"}, {`W/"2"`, "PUT", "Secondname"}, {`W/"1"`, "POST", phiFamilies[2]}} {
		en := b.Entry[i]
		if en.Response.Etag != want.etag || en.Request.Method != want.method || !strings.Contains(string(en.Resource), want.family) {
			t.Errorf("entry %d: etag %s method %s resource %s", i, en.Response.Etag, en.Request.Method, en.Resource)
		}
		if en.FullURL != e.srv.URL+"/fhir/alpha/Patient/pat-002" {
			t.Errorf("fullUrl %s", en.FullURL)
		}
	}
	v1 := e.get("/fhir/alpha/Patient/pat-002/_history/1", keyAlpha)
	if v1.status != 200 || v1.header.Get("ETag") != `W/"1"` || !strings.Contains(string(v1.body), phiFamilies[2]) {
		t.Errorf("vread 1: %d %s %s", v1.status, v1.header.Get("ETag"), v1.body)
	}
	wantOutcome(t, e.get("/fhir/alpha/Patient/pat-002/_history/9", keyAlpha), 404, "not-found")
	wantOutcome(t, e.get("/fhir/alpha/Patient/pat-002/_history/x", keyAlpha), 404, "not-found")
	wantOutcome(t, e.get("/fhir/alpha/Patient/nobody/_history", keyAlpha), 404, "not-found")
}

type searchBundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Total        *int   `json:"total"`
	Link         []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		FullURL  string `json:"fullUrl"`
		Resource struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		} `json:"resource"`
		Search struct {
			Mode string `json:"mode"`
		} `json:"search"`
	} `json:"entry"`
}

func (b searchBundle) link(rel string) string {
	for _, l := range b.Link {
		if l.Relation == rel {
			return l.URL
		}
	}
	return ""
}

func decodeBundle(t *testing.T, r result) searchBundle {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("search status %d: %s", r.status, r.body)
	}
	var b searchBundle
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("search answer is not JSON: %v: %s", err, r.body)
	}
	if b.ResourceType != "Bundle" || b.Type != "searchset" || b.Total == nil {
		t.Fatalf("not a searchset bundle with total: %s", r.body)
	}
	return b
}

// pageAll follows next links from first and returns every id, in order.
func pageAll(t *testing.T, e *env, first result, key string, wantTotal, pageSize int) []string {
	t.Helper()
	var ids []string
	r := first
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("paging does not end")
		}
		b := decodeBundle(t, r)
		if *b.Total != wantTotal {
			t.Fatalf("page %d: total %d, want %d", pages, *b.Total, wantTotal)
		}
		if len(b.Entry) > pageSize {
			t.Fatalf("page %d has %d entries, more than _count %d", pages, len(b.Entry), pageSize)
		}
		for _, en := range b.Entry {
			if en.Search.Mode != "match" {
				t.Errorf("search.mode %q", en.Search.Mode)
			}
			want := e.srv.URL + "/fhir/alpha/" + en.Resource.ResourceType + "/" + en.Resource.ID
			if en.FullURL != want {
				t.Errorf("fullUrl %s, want %s", en.FullURL, want)
			}
			ids = append(ids, en.Resource.ID)
		}
		if b.link("self") == "" {
			t.Error("no self link")
		}
		next := b.link("next")
		if next == "" {
			break
		}
		if !strings.HasPrefix(next, e.srv.URL+"/fhir/alpha/") {
			t.Fatalf("next link %s", next)
		}
		r = e.get(next, key)
	}
	return ids
}

func checkComplete(t *testing.T, ids []string, want []string) {
	t.Helper()
	seen := map[string]int{}
	for _, id := range ids {
		seen[id]++
		if seen[id] == 2 {
			t.Errorf("duplicate %s across pages", id)
		}
	}
	for _, id := range want {
		if seen[id] == 0 {
			t.Errorf("missing %s (gap in paging)", id)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("got %d distinct ids, want %d", len(seen), len(want))
	}
}

func TestSearchPagingWholeSet(t *testing.T) {
	e := seededEnv(t)
	var want []string
	for i := 1; i <= 45; i++ {
		want = append(want, fmt.Sprintf("pat-%03d", i))
	}
	ids := pageAll(t, e, e.get("/fhir/alpha/Patient?_count=7", keyAlpha), keyAlpha, 45, 7)
	checkComplete(t, ids, want)

	// Default page size is 20.
	b := decodeBundle(t, e.get("/fhir/alpha/Patient", keyAlpha))
	if len(b.Entry) != 20 || b.link("next") == "" {
		t.Errorf("default page: %d entries, next %q", len(b.Entry), b.link("next"))
	}

	// The same search through POST _search (form), with a parameter.
	fam := phiFamilies[1]
	var wantFam []string
	for i := 1; i <= 45; i++ {
		if phiFamilies[i%3] == fam {
			wantFam = append(wantFam, fmt.Sprintf("pat-%03d", i))
		}
	}
	body := encodeForm(map[string]string{"family": fam, "_count": "4"})
	first := e.do(http.MethodPost, "/fhir/alpha/Patient/_search", keyAlpha, strings.NewReader(body), "Content-Type", "application/x-www-form-urlencoded")
	ids = pageAll(t, e, first, keyAlpha, len(wantFam), 4)
	checkComplete(t, ids, wantFam)

	// GET _search behaves like the type search.
	ids = pageAll(t, e, e.get("/fhir/alpha/Patient/_search?family="+fam+"&_count=50", keyAlpha), keyAlpha, len(wantFam), 50)
	checkComplete(t, ids, wantFam)
}

func TestSearchParametersAndControls(t *testing.T) {
	e := seededEnv(t)
	b := decodeBundle(t, e.get("/fhir/alpha/Appointment?patient=Patient/pat-003", keyAlpha))
	if *b.Total != 1 || len(b.Entry) != 1 || b.Entry[0].Resource.ID != "appt-03" {
		t.Errorf("patient search: total %d entries %v", *b.Total, b.Entry)
	}
	b = decodeBundle(t, e.get("/fhir/alpha/Patient?_id=pat-010", keyAlpha))
	if *b.Total != 1 || b.Entry[0].Resource.ID != "pat-010" {
		t.Errorf("_id search: %+v", b)
	}
	// _count=0 and _summary=count give the total only.
	for _, q := range []string{"_count=0", "_summary=count"} {
		b = decodeBundle(t, e.get("/fhir/alpha/Patient?"+q, keyAlpha))
		if *b.Total != 45 || len(b.Entry) != 0 || b.link("next") != "" {
			t.Errorf("%s: total %d, %d entries, next %q", q, *b.Total, len(b.Entry), b.link("next"))
		}
	}
	// _count above the maximum is capped.
	b = decodeBundle(t, e.get("/fhir/alpha/Patient?_count=5000", keyAlpha))
	if len(b.Entry) != 45 {
		t.Errorf("_count=5000: %d entries", len(b.Entry))
	}
	// Errors name the parameter.
	is := wantOutcome(t, e.get("/fhir/alpha/Patient?shoe-size=9", keyAlpha), 400, "invalid")
	if !strings.Contains(fmt.Sprint(is["diagnostics"]), "shoe-size") {
		t.Errorf("diagnostics do not name the parameter: %v", is["diagnostics"])
	}
	is = wantOutcome(t, e.get("/fhir/alpha/Patient?_count=lots", keyAlpha), 400, "invalid")
	if !strings.Contains(fmt.Sprint(is["diagnostics"]), "_count") {
		t.Errorf("diagnostics: %v", is["diagnostics"])
	}
	wantOutcome(t, e.get("/fhir/alpha/Patient?birthdate=notadate", keyAlpha), 400, "invalid")
	wantOutcome(t, e.get("/fhir/alpha/Patient?_sort=family", keyAlpha), 400, "not-supported")
	wantOutcome(t, e.get("/fhir/alpha/Patient?_include=Patient:organization", keyAlpha), 400, "not-supported")
	wantOutcome(t, e.get("/fhir/alpha/Patient?_summary=text", keyAlpha), 400, "not-supported")
	wantOutcome(t, e.get("/fhir/alpha/Nonsense?x=1", keyAlpha), 404, "not-supported")
	// A garbled page token is a client error.
	wantOutcome(t, e.get("/fhir/alpha/Patient?_cursor=%21%21garbage", keyAlpha), 400, "invalid")
}

func TestMetadata(t *testing.T) {
	e := seededEnv(t)
	r := e.get("/fhir/alpha/metadata", keyAlpha)
	if r.status != 200 {
		t.Fatalf("metadata %d %s", r.status, r.body)
	}
	var cs struct {
		ResourceType, FHIRVersion, Kind string
		Implementation                  struct{ URL string }
		Rest                            []struct {
			Resource []struct {
				Type        string
				Interaction []struct{ Code string }
				SearchParam []struct{ Name, Type, Documentation string }
			}
		}
	}
	if err := json.Unmarshal(r.body, &cs); err != nil {
		t.Fatal(err)
	}
	if cs.ResourceType != "CapabilityStatement" || cs.FHIRVersion != "4.0.1" || cs.Implementation.URL != e.srv.URL+"/fhir/alpha" {
		t.Fatalf("capability statement header: %+v", cs)
	}
	types := map[string]map[string]string{}
	for _, res := range cs.Rest[0].Resource {
		types[res.Type] = map[string]string{}
		for _, sp := range res.SearchParam {
			types[res.Type][sp.Name] = sp.Type
			if sp.Documentation == "" {
				t.Errorf("%s.%s has no documentation", res.Type, sp.Name)
			}
		}
	}
	for _, typ := range []string{"Patient", "Appointment", "Observation", "DocumentReference", "Coverage"} {
		if types[typ] == nil {
			t.Errorf("CapabilityStatement lacks %s", typ)
		}
	}
	if types["Patient"]["family"] != "string" || types["Patient"]["birthdate"] != "date" || types["Appointment"]["patient"] != "reference" {
		t.Errorf("Patient params: %v / Appointment: %v", types["Patient"], types["Appointment"])
	}
}

func TestOperationOutcomeErrors(t *testing.T) {
	e := seededEnv(t)
	r := e.get("/fhir/alpha/Patient/pat-001", "")
	wantOutcome(t, r, 401, "login")
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
	}
	wantOutcome(t, e.get("/fhir/alpha/Patient/pat-001", "wrong-key-wrong-key-wrong-key"), 401, "login")
	wantOutcome(t, e.get("/fhir/alpha/Patient/pat-001", "", "Authorization", "Basic Zm9vOmJhcg=="), 401, "login")
	wantOutcome(t, e.get("/fhir/alpha/Patient/pat-001", keyBeta), 403, "forbidden")
	wantOutcome(t, e.get("/no/such/thing", keyAlpha), 404, "not-found")
	r = e.do(http.MethodDelete, "/fhir/alpha/Patient/pat-001", keyAlpha, nil)
	wantOutcome(t, r, 405, "not-supported")
	if allow := r.header.Get("Allow"); !strings.Contains(allow, "GET") {
		t.Errorf("Allow %q", allow)
	}
	r = e.do(http.MethodPut, "/fhir/alpha/Patient", keyAlpha, strings.NewReader("{}"))
	wantOutcome(t, r, 405, "not-supported")
}

// TestTenantIsolation sends every route of the route table, for every
// practice (configured or not), with every key that may not read it, and
// demands a refusal that does not reveal whether the practice exists. The
// routes come from the same table New registers, so a new route is covered
// the day it is added.
func TestTenantIsolation(t *testing.T) {
	e := seededEnv(t)
	keys := []string{keyAlpha, keyBeta, keyAll, keyNone}
	practices := append(append([]string{}, testPractices...), "ghost")
	var refusedBody []byte
	tenantRoutes := 0
	for _, rt := range routes() {
		method, path, _ := strings.Cut(rt.pattern, " ")
		takesPractice := strings.Contains(path, "{practice}")
		if (strings.HasPrefix(path, "/fhir/") || strings.HasPrefix(path, "/v1/practices/")) && !takesPractice {
			t.Errorf("route %s serves practice data without a {practice} in its path", rt.pattern)
		}
		if !takesPractice {
			continue
		}
		tenantRoutes++
		if rt.access != tenant {
			t.Errorf("route %s takes a practice but its access is %v, not tenant", rt.pattern, rt.access)
		}
		for _, p := range practices {
			u := strings.NewReplacer("{practice}", p, "{type}", "Patient", "{id}", "pat-001", "{vid}", "1").Replace(path)
			if method == http.MethodGet {
				u += "?_count=5"
			}
			for _, k := range append(keys, "") {
				var body *strings.Reader
				if method == http.MethodPost {
					body = strings.NewReader("_count=5")
				} else {
					body = strings.NewReader("")
				}
				r := e.do(method, u, k, body, "Content-Type", "application/x-www-form-urlencoded")
				switch {
				case k == "":
					if r.status != 401 {
						t.Errorf("%s %s without key: %d", method, u, r.status)
					}
				case allowed(k, p):
					if r.status == 401 || r.status == 403 {
						t.Errorf("%s %s with an allowed key refused: %d %s", method, u, r.status, r.body)
					}
				default:
					if r.status != 403 {
						t.Errorf("%s %s with a key not allowed for %s: %d %s", method, u, p, r.status, r.body)
						continue
					}
					if strings.Contains(string(r.body), "pat-001") || strings.Contains(string(r.body), "Betafamily") {
						t.Errorf("refusal leaks data: %s", r.body)
					}
					if refusedBody == nil {
						refusedBody = r.body
					} else if string(r.body) != string(refusedBody) {
						t.Errorf("refusals differ (%s %s for %s): %s vs %s", method, u, p, r.body, refusedBody)
					}
				}
			}
		}
	}
	if tenantRoutes < 8 {
		t.Errorf("only %d tenant routes found in the route table", tenantRoutes)
	}
}

func TestPracticesList(t *testing.T) {
	e := seededEnv(t)
	list := func(key string) []string {
		r := e.get("/v1/practices", key)
		if r.status != 200 {
			t.Fatalf("practices %d %s", r.status, r.body)
		}
		var out struct {
			Practices []struct{ ID, FHIRBase string }
		}
		if err := json.Unmarshal(r.body, &out); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, p := range out.Practices {
			ids = append(ids, p.ID)
		}
		return ids
	}
	for key, want := range map[string]string{keyAlpha: "alpha", keyBeta: "beta,gamma", keyAll: "alpha,beta,gamma", keyNone: ""} {
		if got := strings.Join(list(key), ","); got != want {
			t.Errorf("key %s sees %q, want %q", key[:5], got, want)
		}
	}
	wantOutcome(t, e.get("/v1/practices", ""), 401, "login")
}

func TestChangesFeed(t *testing.T) {
	e := seededEnv(t)
	type feed struct {
		Changes []struct {
			Cursor, ResourceType, ID, URL string
			Seq                           int64
			Version                       int
			Deleted                       bool
		}
		NextCursor string `json:"next_cursor"`
		HasMore    bool   `json:"has_more"`
	}
	read := func(since string, limit int) feed {
		r := e.get(fmt.Sprintf("/v1/practices/alpha/changes?since=%s&limit=%d", url.QueryEscape(since), limit), keyAlpha)
		if r.status != 200 {
			t.Fatalf("changes %d %s", r.status, r.body)
		}
		var f feed
		if err := json.Unmarshal(r.body, &f); err != nil {
			t.Fatal(err)
		}
		return f
	}
	var got []string
	cursor := ""
	var lastSeq int64 = -1
	for i := 0; ; i++ {
		if i > 50 {
			t.Fatal("feed does not end")
		}
		f := read(cursor, 8)
		for _, c := range f.Changes {
			if c.Seq <= lastSeq {
				t.Fatalf("feed not monotonic: %d after %d", c.Seq, lastSeq)
			}
			lastSeq = c.Seq
			got = append(got, c.ResourceType+"/"+c.ID)
			if !strings.HasSuffix(c.URL, fmt.Sprintf("/fhir/alpha/%s/%s/_history/%d", c.ResourceType, c.ID, c.Version)) {
				t.Errorf("change url %s", c.URL)
			}
		}
		if f.NextCursor == "" {
			t.Fatal("empty next_cursor")
		}
		if len(f.Changes) == 0 {
			if f.NextCursor != cursor && cursor != "" {
				t.Errorf("empty page moved the cursor from %s to %s", cursor, f.NextCursor)
			}
			break
		}
		cursor = f.NextCursor
	}
	if len(got) != 55 {
		t.Fatalf("feed has %d changes, want 55 (45 patients + 10 appointments)", len(got))
	}
	// An update appears after the cursor, and only the update.
	if _, err := e.st.WriteResources(context.Background(), "alpha", []store.ResourceWrite{{ResourceType: "Patient", ID: "pat-009",
		Connection: "ehr", Body: patientJSON("pat-009", "Changedname", "Z", phiBirthDate)}}); err != nil {
		t.Fatal(err)
	}
	f := read(cursor, 100)
	if len(f.Changes) != 1 || f.Changes[0].ID != "pat-009" || f.Changes[0].Version != 2 || f.HasMore {
		t.Fatalf("after update: %+v", f)
	}
	// beta's feed holds only beta's resources.
	r := e.get("/v1/practices/beta/changes", keyBeta)
	var fb feed
	if err := json.Unmarshal(r.body, &fb); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range fb.Changes {
		ids = append(ids, c.ID)
	}
	sort.Strings(ids)
	if strings.Join(ids, ",") != "beta-2,beta-3,pat-001" {
		t.Errorf("beta feed: %v", ids)
	}
	wantOutcome(t, e.get("/v1/practices/alpha/changes?since=minus-one", keyAlpha), 400, "invalid")
	wantOutcome(t, e.get("/v1/practices/alpha/changes?limit=0", keyAlpha), 400, "invalid")
}

func TestAuditEvents(t *testing.T) {
	e := seededEnv(t)
	ctx := context.Background()
	e.get("/fhir/alpha/Patient/pat-003", keyAlpha)
	e.get("/fhir/alpha/Patient?family="+phiFamilies[0]+"&birthdate="+phiBirthDate, keyAlpha)
	e.get("/v1/practices/alpha/changes", keyAlpha)
	e.get("/fhir/alpha/Patient/pat-003", keyBeta)       // denied: known practice
	e.get("/fhir/alpha/Patient/pat-003", "")            // unauthenticated
	e.get("/fhir/ghost/Patient/pat-003", keyAlpha)      // unknown practice: nothing to record against
	e.get("/fhir/alpha/Patient/missing-one", keyAlpha)  // not found: an error outcome
	e.get("/fhir/alpha/Patient?shoe-size=43", keyAlpha) // bad search
	e.get("/fhir/alpha/metadata", keyAlpha)             // not PHI: not recorded
	e.get("/v1/practices/alpha/freshness", keyBeta)     // denied v1 routes name themselves
	e.get("/v1/practices/alpha/intents/01JAAAAAAAAAAAAAAAAAAAAAAA", keyBeta)
	evs, err := e.st.ListAudit(ctx, "alpha", store.AuditFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		if ev.Time.IsZero() {
			t.Errorf("audit event without time: %+v", ev)
		}
		got = append(got, strings.Join([]string{ev.Actor, ev.Action, ev.Entity, ev.Outcome}, " "))
		for _, s := range append(phiFamilies, phiBirthDate) {
			if strings.Contains(ev.Entity+ev.Detail, s) {
				t.Errorf("audit event holds a search value: %+v", ev)
			}
		}
	}
	sort.Strings(got)
	want := []string{
		"app:alpha-app changes changes success",
		"app:alpha-app read Patient/missing-one error",
		"app:alpha-app read Patient/pat-003 success",
		"app:alpha-app search Patient?(unknown:1) error",
		"app:alpha-app search Patient?birthdate,family success",
		"app:beta-app freshness freshness denied",
		"app:beta-app intent-read intents/01JAAAAAAAAAAAAAAAAAAAAAAA denied",
		"app:beta-app read Patient/pat-003 denied",
		"unauthenticated read Patient/pat-003 denied",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if evs, _ := e.st.ListAudit(ctx, "ghost", store.AuditFilter{}); len(evs) != 0 {
		t.Errorf("events recorded against an unknown practice: %v", evs)
	}
}

// failingAudit is a store whose audit trail cannot be written.
type failingAudit struct{ store.Store }

func (failingAudit) Audit(context.Context, ...store.AuditEvent) error {
	return errors.New("disk full")
}

func TestAuditFailureWithholdsData(t *testing.T) {
	st := openTestStore(t)
	seed(t, st)
	e := newEnv(t, failingAudit{st})
	for _, path := range []string{"/fhir/alpha/Patient/pat-001", "/fhir/alpha/Patient?_count=3", "/v1/practices/alpha/changes"} {
		r := e.get(path, keyAlpha)
		wantOutcome(t, r, 500, "exception")
		if strings.Contains(string(r.body), "pat-001") || r.header.Get("ETag") != "" {
			t.Errorf("%s: data sent without an audit record: %s", path, r.body)
		}
	}
	if !strings.Contains(e.logs.String(), "audit write failed") {
		t.Error("audit failure not logged")
	}
}

func TestNoPHIInLogs(t *testing.T) {
	e := seededEnv(t)
	e.get("/fhir/alpha/Patient?family="+phiFamilies[0]+"&birthdate="+phiBirthDate, keyAlpha)
	e.get("/fhir/alpha/Patient?given=Zebulon&phone=555-867-5309", keyAlpha)
	e.get("/fhir/alpha/Patient?address-city=Springfieldia&_count=2", keyAlpha)
	e.get("/fhir/alpha/Patient/pat-001", keyAlpha)
	e.do(http.MethodPost, "/fhir/alpha/Patient/_search", keyAlpha, strings.NewReader("family="+phiFamilies[1]), "Content-Type", "application/x-www-form-urlencoded")
	e.get("/fhir/alpha/Patient?"+phiFamilies[2]+"=1", keyAlpha)
	logs := e.logs.String()
	if !strings.Contains(logs, `"route":"GET /fhir/{practice}/{type}"`) {
		t.Fatalf("request logs missing: %s", logs)
	}
	for _, s := range append(phiFamilies, phiBirthDate, "Zebulon", "555-867-5309", "Springfieldia", "742 Evergreen", "MRN-pat") {
		if strings.Contains(logs, s) {
			t.Errorf("logs hold PHI %q:\n%s", s, logs)
		}
	}
	if strings.Contains(logs, "pat-001") {
		t.Errorf("request logs hold a path id:\n%s", logs)
	}
}

func TestOperationalEndpoints(t *testing.T) {
	e := seededEnv(t)
	if r := e.get("/healthz", ""); r.status != 200 {
		t.Errorf("healthz %d", r.status)
	}
	if r := e.get("/readyz", ""); r.status != 200 {
		t.Errorf("readyz %d %s", r.status, r.body)
	}
	e.get("/fhir/alpha/Patient?_count=1", keyAlpha)
	m := e.get("/metrics", "")
	if m.status != 200 || !strings.Contains(string(m.body), `mediflow_http_requests_total{code="200",method="GET",route="GET /fhir/{practice}/{type}",server="api"} 1`) {
		t.Errorf("metrics: %d\n%s", m.status, m.body)
	}
	if strings.Contains(string(m.body), "/fhir/alpha") {
		t.Error("metrics hold a raw path")
	}
	// Status JSON and page, from the store: run records and resource counts.
	ctx := context.Background()
	id, err := e.st.StartRun(ctx, store.Run{Practice: "alpha", Connection: "epic-main", Trigger: "schedule", Status: store.RunRunning,
		StartedAt: testNow.Add(-3e9)})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.UpdateRun(ctx, store.Run{ID: id, Practice: "alpha", Connection: "epic-main", Trigger: "schedule", Status: store.RunPartial,
		StartedAt: testNow.Add(-3e9), FinishedAt: testNow, Error: "2 resources failed validation",
		Stats: map[string]*store.TypeStats{"Patient": {Fetched: 45, New: 40, Unchanged: 3, Failed: 2}}}); err != nil {
		t.Fatal(err)
	}
	r := e.get("/v1/status", "")
	var st Status
	if err := json.Unmarshal(r.body, &st); err != nil {
		t.Fatalf("status: %v %s", err, r.body)
	}
	if len(st.Practices) != 3 || st.Practices[0].ID != "alpha" || st.Practices[0].Resources["Patient"] != 45 ||
		st.Practices[0].LastRun == nil || st.Practices[0].LastRun.Fetched != 45 || st.Practices[0].LastRun.Status != store.RunPartial {
		t.Errorf("status: %s", r.body)
	}
	page := e.get("/", "")
	html := string(page.body)
	if page.status != 200 || !strings.HasPrefix(page.header.Get("Content-Type"), "text/html") {
		t.Fatalf("status page %d %s", page.status, page.header.Get("Content-Type"))
	}
	for _, want := range []string{"alpha", "beta", "gamma", "epic-main", "Patient", ">45<", "partial", "2 resources failed validation",
		`href="/metrics"`, `href="/healthz"`, `http-equiv="refresh"`} {
		if !strings.Contains(html, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	for _, s := range append(phiFamilies, phiBirthDate, "Zebulon") {
		if strings.Contains(html, s) {
			t.Errorf("status page holds PHI %q", s)
		}
	}
	if css := e.get("/static/style.css", ""); css.status != 200 || !strings.Contains(css.header.Get("Content-Type"), "css") {
		t.Errorf("stylesheet: %d %s", css.status, css.header.Get("Content-Type"))
	}
}

func TestStatusLoopbackOnly(t *testing.T) {
	for _, expose := range []bool{false, true} {
		e := seededEnv(t, func(c *Config) { c.ExposeStatus = expose })
		for _, path := range []string{"/", "/v1/status", "/metrics"} {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.RemoteAddr = "203.0.113.9:4000"
			rec := httptest.NewRecorder()
			e.h.ServeHTTP(rec, req)
			if expose && rec.Code != 200 {
				t.Errorf("exposed %s from a remote address: %d", path, rec.Code)
			}
			if !expose && rec.Code != 403 {
				t.Errorf("%s from a remote address: %d, want 403", path, rec.Code)
			}
		}
		// Health probes answer everyone.
		req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
		req.RemoteAddr = "203.0.113.9:4000"
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Errorf("healthz from remote: %d", rec.Code)
		}
	}
}

// unreachable is a store whose database does not answer.
type unreachable struct{ store.Store }

func (unreachable) Ping(context.Context) error { return errors.New("connection refused") }
func (unreachable) Changes(context.Context, string, int64, int) ([]store.Change, error) {
	return nil, errors.New("connection refused")
}

func TestReadyzFailsWhenStoreDown(t *testing.T) {
	st := openTestStore(t)
	e := newEnv(t, unreachable{st})
	r := e.get("/readyz", "")
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("readyz %d", r.status)
	}
	if r := e.get("/healthz", ""); r.status != 200 {
		t.Errorf("healthz %d", r.status)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	st := openTestStore(t)
	cases := map[string]Config{
		"no store":         {Practices: testPractices},
		"short key":        {Store: st, Practices: testPractices, Apps: []App{{Name: "a", Key: []byte("short")}}},
		"shared key":       {Store: st, Practices: testPractices, Apps: []App{{Name: "a", Key: []byte(keyAlpha)}, {Name: "b", Key: []byte(keyAlpha)}}},
		"unknown practice": {Store: st, Practices: testPractices, Apps: []App{{Name: "a", Key: []byte(keyAlpha), Practices: []string{"nowhere"}}}},
		"duplicate app":    {Store: st, Practices: testPractices, Apps: []App{{Name: "a", Key: []byte(keyAlpha)}, {Name: "a", Key: []byte(keyBeta)}}},
		"bad practice id":  {Store: st, Practices: []string{"a/b"}},
	}
	for name, cfg := range cases {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted the config", name)
		}
	}
}

func TestConcurrentRequestsAreAllAudited(t *testing.T) {
	e := seededEnv(t)
	const workers, each = 16, 5
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/fhir/alpha/Patient?_count=3&gender=female", nil)
				req.Header.Set("X-API-Key", keyAlpha)
				resp, err := e.srv.Client().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("status %d", resp.StatusCode)
				}
			}
		}()
	}
	wg.Wait()
	evs, err := e.st.ListAudit(context.Background(), "alpha", store.AuditFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Action == "search" && ev.Entity == "Patient?_count,gender" && ev.Outcome == "success" {
			n++
		}
	}
	if n != workers*each {
		t.Errorf("%d search audit events, want %d", n, workers*each)
	}
}

func TestUnmatchedRoutesAreLabelledInMetrics(t *testing.T) {
	e := seededEnv(t)
	e.get("/secret-path-zz9", keyAlpha)
	m := string(e.get("/metrics", "").body)
	if strings.Contains(m, "secret-path-zz9") || !strings.Contains(m, `route="unmatched"`) {
		t.Errorf("unmatched request metrics:\n%s", m)
	}
}

func TestKeyFromFileWithNewlineWorks(t *testing.T) {
	st := openTestStore(t)
	seed(t, st)
	e := newEnv(t, st, func(c *Config) {
		c.Apps = []App{{Name: "file-app", Key: []byte(keyAlpha + "\n"), Practices: []string{"alpha"}}}
	})
	if r := e.get("/fhir/alpha/Patient/pat-001", keyAlpha); r.status != 200 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
}
