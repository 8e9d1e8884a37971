package contract

import (
	"regexp"
	"strconv"
	"strings"
)

// Vendor profile names, as the configuration and the mapping profiles
// (profiles/<name>) spell them.
const (
	VendorGeneric        = "generic"
	VendorEpic           = "epic"
	VendorOracleHealth   = "oracle-health"
	VendorAthenahealth   = "athenahealth"
	VendorEClinicalWorks = "eclinicalworks"
	VendorNextGen        = "nextgen"
	VendorVeradigm       = "veradigm"
)

// Default returns the shipped write contracts: one per vendor profile
// (NextGen: one per product, told apart by version), from what the vendors
// publish about their write APIs. Each call builds a new registry.
func Default() *Registry {
	return NewRegistry(
		genericContract(),
		epicContract(),
		oracleContract(),
		athenaContract(),
		eclinicalworksContract(),
		nextgenContract("NextGen Enterprise", ">= 5.0, < 5.1", `NextGen Enterprise's FHIR server ("Nextgen FHIR Server" 5.0.x) is read only`),
		nextgenContract("NextGen Office", ">= 5.7", "NextGen Office's FHIR server (HAPI FHIR 5.7) is read only"),
		nextgenContract("NextGen (a version neither product range covers)", "", "NextGen's FHIR servers (Enterprise and Office) are read only"),
		veradigmContract(),
	)
}

// creates and updates tell what a FHIR operation does.
func creates(op string) bool { return op == OpCreate || op == OpUpsert }
func updates(op string) bool { return op == OpUpdate || op == OpPatch || op == OpUpsert }

// refuse is a refused intent; the HL7 alternative is named when mediflow's
// HL7 channel could carry it.
func refuse(i Intent, reason string) Support {
	if alt := hl7Alternative(i); alt != "" {
		reason += ". " + alt
	} else if !strings.HasSuffix(reason, ".") {
		reason += "."
	}
	return Support{Intent: i, Reason: reason}
}

// refuseNoHL7 is a refused intent that WithHL7 does not carry over HL7
// for this vendor although an HL7 route exists for it (a reschedule where
// the vendor's API books and cancels): its reason names no HL7 alternative.
func refuseNoHL7(i Intent, reason string) Support {
	if !strings.HasSuffix(reason, ".") {
		reason += "."
	}
	return Support{Intent: i, Reason: reason}
}

// chargeRefusal is the same for every vendor: mediflow posts charges only
// as HL7 DFT^P03.
func chargeRefusal(vendor string) Support {
	return refuse(ChargePost, "mediflow posts charges only as HL7 v2 DFT^P03 messages; it has no charge write through the APIs of "+vendor)
}

// ---- generic FHIR R4 -------------------------------------------------------

const genericErrors = "HTTP status with an OperationOutcome: 400 malformed request, 404 unknown id, 405 interaction not offered by the server, " +
	"409 conflict, 412 If-Match no longer the current version (read again and retry), 422 the server's business rules or profiles. " +
	"A conditional create (If-None-Exist on mediflow's identifier) answers 200 with the record that already matches, 412 when several do."

// appointmentTimes is FHIR R4's app-2 and app-3: start and end go
// together, and only proposed, cancelled and waitlisted appointments may
// lack them.
var appointmentTimes = Rule{
	ID:          "fhir.appointment.times",
	Description: "start and end are both given, and every appointment but a proposed, cancelled or waitlisted one has them (FHIR R4 app-2, app-3)",
	Check: func(res map[string]any) []FieldError {
		start, end := present(res["start"]), present(res["end"])
		switch str(res["status"]) {
		case "proposed", "cancelled", "waitlist":
			if start == end {
				return nil
			}
		default:
			if start && end {
				return nil
			}
		}
		var out []FieldError
		if !start {
			out = append(out, FieldError{Path: "start", Rule: "fhir.appointment.times", Message: "give the start time with the end time (a booked appointment needs both)"})
		}
		if !end {
			out = append(out, FieldError{Path: "end", Rule: "fhir.appointment.times", Message: "give the end time with the start time (a booked appointment needs both)"})
		}
		return out
	},
}

