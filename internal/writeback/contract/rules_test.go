package contract

import (
	"strings"
	"testing"
)

// oracleNote is a DocumentReference Oracle Health accepts (shaped like its
// published create example).
const oracleNote = `{
  "resourceType": "DocumentReference",
  "status": "current",
  "docStatus": "final",
  "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}]},
  "subject": {"reference": "Patient/12724066"},
  "author": [{"reference": "Practitioner/3332064"}],
  "date": "2026-03-01T10:00:00Z",
  "content": [{"attachment": {"contentType": "text/plain;charset=utf-8", "data": "Tm90ZSB0ZXh0", "creation": "2026-03-01T10:00:00Z"}}],
  "context": {"encounter": [{"reference": "Encounter/97987761"}], "period": {"start": "2026-03-01T09:00:00Z", "end": "2026-03-01T09:30:00Z"}}
}`

const oracleCodeSet = "https://fhir.cerner.com/ec2458f2-1e24-41c8-b71b-0e701af7583d/codeSet/72"

func TestOracleDocumentReference(t *testing.T) {
	c := mustFor(t, VendorOracleHealth)
	assertErrors(t, c, NoteCreate, oracleNote) // valid
	// a single proprietary coding is valid too
	assertErrors(t, c, NoteCreate, edit(t, oracleNote, func(m map[string]any) {
		m["type"] = map[string]any{"coding": []any{map[string]any{"system": oracleCodeSet, "code": "2820507", "userSelected": true}}}
	}))
	cases := []struct {
		name string
		f    func(m map[string]any)
		want []wantFE
	}{
		{"status not current", func(m map[string]any) { m["status"] = "superseded" }, []wantFE{fe("status", "oracle-health.docref.status")}},
		{"docStatus not final", func(m map[string]any) { m["docStatus"] = "preliminary" }, []wantFE{fe("docStatus", "oracle-health.docref.doc-status")}},
		{"docStatus missing", func(m map[string]any) { delete(m, "docStatus") }, []wantFE{fe("docStatus", "required")}},
		{"type without LOINC or proprietary", func(m map[string]any) {
			m["type"] = map[string]any{"coding": []any{map[string]any{"system": "http://snomed.info/sct", "code": "371532007"}}}
		}, []wantFE{fe("type.coding", "oracle-health.docref.type")}},
		{"type with two proprietary codings", func(m map[string]any) {
			m["type"] = map[string]any{"coding": []any{
				map[string]any{"system": oracleCodeSet, "code": "1"}, map[string]any{"system": oracleCodeSet, "code": "2"}}}
		}, []wantFE{fe("type.coding", "oracle-health.docref.type")}},
		{"type LOINC and proprietary", func(m map[string]any) {
			cc := obj(m["type"])
			cc["coding"] = append(arr(cc["coding"]), map[string]any{"system": oracleCodeSet, "code": "2820507"})
		}, []wantFE{fe("type.coding", "oracle-health.mixed-codings")}},
		{"subject not a Patient", func(m map[string]any) { m["subject"] = map[string]any{"reference": "Group/4"} }, []wantFE{fe("subject", "oracle-health.docref.subject")}},
		{"author not a Practitioner", func(m map[string]any) { m["author"] = []any{map[string]any{"reference": "Organization/1"}} }, []wantFE{fe("author[0]", "oracle-health.docref.author")}},
		{"two authors", func(m map[string]any) {
			m["author"] = append(arr(m["author"]), map[string]any{"reference": "Practitioner/2"})
		}, []wantFE{fe("author", "oracle-health.docref.author")}},
		{"author missing", func(m map[string]any) { delete(m, "author") }, []wantFE{fe("author", "required")}},
		{"two contents", func(m map[string]any) { m["content"] = append(arr(m["content"]), arr(m["content"])[0]) }, []wantFE{fe("content", "oracle-health.docref.one-content")}},
		{"contentType without charset", func(m map[string]any) {
			obj(obj(arr(m["content"])[0])["attachment"])["contentType"] = "text/plain"
		}, []wantFE{fe("content[0].attachment.contentType", "oracle-health.docref.one-content")}},
		{"contentType missing", func(m map[string]any) {
			delete(obj(obj(arr(m["content"])[0])["attachment"]), "contentType")
		}, []wantFE{fe("content[0].attachment.contentType", "oracle-health.docref.one-content")}},
		{"url instead of data", func(m map[string]any) {
			a := obj(obj(arr(m["content"])[0])["attachment"])
			delete(a, "data")
			a["url"] = "Binary/1"
		}, []wantFE{fe("content[0].attachment.data", "oracle-health.docref.one-content")}},
		{"media type Oracle does not take", func(m map[string]any) {
			obj(obj(arr(m["content"])[0])["attachment"])["contentType"] = "image/png;charset=binary"
		}, []wantFE{fe("content[0].attachment.contentType", "oracle-health.docref.content-type")}},
		{"context.period.end missing", func(m map[string]any) { delete(obj(obj(m["context"])["period"]), "end") }, []wantFE{fe("context.period.end", "required")}},
		{"context.period.end without a time", func(m map[string]any) {
			obj(obj(m["context"])["period"])["end"] = "2026-03-01"
		}, []wantFE{fe("context.period.end", "oracle-health.docref.date-time")}},
		{"date without a time", func(m map[string]any) { m["date"] = "2026-03-01" }, []wantFE{fe("date", "oracle-health.docref.date-time")}},
		{"attachment creation without a time", func(m map[string]any) {
			obj(obj(arr(m["content"])[0])["attachment"])["creation"] = "2026-03-01"
		}, []wantFE{fe("content[0].attachment.creation", "oracle-health.docref.date-time")}},
		{"wrong resource type", func(m map[string]any) { m["resourceType"] = "Observation" }, []wantFE{fe("resourceType", "resource-type")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertErrors(t, c, NoteCreate, edit(t, oracleNote, tc.f), tc.want...)
		})
	}
	// every rule of the contract is exercised alone above
	s := c.Support(NoteCreate)
	for _, r := range s.Rules {
		found := false
		for _, tc := range cases {
			for _, w := range tc.want {
				found = found || w.rule == r.ID
			}
		}
		if !found {
			t.Errorf("rule %s has no case of its own", r.ID)
		}
	}
}

