package v2fhir_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	idRE = regexp.MustCompile(`^v2-[0-9a-f]{24}$`)
	// A FHIR dateTime or instant with a time of day needs a UTC offset.
	timeRE     = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T`)
	timeZoneRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$`)
	// Closed value sets of the status elements the specs write.
	statusCodes = map[string]map[string]bool{
		"Encounter":         set("planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "entered-in-error", "unknown"),
		"Observation":       set("registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"),
		"DiagnosticReport":  set("registered", "partial", "preliminary", "final", "amended", "corrected", "appended", "cancelled", "entered-in-error", "unknown"),
		"Appointment":       set("proposed", "pending", "booked", "arrived", "fulfilled", "cancelled", "noshow", "entered-in-error", "checked-in", "waitlist"),
		"DocumentReference": set("current", "superseded", "entered-in-error"),
	}
	genders = set("male", "female", "other", "unknown")
)

func set(xs ...string) map[string]bool {
	m := map[string]bool{}
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// walkJSON calls f for every string value with its key.
func walkJSON(v any, key string, f func(key, s string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			walkJSON(c, k, f)
		}
	case []any:
		for _, c := range x {
			walkJSON(c, key, f)
		}
	case string:
		f(key, x)
	}
}

// The golden resources hold what our own checks require beyond Medplum's:
// ids from natural keys, times with offsets, known status codes, and
// references only to resources of the same result (or to the visit, which
// result and document messages refer to without writing it).
func TestGoldenResourcesAreClean(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var g goldenResult
		if err := json.Unmarshal(data, &g); err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, r := range g.Resources {
			have[r.Type+"/"+r.ID] = true
		}
		if len(have) != len(g.Resources) {
			t.Errorf("%s: a resource appears twice", f)
		}
		for _, r := range g.Resources {
			name := filepath.Base(f) + " " + r.Type + "/" + r.ID
			if !idRE.MatchString(r.ID) {
				t.Errorf("%s: id is not v2-<hash>", name)
			}
			var body map[string]any
			if err := json.Unmarshal(r.Body, &body); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if codes, ok := statusCodes[r.Type]; ok && !codes[body["status"].(string)] {
				t.Errorf("%s: status %v", name, body["status"])
			}
			if g, ok := body["gender"].(string); ok && !genders[g] {
				t.Errorf("%s: gender %q", name, g)
			}
			walkJSON(body, "", func(key, s string) {
				if timeRE.MatchString(s) && !timeZoneRE.MatchString(s) {
					t.Errorf("%s: %s %q is not a FHIR date/time with an offset", name, key, s)
				}
				if key == "reference" {
					if !have[s] && !strings.HasPrefix(s, "Encounter/") {
						t.Errorf("%s: reference %s to a resource not in the result", name, s)
					}
				}
				if s != strings.TrimSpace(s) {
					t.Errorf("%s: %s %q has white space around it", name, key, s)
				}
			})
		}
		for _, m := range g.Merges {
			if !idRE.MatchString(m.From) || !have[m.Type+"/"+m.Into] {
				t.Errorf("%s: merge %+v", f, m)
			}
		}
	}
}
