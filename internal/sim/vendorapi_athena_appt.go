package sim

import (
	"net/http"

	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/sim/simstore"
)

// athenahealth v1 reschedule and cancel (PUT
// /v1/{practiceid}/appointments/{appointmentid}/reschedule and …/cancel).
// Like booking they change the FHIR Appointment the read API serves, and
// like every v1 write they have no ETag and no idempotency key: the same
// request twice is refused the second time (the appointment is no longer
// booked). The error texts are our choice (unconfirmed); their shape is
// v1's {"error": …, "detailedmessage": …}.

// athenaRescheduledExt links a cancelled original to the appointment it
// was rescheduled to (the v1 field rescheduledappointmentid).
const athenaRescheduledExt = "urn:mediflow:sim:athenahealth:rescheduledappointmentid"

// Error texts of the reschedule and cancel endpoints.
const (
	athenaMsgNotBooked       = "The appointment is not booked, so it cannot be changed."
	athenaMsgNewSlotNotOpen  = "The new appointment slot is already booked or is not open for scheduling."
	athenaMsgInvalidValue    = "Invalid field value."
	athenaMsgInvalidApptID   = "The appointment ID is invalid."
	athenaMsgInternal        = "Internal error."
	athenaDetailWrongPatient = "patientid is not the patient of this appointment"
)

// athenaBooked reports whether a FHIR Appointment is booked (v1 status f):
// only such an appointment can be rescheduled or cancelled.
func athenaBooked(o *gen.Obj) bool { return o.Str("status") == "booked" }

// athenaLoad reads a v1 appointment as a FHIR Appointment; it answers and
// returns false when there is none.
func (t *tenant) athenaLoad(c *call, id string) (*simstore.Version, *gen.Obj, bool) {
	v, ok := t.store.Get("Appointment", id)
	if !ok {
		athenaError(c.w, http.StatusNotFound, athenaMsgInvalidApptID, "", nil)
		return nil, nil, false
	}
	o, err := gen.ParseObj(v.Body)
	if err != nil {
		athenaError(c.w, http.StatusInternalServerError, athenaMsgInternal, "", nil)
		return nil, nil, false
	}
	return v, o, true
}

// athenaSamePatient checks the form's patientid against the appointment's
// patient; it answers 400 and returns false when they differ.
func (t *tenant) athenaSamePatient(c *call, practice string, o *gen.Obj, patientid string) bool {
	if participantRef(o, "Patient") != t.athenaID(practice, "E", patientid) {
		athenaError(c.w, http.StatusBadRequest, athenaMsgInvalidValue, athenaDetailWrongPatient, map[string]any{"field": "patientid"})
		return false
	}
	return true
}

// athenaBookedFor loads appointment id for a change by patientid: it
// must exist, be booked, and be that patient's; otherwise the error is
// answered and ok is false. Callers hold createMu.
func (t *tenant) athenaBookedFor(c *call, practice, id, patientid string) (*simstore.Version, *gen.Obj, bool) {
	v, o, ok := t.athenaLoad(c, id)
	if !ok {
		return nil, nil, false
	}
	if !athenaBooked(o) {
		athenaError(c.w, http.StatusBadRequest, athenaMsgNotBooked, "", nil)
		return nil, nil, false
	}
	if !t.athenaSamePatient(c, practice, o, patientid) {
		return nil, nil, false
	}
	return v, o, true
}

// athenaCancel cancels a booked appointment: status x (FHIR cancelled)
// with the reason given. The slot is not opened again.
func (t *tenant) athenaCancel(c *call, practice, local string) {
	f, ok := athenaForm(c, "patientid")
	if !ok {
		return
	}
	id := t.athenaID(practice, "appointment", local)
	t.createMu.Lock()
	defer t.createMu.Unlock()
	v, o, ok := t.athenaBookedFor(c, practice, id, f.Get("patientid"))
	if !ok {
		return
	}
	o.Set("status", "cancelled")
	if reason := f.Get("cancellationreason"); reason != "" {
		o.Set("cancelationReason", gen.O("text", reason))
	}
	nv, ok := t.athenaCommit(c, "cancel", id, v, o)
	if !ok {
		return
	}
	co, _ := gen.ParseObj(nv.Body)
	writeJSON(c.w, http.StatusOK, []map[string]any{athenaAppointment(id, co)})
}

