package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/sim/fault"
)

// notice is one received notification, parsed.
type notice struct {
	typ     string
	status  string
	subID   string
	since   int64
	events  []noticeEvent
	entries []fhir.BundleEntry // after the status entry
	header  http.Header
}

type noticeEvent struct {
	num   int64
	focus string
	at    string
}

type paramJSON struct {
	Name           string                      `json:"name"`
	ValueString    string                      `json:"valueString"`
	ValueCode      string                      `json:"valueCode"`
	ValueInstant   string                      `json:"valueInstant"`
	ValueReference *struct{ Reference string } `json:"valueReference"`
	Part           []paramJSON                 `json:"part"`
}

func parseStatus(t testing.TB, raw json.RawMessage) notice {
	t.Helper()
	var p struct {
		ResourceType string      `json:"resourceType"`
		Parameter    []paramJSON `json:"parameter"`
	}
	if err := json.Unmarshal(raw, &p); err != nil || p.ResourceType != "Parameters" {
		t.Fatalf("status entry is not a Parameters: %v %.200s", err, raw)
	}
	var n notice
	for _, x := range p.Parameter {
		switch x.Name {
		case "type":
			n.typ = x.ValueCode
		case "status":
			n.status = x.ValueCode
		case "subscription":
			ref := x.ValueReference.Reference
			n.subID = ref[strings.LastIndex(ref, "/")+1:]
		case "events-since-subscription-start":
			n.since, _ = strconv.ParseInt(x.ValueString, 10, 64)
		case "notification-event":
			var e noticeEvent
			for _, pt := range x.Part {
				switch pt.Name {
				case "event-number":
					e.num, _ = strconv.ParseInt(pt.ValueString, 10, 64)
				case "focus":
					e.focus = pt.ValueReference.Reference
				case "timestamp":
					e.at = pt.ValueInstant
				}
			}
			n.events = append(n.events, e)
		}
	}
	return n
}

func parseNotice(t testing.TB, body []byte) notice {
	t.Helper()
	b := bundleOf(t, body)
	if b.Type != "history" || len(b.Entry) == 0 {
		t.Fatalf("notification bundle type %q with %d entries", b.Type, len(b.Entry))
	}
	n := parseStatus(t, b.Entry[0].Resource)
	n.entries = b.Entry[1:]
	return n
}

// receiver is a notification endpoint that records what arrives.
type receiver struct {
	t      testing.TB
	srv    *httptest.Server
	status atomic.Int32 // answer status (default 200)
	mu     sync.Mutex
	got    []notice
	ch     chan notice
}

func newReceiver(t testing.TB) *receiver {
	rc := &receiver{t: t, ch: make(chan notice, 10000)}
	rc.status.Store(http.StatusOK)
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if st := int(rc.status.Load()); st != http.StatusOK {
			w.WriteHeader(st)
			return
		}
		n := parseNotice(t, body)
		n.header = r.Header.Clone()
		rc.mu.Lock()
		rc.got = append(rc.got, n)
		rc.mu.Unlock()
		rc.ch <- n
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// next waits for the next notification of type typ, skipping others.
func (rc *receiver) next(typ string) notice {
	rc.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case n := <-rc.ch:
			if n.typ == typ {
				return n
			}
		case <-deadline:
			rc.t.Fatalf("no %s notification within 10s", typ)
		}
	}
}

func subscriptionBody(topic, endpoint, content string, heartbeat int, filters ...string) []byte {
	var crit []map[string]any
	for _, f := range filters {
		crit = append(crit, map[string]any{"url": extFilterCriteria, "valueString": f})
	}
	ch := map[string]any{
		"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
		"_payload": map[string]any{"extension": []any{map[string]any{"url": extPayloadContent, "valueCode": content}}},
		"header":   []string{"Authorization: Bearer hook-secret"},
	}
	if heartbeat > 0 {
		ch["extension"] = []any{map[string]any{"url": extHeartbeatPeriod, "valueUnsignedInt": heartbeat}}
	}
	sub := map[string]any{
		"resourceType": "Subscription", "status": "requested", "reason": "test", "criteria": topic, "channel": ch,
	}
	if len(crit) > 0 {
		sub["_criteria"] = map[string]any{"extension": crit}
	}
	b, _ := json.Marshal(sub)
	return b
}

type subFixture struct {
	*fixture
	tok  string
	base string
}

func newSubFixture(t *testing.T, opts SubscriptionOptions) *subFixture {
	f := newFixture(t, Config{Tenants: []TenantConfig{{ID: "a", Seed: 3, Data: smallData(20)}}})
	t.Cleanup(f.sim.StopSubscriptions)
	if err := f.sim.SetSubscriptionOptions("a", opts); err != nil {
		t.Fatal(err)
	}
	return &subFixture{fixture: f, tok: f.token("a"), base: f.sim.BaseURL("a")}
}

