package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// The write-back intent store (store.IntentStore) tests. Contract details
// the interface leaves open and these tests fix:
//   - Seq increases in creation order; ListIntents returns newest first.
//   - ClaimIntents returns heads earliest NextAttempt first, then by Seq.
//   - Differences come back nil when empty; attempt Headers nil when empty.
//   - UpdateIntent and ReplayIntent: ErrNotFound for an intent not in the
//     practice, ErrIntentState for one in the wrong state or claim.

func runIntent(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"IntentCreateIdempotent", testIntentCreate},
		{"IntentClaimOrder", testIntentClaimOrder},
		{"IntentLease", testIntentLease},
		{"IntentUpdate", testIntentUpdate},
		{"IntentReplay", testIntentReplay},
		{"IntentReplayBeforeLaterIntent", testIntentReplayBeforeLater},
		{"IntentRecordAttempts", testIntentRecordAttempts},
		{"IntentUpdateMany", testIntentUpdateMany},
		{"IntentListCount", testIntentListCount},
		{"IntentAttemptsLog", testIntentAttempts},
		{"IntentTenantIsolation", testIntentTenantIsolation},
		{"IntentEmptyPractice", testIntentEmptyPractice},
		{"IntentConcurrentClaims", testIntentConcurrentClaims},
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

func intent(practice, id, patient string, at time.Time) store.Intent {
	return store.Intent{Practice: practice, ID: id, App: "app1", IdempotencyKey: "key-" + id, RequestHash: "h-" + id,
		Kind: "note.create", PatientRef: patient, TargetType: "DocumentReference",
		Body: []byte(`{"resourceType":"DocumentReference"}`), VendorBody: []byte(`{"resourceType":"DocumentReference","status":"current"}`),
		ConflictPolicy: store.ConflictFail, NextAttempt: at, CreatedAt: at}
}

func createIntent(t *testing.T, s store.Store, in store.Intent) store.Intent {
	t.Helper()
	out, created, err := s.CreateIntent(ctx(t), in)
	if err != nil {
		t.Fatalf("CreateIntent %s: %v", in.ID, err)
	}
	if !created {
		t.Fatalf("CreateIntent %s: not created", in.ID)
	}
	return out
}

func claimIntents(t *testing.T, s store.Store, practice string, now time.Time, lease time.Duration, limit int) store.IntentClaim {
	t.Helper()
	c, err := s.ClaimIntents(ctx(t), practice, now, lease, limit)
	if err != nil {
		t.Fatalf("ClaimIntents: %v", err)
	}
	return c
}

func claimedIDs(c store.IntentClaim) []string {
	var out []string
	for _, in := range c.Intents {
		out = append(out, in.ID)
	}
	return out
}

func updateIntent(t *testing.T, s store.Store, in store.Intent, u store.IntentUpdate) store.Intent {
	t.Helper()
	u.Attempt = in.Attempts
	out, err := s.UpdateIntent(ctx(t), in.Practice, in.ID, u)
	if err != nil {
		t.Fatalf("UpdateIntent %s: %v", in.ID, err)
	}
	return out
}

func testIntentCreate(t *testing.T, s store.Store) {
	t0 := ts(0)
	in := intent("p1", "i1", "Patient/1", t0)
	in.TargetID, in.BaseVersion = "", ""
	got := createIntent(t, s, in)
	if got.Seq <= 0 || got.Status != store.IntentAccepted || got.Attempts != 0 || !got.NextAttempt.Equal(t0) ||
		got.App != "app1" || got.IdempotencyKey != "key-i1" || got.RequestHash != "h-i1" || got.PatientRef != "Patient/1" ||
		string(got.VendorBody) != string(in.VendorBody) || string(got.Body) != string(in.Body) || got.ConflictPolicy != store.ConflictFail ||
		!got.CreatedAt.Equal(t0) || got.UpdatedAt.IsZero() || !got.FinishedAt.IsZero() || got.Differences != nil {
		t.Errorf("created intent: %+v", got)
	}
	// The same key again: the first intent, nothing stored.
	again := intent("p1", "i1-other-id", "Patient/2", t0)
	again.IdempotencyKey = "key-i1"
	dup, created, err := s.CreateIntent(ctx(t), again)
	if err != nil || created || dup.ID != "i1" || dup.Seq != got.Seq || dup.PatientRef != "Patient/1" {
		t.Fatalf("same key: created=%v %+v %v", created, dup, err)
	}
	if _, err := s.GetIntent(ctx(t), "p1", "i1-other-id"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the duplicate's id was stored: %v", err)
	}
	// The same key for another app is another intent.
	other := intent("p1", "i2", "Patient/1", t0)
	other.App, other.IdempotencyKey = "app2", "key-i1"
	o := createIntent(t, s, other)
	if o.Seq <= got.Seq {
		t.Errorf("seq %d after %d", o.Seq, got.Seq)
	}
	if k, err := s.GetIntentByKey(ctx(t), "p1", "app2", "key-i1"); err != nil || k.ID != "i2" {
		t.Errorf("by key: %+v %v", k, err)
	}
	if _, err := s.GetIntentByKey(ctx(t), "p1", "app3", "key-i1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown key: %v", err)
	}
	// The same id twice (another key) is refused.
	sameID := intent("p1", "i1", "", t0)
	sameID.IdempotencyKey = "fresh"
	if _, _, err := s.CreateIntent(ctx(t), sameID); err == nil {
		t.Error("a second intent with the same id was accepted")
	}
	bad := []func(*store.Intent){
		func(i *store.Intent) { i.ID = "" },
		func(i *store.Intent) { i.App = "" },
		func(i *store.Intent) { i.IdempotencyKey = "" },
		func(i *store.Intent) { i.Kind = "" },
		func(i *store.Intent) { i.TargetType = "" },
		func(i *store.Intent) { i.ConflictPolicy = "sometimes" },
	}
	for n, mut := range bad {
		b := intent("p1", fmt.Sprintf("bad%d", n), "", t0)
		mut(&b)
		if _, _, err := s.CreateIntent(ctx(t), b); err == nil {
			t.Errorf("invalid intent %d accepted", n)
		}
	}
	// A missing policy defaults to fail.
	def := intent("p1", "i3", "", t0)
	def.ConflictPolicy = ""
	if d := createIntent(t, s, def); d.ConflictPolicy != store.ConflictFail {
		t.Errorf("default policy %q", d.ConflictPolicy)
	}
}

