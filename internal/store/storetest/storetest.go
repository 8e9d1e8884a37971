// Package storetest is the conformance suite for store.Store
// implementations: every implementation's tests call Run, so SQLite today
// and PostgreSQL later keep exactly the same contract.
//
// Contract details the interface leaves open and this suite fixes:
//   - ListRaw, ListRuns and ListAudit return newest first.
//   - GetResource of a deleted resource returns its current version with
//     Deleted set (no error); deleting a resource that does not exist, or is
//     already deleted, is Unchanged and writes nothing.
//   - Search orders by meta.lastUpdated, then id, and agrees with
//     searchparam.Match on the same bodies; Query.After tokens from one
//     search are rejected by another.
//   - Every method rejects an empty practice.
package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/fhir/searchparam"
	"github.com/mediflow/mediflow/internal/store"
)

// Run runs the suite. open must return a new, empty, migrated store; the
// suite closes it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Migrate", testMigrate},
		{"RawRoundTrip", testRawRoundTrip},
		{"RawList", testRawList},
		{"WriteOutcomes", testWriteOutcomes},
		{"HistoryAndVersions", testHistory},
		{"BatchSameIDTwice", testBatchSameID},
		{"Deleted", testDeleted},
		{"InvalidWrites", testInvalidWrites},
		{"ChangeFeed", testChangeFeed},
		{"CountResources", testCountResources},
		{"CurrentRefs", testCurrentRefs},
		{"State", testState},
		{"SearchSemantics", testSearchSemantics},
		{"SearchPaging", testSearchPaging},
		{"SearchErrors", testSearchErrors},
		{"Cursors", testCursors},
		{"Runs", testRuns},
		{"Capabilities", testCapabilities},
		{"Audit", testAudit},
		{"EmptyPractice", testEmptyPractice},
		{"TenantIsolation", testTenantIsolation},
		{"ConcurrentWriters", testConcurrentWriters},
		{"HL7RoundTrip", testHL7RoundTrip},
		{"HL7Invalid", testHL7Invalid},
		{"HL7Dedup", testHL7Dedup},
		{"HL7Update", testHL7Update},
		{"HL7List", testHL7List},
		{"HL7Count", testHL7Count},
		{"HL7TenantIsolation", testHL7TenantIsolation},
		{"HL7Concurrent", testHL7Concurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
	runDelivery(t, open)
	runIntent(t, open)
}

func ctx(t *testing.T) context.Context { return t.Context() }

func must[T any](t *testing.T) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func hashOf(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// ts returns a fixed UTC instant plus n seconds.
func ts(n int) time.Time {
	return time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Second)
}

func patient(id, family, given, gender, birth string, lu time.Time) []byte {
	return fmt.Appendf(nil, `{"resourceType":"Patient","id":%q,"meta":{"lastUpdated":%q},"name":[{"family":%q,"given":[%q]}],"gender":%q,"birthDate":%q}`,
		id, lu.UTC().Format("2006-01-02T15:04:05.000Z"), family, given, gender, birth)
}

func observation(id, patientRef, code, effective string, lu time.Time) []byte {
	return fmt.Appendf(nil, `{"resourceType":"Observation","id":%q,"meta":{"lastUpdated":%q},"status":"final","code":{"coding":[{"system":"http://loinc.org","code":%q}]},"subject":{"reference":%q},"effectiveDateTime":%q}`,
		id, lu.UTC().Format("2006-01-02T15:04:05.000Z"), code, patientRef, effective)
}

func pw(id string, body []byte) store.ResourceWrite {
	return store.ResourceWrite{ResourceType: "Patient", ID: id, Body: body, Connection: "ehr"}
}

func write(t *testing.T, s store.Store, practice string, ws ...store.ResourceWrite) []store.WriteResult {
	t.Helper()
	res, err := s.WriteResources(ctx(t), practice, ws)
	if err != nil {
		t.Fatalf("WriteResources: %v", err)
	}
	if len(res) != len(ws) {
		t.Fatalf("WriteResources returned %d results for %d writes", len(res), len(ws))
	}
	return res
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: error %v, want one wrapping store.ErrNotFound", what, err)
	}
}

func testMigrate(t *testing.T, s store.Store) {
	for i := 0; i < 2; i++ {
		if err := s.Migrate(ctx(t)); err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
	}
	// Still usable afterwards.
	write(t, s, "p1", pw("a", patient("a", "Doe", "Jo", "female", "1990-01-01", ts(0))))
}

func testRawRoundTrip(t *testing.T, s store.Store) {
	bodies := [][]byte{
		[]byte("\xef\xbb\xbf{\"resourceType\":\"Bundle\",\r\n \"entry\": []}\n"),
		{0x00, 0xff, 0xfe, 0x80, '\n', 0x00},
		[]byte("MSH|^~\\&|EPIC|HOSP|||20240501120000||ADT^A01|1|P|2.5\r"),
		{},
	}
	fetched := time.Date(2024, 5, 1, 8, 30, 0, 123456789, time.FixedZone("EST", -5*3600))
	for i, body := range bodies {
		in := store.RawPayload{Practice: "p1", Connection: "epic-prod", Source: "fhir-rest", RequestURL: "https://ehr.example/fhir/Patient?_count=50",
			ContentType: "application/fhir+json; charset=utf-8", FetchedAt: fetched, Body: body}
		id := must[int64](t)(s.PutRaw(ctx(t), in))
		if id <= 0 {
			t.Fatalf("PutRaw id %d", id)
		}
		got := must[store.RawPayload](t)(s.GetRaw(ctx(t), "p1", id))
		if string(got.Body) != string(body) {
			t.Errorf("body %d: got %q, want %q", i, got.Body, body)
		}
		if got.ID != id || got.Practice != in.Practice || got.Connection != in.Connection || got.Source != in.Source ||
			got.RequestURL != in.RequestURL || got.ContentType != in.ContentType || !got.FetchedAt.Equal(fetched) {
			t.Errorf("round trip: got %+v, want %+v", got, in)
		}
	}
	_, err := s.GetRaw(ctx(t), "p1", 999999)
	wantNotFound(t, "GetRaw(unknown)", err)
}

