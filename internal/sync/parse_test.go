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

// BenchmarkParseEntry reads the header of a bulk-shaped resource (what
// every line of a bulk export goes through before it is mapped).
func BenchmarkParseEntry(b *testing.B) {
	raw := []byte(`{"resourceType":"Observation","id":"6ab423d8-3928-45ed-946f-58c53a60aae1","meta":{"versionId":"1","lastUpdated":"2025-10-09T20:50:57.804Z"},"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2823-3"}]},"subject":{"reference":"Patient/01689048-c32d-4d11-9c9e-36d99c099fe8"}}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var w store.ResourceWrite
		if fail := parseEntry(raw, "Observation", &w); fail != "" {
			b.Fatal(fail)
		}
	}
}

// TestParseEntryCompactMatchesGeneral requires the compact-header fast
// path to give what the general reader gives, on headers it takes and on
// near misses it must leave to the general reader.
func TestParseEntryCompactMatchesGeneral(t *testing.T) {
	const tail = `,"status":"final","code":{"text":"x"}}`
	metas := []string{
		`{"versionId":"1","lastUpdated":"2025-10-09T20:50:57.804Z"}`,
		`{"lastUpdated":"2025-10-09T20:50:57Z","versionId":"12"}`,
		`{"versionId":"3"}`,
		`{"lastUpdated":"2024-02-29T23:59:59.123456789Z"}`,
		`{}`,
		`{"versionId":"1","versionId":"2"}`,
		`{"versionId":"1","lastUpdated":"2025-02-29T00:00:00Z"}`, // no such day
		`{"versionId":"1","lastUpdated":"2025-01-01T24:00:00Z"}`,
		`{"versionId":"1","lastUpdated":"2025-01-01T23:59:60Z"}`,
		`{"versionId":"1","lastUpdated":"2025-01-01T10:00:00+02:00"}`,
		`{"versionId":"1","lastUpdated":"2025-01-01T10:00:00.Z"}`,
		`{"versionId":"1","lastUpdated":"2025-01-01T10:00:00.1234567890Z"}`,
		`{"versionId":"1","lastUpdated":"2025-01-01t10:00:00z"}`,
		`{"versionId":"1","lastUpdated":"2025-01-01"}`,
		`{"versionId":"1","lastUpdated":"yesterday"}`,
		`{"versionId":"1","lastUpdated":""}`,
		`{"versionId":"1","lastUpdated":5}`,
		`{"versionId":7}`,
		`{"versionId":"\u0031","lastUpdated":"2025-01-01T10:00:00Z"}`,
		`{"versionId":"1","tag":[{"code":"x"}],"lastUpdated":"2025-01-01T10:00:00Z"}`,
		`{ "versionId":"1"}`,
		`{"versionId":"1"`,
		`null`,
		`[]`,
	}
	ids := []string{"a1", "6ab423d8-3928-45ed-946f-58c53a60aae1", "", "a b", `a\u0033`, strings.Repeat("x", 65), `x"`}
	var inputs []string
	for _, id := range ids {
		for _, m := range metas {
			inputs = append(inputs,
				`{"resourceType":"Observation","id":"`+id+`","meta":`+m+tail,
				`{"resourceType":"Observation","id":"`+id+`","meta":`+m,
				`{"resourceType":"Observations","id":"`+id+`","meta":`+m+tail,
				`{"resourceType":"Patient","id":"`+id+`","meta":`+m+tail,
				`{"resourceType": "Observation","id":"`+id+`","meta":`+m+tail,
				`{"id":"`+id+`","resourceType":"Observation","meta":`+m+tail,
			)
		}
		inputs = append(inputs, `{"resourceType":"Observation","id":"`+id+`"`+tail, `{"resourceType":"Observation","id":"`+id+`","meta"`)
	}
	fast := 0
	for _, in := range inputs {
		var got, want store.ResourceWrite
		gotFail := parseEntry([]byte(in), "Observation", &got)
		wantFail := parseEntryGeneral([]byte(in), "Observation", &want)
		if gotFail != wantFail || got.ResourceType != want.ResourceType || got.ID != want.ID || got.SourceVersionID != want.SourceVersionID ||
			got.SourceLastUpdated != want.SourceLastUpdated || string(got.Body) != string(want.Body) {
			t.Errorf("%s:\n got  %q %+v\n want %q %+v", in, gotFail, got, wantFail, want)
		}
		if _, _, _, ok := compactHeader([]byte(in), "Observation"); ok {
			fast++
		}
	}
	if fast < 50 {
		t.Fatalf("the compact path took %d of %d inputs", fast, len(inputs))
	}
}

// TestParseUTCInstantMatchesParseInstant compares the instant fast path
// with fhir.ParseInstant wherever it claims a result.
func TestParseUTCInstantMatchesParseInstant(t *testing.T) {
	in := []string{
		"2025-10-09T20:50:57.804Z", "2025-10-09T20:50:57Z", "2000-02-29T00:00:00Z", "1900-02-29T00:00:00Z",
		"2025-12-31T23:59:59.999999999Z", "2025-01-01T00:00:00.1Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
		"2025-13-01T00:00:00Z", "2025-00-10T00:00:00Z", "2025-04-31T00:00:00Z", "2025-01-01T00:60:00Z",
		"2025-01-01T00:00:00.000000000Z", "2025-01-01T00:00:00.0000000001Z", "2025-01-01T00:00:00,5Z", "2025-01-01T-1:00:00Z",
		"+025-01-01T00:00:00Z", "2025-01-01T00:00:00.5x5Z",
	}
	for _, s := range in {
		got, ok := parseUTCInstant([]byte(s))
		want, err := fhir.ParseInstant(s)
		if ok {
			if err != nil || got != want.UTC() {
				t.Errorf("%s: fast %v, ParseInstant %v %v", s, got, want, err)
			}
		}
	}
	if _, ok := parseUTCInstant([]byte("2025-10-09T20:50:57.804Z")); !ok {
		t.Fatal("the common form is not read by the fast path")
	}
}
