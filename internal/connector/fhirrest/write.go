package fhirrest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/vendors/profile"
)

// This file is the write side of the client: one create (POST), update
// (PUT) or patch (PATCH) per call, with the headers optimistic concurrency
// and idempotency need (If-Match, If-None-Exist, Prefer), and the answer's
// Location and ETag read back. Unlike reads, a write is never retried here:
// whether sending it again is safe depends on what the caller knows (the
// write-back outbox looks for the record first), so every attempt is the
// caller's decision. The one exception is a 401, answered before the server
// did anything: the token is refreshed and the write sent once more.

// WriteRequest is one write.
type WriteRequest struct {
	// Method is POST (create), PUT (update) or PATCH.
	Method       string
	ResourceType string
	ID           string // required for PUT and PATCH, empty for POST
	Body         []byte
	// ContentType defaults to application/fhir+json (PATCH: give
	// application/json-patch+json for a JSON Patch).
	ContentType string
	// IfMatch is sent as If-Match (an ETag such as W/"3"; a bare version
	// "3" is sent as W/"3").
	IfMatch string
	// IfNoneExist is sent as If-None-Exist (a search query without "?",
	// e.g. "identifier=urn:mediflow:intent|01J...") for a conditional create.
	IfNoneExist string
	// Prefer is sent as Prefer (e.g. "return=representation").
	Prefer string
	// Header holds further headers to send (e.g. an idempotency key).
	Header http.Header
}

// WriteResult is the server's answer to a write: any HTTP status. A
// non-2xx answer is not an error (the caller decides what it means);
// Outcome, Kind and VendorCode describe it.
type WriteResult struct {
	Method string
	URL    string // the request URL (no query is ever added; still do not log it)
	Status int
	Header http.Header
	Body   []byte
	// Location, ETag and LastModified are the response headers.
	Location, ETag, LastModified string
	// ID and VersionID name the written record, from Location
	// (…/Type/id[/_history/v]), the ETag and the body's id and
	// meta.versionId, whichever the server gave.
	ID, VersionID string
	// Outcome is the OperationOutcome of the body, if any. Its diagnostics
	// may echo PHI: do not log them.
	Outcome *fhir.OperationOutcome
	// Kind classifies a non-2xx answer (profile kinds; 0 for 2xx) and
	// VendorCode is the vendor's own code from the outcome, if any.
	Kind       ErrorKind
	VendorCode string
	// RetryAfter is the server's Retry-After (capped by MaxRetryAfter); 0
	// when absent.
	RetryAfter time.Duration
	Took       time.Duration
}

// OK reports a 2xx answer.
func (r *WriteResult) OK() bool { return r.Status >= 200 && r.Status < 300 }

// WriteError is a write that got no HTTP answer: the connection failed,
// broke or timed out. The server may or may not have applied the write.
// Its message is PHI-free (scheme, host and path only).
type WriteError struct {
	Method string
	URL    string
	Kind   ErrorKind // KindTimeout, KindNetwork, KindAuth (no token) or KindInvalid (request not built)
	Err    error
	// Sent is false when the request never left (no token, bad request):
	// then the server certainly did not apply it.
	Sent bool
}

func (e *WriteError) Error() string {
	return fmt.Sprintf("fhir: %s %s: %s: %v", e.Method, e.URL, e.Kind, e.Err)
}

// Unwrap returns the cause.
func (e *WriteError) Unwrap() error { return e.Err }

// Write sends one write and returns the server's answer, whatever its
// status. The error is a *WriteError when no answer came, or a plain error
// for a request that is not valid.
func (c *Client) Write(ctx context.Context, w WriteRequest) (*WriteResult, error) {
	switch w.Method {
	case http.MethodPost:
		if w.ID != "" {
			return nil, errors.New("fhirrest: a create (POST) takes no id")
		}
	case http.MethodPut, http.MethodPatch:
		if w.ID == "" || !validID(w.ID) {
			return nil, fmt.Errorf("fhirrest: %s needs a valid resource id", w.Method)
		}
	default:
		return nil, fmt.Errorf("fhirrest: %q is not a write method", w.Method)
	}
	if !validType(w.ResourceType) {
		return nil, fmt.Errorf("fhirrest: %q is not a resource type", w.ResourceType)
	}
	u := c.base + "/" + w.ResourceType
	if w.ID != "" {
		u += "/" + url.PathEscape(w.ID)
	}
	res, tok, werr := c.writeOnce(ctx, u, w)
	if werr == nil && res.Status == http.StatusUnauthorized && c.tokens != nil && ctx.Err() == nil {
		// The server refused the token before doing anything: refresh it and
		// send once more.
		c.tokens.Invalidate(tok)
		res, _, werr = c.writeOnce(ctx, u, w)
	}
	if werr != nil {
		return nil, werr
	}
	return res, nil
}

