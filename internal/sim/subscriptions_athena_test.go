package sim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/sim/flavor/athenahealth"
)

// rawNote is one notification as it arrived.
type rawNote struct {
	body []byte
	sig  string // X-Hub-Signature
}

// gatedReceiver records raw notifications; while its gate is shut it holds
// the first event notification (so the simulator's events pile up).
type gatedReceiver struct {
	srv  *httptest.Server
	open chan struct{}
	once sync.Once
	mu   sync.Mutex
	got  []rawNote
}

func newGatedReceiver(t *testing.T, shut bool) *gatedReceiver {
	rc := &gatedReceiver{open: make(chan struct{})}
	if !shut {
		rc.release()
	}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if typeOf(t, body) == "event-notification" {
			<-rc.open
		}
		rc.mu.Lock()
		rc.got = append(rc.got, rawNote{body: body, sig: r.Header.Get(HubSignatureHeader)})
		rc.mu.Unlock()
	}))
	t.Cleanup(rc.srv.Close)
	t.Cleanup(rc.release)
	return rc
}

func (rc *gatedReceiver) release() { rc.once.Do(func() { close(rc.open) }) }

// events returns the event notifications received so far.
func (rc *gatedReceiver) events(t *testing.T) []rawNote {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []rawNote
	for _, n := range rc.got {
		if typeOf(t, n.body) == "event-notification" {
			out = append(out, n)
		}
	}
	return out
}

// athenaStatus is the SubscriptionStatus resource athenahealth sends.
type athenaStatus struct {
	ResourceType      string `json:"resourceType"`
	Type              string `json:"type"`
	Status            string `json:"status"`
	Since             string `json:"eventsSinceSubscriptionStart"`
	InNotification    int    `json:"eventsInNotification"`
	Subscription      struct{ Reference string }
	NotificationEvent []struct {
		ID          string `json:"id"`
		EventNumber string `json:"eventNumber"`
		Timestamp   string `json:"timestamp"`
		Focus       struct{ Reference string }
	} `json:"notificationEvent"`
}

// statusEntry returns a notification Bundle's first entry and the number of entries.
func statusEntry(t *testing.T, body []byte) (json.RawMessage, int) {
	t.Helper()
	var b fhir.Bundle
	if err := json.Unmarshal(body, &b); err != nil || b.Type != "history" || len(b.Entry) == 0 {
		t.Fatalf("not a notification Bundle: %v %.200s", err, body)
	}
	return b.Entry[0].Resource, len(b.Entry)
}

// typeOf is the notification type of a body in either status shape.
func typeOf(t *testing.T, body []byte) string {
	raw, _ := statusEntry(t, body)
	var ss athenaStatus
	_ = json.Unmarshal(raw, &ss)
	if ss.ResourceType == "SubscriptionStatus" {
		return ss.Type
	}
	return parseStatus(t, raw).typ
}

func athenaSubscription(endpoint, content string, maxCount int, filters ...string) []byte {
	var crit []any
	for _, f := range filters {
		crit = append(crit, map[string]any{"url": extFilterCriteria, "valueString": f})
	}
	sub := map[string]any{
		"resourceType": "Subscription", "status": "requested", "reason": "test", "criteria": TopicAppointmentChange,
		"channel": map[string]any{
			"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
			"_payload":  map[string]any{"extension": []any{map[string]any{"url": extPayloadContent, "valueCode": content}}},
			"extension": []any{map[string]any{"url": extMaxCount, "valuePositiveInt": maxCount}},
		},
	}
	if len(crit) > 0 {
		sub["_criteria"] = map[string]any{"extension": crit}
	}
	b, _ := json.Marshal(sub)
	return b
}

func newAthenaFixture(t *testing.T, opts SubscriptionOptions) *subFixture {
	f := newFixture(t, Config{Tenants: []TenantConfig{{ID: "ah", Flavor: athenahealth.Name, Seed: 9, Data: smallData(15)}}})
	t.Cleanup(f.sim.StopSubscriptions)
	if err := f.sim.SetSubscriptionOptions("ah", opts); err != nil {
		t.Fatal(err)
	}
	return &subFixture{fixture: f, tok: f.token("ah"), base: f.sim.BaseURL("ah")}
}

var practiceFilter = athenahealth.PracticeParam + "=" + athenahealth.New().(athenahealth.Flavor).PracticeRef()

// appointmentWrites makes changes on tenant until n Appointment versions were written.
func appointmentWrites(t *testing.T, s *Sim, tenant string, n int) []Change {
	t.Helper()
	var out []Change
	for len(out) < n {
		cs, err := s.Tick(tenant, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.ResourceType == "Appointment" {
				out = append(out, c)
			}
		}
	}
	return out
}

