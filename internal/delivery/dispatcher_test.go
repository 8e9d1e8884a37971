package delivery

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// TestDeliverSignedNotification: each change reaches the webhook as a
// signed, PHI-free notification that matches the change feed.
func TestDeliverSignedNotification(t *testing.T) {
	st := openStore(t, "")
	rcv := newReceiver(t, time.Now)
	d := newDispatcher(t, testOptions(st))
	w := createWebhook(t, d, rcv, "p1", "app1")
	start(t, d)

	writePatients(t, st, "p1", "pat", 2)
	// A deletion is a change too.
	if _, err := st.WriteResources(t.Context(), "p1", []store.ResourceWrite{{ResourceType: "Patient", ID: "pat-1", Deleted: true, Connection: "ehr"}}); err != nil {
		t.Fatal(err)
	}
	d.Notify("p1")
	waitFor(t, "3 deliveries", func() bool { return rcv.count() >= 3 })

	changes, err := st.Changes(t.Context(), "p1", 0, 10)
	if err != nil || len(changes) != 3 {
		t.Fatalf("change feed: %v, %v", changes, err)
	}
	hits := rcv.snapshot()
	if len(hits) != 3 {
		t.Fatalf("%d requests, want 3", len(hits))
	}
	for i, h := range hits {
		c := changes[i]
		if h.VerifyErr != nil {
			t.Errorf("request %d: signature: %v", i, h.VerifyErr)
		}
		wantID := EventID("p1", c.Seq, w.ID)
		if h.EventID != wantID || h.IdempotencyKey != wantID || h.Event.ID != wantID || h.Attempt != "1" || h.ContentType != "application/json" {
			t.Errorf("request %d headers: %+v", i, h)
		}
		ev := h.Event
		if ev.Practice != "p1" || ev.Type != "Patient" || ev.ResourceID != c.ID || ev.Version != c.Version ||
			ev.Deleted != c.Deleted || ev.Seq != c.Seq || !ev.OccurredAt.Equal(c.StoredAt) {
			t.Errorf("request %d: event %+v, change %+v", i, ev, c)
		}
		// The notification carries no resource content.
		for _, phi := range []string{"Testperson", "Secret", "1970-01-01", "birthDate"} {
			if bytes.Contains(h.Body, []byte(phi)) {
				t.Errorf("request %d body contains %q: %s", i, phi, h.Body)
			}
		}
	}
	if !hits[2].Event.Deleted || hits[2].Event.Version != 2 {
		t.Errorf("the deletion arrived as %+v", hits[2].Event)
	}
	// A captured request replayed later fails verification...
	if err := Verify(rcv.secret, hits[0].Signature, hits[0].Body, time.Now().Add(6*time.Minute), 0); !errors.Is(err, ErrStaleTimestamp) {
		t.Errorf("a request replayed 6 minutes later: %v, want ErrStaleTimestamp", err)
	}
	// ...and a tampered body at once.
	if err := Verify(rcv.secret, hits[0].Signature, bytes.Replace(hits[0].Body, []byte(`"deleted":false`), []byte(`"deleted":true`), 1), time.Now(), 0); !errors.Is(err, ErrBadSignature) {
		t.Errorf("a tampered body: %v, want ErrBadSignature", err)
	}
	waitFor(t, "3 delivered", func() bool {
		counts, err := d.Counts(t.Context(), "p1", "app1", w.ID)
		if err != nil {
			t.Fatal(err)
		}
		return counts[store.DeliveryDelivered] == 3 && len(counts) == 1
	})
}

// TestRedeliveryKeepsEventID: when an answer is lost (here: a 500 after the
// receiver processed the request) the event comes again with the same id,
// so the receiver can tell it is a repeat.
func TestRedeliveryKeepsEventID(t *testing.T) {
	st := openStore(t, "")
	rcv := newReceiver(t, time.Now)
	rcv.setRespond(func(_ context.Context, h hit, n int) (int, http.Header) {
		if h.Event.Seq == 1 && n == 1 {
			return http.StatusInternalServerError, nil
		}
		return http.StatusOK, nil
	})
	d := newDispatcher(t, testOptions(st))
	createWebhook(t, d, rcv, "p1", "app1")
	start(t, d)
	writePatients(t, st, "p1", "pat", 2)
	d.Notify("p1")
	waitFor(t, "3 requests", func() bool { return rcv.count() >= 3 })
	hits := rcv.snapshot()
	if hits[0].EventID != hits[1].EventID || hits[0].Event.Seq != 1 || hits[1].Attempt != "2" {
		t.Fatalf("retry: %v / %v", hits[0], hits[1])
	}
	for i, h := range hits {
		if h.VerifyErr != nil {
			t.Errorf("request %d: %v", i, h.VerifyErr)
		}
	}
	if got := seqs(deduped(hits)); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("deduplicated seqs %v", got)
	}
}

