// Package fhirrest is the FHIR R4 REST client the sync uses to read an EHR:
// capability, read, search and paging through next links, with per-request
// timeouts, retries (Retry-After, exponential backoff with full jitter), one
// token refresh on 401, and OperationOutcomes turned into typed, PHI-free
// errors through the connection's vendor profile. Response bodies are kept
// byte-exact so they can be stored raw.
package fhirrest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/vendors"
	"github.com/mediflow/mediflow/internal/vendors/generic"
	"github.com/mediflow/mediflow/internal/vendors/profile"
)

// TokenSource supplies bearer tokens (internal/smart implements it).
// Invalidate drops a token the server refused so the next Token call fetches
// a fresh one.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
	Invalidate(token string)
}

// Config configures a Client. Zero values pick the documented defaults.
type Config struct {
	// BaseURL is the FHIR base, e.g. https://ehr.example/fhir/R4 (required).
	BaseURL string
	// HTTPClient sends the requests (default: a client with its own transport).
	HTTPClient *http.Client
	// Tokens supplies bearer tokens; nil sends no Authorization header.
	Tokens TokenSource
	// Profile is the vendor profile (default: generic).
	Profile vendors.Profile
	// Timeout bounds one attempt, body included (default 60s).
	Timeout time.Duration
	// MaxRetries is how many times a retryable failure is retried
	// (default 4; negative: never retry).
	MaxRetries int
	// BaseBackoff and MaxBackoff bound the exponential backoff (defaults
	// 250ms and 15s). The wait before retry n (0-based) is a uniformly random
	// duration in [0, min(MaxBackoff, BaseBackoff·2ⁿ)) ("full jitter").
	BaseBackoff, MaxBackoff time.Duration
	// MaxRetryAfter caps how long a server's Retry-After is honoured
	// (default 2m).
	MaxRetryAfter time.Duration
	// MaxBodyBytes bounds a response body (default 256 MiB).
	MaxBodyBytes int64
	// UserAgent is sent with every request (default "mediflow").
	UserAgent string
	// Rand returns a uniform float in [0,1) for jitter (default math/rand/v2).
	Rand func() float64
	// Sleep waits d or until ctx is done (default: a timer). Tests replace it.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock used for Retry-After dates and FetchedAt (default time.Now).
	Now func() time.Time
	// Logger receives retry notices (default: discarded). Nothing logged holds PHI.
	Logger *slog.Logger
}

// Client is a FHIR R4 REST client for one server. It is safe for concurrent use.
type Client struct {
	base    string // without trailing slash
	origin  string // scheme://host[:port], lower case, default port removed
	hc      *http.Client
	tokens  TokenSource
	profile vendors.Profile
	cfg     Config
}

// Response is one successful response, its body byte-exact.
type Response struct {
	URL       string // the full request URL (may hold PHI in its query: never log it)
	Status    int
	Header    http.Header
	Body      []byte
	FetchedAt time.Time

	empty bool // the server answered with a "no results" outcome
}

// Page is one page of a search: the response, its Bundle (entries left as
// raw JSON) and the absolute URL of the next page ("" on the last).
type Page struct {
	Response
	Bundle *fhir.Bundle
	Next   string
}

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		return nil, errors.New("fhirrest: BaseURL is required")
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("fhirrest: BaseURL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("fhirrest: BaseURL %q must be an absolute http(s) URL", safeURL(cfg.BaseURL))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("fhirrest: BaseURL %q must not have a query or fragment", safeURL(cfg.BaseURL))
	}
	if cfg.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 8
		cfg.HTTPClient = &http.Client{Transport: tr}
	}
	if cfg.Profile == nil {
		cfg.Profile = generic.New(generic.Options{})
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 4
	} else if cfg.MaxRetries < 0 {
		cfg.MaxRetries = 0
	}
	if cfg.BaseBackoff <= 0 {
		cfg.BaseBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 15 * time.Second
	}
	if cfg.MaxBackoff < cfg.BaseBackoff {
		cfg.MaxBackoff = cfg.BaseBackoff
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = 2 * time.Minute
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 256 << 20
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "mediflow"
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleepCtx
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{
		base:    strings.TrimRight(cfg.BaseURL, "/"),
		origin:  OriginOf(u),
		hc:      cfg.HTTPClient,
		tokens:  cfg.Tokens,
		profile: cfg.Profile,
		cfg:     cfg,
	}, nil
}

// BaseURL returns the server's base URL (no trailing slash).
func (c *Client) BaseURL() string { return c.base }

// Profile returns the vendor profile the client classifies errors with.
func (c *Client) Profile() vendors.Profile { return c.profile }

