package sqlite

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sync/errgroup"

	"github.com/mediflow/mediflow/internal/fhir/searchparam"
)

// Deferred postings (bulk loads). Postings are most of the index's keys,
// and in a bulk load every memtable of them is flushed and then rewritten
// by compactions. While a bulk window is open for a practice
// (Store.BeginBulkLoad), apply does not put the postings of that practice's
// collections into Pebble: it appends them to a buffer of operations, which
// is sorted and written to a run file in the runs folder (inside the index
// folder) whenever it reaches its bound. When the window ends, the runs are
// merged once into sstables that do not overlap each other, and ingested:
// they land in the bottom level, and no compaction touches them.
//
//   - Only posting puts are deferred. A posting delete (a version replacing
//     or deleting a live one) goes to Pebble, where an older posting may be,
//     and into the buffer as a tombstone, since the posting may be in a run.
//     The newest operation of a key wins in the merge; tombstones are dropped.
//     Cur and order keys, metadata and the watermark go to Pebble as always.
//   - Once a collection is deferred, every posting write to it is deferred
//     until the runs are merged, whatever happens to the window: a direct
//     put followed by the ingest of an older deferred put of the same key
//     would undo it.
//   - A posting read (a search) of a deferred collection first merges and
//     ingests everything deferred (all collections: the runs mix them), and
//     the collection's postings then go to Pebble directly until its
//     practice's window closes, so the search sees every version committed
//     before it, and so does every later one. While a read is in progress
//     its collection is never newly deferred (bulkReading). A window
//     opening for a practice clears the mark of its collections.
//   - apply holds bulkState.mu for its whole run and the merge holds it
//     too: no batch is applied while the runs are merged.
//   - Crash safety: the batch that first defers a collection records a meta
//     key for it (metaBulk), and a batch after the ingest deletes it. Open
//     deletes leftover runs and rebuilds the postings of every collection
//     with the key from its order values (they hold every entry), through
//     the same runs, merge and ingest, before the store is used. Re-putting
//     an existing posting is harmless. Before the ingest the memtables are
//     flushed, so the ingested postings never describe versions (or name a
//     dictionary number) that a crash could take from Pebble.

// bulkBufferBytes bounds the buffer of deferred operations (keys, values
// and 32 bytes per operation) before it is written as a run: 1,157,164
// resources make about 200 runs. The buffer is live heap while the load
// runs (the garbage collector lets the heap grow to about twice the live
// heap), so it counts twice in the peak RSS: 8 MiB measured 193 MiB peak
// against 174 MiB with 4 MiB, at the same throughput (docs/benchmarks.md).
// The merge's readers (a block and a read buffer per run and worker) come
// after the load, when its buffers are gone.
const bulkBufferBytes = 4 << 20

// Merge output: sstables are cut at collection boundaries and at about
// bulkTableBytes; run files are made of blocks of about runBlockBytes.
const (
	bulkTableBytes = 64 << 20
	runBlockBytes  = 32 << 10
)

// bulkState is the index's deferred postings.
type bulkState struct {
	mu sync.Mutex // held by apply and by the merge

	windows map[string]int // open windows per practice; guarded by mu
	open    atomic.Int32   // open windows in all, for readers' fast path
	closed  bool           // the index is closed; guarded by mu

	limit int           // bound of buf in bytes; guarded by mu
	buf   ops           // deferred operations since the last spill; guarded by mu
	runs  []*bulkRun    // spilled runs, oldest first; guarded by mu
	colls []*collection // collections with deferred postings; guarded by mu
	files int           // numbers run and table files; guarded by mu

	fs  vfs.FS // the index's file system
	dir string // the runs folder

	wopts *pebble.Options // the index's options with Pebble's defaults, for sstable writers

	// Statistics of the last merge (numbers only), for logs and benchmarks.
	lastMerge bulkStats
}

type bulkStats struct {
	runs, tables int
	bytes        int64
	took         time.Duration
}

// bulkRun is one spilled run: sorted operations, one operation per key,
// grouped by posting prefix (collection, parameter name).
type bulkRun struct {
	path   string
	groups []bulkGroup
}

type bulkGroup struct {
	prefix   []byte // postingPrefix of (collection, name)
	off, end int64  // its blocks in the file
	raw      int64  // bytes of its entries before compression
}

func (ix *index) initBulk(fs vfs.FS, po *pebble.Options) {
	b := &ix.bulk
	b.windows = map[string]int{}
	b.limit = bulkBufferBytes
	b.fs = fs
	b.dir = fs.PathJoin(ix.dir, "bulk")
	b.wopts = po.Clone()
	b.wopts.EnsureDefaults()
}

