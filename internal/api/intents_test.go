package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/connector/fhirrest"
	"github.com/mediflow/mediflow/internal/mapping"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/writeback"
	"github.com/mediflow/mediflow/internal/writeback/contract"
	"github.com/mediflow/mediflow/profiles"
)

// testIntents is what the engine puts in front of the outbox, for one
// practice: the generic contract and mapping.
type testIntents struct {
	*writeback.Outbox
	practice string
	c        *contract.Contract
	set      *mapping.Set
}

func (ti *testIntents) Support(practice string, k contract.Intent) (contract.Support, error) {
	if practice != ti.practice {
		return contract.Support{}, writeback.ErrUnknownPractice
	}
	return ti.c.Support(k), nil
}

func (ti *testIntents) Submit(ctx context.Context, r writeback.Request) (store.Intent, bool, error) {
	if r.Practice != ti.practice {
		return store.Intent{}, false, writeback.ErrUnknownPractice
	}
	body, sup, fes, err := contract.Validate(ctx, ti.set, ti.c, r.Kind, r.Body)
	switch {
	case err != nil:
		return store.Intent{}, false, err
	case !sup.Supported:
		return store.Intent{}, false, fmt.Errorf("%w: %s", writeback.ErrInvalid, sup.Reason)
	case len(fes) > 0:
		errs := make([]error, len(fes))
		for i, fe := range fes {
			errs[i] = fe
		}
		return store.Intent{}, false, fmt.Errorf("%w: %w", writeback.ErrInvalid, errors.Join(errs...))
	}
	r.VendorBody = body
	return ti.Outbox.Submit(ctx, r)
}

// intentEnv is the API over a real store with a real outbox writing to the
// simulator's generic flavour (tenant "alpha").
type intentEnv struct {
	*env
	sim     *sim.Sim
	patient string
}

func newIntentEnv(t *testing.T) *intentEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{
		ID: "alpha", Flavor: "generic", Seed: 11, OpenAuth: true, Data: &gen.Options{Patients: 3},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); s.Wait() })
	fc, err := fhirrest.New(fhirrest.Config{BaseURL: s.BaseURL("alpha"), Timeout: 5 * time.Second, MaxRetries: 2,
		BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c, err := contract.Default().ForPractice(contract.VendorGeneric, "", contract.Options{})
	if err != nil {
		t.Fatal(err)
	}
	set, err := mapping.Load(profiles.FS, contract.VendorGeneric, "")
	if err != nil {
		t.Fatal(err)
	}
	st := openTestStore(t)
	ob, err := writeback.New(writeback.Options{
		Store:     st,
		Targets:   map[string]writeback.Target{"alpha": {FHIR: fc, Support: c.Support}},
		BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond, SettleDelay: 20 * time.Millisecond,
		PollInterval: 20 * time.Millisecond, Lease: 20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ob.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("outbox Run: %v", err)
		}
	})
	e := newEnv(t, st, func(cfg *Config) {
		cfg.Intents = &testIntents{Outbox: ob, practice: "alpha", c: c, set: set}
		cfg.Now = time.Now
	})
	var pids []string
	for id := range s.Current("alpha", "Patient") {
		pids = append(pids, id)
	}
	sort.Strings(pids)
	return &intentEnv{env: e, sim: s, patient: pids[0]}
}

func (e *intentEnv) submit(key, appKey, body string) result {
	e.t.Helper()
	hdr := []string{"Content-Type", "application/json"}
	if key != "" {
		hdr = append(hdr, IdempotencyKeyHeader, key)
	}
	return e.do(http.MethodPost, "/v1/practices/alpha/intents", appKey, strings.NewReader(body), hdr...)
}

