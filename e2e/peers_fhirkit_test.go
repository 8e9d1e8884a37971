package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/api"
	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
	"github.com/mediflow/mediflow/internal/testutil/peers"
)

// seedPractice writes nPatients Patients and nAppts Appointments into one
// practice and returns their ids, sorted.
func seedPractice(ctx context.Context, t *testing.T, st store.Store, practice, prefix string, nPatients, nAppts int) (patients, appts []string) {
	t.Helper()
	lu := time.Date(2030, 5, 1, 8, 0, 0, 0, time.UTC)
	var ws []store.ResourceWrite
	add := func(rt, id string, body map[string]any) {
		body["resourceType"] = rt
		body["id"] = id
		body["meta"] = map[string]any{"versionId": "1", "lastUpdated": fhir.FormatInstant(lu)}
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, store.ResourceWrite{ResourceType: rt, ID: id, SourceVersionID: "1", SourceLastUpdated: lu, Connection: "seed", Body: b})
		lu = lu.Add(time.Second)
	}
	for i := range nPatients {
		id := fmt.Sprintf("%s-pat-%02d", prefix, i+1)
		patients = append(patients, id)
		add("Patient", id, map[string]any{
			"active":    true,
			"name":      []any{map[string]any{"family": fmt.Sprintf("Testfamily%02d", i+1), "given": []string{"Alex"}}},
			"gender":    []string{"female", "male", "other"}[i%3],
			"birthDate": fmt.Sprintf("19%02d-0%d-1%d", 40+i, 1+i%9, i%10),
		})
	}
	for i := range nAppts {
		id := fmt.Sprintf("%s-appt-%02d", prefix, i+1)
		appts = append(appts, id)
		start := time.Date(2030, 6, 1+i, 9, 0, 0, 0, time.UTC)
		add("Appointment", id, map[string]any{
			"status": "booked",
			"start":  start.Format(time.RFC3339),
			"end":    start.Add(20 * time.Minute).Format(time.RFC3339),
			"participant": []any{map[string]any{
				"actor":  map[string]any{"reference": "Patient/" + patients[i%len(patients)]},
				"status": "accepted",
			}},
		})
	}
	res, err := st.WriteResources(ctx, practice, ws)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Outcome != store.Created {
			t.Fatalf("seeding %s/%s: outcome %s", ws[i].ResourceType, ws[i].ID, r.Outcome)
		}
	}
	slices.Sort(patients)
	slices.Sort(appts)
	return patients, appts
}

// sameJSON reports whether two JSON documents hold the same value.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	return reflect.DeepEqual(va, vb)
}

// TestPeerClientLibrariesReadAPI points two ordinary FHIR client libraries
// (fhir-kit-client and SMART's fhirclient) at the app-facing API: with the
// app's key they read everything the store holds for the practice, page by
// page through the API's own next links; with a wrong key, or a key for
// another practice, their calls fail.
func TestPeerClientLibrariesReadAPI(t *testing.T) {
	peers.Dir(t) // skip early (or fail under CI) when the peers are not installed
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "mediflow.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	patientsA, apptsA := seedPractice(ctx, t, st, "clinic-a", "a", 23, 4)
	seedPractice(ctx, t, st, "clinic-b", "b", 6, 2)

	h, err := api.New(api.Config{
		Store: st,
		Apps: []api.App{
			{Name: "app-a", Key: []byte("key-for-clinic-a"), Practices: []string{"clinic-a"}},
			{Name: "app-b", Key: []byte("key-for-clinic-b"), Practices: []string{"clinic-b"}},
		},
		Practices: []string{"clinic-a", "clinic-b"},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	fhirBase := srv.URL + "/fhir/clinic-a"
	readID := patientsA[6]
	stored, err := st.GetResource(ctx, "clinic-a", "Patient", readID)
	if err != nil {
		t.Fatal(err)
	}

	for _, lib := range []peers.Library{peers.FHIRKit, peers.SMARTClient} {
		t.Run(string(lib), func(t *testing.T) {
			s := peers.RunClient(t, lib, fhirBase, "key-for-clinic-a", "--count", "5", "--patient-id", readID)
			if s.Error != nil {
				t.Fatalf("%s failed at step %s: status %d: %s", s.Library, s.FailedStep, s.Error.Status, s.Error.Message)
			}
			if s.Metadata == nil || s.Metadata.ResourceType != "CapabilityStatement" || s.Metadata.FHIRVersion != "4.0.1" {
				t.Errorf("metadata: %+v", s.Metadata)
			}
			gotPatients := slices.Sorted(slices.Values(s.Patients.IDs))
			if !slices.Equal(gotPatients, patientsA) {
				t.Errorf("patients read across pages: %v\nwant (clinic-a only): %v", gotPatients, patientsA)
			}
			if s.Patients.Pages != 5 {
				t.Errorf("patients came in %d pages, want 5 (23 at _count=5)", s.Patients.Pages)
			}
			if s.Patients.Total != nil && *s.Patients.Total != len(patientsA) {
				t.Errorf("Bundle.total %d, want %d", *s.Patients.Total, len(patientsA))
			}
			if !sameJSON(t, s.Patient, stored.Body) {
				t.Errorf("Patient/%s as read by %s differs from the stored resource:\n got %s\nwant %s", readID, s.Library, s.Patient, stored.Body)
			}
			gotAppts := slices.Sorted(slices.Values(s.Appointments.IDs))
			if !slices.Equal(gotAppts, apptsA) || s.Appointments.Pages != 1 {
				t.Errorf("appointments: %v in %d pages; want %v in 1", gotAppts, s.Appointments.Pages, apptsA)
			}

			bad := peers.RunClient(t, lib, fhirBase, "not-a-key")
			if bad.Error == nil || bad.Error.Status != http.StatusUnauthorized || bad.FailedStep != "metadata" || bad.Patients != nil {
				t.Errorf("wrong key: step %q, error %+v, patients %+v; want a 401 at metadata and nothing read", bad.FailedStep, bad.Error, bad.Patients)
			}
			other := peers.RunClient(t, lib, fhirBase, "key-for-clinic-b")
			if other.Error == nil || other.Error.Status < 400 || other.Patients != nil {
				t.Errorf("another practice's key: step %q, error %+v, patients %+v; want the call refused and nothing read", other.FailedStep, other.Error, other.Patients)
			}
		})
	}
}