// TestOrderPerWebhookUnderFailures: the first event fails twice; the later
// ones of the same webhook wait for it, while another practice's webhook is
// not held up.
func TestOrderPerWebhookUnderFailures(t *testing.T) {
	st := openStore(t, "")
	slow := newReceiver(t, time.Now)
	fast := newReceiver(t, time.Now)
	release := make(chan struct{})
	var failures atomic.Int32
	slow.setRespond(func(_ context.Context, h hit, n int) (int, http.Header) {
		if h.Event.ResourceID == "a-1" && n <= 2 {
			failures.Add(1)
			if n == 2 {
				<-release // hold the second failure until the other practice is done
			}
			return http.StatusServiceUnavailable, nil
		}
		return http.StatusOK, nil
	})
	d := newDispatcher(t, testOptions(st, "p1", "p2"))
	createWebhook(t, d, slow, "p1", "app1")
	createWebhook(t, d, fast, "p2", "app1")
	start(t, d)

	writePatients(t, st, "p1", "a", 5)
	writePatients(t, st, "p2", "b", 5)
	d.Notify("p1")
	d.Notify("p2")
	// p2's webhook gets all its events while p1's head is failing.
	waitFor(t, "p2's 5 events", func() bool { return fast.count() >= 5 })
	if n := failures.Load(); n != 2 {
		t.Errorf("p1's head failed %d times before p2 finished, want 2 (it should be held on its second failure)", n)
	}
	if got := seqs(slow.snapshot()); len(got) != 2 || got[0] != got[1] {
		t.Errorf("p1's webhook got %v while its head was failing: later events must wait", got)
	}
	close(release)
	waitFor(t, "p1's events", func() bool { return slow.count() >= 7 })

	hits := slow.snapshot()
	var ids []string
	for _, h := range hits {
		ids = append(ids, h.Event.ResourceID)
	}
	if want := []string{"a-1", "a-1", "a-1", "a-2", "a-3", "a-4", "a-5"}; !slices.Equal(ids, want) {
		t.Errorf("arrival order %v, want %v", ids, want)
	}
	var bids []string
	for _, h := range fast.snapshot() {
		bids = append(bids, h.Event.ResourceID)
	}
	if want := []string{"b-1", "b-2", "b-3", "b-4", "b-5"}; !slices.Equal(bids, want) {
		t.Errorf("p2 arrival order %v, want %v", bids, want)
	}
}

// TestBackoffSchedule: with a fake clock and no jitter the retries come at
// base, 2×base, 4×base ... capped, and never before they are due.
func TestBackoffSchedule(t *testing.T) {
	st := openStore(t, "")
	clk := newFakeClock()
	rcv := newReceiver(t, clk.Now)
	rcv.setRespond(func(context.Context, hit, int) (int, http.Header) { return http.StatusBadGateway, nil })
	var seen attempts
	opts := testOptions(st)
	opts.Now, opts.Jitter = clk.Now, func(d time.Duration) time.Duration { return d }
	opts.BaseDelay, opts.MaxDelay = 10*time.Second, 80*time.Second
	opts.OnAttempt = seen.add
	d := newDispatcher(t, opts)
	createWebhook(t, d, rcv, "p1", "app1")
	start(t, d)
	writePatients(t, st, "p1", "pat", 1)
	d.Notify("p1")

	t0 := clk.Now()
	wantDelays := []time.Duration{10, 20, 40, 80, 80, 80}
	at := t0
	for i, delay := range wantDelays {
		waitFor(t, "attempt outcome", func() bool { return seen.len() > i })
		a := seen.list()[i]
		if a.Attempt != i+1 || a.Status != store.DeliveryPending || a.HTTPStatus != http.StatusBadGateway || a.Error != "HTTP 502 Bad Gateway" {
			t.Fatalf("attempt %d: %+v", i+1, a)
		}
		if want := at.Add(delay * time.Second); !a.NextAttempt.Equal(want) {
			t.Fatalf("attempt %d: next attempt %s after the previous, want %ds", i+1, a.NextAttempt.Sub(at), delay)
		}
		// One second early: nothing is sent.
		clk.Set(a.NextAttempt.Add(-time.Second))
		time.Sleep(4 * opts.PollInterval)
		if n := rcv.count(); n != i+1 {
			t.Fatalf("%d requests before the retry was due, want %d", n, i+1)
		}
		at = a.NextAttempt
		clk.Set(at)
	}
	waitFor(t, "the last retry", func() bool { return rcv.count() == len(wantDelays)+1 })
	for i, h := range rcv.snapshot() {
		if h.VerifyErr != nil {
			t.Errorf("request %d: %v", i, h.VerifyErr)
		}
	}
}