func TestOracleMixedCodings(t *testing.T) {
	c := mustFor(t, VendorOracleHealth)
	cond := `{"resourceType":"Condition","subject":{"reference":"Patient/1"},
	  "code":{"coding":[{"system":"http://snomed.info/sct","code":"209832007"}]},
	  "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"problem-list-item"}]}]}`
	assertErrors(t, c, ConditionUpsert, cond)
	assertErrors(t, c, ConditionUpsert, edit(t, cond, func(m map[string]any) {
		cc := obj(arr(m["category"])[0])
		cc["coding"] = append(arr(cc["coding"]), map[string]any{"system": "https://fhir.cerner.com/t/codeSet/12", "code": "3"})
	}), fe("category[0].coding", "oracle-health.mixed-codings"))
	// proprietary codings alone are fine, and so is a coding without a system
	assertErrors(t, c, ConditionUpsert, edit(t, cond, func(m map[string]any) {
		m["code"] = map[string]any{"coding": []any{map[string]any{"system": "https://fhir.cerner.com/t/codeSet/400", "code": "1"}, map[string]any{"code": "x"}}}
	}))
	// nested: a component's code of an Observation
	obs := `{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/1"},
	  "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
	  "code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},
	  "component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"},{"system":"https://fhir.cerner.com/t/codeSet/72","code":"703501"}]},"valueQuantity":{"value":120,"unit":"mmHg"}}]}`
	assertErrors(t, c, ObservationRecord, obs, fe("component[0].code.coding", "oracle-health.mixed-codings"))
}