func TestSubscriptionAthenaSignedPerNotificationEvents(t *testing.T) {
	f := newAthenaFixture(t, SubscriptionOptions{})
	rc := newGatedReceiver(t, true)
	const secret = "athena-shared-secret"
	r := f.do(http.MethodPost, f.base+"/Subscription", f.tok, athenaSubscription(rc.srv.URL, ContentIDOnly, 3, practiceFilter),
		map[string]string{HubSecretHeader: secret})
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %.300s", r.status, r.body)
	}
	if strings.Contains(string(r.body), secret) {
		t.Error("the created Subscription shows the hub secret")
	}
	var sub struct{ ID string }
	_ = json.Unmarshal(r.body, &sub)
	waitFor(t, func() bool { s := f.sim.Subscriptions("ah"); return len(s) == 1 && s[0].Status == "active" })

	// The first event notification is held at the receiver; the rest pile up
	// and go out three to a notification.
	changes := appointmentWrites(t, f.sim, "ah", 10)
	waitFor(t, func() bool { return f.sim.Subscriptions("ah")[0].Events == int64(len(changes)) })
	rc.release()
	ids := map[string]bool{}
	var foci []string
	waitFor(t, func() bool {
		n := 0
		for _, x := range rc.events(t) {
			raw, _ := statusEntry(t, x.body)
			var ss athenaStatus
			_ = json.Unmarshal(raw, &ss)
			n += len(ss.NotificationEvent)
		}
		return n == len(changes)
	})
	sawMany := false
	for _, x := range rc.events(t) {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(x.body)
		if want := "sha256=" + hex.EncodeToString(mac.Sum(nil)); x.sig != want {
			t.Errorf("X-Hub-Signature %q, want %q", x.sig, want)
		}
		raw, entries := statusEntry(t, x.body)
		if entries != 1 {
			t.Errorf("id-only notification has %d entries, want the status alone", entries)
		}
		var ss athenaStatus
		if err := json.Unmarshal(raw, &ss); err != nil || ss.ResourceType != "SubscriptionStatus" {
			t.Fatalf("status entry is not a SubscriptionStatus resource: %.200s", raw)
		}
		k := len(ss.NotificationEvent)
		sawMany = sawMany || k > 1
		if ss.Since != strconv.Itoa(k) || ss.InNotification != k || k == 0 || k > 3 {
			t.Errorf("eventsSinceSubscriptionStart %q, eventsInNotification %d, for %d events", ss.Since, ss.InNotification, k)
		}
		if ss.Subscription.Reference != "Subscription/"+sub.ID {
			t.Errorf("subscription reference %q", ss.Subscription.Reference)
		}
		for i, e := range ss.NotificationEvent {
			if e.EventNumber != strconv.Itoa(i+1) {
				t.Errorf("event %d of a notification numbered %q", i+1, e.EventNumber)
			}
			if e.ID == "" || ids[e.ID] {
				t.Errorf("event id %q missing or repeated", e.ID)
			}
			ids[e.ID] = true
			if _, err := fhir.ParseInstant(e.Timestamp); err != nil {
				t.Errorf("event timestamp %q: %v", e.Timestamp, err)
			}
			foci = append(foci, e.Focus.Reference)
		}
	}
	if !sawMany {
		t.Error("no notification carried several events (maxCount 3 with events piled up)")
	}
	for i, c := range changes {
		if i < len(foci) && foci[i] != "Appointment/"+c.ID {
			t.Errorf("event %d focus %q, want Appointment/%s", i+1, foci[i], c.ID)
		}
	}
	if r := f.get(f.base+"/Subscription/"+sub.ID+"/$events", f.tok); r.status != http.StatusMethodNotAllowed {
		t.Errorf("$events on athenahealth: %d, want 405 (no gap-free counter)", r.status)
	}
	if s := f.sim.Subscriptions("ah")[0]; !s.Signed {
		t.Errorf("status %+v: not signed", s)
	}
}

