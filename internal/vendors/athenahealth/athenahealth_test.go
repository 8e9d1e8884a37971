package athenahealth

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

func TestSearchParamsDateOnlyAndPractice(t *testing.T) {
	p := New("195900")
	if p.Name() != Name || p.PracticeID() != "195900" {
		t.Fatal(p.Name(), p.PracticeID())
	}
	for _, tc := range []struct {
		since time.Time
		want  string
	}{
		// One day before the UTC date of since, whatever the offset of since.
		{time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), "ge2025-05-31"},
		{time.Date(2025, 6, 1, 23, 59, 59, 0, time.UTC), "ge2025-05-31"},
		{time.Date(2025, 6, 1, 22, 0, 0, 0, time.FixedZone("EDT", -4*3600)), "ge2025-06-01"}, // 02:00Z on June 2nd
		{time.Date(2025, 3, 1, 5, 0, 0, 0, time.UTC), "ge2025-02-28"},
	} {
		v := p.SearchParams("Patient", tc.since, 50)
		if got := v.Get("_lastUpdated"); got != tc.want {
			t.Errorf("since %v: _lastUpdated %q, want %q", tc.since, got, tc.want)
		}
		if v.Get("ah-practice") != "Organization/a-1.Practice-195900" || v.Get("_count") != "50" {
			t.Errorf("params %v", v)
		}
	}
	if v := p.SearchParams("Patient", time.Time{}, 0); len(v) != 1 || v.Get("ah-practice") == "" {
		t.Fatalf("full search params %v", v)
	}
	// Types without _lastUpdated are read in full.
	if v := p.SearchParams("Practitioner", time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), 10); v.Has("_lastUpdated") {
		t.Fatalf("Practitioner params %v", v)
	}
	v := p.PatientSearchParams("Observation", "a-195900.E-12", time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC), time.Now(), 10)
	if v.Get("patient") != "a-195900.E-12" || v.Get("_lastUpdated") != "ge2025-05-31" || v.Get("ah-practice") == "" {
		t.Fatalf("per-patient params %v", v)
	}
	if v := New("").SearchParams("Patient", time.Time{}, 10); v.Has("ah-practice") {
		t.Fatalf("no practice: %v", v)
	}
}

func TestSearchScope(t *testing.T) {
	p := New("1")
	for rt, want := range map[string]profile.Scope{
		"Patient": profile.TypeLevel, "Practitioner": profile.TypeLevel, "Location": profile.TypeLevel, "Organization": profile.TypeLevel,
		"Observation": profile.PerPatient, "Condition": profile.PerPatient, "Coverage": profile.PerPatient,
		"DocumentReference": profile.PerPatient, "Encounter": profile.PerPatient, "AllergyIntolerance": profile.PerPatient,
		"MedicationRequest": profile.PerPatient, "Appointment": profile.NotSearchable, "Slot": profile.NotSearchable, "Schedule": profile.NotSearchable,
	} {
		if got := p.SearchScope(rt); got != want {
			t.Errorf("%s: %v, want %v", rt, got, want)
		}
	}
}

// TestScopeAgreesWithCapabilityStatement checks the scopes against
// athenahealth's published CapabilityStatement: a type-level type has no
// patient parameter, a per-patient one has it, a not-searchable one has
// neither patient nor anything but _id-like parameters.
func TestScopeAgreesWithCapabilityStatement(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repo.Shared(t, "fixtures/vendors/athenahealth"), "r4-capabilitystatement.json"))
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
	p := New("1")
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
		switch p.SearchScope(r.Type) {
		case profile.TypeLevel:
			if params["patient"] {
				t.Errorf("%s is type-level but the vendor offers patient", r.Type)
			}
			if !params["ah-practice"] {
				t.Errorf("%s: no ah-practice", r.Type)
			}
			if v := p.SearchParams(r.Type, time.Now(), 10); v.Has("_lastUpdated") != params["_lastUpdated"] {
				t.Errorf("%s: _lastUpdated sent %v, offered %v", r.Type, v.Has("_lastUpdated"), params["_lastUpdated"])
			}
		case profile.PerPatient:
			if !params["patient"] {
				t.Errorf("%s is per-patient but the vendor has no patient parameter", r.Type)
			}
		case profile.NotSearchable:
			if params["patient"] || params["_lastUpdated"] {
				t.Errorf("%s is not searchable but the vendor offers %v", r.Type, params)
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d types checked", checked)
	}
}

func TestClassifyAndQuirks(t *testing.T) {
	p := New("1")
	if k, code := p.ClassifyOutcome(400, fhir.NewOutcome("error", "invalid", "x")); k != profile.KindInvalid || code != "" {
		t.Fatal(k, code)
	}
	if k, _ := p.ClassifyOutcome(200, fhir.NewOutcome("information", "informational", "")); k != profile.KindEmpty {
		t.Fatal(k)
	}
	if d, m := p.PageSize("Observation"); d != 100 || m != 1000 {
		t.Fatal(d, m)
	}
	areas := map[string]bool{}
	for _, q := range p.Quirks() {
		areas[q.Area] = true
	}
	for _, a := range []string{"search", "paging", "identifier"} {
		if !areas[a] {
			t.Errorf("no %s quirk", a)
		}
	}
}

func TestV1Base(t *testing.T) {
	for in, want := range map[string]string{
		"https://api.platform.athenahealth.com/fhir/r4":         "https://api.platform.athenahealth.com/v1",
		"https://api.preview.platform.athenahealth.com/fhir/r4": "https://api.preview.platform.athenahealth.com/v1",
		"http://127.0.0.1:9090/clinic/fhir/r4":                  "http://127.0.0.1:9090/clinic/v1",
		"http://127.0.0.1:1/fhir":                               "http://127.0.0.1:1/v1",
		"http://127.0.0.1:1/FHIR/R4/":                           "http://127.0.0.1:1/v1",
		"http://127.0.0.1:1/r4":                                 "",
		"not a url":                                             "",
	} {
		got, ok := V1Base(in)
		if got != want || ok != (want != "") {
			t.Errorf("%s: %q %v, want %q", in, got, ok, want)
		}
	}
}