// BeginBulkLoad opens a bulk window for a practice: until end is called,
// the search postings of the practice's collections are collected in sorted
// runs instead of Pebble's memtables, and end merges them into the index
// once (see indexbulk.go). Searches give the same answers during the window,
// but a search of a collection ends the deferral for that collection until
// the window closes. end waits for the batches written before it to be
// indexed, then merges; it must be called (Close merges otherwise), and a
// second call does nothing. Windows may nest and overlap.
func (s *Store) BeginBulkLoad(practice string) (end func(ctx context.Context) error) {
	s.idx.beginBulk(practice)
	var once sync.Once
	return func(ctx context.Context) error {
		var err error
		once.Do(func() {
			done, rerr := s.readIndex()
			if rerr != nil { // closed: Close merged what was deferred
				err = s.idx.endBulk(ctx, practice)
				return
			}
			defer done()
			werr := s.waitIndexed(ctx)
			err = errors.Join(werr, s.idx.endBulk(ctx, practice))
		})
		return err
	}
}

// defers reports whether c's postings go to the buffer. Callers hold mu.
func (b *bulkState) defers(c *collection) bool {
	if c.bulkDeferred.Load() {
		return true
	}
	return b.windows[c.practice] > 0 && !b.closed && !c.bulkNoDefer.Load() && c.bulkReading.Load() == 0
}

// size is what the buffer holds, in bytes.
func (b *bulkState) size() int { return len(b.buf.buf) + 32*len(b.buf.kv) }

// setCopy and delCopy add an operation on a key built elsewhere.
func (b *bulkState) delCopy(key []byte) {
	k0 := len(b.buf.buf)
	b.buf.del(append(b.buf.key(), key...), k0)
}

// beginBulk opens a window for a practice.
func (ix *index) beginBulk(practice string) {
	b := &ix.bulk
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.windows[practice]++; b.windows[practice] == 1 {
		for _, c := range ix.collections(practice) {
			c.bulkNoDefer.Store(false) // searched before the window
		}
	}
	b.open.Add(1)
}

// endBulk closes a window, then merges and ingests everything deferred
// (of every practice: the runs hold them all).
func (ix *index) endBulk(ctx context.Context, practice string) error {
	b := &ix.bulk
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.windows[practice] > 0 {
		b.windows[practice]--
		b.open.Add(-1)
		if b.windows[practice] == 0 {
			delete(b.windows, practice)
			for _, c := range ix.collections(practice) {
				c.bulkNoDefer.Store(false)
			}
		}
	}
	if b.closed {
		return nil // close merged them
	}
	return ix.finishBulk(ctx)
}

// readingPostings marks a posting read of c in progress, after merging
// deferred postings so the read sees them; the caller calls done after.
func (ix *index) readingPostings(c *collection) (done func(), err error) {
	c.bulkReading.Add(1)
	done = func() { c.bulkReading.Add(-1) }
	b := &ix.bulk
	// Without a window, or once marked, a collection is not newly deferred
	// while the read is counted (apply checks bulkReading after both), so
	// only a collection deferred now needs the merge.
	if (b.open.Load() == 0 || c.bulkNoDefer.Load()) && !c.bulkDeferred.Load() {
		return done, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c.bulkNoDefer.Store(true) // cleared when its practice's window opens or closes
	if c.bulkDeferred.Load() {
		if err := ix.finishBulk(context.Background()); err != nil {
			done()
			return nil, err
		}
	}
	return done, nil
}

// closeBulk merges what is deferred and refuses later windows' merges.
func (ix *index) closeBulk() error {
	b := &ix.bulk
	b.mu.Lock()
	defer b.mu.Unlock()
	err := ix.finishBulk(context.Background())
	b.closed = true
	return err
}

// resetBulk forgets everything deferred (the index was wiped). Callers
// hold mu or are Open.
func (ix *index) resetBulk() {
	b := &ix.bulk
	for _, c := range b.colls {
		c.bulkDeferred.Store(false)
	}
	b.colls = nil
	b.buf = ops{}
	b.runs = nil
	_ = b.fs.RemoveAll(b.dir)
}

// spill writes the buffer as a run. Callers hold mu.
func (ix *index) spillBulk() error {
	b := &ix.bulk
	if len(b.buf.kv) == 0 {
		return nil
	}
	if len(b.buf.buf) > 1<<32-1 {
		return errors.New("sqlite: search index: bulk buffer too large")
	}
	o := &b.buf
	o.sort(o.kv)
	if err := b.fs.MkdirAll(b.dir, 0o755); err != nil {
		return fmt.Errorf("sqlite: search index: runs folder: %w", err)
	}
	path := b.fs.PathJoin(b.dir, fmt.Sprintf("run-%06d", b.files))
	b.files++
	f, err := b.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("sqlite: search index: run file: %w", err)
	}
	rw := newRunWriter(f)
	for i := range o.kv {
		op := &o.kv[i]
		rw.add(o.buf[op.k0:op.k1], o.buf[op.k1:op.v1], op.del)
	}
	err = rw.finish()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = b.fs.Remove(path)
		return fmt.Errorf("sqlite: search index: run file: %w", err)
	}
	b.runs = append(b.runs, &bulkRun{path: path, groups: rw.groups})
	o.buf, o.kv = o.buf[:0], o.kv[:0]
	return nil
}