const oracleBookedAppt = `{
  "resourceType": "Appointment",
  "status": "booked",
  "slot": [{"reference": "Slot/24477854-21304876-62852027-0"}],
  "participant": [{"actor": {"reference": "Patient/12724066"}, "status": "accepted"}],
  "reasonCode": [{"text": "Follow-up"}]
}`

func TestOracleAppointmentBooked(t *testing.T) {
	c := mustFor(t, VendorOracleHealth)
	assertErrors(t, c, AppointmentBook, oracleBookedAppt)
	// a proposed appointment needs no slot, and its patient may not have answered
	assertErrors(t, c, AppointmentBook, edit(t, oracleBookedAppt, func(m map[string]any) {
		m["status"] = "proposed"
		delete(m, "slot")
		obj(arr(m["participant"])[0])["status"] = "needs-action"
	}))
	cases := []struct {
		name string
		f    func(m map[string]any)
		want []wantFE
	}{
		{"no slot", func(m map[string]any) { delete(m, "slot") }, []wantFE{fe("slot", "oracle-health.appointment.booked")}},
		{"two slots", func(m map[string]any) { m["slot"] = append(arr(m["slot"]), map[string]any{"reference": "Slot/2"}) }, []wantFE{fe("slot", "oracle-health.appointment.booked")}},
		{"patient has not accepted", func(m map[string]any) { obj(arr(m["participant"])[0])["status"] = "needs-action" },
			[]wantFE{fe("participant[0].status", "oracle-health.appointment.booked")}},
		{"no patient participant", func(m map[string]any) {
			m["participant"] = []any{map[string]any{"actor": map[string]any{"reference": "Location/21304876"}, "status": "accepted"}}
		}, []wantFE{fe("participant", "oracle-health.appointment.booked")}},
		{"no participant at all", func(m map[string]any) { delete(m, "participant") }, []wantFE{fe("participant", "required")}},
		{"created as arrived", func(m map[string]any) { m["status"] = "arrived" }, []wantFE{fe("status", "oracle-health.appointment.create-status")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertErrors(t, c, AppointmentBook, edit(t, oracleBookedAppt, tc.f), tc.want...)
		})
	}
	// a cancellation names the appointment and sets the status
	assertErrors(t, c, AppointmentCancel, edit(t, oracleBookedAppt, func(m map[string]any) { m["id"] = "4000"; m["status"] = "cancelled" }))
	assertErrors(t, c, AppointmentCancel, edit(t, oracleBookedAppt, func(m map[string]any) { m["status"] = "cancelled" }), fe("id", "required"))
	assertErrors(t, c, AppointmentCancel, edit(t, oracleBookedAppt, func(m map[string]any) { m["id"] = "4000" }), fe("status", "oracle-health.appointment.cancelled"))
}

const athenaBooking = `{
  "resourceType": "Appointment",
  "status": "booked",
  "slot": [{"reference": "Slot/a-195900.Slot-1234567"}],
  "participant": [
    {"actor": {"reference": "Patient/a-195900.E-12345"}, "status": "accepted"},
    {"actor": {"reference": "Practitioner/a-195900.Provider-71"}, "status": "accepted"},
    {"actor": {"reference": "Location/a-195900.Department-1"}, "status": "accepted"}
  ],
  "appointmentType": {"coding": [{"system": "https://athenahealth.example/appointmenttype", "code": "82"}]},
  "reasonCode": [{"coding": [{"system": "https://athenahealth.example/reason", "code": "1121"}]}]
}`