func (f *subFixture) create(body []byte) (id string, r resp) {
	f.t.Helper()
	r = f.do(http.MethodPost, f.base+"/Subscription", f.tok, body, nil)
	if r.status != http.StatusCreated {
		return "", r
	}
	var s struct{ ID, Status string }
	if err := json.Unmarshal(r.body, &s); err != nil {
		f.t.Fatal(err)
	}
	if s.Status != "requested" {
		f.t.Errorf("created Subscription status %q, want requested", s.Status)
	}
	return s.ID, r
}

func (f *subFixture) status(id string) notice {
	f.t.Helper()
	r := f.get(f.base+"/Subscription/"+id+"/$status", f.tok)
	if r.status != http.StatusOK {
		f.t.Fatalf("$status: %d %.300s", r.status, r.body)
	}
	b := bundleOf(f.t, r.body)
	if b.Type != "searchset" || len(b.Entry) != 1 {
		f.t.Fatalf("$status bundle %q with %d entries", b.Type, len(b.Entry))
	}
	return parseStatus(f.t, b.Entry[0].Resource)
}

// appointmentChanges makes changes until at least n Appointment versions
// were written; it returns them in order.
func (f *subFixture) appointmentChanges(n int) []Change {
	f.t.Helper()
	var out []Change
	for len(out) < n {
		cs, err := f.sim.Tick("a", 10)
		if err != nil {
			f.t.Fatal(err)
		}
		for _, c := range cs {
			if c.ResourceType == "Appointment" {
				out = append(out, c)
			}
		}
	}
	return out
}