// TestRetryAfter: a Retry-After header (seconds or a date) replaces the backoff.
func TestRetryAfter(t *testing.T) {
	st := openStore(t, "")
	clk := newFakeClock()
	rcv := newReceiver(t, clk.Now)
	rcv.setRespond(func(_ context.Context, _ hit, n int) (int, http.Header) {
		switch n {
		case 1:
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"120"}}
		case 2:
			return http.StatusServiceUnavailable, http.Header{"Retry-After": {clk.Now().Add(time.Hour).Format(http.TimeFormat)}}
		}
		return http.StatusNoContent, nil
	})
	var seen attempts
	opts := testOptions(st)
	opts.Now, opts.Jitter, opts.OnAttempt = clk.Now, func(d time.Duration) time.Duration { return d }, seen.add
	opts.BaseDelay = 10 * time.Second
	d := newDispatcher(t, opts)
	createWebhook(t, d, rcv, "p1", "app1")
	start(t, d)
	writePatients(t, st, "p1", "pat", 1)
	d.Notify("p1")

	waitFor(t, "first attempt", func() bool { return seen.len() >= 1 })
	a := seen.list()[0]
	if a.HTTPStatus != 429 || !a.NextAttempt.Equal(clk.Now().Add(120*time.Second)) {
		t.Fatalf("after 429 Retry-After 120: %+v (now %s)", a, clk.Now())
	}
	clk.Set(a.NextAttempt)
	waitFor(t, "second attempt", func() bool { return seen.len() >= 2 })
	a = seen.list()[1]
	if a.HTTPStatus != 503 || !a.NextAttempt.Equal(clk.Now().Add(time.Hour)) {
		t.Fatalf("after 503 with a Retry-After date: %+v (now %s)", a, clk.Now())
	}
	clk.Set(a.NextAttempt)
	waitFor(t, "delivery", func() bool { return seen.len() >= 3 })
	if a := seen.list()[2]; a.Status != store.DeliveryDelivered || a.HTTPStatus != 204 {
		t.Fatalf("third attempt: %+v", a)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"0":                             0,
		"-5":                            0,
		"30":                            30 * time.Second,
		" 7 ":                           7 * time.Second,
		"soon":                          0,
		"Mon, 02 Mar 2026 09:02:00 GMT": 2 * time.Minute,
		"Mon, 02 Mar 2026 08:00:00 GMT": 0, // in the past
		"99999999999":                   30 * 24 * time.Hour,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", v, got, want)
		}
	}
}

