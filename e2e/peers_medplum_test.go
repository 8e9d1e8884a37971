package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/connector/fhirrest"
	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
	"github.com/mediflow/mediflow/internal/sync"
	"github.com/mediflow/mediflow/internal/testutil/peers"
	"github.com/mediflow/mediflow/internal/vendors"
)

// syntheaFiles are the two smallest patient bundles of the shared Synthea set
// (about 270 resources in all), enough for several pages of every busy type.
var syntheaFiles = []string{
	"Dwain_McGlynn_7515d14b-843b-4210-8b6b-a33ab253d560.json",
	"Carmelo_Streich_4026988c-ab06-4635-8c53-86cbad7b1c56.json",
}

// medplumTypes are the resource types synced from Medplum: every one that the
// Synthea bundles and our Appointments put there among the types mediflow syncs.
var medplumTypes = []string{"Patient", "Practitioner", "Organization", "Encounter", "Condition", "Observation", "MedicationRequest", "Appointment"}

const (
	medplumPractice   = "medplum-practice"
	medplumConnection = "medplum"
	medplumPageSize   = 25
)

// urlRecorder is an http.RoundTripper that remembers every request URL.
type urlRecorder struct {
	mu   gosync.Mutex
	urls []string
}

func (r *urlRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.urls = append(r.urls, req.URL.String())
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

// take returns the URLs recorded since the last call and forgets them.
func (r *urlRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.urls
	r.urls = nil
	return out
}

// readSynthea reads one shared Synthea bundle in place, skipping the test
// when the shared test data is not beside the repository.
func readSynthea(t *testing.T, name string) []byte {
	t.Helper()
	path := filepath.Join(peers.RepoRoot(t), "..", "shared", "testdata", "synthea-r4", name)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("Synthea test data not found at %s: this test reads ../shared/testdata/synthea-r4 beside the repository", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// idsOf returns the ids of one resource type in a transaction response.
func idsOf(t *testing.T, resp *fhir.Bundle, resourceType string) []string {
	t.Helper()
	var ids []string
	for _, e := range resp.Entry {
		h, err := fhir.ParseHeader(e.Resource)
		if err != nil {
			t.Fatalf("transaction response: %v", err)
		}
		if h.ResourceType == resourceType {
			ids = append(ids, h.ID)
		}
	}
	return ids
}

// appointmentBundle is a transaction creating one booked Appointment per patient.
func appointmentBundle(patientIDs []string) []byte {
	var entries []any
	for i, id := range patientIDs {
		start := time.Date(2031, 3, 10+i, 9, 0, 0, 0, time.UTC)
		entries = append(entries, map[string]any{
			"resource": map[string]any{
				"resourceType": "Appointment",
				"status":       "booked",
				"description":  fmt.Sprintf("follow-up %d", i+1),
				"start":        start.Format(time.RFC3339),
				"end":          start.Add(30 * time.Minute).Format(time.RFC3339),
				"participant": []any{
					map[string]any{"actor": map[string]any{"reference": "Patient/" + id}, "status": "accepted"},
				},
			},
			"request": map[string]any{"method": "POST", "url": "Appointment"},
		})
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
	return b
}

// medplumState reads what Medplum holds: for each type, id → the body of a
// read of that resource, byte for byte as Medplum sent it.
func medplumState(t *testing.T, base string, types []string) map[string]map[string][]byte {
	t.Helper()
	out := make(map[string]map[string][]byte, len(types))
	for _, rt := range types {
		out[rt] = map[string][]byte{}
		next := base + "/" + rt + "?_count=1000"
		for next != "" {
			resp, err := http.Get(next)
			if err != nil {
				t.Fatal(err)
			}
			var b fhir.Bundle
			err = json.NewDecoder(resp.Body).Decode(&b)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("listing %s in Medplum: status %d, %v", rt, resp.StatusCode, err)
			}
			for _, e := range b.Entry {
				h, err := fhir.ParseHeader(e.Resource)
				if err != nil {
					t.Fatal(err)
				}
				out[rt][h.ID] = peers.Read(t, base, rt, h.ID)
			}
			next = b.NextLink()
		}
	}
	return out
}

// assertStoreMatches checks that the store holds exactly Medplum's resources:
// the same ids per type, each body byte-identical to Medplum's read.
func assertStoreMatches(ctx context.Context, t *testing.T, st store.Store, want map[string]map[string][]byte) {
	t.Helper()
	counts, err := st.CountResources(ctx, medplumPractice)
	if err != nil {
		t.Fatal(err)
	}
	for rt, byID := range want {
		if counts[rt] != len(byID) {
			t.Errorf("store holds %d %s, Medplum %d", counts[rt], rt, len(byID))
		}
		bad := 0
		for id, body := range byID {
			if bad >= 5 {
				t.Errorf("%s: more differences not shown", rt)
				break
			}
			got, err := st.GetResource(ctx, medplumPractice, rt, id)
			if err != nil {
				t.Errorf("store lacks %s/%s: %v", rt, id, err)
				bad++
				continue
			}
			if !bytes.Equal(got.Body, body) {
				t.Errorf("%s/%s: stored body (%d bytes) differs from Medplum's read (%d bytes)", rt, id, len(got.Body), len(body))
				bad++
			}
			h, err := fhir.ParseHeader(body)
			if err != nil {
				t.Fatal(err)
			}
			if got.SourceVersionID != h.VersionID || !got.SourceLastUpdated.Equal(h.LastUpdated) {
				t.Errorf("%s/%s: stored source version %q/%s, Medplum %q/%s", rt, id, got.SourceVersionID, got.SourceLastUpdated, h.VersionID, h.LastUpdated)
			}
		}
	}
	for rt, n := range counts {
		if _, ok := want[rt]; !ok && n > 0 {
			t.Errorf("store holds %d %s that were not synced from Medplum", n, rt)
		}
	}
}

// TestPeerMedplumSync syncs from Medplum's FHIR engine, a FHIR server nobody
// on this project wrote, into the SQLite store, then re-syncs incrementally
// after one change made in Medplum.
func TestPeerMedplumSync(t *testing.T) {
	bundles := make([][]byte, len(syntheaFiles))
	for i, name := range syntheaFiles {
		bundles[i] = readSynthea(t, name)
	}
	base := peers.StartMedplum(t)
	var patientIDs []string
	for _, b := range bundles {
		patientIDs = append(patientIDs, idsOf(t, peers.LoadBundle(t, base, b), "Patient")...)
		time.Sleep(20 * time.Millisecond) // separate the loads in meta.lastUpdated
	}
	if len(patientIDs) != len(syntheaFiles) {
		t.Fatalf("Medplum created %d patients from %d bundles", len(patientIDs), len(syntheaFiles))
	}
	appts := idsOf(t, peers.LoadBundle(t, base, appointmentBundle(append(slices.Clone(patientIDs), patientIDs[0]))), "Appointment")
	if len(appts) != 3 {
		t.Fatalf("Medplum created %d appointments, want 3", len(appts))
	}
	want := medplumState(t, base, medplumTypes)
	total := 0
	for _, rt := range medplumTypes {
		total += len(want[rt])
	}
	if len(want["Observation"]) <= 2*medplumPageSize || len(want["Patient"]) != 2 {
		t.Fatalf("test data too small to exercise paging: %d observations, %d patients", len(want["Observation"]), len(want["Patient"]))
	}

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
	prof, err := vendors.Lookup("generic")
	if err != nil {
		t.Fatal(err)
	}
	rec := &urlRecorder{}
	client, err := fhirrest.New(fhirrest.Config{BaseURL: base, HTTPClient: &http.Client{Transport: rec}, Profile: prof})
	if err != nil {
		t.Fatal(err)
	}
	syncer := &sync.Syncer{Store: st, Logger: slog.New(slog.DiscardHandler)}
	src := sync.Source{
		Practice: medplumPractice, Connection: medplumConnection, Client: client, Profile: prof,
		ResourceTypes: medplumTypes, Overlap: time.Millisecond, PageSize: medplumPageSize,
	}

	// The CapabilityStatement is Medplum's (served by our wrapper).
	if err := syncer.FetchCapabilities(ctx, src); err != nil {
		t.Fatal(err)
	}
	capSt, err := st.GetCapability(ctx, medplumPractice, medplumConnection)
	if err != nil || capSt.FHIRVersion != "4.0.1" || !strings.Contains(capSt.Software, "Medplum") {
		t.Fatalf("stored capability: %+v, %v", capSt.Software, err)
	}

	// Full sync: every resource new, all of them stored byte for byte.
	run1, err := syncer.Run(ctx, src, "manual")
	if err != nil {
		t.Fatalf("first sync: %v", err)
	}
	if run1.Status != store.RunSucceeded {
		t.Fatalf("first sync: status %s (%s)", run1.Status, run1.Error)
	}
	for _, rt := range medplumTypes {
		n := len(want[rt])
		wantPages := max(1, (n+medplumPageSize-1)/medplumPageSize)
		got := run1.Stats[rt]
		if got == nil {
			t.Fatalf("first sync: no stats for %s", rt)
		}
		if got.Fetched != n || got.New != n || got.Changed != 0 || got.Unchanged != 0 || got.Failed != 0 || got.Pages != wantPages {
			t.Errorf("first sync %s: %+v; want fetched=new=%d, %d pages", rt, *got, n, wantPages)
		}
	}
	assertStoreMatches(ctx, t, st, want)
	stored, err := st.GetRun(ctx, medplumPractice, run1.ID)
	if err != nil || stored.Status != store.RunSucceeded || stored.Stats["Observation"] == nil || stored.Stats["Observation"].New != len(want["Observation"]) {
		t.Errorf("stored run record: %+v, %v", stored, err)
	}
	rec.take()

	// One change in Medplum, then an incremental sync.
	time.Sleep(20 * time.Millisecond)
	var patient map[string]any
	if err := json.Unmarshal(want["Patient"][patientIDs[0]], &patient); err != nil {
		t.Fatal(err)
	}
	patient["active"] = false
	changed, err := json.Marshal(patient)
	if err != nil {
		t.Fatal(err)
	}
	peers.Update(t, base, changed)

	run2, err := syncer.Run(ctx, src, "manual")
	if err != nil {
		t.Fatalf("incremental sync: %v", err)
	}
	if run2.Status != store.RunSucceeded {
		t.Fatalf("incremental sync: status %s (%s)", run2.Status, run2.Error)
	}
	fetched2 := 0
	for _, rt := range medplumTypes {
		got := run2.Stats[rt]
		wantChanged := 0
		if rt == "Patient" {
			wantChanged = 1
		}
		if got == nil || got.New != 0 || got.Changed != wantChanged || got.Failed != 0 || got.Unchanged != got.Fetched-wantChanged {
			t.Errorf("incremental sync %s: %+v; want %d changed, the rest unchanged", rt, got, wantChanged)
		}
		if got != nil {
			fetched2 += got.Fetched
		}
	}
	t.Logf("full sync fetched %d resources; the incremental sync after one change fetched %d", total, fetched2)
	if fetched2 >= total {
		t.Errorf("incremental sync fetched %d resources of %d: it did not search incrementally", fetched2, total)
	}
	for _, u := range rec.take() {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		if pu.Path == "/metadata" {
			continue
		}
		if lu := pu.Query().Get("_lastUpdated"); !strings.HasPrefix(lu, "ge") {
			t.Errorf("incremental sync searched %s without a _lastUpdated=ge bound", pu.Path)
		}
	}

	want2 := medplumState(t, base, medplumTypes)
	if bytes.Equal(want2["Patient"][patientIDs[0]], want["Patient"][patientIDs[0]]) {
		t.Fatal("Medplum did not apply the update")
	}
	assertStoreMatches(ctx, t, st, want2)
	hist, err := st.History(ctx, medplumPractice, "Patient", patientIDs[0])
	if err != nil || len(hist) != 2 || !bytes.Equal(hist[1].Body, want["Patient"][patientIDs[0]]) {
		t.Errorf("history of the changed patient: %d versions, %v; want 2 with the old body kept", len(hist), err)
	}
	for _, id := range append(slices.Clone(appts), patientIDs[1]) {
		rt := "Appointment"
		if id == patientIDs[1] {
			rt = "Patient"
		}
		hist, err := st.History(ctx, medplumPractice, rt, id)
		if err != nil || len(hist) != 1 {
			t.Errorf("history of unchanged %s/%s: %d versions, %v; want 1", rt, id, len(hist), err)
		}
	}
}
