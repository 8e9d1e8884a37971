package generic

import (
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/vendors/profile"
)

func oo(issues ...[2]string) *fhir.OperationOutcome {
	o := &fhir.OperationOutcome{ResourceType: "OperationOutcome"}
	for _, is := range issues {
		o.Issue = append(o.Issue, fhir.OutcomeIssue{Severity: is[0], Code: is[1]})
	}
	return o
}

func TestClassifyStandard(t *testing.T) {
	p := New(Options{})
	for _, tc := range []struct {
		name   string
		status int
		oo     *fhir.OperationOutcome
		want   profile.ErrorKind
	}{
		{"nil", 400, nil, profile.KindUnknown},
		{"invalid", 400, oo([2]string{"error", "invalid"}), profile.KindInvalid},
		{"throttled", 400, oo([2]string{"error", "throttled"}), profile.KindRateLimited},
		{"too-costly", 422, oo([2]string{"error", "too-costly"}), profile.KindTooManyResults},
		{"login", 400, oo([2]string{"error", "login"}), profile.KindAuth},
		{"deleted", 400, oo([2]string{"error", "deleted"}), profile.KindNotFound},
		{"duplicate", 400, oo([2]string{"error", "duplicate"}), profile.KindConflict},
		{"transient", 400, oo([2]string{"error", "transient"}), profile.KindServer},
		{"5xx left to status", 500, oo([2]string{"error", "invalid"}), profile.KindUnknown},
		{"401 left to status", 401, oo([2]string{"error", "invalid"}), profile.KindUnknown},
		{"429 left to status", 429, oo([2]string{"error", "invalid"}), profile.KindUnknown},
		{"warning only in 200", 200, oo([2]string{"warning", "informational"}), profile.KindEmpty},
		{"warning only in 400", 400, oo([2]string{"warning", "informational"}), profile.KindUnknown},
		{"fatal wins", 400, oo([2]string{"error", "invalid"}, [2]string{"fatal", "too-costly"}), profile.KindTooManyResults},
		{"first error", 400, oo([2]string{"warning", "throttled"}, [2]string{"error", "not-found"}, [2]string{"error", "invalid"}), profile.KindNotFound},
	} {
		got, code := p.ClassifyOutcome(tc.status, tc.oo)
		if got != tc.want || code != "" {
			t.Errorf("%s: %v %q, want %v", tc.name, got, code, tc.want)
		}
	}
}

func TestSearchParams(t *testing.T) {
	since := time.Date(2025, 1, 2, 3, 4, 5, 600e6, time.FixedZone("x", 3600))
	v := New(Options{}).SearchParams("Patient", since, 50)
	if v.Get("_lastUpdated") != "ge2025-01-02T02:04:05.600Z" || v.Get("_count") != "50" || v.Has("_sort") {
		t.Fatalf("params %v", v)
	}
	if v := New(Options{}).SearchParams("Patient", time.Time{}, 0); len(v) != 0 {
		t.Fatalf("full search params %v", v)
	}
	if v := New(Options{SortByLastUpdated: true}).SearchParams("Patient", since, 10); v.Get("_sort") != "_lastUpdated" {
		t.Fatalf("sorted params %v", v)
	}
	if d, m := New(Options{}).PageSize("Patient"); d != 100 || m != 1000 {
		t.Fatalf("page size %d %d", d, m)
	}
	if d, m := New(Options{DefaultPageSize: 20, MaxPageSize: 50}).PageSize("Patient"); d != 20 || m != 50 {
		t.Fatalf("page size %d %d", d, m)
	}
}

func TestSearchScopeAndPatientParams(t *testing.T) {
	p := New(Options{})
	if s := p.SearchScope("Observation"); s != profile.TypeLevel || s.String() != "type" {
		t.Fatalf("scope %v", s)
	}
	since := time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)
	v := p.PatientSearchParams("Observation", "p1", since, time.Now(), 5)
	if v.Get("patient") != "p1" || v.Get("_lastUpdated") != "ge2025-01-02T00:00:00.000Z" || v.Get("_count") != "5" {
		t.Fatalf("params %v", v)
	}
	for s, want := range map[profile.Scope]string{profile.PerPatient: "per-patient", profile.NotSearchable: "not-searchable", profile.Scope(9): "unknown"} {
		if s.String() != want {
			t.Errorf("%d: %q", s, s.String())
		}
	}
}
