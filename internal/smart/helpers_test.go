package smart_test

import (
	"crypto"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/smart"
	"github.com/mediflow/mediflow/internal/smart/authserver"
)

// fakeClock is a settable clock shared by client and server in a test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// ehr is a tiny EHR on loopback: the authserver's token endpoint, discovery
// documents and one protected FHIR search route.
type ehr struct {
	as       *authserver.Server
	srv      *httptest.Server
	tokenURL string
	fhirBase string
	requests atomic.Int64 // token requests

	mu        sync.Mutex
	smartCfg  bool          // serve .well-known/smart-configuration
	tokenWait time.Duration // delay before answering token requests
}

func newEHR(t *testing.T, cfg authserver.Config) *ehr {
	t.Helper()
	e := &ehr{smartCfg: true}
	e.as = authserver.New(cfg)
	mux := http.NewServeMux()
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		e.requests.Add(1)
		e.mu.Lock()
		wait := e.tokenWait
		e.mu.Unlock()
		time.Sleep(wait)
		e.as.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /fhir/.well-known/smart-configuration", func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		serve := e.smartCfg
		e.mu.Unlock()
		if !serve {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(e.as.SmartConfiguration())
	})
	mux.HandleFunc("GET /fhir/metadata", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = w.Write([]byte(`{"resourceType":"CapabilityStatement","rest":[{"mode":"server","security":{"extension":[{"url":"` +
			smart.OAuthURIsExtension + `","extension":[{"url":"token","valueUri":"` + e.tokenURL + `"}]}]}}]}`))
	})
	mux.HandleFunc("GET /fhir/Patient", func(w http.ResponseWriter, r *http.Request) {
		if _, err := e.as.Authenticate(r, "Patient", smart.OpSearch); err != nil {
			ae := err.(*authserver.AuthError)
			w.Header().Set("WWW-Authenticate", ae.WWWAuthenticate())
			w.WriteHeader(ae.Status)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = w.Write([]byte(`{"resourceType":"Bundle","type":"searchset"}`))
	})
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.tokenURL = e.srv.URL + "/token"
	e.fhirBase = e.srv.URL + "/fhir"
	e.as.SetTokenURL(e.tokenURL)
	return e
}

func (e *ehr) setSmartConfig(on bool) {
	e.mu.Lock()
	e.smartCfg = on
	e.mu.Unlock()
}

func (e *ehr) setTokenWait(d time.Duration) {
	e.mu.Lock()
	e.tokenWait = d
	e.mu.Unlock()
}

// register registers a client with the public JWKS of keys.
func (e *ehr) register(t *testing.T, id string, scopes []string, keys ...crypto.Signer) {
	t.Helper()
	jwks, err := smart.PublicJWKS(keys...)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.as.RegisterClient(authserver.Client{ID: id, JWKS: jwks, Scopes: scopes}); err != nil {
		t.Fatal(err)
	}
}

// searchPatients calls the protected route with token and returns the status.
func (e *ehr) searchPatients(t *testing.T, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.fhirBase+"/Patient", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

var (
	keyOnce          sync.Once
	rsaKey, ecKey    crypto.Signer
	rsaKey2, ecKey2  crypto.Signer
	keyGenerationErr error
)

// testKeys returns keys generated once per test binary (RSA generation is slow).
func testKeys(t *testing.T) (rsa1, ec1, rsa2, ec2 crypto.Signer) {
	t.Helper()
	keyOnce.Do(func() {
		for _, p := range []struct {
			dst *crypto.Signer
			alg string
		}{{&rsaKey, smart.AlgRS384}, {&ecKey, smart.AlgES384}, {&rsaKey2, smart.AlgRS384}, {&ecKey2, smart.AlgES384}} {
			k, err := smart.GenerateKey(p.alg)
			if err != nil {
				keyGenerationErr = err
				return
			}
			*p.dst = k
		}
	})
	if keyGenerationErr != nil {
		t.Fatal(keyGenerationErr)
	}
	return rsaKey, ecKey, rsaKey2, ecKey2
}