func testIntentClaimOrder(t *testing.T, s store.Store) {
	t0 := ts(0)
	a1 := createIntent(t, s, intent("p1", "a1", "Patient/a", t0.Add(2*time.Second)))
	createIntent(t, s, intent("p1", "a2", "Patient/a", t0))
	createIntent(t, s, intent("p1", "b1", "Patient/b", t0.Add(time.Second)))
	createIntent(t, s, intent("p1", "n1", "", t0.Add(3*time.Second)))
	createIntent(t, s, intent("p1", "n2", "", t0.Add(3*time.Second)))
	createIntent(t, s, intent("p1", "late", "Patient/c", t0.Add(time.Hour)))

	// Heads only: a2 waits behind a1 although it is due earlier.
	c := claimIntents(t, s, "p1", t0.Add(5*time.Second), time.Minute, 10)
	if got := claimedIDs(c); !slices.Equal(got, []string{"b1", "a1", "n1", "n2"}) {
		t.Fatalf("claimed %v, want [b1 a1 n1 n2]", got)
	}
	for _, in := range c.Intents {
		if in.Status != store.IntentSending || in.Attempts != 1 || !in.FirstAttempt.Equal(t0.Add(5*time.Second)) ||
			!in.NextAttempt.Equal(t0.Add(5*time.Second+time.Minute)) {
			t.Errorf("claimed %s: %+v", in.ID, in)
		}
	}
	if !c.NextDue.Equal(t0.Add(time.Hour)) {
		t.Errorf("NextDue %v, want the late intent's", c.NextDue)
	}
	// Nothing more is due while the leases run.
	if c2 := claimIntents(t, s, "p1", t0.Add(10*time.Second), time.Minute, 10); len(c2.Intents) != 0 ||
		!c2.NextDue.Equal(t0.Add(5*time.Second+time.Minute)) {
		t.Errorf("second claim %v next %v", claimedIDs(c2), c2.NextDue)
	}
	// a1 sent (still leased), then final: a2 becomes the head.
	var a1c store.Intent
	for _, in := range c.Intents {
		if in.ID == a1.ID {
			a1c = in
		}
	}
	a1c = updateIntent(t, s, a1c, store.IntentUpdate{Status: store.IntentSent, ExternalID: "doc-1", ExternalVersion: "1"})
	if c3 := claimIntents(t, s, "p1", t0.Add(11*time.Second), time.Minute, 10); len(c3.Intents) != 0 {
		t.Errorf("a sent head let %v through", claimedIDs(c3))
	}
	updateIntent(t, s, a1c, store.IntentUpdate{Status: store.IntentConfirmed})
	c4 := claimIntents(t, s, "p1", t0.Add(12*time.Second), time.Minute, 10)
	if got := claimedIDs(c4); !slices.Equal(got, []string{"a2"}) {
		t.Errorf("after a1 is final: claimed %v, want [a2]", got)
	}
	// The limit bounds a claim.
	if c5 := claimIntents(t, s, "p1", t0.Add(2*time.Hour), time.Minute, 1); len(c5.Intents) != 1 {
		t.Errorf("limit 1 claimed %v", claimedIDs(c5))
	}
	if c6 := claimIntents(t, s, "p1", t0.Add(2*time.Hour), time.Minute, 0); len(c6.Intents) != 0 {
		t.Errorf("limit 0 claimed %v", claimedIDs(c6))
	}
	if _, err := s.ClaimIntents(ctx(t), "p1", t0, 0, 1); err == nil {
		t.Error("a zero lease was accepted")
	}
}

