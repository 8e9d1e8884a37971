// Package oraclehealth is the engine-side vendor profile for Oracle Health
// (Cerner Millennium) FHIR R4: next links that can repeat an id on the next
// page (the sync de-duplicates), searches that need a patient (and, for
// Appointment, a date), Patient searchable only by id or demographics, page
// sizes per type, _lastUpdated on few types and only for "clinically
// significant" changes, and its error statuses (409 stale version, 422
// business rule). Facts come from ../shared/reference/ehr-vendors.md §2 and
// Oracle Health's published CapabilityStatement; "unconfirmed" marks our
// choices.
package oraclehealth

import (
	"net/url"
	"strconv"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/vendors/generic"
	"github.com/mediflow/mediflow/internal/vendors/profile"
)

// Name is the registry name of this profile.
const Name = "oracle-health"

// TooManyMatches is the most matches Oracle Health pages through (422 above).
const TooManyMatches = 1000

// Default Appointment date window (see Options).
const (
	DefaultAppointmentPast   = 30 * 24 * time.Hour
	DefaultAppointmentFuture = 365 * 24 * time.Hour
)

// pageSizes are Oracle Health's documented default and maximum _count per
// type; others use 20 and 200 (unconfirmed).
var pageSizes = map[string][2]int{
	"Patient":           {20, 200},
	"Observation":       {50, 200},
	"DocumentReference": {10, 100},
}

// typeLevel are the types listed with one search (unconfirmed: Oracle
// Health documents no required parameter for them).
var typeLevel = map[string]bool{"Practitioner": true, "Location": true, "Organization": true}

// perPatient are the types whose search takes a patient (Oracle Health's
// CapabilityStatement); clinical searches need one.
var perPatient = map[string]bool{
	"Account": true, "AllergyIntolerance": true, "Appointment": true, "CarePlan": true, "CareTeam": true,
	"Condition": true, "Consent": true, "Coverage": true, "Device": true, "DiagnosticReport": true,
	"DocumentReference": true, "Encounter": true, "FamilyMemberHistory": true, "Goal": true,
	"Immunization": true, "MedicationAdministration": true, "MedicationRequest": true, "NutritionOrder": true,
	"Observation": true, "Procedure": true, "QuestionnaireResponse": true, "RelatedPerson": true, "ServiceRequest": true,
}

// Every other type is not searchable as a list: Patient needs _id or
// demographics (the roster comes from a bulk export or another feed),
// Schedule and Questionnaire take _id only, Slot needs a schedule actor or
// location, Provenance a target, and so on.

// lastUpdated are the types whose search takes _lastUpdated; the others are
// read in full per patient each run.
var lastUpdated = map[string]bool{"Observation": true, "MedicationRequest": true, "NutritionOrder": true, "ServiceRequest": true}

// Options tune the profile.
type Options struct {
	// AppointmentPast and AppointmentFuture bound the date window of
	// Appointment searches (Oracle Health requires a date): appointments
	// starting from now-AppointmentPast to before now+AppointmentFuture
	// are synced. Zero: DefaultAppointmentPast, DefaultAppointmentFuture.
	AppointmentPast, AppointmentFuture time.Duration
}

// Profile implements profile.Profile for Oracle Health.
type Profile struct {
	*generic.Profile
	opts Options
}

// New returns the Oracle Health profile.
func New(opts Options) *Profile {
	if opts.AppointmentPast <= 0 {
		opts.AppointmentPast = DefaultAppointmentPast
	}
	if opts.AppointmentFuture <= 0 {
		opts.AppointmentFuture = DefaultAppointmentFuture
	}
	return &Profile{Profile: generic.New(generic.Options{DefaultPageSize: 20, MaxPageSize: 200}), opts: opts}
}

// Name implements profile.Profile.
func (p *Profile) Name() string { return Name }

