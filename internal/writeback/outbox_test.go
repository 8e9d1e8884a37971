package writeback

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/fault"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/writeback/contract"
)

// world is a simulator, a proxy in front of it, a store and an outbox.
type world struct {
	s     *sim.Sim
	px    *proxy
	st    Store
	path  string
	ob    *Outbox
	opts  Options
	pids  []string
	mu    sync.Mutex
	moves []StatusChange
}

func newWorld(t *testing.T, conditional bool, mod func(*Options)) *world {
	t.Helper()
	s := startSim(t, 6)
	px := startProxy(t, s.Root())
	st, path := openStore(t)
	w := &world{s: s, px: px, st: st, path: path, pids: patientIDs(t, s, 4)}
	w.opts = testOptions(st, map[string]Target{practice: {FHIR: fhirClient(t, px.url(simBasePath(s))), Support: supports(conditional)}})
	w.opts.OnStatus = func(c StatusChange) {
		w.mu.Lock()
		w.moves = append(w.moves, c)
		w.mu.Unlock()
	}
	if mod != nil {
		mod(&w.opts)
	}
	w.ob = newOutbox(t, w.opts)
	return w
}

func (w *world) docs(t testing.TB) map[string][]string {
	return recordsByIntent(t, w.s.Current(practice, "DocumentReference"))
}

func (w *world) posts() int {
	n := 0
	for _, r := range w.px.requests() {
		if r.Method == http.MethodPost {
			n++
		}
	}
	return n
}