// TestRefusedIsDead: a 4xx (but 408/429) or a redirect makes the event dead
// at once, with the status as its reason, and the next event goes; 408 is
// retried.
func TestRefusedIsDead(t *testing.T) {
	st := openStore(t, "")
	rcv := newReceiver(t, time.Now)
	answers := map[string]int{"pat-1": 404, "pat-2": 400, "pat-3": 301, "pat-4": 410}
	rcv.setRespond(func(_ context.Context, h hit, n int) (int, http.Header) {
		if h.Event.ResourceID == "pat-5" && n == 1 {
			return http.StatusRequestTimeout, nil
		}
		if c, ok := answers[h.Event.ResourceID]; ok {
			return c, nil
		}
		return http.StatusOK, nil
	})
	var seen attempts
	opts := testOptions(st)
	opts.OnAttempt = seen.add
	d := newDispatcher(t, opts)
	w := createWebhook(t, d, rcv, "p1", "app1")
	start(t, d)
	writePatients(t, st, "p1", "pat", 6)
	d.Notify("p1")
	waitFor(t, "7 requests", func() bool { return rcv.count() >= 7 })

	var ids []string
	for _, h := range rcv.snapshot() {
		ids = append(ids, h.Event.ResourceID)
	}
	if want := []string{"pat-1", "pat-2", "pat-3", "pat-4", "pat-5", "pat-5", "pat-6"}; !slices.Equal(ids, want) {
		t.Errorf("requests %v, want %v (each refused event once, 408 retried)", ids, want)
	}
	waitFor(t, "7 outcomes", func() bool { return seen.len() >= 7 })
	dead, err := d.DeadLetters(t.Context(), "p1", "app1", w.ID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[int64]string{}
	for _, dl := range dead {
		reasons[dl.Seq] = dl.LastError
		if dl.Attempts != 1 || dl.Status != store.DeliveryDead {
			t.Errorf("dead letter %+v", dl)
		}
	}
	want := map[int64]string{
		1: "HTTP 404 Not Found: refused by the receiver",
		2: "HTTP 400 Bad Request: refused by the receiver",
		3: "HTTP 301 Moved Permanently: redirects are not followed; register the final URL",
		4: "HTTP 410 Gone: refused by the receiver",
	}
	if len(reasons) != len(want) {
		t.Errorf("dead letters %v, want %v", reasons, want)
	}
	for seq, r := range want {
		if reasons[seq] != r {
			t.Errorf("dead letter seq %d: reason %q, want %q", seq, reasons[seq], r)
		}
	}
	if len(dead) == 4 && !(dead[0].Seq > dead[3].Seq) {
		t.Errorf("dead letters not newest first: %v", dead)
	}
}

// TestGiveUpAfterMaxAge: a receiver that is down for good gets its last
// attempt exactly MaxAge after the first; then the event is dead and the
// next one goes.
func TestGiveUpAfterMaxAge(t *testing.T) {
	st := openStore(t, "")
	clk := newFakeClock()
	rcv := newReceiver(t, clk.Now)
	rcv.setRespond(func(_ context.Context, h hit, _ int) (int, http.Header) {
		if h.Event.Seq == 1 {
			return http.StatusServiceUnavailable, nil
		}
		return http.StatusOK, nil
	})
	var seen attempts
	opts := testOptions(st)
	opts.Now, opts.Jitter, opts.OnAttempt = clk.Now, func(d time.Duration) time.Duration { return d }, seen.add
	opts.BaseDelay, opts.MaxDelay = time.Hour, 16*time.Hour // MaxAge: the default 72 h
	d := newDispatcher(t, opts)
	createWebhook(t, d, rcv, "p1", "app1")
	start(t, d)
	writePatients(t, st, "p1", "pat", 2)
	d.Notify("p1")

	t0 := clk.Now()
	// Attempts at 0, 1, 3, 7, 15, 31, 47, 63 h, and the last at 72 h.
	wantAt := []time.Duration{0, 1, 3, 7, 15, 31, 47, 63, 72}
	for i, h := range wantAt {
		waitFor(t, "an attempt", func() bool { return seen.len() > i })
		a := seen.list()[i]
		if a.Seq != 1 {
			t.Fatalf("attempt %d was for seq %d: the later event did not wait", i+1, a.Seq)
		}
		if got := clk.Now().Sub(t0); got != h*time.Hour {
			t.Fatalf("attempt %d made at +%s, want +%dh", i+1, got, h)
		}
		if i < len(wantAt)-1 {
			if a.Status != store.DeliveryPending || !a.NextAttempt.Equal(t0.Add(wantAt[i+1]*time.Hour)) {
				t.Fatalf("attempt %d: %+v, want a retry at +%dh", i+1, a, wantAt[i+1])
			}
			clk.Set(a.NextAttempt)
			continue
		}
		if a.Status != store.DeliveryDead || !strings.HasPrefix(a.Error, "gave up 72h0m0s after the first attempt; last: HTTP 503") {
			t.Fatalf("last attempt: %+v", a)
		}
	}
	waitFor(t, "the next event", func() bool { return seen.len() > len(wantAt) })
	if a := seen.list()[len(wantAt)]; a.Seq != 2 || a.Status != store.DeliveryDelivered {
		t.Fatalf("after the dead event: %+v", a)
	}
}

// TestDeadLetterReplay: a dead event, once the receiver is fixed, is
// delivered by a replay; only its app can replay it.
func TestDeadLetterReplay(t *testing.T) {
	st := openStore(t, "")
	rcv := newReceiver(t, time.Now)
	var broken atomic.Bool
	broken.Store(true)
	rcv.setRespond(func(context.Context, hit, int) (int, http.Header) {
		if broken.Load() {
			return http.StatusUnprocessableEntity, nil
		}
		return http.StatusOK, nil
	})
	var seen attempts
	opts := testOptions(st)
	opts.OnAttempt = seen.add
	d := newDispatcher(t, opts)
	w := createWebhook(t, d, rcv, "p1", "app1")
	start(t, d)
	writePatients(t, st, "p1", "pat", 1)
	d.Notify("p1")
	waitFor(t, "the event to die", func() bool { return seen.len() >= 1 })
	dead, err := d.DeadLetters(t.Context(), "p1", "app1", "", 0, 0)
	if err != nil || len(dead) != 1 || dead[0].LastError != "HTTP 422 Unprocessable Entity: refused by the receiver" {
		t.Fatalf("dead letters: %+v, %v", dead, err)
	}
	if other, _ := d.DeadLetters(t.Context(), "p1", "app2", "", 0, 0); len(other) != 0 {
		t.Errorf("another app sees the dead letters: %+v", other)
	}
	if err := d.Replay(t.Context(), "p1", "app2", dead[0].ID); !errors.Is(err, ErrNotFound) || !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Replay by another app: %v, want ErrNotFound", err)
	}
	if err := d.Replay(t.Context(), "p2", "app1", dead[0].ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Replay in another practice: %v, want ErrNotFound", err)
	}

	broken.Store(false)
	if err := d.Replay(t.Context(), "p1", "app1", dead[0].ID); err != nil {
		t.Fatalf("Replay: %v", err)
	}
	waitFor(t, "the replayed delivery", func() bool { return seen.len() >= 2 })
	a := seen.list()[1]
	if a.Status != store.DeliveryDelivered || a.DeliveryID != dead[0].ID || a.Attempt != 1 {
		t.Fatalf("after replay: %+v", a)
	}
	hits := rcv.snapshot()
	if len(hits) != 2 || hits[0].EventID != hits[1].EventID || hits[1].VerifyErr != nil {
		t.Fatalf("requests: %+v", hits)
	}
	if err := d.Replay(t.Context(), "p1", "app1", dead[0].ID); !errors.Is(err, ErrInvalid) {
		t.Errorf("Replay of a delivered event: %v, want ErrInvalid", err)
	}
	if left, _ := d.DeadLetters(t.Context(), "p1", "app1", w.ID, 0, 0); len(left) != 0 {
		t.Errorf("dead letters after replay: %+v", left)
	}
}