func testRawList(t *testing.T, s store.Store) {
	var ids []int64
	for i := 0; i < 5; i++ {
		conn := "a"
		if i%2 == 1 {
			conn = "b"
		}
		ids = append(ids, must[int64](t)(s.PutRaw(ctx(t), store.RawPayload{Practice: "p1", Connection: conn, Source: "fhir-rest", FetchedAt: ts(i * 60), Body: []byte{byte(i)}})))
	}
	all := must[[]store.RawPayload](t)(s.ListRaw(ctx(t), "p1", store.RawFilter{}))
	if len(all) != 5 {
		t.Fatalf("ListRaw: %d payloads, want 5", len(all))
	}
	for i, p := range all {
		if p.ID != ids[4-i] {
			t.Errorf("ListRaw[%d] id %d, want %d (newest first)", i, p.ID, ids[4-i])
		}
	}
	b := must[[]store.RawPayload](t)(s.ListRaw(ctx(t), "p1", store.RawFilter{Connection: "b"}))
	if len(b) != 2 || b[0].Connection != "b" || b[1].Connection != "b" {
		t.Errorf("ListRaw(connection b): %d payloads", len(b))
	}
	since := must[[]store.RawPayload](t)(s.ListRaw(ctx(t), "p1", store.RawFilter{Since: ts(120)}))
	if len(since) != 3 {
		t.Errorf("ListRaw(since): %d payloads, want 3", len(since))
	}
	lim := must[[]store.RawPayload](t)(s.ListRaw(ctx(t), "p1", store.RawFilter{Limit: 2}))
	if len(lim) != 2 || lim[0].ID != ids[4] {
		t.Errorf("ListRaw(limit 2): %d payloads", len(lim))
	}
}

func testWriteOutcomes(t *testing.T, s store.Store) {
	before := time.Now().Add(-time.Minute)
	v1 := patient("a", "Doe", "Jo", "female", "1990-01-01", ts(0))
	w := store.ResourceWrite{ResourceType: "Patient", ID: "a", SourceVersionID: "7", SourceLastUpdated: ts(0), Connection: "epic", RawID: 42, Body: v1}
	r := write(t, s, "p1", w)[0]
	if r.Outcome != store.Created || r.Version != 1 || r.Seq <= 0 {
		t.Fatalf("first write: %+v, want created v1 with a seq", r)
	}
	got := must[store.Resource](t)(s.GetResource(ctx(t), "p1", "Patient", "a"))
	if string(got.Body) != string(v1) || got.Version != 1 || got.Seq != r.Seq || got.Practice != "p1" || got.ResourceType != "Patient" ||
		got.ID != "a" || got.SourceVersionID != "7" || !got.SourceLastUpdated.Equal(ts(0)) || got.Connection != "epic" || got.RawID != 42 ||
		got.Deleted || got.ContentHash != hashOf(v1) || got.StoredAt.Before(before) {
		t.Errorf("GetResource: %+v", got)
	}
	same := write(t, s, "p1", w)[0]
	if same.Outcome != store.Unchanged || same.Version != 1 || same.Seq != 0 {
		t.Errorf("same content: %+v, want unchanged v1 seq 0", same)
	}
	// Only the content decides: new source metadata with the same body is unchanged.
	w2 := w
	w2.SourceVersionID = "8"
	if o := write(t, s, "p1", w2)[0]; o.Outcome != store.Unchanged {
		t.Errorf("same body, new versionId: %v, want unchanged", o.Outcome)
	}
	v2 := patient("a", "Doe", "Joanna", "female", "1990-01-01", ts(5))
	w3 := w
	w3.Body, w3.SourceVersionID = v2, "9"
	up := write(t, s, "p1", w3)[0]
	if up.Outcome != store.Updated || up.Version != 2 || up.Seq <= r.Seq {
		t.Errorf("changed content: %+v, want updated v2 with a larger seq", up)
	}
	got = must[store.Resource](t)(s.GetResource(ctx(t), "p1", "Patient", "a"))
	if string(got.Body) != string(v2) || got.Version != 2 || got.SourceVersionID != "9" || got.ContentHash != hashOf(v2) {
		t.Errorf("after update: %+v", got)
	}
	_, err := s.GetResource(ctx(t), "p1", "Patient", "nope")
	wantNotFound(t, "GetResource(unknown)", err)
	_, err = s.GetResource(ctx(t), "p1", "Observation", "a")
	wantNotFound(t, "GetResource(other type)", err)
	if o := store.Created.String() + store.Updated.String() + store.Unchanged.String(); o != "createdupdatedunchanged" {
		t.Errorf("Outcome strings: %q", o)
	}
}

func testHistory(t *testing.T, s store.Store) {
	var bodies [][]byte
	for i := 0; i < 4; i++ {
		b := patient("h", "Hist", fmt.Sprint("G", i), "male", "1970-02-03", ts(i))
		bodies = append(bodies, b)
		write(t, s, "p1", pw("h", b))
	}
	// Another resource's versions interleave in the feed.
	write(t, s, "p1", pw("other", patient("other", "X", "Y", "male", "1970", ts(0))))
	hist := must[[]store.Resource](t)(s.History(ctx(t), "p1", "Patient", "h"))
	if len(hist) != 4 {
		t.Fatalf("History: %d versions, want 4", len(hist))
	}
	for i, r := range hist {
		wantV := 4 - i
		if r.Version != wantV || string(r.Body) != string(bodies[wantV-1]) || r.ID != "h" {
			t.Errorf("History[%d]: version %d, want %d (newest first)", i, r.Version, wantV)
		}
		if i > 0 && r.Seq >= hist[i-1].Seq {
			t.Errorf("History seqs not decreasing: %d then %d", hist[i-1].Seq, r.Seq)
		}
	}
	for v := 1; v <= 4; v++ {
		r := must[store.Resource](t)(s.GetResourceVersion(ctx(t), "p1", "Patient", "h", v))
		if r.Version != v || string(r.Body) != string(bodies[v-1]) {
			t.Errorf("GetResourceVersion(%d): version %d", v, r.Version)
		}
	}
	for _, v := range []int{0, 5, -1} {
		_, err := s.GetResourceVersion(ctx(t), "p1", "Patient", "h", v)
		wantNotFound(t, fmt.Sprintf("GetResourceVersion(%d)", v), err)
	}
	_, err := s.History(ctx(t), "p1", "Patient", "nope")
	wantNotFound(t, "History(unknown)", err)
	_, err = s.GetResourceVersion(ctx(t), "p1", "Patient", "nope", 1)
	wantNotFound(t, "GetResourceVersion(unknown)", err)
}

