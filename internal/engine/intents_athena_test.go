package engine

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/smart"
	"github.com/mediflow/mediflow/internal/smart/authserver"
)

// athenaSim runs an athenahealth simulator tenant "clinic" (sandbox
// practice 195900); with jwks, SMART is on and the client "mf" may read
// and write everything.
func athenaSim(t *testing.T, jwks []byte) *sim.Sim {
	t.Helper()
	tc := sim.TenantConfig{ID: "clinic", Flavor: "athenahealth", Seed: 6, Data: &gen.Options{Patients: 3, PastDays: 3, FutureDays: 3}}
	if jwks == nil {
		tc.OpenAuth = true
	} else {
		tc.Clients = []authserver.Client{{ID: "mf", JWKS: jwks, Scopes: []string{"system/*.cruds"}}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{tc}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); s.Wait() })
	return s
}

// openSlot puts an open appointment slot (proposed, no patient) into the
// simulator and returns its FHIR id.
func openSlot(t *testing.T, s *sim.Sim, start time.Time) string {
	t.Helper()
	var prov, loc string
	for id := range s.Current("clinic", "Practitioner") {
		prov = id
	}
	for id := range s.Current("clinic", "Location") {
		loc = id
	}
	body := fmt.Sprintf(`{"resourceType":"Appointment","status":"proposed","start":%q,"end":%q,"minutesDuration":30,`+
		`"participant":[{"actor":{"reference":"Practitioner/%s"},"status":"accepted"},{"actor":{"reference":"Location/%s"},"status":"accepted"}]}`,
		start.Format(time.RFC3339), start.Add(30*time.Minute).Format(time.RFC3339), prov, loc)
	_, id, _, err := s.Put("clinic", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// athenaConfig is one athenahealth practice with write-back on; auth and
// extra connection keys as given.
func athenaConfig(t *testing.T, baseURL, auth, extra string) *config.Config {
	t.Helper()
	yaml := fmt.Sprintf(`server:
  listen: 127.0.0.1:0
store:
  path: mediflow.db
practices:
  - id: clinic
    name: Test Clinic
    connections:
      - name: ehr
        vendor: athenahealth
        practice_id: "195900"
        base_url: %s%s
        auth:
%s
        sync:
          - class: demographics
            interval: 1h
    writeback:
      enabled: true
apps:
  - name: app
    key: {value: %s}
    practices: [clinic]
`, baseURL, extra, auth, appKey)
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "mediflow.yaml"), []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startIntents builds the engine, serves its API and runs its write-back.
func startIntents(t *testing.T, cfg *config.Config) (*Engine, string) {
	t.Helper()
	eng, err := New(context.Background(), cfg, Options{Logger: obs.NewLogger(io.Discard, 0, "json")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	if eng.Intents() == nil {
		t.Fatal("write-back is not on")
	}
	srv := httptest.NewServer(eng.Handler())
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Intents().Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("intents: %v", err)
		}
	})
	return eng, srv.URL + "/v1/practices/clinic"
}

// postIntent posts an intent with an idempotency key.
func postIntent(t *testing.T, base, key, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/intents", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+appKey)
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// submitIntent posts an intent and waits until it is final.
func submitIntent(t *testing.T, base, key, body string) map[string]any {
	t.Helper()
	code, b := postIntent(t, base, key, body)
	if code != http.StatusAccepted {
		t.Fatalf("submit %s: %d %s", key, code, b)
	}
	id := between(b, `"id":"`, `"`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, got := apiCall(t, http.MethodGet, base+"/intents/"+id, "")
		if code != http.StatusOK {
			t.Fatalf("read intent: %d %v", code, got)
		}
		if st := got["status"]; st != "accepted" && st != "sending" && st != "sent" {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("intent %s still %v: %v", key, got["status"], got["lastError"])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func between(s, from, to string) string {
	_, after, ok := strings.Cut(s, from)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, to)
	return v
}

func apptStatus(t *testing.T, s *sim.Sim, id string) (status, patient string) {
	t.Helper()
	b, ok := s.Get("clinic", "Appointment", id)
	if !ok {
		t.Fatalf("no appointment %s", id)
	}
	o, err := gen.ParseObj(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range o.List("participant") {
		if p, _ := x.(*gen.Obj); p != nil && p.Child("actor") != nil && strings.HasPrefix(p.Child("actor").Str("reference"), "Patient/") {
			patient = strings.TrimPrefix(p.Child("actor").Str("reference"), "Patient/")
		}
	}
	return o.Str("status"), patient
}

// TestEngineBooksAndCancelsOverAthenaV1: an athenahealth practice's
// appointment intents go through the v1 API derived from its FHIR base,
// with the connection's SMART token (the simulator refuses v1 calls
// without one), and are confirmed by reading the appointment back.
func TestEngineBooksAndCancelsOverAthenaV1(t *testing.T) {
	key, err := smart.GenerateKey(smart.AlgES384)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := smart.PublicJWKS(key)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := smart.EncodePrivateKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "clinic.key.pem")
	if err := os.WriteFile(keyFile, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	s := athenaSim(t, jwks)
	start := time.Now().UTC().Add(72 * time.Hour).Truncate(time.Hour)
	slot := openSlot(t, s, start)
	var patient string
	for id := range s.Current("clinic", "Patient") {
		patient = id
		break
	}
	auth := fmt.Sprintf("          type: smart-backend\n          client_id: mf\n          algorithm: ES384\n          private_key: {file: %s}", keyFile)
	eng, base := startIntents(t, athenaConfig(t, s.BaseURL("clinic"), auth, ""))
	if sc := eng.writeScopes("clinic", eng.cfg.Practices[0].Connections[0]); !slices.Equal(sc, []string{"system/Appointment.crus"}) {
		t.Errorf("athenahealth write scopes %v", sc)
	}

	book := submitIntent(t, base, "book-1", fmt.Sprintf(`{"kind":"appointment.book","resource":{"resourceType":"Appointment","status":"booked",`+
		`"slot":[{"reference":"Slot/%s"}],"start":%q,"end":%q,"participant":[{"actor":{"reference":"Patient/%s"},"status":"accepted"}]}}`,
		slot, start.Format(time.RFC3339), start.Add(30*time.Minute).Format(time.RFC3339), patient))
	if book["status"] != "confirmed" || book["record"] != "Appointment/"+slot {
		t.Fatalf("book: %v %v %v", book["status"], book["record"], book["lastError"])
	}
	hist, _ := book["history"].([]any)
	if len(hist) != 2 || !strings.HasSuffix(fmt.Sprint(hist[0].(map[string]any)["path"]), "/clinic/v1/195900/appointments/"+slot[strings.LastIndexByte(slot, '-')+1:]) {
		t.Errorf("book history %v", hist)
	}
	if st, p := apptStatus(t, s, slot); st != "booked" || p != patient {
		t.Fatalf("at the EHR after the booking: %s for %q", st, p)
	}

	cancel := submitIntent(t, base, "cancel-1", fmt.Sprintf(`{"kind":"appointment.cancel","target":"Appointment/%s",`+
		`"resource":{"resourceType":"Appointment","status":"cancelled","participant":[{"actor":{"reference":"Patient/%s"},"status":"accepted"}]}}`,
		slot, patient))
	if cancel["status"] != "confirmed" || cancel["record"] != "Appointment/"+slot {
		t.Fatalf("cancel: %v %v %v", cancel["status"], cancel["record"], cancel["lastError"])
	}
	if st, _ := apptStatus(t, s, slot); st != "cancelled" {
		t.Fatalf("at the EHR after the cancellation: %s", st)
	}
}

// TestEngineAthenaV1BaseURL: v1_base_url overrides the derived base; a
// FHIR base without a /fhir segment and no v1_base_url leaves the practice
// without the v1 API, and its appointment intents are refused, saying so.
func TestEngineAthenaV1BaseURL(t *testing.T) {
	s := athenaSim(t, nil)
	start := time.Now().UTC().Add(48 * time.Hour).Truncate(time.Hour)
	slot := openSlot(t, s, start)
	var patient string
	for id := range s.Current("clinic", "Patient") {
		patient = id
		break
	}
	book := fmt.Sprintf(`{"kind":"appointment.book","resource":{"resourceType":"Appointment","status":"booked",`+
		`"slot":[{"reference":"Slot/%s"}],"participant":[{"actor":{"reference":"Patient/%s"},"status":"accepted"}]}}`, slot, patient)
	none := "          type: none"
	root := strings.TrimSuffix(s.BaseURL("clinic"), "/fhir/r4")

	// The FHIR base is unusable; the v1 API is where v1_base_url says.
	_, base := startIntents(t, athenaConfig(t, "http://127.0.0.1:1/r4", none, "\n        v1_base_url: "+root+"/v1"))
	if got := submitIntent(t, base, "b", book); got["status"] != "confirmed" {
		t.Fatalf("with v1_base_url: %v %v", got["status"], got["lastError"])
	}
	if st, p := apptStatus(t, s, slot); st != "booked" || p != patient {
		t.Fatalf("at the EHR: %s for %q", st, p)
	}

	_, base = startIntents(t, athenaConfig(t, "http://127.0.0.1:1/r4", none, ""))
	if code, body := postIntent(t, base, "b", book); code != http.StatusUnprocessableEntity || !strings.Contains(body, "no vendor API connection") {
		t.Fatalf("without a v1 base: %d %s", code, body)
	}
}
