package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// The webhook delivery store (store.DeliveryStore) tests. Contract details
// the interface leaves open and these tests fix:
//   - Webhook.Types comes back nil when it was empty; SealedSecret comes
//     back byte for byte.
//   - EnqueueDeliveries of an empty batch with through > 0 only moves the
//     cursor; the cursor never moves back. A failed batch stores nothing and
//     does not move the cursor.
//   - Delivery IDs increase in enqueue order, across calls and within a batch.
//   - ClaimDeliveries returns heads earliest NextAttempt first, then by ID;
//     a claim's Delivery already shows the counted attempt and the lease.
//   - RecordAttempt and ReplayDelivery: ErrNotFound for a delivery not in
//     the practice, ErrDeliveryState for one in the wrong state.
//   - ListDeliveries returns newest first.

// runDelivery runs the delivery tests, each on a new store.
func runDelivery(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"DeliveryWebhooks", testDeliveryWebhooks},
		{"DeliveryEnqueueIdempotent", testDeliveryEnqueue},
		{"DeliveryClaimOrder", testDeliveryClaimOrder},
		{"DeliveryLease", testDeliveryLease},
		{"DeliveryDeadAndReplay", testDeliveryDeadReplay},
		{"DeliveryInactiveWebhook", testDeliveryInactive},
		{"DeliveryListCountPrune", testDeliveryListCountPrune},
		{"DeliveryTenantIsolation", testDeliveryTenantIsolation},
		{"DeliveryEmptyPractice", testDeliveryEmptyPractice},
		{"DeliveryConcurrentClaims", testDeliveryConcurrentClaims},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

func webhook(practice, id, app string, types ...string) store.Webhook {
	return store.Webhook{ID: id, Practice: practice, App: app, URL: "https://app.example/hooks/" + id,
		SealedSecret: []byte("sealed:" + id), Types: types, Active: true}
}

func putWebhook(t *testing.T, s store.Store, w store.Webhook) {
	t.Helper()
	if err := s.PutWebhook(ctx(t), w); err != nil {
		t.Fatalf("PutWebhook(%s): %v", w.ID, err)
	}
}

// dlv is a delivery of event ev (seq n) to webhook wh, due at at.
func dlv(wh string, n int64, at time.Time) store.Delivery {
	return store.Delivery{WebhookID: wh, EventID: fmt.Sprintf("evt-%s-%d", wh, n), Seq: n,
		Payload: fmt.Appendf(nil, `{"seq":%d}`, n), NextAttempt: at, CreatedAt: at}
}

func enqueue(t *testing.T, s store.Store, practice string, through int64, ds ...store.Delivery) []store.EnqueueResult {
	t.Helper()
	res, err := s.EnqueueDeliveries(ctx(t), practice, ds, through)
	if err != nil {
		t.Fatalf("EnqueueDeliveries: %v", err)
	}
	if len(res) != len(ds) {
		t.Fatalf("EnqueueDeliveries returned %d results for %d deliveries", len(res), len(ds))
	}
	return res
}

func claim(t *testing.T, s store.Store, practice string, now time.Time, lease time.Duration, limit int) store.Claim {
	t.Helper()
	c, err := s.ClaimDeliveries(ctx(t), practice, now, lease, limit)
	if err != nil {
		t.Fatalf("ClaimDeliveries: %v", err)
	}
	return c
}

func record(t *testing.T, s store.Store, practice string, d store.Delivery, r store.AttemptResult) {
	t.Helper()
	r.Attempt = d.Attempts
	if err := s.RecordAttempt(ctx(t), practice, d.ID, r); err != nil {
		t.Fatalf("RecordAttempt(%d): %v", d.ID, err)
	}
}

func getDelivery(t *testing.T, s store.Store, practice string, id int64) store.Delivery {
	t.Helper()
	d, err := s.GetDelivery(ctx(t), practice, id)
	if err != nil {
		t.Fatalf("GetDelivery(%d): %v", id, err)
	}
	return d
}

func claimedEvents(c store.Claim) []string {
	var out []string
	for _, d := range c.Deliveries {
		out = append(out, d.EventID)
	}
	return out
}

