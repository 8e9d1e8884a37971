package sqlite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/klauspost/compress/s2"
)

// Version bodies are compressed with a dictionary per practice and resource
// type, trained at run time from the first bodies of that type the store
// writes (migration 0008). A mapped FHIR body of 0.5 – 2 KB compresses only
// about 1.4:1 on its own, because what repeats (property names, code
// systems, the mapping tag, references to the same practitioners) repeats
// between bodies rather than within one; against a dictionary made of
// earlier bodies of the same type it compresses 3 – 8:1 (4.5 – 8:1 for
// the bench's mapped bodies, 2.9 – 4.4:1 for Synthea's, 5.2:1 overall).
//
// The dictionary is those bodies themselves, concatenated (the last
// dictSize bytes of them, as an S2 dictionary): on bodies of a bulk export
// that compressed better (6.0:1) than a dictionary distilled by
// github.com/klauspost/compress/dict (3.7:1) and cost less to encode (2.1
// against 3.0 µs per body) and to decode (0.26 against 0.55 µs). zstd with a dictionary compressed a little better again
// but cost 12 – 15 µs per body to encode and 3 µs to decode, against about
// 2 and 0.25 µs for S2.
//
// Dictionaries are per practice, not per store: a dictionary holds
// another resource's body, so rows of one practice never need another
// practice's data to be read. They are trained at run time rather than
// shipped so that they fit whatever a vendor and the mapper actually
// produce (a dictionary built from other FHIR data compressed the same
// bodies 2.2:1). A dictionary row is written in the same transaction as
// the first versions compressed with it and never changes; each version
// row names its dictionary (body_dict), so a store may hold several per
// type and old rows keep theirs.

// dictSize is how many bytes of bodies make a dictionary (S2's limit).
const dictSize = s2.MaxDictSize

// dictMinBody is the smallest body compressed with a dictionary: below it
// even a good ratio saves a few bytes only.
const dictMinBody = 64

// dictKey names the dictionary of a practice's resource type.
type dictKey struct{ practice, rt string }

// writerDict is the writer's state for one dictKey: the dictionary new
// versions are compressed with, or the samples collected until there are
// enough to make one. Guarded by the store's writeMu.
type writerDict struct {
	key     dictKey
	looked  bool // the table was asked for a stored dictionary
	id      int64
	dict    *s2.Dict
	samples []byte
	fresh   bool   // made in the transaction in progress, not yet committed
	used    uint64 // bodyDicts.writeTic when last used
}

// Bounds on the dictionaries held in memory, so a node serving thousands of
// practices does not hold every (practice, type)'s dictionary: past them the
// least recently used is dropped and read again from body_dicts when it is
// next needed. A writer entry holds a dictionary with its encoding table
// (about 96 KiB) or up to dictSize bytes of samples; a reader entry the
// dictionary (64 KiB). (Variables so tests can lower them.)
var (
	maxWriterDicts = 64  // about 6 MiB
	maxReaderDicts = 128 // about 8 MiB
)

// bodyDicts holds the dictionaries of a store. The zero value is ready.
type bodyDicts struct {
	// readers: dictionaries by id, for decoding; a bounded LRU. latest
	// names the committed dictionary new versions of a (practice, type)
	// are compressed with, for writers compressing before they take the
	// store's writer lock (preEncode); it only names dictionaries byID
	// holds.
	mu      sync.Mutex
	byID    map[int64]*readerDict // guarded by mu
	latest  map[dictKey]int64     // guarded by mu
	readTic uint64                // guarded by mu

	// writer: guarded by the store's writeMu; a bounded LRU too (an
	// evicted entry loses its samples, or is read back from the table).
	writer   map[dictKey]*writerDict
	writeTic uint64
}

type readerDict struct {
	d    *s2.Dict
	used uint64
}

func (b *bodyDicts) get(id int64) *s2.Dict {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.byID[id]
	if r == nil {
		return nil
	}
	b.readTic++
	r.used = b.readTic
	return r.d
}

func (b *bodyDicts) add(id int64, d *s2.Dict) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.addLocked(id, d)
}

func (b *bodyDicts) addLocked(id int64, d *s2.Dict) {
	if b.byID == nil {
		b.byID = map[int64]*readerDict{}
	}
	b.readTic++
	b.byID[id] = &readerDict{d: d, used: b.readTic}
	if len(b.byID) > maxReaderDicts {
		oldest, _ := leastUsed(b.byID, func(r *readerDict) (uint64, bool) { return r.used, true })
		delete(b.byID, oldest)
		for k, id := range b.latest {
			if id == oldest {
				delete(b.latest, k)
			}
		}
	}
}

// leastUsed returns the key of m's least recently used entry among those
// use allows to drop; false when there is none.
func leastUsed[K comparable, V any](m map[K]V, use func(V) (used uint64, droppable bool)) (K, bool) {
	var oldest K
	found := false
	least := uint64(math.MaxUint64)
	for k, v := range m {
		if used, ok := use(v); ok && used < least {
			oldest, least, found = k, used, true
		}
	}
	return oldest, found
}