// PageSize implements profile.Profile.
func (p *Profile) PageSize(resourceType string) (def, max int) {
	if s, ok := pageSizes[resourceType]; ok {
		return s[0], s[1]
	}
	return p.Profile.PageSize(resourceType)
}

// SearchScope implements profile.Profile.
func (p *Profile) SearchScope(resourceType string) profile.Scope {
	switch {
	case typeLevel[resourceType]:
		return profile.TypeLevel
	case perPatient[resourceType]:
		return profile.PerPatient
	default:
		return profile.NotSearchable
	}
}

// SearchParams implements profile.Profile: _lastUpdated only where Oracle
// Health supports it, and _count.
func (p *Profile) SearchParams(resourceType string, since time.Time, count int) url.Values {
	v := make(url.Values, 2)
	if !since.IsZero() && lastUpdated[resourceType] {
		v.Set("_lastUpdated", "ge"+fhir.FormatInstant(since))
	}
	if count > 0 {
		v.Set("_count", strconv.Itoa(count))
	}
	return v
}

// PatientSearchParams implements profile.Profile: SearchParams plus
// patient={id}; Appointment also gets the date window Oracle Health
// requires (date=ge{now-past}&date=lt{now+future}).
func (p *Profile) PatientSearchParams(resourceType, patientID string, since, now time.Time, count int) url.Values {
	v := p.SearchParams(resourceType, since, count)
	v.Set("patient", patientID)
	if resourceType == "Appointment" {
		from, to := p.AppointmentWindow(now)
		v["date"] = []string{"ge" + fhir.FormatInstant(from), "lt" + fhir.FormatInstant(to)}
	}
	return v
}

// AppointmentWindow returns the start times of the appointments an
// Appointment search at now asks for: [from, to).
func (p *Profile) AppointmentWindow(now time.Time) (from, to time.Time) {
	now = now.UTC().Truncate(time.Second)
	return now.Add(-p.opts.AppointmentPast), now.Add(p.opts.AppointmentFuture)
}

// ClassifyOutcome implements profile.Profile. 409 is a stale version on
// update and 422 a business rule whatever the issue code says (except
// too-costly: more than 1000 matches); otherwise the standard classification.
func (p *Profile) ClassifyOutcome(status int, oo *fhir.OperationOutcome) (profile.ErrorKind, string) {
	k := generic.ClassifyStandard(status, oo)
	switch status {
	case 409:
		return profile.KindConflict, ""
	case 422:
		if k == profile.KindTooManyResults {
			return k, ""
		}
		return profile.KindInvalid, ""
	}
	return k, ""
}

// Quirks implements profile.Profile.
func (p *Profile) Quirks() []profile.Quirk {
	return []profile.Quirk{
		{Area: "paging", Description: "next links carry pageContext and direction=NEXT; the same id can appear on two pages"},
		{Area: "search", Description: "Patient search needs _id or demographics (no listing): the patient roster comes from a bulk export or another feed"},
		{Area: "search", Description: "clinical searches need a patient; Appointment needs date with patient, practitioner or location; Coverage needs patient"},
		{Area: "search", Description: "_lastUpdated only on Observation, MedicationRequest, NutritionOrder and ServiceRequest, and it moves only on clinically significant updates: reconciliation sweeps catch the rest"},
		{Area: "search", Description: "more than 1000 matches is refused (422)"},
		{Area: "paging", Description: "_count defaults and limits per type: Patient 20, Observation 50 (max 200), DocumentReference 10 (max 100)"},
		{Area: "write", Description: "create answers 201 with an empty body; update needs If-Match, a stale version answers 409; business rules answer 422"},
		{Area: "coding", Description: "proprietary codes under https://fhir.cerner.com/{tenant}/codeSet/{n} with userSelected true"},
		{Area: "identifier", Description: "MRN system urn:oid:2.16.840.1.113883.6.1000, type coded both as codeSet/4 MRN and v2-0203 MR"},
	}
}
