package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.t) {
		c.t = t
	}
}

func openStore(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "delivery.db")
	}
	st, err := sqlite.Open(context.Background(), path, sqlite.Options{ReadConns: 2})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// hit is one request the receiver got.
type hit struct {
	EventID, IdempotencyKey, Signature, Attempt, ContentType string
	Body                                                     []byte
	Event                                                    Event
	VerifyErr                                                error
}

// receiver is a webhook endpoint on loopback that verifies and records
// every request and answers as respond says (200 when nil).
type receiver struct {
	t   testing.TB
	srv *httptest.Server
	now func() time.Time

	mu      sync.Mutex
	secret  []byte
	hits    []hit
	respond func(ctx context.Context, h hit, n int) (int, http.Header) // n: requests for this event so far, 1-based
	perID   map[string]int
}

func newReceiver(t testing.TB, now func() time.Time) *receiver {
	r := &receiver{t: t, now: now, perID: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	h := hit{EventID: req.Header.Get(EventIDHeader), IdempotencyKey: req.Header.Get(IdempotencyKeyHeader),
		Signature: req.Header.Get(SignatureHeader), Attempt: req.Header.Get(AttemptHeader),
		ContentType: req.Header.Get("Content-Type"), Body: body}
	if err := json.Unmarshal(body, &h.Event); err != nil {
		h.VerifyErr = fmt.Errorf("body is not an event: %w", err)
	}
	r.mu.Lock()
	secret := r.secret
	r.mu.Unlock()
	if h.VerifyErr == nil {
		h.VerifyErr = Verify(secret, h.Signature, body, r.now(), 0)
	}
	r.mu.Lock()
	r.hits = append(r.hits, h)
	r.perID[h.EventID]++
	n := r.perID[h.EventID]
	respond := r.respond
	r.mu.Unlock()
	status, hdr := http.StatusOK, http.Header(nil)
	if respond != nil {
		status, hdr = respond(req.Context(), h, n)
	}
	for k, vs := range hdr {
		w.Header()[k] = vs
	}
	w.WriteHeader(status)
}

func (r *receiver) setSecret(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secret = []byte(s)
}

func (r *receiver) setRespond(f func(ctx context.Context, h hit, n int) (int, http.Header)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.respond = f
}

func (r *receiver) snapshot() []hit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hit(nil), r.hits...)
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.hits)
}

// seqs returns the seq of every request, in arrival order.
func seqs(hs []hit) []int64 {
	var out []int64
	for _, h := range hs {
		out = append(out, h.Event.Seq)
	}
	return out
}

// deduped keeps the first request of each event id, in arrival order.
func deduped(hs []hit) []hit {
	seen := map[string]bool{}
	var out []hit
	for _, h := range hs {
		if !seen[h.EventID] {
			seen[h.EventID] = true
			out = append(out, h)
		}
	}
	return out
}

// testOptions are fast options for tests: polls every few milliseconds.
func testOptions(st Store, practices ...string) Options {
	if len(practices) == 0 {
		practices = []string{"p1"}
	}
	return Options{Store: st, Practices: practices, SecretKey: testKey, PollInterval: 5 * time.Millisecond,
		BaseDelay: 2 * time.Millisecond, MaxDelay: 20 * time.Millisecond, RequestTimeout: 5 * time.Second}
}

func newDispatcher(t testing.TB, opts Options) *Dispatcher {
	t.Helper()
	d, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return d
}

// start runs d until the test ends (or the returned stop is called, which
// waits for Run to return).
func start(t testing.TB, d *Dispatcher) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func createWebhook(t testing.TB, d *Dispatcher, r *receiver, practice, app string, types ...string) Webhook {
	t.Helper()
	w, secret, err := d.CreateWebhook(context.Background(), WebhookSpec{Practice: practice, App: app, URL: r.srv.URL + "/hook", Types: types})
	if err != nil {
		t.Fatalf("CreateWebhook: %v", err)
	}
	r.setSecret(secret)
	return w
}

// writePatients stores n new Patients (ids prefix-1...) and returns their seqs.
func writePatients(t testing.TB, st store.Store, practice, prefix string, n int) []int64 {
	t.Helper()
	ws := make([]store.ResourceWrite, n)
	for i := range ws {
		id := fmt.Sprintf("%s-%d", prefix, i+1)
		ws[i] = store.ResourceWrite{ResourceType: "Patient", ID: id, Connection: "ehr",
			Body: fmt.Appendf(nil, `{"resourceType":"Patient","id":%q,"name":[{"family":"Testperson","given":["Secret"]}],"birthDate":"1970-01-01"}`, id)}
	}
	res, err := st.WriteResources(context.Background(), practice, ws)
	if err != nil {
		t.Fatalf("WriteResources: %v", err)
	}
	out := make([]int64, n)
	for i, r := range res {
		out[i] = r.Seq
	}
	return out
}

// waitFor polls cond until it holds; it fails the test after a generous
// deadline (a hang, not a slow machine, is what it catches).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// attempts collects OnAttempt reports.
type attempts struct {
	mu  sync.Mutex
	all []Attempt
}

func (a *attempts) add(at Attempt) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.all = append(a.all, at)
}

func (a *attempts) list() []Attempt {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Attempt(nil), a.all...)
}

func (a *attempts) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.all)
}
