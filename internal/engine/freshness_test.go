package engine

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/obs"
)

// Changes synced after the first load are measured: the freshness API, the
// status JSON and /metrics show them per data class, against the class's
// objective; the first load is not measured.
func TestEngineMeasuresFreshness(t *testing.T) {
	s := startSim(t)
	cfg := testConfig(t, s.BaseURL("clinic"))
	ctx := context.Background()
	eng, err := New(ctx, cfg, Options{Logger: obs.NewLogger(io.Discard, 0, "json")})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	srv := httptest.NewServer(eng.Handler())
	defer srv.Close()
	get := func(path string) []byte {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+strings.Repeat("k", 40))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		return b
	}
	if err := eng.SyncAll(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	var f struct {
		Classes []struct {
			Class      string
			Count      int
			P50Seconds float64
			SLOSeconds float64 `json:"sloSeconds"`
		}
	}
	if err := json.Unmarshal(get("/v1/practices/clinic/freshness"), &f); err != nil || len(f.Classes) != 0 {
		t.Fatalf("after the first load: %+v %v", f, err)
	}
	time.Sleep(10 * time.Millisecond)
	changes, err := s.Tick("clinic", 20)
	if err != nil {
		t.Fatal(err)
	}
	appts := 0
	for _, c := range changes {
		if c.ResourceType == "Appointment" {
			appts++
		}
	}
	if appts == 0 {
		t.Fatal("no appointment changed: the test would prove nothing")
	}
	if err := eng.SyncAll(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(get("/v1/practices/clinic/freshness"), &f); err != nil {
		t.Fatal(err)
	}
	var sched *struct {
		Class      string
		Count      int
		P50Seconds float64
		SLOSeconds float64 `json:"sloSeconds"`
	}
	for i := range f.Classes {
		if f.Classes[i].Class == "scheduling" {
			sched = &f.Classes[i]
		}
	}
	if sched == nil || sched.Count < appts || sched.SLOSeconds <= 0 || sched.P50Seconds < 0 {
		t.Fatalf("scheduling freshness %+v, want at least %d changes with an SLO", f.Classes, appts)
	}
	metrics := string(get("/metrics"))
	if !strings.Contains(metrics, `mediflow_freshness_lag_seconds_count{class="scheduling",practice="clinic"}`) {
		t.Error("/metrics lacks the scheduling freshness histogram")
	}
	if !strings.Contains(string(get("/v1/status")), `"class":"scheduling"`) {
		t.Error("status lacks the freshness")
	}
}
