// Package generic is the vendor profile for a standards-following FHIR R4
// server: HTTP status plus the OperationOutcome issue type decide the error
// kind, "changed since" is _lastUpdated=ge, and paging is plain next links.
// Other vendor profiles embed it and override only what differs.
package generic

import (
	"net/url"
	"strconv"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/vendors/profile"
)

// Name is the registry name of this profile.
const Name = "generic"

// Options tune the generic profile for a particular server.
type Options struct {
	// SortByLastUpdated adds _sort=_lastUpdated to incremental searches.
	// Off by default: the sync does not need the order to be correct, and a
	// server that rejects unknown parameters would fail every search.
	SortByLastUpdated bool
	// DefaultPageSize and MaxPageSize (0: 100 and 1000).
	DefaultPageSize, MaxPageSize int
}

// Profile implements profile.Profile for standard FHIR R4 servers.
type Profile struct {
	opts Options
}

// New returns a generic profile with the given options.
func New(opts Options) *Profile {
	if opts.DefaultPageSize <= 0 {
		opts.DefaultPageSize = 100
	}
	if opts.MaxPageSize <= 0 {
		opts.MaxPageSize = 1000
	}
	return &Profile{opts: opts}
}

// Name implements profile.Profile.
func (p *Profile) Name() string { return Name }

// PageSize implements profile.Profile: the same limits for every type.
func (p *Profile) PageSize(string) (def, max int) {
	return p.opts.DefaultPageSize, p.opts.MaxPageSize
}

// SearchParams implements profile.Profile with _lastUpdated=ge{since} and _count.
func (p *Profile) SearchParams(_ string, since time.Time, count int) url.Values {
	v := make(url.Values, 3)
	if !since.IsZero() {
		v.Set("_lastUpdated", "ge"+fhir.FormatInstant(since))
	}
	if count > 0 {
		v.Set("_count", strconv.Itoa(count))
	}
	if p.opts.SortByLastUpdated {
		v.Set("_sort", "_lastUpdated")
	}
	return v
}

// SearchScope implements profile.Profile: a standard server lists every
// type with one search.
func (p *Profile) SearchScope(string) profile.Scope { return profile.TypeLevel }

// PatientSearchParams implements profile.Profile: the type-level parameters
// plus patient={id}.
func (p *Profile) PatientSearchParams(resourceType, patientID string, since, _ time.Time, count int) url.Values {
	v := p.SearchParams(resourceType, since, count)
	v.Set("patient", patientID)
	return v
}

// Quirks implements profile.Profile: a standard server has none.
func (p *Profile) Quirks() []profile.Quirk { return nil }

// BulkSince: a standard server honours _since on $export.
func (p *Profile) BulkSince() bool { return true }

// ClassifyOutcome implements profile.Profile using only FHIR's own
// vocabulary (the IssueType code set).
func (p *Profile) ClassifyOutcome(status int, oo *fhir.OperationOutcome) (profile.ErrorKind, string) {
	return ClassifyStandard(status, oo), ""
}

// ClassifyStandard is the standard classification other profiles fall back
// to. Statuses that already say everything (401, 403, 429, 5xx) are left to
// the caller; for others the most severe issue's type decides. A 2xx outcome
// without errors or fatal issues means "no results".
func ClassifyStandard(status int, oo *fhir.OperationOutcome) profile.ErrorKind {
	if oo == nil {
		return profile.KindUnknown
	}
	switch {
	case status == 401, status == 403, status == 429, status >= 500:
		return profile.KindUnknown
	}
	is, ok := MostSevere(oo)
	if !ok {
		if status >= 200 && status < 300 {
			return profile.KindEmpty
		}
		return profile.KindUnknown
	}
	return IssueKind(is.Code)
}

// MostSevere returns the first fatal issue, else the first error issue; ok is
// false when the outcome holds only warnings and information.
func MostSevere(oo *fhir.OperationOutcome) (fhir.OutcomeIssue, bool) {
	var found *fhir.OutcomeIssue
	for i := range oo.Issue {
		switch oo.Issue[i].Severity {
		case "fatal":
			return oo.Issue[i], true
		case "error":
			if found == nil {
				found = &oo.Issue[i]
			}
		}
	}
	if found == nil {
		return fhir.OutcomeIssue{}, false
	}
	return *found, true
}

// IssueKind maps a FHIR IssueType code to an error kind.
func IssueKind(code string) profile.ErrorKind {
	switch code {
	case "throttled":
		return profile.KindRateLimited
	case "too-costly":
		return profile.KindTooManyResults
	case "login", "expired", "unknown":
		return profile.KindAuth
	case "security", "forbidden", "suppressed":
		return profile.KindForbidden
	case "not-found", "deleted":
		return profile.KindNotFound
	case "conflict", "duplicate", "multiple-matches":
		return profile.KindConflict
	case "timeout":
		return profile.KindTimeout
	case "transient", "lock-error", "no-store", "exception":
		return profile.KindServer
	case "":
		return profile.KindUnknown
	default: // invalid, structure, required, value, invariant, processing, not-supported, ...
		return profile.KindInvalid
	}
}
