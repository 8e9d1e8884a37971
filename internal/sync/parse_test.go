package sync

import (
	"hash/maphash"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/store"
)

func TestParseEntry(t *testing.T) {
	lu := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	ok := []struct {
		raw     string
		id, vid string
		lu      time.Time
	}{
		{`{"resourceType":"Patient","id":"a1","meta":{"versionId":"7","lastUpdated":"2025-01-02T03:04:05Z"}}`, "a1", "7", lu},
		{`{"meta":{"lastUpdated":"2025-01-02T05:04:05+02:00"},"id":"a-2.x","resourceType":"Patient","name":[{"family":"}"}]}`, "a-2.x", "", lu},
		{`{"resourceType":"Patient","id":"a\u0033"}`, "a3", "", time.Time{}},
		{`{"resourceType":"Patient","id":"a4","meta":null}`, "a4", "", time.Time{}},
	}
	for _, tc := range ok {
		var w store.ResourceWrite
		if reason := parseEntry([]byte(tc.raw), "Patient", &w); reason != "" {
			t.Fatalf("%s: %s", tc.raw, reason)
		}
		if w.ID != tc.id || w.SourceVersionID != tc.vid || !w.SourceLastUpdated.Equal(tc.lu) || string(w.Body) != tc.raw || w.ResourceType != "Patient" {
			t.Fatalf("%s: got %+v", tc.raw, w)
		}
	}
	bad := map[string]string{
		``:                                   "no resource",
		`null`:                               "no resource",
		`"Patient"`:                          "not a valid JSON object",
		`{"id":"x"}`:                         "no resourceType",
		`{"resourceType":"Patient"}`:         "no id",
		`{"resourceType":"Patient","id":7}`:  "id is not a string",
		`{"resourceType":"Patient","id":""}`: "no id",
		`{"resourceType":"Patient","id":"` + strings.Repeat("a", 65) + `"}`:      "not a valid FHIR id",
		`{"resourceType":"Patient","id":"a b"}`:                                  "not a valid FHIR id",
		`{"resourceType":"Observation","id":"x"}`:                                "is a Observation",
		`{"resourceType":"<script>","id":"x"}`:                                   "is a non-FHIR type",
		`{"resourceType":"Patient","id":"x","meta":{"lastUpdated":"yesterday"}}`: "not a FHIR instant",
		`{"resourceType":"Patient","id":"x","meta":{"lastUpdated":5}}`:           "meta.lastUpdated is not a string",
		`{"resourceType":"Patient","id":"x","meta":[]}`:                          "meta is not an object",
	}
	for raw, want := range bad {
		var w store.ResourceWrite
		if reason := parseEntry([]byte(raw), "Patient", &w); !strings.Contains(reason, want) {
			t.Errorf("%s: reason %q, want %q", raw, reason, want)
		}
	}
}

func TestParseEntriesSkipsOutcomesAndTracksMax(t *testing.T) {
	b := &fhir.Bundle{Entry: []fhir.BundleEntry{
		{Resource: []byte(`{"resourceType":"Patient","id":"a","meta":{"lastUpdated":"2025-01-01T00:00:00Z"}}`)},
		{Resource: []byte(`{"resourceType":"OperationOutcome"}`), Search: &fhir.EntrySearch{Mode: "outcome"}},
		{Resource: []byte(`{"resourceType":"Patient","id":"b","meta":{"lastUpdated":"2025-03-01T00:00:00Z"}}`)},
		{Resource: []byte(`{"resourceType":"Patient","meta":{"lastUpdated":"2026-01-01T00:00:00Z"}}`)},
	}}
	got, max := parseEntries(b, "Patient", maphash.MakeSeed())
	if len(got) != 3 || got[2].fail == "" || got[1].index != 2 {
		t.Fatalf("entries %+v", got)
	}
	if !max.Equal(time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("max %v (a failed entry must not count)", max)
	}
	if got[0].idHash == got[1].idHash || got[0].bodyHash == got[1].bodyHash {
		t.Fatal("hashes collide")
	}
}
