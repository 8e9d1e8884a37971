package api

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/freshness"
)

// Freshness is served per practice to the apps that may read it, and on
// the status snapshot.
func TestFreshnessEndpoint(t *testing.T) {
	tr := freshness.New(freshness.Options{Now: func() time.Time { return testNow },
		SLO: func(_, class string) time.Duration { return map[string]time.Duration{"scheduling": time.Minute}[class] }})
	for i := 1; i <= 10; i++ {
		tr.Observe("alpha", "scheduling", testNow.Add(-time.Duration(i)*10*time.Second), testNow)
	}
	tr.Observe("beta", "clinical", testNow.Add(-time.Second), testNow)
	e := newEnv(t, openTestStore(t), func(c *Config) { c.Freshness = tr.Snapshot })

	r := e.get("/v1/practices/alpha/freshness", keyAlpha)
	if r.status != 200 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	var got struct {
		Practice string
		Classes  []struct {
			Class      string
			Count      int
			P50Seconds float64
			P99Seconds float64
			SLOSeconds float64 `json:"sloSeconds"`
			WithinSLO  float64 `json:"withinSlo"`
			Compliant  bool
		}
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Practice != "alpha" || len(got.Classes) != 1 {
		t.Fatalf("answer %s", r.body)
	}
	c := got.Classes[0]
	// Lags 10 s..100 s: 6 of 10 within the minute.
	if c.Class != "scheduling" || c.Count != 10 || c.P50Seconds != 50 || c.P99Seconds != 100 || c.SLOSeconds != 60 || c.WithinSLO != 0.6 || c.Compliant {
		t.Errorf("scheduling freshness %+v", c)
	}
	// Another practice's key is refused; beta's numbers are not in alpha's.
	if r := e.get("/v1/practices/alpha/freshness", keyBeta); r.status != 403 && r.status != 404 {
		t.Errorf("beta's key read alpha's freshness: %d", r.status)
	}
	st := e.get("/v1/status", "")
	var status Status
	if err := json.Unmarshal(st.body, &status); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range status.Practices {
		if p.ID == "beta" && len(p.Freshness) == 1 && p.Freshness[0].Class == "clinical" {
			found = true
		}
	}
	if !found {
		t.Errorf("status lacks beta's freshness: %s", st.body)
	}
}

// Without a tracker the endpoint answers an empty list, not an error.
func TestFreshnessEndpointEmpty(t *testing.T) {
	e := newEnv(t, openTestStore(t))
	r := e.get("/v1/practices/alpha/freshness", keyAlpha)
	if r.status != 200 || string(r.body) != "{\"practice\":\"alpha\",\"classes\":[]}\n" && string(r.body) != "{\"practice\":\"alpha\",\"classes\":[]}" {
		t.Errorf("%d %q", r.status, r.body)
	}
}
