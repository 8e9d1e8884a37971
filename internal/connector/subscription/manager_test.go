package subscription

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/connector/fhirrest"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/fault"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/smart"
	"github.com/mediflow/mediflow/internal/smart/authserver"
)

const (
	tenant   = "valley"
	clientID = "mediflow-test"
)

// memSink records what a Manager hands over.
type memSink struct {
	mu        sync.Mutex
	raw       int
	delivered map[string]int // "Type/id/version" → times handed over
	resources []Resource
	catchUps  []catchUp
	failRaw   atomic.Bool
}

type catchUp struct {
	types []string
	since time.Time
}

func newMemSink() *memSink { return &memSink{delivered: map[string]int{}} }

func (s *memSink) Notification(_ context.Context, practice, connection string, body []byte) error {
	if s.failRaw.Load() {
		return errors.New("disk full")
	}
	if practice != tenant || connection != "main" || len(body) == 0 {
		return fmt.Errorf("unexpected notification for %s/%s", practice, connection)
	}
	s.mu.Lock()
	s.raw++
	s.mu.Unlock()
	return nil
}

func (s *memSink) Resources(_ context.Context, _, _ string, rs []Resource) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rs {
		s.delivered[r.Type+"/"+r.ID+"/"+r.VersionID]++
		s.resources = append(s.resources, r)
	}
	return nil
}

func (s *memSink) CatchUp(_ context.Context, _, _ string, types []string, since time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.catchUps = append(s.catchUps, catchUp{types: types, since: since})
	return nil
}

func (s *memSink) count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered[key]
}

func (s *memSink) snapshot() (map[string]int, []catchUp) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := make(map[string]int, len(s.delivered))
	for k, v := range s.delivered {
		d[k] = v
	}
	return d, append([]catchUp(nil), s.catchUps...)
}

// env is a simulator tenant, a hooks server and what Managers share.
type env struct {
	t       *testing.T
	sim     *sim.Sim
	hooks   *httptest.Server
	handler atomic.Pointer[http.Handler]
	sink    *memSink
	state   *MemoryStateStore
	client  *fhirrest.Client
	tokens  *smart.Client
}

func newEnv(t *testing.T, opts sim.SubscriptionOptions) *env {
	t.Helper()
	return newFlavorEnv(t, opts, "")
}

