package sqlite

import (
	"bytes"
	"context"
	"encoding/binary"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/mediflow/mediflow/internal/fhir/searchparam"
	"github.com/mediflow/mediflow/internal/store"
)

// TestIndexFormat1Rebuilt: an index written in format 1 (4-byte collection
// and 2-byte name numbers in every key, and the "mediflow-index-1" marker)
// is not read with format 2's layout but rebuilt from resource_versions on
// Open. The watermark of the old index is current, so only the format
// marker can cause the rebuild; without it, the keys' old layout would make
// every lookup miss.
func TestIndexFormat1Rebuilt(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ws := append(crashPatients(0, 20), store.ResourceWrite{ResourceType: "Observation", ID: "o1",
		Body: []byte(`{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/c003"}}`)})
	if _, err := s.WriteResources(ctx, "p1", ws); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Rewrite the index into format 1's key layout.
	db, err := pebble.Open(IndexDir(path), &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: pebbleLog{s.log}})
	if err != nil {
		t.Fatal(err)
	}
	b := db.NewBatch()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagCur}, UpperBound: []byte{tagEnd}})
	if err != nil {
		t.Fatal(err)
	}
	converted := 0
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		coll, n := binary.Uvarint(k[1:])
		old := binary.BigEndian.AppendUint32([]byte{k[0]}, uint32(coll))
		rest := k[1+n:]
		if k[0] == tagPosting {
			name, m := binary.Uvarint(rest)
			old = binary.BigEndian.AppendUint16(old, uint16(name))
			rest = rest[m:]
		}
		if err := b.Delete(k, nil); err != nil {
			t.Fatal(err)
		}
		if err := b.Set(append(old, rest...), it.Value(), nil); err != nil {
			t.Fatal(err)
		}
		converted++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Set([]byte{tagMeta, metaFormat}, []byte("mediflow-index-1 "+searchparam.CatalogVersion()), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if converted < 3*len(ws) {
		t.Fatalf("converted only %d keys", converted)
	}

	s, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.idx.getMeta([]byte{tagMeta, metaFormat})
	if err != nil || !bytes.Equal(got, []byte(indexFormat+" "+searchparam.CatalogVersion())) {
		t.Errorf("format after open: %q %v", got, err)
	}
	if ids := indexedIDs(t, s); !slices.Equal(ids, idRange(0, 20)) {
		t.Errorf("family=crash after the rebuild: %v", ids)
	}
	obs, _ := pageAll(t, s, "Observation", []store.SearchParam{{Name: "code", Values: []string{"http://loinc.org|8867-4"}}, {Name: "patient", Values: []string{"c003"}}}, 10)
	if !slices.Equal(obs, []string{"o1"}) {
		t.Errorf("code and patient after the rebuild: %v", obs)
	}
	if r, err := s.GetResource(ctx, "p1", "Patient", "c005"); err != nil || r.Version != 1 {
		t.Errorf("GetResource after the rebuild: %+v %v", r, err)
	}
	res, err := s.WriteResources(ctx, "p1", crashPatients(7, 8))
	if err != nil || res[0].Outcome != store.Unchanged {
		t.Errorf("re-write after the rebuild: %+v %v", res, err)
	}
	// No key is left in format 1's layout: every collection number in the
	// data decodes to a known collection.
	known := map[uint32]bool{}
	for _, c := range s.idx.collections("p1") {
		known[c.id] = true
	}
	it, err = s.idx.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagCur}, UpperBound: []byte{tagEnd}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if coll, n := binary.Uvarint(it.Key()[1:]); n <= 0 || !known[uint32(coll)] {
			t.Fatalf("key %x is not in format 2's layout", it.Key())
		}
	}
}
