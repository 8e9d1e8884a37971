package epic

import (
	"time"

	"testing"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/vendors/profile"
)

// outcome builds an OperationOutcome from {severity, code, epic detail code, detail system}.
func outcome(issues ...[4]string) *fhir.OperationOutcome {
	oo := &fhir.OperationOutcome{ResourceType: "OperationOutcome"}
	for _, is := range issues {
		i := fhir.OutcomeIssue{Severity: is[0], Code: is[1]}
		if is[2] != "" {
			sys := is[3]
			if sys == "" {
				sys = ErrorSystem
			}
			i.Details = &fhir.CodeableConcept{Coding: []fhir.Coding{{System: sys, Code: is[2]}}}
		}
		oo.Issue = append(oo.Issue, i)
	}
	return oo
}

func TestClassifyOutcome(t *testing.T) {
	p := New()
	for _, tc := range []struct {
		name   string
		status int
		oo     *fhir.OperationOutcome
		kind   profile.ErrorKind
		code   string
	}{
		{"nil", 400, nil, profile.KindUnknown, ""},
		{"4101 no results", 200, outcome([4]string{"warning", "processing", "4101", ""}), profile.KindEmpty, "4101"},
		{"4101 under another system", 404, outcome([4]string{"warning", "processing", "4101", "urn:oid:9.9"}), profile.KindEmpty, "4101"},
		{"4101 beside a real error", 400, outcome([4]string{"warning", "processing", "4101", ""}, [4]string{"error", "required", "4111", ""}), profile.KindInvalid, "4111"},
		{"4101 beside an uncoded error", 400, outcome([4]string{"warning", "processing", "4101", ""}, [4]string{"error", "invalid", "", ""}), profile.KindInvalid, ""},
		{"4111", 400, outcome([4]string{"error", "required", "4111", ""}), profile.KindInvalid, "4111"},
		{"4113", 400, outcome([4]string{"error", "processing", "4113", ""}), profile.KindSearchExpired, "4113"},
		{"4127", 400, outcome([4]string{"error", "processing", "4127", ""}), profile.KindTooManyResults, "4127"},
		{"4130", 403, outcome([4]string{"error", "suppressed", "4130", ""}), profile.KindForbidden, "4130"},
		{"4131", 403, outcome([4]string{"error", "suppressed", "4131", ""}), profile.KindForbidden, "4131"},
		{"4134", 403, outcome([4]string{"error", "suppressed", "4134", ""}), profile.KindForbidden, "4134"},
		{"59141", 400, outcome([4]string{"error", "duplicate", "59141", ""}), profile.KindConflict, "59141"},
		{"59187", 400, outcome([4]string{"error", "not-found", "59187", ""}), profile.KindInvalid, "59187"},
		{"unknown code falls back", 400, outcome([4]string{"error", "not-found", "99999", ""}), profile.KindNotFound, "99999"},
		{"no code falls back", 422, outcome([4]string{"error", "business-rule", "", ""}), profile.KindInvalid, ""},
	} {
		kind, code := p.ClassifyOutcome(tc.status, tc.oo)
		if kind != tc.kind || code != tc.code {
			t.Errorf("%s: got %v %q, want %v %q", tc.name, kind, code, tc.kind, tc.code)
		}
	}
}

func TestPageSizesAndQuirks(t *testing.T) {
	p := New()
	if p.Name() != "epic" {
		t.Fatal(p.Name())
	}
	if d, m := p.PageSize("Patient"); d != 100 || m != 100 {
		t.Fatalf("Patient page size %d %d", d, m)
	}
	if d, m := p.PageSize("Observation"); d != 100 || m != 1000 {
		t.Fatalf("Observation page size %d %d", d, m)
	}
	if v := p.SearchParams("Observation", fhirTime(), 100); v.Has("_sort") || v.Get("_lastUpdated") == "" {
		t.Fatalf("params %v", v)
	}
	areas := map[string]bool{}
	for _, q := range p.Quirks() {
		areas[q.Area] = true
	}
	for _, a := range []string{"identifier", "paging", "search", "extension"} {
		if !areas[a] {
			t.Errorf("no %s quirk recorded", a)
		}
	}
}

func fhirTime() (t time.Time) { return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) }
