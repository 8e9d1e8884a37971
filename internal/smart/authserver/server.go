// Package authserver is the SMART Backend Services authorization server of
// the EHR simulator: it registers clients with their public keys, validates
// JWT client assertions in full, issues short-lived opaque access tokens and
// checks them (with their scopes) on FHIR requests.
package authserver

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mediflow/mediflow/internal/smart"
)

// MaxAssertionLifetime is the longest an assertion may be valid (SMART: exp
// at most five minutes ahead).
const MaxAssertionLifetime = 5 * time.Minute

// DefaultLeeway is the clock difference tolerated when checking exp, iat and nbf.
const DefaultLeeway = 30 * time.Second

// jwksRefetchAfter is how old a cached JWKS must be before an unknown kid
// makes us fetch it again (the client may have rotated keys).
const jwksRefetchAfter = 5 * time.Second

// Client is a registered backend client.
type Client struct {
	ID      string
	JWKS    []byte   // inline public JWKS
	JWKSURL string   // or where to fetch it; a jku header must equal it
	Scopes  []string // scopes it may be granted, v1 or v2 syntax
}

// Config configures a Server.
type Config struct {
	TokenURL   string        // absolute URL of the token endpoint: the required aud
	TokenTTL   time.Duration // access token lifetime; default 300 s
	Now        func() time.Time
	HTTPClient *http.Client // fetches JWKS URLs; default 10 s timeout
	V1Only     bool         // accept and answer only v1 scope syntax (like Oracle Health)
	Leeway     time.Duration
	Logger     *slog.Logger
}

// Grant is what a valid access token carries.
type Grant struct {
	ClientID  string
	Scopes    []string
	ExpiresAt time.Time
}

// Allows reports whether the grant's scopes permit op on resourceType.
func (g *Grant) Allows(resourceType string, op byte) bool {
	return smart.ScopesAllow(g.Scopes, resourceType, op)
}

type registered struct {
	c       Client
	keys    []verifyKey   // parsed inline JWKS
	allowed []smart.Scope // parsed clinical scopes
	other   []string      // allowed non-clinical scopes (exact match)
}

// Server is the token endpoint and token checker. It is safe for concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	tokenURL string
	clients  map[string]*registered
	jtis     map[string]time.Time // client id + "\n" + jti -> when the record may go
	tokens   map[string]*tokenEntry
	jwks     map[string]*jwksEntry
	ops      int
}

// New returns a server with no clients.
func New(cfg Config) *Server {
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 300 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = DefaultLeeway
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{
		cfg: cfg, log: log, tokenURL: cfg.TokenURL,
		clients: map[string]*registered{}, jtis: map[string]time.Time{},
		tokens: map[string]*tokenEntry{}, jwks: map[string]*jwksEntry{},
	}
}

// SetTokenURL sets the token endpoint's absolute URL (the aud assertions
// must carry), for when the address is known only after listening.
func (s *Server) SetTokenURL(u string) {
	s.mu.Lock()
	s.tokenURL = u
	s.mu.Unlock()
}

// TokenURL returns the token endpoint's URL.
func (s *Server) TokenURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenURL
}

// RegisterClient adds or replaces a client.
func (s *Server) RegisterClient(c Client) error {
	if c.ID == "" {
		return errors.New("register client: empty client id")
	}
	if len(c.JWKS) == 0 && c.JWKSURL == "" {
		return fmt.Errorf("register client %q: a JWKS or a JWKS URL is required", c.ID)
	}
	r := &registered{c: c}
	r.c.JWKS = slices.Clone(c.JWKS)
	r.c.Scopes = slices.Clone(c.Scopes)
	if len(c.JWKS) > 0 {
		keys, err := parseJWKS(c.JWKS)
		if err != nil {
			return fmt.Errorf("register client %q: %w", c.ID, err)
		}
		if len(keys) == 0 && c.JWKSURL == "" {
			return fmt.Errorf("register client %q: the JWKS has no usable RS384 or ES384 verification key", c.ID)
		}
		r.keys = keys
	}
	for _, sc := range c.Scopes {
		if !smart.IsClinicalScope(sc) {
			r.other = append(r.other, sc)
			continue
		}
		p, err := smart.ParseScope(sc)
		if err != nil {
			return fmt.Errorf("register client %q: %w", c.ID, err)
		}
		r.allowed = append(r.allowed, p)
	}
	s.mu.Lock()
	s.clients[c.ID] = r
	s.mu.Unlock()
	return nil
}