// TestIdempotentEnqueue: reading the same part of the feed again (as after
// a crash before the cursor moved) enqueues nothing twice.
func TestIdempotentEnqueue(t *testing.T) {
	st := openStore(t, "")
	rcv := newReceiver(t, time.Now)
	d := newDispatcher(t, testOptions(st))
	w := createWebhook(t, d, rcv, "p1", "app1")
	writePatients(t, st, "p1", "pat", 4)
	ctx := t.Context()
	c, err := d.feedPractice(ctx, "p1", 0)
	if err != nil || c != 4 {
		t.Fatalf("feedPractice = %d, %v", c, err)
	}
	if cur, _ := st.DeliveryCursor(ctx, "p1"); cur != 4 {
		t.Errorf("stored cursor %d, want 4", cur)
	}
	before, _ := st.ListDeliveries(ctx, "p1", store.DeliveryFilter{})
	// Again from the start, and from the middle.
	for _, from := range []int64{0, 2} {
		if _, err := d.feedPractice(ctx, "p1", from); err != nil {
			t.Fatal(err)
		}
	}
	after, _ := st.ListDeliveries(ctx, "p1", store.DeliveryFilter{})
	if len(before) != 4 || len(after) != 4 {
		t.Fatalf("%d deliveries before, %d after re-reading the feed; want 4 and 4", len(before), len(after))
	}
	for i := range after {
		if after[i].ID != before[i].ID || after[i].EventID != EventID("p1", after[i].Seq, w.ID) {
			t.Errorf("delivery %d changed: %+v / %+v", i, before[i], after[i])
		}
	}
}