// publish makes committed dictionary id the one writers of k compress
// with before they take the writer lock.
func (b *bodyDicts) publish(k dictKey, id int64, d *s2.Dict) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.latest == nil {
		b.latest = map[dictKey]int64{}
	}
	b.latest[k] = id
	b.addLocked(id, d)
}

// forWrite returns the committed dictionary new versions of k are
// compressed with, or nil when there is none in memory.
func (b *bodyDicts) forWrite(k dictKey) (int64, *s2.Dict) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id, ok := b.latest[k]
	if !ok {
		return 0, nil
	}
	r := b.byID[id]
	if r == nil {
		return 0, nil
	}
	b.readTic++
	r.used = b.readTic
	return id, r.d
}

// preEncoded is a body compressed before the writer lock was taken.
type preEncoded struct {
	b         []byte
	enc, dict int64
	ok        bool
}

// preEncode compresses the bodies of ps whose (practice, type) has a
// committed dictionary in memory, outside the writer lock, so concurrent
// writers compress in parallel; insertVersions stores them as they are and
// compresses the rest itself. release returns the buffer after the rows
// were inserted.
func (s *Store) preEncode(practice string, ps []pending) (release func()) {
	var (
		out bodyBuf
		rt  string
		id  int64
		d   *s2.Dict
	)
	for i := range ps {
		p := &ps[i]
		if p.w.Deleted || len(p.w.Body) < dictMinBody {
			continue
		}
		if i == 0 || p.w.ResourceType != rt {
			rt = p.w.ResourceType
			id, d = s.bodies.forWrite(dictKey{practice, rt})
		}
		if d == nil {
			continue
		}
		if c, ok := out.compress(d, p.w.Body); ok {
			p.pre = preEncoded{b: c, enc: encS2Dict, dict: id, ok: true}
		} else {
			p.pre = preEncoded{b: p.w.Body, enc: encPlain, ok: true}
		}
	}
	return out.release
}

// bodyBuf holds compressed bodies until their rows are inserted (the
// driver copies bound values); its buffer comes from encBufs.
type bodyBuf struct {
	buf    []byte
	pooled *[]byte // where buf came from, nil until needed
}

// compress returns body compressed against d, in the buffer, or false when
// that would not save at least an eighth of it (store it as it is).
func (bb *bodyBuf) compress(d *s2.Dict, body []byte) ([]byte, bool) {
	n := s2.MaxEncodedLen(len(body))
	if n < 0 {
		return nil, false
	}
	if bb.pooled == nil {
		bb.pooled = encBufs.Get().(*[]byte)
		bb.buf = (*bb.pooled)[:0]
	}
	if cap(bb.buf)-len(bb.buf) < n {
		// Bodies already returned keep the old buffer; later ones go to
		// the new one.
		bb.buf = make([]byte, 0, max(2*cap(bb.buf), len(bb.buf)+n, 64<<10))
	}
	c := d.Encode(bb.buf[len(bb.buf):len(bb.buf)+n], body)
	if len(c) > len(body)-len(body)/8 {
		return nil, false
	}
	bb.buf = bb.buf[:len(bb.buf)+len(c)]
	return c, true
}

// reset lets the next rows reuse the buffer (the earlier ones were inserted).
func (bb *bodyBuf) reset() { bb.buf = bb.buf[:0] }

// release returns the buffer to encBufs; bodies it returned are not used after.
func (bb *bodyBuf) release() {
	if bb.pooled != nil && cap(bb.buf) <= encBufMax {
		*bb.pooled = bb.buf[:0]
		encBufs.Put(bb.pooled)
	}
	bb.buf, bb.pooled = nil, nil
}

// writerFor returns the writer state of k, making room for it when the
// bound is reached (an entry with a dictionary made in the transaction in
// progress is never dropped).
func (b *bodyDicts) writerFor(k dictKey) *writerDict {
	if b.writer == nil {
		b.writer = map[dictKey]*writerDict{}
	}
	b.writeTic++
	if w := b.writer[k]; w != nil {
		w.used = b.writeTic
		return w
	}
	if len(b.writer) >= maxWriterDicts {
		if oldest, ok := leastUsed(b.writer, func(w *writerDict) (uint64, bool) { return w.used, !w.fresh }); ok {
			delete(b.writer, oldest)
		}
	}
	w := &writerDict{key: k, used: b.writeTic}
	b.writer[k] = w
	return w
}

// readDict returns dictionary id, loading it from the table the first time.
func (s *Store) readDict(ctx context.Context, id int64) (*s2.Dict, error) {
	if d := s.bodies.get(id); d != nil {
		return d, nil
	}
	var raw []byte
	err := s.r.QueryRowContext(ctx, `SELECT dict FROM body_dicts WHERE id = ?`, id).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: stored body: dictionary %d does not exist", id)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: stored body: dictionary %d: %w", id, err)
	}
	d := s2.NewDict(raw)
	if d == nil {
		return nil, fmt.Errorf("sqlite: stored body: dictionary %d is damaged", id)
	}
	s.bodies.add(id, d)
	return d, nil
}