// finishBulk merges the runs and the buffer into sstables and ingests them.
// Callers hold mu. On failure everything stays deferred, for a later try.
func (ix *index) finishBulk(ctx context.Context) error {
	b := &ix.bulk
	if b.closed || (len(b.colls) == 0 && len(b.runs) == 0 && len(b.buf.kv) == 0) {
		return nil
	}
	start := time.Now()
	if err := ix.spillBulk(); err != nil {
		return err
	}
	b.buf = ops{} // the window's memory goes back before the merge takes its own
	// Dictionary numbers assigned since the last batch (only a rebuild
	// assigns any here) are persisted first; then the memtables are
	// flushed, so what the ingest adds never depends on data a crash can
	// take from Pebble.
	if err := ix.persistDicts(); err != nil {
		return err
	}
	if err := ix.db.Flush(); err != nil {
		return fmt.Errorf("sqlite: search index: flush before ingest: %w", err)
	}
	paths, bytesIn, err := ix.mergeRuns(ctx)
	if err != nil {
		return err
	}
	if len(paths) > 0 {
		if err := ix.db.Ingest(ctx, paths); err != nil {
			for _, p := range paths {
				_ = b.fs.Remove(p)
			}
			return fmt.Errorf("sqlite: search index: ingest postings: %w", err)
		}
	}
	// The postings are in: forget the deferral, then its meta keys.
	batch := ix.db.NewBatch()
	defer batch.Close()
	var kb []byte
	for _, c := range b.colls {
		kb = binary.BigEndian.AppendUint32(append(kb[:0], tagMeta, metaBulk), c.id)
		if err := batch.Delete(kb, nil); err != nil {
			return fmt.Errorf("sqlite: search index: %w", err)
		}
	}
	nruns := len(b.runs)
	for _, r := range b.runs {
		_ = b.fs.Remove(r.path)
	}
	b.runs = nil
	colls := b.colls
	b.colls = nil
	for _, c := range colls {
		c.bulkDeferred.Store(false)
		c.gen.Add(1) // plans made before the ingest may be stale
	}
	if err := batch.Commit(pebble.NoSync); err != nil {
		// The postings are in; a meta key left behind only costs a
		// rebuild at the next Open.
		return fmt.Errorf("sqlite: search index: %w", err)
	}
	b.lastMerge = bulkStats{runs: nruns, tables: len(paths), bytes: bytesIn, took: time.Since(start)}
	ix.log.Info("search index: deferred postings ingested", "runs", nruns, "tables", len(paths),
		"run_bytes", bytesIn, "ms", time.Since(start).Milliseconds())
	return nil
}

// persistDicts commits the names and subs not yet on disk. Writer only.
func (ix *index) persistDicts() error {
	dict, subs := ix.dict.Load(), ix.subs.Load()
	if ix.dictPersisted == len(dict.names) && ix.subsPersisted == len(subs.names) {
		return nil
	}
	batch := ix.db.NewBatch()
	defer batch.Close()
	var kb, vb []byte
	for id := ix.dictPersisted; id < len(dict.names); id++ {
		kb = appendEsc(append(kb[:0], tagMeta, metaName), dict.names[id])
		if err := batch.Set(kb, binary.BigEndian.AppendUint16(vb[:0], uint16(id)), nil); err != nil {
			return fmt.Errorf("sqlite: search index: %w", err)
		}
	}
	for id := ix.subsPersisted; id < len(subs.names); id++ {
		kb = appendEsc(append(kb[:0], tagMeta, metaSub), subs.names[id])
		if err := batch.Set(kb, binary.BigEndian.AppendUint16(vb[:0], uint16(id)), nil); err != nil {
			return fmt.Errorf("sqlite: search index: %w", err)
		}
	}
	if err := batch.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("sqlite: search index: %w", err)
	}
	ix.dictPersisted, ix.subsPersisted = len(dict.names), len(subs.names)
	return nil
}

