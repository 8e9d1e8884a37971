package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/delivery"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/writeback"
)

// startGenericSim runs an open simulator with one generic tenant "clinic".
func startGenericSim(t *testing.T) *sim.Sim {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{
		ID: "clinic", Flavor: "generic", Seed: 5, OpenAuth: true, Data: &gen.Options{Patients: 3},
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

// writebackConfig is one generic practice with write-back on (and
// webhooks, through store.secret_key).
func writebackConfig(t *testing.T, baseURL string, enabled bool) *config.Config {
	t.Helper()
	yaml := fmt.Sprintf(`server:
  listen: 127.0.0.1:0
store:
  path: mediflow.db
  secret_key: {value: %s}
practices:
  - id: clinic
    name: Test Clinic
    connections:
      - name: ehr
        vendor: generic
        base_url: %s
        auth:
          type: none
        sync:
          - class: demographics
            interval: 1h
    writeback:
      enabled: %t
apps:
  - name: app
    key: {value: %s}
    practices: [clinic]
`, testStoreKey, baseURL, enabled, appKey)
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "mediflow.yaml"), []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestEngineWritesANoteOnceAndTellsTheApp: an intent submitted through the
// engine's API is written to the EHR exactly once, confirmed, and every
// status change reaches the app's webhook, signed.
func TestEngineWritesANoteOnceAndTellsTheApp(t *testing.T) {
	s := startGenericSim(t)
	cfg := writebackConfig(t, s.BaseURL("clinic"), true)
	ctx := context.Background()

	type hit struct {
		signature string
		body      []byte
	}
	hits := make(chan hit, 100)
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hits <- hit{signature: r.Header.Get(delivery.SignatureHeader), body: b}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rc.Close()

	eng, err := New(ctx, cfg, Options{Logger: obs.NewLogger(io.Discard, 0, "json"), DeliveryClient: rc.Client()})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	if eng.Intents() == nil || !slices.Equal(eng.Intents().Practices(), []string{"clinic"}) {
		t.Fatal("write-back is not on for the practice")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- eng.Run(runCtx, ln) }()
	defer func() {
		stop()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	base := "http://" + ln.Addr().String() + "/v1/practices/clinic"

	code, wh := apiCall(t, http.MethodPost, base+"/webhooks", `{"url": "`+rc.URL+`/hooks", "types": ["intent.status"]}`)
	if code != http.StatusCreated {
		t.Fatalf("create webhook: %d %v", code, wh)
	}
	secret, _ := wh["secret"].(string)

	var patient string
	for id := range s.Current("clinic", "Patient") {
		patient = id
		break
	}
	note := fmt.Sprintf(`{"kind":"note.create","resource":{"resourceType":"DocumentReference","status":"current",`+
		`"type":{"coding":[{"system":"http://loinc.org","code":"11506-3"}]},"subject":{"reference":"Patient/%s"},`+
		`"content":[{"attachment":{"contentType":"text/plain","data":"Tm90ZQ=="}}]}}`, patient)
	submit := func() (int, map[string]any) {
		req, err := http.NewRequest(http.MethodPost, base+"/intents", strings.NewReader(note))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+appKey)
		req.Header.Set("Idempotency-Key", "visit-42-note")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, m
	}
	code, in := submit()
	id, _ := in["id"].(string)
	if code != http.StatusAccepted || id == "" {
		t.Fatalf("submit: %d %v", code, in)
	}

	var final map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, got := apiCall(t, http.MethodGet, base+"/intents/"+id, "")
		if code != http.StatusOK {
			t.Fatalf("read intent: %d %v", code, got)
		}
		if st := got["status"]; st != "accepted" && st != "sending" && st != "sent" {
			final = got
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("intent still %v: %v", got["status"], got["lastError"])
		}
		time.Sleep(20 * time.Millisecond)
	}
	recs := s.FindByIdentifier("clinic", "DocumentReference", writeback.IdentifierSystem, id)
	if final["status"] != "confirmed" || len(recs) != 1 || final["record"] != "DocumentReference/"+recs[0] {
		t.Fatalf("final %v; records at the EHR %v", final, recs)
	}
	// Submitting again changes nothing at the EHR.
	if code, again := submit(); code != http.StatusOK || again["id"] != id {
		t.Fatalf("resubmit: %d %v", code, again)
	}
	if recs := s.FindByIdentifier("clinic", "DocumentReference", writeback.IdentifierSystem, id); len(recs) != 1 {
		t.Fatalf("records after the resubmission: %v", recs)
	}

	// The app heard of every status change, in order, signed, PHI-free.
	var statuses []string
	for len(statuses) == 0 || statuses[len(statuses)-1] != "confirmed" {
		var h hit
		select {
		case h = <-hits:
		case <-time.After(15 * time.Second):
			t.Fatalf("status events so far: %v", statuses)
		}
		if err := delivery.Verify([]byte(secret), h.signature, h.body, time.Now(), 0); err != nil {
			t.Fatalf("event does not verify: %v", err)
		}
		var ev struct {
			delivery.AppEvent
			Data IntentStatus `json:"data"`
		}
		if err := json.Unmarshal(h.body, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type != IntentStatusEvent || ev.Practice != "clinic" || ev.Data.IntentID != id || ev.Data.Kind != "note.create" ||
			ev.Data.Intent != "/v1/practices/clinic/intents/"+id {
			t.Errorf("event %s", h.body)
		}
		if strings.Contains(string(h.body), "Tm90ZQ") || strings.Contains(string(h.body), patient) {
			t.Errorf("the event carries PHI: %s", h.body)
		}
		statuses = append(statuses, ev.Data.Status)
		if ev.Data.Status == "confirmed" && ev.Data.Record != "DocumentReference/"+recs[0] {
			t.Errorf("confirmed event names record %q", ev.Data.Record)
		}
	}
	// (The claim that moves it to sending is not a reported change.)
	if !slices.Equal(statuses, []string{"accepted", "sent", "confirmed"}) {
		t.Errorf("status events %v", statuses)
	}
}

func TestEngineWithoutWriteback(t *testing.T) {
	s := startGenericSim(t)
	cfg := writebackConfig(t, s.BaseURL("clinic"), false)
	eng, err := New(context.Background(), cfg, Options{Logger: obs.NewLogger(io.Discard, 0, "json")})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	if eng.Intents() != nil {
		t.Fatal("write-back is on without writeback.enabled")
	}
	srv := httptest.NewServer(eng.Handler())
	defer srv.Close()
	code, body := apiCall(t, http.MethodGet, srv.URL+"/v1/practices/clinic/intents", "")
	if code != http.StatusNotImplemented || body["resourceType"] != "OperationOutcome" {
		t.Errorf("intents without write-back: %d %v", code, body)
	}
	if sc := eng.writeScopes("clinic", cfg.Practices[0].Connections[0]); sc != nil {
		t.Errorf("write scopes without write-back: %v", sc)
	}
}

// TestWriteScopes: with write-back on, the first connection's default
// scopes allow creating, reading, updating and searching what the vendor's
// contract writes over FHIR.
func TestWriteScopes(t *testing.T) {
	cfg := writebackConfig(t, "http://127.0.0.1:1/fhir", true)
	e := &Engine{cfg: cfg}
	got := e.writeScopes("clinic", cfg.Practices[0].Connections[0])
	want := []string{"system/Appointment.crus", "system/Condition.crus", "system/DocumentReference.crus", "system/Observation.crus"}
	if !slices.Equal(got, want) {
		t.Errorf("generic write scopes %v, want %v", got, want)
	}
	cfg.Practices[0].Connections[0].Vendor = "epic"
	got = e.writeScopes("clinic", cfg.Practices[0].Connections[0])
	want = []string{"system/Condition.crus", "system/DocumentReference.crus", "system/Observation.crus"}
	if !slices.Equal(got, want) {
		t.Errorf("epic write scopes %v, want %v", got, want)
	}
	other := cfg.Practices[0].Connections[0]
	other.Name = "second"
	if got := e.writeScopes("clinic", other); got != nil {
		t.Errorf("a connection other than the first: %v", got)
	}
	if got := e.writeScopes("elsewhere", cfg.Practices[0].Connections[0]); got != nil {
		t.Errorf("an unknown practice: %v", got)
	}
}

// TestWritebackRefusesWithTheContractsReason: a practice whose EHR's contract
// refuses every intent still starts; the API refuses intents with the
// contract's reason.
func TestWritebackRefusesWithTheContractsReason(t *testing.T) {
	cfg := writebackConfig(t, "http://127.0.0.1:1/fhir", true)
	cfg.Practices[0].Connections[0].Vendor = "athenahealth"
	cfg.Practices[0].Connections[0].PracticeID = "195900"
	eng, err := New(context.Background(), cfg, Options{Logger: obs.NewLogger(io.Discard, 0, "json")})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	srv := httptest.NewServer(eng.Handler())
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/practices/clinic/intents",
		strings.NewReader(`{"kind":"note.create","resource":{"resourceType":"DocumentReference"}}`))
	req.Header.Set("Authorization", "Bearer "+appKey)
	req.Header.Set("Idempotency-Key", "k1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Code, Message string
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnprocessableEntity || out.Code != "not-supported" || !strings.Contains(out.Message, "athenahealth") {
		t.Errorf("%d %+v, want 422 not-supported with athenahealth's reason", resp.StatusCode, out)
	}
}
