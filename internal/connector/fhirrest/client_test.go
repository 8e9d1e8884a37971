package fhirrest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/vendors/epic"
)

// sleeps records the waits the client asks for instead of sleeping.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

func newClient(t *testing.T, base string, mod func(*Config)) (*Client, *sleeps) {
	t.Helper()
	sl := &sleeps{}
	cfg := Config{BaseURL: base, Sleep: sl.sleep, Timeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, sl
}

func bundle(next string, ids ...string) string {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"searchset"`)
	if next != "" {
		fmt.Fprintf(&b, `,"link":[{"relation":"self","url":"x"},{"relation":"next","url":%q}]`, next)
	}
	b.WriteString(`,"entry":[`)
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"fullUrl":"Patient/%s","resource":{"resourceType":"Patient","id":%q},"search":{"mode":"match"}}`, id, id)
	}
	b.WriteString(`]}`)
	return b.String()
}

func outcome(status int, w http.ResponseWriter, severity, code, detailCode, diagnostics string) {
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	details := ""
	if detailCode != "" {
		details = fmt.Sprintf(`,"details":{"coding":[{"system":%q,"code":%q}]}`, epic.ErrorSystem, detailCode)
	}
	fmt.Fprintf(w, `{"resourceType":"OperationOutcome","issue":[{"severity":%q,"code":%q%s,"diagnostics":%q}]}`, severity, code, details, diagnostics)
}

func TestSearchPagingFollowsNextLinks(t *testing.T) {
	var gotAccept, gotUA atomic.Value
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAccept.Store(r.Header.Get("Accept"))
		gotUA.Store(r.Header.Get("User-Agent"))
		w.Header().Set("Content-Type", "application/fhir+json")
		switch r.URL.Query().Get("page") {
		case "":
			if r.URL.Path != "/fhir/Patient" || r.URL.Query().Get("_count") != "2" {
				http.Error(w, "bad request "+r.URL.String(), 400)
				return
			}
			fmt.Fprint(w, bundle(srv.URL+"/fhir/Patient?page=2", "a", "b"))
		case "2":
			fmt.Fprint(w, bundle("Patient?page=3", "c", "d")) // relative link
		case "3":
			fmt.Fprint(w, bundle("", "e"))
		}
	}))
	defer srv.Close()
	c, _ := newClient(t, srv.URL+"/fhir/", nil)
	ctx := context.Background()
	p, err := c.Search(ctx, "Patient", url.Values{"_count": {"2"}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	pages := 0
	for {
		pages++
		if p.Status != 200 || p.FetchedAt.IsZero() {
			t.Fatalf("page %d: status %d fetchedAt %v", pages, p.Status, p.FetchedAt)
		}
		for _, e := range p.Bundle.Entry {
			ids = append(ids, string(e.Resource))
		}
		if p.Next == "" {
			break
		}
		if p, err = c.Next(ctx, p.Next); err != nil {
			t.Fatal(err)
		}
	}
	if pages != 3 || len(ids) != 5 {
		t.Fatalf("pages=%d ids=%v", pages, ids)
	}
	if ids[4] != `{"resourceType":"Patient","id":"e"}` {
		t.Fatalf("entry not raw: %s", ids[4])
	}
	if string(p.Body) != bundle("", "e") {
		t.Fatalf("body not byte-exact: %s", p.Body)
	}
	if gotAccept.Load() != "application/fhir+json" || gotUA.Load() != "mediflow" {
		t.Fatalf("headers: accept=%v ua=%v", gotAccept.Load(), gotUA.Load())
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(429)
			return
		}
		fmt.Fprint(w, bundle("", "a"))
	}))
	defer srv.Close()
	c, sl := newClient(t, srv.URL, nil)
	if _, err := c.Search(context.Background(), "Patient", nil); err != nil {
		t.Fatal(err)
	}
	if got := sl.all(); len(got) != 1 || got[0] != 7*time.Second {
		t.Fatalf("waits = %v, want [7s]", got)
	}
}