// bulkChunk is a stretch of posting groups of one collection, merged into
// one or more sstables by one worker.
type bulkChunk struct {
	lo, hi []byte // first and last group prefix
	raw    int64  // bytes of its groups in the runs, uncompressed
	paths  []string
}

// mergeRuns merges the runs into sstables, chunks of groups in parallel,
// and returns their paths in key order and the runs' bytes. Callers hold mu.
func (ix *index) mergeRuns(ctx context.Context) ([]string, int64, error) {
	b := &ix.bulk
	type gsize struct {
		prefix []byte
		raw    int64
	}
	sizes := map[string]int64{}
	var total int64
	for _, r := range b.runs {
		for _, g := range r.groups {
			sizes[string(g.prefix)] += g.raw
		}
		if n := len(r.groups); n > 0 {
			total += r.groups[n-1].end
		}
	}
	gs := make([]gsize, 0, len(sizes))
	for p, n := range sizes {
		gs = append(gs, gsize{[]byte(p), n})
	}
	slices.SortFunc(gs, func(x, y gsize) int { return bytes.Compare(x.prefix, y.prefix) })
	var chunks []*bulkChunk
	var chunkColl []byte
	var chunkRaw int64
	for _, g := range gs {
		coll := collOfPrefix(g.prefix)
		if n := len(chunks); n == 0 || !bytes.Equal(coll, chunkColl) || chunkRaw+g.raw > bulkTableBytes {
			chunks = append(chunks, &bulkChunk{lo: g.prefix})
			chunkColl, chunkRaw = coll, 0
		}
		chunks[len(chunks)-1].hi = g.prefix
		chunks[len(chunks)-1].raw += g.raw
		chunkRaw += g.raw
	}
	// The workers take the largest chunks first, so the merge does not end
	// with one worker on a large chunk while the other has nothing left
	// (a collection's biggest parameter can be a fifth of all postings).
	// The tables are ingested in key order whatever order they were made in.
	order := make([]*bulkChunk, len(chunks))
	copy(order, chunks)
	slices.SortStableFunc(order, func(x, y *bulkChunk) int { return cmp.Compare(y.raw, x.raw) })
	wo := b.wopts.MakeWriterOptions(len(b.wopts.Levels)-1, ix.db.TableFormat())
	// No bloom filter: a filter only answers point lookups (Get,
	// SeekPrefixGE), and postings are only read by bounded iterators
	// (SeekGE, First, Next). The point lookups of cur, order and meta keys
	// never consult these tables, which hold posting keys only. Building
	// the filter was about a tenth of the merge's CPU, and it would take
	// space on disk and in the cache for nothing.
	wo.FilterPolicy = pebble.NoFilterPolicy
	// No compression either: a posting key is mostly an id and a time,
	// which Snappy shrank by 4 % (59.7 against 57.4 bytes per key) for
	// a quarter of the CPU of writing the table.
	wo.Compression = sstable.NoCompression
	// And 32 KiB blocks: 43 - 46 % less CPU to build than 4 KiB ones, and
	// no reader holds a block per table while the merge runs.
	wo.BlockSize = 32 << 10
	tfs := bufferedFS{b.fs}
	var next atomic.Int64
	var nfile atomic.Int64
	nfile.Store(int64(b.files))
	g, gctx := errgroup.WithContext(ctx)
	// Up to twice as many workers as cores: each waits for its tables'
	// syncs (tens of milliseconds per table) and its run reads, and the
	// others use that time. Four against two on 2 cores: the 1.16M bulk
	// load's merge took 1.19 - 1.66 s instead of 1.41 - 1.77 s in three
	// alternating pairs, at the same peak RSS. At most four: every worker
	// holds a read buffer per run.
	workers := min(4, 2*runtime.GOMAXPROCS(0), len(chunks))
	for range workers {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(chunks) || gctx.Err() != nil {
					return gctx.Err()
				}
				if err := ix.mergeChunk(order[i], wo, tfs, &nfile); err != nil {
					return err
				}
			}
		})
	}
	err := g.Wait()
	b.files = int(nfile.Load())
	var paths []string
	for _, ch := range chunks {
		paths = append(paths, ch.paths...)
	}
	if err != nil {
		for _, p := range paths {
			_ = b.fs.Remove(p)
		}
		return nil, 0, err
	}
	return paths, total, nil
}

