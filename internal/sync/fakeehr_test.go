package sync

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/vendors/epic"
)

// fakeEHR is a tiny FHIR server for sync tests: type-level search with
// _lastUpdated=ge and _count, paging through cached search sessions, and
// switches for vendor behaviours (duplicate ids across pages, expiring
// sessions, malformed pages).
type fakeEHR struct {
	t   *testing.T
	srv *httptest.Server

	mu       gosync.Mutex
	data     map[string]map[string]*fakeRes // type → id → resource
	sessions map[string][]*fakeRes
	nextSess int
	requests []string // "search Patient since=..." or "page S N"

	// switches
	dupAcrossPages    bool            // repeat the previous page's last entry first on each page (Oracle Health)
	expirePages       map[int]bool    // answer Epic 4113 (once) when page N of a session is asked for
	ignoreLastUpdated bool            // return everything whatever _lastUpdated says
	malformedTypes    map[string]bool // every search of this type gets a truncated body
	serverTime        time.Time       // Bundle.meta.lastUpdated (zero: omitted)
	extraEntries      map[string][]string
	requireToken      string // when set, other bearer tokens get 401
	unauthorized      int    // how many 401s were sent
}

type fakeRes struct {
	id   string
	lu   time.Time
	body string
}

func newFakeEHR(t *testing.T) *fakeEHR {
	f := &fakeEHR{t: t, data: map[string]map[string]*fakeRes{}, sessions: map[string][]*fakeRes{}, expirePages: map[int]bool{}, malformedTypes: map[string]bool{}, extraEntries: map[string][]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeEHR) base() string { return f.srv.URL + "/fhir" }

// put creates or replaces a resource; extra is spliced into its JSON.
func (f *fakeEHR) put(rt, id string, lu time.Time, extra string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.data[rt] == nil {
		f.data[rt] = map[string]*fakeRes{}
	}
	body := fmt.Sprintf(`{"resourceType":%q,"id":%q,"meta":{"versionId":"%d","lastUpdated":%q},"name":[{"family":"Zebediah","given":["Quill"]}],"birthDate":"1961-07-04"%s}`,
		rt, id, lu.Unix(), fhir.FormatInstant(lu), extra)
	f.data[rt][id] = &fakeRes{id: id, lu: lu, body: body}
}

func (f *fakeEHR) body(rt, id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.data[rt][id].body
}

func (f *fakeEHR) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

func (f *fakeEHR) resetLog() {
	f.mu.Lock()
	f.requests = nil
	f.mu.Unlock()
}

func (f *fakeEHR) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/fhir+json")
	if f.requireToken != "" && r.Header.Get("Authorization") != "Bearer "+f.requireToken {
		f.unauthorized++
		w.WriteHeader(401)
		fmt.Fprint(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"login"}]}`)
		return
	}
	q := r.URL.Query()
	n := len(f.requests)
	defer func() {
		// Requests from a client with its own User-Agent are tagged with it.
		if ua := r.Header.Get("User-Agent"); ua != "mediflow" {
			for i := n; i < len(f.requests); i++ {
				f.requests[i] += "@" + ua
			}
		}
	}()
	if r.URL.Path == "/fhir" && q.Get("_getpages") != "" {
		f.page(w, q.Get("_getpages"), q.Get("_page"), q.Get("_count"))
		return
	}
	rt := strings.TrimPrefix(r.URL.Path, "/fhir/")
	since := q.Get("_lastUpdated")
	f.requests = append(f.requests, "search "+rt+" "+since)
	if f.malformedTypes[rt] {
		fmt.Fprint(w, `{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"`+rt+`","id":"x","name":"Zebediah`)
		return
	}
	var match []*fakeRes
	var min time.Time
	if since != "" && !f.ignoreLastUpdated {
		t, err := fhir.ParseInstant(strings.TrimPrefix(since, "ge"))
		if err != nil {
			w.WriteHeader(400)
			fmt.Fprint(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid"}]}`)
			return
		}
		min = t
	}
	for _, res := range f.data[rt] {
		if res.lu.Before(min) {
			continue
		}
		match = append(match, res)
	}
	sort.Slice(match, func(i, j int) bool { return match[i].id < match[j].id })
	f.nextSess++
	sess := strconv.Itoa(f.nextSess)
	f.sessions[sess] = match
	f.writePage(w, sess, 1, q.Get("_count"), rt)
}

func (f *fakeEHR) page(w http.ResponseWriter, sess, pageStr, count string) {
	n, _ := strconv.Atoi(pageStr)
	f.requests = append(f.requests, "page "+sess+" "+pageStr)
	if _, ok := f.sessions[sess]; !ok {
		w.WriteHeader(410)
		fmt.Fprint(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"search session gone"}]}`)
		return
	}
	if f.expirePages[n] {
		delete(f.expirePages, n)
		delete(f.sessions, sess)
		w.WriteHeader(400)
		fmt.Fprintf(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","details":{"coding":[{"system":%q,"code":"4113"}]}}]}`, epic.ErrorSystem)
		return
	}
	f.writePage(w, sess, n, count, "")
}

func (f *fakeEHR) writePage(w http.ResponseWriter, sess string, n int, countStr, rt string) {
	count, _ := strconv.Atoi(countStr)
	if count <= 0 {
		count = 10
	}
	all := f.sessions[sess]
	lo, hi := (n-1)*count, n*count
	if lo > len(all) {
		lo = len(all)
	}
	if hi > len(all) {
		hi = len(all)
	}
	items := all[lo:hi]
	if f.dupAcrossPages && lo > 0 {
		items = append([]*fakeRes{all[lo-1]}, items...)
	}
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"searchset"`)
	if !f.serverTime.IsZero() {
		fmt.Fprintf(&b, `,"meta":{"lastUpdated":%q}`, fhir.FormatInstant(f.serverTime))
	}
	fmt.Fprintf(&b, `,"total":%d,"link":[{"relation":"self","url":"%s/fhir?_getpages=%s&_page=%d&_count=%d"}`, len(all), f.srv.URL, sess, n, count)
	if hi < len(all) {
		fmt.Fprintf(&b, `,{"relation":"next","url":"%s/fhir?_getpages=%s&_page=%d&_count=%d"}`, f.srv.URL, sess, n+1, count)
	}
	b.WriteString(`],"entry":[`)
	for i, res := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"fullUrl":"%s/fhir/x/%s","resource":%s,"search":{"mode":"match"}}`, f.srv.URL, res.id, res.body)
	}
	if n == 1 {
		for _, e := range f.extraEntries[rt] {
			if b.String()[b.Len()-1] != '[' {
				b.WriteByte(',')
			}
			b.WriteString(e)
		}
	}
	b.WriteString(`]}`)
	fmt.Fprint(w, b.String())
}

// newCapServer serves one CapabilityStatement at /metadata and returns the base URL.
func newCapServer(t *testing.T, body string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metadata" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