func testBatchSameID(t *testing.T, s store.Store) {
	x := patient("d", "Dup", "A", "female", "1980", ts(0))
	y := patient("d", "Dup", "B", "female", "1980", ts(1))
	res := write(t, s, "p1", pw("d", x), pw("d", y))
	if res[1].Outcome == store.Unchanged {
		t.Errorf("second write of a new body reported unchanged")
	}
	got := must[store.Resource](t)(s.GetResource(ctx(t), "p1", "Patient", "d"))
	if string(got.Body) != string(y) {
		t.Errorf("later write must win: body %s", got.Body)
	}
	hist := must[[]store.Resource](t)(s.History(ctx(t), "p1", "Patient", "d"))
	if len(hist) != got.Version || res[1].Version != got.Version {
		t.Errorf("version %d, history %d, result %+v", got.Version, len(hist), res)
	}
	// The same body twice: the second is unchanged.
	z := patient("e", "Dup", "C", "female", "1980", ts(2))
	res = write(t, s, "p1", pw("e", z), pw("e", z))
	if res[0].Outcome != store.Created || res[1].Outcome != store.Unchanged || res[1].Version != 1 {
		t.Errorf("same body twice: %+v", res)
	}
	// Search sees only the final state, once.
	page := must[store.SearchPage](t)(s.Search(ctx(t), "p1", store.Query{ResourceType: "Patient", Params: []store.SearchParam{{Name: "family", Values: []string{"dup"}}}}))
	if page.Total != 2 || len(page.Resources) != 2 {
		t.Errorf("search after duplicate writes: total %d, %d resources", page.Total, len(page.Resources))
	}
	page = must[store.SearchPage](t)(s.Search(ctx(t), "p1", store.Query{ResourceType: "Patient", Params: []store.SearchParam{{Name: "given", Values: []string{"a"}}}}))
	if page.Total != 0 {
		t.Errorf("superseded body still searchable: total %d", page.Total)
	}
}

func testDeleted(t *testing.T, s store.Store) {
	b := patient("x", "Gone", "Soon", "male", "1960", ts(0))
	write(t, s, "p1", pw("x", b))
	del := store.ResourceWrite{ResourceType: "Patient", ID: "x", Deleted: true, Connection: "ehr"}
	r := write(t, s, "p1", del)[0]
	if r.Outcome != store.Updated || r.Version != 2 || r.Seq == 0 {
		t.Fatalf("delete: %+v, want updated v2", r)
	}
	got := must[store.Resource](t)(s.GetResource(ctx(t), "p1", "Patient", "x"))
	if !got.Deleted || got.Version != 2 {
		t.Errorf("GetResource after delete: deleted=%v version=%d", got.Deleted, got.Version)
	}
	if again := write(t, s, "p1", del)[0]; again.Outcome != store.Unchanged {
		t.Errorf("delete again: %v, want unchanged", again.Outcome)
	}
	page := must[store.SearchPage](t)(s.Search(ctx(t), "p1", store.Query{ResourceType: "Patient"}))
	if page.Total != 0 || len(page.Resources) != 0 {
		t.Errorf("deleted resource found by search: %d", page.Total)
	}
	counts := must[map[string]int](t)(s.CountResources(ctx(t), "p1"))
	if counts["Patient"] != 0 {
		t.Errorf("CountResources counts a deleted resource: %v", counts)
	}
	changes := must[[]store.Change](t)(s.Changes(ctx(t), "p1", 0, 100))
	if len(changes) != 2 || !changes[1].Deleted || changes[1].Version != 2 {
		t.Errorf("change feed after delete: %+v", changes)
	}
	// Re-creating continues the version sequence.
	re := write(t, s, "p1", pw("x", b))[0]
	if re.Outcome != store.Updated || re.Version != 3 {
		t.Errorf("re-create: %+v, want updated v3", re)
	}
	if got := must[store.Resource](t)(s.GetResource(ctx(t), "p1", "Patient", "x")); got.Deleted || string(got.Body) != string(b) {
		t.Errorf("after re-create: deleted=%v", got.Deleted)
	}
	if page := must[store.SearchPage](t)(s.Search(ctx(t), "p1", store.Query{ResourceType: "Patient", Params: []store.SearchParam{{Name: "family", Values: []string{"gone"}}}})); page.Total != 1 {
		t.Errorf("re-created resource not searchable: %d", page.Total)
	}
	// Deleting what never existed writes nothing.
	r = write(t, s, "p1", store.ResourceWrite{ResourceType: "Patient", ID: "never", Deleted: true})[0]
	if r.Outcome != store.Unchanged || r.Seq != 0 {
		t.Errorf("delete unknown: %+v", r)
	}
	_, err := s.GetResource(ctx(t), "p1", "Patient", "never")
	wantNotFound(t, "GetResource(deleted-never-existed)", err)
}

func testInvalidWrites(t *testing.T, s store.Store) {
	bad := [][]store.ResourceWrite{
		{{ResourceType: "Patient", ID: "a", Body: []byte(`not json`)}},
		{{ResourceType: "Patient", ID: "a", Body: []byte(`{"resourceType":"Observation","id":"a"}`)}},
		{{ResourceType: "Patient", ID: "a", Body: []byte(`{"resourceType":"Patient","id":"b"}`)}},
		{{ResourceType: "", ID: "a", Body: []byte(`{}`)}},
		{{ResourceType: "Patient", ID: "", Body: []byte(`{"resourceType":"Patient"}`)}},
		// One bad write fails the whole batch.
		{pw("ok", patient("ok", "A", "B", "male", "1990", ts(0))), {ResourceType: "Patient", ID: "a", Body: []byte(`{`)}},
	}
	for i, ws := range bad {
		if _, err := s.WriteResources(ctx(t), "p1", ws); err == nil {
			t.Errorf("batch %d: no error", i)
		}
	}
	if changes := must[[]store.Change](t)(s.Changes(ctx(t), "p1", 0, 100)); len(changes) != 0 {
		t.Errorf("failed batches wrote %d changes", len(changes))
	}
	if res := must[[]store.WriteResult](t)(s.WriteResources(ctx(t), "p1", nil)); len(res) != 0 {
		t.Errorf("empty batch: %v", res)
	}
}

func testChangeFeed(t *testing.T, s store.Store) {
	var seqs []int64
	for i := 0; i < 10; i++ {
		id := fmt.Sprint("c", i%4)
		res := write(t, s, "p1", pw(id, patient(id, "Feed", fmt.Sprint(i), "male", "1990", ts(i))))
		seqs = append(seqs, res[0].Seq)
		write(t, s, "p2", pw(id, patient(id, "Other", fmt.Sprint(i), "male", "1990", ts(i))))
	}
	changes := must[[]store.Change](t)(s.Changes(ctx(t), "p1", 0, 1000))
	if len(changes) != 10 {
		t.Fatalf("Changes: %d, want 10", len(changes))
	}
	for i, c := range changes {
		if c.Seq != seqs[i] || c.ResourceType != "Patient" || c.ID != fmt.Sprint("c", i%4) || c.StoredAt.IsZero() {
			t.Errorf("change %d: %+v (want seq %d)", i, c, seqs[i])
		}
		if i > 0 && c.Seq <= changes[i-1].Seq {
			t.Errorf("change feed not increasing at %d", i)
		}
		if want := i/4 + 1; c.Version != want {
			t.Errorf("change %d: version %d, want %d", i, c.Version, want)
		}
	}
	after := must[[]store.Change](t)(s.Changes(ctx(t), "p1", seqs[6], 1000))
	if len(after) != 3 || after[0].Seq != seqs[7] {
		t.Errorf("Changes(since=%d): %d changes", seqs[6], len(after))
	}
	lim := must[[]store.Change](t)(s.Changes(ctx(t), "p1", 0, 4))
	if len(lim) != 4 || lim[3].Seq != seqs[3] {
		t.Errorf("Changes(limit 4): %d", len(lim))
	}
	// Reading the feed page by page covers every change once.
	var got []int64
	since := int64(0)
	for {
		page := must[[]store.Change](t)(s.Changes(ctx(t), "p1", since, 3))
		if len(page) == 0 {
			break
		}
		for _, c := range page {
			got = append(got, c.Seq)
		}
		since = page[len(page)-1].Seq
	}
	if !slices.Equal(got, seqs) {
		t.Errorf("paged feed %v, want %v", got, seqs)
	}
	if none := must[[]store.Change](t)(s.Changes(ctx(t), "p1", seqs[9], 10)); len(none) != 0 {
		t.Errorf("Changes past the end: %d", len(none))
	}
}