func TestCreateConfirmed(t *testing.T) {
	w := newWorld(t, false, nil)
	in := submit(t, w.ob, noteRequest("k1", w.pids[0], "Tm90ZQ=="))
	if in.Status != store.IntentAccepted || len(in.ID) != 26 || in.TargetType != "DocumentReference" || in.ConflictPolicy != store.ConflictFail {
		t.Fatalf("submitted %+v", in)
	}
	run(t, w.ob)
	got := waitFinal(t, w.st, 10*time.Second, in.ID)[in.ID]
	if got.Status != store.IntentConfirmed || got.ExternalID == "" || got.ExternalVersion != "1" || got.LastError != "" {
		t.Fatalf("final %+v", got)
	}
	recs := w.docs(t)
	if len(recs) != 1 || !slices.Equal(recs[in.ID], []string{got.ExternalID}) {
		t.Fatalf("records at the EHR by intent: %v", recs)
	}
	body, _ := w.s.Get(practice, "DocumentReference", got.ExternalID)
	if !hasTag(body, in.ID) {
		t.Error("the record lacks the intent's tag")
	}
	// The attempts log: a search (nothing found), the create, the read-back.
	as, err := w.ob.Attempts(context.Background(), practice, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, a := range as {
		steps = append(steps, a.Step+" "+a.Method)
		if strings.Contains(a.Path, "?") || a.Attempt != 1 || a.At.IsZero() {
			t.Errorf("attempt %+v", a)
		}
	}
	if !slices.Equal(steps, []string{"search GET", "create POST", "verify GET"}) {
		t.Errorf("steps %v", steps)
	}
	if as[1].Status != 201 || as[1].BodyHash == "" || as[1].Headers["Prefer"] != "return=representation" || as[1].Headers["If-None-Exist"] != "" {
		t.Errorf("create attempt %+v", as[1])
	}
	// The audit trail: one event per exchange, by the app, PHI-free.
	evs, err := w.st.ListAudit(context.Background(), practice, store.AuditFilter{Actor: "app:notes"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 {
		t.Fatalf("%d audit events, want 3", len(evs))
	}
	for _, ev := range evs {
		if ev.Action != "write" || !strings.HasPrefix(ev.Entity, "DocumentReference") || ev.Outcome != "success" || strings.Contains(ev.Detail, "Tm90ZQ") {
			t.Errorf("audit %+v", ev)
		}
	}
	w.mu.Lock()
	var moves []string
	for _, m := range w.moves {
		moves = append(moves, m.From+">"+m.To)
	}
	w.mu.Unlock()
	if !slices.Equal(moves, []string{">accepted", "sending>sent", "sent>confirmed"}) {
		t.Errorf("status changes %v", moves)
	}
}

func TestIdempotentResubmission(t *testing.T) {
	w := newWorld(t, false, nil)
	r := noteRequest("same-key", w.pids[0], "QQ==")
	first, created, err := w.ob.Submit(context.Background(), r)
	if err != nil || !created {
		t.Fatalf("first: %v %v", created, err)
	}
	again, created, err := w.ob.Submit(context.Background(), r)
	if err != nil || created || again.ID != first.ID || again.Seq != first.Seq {
		t.Fatalf("again: created=%v %+v %v", created, again, err)
	}
	other := r
	other.Body = docBody(w.pids[0], "Qg==")
	if _, _, err := w.ob.Submit(context.Background(), other); !errors.Is(err, ErrKeyReused) {
		t.Errorf("same key, other body: %v, want ErrKeyReused", err)
	}
	run(t, w.ob)
	waitFinal(t, w.st, 10*time.Second, first.ID)
	// After it is confirmed, resubmitting still returns it and writes nothing.
	final, created, err := w.ob.Submit(context.Background(), r)
	if err != nil || created || final.Status != store.IntentConfirmed {
		t.Fatalf("after confirm: %v %+v %v", created, final, err)
	}
	time.Sleep(100 * time.Millisecond)
	if recs := w.docs(t); len(recs) != 1 || len(recs[first.ID]) != 1 {
		t.Errorf("records %v", recs)
	}
	if n := w.posts(); n != 1 {
		t.Errorf("%d POSTs, want 1", n)
	}
}

func TestSubmitRefusals(t *testing.T) {
	w := newWorld(t, false, func(o *Options) {
		o.Validate = func(_ context.Context, r Request) error {
			if strings.Contains(string(r.Body), "forbidden-word") {
				return contract.FieldError{Path: "content[0]", Rule: "test", Message: "not allowed"}
			}
			return nil
		}
	})
	ok := noteRequest("k", w.pids[0], "QQ==")
	cases := []struct {
		name string
		mod  func(*Request)
		want error
	}{
		{"unsupported", func(r *Request) { r.Kind = contract.ObservationRecord }, ErrInvalid},
		{"other channel", func(r *Request) { r.Kind = contract.ChargePost }, ErrInvalid},
		{"validation", func(r *Request) { r.Body = docBody(w.pids[0], "forbidden-word") }, ErrInvalid},
		{"no key", func(r *Request) { r.IdempotencyKey = "" }, ErrInvalid},
		{"no app", func(r *Request) { r.App = "" }, ErrInvalid},
		{"not JSON", func(r *Request) { r.Body = []byte(`[1]`) }, ErrInvalid},
		{"create with target", func(r *Request) { r.TargetID = "x" }, ErrInvalid},
		{"update without target", func(r *Request) { r.Kind = contract.AppointmentCancel }, ErrInvalid},
		{"policy", func(r *Request) { r.ConflictPolicy = "sometimes" }, ErrInvalid},
		{"practice", func(r *Request) { r.Practice = "elsewhere" }, ErrUnknownPractice},
	}
	for _, tc := range cases {
		r := ok
		tc.mod(&r)
		_, _, err := w.ob.Submit(context.Background(), r)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if tc.name == "validation" {
			var fe contract.FieldError
			if !errors.As(err, &fe) || fe.Path != "content[0]" {
				t.Errorf("validation error does not carry the field error: %v", err)
			}
		}
		if tc.name == "unsupported" && !strings.Contains(err.Error(), "Test EHR does not accept") {
			t.Errorf("unsupported: the contract's reason is missing: %v", err)
		}
	}
	if n, _ := w.ob.Counts(context.Background(), practice); len(n) != 0 {
		t.Errorf("refused requests were stored: %v", n)
	}
}

// TestFaultsRetried: 500, 503, 429 and a dropped connection on the create
// are retried; each intent ends with exactly one record.
func TestFaultsRetried(t *testing.T) {
	for _, tc := range []struct {
		name string
		act  action
	}{{"500", fail500}, {"503", fail503}, {"429", fail429}, {"drop", dropBefore}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, false, nil)
			var mu sync.Mutex
			failed := 0
			w.px.set(func(r *http.Request, _ []byte) action {
				mu.Lock()
				defer mu.Unlock()
				if isCreate(r) && failed < 2 {
					failed++
					return tc.act
				}
				return pass
			}, nil)
			in := submit(t, w.ob, noteRequest("k", w.pids[1], "QQ=="))
			run(t, w.ob)
			got := waitFinal(t, w.st, 10*time.Second, in.ID)[in.ID]
			if got.Status != store.IntentConfirmed || got.Attempts != 3 {
				t.Errorf("final %s after %d attempts (%s)", got.Status, got.Attempts, got.LastError)
			}
			if recs := w.docs(t); len(recs) != 1 || len(recs[in.ID]) != 1 {
				t.Errorf("records %v", recs)
			}
			if n := w.posts(); n != 3 {
				t.Errorf("%d POSTs, want 3 (two failed, one committed)", n)
			}
		})
	}
}

