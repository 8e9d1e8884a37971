package sim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/sim/fault"
	"github.com/mediflow/mediflow/internal/sim/flavor/athenahealth"
	"github.com/mediflow/mediflow/internal/sim/gen"
)

// athenaV1 is an athenahealth tenant with open slots and a booked one.
type athenaV1 struct {
	f              *fixture
	v1, tok        string
	patient, other string   // v1 patient ids
	open           []string // v1 ids of open slots (09:00, 09:30, 10:00, 10:30)
}

func newAthenaV1(t *testing.T) *athenaV1 {
	t.Helper()
	f, v1 := athenaFixture(t)
	a := &athenaV1{f: f, v1: v1, tok: f.token("ah")}
	var pats []string
	for id := range f.sim.Current("ah", "Patient") {
		if strings.HasPrefix(id, "a-"+athenahealth.SandboxPractice+".E-") && isDigits(athenaLocal(id)) {
			pats = append(pats, athenaLocal(id))
		}
	}
	if len(pats) < 2 {
		t.Fatalf("patients with v1 ids: %v", pats)
	}
	a.patient, a.other = pats[0], pats[1]
	prov := athenaLocal(anyID(f.sim.Current("ah", "Practitioner")))
	dept := athenaLocal(anyID(f.sim.Current("ah", "Location")))
	// appointmenttime is a v1 field too (20 characters): two slots a call.
	for _, times := range [][]string{{"09:00", "09:30"}, {"10:00", "10:30"}} {
		r := f.form("POST", v1+"/appointments/open", a.tok, url.Values{"departmentid": {dept}, "providerid": {prov},
			"appointmentdate": {"08/03/2026"}, "appointmenttime": {strings.Join(times, ",")}, "appointmenttypeid": {"82"}})
		var opened struct {
			AppointmentIDs map[string]string `json:"appointmentids"`
		}
		if r.status != 200 || json.Unmarshal(r.body, &opened) != nil {
			t.Fatalf("open slots: %d %s", r.status, r.body)
		}
		for _, hm := range times {
			a.open = append(a.open, opened.AppointmentIDs[hm])
		}
	}
	return a
}

func (a *athenaV1) put(path string, form url.Values) resp {
	a.f.t.Helper()
	return a.f.form("PUT", a.v1+"/appointments/"+path, a.tok, form)
}

// appt reads a v1 appointment.
func (a *athenaV1) appt(id string) map[string]any {
	a.f.t.Helper()
	r := a.f.get(a.v1+"/appointments/"+id, a.tok)
	var out []map[string]any
	if r.status != 200 || json.Unmarshal(r.body, &out) != nil || len(out) != 1 {
		a.f.t.Fatalf("read appointment %s: %d %s", id, r.status, r.body)
	}
	return out[0]
}

// fhirAppt reads the FHIR Appointment behind a v1 id.
func (a *athenaV1) fhirAppt(id string) *gen.Obj {
	a.f.t.Helper()
	b, ok := a.f.sim.Get("ah", "Appointment", "a-"+athenahealth.SandboxPractice+".appointment-"+id)
	if !ok {
		a.f.t.Fatalf("no FHIR Appointment for v1 id %s", id)
	}
	o, err := gen.ParseObj(b)
	if err != nil {
		a.f.t.Fatal(err)
	}
	return o
}

func (a *athenaV1) book(slot, patient string) {
	a.f.t.Helper()
	if r := a.put(slot, url.Values{"patientid": {patient}}); r.status != 200 {
		a.f.t.Fatalf("book %s: %d %s", slot, r.status, r.body)
	}
}