func TestAthenahealthFieldLimits(t *testing.T) {
	c := mustFor(t, VendorAthenahealth)
	assertErrors(t, c, AppointmentBook, athenaBooking)
	const rule = "athenahealth.v1.field-length"
	twenty, twentyOne := strings.Repeat("7", 20), strings.Repeat("7", 21)
	cases := []struct {
		name string
		f    func(m map[string]any)
		want []wantFE
	}{
		{"patient id of 20 characters", func(m map[string]any) {
			obj(arr(m["participant"])[0])["actor"] = map[string]any{"reference": "Patient/" + twenty}
		}, nil},
		{"patient id of 21 characters", func(m map[string]any) {
			obj(arr(m["participant"])[0])["actor"] = map[string]any{"reference": "Patient/" + twentyOne}
		}, []wantFE{fe("participant[0].actor", rule)}},
		{"a long FHIR id whose v1 id is short", func(m map[string]any) {
			obj(arr(m["participant"])[0])["actor"] = map[string]any{"reference": "Patient/a-1959001234567890.E-12345"}
		}, nil},
		{"a FHIR id whose v1 id is too long", func(m map[string]any) {
			obj(arr(m["participant"])[1])["actor"] = map[string]any{"reference": "Practitioner/a-195900.Provider-" + twentyOne}
		}, []wantFE{fe("participant[1].actor", rule)}},
		{"appointment type of 21 characters", func(m map[string]any) {
			obj(arr(obj(m["appointmentType"])["coding"])[0])["code"] = twentyOne
		}, []wantFE{fe("appointmentType.coding[0].code", rule)}},
		{"reason of 21 characters", func(m map[string]any) {
			obj(arr(obj(arr(m["reasonCode"])[0])["coding"])[0])["code"] = twentyOne
		}, []wantFE{fe("reasonCode[0].coding[0].code", rule)}},
		{"slot id of 21 characters", func(m map[string]any) { m["slot"] = []any{map[string]any{"reference": "Slot/" + twentyOne}} }, []wantFE{fe("slot[0]", rule)}},
		{"two slots", func(m map[string]any) { m["slot"] = append(arr(m["slot"]), map[string]any{"reference": "Slot/9"}) }, []wantFE{fe("slot", "athenahealth.appointment.one-slot")}},
		{"no patient", func(m map[string]any) { m["participant"] = arr(m["participant"])[1:] }, []wantFE{fe("participant", "athenahealth.appointment.patient")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertErrors(t, c, AppointmentBook, edit(t, athenaBooking, tc.f), tc.want...)
		})
	}
	// the limit applies to a reschedule's and a cancellation's appointment id too
	assertErrors(t, c, AppointmentCancel, edit(t, athenaBooking, func(m map[string]any) { m["id"] = twentyOne; m["status"] = "cancelled" }), fe("id", rule))
	assertErrors(t, c, AppointmentResched, edit(t, athenaBooking, func(m map[string]any) { m["id"] = "a-195900.Appointment-88" }))
	// messages say the limit, never the value
	_, errs := c.Check(AppointmentBook, []byte(edit(t, athenaBooking, func(m map[string]any) {
		obj(arr(m["participant"])[0])["actor"] = map[string]any{"reference": "Patient/" + twentyOne}
	})))
	if len(errs) != 1 || !strings.Contains(errs[0].Message, "at most 20") || strings.Contains(errs[0].Message, twentyOne) {
		t.Errorf("message %v", errs)
	}
}

const epicNote = `{
  "resourceType": "DocumentReference",
  "status": "current",
  "docStatus": "final",
  "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
  "subject": {"reference": "Patient/erXuFYUfucBZaryVksYEcMg3"},
  "content": [{"attachment": {"contentType": "text/plain", "data": "Tm90ZSB0ZXh0"}}],
  "context": {"encounter": [{"reference": "Encounter/eGmO0h.1.UQQrExl4bfM7OQ3"}]}
}`

const epicVitals = `{
  "resourceType": "Observation",
  "status": "final",
  "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
  "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
  "subject": {"reference": "Patient/erXuFYUfucBZaryVksYEcMg3"},
  "effectiveDateTime": "2026-03-01T10:00:00-05:00",
  "valueQuantity": {"value": 37.1, "unit": "Cel", "system": "http://unitsofmeasure.org", "code": "Cel"}
}`

