package fhirrest

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/vendors/profile"
)

// ErrorKind classifies a failed request; it is the vendor profiles' kind.
type ErrorKind = profile.ErrorKind

// Error kinds (see profile.ErrorKind for their meaning).
const (
	KindAuth           = profile.KindAuth
	KindForbidden      = profile.KindForbidden
	KindNotFound       = profile.KindNotFound
	KindRateLimited    = profile.KindRateLimited
	KindServer         = profile.KindServer
	KindTimeout        = profile.KindTimeout
	KindNetwork        = profile.KindNetwork
	KindBadResponse    = profile.KindBadResponse
	KindInvalid        = profile.KindInvalid
	KindSearchExpired  = profile.KindSearchExpired
	KindConflict       = profile.KindConflict
	KindTooManyResults = profile.KindTooManyResults
	KindForeignLink    = profile.KindForeignLink
)

// Error is a failed FHIR request. Its message is PHI-free: the URL is
// stripped of its query (search parameters carry names and birth dates),
// the OperationOutcome is summarized by codes only (diagnostics can echo
// patient data) and wrapped errors never carry the request URL. Outcome
// itself is kept whole for programs; do not log its diagnostics.
type Error struct {
	Kind       ErrorKind
	Status     int    // HTTP status, 0 when no response arrived
	URL        string // scheme, host and path only
	Outcome    *fhir.OperationOutcome
	VendorCode string        // the vendor's own error code, e.g. Epic "4113"
	RetryAfter time.Duration // what the server asked for (capped), 0 when absent
	Attempts   int           // how many times the request was sent
	Err        error         // the underlying cause, PHI-free

	retryAfterSet bool // the server sent a usable Retry-After (possibly 0)
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.Grow(96)
	b.WriteString("fhir: GET ")
	b.WriteString(e.URL)
	b.WriteString(": ")
	b.WriteString(e.Kind.String())
	if e.Status != 0 {
		b.WriteString(" (HTTP ")
		b.WriteString(strconv.Itoa(e.Status))
		b.WriteByte(')')
	}
	if e.VendorCode != "" {
		b.WriteString(" vendor code ")
		b.WriteString(e.VendorCode)
	}
	if e.Outcome != nil && len(e.Outcome.Issue) > 0 {
		b.WriteString(" [")
		b.WriteString(e.Outcome.Summary())
		b.WriteByte(']')
	}
	if e.Attempts > 1 {
		b.WriteString(" after ")
		b.WriteString(strconv.Itoa(e.Attempts))
		b.WriteString(" attempts")
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of a *Error anywhere in err's chain, or
// profile.KindUnknown.
func KindOf(err error) ErrorKind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return profile.KindUnknown
}

// safeURL strips the query and fragment of u: what is left (scheme, host,
// path) may appear in errors and logs.
func safeURL(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		return u[:i]
	}
	return u
}

// statusKind is the kind an HTTP status implies on its own.
func statusKind(status int, paging bool) ErrorKind {
	switch {
	case status == 401:
		return KindAuth
	case status == 403:
		return KindForbidden
	case status == 404, status == 410:
		if paging {
			// The paging session the next link named no longer exists.
			return KindSearchExpired
		}
		return KindNotFound
	case status == 408:
		return KindTimeout
	case status == 409, status == 412:
		return KindConflict
	case status == 429:
		return KindRateLimited
	case status == 501, status == 505:
		return KindInvalid // not implemented: sending again will not help
	case status >= 500:
		return KindServer
	case status >= 400:
		return KindInvalid
	default: // 1xx, unfollowed 3xx
		return KindBadResponse
	}
}