// athenaReschedule moves a booked appointment to an open one
// (newappointmentid): the open appointment becomes booked for the patient,
// with the original's appointment type, and the original is cancelled
// (status x) with a link to the new one. The original's slot is not opened
// again.
func (t *tenant) athenaReschedule(c *call, practice, local string) {
	f, ok := athenaForm(c, "newappointmentid", "patientid")
	if !ok {
		return
	}
	if !isDigits(f.Get("newappointmentid")) {
		athenaError(c.w, http.StatusBadRequest, athenaMsgInvalidValue, "newappointmentid must be an appointment ID", map[string]any{"field": "newappointmentid"})
		return
	}
	id := t.athenaID(practice, "appointment", local)
	newID := t.athenaID(practice, "appointment", f.Get("newappointmentid"))
	t.createMu.Lock()
	defer t.createMu.Unlock()
	v, o, ok := t.athenaBookedFor(c, practice, id, f.Get("patientid"))
	if !ok {
		return
	}
	nv, no, found := t.athenaPeek(newID)
	if !found {
		athenaError(c.w, http.StatusBadRequest, athenaMsgInvalidValue, "newappointmentid is not an appointment of this practice", map[string]any{"field": "newappointmentid"})
		return
	}
	if newID == id || !athenaOpen(no) {
		athenaError(c.w, http.StatusBadRequest, athenaMsgNewSlotNotOpen, "", nil)
		return
	}
	no.Set("status", "booked")
	if at := o.Child("appointmentType"); at != nil {
		no.Set("appointmentType", at)
	}
	patient := gen.O("actor", gen.O("reference", "Patient/"+participantRef(o, "Patient")), "status", "accepted")
	no.Set("participant", append(gen.A(patient), no.List("participant")...))
	booked, _, err := t.store.PutObj("Appointment", newID, no, simstore.Precondition{IfMatch: nv.VersionID, MustExist: true})
	if err != nil {
		t.sim.log.Error("athenahealth v1 reschedule failed", "tenant", t.id, "err", err)
		athenaError(c.w, http.StatusInternalServerError, athenaMsgInternal, "", nil)
		return
	}
	o.Set("status", "cancelled")
	reason := f.Get("reschedulereason")
	if reason == "" {
		reason = "Rescheduled"
	}
	o.Set("cancelationReason", gen.O("text", reason))
	o.Set("extension", gen.A(gen.O("url", athenaRescheduledExt, "valueString", f.Get("newappointmentid"))))
	if _, ok := t.athenaCommit(c, "reschedule", id, v, o); !ok {
		return
	}
	bo, _ := gen.ParseObj(booked.Body)
	writeJSON(c.w, http.StatusOK, []map[string]any{athenaAppointment(newID, bo)})
}

// athenaCommit stores o as appointment id over version v for a v1 write
// (op names it in the log) and reports whether the caller answers: false
// when the store failed (500 sent) or a fault holds the answer past the
// commit.
func (t *tenant) athenaCommit(c *call, op, id string, v *simstore.Version, o *gen.Obj) (*simstore.Version, bool) {
	nv, _, err := t.store.PutObj("Appointment", id, o, simstore.Precondition{IfMatch: v.VersionID, MustExist: true})
	if err != nil {
		t.sim.log.Error("athenahealth v1 "+op+" failed", "tenant", t.id, "err", err)
		athenaError(c.w, http.StatusInternalServerError, athenaMsgInternal, "", nil)
		return nil, false
	}
	if c.afterCommit != nil {
		t.holdAfterCommit(c.w, c.r, c.afterCommit)
		return nil, false
	}
	return nv, true
}

// athenaPeek reads an appointment without answering.
func (t *tenant) athenaPeek(id string) (*simstore.Version, *gen.Obj, bool) {
	v, ok := t.store.Get("Appointment", id)
	if !ok {
		return nil, nil, false
	}
	o, err := gen.ParseObj(v.Body)
	if err != nil {
		return nil, nil, false
	}
	return v, o, true
}

// athenaRescheduledTo is the v1 id an appointment was rescheduled to ("":
// none).
func athenaRescheduledTo(o *gen.Obj) string {
	for _, x := range o.List("extension") {
		if e, _ := x.(*gen.Obj); e != nil && e.Str("url") == athenaRescheduledExt {
			return e.Str("valueString")
		}
	}
	return ""
}
