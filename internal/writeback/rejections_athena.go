package writeback

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// athenahealth's v1 API refuses a request with an HTTP 4xx status and a
// JSON body: {"error": "...", "detailedmessage": "..."}, with
// "missingfields" (field names) when required fields are missing and, on
// some refusals, "field" naming the field at fault. The texts are
// athenahealth's and may echo what was sent, so, as with every EHR, they
// are matched against known phrases but never stored or shown: a message
// carries at most the v1 field names, which are fixed words.

// athenaV1Error is a v1 error answer.
type athenaV1Error struct {
	Error           string   `json:"error"`
	DetailedMessage string   `json:"detailedmessage"`
	MissingFields   []string `json:"missingfields"`
	Field           string   `json:"field"`
}

// parseAthenaError reads a v1 error answer; ok is false when body is not one.
func parseAthenaError(body []byte) (athenaV1Error, bool) {
	var e athenaV1Error
	if err := json.Unmarshal(body, &e); err != nil || (e.Error == "" && e.DetailedMessage == "" && len(e.MissingFields) == 0) {
		return athenaV1Error{}, false
	}
	return e, true
}

// v1FieldName returns f when it looks like a v1 field name (lower-case
// letters and digits, at most 40), else "".
func v1FieldName(f string) string {
	if f == "" || len(f) > 40 {
		return ""
	}
	for i := 0; i < len(f); i++ {
		if c := f[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return ""
		}
	}
	return f
}

// fields lists the error's field names that are safe to show, sorted.
func (e athenaV1Error) fields() []string {
	var out []string
	for _, f := range append(slices.Clone(e.MissingFields), e.Field) {
		if f = v1FieldName(f); f != "" && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out
}

// mentions reports whether the error or its detail contains one of the
// phrases (case-insensitive).
func (e athenaV1Error) mentions(phrases ...string) bool {
	text := strings.ToLower(e.Error + " " + e.DetailedMessage)
	for _, p := range phrases {
		if strings.Contains(text, p) {
			return true
		}
	}
	return false
}

// athenaFieldMessages are the v1 fields with a message of their own when
// athenahealth refuses their value.
var athenaFieldMessages = map[string]string{
	"patientid":         "athenahealth does not know this patient in the practice (patientid). Check that the patient is registered in athenahealth and linked in mediflow, then send again.",
	"departmentid":      "The department is not the one of the slot at athenahealth (departmentid). Book a slot of that department, or leave the department out, and send again.",
	"newappointmentid":  "The new slot does not exist at athenahealth (newappointmentid). Pick an open slot and send again.",
	"appointmenttypeid": "athenahealth does not accept this appointment type for the slot (appointmenttypeid). Pick a type the practice offers and send again.",
	"reasonid":          "athenahealth does not accept this visit reason for the slot (reasonid). Pick a reason the practice offers and send again.",
}

// TranslateAthena returns the staff message for a refusal by
// athenahealth's v1 API: its status and error body (the body may be
// empty or not v1's error shape; the status then decides).
func TranslateAthena(status int, body []byte) string {
	e, ok := parseAthenaError(body)
	if !ok {
		return Translate(status, nil, "")
	}
	fields := e.fields()
	switch {
	case len(e.MissingFields) > 0:
		where := ""
		if len(fields) > 0 {
			where = " (" + strings.Join(fields, ", ") + ")"
		}
		return "athenahealth needs fields the request did not carry" + where +
			". Complete the appointment (its slot and Patient participant) and send again."
	case e.mentions("too long"):
		return withWhere("A value is too long for athenahealth's v1 API%s. Shorten it and send again.", fields)
	case e.Field == "patientid" && e.mentions("not the patient of"):
		return "The patient is not this appointment's patient at athenahealth (patientid). Check the appointment and the patient, then send again."
	case e.Field != "" && athenaFieldMessages[e.Field] != "":
		return athenaFieldMessages[e.Field]
	case e.Field != "":
		return withWhere("athenahealth did not accept a value%s. Correct it and send again.", fields)
	case e.mentions("already booked", "not open", "not available", "no longer available"):
		return "The slot is no longer open at athenahealth (booked by someone else, or closed). Pick another open slot and send again."
	case e.mentions("not booked", "already cancelled", "already canceled", "cannot be cancelled", "cannot be canceled", "cannot be rescheduled"):
		return "The appointment is no longer booked at athenahealth (it was cancelled, rescheduled or checked in), so nothing was changed. Check the schedule there."
	case status == 404 || e.mentions("appointment id is invalid"):
		return "The appointment or slot does not exist at athenahealth (HTTP 404). Check the id and send again."
	case status == 403 || e.mentions("not accessible"):
		return "mediflow's connection may not write to this athenahealth practice (HTTP 403). Ask the athenahealth administrator to grant access."
	}
	return Translate(status, nil, "")
}

// athenaCodes summarizes a v1 answer without PHI: the status and the
// field names of an error body.
func athenaCodes(status int, body []byte) string {
	s := statusText(status)
	if e, ok := parseAthenaError(body); ok {
		if fs := e.fields(); len(fs) > 0 {
			s += fmt.Sprintf(" [v1 error at %s]", strings.Join(fs, ", "))
		} else {
			s += " [v1 error]"
		}
	}
	return s
}