func genericContract() *Contract {
	fhir := func(s Support) Support {
		s.Supported, s.Channel = true, ChannelFHIR
		s.ConditionalCreate = creates(s.Operation)
		if updates(s.Operation) {
			s.IfMatch, s.StaleStatus = true, 412
		}
		return s
	}
	const capNote = "Offered when the server's CapabilityStatement declares the interaction; otherwise the server answers 405 and the write fails with that reason."
	return New(VendorGeneric, "", genericErrors,
		fhir(Support{Intent: NoteCreate, ResourceType: "DocumentReference", Operation: OpCreate,
			Required: []string{"status", "type", "subject", "content.attachment.contentType"},
			Note:     "POST with If-None-Exist on mediflow's identifier, so a retried create cannot make a second note. " + capNote}),
		fhir(Support{Intent: AppointmentBook, ResourceType: "Appointment", Operation: OpCreate,
			Required: []string{"status", "participant"},
			Rules:    []Rule{appointmentTimes, patientParticipant("fhir.appointment.patient", "the appointment must say whose it is", "")},
			Note:     "POST with If-None-Exist. " + capNote}),
		fhir(Support{Intent: AppointmentResched, ResourceType: "Appointment", Operation: OpUpdate,
			Required: []string{"id", "status", "participant", "start", "end"},
			Rules:    []Rule{appointmentTimes},
			Note:     "PUT with If-Match on the version mediflow last read. " + capNote}),
		fhir(Support{Intent: AppointmentCancel, ResourceType: "Appointment", Operation: OpUpdate,
			Required: []string{"id", "status", "participant"},
			Rules:    []Rule{statusIs("fhir.appointment.cancelled", "a cancellation sets the appointment's status", "cancelled")},
			Note:     "PUT with If-Match. " + capNote}),
		fhir(Support{Intent: ConditionUpsert, ResourceType: "Condition", Operation: OpUpsert,
			Required: []string{"subject", "code", "category"},
			Note:     "Create (If-None-Exist) without an id, update (PUT with If-Match) with one. " + capNote}),
		fhir(Support{Intent: ObservationRecord, ResourceType: "Observation", Operation: OpCreate,
			Required: []string{"status", "category", "code", "subject"},
			Note:     "POST with If-None-Exist. " + capNote}),
		chargeRefusal("a FHIR R4 server"),
	)
}

// ---- Epic -----------------------------------------------------------------

const epicErrors = "HTTP status with an OperationOutcome whose issues carry Epic's codes: 59141 duplicate on create (the record already exists: " +
	"an earlier attempt went through), 59187 / 59188 the observation's code has no flowsheet row, or one not mapped (the organisation must map it), " +
	"4111 a required element or parameter missing. No conditional create and no versioning: mediflow searches before it creates and never sends If-Match."

var epicNoteContent = Rule{
	ID:          "epic.note.content",
	Description: "exactly one content, the note's text inline: contentType text/plain or text/html, with data",
	Check: func(res map[string]any) []FieldError {
		cs, ok := res["content"].([]any)
		if !ok || len(cs) == 0 {
			return nil
		}
		if len(cs) != 1 {
			return []FieldError{{Path: "content", Rule: "epic.note.content", Message: "Epic files one text per note: give exactly one content (there are " + strconv.Itoa(len(cs)) + ")"}}
		}
		var out []FieldError
		a, _ := nodeAt(cs[0], "attachment").(map[string]any)
		if ct := str(a["contentType"]); ct != "" {
			if mt, _, ok := mediaType(ct); !ok || (mt != "text/plain" && mt != "text/html") {
				out = append(out, FieldError{Path: "content[0].attachment.contentType", Rule: "epic.note.content", Message: "Epic takes a note's text as text/plain or text/html: convert the note and set contentType accordingly"})
			}
		}
		if a != nil && !present(a["data"]) {
			out = append(out, FieldError{Path: "content[0].attachment.data", Rule: "epic.note.content", Message: "put the note's text in data (base64): Epic does not fetch a note from a url"})
		}
		return out
	},
}

