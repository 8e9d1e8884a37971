package smart_test

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/smart"
	"github.com/mediflow/mediflow/internal/smart/authserver"
)

var patientScopes = []string{"system/Patient.rs"}

func TestTokenRS384AndES384(t *testing.T) {
	rk, ek, _, _ := testKeys(t)
	for _, tc := range []struct {
		alg string
		key crypto.Signer
	}{{smart.AlgRS384, rk}, {smart.AlgES384, ek}} {
		t.Run(tc.alg, func(t *testing.T) {
			e := newEHR(t, authserver.Config{})
			e.register(t, "app-"+tc.alg, []string{"system/Patient.read", "system/Observation.rs"}, tc.key)
			c, err := smart.NewClient(smart.ClientConfig{ClientID: "app-" + tc.alg, TokenURL: e.tokenURL, Key: tc.key,
				Scopes: []string{"system/Patient.rs", "system/Observation.rs"}, HTTPClient: e.srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			tok, err := c.Token(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if tok == "" {
				t.Fatal("empty token")
			}
			if got := e.searchPatients(t, tok); got != http.StatusOK {
				t.Fatalf("FHIR search with the token: HTTP %d", got)
			}
			if got := e.searchPatients(t, tok+"x"); got != http.StatusUnauthorized {
				t.Fatalf("FHIR search with a wrong token: HTTP %d", got)
			}
			scopes, exp := c.Granted()
			if !slices.Equal(scopes, []string{"system/Patient.rs", "system/Observation.rs"}) {
				t.Errorf("granted %v", scopes)
			}
			if d := time.Until(exp); d < 4*time.Minute || d > 5*time.Minute {
				t.Errorf("expiry in %s, want ~5m", d)
			}
		})
	}
}

func TestTokenCachedAndRefreshedBeforeExpiry(t *testing.T) {
	rk, _, _, _ := testKeys(t)
	clk := newClock()
	e := newEHR(t, authserver.Config{Now: clk.Now, TokenTTL: 300 * time.Second})
	e.register(t, "app", patientScopes, rk)
	c, err := smart.NewClient(smart.ClientConfig{ClientID: "app", TokenURL: e.tokenURL, Key: rk, Scopes: patientScopes,
		HTTPClient: e.srv.Client(), Now: clk.Now, RefreshBefore: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := c.Token(ctx)
	if again != first || e.requests.Load() != 1 {
		t.Fatalf("second call made a request (requests=%d) or changed the token", e.requests.Load())
	}
	clk.Advance(239 * time.Second) // 61 s before expiry: still cached
	if tok, _ := c.Token(ctx); tok != first || e.requests.Load() != 1 {
		t.Fatalf("token refreshed too early (requests=%d)", e.requests.Load())
	}
	clk.Advance(2 * time.Second) // 59 s before expiry: inside the refresh window
	second, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second == first || e.requests.Load() != 2 {
		t.Fatalf("token not refreshed inside the window (requests=%d)", e.requests.Load())
	}
	// The refresh happened while the old token was still valid.
	if got := e.searchPatients(t, first); got != http.StatusOK {
		t.Errorf("old token already invalid at refresh time: HTTP %d", got)
	}
	clk.Advance(60 * time.Second) // the first token has now expired; the second has not
	if got := e.searchPatients(t, first); got != http.StatusUnauthorized {
		t.Errorf("old token still valid after its expiry: HTTP %d", got)
	}
	if tok, _ := c.Token(ctx); tok != second || e.requests.Load() != 2 {
		t.Errorf("fresh token not reused (requests=%d)", e.requests.Load())
	}
}

func TestConcurrentTokenMakesOneRequest(t *testing.T) {
	_, ek, _, _ := testKeys(t)
	e := newEHR(t, authserver.Config{})
	e.setTokenWait(100 * time.Millisecond)
	e.register(t, "app", patientScopes, ek)
	c, err := smart.NewClient(smart.ClientConfig{ClientID: "app", TokenURL: e.tokenURL, Key: ek, Scopes: patientScopes, HTTPClient: e.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	const n = 32
	var wg sync.WaitGroup
	toks := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks[i], errs[i] = c.Token(context.Background())
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || toks[i] != toks[0] {
			t.Fatalf("caller %d: %q %v", i, toks[i], errs[i])
		}
	}
	if got := e.requests.Load(); got != 1 {
		t.Errorf("%d token requests, want 1", got)
	}
}

func TestCancelledLeaderDoesNotFailOthers(t *testing.T) {
	_, ek, _, _ := testKeys(t)
	e := newEHR(t, authserver.Config{})
	e.setTokenWait(150 * time.Millisecond)
	e.register(t, "app", patientScopes, ek)
	c, _ := smart.NewClient(smart.ClientConfig{ClientID: "app", TokenURL: e.tokenURL, Key: ek, Scopes: patientScopes, HTTPClient: e.srv.Client()})
	leaderCtx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := c.Token(leaderCtx); done <- err }()
	time.Sleep(10 * time.Millisecond) // let the leader start its request
	tok, err := c.Token(context.Background())
	if err != nil || tok == "" {
		t.Fatalf("follower: %q %v", tok, err)
	}
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("leader: %v", err)
	}
}

func TestInvalidClient(t *testing.T) {
	rk, ek, rk2, _ := testKeys(t)
	e := newEHR(t, authserver.Config{})
	e.register(t, "app", patientScopes, rk, ek)
	kidRSA, _ := smart.KeyID(rk)
	cases := []struct {
		name string
		cfg  smart.ClientConfig
		want string // in the server's description
	}{
		{"unregistered client", smart.ClientConfig{ClientID: "stranger", Key: rk}, "not registered"},
		{"wrong key, registered kid", smart.ClientConfig{ClientID: "app", Key: rk2, KeyID: kidRSA}, "signature"},
		{"unknown kid", smart.ClientConfig{ClientID: "app", Key: rk, KeyID: "not-a-registered-kid"}, "kid"},
		{"unregistered key", smart.ClientConfig{ClientID: "app", Key: rk2}, "kid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.TokenURL, cfg.Scopes, cfg.HTTPClient = e.tokenURL, patientScopes, e.srv.Client()
			c, err := smart.NewClient(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Token(context.Background())
			var te *smart.TokenError
			if !errors.As(err, &te) {
				t.Fatalf("want *TokenError, got %v", err)
			}
			if te.Code != "invalid_client" || te.Status != http.StatusUnauthorized || !strings.Contains(te.Description, tc.want) {
				t.Errorf("got %d %q %q", te.Status, te.Code, te.Description)
			}
			if msg := err.Error(); !strings.Contains(msg, "mediflow keys") || !strings.Contains(msg, "kid") || strings.Contains(msg, "clock is") {
				t.Errorf("message does not guide the user: %s", msg)
			}
			if te.Retryable() {
				t.Error("invalid_client must not be retryable")
			}
		})
	}
}

func TestInvalidScope(t *testing.T) {
	rk, _, _, _ := testKeys(t)
	e := newEHR(t, authserver.Config{})
	e.register(t, "app", []string{"system/Patient.read"}, rk)
	c, _ := smart.NewClient(smart.ClientConfig{ClientID: "app", TokenURL: e.tokenURL, Key: rk,
		Scopes: []string{"system/Observation.rs"}, HTTPClient: e.srv.Client()})
	_, err := c.Token(context.Background())
	var te *smart.TokenError
	if !errors.As(err, &te) || te.Code != "invalid_scope" || te.Status != http.StatusBadRequest {
		t.Fatalf("want invalid_scope, got %v", err)
	}
	if !strings.Contains(err.Error(), "v1") || !strings.Contains(err.Error(), "v2") {
		t.Errorf("message should mention v1/v2 syntax: %s", err)
	}
	// Partly allowed: granted is the intersection.
	c, _ = smart.NewClient(smart.ClientConfig{ClientID: "app", TokenURL: e.tokenURL, Key: rk,
		Scopes: []string{"system/*.rs"}, HTTPClient: e.srv.Client()})
	if _, err := c.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Granted(); !slices.Equal(got, []string{"system/Patient.rs"}) {
		t.Errorf("granted %v, want [system/Patient.rs]", got)
	}
}

func TestClockSkewDetectedAndRetried(t *testing.T) {
	rk, _, rk2, _ := testKeys(t)
	serverClock := newClock()
	serverClock.t = time.Now().Add(10 * time.Minute) // the EHR's clock runs 10 minutes fast
	e := newEHR(t, authserver.Config{Now: serverClock.Now})
	e.register(t, "app", patientScopes, rk)
	var logs bytes.Buffer
	c, _ := smart.NewClient(smart.ClientConfig{ClientID: "app", TokenURL: e.tokenURL, Key: rk, Scopes: patientScopes,
		HTTPClient: e.srv.Client(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	tok, err := c.Token(context.Background())
	if err != nil {
		t.Fatalf("skew retry failed: %v", err)
	}
	if got := e.requests.Load(); got != 2 {
		t.Errorf("%d token requests, want 2 (refused, then retried)", got)
	}
	if !strings.Contains(logs.String(), "clock") {
		t.Errorf("skew not logged: %s", logs.String())
	}
	if strings.Contains(logs.String(), tok) {
		t.Error("the access token appears in the logs")
	}
	// The measured offset is kept: the next fetch succeeds at once.
	c.Invalidate(tok)
	if _, err := c.Token(context.Background()); err != nil || e.requests.Load() != 3 {
		t.Errorf("after invalidate: %v (requests=%d)", err, e.requests.Load())
	}

	// When the retry cannot help (wrong key too), the error names the skew.
	c2, _ := smart.NewClient(smart.ClientConfig{ClientID: "app", TokenURL: e.tokenURL, Key: rk2, Scopes: patientScopes, HTTPClient: e.srv.Client()})
	_, err = c2.Token(context.Background())
	var te *smart.TokenError
	if !errors.As(err, &te) || !te.SkewDetected() {
		t.Fatalf("want a TokenError with skew, got %v", err)
	}
	if te.Skew < 9*time.Minute || te.Skew > 11*time.Minute {
		t.Errorf("skew %s, want ~10m", te.Skew)
	}
	if !strings.Contains(err.Error(), "clock is ") || !strings.Contains(err.Error(), "ahead of") {
		t.Errorf("message: %s", err)
	}
}

func TestDiscoveryViaSmartConfiguration(t *testing.T) {
	_, ek, _, _ := testKeys(t)
	e := newEHR(t, authserver.Config{})
	e.register(t, "app", patientScopes, ek)
	c, err := smart.NewClient(smart.ClientConfig{ClientID: "app", FHIRBaseURL: e.fhirBase, Key: ek, Scopes: patientScopes, HTTPClient: e.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	d := c.Discovery()
	if d == nil || d.Source != smart.SourceSmartConfiguration || d.TokenEndpoint != e.tokenURL {
		t.Fatalf("discovery %+v", d)
	}
	if e.searchPatients(t, tok) != http.StatusOK {
		t.Error("token does not work")
	}
	if got, _ := c.Granted(); !slices.Equal(got, patientScopes) {
		t.Errorf("granted %v", got)
	}
}

func TestDiscoveryViaCapabilityStatementSendsV1(t *testing.T) {
	rk, _, _, _ := testKeys(t)
	e := newEHR(t, authserver.Config{V1Only: true})
	e.setSmartConfig(false) // like a SMART v1 server: only /metadata
	e.register(t, "app", []string{"system/Patient.read"}, rk)
	c, err := smart.NewClient(smart.ClientConfig{ClientID: "app", FHIRBaseURL: e.fhirBase, Key: rk,
		Scopes: []string{"system/Patient.rs"}, HTTPClient: e.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(context.Background())
	if err != nil {
		t.Fatalf("v1-only server refused: %v", err)
	}
	if d := c.Discovery(); d == nil || d.Source != smart.SourceCapabilityStatement {
		t.Fatalf("discovery %+v", d)
	}
	if got, _ := c.Granted(); !slices.Equal(got, []string{"system/Patient.read"}) {
		t.Errorf("granted %v", got)
	}
	if e.searchPatients(t, tok) != http.StatusOK {
		t.Error("token does not work")
	}
	// Without discovery the v2 syntax goes out as configured and a v1-only server refuses it.
	c2, _ := smart.NewClient(smart.ClientConfig{ClientID: "app", TokenURL: e.tokenURL, Key: rk,
		Scopes: []string{"system/Patient.rs"}, HTTPClient: e.srv.Client()})
	var te *smart.TokenError
	if _, err := c2.Token(context.Background()); !errors.As(err, &te) || te.Code != "invalid_scope" {
		t.Errorf("want invalid_scope from a v1-only server, got %v", err)
	}
}

func TestInvalidateAfterServerExpiry(t *testing.T) {
	rk, _, _, _ := testKeys(t)
	e := newEHR(t, authserver.Config{})
	e.register(t, "app", patientScopes, rk)
	c, _ := smart.NewClient(smart.ClientConfig{ClientID: "app", TokenURL: e.tokenURL, Key: rk, Scopes: patientScopes, HTTPClient: e.srv.Client()})
	ctx := context.Background()
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.as.ExpireTokens()
	if got := e.searchPatients(t, tok); got != http.StatusUnauthorized {
		t.Fatalf("expired token: HTTP %d", got)
	}
	c.Invalidate("some-other-token") // must not drop ours
	if again, _ := c.Token(ctx); again != tok {
		t.Fatal("Invalidate dropped a different token")
	}
	c.Invalidate(tok)
	fresh, err := c.Token(ctx)
	if err != nil || fresh == tok {
		t.Fatalf("no fresh token: %v", err)
	}
	if got := e.searchPatients(t, fresh); got != http.StatusOK {
		t.Errorf("fresh token: HTTP %d", got)
	}
}

func TestRefreshFailureKeepsValidToken(t *testing.T) {
	rk, _, _, _ := testKeys(t)
	clk := newClock()
	e := newEHR(t, authserver.Config{Now: clk.Now})
	e.register(t, "app", patientScopes, rk)
	c, _ := smart.NewClient(smart.ClientConfig{ClientID: "app", TokenURL: e.tokenURL, Key: rk, Scopes: patientScopes,
		HTTPClient: e.srv.Client(), Now: clk.Now})
	ctx := context.Background()
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Close() // the token server goes away
	clk.Advance(250 * time.Second)
	if got, err := c.Token(ctx); err != nil || got != tok {
		t.Fatalf("inside the refresh window with the server down: %q %v", got, err)
	}
	clk.Advance(60 * time.Second) // now past expiry
	if _, err := c.Token(ctx); err == nil {
		t.Fatal("an expired token was returned")
	}
}

func TestJKUWithJWKSURL(t *testing.T) {
	_, ek, _, _ := testKeys(t)
	jwks, _ := smart.PublicJWKS(ek)
	keySrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		_, _ = w.Write(jwks)
	}))
	defer keySrv.Close()
	e := newEHR(t, authserver.Config{HTTPClient: keySrv.Client()})
	if err := e.as.RegisterClient(authserver.Client{ID: "app", JWKSURL: keySrv.URL + "/jwks.json", Scopes: patientScopes}); err != nil {
		t.Fatal(err)
	}
	c, _ := smart.NewClient(smart.ClientConfig{ClientID: "app", TokenURL: e.tokenURL, Key: ek, JKU: keySrv.URL + "/jwks.json",
		Scopes: patientScopes, HTTPClient: e.srv.Client()})
	if _, err := c.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	bad, _ := smart.NewClient(smart.ClientConfig{ClientID: "app", TokenURL: e.tokenURL, Key: ek, JKU: keySrv.URL + "/other.json",
		Scopes: patientScopes, HTTPClient: e.srv.Client()})
	var te *smart.TokenError
	if _, err := bad.Token(context.Background()); !errors.As(err, &te) || te.Code != "invalid_client" || !strings.Contains(te.Description, "jku") {
		t.Errorf("jku mismatch: %v", err)
	}
}

// opaqueSigner hides the concrete key type, like an HSM or KMS signer would.
type opaqueSigner struct{ s crypto.Signer }

func (o opaqueSigner) Public() crypto.PublicKey { return o.s.Public() }
func (o opaqueSigner) Sign(r io.Reader, d []byte, opts crypto.SignerOpts) ([]byte, error) {
	return o.s.Sign(r, d, opts)
}

func TestOpaqueSigner(t *testing.T) {
	rk, ek, _, _ := testKeys(t)
	for _, k := range []crypto.Signer{rk, ek} {
		e := newEHR(t, authserver.Config{})
		e.register(t, "app", patientScopes, k)
		c, err := smart.NewClient(smart.ClientConfig{ClientID: "app", TokenURL: e.tokenURL, Key: opaqueSigner{k}, Scopes: patientScopes, HTTPClient: e.srv.Client()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Token(context.Background()); err != nil {
			t.Errorf("opaque %T: %v", k, err)
		}
	}
}

func TestNewClientValidation(t *testing.T) {
	rk, _, _, _ := testKeys(t)
	bad := []smart.ClientConfig{
		{TokenURL: "http://x", Key: rk},
		{ClientID: "a", TokenURL: "http://x"},
		{ClientID: "a", Key: rk},
		{ClientID: "a", TokenURL: "http://x", Key: rk, Algorithm: smart.AlgES384},
		{ClientID: "a", TokenURL: "http://x", Key: rk, Scopes: []string{"system/Patient.rx"}},
		{ClientID: "a", TokenURL: "http://x", Key: rk, Scopes: []string{"two words"}},
	}
	for i, cfg := range bad {
		if _, err := smart.NewClient(cfg); err == nil {
			t.Errorf("config %d accepted", i)
		}
	}
}

func TestTokenErrorMessages(t *testing.T) {
	// Non-OAuth failures and rate limits from a token endpoint.
	status := http.StatusTooManyRequests
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "30")
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte("<html>busy</html>"))
	}))
	defer srv.Close()
	rk, _, _, _ := testKeys(t)
	c, _ := smart.NewClient(smart.ClientConfig{ClientID: "a", TokenURL: srv.URL, Key: rk, Scopes: patientScopes, HTTPClient: srv.Client()})
	_, err := c.Token(context.Background())
	var te *smart.TokenError
	if !errors.As(err, &te) || !te.Retryable() || te.RetryAfter != 30*time.Second || !strings.Contains(err.Error(), "rate limited") {
		t.Errorf("429: %v", err)
	}
	mu.Lock()
	status = http.StatusBadGateway
	mu.Unlock()
	if _, err = c.Token(context.Background()); !errors.As(err, &te) || !te.Retryable() || te.Status != 502 {
		t.Errorf("502: %v", err)
	}
}
