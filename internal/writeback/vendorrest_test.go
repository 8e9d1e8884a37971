package writeback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/fault"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/writeback/contract"
)

// athenaPractice is the simulator's athenahealth sandbox practice id.
const athenaPractice = "195900"

// athenaWorld is the simulator's athenahealth flavour (tenant "clinic",
// open auth), a proxy in front of it, open slots, and an outbox writing
// through the v1 API with athenahealth's write contract.
type athenaWorld struct {
	s        *sim.Sim
	px       *proxy
	st       Store
	ob       *Outbox
	target   *VendorRESTTarget
	patients []string // FHIR ids
	dept     string   // v1 department id of the slots
	slots    []string // v1 ids of open slots, 08/03/2026 from 09:00 every 30 minutes
	mu       sync.Mutex
	moves    []StatusChange
}

func newAthenaWorld(t *testing.T, slots int, mod func(*Options)) *athenaWorld {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{
		ID: practice, Flavor: "athenahealth", Seed: 12, OpenAuth: true, Data: &gen.Options{Patients: 6, PastDays: 5, FutureDays: 5},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); s.Wait() })
	px := startProxy(t, s.Root())
	st, _ := openStore(t)
	w := &athenaWorld{s: s, px: px, st: st}
	w.patients = patientIDs(t, s, 4)
	prov := v1Local(firstID(t, s, "Practitioner"))
	w.dept = v1Local(firstID(t, s, "Location"))
	day := time.Date(2026, 8, 3, 9, 0, 0, 0, time.UTC)
	for i := 0; i < slots; i++ {
		hm := day.Add(time.Duration(i) * 30 * time.Minute).Format("15:04")
		form := url.Values{"departmentid": {w.dept}, "providerid": {prov}, "appointmentdate": {"08/03/2026"},
			"appointmenttime": {hm}, "appointmenttypeid": {"82"}}
		res := w.v1Form(t, http.MethodPost, "appointments/open", form)
		var opened struct {
			AppointmentIDs map[string]string `json:"appointmentids"`
		}
		if res.status != 200 || json.Unmarshal(res.body, &opened) != nil || opened.AppointmentIDs[hm] == "" {
			t.Fatalf("open slot %s: %d %s", hm, res.status, res.body)
		}
		w.slots = append(w.slots, opened.AppointmentIDs[hm])
	}
	ct, err := contract.Default().For(contract.VendorAthenahealth, "")
	if err != nil {
		t.Fatal(err)
	}
	w.target = &VendorRESTTarget{BaseURL: px.url("/" + practice + "/v1"), PracticeID: athenaPractice,
		HTTPClient: &http.Client{}, Timeout: 2 * time.Second}
	opts := testOptions(st, map[string]Target{practice: {VendorREST: w.target, Support: ct.Support}})
	opts.OnStatus = func(c StatusChange) {
		w.mu.Lock()
		w.moves = append(w.moves, c)
		w.mu.Unlock()
	}
	if mod != nil {
		mod(&opts)
	}
	w.ob = newOutbox(t, opts)
	return w
}

func firstID(t *testing.T, s *sim.Sim, rt string) string {
	t.Helper()
	var ids []string
	for id := range s.Current(practice, rt) {
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		t.Fatalf("no %s in the simulator", rt)
	}
	sort.Strings(ids)
	return ids[0]
}

// v1Local is the v1 id inside an athenahealth FHIR id.
func v1Local(fhirID string) string { return fhirID[strings.LastIndexByte(fhirID, '-')+1:] }

type v1Resp struct {
	status int
	body   []byte
}

