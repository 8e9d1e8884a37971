package contract

import "strings"

// HL7Routes returns the write-back routes mediflow's HL7 v2 outbound
// channel offers (package fhirv2 builds the message, package writeback
// completes an SIU^S13, package hl7out delivers it in order and records
// the ACK): notes as MDM^T02, bookings as SIU^S12, reschedules as SIU^S13,
// cancellations as SIU^S15 and charges as DFT^P03. A reschedule goes over
// HL7 only where the appointments themselves do (see WithHL7).
func HL7Routes() []Support {
	return []Support{
		{
			Intent: NoteCreate, Supported: true, Channel: ChannelHL7, ResourceType: "DocumentReference", Operation: "MDM^T02",
			Required: []string{"subject", "type", "content", "content.attachment"},
			Rules:    []Rule{hl7NoteContent},
			Note:     "TXA from the document's type, status and author; the text as OBX segments. The receiver's ACK (AA) is the only confirmation.",
		},
		{
			Intent: AppointmentBook, Supported: true, Channel: ChannelHL7, ResourceType: "Appointment", Operation: "SIU^S12",
			Required: []string{"status", "start", "participant"},
			Rules:    []Rule{hl7BookStatus, patientParticipant("hl7.appointment.patient", "an SIU^S12 needs the patient (PID)", "")},
			Note:     "SCH, TQ1, PID, RGS, AIS, AIL and AIP from the appointment and its participants.",
		},
		{
			Intent: AppointmentResched, Supported: true, Channel: ChannelHL7, ResourceType: "Appointment", Operation: "SIU^S13",
			Required: []string{"id", "status", "start", "participant"},
			Rules:    []Rule{hl7ReschedStatus, patientParticipant("hl7.appointment.patient", "an SIU^S13 needs the patient (PID)", "")},
			Note: "the booking's segments with the new start, duration and end; SCH-1/SCH-2 name the appointment as it was booked " +
				"(its placer and filler identifiers, else its id, which is the intent's target), SCH-6 the event reason (cancelationReason, " +
				"else S13), SCH-16 and SCH-20 the app. Offered only where bookings or cancellations go over HL7 too: " +
				"the receiver knows the appointment by the ids the HL7 channel gave it.",
		},
		{
			Intent: AppointmentCancel, Supported: true, Channel: ChannelHL7, ResourceType: "Appointment", Operation: "SIU^S15",
			Required: []string{"status"},
			Rules:    []Rule{hl7CancelStatus},
			Note:     "the same segments as the booking, with SCH-25 Cancelled.",
		},
		{
			Intent: ChargePost, Supported: true, Channel: ChannelHL7, ResourceType: "ChargeItem", Operation: "DFT^P03",
			Required: []string{"subject", "code"},
			Rules:    []Rule{hl7ChargeStatus},
			Note:     "one FT1 per charge, PV1 from the encounter, IN1 per coverage.",
		},
	}
}

// hl7Alternative is the sentence a refusal adds when mediflow's HL7 channel
// could carry the intent. A contract whose vendor takes bookings and
// cancellations through its API does not get the reschedule route
// (WithHL7): its reschedule refusal is made with refuseNoHL7.
func hl7Alternative(i Intent) string {
	for _, r := range HL7Routes() {
		if r.Intent == i {
			return "Where the practice has an HL7 v2 interface, add an HL7 outbound destination: mediflow then sends it as " + r.Operation + "."
		}
	}
	return ""
}

