package bulk

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testServer is a Bulk Data export server of our own: kick-off, status
// with progress, manifest, files (optionally gzip'd or redirected to a
// storage host) and DELETE. Tests configure it through its fields before
// the export starts (and under mu afterwards).
type testServer struct {
	t       testing.TB
	srv     *httptest.Server
	storage *httptest.Server // another origin: fails the test on Authorization

	mu sync.Mutex
	// kick-off
	kickoffAnswers []answer // consumed first; then 202
	kickoffs       []*http.Request
	// status
	pollsBeforeDone int      // 202 answers before the manifest
	progress        []string // X-Progress per 202 answer (cycled)
	retryAfter      []string // Retry-After per 202 answer (cycled; "" none)
	statusAnswers   []answer // consumed before the normal answers
	statusGone      bool     // answer 404 from now on
	polls           int
	deletes         int
	expires         string // Expires header on the manifest
	// manifest and files
	requiresToken bool
	output        []FileItem
	deletedFiles  []FileItem
	errorFiles    []FileItem
	files         map[string]string // name → NDJSON
	gzipFiles     bool
	fileHook      func(name string, w http.ResponseWriter, r *http.Request) bool // true: handled
	fileGets      map[string]int
	fileAuth      map[string]string // name → last Authorization seen
}

// answer is a canned response.
type answer struct {
	status     int
	retryAfter string
	body       string
}

const testToken = "tok-123"

func newTestServer(t testing.TB) *testServer {
	ts := &testServer{t: t, files: map[string]string{}, fileGets: map[string]int{}, fileAuth: map[string]string{}}
	ts.srv = httptest.NewServer(http.HandlerFunc(ts.serve))
	ts.storage = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "" {
			t.Errorf("storage host received Authorization %q", a)
		}
		ts.serveFile(w, r, strings.TrimPrefix(r.URL.Path, "/blob/"))
	}))
	t.Cleanup(ts.storage.Close)
	t.Cleanup(ts.srv.Close)
	return ts
}

// with runs f holding the server's lock (to read what it recorded).
func (ts *testServer) with(f func()) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	f()
}

func (ts *testServer) gets(name string) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.fileGets[name]
}

func (ts *testServer) auth(name string) string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.fileAuth[name]
}

func (ts *testServer) nDeletes() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.deletes
}

func (ts *testServer) lastKickoff() *http.Request {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.kickoffs) == 0 {
		return nil
	}
	return ts.kickoffs[len(ts.kickoffs)-1]
}

func (ts *testServer) base() string { return ts.srv.URL + "/fhir" }

// fileURL is the manifest URL of a file served by the FHIR server.
func (ts *testServer) fileURL(name string) string { return ts.srv.URL + "/fhir/files/" + name }

func (ts *testServer) addOutput(typ, name, body string) {
	ts.files[name] = body
	ts.output = append(ts.output, FileItem{Type: typ, URL: ts.fileURL(name)})
}

func (ts *testServer) checkToken(w http.ResponseWriter, r *http.Request) bool {
	if got := r.Header.Get("Authorization"); got != "Bearer "+testToken {
		ts.t.Errorf("%s %s: Authorization %q", r.Method, r.URL.Path, got)
		w.WriteHeader(http.StatusUnauthorized)
		return false
	}
	return true
}

