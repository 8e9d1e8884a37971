package smart

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/go-jose/go-jose/v4/jwt"
)

// ClientAssertionType is the client_assertion_type of a JWT client assertion.
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// AssertionLifetime is how long our client assertions are valid (SMART
// allows at most five minutes; we stay under it to absorb small skews).
const AssertionLifetime = 4 * time.Minute

// defaultTokenLifetime is assumed when a token answer lacks expires_in.
const defaultTokenLifetime = 300 * time.Second

// ClientConfig configures a SMART Backend Services client.
type ClientConfig struct {
	ClientID    string
	FHIRBaseURL string // used to discover the token URL when TokenURL is empty
	TokenURL    string // optional; discovered when empty
	Key         crypto.Signer
	KeyID       string // defaults to the key's RFC 7638 thumbprint
	Algorithm   string // "RS384" or "ES384"; inferred from Key when empty
	JKU         string // optional; sent as the jku header (the registered JWKS URL)
	Scopes      []string
	HTTPClient  *http.Client // defaults to a client with a 30 s timeout
	Logger      *slog.Logger // defaults to discarding
	// RefreshBefore is how long before expiry a token is replaced (default
	// 60 s, at most half the token's lifetime).
	RefreshBefore time.Duration
	Now           func() time.Time // defaults to time.Now
}

// Client obtains and caches access tokens from a SMART Backend Services
// token endpoint. It is safe for concurrent use.
type Client struct {
	cfg    ClientConfig
	alg    string
	kid    string
	signer jose.Signer
	log    *slog.Logger

	discoverMu sync.Mutex // serialises discovery
	mu         sync.Mutex // guards the fields below
	tokenURL   string
	discovery  *Discovery
	offset     time.Duration // added to our clock when stamping assertions
	tok        *cachedToken
	inflight   *flight
}

type cachedToken struct {
	value     string
	scopes    []string
	expiresAt time.Time
	refreshAt time.Time
}

type flight struct {
	done chan struct{}
	tok  *cachedToken
	err  error
}

// NewClient checks cfg and returns a client. No network traffic happens
// until the first Token call.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.ClientID == "" {
		return nil, errors.New("smart client: client id is required")
	}
	if cfg.Key == nil {
		return nil, errors.New("smart client: private key is required")
	}
	if cfg.TokenURL == "" && cfg.FHIRBaseURL == "" {
		return nil, errors.New("smart client: a token URL or a FHIR base URL (to discover it) is required")
	}
	keyAlg, err := AlgorithmFor(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("smart client: %w", err)
	}
	if cfg.Algorithm == "" {
		cfg.Algorithm = keyAlg
	}
	if cfg.Algorithm != keyAlg {
		return nil, fmt.Errorf("smart client: algorithm %q does not fit the key (use %s)", cfg.Algorithm, keyAlg)
	}
	if cfg.KeyID == "" {
		if cfg.KeyID, err = KeyID(cfg.Key); err != nil {
			return nil, fmt.Errorf("smart client: %w", err)
		}
	}
	for _, s := range cfg.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return nil, fmt.Errorf("smart client: scope %q is empty or contains spaces", s)
		}
		if IsClinicalScope(s) {
			if _, err := ParseScope(s); err != nil {
				return nil, fmt.Errorf("smart client: %w", err)
			}
		}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.RefreshBefore <= 0 {
		cfg.RefreshBefore = 60 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Scopes = slices.Clone(cfg.Scopes)

	var signingKey any
	switch k := cfg.Key.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey:
		signingKey = k
	default: // an HSM, KMS or other opaque signer
		signingKey = cryptosigner.Opaque(cfg.Key)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), cfg.KeyID)
	if cfg.JKU != "" {
		opts = opts.WithHeader(jose.HeaderKey("jku"), cfg.JKU)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(cfg.Algorithm), Key: signingKey}, opts)
	if err != nil {
		return nil, fmt.Errorf("smart client: signer: %w", err)
	}
	return &Client{cfg: cfg, alg: cfg.Algorithm, kid: cfg.KeyID, signer: signer, log: log, tokenURL: cfg.TokenURL}, nil
}

// KeyID returns the kid this client puts in its assertions.
func (c *Client) KeyID() string { return c.kid }