func nodeAt(v any, key string) any {
	if m, ok := v.(map[string]any); ok {
		return m[key]
	}
	return nil
}

var epicNoteEncounter = Rule{
	ID:          "epic.note.encounter",
	Description: "context.encounter is exactly one Encounter",
	Check: func(res map[string]any) []FieldError {
		encs := nodes(res, "context.encounter")
		if len(encs) == 0 {
			return nil // Required reports it
		}
		if len(encs) != 1 {
			return []FieldError{{Path: "context.encounter", Rule: "epic.note.encounter", Message: "Epic files a note in one encounter: give exactly one context.encounter"}}
		}
		if refType(encs[0].v) != "Encounter" {
			return []FieldError{{Path: encs[0].path, Rule: "epic.note.encounter", Message: "must reference an Encounter (Encounter/<id>) of the patient in Epic"}}
		}
		return nil
	},
}

var epicFlowsheetValue = Rule{
	ID:          "epic.flowsheet.value",
	Description: "a value (value[x], or components with values for a panel such as blood pressure)",
	Check: func(res map[string]any) []FieldError {
		for k, v := range res {
			if strings.HasPrefix(k, "value") && present(v) {
				return nil
			}
		}
		comps := list(res["component"])
		if len(comps) > 0 {
			var out []FieldError
			for i, c := range comps {
				cm, _ := c.(map[string]any)
				has := false
				for k, v := range cm {
					if strings.HasPrefix(k, "value") && present(v) {
						has = true
					}
				}
				if !has {
					out = append(out, FieldError{Path: "component[" + strconv.Itoa(i) + "]", Rule: "epic.flowsheet.value", Message: "give the component's value (valueQuantity with a unit): Epic files each component in a flowsheet row"})
				}
			}
			return out
		}
		return []FieldError{{Path: "value[x]", Rule: "epic.flowsheet.value", Message: "give the measurement (valueQuantity with a unit, or components for a panel): Epic files the value in a flowsheet row"}}
	},
}

var epicVitalSigns = Rule{
	ID:          "epic.flowsheet.vital-signs",
	Description: "category vital-signs: Epic files FHIR-written observations as flowsheet (vital signs) rows",
	Check: func(res map[string]any) []FieldError {
		if _, ok := res["category"]; !ok {
			return nil
		}
		for _, n := range nodes(res, "category.coding") {
			if cm, ok := n.v.(map[string]any); ok && str(cm["code"]) == "vital-signs" {
				return nil
			}
		}
		return []FieldError{{Path: "category", Rule: "epic.flowsheet.vital-signs", Message: "Epic takes vital signs only (flowsheet rows): add the category vital-signs (system http://terminology.hl7.org/CodeSystem/observation-category)"}}
	},
}

func epicContract() *Contract {
	fhir := func(s Support) Support {
		s.Supported, s.Channel = true, ChannelFHIR
		return s
	}
	return New(VendorEpic, "", epicErrors,
		fhir(Support{Intent: NoteCreate, ResourceType: "DocumentReference", Operation: OpCreate,
			Required: []string{"status", "type", "subject", "content.attachment.contentType", "context.encounter"},
			Rules: []Rule{
				epicNoteContent,
				codingOf("epic.note.type", "type", "http://loinc.org", "LOINC", "Epic picks the note type from a LOINC code its organisation maps"),
				referenceTo("epic.note.subject", "subject", "Patient", "a note belongs to a patient"),
				epicNoteEncounter,
			},
			Note: "Clinical notes (DocumentReference.Create). A 59141 answer means the note is already there."}),
		refuse(AppointmentBook, "Epic's FHIR R4 API reads and searches Appointments but does not create them; Epic books through its STU3 Appointment/$find and $book operations, which mediflow does not call"),
		refuse(AppointmentResched, "Epic's FHIR R4 API cannot change an Appointment's time: reschedule it in Epic"),
		refuse(AppointmentCancel, "Epic's FHIR R4 API cannot change an Appointment's status"),
		fhir(Support{Intent: ConditionUpsert, ResourceType: "Condition", Operation: OpCreate,
			Required: []string{"subject", "code", "category"},
			Rules: []Rule{
				{ID: "epic.condition.create-only", Description: "a new problem only: Epic creates Conditions but does not update them",
					Check: func(res map[string]any) []FieldError {
						if present(res["id"]) {
							return []FieldError{{Path: "id", Rule: "epic.condition.create-only", Message: "Epic does not update problems over FHIR: leave id out to add a new problem, or change the existing one in Epic"}}
						}
						return nil
					}},
				referenceTo("epic.condition.subject", "subject", "Patient", "a problem belongs to a patient"),
			},
			Note: "Problem list entries (Condition.Create)."}),
		fhir(Support{Intent: ObservationRecord, ResourceType: "Observation", Operation: OpCreate,
			Required: []string{"status", "category", "code.coding", "subject", "effectiveDateTime"},
			Rules: []Rule{
				epicVitalSigns,
				withTime("epic.flowsheet.time", "Epic", "effectiveDateTime"),
				epicFlowsheetValue,
				referenceTo("epic.flowsheet.subject", "subject", "Patient", "a vital sign belongs to a patient"),
			},
			Note: "Vital signs, filed as flowsheet rows: the organisation maps each code to a row (else 59187 / 59188). Epic also updates Observations; mediflow records new ones."}),
		chargeRefusal("Epic"),
	)
}