func TestEpic(t *testing.T) {
	c := mustFor(t, VendorEpic)
	// refusals say why and what to do instead
	book := c.Support(AppointmentBook)
	for _, phrase := range []string{"FHIR R4", "STU3", "$book", "SIU^S12"} {
		if !strings.Contains(book.Reason, phrase) {
			t.Errorf("booking refusal %q does not mention %s", book.Reason, phrase)
		}
	}
	if r := c.Support(AppointmentCancel).Reason; !strings.Contains(r, "SIU^S15") {
		t.Errorf("cancel refusal %q does not name SIU^S15", r)
	}
	if r := c.Support(AppointmentResched).Reason; !strings.Contains(r, "reschedule it in Epic") || !strings.Contains(r, hl7Alternative(AppointmentResched)) {
		t.Errorf("reschedule refusal %q does not say what to do: reschedule in Epic, or SIU^S13 over an HL7 interface", r)
	}
	if r := c.Support(ChargePost).Reason; !strings.Contains(r, "DFT^P03") {
		t.Errorf("charge refusal %q does not name DFT^P03", r)
	}

	// notes
	assertErrors(t, c, NoteCreate, epicNote)
	assertErrors(t, c, NoteCreate, edit(t, epicNote, func(m map[string]any) { delete(m, "context") }), fe("context", "required"))
	assertErrors(t, c, NoteCreate, edit(t, epicNote, func(m map[string]any) {
		obj(obj(arr(m["content"])[0])["attachment"])["contentType"] = "application/pdf"
	}), fe("content[0].attachment.contentType", "epic.note.content"))
	assertErrors(t, c, NoteCreate, edit(t, epicNote, func(m map[string]any) {
		m["type"] = map[string]any{"coding": []any{map[string]any{"system": "urn:oid:1.2.840.114350", "code": "1"}}}
	}), fe("type.coding", "epic.note.type"))
	assertErrors(t, c, NoteCreate, edit(t, epicNote, func(m map[string]any) {
		obj(m["context"])["encounter"] = []any{map[string]any{"reference": "Encounter/1"}, map[string]any{"reference": "Encounter/2"}}
	}), fe("context.encounter", "epic.note.encounter"))

	// problems: create only
	cond := `{"resourceType":"Condition","subject":{"reference":"Patient/e1"},"code":{"text":"Asthma"},
	  "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"problem-list-item"}]}]}`
	assertErrors(t, c, ConditionUpsert, cond)
	assertErrors(t, c, ConditionUpsert, edit(t, cond, func(m map[string]any) { m["id"] = "eXYZ" }), fe("id", "epic.condition.create-only"))

	// vitals become flowsheet rows
	assertErrors(t, c, ObservationRecord, epicVitals)
	assertErrors(t, c, ObservationRecord, edit(t, epicVitals, func(m map[string]any) {
		obj(arr(obj(arr(m["category"])[0])["coding"])[0])["code"] = "laboratory"
	}), fe("category", "epic.flowsheet.vital-signs"))
	assertErrors(t, c, ObservationRecord, edit(t, epicVitals, func(m map[string]any) { m["effectiveDateTime"] = "2026-03-01" }),
		fe("effectiveDateTime", "epic.flowsheet.time"))
	assertErrors(t, c, ObservationRecord, edit(t, epicVitals, func(m map[string]any) { delete(m, "valueQuantity") }),
		fe("value[x]", "epic.flowsheet.value"))
	assertErrors(t, c, ObservationRecord, edit(t, epicVitals, func(m map[string]any) { m["code"] = map[string]any{"text": "Temp"} }),
		fe("code.coding", "required"))
	// a blood pressure panel: the values are in the components
	bp := edit(t, epicVitals, func(m map[string]any) {
		delete(m, "valueQuantity")
		m["component"] = []any{
			map[string]any{"code": map[string]any{"text": "systolic"}, "valueQuantity": map[string]any{"value": 120, "unit": "mm[Hg]"}},
			map[string]any{"code": map[string]any{"text": "diastolic"}},
		}
	})
	assertErrors(t, c, ObservationRecord, bp, fe("component[1]", "epic.flowsheet.value"))
}