// v1Form sends a v1 request straight to the simulator (not through the proxy).
func (w *athenaWorld) v1Form(t *testing.T, method, path string, form url.Values) v1Resp {
	t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req, err := http.NewRequest(method, w.s.Root()+"/"+practice+"/v1/"+athenaPractice+"/"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return v1Resp{status: res.StatusCode, body: b}
}

// appt is the FHIR Appointment behind a v1 id, as the simulator holds it.
func (w *athenaWorld) appt(t *testing.T, v1id string) *gen.Obj {
	t.Helper()
	b, ok := w.s.Get(practice, "Appointment", apptFHIRID(v1id))
	if !ok {
		t.Fatalf("no appointment %s at the simulator", v1id)
	}
	o, err := gen.ParseObj(b)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func apptFHIRID(v1id string) string { return "a-" + athenaPractice + ".appointment-" + v1id }

// apptPatient is the Patient participant of an appointment ("" when none).
func apptPatient(o *gen.Obj) string {
	for _, x := range o.List("participant") {
		p, _ := x.(*gen.Obj)
		if p == nil || p.Child("actor") == nil {
			continue
		}
		if ref := p.Child("actor").Str("reference"); strings.HasPrefix(ref, "Patient/") {
			return strings.TrimPrefix(ref, "Patient/")
		}
	}
	return ""
}

// slotStart is the start of slot i.
func slotStart(i int) time.Time {
	return time.Date(2026, 8, 3, 9, 0, 0, 0, time.UTC).Add(time.Duration(i) * 30 * time.Minute)
}

// apptBody is a canonical Appointment for a patient in slot i.
func (w *athenaWorld) apptBody(patient string, slot int, status string) []byte {
	return fmt.Appendf(nil, `{"resourceType":"Appointment","status":%q,"slot":[{"reference":"Slot/%s"}],`+
		`"participant":[{"actor":{"reference":"Patient/%s"},"status":"accepted"},{"actor":{"reference":"Location/a-%s.Department-%s"},"status":"accepted"}],`+
		`"appointmentType":{"coding":[{"system":"urn:test","code":"82"}]},"start":%q}`,
		status, apptFHIRID(w.slots[slot]), patient, athenaPractice, w.dept, slotStart(slot).Format(time.RFC3339))
}

func (w *athenaWorld) book(key, patient string, slot int) Request {
	return Request{Practice: practice, App: "scheduler", IdempotencyKey: key, Kind: contract.AppointmentBook,
		PatientRef: "Patient/" + patient, Body: w.apptBody(patient, slot, "booked")}
}

func (w *athenaWorld) reschedule(key, patient, target string, slot int) Request {
	return Request{Practice: practice, App: "scheduler", IdempotencyKey: key, Kind: contract.AppointmentResched,
		PatientRef: "Patient/" + patient, TargetID: target, Body: w.apptBody(patient, slot, "booked")}
}

func (w *athenaWorld) cancel(key, patient, target string) Request {
	body := fmt.Appendf(nil, `{"resourceType":"Appointment","id":%q,"status":"cancelled","cancelationReason":{"text":"Patient called"},`+
		`"participant":[{"actor":{"reference":"Patient/%s"},"status":"accepted"}]}`, target, patient)
	return Request{Practice: practice, App: "scheduler", IdempotencyKey: key, Kind: contract.AppointmentCancel,
		PatientRef: "Patient/" + patient, TargetID: target, Body: body}
}

// v1Steps lists an intent's exchanges as "attempt step METHOD status".
func v1Steps(t *testing.T, ob *Outbox, id string) []string {
	t.Helper()
	as, err := ob.Attempts(context.Background(), practice, id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, fmt.Sprintf("%d %s %s %d", a.Attempt, a.Step, a.Method, a.Status))
	}
	return out
}

// puts counts the PUTs that reached the proxy.
func (w *athenaWorld) puts() int {
	n := 0
	for _, r := range w.px.requests() {
		if r.Method == http.MethodPut {
			n++
		}
	}
	return n
}

func TestVendorRESTBookRescheduleCancel(t *testing.T) {
	w := newAthenaWorld(t, 3, nil)
	p := w.patients[0]
	// All three at once: the patient's queue runs them in order.
	book := submit(t, w.ob, w.book("b1", p, 0))
	resched := submit(t, w.ob, w.reschedule("r1", p, apptFHIRID(w.slots[0]), 1))
	cancel := submit(t, w.ob, w.cancel("c1", p, apptFHIRID(w.slots[1])))
	if book.TargetType != "Appointment" || book.Status != store.IntentAccepted {
		t.Fatalf("submitted %+v", book)
	}
	run(t, w.ob)
	got := waitFinal(t, w.st, 20*time.Second, book.ID, resched.ID, cancel.ID)
	for _, id := range []string{book.ID, resched.ID, cancel.ID} {
		if got[id].Status != store.IntentConfirmed || got[id].LastError != "" {
			t.Errorf("intent %s (%s): %s %q %v", id, got[id].Kind, got[id].Status, got[id].LastError, got[id].Differences)
		}
	}
	if got[book.ID].ExternalID != apptFHIRID(w.slots[0]) || got[resched.ID].ExternalID != apptFHIRID(w.slots[1]) ||
		got[cancel.ID].ExternalID != apptFHIRID(w.slots[1]) {
		t.Errorf("records: %s %s %s", got[book.ID].ExternalID, got[resched.ID].ExternalID, got[cancel.ID].ExternalID)
	}
	// At the EHR: the first slot was booked, then cancelled by the
	// reschedule; the second booked by it, then cancelled.
	first, second := w.appt(t, w.slots[0]), w.appt(t, w.slots[1])
	if first.Str("status") != "cancelled" || apptPatient(first) != p || second.Str("status") != "cancelled" || apptPatient(second) != p {
		t.Errorf("at the EHR: %s (%s), %s (%s)", first.Str("status"), apptPatient(first), second.Str("status"), apptPatient(second))
	}
	if r := second.Child("cancelationReason"); r == nil || r.Str("text") != "Patient called" {
		t.Error("the cancellation reason did not reach the EHR")
	}
	if w.appt(t, w.slots[2]).Str("status") != "proposed" {
		t.Error("an untouched slot changed")
	}
	// One write each, read back after it; nothing looked for first.
	want := map[string][]string{
		book.ID:    {"1 book PUT 200", "1 verify GET 200"},
		resched.ID: {"1 reschedule PUT 200", "1 verify GET 200", "1 verify GET 200"},
		cancel.ID:  {"1 cancel PUT 200", "1 verify GET 200"},
	}
	for id, w8 := range want {
		if s := v1Steps(t, w.ob, id); !slices.Equal(s, w8) {
			t.Errorf("%s steps %v, want %v", got[id].Kind, s, w8)
		}
	}
	as, _ := w.ob.Attempts(context.Background(), practice, book.ID)
	if as[0].Path != "/"+practice+"/v1/"+athenaPractice+"/appointments/"+w.slots[0] || as[0].BodyHash == "" ||
		as[0].Headers["Content-Type"] != "application/x-www-form-urlencoded" {
		t.Errorf("book attempt %+v", as[0])
	}
	// The form carried what athenahealth documents.
	for _, r := range w.px.requests() {
		if r.Method != http.MethodPut {
			continue
		}
		f, _ := url.ParseQuery(string(r.Body))
		switch {
		case strings.HasSuffix(r.Path, "/reschedule"):
			if f.Get("newappointmentid") != w.slots[1] || f.Get("patientid") != v1Local(p) {
				t.Errorf("reschedule form %v", f)
			}
		case strings.HasSuffix(r.Path, "/cancel"):
			if f.Get("patientid") != v1Local(p) || f.Get("cancellationreason") != "Patient called" {
				t.Errorf("cancel form %v", f)
			}
		default:
			if f.Get("patientid") != v1Local(p) || f.Get("appointmenttypeid") != "82" || f.Get("departmentid") != w.dept {
				t.Errorf("book form %v", f)
			}
		}
	}
	// Audited as writes by the app, PHI-free.
	evs, err := w.st.ListAudit(context.Background(), practice, store.AuditFilter{Actor: "app:scheduler"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 7 {
		t.Errorf("%d audit events, want 7", len(evs))
	}
	for _, ev := range evs {
		if ev.Action != "write" || !strings.HasPrefix(ev.Entity, "Appointment") || ev.Outcome != "success" || strings.Contains(ev.Detail, "Patient called") {
			t.Errorf("audit %+v", ev)
		}
	}
	w.mu.Lock()
	var moves []string
	for _, m := range w.moves {
		if m.IntentID == book.ID {
			moves = append(moves, m.From+">"+m.To+" "+m.Ref)
		}
	}
	w.mu.Unlock()
	ref := "Appointment/" + apptFHIRID(w.slots[0])
	if !slices.Equal(moves, []string{">accepted ", "sending>sent " + ref, "sent>confirmed " + ref}) {
		t.Errorf("status changes %v", moves)
	}
}

// TestVendorRESTTimeoutAfterCommit: athenahealth commits each write but
// never answers; the executor reads the appointment back, finds the change
// and never sends the write again.
func TestVendorRESTTimeoutAfterCommit(t *testing.T) {
	w := newAthenaWorld(t, 2, nil)
	w.target.Timeout = 300 * time.Millisecond
	p := w.patients[1]
	if err := w.s.SetFaults(practice, []fault.Fault{{Endpoint: "write:Appointment", Kind: fault.TimeoutAfterCommit}}); err != nil {
		t.Fatal(err)
	}
	run(t, w.ob)
	reqs := []Request{w.book("b", p, 0), w.reschedule("r", p, apptFHIRID(w.slots[0]), 1), w.cancel("c", p, apptFHIRID(w.slots[1]))}
	for _, r := range reqs {
		in := submit(t, w.ob, r)
		got := waitFinal(t, w.st, 20*time.Second, in.ID)[in.ID]
		if got.Status != store.IntentConfirmed || got.Attempts != 1 {
			t.Errorf("%s: %s after %d attempt(s): %s", r.Kind, got.Status, got.Attempts, got.LastError)
		}
		s := v1Steps(t, w.ob, in.ID)
		op := strings.TrimPrefix(string(r.Kind), "appointment.")
		if len(s) < 3 || s[0] != "1 "+op+" PUT 0" || s[1] != "1 look GET 200" || !strings.HasPrefix(s[2], "1 verify GET 200") {
			t.Errorf("%s steps %v", r.Kind, s)
		}
	}
	if n := w.puts(); n != 3 {
		t.Errorf("%d PUTs reached athenahealth, want 3 (one per intent)", n)
	}
	first, second := w.appt(t, w.slots[0]), w.appt(t, w.slots[1])
	if first.Str("status") != "cancelled" || second.Str("status") != "cancelled" || apptPatient(second) != p {
		t.Errorf("at the EHR: %s, %s (%s)", first.Str("status"), second.Str("status"), apptPatient(second))
	}
	// Exactly one booking per slot: the second slot has one Patient participant.
	n := 0
	for _, x := range second.List("participant") {
		if p, _ := x.(*gen.Obj); p != nil && p.Child("actor") != nil && strings.HasPrefix(p.Child("actor").Str("reference"), "Patient/") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the rescheduled slot has %d patient participants", n)
	}
}

// TestVendorRESTLostBeforeCommit: the connection drops before athenahealth
// does anything; the look finds nothing, and the write is sent again only
// after a later look confirms it is still not there.
func TestVendorRESTLostBeforeCommit(t *testing.T) {
	w := newAthenaWorld(t, 1, nil)
	var once sync.Once
	w.px.set(func(r *http.Request, _ []byte) action {
		act := pass
		if r.Method == http.MethodPut {
			once.Do(func() { act = dropBefore })
		}
		return act
	}, nil)
	in := submit(t, w.ob, w.book("b", w.patients[2], 0))
	run(t, w.ob)
	got := waitFinal(t, w.st, 20*time.Second, in.ID)[in.ID]
	if got.Status != store.IntentConfirmed || got.Attempts != 2 {
		t.Fatalf("%s after %d attempts: %s", got.Status, got.Attempts, got.LastError)
	}
	want := []string{"1 book PUT 0", "1 look GET 200", "2 look GET 200", "2 book PUT 200", "2 verify GET 200"}
	if s := v1Steps(t, w.ob, in.ID); !slices.Equal(s, want) {
		t.Errorf("steps %v, want %v", s, want)
	}
}

// TestVendorRESTLateLanding: the first write got no answer and was not
// found, but lands at athenahealth just before the retry, which is then
// refused (the slot is booked); the executor looks once more and adopts
// the booking instead of rejecting the intent.
func TestVendorRESTLateLanding(t *testing.T) {
	w := newAthenaWorld(t, 1, nil)
	p := w.patients[2]
	puts := 0
	w.px.set(func(r *http.Request, body []byte) action {
		if r.Method != http.MethodPut {
			return pass
		}
		puts++
		if puts == 1 {
			return dropBefore
		}
		// The first request lands now, behind the executor's back.
		if res := w.v1Form(t, http.MethodPut, "appointments/"+w.slots[0], url.Values{"patientid": {v1Local(p)}}); res.status != 200 {
			t.Errorf("late landing: %d %s", res.status, res.body)
		}
		return pass
	}, nil)
	in := submit(t, w.ob, w.book("b", p, 0))
	run(t, w.ob)
	got := waitFinal(t, w.st, 20*time.Second, in.ID)[in.ID]
	if got.Status != store.IntentConfirmed {
		t.Fatalf("%s: %s %s", got.Status, got.LastError, got.Rejection)
	}
	want := []string{"1 book PUT 0", "1 look GET 200", "2 look GET 200", "2 book PUT 400", "2 look GET 200", "2 verify GET 200"}
	if s := v1Steps(t, w.ob, in.ID); !slices.Equal(s, want) {
		t.Errorf("steps %v, want %v", s, want)
	}
}

// TestVendorRESTThrottledAndUnavailable: 429 and 503 are retried after
// their Retry-After; a 503 is followed by a look, not a blind resend.
func TestVendorRESTThrottledAndUnavailable(t *testing.T) {
	w := newAthenaWorld(t, 2, nil)
	run(t, w.ob)
	for i, tc := range []struct {
		kind fault.Kind
		want []string
	}{
		{fault.TooManyRequests, []string{"1 book PUT 429", "2 look GET 200", "2 book PUT 200", "2 verify GET 200"}},
		{fault.Unavailable, []string{"1 book PUT 503", "1 look GET 200", "2 look GET 200", "2 book PUT 200", "2 verify GET 200"}},
	} {
		if err := w.s.SetFaults(practice, []fault.Fault{{Endpoint: "write:Appointment", Kind: tc.kind, Limit: 1}}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		in := submit(t, w.ob, w.book("k"+string(tc.kind), w.patients[i], i))
		got := waitFinal(t, w.st, 20*time.Second, in.ID)[in.ID]
		if got.Status != store.IntentConfirmed {
			t.Fatalf("%s: %s %s", tc.kind, got.Status, got.LastError)
		}
		if s := v1Steps(t, w.ob, in.ID); !slices.Equal(s, tc.want) {
			t.Errorf("%s: steps %v, want %v", tc.kind, s, tc.want)
		}
		if took := time.Since(start); took < 900*time.Millisecond {
			t.Errorf("%s: retried after %s, before the server's Retry-After (1 s)", tc.kind, took)
		}
		if o := w.appt(t, w.slots[i]); o.Str("status") != "booked" || apptPatient(o) != w.patients[i] {
			t.Errorf("%s: slot %s %s", tc.kind, o.Str("status"), apptPatient(o))
		}
	}
}

// TestVendorRESTBusinessErrors: athenahealth's 400s end the intent
// rejected, with a message staff can act on and nothing of the EHR's text.
func TestVendorRESTBusinessErrors(t *testing.T) {
	w := newAthenaWorld(t, 2, nil)
	// Someone else books the first slot before us.
	if r := w.v1Form(t, http.MethodPut, "appointments/"+w.slots[0], url.Values{"patientid": {v1Local(w.patients[3])}}); r.status != 200 {
		t.Fatalf("booking by someone else: %d %s", r.status, r.body)
	}
	taken := submit(t, w.ob, w.book("taken", w.patients[0], 0))
	unknown := submit(t, w.ob, w.book("unknown", "a-"+athenaPractice+".E-9", 1))
	notBooked := submit(t, w.ob, w.cancel("not-booked", w.patients[1], apptFHIRID(w.slots[1])))
	run(t, w.ob)
	got := waitFinal(t, w.st, 20*time.Second, taken.ID, unknown.ID, notBooked.ID)
	for id, want := range map[string]string{
		taken.ID:     "The slot is no longer open at athenahealth",
		unknown.ID:   "athenahealth does not know this patient",
		notBooked.ID: "no longer booked at athenahealth",
	} {
		in := got[id]
		if in.Status != store.IntentRejected || !strings.Contains(in.Rejection, want) {
			t.Errorf("%s: %s %q", in.IdempotencyKey, in.Status, in.Rejection)
		}
		if !strings.HasPrefix(in.LastError, "refused by the EHR: HTTP 400 Bad Request") || strings.Contains(strings.ToLower(in.LastError), "booked") {
			t.Errorf("%s: last error %q", in.IdempotencyKey, in.LastError)
		}
		if s := v1Steps(t, w.ob, id); len(s) != 1 {
			t.Errorf("%s: steps %v, want the write alone", in.IdempotencyKey, s)
		}
	}
	if o := w.appt(t, w.slots[0]); apptPatient(o) != w.patients[3] {
		t.Errorf("the other patient's booking changed: %s", apptPatient(o))
	}
	rs, err := w.ob.Rejections(context.Background(), practice, 0)
	if err != nil || len(rs) != 3 {
		t.Fatalf("rejections %v %v", rs, err)
	}
}

// TestVendorRESTMismatch: athenahealth answers 200 but the appointment
// read back is not what was asked.
func TestVendorRESTMismatch(t *testing.T) {
	w := newAthenaWorld(t, 1, nil)
	w.px.set(nil, func(r *http.Request, body []byte) []byte {
		if r.Method != http.MethodGet {
			return body
		}
		return []byte(strings.Replace(string(body), `"starttime":"09:00"`, `"starttime":"11:00"`, 1))
	})
	in := submit(t, w.ob, w.book("b", w.patients[0], 0))
	run(t, w.ob)
	got := waitFinal(t, w.st, 20*time.Second, in.ID)[in.ID]
	if got.Status != store.IntentMismatch || !slices.Equal(got.Differences, []string{"start"}) || got.ExternalID != apptFHIRID(w.slots[0]) {
		t.Fatalf("%s %v %q", got.Status, got.Differences, got.LastError)
	}
}

func TestVendorRESTIdempotentResubmission(t *testing.T) {
	w := newAthenaWorld(t, 1, nil)
	r := w.book("same-key", w.patients[0], 0)
	first, created, err := w.ob.Submit(context.Background(), r)
	if err != nil || !created {
		t.Fatalf("first: %v %v", created, err)
	}
	again, created, err := w.ob.Submit(context.Background(), r)
	if err != nil || created || again.ID != first.ID {
		t.Fatalf("again: %v %+v %v", created, again, err)
	}
	other := w.book("same-key", w.patients[1], 0)
	if _, _, err := w.ob.Submit(context.Background(), other); !errors.Is(err, ErrKeyReused) {
		t.Errorf("same key, other patient: %v", err)
	}
	run(t, w.ob)
	waitFinal(t, w.st, 20*time.Second, first.ID)
	final, created, err := w.ob.Submit(context.Background(), r)
	if err != nil || created || final.ID != first.ID || final.Status != store.IntentConfirmed {
		t.Fatalf("after confirm: %v %+v %v", created, final, err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := w.puts(); n != 1 {
		t.Errorf("%d PUTs, want 1", n)
	}
}

func TestVendorRESTSubmitRefusals(t *testing.T) {
	w := newAthenaWorld(t, 1, nil)
	p := w.patients[0]
	noSlot := w.book("k", p, 0)
	noSlot.Body = []byte(`{"resourceType":"Appointment","status":"booked","participant":[{"actor":{"reference":"Patient/` + p + `"}}]}`)
	notAthena := w.book("k", p, 0)
	notAthena.Body = []byte(strings.Replace(string(notAthena.Body), `"reference":"Patient/`+p+`"`, `"reference":"Patient/abc"`, 1))
	withBase := w.reschedule("k", p, apptFHIRID(w.slots[0]), 0)
	withBase.BaseVersion = "2"
	sameSlot := w.reschedule("k", p, apptFHIRID(w.slots[0]), 0)
	noTarget := w.cancel("k", p, "")
	for name, tc := range map[string]struct {
		r    Request
		want string
	}{
		"no slot":               {noSlot, "no slot"},
		"patient not athena":    {notAthena, "not an athenahealth patient id"},
		"base version":          {withBase, "no record versions"},
		"reschedule to itself":  {sameSlot, "the appointment itself"},
		"cancel without target": {noTarget, "no athenahealth appointment id"},
	} {
		_, _, err := w.ob.Submit(context.Background(), tc.r)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	n, err := w.st.CountIntents(context.Background(), practice)
	if err != nil || n[store.IntentAccepted] != 0 {
		t.Errorf("refused intents were stored: %v %v", n, err)
	}

	// A practice without a vendor API target refuses them with the reason.
	ct, _ := contract.Default().For(contract.VendorAthenahealth, "")
	st, _ := openStore(t)
	ob := newOutbox(t, testOptions(st, map[string]Target{practice: {FHIR: fhirClient(t, w.s.BaseURL(practice)), Support: ct.Support}}))
	_, _, err = ob.Submit(context.Background(), w.book("k", p, 0))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "no vendor API connection") {
		t.Errorf("without a vendor API target: %v", err)
	}

	// Targets are checked.
	for name, v := range map[string]*VendorRESTTarget{
		"relative URL":     {BaseURL: "/v1", PracticeID: athenaPractice},
		"practice letters": {BaseURL: "http://127.0.0.1:1/v1", PracticeID: "a-1"},
	} {
		if _, err := New(testOptions(st, map[string]Target{practice: {VendorREST: v, Support: ct.Support}})); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestTranslateAthena(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		want   string
		codes  string
	}{
		{400, `{"error":"The appointment is already booked or is not open for scheduling."}`, "The slot is no longer open", "HTTP 400 Bad Request [v1 error]"},
		{400, `{"error":"Missing required fields.","missingfields":["patientid","newappointmentid"]}`, "(newappointmentid, patientid)", "HTTP 400 Bad Request [v1 error at newappointmentid, patientid]"},
		{400, `{"error":"Invalid field value.","detailedmessage":"patientid is not a patient of this practice","field":"patientid"}`, "does not know this patient", ""},
		{400, `{"error":"Invalid field value.","detailedmessage":"patientid is not the patient of this appointment","field":"patientid"}`, "not this appointment's patient", ""},
		{400, `{"error":"A field is too long.","detailedmessage":"bookingnote may be at most 500 characters","field":"bookingnote"}`, "too long for athenahealth's v1 API (at bookingnote)", ""},
		{400, `{"error":"Invalid field value.","field":"insurancecontractid"}`, "did not accept a value (at insurancecontractid)", ""},
		{400, `{"error":"Invalid field value.","field":"Robert Smith"}`, "did not accept a value. Correct", "HTTP 400 Bad Request [v1 error]"},
		{400, `{"error":"The appointment is not booked, so it cannot be changed."}`, "no longer booked", ""},
		{404, `{"error":"The appointment ID is invalid."}`, "does not exist at athenahealth", ""},
		{403, `{"error":"The practice ID is not accessible to this client."}`, "may not write to this athenahealth practice", ""},
		{422, `not json`, "The EHR's rules refused the write (HTTP 422)", "HTTP 422 Unprocessable Entity"},
		{400, `{"error":"Something about Jane Doe, born 1970."}`, "malformed (HTTP 400)", ""},
	} {
		got := TranslateAthena(tc.status, []byte(tc.body))
		if !strings.Contains(got, tc.want) || strings.Contains(got, "Jane") || strings.Contains(got, "Robert") {
			t.Errorf("%d %s: %q", tc.status, tc.body, got)
		}
		if tc.codes != "" {
			if c := athenaCodes(tc.status, []byte(tc.body)); c != tc.codes {
				t.Errorf("codes of %s: %q, want %q", tc.body, c, tc.codes)
			}
		}
	}
}