// openCount is the number of open slots the v1 API lists.
func (a *athenaV1) openCount() int {
	a.f.t.Helper()
	r := a.f.get(a.v1+"/appointments/open", a.tok)
	var list struct {
		Total int `json:"totalcount"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &list) != nil {
		a.f.t.Fatalf("open slots: %d %s", r.status, r.body)
	}
	return list.Total
}

// errorOf decodes a v1 error answer.
func errorOf(t *testing.T, r resp) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil || m["error"] == nil {
		t.Fatalf("not a v1 error: %d %s", r.status, r.body)
	}
	return m
}

func TestAthenaV1Reschedule(t *testing.T) {
	a := newAthenaV1(t)
	from, to, taken := a.open[0], a.open[1], a.open[2]
	a.book(from, a.patient)
	a.book(taken, a.other)

	// Refusals first: nothing changes.
	for _, tc := range []struct {
		name, id string
		form     url.Values
		status   int
		want     string
	}{
		{"missing fields", from, url.Values{"reschedulereason": {"x"}}, 400, `"missingfields":["newappointmentid","patientid"]`},
		{"other patient", from, url.Values{"newappointmentid": {to}, "patientid": {a.other}}, 400, `"field":"patientid"`},
		{"new slot taken", from, url.Values{"newappointmentid": {taken}, "patientid": {a.patient}}, 400, "already booked"},
		{"new slot is the appointment", from, url.Values{"newappointmentid": {from}, "patientid": {a.patient}}, 400, "already booked"},
		{"unknown new slot", from, url.Values{"newappointmentid": {"42"}, "patientid": {a.patient}}, 400, `"field":"newappointmentid"`},
		{"not booked", to, url.Values{"newappointmentid": {a.open[3]}, "patientid": {a.patient}}, 400, "not booked"},
		{"unknown appointment", "43", url.Values{"newappointmentid": {to}, "patientid": {a.patient}}, 404, "invalid"},
		{"reason too long", from, url.Values{"newappointmentid": {to}, "patientid": {a.patient}, "reschedulereason": {strings.Repeat("r", 501)}}, 400, `"field":"reschedulereason"`},
	} {
		r := a.put(tc.id+"/reschedule", tc.form)
		errorOf(t, r)
		if r.status != tc.status || !strings.Contains(string(r.body), tc.want) {
			t.Errorf("%s: %d %s", tc.name, r.status, r.body)
		}
	}
	if a.appt(from)["appointmentstatus"] != "f" || a.appt(to)["appointmentstatus"] != "o" {
		t.Fatalf("refused reschedules changed something: %v %v", a.appt(from), a.appt(to))
	}

	r := a.put(from+"/reschedule", url.Values{"newappointmentid": {to}, "patientid": {a.patient}, "reschedulereason": {"Patient asked"}})
	var got []map[string]any
	if r.status != 200 || json.Unmarshal(r.body, &got) != nil || len(got) != 1 {
		t.Fatalf("reschedule: %d %s", r.status, r.body)
	}
	if got[0]["appointmentid"] != to || got[0]["appointmentstatus"] != "f" || got[0]["patientid"] != a.patient ||
		got[0]["appointmenttypeid"] != "82" || got[0]["starttime"] != "09:30" {
		t.Errorf("rescheduled appointment %v", got[0])
	}
	old := a.appt(from)
	if old["appointmentstatus"] != "x" || old["rescheduledappointmentid"] != to || old["patientid"] != a.patient {
		t.Errorf("original after the reschedule %v", old)
	}
	// Through FHIR: the original cancelled with the reason, the new one booked.
	if o := a.fhirAppt(from); o.Str("status") != "cancelled" || o.Child("cancelationReason").Str("text") != "Patient asked" {
		t.Errorf("FHIR original: status %q", o.Str("status"))
	}
	if o := a.fhirAppt(to); o.Str("status") != "booked" || participantRef(o, "Patient") != "a-"+athenahealth.SandboxPractice+".E-"+a.patient {
		t.Errorf("FHIR new appointment: status %q patient %q", o.Str("status"), participantRef(o, "Patient"))
	}
	// The original's slot is not opened again.
	if open := a.f.get(a.v1+"/appointments/open", a.tok); strings.Contains(string(open.body), `"appointmentid":"`+from+`"`) {
		t.Error("the original slot is open again")
	}
	// The same request again (a blind retry) is refused: no idempotency.
	r = a.put(from+"/reschedule", url.Values{"newappointmentid": {to}, "patientid": {a.patient}})
	if r.status != 400 || !strings.Contains(errorOf(t, r)["error"].(string), "not booked") {
		t.Errorf("second reschedule: %d %s", r.status, r.body)
	}
	if r := a.f.get(a.v1+"/appointments/"+from+"/reschedule", a.tok); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "PUT" {
		t.Errorf("GET reschedule: %d Allow %q", r.status, r.header.Get("Allow"))
	}
}

func TestAthenaV1Cancel(t *testing.T) {
	a := newAthenaV1(t)
	slot := a.open[0]
	// An open slot cannot be cancelled.
	if r := a.put(slot+"/cancel", url.Values{"patientid": {a.patient}}); r.status != 400 || !strings.Contains(string(r.body), "not booked") {
		t.Fatalf("cancel of an open slot: %d %s", r.status, r.body)
	}
	a.book(slot, a.patient)
	openBefore := a.openCount()
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		want   string
	}{
		{"missing patient", url.Values{"cancellationreason": {"x"}}, 400, `"missingfields":["patientid"]`},
		{"other patient", url.Values{"patientid": {a.other}}, 400, `"field":"patientid"`},
	} {
		r := a.put(slot+"/cancel", tc.form)
		errorOf(t, r)
		if r.status != tc.status || !strings.Contains(string(r.body), tc.want) {
			t.Errorf("%s: %d %s", tc.name, r.status, r.body)
		}
	}
	if st := a.appt(slot)["appointmentstatus"]; st != "f" {
		t.Fatalf("refused cancels changed the status to %v", st)
	}
	r := a.put(slot+"/cancel", url.Values{"patientid": {a.patient}, "cancellationreason": {"Feeling better"}})
	var got []map[string]any
	if r.status != 200 || json.Unmarshal(r.body, &got) != nil || len(got) != 1 || got[0]["appointmentstatus"] != "x" {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	if o := a.fhirAppt(slot); o.Str("status") != "cancelled" || o.Child("cancelationReason").Str("text") != "Feeling better" ||
		participantRef(o, "Patient") == "" {
		t.Errorf("FHIR after the cancel: %q", o.Str("status"))
	}
	// Nothing is freed: the slot stays closed, and no new open slot appears.
	if n := a.openCount(); n != openBefore || n < 3 {
		t.Errorf("%d open slots after the cancel, %d before", n, openBefore)
	}
	if open := a.f.get(a.v1+"/appointments/open", a.tok); strings.Contains(string(open.body), `"appointmentid":"`+slot+`"`) {
		t.Errorf("the cancelled appointment is open again")
	}
	// Cancelling again is refused.
	if r := a.put(slot+"/cancel", url.Values{"patientid": {a.patient}}); r.status != 400 || !strings.Contains(string(r.body), "not booked") {
		t.Errorf("second cancel: %d %s", r.status, r.body)
	}
	if r := a.put("44/cancel", url.Values{"patientid": {a.patient}}); r.status != 404 {
		t.Errorf("unknown appointment: %d", r.status)
	}
	if r := a.put("abc/cancel", url.Values{"patientid": {a.patient}}); r.status != 404 {
		t.Errorf("malformed id: %d", r.status)
	}
	if r := a.f.form("PUT", a.v1+"/appointments/"+slot+"/cancel", "", url.Values{"patientid": {a.patient}}); r.status != 401 {
		t.Errorf("no token: %d", r.status)
	}
}

// TestAthenaV1WritesUnderFaults: reschedule and cancel go through the
// write fault rules: a timeout after commit leaves the change made, a 503
// or 429 before it changes nothing.
func TestAthenaV1WritesUnderFaults(t *testing.T) {
	a := newAthenaV1(t)
	a.book(a.open[0], a.patient)
	a.book(a.open[2], a.other)

	for _, tc := range []struct {
		kind   fault.Kind
		status int
	}{{fault.Unavailable, 503}, {fault.TooManyRequests, 429}} {
		if err := a.f.sim.SetFaults("ah", []fault.Fault{{Endpoint: "write:Appointment", Kind: tc.kind, Limit: 1}}); err != nil {
			t.Fatal(err)
		}
		r := a.put(a.open[0]+"/reschedule", url.Values{"newappointmentid": {a.open[1]}, "patientid": {a.patient}})
		if r.status != tc.status || r.header.Get("Retry-After") == "" {
			t.Errorf("%s: %d Retry-After %q", tc.kind, r.status, r.header.Get("Retry-After"))
		}
		if a.appt(a.open[0])["appointmentstatus"] != "f" || a.appt(a.open[1])["appointmentstatus"] != "o" {
			t.Fatalf("%s: the reschedule was applied", tc.kind)
		}
	}

	// Reads are not write faults.
	if err := a.f.sim.SetFaults("ah", []fault.Fault{{Endpoint: "write:Appointment", Kind: fault.TimeoutAfterCommit}}); err != nil {
		t.Fatal(err)
	}
	if st := a.appt(a.open[0])["appointmentstatus"]; st != "f" {
		t.Fatalf("read under a write fault: %v", st)
	}
	for _, tc := range []struct {
		path string
		form url.Values
	}{
		{a.open[0] + "/reschedule", url.Values{"newappointmentid": {a.open[1]}, "patientid": {a.patient}}},
		{a.open[2] + "/cancel", url.Values{"patientid": {a.other}}},
	} {
		start := time.Now()
		res, err := rawRequest("PUT", a.v1+"/appointments/"+tc.path, a.tok, []byte(tc.form.Encode()),
			map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 300*time.Millisecond)
		if err == nil {
			t.Fatalf("%s: got an answer %d", tc.path, res.StatusCode)
		}
		if time.Since(start) < 250*time.Millisecond {
			t.Errorf("%s: the connection ended before the client gave up: %v", tc.path, err)
		}
	}
	if a.appt(a.open[0])["appointmentstatus"] != "x" || a.appt(a.open[1])["appointmentstatus"] != "f" || a.appt(a.open[1])["patientid"] != a.patient {
		t.Errorf("reschedule under timeout-after-commit not committed: %v %v", a.appt(a.open[0]), a.appt(a.open[1]))
	}
	if a.appt(a.open[2])["appointmentstatus"] != "x" {
		t.Errorf("cancel under timeout-after-commit not committed: %v", a.appt(a.open[2]))
	}
}
