package fhirv2

import (
	"strconv"

	"github.com/mediflow/mediflow/internal/hl7"
)

// fillerStatus maps Appointment.status to HL7 table 0278 (SCH-25).
var fillerStatus = map[string]string{
	"proposed": "Pending", "pending": "Pending", "booked": "Booked", "arrived": "Started",
	"checked-in": "Started", "fulfilled": "Complete", "cancelled": "Cancelled", "noshow": "Noshow",
	"entered-in-error": "Deleted", "waitlist": "Waitlist",
}

// Book builds an SIU^S12 (notification of new appointment booking) from an
// Appointment and its Patient. refs holds the resources its participants
// point to (Practitioner, PractitionerRole, Location); it may be nil.
//
// SCH-1 is the placer appointment id (the identifier typed PLAC, else the
// first untyped identifier, else the resource id under
// Options.SendingApplication), SCH-2 the filler id (the identifier typed
// FILL), SCH-7 the reason (reasonCode), SCH-8 the appointmentType, SCH-9/10 the
// duration in minutes, SCH-11 the timing (duration, start, end), SCH-25 the
// filler status; TQ1 repeats duration, start and end. Then NTE (comment,
// patient instruction), PID, RGS, AIS (serviceType), one AIL per Location
// and one AIP per Practitioner participant. The appointment must have a
// start and must not be cancelled (use Cancel).
func (e *Encoder) Book(appt, patientBody []byte, refs map[string][]byte) (*hl7.Message, error) {
	return e.schedule(appt, patientBody, refs, "S12")
}

// Cancel builds an SIU^S15 (notification of appointment cancellation) from
// an Appointment, with the segments Book writes; SCH-6 (event reason) is the
// cancelationReason and SCH-25 is "Cancelled" ("Deleted" for an appointment
// entered in error). Start and end are optional.
func (e *Encoder) Cancel(appt, patientBody []byte, refs map[string][]byte) (*hl7.Message, error) {
	return e.schedule(appt, patientBody, refs, "S15")
}

