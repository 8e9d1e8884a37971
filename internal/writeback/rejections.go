package writeback

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/hl7/ack"
)

// This file turns EHR refusals into short messages practice staff can act
// on. Every message is built from codes only (issue types, vendor codes,
// HTTP statuses, HL7 table 0357 codes and element paths): an EHR's
// diagnostics text can echo patient data and is never used.

// vendorMessages are the vendor codes with a message of their own.
var vendorMessages = map[string]string{
	// Epic (OperationOutcome details codes).
	"59141": "The EHR already has this record (Epic 59141, duplicate). Check the chart; do not send it again.",
	"59187": "The flowsheet row for this measurement does not exist in Epic (59187). Ask your Epic analyst to build the row, then replay.",
	"59188": "The measurement is not mapped to an Epic flowsheet row (59188). Ask your Epic analyst to map it, then replay.",
	"4130":  "The patient's chart is restricted (Epic break-the-glass); the write was refused. A user with access must make it.",
	"4131":  "The patient's chart is restricted (Epic break-the-glass); the write was refused. A user with access must make it.",
	"4134":  "The patient's chart is restricted (Epic break-the-glass); the write was refused. A user with access must make it.",
}

// ECWStatus is an eClinicalWorks writeback API status code.
type ECWStatus int

// eClinicalWorks writeback status codes with a message of their own.
const (
	ECWInvalidPatient      ECWStatus = 100 // INVALID_PATIENT
	ECWPatientAlreadyExist ECWStatus = 202 // INVALID_PATIENT_ALREADY_EXIST
)

var ecwMessages = map[ECWStatus]string{
	ECWInvalidPatient:      "eClinicalWorks does not know this patient (100 INVALID_PATIENT). Check that the patient is registered in eCW and linked in mediflow, then replay.",
	ECWPatientAlreadyExist: "The patient already exists in eClinicalWorks (202 INVALID_PATIENT_ALREADY_EXIST). Use the existing chart instead of creating a new one.",
}

// TranslateECW returns the message for an eClinicalWorks writeback status
// code; ok is false for a code without one.
func TranslateECW(code ECWStatus) (msg string, ok bool) {
	msg, ok = ecwMessages[code]
	return msg, ok
}

// issueMessages are the FHIR IssueType codes (OperationOutcome.issue.code).
// %s is replaced by " (at <paths>)" when the issue names elements.
var issueMessages = map[string]string{
	"required":      "A required field is missing%s. Fill it in and send again.",
	"value":         "A value was not accepted by the EHR%s. Correct it and send again.",
	"invalid":       "The EHR found the record invalid%s. Correct it and send again.",
	"structure":     "The record is not shaped the way the EHR expects%s. Report this to the mediflow administrator (mapping problem).",
	"invariant":     "The record breaks one of the EHR's consistency rules%s. Correct it and send again.",
	"code-invalid":  "A code is not one the EHR accepts%s. Pick a code from the EHR's list and send again.",
	"too-long":      "A value is too long for the EHR%s. Shorten it and send again.",
	"business-rule": "The EHR's rules refused the write%s. Check the record against the practice's workflow (e.g. status or schedule) and send again.",
	"duplicate":     "The EHR already has this record%s. Check the chart; do not send it again.",
	"not-found":     "Something the write refers to does not exist at the EHR (a patient, practitioner or record)%s. Check the references and send again.",
	"forbidden":     "mediflow's connection is not allowed to make this write%s. Ask the EHR administrator to grant write access.",
	"security":      "mediflow's connection is not allowed to make this write%s. Ask the EHR administrator to grant write access.",
	"login":         "mediflow could not sign in to the EHR. Ask the mediflow administrator to check the connection's credentials.",
	"not-supported": "The EHR does not support this write%s. The practice's EHR must be configured for it, or the write made by hand.",
	"conflict":      "The record was changed at the EHR at the same time%s. Review it and replay.",
	"processing":    "The EHR could not process the write%s. Report it to the EHR administrator.",
	"exception":     "The EHR failed while processing the write. It will be reported to the mediflow administrator.",
	"incomplete":    "The EHR needs more information%s. Complete the record and send again.",
	"deleted":       "The record has been deleted at the EHR. It cannot be changed.",
	"lock-error":    "The record is locked at the EHR (someone may have it open). Close it there and replay.",
	"expired":       "What the write refers to has expired at the EHR%s. Refresh the record and send again.",
}