func TestGenericAppointments(t *testing.T) {
	c := mustFor(t, VendorGeneric)
	appt := `{"resourceType":"Appointment","status":"booked","start":"2026-03-01T10:00:00Z","end":"2026-03-01T10:20:00Z",
	  "participant":[{"actor":{"reference":"Patient/1"},"status":"accepted"}]}`
	assertErrors(t, c, AppointmentBook, appt)
	assertErrors(t, c, AppointmentBook, edit(t, appt, func(m map[string]any) { delete(m, "end") }), fe("end", "fhir.appointment.times"))
	assertErrors(t, c, AppointmentBook, edit(t, appt, func(m map[string]any) { m["status"] = "proposed"; delete(m, "start"); delete(m, "end") }))
	assertErrors(t, c, AppointmentBook, edit(t, appt, func(m map[string]any) { m["status"] = "proposed"; delete(m, "start") }), fe("start", "fhir.appointment.times"))
	assertErrors(t, c, AppointmentResched, edit(t, appt, func(m map[string]any) { m["id"] = "9" }))
	assertErrors(t, c, AppointmentResched, appt, fe("id", "required"))
	assertErrors(t, c, AppointmentCancel, edit(t, appt, func(m map[string]any) { m["id"] = "9" }), fe("status", "fhir.appointment.cancelled"))
}

func TestCheckInput(t *testing.T) {
	c := mustFor(t, VendorGeneric)
	for _, body := range []string{``, `[]`, `null`, `{"resourceType":`, `{} {}`} {
		_, errs := c.Check(NoteCreate, []byte(body))
		if len(errs) != 1 || errs[0].Rule != "json" {
			t.Errorf("body %q: %v", body, errs)
		}
	}
	// several problems are reported at once, in a stable order
	s, errs := c.Check(NoteCreate, []byte(`{"resourceType":"DocumentReference","content":[{"attachment":{"title":"a"}},{"format":{"code":"x"}}]}`))
	var paths []string
	for _, e := range errs {
		paths = append(paths, e.Path)
	}
	want := "status type subject content[0].attachment.contentType content[1].attachment"
	if strings.Join(paths, " ") != want || s.Intent != NoteCreate {
		t.Errorf("paths %v, want %s", paths, want)
	}
}

// TestNoValuesInMessages: a resource full of PHI-like values gives
// messages without any of them.
func TestNoValuesInMessages(t *testing.T) {
	const secret = "Zebediah-Quux-1947"
	c := mustFor(t, VendorOracleHealth)
	body := edit(t, oracleNote, func(m map[string]any) {
		m["status"] = secret
		m["docStatus"] = secret
		m["date"] = secret
		m["subject"] = map[string]any{"reference": "Group/" + secret, "display": secret}
		m["author"] = []any{map[string]any{"reference": "Organization/" + secret}}
		m["type"] = map[string]any{"coding": []any{map[string]any{"system": "http://x/" + secret, "code": secret}}, "text": secret}
		obj(obj(arr(m["content"])[0])["attachment"])["contentType"] = secret
	})
	_, errs := c.Check(NoteCreate, []byte(body))
	if len(errs) < 7 {
		t.Fatalf("only %d field errors: %v", len(errs), errs)
	}
	for _, e := range errs {
		if strings.Contains(e.Message, secret) || strings.Contains(e.Path, secret) || strings.Contains(e.Error(), secret) {
			t.Errorf("field error quotes a value: %v", e)
		}
	}
}