// TestTimeoutAfterCommit: the EHR commits the create but the answer is
// lost. The outbox looks before resending and finds the record: one
// record, one POST.
func TestTimeoutAfterCommit(t *testing.T) {
	for _, conditional := range []bool{false, true} {
		name := "search-before-create"
		if conditional {
			name = "conditional-create-contract"
		}
		t.Run(name, func(t *testing.T) {
			w := newWorld(t, conditional, nil)
			var once sync.Once
			w.px.set(func(r *http.Request, _ []byte) action {
				act := pass
				if isCreate(r) {
					once.Do(func() { act = commitThenDrop })
				}
				return act
			}, nil)
			in := submit(t, w.ob, noteRequest("k", w.pids[2], "QQ=="))
			run(t, w.ob)
			got := waitFinal(t, w.st, 10*time.Second, in.ID)[in.ID]
			if got.Status != store.IntentConfirmed {
				t.Fatalf("final %+v", got)
			}
			if recs := w.docs(t); len(recs) != 1 || len(recs[in.ID]) != 1 {
				t.Errorf("records %v", recs)
			}
			if n := w.posts(); n != 1 {
				t.Errorf("%d POSTs, want 1: a timeout must never be resent blindly", n)
			}
			as, _ := w.ob.Attempts(context.Background(), practice, in.ID)
			var steps []string
			for _, a := range as {
				steps = append(steps, a.Step)
			}
			want := []string{"search", "create", "search", "verify"}
			if conditional {
				want = want[1:]
			}
			if !slices.Equal(steps, want) {
				t.Errorf("steps %v, want %v", steps, want)
			}
		})
	}
}

// TestSimTimeoutAfterCommitFault runs against the simulator's own
// timeout-after-commit fault, when the simulator has it.
func TestSimTimeoutAfterCommitFault(t *testing.T) {
	kind := fault.Kind("timeout-after-commit")
	if err := (fault.Fault{Kind: kind}).Validate(); err != nil {
		t.Skip("the simulator has no timeout-after-commit fault yet; TestTimeoutAfterCommit covers it with a proxy")
	}
	w := newWorld(t, false, nil)
	if err := w.s.SetFaults(practice, []fault.Fault{{Endpoint: "DocumentReference", Kind: kind, Limit: 1,
		Latency: fault.Duration(100 * time.Millisecond)}}); err != nil {
		t.Fatal(err)
	}
	in := submit(t, w.ob, noteRequest("k", w.pids[2], "QQ=="))
	run(t, w.ob)
	got := waitFinal(t, w.st, 15*time.Second, in.ID)[in.ID]
	if got.Status != store.IntentConfirmed {
		t.Fatalf("final %+v", got)
	}
	if recs := w.docs(t); len(recs) != 1 || len(recs[in.ID]) != 1 {
		t.Errorf("records %v", recs)
	}
	if fs := w.s.Faults(practice); len(fs) != 1 || fs[0].Fired != 1 {
		t.Errorf("fault counters %+v", fs)
	}
	if n := w.posts(); n != 1 {
		t.Errorf("%d POSTs, want 1", n)
	}
}

