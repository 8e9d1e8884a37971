package subscription

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/flavor/athenahealth"
)

const hubSecret = "hub-s3cret"

var practiceFilter = athenahealth.PracticeParam + "=" + athenahealth.New().(athenahealth.Flavor).PracticeRef()

// athena configures a Manager the way athenahealth needs: id-only, the
// practice filter, the hub secret, events numbered per notification.
func athena(mod func(*Config)) func(*Config) {
	return func(c *Config) {
		c.Payload, c.Filters, c.HubSecret, c.EventNumbers = PayloadIDOnly, []string{practiceFilter}, hubSecret, NumbersPerNotification
		c.Secret = "" // the signature authenticates; athenahealth echoes no channel header
		if mod != nil {
			mod(c)
		}
	}
}

// sign is the X-Hub-Signature of body, computed here independently.
func sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// ev is one notification event to render.
type ev struct {
	id    string // athenahealth event id ("" in IG notifications)
	num   int64
	at    time.Time
	focus string          // "Type/id"
	body  json.RawMessage // full-resource entry, if any
}

// athenaNote renders an event notification as athenahealth sends it.
func athenaNote(subID string, evs ...ev) []byte {
	var nes []any
	var entries []any
	for i, e := range evs {
		nes = append(nes, map[string]any{"id": e.id, "eventNumber": strconv.Itoa(i + 1),
			"timestamp": fhir.FormatInstant(e.at), "focus": map[string]string{"reference": e.focus}})
		if e.body != nil {
			entries = append(entries, map[string]any{"fullUrl": e.focus, "resource": e.body})
		}
	}
	status := map[string]any{"resourceType": "SubscriptionStatus", "status": "active", "type": "event-notification",
		"eventsSinceSubscriptionStart": strconv.Itoa(len(evs)), "eventsInNotification": len(evs),
		"subscription": map[string]string{"reference": "Subscription/" + subID}, "notificationEvent": nes}
	b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "history",
		"entry": append([]any{map[string]any{"fullUrl": "urn:uuid:1", "resource": status}}, entries...)})
	return b
}

// igNote renders an event notification as the Backport IG has it (R4 Parameters).
func igNote(subID string, evs ...ev) []byte {
	ps := []any{
		map[string]any{"name": "subscription", "valueReference": map[string]string{"reference": "Subscription/" + subID}},
		map[string]any{"name": "status", "valueCode": "active"},
		map[string]any{"name": "type", "valueCode": "event-notification"},
		map[string]any{"name": "events-since-subscription-start", "valueString": strconv.FormatInt(evs[len(evs)-1].num, 10)},
	}
	var entries []any
	for _, e := range evs {
		ps = append(ps, map[string]any{"name": "notification-event", "part": []any{
			map[string]any{"name": "event-number", "valueString": strconv.FormatInt(e.num, 10)},
			map[string]any{"name": "timestamp", "valueInstant": fhir.FormatInstant(e.at)},
			map[string]any{"name": "focus", "valueReference": map[string]string{"reference": e.focus}},
		}})
		if e.body != nil {
			entries = append(entries, map[string]any{"fullUrl": e.focus, "resource": e.body})
		}
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "history",
		"entry": append([]any{map[string]any{"fullUrl": "urn:uuid:1", "resource": map[string]any{"resourceType": "Parameters", "parameter": ps}}}, entries...)})
	return b
}

// post sends a notification straight to the handler.
func post(m *Manager, body []byte, hdr map[string]string) int {
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(string(body)))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	m.ServeHTTP(w, req)
	return w.Code
}

func (s *memSink) rawCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.raw
}

// latest is the last version handed over per "Type/id".
func (s *memSink) latest() map[string]Resource {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Resource{}
	for _, r := range s.resources {
		out[r.Type+"/"+r.ID] = r
	}
	return out
}

// someAppointment returns the id of an appointment the simulator has.
func (e *env) someAppointment() string {
	e.t.Helper()
	for id := range e.sim.Current(tenant, "Appointment") {
		return id
	}
	e.t.Fatal("the simulator has no appointment")
	return ""
}

func appointment(id, version string, at time.Time) json.RawMessage {
	return json.RawMessage(`{"resourceType":"Appointment","id":"` + id + `","meta":{"versionId":"` + version +
		`","lastUpdated":"` + fhir.FormatInstant(at) + `"},"status":"booked","participant":[{"status":"accepted"}]}`)
}