func TestSubscriptionAthenaCreateRules(t *testing.T) {
	f := newAthenaFixture(t, SubscriptionOptions{})
	rc := newGatedReceiver(t, false)
	other := athenahealth.PracticeParam + "=" + athenahealth.ForPractice("1").(athenahealth.Flavor).PracticeRef()
	for name, body := range map[string][]byte{
		"no practice filter": athenaSubscription(rc.srv.URL, ContentIDOnly, 1),
		"another practice":   athenaSubscription(rc.srv.URL, ContentIDOnly, 1, other),
		"full-resource":      athenaSubscription(rc.srv.URL, ContentFullResource, 1, practiceFilter),
		"empty payload":      athenaSubscription(rc.srv.URL, ContentEmpty, 1, practiceFilter),
	} {
		if id, r := f.create(body); id != "" || r.status != http.StatusUnprocessableEntity {
			t.Errorf("%s: created %q with status %d, want 422", name, id, r.status)
		}
	}
	// Without X-Hub-Secret the subscription is made and its notifications go unsigned.
	id, r := f.create(athenaSubscription(rc.srv.URL, ContentIDOnly, 1, "Appointment?"+practiceFilter))
	if id == "" {
		t.Fatalf("create with a typed practice filter: %d %.300s", r.status, r.body)
	}
	waitFor(t, func() bool { return f.sim.Subscriptions("ah")[0].Status == "active" })
	appointmentWrites(t, f.sim, "ah", 1)
	waitFor(t, func() bool { return len(rc.events(t)) > 0 })
	if n := rc.events(t)[0]; n.sig != "" {
		t.Errorf("unsigned subscription sent X-Hub-Signature %q", n.sig)
	}
	cs := string(f.get(f.base+"/metadata", "").body)
	if strings.Contains(cs, backportEventsOpDef) || !strings.Contains(cs, backportStatusOpDef) {
		t.Error("athenahealth's CapabilityStatement should declare $status and not $events")
	}
}

// eventNumbers lists the IG event numbers of notifications in arrival order.
func eventNumbers(t *testing.T, notes []rawNote) []int64 {
	var out []int64
	for _, n := range notes {
		for _, e := range parseNotice(t, n.body).events {
			out = append(out, e.num)
		}
	}
	return out
}

func TestSubscriptionDuplicatesAndShuffle(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts SubscriptionOptions
	}{
		{"shuffle", SubscriptionOptions{Shuffle: 1}},
		{"duplicates", SubscriptionOptions{Duplicates: 1}},
		{"neither", SubscriptionOptions{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newSubFixture(t, tc.opts)
			rc := newGatedReceiver(t, true)
			// The generic flavour does not sign, even when given a secret.
			r := f.do(http.MethodPost, f.base+"/Subscription", f.tok, subscriptionBody(TopicAppointmentChange, rc.srv.URL, ContentIDOnly, 0),
				map[string]string{HubSecretHeader: "ignored"})
			if r.status != http.StatusCreated {
				t.Fatalf("create: %d %.300s", r.status, r.body)
			}
			waitFor(t, func() bool { s := f.sim.Subscriptions("a"); return len(s) == 1 && s[0].Status == "active" })
			changes := f.appointmentChanges(8)
			waitFor(t, func() bool { return f.sim.Subscriptions("a")[0].Events == int64(len(changes)) })
			rc.release()
			want := len(changes)
			if tc.opts.Duplicates > 0 {
				want *= 2
			}
			waitFor(t, func() bool { return len(rc.events(t)) >= want })
			time.Sleep(30 * time.Millisecond) // anything extra would arrive now
			notes := rc.events(t)
			nums := eventNumbers(t, notes)
			st := f.sim.Subscriptions("a")[0]
			if len(nums) != want || st.Signed {
				t.Fatalf("received events %v (want %d), status %+v", nums, want, st)
			}
			seen := map[int64]int{}
			for _, n := range nums {
				seen[n]++
			}
			for i := range changes {
				if c := seen[int64(i+1)]; c != want/len(changes) {
					t.Errorf("event %d received %d times", i+1, c)
				}
			}
			for _, n := range notes {
				if n.sig != "" {
					t.Errorf("generic flavour signed a notification: %q", n.sig)
				}
			}
			switch tc.name {
			case "shuffle":
				// Every notification is held back and the held ones go out
				// newest first: what piled up behind the gate is reversed.
				ordered := true
				for i := 1; i < len(nums); i++ {
					ordered = ordered && nums[i] > nums[i-1]
				}
				if ordered || st.HeldBack != int64(len(changes)) {
					t.Errorf("shuffled delivery %v, held back %d of %d", nums, st.HeldBack, len(changes))
				}
			case "duplicates":
				bodies := map[string]int{}
				for _, n := range notes {
					bodies[string(n.body)]++
				}
				for _, c := range bodies {
					if c != 2 {
						t.Errorf("a duplicate is not the same bytes: %d copies", c)
					}
				}
				if st.Duplicated != int64(len(changes)) {
					t.Errorf("duplicated %d, want %d", st.Duplicated, len(changes))
				}
			case "neither":
				for i := 1; i < len(nums); i++ {
					if nums[i] != nums[i-1]+1 {
						t.Fatalf("default delivery out of order: %v", nums)
					}
				}
			}
		})
	}
}