func testCountResources(t *testing.T, s store.Store) {
	write(t, s, "p1",
		pw("a", patient("a", "A", "A", "male", "1990", ts(0))),
		pw("b", patient("b", "B", "B", "male", "1990", ts(0))),
		store.ResourceWrite{ResourceType: "Observation", ID: "o", Body: observation("o", "Patient/a", "8867-4", "2024-01-01", ts(0))},
	)
	got := must[map[string]int](t)(s.CountResources(ctx(t), "p1"))
	want := map[string]int{"Patient": 2, "Observation": 1}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("CountResources: %v, want %v", got, want)
	}
	if got := must[map[string]int](t)(s.CountResources(ctx(t), "empty")); len(got) != 0 {
		t.Errorf("CountResources(empty practice): %v", got)
	}
}

// corpus is a small practice with resources chosen so the searches below
// hit prefix, case, accent, token, reference and date edge cases.
func corpus() []store.ResourceWrite {
	var ws []store.ResourceWrite
	pats := []struct{ id, family, given, gender, birth string }{
		{"p01", "Smith", "Anna", "female", "1980-05-17"},
		{"p02", "Smyth", "Ann", "female", "1980-05"},
		{"p03", "Müller", "Jürgen", "male", "1975-12-31"},
		{"p04", "Muller", "Jo", "male", "1975"},
		{"p05", "García", "José", "male", "2001-01-01"},
		{"p06", "Garcia", "Maria", "female", "2001-01-02"},
		{"p07", "smith", "Zoe", "other", "1999-07-04"},
		{"p08", "Lee", "Li", "unknown", "1980-05-18"},
		{"p09", "Leeson", "Lars", "male", "1980-05-16"},
		{"p10", "O'Neil", "Sean", "male", "1980-05-17"},
	}
	for i, p := range pats {
		ws = append(ws, pw(p.id, patient(p.id, p.family, p.given, p.gender, p.birth, ts(100-i*7%13))))
	}
	obs := []struct{ id, subject, code, eff string }{
		{"o1", "Patient/p01", "8867-4", "2024-03-10T08:30:00Z"},
		{"o2", "Patient/p01", "8480-6", "2024-03-11"},
		{"o3", "Patient/p02", "8867-4", "2024-03"},
		{"o4", "Patient/p03", "29463-7", "2023-12-31T23:59:59Z"},
		{"o5", "Group/g1", "8867-4", "2024-03-10"},
	}
	for i, o := range obs {
		ws = append(ws, store.ResourceWrite{ResourceType: "Observation", ID: o.id, Body: observation(o.id, o.subject, o.code, o.eff, ts(i%2))})
	}
	return ws
}

var searches = []struct {
	rt, query string
}{
	{"Patient", ""},
	{"Patient", "family=smi"},
	{"Patient", "family=SMITH"},
	{"Patient", "family=mul"},
	{"Patient", "family=müller"},
	{"Patient", "family:exact=Müller"},
	{"Patient", "family:contains=ll"},
	{"Patient", "given=jo"},
	{"Patient", "name=l"},
	{"Patient", "gender=male"},
	{"Patient", "gender=female,other"},
	{"Patient", "gender=male&family=g"},
	{"Patient", "birthdate=1980-05-17"},
	{"Patient", "birthdate=1980-05"},
	{"Patient", "birthdate=ge1980-05-17"},
	{"Patient", "birthdate=gt1980-05-17"},
	{"Patient", "birthdate=lt1980-05-17"},
	{"Patient", "birthdate=le1975-12-31"},
	{"Patient", "birthdate=ge1980&birthdate=lt2000"},
	{"Patient", "birthdate=sa1999"},
	{"Patient", "birthdate=eb1980"},
	{"Patient", "birthdate=ne1975"},
	{"Patient", "_id=p03,p07,zz"},
	{"Patient", "_lastUpdated=ge2024-05-01T12:01:30Z"},
	{"Patient", "family=nobody"},
	{"Observation", "patient=p01"},
	{"Observation", "patient=Patient/p01"},
	{"Observation", "subject=Group/g1"},
	{"Observation", "code=8867-4"},
	{"Observation", "code=http://loinc.org|8480-6"},
	{"Observation", "code=http://loinc.org|"},
	{"Observation", "code=|8867-4"},
	{"Observation", "date=2024-03-10"},
	{"Observation", "date=ge2024-03-10"},
	{"Observation", "date=lt2024"},
	{"Observation", "date=2024-03&code=8867-4"},
	{"Observation", "date:missing=false"},
}

func parse(t *testing.T, rt, q string) []store.SearchParam {
	t.Helper()
	vals, err := url.ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	ps, _, err := searchparam.Parse(rt, vals)
	if err != nil {
		t.Fatalf("%s?%s: %v", rt, q, err)
	}
	return ps
}

// expected computes a search's answer with searchparam.Match over the
// bodies, ordered by (meta.lastUpdated, id).
func expected(t *testing.T, ws []store.ResourceWrite, rt string, params []store.SearchParam) []string {
	t.Helper()
	type hit struct {
		id string
		lu time.Time
	}
	var hits []hit
	for _, w := range ws {
		if w.ResourceType != rt {
			continue
		}
		es, err := searchparam.Extract(rt, w.Body)
		if err != nil {
			t.Fatal(err)
		}
		ok := true
		for _, p := range params {
			if !searchparam.Match(es, p) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		var lu time.Time
		for _, e := range es {
			if e.Name == "_lastUpdated" {
				lu = e.Low
			}
		}
		hits = append(hits, hit{w.ID, lu})
	}
	sort.Slice(hits, func(i, j int) bool {
		if !hits[i].lu.Equal(hits[j].lu) {
			return hits[i].lu.Before(hits[j].lu)
		}
		return hits[i].id < hits[j].id
	})
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.id
	}
	return out
}