// ExpireTokens makes every token issued so far invalid now (to inject
// "token expired mid-paging" faults).
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	for _, te := range s.tokens {
		if te.grant.ExpiresAt.After(now) {
			te.grant.ExpiresAt = now
		}
	}
}

// SmartConfiguration returns a .well-known/smart-configuration document for
// this server, for simulator flavours without a vendor document of their own.
func (s *Server) SmartConfiguration() []byte {
	caps := []string{"client-confidential-asymmetric", "permission-v1"}
	if !s.cfg.V1Only {
		caps = append(caps, "permission-v2")
	}
	doc := map[string]any{
		"token_endpoint":                                   s.TokenURL(),
		"token_endpoint_auth_methods_supported":            []string{"private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{smart.AlgRS384, smart.AlgES384},
		"grant_types_supported":                            []string{"client_credentials"},
		"scopes_supported":                                 []string{"system/*.read", "system/*.rs"},
		"capabilities":                                     caps,
		"code_challenge_methods_supported":                 []string{"S256"},
	}
	if s.cfg.V1Only {
		doc["scopes_supported"] = []string{"system/*.read"}
	}
	out, _ := json.Marshal(doc) // cannot fail: strings and string slices only
	return out
}

// oauthError is an error answer of the token endpoint.
type oauthError struct {
	status int
	code   string
	desc   string
}

func (e *oauthError) Error() string { return e.code + ": " + e.desc }

func clientErr(format string, a ...any) *oauthError {
	return &oauthError{http.StatusUnauthorized, "invalid_client", fmt.Sprintf(format, a...)}
}

func scopeErr(format string, a ...any) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_scope", fmt.Sprintf(format, a...)}
}

func requestErr(format string, a ...any) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_request", fmt.Sprintf(format, a...)}
}

type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

// ServeHTTP is the token endpoint: POST form with grant_type
// client_credentials and a JWT client assertion.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := s.cfg.Now()
	h := w.Header()
	h.Set("Date", now.UTC().Format(http.TimeFormat)) // our (possibly simulated) clock
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	ans, oe := s.issue(r, now)
	h.Set("Content-Type", "application/json")
	if oe != nil {
		if oe.status == http.StatusMethodNotAllowed {
			h.Set("Allow", http.MethodPost)
		}
		if oe.status == http.StatusUnauthorized {
			h.Set("WWW-Authenticate", `Bearer error="invalid_client"`)
		}
		s.log.Info("token request refused", "code", oe.code, "reason", oe.desc)
		w.WriteHeader(oe.status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": oe.code, "error_description": oe.desc})
		return
	}
	_ = json.NewEncoder(w).Encode(ans)
}

func (s *Server) issue(r *http.Request, now time.Time) (*tokenAnswer, *oauthError) {
	if r.Method != http.MethodPost {
		return nil, &oauthError{http.StatusMethodNotAllowed, "invalid_request", "the token endpoint accepts POST only"}
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		return nil, requestErr("the body must be application/x-www-form-urlencoded")
	}
	if err := r.ParseForm(); err != nil {
		return nil, requestErr("unreadable form body")
	}
	form := r.PostForm
	if gt := form.Get("grant_type"); gt != "client_credentials" {
		if gt == "" {
			return nil, requestErr("grant_type is missing")
		}
		return nil, &oauthError{http.StatusBadRequest, "unsupported_grant_type", "only client_credentials is supported"}
	}
	if form.Get("client_assertion_type") != smart.ClientAssertionType {
		return nil, clientErr("client_assertion_type must be %s", smart.ClientAssertionType)
	}
	assertion := form.Get("client_assertion")
	if assertion == "" {
		return nil, clientErr("client_assertion is missing")
	}
	s.mu.Lock()
	tokenURL := s.tokenURL
	s.mu.Unlock()
	if tokenURL == "" {
		return nil, &oauthError{http.StatusInternalServerError, "server_error", "the token URL is not configured"}
	}
	reg, oe := s.authenticateClient(r, assertion, tokenURL, now)
	if oe != nil {
		return nil, oe
	}
	if id := form.Get("client_id"); id != "" && id != reg.c.ID {
		return nil, clientErr("client_id does not match the assertion's iss")
	}
	scopes, oe := s.grantScopes(reg, form.Get("scope"))
	if oe != nil {
		return nil, oe
	}
	tok, err := randomToken()
	if err != nil {
		return nil, &oauthError{http.StatusInternalServerError, "server_error", "cannot create a token"}
	}
	te := &tokenEntry{grant: Grant{ClientID: reg.c.ID, Scopes: scopes, ExpiresAt: now.Add(s.cfg.TokenTTL)}}
	for _, sc := range scopes {
		if p, err := smart.ParseScope(sc); err == nil {
			te.parsed = append(te.parsed, p)
		}
	}
	s.mu.Lock()
	s.tokens[tok] = te
	s.gcLocked(now)
	s.mu.Unlock()
	s.log.Info("token issued", "client_id", reg.c.ID, "scope", strings.Join(scopes, " "), "expires_in", int64(s.cfg.TokenTTL/time.Second))
	return &tokenAnswer{AccessToken: tok, TokenType: "bearer", ExpiresIn: max(1, int64(s.cfg.TokenTTL/time.Second)), Scope: strings.Join(scopes, " ")}, nil
}

type assertionClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.Audience     `json:"aud"`
	Expiry    *jwt.NumericDate `json:"exp"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	ID        string           `json:"jti"`
}

var acceptedAlgs = []jose.SignatureAlgorithm{jose.RS384, jose.ES384}

// authenticateClient validates the assertion and returns the client it proves.
func (s *Server) authenticateClient(r *http.Request, assertion, tokenURL string, now time.Time) (*registered, *oauthError) {
	hdr, err := peekHeader(assertion)
	if err != nil {
		return nil, clientErr("client_assertion is not a compact JWS: %v", err)
	}
	if !slices.Contains(acceptedAlgs, jose.SignatureAlgorithm(hdr.Alg)) {
		return nil, clientErr("alg %q is not accepted (use RS384 or ES384)", hdr.Alg)
	}
	if hdr.Kid == "" {
		return nil, clientErr("the assertion header has no kid")
	}
	tok, err := jwt.ParseSigned(assertion, acceptedAlgs)
	if err != nil {
		return nil, clientErr("client_assertion does not parse: %v", err)
	}
	var unverified assertionClaims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return nil, clientErr("assertion claims do not parse: %v", err)
	}
	if unverified.Issuer == "" {
		return nil, clientErr("the assertion has no iss")
	}
	s.mu.Lock()
	reg := s.clients[unverified.Issuer]
	s.mu.Unlock()
	if reg == nil {
		return nil, clientErr("client %q is not registered", unverified.Issuer)
	}
	key, oe := s.keyFor(r, reg, hdr, now)
	if oe != nil {
		return nil, oe
	}
	var cl assertionClaims
	if err := tok.Claims(key.key, &cl); err != nil {
		return nil, clientErr("the assertion signature does not verify with key %q", hdr.Kid)
	}
	if oe := s.checkClaims(reg, &cl, tokenURL, now); oe != nil {
		return nil, oe
	}
	return reg, nil
}

func (s *Server) checkClaims(reg *registered, cl *assertionClaims, tokenURL string, now time.Time) *oauthError {
	lw := s.cfg.Leeway
	if cl.Issuer != reg.c.ID || cl.Subject != reg.c.ID {
		return clientErr("iss and sub must both be the client id")
	}
	if !audienceMatches(cl.Audience, tokenURL) {
		return clientErr("aud must be the token URL %s", tokenURL)
	}
	if cl.Expiry == nil {
		return clientErr("the assertion has no exp")
	}
	exp := cl.Expiry.Time()
	if now.After(exp.Add(lw)) {
		return clientErr("the assertion expired at %s (server time %s)", exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if exp.After(now.Add(MaxAssertionLifetime + lw)) {
		return clientErr("exp is more than %s in the future", MaxAssertionLifetime)
	}
	if cl.IssuedAt != nil {
		iat := cl.IssuedAt.Time()
		if iat.After(now.Add(lw)) {
			return clientErr("iat is in the future (server time %s)", now.UTC().Format(time.RFC3339))
		}
		if exp.Sub(iat) > MaxAssertionLifetime+lw {
			return clientErr("the assertion is valid for more than %s", MaxAssertionLifetime)
		}
	}
	if cl.NotBefore != nil && cl.NotBefore.Time().After(now.Add(lw)) {
		return clientErr("the assertion is not valid yet (nbf)")
	}
	if cl.ID == "" {
		return clientErr("the assertion has no jti")
	}
	key := reg.c.ID + "\n" + cl.ID
	s.mu.Lock()
	defer s.mu.Unlock()
	if until, seen := s.jtis[key]; seen && now.Before(until) {
		return clientErr("jti was already used (replayed assertion)")
	}
	s.jtis[key] = exp.Add(lw)
	return nil
}

func audienceMatches(aud jwt.Audience, tokenURL string) bool {
	want := strings.TrimRight(tokenURL, "/")
	for _, a := range aud {
		if strings.TrimRight(a, "/") == want {
			return true
		}
	}
	return false
}

// keyFor chooses the one key the assertion must verify with.
func (s *Server) keyFor(r *http.Request, reg *registered, hdr jwsHeader, now time.Time) (verifyKey, *oauthError) {
	if hdr.Jku != "" {
		if reg.c.JWKSURL == "" || hdr.Jku != reg.c.JWKSURL {
			return verifyKey{}, clientErr("jku does not match the JWKS URL registered for this client")
		}
		return s.keyFromURL(r, reg.c.JWKSURL, hdr, now)
	}
	if len(reg.keys) > 0 {
		k, err := selectKey(reg.keys, hdr.Kid, hdr.Alg)
		if err == nil || reg.c.JWKSURL == "" {
			if err != nil {
				return verifyKey{}, clientErr("%v", err)
			}
			return k, nil
		}
	}
	return s.keyFromURL(r, reg.c.JWKSURL, hdr, now)
}

func (s *Server) keyFromURL(r *http.Request, u string, hdr jwsHeader, now time.Time) (verifyKey, *oauthError) {
	s.mu.Lock()
	e := s.jwks[u]
	s.mu.Unlock()
	fetched := false
	if e == nil || !now.Before(e.expiresAt) {
		var oe *oauthError
		if e, oe = s.refreshJWKS(r, u, now); oe != nil {
			return verifyKey{}, oe
		}
		fetched = true
	}
	k, err := selectKey(e.keys, hdr.Kid, hdr.Alg)
	if err != nil && !fetched && now.Sub(e.fetchedAt) >= jwksRefetchAfter {
		// The client may have rotated its keys since we cached the set.
		var oe *oauthError
		if e, oe = s.refreshJWKS(r, u, now); oe != nil {
			return verifyKey{}, oe
		}
		k, err = selectKey(e.keys, hdr.Kid, hdr.Alg)
	}
	if err != nil {
		return verifyKey{}, clientErr("%v", err)
	}
	return k, nil
}

func (s *Server) refreshJWKS(r *http.Request, u string, now time.Time) (*jwksEntry, *oauthError) {
	keys, maxAge, err := fetchJWKS(r.Context(), s.cfg.HTTPClient, u)
	if err != nil {
		return nil, clientErr("cannot get the client's JWKS: %v", err)
	}
	e := &jwksEntry{keys: keys, fetchedAt: now, expiresAt: now.Add(maxAge)}
	s.mu.Lock()
	s.jwks[u] = e
	s.mu.Unlock()
	return e, nil
}

// grantScopes returns requested ∩ allowed, in the syntax asked for (v1 only
// when the server is V1Only).
func (s *Server) grantScopes(reg *registered, requested string) ([]string, *oauthError) {
	req := smart.SplitScopes(requested)
	if len(req) == 0 {
		return nil, scopeErr("scope is required")
	}
	var granted []string
	add := func(sc string) {
		if !slices.Contains(granted, sc) {
			granted = append(granted, sc)
		}
	}
	for _, raw := range req {
		if !smart.IsClinicalScope(raw) {
			if slices.Contains(reg.other, raw) {
				add(raw)
				continue
			}
			return nil, scopeErr("unknown scope %q", raw)
		}
		rs, err := smart.ParseScope(raw)
		if err != nil {
			return nil, scopeErr("%v", err)
		}
		if s.cfg.V1Only && !rs.V1 {
			return nil, scopeErr("scope %q: this server accepts v1 scopes only (e.g. system/Patient.read)", raw)
		}
		for _, a := range reg.allowed {
			x, ok := rs.Intersect(a)
			if !ok {
				continue
			}
			if s.cfg.V1Only {
				if x, ok = x.V1Floor(); !ok {
					continue
				}
			}
			add(x.String())
		}
	}
	if len(granted) == 0 {
		return nil, scopeErr("none of the requested scopes is allowed for this client")
	}
	return granted, nil
}

// gcLocked drops expired jti records and tokens now and then.
func (s *Server) gcLocked(now time.Time) {
	s.ops++
	if s.ops%128 != 0 {
		return
	}
	for k, until := range s.jtis {
		if !now.Before(until) {
			delete(s.jtis, k)
		}
	}
	for k, te := range s.tokens {
		// Keep expired tokens a while so a late request learns "expired", not "unknown".
		if now.After(te.grant.ExpiresAt.Add(10 * time.Minute)) {
			delete(s.tokens, k)
		}
	}
}

func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

type jwsHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Jku string `json:"jku"`
	Typ string `json:"typ"`
}

// peekHeader decodes a compact JWS's protected header without verifying it,
// so that refusals can name the problem (e.g. alg "none").
func peekHeader(compact string) (jwsHeader, error) {
	var h jwsHeader
	parts := strings.Split(compact, ".")
	if len(parts) != 3 {
		return h, fmt.Errorf("%d parts instead of 3", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return h, errors.New("the header is not base64url")
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return h, errors.New("the header is not a JSON object")
	}
	return h, nil
}

// AuthError is a refused FHIR request: Status is 401 (no, unknown or
// expired token) or 403 (the token's scopes do not allow the operation).
type AuthError struct {
	Status      int
	Code        string // "" (no token), "invalid_token" or "insufficient_scope"
	Description string
}

func (e *AuthError) Error() string {
	if e.Code == "" {
		return e.Description
	}
	return e.Code + ": " + e.Description
}

// WWWAuthenticate is the WWW-Authenticate header value for the answer.
func (e *AuthError) WWWAuthenticate() string {
	if e.Code == "" {
		return `Bearer realm="fhir"`
	}
	return fmt.Sprintf(`Bearer realm="fhir", error=%q, error_description=%q`, e.Code, e.Description)
}

// Authenticate checks the request's bearer token and, when resourceType and
// op are given, that its scopes permit op (c, r, u, d or s) on resourceType.
// Errors are *AuthError.
func (s *Server) Authenticate(r *http.Request, resourceType string, op byte) (*Grant, error) {
	authz := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(authz, " ")
	if authz == "" || !ok || !strings.EqualFold(scheme, "bearer") {
		return nil, &AuthError{Status: http.StatusUnauthorized, Description: "a Bearer access token is required"}
	}
	tok = strings.TrimSpace(tok)
	now := s.cfg.Now()
	s.mu.Lock()
	te, found := s.tokens[tok]
	var grant Grant
	if found {
		grant = te.grant // te.parsed and the Scopes slice are never modified after issue
	}
	s.mu.Unlock()
	if !found {
		return nil, &AuthError{Status: http.StatusUnauthorized, Code: "invalid_token", Description: "unknown access token"}
	}
	if !now.Before(grant.ExpiresAt) {
		return nil, &AuthError{Status: http.StatusUnauthorized, Code: "invalid_token", Description: "the access token expired"}
	}
	if resourceType != "" && op != 0 && !te.allows(resourceType, op) {
		return nil, &AuthError{Status: http.StatusForbidden, Code: "insufficient_scope",
			Description: fmt.Sprintf("the granted scopes do not allow %q on %s", string(op), resourceType)}
	}
	grant.Scopes = slices.Clone(grant.Scopes)
	return &grant, nil
}

// tokenEntry is an issued token's grant with its scopes parsed once.
type tokenEntry struct {
	grant  Grant
	parsed []smart.Scope
}

func (te *tokenEntry) allows(resourceType string, op byte) bool {
	for _, sc := range te.parsed {
		if sc.Allows(resourceType, op) {
			return true
		}
	}
	return false
}