func testIntentLease(t *testing.T, s store.Store) {
	t0 := ts(0)
	createIntent(t, s, intent("p1", "i1", "Patient/1", t0))
	c := claimIntents(t, s, "p1", t0, time.Minute, 5)
	if len(c.Intents) != 1 {
		t.Fatalf("claimed %v", claimedIDs(c))
	}
	first := c.Intents[0]
	// The executor died: the lease ends, the intent is claimed again.
	c2 := claimIntents(t, s, "p1", t0.Add(time.Minute), time.Minute, 5)
	if len(c2.Intents) != 1 || c2.Intents[0].Attempts != 2 || !c2.Intents[0].FirstAttempt.Equal(t0) || c2.Intents[0].Status != store.IntentSending {
		t.Fatalf("reclaim: %+v", c2.Intents)
	}
	// The first claim's late update is refused.
	_, err := s.UpdateIntent(ctx(t), "p1", "i1", store.IntentUpdate{Attempt: first.Attempts, Status: store.IntentConfirmed})
	if !errors.Is(err, store.ErrIntentState) {
		t.Errorf("stale claim's update: %v, want ErrIntentState", err)
	}
	if _, err := s.UpdateIntent(ctx(t), "p1", "nope", store.IntentUpdate{Attempt: 1, Status: store.IntentConfirmed}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown intent: %v", err)
	}
	// A sent intent stays sent when claimed again.
	cur := updateIntent(t, s, c2.Intents[0], store.IntentUpdate{Status: store.IntentSent, ExternalID: "x", NextAttempt: t0.Add(2 * time.Minute)})
	c3 := claimIntents(t, s, "p1", t0.Add(2*time.Minute), time.Minute, 5)
	if len(c3.Intents) != 1 || c3.Intents[0].Status != store.IntentSent || c3.Intents[0].Attempts != cur.Attempts+1 || c3.Intents[0].ExternalID != "x" {
		t.Errorf("claim of a sent intent: %+v", c3.Intents)
	}
}

func testIntentUpdate(t *testing.T, s store.Store) {
	t0 := ts(0)
	createIntent(t, s, intent("p1", "i1", "Patient/1", t0))
	c := claimIntents(t, s, "p1", t0, time.Minute, 5)
	in := c.Intents[0]
	// Progress without NextAttempt keeps the lease.
	got := updateIntent(t, s, in, store.IntentUpdate{Status: store.IntentSent, ExternalID: "doc-9", ExternalVersion: "1", LastError: "x"})
	if got.Status != store.IntentSent || got.ExternalID != "doc-9" || got.ExternalVersion != "1" || !got.NextAttempt.Equal(in.NextAttempt) ||
		got.LastError != "x" || !got.FinishedAt.IsZero() {
		t.Errorf("sent: %+v", got)
	}
	// A retry moves NextAttempt; empty external fields keep the stored ones.
	got = updateIntent(t, s, got, store.IntentUpdate{Status: store.IntentSent, NextAttempt: t0.Add(time.Hour), LastError: "HTTP 503"})
	if !got.NextAttempt.Equal(t0.Add(time.Hour)) || got.ExternalID != "doc-9" || got.LastError != "HTTP 503" {
		t.Errorf("retry: %+v", got)
	}
	// Final: mismatch with differences.
	got = updateIntent(t, s, got, store.IntentUpdate{Status: store.IntentMismatch, Differences: []string{"status", "content[0].attachment.contentType"},
		At: t0.Add(time.Second)})
	if got.Status != store.IntentMismatch || !slices.Equal(got.Differences, []string{"status", "content[0].attachment.contentType"}) ||
		!got.FinishedAt.Equal(t0.Add(time.Second)) || got.LastError != "" {
		t.Errorf("mismatch: %+v", got)
	}
	if g, err := s.GetIntent(ctx(t), "p1", "i1"); err != nil || !slices.Equal(g.Differences, got.Differences) {
		t.Errorf("get after mismatch: %+v %v", g, err)
	}
	// A final intent takes no more updates.
	if _, err := s.UpdateIntent(ctx(t), "p1", "i1", store.IntentUpdate{Attempt: got.Attempts, Status: store.IntentConfirmed}); !errors.Is(err, store.ErrIntentState) {
		t.Errorf("update of a final intent: %v", err)
	}
	if _, err := s.UpdateIntent(ctx(t), "p1", "i1", store.IntentUpdate{Attempt: got.Attempts, Status: "lost"}); err == nil {
		t.Error("unknown status accepted")
	}
	// Rejection text round-trips.
	createIntent(t, s, intent("p1", "i2", "Patient/2", t0))
	c2 := claimIntents(t, s, "p1", t0, time.Minute, 5)
	r := updateIntent(t, s, c2.Intents[0], store.IntentUpdate{Status: store.IntentRejected, Rejection: "The EHR says the patient does not exist."})
	if r.Rejection != "The EHR says the patient does not exist." || r.FinishedAt.IsZero() {
		t.Errorf("rejected: %+v", r)
	}
}