// Capabilities fetches the server's CapabilityStatement (GET [base]/metadata).
func (c *Client) Capabilities(ctx context.Context) (*Response, error) {
	res, err := c.do(ctx, c.base+"/metadata", opRead, func(r *Response) *Error {
		if r.empty {
			return &Error{Kind: KindBadResponse, Err: errors.New("no CapabilityStatement in the response")}
		}
		return expectType(r.Body, "CapabilityStatement")
	})
	return res, err
}

// Read fetches one resource (GET [base]/type/id).
func (c *Client) Read(ctx context.Context, resourceType, id string) (*Response, error) {
	if !validType(resourceType) {
		return nil, fmt.Errorf("fhirrest: %q is not a resource type", resourceType)
	}
	if id == "" {
		return nil, errors.New("fhirrest: read needs an id")
	}
	res, err := c.do(ctx, c.base+"/"+resourceType+"/"+url.PathEscape(id), opRead, func(r *Response) *Error {
		if r.empty {
			return &Error{Kind: KindNotFound}
		}
		return expectType(r.Body, resourceType)
	})
	return res, err
}

// Search runs a type-level search (GET [base]/type?params) and returns its first page.
func (c *Client) Search(ctx context.Context, resourceType string, params url.Values) (*Page, error) {
	if !validType(resourceType) {
		return nil, fmt.Errorf("fhirrest: %q is not a resource type", resourceType)
	}
	u := c.base + "/" + resourceType
	if q := params.Encode(); q != "" {
		u += "?" + q
	}
	return c.page(ctx, u, opSearch)
}

// Next follows a next link. The link must have the same origin (scheme, host
// and port) as BaseURL: the bearer token is never sent anywhere else.
// A relative link is resolved against BaseURL.
func (c *Client) Next(ctx context.Context, nextURL string) (*Page, error) {
	abs, err := c.resolve(nextURL)
	if err != nil {
		return nil, err
	}
	return c.page(ctx, abs, opNext)
}

// SameOrigin reports whether link (absolute or relative) may be followed by this client.
func (c *Client) SameOrigin(link string) bool {
	_, err := c.resolve(link)
	return err == nil
}

func (c *Client) resolve(link string) (string, error) {
	u, err := url.Parse(link)
	if err != nil || link == "" {
		return "", &Error{Kind: KindForeignLink, URL: safeURL(link), Err: errors.New("next link is not a URL")}
	}
	if !u.IsAbs() {
		base, _ := url.Parse(c.base + "/")
		u = base.ResolveReference(u)
		link = u.String()
	}
	if OriginOf(u) != c.origin {
		return "", &Error{Kind: KindForeignLink, URL: safeURL(link), Err: errors.New("next link points outside the server's origin: refused")}
	}
	return link, nil
}

func (c *Client) page(ctx context.Context, u string, op opKind) (*Page, error) {
	var b *fhir.Bundle
	res, err := c.do(ctx, u, op, func(r *Response) *Error {
		var e *Error
		b, e = c.parseBundle(r)
		return e
	})
	if err != nil {
		return nil, err
	}
	p := &Page{Response: *res, Bundle: b}
	if next := b.NextLink(); next != "" {
		if nu, perr := url.Parse(next); perr == nil && !nu.IsAbs() {
			base, _ := url.Parse(c.base + "/")
			next = base.ResolveReference(nu).String()
		}
		p.Next = next
	}
	return p, nil
}

// parseBundle checks a search response: a searchset Bundle, or an outcome
// that only says "no results". OperationOutcome entries reporting errors
// are classified like an error response.
func (c *Client) parseBundle(r *Response) (*fhir.Bundle, *Error) {
	if r.empty {
		return &fhir.Bundle{ResourceType: "Bundle", Type: "searchset"}, nil
	}
	b, err := decodeBundle(r.Body)
	if err != nil {
		return nil, &Error{Kind: KindBadResponse, Err: err}
	}
	switch b.ResourceType {
	case "Bundle":
	case "OperationOutcome":
		oo, ok := fhir.ParseOutcome(r.Body)
		if !ok {
			return nil, &Error{Kind: KindBadResponse, Err: errors.New("malformed OperationOutcome")}
		}
		kind, code := c.profile.ClassifyOutcome(r.Status, oo)
		if kind == profile.KindEmpty || (kind == profile.KindUnknown && !oo.HasErrors()) {
			return &fhir.Bundle{ResourceType: "Bundle", Type: "searchset"}, nil
		}
		if kind == profile.KindUnknown {
			kind = KindInvalid
		}
		return nil, &Error{Kind: kind, Status: r.Status, Outcome: oo, VendorCode: code}
	default:
		return nil, &Error{Kind: KindBadResponse, Err: fmt.Errorf("response is a %s, not a Bundle", safeToken(b.ResourceType))}
	}
	for i := range b.Entry {
		e := &b.Entry[i]
		if e.Search == nil || e.Search.Mode != "outcome" {
			continue
		}
		oo, ok := fhir.ParseOutcome(e.Resource)
		if !ok || !oo.HasErrors() {
			continue
		}
		kind, code := c.profile.ClassifyOutcome(r.Status, oo)
		if kind == profile.KindEmpty || kind == profile.KindUnknown {
			continue
		}
		return nil, &Error{Kind: kind, Status: r.Status, Outcome: oo, VendorCode: code}
	}
	return b, nil
}