// TestUpdateAnswerLost: an update commits but its answer is lost; the
// re-read finds the intent's tag, so it is not applied twice.
func TestUpdateAnswerLost(t *testing.T) {
	w := newWorld(t, false, nil)
	apptID, _ := anyAppointment(t, w.s, 0)
	var once sync.Once
	w.px.set(func(r *http.Request, _ []byte) action {
		act := pass
		if r.Method == http.MethodPut {
			once.Do(func() { act = commitThenDrop })
		}
		return act
	}, nil)
	in := submit(t, w.ob, Request{Practice: practice, App: "sched", IdempotencyKey: "u1", Kind: contract.AppointmentResched,
		PatientRef: "Patient/x", TargetID: apptID, Body: []byte(`{"comment":"moved to the afternoon"}`)})
	run(t, w.ob)
	got := waitFinal(t, w.st, 10*time.Second, in.ID)[in.ID]
	if got.Status != store.IntentConfirmed {
		t.Fatalf("final %+v", got)
	}
	puts := 0
	for _, r := range w.px.requests() {
		if r.Method == http.MethodPut {
			puts++
		}
	}
	if puts != 1 {
		t.Errorf("%d PUTs, want 1", puts)
	}
	body, _ := w.s.Get(practice, "Appointment", apptID)
	if v := versionOf(body); got.ExternalVersion != v {
		t.Errorf("external version %q, record at %q", got.ExternalVersion, v)
	}
	if !strings.Contains(string(body), "moved to the afternoon") || !hasTag(body, in.ID) {
		t.Errorf("the record lacks the change or the tag")
	}
}

// TestConflictPolicies: an update based on a version the EHR has moved
// past gets 412; each policy does what it says.
func TestConflictPolicies(t *testing.T) {
	for _, policy := range []string{store.ConflictFail, store.ConflictReapply, store.ConflictManual} {
		t.Run(policy, func(t *testing.T) {
			w := newWorld(t, false, nil)
			apptID, body := anyAppointment(t, w.s, 1)
			base := versionOf(body)
			// Someone else changes the appointment at the EHR.
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatal(err)
			}
			m["description"] = "changed at the front desk"
			other, _ := json.Marshal(m)
			if _, _, _, err := w.s.Put(practice, other); err != nil {
				t.Fatal(err)
			}
			in := submit(t, w.ob, Request{Practice: practice, App: "sched", IdempotencyKey: "u-" + policy, Kind: contract.AppointmentResched,
				PatientRef: "Patient/p", TargetID: apptID, BaseVersion: base, ConflictPolicy: policy,
				Body: []byte(`{"comment":"moved by the app"}`)})
			stop := run(t, w.ob)
			got := waitFinal(t, w.st, 10*time.Second, in.ID)[in.ID]
			now, _ := w.s.Get(practice, "Appointment", apptID)
			switch policy {
			case store.ConflictReapply:
				if got.Status != store.IntentConfirmed {
					t.Fatalf("reapply: %+v", got)
				}
				if !strings.Contains(string(now), "moved by the app") || !strings.Contains(string(now), "changed at the front desk") {
					t.Errorf("reapply lost a change")
				}
			default:
				if got.Status != store.IntentConflict || !slices.Equal(got.Differences, []string{"comment"}) ||
					!strings.Contains(got.LastError, "version "+base) {
					t.Fatalf("%s: %+v", policy, got)
				}
				if strings.Contains(string(now), "moved by the app") {
					t.Errorf("%s: the change was written", policy)
				}
				if policy == store.ConflictManual && !strings.Contains(got.LastError, "replay") {
					t.Errorf("manual: %q does not say what to do", got.LastError)
				}
			}
			if policy != store.ConflictManual {
				return
			}
			// A person resolved it: replay applies on the current version.
			r, err := w.ob.Replay(context.Background(), practice, in.ID)
			if err != nil || r.Status != store.IntentAccepted || r.BaseVersion != "" {
				t.Fatalf("replay %+v %v", r, err)
			}
			got = waitFinal(t, w.st, 10*time.Second, in.ID)[in.ID]
			stop()
			now, _ = w.s.Get(practice, "Appointment", apptID)
			if got.Status != store.IntentConfirmed || !strings.Contains(string(now), "moved by the app") {
				t.Errorf("after replay: %+v", got)
			}
		})
	}
}