// collOfPrefix returns the collection part (tag and number) of a posting prefix.
func collOfPrefix(p []byte) []byte {
	if len(p) < 2 {
		return p
	}
	_, n := binary.Uvarint(p[1:])
	if n <= 0 {
		return p
	}
	return p[:1+n]
}

// groupPrefixLen is the length of a posting key's (collection, name) prefix.
func groupPrefixLen(key []byte) int {
	if len(key) < 2 {
		return len(key)
	}
	_, n1 := binary.Uvarint(key[1:])
	if n1 <= 0 {
		return len(key)
	}
	_, n2 := binary.Uvarint(key[1+n1:])
	if n2 <= 0 {
		return len(key)
	}
	return 1 + n1 + n2
}

// mergeChunk merges one chunk of every run into sstables.
func (ix *index) mergeChunk(ch *bulkChunk, wo sstable.WriterOptions, tfs vfs.FS, nfile *atomic.Int64) (err error) {
	b := &ix.bulk
	var rs []*runReader
	defer func() {
		for _, r := range rs {
			r.f.Close()
		}
	}()
	for rank, run := range b.runs {
		i, _ := slices.BinarySearchFunc(run.groups, ch.lo, func(g bulkGroup, p []byte) int { return bytes.Compare(g.prefix, p) })
		j := i
		for j < len(run.groups) && bytes.Compare(run.groups[j].prefix, ch.hi) <= 0 {
			j++
		}
		if j == i {
			continue
		}
		f, err := b.fs.Open(run.path)
		if err != nil {
			return fmt.Errorf("sqlite: search index: run file: %w", err)
		}
		r := &runReader{f: f, rank: rank}
		rs = append(rs, r)
		// A small read buffer: blocks (about runBlockBytes) are read past
		// it, straight into r.block, so it only gathers their length
		// prefixes; every worker holds one per run, 200 runs at 1.16M.
		r.r = bufio.NewReaderSize(io.NewSectionReader(f, run.groups[i].off, run.groups[j-1].end-run.groups[i].off), 4<<10)
		if err := r.next(); err != nil {
			return err
		}
	}
	t := newLoserTree(rs)
	var w *sstable.Writer
	closeW := func() error {
		if w == nil {
			return nil
		}
		err := w.Close()
		w = nil
		return err
	}
	defer func() {
		if cerr := closeW(); err == nil {
			err = cerr
		}
		if err != nil {
			for _, p := range ch.paths {
				_ = b.fs.Remove(p)
			}
			ch.paths = nil
		}
	}()
	for n := 0; len(rs) > 0 && t.node[0].code != codeEnd; {
		r := rs[t.node[0].run]
		// A code of 0 is a key equal to the one before it, from an older
		// run: the newest operation of a key comes first and decides.
		if t.node[0].code != 0 && !r.del {
			if w == nil {
				path := b.fs.PathJoin(b.dir, fmt.Sprintf("table-%06d.sst", nfile.Add(1)))
				f, err := tfs.Create(path, vfs.WriteCategoryUnspecified)
				if err != nil {
					return fmt.Errorf("sqlite: search index: table file: %w", err)
				}
				ch.paths = append(ch.paths, path)
				w = sstable.NewWriter(objstorageprovider.NewFileWritable(f), wo)
			}
			if err := w.Set(r.key, r.val); err != nil {
				return fmt.Errorf("sqlite: search index: table file: %w", err)
			}
			// The size estimate has a cost of its own: looking every
			// 256 keys (about 18 KiB) is close enough to the bound.
			if n++; n%256 == 0 && w.Raw().EstimatedSize() >= bulkTableBytes {
				if err := closeW(); err != nil {
					return fmt.Errorf("sqlite: search index: table file: %w", err)
				}
			}
		}
		if err := r.next(); err != nil {
			return err
		}
		t.replay()
	}
	return nil
}

// ---- run files
//
// A run file is a sequence of blocks, each a uvarint length and a payload
// of entries: uvarint shared (bytes in common with the previous key of the
// block), uvarint (rest length << 1 | delete), the rest of the key, and for
// a put a uvarint value length and the value. Blocks end at group
// boundaries, so a group's blocks can be read on their own. Keys are
// strictly increasing in a run, and shared is exactly the length of the
// longest common prefix, which the merge relies on (runReader.code).
//
// The blocks are not compressed: with the shared prefixes gone, what is
// left is mostly ids and times, which S2 shrank by 3%, for 6% of the
// instructions of the spill and merge (BenchmarkBulkSpillMerge), and the
// runs only live until the merge.