func (ts *testServer) serve(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case strings.HasSuffix(p, "/$export"):
		ts.kickoff(w, r)
	case p == "/fhir/status/1":
		ts.status(w, r)
	case strings.HasPrefix(p, "/fhir/files/redirect-host/"):
		name := strings.TrimPrefix(p, "/fhir/files/redirect-host/")
		ts.mu.Lock()
		ts.fileAuth["redirect-host/"+name] = r.Header.Get("Authorization")
		ts.mu.Unlock()
		http.Redirect(w, r, ts.storage.URL+"/blob/"+name, http.StatusFound)
	case strings.HasPrefix(p, "/fhir/files/redirect-path/"):
		name := strings.TrimPrefix(p, "/fhir/files/redirect-path/")
		ts.mu.Lock()
		ts.fileAuth["redirect-path/"+name] = r.Header.Get("Authorization")
		ts.mu.Unlock()
		http.Redirect(w, r, "/storage/"+name, http.StatusTemporaryRedirect)
	case strings.HasPrefix(p, "/fhir/files/same/moved-"):
		// a redirect within the file's own directory
		http.Redirect(w, r, strings.Replace(p, "moved-", "", 1), http.StatusFound)
	case strings.HasPrefix(p, "/storage/"):
		if a := r.Header.Get("Authorization"); a != "" {
			ts.t.Errorf("storage path received Authorization %q", a)
		}
		ts.serveFile(w, r, strings.TrimPrefix(p, "/storage/"))
	case strings.HasPrefix(p, "/fhir/files/"):
		name := strings.TrimPrefix(p, "/fhir/files/")
		ts.mu.Lock()
		ts.fileAuth[name] = r.Header.Get("Authorization")
		need := ts.requiresToken
		ts.mu.Unlock()
		if need {
			if !ts.checkToken(w, r) {
				return
			}
		} else if a := r.Header.Get("Authorization"); a != "" {
			ts.t.Errorf("file %s: Authorization sent although requiresAccessToken is false", name)
		}
		ts.serveFile(w, r, name)
	default:
		http.NotFound(w, r)
	}
}

func (ts *testServer) kickoff(w http.ResponseWriter, r *http.Request) {
	if !ts.checkToken(w, r) {
		return
	}
	if r.Header.Get("Prefer") != "respond-async" || r.Header.Get("Accept") != "application/fhir+json" {
		ts.t.Errorf("kick-off headers: Prefer %q Accept %q", r.Header.Get("Prefer"), r.Header.Get("Accept"))
	}
	ts.mu.Lock()
	ts.kickoffs = append(ts.kickoffs, r.Clone(context.Background()))
	var a *answer
	if len(ts.kickoffAnswers) > 0 {
		a = &ts.kickoffAnswers[0]
		ts.kickoffAnswers = ts.kickoffAnswers[1:]
	}
	ts.statusGone = false
	ts.mu.Unlock()
	if a != nil {
		writeAnswer(w, *a)
		return
	}
	w.Header().Set("Content-Location", ts.srv.URL+"/fhir/status/1")
	w.WriteHeader(http.StatusAccepted)
}

func writeAnswer(w http.ResponseWriter, a answer) {
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	if a.body != "" {
		w.Header().Set("Content-Type", "application/fhir+json")
	}
	w.WriteHeader(a.status)
	fmt.Fprint(w, a.body)
}