// Discovery returns what discovery found, or nil if the client was given a
// token URL or has not discovered yet.
func (c *Client) Discovery() *Discovery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.discovery
}

// Token returns a valid access token, fetching a new one when none is
// cached or the cached one is within RefreshBefore of expiry. Concurrent
// callers share one token request.
func (c *Client) Token(ctx context.Context) (string, error) {
	for {
		c.mu.Lock()
		now := c.cfg.Now()
		old := c.tok
		if old != nil && now.Before(old.refreshAt) {
			c.mu.Unlock()
			return old.value, nil
		}
		if f := c.inflight; f != nil {
			c.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return "", fmt.Errorf("smart token: %w", ctx.Err())
			}
			if f.err == nil {
				return f.tok.value, nil
			}
			// The request we waited on was abandoned by its caller: try ourselves.
			if (errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded)) && ctx.Err() == nil {
				continue
			}
			if old != nil && c.cfg.Now().Before(old.expiresAt) {
				return old.value, nil
			}
			return "", f.err
		}
		f := &flight{done: make(chan struct{})}
		c.inflight = f
		c.mu.Unlock()

		tok, err := c.fetch(ctx)

		c.mu.Lock()
		if err == nil {
			c.tok = tok
		}
		c.inflight = nil
		c.mu.Unlock()
		f.tok, f.err = tok, err
		close(f.done)
		if err != nil {
			// A refresh that fails while the old token is still valid is not
			// fatal yet: keep using it and say so.
			if old != nil && c.cfg.Now().Before(old.expiresAt) && ctx.Err() == nil {
				c.log.Warn("SMART token refresh failed; using the current token until it expires",
					"client_id", c.cfg.ClientID, "expires", old.expiresAt, "error", err)
				return old.value, nil
			}
			return "", err
		}
		return tok.value, nil
	}
}

// Invalidate drops token from the cache (call it after a 401), so the next
// Token call fetches a new one. Other tokens are left alone.
func (c *Client) Invalidate(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok != nil && c.tok.value == token {
		c.tok = nil
	}
}

// Granted returns the scopes granted with the current token and when it
// expires; both are zero before the first token.
func (c *Client) Granted() (scopes []string, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok == nil {
		return nil, time.Time{}
	}
	return slices.Clone(c.tok.scopes), c.tok.expiresAt
}

// endpoint returns the token URL and the scopes to request, discovering the
// endpoint on first use.
func (c *Client) endpoint(ctx context.Context) (string, []string, error) {
	c.mu.Lock()
	u, d := c.tokenURL, c.discovery
	c.mu.Unlock()
	if u != "" {
		return u, ScopesFor(d, c.cfg.Scopes), nil
	}
	c.discoverMu.Lock()
	defer c.discoverMu.Unlock()
	c.mu.Lock()
	u, d = c.tokenURL, c.discovery
	c.mu.Unlock()
	if u == "" {
		var err error
		d, err = Discover(ctx, c.cfg.HTTPClient, c.cfg.FHIRBaseURL)
		if err != nil {
			return "", nil, fmt.Errorf("smart token: %w", err)
		}
		if !d.SupportsPrivateKeyJWT() {
			c.log.Warn("SMART discovery does not list private_key_jwt; trying anyway", "client_id", c.cfg.ClientID)
		}
		u = d.TokenEndpoint
		c.mu.Lock()
		c.tokenURL, c.discovery = u, d
		c.mu.Unlock()
	}
	return u, ScopesFor(d, c.cfg.Scopes), nil
}

