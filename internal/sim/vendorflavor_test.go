package sim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/sim/flavor/athenahealth"
	"github.com/mediflow/mediflow/internal/sim/flavor/oraclehealth"
)

// patientWithMost returns the patient id referenced by the most resources of rt.
func patientWithMost(t *testing.T, s *Sim, tenant, rt string) (string, int) {
	t.Helper()
	counts := map[string]int{}
	for _, b := range s.Current(tenant, rt) {
		var r struct {
			Subject, Patient, Beneficiary struct{ Reference string }
		}
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		ref := r.Subject.Reference + r.Patient.Reference + r.Beneficiary.Reference
		counts[strings.TrimPrefix(ref, "Patient/")]++
	}
	best, n := "", 0
	for id, c := range counts {
		if c > n || (c == n && id < best) {
			best, n = id, c
		}
	}
	return best, n
}

func TestAthenaFlavorSearchRules(t *testing.T) {
	f := newFixture(t, Config{Tenants: []TenantConfig{{ID: "ah", Flavor: athenahealth.Name, Seed: 5, Data: smallData(12), Strict: true}}})
	tok := f.token("ah", "system/*.read")
	base := f.sim.BaseURL("ah")
	practice := "ah-practice=" + url.QueryEscape(athenahealth.New().(athenahealth.Flavor).PracticeRef())
	status := func(query string) int {
		r := f.get(base+"/"+query, tok)
		if r.status != http.StatusOK {
			outcomeOf(t, r)
		}
		return r.status
	}
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"Patient", http.StatusBadRequest}, // no ah-practice
		{"Patient?ah-practice=Organization/a-1.Practice-1", http.StatusForbidden},
		{"Patient?" + practice, http.StatusOK},
		{"Patient?" + practice + "&_lastUpdated=ge2020-01-01", http.StatusOK},
		{"Patient?" + practice + "&_lastUpdated=ge2020-01-01T00:00:00Z", http.StatusBadRequest}, // a time is refused
		{"Patient?" + practice + "&_lastUpdated=ge2020-01-01,le2020-02-01T10:00:00Z", http.StatusBadRequest},
		{"Observation?" + practice, http.StatusBadRequest}, // needs patient
		{"Coverage?" + practice, http.StatusBadRequest},
		{"Appointment?" + practice, http.StatusBadRequest}, // _id only
		{"Practitioner?" + practice, http.StatusOK},
		{"Practitioner?" + practice + "&_lastUpdated=ge2020-01-01", http.StatusBadRequest}, // not an athenahealth parameter of Practitioner
		{"Schedule?" + practice, http.StatusNotFound},                                      // not served
	} {
		if got := status(tc.query); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.query, got, tc.want)
		}
	}
	pid, n := patientWithMost(t, f.sim, "ah", "Observation")
	if n < 3 {
		t.Fatalf("test data: patient with %d observations", n)
	}
	if got := status("Observation?" + practice + "&patient=" + pid); got != http.StatusOK {
		t.Fatalf("Observation with patient: %d", got)
	}
	// Paging runs on cursor=, every patient exactly once.
	pages := 0
	ids, _, total := f.walk(base+"/Patient?"+practice+"&_count=5", tok, func(int) { pages++ })
	first := f.get(base+"/Patient?"+practice+"&_count=5", tok)
	if next := bundleOf(t, first.body).NextLink(); !strings.Contains(next, "?cursor=") {
		t.Fatalf("next link %q does not page by cursor", next)
	}
	if want := len(f.sim.Current("ah", "Patient")); len(ids) != want || total != want || pages < 3 || hasDup(ids) {
		t.Fatalf("walked %d ids (dup %v) over %d pages, total %d; want %d", len(ids), hasDup(ids), pages, total, want)
	}
}