// ---- Oracle Health --------------------------------------------------------

const oracleErrors = "HTTP status with an OperationOutcome: 400 no supported parameters, 403 tenant not valid, 404, 406 not JSON, " +
	"409 stale version (If-Match with W/\"<version>\" no longer current: read again), 422 business rule (OperationOutcome code business-rule, " +
	"extension or not-supported: e.g. codings that mix Oracle's codes with standard ones), 500. A create answers 201 with an empty body, " +
	"a Location and ETag W/\"0\": mediflow reads the record back from Location."

// oracleContentTypes are the media types Oracle Health documents for
// DocumentReference create.
var oracleContentTypes = []string{"application/pdf", "text/plain", "text/richtext", "text/rtf", "text/html", "application/xml", "application/xhtml+xml"}

var oracleDocType = Rule{
	ID:          "oracle-health.docref.type",
	Description: "type is coded with LOINC, or with exactly one Oracle Health proprietary coding — not both (a mix is refused by oracle-health.mixed-codings)",
	Check: func(res map[string]any) []FieldError {
		cc, ok := res["type"].(map[string]any)
		if !ok {
			return nil
		}
		var loinc, own, other int
		for _, c := range list(cc["coding"]) {
			cm, _ := c.(map[string]any)
			switch sys := str(cm["system"]); {
			case sys == "http://loinc.org":
				loinc++
			case strings.HasPrefix(sys, oraclePrefix):
				own++
			default:
				other++
			}
		}
		const id = "oracle-health.docref.type"
		switch {
		case loinc > 0 && own > 0:
			return nil // mixed: oracle-health.mixed-codings reports it
		case loinc == 0 && own == 0:
			return []FieldError{{Path: "type.coding", Rule: id, Message: "Oracle Health needs the document type as a LOINC coding (system http://loinc.org) or as one Oracle Health code-set coding"}}
		case own > 1:
			return []FieldError{{Path: "type.coding", Rule: id, Message: "give one Oracle Health code-set coding for the document type, not several"}}
		case other > 0:
			return []FieldError{{Path: "type.coding", Rule: id, Message: "remove the codings that are neither LOINC nor Oracle Health's: Oracle Health takes only those for a document type"}}
		}
		return nil
	},
}