// decodeVersionBody returns the body of a version row as it was put: b as
// stored, enc its body_encoding, dictID its body_dict and hash its
// content_hash, which a compressed body must match once decoded (S2 blocks
// carry no checksum, so a damaged one could otherwise decode to other
// bytes of the right length).
func (s *Store) decodeVersionBody(ctx context.Context, b []byte, enc, dictID int64, hash []byte) ([]byte, error) {
	var out []byte
	switch enc {
	case encPlain:
		if b == nil {
			return []byte{}, nil
		}
		return b, nil
	case encS2Dict:
		d, err := s.readDict(ctx, dictID)
		if err != nil {
			return nil, err
		}
		n, err := s2.DecodedLen(b)
		if err != nil {
			return nil, fmt.Errorf("sqlite: stored body: %w", err)
		}
		if n > maxDecoded {
			return nil, errors.New("sqlite: stored body: decoded length out of range")
		}
		if out, err = d.Decode(make([]byte, n), b); err != nil {
			return nil, fmt.Errorf("sqlite: stored body: %w", err)
		}
	default:
		var err error
		if out, err = decodeBody(b, enc); err != nil {
			return nil, err
		}
	}
	if sum := sha256.Sum256(out); !bytes.Equal(sum[:], hash) {
		return nil, errors.New("sqlite: stored body: does not match its content hash")
	}
	return out, nil
}

// versionEncoder compresses the bodies of one insertVersions call. Its
// buffers are reused between rows: a body it returns is valid until the
// statement it is bound to has run (the driver copies bound values).
type versionEncoder struct {
	s        *Store
	tx       *sql.Tx
	practice string
	out      bodyBuf
	made     []*writerDict
}

// encode returns how to store body, a version of type rt: the bytes, their
// body_encoding and body_dict.
func (e *versionEncoder) encode(ctx context.Context, rt string, body []byte) ([]byte, int64, int64, error) {
	if len(body) < dictMinBody {
		return body, encPlain, 0, nil
	}
	w, err := e.writer(ctx, rt)
	if err != nil {
		return nil, 0, 0, err
	}
	if w.dict == nil {
		w.samples = append(w.samples, body...)
		if len(w.samples) < dictSize {
			return body, encPlain, 0, nil
		}
		if err := e.makeDict(ctx, rt, w); err != nil {
			return nil, 0, 0, err
		}
	}
	c, ok := e.out.compress(w.dict, body)
	if !ok {
		return body, encPlain, 0, nil
	}
	return c, encS2Dict, w.id, nil
}

// reset lets the next chunk of rows reuse the buffer (the previous
// chunk's statement has run).
func (e *versionEncoder) reset() { e.out.reset() }

// release returns the buffer to encBufs; the encoder is not used after.
func (e *versionEncoder) release() { e.out.release() }

// writer returns the writer state of rt in the encoder's practice, asking
// the table for the newest stored dictionary the first time.
func (e *versionEncoder) writer(ctx context.Context, rt string) (*writerDict, error) {
	b := &e.s.bodies
	w := b.writerFor(dictKey{e.practice, rt})
	if w.looked {
		return w, nil
	}
	var raw []byte
	err := e.tx.QueryRowContext(ctx, `SELECT id, dict FROM body_dicts WHERE practice = ? AND resource_type = ? ORDER BY id DESC LIMIT 1`,
		e.practice, rt).Scan(&w.id, &raw)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("sqlite: read body dictionary: %w", err)
	default:
		if w.dict = s2.NewDict(raw); w.dict == nil {
			return nil, fmt.Errorf("sqlite: body dictionary %d is damaged", w.id)
		}
		b.publish(dictKey{e.practice, rt}, w.id, w.dict)
	}
	w.looked = true
	return w, nil
}

// makeDict makes a dictionary of w's samples and stores it in the
// transaction; done or abandon settle it.
func (e *versionEncoder) makeDict(ctx context.Context, rt string, w *writerDict) error {
	data := w.samples[max(0, len(w.samples)-dictSize):]
	d := s2.MakeDict(data, []byte(`{"resourceType":"`+rt+`","id":"`))
	if d == nil {
		return fmt.Errorf("sqlite: make body dictionary for %s", rt)
	}
	var id int64
	if err := e.tx.QueryRowContext(ctx, `INSERT INTO body_dicts (practice, resource_type, created_at, dict) VALUES (?, ?, ?, ?) RETURNING id`,
		e.practice, rt, e.s.now().UnixNano(), d.Bytes()).Scan(&id); err != nil {
		return fmt.Errorf("sqlite: store body dictionary: %w", err)
	}
	w.id, w.dict, w.fresh = id, d, true
	e.made = append(e.made, w)
	return nil
}

// done: the transaction committed; the dictionaries it made are readable.
func (e *versionEncoder) done() {
	for _, w := range e.made {
		w.fresh, w.samples = false, nil
		e.s.bodies.publish(w.key, w.id, w.dict)
	}
	e.made = nil
}

// abandon: the transaction did not commit, so the dictionaries it made do
// not exist; the next write makes them again from the same samples.
func (e *versionEncoder) abandon() {
	for _, w := range e.made {
		if w.fresh {
			w.id, w.dict, w.fresh = 0, nil, false
		}
	}
	e.made = nil
}