type opKind uint8

const (
	opRead opKind = iota
	opSearch
	opNext
)

// do sends GET u with retries. check validates a 2xx body; a failed check
// counts like a failed request (retried when its kind is retryable).
func (c *Client) do(ctx context.Context, u string, op opKind, check func(*Response) *Error) (*Response, error) {
	authRetried := false
	attempts := 0
	for retry := 0; ; {
		attempts++
		res, tok, e := c.once(ctx, u, op)
		if e == nil && check != nil {
			if e = check(res); e != nil {
				e.Status = res.Status
			}
		}
		if e == nil {
			return res, nil
		}
		e.URL = safeURL(u)
		e.Attempts = attempts
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("fhirrest: GET %s: %w", e.URL, err)
		}
		if e.Kind == KindAuth && e.Status == http.StatusUnauthorized && c.tokens != nil && !authRetried {
			authRetried = true
			c.tokens.Invalidate(tok)
			continue
		}
		if !e.Kind.Retryable() || retry >= c.cfg.MaxRetries {
			return nil, e
		}
		wait := c.backoff(retry)
		if e.retryAfterSet {
			wait = e.RetryAfter
		}
		c.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "fhir request failed, retrying",
			slog.String("url", e.URL), slog.String("kind", e.Kind.String()), slog.Int("status", e.Status),
			slog.Int("attempt", attempts), slog.Duration("wait", wait))
		if err := c.cfg.Sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("fhirrest: GET %s: waiting to retry: %w", e.URL, err)
		}
		retry++
	}
}

// backoff is the full-jitter wait before retry n (0-based).
func (c *Client) backoff(n int) time.Duration {
	ceil := c.cfg.BaseBackoff
	for i := 0; i < n && ceil < c.cfg.MaxBackoff; i++ {
		ceil *= 2
	}
	if ceil > c.cfg.MaxBackoff {
		ceil = c.cfg.MaxBackoff
	}
	f := c.cfg.Rand()
	if f < 0 || f >= 1 {
		f = 0
	}
	return time.Duration(f * float64(ceil))
}

// once sends one attempt. It returns the token it used (for Invalidate).
func (c *Client) once(ctx context.Context, u string, op opKind) (*Response, string, *Error) {
	var tok string
	if c.tokens != nil {
		t, err := c.tokens.Token(ctx)
		if err != nil {
			return nil, "", tokenFailure(err)
		}
		tok = t
	}
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u, nil)
	if err != nil {
		return nil, tok, &Error{Kind: KindInvalid, Err: errors.New("cannot build the request")}
	}
	req.Header["Accept"] = acceptFHIR
	req.Header["User-Agent"] = []string{c.cfg.UserAgent}
	if tok != "" {
		req.Header["Authorization"] = []string{"Bearer " + tok}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, tok, transportError(ctx, actx, err)
	}
	body, err := readBody(resp, c.cfg.MaxBodyBytes)
	resp.Body.Close()
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, tok, &Error{Kind: KindInvalid, Status: resp.StatusCode, Err: err}
		}
		return nil, tok, transportError(ctx, actx, err)
	}
	res := &Response{URL: u, Status: resp.StatusCode, Header: resp.Header, Body: body, FetchedAt: c.cfg.Now()}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return res, tok, nil
	}
	e := &Error{Kind: statusKind(resp.StatusCode, op == opNext), Status: resp.StatusCode}
	if looksJSON(body) {
		if oo, ok := fhir.ParseOutcome(body); ok {
			e.Outcome = oo
			kind, code := c.profile.ClassifyOutcome(resp.StatusCode, oo)
			e.VendorCode = code
			if kind == profile.KindEmpty {
				if op == opRead {
					return nil, tok, &Error{Kind: KindNotFound, Status: resp.StatusCode, Outcome: oo, VendorCode: code}
				}
				res.empty = true
				return res, tok, nil
			}
			if kind != profile.KindUnknown {
				e.Kind = kind
			}
		}
	}
	if op == opNext && e.Kind == KindNotFound {
		// A next link that no longer resolves: the paging session is gone.
		e.Kind = KindSearchExpired
	}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if d, ok := ParseRetryAfter(ra, c.cfg.Now()); ok {
			if d > c.cfg.MaxRetryAfter {
				d = c.cfg.MaxRetryAfter
			}
			e.RetryAfter, e.retryAfterSet = d, true
		}
	}
	return nil, tok, e
}

