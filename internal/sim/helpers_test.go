package sim

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/smart"
	"github.com/mediflow/mediflow/internal/smart/authserver"

	"github.com/mediflow/mediflow/internal/testutil/repo"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

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

const testClient = "test-client"

type fixture struct {
	t   testing.TB
	sim *Sim
	srv *httptest.Server
	key crypto.Signer
	hc  *http.Client
}

var (
	keyOnce sync.Once
	testKey crypto.Signer
	keyErr  error
)

func sharedKey(t testing.TB) crypto.Signer {
	keyOnce.Do(func() { testKey, keyErr = smart.GenerateKey(smart.AlgES384) })
	if keyErr != nil {
		t.Fatal(keyErr)
	}
	return testKey
}

// newFixture starts cfg's simulator on a loopback httptest server and
// registers a client (all scopes) with every tenant.
func newFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	key := sharedKey(t)
	jwks, err := smart.PublicJWKS(key)
	if err != nil {
		t.Fatal(err)
	}
	for i := range cfg.Tenants {
		cfg.Tenants[i].Clients = append(cfg.Tenants[i].Clients,
			authserver.Client{ID: testClient, JWKS: jwks, Scopes: []string{"system/*.cruds", "system/*.read", "system/Patient.rs"}})
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	s.SetRoot(srv.URL)
	return &fixture{t: t, sim: s, srv: srv, key: key, hc: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{}}}
}

// token gets an access token for tenant with the given scopes through the
// real SMART client (signed ES384 assertion).
func (f *fixture) token(tenant string, scopes ...string) string {
	f.t.Helper()
	if len(scopes) == 0 {
		scopes = []string{"system/*.cruds"}
	}
	c, err := smart.NewClient(smart.ClientConfig{
		ClientID: testClient, TokenURL: f.sim.TokenURL(tenant), Key: f.key, Scopes: scopes,
		HTTPClient: f.hc, Now: f.sim.cfg.Now,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	tok, err := c.Token(context.Background())
	if err != nil {
		f.t.Fatalf("token for %s: %v", tenant, err)
	}
	return tok
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (f *fixture) do(method, url, token string, body []byte, hdr map[string]string) resp {
	f.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := f.hc.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

func (f *fixture) get(url, token string) resp { return f.do(http.MethodGet, url, token, nil, nil) }

func bundleOf(t testing.TB, b []byte) *fhir.Bundle {
	t.Helper()
	var bu fhir.Bundle
	if err := json.Unmarshal(b, &bu); err != nil {
		t.Fatalf("not a bundle: %v\n%.300s", err, b)
	}
	if bu.ResourceType != "Bundle" {
		t.Fatalf("resourceType %q, want Bundle: %.300s", bu.ResourceType, b)
	}
	return &bu
}

func outcomeOf(t testing.TB, r resp) *fhir.OperationOutcome {
	t.Helper()
	oo, ok := fhir.ParseOutcome(r.body)
	if !ok {
		t.Fatalf("status %d body is not an OperationOutcome: %.300s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Errorf("OperationOutcome content type %q", ct)
	}
	return oo
}

// walk follows next links from url and returns every entry's resource.
func (f *fixture) walk(url, token string, each func(page int)) (ids []string, bodies []json.RawMessage, total int) {
	f.t.Helper()
	for page := 0; url != ""; page++ {
		r := f.get(url, token)
		if r.status != http.StatusOK {
			f.t.Fatalf("page %d: status %d: %.300s", page, r.status, r.body)
		}
		bu := bundleOf(f.t, r.body)
		if bu.Total != nil {
			if page > 0 && *bu.Total != total {
				f.t.Fatalf("total changed between pages: %d then %d", total, *bu.Total)
			}
			total = *bu.Total
		}
		for _, e := range bu.Entry {
			if e.Search != nil && e.Search.Mode == "outcome" {
				continue
			}
			h, err := fhir.ParseHeader(e.Resource)
			if err != nil {
				f.t.Fatal(err)
			}
			ids = append(ids, h.ID)
			bodies = append(bodies, e.Resource)
		}
		if each != nil {
			each(page)
		}
		url = bu.NextLink()
	}
	return ids, bodies, total
}

// sharedPath returns ../shared/<rel>, skipping the test when it is absent.
func sharedPath(t testing.TB, rel string) string { return repo.Shared(t, rel) }

func smallData(patients int) *gen.Options {
	return &gen.Options{Patients: patients, PastDays: 10, FutureDays: 10}
}