// searchAll pages through a search, checking Total on every page.
func searchAll(t *testing.T, s store.Store, practice, rt string, params []store.SearchParam, count int) (ids []string, total int) {
	t.Helper()
	after := ""
	for pages := 0; ; pages++ {
		page, err := s.Search(ctx(t), practice, store.Query{ResourceType: rt, Params: params, Count: count, After: after})
		if err != nil {
			t.Fatalf("Search: %v", err)
		}
		if pages == 0 {
			total = page.Total
		} else if page.Total != total {
			t.Errorf("Total changed between pages: %d then %d", total, page.Total)
		}
		if count > 0 && len(page.Resources) > count {
			t.Fatalf("page of %d resources, count %d", len(page.Resources), count)
		}
		for _, r := range page.Resources {
			if r.ResourceType != rt || r.Practice != practice || r.Deleted {
				t.Errorf("search returned %s/%s of practice %q deleted=%v", r.ResourceType, r.ID, r.Practice, r.Deleted)
			}
			ids = append(ids, r.ID)
		}
		if page.Next == "" {
			return ids, total
		}
		if len(page.Resources) == 0 {
			t.Fatal("empty page with a next token")
		}
		if pages > 1000 {
			t.Fatal("paging does not end")
		}
		after = page.Next
	}
}

func testSearchSemantics(t *testing.T, s store.Store) {
	ws := corpus()
	write(t, s, "p1", ws...)
	for _, q := range searches {
		params := parse(t, q.rt, q.query)
		want := expected(t, ws, q.rt, params)
		got, total := searchAll(t, s, "p1", q.rt, params, 0)
		if !slices.Equal(got, want) {
			t.Errorf("%s?%s:\n got %v\nwant %v (searchparam.Match)", q.rt, q.query, got, want)
		}
		if total != len(want) {
			t.Errorf("%s?%s: Total %d, want %d", q.rt, q.query, total, len(want))
		}
	}
	// Non-trivial expectations, so an empty corpus cannot pass.
	if want := expected(t, ws, "Patient", parse(t, "Patient", "family=smi")); len(want) != 2 {
		t.Fatalf("corpus broken: family=smi matches %v", want)
	}
}

func testSearchPaging(t *testing.T, s store.Store) {
	var ws []store.ResourceWrite
	for i := 0; i < 53; i++ {
		id := fmt.Sprintf("pg%02d", i)
		// Many equal lastUpdated values: ordering must fall back to id.
		ws = append(ws, pw(id, patient(id, "Page", fmt.Sprint(i), []string{"male", "female"}[i%2], "1990", ts(i%5))))
	}
	write(t, s, "p1", ws...)
	for _, q := range []string{"", "gender=female", "family=page&gender=male", "_id=pg01,pg06,pg11"} {
		params := parse(t, "Patient", q)
		want := expected(t, ws, "Patient", params)
		for _, count := range []int{1, 7, 20, 100} {
			got, total := searchAll(t, s, "p1", "Patient", params, count)
			if !slices.Equal(got, want) {
				t.Errorf("%q count %d: pages give %v\nwant %v", q, count, got, want)
			}
			if total != len(want) {
				t.Errorf("%q count %d: Total %d, want %d", q, count, total, len(want))
			}
		}
	}
	// Default page size is 20.
	page := must[store.SearchPage](t)(s.Search(ctx(t), "p1", store.Query{ResourceType: "Patient"}))
	if len(page.Resources) != 20 || page.Total != 53 || page.Next == "" {
		t.Errorf("default page: %d resources, total %d, next %q", len(page.Resources), page.Total, page.Next)
	}
	// Writes between pages neither duplicate nor skip resources that did not change.
	first := must[store.SearchPage](t)(s.Search(ctx(t), "p1", store.Query{ResourceType: "Patient", Count: 10}))
	write(t, s, "p1", pw("zz-new", patient("zz-new", "Page", "new", "male", "1990", ts(1000))))
	seen := map[string]bool{}
	for _, r := range first.Resources {
		seen[r.ID] = true
	}
	after := first.Next
	for after != "" {
		p := must[store.SearchPage](t)(s.Search(ctx(t), "p1", store.Query{ResourceType: "Patient", Count: 10, After: after}))
		for _, r := range p.Resources {
			if seen[r.ID] {
				t.Errorf("resource %s on two pages", r.ID)
			}
			seen[r.ID] = true
		}
		after = p.Next
	}
	for _, w := range ws {
		if !seen[w.ID] {
			t.Errorf("resource %s skipped by paging", w.ID)
		}
	}
}

func testSearchErrors(t *testing.T, s store.Store) {
	write(t, s, "p1", pw("a", patient("a", "A", "A", "male", "1990", ts(0))), pw("b", patient("b", "B", "B", "male", "1990", ts(1))))
	bad := []store.Query{
		{ResourceType: "Patient", Params: []store.SearchParam{{Name: "shoe-size", Values: []string{"9"}}}},
		{ResourceType: "Patient", Params: []store.SearchParam{{Name: "birthdate", Values: []string{"yesterday"}}}},
		{ResourceType: "Patient", After: "not-a-token"},
	}
	for _, q := range bad {
		if _, err := s.Search(ctx(t), "p1", q); err == nil {
			t.Errorf("Search(%+v): no error", q)
		}
	}
	first := must[store.SearchPage](t)(s.Search(ctx(t), "p1", store.Query{ResourceType: "Patient", Count: 1}))
	if first.Next == "" {
		t.Fatal("no next token")
	}
	other := store.Query{ResourceType: "Patient", Count: 1, After: first.Next, Params: []store.SearchParam{{Name: "gender", Values: []string{"male"}}}}
	if _, err := s.Search(ctx(t), "p1", other); err == nil {
		t.Error("a page token was accepted by a different search")
	}
	if _, err := s.Search(ctx(t), "p2", store.Query{ResourceType: "Patient", Count: 1, After: first.Next}); err == nil {
		t.Error("a page token was accepted by another practice")
	}
	empty := must[store.SearchPage](t)(s.Search(ctx(t), "p1", store.Query{ResourceType: "Encounter"}))
	if empty.Total != 0 || len(empty.Resources) != 0 || empty.Next != "" {
		t.Errorf("search of an empty type: %+v", empty)
	}
}