func TestHubSignatureChecked(t *testing.T) {
	e := newFlavorEnv(t, sim.SubscriptionOptions{}, athenahealth.Name)
	m, _ := e.start(athena(nil))
	e.waitActive(m.SubscriptionID())
	if s := e.sim.Subscriptions(tenant); len(s) != 1 || !s[0].Signed {
		t.Fatalf("the simulator does not sign the subscription's notifications (X-Hub-Secret not sent?): %+v", s)
	}
	body := athenaNote(m.SubscriptionID(), ev{id: "e-1", at: time.Now(), focus: "Appointment/" + e.someAppointment()})
	other := athenaNote(m.SubscriptionID(), ev{id: "e-2", at: time.Now(), focus: "Appointment/x"})
	good := sign(hubSecret, body)
	rejected := 0
	for name, tc := range map[string]struct {
		sig  string
		want int
	}{
		"missing":         {"", http.StatusUnauthorized},
		"another body":    {sign(hubSecret, other), http.StatusUnauthorized},
		"wrong secret":    {sign("not-the-secret", body), http.StatusUnauthorized},
		"not hex":         {"sha256=zz" + good[9:], http.StatusUnauthorized},
		"other method":    {"sha1=" + good[len("sha256="):], http.StatusUnauthorized},
		"truncated":       {good[:len(good)-2], http.StatusUnauthorized},
		"bearer instead":  {"Bearer " + hubSecret, http.StatusUnauthorized},
		"upper-case hex":  {"sha256=" + strings.ToUpper(good[len("sha256="):]), http.StatusOK},
		"the right one":   {good, http.StatusOK},
		"with whitespace": {" " + good + " ", http.StatusOK},
	} {
		before := e.sink.rawCount()
		hdr := map[string]string{}
		if tc.sig != "" {
			hdr[HubSignatureHeader] = tc.sig
		}
		if got := post(m, body, hdr); got != tc.want {
			t.Errorf("%s: %d, want %d", name, got, tc.want)
		}
		stored := e.sink.rawCount() - before
		if tc.want == http.StatusUnauthorized {
			rejected++
			if stored != 0 {
				t.Errorf("%s: a refused notification was stored", name)
			}
		} else if stored != 1 {
			t.Errorf("%s: accepted but stored %d times", name, stored)
		}
	}
	if st := m.Stats(); st.BadSignatures != int64(rejected) {
		t.Errorf("BadSignatures %d, want %d", st.BadSignatures, rejected)
	}
	// The accepted copies name one event: it is handed over once.
	waitFor(t, "the accepted copies processed", func() bool { st := m.Stats(); return st.Events >= 1 && st.Duplicates >= 2 })
	if st := m.Stats(); st.Events != 1 {
		t.Errorf("stats %+v: the event was processed more than once", st)
	}
}

// recorder keeps what reached the hook endpoint, then passes it on.
type recorder struct {
	next  http.Handler
	mu    sync.Mutex
	notes []recorded
}

type recorded struct {
	body []byte
	sig  string
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.notes = append(rc.notes, recorded{body: body, sig: r.Header.Get(HubSignatureHeader)})
	rc.mu.Unlock()
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	rc.next.ServeHTTP(w, r)
}

// eventNotes returns the recorded event notifications.
func (rc *recorder) eventNotes(t *testing.T) []recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []recorded
	for _, n := range rc.notes {
		if p, err := parseNotification(n.body, ""); err == nil && p.typ == TypeEventNotification {
			out = append(out, n)
		} else if err != nil {
			t.Errorf("recorded notification not parsed: %v", err)
		}
	}
	return out
}

// clock is the Manager's clock, moved forward by tests.
type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

