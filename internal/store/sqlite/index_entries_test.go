package sqlite

import (
	"log/slog"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/fhir/searchparam"
)

// TestEntriesRoundTrip: appendEntries and decodeEntries give back the same
// entries for every encoding (string with and without its own exact text,
// token with and without a system, reference with a type and without,
// date, the _id entry made from the key's id, numbered and spelled-out
// subs), also when the reader's dictionary view predates the numbers the
// entries use, and with the decoder's arena reused between calls.
func TestEntriesRoundTrip(t *testing.T) {
	ix, err := openIndex(filepath.Join(t.TempDir(), "ix"), indexOptions{CacheMB: 1, MemTableMB: 1}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ix.close()
	stale := ix.view() // before any name or sub has a number
	defer func(n int) { maxSubs = n }(maxSubs)
	maxSubs = 3 // "http://loinc.org", "", "Patient"; later subs are spelled out
	t0 := time.Date(2024, 3, 10, 8, 30, 0, 250_000_000, time.UTC)
	resources := []struct {
		id string
		es []searchparam.Entry
	}{
		{"o1", []searchparam.Entry{
			{Name: "code", Type: searchparam.Token, Value: "http://loinc.org|8867-4"},
			{Name: "status", Type: searchparam.Token, Value: "|final"},
			{Name: "subject", Type: searchparam.Reference, Value: "Patient/p1"},
			{Name: "_id", Type: searchparam.Token, Value: "|o1"},
			{Name: "date", Type: searchparam.Date, Low: t0, High: t0.Add(time.Second - 1)},
			{Name: "value-string", Type: searchparam.String, Value: "high", Exact: "High"},
			{Name: "value-string", Type: searchparam.String, Value: "normal", Exact: "normal"},
		}},
		{"o2", []searchparam.Entry{ // subs past the dictionary's room
			{Name: "code", Type: searchparam.Token, Value: "http://snomed.info/sct|271649006"},
			{Name: "subject", Type: searchparam.Reference, Value: "/p2"},
			{Name: "subject", Type: searchparam.Reference, Value: "Group/g1"},
			{Name: "_id", Type: searchparam.Token, Value: "|other"}, // not this resource's id: stored as is
			{Name: "date", Type: searchparam.Date, Low: time.Time{}.UTC(), High: searchparam.MaxTime()},
		}},
		{"o3", nil},
	}
	var arena []byte
	for _, r := range resources {
		codes, err := ix.codeEntries(nil, r.es)
		if err != nil {
			t.Fatal(err)
		}
		enc := ix.appendEntries(nil, r.es, codes, r.id)
		got, err := decodeEntries(enc, stale, r.id, nil, &arena)
		if err != nil {
			t.Fatalf("%s: %v", r.id, err)
		}
		want := r.es
		if r.id == "o1" { // the _id entry comes back last
			want = append(append(append([]searchparam.Entry{}, r.es[:3]...), r.es[4:]...), r.es[3])
		}
		if len(want) == 0 {
			want = nil
		}
		if len(got) == 0 {
			got = nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", r.id, got, want)
		}
	}
	if n := len(ix.subs.Load().names); n != 3 {
		t.Errorf("%d subs numbered, want 3", n)
	}
	if _, err := decodeEntries([]byte{4, 0x7f}, stale, "x", nil, &arena); err == nil {
		t.Error("an unknown name number decoded")
	}
}