func testCursors(t *testing.T, s store.Store) {
	c := must[store.Cursor](t)(s.GetCursor(ctx(t), "p1", "epic", "Patient"))
	if c.Practice != "p1" || c.Connection != "epic" || c.ResourceType != "Patient" || !c.Watermark.IsZero() || c.PageURL != "" || c.RunID != 0 {
		t.Errorf("missing cursor: %+v", c)
	}
	in := store.Cursor{Practice: "p1", Connection: "epic", ResourceType: "Patient", Watermark: ts(10).Add(123456789),
		PageURL: "https://ehr.example/fhir/Patient?page=3&_getpages=abc", RunID: 7, RunStart: ts(20)}
	if err := s.PutCursor(ctx(t), in); err != nil {
		t.Fatal(err)
	}
	got := must[store.Cursor](t)(s.GetCursor(ctx(t), "p1", "epic", "Patient"))
	if !got.Watermark.Equal(in.Watermark) || got.PageURL != in.PageURL || got.RunID != 7 || !got.RunStart.Equal(in.RunStart) || got.UpdatedAt.IsZero() {
		t.Errorf("cursor round trip: %+v", got)
	}
	in.PageURL, in.RunID, in.RunStart, in.Watermark = "", 0, time.Time{}, ts(30)
	if err := s.PutCursor(ctx(t), in); err != nil {
		t.Fatal(err)
	}
	got = must[store.Cursor](t)(s.GetCursor(ctx(t), "p1", "epic", "Patient"))
	if !got.Watermark.Equal(ts(30)) || got.PageURL != "" || got.RunID != 0 || !got.RunStart.IsZero() {
		t.Errorf("cursor overwrite: %+v", got)
	}
	if other := must[store.Cursor](t)(s.GetCursor(ctx(t), "p1", "epic", "Observation")); !other.Watermark.IsZero() {
		t.Errorf("cursors share state across types: %+v", other)
	}
	if other := must[store.Cursor](t)(s.GetCursor(ctx(t), "p1", "cerner", "Patient")); !other.Watermark.IsZero() {
		t.Errorf("cursors share state across connections: %+v", other)
	}
}

func testRuns(t *testing.T, s store.Store) {
	start := ts(0)
	id1 := must[int64](t)(s.StartRun(ctx(t), store.Run{Practice: "p1", Connection: "epic", Trigger: "startup", Status: store.RunRunning, StartedAt: start}))
	id2 := must[int64](t)(s.StartRun(ctx(t), store.Run{Practice: "p1", Connection: "cerner", Trigger: "schedule", Status: store.RunRunning, StartedAt: ts(5)}))
	id3 := must[int64](t)(s.StartRun(ctx(t), store.Run{Practice: "p1", Connection: "epic", Trigger: "manual", Status: store.RunRunning, StartedAt: ts(9)}))
	if id1 <= 0 || id2 <= id1 || id3 <= id2 {
		t.Fatalf("run ids %d %d %d", id1, id2, id3)
	}
	r := must[store.Run](t)(s.GetRun(ctx(t), "p1", id1))
	if r.ID != id1 || r.Practice != "p1" || r.Connection != "epic" || r.Trigger != "startup" || r.Status != store.RunRunning ||
		!r.StartedAt.Equal(start) || !r.FinishedAt.IsZero() || len(r.Stats) != 0 {
		t.Errorf("GetRun: %+v", r)
	}
	stats := map[string]*store.TypeStats{
		"Patient":     {Fetched: 120, New: 100, Changed: 15, Unchanged: 3, Failed: 2, Pages: 3, Failures: []string{"Patient/9: invalid JSON", "Patient/12: no id"}},
		"Observation": {Fetched: 10, New: 10, Pages: 1},
	}
	upd := store.Run{ID: id1, Practice: "p1", Status: store.RunPartial, FinishedAt: ts(60), Error: "2 resources failed", Stats: stats}
	if err := s.UpdateRun(ctx(t), upd); err != nil {
		t.Fatal(err)
	}
	r = must[store.Run](t)(s.GetRun(ctx(t), "p1", id1))
	if r.Status != store.RunPartial || !r.FinishedAt.Equal(ts(60)) || r.Error != upd.Error || !reflect.DeepEqual(r.Stats, stats) ||
		r.Trigger != "startup" || !r.StartedAt.Equal(start) {
		t.Errorf("after UpdateRun: %+v", r)
	}
	list := must[[]store.Run](t)(s.ListRuns(ctx(t), "p1", "", 0))
	if len(list) != 3 || list[0].ID != id3 || list[2].ID != id1 {
		t.Errorf("ListRuns: %d runs, want 3 newest first", len(list))
	}
	epic := must[[]store.Run](t)(s.ListRuns(ctx(t), "p1", "epic", 0))
	if len(epic) != 2 || epic[0].ID != id3 || epic[1].ID != id1 {
		t.Errorf("ListRuns(epic): %d", len(epic))
	}
	if one := must[[]store.Run](t)(s.ListRuns(ctx(t), "p1", "", 1)); len(one) != 1 || one[0].ID != id3 {
		t.Errorf("ListRuns(limit 1): %d", len(one))
	}
	_, err := s.GetRun(ctx(t), "p1", id3+100)
	wantNotFound(t, "GetRun(unknown)", err)
	wantNotFound(t, "UpdateRun(unknown)", s.UpdateRun(ctx(t), store.Run{ID: id3 + 100, Practice: "p1", Status: store.RunFailed}))
}

func testCapabilities(t *testing.T, s store.Store) {
	_, err := s.GetCapability(ctx(t), "p1", "epic")
	wantNotFound(t, "GetCapability(none)", err)
	old := store.Capability{Practice: "p1", Connection: "epic", FetchedAt: ts(0), FHIRVersion: "4.0.1", Software: "Epic May 2026", Body: []byte(`{"resourceType":"CapabilityStatement","v":1}`)}
	cur := old
	cur.FetchedAt, cur.Software, cur.Body = ts(60), "Epic Aug 2026", []byte(`{"resourceType":"CapabilityStatement","v":2}`)
	for _, c := range []store.Capability{old, cur} {
		if err := s.PutCapability(ctx(t), c); err != nil {
			t.Fatal(err)
		}
	}
	other := store.Capability{Practice: "p1", Connection: "cerner", FetchedAt: ts(90), FHIRVersion: "4.0.1", Software: "Millennium", Body: []byte(`{}`)}
	if err := s.PutCapability(ctx(t), other); err != nil {
		t.Fatal(err)
	}
	got := must[store.Capability](t)(s.GetCapability(ctx(t), "p1", "epic"))
	if got.Software != cur.Software || string(got.Body) != string(cur.Body) || !got.FetchedAt.Equal(cur.FetchedAt) || got.FHIRVersion != "4.0.1" ||
		got.Practice != "p1" || got.Connection != "epic" {
		t.Errorf("latest capability: %+v", got)
	}
}