func TestHubReplayOfSignedNotification(t *testing.T) {
	e := newFlavorEnv(t, sim.SubscriptionOptions{}, athenahealth.Name)
	var clk clock
	m, _ := e.start(athena(func(c *Config) { c.Now, c.ReplayWindow = clk.Now, time.Minute }))
	rc := &recorder{next: m}
	var h http.Handler = rc
	e.handler.Store(&h)
	e.waitActive(m.SubscriptionID())
	key := e.putAppointment()
	e.assertExactlyOnce([]string{key})
	notes := rc.eventNotes(t)
	if len(notes) != 1 || notes[0].sig == "" {
		t.Fatalf("recorded %d event notifications (signature %q)", len(notes), notes[0].sig)
	}
	captured := notes[0]
	replay := func() int {
		return post(m, captured.body, map[string]string{HubSignatureHeader: captured.sig})
	}

	// Within the window: a redelivery. Stored raw, acknowledged, not processed again.
	raw := e.sink.rawCount()
	if got := replay(); got != http.StatusOK {
		t.Fatalf("redelivery: %d", got)
	}
	waitFor(t, "the redelivery processed", func() bool { return m.Stats().Duplicates >= 1 })
	if e.sink.rawCount() != raw+1 || m.Stats().Replays != 0 {
		t.Errorf("redelivery within the window: stored %d, replays %d", e.sink.rawCount()-raw, m.Stats().Replays)
	}

	// Past the window (stale timestamp) and processed: a replay. Acknowledged, not stored.
	clk.off.Store(int64(2 * time.Minute))
	if got := replay(); got != http.StatusOK {
		t.Fatalf("replay: %d", got)
	}
	if st := m.Stats(); st.Replays != 1 || e.sink.rawCount() != raw+1 {
		t.Errorf("stale replay: stats %+v, stored %d", st, e.sink.rawCount()-raw-1)
	}
	// The same stale notification re-signed but naming an event not yet
	// processed is not a replay: late events are still taken.
	id := strings.Split(key, "/")[1]
	late := athenaNote(m.SubscriptionID(), ev{id: "never-seen", at: time.Now().Add(-time.Hour), focus: "Appointment/" + id})
	if got := post(m, late, map[string]string{HubSignatureHeader: sign(hubSecret, late)}); got != http.StatusOK {
		t.Fatalf("late event: %d", got)
	}
	if e.sink.rawCount() != raw+2 || m.Stats().Replays != 1 {
		t.Errorf("a stale but unprocessed event was dropped as a replay")
	}
	e.assertExactlyOnce([]string{key}) // the late event names the version handed over already
}

func TestHubReplayByEventNumber(t *testing.T) {
	e := newEnv(t, sim.SubscriptionOptions{})
	var clk clock
	m, _ := e.start(func(c *Config) { c.Now, c.ReplayWindow, c.HubSecret = clk.Now, time.Minute, "" })
	e.waitActive(m.SubscriptionID())
	keys := e.appointmentChanges(3)
	e.assertExactlyOnce(keys)
	auth := map[string]string{"Authorization": "Bearer s3cret"}
	parts := strings.Split(keys[0], "/")
	old := ev{num: 1, at: time.Now().Add(-10 * time.Minute), focus: "Appointment/" + parts[1], body: appointment(parts[1], parts[2], time.Now())}
	raw := e.sink.rawCount()
	if got := post(m, igNote(m.SubscriptionID(), old), auth); got != http.StatusOK {
		t.Fatalf("replay: %d", got)
	}
	if st := m.Stats(); st.Replays != 1 || e.sink.rawCount() != raw {
		t.Errorf("event 1 with a stale timestamp: stats %+v, stored %d", st, e.sink.rawCount()-raw)
	}
	// A fresh timestamp: a duplicate, stored raw, skipped.
	old.at = time.Now()
	if got := post(m, igNote(m.SubscriptionID(), old), auth); got != http.StatusOK {
		t.Fatalf("duplicate: %d", got)
	}
	waitFor(t, "the duplicate skipped", func() bool { return m.Stats().Duplicates >= 1 })
	if e.sink.rawCount() != raw+1 || m.Stats().Replays != 1 {
		t.Errorf("fresh duplicate: stored %d, stats %+v", e.sink.rawCount()-raw, m.Stats())
	}
	e.assertExactlyOnce(keys)
}