// TestPerPatientOrdering: a patient's later intents wait for the earlier
// one, which is failing for a while; another patient's intent does not.
func TestPerPatientOrdering(t *testing.T) {
	w := newWorld(t, false, nil)
	a, b := w.pids[0], w.pids[1]
	var mu sync.Mutex
	failuresLeft := 3
	var firstA string
	w.px.set(func(r *http.Request, body []byte) action {
		mu.Lock()
		defer mu.Unlock()
		if isCreate(r) && firstA != "" && strings.Contains(string(body), firstA) && failuresLeft > 0 {
			failuresLeft--
			return fail503
		}
		return pass
	}, nil)
	var ids []string
	for i, text := range []string{"QTE=", "QTI=", "QTM="} {
		in := submit(t, w.ob, noteRequest("a"+string(rune('0'+i)), a, text))
		if i == 0 {
			mu.Lock()
			firstA = in.ID
			mu.Unlock()
		}
		ids = append(ids, in.ID)
	}
	inB := submit(t, w.ob, noteRequest("b0", b, "QjE="))
	run(t, w.ob)
	final := waitFinal(t, w.st, 15*time.Second, append(ids, inB.ID)...)
	for id, in := range final {
		if in.Status != store.IntentConfirmed {
			t.Errorf("%s: %s", id, in.Status)
		}
	}
	// The POSTs in the order the EHR got them.
	var order []string
	for _, r := range w.px.requests() {
		if r.Method != http.MethodPost || r.Action != pass {
			continue
		}
		for _, id := range append(ids, inB.ID) {
			if strings.Contains(string(r.Body), id) {
				order = append(order, id)
			}
		}
	}
	posA := func(id string) int { return slices.Index(order, id) }
	if !(posA(ids[0]) < posA(ids[1]) && posA(ids[1]) < posA(ids[2])) {
		t.Errorf("patient A's creates out of order: %v (want %v)", order, ids)
	}
	if posA(inB.ID) > posA(ids[0]) {
		t.Errorf("patient B waited for patient A: %v", order)
	}
	if final[ids[0]].Attempts != 4 {
		t.Errorf("the first intent took %d attempts, want 4", final[ids[0]].Attempts)
	}
}

// TestVerificationMismatch: the record read back differs from what was
// written: mismatch with the differing paths, no values.
func TestVerificationMismatch(t *testing.T) {
	w := newWorld(t, false, nil)
	var mu sync.Mutex
	alterOn := true
	w.px.set(nil, func(r *http.Request, body []byte) []byte {
		mu.Lock()
		defer mu.Unlock()
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		if alterOn && r.Method == http.MethodGet && len(parts) >= 2 && parts[len(parts)-2] == "DocumentReference" {
			return []byte(strings.Replace(string(body), `"status":"current"`, `"status":"superseded"`, 1))
		}
		return body
	})
	in := submit(t, w.ob, noteRequest("k", w.pids[3], "QQ=="))
	run(t, w.ob)
	got := waitFinal(t, w.st, 10*time.Second, in.ID)[in.ID]
	if got.Status != store.IntentMismatch || !slices.Equal(got.Differences, []string{"status"}) || strings.Contains(got.LastError, "superseded") {
		t.Fatalf("final %+v", got)
	}
	// Replay after the EHR is fixed: found by identifier, verified, not re-created.
	mu.Lock()
	alterOn = false
	mu.Unlock()
	if _, err := w.ob.Replay(context.Background(), practice, in.ID); err != nil {
		t.Fatal(err)
	}
	got = waitFinal(t, w.st, 10*time.Second, in.ID)[in.ID]
	if got.Status != store.IntentConfirmed || len(got.Differences) != 0 {
		t.Errorf("after replay %+v", got)
	}
	if recs := w.docs(t); len(recs[in.ID]) != 1 || w.posts() != 1 {
		t.Errorf("records %v, POSTs %d", recs, w.posts())
	}
}

// TestRejectionTranslated: the EHR refuses a create (422); the intent is
// rejected with a staff message and listed among the practice's rejections.
func TestRejectionTranslated(t *testing.T) {
	w := newWorld(t, false, nil)
	r := noteRequest("k", "no-such-patient", "QQ==")
	in := submit(t, w.ob, r)
	run(t, w.ob)
	got := waitFinal(t, w.st, 10*time.Second, in.ID)[in.ID]
	if got.Status != store.IntentRejected || got.Rejection == "" || got.Attempts != 1 {
		t.Fatalf("final %+v", got)
	}
	if strings.Contains(got.Rejection, "refers to a Patient") || strings.Contains(got.LastError, "refers to a Patient") {
		t.Errorf("the EHR's diagnostics leaked: %q / %q", got.Rejection, got.LastError)
	}
	rs, err := w.ob.Rejections(context.Background(), practice, 0)
	if err != nil || len(rs) != 1 || rs[0].IntentID != in.ID || rs[0].Message != got.Rejection || rs[0].At.IsZero() {
		t.Errorf("rejections %+v %v", rs, err)
	}
	if len(w.docs(t)) != 0 {
		t.Error("a rejected intent left a record")
	}
}

