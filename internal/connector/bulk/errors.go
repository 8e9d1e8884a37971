package bulk

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
)

// Sentinel causes, matched with errors.Is.
var (
	// ErrBusy: the kick-off was refused with 429, typically because the
	// server runs one export per client at a time. The *Error carries the
	// server's Retry-After: wait that long and kick off again.
	ErrBusy = errors.New("the server is busy with another export (429)")
	// ErrExpired: the status URL or a file answered 404 or 410: the job or
	// its files are gone (expired or deleted). Start a new export.
	ErrExpired = errors.New("the export job or its files are gone (expired or deleted): start a new export")
	// ErrJobFailed: the status request answered with a final error and an
	// OperationOutcome: the server gave up on the export.
	ErrJobFailed = errors.New("the export job failed on the server")
	// ErrLineTooLong: an NDJSON line exceeds Config.MaxLineBytes.
	ErrLineTooLong = errors.New("line exceeds the maximum line size")
	// ErrBadLine: an NDJSON line is not the JSON it should be.
	ErrBadLine = errors.New("malformed line")
)

// Error is a failed bulk-data request. Its message is PHI-free: the URL has
// no query and the OperationOutcome is summarised by codes; Outcome is kept
// whole for programs (Diagnostics returns the server's text: show it to an
// operator, do not log it).
type Error struct {
	Op         string // "kick-off", "status", "download", "cancel"
	Method     string
	URL        string // scheme, host and path only
	Status     int    // HTTP status; 0 when no response arrived
	Outcome    *fhir.OperationOutcome
	RetryAfter time.Duration // what the server asked for, 0 when absent
	Attempts   int
	Err        error // the cause: a sentinel above, a network error, ...

	transient bool // a download attempt that may be retried
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("bulk ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	if e.Method != "" {
		b.WriteString(e.Method)
		b.WriteByte(' ')
	}
	b.WriteString(e.URL)
	if e.Status != 0 {
		b.WriteString(": HTTP ")
		b.WriteString(strconv.Itoa(e.Status))
	}
	if e.Outcome != nil && len(e.Outcome.Issue) > 0 {
		b.WriteString(" [")
		b.WriteString(e.Outcome.Summary())
		b.WriteByte(']')
	}
	if e.RetryAfter > 0 {
		b.WriteString(" (retry after ")
		b.WriteString(e.RetryAfter.String())
		b.WriteByte(')')
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

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Diagnostics returns the OperationOutcome's diagnostics texts (may echo
// request data or, rarely, patient data: for an operator, not for logs).
func (e *Error) Diagnostics() []string {
	if e.Outcome == nil {
		return nil
	}
	var out []string
	for _, is := range e.Outcome.Issue {
		if is.Diagnostics != "" {
			out = append(out, is.Diagnostics)
		} else if is.Details != nil && is.Details.Text != "" {
			out = append(out, is.Details.Text)
		}
	}
	return out
}

// LineError is a line of a file that could not be read.
type LineError struct {
	File string // the file's URL without its query
	Line int    // 1-based
	Err  error  // ErrLineTooLong or ErrBadLine (wrapped with the reason)
}

// Error implements error.
func (e *LineError) Error() string {
	return "bulk: " + e.File + " line " + strconv.Itoa(e.Line) + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *LineError) Unwrap() error { return e.Err }

// transientCodes are the IssueType codes that say "try again later".
var transientCodes = map[string]bool{
	"transient": true, "lock-error": true, "no-store": true, "exception": true,
	"timeout": true, "incomplete": true, "throttled": true,
}

// outcomeTransient reports whether every error issue of oo is transient.
func outcomeTransient(oo *fhir.OperationOutcome) bool {
	seen := false
	for _, is := range oo.Issue {
		if is.Severity != "error" && is.Severity != "fatal" {
			continue
		}
		seen = true
		if !transientCodes[is.Code] {
			return false
		}
	}
	return seen
}

// safeURL strips the query and fragment of u.
func safeURL(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		return u[:i]
	}
	return u
}

// printable keeps a header value for display: printable ASCII, at most n bytes.
func printable(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; i++ {
		if s[i] >= 0x20 && s[i] < 0x7f {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