func (c *Client) writeOnce(ctx context.Context, u string, w WriteRequest) (*WriteResult, string, *WriteError) {
	fail := func(kind ErrorKind, sent bool, err error) *WriteError {
		return &WriteError{Method: w.Method, URL: safeURL(u), Kind: kind, Err: err, Sent: sent}
	}
	var tok string
	if c.tokens != nil {
		t, err := c.tokens.Token(ctx)
		if err != nil {
			e := tokenFailure(err)
			return nil, "", fail(e.Kind, false, e.Err)
		}
		tok = t
	}
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, w.Method, u, bytes.NewReader(w.Body))
	if err != nil {
		return nil, tok, fail(KindInvalid, false, errors.New("cannot build the request"))
	}
	for k, vs := range w.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	ct := w.ContentType
	if ct == "" {
		ct = "application/fhir+json"
	}
	req.Header.Set("Content-Type", ct)
	req.Header["Accept"] = acceptFHIR
	req.Header["User-Agent"] = []string{c.cfg.UserAgent}
	if w.IfMatch != "" {
		req.Header.Set("If-Match", ETagOf(w.IfMatch))
	}
	if w.IfNoneExist != "" {
		req.Header.Set("If-None-Exist", w.IfNoneExist)
	}
	if w.Prefer != "" {
		req.Header.Set("Prefer", w.Prefer)
	}
	if tok != "" {
		req.Header["Authorization"] = []string{"Bearer " + tok}
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		e := transportError(ctx, actx, err)
		return nil, tok, fail(e.Kind, true, e.Err)
	}
	body, err := readBody(resp, c.cfg.MaxBodyBytes)
	resp.Body.Close()
	if err != nil && !errors.Is(err, errTooLarge) {
		// The status line arrived but the body broke off: the server
		// answered, but what it said is unknown; treat it like no answer.
		e := transportError(ctx, actx, err)
		return nil, tok, fail(e.Kind, true, e.Err)
	}
	res := &WriteResult{
		Method: w.Method, URL: u, Status: resp.StatusCode, Header: resp.Header, Body: body,
		Location: resp.Header.Get("Location"), ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified"),
		Took: time.Since(start),
	}
	if looksJSON(body) {
		if h, err := fhir.ParseHeader(body); err == nil && h.ResourceType == w.ResourceType {
			res.ID, res.VersionID = h.ID, h.VersionID
		}
	}
	if id, vid, ok := ParseLocation(res.Location, w.ResourceType); ok {
		if res.ID == "" {
			res.ID = id
		}
		if res.VersionID == "" {
			res.VersionID = vid
		}
	}
	if res.VersionID == "" {
		res.VersionID = VersionOfETag(res.ETag)
	}
	if res.ID == "" && w.Method != http.MethodPost {
		res.ID = w.ID
	}
	if !res.OK() {
		res.Kind = statusKind(resp.StatusCode, false)
		if looksJSON(body) {
			if oo, ok := fhir.ParseOutcome(body); ok {
				res.Outcome = oo
				kind, code := c.profile.ClassifyOutcome(resp.StatusCode, oo)
				res.VendorCode = code
				if kind != profile.KindUnknown && kind != profile.KindEmpty {
					res.Kind = kind
				}
			}
		}
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			if d, ok := ParseRetryAfter(ra, c.cfg.Now()); ok {
				res.RetryAfter = min(d, c.cfg.MaxRetryAfter)
			}
		}
	} else if looksJSON(body) {
		// A 2xx may still carry an OperationOutcome (Prefer:
		// return=OperationOutcome, or a warning).
		if oo, ok := fhir.ParseOutcome(body); ok {
			res.Outcome = oo
		}
	}
	return res, tok, nil
}

// ETagOf returns v as an ETag: a bare version "3" becomes W/"3"; a value
// that already looks like an ETag is kept.
func ETagOf(v string) string {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, "W/") || strings.HasPrefix(v, `"`) {
		return v
	}
	return `W/"` + v + `"`
}

// VersionOfETag returns the version in an ETag (W/"3" → "3"); "" when empty.
func VersionOfETag(etag string) string {
	etag = strings.TrimSpace(etag)
	etag = strings.TrimPrefix(etag, "W/")
	return strings.Trim(etag, `"`)
}

// ParseLocation reads a Location header of a written resource:
// [base/]Type/id[/_history/vid]. ok is false when it names no id of
// resourceType.
func ParseLocation(loc, resourceType string) (id, versionID string, ok bool) {
	if loc == "" {
		return "", "", false
	}
	if u, err := url.Parse(loc); err == nil {
		loc = u.Path
	}
	parts := strings.Split(strings.Trim(loc, "/"), "/")
	for i := len(parts) - 2; i >= 0; i-- {
		if parts[i] != resourceType || !validID(parts[i+1]) {
			continue
		}
		id = parts[i+1]
		if i+3 < len(parts) && parts[i+2] == "_history" {
			versionID = parts[i+3]
		}
		return id, versionID, true
	}
	return "", "", false
}

// validID checks the FHIR id syntax: [A-Za-z0-9\-\.]{1,64}.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		ch := id[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '.') {
			return false
		}
	}
	return true
}
