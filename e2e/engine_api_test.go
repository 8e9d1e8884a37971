package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
)

// After a sync, an app holding the demo key pages through a practice's
// Patients and Appointments over the API and gets every one, exactly as the
// EHR has them; a wrong key, no key, or a key for another practice is refused.
func TestAppReadsSyncedDataThroughTheAPIWithItsKeyOnly(t *testing.T) {
	w := newWorld(t,
		practiceSpec{id: "north", flavor: "generic", seed: 51},
		practiceSpec{id: "south", flavor: "epic", seed: 52, classes: []string{"demographics", "scheduling"}},
	)
	eng := w.newEngine(engineOptions{})
	ctx := withTimeout(t, 40*time.Second)
	w.requireSucceeded(w.syncAll(ctx, eng))
	w.requireIdentical(eng.Store())
	apiURL := serveAPI(t, eng)
	hc := &http.Client{Timeout: 10 * time.Second}

	for _, tc := range []struct{ practice, rt string }{{"north", "Patient"}, {"south", "Patient"}, {"south", "Appointment"}} {
		want := w.canonical(tc.practice, tc.rt)
		got := map[string][]byte{}
		pages := 0
		next := apiURL + "/fhir/" + tc.practice + "/" + tc.rt + "?_count=7"
		for next != "" {
			var b fhir.Bundle
			if code := getJSON(t, hc, next, w.apiKey, &b); code != http.StatusOK {
				t.Fatalf("%s page %d: status %d", tc.rt, pages+1, code)
			}
			pages++
			if b.Total == nil || *b.Total != len(want) {
				t.Errorf("%s/%s: Bundle.total %v, want %d", tc.practice, tc.rt, b.Total, len(want))
			}
			if len(b.Entry) > 7 {
				t.Errorf("%s page %d has %d entries with _count=7", tc.rt, pages, len(b.Entry))
			}
			for _, e := range b.Entry {
				h, err := fhir.ParseHeader(e.Resource)
				if err != nil {
					t.Fatal(err)
				}
				if _, dup := got[h.ID]; dup {
					t.Errorf("%s/%s returned twice while paging", tc.rt, h.ID)
				}
				got[h.ID] = e.Resource
			}
			next = b.NextLink()
			if pages > 1000 {
				t.Fatal("paging does not end")
			}
		}
		if len(got) != len(want) || pages < 2 {
			t.Fatalf("%s/%s: read %d in %d pages, source has %d", tc.practice, tc.rt, len(got), pages, len(want))
		}
		for id, body := range want {
			if !jsonEqual(t, got[id], body) {
				t.Errorf("%s/%s/%s differs from the mapped source", tc.practice, tc.rt, id)
			}
		}
	}

	patients := "/fhir/north/Patient?_count=5"
	for _, tc := range []struct {
		name, key, path string
		want            int
	}{
		{"unknown key", "not-a-key-of-this-engine-000000", patients, http.StatusUnauthorized},
		{"no key", "", patients, http.StatusUnauthorized},
		{"key of an app limited to another practice", w.otherKey, "/fhir/south/Patient?_count=5", http.StatusForbidden},
		{"same app on its own practice", w.otherKey, patients, http.StatusOK},
		{"demo key", w.apiKey, patients, http.StatusOK},
	} {
		if code := getJSON(t, hc, apiURL+tc.path, tc.key, nil); code != tc.want {
			t.Errorf("%s: GET %s answered %d, want %d", tc.name, tc.path, code, tc.want)
		}
	}
}

// jsonEqual compares two JSON documents, byte for byte when possible and
// otherwise after compacting (the API may re-indent).
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	if bytes.Equal(a, b) {
		return true
	}
	var ca, cb bytes.Buffer
	if err := json.Compact(&ca, a); err != nil {
		return false
	}
	if err := json.Compact(&cb, b); err != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}