func TestRetryAfterHTTPDateAndCap(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch hits.Add(1) {
		case 1:
			w.Header().Set("Retry-After", now.Add(5*time.Second).Format(http.TimeFormat))
			w.WriteHeader(503)
		case 2:
			w.Header().Set("Retry-After", "3600") // beyond the cap
			w.WriteHeader(503)
		default:
			fmt.Fprint(w, bundle("", "a"))
		}
	}))
	defer srv.Close()
	c, sl := newClient(t, srv.URL, func(cfg *Config) {
		cfg.Now = func() time.Time { return now }
		cfg.MaxRetryAfter = 30 * time.Second
	})
	if _, err := c.Search(context.Background(), "Patient", nil); err != nil {
		t.Fatal(err)
	}
	got := sl.all()
	if len(got) != 2 || got[0] != 5*time.Second || got[1] != 30*time.Second {
		t.Fatalf("waits = %v, want [5s 30s]", got)
	}
}

func TestRetryAfterExhaustedReportsRateLimited(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(429)
	}))
	defer srv.Close()
	c, sl := newClient(t, srv.URL, func(cfg *Config) { cfg.MaxRetries = 2 })
	_, err := c.Search(context.Background(), "Patient", nil)
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindRateLimited || fe.Status != 429 || fe.Attempts != 3 || fe.RetryAfter != time.Second {
		t.Fatalf("err = %#v", err)
	}
	if len(sl.all()) != 2 {
		t.Fatalf("waits = %v", sl.all())
	}
}

func TestBackoffFullJitterBounds(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(500)
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name string
		r    float64
	}{{"low", 0}, {"mid", 0.5}, {"high", 0.999999}} {
		t.Run(tc.name, func(t *testing.T) {
			hits.Store(0)
			c, sl := newClient(t, srv.URL, func(cfg *Config) {
				cfg.MaxRetries = 6
				cfg.BaseBackoff = 100 * time.Millisecond
				cfg.MaxBackoff = 1 * time.Second
				cfg.Rand = func() float64 { return tc.r }
			})
			_, err := c.Read(context.Background(), "Patient", "x")
			if KindOf(err) != KindServer {
				t.Fatalf("err = %v", err)
			}
			if hits.Load() != 7 {
				t.Fatalf("hits = %d, want 7", hits.Load())
			}
			ceilings := []time.Duration{100, 200, 400, 800, 1000, 1000}
			got := sl.all()
			if len(got) != len(ceilings) {
				t.Fatalf("waits = %v", got)
			}
			for i, ceil := range ceilings {
				ceil *= time.Millisecond
				want := time.Duration(tc.r * float64(ceil))
				if got[i] < 0 || got[i] >= ceil || got[i] != want {
					t.Fatalf("wait %d = %v, want %v (< %v)", i, got[i], want, ceil)
				}
			}
		})
	}
}

func TestBackoffDefaultRandStaysInBounds(t *testing.T) {
	c, _ := newClient(t, "http://127.0.0.1:1", func(cfg *Config) {
		cfg.BaseBackoff = 10 * time.Millisecond
		cfg.MaxBackoff = 80 * time.Millisecond
	})
	seenLow, seenHigh := false, false
	for i := 0; i < 2000; i++ {
		n := i % 6
		ceil := min(10*time.Millisecond<<n, 80*time.Millisecond)
		d := c.backoff(n)
		if d < 0 || d >= ceil {
			t.Fatalf("backoff(%d) = %v outside [0,%v)", n, d, ceil)
		}
		if d < ceil/4 {
			seenLow = true
		}
		if d > ceil*3/4 {
			seenHigh = true
		}
	}
	if !seenLow || !seenHigh {
		t.Fatal("jitter does not spread over the interval")
	}
}

func TestTimeoutIsRetriedThenReported(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		if n <= 2 {
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
			return
		}
		fmt.Fprint(w, bundle("", "a"))
	}))
	defer srv.Close()
	c, _ := newClient(t, srv.URL, func(cfg *Config) { cfg.Timeout = 50 * time.Millisecond; cfg.MaxRetries = 1 })
	_, err := c.Search(context.Background(), "Patient", nil)
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindTimeout || fe.Attempts != 2 {
		t.Fatalf("err = %v", err)
	}
	c2, _ := newClient(t, srv.URL, func(cfg *Config) { cfg.Timeout = 50 * time.Millisecond; cfg.MaxRetries = 3 })
	if _, err := c2.Search(context.Background(), "Patient", nil); err != nil {
		t.Fatalf("third attempt should succeed: %v", err)
	}
}