type runWriter struct {
	w      *bufio.Writer
	off    int64
	block  []byte
	prev   []byte // the previous key, across blocks (the caller's bytes)
	groups []bulkGroup
	err    error

	// The previous entry: where it starts in the block, its shared
	// bytes, and its key and value bytes in its group's raw.
	lastAt, lastShared int
	lastRaw            int64
}

func newRunWriter(f io.Writer) *runWriter {
	return &runWriter{w: bufio.NewWriterSize(f, 256<<10)}
}

// add appends an operation. Keys come in increasing order; the same key
// again replaces the operation before it (the last one added counts), so a
// run has one operation per key. key must stay unchanged until the next
// add (it is kept, not copied).
func (w *runWriter) add(key, val []byte, del bool) {
	shared := commonPrefix(w.prev, key)
	if shared == len(key) && shared == len(w.prev) && len(w.groups) > 0 {
		// The previous operation is still in the block: write this one
		// over it.
		w.block = w.block[:w.lastAt]
		w.groups[len(w.groups)-1].raw -= w.lastRaw
		w.put(key, val, del, w.lastShared)
		return
	}
	// Keys are sorted, so a key that does not share the whole prefix of
	// the previous key's group starts another group.
	if n := len(w.groups); n == 0 || shared < len(w.groups[n-1].prefix) {
		w.flush()
		p := groupPrefixLen(key)
		w.groups = append(w.groups, bulkGroup{prefix: bytes.Clone(key[:p]), off: w.off, end: w.off})
	} else if len(w.block) >= runBlockBytes {
		w.flush()
	}
	if len(w.block) == 0 {
		shared = 0 // a block is read on its own
	}
	w.put(key, val, del, shared)
}

// put appends an entry to the block.
func (w *runWriter) put(key, val []byte, del bool, shared int) {
	w.lastAt, w.lastShared = len(w.block), shared
	rest := uint64(len(key)-shared)<<1 | b2u(del)
	if shared < 0x80 && rest < 0x80 { // nearly always: one byte each
		w.block = append(w.block, byte(shared), byte(rest))
	} else {
		w.block = binary.AppendUvarint(w.block, uint64(shared))
		w.block = binary.AppendUvarint(w.block, rest)
	}
	w.block = append(w.block, key[shared:]...)
	if !del {
		if len(val) < 0x80 {
			w.block = append(w.block, byte(len(val)))
		} else {
			w.block = binary.AppendUvarint(w.block, uint64(len(val)))
		}
		w.block = append(w.block, val...)
	}
	w.prev = key
	w.lastRaw = int64(len(key) + len(val))
	w.groups[len(w.groups)-1].raw += w.lastRaw
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// commonPrefix returns the length of the longest common prefix of a and b.
func commonPrefix(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for ; i+8 <= n; i += 8 {
		if x := binary.LittleEndian.Uint64(a[i:]) ^ binary.LittleEndian.Uint64(b[i:]); x != 0 {
			return i + bits.TrailingZeros64(x)>>3
		}
	}
	for i < n && a[i] == b[i] {
		i++
	}
	return i
}

func (w *runWriter) flush() {
	if len(w.block) == 0 || w.err != nil {
		return
	}
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(w.block)))
	if _, err := w.w.Write(hdr[:n]); err != nil {
		w.err = err
		return
	}
	if _, err := w.w.Write(w.block); err != nil {
		w.err = err
		return
	}
	w.off += int64(n + len(w.block))
	w.groups[len(w.groups)-1].end = w.off
	w.block = w.block[:0]
}

func (w *runWriter) finish() error {
	w.flush()
	if w.err != nil {
		return w.err
	}
	return w.w.Flush()
}

var errBadRun = errors.New("sqlite: search index: malformed run file")

type runReader struct {
	f     vfs.File
	r     *bufio.Reader
	rank  int // newer runs rank higher
	block []byte
	pos   int
	key   []byte
	val   []byte
	del   bool
	// code is the offset-value code of key against the run's previous
	// key (see loserTree); codeEnd past the end of the section.
	code uint64
}

// Offset-value codes: a key k greater than a base key, with its first
// difference from the base at offset o, has the code (^o)<<8 | k[o]; a key
// equal to the base has the code 0. For keys greater than or equal to the
// same base, the order of their codes is the order of the keys, except
// that equal codes say nothing past the offset; codeEnd is above every code.
const codeEnd = math.MaxUint64

func makeCode(off int, b byte) uint64 { return uint64(^uint32(off))<<8 | uint64(b) }

func codeOffset(code uint64) int { return int(^uint32(code >> 8)) }

