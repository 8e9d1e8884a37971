package peers

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
)

// testBundle builds a transaction of n Patients and, for the first m of them,
// one Appointment each, linked by urn:uuid references.
func testBundle(n, m int) []byte {
	var entries []map[string]any
	for i := range n {
		full := fmt.Sprintf("urn:uuid:00000000-0000-4000-8000-%012d", i)
		entries = append(entries, map[string]any{
			"fullUrl":  full,
			"resource": map[string]any{"resourceType": "Patient", "active": true, "gender": []string{"female", "male"}[i%2], "birthDate": fmt.Sprintf("19%02d-01-01", 50+i)},
			"request":  map[string]any{"method": "POST", "url": "Patient"},
		})
		if i < m {
			entries = append(entries, map[string]any{
				"resource": map[string]any{
					"resourceType": "Appointment", "status": "booked",
					"start": "2030-01-02T09:00:00Z", "end": "2030-01-02T09:30:00Z",
					"participant": []any{map[string]any{"actor": map[string]any{"reference": full}, "status": "accepted"}},
				},
				"request": map[string]any{"method": "POST", "url": "Appointment"},
			})
		}
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
	return b
}

// loadedIDs returns the server-assigned ids of one type from a transaction response.
func loadedIDs(t *testing.T, resp *fhir.Bundle, resourceType string) []string {
	t.Helper()
	var ids []string
	for _, e := range resp.Entry {
		h, err := fhir.ParseHeader(e.Resource)
		if err != nil {
			t.Fatalf("transaction response entry: %v", err)
		}
		if h.ResourceType == resourceType {
			ids = append(ids, h.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

func getJSON(t *testing.T, url string, into any) *http.Response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if into != nil {
		if err := json.Unmarshal(body, into); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return resp
}

func TestMedplumServer(t *testing.T) {
	base := StartMedplum(t)
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("base URL %q is not on 127.0.0.1", base)
	}

	var cs struct {
		ResourceType, FHIRVersion string
	}
	if resp := getJSON(t, base+"/metadata", &cs); resp.StatusCode != 200 || cs.ResourceType != "CapabilityStatement" || cs.FHIRVersion != "4.0.1" {
		t.Fatalf("metadata: status %d, %+v", resp.StatusCode, cs)
	}

	before := time.Now().UTC().Add(-time.Second)
	resp := LoadBundle(t, base, testBundle(5, 2))
	patients := loadedIDs(t, resp, "Patient")
	if len(patients) != 5 || len(loadedIDs(t, resp, "Appointment")) != 2 {
		t.Fatalf("loaded %d patients, want 5", len(patients))
	}

	// Paging: absolute next links pointing at the server, every id exactly once.
	var seen []string
	next := base + "/Patient?_count=2"
	pages := 0
	for next != "" {
		var b fhir.Bundle
		getJSON(t, next, &b)
		pages++
		if b.Total == nil || *b.Total != 5 {
			t.Fatalf("page %d: total %v, want 5", pages, b.Total)
		}
		for _, e := range b.Entry {
			h, err := fhir.ParseHeader(e.Resource)
			if err != nil {
				t.Fatal(err)
			}
			if e.FullURL != base+"/Patient/"+h.ID {
				t.Errorf("fullUrl %q, want %q", e.FullURL, base+"/Patient/"+h.ID)
			}
			seen = append(seen, h.ID)
		}
		next = b.NextLink()
		if next != "" && !strings.HasPrefix(next, base+"/Patient?") {
			t.Fatalf("next link %q is not an absolute URL on %s", next, base)
		}
	}
	slices.Sort(seen)
	if pages != 3 || !slices.Equal(seen, patients) {
		t.Fatalf("paged %d pages, ids %v; want 3 pages, ids %v", pages, seen, patients)
	}

	// Read, versioned update with If-Match: the current version wins, a stale one gets 412.
	body := Read(t, base, "Patient", patients[0])
	h, err := fhir.ParseHeader(body)
	if err != nil || h.VersionID == "" || h.LastUpdated.Before(before) {
		t.Fatalf("read: header %+v, err %v", h, err)
	}
	var res map[string]any
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	res["active"] = false
	upd, _ := json.Marshal(res)
	put := func(ifMatch string) int {
		req, _ := http.NewRequest(http.MethodPut, base+"/Patient/"+patients[0], strings.NewReader(string(upd)))
		req.Header.Set("Content-Type", "application/fhir+json")
		req.Header.Set("If-Match", ifMatch)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	if st := put(`W/"` + h.VersionID + `"`); st != 200 {
		t.Fatalf("update with current If-Match: status %d", st)
	}
	if st := put(`W/"` + h.VersionID + `"`); st != http.StatusPreconditionFailed {
		t.Fatalf("update with stale If-Match: status %d, want 412", st)
	}
	h2, err := fhir.ParseHeader(Read(t, base, "Patient", patients[0]))
	if err != nil || h2.VersionID == h.VersionID || !h2.LastUpdated.After(h.LastUpdated) {
		t.Fatalf("after update: header %+v (before %+v), err %v", h2, h, err)
	}

	// _lastUpdated after the newest of the other patients finds exactly the
	// updated one (the transaction created them over several milliseconds,
	// so patients[0]'s own time would find later-created ones too).
	newest := h.LastUpdated
	for _, id := range patients[1:] {
		o, err := fhir.ParseHeader(Read(t, base, "Patient", id))
		if err != nil {
			t.Fatal(err)
		}
		if o.LastUpdated.After(newest) {
			newest = o.LastUpdated
		}
	}
	if !h2.LastUpdated.After(newest) {
		t.Fatalf("the update (%v) is not after the newest created patient (%v)", h2.LastUpdated, newest)
	}
	var changed fhir.Bundle
	getJSON(t, base+"/Patient?_lastUpdated=gt"+url.QueryEscape(fhir.FormatInstant(newest)), &changed)
	if changed.Total == nil || *changed.Total != 1 || len(changed.Entry) != 1 {
		t.Fatalf("_lastUpdated search: total %v, %d entries; want 1", changed.Total, len(changed.Entry))
	}

	Reset(t, base)
	var empty fhir.Bundle
	getJSON(t, base+"/Patient", &empty)
	if empty.Total == nil || *empty.Total != 0 {
		t.Fatalf("after reset: total %v, want 0", empty.Total)
	}
}

// bearerProxy puts a token check in front of a FHIR server, as an API would.
func bearerProxy(t *testing.T, target, token string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u) // keeps the client's Host, so next links point at the proxy
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("Content-Type", "application/fhir+json")
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(fhir.NewOutcome("error", "login", "bad token"))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestClientLibraries(t *testing.T) {
	base := StartMedplum(t)
	resp := LoadBundle(t, base, testBundle(7, 3))
	patients := loadedIDs(t, resp, "Patient")
	appointments := loadedIDs(t, resp, "Appointment")
	api := bearerProxy(t, base, "s3cret")

	for _, lib := range []Library{FHIRKit, SMARTClient} {
		t.Run(string(lib), func(t *testing.T) {
			s := RunClient(t, lib, api, "s3cret", "--count", "3", "--patient-id", patients[4])
			if s.Error != nil {
				t.Fatalf("%s failed at %s: %+v", s.Library, s.FailedStep, *s.Error)
			}
			if !strings.HasPrefix(s.Library, string(lib)+"@") {
				t.Errorf("library %q", s.Library)
			}
			if s.Metadata == nil || s.Metadata.ResourceType != "CapabilityStatement" || s.Metadata.FHIRVersion != "4.0.1" {
				t.Errorf("metadata %+v", s.Metadata)
			}
			got := slices.Sorted(slices.Values(s.Patients.IDs))
			if !slices.Equal(got, patients) || s.Patients.Pages != 3 || s.Patients.Total == nil || *s.Patients.Total != 7 {
				t.Errorf("patients: %d pages, total %v, ids %v; want 3 pages, 7, %v", s.Patients.Pages, s.Patients.Total, got, patients)
			}
			if h, err := fhir.ParseHeader(s.Patient); err != nil || h.ID != patients[4] {
				t.Errorf("read patient: %+v %v", h, err)
			}
			got = slices.Sorted(slices.Values(s.Appointments.IDs))
			if !slices.Equal(got, appointments) || s.Appointments.Pages != 1 {
				t.Errorf("appointments: %d pages, ids %v; want 1, %v", s.Appointments.Pages, got, appointments)
			}

			bad := RunClient(t, lib, api, "wrong")
			if bad.Error == nil || bad.Error.Status != http.StatusUnauthorized || bad.FailedStep != "metadata" || bad.Patients != nil {
				t.Errorf("wrong token: failed step %q, error %+v; want 401 at metadata", bad.FailedStep, bad.Error)
			}
		})
	}
}