// TestRestartDeliversAll: a dispatcher stopped in the middle of a request
// (which the receiver had processed) and a new one on the same SQLite file
// deliver every event at least once, in order; the receiver, de-duplicating
// by event id, sees no gap.
func TestRestartDeliversAll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "restart.db")
	st1 := openStore(t, path)
	rcv := newReceiver(t, time.Now)
	inFlight := make(chan struct{})
	var once atomic.Bool
	rcv.setRespond(func(ctx context.Context, h hit, n int) (int, http.Header) {
		if h.Event.Seq == 20 && once.CompareAndSwap(false, true) {
			close(inFlight)
			<-ctx.Done() // processed, but the answer never leaves
			return http.StatusOK, nil
		}
		return http.StatusOK, nil
	})
	d1 := newDispatcher(t, testOptions(st1))
	w := createWebhook(t, d1, rcv, "p1", "app1")
	stop1 := start(t, d1)
	writePatients(t, st1, "p1", "a", 40)
	d1.Notify("p1")
	select {
	case <-inFlight:
	case <-time.After(30 * time.Second):
		t.Fatal("the 20th event never arrived")
	}
	stop1()
	if err := st1.Close(); err != nil {
		t.Fatal(err)
	}
	got1 := rcv.count()
	if got1 != 20 {
		t.Fatalf("%d requests before the stop, want 20 (the 20th in flight)", got1)
	}

	st2 := openStore(t, path)
	d2 := newDispatcher(t, testOptions(st2))
	start(t, d2)
	writePatients(t, st2, "p1", "b", 10) // changes while it was down, too
	d2.Notify("p1")
	waitFor(t, "all 50 events", func() bool { return len(deduped(rcv.snapshot())) >= 50 })

	hits := rcv.snapshot()
	for i, h := range hits {
		if h.VerifyErr != nil {
			t.Errorf("request %d: %v", i, h.VerifyErr)
		}
	}
	// Every request's seq is >= the one before, but for one repeat.
	got := seqs(hits)
	for i := 1; i < len(got); i++ {
		if got[i] < got[i-1] {
			t.Fatalf("out of order: %v", got)
		}
	}
	uniq := seqs(deduped(hits))
	for i, s := range uniq {
		if s != int64(i+1) {
			t.Fatalf("after de-duplication: %v, want 1..50 without gaps", uniq)
		}
	}
	if len(hits) != 51 || got[19] != 20 || got[20] != 20 {
		t.Errorf("%d requests (%v), want 51 with event 20 twice", len(hits), got)
	}
	// The last outcome is recorded just after the receiver answered.
	waitFor(t, "50 delivered", func() bool {
		counts, _ := st2.CountDeliveries(t.Context(), "p1", w.ID)
		return counts[store.DeliveryDelivered] == 50 && len(counts) == 1
	})
}

// failRecords is a store whose RecordAttempt fails while failing is set,
// as if the process died between the answer and the store update.
type failRecords struct {
	Store
	failing atomic.Bool
}

func (f *failRecords) RecordAttempt(ctx context.Context, practice string, id int64, r store.AttemptResult) error {
	if f.failing.Load() {
		return store.ErrDeliveryState // not retried by the dispatcher
	}
	return f.Store.RecordAttempt(ctx, practice, id, r)
}

// TestLostClaimIsRetriedAfterLease: a delivery whose outcome never reached
// the store (a crash) is sent again by another dispatcher once the lease ends.
func TestLostClaimIsRetriedAfterLease(t *testing.T) {
	st := openStore(t, "")
	clk := newFakeClock()
	rcv := newReceiver(t, clk.Now)
	fs := &failRecords{Store: st}
	fs.failing.Store(true)
	opts := testOptions(fs)
	opts.Now = clk.Now
	opts.RequestTimeout, opts.Lease = 5*time.Second, time.Minute
	d1 := newDispatcher(t, opts)
	createWebhook(t, d1, rcv, "p1", "app1")
	stop1 := start(t, d1)
	writePatients(t, st, "p1", "pat", 2)
	d1.Notify("p1")
	waitFor(t, "the first request", func() bool { return rcv.count() >= 1 })
	time.Sleep(10 * opts.PollInterval)
	stop1()
	if n := rcv.count(); n != 1 {
		t.Fatalf("%d requests: the second event went while the first was unrecorded", n)
	}

	fs.failing.Store(false)
	d2 := newDispatcher(t, opts)
	start(t, d2)
	time.Sleep(10 * opts.PollInterval)
	if n := rcv.count(); n != 1 {
		t.Fatalf("%d requests before the lease ended, want 1", n)
	}
	clk.Set(clk.Now().Add(time.Minute))
	waitFor(t, "both events", func() bool { return rcv.count() >= 3 })
	if got := seqs(rcv.snapshot()); !slices.Equal(got, []int64{1, 1, 2}) {
		t.Errorf("requests %v, want [1 1 2]", got)
	}
}