func testDeliveryWebhooks(t *testing.T, s store.Store) {
	a := webhook("p1", "wh-a", "app1", "Patient", "Appointment")
	b := webhook("p1", "wh-b", "app2")
	b.Active = false
	putWebhook(t, s, a)
	putWebhook(t, s, b)
	putWebhook(t, s, webhook("p2", "wh-c", "app1"))

	got, err := s.GetWebhook(ctx(t), "p1", "wh-a")
	if err != nil {
		t.Fatal(err)
	}
	if got.App != "app1" || got.URL != a.URL || !bytes.Equal(got.SealedSecret, a.SealedSecret) || !got.Active ||
		!slices.Equal(got.Types, []string{"Patient", "Appointment"}) || got.Practice != "p1" || got.CreatedAt.IsZero() || got.UpdatedAt.IsZero() {
		t.Errorf("GetWebhook: %+v", got)
	}
	gb, err := s.GetWebhook(ctx(t), "p1", "wh-b")
	if err != nil {
		t.Fatal(err)
	}
	if gb.Types != nil || gb.Active {
		t.Errorf("webhook without types / inactive came back as %+v", gb)
	}
	_, err = s.GetWebhook(ctx(t), "p1", "wh-c")
	wantNotFound(t, "GetWebhook(other practice's id)", err)

	list := func(f store.WebhookFilter) []string {
		t.Helper()
		ws, err := s.ListWebhooks(ctx(t), "p1", f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, w := range ws {
			ids = append(ids, w.ID)
		}
		return ids
	}
	if ids := list(store.WebhookFilter{}); !slices.Equal(ids, []string{"wh-a", "wh-b"}) {
		t.Errorf("ListWebhooks(all) = %v", ids)
	}
	if ids := list(store.WebhookFilter{ActiveOnly: true}); !slices.Equal(ids, []string{"wh-a"}) {
		t.Errorf("ListWebhooks(active) = %v", ids)
	}
	if ids := list(store.WebhookFilter{App: "app2"}); !slices.Equal(ids, []string{"wh-b"}) {
		t.Errorf("ListWebhooks(app2) = %v", ids)
	}

	// A second put replaces everything but the creation time.
	a2 := a
	a2.URL, a2.Types, a2.Active, a2.SealedSecret = "https://other.example/h", nil, false, []byte("sealed:2")
	putWebhook(t, s, a2)
	got2, err := s.GetWebhook(ctx(t), "p1", "wh-a")
	if err != nil {
		t.Fatal(err)
	}
	if got2.URL != a2.URL || got2.Types != nil || got2.Active || string(got2.SealedSecret) != "sealed:2" ||
		!got2.CreatedAt.Equal(got.CreatedAt) || got2.UpdatedAt.Before(got.UpdatedAt) {
		t.Errorf("after replacing: %+v (was %+v)", got2, got)
	}

	for _, bad := range []store.Webhook{
		{Practice: "p1", App: "x", URL: "u", SealedSecret: []byte("s"), Active: true},        // no id
		{Practice: "p1", ID: "w", URL: "u", SealedSecret: []byte("s"), Active: true},         // no app
		{Practice: "p1", ID: "w", App: "x", SealedSecret: []byte("s"), Active: true},         // no URL
		{Practice: "p1", ID: "w", App: "x", URL: "u", Active: true},                          // no secret
		{Practice: "", ID: "w", App: "x", URL: "u", SealedSecret: []byte("s"), Active: true}, // no practice
	} {
		if err := s.PutWebhook(ctx(t), bad); err == nil {
			t.Errorf("PutWebhook(%+v): no error", bad)
		}
	}
}

func testDeliveryEnqueue(t *testing.T, s store.Store) {
	putWebhook(t, s, webhook("p1", "wh1", "app1"))
	putWebhook(t, s, webhook("p1", "wh2", "app2"))
	if c, err := s.DeliveryCursor(ctx(t), "p1"); err != nil || c != 0 {
		t.Fatalf("DeliveryCursor before anything = %d, %v", c, err)
	}
	t0 := ts(0)
	res := enqueue(t, s, "p1", 3, dlv("wh1", 1, t0), dlv("wh2", 1, t0), dlv("wh1", 3, t0))
	for i, r := range res {
		if r.Duplicate || r.ID <= 0 || (i > 0 && r.ID <= res[i-1].ID) {
			t.Errorf("first enqueue %d: %+v (ids must increase)", i, r)
		}
	}
	d := getDelivery(t, s, "p1", res[0].ID)
	if d.Status != store.DeliveryPending || d.App != "app1" || d.Practice != "p1" || d.WebhookID != "wh1" || d.Seq != 1 ||
		d.EventID != "evt-wh1-1" || string(d.Payload) != `{"seq":1}` || d.Attempts != 0 || !d.NextAttempt.Equal(t0) ||
		!d.CreatedAt.Equal(t0) || !d.FirstAttempt.IsZero() || d.LastError != "" {
		t.Errorf("stored delivery: %+v", d)
	}
	if c, _ := s.DeliveryCursor(ctx(t), "p1"); c != 3 {
		t.Errorf("cursor = %d, want 3", c)
	}

	// The same events again (a feed re-read after a crash): nothing new,
	// the same ids; a new event in the same batch is stored.
	again := enqueue(t, s, "p1", 4, dlv("wh1", 3, t0), dlv("wh1", 4, t0), dlv("wh1", 1, t0))
	if !again[0].Duplicate || again[0].ID != res[2].ID || again[1].Duplicate || again[1].ID <= res[2].ID ||
		!again[2].Duplicate || again[2].ID != res[0].ID {
		t.Errorf("re-enqueue: %+v (first: %+v)", again, res)
	}
	// The same event id on another webhook is another delivery.
	other := enqueue(t, s, "p1", 0, store.Delivery{WebhookID: "wh2", EventID: "evt-wh1-1", Seq: 1, Payload: []byte("{}")})
	if other[0].Duplicate {
		t.Errorf("an event id of wh1 was a duplicate on wh2")
	}
	counts, err := s.CountDeliveries(ctx(t), "p1", "")
	if err != nil {
		t.Fatal(err)
	}
	if counts[store.DeliveryPending] != 5 || len(counts) != 1 {
		t.Errorf("counts = %v, want 5 pending", counts)
	}

	// The cursor only moves forward; an empty batch moves it alone.
	enqueue(t, s, "p1", 2)
	if c, _ := s.DeliveryCursor(ctx(t), "p1"); c != 4 {
		t.Errorf("cursor moved back to %d", c)
	}
	enqueue(t, s, "p1", 9)
	if c, _ := s.DeliveryCursor(ctx(t), "p1"); c != 9 {
		t.Errorf("cursor = %d, want 9", c)
	}

	// An unknown webhook fails the batch: nothing stored, cursor unchanged.
	_, err = s.EnqueueDeliveries(ctx(t), "p1", []store.Delivery{dlv("wh1", 10, t0), dlv("nope", 10, t0)}, 10)
	wantNotFound(t, "EnqueueDeliveries(unknown webhook)", err)
	if c, _ := s.DeliveryCursor(ctx(t), "p1"); c != 9 {
		t.Errorf("a failed batch moved the cursor to %d", c)
	}
	if counts, _ := s.CountDeliveries(ctx(t), "p1", "wh1"); counts[store.DeliveryPending] != 3 {
		t.Errorf("a failed batch stored something: %v", counts)
	}
	for i, bad := range []store.Delivery{
		{WebhookID: "wh1", Seq: 1, Payload: []byte("{}")},                       // no event id
		{EventID: "e", Seq: 1, Payload: []byte("{}")},                           // no webhook
		{WebhookID: "wh1", EventID: "e", Seq: 1},                                // no payload
		{Practice: "p2", WebhookID: "wh1", EventID: "e", Payload: []byte("{}")}, // other practice
	} {
		if _, err := s.EnqueueDeliveries(ctx(t), "p1", []store.Delivery{bad}, 0); err == nil {
			t.Errorf("invalid delivery %d: no error", i)
		}
	}
}

func testDeliveryClaimOrder(t *testing.T, s store.Store) {
	putWebhook(t, s, webhook("p1", "wh1", "app1"))
	putWebhook(t, s, webhook("p1", "wh2", "app1"))
	t0 := ts(0)
	lease := time.Minute
	// wh2's first event is due later than wh1's.
	enqueue(t, s, "p1", 3, dlv("wh1", 1, t0), dlv("wh2", 1, t0.Add(time.Second)), dlv("wh1", 2, t0),
		dlv("wh2", 2, t0), dlv("wh1", 3, t0))

	// Nothing is due before t0; NextDue says when.
	c := claim(t, s, "p1", t0.Add(-time.Second), lease, 10)
	if len(c.Deliveries) != 0 || !c.NextDue.Equal(t0) {
		t.Fatalf("claim before due: %v, next due %v", claimedEvents(c), c.NextDue)
	}
	// At t0 only wh1's head is due; wh2's head is not, and its second event
	// (due at t0) must wait behind it.
	c = claim(t, s, "p1", t0, lease, 10)
	if got := claimedEvents(c); !slices.Equal(got, []string{"evt-wh1-1"}) || !c.NextDue.Equal(t0.Add(time.Second)) {
		t.Fatalf("claim at t0: %v, next due %v", got, c.NextDue)
	}
	h1 := c.Deliveries[0]
	if h1.Attempts != 1 || !h1.FirstAttempt.Equal(t0) || !h1.LastAttempt.Equal(t0) || !h1.NextAttempt.Equal(t0.Add(lease)) {
		t.Errorf("claimed delivery: %+v", h1)
	}
	t1 := t0.Add(time.Second)
	c = claim(t, s, "p1", t1, lease, 10)
	if got := claimedEvents(c); !slices.Equal(got, []string{"evt-wh2-1"}) || !c.NextDue.Equal(t0.Add(lease)) {
		t.Fatalf("claim at t1: %v, next due %v (want the lease end)", got, c.NextDue)
	}
	h2 := c.Deliveries[0]

	// wh1's head delivered: its next event becomes the head.
	record(t, s, "p1", h1, store.AttemptResult{Status: store.DeliveryDelivered, At: t1})
	d := getDelivery(t, s, "p1", h1.ID)
	if d.Status != store.DeliveryDelivered || !d.DeliveredAt.Equal(t1) || d.Attempts != 1 {
		t.Errorf("delivered: %+v", d)
	}
	// wh2's head fails and is retried 10 s later: wh2-2 keeps waiting.
	record(t, s, "p1", h2, store.AttemptResult{Status: store.DeliveryPending, At: t1, NextAttempt: t1.Add(10 * time.Second), Error: "HTTP 503"})
	d = getDelivery(t, s, "p1", h2.ID)
	if d.Status != store.DeliveryPending || d.LastError != "HTTP 503" || !d.NextAttempt.Equal(t1.Add(10*time.Second)) {
		t.Errorf("retry scheduled: %+v", d)
	}
	c = claim(t, s, "p1", t1, lease, 10)
	if got := claimedEvents(c); !slices.Equal(got, []string{"evt-wh1-2"}) || !c.NextDue.Equal(t1.Add(10*time.Second)) {
		t.Fatalf("claim after outcomes: %v, next due %v", got, c.NextDue)
	}
	record(t, s, "p1", c.Deliveries[0], store.AttemptResult{Status: store.DeliveryDelivered, At: t1})
	t2 := t1.Add(10 * time.Second)
	// Both heads are due at t2; with limit 1 the earlier NextAttempt goes
	// first: wh1-3 (due since t0) before wh2's retry (due at t2).
	c = claim(t, s, "p1", t2, lease, 1)
	if got := claimedEvents(c); !slices.Equal(got, []string{"evt-wh1-3"}) || !c.NextDue.Equal(t2) {
		t.Fatalf("claim with limit 1: %v, next due %v", got, c.NextDue)
	}
	c = claim(t, s, "p1", t2, lease, 1)
	if got := claimedEvents(c); !slices.Equal(got, []string{"evt-wh2-1"}) {
		t.Fatalf("claim of the retried head: %v", got)
	}
	if r := c.Deliveries[0]; r.Attempts != 2 || !r.FirstAttempt.Equal(t1) || !r.LastAttempt.Equal(t2) || r.LastError != "HTTP 503" {
		t.Errorf("retried head: %+v (first attempt must stay %v)", r, t1)
	}
	if _, err := s.ClaimDeliveries(ctx(t), "p1", t2, 0, 1); err == nil {
		t.Errorf("ClaimDeliveries with a zero lease: no error")
	}
	if err := s.RecordAttempt(ctx(t), "p1", c.Deliveries[0].ID, store.AttemptResult{Attempt: 2, Status: store.DeliveryPending}); err == nil {
		t.Errorf("RecordAttempt(pending without NextAttempt): no error")
	}
	if err := s.RecordAttempt(ctx(t), "p1", c.Deliveries[0].ID, store.AttemptResult{Attempt: 2, Status: "sent"}); err == nil {
		t.Errorf("RecordAttempt(unknown status): no error")
	}
}

func testDeliveryLease(t *testing.T, s store.Store) {
	putWebhook(t, s, webhook("p1", "wh1", "app1"))
	t0 := ts(0)
	enqueue(t, s, "p1", 2, dlv("wh1", 1, t0), dlv("wh1", 2, t0))
	first := claim(t, s, "p1", t0, 30*time.Second, 5)
	if len(first.Deliveries) != 1 {
		t.Fatalf("claim: %v", claimedEvents(first))
	}
	// A claim lost in a crash: nothing until the lease ends, then the same head again.
	if c := claim(t, s, "p1", t0.Add(29*time.Second), 30*time.Second, 5); len(c.Deliveries) != 0 {
		t.Fatalf("claimed during the lease: %v", claimedEvents(c))
	}
	second := claim(t, s, "p1", t0.Add(30*time.Second), 30*time.Second, 5)
	if got := claimedEvents(second); !slices.Equal(got, []string{"evt-wh1-1"}) || second.Deliveries[0].Attempts != 2 {
		t.Fatalf("claim after the lease: %v", second.Deliveries)
	}
	// The old claim's outcome is refused; the new one's is taken.
	err := s.RecordAttempt(ctx(t), "p1", first.Deliveries[0].ID, store.AttemptResult{Attempt: 1, Status: store.DeliveryDelivered})
	if !errors.Is(err, store.ErrDeliveryState) {
		t.Errorf("RecordAttempt of a stale claim: %v, want ErrDeliveryState", err)
	}
	record(t, s, "p1", second.Deliveries[0], store.AttemptResult{Status: store.DeliveryDelivered})
	if d := getDelivery(t, s, "p1", first.Deliveries[0].ID); d.Status != store.DeliveryDelivered || d.DeliveredAt.IsZero() {
		t.Errorf("after recording: %+v", d)
	}
	// A second outcome for a finished delivery is refused too.
	err = s.RecordAttempt(ctx(t), "p1", first.Deliveries[0].ID, store.AttemptResult{Attempt: 2, Status: store.DeliveryDead})
	if !errors.Is(err, store.ErrDeliveryState) {
		t.Errorf("RecordAttempt on a delivered delivery: %v, want ErrDeliveryState", err)
	}
	wantNotFound(t, "RecordAttempt(unknown)", s.RecordAttempt(ctx(t), "p1", 99999, store.AttemptResult{Attempt: 1, Status: store.DeliveryDead}))
}

func testDeliveryDeadReplay(t *testing.T, s store.Store) {
	putWebhook(t, s, webhook("p1", "wh1", "app1"))
	t0 := ts(0)
	res := enqueue(t, s, "p1", 3, dlv("wh1", 1, t0), dlv("wh1", 2, t0), dlv("wh1", 3, t0))
	c := claim(t, s, "p1", t0, time.Minute, 5)
	record(t, s, "p1", c.Deliveries[0], store.AttemptResult{Status: store.DeliveryDead, At: t0, Error: "HTTP 410 Gone"})
	// A dead head leaves the queue: the next event goes.
	c = claim(t, s, "p1", t0, time.Minute, 5)
	if got := claimedEvents(c); !slices.Equal(got, []string{"evt-wh1-2"}) {
		t.Fatalf("after a dead head: %v", got)
	}
	record(t, s, "p1", c.Deliveries[0], store.AttemptResult{Status: store.DeliveryDelivered, At: t0})

	dead, err := s.ListDeliveries(ctx(t), "p1", store.DeliveryFilter{Status: []string{store.DeliveryDead}})
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].ID != res[0].ID || dead[0].LastError != "HTTP 410 Gone" || dead[0].Attempts != 1 {
		t.Fatalf("dead letters: %+v", dead)
	}
	if err := s.ReplayDelivery(ctx(t), "p1", res[1].ID, t0); !errors.Is(err, store.ErrDeliveryState) {
		t.Errorf("ReplayDelivery(delivered): %v, want ErrDeliveryState", err)
	}
	if err := s.ReplayDelivery(ctx(t), "p1", res[2].ID, t0); !errors.Is(err, store.ErrDeliveryState) {
		t.Errorf("ReplayDelivery(pending): %v, want ErrDeliveryState", err)
	}
	wantNotFound(t, "ReplayDelivery(unknown)", s.ReplayDelivery(ctx(t), "p1", 99999, t0))

	t1 := t0.Add(time.Hour)
	if err := s.ReplayDelivery(ctx(t), "p1", res[0].ID, t1); err != nil {
		t.Fatal(err)
	}
	d := getDelivery(t, s, "p1", res[0].ID)
	if d.Status != store.DeliveryPending || d.Attempts != 0 || !d.FirstAttempt.IsZero() || !d.NextAttempt.Equal(t1) {
		t.Errorf("replayed: %+v", d)
	}
	// The replayed delivery has the lowest id: it is the head again, before event 3.
	c = claim(t, s, "p1", t1, time.Minute, 5)
	if got := claimedEvents(c); !slices.Equal(got, []string{"evt-wh1-1"}) || !c.Deliveries[0].FirstAttempt.Equal(t1) {
		t.Fatalf("claim after replay: %v", c.Deliveries)
	}
	if err := s.ReplayDelivery(ctx(t), "p1", res[0].ID, t1); !errors.Is(err, store.ErrDeliveryState) {
		t.Errorf("a second replay: %v, want ErrDeliveryState", err)
	}
}