var oracleOneContent = Rule{
	ID:          "oracle-health.docref.one-content",
	Description: "exactly one content, whose attachment has a contentType with a charset and the document inline (data)",
	Check: func(res map[string]any) []FieldError {
		const id = "oracle-health.docref.one-content"
		cs, ok := res["content"].([]any)
		if !ok || len(cs) == 0 {
			return nil
		}
		if len(cs) != 1 {
			return []FieldError{{Path: "content", Rule: id, Message: "Oracle Health takes exactly one content per document (there are " + strconv.Itoa(len(cs)) + "): send one document per note"}}
		}
		a, _ := nodeAt(cs[0], "attachment").(map[string]any)
		var out []FieldError
		ct := str(a["contentType"])
		if ct == "" {
			out = append(out, FieldError{Path: "content[0].attachment.contentType", Rule: id, Message: "give the document's media type with its charset, e.g. text/plain;charset=utf-8"})
		} else if _, charset, ok := mediaType(ct); ok && !charset {
			out = append(out, FieldError{Path: "content[0].attachment.contentType", Rule: id, Message: "add the charset to the contentType, e.g. ;charset=utf-8: Oracle Health needs it"})
		}
		if !present(a["data"]) {
			out = append(out, FieldError{Path: "content[0].attachment.data", Rule: id, Message: "put the document in data (base64): Oracle Health does not fetch it from a url"})
		}
		return out
	},
}

var oracleContentType = Rule{
	ID:          "oracle-health.docref.content-type",
	Description: "the contentType is one Oracle Health accepts: " + strings.Join(oracleContentTypes, ", "),
	Check: func(res map[string]any) []FieldError {
		var out []FieldError
		for _, n := range nodes(res, "content.attachment.contentType") {
			mt, _, ok := mediaType(str(n.v))
			accepted := false
			for _, t := range oracleContentTypes {
				accepted = accepted || (ok && mt == t)
			}
			if !accepted {
				out = append(out, FieldError{Path: n.path, Rule: "oracle-health.docref.content-type", Message: "Oracle Health accepts documents as " + strings.Join(oracleContentTypes, ", ") + ": convert the document to one of them"})
			}
		}
		return out
	},
}

var oracleAuthor = Rule{
	ID:          "oracle-health.docref.author",
	Description: "author is one Practitioner",
	Check: func(res map[string]any) []FieldError {
		as := nodes(res, "author")
		if len(as) > 1 {
			return []FieldError{{Path: "author", Rule: "oracle-health.docref.author", Message: "Oracle Health takes one author per document: keep the practitioner who wrote it"}}
		}
		if len(as) == 1 && refType(as[0].v) != "Practitioner" {
			return []FieldError{{Path: as[0].path, Rule: "oracle-health.docref.author", Message: "must reference a Practitioner (Practitioner/<id>) known to Oracle Health"}}
		}
		return nil
	},
}

// oracleBooked: a booked appointment has exactly one Slot and a Patient
// participant that accepted.
var oracleBooked = Rule{
	ID:          "oracle-health.appointment.booked",
	Description: "a booked appointment has exactly one Slot and a Patient participant with status accepted",
	Check: func(res map[string]any) []FieldError {
		const id = "oracle-health.appointment.booked"
		if str(res["status"]) != "booked" {
			return nil
		}
		var out []FieldError
		if n := len(nodes(res, "slot")); n != 1 {
			out = append(out, FieldError{Path: "slot", Rule: id, Message: "a booked appointment names exactly one Slot (Slot/<id>) at Oracle Health (there are " + strconv.Itoa(n) + "): book one free slot"})
		}
		out = append(out, checkPatientParticipant(res, id, "Oracle Health books an appointment only for a patient who accepted it", "accepted")...)
		return out
	},
}