// WithHL7 returns the contract of a practice that also has an HL7 v2
// outbound interface to its EHR: every intent c refuses that an HL7 route
// carries (HL7Routes) becomes supported over HL7; intents c supports keep
// their channel. A reschedule (SIU^S13) is the exception: it names the
// appointment as the HL7 channel booked it, so it is carried only when
// bookings or cancellations go over HL7 as well; where the vendor's API
// books and cancels, its refusal stands. c is not changed.
func (c *Contract) WithHL7() *Contract {
	out := &Contract{Vendor: c.Vendor, Versions: c.Versions, Errors: c.Errors, HL7: true, intents: make(map[Intent]Support, len(c.intents))}
	for i, s := range c.intents {
		out.intents[i] = s
	}
	for _, r := range HL7Routes() {
		if out.Support(r.Intent).Supported {
			continue
		}
		out.intents[r.Intent] = r
	}
	if out.Support(AppointmentResched).Channel == ChannelHL7 && !c.Support(AppointmentResched).Supported &&
		out.Support(AppointmentBook).Channel != ChannelHL7 && out.Support(AppointmentCancel).Channel != ChannelHL7 {
		if s, ok := c.intents[AppointmentResched]; ok {
			out.intents[AppointmentResched] = s
		} else {
			delete(out.intents, AppointmentResched)
		}
	}
	if !strings.Contains(out.Errors, "HL7") {
		out.Errors = strings.TrimSpace(out.Errors + " HL7 v2: the receiver's ACK (AA accepted; AE/AR rejected, with its ERR segments).")
	}
	return out
}

var hl7NoteContent = Rule{
	ID:          "hl7.note.content",
	Description: "each attachment carries the note's text inline (data) or a link to it (url)",
	Check: func(res map[string]any) []FieldError {
		var out []FieldError
		for _, n := range nodes(res, "content.attachment") {
			a, ok := n.v.(map[string]any)
			if !ok {
				continue
			}
			if !present(a["data"]) && !present(a["url"]) {
				out = append(out, FieldError{Path: n.path + ".data", Rule: "hl7.note.content", Message: "an MDM^T02 carries the note's text: put it in data (base64) or give a url"})
			}
		}
		return out
	},
}

var hl7BookStatus = Rule{
	ID:          "hl7.appointment.book-status",
	Description: "a booking is not cancelled, a no-show or entered in error",
	Check: func(res map[string]any) []FieldError {
		switch str(res["status"]) {
		case "cancelled", "noshow", "entered-in-error":
			return []FieldError{{Path: "status", Rule: "hl7.appointment.book-status", Message: "a booking (SIU^S12) cannot be sent for a cancelled, no-show or entered-in-error appointment; use appointment.cancel"}}
		}
		return nil
	},
}

var hl7ReschedStatus = Rule{
	ID:          "hl7.appointment.reschedule-status",
	Description: "the appointment moved is not cancelled, a no-show or entered in error",
	Check: func(res map[string]any) []FieldError {
		switch str(res["status"]) {
		case "cancelled", "noshow", "entered-in-error":
			return []FieldError{{Path: "status", Rule: "hl7.appointment.reschedule-status", Message: "a reschedule (SIU^S13) moves a booked appointment: it cannot be sent for a cancelled, no-show or entered-in-error one; use appointment.cancel"}}
		}
		return nil
	},
}

var hl7CancelStatus = Rule{
	ID:          "hl7.appointment.cancel-status",
	Description: "status is cancelled (or entered-in-error)",
	Check: func(res map[string]any) []FieldError {
		s, ok := res["status"]
		if !ok {
			return nil
		}
		if v := str(s); v != "cancelled" && v != "entered-in-error" {
			return []FieldError{{Path: "status", Rule: "hl7.appointment.cancel-status", Message: "a cancellation (SIU^S15) needs status cancelled (or entered-in-error)"}}
		}
		return nil
	},
}

var hl7ChargeStatus = Rule{
	ID:          "hl7.charge.billable",
	Description: "status is planned, billable, billed or unknown",
	Check: func(res map[string]any) []FieldError {
		s, ok := res["status"]
		if !ok {
			return nil
		}
		switch str(s) {
		case "planned", "billable", "billed", "unknown":
			return nil
		}
		return []FieldError{{Path: "status", Rule: "hl7.charge.billable", Message: "only a planned, billable or billed charge can be posted (DFT^P03)"}}
	},
}
