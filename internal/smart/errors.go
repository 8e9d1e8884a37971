package smart

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// MaxClockSkew is how far the token server's clock may differ from ours
// before we say so and correct our assertion times.
const MaxClockSkew = 60 * time.Second

// TokenError is a refused token request: an OAuth error answer from the
// token endpoint, or an unexpected HTTP status.
type TokenError struct {
	Status      int    // HTTP status of the answer
	Code        string // OAuth error code: invalid_client, invalid_scope, invalid_grant, ...; empty if none was given
	Description string // the server's error_description, shortened
	// Skew is the token server's clock minus ours, measured from its Date
	// header (zero when unknown).
	Skew time.Duration
	// RetryAfter is the server's Retry-After, if it sent one.
	RetryAfter time.Duration
}

// Retryable reports whether trying again later may succeed (rate limiting
// or a server-side failure) rather than needing a configuration change.
func (e *TokenError) Retryable() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500 || e.Code == "temporarily_unavailable"
}

// RetryDelay is the server's Retry-After (zero when it sent none).
func (e *TokenError) RetryDelay() time.Duration { return e.RetryAfter }

// SkewDetected reports whether the server's clock differs from ours by more
// than MaxClockSkew.
func (e *TokenError) SkewDetected() bool { return e.Skew > MaxClockSkew || e.Skew < -MaxClockSkew }

func (e *TokenError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "token request refused (HTTP %d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Description != "" {
		b.WriteString(": " + e.Description)
	}
	b.WriteString("): ")
	b.WriteString(e.hint())
	if e.SkewDetected() {
		dir, d := "ahead of", e.Skew
		if d < 0 {
			dir, d = "behind", -d
		}
		fmt.Fprintf(&b, "; the token server's clock is %s %s ours (more than %s): fix the clock (NTP) on this host or ask the EHR to fix theirs",
			d.Round(time.Second), dir, MaxClockSkew)
	}
	return b.String()
}

func (e *TokenError) hint() string {
	switch e.Code {
	case "invalid_client":
		return "the EHR did not accept our signed assertion: check the client id is registered, that the EHR has our public JWKS (mediflow keys new / mediflow keys jwks), the kid matches, and clocks"
	case "invalid_scope":
		return "the EHR refused the requested scopes: check the scopes registered for this client and whether the EHR wants v1 (system/Patient.read) or v2 (system/Patient.rs) syntax"
	case "invalid_grant":
		return "the EHR rejected the assertion grant: check the token URL (the assertion's aud), the assertion lifetime and clocks"
	case "unauthorized_client":
		return "this client may not use client_credentials: ask the EHR administrator to enable backend (system) access for it (on Epic, map the client to a background user)"
	case "unsupported_grant_type":
		return "the endpoint does not offer client_credentials: check the token URL and that the EHR supports SMART backend services"
	case "invalid_request":
		return "the EHR found the token request malformed: check the token URL and that the EHR accepts private_key_jwt client authentication"
	}
	switch {
	case e.Status == http.StatusTooManyRequests:
		if e.RetryAfter > 0 {
			return fmt.Sprintf("token requests are rate limited; retry after %s", e.RetryAfter)
		}
		return "token requests are rate limited; retry later"
	case e.Status >= 500 || e.Code == "temporarily_unavailable":
		return "the token server is failing; retry later"
	case e.Status == http.StatusNotFound || e.Status == http.StatusMethodNotAllowed:
		return "nothing accepts token requests at this URL: check the token URL (or let mediflow discover it)"
	}
	return "check the token URL and the client registration"
}
