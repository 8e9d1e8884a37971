package obs

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("metrics status %d", resp.StatusCode)
	}
	return string(b)
}

func TestMetricsExposed(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m := NewMetrics(WithClock(func() time.Time { return now }))
	m.RunFinished("clinic-a", "epic-main", "succeeded")
	m.RunFinished("clinic-a", "epic-main", "succeeded")
	m.ResourcesSynced("clinic-a", "Patient", OutcomeNew, 7)
	m.ResourcesSynced("clinic-a", "Patient", OutcomeUnchanged, 0) // no-op
	m.SyncError("throttled")
	m.SyncSucceeded("clinic-a", "demographics", now.Add(-90*time.Second))
	m.SyncSucceeded("clinic-a", "demographics", now.Add(-200*time.Second)) // older: ignored
	m.PageFetched("clinic-a", "epic-main", "Patient", 120*time.Millisecond)
	m.HTTPRequest("api", "GET /fhir/{practice}/{type}", "GET", 200, 3*time.Millisecond)
	m.FreshnessLag("clinic-a", "scheduling", 1500*time.Millisecond)
	m.FreshnessLag("clinic-a", "scheduling", 40*time.Second)

	out := scrape(t, m)
	for _, want := range []string{
		`mediflow_sync_runs_total{connection="epic-main",practice="clinic-a",status="succeeded"} 2`,
		`mediflow_sync_resources_total{outcome="new",practice="clinic-a",resource_type="Patient"} 7`,
		`mediflow_sync_errors_total{kind="throttled"} 1`,
		`mediflow_sync_lag_seconds{class="demographics",practice="clinic-a"} 90`,
		`mediflow_sync_pages_total{connection="epic-main",practice="clinic-a",resource_type="Patient"} 1`,
		`mediflow_sync_page_fetch_seconds_count{connection="epic-main",practice="clinic-a"} 1`,
		`mediflow_http_requests_total{code="200",method="GET",route="GET /fhir/{practice}/{type}",server="api"} 1`,
		`mediflow_http_request_duration_seconds_count{method="GET",route="GET /fhir/{practice}/{type}",server="api"} 1`,
		`mediflow_freshness_lag_seconds_count{class="scheduling",practice="clinic-a"} 2`,
		`mediflow_freshness_lag_seconds_bucket{class="scheduling",practice="clinic-a",le="2.5"} 1`,
		`mediflow_freshness_lag_seconds_sum{class="scheduling",practice="clinic-a"} 41.5`,
		`go_goroutines`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(out, `outcome="unchanged"`) {
		t.Errorf("zero add created a series")
	}
}

func TestNilMetricsIsSafe(t *testing.T) {
	var m *Metrics
	m.RunFinished("a", "b", "c")
	m.ResourcesSynced("a", "b", "c", 1)
	m.SyncError("x")
	m.SyncSucceeded("a", "b", time.Now())
	m.PageFetched("a", "b", "c", time.Second)
	m.HTTPRequest("a", "b", "c", 200, time.Second)
	m.FreshnessLag("a", "b", time.Second)
}

func TestMiddlewareLogsPatternNotPath(t *testing.T) {
	var logs bytes.Buffer
	m := NewMetrics()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fhir/{practice}/Patient/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /boom", func(w http.ResponseWriter, r *http.Request) { panic("Quimbyfield") })
	var panicked bool
	h := HTTPMiddleware(HTTPConfig{
		Logger: NewLogger(&logs, slog.LevelInfo, "json"), Metrics: m, Server: "api",
		OnPanic: func(w http.ResponseWriter, r *http.Request) {
			panicked = true
			w.WriteHeader(http.StatusInternalServerError)
		},
	})(mux)
	srv := httptest.NewServer(h)
	defer srv.Close()

	for _, p := range []string{"/fhir/clinic-zz/Patient/secret-id-42?family=Quimbyfield", "/boom", "/nowhere-9931"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if !panicked {
		t.Error("OnPanic not called")
	}
	out := logs.String()
	for _, bad := range []string{"secret-id-42", "clinic-zz", "Quimbyfield", "nowhere-9931"} {
		if strings.Contains(out, bad) {
			t.Errorf("log holds %q:\n%s", bad, out)
		}
	}
	for _, want := range []string{`"route":"GET /fhir/{practice}/Patient/{id}"`, `"status":418`, `"route":"unmatched"`,
		`"status":404`, `"panic_type":"string"`, `"status":500`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	met := scrape(t, m)
	for _, want := range []string{
		`mediflow_http_requests_total{code="418",method="GET",route="GET /fhir/{practice}/Patient/{id}",server="api"} 1`,
		`mediflow_http_requests_total{code="500",method="GET",route="GET /boom",server="api"} 1`,
		`mediflow_http_requests_total{code="404",method="GET",route="unmatched",server="api"} 1`,
	} {
		if !strings.Contains(met, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(met, "secret-id-42") {
		t.Error("metrics hold a raw path")
	}
}
