package sqlite

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/mediflow/mediflow/internal/store"
)

// ndjsonBatch is a bulk batch as the bulk writer stores it: n resources,
// one per line.
func ndjsonBatch(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		if i%2 == 0 {
			b.Write(patientBody(fmt.Sprint("pat-", i), i))
		} else {
			b.Write(observationBody(fmt.Sprint("obs-", i), i))
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// storedRaw is how raw payload id sits in the table: its stored length and
// encoding.
func storedRaw(t *testing.T, s *Store, id int64) (int, int64) {
	t.Helper()
	var n int
	var enc int64
	if err := s.r.QueryRow(`SELECT length(body), body_encoding FROM raw_payloads WHERE id = ?`, id).Scan(&n, &enc); err != nil {
		t.Fatal(err)
	}
	return n, enc
}

// TestRawPayloadCompression: whatever is put comes back byte for byte from
// GetRaw and ListRaw; compressible payloads are stored compressed, small or
// incompressible ones as they are, and payloads that look like compressed
// data are not mistaken for it.
func TestRawPayloadCompression(t *testing.T) {
	s, _ := openTemp(t)
	defer s.Close()
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 64<<10)
	for i := range random {
		random[i] = byte(rnd.Uint32())
	}
	batch := ndjsonBatch(1000)
	// A payload that is itself an S2 block, and one with zstd's magic.
	s2Block := s2.Encode(nil, batch[:4096])
	zstdLike := append([]byte{0x28, 0xb5, 0x2f, 0xfd}, batch[:2048]...)
	hl7 := []byte(strings.Repeat("OBX|1|NM|8480-6^Systolic^LN||120|mm[Hg]|||||F\r", 200))
	cases := []struct {
		name       string
		body       []byte
		compressed bool
	}{
		{"empty", []byte{}, false},
		{"nil", nil, false},
		{"small json", []byte(`{"resourceType":"Patient","id":"a"}`), false},
		{"just below the threshold", bytes.Repeat([]byte("a"), compressMin-1), false},
		{"at the threshold", bytes.Repeat([]byte("a"), compressMin), true},
		{"ndjson batch", batch, true},
		{"hl7", hl7, true},
		{"random", random, false},
		{"an s2 block", s2Block, false},
		{"zstd magic", zstdLike, true},
	}
	ids := map[int64][]byte{}
	for _, c := range cases {
		id, err := s.PutRaw(ctx, store.RawPayload{Practice: "p1", Connection: "c", Source: "bulk", ContentType: "application/fhir+ndjson",
			FetchedAt: time.Unix(100, 0), Body: c.body})
		if err != nil {
			t.Fatalf("%s: PutRaw: %v", c.name, err)
		}
		want := c.body
		if want == nil {
			want = []byte{}
		}
		ids[id] = want
		got, err := s.GetRaw(ctx, "p1", id)
		if err != nil {
			t.Fatalf("%s: GetRaw: %v", c.name, err)
		}
		if !bytes.Equal(got.Body, want) || got.Body == nil {
			t.Errorf("%s: GetRaw returned %d bytes, want the %d put", c.name, len(got.Body), len(want))
		}
		n, enc := storedRaw(t, s, id)
		switch {
		case c.compressed && (enc != encS2 || n >= len(want)):
			t.Errorf("%s: stored %d bytes with encoding %d, want compressed (< %d bytes)", c.name, n, enc, len(want))
		case !c.compressed && (enc != encPlain || n != len(want)):
			t.Errorf("%s: stored %d bytes with encoding %d, want the %d bytes as they are", c.name, n, enc, len(want))
		}
	}
	if n, _ := storedRaw(t, s, idOf(t, ids, batch)); n*4 > len(batch) {
		t.Errorf("an NDJSON batch of %d bytes is stored in %d: expected at least 4:1", len(batch), n)
	}
	list, err := s.ListRaw(ctx, "p1", store.RawFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(cases) {
		t.Fatalf("ListRaw: %d payloads, want %d", len(list), len(cases))
	}
	for _, p := range list {
		if !bytes.Equal(p.Body, ids[p.ID]) || p.Body == nil {
			t.Errorf("ListRaw: payload %d has %d bytes, want %d", p.ID, len(p.Body), len(ids[p.ID]))
		}
	}
}

func idOf(t *testing.T, ids map[int64][]byte, body []byte) int64 {
	t.Helper()
	for id, b := range ids {
		if bytes.Equal(b, body) {
			return id
		}
	}
	t.Fatal("payload not found")
	return 0
}

// TestRawPayloadsFromBeforeCompression: a database written before
// migration 0007 (no body_encoding column, every body stored as is) is
// migrated on open and its payloads read unchanged, among them one that
// looks like an S2 block; new payloads are compressed beside them.
func TestRawPayloadsFromBeforeCompression(t *testing.T) {
	s, path := openTemp(t)
	ctx := context.Background()
	// Take the database back to its shape before 0007.
	for _, q := range []string{
		`ALTER TABLE raw_payloads DROP COLUMN body_encoding`,
		`DELETE FROM schema_migrations WHERE version = 7`,
	} {
		if _, err := s.w.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	batch := ndjsonBatch(200)
	old := [][]byte{batch, s2.Encode(nil, batch), []byte("MSH|^~\\&|A|B\r")}
	var oldIDs []int64
	for _, b := range old {
		res, err := s.w.Exec(`INSERT INTO raw_payloads (practice, connection, source, request_url, content_type, fetched_at, body)
			VALUES ('p1', 'c', 'bulk', '', 'application/fhir+ndjson', 1, ?)`, b)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := res.LastInsertId()
		oldIDs = append(oldIDs, id)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i, id := range oldIDs {
		got, err := s.GetRaw(ctx, "p1", id)
		if err != nil {
			t.Fatalf("old payload %d: %v", i, err)
		}
		if !bytes.Equal(got.Body, old[i]) {
			t.Errorf("old payload %d: got %d bytes, want the %d stored", i, len(got.Body), len(old[i]))
		}
		if n, enc := storedRaw(t, s, id); enc != encPlain || n != len(old[i]) {
			t.Errorf("old payload %d: migrated to encoding %d, %d bytes", i, enc, n)
		}
	}
	id, err := s.PutRaw(ctx, store.RawPayload{Practice: "p1", Connection: "c", Source: "bulk", Body: batch})
	if err != nil {
		t.Fatal(err)
	}
	if _, enc := storedRaw(t, s, id); enc != encS2 {
		t.Errorf("new payload stored with encoding %d, want %d", enc, encS2)
	}
	list, err := s.ListRaw(ctx, "p1", store.RawFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 4 || !bytes.Equal(list[0].Body, batch) || !bytes.Equal(list[2].Body, old[1]) {
		t.Errorf("ListRaw over old and new payloads: %d payloads, bodies differ from what was put", len(list))
	}
}

// TestRawPayloadDamaged: a stored body that does not decode, or names an
// encoding this build does not know, is an error, not a panic or garbage.
func TestRawPayloadDamaged(t *testing.T) {
	s, _ := openTemp(t)
	defer s.Close()
	ctx := context.Background()
	id, err := s.PutRaw(ctx, store.RawPayload{Practice: "p1", Connection: "c", Source: "bulk", Body: ndjsonBatch(50)})
	if err != nil {
		t.Fatal(err)
	}
	if _, enc := storedRaw(t, s, id); enc != encS2 {
		t.Fatalf("payload stored with encoding %d", enc)
	}
	for _, q := range []string{
		`UPDATE raw_payloads SET body = substr(body, 1, length(body) / 2) WHERE id = ?`,
		`UPDATE raw_payloads SET body = x'ffffffffff0f00', body_encoding = 1 WHERE id = ?`,
		`UPDATE raw_payloads SET body_encoding = 9 WHERE id = ?`,
	} {
		if _, err := s.w.Exec(q, id); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetRaw(ctx, "p1", id); err == nil {
			t.Errorf("after %q: GetRaw returned no error", q)
		}
		if _, err := s.ListRaw(ctx, "p1", store.RawFilter{}); err == nil {
			t.Errorf("after %q: ListRaw returned no error", q)
		}
	}
}

func TestDecodeBody(t *testing.T) {
	body := ndjsonBatch(20)
	var buf []byte
	c, enc := encodeBody(&buf, body)
	if enc != encS2 || len(c) >= len(body) {
		t.Fatalf("encodeBody: encoding %d, %d of %d bytes", enc, len(c), len(body))
	}
	got, err := decodeBody(append([]byte(nil), c...), enc)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("decodeBody: %v, equal %v", err, bytes.Equal(got, body))
	}
	// The encode buffer is reused by the next write: a decoded body must
	// not share it.
	clear(buf)
	if !bytes.Equal(got, body) {
		t.Error("decoded body shares memory with the encode buffer")
	}
	if got, err := decodeBody(nil, encPlain); err != nil || got == nil || len(got) != 0 {
		t.Errorf("decodeBody(nil, plain) = %v, %v; want an empty body", got, err)
	}
}