func TestParentContextCancelIsNotRetried(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer srv.Close()
	c, sl := newClient(t, srv.URL, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Search(ctx, "Patient", nil)
	if !errors.Is(err, context.DeadlineExceeded) || len(sl.all()) != 0 {
		t.Fatalf("err = %v waits = %v", err, sl.all())
	}
}

// dropAfterHeaders answers with a Content-Length it never fulfils and closes.
func dropAfterHeaders(w http.ResponseWriter) {
	conn, rw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	rw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: 5000\r\n\r\n{\"resourceType\":\"Bundle\",")
	rw.Flush()
	conn.Close()
}

func TestDroppedConnectionRetried(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch hits.Add(1) {
		case 1:
			dropAfterHeaders(w)
		case 2:
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close() // no response at all
		default:
			fmt.Fprint(w, bundle("", "a"))
		}
	}))
	defer srv.Close()
	c, sl := newClient(t, srv.URL, nil)
	p, err := c.Search(context.Background(), "Patient", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Bundle.Entry) != 1 || hits.Load() != 3 || len(sl.all()) != 2 {
		t.Fatalf("entries=%d hits=%d waits=%v", len(p.Bundle.Entry), hits.Load(), sl.all())
	}
	// Always dropped: a network error after the retries.
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { dropAfterHeaders(w) }))
	defer srv2.Close()
	c2, _ := newClient(t, srv2.URL, func(cfg *Config) { cfg.MaxRetries = 1 })
	_, err = c2.Search(context.Background(), "Patient", url.Values{"family": {"Zebediah"}})
	if KindOf(err) != KindNetwork {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "Zebediah") {
		t.Fatalf("error leaks the query: %v", err)
	}
}