func testDeliveryInactive(t *testing.T, s store.Store) {
	w := webhook("p1", "wh1", "app1")
	putWebhook(t, s, w)
	t0 := ts(0)
	enqueue(t, s, "p1", 1, dlv("wh1", 1, t0))
	w.Active = false
	putWebhook(t, s, w)
	if c := claim(t, s, "p1", t0, time.Minute, 5); len(c.Deliveries) != 0 || !c.NextDue.IsZero() {
		t.Fatalf("inactive webhook: claimed %v, next due %v", claimedEvents(c), c.NextDue)
	}
	w.Active = true
	putWebhook(t, s, w)
	if c := claim(t, s, "p1", t0, time.Minute, 5); !slices.Equal(claimedEvents(c), []string{"evt-wh1-1"}) {
		t.Fatalf("reactivated webhook: %v", claimedEvents(c))
	}
}

func testDeliveryListCountPrune(t *testing.T, s store.Store) {
	putWebhook(t, s, webhook("p1", "wh1", "app1"))
	putWebhook(t, s, webhook("p1", "wh2", "app2"))
	t0 := ts(0)
	var ds []store.Delivery
	for n := int64(1); n <= 4; n++ {
		ds = append(ds, dlv("wh1", n, t0), dlv("wh2", n, t0))
	}
	res := enqueue(t, s, "p1", 4, ds...)
	// wh1: 1 delivered at t0, 2 delivered at t0+1h, 3 dead; wh2: 1 dead.
	step := func(at time.Time, want string, r store.AttemptResult) {
		t.Helper()
		c := claim(t, s, "p1", at, time.Minute, 10)
		found := false
		for _, d := range c.Deliveries {
			if d.EventID == want {
				r.At = at
				record(t, s, "p1", d, r)
				found = true
				continue
			}
			// The other heads are released: due again at once.
			record(t, s, "p1", d, store.AttemptResult{Status: store.DeliveryPending, At: at, NextAttempt: at})
		}
		if !found {
			t.Fatalf("%s not among the claimed %v", want, claimedEvents(c))
		}
	}
	step(t0, "evt-wh1-1", store.AttemptResult{Status: store.DeliveryDelivered})
	step(t0, "evt-wh2-1", store.AttemptResult{Status: store.DeliveryDead, Error: "HTTP 404"})
	t1 := t0.Add(time.Hour)
	step(t1, "evt-wh1-2", store.AttemptResult{Status: store.DeliveryDelivered})
	step(t1.Add(2*time.Minute), "evt-wh1-3", store.AttemptResult{Status: store.DeliveryDead, Error: "HTTP 400"})

	counts, err := s.CountDeliveries(ctx(t), "p1", "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{store.DeliveryDelivered: 2, store.DeliveryDead: 2, store.DeliveryPending: 4}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("counts = %v, want %v", counts, want)
	}
	c1, _ := s.CountDeliveries(ctx(t), "p1", "wh1")
	if fmt.Sprint(c1) != fmt.Sprint(map[string]int{store.DeliveryDelivered: 2, store.DeliveryDead: 1, store.DeliveryPending: 1}) {
		t.Errorf("wh1 counts = %v", c1)
	}

	ids := func(f store.DeliveryFilter) []int64 {
		t.Helper()
		got, err := s.ListDeliveries(ctx(t), "p1", f)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, d := range got {
			out = append(out, d.ID)
		}
		return out
	}
	// res order: wh1-1, wh2-1, wh1-2, wh2-2, wh1-3, wh2-3, wh1-4, wh2-4.
	if got := ids(store.DeliveryFilter{Status: []string{store.DeliveryDead}}); !slices.Equal(got, []int64{res[4].ID, res[1].ID}) {
		t.Errorf("dead, newest first = %v", got)
	}
	if got := ids(store.DeliveryFilter{App: "app2", Status: []string{store.DeliveryDead}}); !slices.Equal(got, []int64{res[1].ID}) {
		t.Errorf("app2's dead = %v", got)
	}
	if got := ids(store.DeliveryFilter{WebhookID: "wh1", Status: []string{store.DeliveryDelivered, store.DeliveryDead}}); !slices.Equal(got, []int64{res[4].ID, res[2].ID, res[0].ID}) {
		t.Errorf("wh1 finished = %v", got)
	}
	page1 := ids(store.DeliveryFilter{Limit: 3})
	page2 := ids(store.DeliveryFilter{Limit: 3, BeforeID: page1[len(page1)-1]})
	if !slices.Equal(page1, []int64{res[7].ID, res[6].ID, res[5].ID}) || !slices.Equal(page2, []int64{res[4].ID, res[3].ID, res[2].ID}) {
		t.Errorf("pages = %v, %v", page1, page2)
	}

	// Prune removes delivered ones delivered before the instant, only.
	n, err := s.PruneDeliveries(ctx(t), "p1", t1)
	if err != nil || n != 1 {
		t.Fatalf("PruneDeliveries = %d, %v; want 1", n, err)
	}
	_, err = s.GetDelivery(ctx(t), "p1", res[0].ID)
	wantNotFound(t, "GetDelivery(pruned)", err)
	counts, _ = s.CountDeliveries(ctx(t), "p1", "")
	if counts[store.DeliveryDelivered] != 1 || counts[store.DeliveryDead] != 2 || counts[store.DeliveryPending] != 4 {
		t.Errorf("after prune: %v", counts)
	}
	// An event enqueued after pruning gets a new, higher id.
	more := enqueue(t, s, "p1", 5, dlv("wh1", 5, t1))
	if more[0].ID <= res[7].ID {
		t.Errorf("id after prune %d, want > %d", more[0].ID, res[7].ID)
	}
}