func (e *Encoder) schedule(body, patientBody []byte, refs map[string][]byte, trigger string) (*hl7.Message, error) {
	res := newResolver(refs)
	var a appointment
	if err := decode(body, "Appointment", &a); err != nil {
		return nil, err
	}
	p, err := readPatient(patientBody)
	if err != nil {
		return nil, err
	}
	placer, filler := appointmentIDs(&a)
	if placer == nil && filler == nil && a.ID == "" {
		return nil, missing("Appointment.identifier or Appointment.id (SCH-1/SCH-2)")
	}
	status := fillerStatus[a.Status]
	if trigger == "S12" {
		switch a.Status {
		case "cancelled", "noshow", "entered-in-error":
			return nil, invalid("Appointment.status is %s: a booking cannot be sent for it", a.Status)
		}
		if a.Start == "" {
			return nil, missing("Appointment.start (SCH-11)")
		}
	} else if status != "Deleted" {
		status = "Cancelled"
	}
	// the given patient must be the appointment's patient when it names one
	var patients []*reference
	for i := range a.Participant {
		if r := a.Participant[i].Actor; r != nil && refType(r) == "Patient" && refKey(r) != "" {
			patients = append(patients, r)
		}
	}
	if len(patients) > 0 && p.ID != "" {
		found := false
		for _, r := range patients {
			if refKey(r) == "Patient/"+p.ID {
				found = true
			}
		}
		if !found {
			return nil, invalid("the Patient given is not a participant of the Appointment")
		}
	}
	minutes := a.MinutesDuration
	if minutes <= 0 {
		minutes = minutesBetween(a.Start, a.End)
	}
	dur := ""
	if minutes > 0 {
		dur = strconv.Itoa(minutes)
	}

	b := e.start("SIU", trigger, "SIU_S12")
	sch := b.add("SCH")
	switch {
	case placer != nil:
		e.ei(sch, "1", placer)
	case a.ID != "":
		// our own resource id, under our application's namespace
		sch.set("1-1", a.ID)
		sch.set("1-2", e.opts.SendingApplication)
	}
	if filler != nil {
		e.ei(sch, "2", filler)
	}
	if trigger == "S15" {
		ce(sch, "6", a.CancelationReason)
	}
	if len(a.ReasonCode) > 0 {
		ce(sch, "7", &a.ReasonCode[0])
	}
	ce(sch, "8", a.AppointmentType)
	if dur != "" {
		sch.set("9", dur)
		sch.set("10-1", "MIN")
		sch.set("11-3", "M"+dur)
	}
	sch.ts("11-4", a.Start, "Appointment.start")
	sch.ts("11-5", a.End, "Appointment.end")
	sch.set("25-1", status)

	if a.Start != "" || a.End != "" || dur != "" {
		tq1 := b.add("TQ1")
		tq1.set("1", "1")
		if dur != "" {
			tq1.set("6-1", dur)
			tq1.set("6-2-1", "min")
			tq1.set("6-2-3", "UCUM")
		}
		tq1.ts("7", a.Start, "Appointment.start")
		tq1.ts("8", a.End, "Appointment.end")
	}
	nte := 0
	for _, c := range []struct{ text, kind string }{{a.Comment, "RE"}, {a.PatientInstruction, "PI"}} {
		if c.text == "" {
			continue
		}
		nte++
		w := b.add("NTE")
		w.set("1", strconv.Itoa(nte))
		w.set("3", c.text)
		w.set("4-1", c.kind)
	}

	e.pid(b, p)

	rgs := b.add("RGS")
	rgs.set("1", "1")
	service := firstConcept(a.ServiceType)
	if service == nil {
		service = firstConcept(a.ServiceCategory)
	}
	if service != nil {
		ais := b.add("AIS")
		ais.set("1", "1")
		ce(ais, "3", service)
		ais.ts("4", a.Start, "Appointment.start")
		if dur != "" {
			ais.set("7", dur)
			ais.set("8-1", "MIN")
		}
		ais.set("10-1", status)
	}
	// AIL before AIP, as SIU_S12 orders them
	var locs []*location
	var people []person
	var roles []*codeableConcept
	for i := range a.Participant {
		part := &a.Participant[i]
		switch refType(part.Actor) {
		case "Location":
			loc, err := resolveLocation(part.Actor, res)
			if err != nil {
				return nil, err
			}
			if loc != nil {
				locs = append(locs, loc)
			}
		case "Practitioner", "PractitionerRole":
			pr, ok, err := resolvePerson(part.Actor, res)
			if err != nil {
				return nil, err
			}
			if ok {
				people = append(people, pr)
				roles = append(roles, firstConcept(part.Type))
			}
		}
	}
	for i, loc := range locs {
		ail := b.add("AIL")
		ail.set("1", strconv.Itoa(i+1))
		pl(ail, "3", loc)
		ce(ail, "4", firstConcept(loc.Type))
		ail.ts("6", a.Start, "Appointment.start")
		if dur != "" {
			ail.set("9", dur)
			ail.set("10-1", "MIN")
		}
		ail.set("12-1", status)
	}
	for i, pr := range people {
		aip := b.add("AIP")
		aip.set("1", strconv.Itoa(i+1))
		e.xcn(aip, "3", pr)
		ce(aip, "4", roles[i])
		aip.ts("6", a.Start, "Appointment.start")
		if dur != "" {
			aip.set("9", dur)
			aip.set("10-1", "MIN")
		}
		aip.set("12-1", status)
	}
	return b.finish()
}

// appointmentIDs picks the placer and filler appointment ids.
func appointmentIDs(a *appointment) (placer, filler *identifier) {
	var untyped *identifier
	for i := range a.Identifier {
		id := &a.Identifier[i]
		if id.Value == "" {
			continue
		}
		switch identifierTypeCode(id) {
		case "PLAC":
			if placer == nil {
				placer = id
			}
		case "FILL":
			if filler == nil {
				filler = id
			}
		case "":
			if untyped == nil {
				untyped = id
			}
		}
	}
	if placer == nil {
		placer = untyped
	}
	return placer, filler
}

func firstConcept(ccs []codeableConcept) *codeableConcept {
	for i := range ccs {
		if len(ccs[i].Coding) > 0 || ccs[i].Text != "" {
			return &ccs[i]
		}
	}
	return nil
}