func oracleContract() *Contract {
	mixed := mixedCodings("oracle-health.mixed-codings")
	fhir := func(s Support) Support {
		s.Supported, s.Channel, s.EmptyCreateBody = true, ChannelFHIR, creates(s.Operation)
		if updates(s.Operation) {
			s.IfMatch, s.StaleStatus = true, 409
		}
		s.Rules = append(s.Rules, mixed)
		return s
	}
	update := fhir
	return New(VendorOracleHealth, "", oracleErrors,
		fhir(Support{Intent: NoteCreate, ResourceType: "DocumentReference", Operation: OpCreate,
			Required: []string{"status", "docStatus", "type", "subject", "author", "content", "context.period.end"},
			Rules: []Rule{
				statusIs("oracle-health.docref.status", "Oracle Health creates current documents only", "current"),
				{ID: "oracle-health.docref.doc-status", Description: "docStatus is final",
					Check: func(res map[string]any) []FieldError {
						if s, ok := res["docStatus"]; ok && str(s) != "final" {
							return []FieldError{{Path: "docStatus", Rule: "oracle-health.docref.doc-status", Message: "set docStatus to final: Oracle Health takes finished documents only"}}
						}
						return nil
					}},
				oracleDocType,
				referenceTo("oracle-health.docref.subject", "subject", "Patient", "Oracle Health files documents for patients only"),
				oracleAuthor,
				oracleOneContent,
				oracleContentType,
				withTime("oracle-health.docref.date-time", "Oracle Health", "date", "context.period.start", "context.period.end", "content.attachment.creation"),
			},
			Note: "Oracle Health converts XHTML to RTF."}),
		fhir(Support{Intent: AppointmentBook, ResourceType: "Appointment", Operation: OpCreate,
			Required: []string{"status", "participant"},
			Rules: []Rule{
				statusIs("oracle-health.appointment.create-status", "Oracle Health creates appointments as proposed (a request) or booked (in a slot)", "proposed", "booked"),
				oracleBooked,
			},
			Note: "proposed (a request), or booked in one free Slot for a patient who accepted."}),
		refuseNoHL7(AppointmentResched, "Oracle Health's Appointment API changes only an appointment's status (proposed → booked or cancelled; booked → arrived, checked-in or cancelled; checked-in → fulfilled), never its time: cancel the appointment and book the new slot. "+
			"mediflow's HL7 channel reschedules (SIU^S13) only appointments it books over HL7, and Oracle Health's are booked through FHIR"),
		update(Support{Intent: AppointmentCancel, ResourceType: "Appointment", Operation: OpPatch,
			Required: []string{"id", "status"},
			Rules:    []Rule{statusIs("oracle-health.appointment.cancelled", "a cancellation sets the appointment's status", "cancelled")},
			Note:     "JSON Patch of status with If-Match: W/\"<version>\"; only a proposed or booked appointment can be cancelled."}),
		update(Support{Intent: ConditionUpsert, ResourceType: "Condition", Operation: OpUpsert,
			Required: []string{"subject", "code", "category"},
			Rules:    []Rule{referenceTo("oracle-health.condition.subject", "subject", "Patient", "a problem belongs to a patient")},
			Note:     "Create without an id (201, empty body), update (PUT with If-Match) with one."}),
		fhir(Support{Intent: ObservationRecord, ResourceType: "Observation", Operation: OpCreate,
			Required: []string{"status", "category", "code", "subject"}}),
		chargeRefusal("Oracle Health"),
	)
}

// ---- athenahealth ---------------------------------------------------------

const athenaErrors = "FHIR is read only. The v1 API answers an HTTP 4xx status with a JSON error message; it has no ETag and no idempotency key, " +
	"so mediflow reads an appointment back before it retries a booking. v1 fields are mostly limited to 20 characters (last name 30, address 100)."

// athenaV1ID turns an athenahealth FHIR id (a-<practice>.<kind>-<id>) into
// the v1 API's id.
var athenaFHIRID = regexp.MustCompile(`^a-\d+\.[A-Za-z]+-(.+)$`)

func athenaV1ID(s string) string {
	if m := athenaFHIRID.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return s
}

// AthenaV1ID returns the athenahealth v1 API id of an athenahealth FHIR id
// ("a-195900.appointment-1234" → "1234"); any other value, such as a v1
// id already, is returned as it is.
func AthenaV1ID(fhirID string) string { return athenaV1ID(fhirID) }

var athenaLimits = maxLengths("athenahealth.v1.field-length", "athenahealth's v1 API",
	fieldLimit{path: "id", field: "appointmentid", max: 20, id: athenaV1ID},
	fieldLimit{path: "slot", field: "appointmentid (the open slot)", max: 20, id: athenaV1ID},
	fieldLimit{path: "participant.actor", field: "patientid / providerid / departmentid", max: 20, id: athenaV1ID},
	fieldLimit{path: "appointmentType.coding.code", field: "appointmenttypeid", max: 20},
	fieldLimit{path: "reasonCode.coding.code", field: "reasonid", max: 20},
)

