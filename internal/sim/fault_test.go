package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/sim/fault"
)

func TestFaultModes(t *testing.T) {
	f := twoTenants(t, nil)
	tok := f.token("acme")
	base := f.sim.BaseURL("acme")
	set := func(fs ...fault.Fault) {
		t.Helper()
		if err := f.sim.SetFaults("acme", fs); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("latency", func(t *testing.T) {
		set(fault.Fault{Endpoint: "Patient", Kind: fault.Latency, Latency: fault.Duration(150 * time.Millisecond)})
		start := time.Now()
		if r := f.get(base+"/Patient?_count=1", tok); r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Fatalf("answered after %v, want >= 150ms", d)
		}
		start = time.Now()
		f.get(base+"/Observation?_count=1", tok) // other endpoint: no delay
		if d := time.Since(start); d > 140*time.Millisecond {
			t.Errorf("Observation delayed %v", d)
		}
	})
	t.Run("429", func(t *testing.T) {
		set(fault.Fault{Endpoint: "Patient", Kind: fault.TooManyRequests, Every: 2, RetryAfter: fault.Duration(3 * time.Second)})
		if r := f.get(base+"/Patient?_count=1", tok); r.status != 200 {
			t.Fatalf("1st request: %d", r.status)
		}
		r := f.get(base+"/Patient?_count=1", tok)
		if r.status != 429 || r.header.Get("Retry-After") != "3" || outcomeOf(t, r).Issue[0].Code != "throttled" {
			t.Fatalf("2nd request: %d Retry-After=%q", r.status, r.header.Get("Retry-After"))
		}
	})
	t.Run("500", func(t *testing.T) {
		set(fault.Fault{Endpoint: "*", Kind: fault.ServerError, Limit: 1})
		if r := f.get(base+"/Patient?_count=1", tok); r.status != 500 {
			t.Fatalf("status %d", r.status)
		}
		if r := f.get(base+"/Patient?_count=1", tok); r.status != 200 {
			t.Fatalf("after the limit: %d", r.status)
		}
	})
	t.Run("503", func(t *testing.T) {
		set(fault.Fault{Endpoint: "metadata", Kind: fault.Unavailable})
		r := f.get(base+"/metadata", "")
		if r.status != 503 || r.header.Get("Retry-After") != "1" || outcomeOf(t, r).Issue[0].Code != "transient" {
			t.Fatalf("metadata: %d Retry-After=%q", r.status, r.header.Get("Retry-After"))
		}
	})
	t.Run("503 on token endpoint", func(t *testing.T) {
		set(fault.Fault{Endpoint: "token", Kind: fault.Unavailable, RetryAfter: fault.Duration(2 * time.Second)})
		r := f.do("POST", f.sim.TokenURL("acme"), "", []byte("grant_type=client_credentials"), map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
		if r.status != 503 || r.header.Get("Retry-After") != "2" {
			t.Fatalf("token: %d", r.status)
		}
	})
	t.Run("drop", func(t *testing.T) {
		set(fault.Fault{Endpoint: "Patient", Kind: fault.Drop})
		hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
		req, _ := http.NewRequest("GET", base+"/Patient", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := hc.Do(req)
		if err == nil {
			res.Body.Close()
			t.Fatalf("got an answer (%d), want a dropped connection", res.StatusCode)
		}
		if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
			t.Logf("transport error (accepted): %v", err)
		}
	})
	t.Run("token expiry mid-paging", func(t *testing.T) {
		set(fault.Fault{Endpoint: "Observation", Kind: fault.TokenExpiry, Limit: 1})
		tok := f.token("acme")
		r := f.get(base+"/Observation?_count=5", tok)
		next := bundleOf(t, r.body).NextLink()
		if r.status != 200 || next == "" {
			t.Fatalf("first page: %d", r.status)
		}
		r = f.get(next, tok)
		if r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_token") {
			t.Fatalf("next page after expiry: %d %q", r.status, r.header.Get("WWW-Authenticate"))
		}
		// A new token continues the same search from the same next link.
		if r := f.get(next, f.token("acme")); r.status != 200 {
			t.Fatalf("next page with a new token: %d", r.status)
		}
	})
	t.Run("page expiry", func(t *testing.T) {
		tok := f.token("acme") // the token-expiry case invalidated earlier tokens
		set(fault.Fault{Endpoint: "Observation", Kind: fault.PageExpiry, Every: 2})
		r := f.get(base+"/Observation?_count=5", tok)
		next := bundleOf(t, r.body).NextLink()
		r = f.get(next, tok) // 1st next page: served
		if r.status != 200 {
			t.Fatalf("page 2: %d", r.status)
		}
		r = f.get(bundleOf(t, r.body).NextLink(), tok)
		if r.status != http.StatusGone {
			t.Fatalf("page 3: %d, want 410 (session expired)", r.status)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		tok := f.token("acme") // the token-expiry case invalidated earlier tokens
		set(fault.Fault{Endpoint: "Observation", Kind: fault.Malformed, Every: 1})
		r := f.get(base+"/Observation?_count=5", tok)
		if r.status != 200 || json.Valid(r.body) || !bytes.HasPrefix(r.body, []byte(`{"resourceType":"Bundle"`)) {
			t.Fatalf("status %d, valid JSON %v", r.status, json.Valid(r.body))
		}
		if r := f.get(base+"/Patient?_count=5", tok); !json.Valid(r.body) {
			t.Fatal("Patient page garbled by an Observation fault")
		}
	})
	t.Run("rate is reproducible", func(t *testing.T) {
		tok := f.token("acme") // the token-expiry case invalidated earlier tokens
		count := func() int {
			set(fault.Fault{Endpoint: "Patient", Kind: fault.ServerError, Rate: 0.3})
			n := 0
			for range 40 {
				if f.get(base+"/Patient?_count=1", tok).status == 500 {
					n++
				}
			}
			return n
		}
		a := count()
		if a == 0 || a == 40 {
			t.Fatalf("rate 0.3 fired %d of 40", a)
		}
		st := f.sim.Faults("acme")
		if st[0].Seen != 40 || st[0].Fired != a {
			t.Fatalf("counters %+v, want seen 40 fired %d", st[0], a)
		}
	})
	set()
}

func TestAdminFaultsEndpoint(t *testing.T) {
	f := twoTenants(t, nil)
	u := f.srv.URL + "/_sim/acme/faults"
	body := `[{"endpoint":"Patient","kind":"503","every":1,"retryAfter":"4s"}]`
	r := f.do("PUT", u, "", []byte(body), map[string]string{"Content-Type": "application/json"})
	if r.status != 200 {
		t.Fatalf("PUT faults: %d %s", r.status, r.body)
	}
	tok := f.token("acme")
	if r := f.get(f.sim.BaseURL("acme")+"/Patient", tok); r.status != 503 || r.header.Get("Retry-After") != "4" {
		t.Fatalf("after PUT: %d", r.status)
	}
	r = f.get(u, "")
	var st []fault.Status
	if err := json.Unmarshal(r.body, &st); err != nil || len(st) != 1 || st[0].Fired != 1 || st[0].Kind != fault.Unavailable {
		t.Fatalf("GET faults: %v %s", err, r.body)
	}
	for _, bad := range []string{`{"kind":"503"}`, `[{"kind":"teapot"}]`, `[{"kind":"latency"}]`, `[{"kind":"500","rate":2}]`, `[{"kind":"500","color":"red"}]`} {
		if r := f.do("PUT", u, "", []byte(bad), nil); r.status != 400 {
			t.Errorf("PUT %s: %d, want 400", bad, r.status)
		}
	}
	if r := f.do("PUT", u, "", []byte(`[]`), nil); r.status != 200 {
		t.Fatal(r.status)
	}
	if r := f.get(f.sim.BaseURL("acme")+"/Patient?_count=1", tok); r.status != 200 {
		t.Fatalf("after clearing: %d", r.status)
	}
	// Other admin actions.
	if r := f.get(f.srv.URL+"/_sim/acme/counts", ""); r.status != 200 || !strings.Contains(string(r.body), `"Patient":40`) {
		t.Errorf("counts: %d %s", r.status, r.body)
	}
	if r := f.do("POST", f.srv.URL+"/_sim/acme/tick?n=3", "", nil, nil); r.status != 200 || !strings.Contains(string(r.body), `"changes":3`) {
		t.Errorf("tick: %d %s", r.status, r.body)
	}
	if r := f.do("POST", f.srv.URL+"/_sim/acme/expire-tokens", "", nil, nil); r.status != 204 {
		t.Errorf("expire-tokens: %d", r.status)
	}
	if r := f.get(f.sim.BaseURL("acme")+"/Patient?_count=1", tok); r.status != 401 {
		t.Errorf("token still valid after expire-tokens: %d", r.status)
	}
	if r := f.get(f.srv.URL+"/_sim/nobody/faults", ""); r.status != 404 {
		t.Errorf("unknown tenant: %d", r.status)
	}
	// Admin routes can be disabled.
	closed := newFixture(t, Config{DisableAdmin: true, Tenants: []TenantConfig{{ID: "x", Data: smallData(2)}}})
	if r := closed.get(closed.srv.URL+"/_sim/x/faults", ""); r.status != 404 {
		t.Errorf("admin disabled: %d", r.status)
	}
}