func TestOracleFlavorDuplicateIDsAcrossPages(t *testing.T) {
	f := newFixture(t, Config{Tenants: []TenantConfig{{ID: "oh", Flavor: oraclehealth.Name, Seed: 6, Data: smallData(10), Strict: true}}})
	tok := f.token("oh", "system/Observation.read", "system/Patient.read", "system/Appointment.read", "system/Coverage.read", "system/Practitioner.read")
	base := f.sim.BaseURL("oh")
	pid, n := patientWithMost(t, f.sim, "oh", "Observation")
	if n < 5 {
		t.Fatalf("test data: patient with %d observations", n)
	}
	const count = 2
	var pageIDs [][]string
	ids, bodies, total := f.walk(base+"/Observation?patient="+pid+"&_count=2", tok, nil)
	// Re-walk page by page to see each page's entries.
	for u := base + "/Observation?patient=" + pid + "&_count=2"; u != ""; {
		r := f.get(u, tok)
		bu := bundleOf(t, r.body)
		var page []string
		for _, e := range bu.Entry {
			var h struct{ ID string }
			_ = json.Unmarshal(e.Resource, &h)
			page = append(page, h.ID)
		}
		pageIDs = append(pageIDs, page)
		u = bu.NextLink()
		if u != "" && (!strings.Contains(u, "pageContext=") || !strings.Contains(u, "direction=NEXT")) {
			t.Fatalf("next link %q", u)
		}
	}
	if total != n {
		t.Fatalf("total %d, want %d", total, n)
	}
	pages := len(pageIDs)
	if pages < 3 {
		t.Fatalf("only %d pages", pages)
	}
	// Every page after the first repeats the previous page's last entry.
	for i := 1; i < pages; i++ {
		if pageIDs[i][0] != pageIDs[i-1][len(pageIDs[i-1])-1] {
			t.Fatalf("page %d starts with %s, previous ended with %s", i, pageIDs[i][0], pageIDs[i-1][len(pageIDs[i-1])-1])
		}
		if len(pageIDs[i]) > count+1 {
			t.Fatalf("page %d has %d entries", i, len(pageIDs[i]))
		}
	}
	uniq := map[string]bool{}
	for _, id := range ids {
		uniq[id] = true
	}
	if len(uniq) != n || len(ids) != n+pages-1 {
		t.Fatalf("%d entries, %d distinct, want %d distinct and %d repeats", len(ids), len(uniq), n, pages-1)
	}
	// Proprietary codings beside the standard ones.
	var obs struct {
		Code struct {
			Coding []struct {
				System       string
				UserSelected bool
			}
		}
	}
	if err := json.Unmarshal(bodies[0], &obs); err != nil {
		t.Fatal(err)
	}
	if len(obs.Code.Coding) < 2 || !strings.HasPrefix(obs.Code.Coding[0].System, "https://fhir.cerner.com/oh/codeSet/72") || !obs.Code.Coding[0].UserSelected {
		t.Fatalf("observation code %+v", obs.Code)
	}

	for _, tc := range []struct {
		query string
		want  int
	}{
		{"Patient", http.StatusBadRequest},
		{"Patient?family=x", http.StatusOK},
		{"Patient?_id=" + pid, http.StatusOK},
		{"Appointment?patient=" + pid, http.StatusBadRequest}, // needs date
		{"Appointment?patient=" + pid + "&date=ge2000-01-01", http.StatusOK},
		{"Appointment?date=ge2000-01-01", http.StatusBadRequest}, // needs patient, practitioner or location
		{"Coverage", http.StatusBadRequest},
		{"Coverage?patient=" + pid, http.StatusOK},
		{"Observation", http.StatusBadRequest},
		{"Practitioner", http.StatusOK},
	} {
		r := f.get(base+"/"+tc.query, tok)
		if r.status != tc.want {
			t.Errorf("%s: status %d, want %d: %.200s", tc.query, r.status, tc.want, r.body)
		}
	}
}

func hasDup(ids []string) bool {
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			return true
		}
		seen[id] = true
	}
	return false
}