func TestMalformedJSONRetried(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch hits.Add(1) {
		case 1:
			fmt.Fprint(w, `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","name":"Zebediah`)
		case 2:
			fmt.Fprint(w, `<html>login</html>`)
		case 3:
			fmt.Fprint(w, `{"resourceType":"Patient","id":"x"}`) // not a Bundle
		default:
			fmt.Fprint(w, bundle("", "a", "b"))
		}
	}))
	defer srv.Close()
	c, sl := newClient(t, srv.URL, nil)
	p, err := c.Search(context.Background(), "Patient", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Bundle.Entry) != 2 || hits.Load() != 4 || len(sl.all()) != 3 {
		t.Fatalf("entries=%d hits=%d waits=%v", len(p.Bundle.Entry), hits.Load(), sl.all())
	}
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"resourceType":"Bundle","entry":[{"resource":{"name":"Zebediah"}},]}`)
	}))
	defer srv2.Close()
	c2, _ := newClient(t, srv2.URL, func(cfg *Config) { cfg.MaxRetries = 2 })
	_, err = c2.Search(context.Background(), "Patient", nil)
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindBadResponse || fe.Attempts != 3 {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "Zebediah") {
		t.Fatalf("error leaks body content: %v", err)
	}
}

func TestOperationOutcomeTypedErrors(t *testing.T) {
	type want struct {
		kind   ErrorKind
		code   string
		empty  bool
		status int
	}
	cases := []struct {
		name    string
		epic    bool
		next    bool
		handler func(w http.ResponseWriter)
		want    want
	}{
		{"invalid", false, false, func(w http.ResponseWriter) { outcome(400, w, "error", "invalid", "", "bad param") }, want{kind: KindInvalid, status: 400}},
		{"not-found", false, false, func(w http.ResponseWriter) { outcome(404, w, "error", "not-found", "", "") }, want{kind: KindNotFound, status: 404}},
		{"forbidden", false, false, func(w http.ResponseWriter) { outcome(403, w, "error", "forbidden", "", "") }, want{kind: KindForbidden, status: 403}},
		{"too-costly", false, false, func(w http.ResponseWriter) { outcome(422, w, "error", "too-costly", "", "") }, want{kind: KindTooManyResults, status: 422}},
		{"conflict", false, false, func(w http.ResponseWriter) { outcome(409, w, "error", "conflict", "", "") }, want{kind: KindConflict, status: 409}},
		{"throttled-in-400", false, false, func(w http.ResponseWriter) { outcome(400, w, "error", "throttled", "", "") }, want{kind: KindRateLimited, status: 400}},
		{"gone-next", false, true, func(w http.ResponseWriter) { outcome(410, w, "error", "not-found", "", "") }, want{kind: KindSearchExpired, status: 410}},
		{"epic-4113", true, true, func(w http.ResponseWriter) { outcome(400, w, "error", "processing", "4113", "") }, want{kind: KindSearchExpired, code: "4113", status: 400}},
		{"epic-4111", true, false, func(w http.ResponseWriter) { outcome(400, w, "error", "required", "4111", "") }, want{kind: KindInvalid, code: "4111", status: 400}},
		{"epic-4127", true, false, func(w http.ResponseWriter) { outcome(400, w, "error", "processing", "4127", "") }, want{kind: KindTooManyResults, code: "4127", status: 400}},
		{"epic-btg", true, false, func(w http.ResponseWriter) { outcome(403, w, "error", "suppressed", "4130", "") }, want{kind: KindForbidden, code: "4130", status: 403}},
		{"epic-4101-as-error-status", true, false, func(w http.ResponseWriter) { outcome(404, w, "warning", "not-found", "4101", "") }, want{empty: true}},
		{"epic-4101-in-200", true, false, func(w http.ResponseWriter) {
			w.WriteHeader(200)
			fmt.Fprintf(w, `{"resourceType":"Bundle","type":"searchset","total":0,"entry":[{"resource":{"resourceType":"OperationOutcome","issue":[{"severity":"warning","code":"processing","details":{"coding":[{"system":%q,"code":"4101"}]}}]},"search":{"mode":"outcome"}}]}`, epic.ErrorSystem)
		}, want{empty: true}},
		{"epic-4113-in-200-entry", true, true, func(w http.ResponseWriter) {
			w.WriteHeader(200)
			fmt.Fprintf(w, `{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","details":{"coding":[{"system":%q,"code":"4113"}]}}]},"search":{"mode":"outcome"}}]}`, epic.ErrorSystem)
		}, want{kind: KindSearchExpired, code: "4113", status: 200}},
		{"generic-200-outcome-body", false, false, func(w http.ResponseWriter) { outcome(200, w, "information", "informational", "", "nothing found") }, want{empty: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				tc.handler(w)
			}))
			defer srv.Close()
			c, _ := newClient(t, srv.URL, func(cfg *Config) {
				if tc.epic {
					cfg.Profile = epic.New()
				}
			})
			var p *Page
			var err error
			if tc.next {
				p, err = c.Next(context.Background(), srv.URL+"/Patient?session=1")
			} else {
				p, err = c.Search(context.Background(), "Patient", nil)
			}
			if tc.want.empty {
				if err != nil {
					t.Fatalf("want an empty page, got %v", err)
				}
				if p.Bundle == nil || p.Next != "" {
					t.Fatalf("page = %+v", p)
				}
				for _, e := range p.Bundle.Entry {
					if e.Search == nil || e.Search.Mode != "outcome" {
						t.Fatalf("empty page has a match entry")
					}
				}
				return
			}
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v", err)
			}
			if fe.Kind != tc.want.kind || fe.VendorCode != tc.want.code || fe.Status != tc.want.status || fe.Outcome == nil {
				t.Fatalf("got kind=%v code=%q status=%d outcome=%v; want %+v", fe.Kind, fe.VendorCode, fe.Status, fe.Outcome, tc.want)
			}
			if hits.Load() != 1 && !tc.want.kind.Retryable() {
				t.Fatalf("non-retryable error sent %d times", hits.Load())
			}
		})
	}
}

type fakeTokens struct {
	mu          sync.Mutex
	current     string
	invalidated []string
	n           int
}

func (f *fakeTokens) Token(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.current == "" {
		f.n++
		f.current = fmt.Sprintf("tok%d", f.n)
	}
	return f.current, nil
}

func (f *fakeTokens) Invalidate(tok string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.invalidated = append(f.invalidated, tok)
	if f.current == tok {
		f.current = ""
	}
}

