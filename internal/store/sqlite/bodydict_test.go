package sqlite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/mediflow/mediflow/internal/store"
)

// openUncached opens a fresh store without the version cache, so every
// read decodes a stored row.
func openUncached(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(context.Background(), path, Options{BodyCacheMB: -1})
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

// storedVersion is how a version sits in resource_versions.
type storedVersion struct {
	n         int
	enc, dict int64
	hash      []byte
}

func storedVersionOf(t *testing.T, s *Store, practice, rt, id string) storedVersion {
	t.Helper()
	var v storedVersion
	if err := s.r.QueryRow(`SELECT length(body), body_encoding, body_dict, content_hash FROM resource_versions
		WHERE practice = ? AND resource_type = ? AND id = ? ORDER BY seq DESC LIMIT 1`, practice, rt, id).Scan(&v.n, &v.enc, &v.dict, &v.hash); err != nil {
		t.Fatal(err)
	}
	return v
}

func countDicts(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.r.QueryRow(`SELECT count(*) FROM body_dicts`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// randomPatient is a Patient whose text is random base64: it does not
// compress, with or without a dictionary.
func randomPatient(rnd *rand.Rand, id string) []byte {
	b := make([]byte, 1200)
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	return fmt.Appendf(nil, `{"resourceType":"Patient","id":%q,"text":{"status":"generated","div":%q}}`, id, base64.StdEncoding.EncodeToString(b))
}

// genBodies makes n bodies with mk, with ids prefix0 … prefix(n-1).
func genBodies(prefix string, n int, mk func(id string, i int) []byte) ([]string, map[string][]byte) {
	ids := make([]string, n)
	bodies := make(map[string][]byte, n)
	for i := range n {
		ids[i] = fmt.Sprint(prefix, i)
		bodies[ids[i]] = mk(ids[i], i)
	}
	return ids, bodies
}

// writeBatches writes bodies (type rt, ids in order) in batches of size.
func writeBatches(t *testing.T, s *Store, practice, rt string, ids []string, bodies map[string][]byte, size int) {
	t.Helper()
	for i := 0; i < len(ids); i += size {
		var ws []store.ResourceWrite
		for _, id := range ids[i:min(i+size, len(ids))] {
			ws = append(ws, store.ResourceWrite{ResourceType: rt, ID: id, Body: bodies[id], Connection: "c"})
		}
		if _, err := s.WriteResources(context.Background(), practice, ws); err != nil {
			t.Fatal(err)
		}
	}
}

// checkBodies reads every resource back through GetResource, History and
// Search and compares it with what was put.
func checkBodies(t *testing.T, s *Store, practice, rt string, bodies map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	for id, want := range bodies {
		r, err := s.GetResource(ctx, practice, rt, id)
		if err != nil {
			t.Fatalf("GetResource %s: %v", id, err)
		}
		if !bytes.Equal(r.Body, want) {
			t.Fatalf("GetResource %s: body differs from what was put", id)
		}
		sum := sha256.Sum256(want)
		if r.ContentHash != hex.EncodeToString(sum[:]) {
			t.Fatalf("GetResource %s: content hash is not the hash of the body", id)
		}
		h, err := s.History(ctx, practice, rt, id)
		if err != nil || len(h) == 0 || !bytes.Equal(h[0].Body, want) {
			t.Fatalf("History %s: %v, %d versions, body equal %v", id, err, len(h), len(h) > 0 && bytes.Equal(h[0].Body, want))
		}
		v, err := s.GetResourceVersion(ctx, practice, rt, id, r.Version)
		if err != nil || !bytes.Equal(v.Body, want) {
			t.Fatalf("GetResourceVersion %s: %v", id, err)
		}
	}
	seen := 0
	q := store.Query{ResourceType: rt, Count: 1000}
	for {
		page, err := s.Search(ctx, practice, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Resources {
			if !bytes.Equal(r.Body, bodies[r.ID]) {
				t.Fatalf("Search: body of %s differs from what was put", r.ID)
			}
			seen++
		}
		if page.Next == "" {
			break
		}
		q.After = page.Next
	}
	if seen != len(bodies) {
		t.Fatalf("Search returned %d resources, want %d", seen, len(bodies))
	}
}

// TestVersionBodyDictionary: the first bodies of a type are stored as they
// are until they fill a dictionary; later ones are compressed with it
// (several times smaller), incompressible and tiny bodies are stored as
// they are, and every body reads back exactly as put, with its hash.
func TestVersionBodyDictionary(t *testing.T) {
	s, _ := openUncached(t)
	defer s.Close()
	rnd := rand.New(rand.NewPCG(3, 4))
	bodies := map[string][]byte{}
	var ids []string
	for i := range 400 {
		id := fmt.Sprint("p", i)
		ids = append(ids, id)
		switch {
		case i%10 == 7:
			bodies[id] = randomPatient(rnd, id)
		case i%50 == 9:
			bodies[id] = fmt.Appendf(nil, `{"resourceType":"Patient","id":%q}`, id) // below dictMinBody
		default:
			bodies[id] = patientBody(id, i)
		}
	}
	writeBatches(t, s, "p1", "Patient", ids, bodies, 25)
	if n := countDicts(t, s); n != 1 {
		t.Fatalf("%d dictionaries after 400 Patients, want 1", n)
	}
	var plain, compressed, in, out int
	for i, id := range ids {
		v := storedVersionOf(t, s, "p1", "Patient", id)
		want := bodies[id]
		switch {
		case i%10 == 7 || i%50 == 9:
			if v.enc != encPlain || v.n != len(want) || v.dict != 0 {
				t.Errorf("%s: incompressible or tiny body stored with encoding %d, %d of %d bytes", id, v.enc, v.n, len(want))
			}
		case v.enc == encPlain:
			plain++
			if compressed > 0 {
				t.Errorf("%s: stored as is after the dictionary was made", id)
			}
		case v.enc == encS2Dict:
			compressed++
			in += len(want)
			out += v.n
			if v.dict == 0 {
				t.Errorf("%s: compressed body names no dictionary", id)
			}
		default:
			t.Errorf("%s: encoding %d", id, v.enc)
		}
	}
	// The samples are the first 64 KiB of bodies (about 45 of these).
	if plain == 0 || plain > 80 || compressed < 250 {
		t.Errorf("%d bodies stored as they are, %d compressed", plain, compressed)
	}
	if out*3 > in {
		t.Errorf("compressed bodies: %d bytes for %d: expected at least 3:1", out, in)
	}
	checkBodies(t, s, "p1", "Patient", bodies)

	// Another practice gets its own dictionary, not the first one's.
	other := map[string][]byte{}
	var oids []string
	for i := range 120 {
		id := fmt.Sprint("q", i)
		oids = append(oids, id)
		other[id] = patientBody(id, 1000+i)
	}
	writeBatches(t, s, "p2", "Patient", oids, other, 120)
	if n := countDicts(t, s); n != 2 {
		t.Fatalf("%d dictionaries after a second practice, want 2", n)
	}
	last := storedVersionOf(t, s, "p2", "Patient", oids[len(oids)-1])
	first := storedVersionOf(t, s, "p1", "Patient", ids[len(ids)-1])
	if last.enc != encS2Dict || last.dict == first.dict {
		t.Errorf("second practice: encoding %d with dictionary %d (first practice's: %d)", last.enc, last.dict, first.dict)
	}
	checkBodies(t, s, "p2", "Patient", other)
}

// TestVersionBodyDictionaryReopen: a dictionary outlives the store that
// made it: after reopening, old rows read (the dictionary is loaded from
// its table) and new versions of the type use the same dictionary; the
// search index rebuilt from resource_versions decodes the bodies.
func TestVersionBodyDictionaryReopen(t *testing.T) {
	s, path := openTemp(t)
	ctx := context.Background()
	ids, bodies := genBodies("o", 200, observationBody)
	writeBatches(t, s, "p1", "Observation", ids, bodies, 50)
	dict := storedVersionOf(t, s, "p1", "Observation", ids[len(ids)-1]).dict
	if dict == 0 {
		t.Fatal("no dictionary after 200 Observations")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Without the search index, Open rebuilds it from the stored bodies.
	if err := os.RemoveAll(IndexDir(path)); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, path, Options{BodyCacheMB: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkBodies(t, s, "p1", "Observation", bodies)
	page, err := s.Search(ctx, "p1", store.Query{ResourceType: "Observation", Params: []store.SearchParam{{Name: "code", Values: []string{"http://loinc.org|85354-9"}}}, Count: -1})
	if err != nil || page.Total != len(bodies) {
		t.Errorf("search by code after rebuilding the index: %d of %d (%v)", page.Total, len(bodies), err)
	}
	var more []string
	for i := 200; i < 230; i++ {
		id := fmt.Sprint("o", i)
		more = append(more, id)
		bodies[id] = observationBody(id, i)
	}
	writeBatches(t, s, "p1", "Observation", more, bodies, 1)
	if v := storedVersionOf(t, s, "p1", "Observation", more[0]); v.enc != encS2Dict || v.dict != dict {
		t.Errorf("after reopen: single write stored with encoding %d, dictionary %d; want %d, %d", v.enc, v.dict, encS2Dict, dict)
	}
	if n := countDicts(t, s); n != 1 {
		t.Errorf("%d dictionaries after reopen, want 1", n)
	}
	checkBodies(t, s, "p1", "Observation", bodies)
}

// TestVersionBodiesFromBeforeDictionaries: a database written before
// migration 0008 is migrated on open; its versions (stored as they are)
// read unchanged, and new versions are compressed beside them.
func TestVersionBodiesFromBeforeDictionaries(t *testing.T) {
	s, path := openTemp(t)
	ctx := context.Background()
	ids, bodies := genBodies("p", 30, patientBody)
	// Fewer than a dictionary's worth: all stored as they are.
	writeBatches(t, s, "p1", "Patient", ids, bodies, 30)
	for _, q := range []string{
		`ALTER TABLE resource_versions DROP COLUMN body_encoding`,
		`ALTER TABLE resource_versions DROP COLUMN body_dict`,
		`DROP TABLE body_dicts`,
		`DELETE FROM schema_migrations WHERE version = 8`,
	} {
		if _, err := s.w.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, id := range ids {
		if v := storedVersionOf(t, s, "p1", "Patient", id); v.enc != encPlain || v.dict != 0 || v.n != len(bodies[id]) {
			t.Errorf("%s: migrated to encoding %d, dictionary %d, %d bytes", id, v.enc, v.dict, v.n)
		}
	}
	checkBodies(t, s, "p1", "Patient", bodies)
	var more []string
	for i := 30; i < 150; i++ {
		id := fmt.Sprint("p", i)
		more = append(more, id)
		bodies[id] = patientBody(id, i)
	}
	writeBatches(t, s, "p1", "Patient", more, bodies, 40)
	if v := storedVersionOf(t, s, "p1", "Patient", more[len(more)-1]); v.enc != encS2Dict {
		t.Errorf("new version stored with encoding %d", v.enc)
	}
	checkBodies(t, s, "p1", "Patient", bodies)
}

// TestVersionBodyDamaged: a compressed body that does not decode, decodes
// to other bytes than it hashed to, names a dictionary that does not exist
// or an encoding this build does not know is an error, not garbage.
func TestVersionBodyDamaged(t *testing.T) {
	s, _ := openUncached(t)
	defer s.Close()
	ctx := context.Background()
	ids, bodies := genBodies("p", 100, patientBody)
	writeBatches(t, s, "p1", "Patient", ids, bodies, 100)
	id := ids[len(ids)-1]
	v := storedVersionOf(t, s, "p1", "Patient", id)
	if v.enc != encS2Dict {
		t.Fatalf("last Patient stored with encoding %d", v.enc)
	}
	where := ` WHERE practice = 'p1' AND id = '` + id + `'`
	flip := func(b []byte) []byte {
		c := bytes.Clone(b)
		c[len(c)/2] ^= 1
		return c
	}
	for _, d := range []struct {
		q      string
		damage func([]byte) []byte // the body to set, if any
	}{
		{q: `UPDATE resource_versions SET body = substr(body, 1, length(body) / 2)`},
		// The same length, one bit changed in the middle: S2 blocks carry
		// no checksum, the content hash catches what decodes.
		{q: `UPDATE resource_versions SET body = ?`, damage: flip},
		{q: `UPDATE resource_versions SET body_dict = 999`},
		{q: `UPDATE resource_versions SET body_encoding = 9`},
	} {
		q := d.q
		var orig []byte
		var enc, dict int64
		if err := s.r.QueryRow(`SELECT body, body_encoding, body_dict FROM resource_versions`+where).Scan(&orig, &enc, &dict); err != nil {
			t.Fatal(err)
		}
		var args []any
		if d.damage != nil {
			args = append(args, d.damage(orig))
		}
		if _, err := s.w.Exec(q+where, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if r, err := s.GetResource(ctx, "p1", "Patient", id); err == nil {
			t.Errorf("after %q: GetResource returned %d bytes and no error", q, len(r.Body))
		}
		if _, err := s.History(ctx, "p1", "Patient", id); err == nil {
			t.Errorf("after %q: History returned no error", q)
		}
		if _, err := s.Search(ctx, "p1", store.Query{ResourceType: "Patient", Count: 1000}); err == nil {
			t.Errorf("after %q: Search returned no error", q)
		}
		if _, err := s.w.Exec(`UPDATE resource_versions SET body = ?, body_encoding = ?, body_dict = ?`+where, orig, enc, dict); err != nil {
			t.Fatal(err)
		}
	}
	checkBodies(t, s, "p1", "Patient", bodies)
}

// TestVersionBodyDictionaryRollback: when the transaction that made a
// dictionary fails, neither the dictionary nor the store's memory of it
// survives; the next write makes one again and everything reads back.
func TestVersionBodyDictionaryRollback(t *testing.T) {
	s, _ := openUncached(t)
	defer s.Close()
	ctx := context.Background()
	ids, bodies := genBodies("p", 100, patientBody)
	// A row in the way of the batch's last seq makes its insert fail
	// after the dictionary was made and used.
	if _, err := s.w.Exec(`INSERT INTO resource_versions (seq, practice, resource_type, id, version, prev_seq, source_version_id,
		content_hash, connection, raw_id, stored_at, deleted, body) VALUES (100, 'px', 'Patient', 'x', 1, 0, '', x'00', 'c', 0, 0, 0, x'')`); err != nil {
		t.Fatal(err)
	}
	var ws []store.ResourceWrite
	for _, id := range ids {
		ws = append(ws, store.ResourceWrite{ResourceType: "Patient", ID: id, Body: bodies[id], Connection: "c"})
	}
	if _, err := s.WriteResources(ctx, "p1", ws); err == nil {
		t.Fatal("write over an existing seq succeeded")
	}
	if n := countDicts(t, s); n != 0 {
		t.Fatalf("%d dictionaries after the failed write, want 0", n)
	}
	if _, err := s.w.Exec(`DELETE FROM resource_versions WHERE seq = 100`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteResources(ctx, "p1", ws); err != nil {
		t.Fatal(err)
	}
	if n := countDicts(t, s); n != 1 {
		t.Fatalf("%d dictionaries, want 1", n)
	}
	checkBodies(t, s, "p1", "Patient", bodies)
}

// TestVersionBodyDictionaryConcurrentReads: readers on other goroutines
// read compressed versions while the writer makes dictionaries for more
// types (run with -race).
func TestVersionBodyDictionaryConcurrentReads(t *testing.T) {
	s, _ := openUncached(t)
	defer s.Close()
	ctx := context.Background()
	ids, bodies := genBodies("p", 120, patientBody)
	writeBatches(t, s, "p1", "Patient", ids, bodies, 60)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			for k := range 300 {
				id := ids[(g*31+k)%len(ids)]
				r, err := s.GetResource(ctx, "p1", "Patient", id)
				if err != nil || !bytes.Equal(r.Body, bodies[id]) {
					errs <- fmt.Errorf("read %s: %v", id, err)
					return
				}
				if k%50 == 0 {
				}
			}
		})
	}
	for i := range 150 {
		id := fmt.Sprint("o", i)
		b := observationBody(id, i)
		if _, err := s.WriteResources(ctx, fmt.Sprint("p", 1+i%3), []store.ResourceWrite{{ResourceType: "Observation", ID: id, Body: b, Connection: "c"}}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestVersionBodyDictionariesBounded: with room for two dictionaries per
// side, four practices each get their own dictionary, the writer keeps
// using the stored one after its entry was dropped (no second dictionary
// per practice), and every body reads back through dictionaries loaded
// again from the table.
func TestVersionBodyDictionariesBounded(t *testing.T) {
	w0, r0 := maxWriterDicts, maxReaderDicts
	maxWriterDicts, maxReaderDicts = 2, 2
	defer func() { maxWriterDicts, maxReaderDicts = w0, r0 }()
	s, _ := openUncached(t)
	defer s.Close()
	practices := []string{"p1", "p2", "p3", "p4"}
	all := map[string]map[string][]byte{}
	for round := range 2 {
		for k, p := range practices {
			bodies := map[string][]byte{}
			var ids []string
			for i := range 120 {
				id := fmt.Sprint(p, "-", round, "-", i)
				ids = append(ids, id)
				bodies[id] = patientBody(id, 10000*k+1000*round+i)
			}
			writeBatches(t, s, p, "Patient", ids, bodies, 60)
			if all[p] == nil {
				all[p] = map[string][]byte{}
			}
			for id, b := range bodies {
				all[p][id] = b
			}
		}
	}
	if n := countDicts(t, s); n != len(practices) {
		t.Fatalf("%d dictionaries for %d practices, want one each", n, len(practices))
	}
	if len(s.bodies.writer) > 2 || len(s.bodies.byID) > 2 {
		t.Fatalf("%d writer and %d reader dictionaries held, bound is 2", len(s.bodies.writer), len(s.bodies.byID))
	}
	for _, p := range practices {
		v := storedVersionOf(t, s, p, "Patient", fmt.Sprint(p, "-1-119"))
		if v.enc != encS2Dict {
			t.Fatalf("%s: second round stored with encoding %d, want the stored dictionary", p, v.enc)
		}
		checkBodies(t, s, p, "Patient", all[p])
	}
}
