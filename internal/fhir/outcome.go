package fhir

import (
	"encoding/json"
	"fmt"
	"strings"
)

// OperationOutcome is the FHIR resource servers use to report errors.
type OperationOutcome struct {
	ResourceType string         `json:"resourceType"`
	Issue        []OutcomeIssue `json:"issue"`
}

// OutcomeIssue is one issue of an OperationOutcome.
type OutcomeIssue struct {
	Severity    string           `json:"severity"` // fatal | error | warning | information
	Code        string           `json:"code"`     // IssueType: invalid, not-found, throttled, ...
	Details     *CodeableConcept `json:"details,omitempty"`
	Diagnostics string           `json:"diagnostics,omitempty"`
	Expression  []string         `json:"expression,omitempty"`
}

// CodeableConcept is the FHIR datatype, enough for error details.
type CodeableConcept struct {
	Coding []Coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

// Coding is the FHIR datatype.
type Coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

// NewOutcome builds a one-issue OperationOutcome.
func NewOutcome(severity, code, diagnostics string) *OperationOutcome {
	return &OperationOutcome{ResourceType: "OperationOutcome", Issue: []OutcomeIssue{{Severity: severity, Code: code, Diagnostics: diagnostics}}}
}

// ParseOutcome reads an OperationOutcome; ok is false when body is not one.
func ParseOutcome(body []byte) (*OperationOutcome, bool) {
	var oo OperationOutcome
	if err := json.Unmarshal(body, &oo); err != nil || oo.ResourceType != "OperationOutcome" {
		return nil, false
	}
	return &oo, true
}

// Summary is a one-line, PHI-free description: severities, codes and detail codes.
// Diagnostics text is left out because servers sometimes echo patient data in it.
func (o *OperationOutcome) Summary() string {
	parts := make([]string, 0, len(o.Issue))
	for _, is := range o.Issue {
		s := is.Severity + "/" + is.Code
		if is.Details != nil {
			for _, c := range is.Details.Coding {
				s += " " + c.Code
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// HasErrors reports whether any issue is fatal or error.
func (o *OperationOutcome) HasErrors() bool {
	for _, is := range o.Issue {
		if is.Severity == "fatal" || is.Severity == "error" {
			return true
		}
	}
	return false
}

// Error makes an OperationOutcome usable as an error.
func (o *OperationOutcome) Error() string { return fmt.Sprintf("OperationOutcome: %s", o.Summary()) }