// TestDeadLetterAndReplay: retries run out, the intent is dead; replay
// after the EHR recovers writes it once.
func TestDeadLetterAndReplay(t *testing.T) {
	w := newWorld(t, false, func(o *Options) { o.MaxAge = 150 * time.Millisecond })
	var mu sync.Mutex
	down := true
	w.px.set(func(r *http.Request, _ []byte) action {
		mu.Lock()
		defer mu.Unlock()
		if down && isCreate(r) {
			return fail500
		}
		return pass
	}, nil)
	in := submit(t, w.ob, noteRequest("k", w.pids[0], "QQ=="))
	run(t, w.ob)
	got := waitFinal(t, w.st, 10*time.Second, in.ID)[in.ID]
	if got.Status != store.IntentDead || !strings.Contains(got.LastError, "gave up") || got.Attempts < 2 {
		t.Fatalf("final %+v", got)
	}
	dead, _ := w.ob.List(context.Background(), practice, store.IntentFilter{Status: []string{store.IntentDead}})
	if len(dead) != 1 || dead[0].ID != in.ID {
		t.Errorf("dead letters %+v", dead)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	if _, err := w.ob.Replay(context.Background(), practice, in.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ob.Replay(context.Background(), practice, in.ID); !errors.Is(err, store.ErrIntentState) {
		t.Errorf("second replay: %v", err)
	}
	got = waitFinal(t, w.st, 10*time.Second, in.ID)[in.ID]
	if got.Status != store.IntentConfirmed {
		t.Errorf("after replay %+v", got)
	}
	if recs := w.docs(t); len(recs[in.ID]) != 1 {
		t.Errorf("records %v", recs)
	}
}

// TestRestartFinishes: the outbox stops while the EHR holds its creates
// (committed, unanswered); a new outbox on the same SQLite file finds
// the records instead of writing them again.
func TestRestartFinishes(t *testing.T) {
	w := newWorld(t, false, nil)
	const n = 12
	release := make(chan struct{})
	w.px.set(func(r *http.Request, _ []byte) action {
		if isCreate(r) {
			return commitThenHold
		}
		return pass
	}, nil)
	w.px.mu.Lock()
	w.px.hold = release
	w.px.mu.Unlock()
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, submit(t, w.ob, noteRequest("k"+string(rune('a'+i)), w.pids[i%4], "QQ==")).ID)
	}
	stop := run(t, w.ob)
	// Wait until the EHR has committed the heads of the four patient queues.
	deadline := time.Now().Add(10 * time.Second)
	for len(w.docs(t)) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("the EHR got %d creates", len(w.docs(t)))
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	close(release)
	if err := w.st.(interface{ Close() error }).Close(); err != nil {
		t.Fatal(err)
	}
	// A new process: the same file, a new store and outbox.
	st2 := openStoreAt(t, w.path)
	for _, id := range ids[:4] {
		in, _ := st2.GetIntent(context.Background(), practice, id)
		if in.Status != store.IntentSending || in.ExternalID != "" {
			t.Errorf("after the stop %s is %s (external %q)", id, in.Status, in.ExternalID)
		}
	}
	opts := w.opts
	opts.Store, opts.OnStatus = st2, nil
	w.px.set(nil, nil)
	postsBefore := w.posts()
	ob2 := newOutbox(t, opts)
	run(t, ob2)
	final := waitFinal(t, st2, 15*time.Second, ids...)
	for id, in := range final {
		if in.Status != store.IntentConfirmed {
			t.Errorf("%s: %s (%s)", id, in.Status, in.LastError)
		}
	}
	recs := w.docs(t)
	for _, id := range ids {
		if len(recs[id]) != 1 {
			t.Errorf("intent %s has %d records", id, len(recs[id]))
		}
	}
	if got := w.posts() - postsBefore; got != n-4 {
		t.Errorf("the new outbox sent %d creates, want %d (the 4 committed ones are found, not resent)", got, n-4)
	}
}