func TestSubscriptionHandshakeAndFullResourceEvents(t *testing.T) {
	f := newSubFixture(t, SubscriptionOptions{})
	rc := newReceiver(t)
	id, r := f.create(subscriptionBody(TopicAppointmentChange, rc.srv.URL, ContentFullResource, 0))
	if id == "" {
		t.Fatalf("create: %d %.300s", r.status, r.body)
	}
	if loc := r.header.Get("Location"); !strings.Contains(loc, "/Subscription/"+id) {
		t.Errorf("Location %q", loc)
	}
	hs := rc.next("handshake")
	if hs.subID != id || hs.since != 0 || len(hs.events) != 0 {
		t.Errorf("handshake %+v", hs)
	}
	if got := hs.header.Get("Authorization"); got != "Bearer hook-secret" {
		t.Errorf("channel.header not sent: Authorization %q", got)
	}
	waitFor(t, func() bool { return f.status(id).status == "active" })
	var s struct{ Status string }
	_ = json.Unmarshal(f.get(f.base+"/Subscription/"+id, f.tok).body, &s)
	if s.Status != "active" {
		t.Errorf("read status %q, want active", s.Status)
	}

	changes := f.appointmentChanges(25)
	for i, c := range changes {
		n := rc.next("event-notification")
		if len(n.events) != 1 || n.events[0].num != int64(i+1) || n.since != int64(i+1) {
			t.Fatalf("notification %d: events %+v since %d", i+1, n.events, n.since)
		}
		if want := f.base + "/Appointment/" + c.ID; n.events[0].focus != want {
			t.Fatalf("focus %q, want %q", n.events[0].focus, want)
		}
		if len(n.entries) != 1 {
			t.Fatalf("full-resource notification has %d resource entries", len(n.entries))
		}
		h, err := fhir.ParseHeader(n.entries[0].Resource)
		if err != nil || h.ID != c.ID || h.VersionID != strconv.Itoa(c.Version) {
			t.Fatalf("entry resource %+v (err %v), want %s v%d", h, err, c.ID, c.Version)
		}
		method := n.entries[0].Request.Method
		if (c.Created && method != "POST") || (!c.Created && method != "PUT") {
			t.Errorf("change %+v sent with request method %s", c, method)
		}
	}
	if st := f.status(id); st.since != int64(len(changes)) || st.typ != "query-status" {
		t.Errorf("$status %+v, want %d events", st, len(changes))
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSubscriptionPayloadModes(t *testing.T) {
	f := newSubFixture(t, SubscriptionOptions{})
	for _, content := range []string{ContentIDOnly, ContentEmpty} {
		t.Run(content, func(t *testing.T) {
			rc := newReceiver(t)
			id, r := f.create(subscriptionBody(TopicPatientChange, rc.srv.URL, content, 0))
			if id == "" {
				t.Fatalf("create: %d %.300s", r.status, r.body)
			}
			rc.next("handshake")
			body := []byte(`{"resourceType":"Patient","name":[{"family":"Doe","given":["Jo"]}],"gender":"female"}`)
			_, pid, _, err := f.sim.Put("a", body)
			if err != nil {
				t.Fatal(err)
			}
			n := rc.next("event-notification")
			if len(n.events) != 1 || n.events[0].num != 1 {
				t.Fatalf("events %+v", n.events)
			}
			switch content {
			case ContentIDOnly:
				if n.events[0].focus != f.base+"/Patient/"+pid {
					t.Errorf("focus %q", n.events[0].focus)
				}
				if len(n.entries) != 1 || len(n.entries[0].Resource) != 0 || n.entries[0].FullURL != f.base+"/Patient/"+pid {
					t.Errorf("id-only entries %+v", n.entries)
				}
			case ContentEmpty:
				if n.events[0].focus != "" || len(n.entries) != 0 {
					t.Errorf("empty payload carries focus %q and %d entries", n.events[0].focus, len(n.entries))
				}
				if n.events[0].at == "" {
					t.Error("no event timestamp")
				}
			}
		})
	}
}

func TestSubscriptionFilterOnPatient(t *testing.T) {
	f := newSubFixture(t, SubscriptionOptions{})
	rc := newReceiver(t)
	pv, _ := f.sim.tenants["a"].store.Nth("Patient", 0)
	id, r := f.create(subscriptionBody(TopicAppointmentChange, rc.srv.URL, ContentIDOnly, 0, "Appointment?patient=Patient/"+pv.ID))
	if id == "" {
		t.Fatalf("create: %d %.300s", r.status, r.body)
	}
	rc.next("handshake")
	changes := f.appointmentChanges(60)
	var want []string
	for _, c := range changes {
		b, _ := f.sim.Get("a", "Appointment", c.ID)
		if v, ok := f.sim.tenants["a"].store.GetVersion("Appointment", c.ID, c.Version); ok {
			b = v.Body
		}
		if strings.Contains(string(b), `"Patient/`+pv.ID+`"`) {
			want = append(want, c.ID)
		}
	}
	// One more change for the patient so there is at least one match.
	appt := `{"resourceType":"Appointment","status":"booked","participant":[{"actor":{"reference":"Patient/` + pv.ID + `"},"status":"accepted"}]}`
	_, aid, _, err := f.sim.Put("a", []byte(appt))
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, aid)
	for i, w := range want {
		n := rc.next("event-notification")
		if n.events[0].num != int64(i+1) || n.events[0].focus != f.base+"/Appointment/"+w {
			t.Fatalf("event %d: %+v, want Appointment/%s", i+1, n.events[0], w)
		}
	}
	if st := f.status(id); st.since != int64(len(want)) {
		t.Errorf("events since start %d, want %d (only the patient's appointments)", st.since, len(want))
	}
}

func TestSubscriptionEventsOperationAndDrops(t *testing.T) {
	f := newSubFixture(t, SubscriptionOptions{EventLog: 10})
	rc := newReceiver(t)
	if err := f.sim.SetFaults("a", []fault.Fault{{Endpoint: fault.EndpointSubscriptionNotify, Kind: fault.Drop, Every: 2}}); err != nil {
		t.Fatal(err)
	}
	// The handshake is notification 1 (delivered); then event 1 is lost,
	// event 2 delivered, and so on.
	id, r := f.create(subscriptionBody(TopicAppointmentChange, rc.srv.URL, ContentFullResource, 0))
	if id == "" {
		t.Fatalf("create: %d %.300s", r.status, r.body)
	}
	rc.next("handshake")
	changes := f.appointmentChanges(14)
	waitFor(t, func() bool { return f.sim.Faults("a")[0].Seen >= 1+len(changes) })
	time.Sleep(50 * time.Millisecond)
	rc.mu.Lock()
	var nums []int64
	for _, n := range rc.got {
		for _, e := range n.events {
			nums = append(nums, e.num)
		}
	}
	rc.mu.Unlock()
	for _, n := range nums {
		if n%2 == 1 {
			t.Errorf("event %d arrived though every second notification is dropped", n)
		}
	}
	if len(nums) != len(changes)/2 {
		t.Errorf("received %v of %d events", nums, len(changes))
	}
	// $events returns what the log still holds (the last 10).
	r = f.get(f.base+"/Subscription/"+id+"/$events?eventsSinceNumber=2&eventsUntilNumber=12", f.tok)
	if r.status != http.StatusOK {
		t.Fatalf("$events: %d %.300s", r.status, r.body)
	}
	n := parseNotice(t, r.body)
	if n.typ != "query-event" || n.since != int64(len(changes)) {
		t.Errorf("$events status %+v", n)
	}
	first := int64(len(changes) - 10 + 1)
	var got []int64
	for _, e := range n.events {
		got = append(got, e.num)
	}
	if len(got) == 0 || got[0] != max(2, first) || got[len(got)-1] != 12 || len(got) != int(12-max(2, first)+1) || len(n.entries) != len(got) {
		t.Errorf("$events numbers %v with %d entries, want %d..12", got, len(n.entries), max(2, first))
	}
	for i, e := range n.entries {
		h, _ := fhir.ParseHeader(e.Resource)
		c := changes[got[i]-1]
		if h.ID != c.ID || h.VersionID != strconv.Itoa(c.Version) {
			t.Errorf("$events entry %d is %s v%s, want %s v%d", i, h.ID, h.VersionID, c.ID, c.Version)
		}
	}
	// content=id-only overrides the subscription's mode.
	n = parseNotice(t, f.get(f.base+"/Subscription/"+id+"/$events?eventsSinceNumber=12&content=id-only", f.tok).body)
	if len(n.events) != len(changes)-11 || len(n.entries) != len(n.events) || len(n.entries[0].Resource) != 0 {
		t.Errorf("id-only $events: %d events, %d entries", len(n.events), len(n.entries))
	}
	if r := f.get(f.base+"/Subscription/"+id+"/$events?eventsSinceNumber=x", f.tok); r.status != http.StatusBadRequest {
		t.Errorf("bad eventsSinceNumber: %d", r.status)
	}
	if err := f.sim.SetSubscriptionOptions("a", SubscriptionOptions{NoEventsOperation: true}); err != nil {
		t.Fatal(err)
	}
	if r := f.get(f.base+"/Subscription/"+id+"/$events", f.tok); r.status != http.StatusMethodNotAllowed {
		t.Errorf("$events switched off: %d", r.status)
	}
}

func TestSubscriptionHeartbeats(t *testing.T) {
	f := newSubFixture(t, SubscriptionOptions{TimeUnit: 20 * time.Millisecond})
	rc := newReceiver(t)
	id, _ := f.create(subscriptionBody(TopicEncounterChange, rc.srv.URL, ContentIDOnly, 1))
	rc.next("handshake")
	for range 3 {
		hb := rc.next("heartbeat")
		if hb.subID != id || hb.since != 0 || hb.status != "active" {
			t.Fatalf("heartbeat %+v", hb)
		}
	}
	enc := []byte(`{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"}}`)
	if _, _, _, err := f.sim.Put("a", enc); err != nil {
		t.Fatal(err)
	}
	if hb := rc.next("heartbeat"); hb.since != 1 {
		t.Errorf("heartbeat after one event says %d events", hb.since)
	}
}

func TestSubscriptionDeliveryFailureMarksError(t *testing.T) {
	f := newSubFixture(t, SubscriptionOptions{TimeUnit: 10 * time.Millisecond})
	rc := newReceiver(t)
	rc.status.Store(http.StatusInternalServerError)
	id, _ := f.create(subscriptionBody(TopicAppointmentChange, rc.srv.URL, ContentIDOnly, 0))
	waitFor(t, func() bool { return f.status(id).status == "error" })
	if subs := f.sim.Subscriptions("a"); len(subs) != 1 || subs[0].Status != "error" {
		t.Errorf("Subscriptions() = %+v", subs)
	}
	// Events keep counting in error state ($status tells the client what it missed).
	f.appointmentChanges(3)
	if st := f.status(id); st.since < 3 || st.status != "error" {
		t.Errorf("$status %+v", st)
	}

	rc2 := newReceiver(t)
	id2, _ := f.create(subscriptionBody(TopicAppointmentChange, rc2.srv.URL, ContentIDOnly, 0))
	rc2.next("handshake")
	rc2.status.Store(http.StatusServiceUnavailable)
	f.appointmentChanges(1)
	waitFor(t, func() bool { return f.status(id2).status == "error" })
}

func TestSubscriptionCRUDAndValidation(t *testing.T) {
	f := newSubFixture(t, SubscriptionOptions{})
	rc := newReceiver(t)
	for name, body := range map[string][]byte{
		"unknown topic":    subscriptionBody("http://example.org/topic/nope", rc.srv.URL, ContentIDOnly, 0),
		"classic R4":       subscriptionBody("Appointment?status=booked", rc.srv.URL, ContentIDOnly, 0),
		"bad content":      subscriptionBody(TopicAppointmentChange, rc.srv.URL, "everything", 0),
		"bad endpoint":     subscriptionBody(TopicAppointmentChange, "not a url", ContentIDOnly, 0),
		"foreign filter":   subscriptionBody(TopicAppointmentChange, rc.srv.URL, ContentIDOnly, 0, "Patient?_id=1"),
		"unknown param":    subscriptionBody(TopicAppointmentChange, rc.srv.URL, ContentIDOnly, 0, "Appointment?nope=1"),
		"websocket":        []byte(`{"resourceType":"Subscription","criteria":"` + TopicAppointmentChange + `","channel":{"type":"websocket"}}`),
		"not subscription": []byte(`{"resourceType":"Patient"}`),
	} {
		if id, r := f.create(body); id != "" || (r.status != http.StatusUnprocessableEntity && r.status != http.StatusBadRequest) {
			t.Errorf("%s: created %q with status %d", name, id, r.status)
		}
	}
	if r := f.do(http.MethodPost, f.base+"/Subscription", "", subscriptionBody(TopicAppointmentChange, rc.srv.URL, ContentIDOnly, 0), nil); r.status != http.StatusUnauthorized {
		t.Errorf("create without a token: %d", r.status)
	}
	readOnly := f.token("a", "system/Patient.rs")
	if r := f.do(http.MethodPost, f.base+"/Subscription", readOnly, subscriptionBody(TopicAppointmentChange, rc.srv.URL, ContentIDOnly, 0), nil); r.status != http.StatusForbidden {
		t.Errorf("create without a Subscription scope: %d", r.status)
	}
	id, _ := f.create(subscriptionBody(TopicAppointmentChange, rc.srv.URL, ContentIDOnly, 0))
	rc.next("handshake")
	bu := bundleOf(t, f.get(f.base+"/Subscription?url="+rc.srv.URL+"&criteria="+TopicAppointmentChange, f.tok).body)
	if len(bu.Entry) != 1 {
		t.Errorf("search by url found %d", len(bu.Entry))
	}
	if bu := bundleOf(t, f.get(f.base+"/Subscription?status=off", f.tok).body); len(bu.Entry) != 0 {
		t.Errorf("search status=off found %d", len(bu.Entry))
	}
	if r := f.do(http.MethodDelete, f.base+"/Subscription/"+id, f.tok, nil, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d", r.status)
	}
	if r := f.get(f.base+"/Subscription/"+id, f.tok); r.status != http.StatusNotFound {
		t.Errorf("read after delete: %d", r.status)
	}
	if r := f.get(f.base+"/Subscription/"+id+"/$status", f.tok); r.status != http.StatusNotFound {
		t.Errorf("$status after delete: %d", r.status)
	}
	f.appointmentChanges(3)
	time.Sleep(50 * time.Millisecond)
	rc.mu.Lock()
	for _, n := range rc.got {
		if n.typ == "event-notification" {
			t.Errorf("notification after delete: %+v", n)
		}
	}
	rc.mu.Unlock()
	if r := f.do(http.MethodPut, f.base+"/Subscription/"+id, f.tok, []byte(`{}`), nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d", r.status)
	}

	// The CapabilityStatement declares Subscription with the topics and operations.
	cs := string(f.get(f.base+"/metadata", "").body)
	for _, want := range []string{`"type":"Subscription"`, TopicAppointmentChange, backportEventsOpDef, backportCapability} {
		if !strings.Contains(cs, want) {
			t.Errorf("CapabilityStatement lacks %s", want)
		}
	}

	f.sim.StopSubscriptions()
	if _, r := f.create(subscriptionBody(TopicAppointmentChange, rc.srv.URL, ContentIDOnly, 0)); r.status != http.StatusServiceUnavailable {
		t.Errorf("create after StopSubscriptions: %d", r.status)
	}
}

func TestSubscriptionFaultsForStarDoNotTouchNotifications(t *testing.T) {
	f := newSubFixture(t, SubscriptionOptions{})
	rc := newReceiver(t)
	id, _ := f.create(subscriptionBody(TopicAppointmentChange, rc.srv.URL, ContentIDOnly, 0))
	rc.next("handshake")
	waitFor(t, func() bool { return f.status(id).status == "active" })
	if err := f.sim.SetFaults("a", []fault.Fault{{Kind: fault.Drop, Endpoint: fault.EndpointAll}}); err != nil {
		t.Fatal(err)
	}
	f.appointmentChanges(2)
	if n := rc.next("event-notification"); n.events[0].num != 1 {
		t.Errorf("first event %+v", n.events)
	}
}