func Test401InvalidatesAndRetriesOnce(t *testing.T) {
	var hits atomic.Int32
	valid := "tok2"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+valid {
			outcome(401, w, "error", "login", "", "")
			return
		}
		fmt.Fprint(w, bundle("", "a"))
	}))
	defer srv.Close()
	toks := &fakeTokens{}
	c, sl := newClient(t, srv.URL, func(cfg *Config) { cfg.Tokens = toks })
	if _, err := c.Search(context.Background(), "Patient", nil); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 2 || len(toks.invalidated) != 1 || toks.invalidated[0] != "tok1" || len(sl.all()) != 0 {
		t.Fatalf("hits=%d invalidated=%v waits=%v", hits.Load(), toks.invalidated, sl.all())
	}
	// A server that refuses every token: one refresh, then an auth error.
	hits.Store(0)
	valid = "never"
	_, err := c.Search(context.Background(), "Patient", nil)
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindAuth || fe.Status != 401 || hits.Load() != 2 {
		t.Fatalf("err=%v hits=%d", err, hits.Load())
	}
}

func TestTokenSourceFailureIsAuthError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("request sent without a token") }))
	defer srv.Close()
	c, _ := newClient(t, srv.URL, func(cfg *Config) { cfg.Tokens = failingTokens{} })
	_, err := c.Read(context.Background(), "Patient", "1")
	if KindOf(err) != KindAuth {
		t.Fatalf("err = %v", err)
	}
}

type failingTokens struct{}

func (failingTokens) Token(context.Context) (string, error) { return "", errors.New("invalid_client") }
func (failingTokens) Invalidate(string)                     {}

func TestNextLinkOriginCheck(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprint(w, bundle("", "a"))
	}))
	defer srv.Close()
	c, _ := newClient(t, srv.URL+"/fhir", func(cfg *Config) { cfg.Tokens = &fakeTokens{} })
	u, _ := url.Parse(srv.URL)
	for _, bad := range []string{
		"http://evil.example/fhir/Patient?page=2&family=Zebediah",
		"https://" + u.Host + "/fhir/Patient?page=2", // other scheme
		"http://" + u.Hostname() + ":1/fhir/Patient?page=2",
		"//evil.example/fhir/Patient",
		"",
	} {
		_, err := c.Next(context.Background(), bad)
		if KindOf(err) != KindForeignLink {
			t.Fatalf("%q: err = %v", bad, err)
		}
		if strings.Contains(err.Error(), "Zebediah") {
			t.Fatalf("error leaks query: %v", err)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("a foreign link was fetched")
	}
	for _, good := range []string{srv.URL + "/fhir/Patient?page=2", "Patient?page=2", "/fhir/Patient?page=2", strings.ToUpper("http://") + u.Host + "/fhir/Patient"} {
		if _, err := c.Next(context.Background(), good); err != nil {
			t.Fatalf("%q: %v", good, err)
		}
	}
}

func TestErrorsArePHIFree(t *testing.T) {
	const name, dob = "Zebediah", "1961-07-04"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		outcome(400, w, "error", "invalid", "", "no patient "+name+" born "+dob)
	}))
	defer srv.Close()
	c, _ := newClient(t, srv.URL, nil)
	_, err := c.Search(context.Background(), "Patient", url.Values{"family": {name}, "birthdate": {dob}})
	if err == nil {
		t.Fatal("want an error")
	}
	msg := err.Error()
	if strings.Contains(msg, name) || strings.Contains(msg, dob) || strings.Contains(msg, "family") {
		t.Fatalf("error leaks PHI: %s", msg)
	}
	if !strings.Contains(msg, "/Patient") || !strings.Contains(msg, "error/invalid") {
		t.Fatalf("error lacks context: %s", msg)
	}
	// Connection refused: the wrapped *url.Error must not bring the query back.
	closed := httptest.NewServer(http.NotFoundHandler())
	base := closed.URL
	closed.Close()
	c2, _ := newClient(t, base, func(cfg *Config) { cfg.MaxRetries = -1 })
	_, err = c2.Search(context.Background(), "Patient", url.Values{"family": {name}, "birthdate": {dob}})
	if KindOf(err) != KindNetwork || strings.Contains(err.Error(), name) || strings.Contains(err.Error(), dob) {
		t.Fatalf("err = %v", err)
	}
}