// TestWebhookManagement: URL rules, types filter, deactivation, secret
// rotation, ownership, and the secret sealed at rest.
func TestWebhookManagement(t *testing.T) {
	path := filepath.Join(t.TempDir(), "manage.db")
	st := openStore(t, path)
	rcv := newReceiver(t, time.Now)
	d := newDispatcher(t, testOptions(st))
	ctx := t.Context()

	for _, bad := range []WebhookSpec{
		{Practice: "p1", App: "app1", URL: "http://example.com/hook"},
		{Practice: "p1", App: "app1", URL: "ftp://example.com/hook"},
		{Practice: "p1", App: "app1", URL: "https://user:pw@example.com/hook"},
		{Practice: "p1", App: "app1", URL: "/relative"},
		{Practice: "p1", App: "app1", URL: "https://example.com/hook#x"},
		{Practice: "p9", App: "app1", URL: "https://example.com/hook"},
		{Practice: "p1", App: "", URL: "https://example.com/hook"},
		{Practice: "p1", App: "app1", URL: "https://example.com/hook", Types: []string{"Patient,Observation"}},
	} {
		if _, _, err := d.CreateWebhook(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateWebhook(%+v): %v, want ErrInvalid", bad, err)
		}
	}
	ext, _, err := d.CreateWebhook(ctx, WebhookSpec{Practice: "p1", App: "app3", URL: "https://example.com/hook"})
	if err != nil {
		t.Fatalf("https URL refused: %v", err)
	}
	// Deactivated at once: this test sends nothing off the machine.
	inactive := false
	if _, err := d.UpdateWebhook(ctx, "p1", "app3", ext.ID, WebhookChange{Active: &inactive}); err != nil {
		t.Fatal(err)
	}

	w, secret, err := d.CreateWebhook(ctx, WebhookSpec{Practice: "p1", App: "app1", URL: rcv.srv.URL + "/hook", Types: []string{"Appointment"}})
	if err != nil {
		t.Fatal(err)
	}
	rcv.setSecret(secret)
	if !strings.HasPrefix(secret, secretPrefix) || len(secret) < 40 || !w.Active || !slices.Equal(w.Types, []string{"Appointment"}) || w.App != "app1" {
		t.Fatalf("created %+v, secret length %d", w, len(secret))
	}
	// Sealed at rest: neither the store row nor the database file holds it.
	row, err := st.GetWebhook(ctx, "p1", w.ID)
	if err != nil || bytes.Contains(row.SealedSecret, []byte(secret)) {
		t.Fatalf("stored webhook: %v", err)
	}
	if err := st.Close(); err != nil { // fold the WAL into the file
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil || !bytes.Contains(raw, []byte(w.ID)) || bytes.Contains(raw, []byte(secret[len(secretPrefix):])) {
		t.Fatalf("database file: read %v; the webhook id must be there, the secret must not", err)
	}
	st = openStore(t, path)
	opts := testOptions(st)
	d = newDispatcher(t, opts)

	// Ownership: another app neither sees nor changes it.
	if _, err := d.Webhook(ctx, "p1", "app2", w.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Webhook(app2): %v", err)
	}
	if ws, _ := d.Webhooks(ctx, "p1", "app2"); len(ws) != 0 {
		t.Errorf("Webhooks(app2) = %+v", ws)
	}
	off := false
	if _, err := d.UpdateWebhook(ctx, "p1", "app2", w.ID, WebhookChange{Active: &off}); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateWebhook(app2): %v", err)
	}
	if _, err := d.RotateSecret(ctx, "p1", "app2", w.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("RotateSecret(app2): %v", err)
	}

	start(t, d)
	// Types: only Appointments are delivered.
	writePatients(t, st, "p1", "pat", 2)
	appt := func(id string) {
		t.Helper()
		if _, err := st.WriteResources(ctx, "p1", []store.ResourceWrite{{ResourceType: "Appointment", ID: id, Connection: "ehr",
			Body: []byte(`{"resourceType":"Appointment","id":"` + id + `","status":"booked"}`)}}); err != nil {
			t.Fatal(err)
		}
		d.Notify("p1")
	}
	appt("ap-1")
	waitFor(t, "the appointment", func() bool { return rcv.count() >= 1 })
	if h := rcv.snapshot()[0]; h.Event.Type != "Appointment" || h.Event.ResourceID != "ap-1" || h.VerifyErr != nil {
		t.Fatalf("first request: %+v", h)
	}

	// Rotation: later requests verify with the new secret only.
	newSecret, err := d.RotateSecret(ctx, "p1", "app1", w.ID)
	if err != nil || newSecret == secret {
		t.Fatalf("RotateSecret: %v", err)
	}
	rcv.setSecret(newSecret)
	appt("ap-2")
	waitFor(t, "the second appointment", func() bool { return rcv.count() >= 2 })
	h := rcv.snapshot()[1]
	if h.VerifyErr != nil {
		t.Errorf("after rotation: %v", h.VerifyErr)
	}
	if err := Verify([]byte(secret), h.Signature, h.Body, time.Now(), 0); !errors.Is(err, ErrBadSignature) {
		t.Errorf("the old secret still verifies: %v", err)
	}

	// Deactivated: new events are not delivered; reactivated, only those
	// of changes read while it was active are.
	if _, err := d.UpdateWebhook(ctx, "p1", "app1", w.ID, WebhookChange{Active: &off}); err != nil {
		t.Fatal(err)
	}
	appt("ap-3")
	waitFor(t, "the feed to pass ap-3", func() bool {
		c, _ := st.DeliveryCursor(ctx, "p1")
		ch, _ := st.Changes(ctx, "p1", 0, 100)
		return len(ch) > 0 && c == ch[len(ch)-1].Seq
	})
	on, all := true, []string{}
	if _, err := d.UpdateWebhook(ctx, "p1", "app1", w.ID, WebhookChange{Active: &on, Types: &all}); err != nil {
		t.Fatal(err)
	}
	writePatients(t, st, "p1", "late", 1)
	d.Notify("p1")
	waitFor(t, "the patient after reactivation", func() bool { return rcv.count() >= 3 })
	time.Sleep(10 * opts.PollInterval)
	var ids []string
	for _, h := range rcv.snapshot() {
		ids = append(ids, h.Event.ResourceID)
	}
	if want := []string{"ap-1", "ap-2", "late-1"}; !slices.Equal(ids, want) {
		t.Errorf("delivered %v, want %v", ids, want)
	}
	got, err := d.Webhooks(ctx, "p1", "app1")
	if err != nil || len(got) != 1 || !got[0].Active || got[0].Types != nil {
		t.Errorf("Webhooks(app1) = %+v, %v", got, err)
	}
}