func TestHubOutOfOrderVersions(t *testing.T) {
	e := newFlavorEnv(t, sim.SubscriptionOptions{}, athenahealth.Name)
	m, _ := e.start(athena(nil))
	e.waitActive(m.SubscriptionID())
	t0 := time.Now().Add(-time.Second)
	send := func(evs ...ev) {
		t.Helper()
		b := athenaNote(m.SubscriptionID(), evs...)
		if got := post(m, b, map[string]string{HubSignatureHeader: sign(hubSecret, b)}); got != http.StatusOK {
			t.Fatalf("post: %d", got)
		}
	}
	// Numeric versions: v3 arrives, then v2 (late), then v3 again (a duplicate with a new event id).
	send(ev{id: "a3", at: t0.Add(3 * time.Millisecond), focus: "Appointment/ooo-1", body: appointment("ooo-1", "3", t0.Add(3*time.Millisecond))})
	send(ev{id: "a2", at: t0.Add(2 * time.Millisecond), focus: "Appointment/ooo-1", body: appointment("ooo-1", "2", t0.Add(2*time.Millisecond))})
	send(ev{id: "a3b", at: t0.Add(3 * time.Millisecond), focus: "Appointment/ooo-1", body: appointment("ooo-1", "3", t0.Add(3*time.Millisecond))})
	// Versions that are not numbers: ordered by meta.lastUpdated.
	send(ev{id: "b2", at: t0.Add(5 * time.Millisecond), focus: "Appointment/ooo-2", body: appointment("ooo-2", "zz-new", t0.Add(5*time.Millisecond))})
	send(ev{id: "b1", at: t0.Add(4 * time.Millisecond), focus: "Appointment/ooo-2", body: appointment("ooo-2", "aa-old", t0.Add(4*time.Millisecond))})
	waitFor(t, "five events processed", func() bool { return m.Stats().Events == 5 })
	got, _ := e.sink.snapshot()
	want := map[string]int{"Appointment/ooo-1/3": 1, "Appointment/ooo-2/zz-new": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("handed over %v, want %v (older versions after newer ones are skipped)", got, want)
	}
	if l := e.sink.latest(); l["Appointment/ooo-1"].VersionID != "3" || l["Appointment/ooo-2"].VersionID != "zz-new" {
		t.Errorf("the sink ends with %v", l)
	}
	if st := m.Stats(); st.Gaps != 0 || st.CatchUps != 0 || st.EventsRecovered != 0 {
		t.Errorf("numbers per notification were read as gaps: %+v", st)
	}
}

func TestHubOutOfOrderEventNumbersWaitForLateOnes(t *testing.T) {
	e := newEnv(t, sim.SubscriptionOptions{})
	m, _ := e.start(func(c *Config) { c.ReorderWait = 10 * time.Second })
	e.waitActive(m.SubscriptionID())
	auth := map[string]string{"Authorization": "Bearer s3cret"}
	now := time.Now()
	// Event 2 (version 2) comes before event 1 (version 1): it waits; when 1
	// comes both are handed over in order, and the sink ends with version 2.
	if got := post(m, igNote(m.SubscriptionID(), ev{num: 2, at: now, focus: "Appointment/late-1", body: appointment("late-1", "2", now)}), auth); got != http.StatusOK {
		t.Fatal(got)
	}
	waitFor(t, "the gap noticed", func() bool { return m.Stats().Gaps == 1 })
	if got, _ := e.sink.snapshot(); len(got) != 0 {
		t.Fatalf("handed over %v before the missing event came", got)
	}
	if got := post(m, igNote(m.SubscriptionID(), ev{num: 1, at: now, focus: "Appointment/late-1", body: appointment("late-1", "1", now.Add(-time.Millisecond))}), auth); got != http.StatusOK {
		t.Fatal(got)
	}
	waitFor(t, "two events", func() bool { return m.Stats().Events == 2 })
	if l := e.sink.latest(); l["Appointment/late-1"].VersionID != "2" {
		t.Errorf("the sink ends with version %q", l["Appointment/late-1"].VersionID)
	}
	if st := m.Stats(); st.Reordered != 1 || st.EventsRecovered != 0 || st.CatchUps != 0 {
		t.Errorf("stats %+v: want the gap closed by the late event, no recovery", st)
	}
}

