package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/delivery"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/testutil/syncbuf"
)

// hookHit is one request a test receiver got.
type hookHit struct {
	signature, eventID string
	body               []byte
	status             int // what the receiver answered
}

// hookReceiver is a webhook endpoint on loopback that records every
// request and answers as status says (200 when nil).
type hookReceiver struct {
	srv    *httptest.Server
	hits   chan hookHit
	mu     sync.Mutex
	seen   map[string]int // requests per event id
	status func(eventID string, n int) int
}

func newHookReceiver(t *testing.T, status func(eventID string, n int) int) *hookReceiver {
	t.Helper()
	rc := &hookReceiver{hits: make(chan hookHit, 100), seen: map[string]int{}, status: status}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id := r.Header.Get(delivery.EventIDHeader)
		rc.mu.Lock()
		rc.seen[id]++
		n := rc.seen[id]
		rc.mu.Unlock()
		code := http.StatusOK
		if rc.status != nil {
			code = rc.status(id, n)
		}
		rc.hits <- hookHit{signature: r.Header.Get(delivery.SignatureHeader), eventID: id, body: body, status: code}
		w.WriteHeader(code)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// next waits for the receiver's next request.
func (rc *hookReceiver) next(t *testing.T) hookHit {
	t.Helper()
	select {
	case h := <-rc.hits:
		return h
	case <-time.After(15 * time.Second):
		t.Fatal("the receiver got no request")
		return hookHit{}
	}
}

// startDispatcher runs a real Dispatcher over st until the test ends.
func startDispatcher(t *testing.T, st store.Store, logs io.Writer) *delivery.Dispatcher {
	t.Helper()
	d, err := delivery.New(delivery.Options{
		Store: st, Practices: testPractices, SecretKey: []byte("0123456789abcdef0123456789abcdef"),
		Logger:       obs.NewLogger(logs, slog.LevelDebug, "json"),
		PollInterval: 20 * time.Millisecond, BaseDelay: 20 * time.Millisecond, MaxDelay: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.Run(ctx); err != nil {
			t.Errorf("dispatcher: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return d
}

func withWebhooks(w Webhooks) envOpt { return func(c *Config) { c.Webhooks = w } }

// send sends a JSON body with a key.
func (e *env) send(method, path, key, body string) result {
	e.t.Helper()
	return e.do(method, path, key, strings.NewReader(body), "Content-Type", "application/json")
}

// event decodes and verifies a hit with secret.
func verifiedEvent(t *testing.T, h hookHit, secret string) delivery.Event {
	t.Helper()
	if err := delivery.Verify([]byte(secret), h.signature, h.body, time.Now(), 0); err != nil {
		t.Fatalf("signature does not verify with the secret: %v", err)
	}
	var ev delivery.Event
	if err := json.Unmarshal(h.body, &ev); err != nil {
		t.Fatalf("event body: %v", err)
	}
	if ev.ID != h.eventID {
		t.Errorf("event id %q, header %q", ev.ID, h.eventID)
	}
	return ev
}

// waitCounts polls a webhook until its delivery counts are as wanted.
func waitCounts(t *testing.T, e *env, key, path string, want map[string]float64) map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := e.get(path, key)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
		m := r.json(t)
		got, _ := m["deliveries"].(map[string]any)
		ok := true
		for k, v := range want {
			ok = ok && got[k] == v
		}
		if ok {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func writePatient(t *testing.T, st store.Store, practice, id, family string) store.Change {
	t.Helper()
	return writeResource(t, st, practice, store.ResourceWrite{ResourceType: "Patient", ID: id, Connection: "ehr",
		Body: patientJSON(id, family, "Zebulon", phiBirthDate)})
}

// writeResource writes one resource and returns its change-feed entry.
func writeResource(t *testing.T, st store.Store, practice string, w store.ResourceWrite) store.Change {
	t.Helper()
	ctx := context.Background()
	last, err := st.Changes(ctx, practice, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	var since int64
	if len(last) > 0 {
		since = last[len(last)-1].Seq
	}
	if _, err := st.WriteResources(ctx, practice, []store.ResourceWrite{w}); err != nil {
		t.Fatal(err)
	}
	chs, err := st.Changes(ctx, practice, since, 10)
	if err != nil || len(chs) != 1 {
		t.Fatalf("changes after the write: %v, %v", chs, err)
	}
	return chs[0]
}

func TestWebhooksLifecycle(t *testing.T) {
	st := openTestStore(t)
	logs := &syncbuf.Buffer{}
	d := startDispatcher(t, st, logs)
	e := newEnv(t, st, withWebhooks(d))
	rc := newHookReceiver(t, nil)

	// Register, for Patient changes only.
	r := e.send(http.MethodPost, "/v1/practices/alpha/webhooks", keyAlpha, `{"url": "`+rc.srv.URL+`/hook", "types": ["Patient"]}`)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	created := r.json(t)
	id, _ := created["id"].(string)
	secret, _ := created["secret"].(string)
	if !strings.HasPrefix(id, "wh_") || !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("create answer: %s", r.body)
	}
	if created["app"] != "alpha-app" || created["practice"] != "alpha" || created["active"] != true || created["url"] != rc.srv.URL+"/hook" {
		t.Errorf("create answer: %s", r.body)
	}
	if loc := r.header.Get("Location"); loc != e.srv.URL+"/v1/practices/alpha/webhooks/"+id {
		t.Errorf("Location %q", loc)
	}
	hookPath := "/v1/practices/alpha/webhooks/" + id

	// An Appointment (not subscribed) and then a Patient change: the first
	// request is about the Patient, signed with the secret.
	writeResource(t, st, "alpha", store.ResourceWrite{ResourceType: "Appointment", ID: "appt-1", Connection: "ehr", Body: appointmentJSON("appt-1", "pat-1")})
	pc := writePatient(t, st, "alpha", "pat-1", phiFamilies[0])
	d.Notify("alpha")
	h := rc.next(t)
	ev := verifiedEvent(t, h, secret)
	if ev.Practice != "alpha" || ev.Type != "Patient" || ev.ResourceID != "pat-1" || ev.Version != 1 || ev.Seq != pc.Seq || ev.Deleted {
		t.Errorf("event %+v, want Patient/pat-1 version 1 at seq %d", ev, pc.Seq)
	}
	if strings.Contains(string(h.body), phiFamilies[0]) {
		t.Errorf("the notification carries resource content: %s", h.body)
	}
	waitCounts(t, e, keyAlpha, hookPath, map[string]float64{"delivered": 1, "pending": 0, "dead": 0})

	// List and read never show the secret.
	r = e.get("/v1/practices/alpha/webhooks", keyAlpha)
	if r.status != http.StatusOK {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	var list struct {
		Webhooks []map[string]any `json:"webhooks"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil || len(list.Webhooks) != 1 || list.Webhooks[0]["id"] != id {
		t.Fatalf("list: %s (%v)", r.body, err)
	}
	for _, path := range []string{"/v1/practices/alpha/webhooks", hookPath} {
		r = e.get(path, keyAlpha)
		if strings.Contains(string(r.body), secret) || strings.Contains(string(r.body), `"secret"`) {
			t.Errorf("GET %s shows the secret: %s", path, r.body)
		}
	}

	// Another app that may read the practice does not see the webhook.
	for _, c := range []struct{ method, path, body string }{
		{http.MethodGet, hookPath, ""},
		{http.MethodPatch, hookPath, `{"active": false}`},
		{http.MethodPost, hookPath + "/rotate-secret", ""},
	} {
		wantOutcome(t, e.send(c.method, c.path, keyAll, c.body), http.StatusNotFound, "not-found")
	}
	r = e.get("/v1/practices/alpha/webhooks", keyAll)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"webhooks":[]`) {
		t.Errorf("another app's list: %d %s", r.status, r.body)
	}
	// An app that may not read the practice is refused outright.
	wantOutcome(t, e.get(hookPath, keyBeta), http.StatusForbidden, "forbidden")
	wantOutcome(t, e.send(http.MethodPost, "/v1/practices/alpha/webhooks", keyBeta, `{"url": "https://x.example/h"}`), http.StatusForbidden, "forbidden")
	wantOutcome(t, e.get("/v1/practices/alpha/webhooks", ""), http.StatusUnauthorized, "login")

	// Patch: types, then refusals.
	r = e.send(http.MethodPatch, hookPath, keyAlpha, `{"types": ["Patient", "Appointment"]}`)
	if r.status != http.StatusOK {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	if types, _ := r.json(t)["types"].([]any); len(types) != 2 || types[1] != "Appointment" {
		t.Errorf("patched types: %s", r.body)
	}
	wantOutcome(t, e.send(http.MethodPatch, hookPath, keyAlpha, `{"url": "http://example.com/hook"}`), http.StatusBadRequest, "invalid")
	wantOutcome(t, e.send(http.MethodPatch, hookPath, keyAlpha, `{}`), http.StatusBadRequest, "required")
	wantOutcome(t, e.send(http.MethodPatch, hookPath, keyAlpha, `{"activ": true}`), http.StatusBadRequest, "invalid")
	wantOutcome(t, e.send(http.MethodPatch, "/v1/practices/alpha/webhooks/wh_nope", keyAlpha, `{"active": true}`), http.StatusNotFound, "not-found")

	// Rotate: the next request verifies with the new secret only.
	r = e.send(http.MethodPost, hookPath+"/rotate-secret", keyAlpha, "")
	if r.status != http.StatusOK {
		t.Fatalf("rotate: %d %s", r.status, r.body)
	}
	rotated, _ := r.json(t)["secret"].(string)
	if !strings.HasPrefix(rotated, "whsec_") || rotated == secret {
		t.Fatalf("rotated secret: %s", r.body)
	}
	ac := writeResource(t, st, "alpha", store.ResourceWrite{ResourceType: "Appointment", ID: "appt-2", Connection: "ehr", Body: appointmentJSON("appt-2", "pat-1")})
	d.Notify("alpha")
	h = rc.next(t)
	ev = verifiedEvent(t, h, rotated)
	if ev.Type != "Appointment" || ev.ResourceID != "appt-2" || ev.Seq != ac.Seq {
		t.Errorf("event after the patch %+v, want Appointment/appt-2 at seq %d", ev, ac.Seq)
	}
	if err := delivery.Verify([]byte(secret), h.signature, h.body, time.Now(), 0); !errors.Is(err, delivery.ErrBadSignature) {
		t.Errorf("the old secret still verifies after rotation: %v", err)
	}

	// Pause.
	r = e.send(http.MethodPatch, hookPath, keyAlpha, `{"active": false}`)
	if r.status != http.StatusOK || r.json(t)["active"] != false {
		t.Errorf("pause: %d %s", r.status, r.body)
	}

	// Every call is audited, the refused ones too.
	evs, err := st.ListAudit(context.Background(), "alpha", store.AuditFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, a := range evs {
		found[a.Actor+" "+a.Action+" "+a.Outcome+" "+a.Detail] = true
	}
	for _, want := range []string{
		"app:alpha-app webhook-create success 201",
		"app:alpha-app webhook-list success 200",
		"app:alpha-app webhook-read success 200",
		"app:alpha-app webhook-update success 200",
		"app:alpha-app webhook-update error 400 invalid",
		"app:alpha-app webhook-rotate-secret success 200",
		"app:all-app webhook-read error 404 not-found",
		"app:beta-app webhook-read denied 403",
		"unauthenticated webhook-list denied 401",
	} {
		if !found[want] {
			t.Errorf("no audit event %q", want)
		}
	}
	for _, s := range []string{secret, rotated} {
		if strings.Contains(logs.String(), s) || strings.Contains(e.logs.String(), s) {
			t.Errorf("a webhook secret is in the logs")
		}
	}
}

func TestWebhooksDeadLettersAndReplay(t *testing.T) {
	st := openTestStore(t)
	d := startDispatcher(t, st, io.Discard)
	e := newEnv(t, st, withWebhooks(d))
	// The receiver refuses the first request of every event with 410 Gone
	// (dead at once) and takes the later ones.
	rc := newHookReceiver(t, func(_ string, n int) int {
		if n == 1 {
			return http.StatusGone
		}
		return http.StatusNoContent
	})
	r := e.send(http.MethodPost, "/v1/practices/alpha/webhooks", keyAlpha, `{"url": "`+rc.srv.URL+`"}`)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	id, _ := r.json(t)["id"].(string)
	secret, _ := r.json(t)["secret"].(string)
	hookPath := "/v1/practices/alpha/webhooks/" + id

	first := writePatient(t, st, "alpha", "pat-1", phiFamilies[1])
	second := writePatient(t, st, "alpha", "pat-2", phiFamilies[2])
	d.Notify("alpha")
	for _, want := range []store.Change{first, second} {
		h := rc.next(t)
		if ev := verifiedEvent(t, h, secret); ev.Seq != want.Seq || h.status != http.StatusGone {
			t.Fatalf("request %+v answered %d, want seq %d answered 410", ev, h.status, want.Seq)
		}
	}
	waitCounts(t, e, keyAlpha, hookPath, map[string]float64{"dead": 2, "pending": 0, "delivered": 0})

	// The dead letters, newest first, one per page.
	type deadLetters struct {
		DeadLetters []struct {
			ID        int64           `json:"id"`
			WebhookID string          `json:"webhookId"`
			EventID   string          `json:"eventId"`
			Seq       int64           `json:"seq"`
			Attempts  int             `json:"attempts"`
			LastError string          `json:"lastError"`
			Event     json.RawMessage `json:"event"`
		} `json:"deadLetters"`
		Next string `json:"next"`
	}
	page := func(path, key string) deadLetters {
		t.Helper()
		r := e.get(path, key)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
		var dl deadLetters
		if err := json.Unmarshal(r.body, &dl); err != nil {
			t.Fatal(err)
		}
		return dl
	}
	p1 := page("/v1/practices/alpha/webhooks/dead-letters?limit=1&webhook="+id, keyAlpha)
	if len(p1.DeadLetters) != 1 || p1.Next == "" {
		t.Fatalf("first page: %+v", p1)
	}
	newest := p1.DeadLetters[0]
	if newest.Seq != second.Seq || newest.WebhookID != id || newest.Attempts != 1 || !strings.Contains(newest.LastError, "410") ||
		!strings.Contains(string(newest.Event), newest.EventID) {
		t.Errorf("newest dead letter: %+v", newest)
	}
	p2 := page(p1.Next, keyAlpha)
	if len(p2.DeadLetters) != 1 || p2.DeadLetters[0].Seq != first.Seq {
		t.Fatalf("second page: %+v", p2)
	}
	if p3 := page(p2.Next, keyAlpha); len(p3.DeadLetters) != 0 || p3.Next != "" {
		t.Errorf("third page: %+v", p3)
	}
	if other := page("/v1/practices/alpha/webhooks/dead-letters", keyAll); len(other.DeadLetters) != 0 {
		t.Errorf("another app sees the dead letters: %+v", other)
	}
	wantOutcome(t, e.get("/v1/practices/alpha/webhooks/dead-letters?limit=0", keyAlpha), http.StatusBadRequest, "invalid")
	wantOutcome(t, e.get("/v1/practices/alpha/webhooks/dead-letters?before=x", keyAlpha), http.StatusBadRequest, "invalid")

	// Replay: refused for another app and unknown ids; accepted for the app,
	// which gets the same event again.
	oldest := p2.DeadLetters[0]
	replay := func(id int64) string {
		return "/v1/practices/alpha/webhooks/dead-letters/" + strconv.FormatInt(id, 10) + "/replay"
	}
	wantOutcome(t, e.send(http.MethodPost, replay(oldest.ID), keyAll, ""), http.StatusNotFound, "not-found")
	wantOutcome(t, e.send(http.MethodPost, replay(999999), keyAlpha, ""), http.StatusNotFound, "not-found")
	wantOutcome(t, e.send(http.MethodPost, "/v1/practices/alpha/webhooks/dead-letters/abc/replay", keyAlpha, ""), http.StatusNotFound, "not-found")
	r = e.send(http.MethodPost, replay(oldest.ID), keyAlpha, "")
	if r.status != http.StatusAccepted {
		t.Fatalf("replay: %d %s", r.status, r.body)
	}
	h := rc.next(t)
	if ev := verifiedEvent(t, h, secret); ev.ID != oldest.EventID || h.status != http.StatusNoContent {
		t.Errorf("replayed request: event %s answered %d, want %s answered 204", ev.ID, h.status, oldest.EventID)
	}
	waitCounts(t, e, keyAlpha, hookPath, map[string]float64{"dead": 1, "delivered": 1, "pending": 0})
	// A delivered delivery is not dead: replaying it is a conflict.
	wantOutcome(t, e.send(http.MethodPost, replay(oldest.ID), keyAlpha, ""), http.StatusConflict, "conflict")
	if left := page("/v1/practices/alpha/webhooks/dead-letters", keyAlpha); len(left.DeadLetters) != 1 || left.DeadLetters[0].ID != newest.ID {
		t.Errorf("dead letters after the replay: %+v", left)
	}
}

func TestWebhooksCreateRefusals(t *testing.T) {
	st := openTestStore(t)
	d := startDispatcher(t, st, io.Discard)
	e := newEnv(t, st, withWebhooks(d))
	for _, c := range []struct{ name, body, code, msg string }{
		{"plain http off loopback", `{"url": "http://hooks.example.com/x"}`, "invalid", "https"},
		{"not http", `{"url": "ftp://hooks.example.com/x"}`, "invalid", "https"},
		{"credentials", `{"url": "https://u:p@hooks.example.com/x"}`, "invalid", "credentials"},
		{"no url", `{"types": ["Patient"]}`, "required", "url is required"},
		{"bad type", `{"url": "https://hooks.example.com/x", "types": ["Pa tient"]}`, "invalid", "not a resource type"},
		{"unknown key", `{"url": "https://hooks.example.com/x", "secret": "mine"}`, "invalid", "unknown field"},
		{"not JSON", `url=https://hooks.example.com/x`, "invalid", "not a valid request"},
		{"two objects", `{"url": "https://hooks.example.com/x"} {}`, "invalid", "one JSON object"},
		{"empty", ``, "invalid", "must be a JSON object"},
		{"too large", `{"url": "https://hooks.example.com/` + strings.Repeat("x", maxWebhookBody) + `"}`, "invalid", "larger than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			is := wantOutcome(t, e.send(http.MethodPost, "/v1/practices/alpha/webhooks", keyAlpha, c.body), http.StatusBadRequest, c.code)
			if diag, _ := is["diagnostics"].(string); !strings.Contains(diag, c.msg) {
				t.Errorf("diagnostics %q, want %q", diag, c.msg)
			}
		})
	}
	r := e.get("/v1/practices/alpha/webhooks", keyAlpha)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"webhooks":[]`) {
		t.Errorf("refused creations left webhooks: %s", r.body)
	}
	// https to anywhere, and types, are fine.
	r = e.send(http.MethodPost, "/v1/practices/gamma/webhooks", keyBeta, `{"url": "https://hooks.example.com/x", "types": ["Patient", "Patient"]}`)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if types, _ := r.json(t)["types"].([]any); len(types) != 1 {
		t.Errorf("types not de-duplicated: %s", r.body)
	}
}

func TestWebhooksWithoutDispatcher(t *testing.T) {
	st := openTestStore(t)
	e := newEnv(t, st)
	for _, c := range []struct{ method, path, body string }{
		{http.MethodPost, "/v1/practices/alpha/webhooks", `{"url": "https://hooks.example.com/x"}`},
		{http.MethodGet, "/v1/practices/alpha/webhooks", ""},
		{http.MethodGet, "/v1/practices/alpha/webhooks/wh_1", ""},
		{http.MethodPatch, "/v1/practices/alpha/webhooks/wh_1", `{"active": false}`},
		{http.MethodPost, "/v1/practices/alpha/webhooks/wh_1/rotate-secret", ""},
		{http.MethodGet, "/v1/practices/alpha/webhooks/dead-letters", ""},
		{http.MethodPost, "/v1/practices/alpha/webhooks/dead-letters/1/replay", ""},
	} {
		is := wantOutcome(t, e.send(c.method, c.path, keyAlpha, c.body), http.StatusNotImplemented, "not-supported")
		if diag, _ := is["diagnostics"].(string); !strings.Contains(diag, "store.secret_key") {
			t.Errorf("%s %s: diagnostics %q do not say what to configure", c.method, c.path, diag)
		}
	}
	// The tenant checks come first.
	wantOutcome(t, e.get("/v1/practices/alpha/webhooks", keyBeta), http.StatusForbidden, "forbidden")
	wantOutcome(t, e.get("/v1/practices/alpha/webhooks", ""), http.StatusUnauthorized, "login")
	evs, err := st.ListAudit(context.Background(), "alpha", store.AuditFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Actor == "app:alpha-app" && ev.Outcome == "error" && strings.HasPrefix(ev.Detail, "501") {
			n++
		}
	}
	if n != 7 {
		t.Errorf("%d audited 501 answers, want 7", n)
	}
}
