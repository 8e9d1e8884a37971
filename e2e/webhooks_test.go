package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	gosync "sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/delivery"
)

// receiver is an app's webhook endpoint: it checks every signature with
// the secret mediflow gave at registration and keeps the events, de-duplicated
// by event id as the docs tell apps to.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     gosync.Mutex
	secret []byte
	events map[string]delivery.Event // event id → event
	bad    int
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, events: map[string]delivery.Event{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		secret := r.secret
		r.mu.Unlock()
		body, err := delivery.VerifyRequest(req, secret, time.Now(), 0)
		if err != nil {
			r.mu.Lock()
			r.bad++
			r.mu.Unlock()
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var ev delivery.Event
		if err := json.Unmarshal(body, &ev); err != nil || ev.ID == "" || ev.ID != req.Header.Get(delivery.EventIDHeader) {
			http.Error(w, "bad event", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.events[ev.ID] = ev
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// register registers the receiver as a webhook of the practice through the
// API, for the given types, and keeps the secret it answers with.
func (r *receiver) register(apiURL, key, practice string, types ...string) {
	r.t.Helper()
	body, _ := json.Marshal(map[string]any{"url": r.srv.URL + "/hook", "types": types})
	req, _ := http.NewRequest(http.MethodPost, apiURL+"/v1/practices/"+practice+"/webhooks", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		r.t.Fatalf("registering the webhook: %s %s", resp.Status, b)
	}
	var out struct{ Secret string }
	if err := json.Unmarshal(b, &out); err != nil || out.Secret == "" {
		r.t.Fatalf("no secret in %s", b)
	}
	r.mu.Lock()
	r.secret = []byte(out.Secret)
	r.mu.Unlock()
}

// has reports whether an event for version v of type/id arrived.
func (r *receiver) has(rt, id string, v int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.events {
		if ev.Type == rt && ev.ResourceID == id && ev.Version == v {
			return true
		}
	}
	return false
}

func (r *receiver) badSignatures() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bad
}
