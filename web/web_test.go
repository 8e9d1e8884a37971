package web_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/api"
	"github.com/mediflow/mediflow/internal/freshness"
	"github.com/mediflow/mediflow/web"
)

func TestStatusTemplateRendersStatus(t *testing.T) {
	tmpl, err := web.StatusTemplate()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	run := &api.RunStatus{ID: 7, Connection: "epic-prod", Trigger: "schedule", Status: "succeeded",
		StartedAt: now.Add(-95 * time.Second), FinishedAt: now.Add(-90 * time.Second), Fetched: 120, New: 100, Changed: 15, Unchanged: 5}
	st := api.Status{
		GeneratedAt: now, Version: "1.2.3", StartedAt: now.Add(-time.Hour),
		Practices: []api.PracticeStatus{
			{ID: "north", Name: "North Clinic <&>", Resources: map[string]int{"Patient": 40, "Appointment": 2},
				Connections: []api.ConnectionStatus{{Name: "epic-prod", Vendor: "epic", BaseURLHost: "fhir.north.example", State: "ok", LastRun: run}},
				LastRun:     run,
				Freshness: []freshness.Stat{
					{Class: "scheduling", Count: 12, P50: 850 * time.Millisecond, P95: 12400 * time.Millisecond, P99: 190 * time.Second, SLO: time.Minute, WithinSLO: 0.987, Compliant: false},
					{Class: "reference", Count: 3, P50: 2 * time.Hour, P95: 2 * time.Hour, P99: 2 * time.Hour},
				}},
			{ID: "south", Errors: []string{"token endpoint answered invalid_client"},
				Connections: []api.ConnectionStatus{{Name: "generic", Vendor: "generic", State: "error", LastError: "token endpoint answered invalid_client"}}},
		},
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, st); err != nil {
		t.Fatal(err)
	}
	html := buf.String()
	for _, want := range []string{
		"North Clinic &lt;&amp;&gt;", "fhir.north.example", "epic-prod", "state-ok", "1m ago", "Patient", ">40<",
		"<span class=\"count\">42</span>", "fetched 120 · new 100 · changed 15 · unchanged 5 · failed 0",
		"invalid_client", "state-error", "no run yet",
		"<td>scheduling</td>", ">850ms<", ">12.4s<", ">3m10s<", ">1m<", ">98.7%<", ">2h<", ">none<", "version 1.2.3", `href="/metrics"`, `href="/healthz"`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(html, "<script") {
		t.Error("the page should not need scripts")
	}
}

func TestEmptyStatus(t *testing.T) {
	tmpl, err := web.StatusTemplate()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, api.Status{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "No practices configured") {
		t.Error("empty state missing")
	}
}

func TestStaticServesStylesheet(t *testing.T) {
	srv := httptest.NewServer(http.StripPrefix("/static/", web.Static()))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/static/style.css")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), ".practice") {
		t.Fatalf("stylesheet: %d %s", resp.StatusCode, b)
	}
}