func athenaContract() *Contract {
	v1 := func(s Support) Support {
		s.Supported, s.Channel, s.ResourceType = true, ChannelVendorREST, "Appointment"
		s.Rules = append(s.Rules, athenaLimits)
		return s
	}
	const onlyAppointments = "athenahealth's FHIR API is read only, and mediflow writes to athenahealth's v1 API only for appointments"
	return New(VendorAthenahealth, "", athenaErrors,
		refuse(NoteCreate, onlyAppointments),
		v1(Support{Intent: AppointmentBook, Operation: "PUT /v1/{practiceid}/appointments/{appointmentid}",
			Required: []string{"slot", "participant"},
			Rules: []Rule{
				exactlyOne("athenahealth.appointment.one-slot", "slot", "athenahealth books one open appointment slot"),
				patientParticipant("athenahealth.appointment.patient", "athenahealth books a slot for a patient (patientid)", ""),
			},
			Note: "Books an open appointment slot (the slot's id is the v1 appointmentid) for the patient."}),
		v1(Support{Intent: AppointmentResched, Operation: "PUT /v1/{practiceid}/appointments/{appointmentid}/reschedule",
			Required: []string{"id", "slot", "participant"},
			Rules: []Rule{
				exactlyOne("athenahealth.appointment.one-slot", "slot", "a reschedule moves the appointment to one open slot"),
				patientParticipant("athenahealth.appointment.patient", "athenahealth reschedules a patient's appointment (patientid)", ""),
			},
			Note: "Moves the appointment to the open slot given."}),
		v1(Support{Intent: AppointmentCancel, Operation: "PUT /v1/{practiceid}/appointments/{appointmentid}/cancel",
			Required: []string{"id", "status", "participant"},
			Rules: []Rule{
				statusIs("athenahealth.appointment.cancelled", "a cancellation sets the appointment's status", "cancelled"),
				patientParticipant("athenahealth.appointment.patient", "athenahealth cancels a patient's appointment (patientid)", ""),
			}}),
		refuse(ConditionUpsert, onlyAppointments),
		refuse(ObservationRecord, onlyAppointments),
		chargeRefusal("athenahealth"),
	)
}

// ---- read-only FHIR vendors -----------------------------------------------

func eclinicalworksContract() *Contract {
	const why = "eClinicalWorks' FHIR Facade is read only, and eCW's proprietary writeback API covers patient records, which mediflow does not write"
	return New(VendorEClinicalWorks, "",
		"FHIR is read only. The writeback API answers with numeric status codes (100 INVALID_PATIENT, 202 INVALID_PATIENT_ALREADY_EXIST). "+
			"429 without Retry-After once a practice's 250 calls a minute are used.",
		refuse(NoteCreate, why),
		refuse(AppointmentBook, why),
		refuse(AppointmentResched, why),
		refuse(AppointmentCancel, why),
		refuse(ConditionUpsert, why),
		refuse(ObservationRecord, why),
		chargeRefusal("eClinicalWorks"),
	)
}

func nextgenContract(product, versions, readOnly string) *Contract {
	why := readOnly + ", and NextGen offers no write API mediflow uses"
	return New(VendorNextGen, versions, product+": FHIR is read only; there is no write to report errors for.",
		refuse(NoteCreate, why),
		refuse(AppointmentBook, why),
		refuse(AppointmentResched, why),
		refuse(AppointmentCancel, why),
		refuse(ConditionUpsert, why),
		refuse(ObservationRecord, why),
		chargeRefusal("NextGen"),
	)
}

func veradigmContract() *Contract {
	const why = "Veradigm's FHIR R4 API is read only; writes need Veradigm's proprietary Unity API (GetToken, GetUserAuthentication, then Magic actions), which mediflow does not call"
	return New(VendorVeradigm, "", "FHIR is read only; Unity API errors are not handled by mediflow.",
		refuse(NoteCreate, why),
		refuse(AppointmentBook, why),
		refuse(AppointmentResched, why),
		refuse(AppointmentCancel, why),
		refuse(ConditionUpsert, why),
		refuse(ObservationRecord, why),
		chargeRefusal("Veradigm"),
	)
}