// blockingSink holds Resources until released.
type blockingSink struct {
	*memSink
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (s *blockingSink) Resources(ctx context.Context, p, c string, rs []Resource) error {
	s.once.Do(func() { close(s.entered) })
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.memSink.Resources(ctx, p, c, rs)
}

func TestHubHandlerAnswersWhileProcessingIsBusy(t *testing.T) {
	e := newFlavorEnv(t, sim.SubscriptionOptions{}, athenahealth.Name)
	bs := &blockingSink{memSink: e.sink, entered: make(chan struct{}), release: make(chan struct{})}
	defer func() {
		select {
		case <-bs.release:
		default:
			close(bs.release)
		}
	}()
	m, _ := e.start(athena(func(c *Config) { c.Sink, c.QueueSize = bs, 4 }))
	e.waitActive(m.SubscriptionID())
	appt := e.someAppointment()
	done := make(chan []int, 1)
	go func() {
		var codes []int
		for i := range 20 {
			b := athenaNote(m.SubscriptionID(), ev{id: "busy-" + strconv.Itoa(i), at: time.Now(), focus: "Appointment/" + appt})
			codes = append(codes, post(m, b, map[string]string{HubSignatureHeader: sign(hubSecret, b)}))
			if i == 0 {
				<-bs.entered // Run is now stuck in the Sink
			}
		}
		done <- codes
	}()
	select {
	case codes := <-done:
		for i, c := range codes {
			if c != http.StatusOK {
				t.Errorf("notification %d answered %d while processing was busy", i, c)
			}
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the handler waited for processing")
	}
	if st := m.Stats(); st.Overflows == 0 || e.sink.rawCount() < 20 {
		t.Errorf("stats %+v, stored %d: every notification stored raw, the queue overflowed", st, e.sink.rawCount())
	}
	close(bs.release)
	// An overflow with numbers per notification asks for a catch-up poll.
	waitFor(t, "a catch-up after the overflow", func() bool { _, cu := e.sink.snapshot(); return len(cu) > 0 })
}

// assertLatestOnce checks that for every changed resource the sink's last
// version is the simulator's current one, and no version came twice.
func (e *env) assertLatestOnce(ids map[string]bool) {
	e.t.Helper()
	current := func() map[string]string {
		out := map[string]string{}
		for id, b := range e.sim.Current(tenant, "Appointment") {
			if ids[id] {
				h, err := fhir.ParseHeader(b)
				if err != nil {
					e.t.Fatal(err)
				}
				out["Appointment/"+id] = h.VersionID
			}
		}
		return out
	}
	waitFor(e.t, fmt.Sprintf("the latest version of %d appointments at the sink", len(ids)), func() bool {
		l := e.sink.latest()
		for k, v := range current() {
			if l[k].VersionID != v {
				return false
			}
		}
		return true
	})
	time.Sleep(100 * time.Millisecond) // late duplicates would land now
	l := e.sink.latest()
	for k, v := range current() {
		if l[k].VersionID != v {
			e.t.Errorf("%s ends at version %s, the simulator has %s", k, l[k].VersionID, v)
		}
	}
	got, _ := e.sink.snapshot()
	for k, n := range got {
		if n != 1 {
			e.t.Errorf("%s handed over %d times", k, n)
		}
		if !ids[strings.Split(k, "/")[1]] {
			e.t.Errorf("%s handed over but never changed", k)
		}
	}
}

func TestHubAthenaEndToEndDuplicatedAndShuffled(t *testing.T) {
	e := newFlavorEnv(t, sim.SubscriptionOptions{Duplicates: 0.5, Shuffle: 0.5}, athenahealth.Name)
	m, _ := e.start(athena(func(c *Config) { c.Secret = "s3cret" })) // channel header too: both checked
	e.waitActive(m.SubscriptionID())
	ids := map[string]bool{}
	for range 12 {
		for _, k := range e.appointmentChanges(5) {
			ids[strings.Split(k, "/")[1]] = true
		}
	}
	e.assertLatestOnce(ids)
	s := e.sim.Subscriptions(tenant)[0]
	if s.Duplicated == 0 || s.HeldBack == 0 || !s.Signed {
		t.Errorf("simulator status %+v: want signed, duplicated and held-back deliveries", s)
	}
	st := m.Stats()
	if st.Duplicates == 0 || st.BadSignatures != 0 || st.Gaps != 0 || st.EventsRecovered != 0 || st.CatchUps != 0 {
		t.Errorf("stats %+v: want duplicates skipped, no gap, no recovery", st)
	}
	if int64(e.sink.rawCount()) < st.Notifications {
		t.Errorf("%d stored raw for %d notifications", e.sink.rawCount(), st.Notifications)
	}
}

func TestHubGenericShuffledNoRecoveryStorm(t *testing.T) {
	e := newEnv(t, sim.SubscriptionOptions{Duplicates: 0.3, Shuffle: 0.5})
	m, _ := e.start(func(c *Config) { c.ReorderWait = 10 * time.Second })
	e.waitActive(m.SubscriptionID())
	var keys []string
	for range 10 {
		keys = append(keys, e.appointmentChanges(6)...)
	}
	e.assertExactlyOnce(keys) // full-resource: every version, once, in order of event numbers
	st := m.Stats()
	if s := e.sim.Subscriptions(tenant)[0]; s.HeldBack == 0 || s.Duplicated == 0 {
		t.Errorf("simulator status %+v: nothing was shuffled or duplicated", s)
	}
	if st.EventsRecovered != 0 || st.CatchUps != 0 || st.Gaps != st.Reordered || st.Duplicates == 0 {
		t.Errorf("stats %+v: every gap should close with the late notifications, without $events", st)
	}
}

func TestHubConfigChecks(t *testing.T) {
	c, _ := fhirrest.New(fhirrest.Config{BaseURL: "http://127.0.0.1:1/fhir"})
	ok := Config{Practice: "p", Connection: "c", Client: c, Topic: "t", Types: []string{"Patient"},
		Endpoint: "http://127.0.0.1:2/hook", Sink: newMemSink(), State: &MemoryStateStore{}}
	bad := ok
	bad.EventNumbers = "per-bundle"
	if _, err := New(bad); err == nil {
		t.Error("an unknown event numbering was accepted")
	}
	m, err := New(ok)
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.EventNumbers != NumbersPerSubscription || m.cfg.ReorderWait != time.Second || m.cfg.ReplayWindow != 5*time.Minute {
		t.Errorf("defaults %v %v %v", m.cfg.EventNumbers, m.cfg.ReorderWait, m.cfg.ReplayWindow)
	}
	ok.ReorderWait = -1
	if m, _ := New(ok); m.cfg.ReorderWait != 0 {
		t.Errorf("a negative reorder wait gives %v, want none", m.cfg.ReorderWait)
	}
}

func TestParseAthenaStatusResource(t *testing.T) {
	body := []byte(`{"resourceType":"Bundle","type":"history","entry":[{"fullUrl":"urn:uuid:c1","resource":{
	 "resourceType":"SubscriptionStatus","status":"active","type":"event-notification",
	 "eventsSinceSubscriptionStart":"2","eventsInNotification":2,
	 "subscription":{"reference":"Subscription/a9c3"},
	 "notificationEvent":[
	   {"eventNumber":"2","id":"u-2","timestamp":"2021-03-31T16:20:13.000Z","focus":{"reference":"Patient/a-432.E-2"}},
	   {"eventNumber":"1","id":"u-1","timestamp":"2021-03-31T16:20:12.000Z","focus":{"reference":"Patient/a-432.E-1",
	     "identifier":{"system":"urn:athenahealth:athenanet:patient:432","value":"1"}}}]},
	 "request":{"method":"GET","url":"Subscription/a9c3/$status"},"response":{"status":"200"}}]}`)
	n, err := parseNotification(body, "https://api.example/fhir/r4")
	if err != nil {
		t.Fatal(err)
	}
	if n.typ != TypeEventNotification || n.status != "active" || n.since != 2 || subscriptionID(n.subRef, "") != "a9c3" {
		t.Errorf("status %+v", n)
	}
	if len(n.events) != 2 || n.events[0].num != 1 || n.events[0].id != "u-1" || n.events[0].focus != "Patient/a-432.E-1" ||
		n.events[1].key() != "id:u-2" || n.events[1].at.IsZero() {
		t.Errorf("events %+v", n.events)
	}
	for _, bad := range []string{
		`{"resourceType":"SubscriptionStatus","status":"active"}`,
		`{"resourceType":"SubscriptionStatus","type":"heartbeat","eventsSinceSubscriptionStart":"many"}`,
		`{"resourceType":"SubscriptionStatus","type":"event-notification","notificationEvent":[{"id":"x"}]}`,
	} {
		if _, err := parseNotification([]byte(bad), ""); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}
