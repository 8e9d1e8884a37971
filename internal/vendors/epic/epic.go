// Package epic is the engine-side vendor profile for Epic's FHIR R4 API: its
// OperationOutcome error codes (4101 no results, 4111, 4113 expired search
// session, 4127, break-the-glass, ...), its paging limits and its data quirks.
package epic

import (
	"net/url"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/vendors/generic"
	"github.com/mediflow/mediflow/internal/vendors/profile"
)

// Name is the registry name of this profile.
const Name = "epic"

// ErrorSystem is the code system Epic uses in OperationOutcome.issue.details.
const ErrorSystem = "urn:oid:1.2.840.114350.1.13.0.1.7.2.657369"

// Epic's OperationOutcome detail codes.
const (
	CodeNoResults          = "4101" // warning: the search matched nothing
	CodeRequiredParam      = "4111" // a required search parameter is missing
	CodeSearchExpired      = "4113" // the cached search session expired: re-run the search
	CodeTooManyPatients    = "4127" // Patient.Search matched more than 100 patients
	CodeBreakTheGlass      = "4130" // break-the-glass protected record
	CodeBreakTheGlass2     = "4131"
	CodeBreakTheGlass3     = "4134"
	CodeDuplicate          = "59141" // duplicate resource on create
	CodeFlowsheetMissing   = "59187" // flowsheet row not found
	CodeFlowsheetUnmapped  = "59188" // flowsheet row not mapped
	patientSearchMaxResult = 100
)

var codeKinds = map[string]profile.ErrorKind{
	CodeNoResults:         profile.KindEmpty,
	CodeRequiredParam:     profile.KindInvalid,
	CodeSearchExpired:     profile.KindSearchExpired,
	CodeTooManyPatients:   profile.KindTooManyResults,
	CodeBreakTheGlass:     profile.KindForbidden,
	CodeBreakTheGlass2:    profile.KindForbidden,
	CodeBreakTheGlass3:    profile.KindForbidden,
	CodeDuplicate:         profile.KindConflict,
	CodeFlowsheetMissing:  profile.KindInvalid,
	CodeFlowsheetUnmapped: profile.KindInvalid,
}

// Profile implements profile.Profile for Epic. It behaves like the generic
// profile except where Epic is known to differ.
type Profile struct {
	*generic.Profile
}

// New returns the Epic profile. Epic publishes no _count limit; 100 per page
// is a conservative default and 1000 the most we ask for. Patient searches are
// capped at 100 because Epic refuses Patient searches matching more (4127).
func New() *Profile {
	return &Profile{Profile: generic.New(generic.Options{DefaultPageSize: 100, MaxPageSize: 1000})}
}

// Name implements profile.Profile.
func (p *Profile) Name() string { return Name }

// PageSize implements profile.Profile.
func (p *Profile) PageSize(resourceType string) (def, max int) {
	if resourceType == "Patient" {
		return patientSearchMaxResult, patientSearchMaxResult
	}
	return p.Profile.PageSize(resourceType)
}

// SearchParams implements profile.Profile. Epic has no _sort; _lastUpdated is
// sent although Epic's published CapabilityStatement does not list it (see
// Quirks): a server that ignores it returns everything, and content hashes
// make the surplus count as unchanged.
func (p *Profile) SearchParams(resourceType string, since time.Time, count int) url.Values {
	return p.Profile.SearchParams(resourceType, since, count)
}

// ClassifyOutcome implements profile.Profile. Epic's numeric detail codes
// decide first; "no results" (4101) counts only when no other issue is an
// error. Otherwise the standard FHIR classification applies.
func (p *Profile) ClassifyOutcome(status int, oo *fhir.OperationOutcome) (profile.ErrorKind, string) {
	if oo == nil {
		return profile.KindUnknown, ""
	}
	var firstCode string
	empty := false
	for _, is := range oo.Issue {
		code := issueCode(is)
		if code == "" {
			if is.Severity == "error" || is.Severity == "fatal" {
				return generic.ClassifyStandard(status, oo), ""
			}
			continue
		}
		if firstCode == "" {
			firstCode = code
		}
		kind, known := codeKinds[code]
		switch {
		case known && kind == profile.KindEmpty:
			empty = true
		case known && kind != profile.KindUnknown:
			return kind, code
		case is.Severity == "error" || is.Severity == "fatal":
			// An Epic code we do not know: the standard vocabulary decides.
			return generic.ClassifyStandard(status, oo), code
		}
	}
	if empty {
		return profile.KindEmpty, CodeNoResults
	}
	return generic.ClassifyStandard(status, oo), firstCode
}

// issueCode returns the Epic detail code of an issue ("" when none).
func issueCode(is fhir.OutcomeIssue) string {
	if is.Details == nil {
		return ""
	}
	for _, c := range is.Details.Coding {
		if c.System == ErrorSystem && c.Code != "" {
			return c.Code
		}
	}
	for _, c := range is.Details.Coding {
		if _, ok := codeKinds[c.Code]; ok {
			return c.Code
		}
	}
	return ""
}

// Quirks implements profile.Profile: what the mapping layer must expect.
// BulkSince: Epic's Group export is not incremental (it refuses _since),
// so every nightly export is a full one; content hashes turn what did not
// change into "unchanged".
func (p *Profile) BulkSince() bool { return false }

func (p *Profile) Quirks() []profile.Quirk {
	return []profile.Quirk{
		{Area: "identifier", Description: "identifiers carry only type.text (EPIC, EXTERNAL, FHIR, INTERNAL, EPI, MYCHARTLOGIN), no coded type"},
		{Area: "identifier", Description: "INTERNAL identifier values are left-padded with spaces (\"     Z6129\"): trim before matching"},
		{Area: "identifier", Description: "the MRN is the EPI identifier; its system is a per-installation OID"},
		{Area: "extension", Description: "legal sex in extension http://open.epic.com/FHIR/StructureDefinition/extension/legal-sex with a per-site OID code system"},
		{Area: "name", Description: "names often repeated as official and usual with the same parts"},
		{Area: "telecom", Description: "phone numbers formatted like 469-555-5555"},
		{Area: "coding", Description: "maritalStatus text-only; ethnicity sometimes text-only"},
		{Area: "search", Description: "_lastUpdated and _sort are not in the published CapabilityStatement: incremental searches may return everything"},
		{Area: "search", Description: "Patient search needs a minimum parameter set and fails with 4127 above 100 matches"},
		{Area: "paging", Description: "cached search sessions expire (4113): the search must be re-run"},
		{Area: "resources", Description: "Schedule and Slot exist only in STU3; Appointment, Coverage, Encounter, Practitioner are read/search only"},
	}
}