func testAudit(t *testing.T, s store.Store) {
	events := []store.AuditEvent{
		{Practice: "p1", Time: ts(0), Actor: "app:portal", Action: "read", Entity: "Patient/1", Outcome: "success"},
		{Practice: "p1", Time: ts(10), Actor: "connection:epic", Action: "sync", Entity: "Patient", Outcome: "success", Detail: "120 fetched"},
		{Practice: "p1", Time: ts(20), Actor: "app:portal", Action: "search", Entity: "Patient?family", Outcome: "denied"},
		{Practice: "p2", Time: ts(30), Actor: "app:portal", Action: "read", Entity: "Patient/1", Outcome: "success"},
	}
	if err := s.Audit(ctx(t), events...); err != nil {
		t.Fatal(err)
	}
	all := must[[]store.AuditEvent](t)(s.ListAudit(ctx(t), "p1", store.AuditFilter{}))
	if len(all) != 3 || all[0].Entity != "Patient?family" || all[2].Entity != "Patient/1" {
		t.Fatalf("ListAudit: %+v", all)
	}
	e := all[1]
	if e.ID == 0 || e.Practice != "p1" || !e.Time.Equal(ts(10)) || e.Actor != "connection:epic" || e.Action != "sync" || e.Outcome != "success" || e.Detail != "120 fetched" {
		t.Errorf("audit round trip: %+v", e)
	}
	portal := must[[]store.AuditEvent](t)(s.ListAudit(ctx(t), "p1", store.AuditFilter{Actor: "app:portal"}))
	if len(portal) != 2 {
		t.Errorf("ListAudit(actor): %d", len(portal))
	}
	since := must[[]store.AuditEvent](t)(s.ListAudit(ctx(t), "p1", store.AuditFilter{Since: ts(10)}))
	if len(since) != 2 {
		t.Errorf("ListAudit(since): %d", len(since))
	}
	if lim := must[[]store.AuditEvent](t)(s.ListAudit(ctx(t), "p1", store.AuditFilter{Limit: 1})); len(lim) != 1 || lim[0].Entity != "Patient?family" {
		t.Errorf("ListAudit(limit): %+v", lim)
	}
	if err := s.Audit(ctx(t)); err != nil {
		t.Errorf("Audit(): %v", err)
	}
}

func testEmptyPractice(t *testing.T, s store.Store) {
	c := ctx(t)
	errs := map[string]error{}
	_, errs["PutRaw"] = s.PutRaw(c, store.RawPayload{Body: []byte("x")})
	_, errs["GetRaw"] = s.GetRaw(c, "", 1)
	_, errs["ListRaw"] = s.ListRaw(c, "", store.RawFilter{})
	_, errs["WriteResources"] = s.WriteResources(c, "", []store.ResourceWrite{pw("a", patient("a", "A", "A", "male", "1990", ts(0)))})
	_, errs["GetResource"] = s.GetResource(c, "", "Patient", "a")
	_, errs["GetResourceVersion"] = s.GetResourceVersion(c, "", "Patient", "a", 1)
	_, errs["History"] = s.History(c, "", "Patient", "a")
	_, errs["Search"] = s.Search(c, "", store.Query{ResourceType: "Patient"})
	_, errs["Changes"] = s.Changes(c, "", 0, 10)
	_, errs["CountResources"] = s.CountResources(c, "")
	_, errs["GetCursor"] = s.GetCursor(c, "", "x", "Patient")
	errs["PutCursor"] = s.PutCursor(c, store.Cursor{Connection: "x", ResourceType: "Patient"})
	_, errs["StartRun"] = s.StartRun(c, store.Run{Connection: "x"})
	_, errs["GetRun"] = s.GetRun(c, "", 1)
	_, errs["ListRuns"] = s.ListRuns(c, "", "", 10)
	errs["PutCapability"] = s.PutCapability(c, store.Capability{Connection: "x"})
	_, errs["GetCapability"] = s.GetCapability(c, "", "x")
	errs["Audit"] = s.Audit(c, store.AuditEvent{Actor: "system"})
	_, errs["ListAudit"] = s.ListAudit(c, "", store.AuditFilter{})
	for name, err := range errs {
		if err == nil {
			t.Errorf("%s accepted an empty practice", name)
		}
	}
}