func testIntentReplay(t *testing.T, s store.Store) {
	t0 := ts(0)
	first := intent("p1", "i1", "Patient/1", t0)
	first.Kind, first.TargetID, first.BaseVersion = "appointment.cancel", "appt-1", "3"
	createIntent(t, s, first)
	createIntent(t, s, intent("p1", "i2", "Patient/1", t0))
	c := claimIntents(t, s, "p1", t0, time.Minute, 5)
	if got := claimedIDs(c); !slices.Equal(got, []string{"i1"}) {
		t.Fatalf("claimed %v", got)
	}
	updateIntent(t, s, c.Intents[0], store.IntentUpdate{Status: store.IntentDead, LastError: "gave up", Rejection: "r"})
	// i2 goes on; then i1 is replayed and becomes the head again.
	c = claimIntents(t, s, "p1", t0, time.Minute, 5)
	if got := claimedIDs(c); !slices.Equal(got, []string{"i2"}) {
		t.Fatalf("after i1 dead: claimed %v", got)
	}
	if _, err := s.ReplayIntent(ctx(t), "p1", "i2", t0); !errors.Is(err, store.ErrIntentState) {
		t.Errorf("replay of an open intent: %v", err)
	}
	updateIntent(t, s, c.Intents[0], store.IntentUpdate{Status: store.IntentConfirmed})
	if _, err := s.ReplayIntent(ctx(t), "p1", "i2", t0); !errors.Is(err, store.ErrIntentState) {
		t.Errorf("replay of a confirmed intent: %v", err)
	}
	if _, err := s.ReplayIntent(ctx(t), "p1", "nope", t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("replay of an unknown intent: %v", err)
	}
	r, err := s.ReplayIntent(ctx(t), "p1", "i1", t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != store.IntentAccepted || r.Attempts != 0 || !r.FirstAttempt.IsZero() || !r.NextAttempt.Equal(t0.Add(time.Hour)) ||
		r.Rejection != "" || r.BaseVersion != "" || !r.FinishedAt.IsZero() || r.TargetID != "appt-1" {
		t.Errorf("replayed: %+v", r)
	}
	if c := claimIntents(t, s, "p1", t0.Add(time.Hour), time.Minute, 5); !slices.Equal(claimedIDs(c), []string{"i1"}) || c.Intents[0].Attempts != 1 {
		t.Errorf("claim after replay: %v", claimedIDs(c))
	}
}

// testIntentReplayBeforeLater: a replayed intent goes back before the later
// intents of its patient, but never runs at once with one already claimed.
func testIntentReplayBeforeLater(t *testing.T, s store.Store) {
	t0 := ts(0)
	createIntent(t, s, intent("p1", "i1", "Patient/1", t0))
	createIntent(t, s, intent("p1", "i2", "Patient/1", t0))
	createIntent(t, s, intent("p1", "i3", "Patient/1", t0))
	c := claimIntents(t, s, "p1", t0, time.Minute, 5)
	updateIntent(t, s, c.Intents[0], store.IntentUpdate{Status: store.IntentRejected})
	// i2 is claimed (it may be executing) when i1 is replayed: i1 takes
	// the queue back but is not due before i2's lease ends.
	c = claimIntents(t, s, "p1", t0.Add(time.Second), time.Minute, 5)
	if got := claimedIDs(c); !slices.Equal(got, []string{"i2"}) {
		t.Fatalf("claimed %v, want [i2]", got)
	}
	i2 := c.Intents[0]
	r, err := s.ReplayIntent(ctx(t), "p1", "i1", t0.Add(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !r.NextAttempt.Equal(i2.NextAttempt) || r.Status != store.IntentAccepted {
		t.Errorf("replayed before a claimed intent: due %v, want %v (the claim's lease end); %s", r.NextAttempt, i2.NextAttempt, r.Status)
	}
	if c := claimIntents(t, s, "p1", t0.Add(3*time.Second), time.Minute, 5); len(c.Intents) != 0 || !c.NextDue.Equal(i2.NextAttempt) {
		t.Errorf("during i2's lease: claimed %v, next due %v", claimedIDs(c), c.NextDue)
	}
	// i2's round still ends: its update is taken, and it waits behind i1.
	i2 = updateIntent(t, s, i2, store.IntentUpdate{Status: store.IntentSending, NextAttempt: t0.Add(4 * time.Second), LastError: "HTTP 503"})
	c = claimIntents(t, s, "p1", i2.NextAttempt.Add(time.Minute), time.Minute, 5)
	if got := claimedIDs(c); !slices.Equal(got, []string{"i1"}) {
		t.Fatalf("after the lease: claimed %v, want [i1]", got)
	}
	updateIntent(t, s, c.Intents[0], store.IntentUpdate{Status: store.IntentConfirmed})
	// Then i2, then i3, in order.
	for _, want := range []string{"i2", "i3"} {
		c = claimIntents(t, s, "p1", t0.Add(time.Hour), time.Minute, 5)
		if got := claimedIDs(c); !slices.Equal(got, []string{want}) {
			t.Fatalf("claimed %v, want [%s]", got, want)
		}
		updateIntent(t, s, c.Intents[0], store.IntentUpdate{Status: store.IntentConfirmed})
	}
	if c := claimIntents(t, s, "p1", t0.Add(2*time.Hour), time.Minute, 5); len(c.Intents) != 0 || !c.NextDue.IsZero() {
		t.Errorf("an empty queue: claimed %v, next due %v", claimedIDs(c), c.NextDue)
	}

	// A later intent never claimed simply waits behind the replayed one.
	createIntent(t, s, intent("p1", "j1", "Patient/2", t0))
	createIntent(t, s, intent("p1", "j2", "Patient/2", t0))
	c = claimIntents(t, s, "p1", t0.Add(2*time.Hour), time.Minute, 5)
	updateIntent(t, s, c.Intents[0], store.IntentUpdate{Status: store.IntentDead})
	r, err = s.ReplayIntent(ctx(t), "p1", "j1", t0.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !r.NextAttempt.Equal(t0.Add(3 * time.Hour)) {
		t.Errorf("replayed before an unclaimed intent: due %v, want the replay's time", r.NextAttempt)
	}
	c = claimIntents(t, s, "p1", t0.Add(3*time.Hour), time.Minute, 5)
	if got := claimedIDs(c); !slices.Equal(got, []string{"j1"}) {
		t.Errorf("claimed %v, want [j1]", got)
	}
}

// testIntentRecordAttempts: exchanges and audit events are stored together,
// alone or with an update, and with an update even when it is refused.
func testIntentRecordAttempts(t *testing.T, s store.Store) {
	t0 := ts(0)
	createIntent(t, s, intent("p1", "i1", "Patient/1", t0))
	ev := func(detail string) store.AuditEvent {
		return store.AuditEvent{Practice: "p1", Time: t0, Actor: "app:app1", Action: "write", Entity: "DocumentReference",
			Outcome: "success", Detail: detail}
	}
	ex := func(step string, attempt int) store.IntentAttempt {
		return store.IntentAttempt{IntentID: "i1", Attempt: attempt, Step: step, At: t0, Method: "GET", Path: "/fhir/DocumentReference", Status: 200}
	}
	if err := s.RecordIntentAttempts(ctx(t), "p1", []store.IntentAttempt{ex("search", 1)}, []store.AuditEvent{ev("d-search")}); err != nil {
		t.Fatal(err)
	}
	c := claimIntents(t, s, "p1", t0, time.Minute, 5)
	u := store.IntentUpdate{Status: store.IntentSent, ExternalID: "doc-1", Exchanges: []store.IntentAttempt{ex("create", 1)},
		Audit: []store.AuditEvent{ev("d-create")}}
	in := updateIntent(t, s, c.Intents[0], u)
	// A refused update (the claim is gone) still stores what happened.
	stale := store.IntentUpdate{Attempt: in.Attempts + 7, Status: store.IntentConfirmed, Exchanges: []store.IntentAttempt{ex("verify", 1)},
		Audit: []store.AuditEvent{ev("d-verify")}}
	if _, err := s.UpdateIntent(ctx(t), "p1", "i1", stale); !errors.Is(err, store.ErrIntentState) {
		t.Errorf("stale update: %v, want ErrIntentState", err)
	}
	if g, _ := s.GetIntent(ctx(t), "p1", "i1"); g.Status != store.IntentSent {
		t.Errorf("the stale update changed the intent: %s", g.Status)
	}
	got, err := s.ListIntentAttempts(ctx(t), "p1", "i1")
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, a := range got {
		steps = append(steps, a.Step)
	}
	if !slices.Equal(steps, []string{"search", "create", "verify"}) {
		t.Errorf("attempts %v, want [search create verify]", steps)
	}
	evs, err := s.ListAudit(ctx(t), "p1", store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	details := map[string]bool{}
	for _, e := range evs {
		details[e.Detail] = true
	}
	for _, d := range []string{"d-search", "d-create", "d-verify"} {
		if !details[d] {
			t.Errorf("audit event %s missing (have %v)", d, details)
		}
	}
	// Nothing is stored when one of them is invalid.
	bad := []store.AuditEvent{ev("d-bad"), {Practice: "p2", Actor: "x", Action: "write", Entity: "y", Outcome: "success"}}
	if err := s.RecordIntentAttempts(ctx(t), "p1", []store.IntentAttempt{ex("bad", 2)}, bad); err == nil {
		t.Error("an audit event of another practice was accepted")
	}
	if got, _ := s.ListIntentAttempts(ctx(t), "p1", "i1"); len(got) != 3 {
		t.Errorf("%d attempts after a refused record, want 3", len(got))
	}
	if err := s.RecordIntentAttempts(ctx(t), "", []store.IntentAttempt{ex("x", 1)}, nil); err == nil {
		t.Error("an empty practice was accepted")
	}
}

// testIntentUpdateMany: UpdateIntents applies each change as UpdateIntent
// would, and one change's failure leaves the others applied.
func testIntentUpdateMany(t *testing.T, s store.Store) {
	t0 := ts(0)
	createIntent(t, s, intent("p1", "a1", "Patient/a", t0))
	createIntent(t, s, intent("p1", "a2", "Patient/a", t0))
	createIntent(t, s, intent("p1", "b1", "Patient/b", t0))
	createIntent(t, s, intent("p2", "c1", "Patient/c", t0))
	c := claimIntents(t, s, "p1", t0, time.Minute, 5)
	c2 := claimIntents(t, s, "p2", t0, time.Minute, 5)
	if got := claimedIDs(c); !slices.Equal(got, []string{"a1", "b1"}) || len(c2.Intents) != 1 {
		t.Fatalf("claimed %v and %v", got, claimedIDs(c2))
	}
	a1, b1, c1 := c.Intents[0], c.Intents[1], c2.Intents[0]
	ex := store.IntentAttempt{IntentID: "b1", Attempt: b1.Attempts, Step: "create", Method: "POST", Path: "/fhir/DocumentReference", Status: 201}
	res := s.UpdateIntents(ctx(t), []store.IntentChange{
		{Practice: "p1", ID: "a1", Update: store.IntentUpdate{Attempt: a1.Attempts, Status: store.IntentConfirmed}},
		{Practice: "p1", ID: "b1", Update: store.IntentUpdate{Attempt: b1.Attempts + 1, Status: store.IntentConfirmed,
			Exchanges: []store.IntentAttempt{ex}}}, // a stale claim
		{Practice: "p1", ID: "nope", Update: store.IntentUpdate{Attempt: 1, Status: store.IntentDead}},
		{Practice: "p1", ID: "b1", Update: store.IntentUpdate{Attempt: b1.Attempts, Status: "lost"}},
		{Practice: "p2", ID: "c1", Update: store.IntentUpdate{Attempt: c1.Attempts, Status: store.IntentSent, ExternalID: "doc-c"}},
	})
	if len(res) != 5 {
		t.Fatalf("%d results for 5 changes", len(res))
	}
	if res[0].Err != nil || res[0].Intent.Status != store.IntentConfirmed || res[0].Intent.ID != "a1" {
		t.Errorf("a1: %+v %v", res[0].Intent.Status, res[0].Err)
	}
	if !errors.Is(res[1].Err, store.ErrIntentState) {
		t.Errorf("stale claim: %v, want ErrIntentState", res[1].Err)
	}
	if !errors.Is(res[2].Err, store.ErrNotFound) {
		t.Errorf("unknown intent: %v, want ErrNotFound", res[2].Err)
	}
	if res[3].Err == nil {
		t.Error("unknown status accepted")
	}
	if res[4].Err != nil || res[4].Intent.ExternalID != "doc-c" || res[4].Intent.Practice != "p2" {
		t.Errorf("c1: %+v %v", res[4].Intent, res[4].Err)
	}
	// The stale change's exchange is stored all the same; b1 is unchanged.
	if as, _ := s.ListIntentAttempts(ctx(t), "p1", "b1"); len(as) != 1 || as[0].Step != "create" {
		t.Errorf("b1's attempts %+v", as)
	}
	if g, _ := s.GetIntent(ctx(t), "p1", "b1"); g.Status != store.IntentSending {
		t.Errorf("b1 is %s", g.Status)
	}
	// a1 final: a2 is the head now.
	if c := claimIntents(t, s, "p1", t0.Add(time.Second), time.Minute, 5); !slices.Equal(claimedIDs(c), []string{"a2"}) {
		t.Errorf("after the batch: claimed %v, want [a2]", claimedIDs(c))
	}
	if res := s.UpdateIntents(ctx(t), nil); len(res) != 0 {
		t.Errorf("no changes: %d results", len(res))
	}
}

func testIntentListCount(t *testing.T, s store.Store) {
	t0 := ts(0)
	for i := 1; i <= 5; i++ {
		in := intent("p1", fmt.Sprintf("i%d", i), fmt.Sprintf("Patient/%d", i%2), t0)
		if i == 5 {
			in.App = "app2"
		}
		createIntent(t, s, in)
	}
	c := claimIntents(t, s, "p1", t0, time.Minute, 10)
	for _, in := range c.Intents {
		if in.ID == "i1" {
			updateIntent(t, s, in, store.IntentUpdate{Status: store.IntentDead})
		}
	}
	all, err := s.ListIntents(ctx(t), "p1", store.IntentFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, in := range all {
		ids = append(ids, in.ID)
	}
	if !slices.Equal(ids, []string{"i5", "i4", "i3", "i2", "i1"}) {
		t.Errorf("list %v, want newest first", ids)
	}
	check := func(name string, f store.IntentFilter, want ...string) {
		t.Helper()
		got, err := s.ListIntents(ctx(t), "p1", f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, in := range got {
			ids = append(ids, in.ID)
		}
		if !slices.Equal(ids, want) {
			t.Errorf("%s: %v, want %v", name, ids, want)
		}
	}
	check("dead", store.IntentFilter{Status: []string{store.IntentDead}}, "i1")
	check("app2", store.IntentFilter{App: "app2"}, "i5")
	check("patient 0", store.IntentFilter{PatientRef: "Patient/0"}, "i4", "i2")
	check("before", store.IntentFilter{BeforeSeq: all[1].Seq, Limit: 2}, "i3", "i2")
	n, err := s.CountIntents(ctx(t), "p1")
	if err != nil {
		t.Fatal(err)
	}
	if n[store.IntentDead] != 1 || n[store.IntentAccepted]+n[store.IntentSending] != 4 || len(n) > 3 {
		t.Errorf("counts %v", n)
	}
}

func testIntentAttempts(t *testing.T, s store.Store) {
	t0 := ts(0)
	createIntent(t, s, intent("p1", "i1", "Patient/1", t0))
	as := []store.IntentAttempt{
		{IntentID: "i1", Attempt: 1, Step: "search", At: t0, Method: "GET", Path: "/fhir/DocumentReference", Status: 200, Took: time.Millisecond},
		{IntentID: "i1", Attempt: 1, Step: "create", At: t0.Add(time.Second), Method: "POST", Path: "/fhir/DocumentReference",
			Headers: map[string]string{"If-None-Exist": "identifier=urn:mediflow:intent|i1"}, BodyHash: "abc", Status: 0, Outcome: "timeout", Took: 2 * time.Second},
	}
	if err := s.AppendIntentAttempts(ctx(t), "p1", as...); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendIntentAttempts(ctx(t), "p1", store.IntentAttempt{IntentID: "i1", Attempt: 2, Step: "read", Method: "GET", Path: "/x?name=Smith"}); err == nil {
		t.Error("a path with a query was accepted")
	}
	if err := s.AppendIntentAttempts(ctx(t), "p1", store.IntentAttempt{Attempt: 2}); err == nil {
		t.Error("an attempt without intent id was accepted")
	}
	got, err := s.ListIntentAttempts(ctx(t), "p1", "i1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d attempts, want 2", len(got))
	}
	if got[0].ID >= got[1].ID || got[0].Step != "search" || got[0].Headers != nil || got[0].Took != time.Millisecond || !got[0].At.Equal(t0) {
		t.Errorf("first: %+v", got[0])
	}
	if got[1].Headers["If-None-Exist"] != "identifier=urn:mediflow:intent|i1" || got[1].BodyHash != "abc" || got[1].Outcome != "timeout" ||
		got[1].Method != "POST" || got[1].Practice != "p1" {
		t.Errorf("second: %+v", got[1])
	}
	if other, err := s.ListIntentAttempts(ctx(t), "p2", "i1"); err != nil || len(other) != 0 {
		t.Errorf("p2 sees %d attempts (%v)", len(other), err)
	}
}

func testIntentTenantIsolation(t *testing.T, s store.Store) {
	t0 := ts(0)
	createIntent(t, s, intent("pa", "i1", "Patient/1", t0))
	// The same id and key in another practice is another intent.
	createIntent(t, s, intent("pb", "i1", "Patient/1", t0))
	ca := claimIntents(t, s, "pa", t0, time.Minute, 5)
	if len(ca.Intents) != 1 || ca.Intents[0].Practice != "pa" {
		t.Fatalf("pa claimed %+v", ca.Intents)
	}
	if _, err := s.UpdateIntent(ctx(t), "pb", "i1", store.IntentUpdate{Attempt: 1, Status: store.IntentConfirmed}); !errors.Is(err, store.ErrIntentState) {
		t.Errorf("pa's claim updated pb's intent: %v", err)
	}
	updateIntent(t, s, ca.Intents[0], store.IntentUpdate{Status: store.IntentDead})
	if in, _ := s.GetIntent(ctx(t), "pb", "i1"); in.Status != store.IntentAccepted {
		t.Errorf("pb's intent is %s", in.Status)
	}
	if _, err := s.ReplayIntent(ctx(t), "pb", "i1", t0); !errors.Is(err, store.ErrIntentState) {
		t.Errorf("replay in pb of pa's dead intent: %v", err)
	}
	if n, _ := s.CountIntents(ctx(t), "pb"); n[store.IntentDead] != 0 || n[store.IntentAccepted] != 1 {
		t.Errorf("pb counts %v", n)
	}
}

func testIntentEmptyPractice(t *testing.T, s store.Store) {
	c := ctx(t)
	checks := map[string]error{}
	_, _, checks["CreateIntent"] = s.CreateIntent(c, intent("", "i", "", ts(0)))
	_, checks["GetIntent"] = s.GetIntent(c, "", "i")
	_, checks["GetIntentByKey"] = s.GetIntentByKey(c, "", "a", "k")
	_, checks["ListIntents"] = s.ListIntents(c, "", store.IntentFilter{})
	_, checks["CountIntents"] = s.CountIntents(c, "")
	_, checks["ClaimIntents"] = s.ClaimIntents(c, "", ts(0), time.Minute, 1)
	_, checks["UpdateIntent"] = s.UpdateIntent(c, "", "i", store.IntentUpdate{Attempt: 1, Status: store.IntentDead})
	_, checks["ReplayIntent"] = s.ReplayIntent(c, "", "i", ts(0))
	checks["UpdateIntents"] = s.UpdateIntents(c, []store.IntentChange{{ID: "i", Update: store.IntentUpdate{Attempt: 1, Status: store.IntentDead}}})[0].Err
	checks["RecordIntentAttempts"] = s.RecordIntentAttempts(c, "", []store.IntentAttempt{{IntentID: "i"}}, nil)
	checks["AppendIntentAttempts"] = s.AppendIntentAttempts(c, "", store.IntentAttempt{IntentID: "i"})
	_, checks["ListIntentAttempts"] = s.ListIntentAttempts(c, "", "i")
	for name, err := range checks {
		if err == nil {
			t.Errorf("%s with an empty practice: no error", name)
		}
	}
}

// testIntentConcurrentClaims: claimers racing on the same queues never hold
// two intents of one patient at once, and every patient's intents finish in
// order.
func testIntentConcurrentClaims(t *testing.T, s store.Store) {
	const patients, perPatient, claimers = 4, 15, 4
	t0 := ts(0)
	for n := 0; n < perPatient; n++ {
		for p := 0; p < patients; p++ {
			createIntent(t, s, intent("p1", fmt.Sprintf("p%d-%02d", p, n), fmt.Sprintf("Patient/%d", p), t0))
		}
	}
	var mu sync.Mutex
	held := map[string]bool{}
	finished := map[string][]string{}
	var wg sync.WaitGroup
	errs := make(chan error, claimers)
	for i := 0; i < claimers; i++ {
		wg.Go(func() {
			for {
				c, err := s.ClaimIntents(ctx(t), "p1", t0, time.Hour, 2)
				if err != nil {
					errs <- err
					return
				}
				if len(c.Intents) == 0 {
					if c.NextDue.IsZero() {
						return
					}
					time.Sleep(time.Millisecond)
					continue
				}
				for _, in := range c.Intents {
					mu.Lock()
					if held[in.PatientRef] {
						mu.Unlock()
						errs <- fmt.Errorf("intent %s claimed while another of %s is held", in.ID, in.PatientRef)
						return
					}
					held[in.PatientRef] = true
					mu.Unlock()
				}
				for _, in := range c.Intents {
					// The patient is let go, and the order noted, before the
					// update: the next intent cannot be claimed before the
					// update commits.
					mu.Lock()
					held[in.PatientRef] = false
					finished[in.PatientRef] = append(finished[in.PatientRef], in.ID)
					mu.Unlock()
					if _, err := s.UpdateIntent(ctx(t), "p1", in.ID, store.IntentUpdate{Attempt: in.Attempts, Status: store.IntentConfirmed}); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for p := 0; p < patients; p++ {
		got := finished[fmt.Sprintf("Patient/%d", p)]
		if len(got) != perPatient || !slices.IsSorted(got) {
			t.Errorf("patient %d finished %v", p, got)
		}
	}
}