var acceptFHIR = []string{"application/fhir+json"}

// RetryableTokenError is what a TokenSource's error may implement to say the
// token endpoint failed transiently (5xx, 429, temporarily_unavailable) and
// how long it asked us to wait. internal/smart's TokenError implements it.
type RetryableTokenError interface {
	error
	Retryable() bool
	RetryDelay() time.Duration
}

// tokenFailure classifies a failure to get an access token: a transient
// answer of the token endpoint is retried like any server error (honouring
// its Retry-After), a network failure like any network error; a refusal
// (invalid_client, invalid_scope, ...) is an auth error that needs a fix.
func tokenFailure(err error) *Error {
	wrapped := fmt.Errorf("getting an access token: %w", err)
	var te RetryableTokenError
	if errors.As(err, &te) {
		if !te.Retryable() {
			return &Error{Kind: KindAuth, Err: wrapped}
		}
		e := &Error{Kind: KindServer, Err: wrapped}
		if d := te.RetryDelay(); d > 0 {
			e.RetryAfter, e.retryAfterSet = d, true
		}
		return e
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &ne) || errors.As(err, &oe) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return &Error{Kind: KindNetwork, Err: wrapped}
	}
	return &Error{Kind: KindAuth, Err: wrapped}
}

// transportError classifies a failure to get or read a response. The
// *url.Error wrapper (which prints the full URL, query included) is dropped.
func transportError(parent, attempt context.Context, err error) *Error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if parent.Err() == nil && attempt.Err() != nil {
		return &Error{Kind: KindTimeout, Err: errors.New("request timed out")}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &Error{Kind: KindTimeout, Err: err}
	}
	return &Error{Kind: KindNetwork, Err: err}
}

var errTooLarge = errors.New("response body exceeds the size limit")

// readBody reads the whole body into one exactly sized buffer when the
// length is known.
func readBody(resp *http.Response, max int64) ([]byte, error) {
	if n := resp.ContentLength; n >= 0 {
		if n > max {
			return nil, errTooLarge
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("reading the body: %w", err)
		}
		return buf, nil
	}
	var buf bytes.Buffer
	buf.Grow(64 << 10)
	n, err := buf.ReadFrom(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	if n > max {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

// ParseRetryAfter reads a Retry-After value: delay-seconds (capped at a
// day) or an HTTP-date (a past date is 0). ok is false when v is empty or
// unreadable. The bulk client reads its status polls with it too.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(24*time.Hour/time.Second) {
			secs = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	if d < 0 {
		d = 0
	}
	return d, true
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// expectType checks that body is a JSON object of the given resourceType.
func expectType(body []byte, want string) *Error {
	var h struct {
		ResourceType string `json:"resourceType"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return &Error{Kind: KindBadResponse, Err: jsonProblem(err)}
	}
	if h.ResourceType != want {
		return &Error{Kind: KindBadResponse, Err: fmt.Errorf("response is a %s, not a %s", safeToken(h.ResourceType), want)}
	}
	return nil
}

// jsonProblem describes a JSON decoding error without quoting the document.
func jsonProblem(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("body is not valid JSON (byte %d)", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("body has a JSON %s where the FHIR structure needs %s (field %s, byte %d)", te.Value, te.Type, safeToken(te.Field), te.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("body is truncated JSON")
	}
	return errors.New("body is not valid JSON")
}

// safeToken returns s when it looks like a FHIR type or JSON field path, else "?".
func safeToken(s string) string {
	if s == "" {
		return `""`
	}
	if len(s) > 64 {
		return "?"
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '.' || ch == '_') {
			return "?"
		}
	}
	return s
}

func validType(t string) bool {
	if t == "" || t[0] < 'A' || t[0] > 'Z' {
		return false
	}
	for i := 0; i < len(t); i++ {
		ch := t[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z') {
			return false
		}
	}
	return true
}

func looksJSON(b []byte) bool {
	for _, ch := range b {
		switch ch {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return true
		default:
			return false
		}
	}
	return false
}

// OriginOf is scheme://host[:port] in lower case, default ports dropped:
// what decides whether a link (a next page, a bulk file) may carry the
// connection's token.
func OriginOf(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		return scheme + "://" + host + ":" + port
	}
	return scheme + "://" + host
}
