package writeback

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/connector/fhirrest"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
	"github.com/mediflow/mediflow/internal/writeback/contract"
)

const practice = "clinic"

// openStore opens a fresh SQLite store in the test's directory and
// returns it with its path.
func openStore(t testing.TB) (*sqlite.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mediflow.db")
	return openStoreAt(t, path), path
}

func openStoreAt(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// startSim starts the simulator's generic flavour with open auth.
func startSim(t testing.TB, patients int) *sim.Sim {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{
		ID: practice, Flavor: "generic", Seed: 11, OpenAuth: true, Data: &gen.Options{Patients: patients},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); s.Wait() })
	return s
}

// fhirClient is a FHIR client with short timeouts and quick retries.
func fhirClient(t testing.TB, base string) *fhirrest.Client {
	t.Helper()
	c, err := fhirrest.New(fhirrest.Config{BaseURL: base, Timeout: 3 * time.Second, MaxRetries: 3,
		BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Test-local contract supports, shaped like a vendor contract says.
func supports(conditional bool) func(contract.Intent) contract.Support {
	return func(i contract.Intent) contract.Support {
		switch i {
		case contract.NoteCreate:
			return contract.Support{Intent: i, Supported: true, Channel: contract.ChannelFHIR, ResourceType: "DocumentReference",
				Operation: "create", ConditionalCreate: conditional, IfMatch: true, StaleStatus: 412}
		case contract.AppointmentResched, contract.AppointmentCancel:
			return contract.Support{Intent: i, Supported: true, Channel: contract.ChannelFHIR, ResourceType: "Appointment",
				Operation: "update", IfMatch: true, StaleStatus: 412}
		case contract.ConditionUpsert:
			return contract.Support{Intent: i, Supported: true, Channel: contract.ChannelFHIR, ResourceType: "DocumentReference",
				Operation: "patch", IfMatch: true, StaleStatus: 412}
		case contract.ChargePost:
			return contract.Support{Intent: i, Supported: true, Channel: contract.ChannelHL7, Operation: "DFT^P03"}
		}
		return contract.Support{Intent: i, Reason: "Test EHR does not accept " + string(i) + "."}
	}
}

// testOptions are quick timings for tests.
func testOptions(st Store, targets map[string]Target) Options {
	return Options{Store: st, Targets: targets, BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond,
		SettleDelay: 20 * time.Millisecond, MaxAge: time.Hour, Lease: 20 * time.Second, PollInterval: 20 * time.Millisecond,
		Concurrency: 4}
}

func newOutbox(t testing.TB, opts Options) *Outbox {
	t.Helper()
	ob, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return ob
}

// run starts ob.Run and returns a func that stops it and waits.
func run(t testing.TB, ob *Outbox) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ob.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// docBody is a vendor DocumentReference for a patient.
func docBody(patientID, text string) []byte {
	return fmt.Appendf(nil, `{"resourceType":"DocumentReference","status":"current","type":{"text":"Progress note"},`+
		`"subject":{"reference":"Patient/%s"},"content":[{"attachment":{"contentType":"text/plain","data":%q}}]}`,
		patientID, text)
}

func noteRequest(key, patientID, text string) Request {
	return Request{Practice: practice, App: "notes", IdempotencyKey: key, Kind: contract.NoteCreate,
		PatientRef: "Patient/" + patientID, Body: docBody(patientID, text)}
}

func submit(t testing.TB, ob *Outbox, r Request) Intent {
	t.Helper()
	in, _, err := ob.Submit(context.Background(), r)
	if err != nil {
		t.Fatalf("Submit %s: %v", r.IdempotencyKey, err)
	}
	return in
}

// waitFinal waits until every intent is final and returns them.
func waitFinal(t testing.TB, st Store, timeout time.Duration, ids ...string) map[string]Intent {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := map[string]Intent{}
		open := 0
		for _, id := range ids {
			in, err := st.GetIntent(context.Background(), practice, id)
			if err != nil {
				t.Fatal(err)
			}
			out[id] = in
			if store.IntentOpen(in.Status) {
				open++
			}
		}
		if open == 0 {
			return out
		}
		if time.Now().After(deadline) {
			var st []string
			for id, in := range out {
				if store.IntentOpen(in.Status) {
					st = append(st, id+"="+in.Status+" ("+in.LastError+")")
				}
			}
			sort.Strings(st)
			if len(st) > 5 {
				st = st[:5]
			}
			t.Fatalf("%d of %d intents still open after %s: %v", open, len(ids), timeout, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitAllFinal waits until no intent of the practice is open.
func waitAllFinal(t testing.TB, st Store, timeout time.Duration) map[string]int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n, err := st.CountIntents(context.Background(), practice)
		if err != nil {
			t.Fatal(err)
		}
		if n[store.IntentAccepted]+n[store.IntentSending]+n[store.IntentSent] == 0 {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("intents still open after %s: %v", timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recordsByIntent counts the records of a type at the simulator per
// intent identifier value.
func recordsByIntent(t testing.TB, bodies map[string][]byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for id, b := range bodies {
		var r struct {
			Identifier []struct{ System, Value string } `json:"identifier"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("record %s: %v", id, err)
		}
		for _, x := range r.Identifier {
			if x.System == IdentifierSystem {
				out[x.Value] = append(out[x.Value], id)
			}
		}
	}
	return out
}

// patientIDs returns n patient ids of the simulator, sorted.
func patientIDs(t testing.TB, s *sim.Sim, n int) []string {
	t.Helper()
	var ids []string
	for id := range s.Current(practice, "Patient") {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if len(ids) < n {
		t.Fatalf("the simulator has %d patients, want %d", len(ids), n)
	}
	return ids[:n]
}

// ---- a fault-injecting proxy in front of an EHR ----

// action is what the proxy does with one request.
type action int

const (
	pass           action = iota
	fail500               // answer 500 without forwarding
	fail503               // answer 503 (Retry-After: 0) without forwarding
	fail429               // answer 429 without forwarding (no Retry-After, like eCW)
	dropBefore            // close the connection without forwarding
	commitThenDrop        // forward, let the EHR commit, then close without answering
	commitThenHold        // forward, let the EHR commit, then answer nothing until hold closes or the client gives up
)

// proxy forwards to an EHR and injects faults chosen per request by decide.
type proxy struct {
	target string // scheme://host of the EHR
	srv    *httptest.Server
	client *http.Client

	mu     sync.Mutex
	decide func(r *http.Request, body []byte) action
	// alter, when set, may rewrite a forwarded answer's body.
	alter func(r *http.Request, body []byte) []byte
	// seen records every request the proxy got: method, path and body.
	seen []seenRequest
	// hold is what commitThenHold waits for (set before use).
	hold chan struct{}
}

type seenRequest struct {
	Method, Path string
	Body         []byte
	Action       action
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	p := &proxy{target: strings.TrimRight(target, "/"), client: &http.Client{Timeout: 10 * time.Second}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

// url returns the proxy URL for a path of the target (e.g. the FHIR base path).
func (p *proxy) url(path string) string { return p.srv.URL + path }

func (p *proxy) set(decide func(r *http.Request, body []byte) action, alter func(r *http.Request, body []byte) []byte) {
	p.mu.Lock()
	p.decide, p.alter = decide, alter
	p.mu.Unlock()
}

func (p *proxy) requests() []seenRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]seenRequest(nil), p.seen...)
}

func (p *proxy) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	decide, alter := p.decide, p.alter
	act := pass
	if decide != nil {
		act = decide(r, body)
	}
	p.seen = append(p.seen, seenRequest{Method: r.Method, Path: r.URL.Path, Body: body, Action: act})
	p.mu.Unlock()
	switch act {
	case fail500:
		http.Error(w, "injected", http.StatusInternalServerError)
		return
	case fail503:
		w.Header().Set("Retry-After", "0")
		http.Error(w, "injected", http.StatusServiceUnavailable)
		return
	case fail429:
		http.Error(w, "injected", http.StatusTooManyRequests)
		return
	case dropBefore:
		hangUp(w)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := p.client.Do(req)
	if err != nil {
		http.Error(w, "upstream failed", http.StatusBadGateway)
		return
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if act == commitThenDrop {
		hangUp(w) // the EHR committed; the answer is lost
		return
	}
	if act == commitThenHold {
		p.mu.Lock()
		hold := p.hold
		p.mu.Unlock()
		select {
		case <-hold:
		case <-r.Context().Done():
		}
		hangUp(w)
		return
	}
	if alter != nil {
		rb = alter(r, rb)
	}
	for k, vs := range resp.Header {
		if k == "Content-Length" {
			continue
		}
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(rb)
}

func hangUp(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("proxy: no hijacker")
	}
	conn, _, err := hj.Hijack()
	if err == nil {
		conn.Close()
	}
}

// isCreate reports a POST to a type endpoint.
func isCreate(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.Count(strings.Trim(r.URL.Path, "/"), "/") >= 1 && !strings.Contains(r.URL.Path, "_search")
}

// anyAppointment returns the n-th appointment (by id) of the simulator and its body.
func anyAppointment(t testing.TB, s *sim.Sim, n int) (string, []byte) {
	t.Helper()
	all := s.Current(practice, "Appointment")
	var ids []string
	for id := range all {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if len(ids) <= n {
		t.Fatalf("the simulator has %d appointments", len(ids))
	}
	return ids[n], all[ids[n]]
}

// simBasePath is the path of the simulator tenant's FHIR base.
func simBasePath(s *sim.Sim) string {
	return strings.TrimPrefix(s.BaseURL(practice), s.Root())
}
