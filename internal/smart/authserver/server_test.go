package authserver

import (
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mediflow/mediflow/internal/smart"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var (
	keysOnce sync.Once
	rsaKey   crypto.Signer
	ecKey    crypto.Signer
)

func keys(t *testing.T) (crypto.Signer, crypto.Signer) {
	t.Helper()
	keysOnce.Do(func() {
		rsaKey, _ = smart.GenerateKey(smart.AlgRS384)
		ecKey, _ = smart.GenerateKey(smart.AlgES384)
	})
	if rsaKey == nil || ecKey == nil {
		t.Fatal("key generation failed")
	}
	return rsaKey, ecKey
}

type fixture struct {
	s   *Server
	srv *httptest.Server
	clk *clock
	url string
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := &fixture{clk: &clock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}}
	cfg.Now = f.clk.Now
	f.s = New(cfg)
	f.srv = httptest.NewServer(f.s)
	t.Cleanup(f.srv.Close)
	f.url = f.srv.URL + "/oauth2/token"
	f.s.SetTokenURL(f.url)
	return f
}

func (f *fixture) register(t *testing.T, id string, scopes []string, ks ...crypto.Signer) {
	t.Helper()
	jwks, err := smart.PublicJWKS(ks...)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.s.RegisterClient(Client{ID: id, JWKS: jwks, Scopes: scopes}); err != nil {
		t.Fatal(err)
	}
}

// claims returns valid assertion claims for client id at the fixture's time.
func (f *fixture) claims(id string) map[string]any {
	now := f.clk.Now()
	return map[string]any{"iss": id, "sub": id, "aud": f.url, "iat": now.Unix(), "exp": now.Add(4 * time.Minute).Unix(),
		"jti": rand.Text()}
}