func noteIntent(patient, text string) string {
	return fmt.Sprintf(`{"kind":"note.create","resource":{"resourceType":"DocumentReference","status":"current",`+
		`"type":{"coding":[{"system":"http://loinc.org","code":"11506-3"}],"text":"Progress note"},`+
		`"subject":{"reference":"Patient/%s"},"content":[{"attachment":{"contentType":"text/plain","data":%q}}]}}`, patient, text)
}

// intentOf decodes an intent answer.
func intentOf(t *testing.T, r result) intentJSON {
	t.Helper()
	var in intentJSON
	if err := json.Unmarshal(r.body, &in); err != nil {
		t.Fatalf("not an intent (%v): %s", err, r.body)
	}
	return in
}

// waitIntent polls GET …/intents/{id} until the intent is final.
func (e *intentEnv) waitIntent(id, key string) intentJSON {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := e.get("/v1/practices/alpha/intents/"+id, key)
		if r.status != http.StatusOK {
			e.t.Fatalf("GET intent: %d %s", r.status, r.body)
		}
		in := intentOf(e.t, r)
		if !store.IntentOpen(in.Status) {
			return in
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("intent %s still %s (%s)", id, in.Status, in.LastError)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestIntentNoteIsWrittenOnceAndConfirmed(t *testing.T) {
	e := newIntentEnv(t)
	const text = "UXVpbWJ5ZmllbGQgbm90ZQ==" // the note's text, base64
	r := e.submit("note-1", keyAlpha, noteIntent(e.patient, text))
	if r.status != http.StatusAccepted {
		t.Fatalf("submit: %d %s", r.status, r.body)
	}
	in := intentOf(t, r)
	if in.ID == "" || in.Kind != "note.create" || in.Status != store.IntentAccepted || in.IdempotencyKey != "note-1" ||
		in.ResourceType != "DocumentReference" || in.Patient != "Patient/"+e.patient || in.ConflictPolicy != store.ConflictFail {
		t.Fatalf("accepted intent %+v", in)
	}
	self := e.srv.URL + "/v1/practices/alpha/intents/" + in.ID
	if r.header.Get("Location") != self || in.Links["self"] != self {
		t.Errorf("Location %q, links %v, want %s", r.header.Get("Location"), in.Links, self)
	}
	if strings.Contains(string(r.body), text) {
		t.Error("the answer echoes the note's text")
	}

	done := e.waitIntent(in.ID, keyAlpha)
	if done.Status != store.IntentConfirmed || !strings.HasPrefix(done.Record, "DocumentReference/") || done.FinishedAt == nil {
		t.Fatalf("final intent %+v", done)
	}
	var steps []string
	for _, a := range done.History {
		steps = append(steps, a.Step+" "+a.Method)
		if strings.Contains(a.Path, "?") || a.At.IsZero() || a.Attempt != 1 {
			t.Errorf("history entry %+v", a)
		}
	}
	// Conditional create: the POST carries If-None-Exist, then the read-back.
	if !slices.Equal(steps, []string{"create POST", "verify GET"}) || done.History[0].Status != http.StatusCreated {
		t.Errorf("history %v (%+v)", steps, done.History)
	}
	recs := e.sim.FindByIdentifier("alpha", "DocumentReference", writeback.IdentifierSystem, in.ID)
	if len(recs) != 1 || "DocumentReference/"+recs[0] != done.Record {
		t.Fatalf("records at the EHR for the intent: %v, want exactly %s", recs, done.Record)
	}

	// The same key again: the same intent, 200, nothing written twice.
	r = e.submit("note-1", keyAlpha, noteIntent(e.patient, text))
	if r.status != http.StatusOK || intentOf(t, r).ID != in.ID || intentOf(t, r).Status != store.IntentConfirmed {
		t.Fatalf("resubmission: %d %s", r.status, r.body)
	}
	// The same key for another request: 409.
	r = e.submit("note-1", keyAlpha, noteIntent(e.patient, "b3RoZXI="))
	wantOutcome(t, r, http.StatusConflict, "conflict")
	if got := e.sim.FindByIdentifier("alpha", "DocumentReference", writeback.IdentifierSystem, in.ID); len(got) != 1 {
		t.Errorf("records after resubmissions: %v", got)
	}

	// The list holds it; a status filter that excludes it does not.
	r = e.get("/v1/practices/alpha/intents?status=confirmed", keyAlpha)
	var list struct{ Intents []intentJSON }
	if err := json.Unmarshal(r.body, &list); err != nil || r.status != http.StatusOK || len(list.Intents) != 1 || list.Intents[0].ID != in.ID {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	r = e.get("/v1/practices/alpha/intents?status=rejected,dead", keyAlpha)
	if err := json.Unmarshal(r.body, &list); err != nil || len(list.Intents) != 0 {
		t.Fatalf("filtered list: %d %s", r.status, r.body)
	}
	wantOutcome(t, e.get("/v1/practices/alpha/intents?status=done", keyAlpha), http.StatusBadRequest, "invalid")

	// A confirmed intent cannot be replayed.
	wantOutcome(t, e.do(http.MethodPost, "/v1/practices/alpha/intents/"+in.ID+"/replay", keyAlpha, nil), http.StatusConflict, "conflict")

	// Every call is audited, by the app, without the note's content.
	evs, err := e.st.ListAudit(context.Background(), "alpha", store.AuditFilter{Actor: "app:alpha-app"})
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string]int{}
	for _, ev := range evs {
		actions[ev.Action]++
		if strings.Contains(ev.Entity+ev.Detail, text) {
			t.Errorf("audit event holds the note: %+v", ev)
		}
	}
	if actions["intent-submit"] != 3 || actions["intent-read"] == 0 || actions["intent-list"] != 3 || actions["intent-replay"] != 1 || actions["write"] != 2 {
		t.Errorf("audited actions %v", actions)
	}
	if strings.Contains(e.logs.String(), text) {
		t.Error("the logs hold the note's text")
	}
}

func TestIntentRefusals(t *testing.T) {
	e := newIntentEnv(t)
	note := noteIntent(e.patient, "Tm90ZQ==")

	// No Idempotency-Key.
	wantOutcome(t, e.submit("", keyAlpha, note), http.StatusBadRequest, "required")
	// Not JSON, unknown keys, unknown kinds and policies.
	wantOutcome(t, e.submit("k", keyAlpha, `{"kind":`), http.StatusBadRequest, "invalid")
	wantOutcome(t, e.submit("k", keyAlpha, `{"kind":"note.create","resource":{},"extra":1}`), http.StatusBadRequest, "invalid")
	wantOutcome(t, e.submit("k", keyAlpha, `{"kind":"note.delete","resource":{}}`), http.StatusBadRequest, "invalid")
	wantOutcome(t, e.submit("k", keyAlpha, strings.Replace(note, `{"kind"`, `{"conflictPolicy":"retry","kind"`, 1)), http.StatusBadRequest, "invalid")

	refusal := func(r result) refusalJSON {
		t.Helper()
		if r.status != http.StatusUnprocessableEntity {
			t.Fatalf("status %d, want 422: %s", r.status, r.body)
		}
		var out refusalJSON
		if err := json.Unmarshal(r.body, &out); err != nil {
			t.Fatalf("422 body: %v: %s", err, r.body)
		}
		return out
	}
	// The contract's checks: one message per element.
	bad := fmt.Sprintf(`{"kind":"note.create","resource":{"resourceType":"DocumentReference","status":"current","subject":{"reference":"Patient/%s"}}}`, e.patient)
	out := refusal(e.submit("k-bad", keyAlpha, bad))
	var paths []string
	for _, fe := range out.Errors {
		paths = append(paths, fe.Path)
		if fe.Rule == "" || fe.Message == "" {
			t.Errorf("field error %+v", fe)
		}
	}
	if out.Code != "invalid" || !slices.Contains(paths, "type") || !slices.Contains(paths, "content") {
		t.Errorf("refusal %+v, want errors at type and content", out)
	}
	// The wrong resource type for the intent.
	out = refusal(e.submit("k-type", keyAlpha, `{"kind":"note.create","resource":{"resourceType":"Patient"}}`))
	if len(out.Errors) != 1 || out.Errors[0].Path != "resourceType" {
		t.Errorf("wrong type: %+v", out)
	}
	// No resource at all.
	out = refusal(e.submit("k-none", keyAlpha, `{"kind":"note.create"}`))
	if len(out.Errors) != 1 || out.Errors[0].Path != "resource" {
		t.Errorf("no resource: %+v", out)
	}
	// A target of another type than the intent writes.
	out = refusal(e.submit("k-target", keyAlpha, `{"kind":"appointment.cancel","target":"Patient/1","resource":{"resourceType":"Appointment","status":"cancelled"}}`))
	if len(out.Errors) != 1 || out.Errors[0].Path != "target" || out.Errors[0].Rule != "target-type" {
		t.Errorf("wrong target: %+v", out)
	}
	// An intent the practice's EHR does not accept: refused with the contract's reason.
	out = refusal(e.submit("k-charge", keyAlpha, `{"kind":"charge.post","resource":{"resourceType":"ChargeItem"}}`))
	want := contract.Default()
	gc, _ := want.For(contract.VendorGeneric, "")
	if out.Code != "not-supported" || out.Message != gc.Support(contract.ChargePost).Reason || len(out.Errors) != 0 {
		t.Errorf("unsupported: %+v", out)
	}
	// Nothing refused was stored.
	if ins, err := e.st.ListIntents(context.Background(), "alpha", store.IntentFilter{}); err != nil || len(ins) != 0 {
		t.Errorf("stored intents after refusals: %d, %v", len(ins), err)
	}

	// A practice without write-back, and a key that may not read the practice.
	r := e.do(http.MethodPost, "/v1/practices/beta/intents", keyBeta, strings.NewReader(note), IdempotencyKeyHeader, "k")
	wantOutcome(t, r, http.StatusNotImplemented, "not-supported")
	wantOutcome(t, e.submit("k", keyBeta, note), http.StatusForbidden, "forbidden")
}

func TestIntentOfAnotherAppIsNotFound(t *testing.T) {
	e := newIntentEnv(t)
	r := e.submit("mine", keyAlpha, noteIntent(e.patient, "Tm90ZQ=="))
	if r.status != http.StatusAccepted {
		t.Fatalf("submit: %d %s", r.status, r.body)
	}
	id := intentOf(t, r).ID
	// all-app may read the practice, but the intent is alpha-app's.
	wantOutcome(t, e.get("/v1/practices/alpha/intents/"+id, keyAll), http.StatusNotFound, "not-found")
	wantOutcome(t, e.do(http.MethodPost, "/v1/practices/alpha/intents/"+id+"/replay", keyAll, nil), http.StatusNotFound, "not-found")
	r = e.get("/v1/practices/alpha/intents", keyAll)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"intents":[]`) {
		t.Errorf("another app's list: %d %s", r.status, r.body)
	}
	// The same key from another app is another intent.
	r = e.submit("mine", keyAll, noteIntent(e.patient, "Tm90ZQ=="))
	if r.status != http.StatusAccepted || intentOf(t, r).ID == id {
		t.Errorf("another app's key: %d %s", r.status, r.body)
	}
	wantOutcome(t, e.get("/v1/practices/alpha/intents/no-such-intent", keyAlpha), http.StatusNotFound, "not-found")
}

// TestIntentRejectedListedAndReplayed: the simulator's generic flavour
// does not create Observations (405), which the generic contract allows:
// the intent is rejected with a message for staff, listed, and can be
// replayed (and is rejected again).
func TestIntentRejectedListedAndReplayed(t *testing.T) {
	e := newIntentEnv(t)
	obs := fmt.Sprintf(`{"kind":"observation.record","resource":{"resourceType":"Observation","status":"final",`+
		`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],`+
		`"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/%s"},`+
		`"effectiveDateTime":"2026-03-02T09:00:00Z","valueQuantity":{"value":72,"unit":"/min"}}}`, e.patient)
	r := e.submit("obs-1", keyAlpha, obs)
	if r.status != http.StatusAccepted {
		t.Fatalf("submit: %d %s", r.status, r.body)
	}
	id := intentOf(t, r).ID
	in := e.waitIntent(id, keyAlpha)
	if in.Status != store.IntentRejected || in.Rejection == "" || in.Links["replay"] != in.Links["self"]+"/replay" {
		t.Fatalf("intent %+v, want rejected with a message and a replay link", in)
	}
	r = e.get("/v1/practices/alpha/rejections", keyAlpha)
	var rej struct{ Rejections []rejectionJSON }
	if err := json.Unmarshal(r.body, &rej); err != nil || r.status != http.StatusOK || len(rej.Rejections) != 1 {
		t.Fatalf("rejections: %d %s", r.status, r.body)
	}
	if got := rej.Rejections[0]; got.IntentID != id || got.Message != in.Rejection || got.Kind != "observation.record" || got.At.IsZero() {
		t.Errorf("rejection %+v", got)
	}
	// Another app sees none of them.
	r = e.get("/v1/practices/alpha/rejections", keyAll)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"rejections":[]`) {
		t.Errorf("another app's rejections: %d %s", r.status, r.body)
	}

	r = e.do(http.MethodPost, "/v1/practices/alpha/intents/"+id+"/replay", keyAlpha, nil)
	if r.status != http.StatusAccepted || intentOf(t, r).Status != store.IntentAccepted {
		t.Fatalf("replay: %d %s", r.status, r.body)
	}
	again := e.waitIntent(id, keyAlpha)
	// The replay tried again: the history holds both refused creates.
	if again.Status != store.IntentRejected || len(again.History) != len(in.History)+1 || again.History[len(again.History)-1].Status != http.StatusMethodNotAllowed {
		t.Errorf("after the replay: %+v (history before: %d entries)", again, len(in.History))
	}
	if n := len(e.sim.FindByIdentifier("alpha", "Observation", writeback.IdentifierSystem, id)); n != 0 {
		t.Errorf("%d observations at the EHR", n)
	}
}