// next moves to the next entry (code codeEnd at the end of the section).
func (r *runReader) next() error {
	if r.pos >= len(r.block) {
		n, err := binary.ReadUvarint(r.r)
		if err == io.EOF {
			r.code = codeEnd
			return nil
		}
		if err != nil || n > 1<<30 {
			return errBadRun
		}
		r.block = slices.Grow(r.block[:0], int(n))[:n]
		if _, err := io.ReadFull(r.r, r.block); err != nil {
			return errBadRun
		}
		r.pos = 0
	}
	b := r.block[r.pos:]
	var shared, rest uint64
	if len(b) >= 2 && b[0] < 0x80 && b[1] < 0x80 { // one byte each, nearly always
		shared, rest = uint64(b[0]), uint64(b[1])
		b = b[2:]
	} else {
		var k1, k2 int
		if shared, k1 = binary.Uvarint(b); k1 <= 0 {
			return errBadRun
		}
		if rest, k2 = binary.Uvarint(b[k1:]); k2 <= 0 {
			return errBadRun
		}
		b = b[k1+k2:]
	}
	n := rest >> 1
	// Keys strictly increase: something follows the shared bytes.
	if n == 0 || shared > uint64(len(r.key)) || n > uint64(len(b)) {
		return errBadRun
	}
	off := int(shared)
	if r.pos == 0 {
		// The first key of a block shares nothing in the file; its
		// code needs its actual common prefix with the previous key.
		if off != 0 {
			return errBadRun
		}
		if off = commonPrefix(r.key, b[:n]); off == int(n) {
			return errBadRun // not above the previous key
		}
	}
	r.key = append(r.key[:shared], b[:n]...)
	r.code = makeCode(off, r.key[off])
	b = b[n:]
	r.del = rest&1 != 0
	r.val = nil
	if !r.del {
		var vl uint64
		k3 := 1
		if len(b) > 0 && b[0] < 0x80 {
			vl = uint64(b[0])
		} else if vl, k3 = binary.Uvarint(b); k3 <= 0 {
			return errBadRun
		}
		if vl > uint64(len(b)-k3) {
			return errBadRun
		}
		r.val = b[k3 : k3+int(vl)]
		b = b[k3+int(vl):]
	}
	r.pos = len(r.block) - len(b)
	return nil
}

// loserTree merges the runs of a chunk: a tournament tree whose internal
// nodes keep the loser of their match, so moving past the smallest key
// replays one match per level, against the losers on its path only. The
// matches compare offset-value codes, which the run files give almost for
// free (their shared prefix lengths), so most are one integer comparison:
// the losers on the winner's path are coded against the winner, and so is
// the winner's successor in its run. Equal keys: the newest run wins, and
// the others follow with the code 0.
type loserTree struct {
	rs   []*runReader
	node []treeEntry // node[0]: the winner; node[p], 1 <= p < len(rs): the loser at p
}

type treeEntry struct {
	code uint64 // against the key that beat it (the winner's: against the previous winner)
	run  int
}

// newLoserTree builds the tree from the readers' first keys, whose codes
// are against the empty key.
func newLoserTree(rs []*runReader) *loserTree {
	k := len(rs)
	t := &loserTree{rs: rs, node: make([]treeEntry, max(k, 1))}
	// Leaf i is at position k+i; position p's children are 2p and 2p+1.
	win := make([]treeEntry, 2*k)
	for i, r := range rs {
		win[k+i] = treeEntry{r.code, i}
	}
	for p := k - 1; p >= 1; p-- {
		w, l := win[2*p], win[2*p+1]
		if l.code < w.code {
			w, l = l, w
		} else if l.code == w.code {
			t.tie(&w, &l)
		}
		win[p], t.node[p] = w, l
	}
	if k > 0 {
		t.node[0] = win[1]
	}
	return t
}

// replay moves the winner's run, advanced by the caller, up its path.
func (t *loserTree) replay() {
	w := t.node[0]
	w.code = t.rs[w.run].code
	for p := (len(t.rs) + w.run) / 2; p >= 1; p /= 2 {
		// A loser whose code differs keeps it: it differs from the
		// winner where it differs from their common base, by the same
		// byte.
		if l := &t.node[p]; l.code < w.code {
			w, *l = *l, w
		} else if l.code == w.code {
			t.tie(&w, l)
		}
	}
	t.node[0] = w
}