func testDeliveryTenantIsolation(t *testing.T, s store.Store) {
	putWebhook(t, s, webhook("pa", "wh1", "app1"))
	putWebhook(t, s, webhook("pb", "wh-b", "app1"))
	t0 := ts(0)
	res := enqueue(t, s, "pa", 1, dlv("wh1", 1, t0))
	// B cannot enqueue for A's webhook, nor see, claim, record or replay A's delivery.
	_, err := s.EnqueueDeliveries(ctx(t), "pb", []store.Delivery{dlv("wh1", 1, t0)}, 0)
	wantNotFound(t, "EnqueueDeliveries(B, A's webhook)", err)
	_, err = s.GetDelivery(ctx(t), "pb", res[0].ID)
	wantNotFound(t, "GetDelivery(B, A's delivery)", err)
	if c := claim(t, s, "pb", t0, time.Minute, 10); len(c.Deliveries) != 0 || !c.NextDue.IsZero() {
		t.Errorf("B claimed %v", claimedEvents(c))
	}
	if ls, _ := s.ListDeliveries(ctx(t), "pb", store.DeliveryFilter{}); len(ls) != 0 {
		t.Errorf("B lists %d deliveries", len(ls))
	}
	if cnt, _ := s.CountDeliveries(ctx(t), "pb", ""); len(cnt) != 0 {
		t.Errorf("B counts %v", cnt)
	}
	if cur, _ := s.DeliveryCursor(ctx(t), "pb"); cur != 0 {
		t.Errorf("B's cursor = %d", cur)
	}
	c := claim(t, s, "pa", t0, time.Minute, 10)
	if len(c.Deliveries) != 1 {
		t.Fatalf("A's claim: %v", claimedEvents(c))
	}
	wantNotFound(t, "RecordAttempt(B, A's delivery)", s.RecordAttempt(ctx(t), "pb", res[0].ID, store.AttemptResult{Attempt: 1, Status: store.DeliveryDead}))
	record(t, s, "pa", c.Deliveries[0], store.AttemptResult{Status: store.DeliveryDead, Error: "HTTP 400"})
	wantNotFound(t, "ReplayDelivery(B, A's delivery)", s.ReplayDelivery(ctx(t), "pb", res[0].ID, t0))
	if n, _ := s.PruneDeliveries(ctx(t), "pb", t0.Add(time.Hour)); n != 0 {
		t.Errorf("B pruned %d", n)
	}
	if ws, _ := s.ListWebhooks(ctx(t), "pb", store.WebhookFilter{}); len(ws) != 1 || ws[0].ID != "wh-b" {
		t.Errorf("B's webhooks: %+v", ws)
	}
}

