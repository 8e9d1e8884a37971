package api

import (
	"encoding/json"
	"fmt"
	"sort"
	"testing"

	"github.com/mediflow/mediflow/internal/testutil/peers"
)

// TestOrdinaryFHIRClientsReadTheAPI points two off-the-shelf FHIR client
// libraries at the API: each reads the CapabilityStatement, pages through
// every Patient and Appointment with its own paging, and reads one Patient.
func TestOrdinaryFHIRClientsReadTheAPI(t *testing.T) {
	e := seededEnv(t)
	var wantPatients, wantAppts []string
	for i := 1; i <= 45; i++ {
		wantPatients = append(wantPatients, fmt.Sprintf("pat-%03d", i))
	}
	for i := 1; i <= 10; i++ {
		wantAppts = append(wantAppts, fmt.Sprintf("appt-%02d", i))
	}
	for _, lib := range []peers.Library{peers.FHIRKit, peers.SMARTClient} {
		t.Run(string(lib), func(t *testing.T) {
			s := peers.RunClient(t, lib, e.srv.URL+"/fhir/alpha", keyAlpha, "--count", "8", "--patient-id", "pat-031")
			if s.Error != nil {
				t.Fatalf("%s failed at %s: %+v", s.Library, s.FailedStep, *s.Error)
			}
			if s.Metadata == nil || s.Metadata.ResourceType != "CapabilityStatement" || s.Metadata.FHIRVersion != "4.0.1" {
				t.Errorf("metadata: %+v", s.Metadata)
			}
			checkSearch(t, "Patient", s.Patients, wantPatients, 6)
			checkSearch(t, "Appointment", s.Appointments, wantAppts, 2)
			var p struct{ ResourceType, ID string }
			if err := json.Unmarshal(s.Patient, &p); err != nil || p.ResourceType != "Patient" || p.ID != "pat-031" {
				t.Errorf("read: %s", s.Patient)
			}
		})
	}
	// The same libraries are refused with another practice's key.
	s := peers.RunClient(t, peers.FHIRKit, e.srv.URL+"/fhir/alpha", keyBeta)
	if s.Error == nil || s.Error.Status != 403 || s.FailedStep != "metadata" {
		t.Errorf("wrong key: %+v %+v", s.FailedStep, s.Error)
	}
}

func checkSearch(t *testing.T, typ string, got *peers.SearchResult, want []string, pages int) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: no result", typ)
	}
	ids := append([]string(nil), got.IDs...)
	sort.Strings(ids)
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("%s ids: %v\nwant %v", typ, ids, want)
	}
	if got.Total == nil || *got.Total != len(want) {
		t.Errorf("%s total: %v", typ, got.Total)
	}
	if got.Pages != pages {
		t.Errorf("%s pages: %d, want %d", typ, got.Pages, pages)
	}
}
