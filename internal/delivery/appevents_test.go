package delivery

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// TestAppEventGoesToTheAppsWebhooksOnly: an app event reaches the app's
// webhooks that want its type, signed like a change event, once per key;
// other apps' webhooks and webhooks for other types get nothing, and the
// change feed's cursor does not move.
func TestAppEventGoesToTheAppsWebhooksOnly(t *testing.T) {
	st := openStore(t, "")
	d := newDispatcher(t, testOptions(st))
	all, only, patients, other := newReceiver(t, time.Now), newReceiver(t, time.Now), newReceiver(t, time.Now), newReceiver(t, time.Now)
	wAll := createWebhook(t, d, all, "p1", "app1")
	wOnly := createWebhook(t, d, only, "p1", "app1", "intent.status")
	createWebhook(t, d, patients, "p1", "app1", "Patient")
	createWebhook(t, d, other, "p1", "app2")
	start(t, d)

	at := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	spec := AppEventSpec{Practice: "p1", App: "app1", Type: "intent.status", Key: "i1:accepted", OccurredAt: at,
		Data: map[string]string{"intentId": "i1", "status": "accepted"}}
	n, err := d.SendAppEvent(t.Context(), spec)
	if err != nil || n != 2 {
		t.Fatalf("SendAppEvent = %d, %v; want 2 deliveries", n, err)
	}
	// The same key again adds nothing.
	if n, err := d.SendAppEvent(t.Context(), spec); err != nil || n != 0 {
		t.Fatalf("SendAppEvent again = %d, %v; want 0", n, err)
	}
	waitFor(t, "both deliveries", func() bool { return all.count() >= 1 && only.count() >= 1 })

	for _, c := range []struct {
		r  *receiver
		wh Webhook
	}{{all, wAll}, {only, wOnly}} {
		h := c.r.snapshot()[0]
		if h.VerifyErr != nil {
			t.Errorf("webhook %s: signature: %v", c.wh.ID, h.VerifyErr)
		}
		var ev AppEvent
		if err := json.Unmarshal(h.Body, &ev); err != nil {
			t.Fatal(err)
		}
		want := AppEventID("p1", "app1", "i1:accepted", c.wh.ID)
		if ev.ID != want || h.EventID != want || ev.Practice != "p1" || ev.Type != "intent.status" || !ev.OccurredAt.Equal(at) {
			t.Errorf("webhook %s got %+v (event id %s), want id %s", c.wh.ID, ev, h.EventID, want)
		}
		var data map[string]string
		if err := json.Unmarshal(ev.Data, &data); err != nil || data["intentId"] != "i1" || data["status"] != "accepted" {
			t.Errorf("data %s (%v)", ev.Data, err)
		}
	}
	if AppEventID("p1", "app1", "i1:accepted", wAll.ID) == AppEventID("p1", "app1", "i1:accepted", wOnly.ID) {
		t.Error("two webhooks share an event id")
	}
	// Give a wrongly addressed delivery time to show up, then look.
	time.Sleep(50 * time.Millisecond)
	if patients.count() != 0 || other.count() != 0 {
		t.Errorf("a webhook for other types got %d, another app's got %d; want none", patients.count(), other.count())
	}
	if all.count() != 1 || only.count() != 1 {
		t.Errorf("requests %d and %d, want one each", all.count(), only.count())
	}
	if c, err := st.DeliveryCursor(t.Context(), "p1"); err != nil || c != 0 {
		t.Errorf("delivery cursor %d, %v; an app event must not move it", c, err)
	}
	// Changes written afterwards still reach the webhooks.
	writePatients(t, st, "p1", "pat", 1)
	d.Notify("p1")
	waitFor(t, "the change event", func() bool { return patients.count() == 1 && all.count() == 2 })
}

func TestAppEventRefusals(t *testing.T) {
	st := openStore(t, "")
	d := newDispatcher(t, testOptions(st))
	ok := AppEventSpec{Practice: "p1", App: "app1", Type: "intent.status", Key: "k", Data: map[string]string{}}
	for name, mod := range map[string]func(*AppEventSpec){
		"unknown practice": func(s *AppEventSpec) { s.Practice = "p9" },
		"no app":           func(s *AppEventSpec) { s.App = "" },
		"no type":          func(s *AppEventSpec) { s.Type = "" },
		"no key":           func(s *AppEventSpec) { s.Key = "" },
	} {
		s := ok
		mod(&s)
		if _, err := d.SendAppEvent(t.Context(), s); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	// Without webhooks nothing is enqueued, and that is not an error.
	if n, err := d.SendAppEvent(t.Context(), ok); n != 0 || err != nil {
		t.Errorf("no webhooks: %d, %v", n, err)
	}
	ds, err := st.ListDeliveries(t.Context(), "p1", store.DeliveryFilter{})
	if err != nil || len(ds) != 0 {
		t.Errorf("deliveries %v, %v", ds, err)
	}
}