// testTenantIsolation fills practice A and checks that every read method for
// practice B sees none of it.
func testTenantIsolation(t *testing.T, s store.Store) {
	c := ctx(t)
	const a, b = "practice-a", "practice-b"
	write(t, s, a,
		pw("shared", patient("shared", "Alpha", "Secret", "female", "1980-01-01", ts(0))),
		pw("only-a", patient("only-a", "Alpha", "Only", "female", "1980-01-01", ts(1))),
		store.ResourceWrite{ResourceType: "Observation", ID: "obs-a", Body: observation("obs-a", "Patient/shared", "8867-4", "2024-01-01", ts(2))},
	)
	write(t, s, a, pw("shared", patient("shared", "Alpha", "Secret2", "female", "1980-01-01", ts(3))))
	write(t, s, b, pw("shared", patient("shared", "Beta", "Other", "male", "1990-01-01", ts(0))))
	rawID := must[int64](t)(s.PutRaw(c, store.RawPayload{Practice: a, Connection: "epic", Source: "fhir-rest", Body: []byte("A's payload")}))
	runID := must[int64](t)(s.StartRun(c, store.Run{Practice: a, Connection: "epic", Trigger: "manual", Status: store.RunRunning, StartedAt: ts(0)}))
	if err := s.PutCursor(c, store.Cursor{Practice: a, Connection: "epic", ResourceType: "Patient", Watermark: ts(5), PageURL: "https://a/next"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutCapability(c, store.Capability{Practice: a, Connection: "epic", FetchedAt: ts(0), Body: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Audit(c, store.AuditEvent{Practice: a, Actor: "app:x", Action: "read", Entity: "Patient/only-a", Outcome: "success"}); err != nil {
		t.Fatal(err)
	}

	// Resources.
	_, err := s.GetResource(c, b, "Patient", "only-a")
	wantNotFound(t, "GetResource(B, A's resource)", err)
	_, err = s.GetResource(c, b, "Observation", "obs-a")
	wantNotFound(t, "GetResource(B, A's observation)", err)
	if r := must[store.Resource](t)(s.GetResource(c, b, "Patient", "shared")); r.Practice != b || !strings.Contains(string(r.Body), "Beta") || r.Version != 1 {
		t.Errorf("GetResource(B, shared id) returned A's data: %s", r.Body)
	}
	_, err = s.GetResourceVersion(c, b, "Patient", "shared", 2)
	wantNotFound(t, "GetResourceVersion(B, A's version 2)", err)
	_, err = s.GetResourceVersion(c, b, "Patient", "only-a", 1)
	wantNotFound(t, "GetResourceVersion(B, A's resource)", err)
	if h := must[[]store.Resource](t)(s.History(c, b, "Patient", "shared")); len(h) != 1 || h[0].Practice != b {
		t.Errorf("History(B, shared): %d versions", len(h))
	}
	_, err = s.History(c, b, "Patient", "only-a")
	wantNotFound(t, "History(B, A's resource)", err)
	for _, q := range []string{"", "family=alpha", "given=secret", "_id=only-a"} {
		ids, total := searchAll(t, s, b, "Patient", parse(t, "Patient", q), 0)
		for _, id := range ids {
			if id != "shared" {
				t.Errorf("Search(B, %q) found %s", q, id)
			}
		}
		if q != "" && total != 0 {
			t.Errorf("Search(B, %q): total %d", q, total)
		}
	}
	if page := must[store.SearchPage](t)(s.Search(c, b, store.Query{ResourceType: "Observation"})); page.Total != 0 {
		t.Errorf("Search(B, Observation): %d", page.Total)
	}
	for _, ch := range must[[]store.Change](t)(s.Changes(c, b, 0, 1000)) {
		if ch.ID != "shared" || ch.ResourceType != "Patient" || ch.Version != 1 {
			t.Errorf("Changes(B) shows %s/%s v%d", ch.ResourceType, ch.ID, ch.Version)
		}
	}
	if n := must[map[string]int](t)(s.CountResources(c, b)); !reflect.DeepEqual(n, map[string]int{"Patient": 1}) {
		t.Errorf("CountResources(B): %v", n)
	}
	// Writes for B must not be compared with A's state.
	if r := write(t, s, b, pw("only-a", patient("only-a", "Alpha", "Only", "female", "1980-01-01", ts(1))))[0]; r.Outcome != store.Created || r.Version != 1 {
		t.Errorf("B writing an id A has: %+v, want created v1", r)
	}
	// Records.
	_, err = s.GetRaw(c, b, rawID)
	wantNotFound(t, "GetRaw(B, A's payload)", err)
	if l := must[[]store.RawPayload](t)(s.ListRaw(c, b, store.RawFilter{})); len(l) != 0 {
		t.Errorf("ListRaw(B): %d", len(l))
	}
	if cur := must[store.Cursor](t)(s.GetCursor(c, b, "epic", "Patient")); !cur.Watermark.IsZero() || cur.PageURL != "" || cur.Practice != b {
		t.Errorf("GetCursor(B): %+v", cur)
	}
	_, err = s.GetRun(c, b, runID)
	wantNotFound(t, "GetRun(B, A's run)", err)
	wantNotFound(t, "UpdateRun(B, A's run)", s.UpdateRun(c, store.Run{ID: runID, Practice: b, Status: store.RunFailed}))
	if r := must[store.Run](t)(s.GetRun(c, a, runID)); r.Status != store.RunRunning {
		t.Errorf("B's UpdateRun changed A's run: %s", r.Status)
	}
	if l := must[[]store.Run](t)(s.ListRuns(c, b, "", 100)); len(l) != 0 {
		t.Errorf("ListRuns(B): %d", len(l))
	}
	_, err = s.GetCapability(c, b, "epic")
	wantNotFound(t, "GetCapability(B)", err)
	if l := must[[]store.AuditEvent](t)(s.ListAudit(c, b, store.AuditFilter{})); len(l) != 0 {
		t.Errorf("ListAudit(B): %d", len(l))
	}
	// A still sees its own data.
	if r := must[store.Resource](t)(s.GetResource(c, a, "Patient", "shared")); r.Version != 2 || !strings.Contains(string(r.Body), "Secret2") {
		t.Errorf("A's resource damaged: v%d", r.Version)
	}
}

// testConcurrentWriters runs writers (some on the same ids) and readers at
// once; run it with the race detector.
func testConcurrentWriters(t *testing.T, s store.Store) {
	const writers, rounds, ids = 4, 15, 10
	var wg sync.WaitGroup
	errc := make(chan error, writers*rounds+100)
	stop := make(chan struct{})
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				var ws []store.ResourceWrite
				for i := 0; i < ids; i++ {
					own := fmt.Sprintf("w%d-%d", w, i)
					ws = append(ws, pw(own, patient(own, "Conc", fmt.Sprint(r), "male", "1990", ts(r))))
				}
				sh := fmt.Sprint("shared-", r%3)
				ws = append(ws, pw(sh, patient(sh, "Shared", fmt.Sprint(w, "-", r), "female", "1990", ts(r))))
				if _, err := s.WriteResources(context.Background(), "p1", ws); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	var rg sync.WaitGroup
	for g := 0; g < 2; g++ {
		rg.Add(1)
		go func() {
			defer rg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Search(context.Background(), "p1", store.Query{ResourceType: "Patient", Params: []store.SearchParam{{Name: "family", Values: []string{"conc"}}}}); err != nil {
					errc <- err
					return
				}
				if _, err := s.Changes(context.Background(), "p1", 0, 50); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	rg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	changes := must[[]store.Change](t)(s.Changes(ctx(t), "p1", 0, 10000))
	seen := map[int64]bool{}
	versions := map[string]int{}
	for i, c := range changes {
		if seen[c.Seq] || (i > 0 && c.Seq <= changes[i-1].Seq) {
			t.Fatalf("change feed not strictly increasing at %d", i)
		}
		seen[c.Seq] = true
		if c.Version != versions[c.ID]+1 {
			t.Errorf("%s: version %d follows %d in the feed", c.ID, c.Version, versions[c.ID])
		}
		versions[c.ID] = c.Version
	}
	for w := 0; w < writers; w++ {
		for i := 0; i < ids; i++ {
			id := fmt.Sprintf("w%d-%d", w, i)
			r := must[store.Resource](t)(s.GetResource(ctx(t), "p1", "Patient", id))
			if r.Version != rounds || versions[id] != rounds {
				t.Errorf("%s: version %d (feed %d), want %d", id, r.Version, versions[id], rounds)
			}
		}
	}
	for k := 0; k < 3; k++ {
		id := fmt.Sprint("shared-", k)
		h := must[[]store.Resource](t)(s.History(ctx(t), "p1", "Patient", id))
		if len(h) != versions[id] || h[0].Version != versions[id] {
			t.Errorf("%s: history %d versions, feed says %d", id, len(h), versions[id])
		}
	}
	page := must[store.SearchPage](t)(s.Search(ctx(t), "p1", store.Query{ResourceType: "Patient", Params: []store.SearchParam{{Name: "family", Values: []string{"conc"}}}}))
	if page.Total != writers*ids {
		t.Errorf("search total %d, want %d", page.Total, writers*ids)
	}
}
