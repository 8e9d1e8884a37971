package engine

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/delivery"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/store"
)

// testStoreKey is store.secret_key in these tests, as hex.
var testStoreKey = hex.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

// appKey is the key of testConfig's app.
var appKey = strings.Repeat("k", 40)

// webhookHit is one request the receiver got.
type webhookHit struct {
	signature, eventID string
	body               []byte
}

// apiCall sends a JSON request with the app's key to the engine's API.
func apiCall(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+appKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %s", method, url, resp.StatusCode, b)
	}
	return resp.StatusCode, m
}

// TestEngineDeliversWebhooksForSyncedChanges: with store.secret_key, a
// webhook registered through the engine's API gets one signed notification
// per change that a sync brings in, in change-feed order.
func TestEngineDeliversWebhooksForSyncedChanges(t *testing.T) {
	s := startSim(t)
	cfg := testConfig(t, s.BaseURL("clinic"))
	cfg.Store.SecretKey = config.Secret{Value: testStoreKey}
	ctx := context.Background()
	log := obs.NewLogger(io.Discard, 0, "json")

	// A first process makes the initial sync, so the jobs of the second
	// keep their place (a minute on) and only this test syncs.
	first, err := New(ctx, cfg, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.SyncAll(ctx, "test"); err != nil {
		t.Fatalf("initial sync: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	hits := make(chan webhookHit, 1000)
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hits <- webhookHit{signature: r.Header.Get(delivery.SignatureHeader), eventID: r.Header.Get(delivery.EventIDHeader), body: b}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rc.Close()

	eng, err := New(ctx, cfg, Options{Logger: log, DeliveryClient: rc.Client()})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
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
	st := eng.Store()

	// The dispatcher reads the feed up to its head (no webhook yet: nothing
	// to deliver); a webhook registered now gets what comes after.
	initial, err := st.Changes(ctx, "clinic", 0, 100000)
	if err != nil || len(initial) == 0 {
		t.Fatalf("initial feed: %d changes, %v", len(initial), err)
	}
	head := initial[len(initial)-1].Seq
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := st.DeliveryCursor(ctx, "clinic")
		if err != nil {
			t.Fatal(err)
		}
		if c == head {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dispatcher's cursor is at %d, the feed at %d", c, head)
		}
		time.Sleep(20 * time.Millisecond)
	}
	base := "http://" + ln.Addr().String() + "/v1/practices/clinic/webhooks"
	code, created := apiCall(t, http.MethodPost, base, `{"url": "`+rc.URL+`/hooks"}`)
	if code != http.StatusCreated {
		t.Fatalf("create webhook: %d %v", code, created)
	}
	id, _ := created["id"].(string)
	secret, _ := created["secret"].(string)

	// Changes in the EHR, then a sync.
	simChanges, err := s.Tick("clinic", 20)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.SyncAll(ctx, "test"); err != nil {
		t.Fatalf("second sync: %v", err)
	}
	changes, err := st.Changes(ctx, "clinic", head, 100000)
	if err != nil {
		t.Fatal(err)
	}
	inFeed := map[string]bool{}
	for _, c := range changes {
		inFeed[c.ResourceType+"/"+c.ID] = true
	}
	synced := 0
	for _, c := range simChanges {
		if c.ResourceType != "Patient" && c.ResourceType != "Appointment" {
			continue // the test connection syncs demographics and scheduling
		}
		synced++
		if !inFeed[c.ResourceType+"/"+c.ID] {
			t.Errorf("the sync did not bring in the simulator's change of %s/%s", c.ResourceType, c.ID)
		}
	}
	if synced == 0 || len(changes) < synced {
		t.Fatalf("%d simulator changes of synced types, %d feed changes: nothing to deliver", synced, len(changes))
	}

	t.Logf("%d simulator changes of synced types, %d changes in the feed", synced, len(changes))

	// One signed notification per change, in feed order.
	for i, want := range changes {
		var h webhookHit
		select {
		case h = <-hits:
		case <-time.After(15 * time.Second):
			t.Fatalf("%d of %d notifications arrived", i, len(changes))
		}
		if err := delivery.Verify([]byte(secret), h.signature, h.body, time.Now(), 0); err != nil {
			t.Fatalf("notification %d does not verify with the webhook's secret: %v", i, err)
		}
		var ev delivery.Event
		if err := json.Unmarshal(h.body, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Seq != want.Seq || ev.Type != want.ResourceType || ev.ResourceID != want.ID || ev.Version != want.Version ||
			ev.Practice != "clinic" || ev.ID != h.eventID || ev.ID != delivery.EventID("clinic", want.Seq, id) {
			t.Errorf("notification %d: %+v, want %s/%s version %d at seq %d", i, ev, want.ResourceType, want.ID, want.Version, want.Seq)
		}
	}
	// And no more: the store counts exactly that many delivered.
	deadline = time.Now().Add(15 * time.Second)
	for {
		code, got := apiCall(t, http.MethodGet, base+"/"+id, "")
		counts, _ := got["deliveries"].(map[string]any)
		if code == http.StatusOK && counts[store.DeliveryDelivered] == float64(len(changes)) && counts[store.DeliveryPending] == float64(0) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook %d %v, want %d delivered and none pending", code, got, len(changes))
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case h := <-hits:
		t.Errorf("an extra notification: %s", h.body)
	default:
	}
}

func TestEngineWithoutSecretKeyHasNoWebhooks(t *testing.T) {
	cfg := testConfig(t, "http://127.0.0.1:1/fhir")
	eng, err := New(context.Background(), cfg, Options{Logger: obs.NewLogger(io.Discard, 0, "json")})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	if eng.hooks != nil {
		t.Fatal("a dispatcher without store.secret_key")
	}
	srv := httptest.NewServer(eng.Handler())
	defer srv.Close()
	code, body := apiCall(t, http.MethodPost, srv.URL+"/v1/practices/clinic/webhooks", `{"url": "https://hooks.example.com/x"}`)
	issues, _ := body["issue"].([]any)
	if code != http.StatusNotImplemented || body["resourceType"] != "OperationOutcome" || len(issues) != 1 ||
		!strings.Contains(issues[0].(map[string]any)["diagnostics"].(string), "store.secret_key") {
		t.Errorf("create without a dispatcher: %d %v, want a 501 OperationOutcome naming store.secret_key", code, body)
	}
}

func TestEngineRefusesAnUnusableSecretKey(t *testing.T) {
	cfg := testConfig(t, "http://127.0.0.1:1/fhir")
	cfg.Store.SecretKey = config.Secret{Value: "not-a-32-byte-key"}
	_, err := New(context.Background(), cfg, Options{Logger: obs.NewLogger(io.Discard, 0, "json")})
	if err == nil || !strings.Contains(err.Error(), "store.secret_key") || !strings.Contains(err.Error(), "32-byte") {
		t.Fatalf("err = %v, want one naming store.secret_key and its size", err)
	}
	if strings.Contains(err.Error(), "not-a-32-byte-key") {
		t.Errorf("the error quotes the key: %v", err)
	}
}