func testDeliveryEmptyPractice(t *testing.T, s store.Store) {
	c := ctx(t)
	checks := map[string]error{}
	checks["PutWebhook"] = s.PutWebhook(c, store.Webhook{ID: "w", App: "a", URL: "u", SealedSecret: []byte("s")})
	_, checks["GetWebhook"] = s.GetWebhook(c, "", "w")
	_, checks["ListWebhooks"] = s.ListWebhooks(c, "", store.WebhookFilter{})
	_, checks["DeliveryCursor"] = s.DeliveryCursor(c, "")
	_, checks["EnqueueDeliveries"] = s.EnqueueDeliveries(c, "", nil, 1)
	_, checks["ClaimDeliveries"] = s.ClaimDeliveries(c, "", ts(0), time.Minute, 1)
	checks["RecordAttempt"] = s.RecordAttempt(c, "", 1, store.AttemptResult{Attempt: 1, Status: store.DeliveryDead})
	_, checks["GetDelivery"] = s.GetDelivery(c, "", 1)
	_, checks["ListDeliveries"] = s.ListDeliveries(c, "", store.DeliveryFilter{})
	_, checks["CountDeliveries"] = s.CountDeliveries(c, "", "")
	checks["ReplayDelivery"] = s.ReplayDelivery(c, "", 1, ts(0))
	_, checks["PruneDeliveries"] = s.PruneDeliveries(c, "", ts(0))
	for name, err := range checks {
		if err == nil {
			t.Errorf("%s with an empty practice: no error", name)
		}
	}
}

