package oraclehealth

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/testutil/repo"
	"github.com/mediflow/mediflow/internal/vendors/profile"
)

var now = time.Date(2025, 6, 1, 12, 30, 15, 500e6, time.UTC)

func TestSearchParams(t *testing.T) {
	p := New(Options{})
	since := time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)
	if v := p.SearchParams("Observation", since, 50); v.Get("_lastUpdated") != "ge2025-05-01T00:00:00.000Z" || v.Get("_count") != "50" {
		t.Fatalf("Observation %v", v)
	}
	// Types whose search has no _lastUpdated are read in full.
	for _, rt := range []string{"Condition", "DocumentReference", "Coverage", "Practitioner", "Appointment"} {
		if v := p.SearchParams(rt, since, 10); v.Has("_lastUpdated") {
			t.Errorf("%s: %v", rt, v)
		}
	}
	v := p.PatientSearchParams("Appointment", "12724066", since, now, 10)
	if v.Get("patient") != "12724066" {
		t.Fatalf("appointment params %v", v)
	}
	if d := v["date"]; len(d) != 2 || d[0] != "ge2025-05-02T12:30:15.000Z" || d[1] != "lt2026-06-01T12:30:15.000Z" {
		t.Fatalf("appointment date window %v", d)
	}
	if v := p.PatientSearchParams("Coverage", "1", since, now, 10); v.Get("patient") != "1" || v.Has("date") {
		t.Fatalf("coverage params %v", v)
	}
	from, to := New(Options{AppointmentPast: time.Hour, AppointmentFuture: 2 * time.Hour}).AppointmentWindow(now)
	if !from.Equal(time.Date(2025, 6, 1, 11, 30, 15, 0, time.UTC)) || !to.Equal(time.Date(2025, 6, 1, 14, 30, 15, 0, time.UTC)) {
		t.Fatal(from, to)
	}
}

func TestPageSizesAndScopes(t *testing.T) {
	p := New(Options{})
	for rt, want := range map[string][2]int{"Patient": {20, 200}, "Observation": {50, 200}, "DocumentReference": {10, 100}, "Condition": {20, 200}} {
		if d, m := p.PageSize(rt); d != want[0] || m != want[1] {
			t.Errorf("%s: %d %d", rt, d, m)
		}
	}
	for rt, want := range map[string]profile.Scope{
		"Patient": profile.NotSearchable, "Schedule": profile.NotSearchable, "Slot": profile.NotSearchable,
		"Practitioner": profile.TypeLevel, "Location": profile.TypeLevel, "Organization": profile.TypeLevel,
		"Appointment": profile.PerPatient, "Coverage": profile.PerPatient, "DocumentReference": profile.PerPatient, "Observation": profile.PerPatient,
	} {
		if got := p.SearchScope(rt); got != want {
			t.Errorf("%s: %v, want %v", rt, got, want)
		}
	}
}

// TestAgreesWithCapabilityStatement checks the profile against Oracle
// Health's published CapabilityStatement: per-patient types offer patient,
// _lastUpdated is sent only where offered.
func TestAgreesWithCapabilityStatement(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repo.Shared(t, "fixtures/vendors/oracle-health"), "r4_auth_metadata.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cs struct {
		Rest []struct {
			Resource []struct {
				Type        string `json:"type"`
				SearchParam []struct {
					Name string `json:"name"`
				} `json:"searchParam"`
			} `json:"resource"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(b, &cs); err != nil {
		t.Fatal(err)
	}
	p := New(Options{})
	checked := 0
	for _, r := range cs.Rest[0].Resource {
		params := map[string]bool{}
		for _, sp := range r.SearchParam {
			params[sp.Name] = true
		}
		if len(params) == 0 {
			continue
		}
		checked++
		if v := p.SearchParams(r.Type, now, 10); v.Has("_lastUpdated") != params["_lastUpdated"] {
			t.Errorf("%s: _lastUpdated sent %v, offered %v", r.Type, v.Has("_lastUpdated"), params["_lastUpdated"])
		}
		if p.SearchScope(r.Type) == profile.PerPatient && !params["patient"] {
			t.Errorf("%s is per-patient but the vendor has no patient parameter", r.Type)
		}
		if r.Type == "Appointment" && !params["date"] {
			t.Error("Appointment without date")
		}
	}
	if checked < 30 {
		t.Fatalf("only %d types checked", checked)
	}
}

func TestClassifyOutcome(t *testing.T) {
	p := New(Options{})
	for _, tc := range []struct {
		status int
		oo     *fhir.OperationOutcome
		want   profile.ErrorKind
	}{
		{409, fhir.NewOutcome("error", "processing", "stale"), profile.KindConflict},
		{409, nil, profile.KindConflict},
		{422, fhir.NewOutcome("error", "business-rule", "rule"), profile.KindInvalid},
		{422, fhir.NewOutcome("error", "not-supported", ""), profile.KindInvalid},
		{422, fhir.NewOutcome("error", "too-costly", "over 1000"), profile.KindTooManyResults},
		{400, fhir.NewOutcome("error", "invalid", "no supported search parameters"), profile.KindInvalid},
		{403, fhir.NewOutcome("error", "forbidden", "tenant not valid"), profile.KindUnknown}, // the status decides
		{500, nil, profile.KindUnknown},
	} {
		if k, code := p.ClassifyOutcome(tc.status, tc.oo); k != tc.want || code != "" {
			t.Errorf("%d %v: %v %q, want %v", tc.status, tc.oo, k, code, tc.want)
		}
	}
	areas := map[string]bool{}
	for _, q := range p.Quirks() {
		areas[q.Area] = true
	}
	for _, a := range []string{"paging", "search", "coding"} {
		if !areas[a] {
			t.Errorf("no %s quirk", a)
		}
	}
}