func TestIntentsWithoutOutboxAnswer501(t *testing.T) {
	e := newEnv(t, openTestStore(t))
	for _, r := range []result{
		e.do(http.MethodPost, "/v1/practices/alpha/intents", keyAlpha, strings.NewReader(`{}`), IdempotencyKeyHeader, "k"),
		e.get("/v1/practices/alpha/intents", keyAlpha),
		e.get("/v1/practices/alpha/intents/x", keyAlpha),
		e.get("/v1/practices/alpha/rejections", keyAlpha),
		e.do(http.MethodPost, "/v1/practices/alpha/intents/x/replay", keyAlpha, nil),
	} {
		wantOutcome(t, r, http.StatusNotImplemented, "not-supported")
	}
}

func TestFieldErrorsFromTheChain(t *testing.T) {
	a := contract.FieldError{Path: "a", Rule: "required", Message: "add a"}
	b := contract.FieldError{Path: "b", Rule: "x", Message: "fix b"}
	err := fmt.Errorf("%w: %w", writeback.ErrInvalid, fmt.Errorf("wrapped: %w", errors.Join(a, &b)))
	got := fieldErrors(err)
	if len(got) != 2 || got[0] != a || got[1] != b {
		t.Errorf("fieldErrors = %+v", got)
	}
	if fieldErrors(writeback.ErrInvalid) != nil {
		t.Error("field errors from an error without any")
	}
}