func TestReadAndCapabilities(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metadata":
			fmt.Fprint(w, `{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1"}`)
		case "/Patient/a%2Fb", "/Patient/a/b":
			if r.URL.EscapedPath() != "/Patient/a%2Fb" {
				t.Errorf("id not escaped: %s", r.URL.EscapedPath())
			}
			fmt.Fprint(w, `{"resourceType":"Patient","id":"a/b"}`)
		case "/Patient/wrong":
			fmt.Fprint(w, `{"resourceType":"Observation","id":"wrong"}`)
		default:
			outcome(404, w, "error", "not-found", "", "")
		}
	}))
	defer srv.Close()
	c, _ := newClient(t, srv.URL, func(cfg *Config) { cfg.MaxRetries = -1 })
	ctx := context.Background()
	res, err := c.Capabilities(ctx)
	if err != nil || !strings.Contains(string(res.Body), "4.0.1") {
		t.Fatalf("capabilities: %v", err)
	}
	if _, err := c.Read(ctx, "Patient", "a/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(ctx, "Patient", "missing"); KindOf(err) != KindNotFound {
		t.Fatalf("err = %v", err)
	}
	if _, err := c.Read(ctx, "Patient", "wrong"); KindOf(err) != KindBadResponse {
		t.Fatalf("err = %v", err)
	}
	if _, err := c.Read(ctx, "../x", "1"); err == nil {
		t.Fatal("bad type accepted")
	}
}

func TestUnknownLengthBodyKeptExact(t *testing.T) {
	body := bundle("", "a", "b", "c")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bw := bufio.NewWriter(w)
		for i := 0; i < len(body); i += 7 {
			bw.WriteString(body[i:min(i+7, len(body))])
			bw.Flush()
			w.(http.Flusher).Flush() // chunked
		}
	}))
	defer srv.Close()
	c, _ := newClient(t, srv.URL, nil)
	p, err := c.Search(context.Background(), "Patient", nil)
	if err != nil || string(p.Body) != body {
		t.Fatalf("err=%v body=%s", err, p.Body)
	}
	c2, _ := newClient(t, srv.URL, func(cfg *Config) { cfg.MaxBodyBytes = 20; cfg.MaxRetries = -1 })
	if _, err := c2.Search(context.Background(), "Patient", nil); err == nil {
		t.Fatal("oversized body accepted")
	}
}

func TestNewValidatesBaseURL(t *testing.T) {
	for _, bad := range []string{"", "ftp://x/fhir", "/relative", "http://x/fhir?a=1"} {
		if _, err := New(Config{BaseURL: bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// tokenErr is a TokenSource error like internal/smart's TokenError.
type tokenErr struct {
	retryable bool
	after     time.Duration
}

func (e tokenErr) Error() string             { return "token endpoint said no" }
func (e tokenErr) Retryable() bool           { return e.retryable }
func (e tokenErr) RetryDelay() time.Duration { return e.after }

func TestTokenFailureClassification(t *testing.T) {
	cases := []struct {
		name      string
		err       error
		kind      ErrorKind
		retryable bool
		after     time.Duration
	}{
		{"transient with Retry-After", tokenErr{retryable: true, after: 3 * time.Second}, KindServer, true, 3 * time.Second},
		{"refused", tokenErr{retryable: false}, KindAuth, false, 0},
		{"network", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, KindNetwork, true, 0},
		{"other", errors.New("no key"), KindAuth, false, 0},
	}
	for _, c := range cases {
		e := tokenFailure(c.err)
		if e.Kind != c.kind || e.Kind.Retryable() != c.retryable || e.RetryAfter != c.after {
			t.Errorf("%s: got kind %v retryable %v after %v; want %v %v %v", c.name, e.Kind, e.Kind.Retryable(), e.RetryAfter, c.kind, c.retryable, c.after)
		}
		if !errors.Is(e, c.err) && !errors.As(e, new(tokenErr)) {
			t.Errorf("%s: the token error is not wrapped", c.name)
		}
	}
}