// testDeliveryConcurrentClaims: claimers racing on the same queues never
// hold the same delivery at once, and every webhook's events are finished
// in order.
func testDeliveryConcurrentClaims(t *testing.T, s store.Store) {
	const webhooks, events, claimers = 4, 25, 4
	t0 := ts(0)
	var ds []store.Delivery
	for w := 0; w < webhooks; w++ {
		putWebhook(t, s, webhook("p1", fmt.Sprintf("wh%d", w), "app1"))
	}
	for n := int64(1); n <= events; n++ {
		for w := 0; w < webhooks; w++ {
			ds = append(ds, dlv(fmt.Sprintf("wh%d", w), n, t0))
		}
	}
	enqueue(t, s, "p1", events, ds...)

	var mu sync.Mutex
	finished := map[string][]int64{} // webhook -> seqs in the order they were finished
	var wg sync.WaitGroup
	errs := make(chan error, claimers)
	for i := 0; i < claimers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := s.ClaimDeliveries(ctx(t), "p1", t0, time.Hour, 2)
				if err != nil {
					errs <- err
					return
				}
				if len(c.Deliveries) == 0 {
					if c.NextDue.IsZero() {
						return // nothing pending at all
					}
					time.Sleep(time.Millisecond) // others hold the heads; they will finish them
					continue
				}
				for _, d := range c.Deliveries {
					mu.Lock()
					finished[d.WebhookID] = append(finished[d.WebhookID], d.Seq)
					mu.Unlock()
					if err := s.RecordAttempt(ctx(t), "p1", d.ID, store.AttemptResult{Attempt: d.Attempts, Status: store.DeliveryDelivered, At: t0}); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w := 0; w < webhooks; w++ {
		id := fmt.Sprintf("wh%d", w)
		got := finished[id]
		if len(got) != events {
			t.Errorf("%s: %d deliveries claimed, want %d (each exactly once)", id, len(got), events)
		}
		for i, seq := range got {
			if seq != int64(i+1) {
				t.Errorf("%s: claim order %v", id, got)
				break
			}
		}
	}
}