// TestWrongSecretKeyRetries: secrets sealed under another key cannot sign;
// the delivery is retried (not dead) and the reason says why.
func TestWrongSecretKeyRetries(t *testing.T) {
	st := openStore(t, "")
	rcv := newReceiver(t, time.Now)
	d := newDispatcher(t, testOptions(st))
	createWebhook(t, d, rcv, "p1", "app1")
	var seen attempts
	opts := testOptions(st)
	opts.SecretKey = bytes.Repeat([]byte{7}, SecretKeySize)
	opts.OnAttempt = seen.add
	other := newDispatcher(t, opts)
	start(t, other)
	writePatients(t, st, "p1", "pat", 1)
	other.Notify("p1")
	waitFor(t, "two attempts", func() bool { return seen.len() >= 2 })
	for _, a := range seen.list()[:2] {
		if a.Status != store.DeliveryPending || a.Error != errUnseal.Error() {
			t.Errorf("attempt: %+v", a)
		}
	}
	if n := rcv.count(); n != 0 {
		t.Errorf("%d requests sent without a usable secret", n)
	}
}

func TestNewValidates(t *testing.T) {
	st := openStore(t, "")
	for name, o := range map[string]Options{
		"no store":        {SecretKey: testKey},
		"short key":       {Store: st, SecretKey: []byte("k")},
		"negative":        {Store: st, SecretKey: testKey, BaseDelay: -1},
		"lease too short": {Store: st, SecretKey: testKey, RequestTimeout: time.Minute, Lease: time.Second},
		"empty practice":  {Store: st, SecretKey: testKey, Practices: []string{""}},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%s): no error", name)
		}
	}
	d := newDispatcher(t, testOptions(st))
	stop := start(t, d)
	stop()
	if err := d.Run(t.Context()); err == nil {
		t.Errorf("a second Run: no error")
	}
}
