package writeback

import (
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/hl7/ack"
)

func issue(severity, code, detail string, expr ...string) fhir.OutcomeIssue {
	is := fhir.OutcomeIssue{Severity: severity, Code: code, Diagnostics: "Patient SMITH, JOHN born 1970-01-01", Expression: expr}
	if detail != "" {
		is.Details = &fhir.CodeableConcept{Coding: []fhir.Coding{{System: "urn:oid:1.2.840.114350.1.13.0.1.7.2.657369", Code: detail}}}
	}
	return is
}

func TestTranslate(t *testing.T) {
	oo := func(is ...fhir.OutcomeIssue) *fhir.OperationOutcome {
		return &fhir.OperationOutcome{ResourceType: "OperationOutcome", Issue: is}
	}
	cases := []struct {
		name       string
		status     int
		oo         *fhir.OperationOutcome
		vendorCode string
		want       []string // substrings
	}{
		{"epic duplicate by vendor code", 400, nil, "59141", []string{"already has this record", "59141"}},
		{"epic flowsheet row missing in details", 400, oo(issue("error", "processing", "59187")), "", []string{"flowsheet row", "59187", "analyst"}},
		{"epic flowsheet unmapped", 422, oo(issue("error", "processing", "59188")), "", []string{"not mapped", "59188"}},
		{"epic break the glass", 403, oo(issue("error", "security", "4130")), "", []string{"restricted"}},
		{"required with path", 422, oo(issue("warning", "informational", ""), issue("error", "required", "", "DocumentReference.status")), "",
			[]string{"required field is missing", "(at DocumentReference.status)"}},
		{"unsafe expression dropped", 422, oo(issue("error", "value", "", "Patient.name.where(family='SMITH')")), "",
			[]string{"value was not accepted by the EHR."}},
		{"business rule", 422, oo(issue("error", "business-rule", "")), "", []string{"rules refused"}},
		{"not found reference", 422, oo(issue("error", "not-found", "")), "", []string{"does not exist at the EHR"}},
		{"forbidden", 403, oo(issue("error", "forbidden", "")), "", []string{"grant write access"}},
		{"plain 405", 405, nil, "", []string{"HTTP 405", "another channel"}},
		{"plain 422", 422, oo(issue("warning", "informational", "")), "", []string{"HTTP 422"}},
		{"other 4xx", 418, nil, "", []string{"HTTP 418"}},
	}
	for _, tc := range cases {
		got := Translate(tc.status, tc.oo, tc.vendorCode)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", tc.name, got, w)
			}
		}
		if strings.Contains(got, "SMITH") || strings.Contains(got, "1970") {
			t.Errorf("%s: diagnostics leaked into %q", tc.name, got)
		}
	}
}

func TestTranslateECW(t *testing.T) {
	if m, ok := TranslateECW(ECWInvalidPatient); !ok || !strings.Contains(m, "100 INVALID_PATIENT") || !strings.Contains(m, "registered") {
		t.Errorf("100: %q %v", m, ok)
	}
	if m, ok := TranslateECW(ECWPatientAlreadyExist); !ok || !strings.Contains(m, "202 INVALID_PATIENT_ALREADY_EXIST") {
		t.Errorf("202: %q %v", m, ok)
	}
	if _, ok := TranslateECW(999); ok {
		t.Error("an unknown eCW code has a message")
	}
}

func TestTranslateAck(t *testing.T) {
	cases := []struct {
		r    ack.Result
		want string
	}{
		{ack.Result{Code: ack.AA}, ""},
		{ack.Result{Code: ack.AE, Errors: []ack.Error{{Location: "PID-3", Code: 101, Text: "PID-3 missing for SMITH"}}}, "required field is missing (at PID-3)"},
		{ack.Result{Code: ack.AE, Errors: []ack.Error{{Location: "OBX(2)-3", Code: 103}}}, "table (at OBX[2]-3)"},
		{ack.Result{Code: ack.AR, Errors: []ack.Error{{Code: 207, Severity: "W"}, {Code: 204, Location: "PID-3"}}}, "does not know the patient"},
		{ack.Result{Code: ack.AR}, "rejected the message (AR)"},
		{ack.Result{Code: ack.CE}, "found an error in the message (CE)"},
		{ack.Result{Code: ack.AE, Errors: []ack.Error{{Code: 205}}}, "already has this record"},
	}
	for _, tc := range cases {
		got := TranslateAck(tc.r)
		if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("%+v: %q, want %q", tc.r, got, tc.want)
		}
		if strings.Contains(got, "SMITH") {
			t.Errorf("ERR text leaked: %q", got)
		}
	}
}
