// Package profile defines what a vendor profile is: the interface every
// vendor folder implements (error vocabulary, paging limits, how to ask for
// "changed since") and the error kinds a FHIR response is classified into.
// It has no vendor knowledge of its own; see internal/vendors for the registry.
package profile

import (
	"net/url"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
)

// ErrorKind classifies the outcome of a FHIR request. The zero value,
// KindUnknown, means "no opinion": a profile returns it when it has nothing
// more specific to say than the HTTP status.
type ErrorKind uint8

// Error kinds. KindEmpty is not an error: the server reported "no results"
// (Epic 4101) and the request is treated as an empty search result.
const (
	KindUnknown        ErrorKind = iota
	KindEmpty                    // not an error: an empty result
	KindAuth                     // 401, or the token could not be obtained
	KindForbidden                // 403, break-the-glass, scope not granted
	KindNotFound                 // 404 / 410 on a read
	KindRateLimited              // 429 or a "throttled" outcome
	KindServer                   // 5xx
	KindTimeout                  // the request took longer than the per-request timeout
	KindNetwork                  // connection refused, reset or dropped mid-body
	KindBadResponse              // malformed JSON, not the expected resource, unfollowed redirect
	KindInvalid                  // 4xx with an OperationOutcome: the request itself is wrong
	KindSearchExpired            // the server dropped the paging session (Epic 4113, 410 on a next link)
	KindConflict                 // 409/412, duplicate on create
	KindTooManyResults           // the search matched more than the server will page through
	KindForeignLink              // a next link points at another origin: refused
)

var kindNames = [...]string{
	KindUnknown:        "unknown",
	KindEmpty:          "empty",
	KindAuth:           "auth",
	KindForbidden:      "forbidden",
	KindNotFound:       "not-found",
	KindRateLimited:    "rate-limited",
	KindServer:         "server-error",
	KindTimeout:        "timeout",
	KindNetwork:        "network",
	KindBadResponse:    "bad-response",
	KindInvalid:        "invalid",
	KindSearchExpired:  "search-expired",
	KindConflict:       "conflict",
	KindTooManyResults: "too-many-results",
	KindForeignLink:    "foreign-link",
}

// String is a short, stable name usable as a metric label.
func (k ErrorKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Retryable reports whether a request that failed this way may succeed when
// simply sent again (after a pause).
func (k ErrorKind) Retryable() bool {
	switch k {
	case KindRateLimited, KindServer, KindTimeout, KindNetwork, KindBadResponse:
		return true
	}
	return false
}

// Quirk is one documented peculiarity of a vendor's data or API, kept as data
// so the mapping layer and the generated docs can show it.
type Quirk struct {
	Area        string // "identifier", "paging", "search", "extension", ...
	Description string
}

// Profile is the engine's knowledge of one EHR vendor. Vendor quirks live in
// implementations of this interface and nowhere else.
type Profile interface {
	// Name is the profile's registry name ("generic", "epic", ...).
	Name() string
	// ClassifyOutcome maps an HTTP status and the OperationOutcome the server
	// sent (oo may be nil) to an error kind and the vendor's own error code
	// ("" when none). It returns KindUnknown to let the HTTP status decide and
	// KindEmpty when the outcome only says "no results".
	ClassifyOutcome(status int, oo *fhir.OperationOutcome) (kind ErrorKind, vendorCode string)
	// PageSize returns the _count to use when none is configured and the
	// largest _count the server accepts for a search of resourceType.
	PageSize(resourceType string) (def, max int)
	// SearchParams builds the parameters of a search for resourceType that
	// returns resources changed at or after since (zero since: everything),
	// count per page. The caller has already subtracted any overlap window.
	SearchParams(resourceType string, since time.Time, count int) url.Values
	// Quirks lists the vendor's known data and API peculiarities.
	Quirks() []Quirk
	// SearchScope says how resources of resourceType can be listed: by one
	// search of the whole type, by one search per patient, or not at all.
	SearchScope(resourceType string) Scope
	// PatientSearchParams builds the parameters of a search for
	// resourceType limited to one patient (for types whose SearchScope is
	// PerPatient), changed at or after since (zero: everything), count per
	// page. now is the current time, for vendors that require a date window.
	PatientSearchParams(resourceType, patientID string, since, now time.Time, count int) url.Values
	// BulkSince reports whether the vendor's Bulk Data export honours
	// _since (an incremental export); when false every export is full.
	BulkSince() bool
}

// Scope is how a vendor lets a resource type be listed.
type Scope uint8

// Search scopes.
const (
	// TypeLevel: one search returns every resource of the type.
	TypeLevel Scope = iota
	// PerPatient: searches of the type need a patient; the sync searches
	// once per patient it knows (see package sync).
	PerPatient
	// NotSearchable: the vendor offers no search that lists the type
	// (only reads by id, or another API); the sync skips it.
	NotSearchable
)

// String is a short, stable name.
func (s Scope) String() string {
	switch s {
	case TypeLevel:
		return "type"
	case PerPatient:
		return "per-patient"
	case NotSearchable:
		return "not-searchable"
	}
	return "unknown"
}

// ClampPageSize picks the page size to use: want if positive else def, never
// above max (when max > 0) and never below 1.
func ClampPageSize(want, def, max int) int {
	n := want
	if n <= 0 {
		n = def
	}
	if max > 0 && n > max {
		n = max
	}
	if n < 1 {
		n = 1
	}
	return n
}