// sign signs claims with key; extra header fields are added (kid defaults to
// the key's thumbprint).
func sign(t *testing.T, key crypto.Signer, claims map[string]any, hdr map[string]any) string {
	t.Helper()
	alg, _ := smart.AlgorithmFor(key)
	kid, _ := smart.KeyID(key)
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid)
	for k, v := range hdr {
		opts = opts.WithHeader(jose.HeaderKey(k), v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type answer struct {
	status      int
	AccessToken string `json:"access_token"`
	Scope       string `json:"scope"`
	ExpiresIn   int    `json:"expires_in"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func (f *fixture) post(t *testing.T, form url.Values) answer {
	t.Helper()
	resp, err := f.srv.Client().Post(f.url, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatalf("answer is not JSON: %v", err)
	}
	a.status = resp.StatusCode
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Error("token answers must not be cached")
	}
	return a
}

func tokenForm(assertion, scope string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
		"client_assertion_type": {smart.ClientAssertionType}, "client_assertion": {assertion}}
}

func wantClientError(t *testing.T, a answer, contains string) {
	t.Helper()
	if a.status != http.StatusUnauthorized || a.Error != "invalid_client" || !strings.Contains(a.Description, contains) {
		t.Errorf("want 401 invalid_client mentioning %q, got %d %q %q", contains, a.status, a.Error, a.Description)
	}
}

func TestValidAssertion(t *testing.T) {
	rk, ek := keys(t)
	f := newFixture(t, Config{TokenTTL: 90 * time.Second})
	f.register(t, "app", []string{"system/Patient.read"}, rk, ek)
	for _, k := range []crypto.Signer{rk, ek} {
		a := f.post(t, tokenForm(sign(t, k, f.claims("app"), nil), "system/Patient.read"))
		if a.status != 200 || a.AccessToken == "" || a.Scope != "system/Patient.read" || a.ExpiresIn != 90 {
			t.Fatalf("%T: %+v", k, a)
		}
	}
}

func TestReplayedJTI(t *testing.T) {
	rk, _ := keys(t)
	f := newFixture(t, Config{})
	f.register(t, "app", []string{"system/Patient.rs"}, rk)
	as := sign(t, rk, f.claims("app"), nil)
	if a := f.post(t, tokenForm(as, "system/Patient.rs")); a.status != 200 {
		t.Fatalf("first use: %+v", a)
	}
	wantClientError(t, f.post(t, tokenForm(as, "system/Patient.rs")), "jti")
	// A fresh jti with otherwise identical claims is fine.
	c := f.claims("app")
	c["jti"] = "another"
	if a := f.post(t, tokenForm(sign(t, rk, c, nil), "system/Patient.rs")); a.status != 200 {
		t.Fatalf("fresh jti: %+v", a)
	}
}

func TestClaimChecks(t *testing.T) {
	rk, _ := keys(t)
	f := newFixture(t, Config{})
	f.register(t, "app", []string{"system/Patient.rs"}, rk)
	f.register(t, "other", []string{"system/Patient.rs"}, rk)
	now := f.clk.Now()
	cases := []struct {
		name   string
		modify func(map[string]any)
		want   string
	}{
		{"aud mismatch", func(c map[string]any) { c["aud"] = "https://elsewhere.example/token" }, "aud"},
		{"aud missing", func(c map[string]any) { delete(c, "aud") }, "aud"},
		{"exp more than 5 min ahead", func(c map[string]any) {
			c["exp"] = now.Add(10 * time.Minute).Unix()
			c["iat"] = now.Add(4 * time.Minute).Unix()
		}, "5m0s in the future"},
		{"lifetime over 5 min", func(c map[string]any) {
			c["iat"] = now.Add(-3 * time.Minute).Unix()
			c["exp"] = now.Add(4 * time.Minute).Unix()
		}, "more than 5m0s"},
		{"exp missing", func(c map[string]any) { delete(c, "exp") }, "exp"},
		{"expired", func(c map[string]any) {
			c["exp"] = now.Add(-time.Minute).Unix()
			c["iat"] = now.Add(-3 * time.Minute).Unix()
		}, "expired"},
		{"iat in the future", func(c map[string]any) { c["iat"] = now.Add(2 * time.Minute).Unix() }, "iat"},
		{"nbf in the future", func(c map[string]any) { c["nbf"] = now.Add(2 * time.Minute).Unix() }, "nbf"},
		{"jti missing", func(c map[string]any) { delete(c, "jti") }, "jti"},
		{"sub differs", func(c map[string]any) { c["sub"] = "other" }, "sub"},
		{"iss unknown", func(c map[string]any) { c["iss"] = "nobody"; c["sub"] = "nobody" }, "not registered"},
		{"iss missing", func(c map[string]any) { delete(c, "iss") }, "iss"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := f.claims("app")
			tc.modify(c)
			wantClientError(t, f.post(t, tokenForm(sign(t, rk, c, nil), "system/Patient.rs")), tc.want)
		})
	}
	// Small skews inside the leeway pass; an aud with a trailing slash or as an array passes.
	c := f.claims("app")
	c["iat"] = now.Add(20 * time.Second).Unix()
	c["aud"] = []string{"https://other.example", f.url + "/"}
	if a := f.post(t, tokenForm(sign(t, rk, c, nil), "system/Patient.rs")); a.status != 200 {
		t.Errorf("leeway/aud array: %+v", a)
	}
	// client_id, when sent, must be the iss.
	form := tokenForm(sign(t, rk, f.claims("app"), nil), "system/Patient.rs")
	form.Set("client_id", "other")
	wantClientError(t, f.post(t, form), "client_id")
}

func TestAlgorithmsRejected(t *testing.T) {
	rk, _ := keys(t)
	f := newFixture(t, Config{})
	f.register(t, "app", []string{"system/Patient.rs"}, rk)
	kid, _ := smart.KeyID(rk)
	b64 := func(v any) string { j, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(j) }

	none := b64(map[string]string{"alg": "none", "typ": "JWT", "kid": kid}) + "." + b64(f.claims("app")) + "."
	wantClientError(t, f.post(t, tokenForm(none, "system/Patient.rs")), `"none"`)

	// HS256 keyed with the RSA public key bytes: the classic confusion attack.
	pubJWKS, _ := smart.PublicJWKS(rk)
	hs, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pubJWKS}, (&jose.SignerOptions{}).WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	hsTok, _ := jwt.Signed(hs).Claims(f.claims("app")).Serialize()
	wantClientError(t, f.post(t, tokenForm(hsTok, "system/Patient.rs")), `"HS256"`)

	// RS256 with the registered RSA key is not RS384.
	rs256, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: rk}, (&jose.SignerOptions{}).WithHeader("kid", kid))
	rsTok, _ := jwt.Signed(rs256).Claims(f.claims("app")).Serialize()
	wantClientError(t, f.post(t, tokenForm(rsTok, "system/Patient.rs")), `"RS256"`)

	// Header alg ES384 on an RSA key: no key of that kid fits ES384.
	_, ek := keys(t)
	es, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: ek}, (&jose.SignerOptions{}).WithHeader("kid", kid))
	esTok, _ := jwt.Signed(es).Claims(f.claims("app")).Serialize()
	wantClientError(t, f.post(t, tokenForm(esTok, "system/Patient.rs")), "fits ES384")

	wantClientError(t, f.post(t, tokenForm("not.a-jwt", "system/Patient.rs")), "compact JWS")
	// No kid at all.
	nokid, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS384, Key: rk}, nil)
	nkTok, _ := jwt.Signed(nokid).Claims(f.claims("app")).Serialize()
	wantClientError(t, f.post(t, tokenForm(nkTok, "system/Patient.rs")), "kid")
}

func TestKeySelection(t *testing.T) {
	rk, ek := keys(t)
	f := newFixture(t, Config{})
	// Two keys registered under the same kid: ambiguous, refused.
	jwks := []byte(`{"keys":[` + jwkJSON(t, rk, "dup") + `,` + jwkJSON(t, rk, "dup") + `]}`)
	if err := f.s.RegisterClient(Client{ID: "dup", JWKS: jwks, Scopes: []string{"system/Patient.rs"}}); err != nil {
		t.Fatal(err)
	}
	wantClientError(t, f.post(t, tokenForm(sign(t, rk, f.claims("dup"), map[string]any{"kid": "dup"}), "system/Patient.rs")), "more than one")
	// An RSA key and an EC key may share a kid: kty decides.
	jwks = []byte(`{"keys":[` + jwkJSON(t, rk, "k1") + `,` + jwkJSON(t, ek, "k1") + `]}`)
	if err := f.s.RegisterClient(Client{ID: "shared", JWKS: jwks, Scopes: []string{"system/Patient.rs"}}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []crypto.Signer{rk, ek} {
		if a := f.post(t, tokenForm(sign(t, k, f.claims("shared"), map[string]any{"kid": "k1"}), "system/Patient.rs")); a.status != 200 {
			t.Errorf("%T with shared kid: %+v", k, a)
		}
	}
}

func jwkJSON(t *testing.T, k crypto.Signer, kid string) string {
	t.Helper()
	m, err := smart.PublicJWK(k)
	if err != nil {
		t.Fatal(err)
	}
	m["kid"] = kid
	b, _ := json.Marshal(m)
	return string(b)
}

func TestRegisterClientValidation(t *testing.T) {
	rk, _ := keys(t)
	s := New(Config{TokenURL: "https://x/token"})
	pub, _ := smart.PublicJWKS(rk)
	priv, _ := jose.JSONWebKey{Key: rk, KeyID: "p"}.MarshalJSON()
	bad := []Client{
		{JWKS: pub},
		{ID: "a"},
		{ID: "a", JWKS: []byte("{nope")},
		{ID: "a", JWKS: []byte(`{"keys":[` + string(priv) + `]}`)},
		{ID: "a", JWKS: []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)},
		{ID: "a", JWKS: pub, Scopes: []string{"system/Patient.rx"}},
	}
	for i, c := range bad {
		if err := s.RegisterClient(c); err == nil {
			t.Errorf("client %d accepted", i)
		}
	}
	if err := s.RegisterClient(Client{ID: "a", JWKS: pub, Scopes: []string{"system/Patient.rs", "openid"}}); err != nil {
		t.Error(err)
	}
}

func TestJKU(t *testing.T) {
	rk, _ := keys(t)
	pub, _ := smart.PublicJWKS(rk)
	var fetches atomic.Int64
	keySrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		_, _ = w.Write(pub)
	}))
	defer keySrv.Close()
	f := newFixture(t, Config{HTTPClient: keySrv.Client()})
	jwksURL := keySrv.URL + "/jwks.json"
	if err := f.s.RegisterClient(Client{ID: "byurl", JWKSURL: jwksURL, Scopes: []string{"system/Patient.rs"}}); err != nil {
		t.Fatal(err)
	}
	f.register(t, "inline", []string{"system/Patient.rs"}, rk)
	if a := f.post(t, tokenForm(sign(t, rk, f.claims("byurl"), map[string]any{"jku": jwksURL}), "system/Patient.rs")); a.status != 200 {
		t.Fatalf("matching jku: %+v", a)
	}
	if a := f.post(t, tokenForm(sign(t, rk, f.claims("byurl"), nil), "system/Patient.rs")); a.status != 200 {
		t.Fatalf("no jku, registered URL: %+v", a)
	}
	wantClientError(t, f.post(t, tokenForm(sign(t, rk, f.claims("byurl"), map[string]any{"jku": keySrv.URL + "/evil.json"}), "system/Patient.rs")), "jku")
	wantClientError(t, f.post(t, tokenForm(sign(t, rk, f.claims("inline"), map[string]any{"jku": jwksURL}), "system/Patient.rs")), "jku")
	if n := fetches.Load(); n != 2 {
		t.Errorf("%d JWKS fetches, want 2 (no Cache-Control: not cached; mismatched jku: never fetched)", n)
	}
}

func TestJWKSURLCache(t *testing.T) {
	rk, ek := keys(t)
	var (
		fetches atomic.Int64
		mu      sync.Mutex
		served  = []crypto.Signer{rk}
		cc      = "public, max-age=60"
	)
	keySrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		mu.Lock()
		defer mu.Unlock()
		body, _ := smart.PublicJWKS(served...)
		w.Header().Set("Cache-Control", cc)
		_, _ = w.Write(body)
	}))
	defer keySrv.Close()
	f := newFixture(t, Config{HTTPClient: keySrv.Client()})
	if err := f.s.RegisterClient(Client{ID: "app", JWKSURL: keySrv.URL + "/k", Scopes: []string{"system/Patient.rs"}}); err != nil {
		t.Fatal(err)
	}
	ok := func(k crypto.Signer) {
		t.Helper()
		if a := f.post(t, tokenForm(sign(t, k, f.claims("app"), nil), "system/Patient.rs")); a.status != 200 {
			t.Fatalf("%+v", a)
		}
	}
	ok(rk)
	ok(rk)
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d fetches within max-age, want 1", n)
	}
	f.clk.Advance(61 * time.Second)
	ok(rk)
	if n := fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after max-age, want 2", n)
	}
	// Key rotation: an unknown kid makes a cached set (older than a few seconds) be fetched again.
	mu.Lock()
	served = []crypto.Signer{rk, ek}
	mu.Unlock()
	f.clk.Advance(10 * time.Second)
	ok(ek)
	if n := fetches.Load(); n != 3 {
		t.Fatalf("%d fetches after rotation, want 3", n)
	}
	// no-store: fetched every time.
	mu.Lock()
	cc = "no-store"
	mu.Unlock()
	f.clk.Advance(2 * time.Minute)
	ok(rk)
	ok(rk)
	if n := fetches.Load(); n != 5 {
		t.Fatalf("%d fetches with no-store, want 5", n)
	}
	// An unreachable JWKS URL is an invalid_client answer.
	keySrv.Close()
	f.clk.Advance(time.Second)
	wantClientError(t, f.post(t, tokenForm(sign(t, rk, f.claims("app"), nil), "system/Patient.rs")), "JWKS")
}

func TestScopes(t *testing.T) {
	rk, _ := keys(t)
	f := newFixture(t, Config{})
	f.register(t, "app", []string{"system/Patient.read", "system/Observation.rs", "system/DocumentReference.cu", "openid"}, rk)
	cases := []struct{ req, granted, err string }{
		{"system/Patient.read", "system/Patient.read", ""},
		{"system/Patient.rs", "system/Patient.rs", ""},
		{"system/*.rs", "system/Patient.rs system/Observation.rs", ""},
		{"system/*.*", "system/Patient.read system/Observation.read system/DocumentReference.cu", ""},
		{"system/Patient.read system/Encounter.read", "system/Patient.read", ""},
		{"system/Observation.read", "system/Observation.read", ""},
		{"system/DocumentReference.write", "system/DocumentReference.cu", ""},
		{"openid system/Patient.r", "openid system/Patient.r", ""},
		{"system/Encounter.read", "", "invalid_scope"},
		{"launch/patient", "", "invalid_scope"},
		{"system/Patient.rx", "", "invalid_scope"},
		{"", "", "invalid_scope"},
	}
	for _, c := range cases {
		a := f.post(t, tokenForm(sign(t, rk, f.claims("app"), nil), c.req))
		if c.err != "" {
			if a.status != http.StatusBadRequest || a.Error != c.err {
				t.Errorf("%q: want %s, got %d %+v", c.req, c.err, a.status, a)
			}
			continue
		}
		if a.status != 200 || a.Scope != c.granted {
			t.Errorf("%q: granted %q (HTTP %d %s), want %q", c.req, a.Scope, a.status, a.Description, c.granted)
		}
	}
}

func TestV1Only(t *testing.T) {
	rk, _ := keys(t)
	f := newFixture(t, Config{V1Only: true})
	f.register(t, "app", []string{"system/Patient.rs", "system/Observation.r"}, rk)
	a := f.post(t, tokenForm(sign(t, rk, f.claims("app"), nil), "system/Patient.read system/Observation.read"))
	if a.status != 200 || a.Scope != "system/Patient.read" {
		t.Errorf("v1 request: %+v", a)
	}
	a = f.post(t, tokenForm(sign(t, rk, f.claims("app"), nil), "system/Patient.rs"))
	if a.status != 400 || a.Error != "invalid_scope" || !strings.Contains(a.Description, "v1") {
		t.Errorf("v2 request to a v1-only server: %+v", a)
	}
	var doc struct {
		Capabilities []string `json:"capabilities"`
		Token        string   `json:"token_endpoint"`
	}
	if err := json.Unmarshal(f.s.SmartConfiguration(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Token != f.url || strings.Contains(strings.Join(doc.Capabilities, " "), "permission-v2") {
		t.Errorf("smart-configuration %+v", doc)
	}
}

func TestRequestShape(t *testing.T) {
	rk, _ := keys(t)
	f := newFixture(t, Config{})
	f.register(t, "app", []string{"system/Patient.rs"}, rk)
	form := tokenForm(sign(t, rk, f.claims("app"), nil), "system/Patient.rs")
	form.Set("grant_type", "authorization_code")
	if a := f.post(t, form); a.status != 400 || a.Error != "unsupported_grant_type" {
		t.Errorf("grant type: %+v", a)
	}
	form = tokenForm(sign(t, rk, f.claims("app"), nil), "system/Patient.rs")
	form.Set("client_assertion_type", "urn:something-else")
	wantClientError(t, f.post(t, form), "client_assertion_type")
	form = tokenForm("", "system/Patient.rs")
	wantClientError(t, f.post(t, form), "client_assertion is missing")

	resp, err := f.srv.Client().Get(f.url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	resp, err = f.srv.Client().Post(f.url, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("JSON body: %d", resp.StatusCode)
	}
	// The Date header carries the server's (simulated) clock.
	resp, _ = f.srv.Client().Get(f.url)
	resp.Body.Close()
	if d, _ := http.ParseTime(resp.Header.Get("Date")); !d.Equal(f.clk.Now()) {
		t.Errorf("Date %v, want %v", d, f.clk.Now())
	}
}

func TestAuthenticate(t *testing.T) {
	rk, _ := keys(t)
	f := newFixture(t, Config{TokenTTL: time.Minute})
	f.register(t, "app", []string{"system/Patient.rs", "system/DocumentReference.cu"}, rk)
	a := f.post(t, tokenForm(sign(t, rk, f.claims("app"), nil), "system/Patient.rs system/DocumentReference.cu"))
	if a.status != 200 {
		t.Fatal(a)
	}
	req := func(authz string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/fhir/Patient", nil)
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		return r
	}
	status := func(err error) int {
		var ae *AuthError
		if !errors.As(err, &ae) {
			t.Fatalf("want *AuthError, got %v", err)
		}
		return ae.Status
	}
	g, err := f.s.Authenticate(req("Bearer "+a.AccessToken), "Patient", smart.OpSearch)
	if err != nil || g.ClientID != "app" || len(g.Scopes) != 2 {
		t.Fatalf("valid token: %+v %v", g, err)
	}
	if _, err := f.s.Authenticate(req("bearer "+a.AccessToken), "DocumentReference", smart.OpCreate); err != nil {
		t.Errorf("lower-case scheme / create: %v", err)
	}
	if _, err := f.s.Authenticate(req(""), "Patient", smart.OpRead); status(err) != 401 {
		t.Error("no header")
	}
	if _, err := f.s.Authenticate(req("Basic abc"), "Patient", smart.OpRead); status(err) != 401 {
		t.Error("basic auth")
	}
	if _, err := f.s.Authenticate(req("Bearer nope"), "Patient", smart.OpRead); status(err) != 401 {
		t.Error("unknown token")
	}
	_, err = f.s.Authenticate(req("Bearer "+a.AccessToken), "Patient", smart.OpUpdate)
	if status(err) != 403 || !strings.Contains(err.(*AuthError).WWWAuthenticate(), "insufficient_scope") {
		t.Errorf("update without scope: %v", err)
	}
	if _, err := f.s.Authenticate(req("Bearer "+a.AccessToken), "Observation", smart.OpRead); status(err) != 403 {
		t.Error("other resource type")
	}
	if _, err := f.s.Authenticate(req("Bearer "+a.AccessToken), "", 0); err != nil {
		t.Errorf("token-only check: %v", err)
	}
	f.clk.Advance(61 * time.Second)
	_, err = f.s.Authenticate(req("Bearer "+a.AccessToken), "Patient", smart.OpRead)
	if status(err) != 401 || !strings.Contains(err.Error(), "expired") {
		t.Errorf("after TTL: %v", err)
	}
}

func TestExpireTokens(t *testing.T) {
	rk, _ := keys(t)
	f := newFixture(t, Config{})
	f.register(t, "app", []string{"system/Patient.rs"}, rk)
	a := f.post(t, tokenForm(sign(t, rk, f.claims("app"), nil), "system/Patient.rs"))
	r := httptest.NewRequest(http.MethodGet, "/fhir/Patient", nil)
	r.Header.Set("Authorization", "Bearer "+a.AccessToken)
	if _, err := f.s.Authenticate(r, "Patient", smart.OpRead); err != nil {
		t.Fatal(err)
	}
	f.s.ExpireTokens()
	if _, err := f.s.Authenticate(r, "Patient", smart.OpRead); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("after ExpireTokens: %v", err)
	}
	b := f.post(t, tokenForm(sign(t, rk, f.claims("app"), nil), "system/Patient.rs"))
	r.Header.Set("Authorization", "Bearer "+b.AccessToken)
	if _, err := f.s.Authenticate(r, "Patient", smart.OpRead); err != nil {
		t.Errorf("new token after ExpireTokens: %v", err)
	}
}

func TestConcurrentTokenRequests(t *testing.T) {
	_, ek := keys(t)
	f := newFixture(t, Config{})
	f.register(t, "app", []string{"system/Patient.rs"}, ek)
	var wg sync.WaitGroup
	var okCount atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			form := tokenForm(sign(t, ek, f.claims("app"), nil), "system/Patient.rs")
			resp, err := f.srv.Client().Post(f.url, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode == 200 {
				okCount.Add(1)
			}
		}()
	}
	wg.Wait()
	if okCount.Load() != 16 {
		t.Errorf("%d of 16 succeeded", okCount.Load())
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	k, err := smart.GenerateKey(smart.AlgES384)
	if err != nil {
		b.Fatal(err)
	}
	s := New(Config{TokenURL: "https://sim.example/token"})
	jwks, _ := smart.PublicJWKS(k)
	if err := s.RegisterClient(Client{ID: "app", JWKS: jwks, Scopes: []string{"system/*.rs"}}); err != nil {
		b.Fatal(err)
	}
	c, _ := smart.NewClient(smart.ClientConfig{ClientID: "app", TokenURL: "https://sim.example/token", Key: k, Scopes: []string{"system/*.rs"},
		HTTPClient: &http.Client{Transport: handlerTransport{s}}})
	tok, err := c.Token(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/fhir/Patient", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Authenticate(r, "Patient", smart.OpSearch); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// handlerTransport serves requests with a handler in-process.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	w := httptest.NewRecorder()
	t.h.ServeHTTP(w, r)
	return w.Result(), nil
}
