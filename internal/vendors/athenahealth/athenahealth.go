// Package athenahealth is the engine-side vendor profile for athenahealth's
// FHIR R4 API: one global base URL where every search names its practice
// (ah-practice), _lastUpdated that takes a date only, most types searchable
// only per patient, and cursor paging behind ordinary next links. Facts come
// from ../shared/reference/ehr-vendors.md §3 and athenahealth's published
// CapabilityStatement; choices marked "unconfirmed" are ours.
package athenahealth

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/vendors/generic"
	"github.com/mediflow/mediflow/internal/vendors/profile"
)

// Name is the registry name of this profile.
const Name = "athenahealth"

// PracticeParam is athenahealth's search parameter that selects the practice.
const PracticeParam = "ah-practice"

// PracticeRef returns the ah-practice value for a practice id:
// "Organization/a-1.Practice-{id}".
func PracticeRef(practiceID string) string { return "Organization/a-1.Practice-" + practiceID }

// Page sizes: athenahealth documents no limits (unconfirmed); 100 per page
// by default, 1000 at most, like the generic profile.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// typeLevel are the types athenahealth lets a search list without a patient
// (its CapabilityStatement gives them no patient parameter).
var typeLevel = map[string]bool{"Patient": true, "Practitioner": true, "Location": true, "Organization": true}

// notSearchable are the types athenahealth's FHIR API cannot list: Appointment
// is searched by _id or named queries only (appointments come through the
// proprietary v1 API), Medication and Questionnaire by _id or code,
// Provenance by target, and Schedule and Slot are not offered at all.
var notSearchable = map[string]bool{"Appointment": true, "Schedule": true, "Slot": true,
	"Medication": true, "Provenance": true, "Questionnaire": true}

// noLastUpdated are listable types whose search has no _lastUpdated
// parameter: each run reads them in full (content hashes make that cheap).
var noLastUpdated = map[string]bool{"Practitioner": true, "Location": true, "Organization": true}

// Profile implements profile.Profile for athenahealth.
type Profile struct {
	*generic.Profile
	practiceID string
}

// New returns the athenahealth profile for one practice. practiceID is the
// numeric athenahealth practice id ("195900" in the preview sandbox); with
// an empty one searches carry no ah-practice and athenahealth refuses them.
func New(practiceID string) *Profile {
	return &Profile{Profile: generic.New(generic.Options{DefaultPageSize: defaultPageSize, MaxPageSize: maxPageSize}), practiceID: practiceID}
}

// Name implements profile.Profile.
func (p *Profile) Name() string { return Name }

// PracticeID returns the practice this profile searches.
func (p *Profile) PracticeID() string { return p.practiceID }

// SearchScope implements profile.Profile.
func (p *Profile) SearchScope(resourceType string) profile.Scope {
	switch {
	case notSearchable[resourceType]:
		return profile.NotSearchable
	case typeLevel[resourceType]:
		return profile.TypeLevel
	default: // "most searches need patient or _id"
		return profile.PerPatient
	}
}

// SearchParams implements profile.Profile: ah-practice, _count, and for an
// incremental search _lastUpdated=ge{date}. athenahealth accepts a date
// only; the date asked for is one day before since's UTC date, so the
// search covers since whatever the practice's time zone (UTC-12 to UTC+14)
// and however the server reads a bare date. The sync's content hashes make
// the re-read resources count as unchanged.
func (p *Profile) SearchParams(resourceType string, since time.Time, count int) url.Values {
	v := make(url.Values, 3)
	if p.practiceID != "" {
		v.Set(PracticeParam, PracticeRef(p.practiceID))
	}
	if !since.IsZero() && !noLastUpdated[resourceType] {
		v.Set("_lastUpdated", "ge"+SinceDate(since))
	}
	if count > 0 {
		v.Set("_count", strconv.Itoa(count))
	}
	return v
}

// PatientSearchParams implements profile.Profile: SearchParams plus
// patient={id}.
func (p *Profile) PatientSearchParams(resourceType, patientID string, since, _ time.Time, count int) url.Values {
	v := p.SearchParams(resourceType, since, count)
	v.Set("patient", patientID)
	return v
}

// SinceDate is the date-only lower bound for a search of changes at or
// after since: the UTC date of since minus one day (YYYY-MM-DD).
func SinceDate(since time.Time) string {
	return since.UTC().AddDate(0, 0, -1).Format(time.DateOnly)
}

// ClassifyOutcome implements profile.Profile. athenahealth publishes no
// OperationOutcome vocabulary of its own: the standard classification.
func (p *Profile) ClassifyOutcome(status int, oo *fhir.OperationOutcome) (profile.ErrorKind, string) {
	return generic.ClassifyStandard(status, oo), ""
}

// Quirks implements profile.Profile.
func (p *Profile) Quirks() []profile.Quirk {
	return []profile.Quirk{
		{Area: "search", Description: "every search names its practice: ah-practice=Organization/a-1.Practice-{id}"},
		{Area: "search", Description: "_lastUpdated takes a date only (no time) and only beside other parameters: incremental searches re-read from the day before the watermark"},
		{Area: "search", Description: "most types are searchable only with patient or _id: they are synced one search per known patient"},
		{Area: "search", Description: "Appointment is searchable by _id or named query only; Schedule and Slot are not offered (appointments live in the proprietary v1 API)"},
		{Area: "search", Description: "Practitioner, Location and Organization searches have no _lastUpdated: read in full each run"},
		{Area: "paging", Description: "paging by _count and an opaque cursor parameter in the next link"},
		{Area: "identifier", Description: "patient ids look like a-{practice}.E-{chart id}"},
		{Area: "write", Description: "FHIR is read-only; writes go through the proprietary v1 API"},
	}
}

// SubscriptionPerNotificationEvents: athenahealth numbers a notification's
// events from 1 within each notification (eventsSinceSubscriptionStart
// too), a deviation from the backport IG; the subscription client must
// not read those numbers as gaps.
func (p *Profile) SubscriptionPerNotificationEvents() bool { return true }

// SubscriptionFilter is the filter every athenahealth subscription needs:
// one practice, as ah-practice=Organization/a-1.Practice-{id} ("" when the
// profile has no practice id).
func (p *Profile) SubscriptionFilter() (param, value string) {
	if p.practiceID == "" {
		return "", ""
	}
	return PracticeParam, PracticeRef(p.practiceID)
}

// V1Base derives athenahealth's v1 API root from its FHIR base: the
// path up to its last "/fhir" segment, then "/v1"
// (https://api.platform.athenahealth.com/fhir/r4 →
// https://api.platform.athenahealth.com/v1; the simulator's
// {root}/{tenant}/fhir/r4 → {root}/{tenant}/v1).
func V1Base(fhirBase string) (string, bool) {
	u, err := url.Parse(fhirBase)
	if err != nil || u.Host == "" {
		return "", false
	}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	for i := len(segs) - 1; i >= 0; i-- {
		if strings.EqualFold(segs[i], "fhir") {
			u.Path = "/" + strings.Join(append(segs[:i:i], "v1"), "/")
			u.RawQuery, u.Fragment, u.RawPath = "", "", ""
			return u.String(), true
		}
	}
	return "", false
}
