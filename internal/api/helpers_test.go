package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/testutil/syncbuf"
)

// testNow is the API's clock in tests.
var testNow = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

// Test keys: long enough, distinct.
var (
	keyAlpha = "alpha-app-key-0123456789abcdef"
	keyBeta  = "beta-app-key-0123456789abcdef0"
	keyAll   = "all-practices-key-0123456789ab"
	keyNone  = "no-practice-key-0123456789abcd"
)

// testPractices are the configured practices; "ghost" is never configured.
var testPractices = []string{"alpha", "beta", "gamma"}

// testApps: alpha-app reads alpha, beta-app reads beta and gamma, all-app reads everything, idle-app nothing.
func testApps() []App {
	return []App{
		{Name: "alpha-app", Key: []byte(keyAlpha), Practices: []string{"alpha"}},
		{Name: "beta-app", Key: []byte(keyBeta), Practices: []string{"beta", "gamma"}},
		{Name: "all-app", Key: []byte(keyAll), Practices: []string{AllPractices}},
		{Name: "idle-app", Key: []byte(keyNone)},
	}
}

// allowed says whether a test key may read a practice.
func allowed(key, practice string) bool {
	switch key {
	case keyAlpha:
		return practice == "alpha"
	case keyBeta:
		return practice == "beta" || practice == "gamma"
	case keyAll:
		return practice != "ghost"
	}
	return false
}

type env struct {
	t       *testing.T
	st      store.Store
	srv     *httptest.Server
	h       http.Handler
	logs    *syncbuf.Buffer
	metrics *obs.Metrics
}

type envOpt func(*Config)

// newEnv starts the API over st (seeded by the caller) on a loopback test server.
func newEnv(t *testing.T, st store.Store, opts ...envOpt) *env {
	t.Helper()
	logs := &syncbuf.Buffer{}
	m := obs.NewMetrics()
	cfg := Config{
		Store: st, Apps: testApps(), Practices: testPractices,
		Logger: obs.NewLogger(logs, slog.LevelDebug, "json"), Metrics: m,
		Now:     func() time.Time { return testNow },
		Version: "test",
	}
	for _, o := range opts {
		o(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{t: t, st: st, srv: srv, h: h, logs: logs, metrics: m}
}

type result struct {
	status int
	header http.Header
	body   []byte
}

func (r result) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("answer is not JSON (%v): %s", err, r.body)
	}
	return m
}

// do sends a request with an optional API key (as Bearer) and extra headers.
func (e *env) do(method, path, key string, body io.Reader, hdr ...string) result {
	e.t.Helper()
	u := path
	if !strings.HasPrefix(path, "http") {
		u = e.srv.URL + path
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *env) get(path, key string, hdr ...string) result {
	e.t.Helper()
	return e.do(http.MethodGet, path, key, nil, hdr...)
}

// wantOutcome checks an OperationOutcome error answer.
func wantOutcome(t *testing.T, r result, status int, code string) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Errorf("Content-Type %q, want application/fhir+json", ct)
	}
	m := r.json(t)
	if m["resourceType"] != "OperationOutcome" {
		t.Fatalf("not an OperationOutcome: %s", r.body)
	}
	issues, _ := m["issue"].([]any)
	if len(issues) == 0 {
		t.Fatalf("OperationOutcome without issues: %s", r.body)
	}
	is := issues[0].(map[string]any)
	if code != "" && is["code"] != code {
		t.Errorf("issue code %v, want %s: %s", is["code"], code, r.body)
	}
	return is
}

// PHI seeds that appear in resource bodies and search values; they must
// never reach the logs.
var phiFamilies = []string{"Quimbyfield", "Xandrelle", "Ovidanko"}

const phiBirthDate = "1957-03-14"

func patientJSON(id, family, given, birthDate string) []byte {
	return []byte(fmt.Sprintf(`{"resourceType":"Patient","id":%q,"meta":{"versionId":"1","lastUpdated":"2026-02-01T10:00:00Z"},`+
		`"identifier":[{"system":"urn:mrn","value":"MRN-%s"}],"name":[{"family":%q,"given":[%q]}],"gender":"female","birthDate":%q,`+
		`"telecom":[{"system":"phone","value":"555-867-5309"}],"address":[{"line":["742 Evergreen Terrace"],"city":"Springfieldia"}]}`,
		id, id, family, given, birthDate))
}

func appointmentJSON(id, patientID string) []byte {
	return []byte(fmt.Sprintf(`{"resourceType":"Appointment","id":%q,"status":"booked","start":"2026-03-05T09:00:00Z","end":"2026-03-05T09:30:00Z",`+
		`"participant":[{"actor":{"reference":"Patient/%s"},"status":"accepted"}]}`, id, patientID))
}

// seed writes the standard data set: alpha has 45 patients (15 per family)
// and 10 appointments; beta has 3 patients, one sharing an id with alpha
// but not its content; gamma is empty.
func seed(t *testing.T, st store.Store) {
	t.Helper()
	ctx := context.Background()
	var ws []store.ResourceWrite
	for i := 1; i <= 45; i++ {
		id := fmt.Sprintf("pat-%03d", i)
		ws = append(ws, store.ResourceWrite{ResourceType: "Patient", ID: id, Connection: "ehr",
			Body: patientJSON(id, phiFamilies[i%3], "Zebulon", phiBirthDate)})
	}
	for i := 1; i <= 10; i++ {
		ws = append(ws, store.ResourceWrite{ResourceType: "Appointment", ID: fmt.Sprintf("appt-%02d", i), Connection: "ehr",
			Body: appointmentJSON(fmt.Sprintf("appt-%02d", i), fmt.Sprintf("pat-%03d", i))})
	}
	if _, err := st.WriteResources(ctx, "alpha", ws); err != nil {
		t.Fatal(err)
	}
	ws = nil
	for _, id := range []string{"pat-001", "beta-2", "beta-3"} {
		ws = append(ws, store.ResourceWrite{ResourceType: "Patient", ID: id, Connection: "ehr",
			Body: patientJSON(id, "Betafamily", "Bea", "1990-01-01")})
	}
	if _, err := st.WriteResources(ctx, "beta", ws); err != nil {
		t.Fatal(err)
	}
}

// encodeForm is url.Values.Encode for a literal map.
func encodeForm(kv map[string]string) string {
	v := url.Values{}
	for k, x := range kv {
		v.Set(k, x)
	}
	return v.Encode()
}