// tie settles a match of equal codes against the same base: the winner
// ends in w, the loser in l with its code against the winner.
func (t *loserTree) tie(w, l *treeEntry) {
	if w.code == codeEnd {
		return
	}
	rw, rl := t.rs[w.run], t.rs[l.run]
	equal, c := w.code == 0, 0 // the code 0: both equal the base
	if !equal {
		// The keys agree up to and including the offset.
		off := codeOffset(w.code) + 1
		c = off + commonPrefix(rw.key[off:], rl.key[off:])
		equal = c == len(rw.key) && c == len(rl.key)
	}
	switch {
	case equal: // the newest run first
		if rw.rank < rl.rank {
			*w, *l = *l, *w
		}
		l.code = 0
	case c == len(rw.key) || (c < len(rl.key) && rw.key[c] < rl.key[c]):
		l.code = makeCode(c, rl.key[c])
	default:
		*w, *l = *l, *w
		l.code = makeCode(c, rw.key[c])
	}
}

// ---- recovery

// recoverBulk runs at Open: it deletes leftover runs and rebuilds the
// postings of every collection a crash left with deferred postings, from
// its order values, through the runs, merge and ingest.
func (ix *index) recoverBulk() error {
	b := &ix.bulk
	if err := b.fs.RemoveAll(b.dir); err != nil {
		return fmt.Errorf("sqlite: search index: remove runs: %w", err)
	}
	lower := []byte{tagMeta, metaBulk}
	it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: successor(lower)})
	if err != nil {
		return fmt.Errorf("sqlite: search index: %w", err)
	}
	var ids []uint32
	for valid := it.First(); valid; valid = it.Next() {
		if k := it.Key(); len(k) == 6 {
			ids = append(ids, binary.BigEndian.Uint32(k[2:]))
		}
	}
	err = it.Error()
	it.Close()
	if err != nil {
		return fmt.Errorf("sqlite: search index: %w", err)
	}
	if len(ids) == 0 {
		return nil
	}
	start := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	byID := map[uint32]*collection{}
	ix.mu.RLock()
	for _, c := range ix.colls {
		byID[c.id] = c
	}
	ix.mu.RUnlock()
	n := 0
	for _, id := range ids {
		c := byID[id]
		if c == nil { // a key without its collection: nothing to rebuild
			if err := ix.db.Delete(binary.BigEndian.AppendUint32([]byte{tagMeta, metaBulk}, id), pebble.NoSync); err != nil {
				return fmt.Errorf("sqlite: search index: %w", err)
			}
			continue
		}
		c.bulkDeferred.Store(true)
		b.colls = append(b.colls, c)
		m, err := ix.repost(c)
		if err != nil {
			return err
		}
		n += m
	}
	if err := ix.finishBulk(context.Background()); err != nil {
		return err
	}
	ix.log.Info("search index: postings of an interrupted bulk load rebuilt", "collections", len(ids), "resources", n, "ms", time.Since(start).Milliseconds())
	return nil
}

// repost puts every posting of c's live resources into the buffer, from
// their order values, and returns how many resources it read. Callers hold
// bulk.mu.
func (ix *index) repost(c *collection) (int, error) {
	b := &ix.bulk
	prefix := collPrefix(nil, tagOrder, c.id)
	it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: successor(prefix)})
	if err != nil {
		return 0, fmt.Errorf("sqlite: search index: %w", err)
	}
	defer it.Close()
	dv := ix.view()
	ebuf := make([]searchparam.Entry, 0, 16)
	var arena, val []byte
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()[len(prefix):]
		if len(k) < 8 {
			return 0, errors.New("sqlite: search index: malformed order record")
		}
		lu := unsortable(binary.BigEndian.Uint64(k))
		id, _, ok := readEsc(k[8:])
		if !ok {
			return 0, errors.New("sqlite: search index: malformed order record")
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return 0, fmt.Errorf("sqlite: search index: %w", err)
		}
		seq, m := binary.Uvarint(v)
		if m <= 0 {
			return 0, errors.New("sqlite: search index: malformed order record")
		}
		sid := string(id)
		es, err := decodeEntries(v[m:], dv, sid, ebuf, &arena)
		if err != nil {
			return 0, err
		}
		ebuf = es[:0]
		if ix.codes, err = ix.codeEntries(ix.codes[:0], es); err != nil {
			return 0, err
		}
		val = binary.AppendUvarint(val[:0], seq)
		for i := range es {
			e := &es[i]
			if !c.posted(e) {
				continue
			}
			k0 := len(b.buf.buf)
			key, err := ix.postingKey(b.buf.key(), c, e, &ix.codes[i], lu, sid)
			if err != nil {
				return 0, err
			}
			b.buf.set(key, k0, val)
		}
		n++
		if b.size() >= b.limit {
			if err := ix.spillBulk(); err != nil {
				return 0, err
			}
		}
	}
	return n, it.Error()
}