// statusMessages are HTTP statuses without a usable OperationOutcome.
var statusMessages = map[int]string{
	400: "The EHR refused the write as malformed (HTTP 400). Report it to the mediflow administrator.",
	401: "The EHR did not accept mediflow's credentials (HTTP 401). Ask the mediflow administrator to check the connection.",
	403: "mediflow's connection is not allowed to make this write (HTTP 403). Ask the EHR administrator to grant write access.",
	404: "The record or endpoint does not exist at the EHR (HTTP 404). Check that the record still exists.",
	405: "The EHR does not accept this kind of write (HTTP 405). It must be made by hand or through another channel.",
	409: "The record was changed at the EHR at the same time (HTTP 409). Review it and replay.",
	410: "The record has been deleted at the EHR (HTTP 410). It cannot be changed.",
	412: "The record was changed at the EHR since it was read (HTTP 412). Review it and replay.",
	413: "The record is too large for the EHR (HTTP 413). Shorten attachments and send again.",
	415: "The EHR does not accept the format mediflow sent (HTTP 415). Report it to the mediflow administrator.",
	422: "The EHR's rules refused the write (HTTP 422). Correct the record and send again.",
}

// Translate returns the staff message for an EHR's refusal of a write:
// the vendor's code first (vendorCode, or a known code in the outcome's
// details), then the first error issue's type, then the HTTP status.
func Translate(status int, oo *fhir.OperationOutcome, vendorCode string) string {
	if m, ok := vendorMessages[vendorCode]; ok {
		return m
	}
	if oo != nil {
		for _, is := range oo.Issue {
			if is.Details == nil {
				continue
			}
			for _, c := range is.Details.Coding {
				if m, ok := vendorMessages[c.Code]; ok {
					return m
				}
			}
		}
		for _, is := range oo.Issue {
			if is.Severity != "error" && is.Severity != "fatal" {
				continue
			}
			if m, ok := issueMessages[is.Code]; ok {
				return withWhere(m, is.Expression)
			}
		}
	}
	if m, ok := statusMessages[status]; ok {
		return m
	}
	switch {
	case status >= 400 && status < 500:
		return fmt.Sprintf("The EHR refused the write (HTTP %d). Report it to the mediflow administrator.", status)
	case status >= 500:
		return fmt.Sprintf("The EHR failed while processing the write (HTTP %d).", status)
	}
	return "The EHR refused the write."
}

// withWhere fills a message's %s with the element paths, if they are safe
// to show.
func withWhere(m string, exprs []string) string {
	var paths []string
	for _, e := range exprs {
		if safePath(e) {
			paths = append(paths, e)
		}
		if len(paths) == 3 {
			break
		}
	}
	where := ""
	if len(paths) > 0 {
		where = " (at " + strings.Join(paths, ", ") + ")"
	}
	if strings.Contains(m, "%s") {
		return fmt.Sprintf(m, where)
	}
	return m
}

// safePath accepts FHIRPath-like element paths only (letters, digits,
// '.', '[', ']', '_', '-'), so no value can slip into a message.
func safePath(p string) bool {
	if p == "" || len(p) > 120 {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '[' || c == ']' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// hl7Messages are HL7 table 0357 error codes (ERR-3).
var hl7Messages = map[int]string{
	100: "The receiving system found the message's segments out of order%s. Report it to the mediflow administrator.",
	101: "A required field is missing%s. Fill it in and send again.",
	102: "A field has the wrong format%s. Correct it and send again.",
	103: "A code is not in the receiving system's table%s. Pick a code the system knows and send again.",
	104: "A value is too long%s. Shorten it and send again.",
	200: "The receiving system does not accept this message type. It must be configured for it.",
	201: "The receiving system does not accept this event. It must be configured for it.",
	202: "The receiving system refused the processing mode (test/production). Report it to the mediflow administrator.",
	203: "The receiving system does not accept this HL7 version. Report it to the mediflow administrator.",
	204: "The receiving system does not know the patient or record%s. Check the identifiers and send again.",
	205: "The receiving system already has this record%s. Check the chart; do not send it again.",
	206: "The record is locked in the receiving system (someone may have it open)%s. Close it there and replay.",
	207: "The receiving system failed while processing the message. Report it to its administrator.",
}

// TranslateAck returns the staff message for an HL7 v2 acknowledgment
// that did not accept a message (AE, AR, CE, CR): the first ERR segment's
// table 0357 code with its location, or the acknowledgment code alone.
// It returns "" for an accepting acknowledgment.
func TranslateAck(r ack.Result) string {
	if r.Accepted() {
		return ""
	}
	for _, e := range r.Errors {
		if e.Severity != "" && e.Severity != "E" {
			continue
		}
		if m, ok := hl7Messages[e.Code]; ok {
			var where []string
			if loc := strings.NewReplacer("(", "[", ")", "]").Replace(e.Location); loc != "" {
				where = []string{loc}
			}
			return withWhere(m, where)
		}
	}
	switch r.Code {
	case ack.AR, ack.CR:
		return "The receiving system rejected the message (" + string(r.Code) + "): it does not accept this message or is not ready. Report it to its administrator."
	case ack.AE, ack.CE:
		return "The receiving system found an error in the message (" + string(r.Code) + "). Check the record and send again."
	}
	return "The receiving system did not accept the message (" + strconv.Quote(string(r.Code)) + ")."
}