func (ts *testServer) status(w http.ResponseWriter, r *http.Request) {
	if !ts.checkToken(w, r) {
		return
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if r.Method == http.MethodDelete && ts.statusGone {
		writeAnswer(w, answer{status: http.StatusNotFound, body: outcome("error", "not-found", "no such job")})
		return
	}
	if r.Method == http.MethodDelete {
		ts.deletes++
		ts.statusGone = true
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if ts.statusGone {
		writeAnswer(w, answer{status: http.StatusNotFound, body: outcome("error", "not-found", "no such job")})
		return
	}
	if len(ts.statusAnswers) > 0 {
		a := ts.statusAnswers[0]
		ts.statusAnswers = ts.statusAnswers[1:]
		writeAnswer(w, a)
		return
	}
	if ts.polls < ts.pollsBeforeDone {
		if len(ts.progress) > 0 {
			w.Header().Set("X-Progress", ts.progress[ts.polls%len(ts.progress)])
		}
		if len(ts.retryAfter) > 0 {
			if v := ts.retryAfter[ts.polls%len(ts.retryAfter)]; v != "" {
				w.Header().Set("Retry-After", v)
			}
		}
		ts.polls++
		w.WriteHeader(http.StatusAccepted)
		return
	}
	ts.polls++
	m := map[string]any{
		"transactionTime":     "2026-03-01T10:00:00.000Z",
		"request":             ts.base() + "/$export",
		"requiresAccessToken": ts.requiresToken,
		"output":              nonNil(ts.output),
		"error":               nonNil(ts.errorFiles),
	}
	if len(ts.deletedFiles) > 0 {
		m["deleted"] = ts.deletedFiles
	}
	if ts.expires != "" {
		w.Header().Set("Expires", ts.expires)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(m)
}

func nonNil(f []FileItem) []FileItem {
	if f == nil {
		return []FileItem{}
	}
	return f
}

func (ts *testServer) serveFile(w http.ResponseWriter, r *http.Request, name string) {
	ts.mu.Lock()
	ts.fileGets[name]++
	hook := ts.fileHook
	body, ok := ts.files[name]
	gz := ts.gzipFiles
	ts.mu.Unlock()
	if hook != nil && hook(name, w, r) {
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/fhir+ndjson")
	if gz {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			ts.t.Errorf("file %s: no Accept-Encoding: gzip", name)
		}
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		_, _ = zw.Write([]byte(body))
		_ = zw.Close()
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write([]byte(body))
}

func outcome(severity, code, diagnostics string) string {
	b, _ := json.Marshal(map[string]any{"resourceType": "OperationOutcome",
		"issue": []map[string]string{{"severity": severity, "code": code, "diagnostics": diagnostics}}})
	return string(b)
}

// ndjson makes n resources of typ with ids prefix0..prefix(n-1).
func ndjson(typ, prefix string, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"resourceType":%q,"id":"%s%d","meta":{"lastUpdated":"2026-01-01T00:00:00Z"},"status":"final"}`+"\n", typ, prefix, i)
	}
	return b.String()
}

// tokens is a TokenSource that counts.
type tokens struct {
	mu          sync.Mutex
	issued      int
	invalidated int
}

func (s *tokens) Token(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issued++
	return testToken, nil
}

func (s *tokens) Invalidate(string) {
	s.mu.Lock()
	s.invalidated++
	s.mu.Unlock()
}

// sleeper is a fake Sleep: it records the waits and returns at once.
type sleeper struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleeper) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeper) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// collector is a set of sinks that records everything, safe for concurrent use.
type collector struct {
	mu        sync.Mutex
	resources []Resource // bodies copied
	tombs     []Tombstone
	progress  []Progress
}

func (c *collector) sink(_ context.Context, batch []Resource) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range batch {
		r.Body = append([]byte(nil), r.Body...)
		c.resources = append(c.resources, r)
	}
	return nil
}

func (c *collector) deleted(_ context.Context, batch []Tombstone) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tombs = append(c.tombs, batch...)
	return nil
}

func (c *collector) onProgress(p Progress) {
	c.mu.Lock()
	c.progress = append(c.progress, p)
	c.mu.Unlock()
}

func (c *collector) options() Options {
	return Options{Resources: c.sink, Deleted: c.deleted, Progress: c.onProgress}
}

// ids counts delivered resources by Type/id.
func (c *collector) ids() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string]int{}
	for _, r := range c.resources {
		m[r.Type+"/"+r.ID]++
	}
	return m
}

// newTestClient makes a client for ts with a fake clock and tiny backoffs.
func newTestClient(t *testing.T, ts *testServer, mod func(*Config)) (*Client, *sleeper, *tokens) {
	t.Helper()
	sl := &sleeper{}
	tk := &tokens{}
	cfg := Config{
		BaseURL: ts.base(), Tokens: tk, Sleep: sl.sleep,
		MinPoll: time.Second, MaxPoll: time.Minute,
		BaseBackoff: time.Millisecond, MaxBackoff: 8 * time.Millisecond,
		Rand: func() float64 { return 0.5 },
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, sl, tk
}
