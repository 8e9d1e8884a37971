package smart_test

// Cross-checks with an independent JWT implementation (golang-jwt/jwt/v5):
// it must accept the assertions our client signs, and our authorization
// server must accept assertions it signs.

import (
	"context"
	"crypto"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/mediflow/mediflow/internal/smart"
	"github.com/mediflow/mediflow/internal/smart/authserver"
)

func TestPeerVerifiesOurAssertion(t *testing.T) {
	rk, ek, _, _ := testKeys(t)
	for _, tc := range []struct {
		alg string
		key crypto.Signer
	}{{smart.AlgRS384, rk}, {smart.AlgES384, ek}} {
		t.Run(tc.alg, func(t *testing.T) {
			var (
				mu   sync.Mutex
				form url.Values
			)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_ = r.ParseForm()
				mu.Lock()
				form = r.PostForm
				mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"access_token":"t","token_type":"Bearer","expires_in":"300","scope":"system/Patient.rs"}`))
			}))
			defer srv.Close()
			tokenURL := srv.URL + "/oauth2/token"
			c, err := smart.NewClient(smart.ClientConfig{ClientID: "peer-app", TokenURL: tokenURL, Key: tc.key,
				JKU: "https://app.example/jwks.json", Scopes: []string{"system/Patient.rs", "system/Observation.rs"}, HTTPClient: srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Token(context.Background()); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if form.Get("grant_type") != "client_credentials" || form.Get("client_assertion_type") != smart.ClientAssertionType ||
				form.Get("scope") != "system/Patient.rs system/Observation.rs" {
				t.Errorf("form: grant_type=%q assertion_type=%q scope=%q", form.Get("grant_type"), form.Get("client_assertion_type"), form.Get("scope"))
			}
			var claims gojwt.RegisteredClaims
			tok, err := gojwt.ParseWithClaims(form.Get("client_assertion"), &claims,
				func(*gojwt.Token) (any, error) { return tc.key.Public(), nil },
				gojwt.WithValidMethods([]string{tc.alg}), gojwt.WithAudience(tokenURL), gojwt.WithIssuer("peer-app"),
				gojwt.WithSubject("peer-app"), gojwt.WithExpirationRequired(), gojwt.WithIssuedAt())
			if err != nil {
				t.Fatalf("golang-jwt rejects our assertion: %v", err)
			}
			kid, _ := smart.KeyID(tc.key)
			if tok.Header["kid"] != kid || tok.Header["typ"] != "JWT" || tok.Header["jku"] != "https://app.example/jwks.json" || tok.Header["alg"] != tc.alg {
				t.Errorf("header %v", tok.Header)
			}
			if claims.ID == "" {
				t.Error("no jti")
			}
			if life := claims.ExpiresAt.Sub(claims.IssuedAt.Time); life <= 0 || life > 5*time.Minute {
				t.Errorf("assertion lifetime %s", life)
			}
			// expires_in sent as a string is understood.
			if _, exp := c.Granted(); time.Until(exp) < 4*time.Minute {
				t.Errorf("expires %s", exp)
			}
		})
	}
}

func TestServerAcceptsPeerAssertion(t *testing.T) {
	rk, ek, _, _ := testKeys(t)
	for _, tc := range []struct {
		method gojwt.SigningMethod
		key    crypto.Signer
	}{{gojwt.SigningMethodRS384, rk}, {gojwt.SigningMethodES384, ek}} {
		t.Run(tc.method.Alg(), func(t *testing.T) {
			e := newEHR(t, authserver.Config{})
			e.register(t, "peer-app", patientScopes, tc.key)
			kid, _ := smart.KeyID(tc.key)
			now := time.Now()
			tok := gojwt.NewWithClaims(tc.method, gojwt.RegisteredClaims{
				Issuer: "peer-app", Subject: "peer-app", Audience: gojwt.ClaimStrings{e.tokenURL},
				ExpiresAt: gojwt.NewNumericDate(now.Add(3 * time.Minute)), IssuedAt: gojwt.NewNumericDate(now), ID: "peer-jti-1",
			})
			tok.Header["kid"] = kid
			signed, err := tok.SignedString(tc.key)
			if err != nil {
				t.Fatal(err)
			}
			form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.rs"},
				"client_assertion_type": {smart.ClientAssertionType}, "client_assertion": {signed}}
			resp, err := e.srv.Client().Post(e.tokenURL, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var ans struct {
				AccessToken string `json:"access_token"`
				TokenType   string `json:"token_type"`
				ExpiresIn   int    `json:"expires_in"`
				Scope       string `json:"scope"`
				Error       string `json:"error_description"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&ans)
			if resp.StatusCode != http.StatusOK || ans.AccessToken == "" || ans.TokenType != "bearer" || ans.ExpiresIn != 300 || ans.Scope != "system/Patient.rs" {
				t.Fatalf("HTTP %d %+v", resp.StatusCode, ans)
			}
			if e.searchPatients(t, ans.AccessToken) != http.StatusOK {
				t.Error("issued token does not work")
			}
		})
	}
}