// newFlavorEnv is newEnv with the tenant on a vendor flavour ("": generic).
func newFlavorEnv(t *testing.T, opts sim.SubscriptionOptions, flavor string) *env {
	t.Helper()
	key, err := smart.GenerateKey(smart.AlgES384)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := smart.PublicJWKS(key)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{
		ID: tenant, Flavor: flavor, Seed: 11, Data: &gen.Options{Patients: 25, PastDays: 10, FutureDays: 10},
		Clients: []authserver.Client{{ID: clientID, JWKS: jwks, Scopes: []string{"system/*.rs", "system/Subscription.crds"}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	s.SetRoot(srv.URL)
	t.Cleanup(s.StopSubscriptions)
	if err := s.SetSubscriptionOptions(tenant, opts); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, sim: s, sink: newMemSink(), state: &MemoryStateStore{}}
	e.hooks = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hooks/fhir/"+tenant+"/main" {
			http.NotFound(w, r)
			return
		}
		h := e.handler.Load()
		if h == nil {
			http.Error(w, "engine down", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(w, r)
	}))
	t.Cleanup(e.hooks.Close)
	hc := &http.Client{Timeout: 10 * time.Second}
	e.tokens, err = smart.NewClient(smart.ClientConfig{
		ClientID: clientID, TokenURL: s.TokenURL(tenant), Key: key, HTTPClient: hc,
		Scopes: []string{"system/Appointment.rs", "system/Patient.rs", "system/Encounter.rs", "system/Subscription.crds"},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.client, err = fhirrest.New(fhirrest.Config{BaseURL: s.BaseURL(tenant), HTTPClient: hc, Tokens: e.tokens})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) config(mod func(*Config)) Config {
	c := Config{
		Practice: tenant, Connection: "main", Client: e.client, Tokens: e.tokens,
		Topic: sim.TopicAppointmentChange, Types: []string{"Appointment"},
		Payload: PayloadFullResource, HeartbeatPeriod: time.Second,
		Endpoint: e.hooks.URL + "/hooks/fhir/" + tenant + "/main", Secret: "s3cret",
		Sink: e.sink, State: e.state, HandshakeTimeout: 300 * time.Millisecond, RetryWait: 20 * time.Millisecond,
	}
	if mod != nil {
		mod(&c)
	}
	return c
}

// start creates a Manager, mounts it and runs it until stop (or the test's end).
func (e *env) start(mod func(*Config)) (m *Manager, stop func()) {
	e.t.Helper()
	m, err := New(e.config(mod))
	if err != nil {
		e.t.Fatal(err)
	}
	var h http.Handler = m
	e.handler.Store(&h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				e.t.Errorf("Run returned %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	select {
	case <-m.Ready():
	case err := <-done:
		e.t.Fatalf("Run ended before ready: %v", err)
	case <-time.After(10 * time.Second):
		e.t.Fatal("manager not ready within 10s")
	}
	return m, stop
}

func (e *env) waitActive(id string) {
	e.t.Helper()
	waitFor(e.t, "subscription "+id+" active", func() bool {
		for _, s := range e.sim.Subscriptions(tenant) {
			if s.ID == id {
				return s.Status == "active"
			}
		}
		return false
	})
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// appointmentChanges makes at least n Appointment changes with the change
// generator and returns their "Appointment/id/version" keys.
func (e *env) appointmentChanges(n int) []string {
	e.t.Helper()
	var out []string
	for len(out) < n {
		cs, err := e.sim.Tick(tenant, 5)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, c := range cs {
			if c.ResourceType == "Appointment" {
				out = append(out, "Appointment/"+c.ID+"/"+strconv.Itoa(c.Version))
			}
		}
	}
	return out
}

// putAppointment creates an appointment through the simulator's write path.
func (e *env) putAppointment() string {
	e.t.Helper()
	_, id, v, err := e.sim.Put(tenant, []byte(`{"resourceType":"Appointment","status":"booked","participant":[{"status":"accepted"}]}`))
	if err != nil {
		e.t.Fatal(err)
	}
	return "Appointment/" + id + "/" + strconv.Itoa(v)
}

// assertExactlyOnce checks every key was handed over once and nothing else was.
func (e *env) assertExactlyOnce(keys []string) {
	e.t.Helper()
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	waitFor(e.t, fmt.Sprintf("%d changes at the sink", len(want)), func() bool {
		for k := range want {
			if e.sink.count(k) == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(50 * time.Millisecond) // late duplicates would land now
	got, _ := e.sink.snapshot()
	for k, n := range got {
		if !want[k] {
			e.t.Errorf("handed over %s, which is not one of the changes", k)
		}
		if n != 1 {
			e.t.Errorf("%s handed over %d times", k, n)
		}
	}
}

func TestFullResourceEndToEnd(t *testing.T) {
	e := newEnv(t, sim.SubscriptionOptions{})
	m, _ := e.start(nil)
	e.waitActive(m.SubscriptionID())
	keys := e.appointmentChanges(40)
	e.assertExactlyOnce(keys)
	st := m.Stats()
	if st.Gaps != 0 || st.CatchUps != 0 || st.Events != int64(len(keys)) {
		t.Errorf("stats %+v, want %d events and no gaps", st, len(keys))
	}
	saved, _, _ := e.state.LoadState(context.Background(), tenant, "main")
	if saved.SubscriptionID != m.SubscriptionID() || saved.LastEventNumber != int64(len(keys)) {
		t.Errorf("saved state %+v", saved)
	}
	if e.sink.raw < len(keys)+1 {
		t.Errorf("%d notifications stored raw, want at least %d", e.sink.raw, len(keys)+1)
	}
	// The resources are the versions the simulator wrote, byte for byte.
	for _, r := range e.sink.resources {
		if want := e.vread(r.Type, r.ID, r.VersionID); string(want) != string(r.Body) {
			t.Errorf("%s/%s v%s differs from the simulator's version", r.Type, r.ID, r.VersionID)
		}
	}
}

// vread reads one version from the simulator over HTTP.
func (e *env) vread(typ, id, vid string) []byte {
	e.t.Helper()
	tok, err := e.tokens.Token(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, e.sim.BaseURL(tenant)+"/"+typ+"/"+id+"/_history/"+vid, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		e.t.Fatalf("vread %s/%s/%s: %d", typ, id, vid, res.StatusCode)
	}
	return b
}

func TestIDOnlyEndToEnd(t *testing.T) {
	e := newEnv(t, sim.SubscriptionOptions{})
	m, _ := e.start(func(c *Config) { c.Payload = PayloadIDOnly })
	e.waitActive(m.SubscriptionID())
	var keys []string
	for range 10 {
		keys = append(keys, e.putAppointment())
		time.Sleep(2 * time.Millisecond)
	}
	e.assertExactlyOnce(keys)
	for _, r := range e.sink.resources {
		if cur := e.sim.Current(tenant, "Appointment")[r.ID]; string(cur) != string(r.Body) {
			t.Errorf("id-only read of %s does not match the simulator's", r.ID)
		}
	}
}

func TestEmptyPayloadAsksForCatchUp(t *testing.T) {
	e := newEnv(t, sim.SubscriptionOptions{})
	m, _ := e.start(func(c *Config) { c.Payload = PayloadEmpty })
	e.waitActive(m.SubscriptionID())
	var times []time.Time
	for range 3 {
		k := e.putAppointment()
		id := strings.Split(k, "/")[1]
		var h struct {
			Meta struct{ LastUpdated time.Time }
		}
		b, _ := e.sim.Get(tenant, "Appointment", id)
		_ = json.Unmarshal(b, &h)
		times = append(times, h.Meta.LastUpdated)
		waitFor(t, "a catch-up", func() bool { _, cu := e.sink.snapshot(); return len(cu) == len(times) })
	}
	got, cus := e.sink.snapshot()
	if len(got) != 0 {
		t.Errorf("empty payloads handed over resources: %v", got)
	}
	for i, cu := range cus {
		if len(cu.types) != 1 || cu.types[0] != "Appointment" {
			t.Errorf("catch-up %d types %v", i, cu.types)
		}
		if cu.since.After(times[i]) {
			t.Errorf("catch-up %d since %s is after the change at %s", i, cu.since, times[i])
		}
		if i > 0 && cu.since.Before(times[i-1]) {
			t.Errorf("catch-up %d since %s re-polls before the previous change at %s", i, cu.since, times[i-1])
		}
	}
}

func TestDroppedNotificationsNothingMissed(t *testing.T) {
	e := newEnv(t, sim.SubscriptionOptions{TimeUnit: 20 * time.Millisecond})
	if err := e.sim.SetFaults(tenant, []fault.Fault{{Endpoint: fault.EndpointSubscriptionNotify, Kind: fault.Drop, Rate: 0.3}}); err != nil {
		t.Fatal(err)
	}
	m, _ := e.start(nil)
	var keys []string
	for range 15 {
		keys = append(keys, e.appointmentChanges(10)...)
		time.Sleep(5 * time.Millisecond)
	}
	e.assertExactlyOnce(keys)
	st := m.Stats()
	if st.Gaps == 0 || st.EventsRecovered == 0 || st.CatchUps != 0 {
		t.Errorf("stats %+v: want gaps recovered through $events, no catch-up", st)
	}
	if f := e.sim.Faults(tenant); f[0].Fired == 0 {
		t.Errorf("no notification was dropped: %+v", f)
	}
}

func TestDroppedWithoutEventsOperationCatchesUp(t *testing.T) {
	e := newEnv(t, sim.SubscriptionOptions{TimeUnit: 20 * time.Millisecond, NoEventsOperation: true})
	if err := e.sim.SetFaults(tenant, []fault.Fault{{Endpoint: fault.EndpointSubscriptionNotify, Kind: fault.Drop, Every: 4}}); err != nil {
		t.Fatal(err)
	}
	m, _ := e.start(func(c *Config) { c.Payload = PayloadIDOnly })
	type change struct {
		key string
		at  time.Time
	}
	var changes []change
	for range 12 {
		k := e.putAppointment()
		b, _ := e.sim.Get(tenant, "Appointment", strings.Split(k, "/")[1])
		var h struct {
			Meta struct{ LastUpdated time.Time }
		}
		_ = json.Unmarshal(b, &h)
		changes = append(changes, change{k, h.Meta.LastUpdated})
		time.Sleep(3 * time.Millisecond)
	}
	waitFor(t, "every event handled", func() bool {
		subs := e.sim.Subscriptions(tenant)
		st, _, _ := e.state.LoadState(context.Background(), tenant, "main")
		return len(subs) == 1 && st.LastEventNumber == subs[0].Events && subs[0].Events == int64(len(changes))
	})
	got, cus := e.sink.snapshot()
	if len(cus) == 0 {
		t.Fatal("notifications were lost and $events is unavailable, but no catch-up was asked for")
	}
	for _, c := range changes {
		if got[c.key] == 1 {
			continue
		}
		covered := false
		for _, cu := range cus {
			covered = covered || !cu.since.After(c.at)
		}
		if got[c.key] > 1 || !covered {
			t.Errorf("%s: handed over %d times, covered by a catch-up: %v", c.key, got[c.key], covered)
		}
	}
	if st := m.Stats(); st.Gaps == 0 {
		t.Errorf("stats %+v: no gap detected", st)
	}
}

func TestHeartbeatTimeoutRecovers(t *testing.T) {
	e := newEnv(t, sim.SubscriptionOptions{TimeUnit: 20 * time.Millisecond})
	// The EHR is told 1 s (heartbeats every 20 ms here, all lost below);
	// the Manager expects one within 100 ms + 50 ms.
	m, _ := e.start(func(c *Config) {
		c.HeartbeatPeriod, c.HeartbeatGrace, c.CheckInterval = 100*time.Millisecond, 50*time.Millisecond, 10*time.Millisecond
	})
	e.waitActive(m.SubscriptionID())
	if err := e.sim.SetFaults(tenant, []fault.Fault{{Endpoint: fault.EndpointSubscriptionNotify, Kind: fault.Drop}}); err != nil {
		t.Fatal(err)
	}
	key := e.putAppointment()
	e.assertExactlyOnce([]string{key})
	st := m.Stats()
	if st.HeartbeatTimeouts == 0 || st.EventsRecovered != 1 {
		t.Errorf("stats %+v: want a heartbeat timeout and the event recovered through $events", st)
	}
}

func TestLostHandshakeIsConfirmedByReading(t *testing.T) {
	e := newEnv(t, sim.SubscriptionOptions{})
	if err := e.sim.SetFaults(tenant, []fault.Fault{{Endpoint: fault.EndpointSubscriptionNotify, Kind: fault.Drop, Limit: 1}}); err != nil {
		t.Fatal(err)
	}
	m, _ := e.start(func(c *Config) { c.HandshakeTimeout = 50 * time.Millisecond })
	e.waitActive(m.SubscriptionID())
	time.Sleep(150 * time.Millisecond) // past the handshake timeout: the Manager reads the status
	keys := e.appointmentChanges(3)
	e.assertExactlyOnce(keys)
	if st := m.Stats(); st.Recreated != 0 || len(e.sim.Subscriptions(tenant)) != 1 {
		t.Errorf("a lost handshake replaced the subscription: %+v", st)
	}
}

func TestRestartResumesFromSavedState(t *testing.T) {
	e := newEnv(t, sim.SubscriptionOptions{TimeUnit: 20 * time.Millisecond})
	a, stopA := e.start(nil)
	e.waitActive(a.SubscriptionID())
	keys := e.appointmentChanges(10)
	e.assertExactlyOnce(keys)
	stopA()

	// While the engine is restarting, notifications are lost.
	if err := e.sim.SetFaults(tenant, []fault.Fault{{Endpoint: fault.EndpointSubscriptionNotify, Kind: fault.Drop}}); err != nil {
		t.Fatal(err)
	}
	keys = append(keys, e.appointmentChanges(10)...)
	if err := e.sim.SetFaults(tenant, nil); err != nil {
		t.Fatal(err)
	}
	b, _ := e.start(nil)
	if b.SubscriptionID() != a.SubscriptionID() {
		t.Errorf("restart made subscription %s, want to reuse %s", b.SubscriptionID(), a.SubscriptionID())
	}
	keys = append(keys, e.appointmentChanges(10)...)
	e.assertExactlyOnce(keys)
	if n := len(e.sim.Subscriptions(tenant)); n != 1 {
		t.Errorf("%d subscriptions on the EHR, want 1", n)
	}
	if st := b.Stats(); st.EventsRecovered == 0 || st.CatchUps != 0 {
		t.Errorf("restarted stats %+v: want the missed events through $events", st)
	}
}

func TestRestartAfterSubscriptionFailedReplacesAndCatchesUp(t *testing.T) {
	e := newEnv(t, sim.SubscriptionOptions{TimeUnit: 20 * time.Millisecond})
	a, stopA := e.start(nil)
	old := a.SubscriptionID()
	e.waitActive(old)
	stopA()
	e.handler.Store(nil) // the endpoint answers 503: the EHR gives up on the subscription
	missed := e.putAppointment()
	var missedAt time.Time
	b0, _ := e.sim.Get(tenant, "Appointment", strings.Split(missed, "/")[1])
	var h struct {
		Meta struct{ LastUpdated time.Time }
	}
	_ = json.Unmarshal(b0, &h)
	missedAt = h.Meta.LastUpdated
	waitFor(t, "the old subscription in error", func() bool {
		s := e.sim.Subscriptions(tenant)
		return len(s) == 1 && s[0].Status == "error"
	})

	b, _ := e.start(nil)
	if b.SubscriptionID() == old || b.SubscriptionID() == "" {
		t.Fatalf("restart kept subscription %q in error", b.SubscriptionID())
	}
	e.waitActive(b.SubscriptionID())
	if s := e.sim.Subscriptions(tenant); len(s) != 1 || s[0].ID != b.SubscriptionID() {
		t.Errorf("subscriptions on the EHR: %+v (the old one should be deleted)", s)
	}
	_, cus := e.sink.snapshot()
	if len(cus) != 1 || cus[0].since.After(missedAt) {
		t.Errorf("catch-ups %+v, want one since at most %s", cus, missedAt)
	}
	keys := e.appointmentChanges(5)
	e.assertExactlyOnce(keys)
	if st := b.Stats(); st.Recreated != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestHandlerChecksNotifications(t *testing.T) {
	e := newEnv(t, sim.SubscriptionOptions{})
	m, _ := e.start(nil)
	e.waitActive(m.SubscriptionID())
	base := e.sim.BaseURL(tenant)
	note := func(subRef string) string {
		return `{"resourceType":"Bundle","type":"history","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Parameters","parameter":[` +
			`{"name":"subscription","valueReference":{"reference":"` + subRef + `"}},{"name":"status","valueCode":"active"},` +
			`{"name":"type","valueCode":"heartbeat"},{"name":"events-since-subscription-start","valueString":"0"}]}}]}`
	}
	post := func(body, auth string) int {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		m.ServeHTTP(w, req)
		return w.Code
	}
	good := "Bearer s3cret"
	for name, tc := range map[string]struct {
		body, auth string
		want       int
	}{
		"ours":          {note(base + "/Subscription/" + m.SubscriptionID()), good, http.StatusOK},
		"ours relative": {note("Subscription/" + m.SubscriptionID()), good, http.StatusOK},
		"unknown id":    {note(base + "/Subscription/sub-unknown"), good, http.StatusNotFound},
		"other server":  {note("https://elsewhere.example/fhir/Subscription/" + m.SubscriptionID()), good, http.StatusNotFound},
		"wrong secret":  {note(base + "/Subscription/" + m.SubscriptionID()), "Bearer nope", http.StatusUnauthorized},
		"no secret":     {note(base + "/Subscription/" + m.SubscriptionID()), "", http.StatusUnauthorized},
		"not json":      {"<Bundle/>", good, http.StatusBadRequest},
		"no status":     {`{"resourceType":"Bundle","type":"history","entry":[]}`, good, http.StatusBadRequest},
	} {
		if got := post(tc.body, tc.auth); got != tc.want {
			t.Errorf("%s: %d, want %d", name, got, tc.want)
		}
	}
	w := httptest.NewRecorder()
	m.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", w.Code)
	}
	e.sink.failRaw.Store(true)
	if got := post(note(base+"/Subscription/"+m.SubscriptionID()), good); got != http.StatusServiceUnavailable {
		t.Errorf("raw store failing: %d, want 503", got)
	}
}

func TestParseNotification(t *testing.T) {
	const base = "https://ehr.example/fhir"
	body := `{"resourceType":"Bundle","type":"history","entry":[
	 {"fullUrl":"urn:uuid:a","resource":{"resourceType":"Parameters","parameter":[
	   {"name":"subscription","valueReference":{"reference":"https://ehr.example/fhir/Subscription/admission"}},
	   {"name":"topic","valueCanonical":"http://example.org/topic/admission"},
	   {"name":"status","valueCode":"active"},
	   {"name":"type","valueCode":"event-notification"},
	   {"name":"events-since-subscription-start","valueString":"12"},
	   {"name":"notification-event","part":[{"name":"event-number","valueString":"12"},
	     {"name":"timestamp","valueInstant":"2026-05-29T11:44:13.188-05:00"},
	     {"name":"focus","valueReference":{"reference":"https://ehr.example/fhir/Encounter/e1/_history/3"}}]},
	   {"name":"notification-event","part":[{"name":"event-number","valueString":"11"},
	     {"name":"focus","valueReference":{"reference":"https://other.example/fhir/Encounter/x"}}]}]},
	  "request":{"method":"GET","url":"https://ehr.example/fhir/Subscription/admission/$status"},"response":{"status":"200"}},
	 {"fullUrl":"https://ehr.example/fhir/Encounter/e1","resource":{"resourceType":"Encounter","id":"e1","meta":{"versionId":"3"}},
	  "request":{"method":"PUT","url":"Encounter/e1"},"response":{"status":"200"}}]}`
	n, err := parseNotification([]byte(body), base)
	if err != nil {
		t.Fatal(err)
	}
	if n.typ != TypeEventNotification || n.status != "active" || n.since != 12 || subscriptionID(n.subRef, base) != "admission" {
		t.Errorf("status %+v", n)
	}
	if len(n.events) != 2 || n.events[0].num != 11 || n.events[0].focus != "" || n.events[1].focus != "Encounter/e1" || n.events[1].at.IsZero() {
		t.Errorf("events %+v", n.events)
	}
	if len(n.entries["Encounter/e1"]) != 1 {
		t.Errorf("entries %v", n.entries)
	}
	for _, bad := range []string{
		`{"resourceType":"Patient"}`,
		`{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"Parameters","parameter":[{"name":"type","valueCode":"heartbeat"},{"name":"events-since-subscription-start","valueString":"x"}]}}]}`,
		`{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"Parameters","parameter":[{"name":"status","valueCode":"active"}]}}]}`,
		`{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"Parameters","parameter":[{"name":"type","valueCode":"event-notification"},{"name":"notification-event","part":[]}]}}]}`,
	} {
		if _, err := parseNotification([]byte(bad), base); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestNewChecksConfig(t *testing.T) {
	c, _ := fhirrest.New(fhirrest.Config{BaseURL: "http://127.0.0.1:1/fhir"})
	ok := Config{Practice: "p", Connection: "c", Client: c, Topic: "t", Types: []string{"Patient"},
		Endpoint: "http://127.0.0.1:2/hook", Sink: newMemSink(), State: &MemoryStateStore{}}
	if _, err := New(ok); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"no client":   func(c *Config) { c.Client = nil },
		"no topic":    func(c *Config) { c.Topic = "" },
		"no types":    func(c *Config) { c.Types = nil },
		"bad url":     func(c *Config) { c.Endpoint = "/hook" },
		"bad payload": func(c *Config) { c.Payload = "all" },
		"no sink":     func(c *Config) { c.Sink = nil },
	} {
		c := ok
		mod(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestIDOnlyHandsOverEachVersionOnce(t *testing.T) {
	e := newEnv(t, sim.SubscriptionOptions{})
	m, _ := e.start(func(c *Config) { c.Payload = PayloadIDOnly })
	e.waitActive(m.SubscriptionID())
	first := e.putAppointment()
	e.assertExactlyOnce([]string{first})
	id := strings.Split(first, "/")[1]
	// Reads of the appointment are slow, so the read for the first update
	// returns the second one: both events name the same current version.
	if err := e.sim.SetFaults(tenant, []fault.Fault{{Endpoint: "Appointment", Kind: fault.Latency, Latency: fault.Duration(150 * time.Millisecond)}}); err != nil {
		t.Fatal(err)
	}
	update := func() string {
		body := `{"resourceType":"Appointment","id":"` + id + `","status":"cancelled","participant":[{"status":"accepted"}]}`
		_, _, v, err := e.sim.Put(tenant, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return "Appointment/" + id + "/" + strconv.Itoa(v)
	}
	update()
	waitFor(t, "the read of the first update", func() bool { return e.sim.Faults(tenant)[0].Seen >= 1 })
	last := update()
	waitFor(t, "three events handled", func() bool { return m.Stats().Events == 3 })
	e.assertExactlyOnce([]string{first, last})
	if st := m.Stats(); st.Duplicates == 0 || st.Events != 3 {
		t.Errorf("stats %+v: want 3 events and the repeated version skipped", st)
	}
}