func (c *Client) fetch(ctx context.Context) (*cachedToken, error) {
	tokenURL, scopes, err := c.endpoint(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	offset := c.offset
	c.mu.Unlock()
	tok, err := c.request(ctx, tokenURL, scopes, offset)
	var te *TokenError
	if errors.As(err, &te) && te.SkewDetected() && (te.Status == http.StatusBadRequest || te.Status == http.StatusUnauthorized) {
		// The server's clock is off: stamp the assertion with its time and try once more.
		c.log.Warn("SMART token server clock differs from ours; retrying with adjusted assertion times",
			"client_id", c.cfg.ClientID, "skew", te.Skew.Round(time.Second).String())
		tok, err = c.request(ctx, tokenURL, scopes, te.Skew)
		if err == nil {
			c.mu.Lock()
			c.offset = te.Skew
			c.mu.Unlock()
		}
	}
	return tok, err
}

// tokenResponse is a successful token answer. expires_in is decoded loosely
// because some servers send it as a string.
type tokenResponse struct {
	AccessToken string          `json:"access_token"`
	TokenType   string          `json:"token_type"`
	ExpiresIn   json.RawMessage `json:"expires_in"`
	Scope       string          `json:"scope"`
}

type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func (c *Client) request(ctx context.Context, tokenURL string, scopes []string, offset time.Duration) (*cachedToken, error) {
	start := c.cfg.Now()
	assertion, err := c.assertion(tokenURL, start.Add(offset))
	if err != nil {
		return nil, err
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"scope":                 {strings.Join(scopes, " ")},
		"client_assertion_type": {ClientAssertionType},
		"client_assertion":      {assertion},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("smart token: bad token URL: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("smart token: request to %s: %w", redactURL(tokenURL), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("smart token: read answer from %s: %w", redactURL(tokenURL), err)
	}
	received := c.cfg.Now()
	var skew time.Duration
	if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		// Date has whole seconds and is truncated: on average the server's
		// clock was half a second past it.
		skew = d.Add(500 * time.Millisecond).Sub(received).Round(time.Second)
	}
	if resp.StatusCode != http.StatusOK {
		te := &TokenError{Status: resp.StatusCode, Skew: skew, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), received)}
		var oe oauthError
		if json.Unmarshal(body, &oe) == nil {
			te.Code, te.Description = oe.Error, shorten(oe.Description, 300)
		}
		return nil, te
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return nil, fmt.Errorf("smart token: answer from %s is not a JSON token response: %v", redactURL(tokenURL), err)
	}
	if tr.AccessToken == "" {
		return nil, fmt.Errorf("smart token: answer from %s has no access_token", redactURL(tokenURL))
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return nil, fmt.Errorf("smart token: token_type %q is not supported (want bearer)", shorten(tr.TokenType, 40))
	}
	lifetime := defaultTokenLifetime
	if secs, ok := parseExpiresIn(tr.ExpiresIn); ok {
		lifetime = time.Duration(secs) * time.Second
	}
	if lifetime <= 0 {
		return nil, fmt.Errorf("smart token: answer from %s has expires_in %s", redactURL(tokenURL), string(tr.ExpiresIn))
	}
	margin := min(c.cfg.RefreshBefore, lifetime/2)
	granted := SplitScopes(tr.Scope)
	if tr.Scope == "" {
		granted = slices.Clone(scopes) // RFC 6749 §5.1: omitted means as requested
	}
	// Lifetimes count from when we asked, so we never overestimate them.
	return &cachedToken{
		value:     tr.AccessToken,
		scopes:    granted,
		expiresAt: start.Add(lifetime),
		refreshAt: start.Add(lifetime - margin),
	}, nil
}

// assertion builds and signs the client assertion JWT.
func (c *Client) assertion(aud string, now time.Time) (string, error) {
	jti, err := randomID()
	if err != nil {
		return "", err
	}
	claims := struct {
		Issuer   string `json:"iss"`
		Subject  string `json:"sub"`
		Audience string `json:"aud"`
		Expiry   int64  `json:"exp"`
		IssuedAt int64  `json:"iat"`
		ID       string `json:"jti"`
	}{c.cfg.ClientID, c.cfg.ClientID, aud, now.Add(AssertionLifetime).Unix(), now.Unix(), jti}
	s, err := jwt.Signed(c.signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("smart token: sign assertion: %w", err)
	}
	return s, nil
}

func randomID() (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random jti: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func parseExpiresIn(raw json.RawMessage) (int64, bool) {
	s := strings.Trim(strings.TrimSpace(string(raw)), `"`)
	if s == "" || s == "null" {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, false
	}
	return int64(f), true
}

func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// redactURL drops any query string and user info from a URL for messages.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparseable URL)"
	}
	p.User, p.RawQuery, p.Fragment = nil, "", ""
	return p.String()
}
