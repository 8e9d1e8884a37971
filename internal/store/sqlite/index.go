package sqlite

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/mediflow/mediflow/internal/fhir/searchparam"
)

// index is the store's derived state: the current version of every resource
// and the search index, in a Pebble LSM tree in its own folder next to the
// SQLite file. SQLite's resource_versions stays the source of truth; the
// index records the seq it is complete up to (its watermark) in the same
// atomic batch as the data, so after a crash it catches up from
// resource_versions, and a folder that does not belong to the database is
// rebuilt. Little of it is kept in Go memory per resource: Pebble's block
// cache and memtables are bounded by Options, and what the index keeps in
// memory is per collection (practice and resource type) and per parameter
// name, plus, for a collection created since Open, a filter of its ids at
// 12 to 24 bits each, bounded per collection and in all (indexfilter.go).
//
// Key layout (fixed-size integers big-endian, int64s with the sign bit
// flipped so they sort as bytes, uv a uvarint, strings escaped by appendEsc
// so they sort as bytes and end with a terminator):
//
//	cur      0x01 coll:uv id                          -> seq, version, flags, hash, lu
//	order    0x02 coll:uv lu:8 id                     -> seq, entries
//	posting  0x03 coll:uv name:uv value lu:8 id [sub] -> seq
//	meta     0x00 ...
//
// coll numbers a (practice, resource type); name numbers a parameter name
// (uvarints are prefix-free, so one collection's or name's keys never mix
// with another's); lu is the resource's sort key (meta.lastUpdated in
// clamped unix nanoseconds). An order key per live resource gives the
// (lastUpdated, id) order every search returns; its value holds the
// resource's search entries (appendEntries), so any criterion can be checked
// with searchparam's own matching without reading the body. Posting values
// per entry type:
//
//	string     folded-value exact-text lu id
//	token      code lu id system
//	reference  target-id lu id target-type
//	date       low:12 high:12 lu id          (unix seconds:8, nanoseconds:4)
//
// A token's system and a reference's target type (the "sub") are numbered
// by a second dictionary (appendSub): a system URL of 50 bytes repeated in
// every posting and every order value was a good part of the index's bytes,
// and every byte is written again by each compaction.
//
// Token and reference postings of one value are therefore in (lastUpdated,
// id) order, so a search on them pages without sorting. _id is answered from
// the cur table and _lastUpdated from the order table; neither has postings.
// A reference parameter that only narrows another on the same elements
// ("patient" is "subject" restricted to Patient) shares its postings, and
// filters them by target type.
//
// A write batch becomes one Pebble batch whose operations are applied in key
// order (about twice as fast for Pebble's memtable as scattered keys). Pebble
// runs without its own WAL: the SQLite commit comes first, and what a crash
// takes from the memtables is caught up from resource_versions on open.
// In a bulk window the postings skip the memtables: they are collected in
// sorted runs and ingested as sstables when it ends (indexbulk.go).
type index struct {
	db  *pebble.DB
	dir string
	log *slog.Logger

	mu       sync.RWMutex
	colls    map[collName]*collection // guarded by mu
	nextColl uint32                   // writer only

	dict          atomic.Pointer[nameDict]
	dictPersisted int                      // names [0, dictPersisted) are on disk; writer only
	subs          atomic.Pointer[nameDict] // token systems and reference target types
	subsPersisted int                      // subs [0, subsPersisted) are on disk; writer only

	scratch ops         // apply's buffers, reused; writer only
	codes   []entryCode // apply's, reused; writer only

	watermark atomic.Int64  // every version with seq <= watermark is indexed
	commits   atomic.Uint64 // batches committed, so a writer can tell its reads are still current

	plans  planCache
	limits // the search planner's bounds

	bulk bulkState // deferred postings of bulk loads (indexbulk.go)
}

type collName struct{ practice, rt string }

// collection is the in-memory part of one (practice, resource type): a few
// counters, whatever the number of resources.
type collection struct {
	id       uint32
	practice string
	rt       string

	persisted bool // its meta key is on disk; writer only

	live atomic.Int64  // current, non-deleted resources
	gen  atomic.Uint64 // bumped after every committed batch that changed it

	statMu sync.RWMutex
	stats  map[uint16]*dateStat // per date parameter; guarded by statMu

	// narrow lists the reference parameters whose postings are those of a
	// broader parameter on the same elements (searchparam.NarrowsTo): only
	// the broader one is posted. Immutable.
	narrow map[string]searchparam.Narrowing

	// Bulk loads (indexbulk.go): bulkDeferred is set while its posting
	// writes go to the index's bulk runs (written under bulk.mu);
	// bulkNoDefer, after a posting read in a bulk window, keeps them direct
	// until the window closes; bulkReading counts posting reads in progress.
	bulkDeferred atomic.Bool
	bulkNoDefer  atomic.Bool
	bulkReading  atomic.Int32

	// ids filters lookups of ids the collection cannot hold (see idFilter):
	// set for a collection created since Open, nil for one loaded from disk.
	// The field is immutable; the filter may be dropped.
	ids *idFilter
}

func newCollection(id uint32, practice, rt string) *collection {
	c := &collection{id: id, practice: practice, rt: rt, stats: map[uint16]*dateStat{}, narrow: map[string]searchparam.Narrowing{}}
	for _, name := range searchparam.Names(rt) {
		if n, ok := searchparam.NarrowsTo(rt, name); ok {
			c.narrow[name] = n
		}
	}
	return c
}

// posted reports whether an entry has postings of its own: _id and
// _lastUpdated are answered from the cur and order tables, and a narrowing
// reference parameter from its broader parameter's postings.
func (c *collection) posted(e *searchparam.Entry) bool {
	if e.Name == "_id" || e.Name == "_lastUpdated" {
		return false
	}
	if e.Type == searchparam.Reference {
		_, narrow := c.narrow[e.Name]
		return !narrow
	}
	return true
}

// dateStat bounds the date ranges of one parameter of one collection, so a
// date search can limit its scan of postings sorted by range start. Both
// only ever grow: a stale (smaller) value is never persisted ahead of data.
type dateStat struct {
	width    int64 // widest high-low, in whole seconds, rounded up
	inverted bool  // some range has low > high (a malformed source)
	dirty    bool  // changed since last persisted; writer only
}

// nameDict maps parameter names (or subs) to the numbers used in keys. It
// is copied on change (new names are rare) and read without locks.
type nameDict struct {
	names []string
	ids   map[string]uint16
}

// with returns a copy of d with name added as the next number (readers
// keep the dictionary they loaded; the writer publishes the copy).
func (d *nameDict) with(name string) (*nameDict, uint16) {
	nd := &nameDict{names: append(d.names[:len(d.names):len(d.names)], strings.Clone(name)), ids: make(map[string]uint16, len(d.ids)+1)}
	for k, v := range d.ids {
		nd.ids[k] = v
	}
	id := uint16(len(d.names))
	nd.ids[nd.names[id]] = id
	return nd, id
}

// Key tags.
const (
	tagMeta    byte = 0x00
	tagCur     byte = 0x01
	tagOrder   byte = 0x02
	tagPosting byte = 0x03
	tagEnd     byte = 0x04
)

// Meta keys (after tagMeta).
const (
	metaFormat    = 'f' // format: indexFormat + searchparam.CatalogVersion()
	metaWatermark = 'w' // seq:8, content hash:32, stored_at:8 of that version
	metaColl      = 'c' // practice type -> coll:4
	metaLive      = 'l' // coll:4 -> live count:8
	metaStat      = 's' // coll:4 name:2 -> width:8 inverted:1
	metaName      = 'n' // name -> name:2
	metaSub       = 'y' // sub -> sub:2
	metaBulk      = 'b' // coll:4 -> (empty): the collection has deferred postings (indexbulk.go)
)

// indexFormat changes whenever the key layout or value encodings change.
// 2 (Dec 2026): uvarint collection and name numbers, numbered subs, entries
// without _id.
const indexFormat = "mediflow-index-2"

// maxSubs bounds the sub dictionary: a source with endless distinct systems
// gets its later ones spelled out in full rather than a dictionary that
// grows with the data. (A variable so tests can reach the spelled-out path.)
var maxSubs = 1024

// IndexDir is where the store at dbPath keeps its search index.
func IndexDir(dbPath string) string { return dbPath + ".index" }

type indexOptions struct {
	CacheMB    int
	MemTableMB int
	FS         vfs.FS // nil: the operating system's (tests pass a crashable one)
}

// L0 thresholds of the index, counted in L0 sublevels (one per flushed
// memtable when keys are random; see openIndex): with the default 16 MiB
// memtables, up to about 384 MiB of L0 data go into one L0 compaction. (A
// 1.16M-resource bulk load measured with the indexstats tag: 34 flushes,
// 303 MiB compacted, no compaction debt left; with 8 MiB memtables 68
// flushes and 675 MiB compacted.)
const (
	l0CompactionThreshold = 24
	l0StopWritesThreshold = 64
)

// indexBlockSize is the data block size of the index's tables (Pebble's
// default is 4 KiB). Building a table costs per block as much as per key:
// on the keys of a 1.16M-resource bulk load, 16 KiB blocks took 25 - 28 %
// less CPU to write than 4 KiB ones, and 32 KiB blocks 43 - 46 % less, but
// 32 KiB raised the bulk load's peak RSS by 12 MiB (the compactions that
// run during the final merge hold a block per input table); flushes and
// compactions write and read these tables. Reads lose little: searches
// scan postings and order keys in key order, and a point lookup (a cur
// key) binary-searches one block held in the cache either way. The bulk
// merge writes its own tables with larger blocks (mergeRuns).
const indexBlockSize = 16 << 10

// pebbleLog passes Pebble's messages to the store's logger. Only the format
// strings are logged: arguments may include keys, which hold search values.
type pebbleLog struct{ l *slog.Logger }

func (p pebbleLog) Infof(format string, _ ...any) {
	p.l.Debug("search index", "pebble", format)
}

func (p pebbleLog) Errorf(format string, _ ...any) {
	p.l.Warn("search index error", "pebble", format)
}

func (p pebbleLog) Fatalf(format string, _ ...any) {
	p.l.Error("search index fatal error", "pebble", format)
	panic("sqlite: search index (pebble): " + format)
}

func openIndex(dir string, o indexOptions, log *slog.Logger) (*index, error) {
	fs := o.FS
	if fs == nil {
		fs = vfs.Default
	}
	po := &pebble.Options{
		// Pebble charges its memtables to the block cache; size the cache
		// so the blocks get CacheMB of their own.
		CacheSize:                   int64(o.CacheMB+2*o.MemTableMB) << 20,
		MemTableSize:                uint64(o.MemTableMB) << 20,
		MemTableStopWritesThreshold: 2,
		Logger:                      pebbleLog{log},
		FormatMajorVersion:          pebble.FormatNewest,
		FS:                          bufferedFS{fs},
		// No write-ahead log, and every batch commits with NoSync: the
		// index is derived data and never needs durability of its own.
		// Why that is safe:
		//   - SQLite commits a batch before the index sees it, so whatever
		//     the index loses is still in resource_versions.
		//   - Each index batch carries the watermark (the last seq it
		//     covers) in the same atomic Pebble batch as its entries, and a
		//     batch is never split across memtables. Without a WAL, what
		//     survives a crash is exactly the memtables flushed before it,
		//     and memtables flush in commit order: the index on disk is the
		//     state after some earlier batch, watermark included. The
		//     watermark therefore never claims more than was applied.
		//   - Open (syncIndex) checks that the watermark's version exists in
		//     this database and re-applies every version after it from
		//     resource_versions (catchUp). Close flushes, so a clean shutdown
		//     re-applies nothing. TestIndexLostTailReappliedOnOpen crashes a
		//     store with unflushed batches and checks this.
		DisableWAL: true,
		// Fewer, larger L0 compactions. A bulk load writes random keys (ids,
		// search values), so every flushed memtable overlaps all of the base
		// level, and each L0 compaction rewrites the part of the base level
		// it overlaps, whatever the amount of L0 data it carries. Waiting for
		// more sublevels (Pebble's default is 4) carries more L0 data per
		// rewrite, so small memtables (bounded memory) do not mean more
		// rewriting. The price is more L0 files for a lookup to consult;
		// their bloom filters make a miss cheap.
		L0CompactionThreshold: l0CompactionThreshold,
		L0StopWritesThreshold: l0StopWritesThreshold,
	}
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10) // cheap misses for new ids
		po.Levels[i].BlockSize = indexBlockSize
	}

	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open search index %s (deleting the folder makes the store rebuild it): %w", dir, err)
	}
	ix := &index{db: db, dir: dir, log: log, colls: map[collName]*collection{}, limits: defaultLimits()}
	ix.dict.Store(&nameDict{ids: map[string]uint16{}})
	ix.subs.Store(&nameDict{ids: map[string]uint16{}})
	ix.plans.m = map[string]*plan{}
	ix.initBulk(fs, po)
	want := []byte(indexFormat + " " + searchparam.CatalogVersion())
	got, err := ix.getMeta([]byte{tagMeta, metaFormat})
	if err != nil {
		db.Close()
		return nil, err
	}
	if !bytes.Equal(got, want) {
		if got != nil {
			log.Info("search index format or search parameters changed: rebuilding", "dir", dir)
		}
		if err := ix.wipe(want); err != nil {
			db.Close()
			return nil, err
		}
	}
	if err := ix.loadMeta(); err != nil {
		db.Close()
		return nil, err
	}
	if err := ix.recoverBulk(); err != nil {
		db.Close()
		return nil, err
	}
	return ix, nil
}

// close flushes the memtables (the index has no WAL) and closes Pebble,
// logging how much Pebble wrote since Open and the compaction work it
// leaves behind (numbers only: no keys).
func (ix *index) close() error {
	berr := ix.closeBulk()
	ferr := errors.Join(berr, ix.db.Flush())
	m := ix.db.Metrics()
	var flushed, compacted uint64
	for _, l := range m.Levels {
		flushed += l.TableBytesFlushed
		compacted += l.TableBytesCompacted
	}
	ix.log.Info("search index closed",
		"flushed_bytes", flushed, "compacted_bytes", compacted,
		"flushes", m.Flush.Count, "compactions", m.Compact.Count,
		"compaction_debt_bytes", m.Compact.EstimatedDebt,
		"l0_files", m.Levels[0].TablesCount, "l0_sublevels", m.Levels[0].Sublevels,
		"disk_bytes", m.DiskSpaceUsage())
	ix.log.Debug("search index metrics", "pebble", m.String())
	if indexCloseHook != nil {
		indexCloseHook(ix.dir, m)
	}
	ix.mu.Lock()
	for _, c := range ix.colls {
		c.ids.drop() // returns its bits to the process's budget
	}
	ix.mu.Unlock()
	return errors.Join(ferr, ix.db.Close())
}

// indexCloseHook, when set, receives Pebble's metrics at close (the
// mediflow_indexstats build tag sets it to print them, for benchmarks).
var indexCloseHook func(dir string, m *pebble.Metrics)

func (ix *index) getMeta(key []byte) ([]byte, error) {
	v, c, err := ix.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: search index: %w", err)
	}
	out := bytes.Clone(v)
	c.Close()
	return out, nil
}

// wipe deletes everything and records the format, leaving an empty index.
func (ix *index) wipe(format []byte) error {
	b := ix.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange([]byte{tagMeta}, []byte{tagEnd}, nil); err != nil {
		return fmt.Errorf("sqlite: search index: %w", err)
	}
	if err := b.Set([]byte{tagMeta, metaFormat}, format, nil); err != nil {
		return fmt.Errorf("sqlite: search index: %w", err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("sqlite: search index: %w", err)
	}
	if err := ix.db.Compact(context.Background(), []byte{tagCur}, []byte{tagEnd}, true); err != nil {
		return fmt.Errorf("sqlite: search index: compact: %w", err)
	}
	ix.bulk.mu.Lock()
	ix.resetBulk()
	ix.bulk.mu.Unlock()
	ix.mu.Lock()
	for _, c := range ix.colls {
		c.ids.drop()
	}
	ix.colls = map[collName]*collection{}
	ix.nextColl = 0
	ix.mu.Unlock()
	ix.dict.Store(&nameDict{ids: map[string]uint16{}})
	ix.dictPersisted = 0
	ix.subs.Store(&nameDict{ids: map[string]uint16{}})
	ix.subsPersisted = 0
	ix.watermark.Store(0)
	ix.commits.Add(1)
	ix.plans.clear()
	return nil
}

// loadMeta reads the collections, names, counters and the watermark.
func (ix *index) loadMeta() error {
	it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagMeta}, UpperBound: []byte{tagCur}})
	if err != nil {
		return fmt.Errorf("sqlite: search index: %w", err)
	}
	defer it.Close()
	byID := map[uint32]*collection{}
	type stat struct {
		coll uint32
		name uint16
		st   dateStat
	}
	var stats []stat
	lives := map[uint32]int64{}
	d := &nameDict{ids: map[string]uint16{}}
	sd := &nameDict{ids: map[string]uint16{}}
	bad := func(what string) error { return fmt.Errorf("sqlite: search index: malformed %s record", what) }
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) < 2 {
			return bad("meta")
		}
		switch k[1] {
		case metaWatermark:
			if len(v) < 8 {
				return bad("watermark")
			}
			ix.watermark.Store(int64(binary.BigEndian.Uint64(v)))
		case metaColl:
			practice, rest, ok := readEsc(k[2:])
			rt, _, ok2 := readEsc(rest)
			if !ok || !ok2 || len(v) != 4 {
				return bad("collection")
			}
			c := newCollection(binary.BigEndian.Uint32(v), string(practice), string(rt))
			c.persisted = true
			byID[c.id] = c
			ix.colls[collName{c.practice, c.rt}] = c
			ix.nextColl = max(ix.nextColl, c.id+1)
		case metaLive:
			if len(k) != 6 || len(v) != 8 {
				return bad("count")
			}
			lives[binary.BigEndian.Uint32(k[2:])] = int64(binary.BigEndian.Uint64(v))
		case metaStat:
			if len(k) != 8 || len(v) != 9 {
				return bad("date statistics")
			}
			stats = append(stats, stat{binary.BigEndian.Uint32(k[2:]), binary.BigEndian.Uint16(k[6:]),
				dateStat{width: int64(binary.BigEndian.Uint64(v)), inverted: v[8] != 0}})
		case metaName, metaSub:
			name, _, ok := readEsc(k[2:])
			if !ok || len(v) != 2 {
				return bad("name")
			}
			dd := d
			if k[1] == metaSub {
				dd = sd
			}
			id := binary.BigEndian.Uint16(v)
			for len(dd.names) <= int(id) {
				dd.names = append(dd.names, "")
			}
			dd.names[id] = string(name)
			dd.ids[string(name)] = id
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("sqlite: search index: %w", err)
	}
	for id, n := range lives {
		if c := byID[id]; c != nil {
			c.live.Store(n)
		}
	}
	for _, s := range stats {
		if c := byID[s.coll]; c != nil {
			st := s.st
			c.stats[s.name] = &st
		}
	}
	ix.dict.Store(d)
	ix.dictPersisted = len(d.names)
	ix.subs.Store(sd)
	ix.subsPersisted = len(sd.names)
	return nil
}

// coll returns the collection of (practice, rt), or nil.
func (ix *index) coll(practice, rt string) *collection {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.colls[collName{practice, rt}]
}

// collFor returns the collection, creating it in memory (writer only; apply
// persists it).
func (ix *index) collFor(practice, rt string) *collection {
	if c := ix.coll(practice, rt); c != nil {
		return c
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	c := newCollection(ix.nextColl, strings.Clone(practice), strings.Clone(rt))
	c.ids = newIDFilter() // new: every id it will hold goes through apply
	ix.nextColl++
	ix.colls[collName{c.practice, c.rt}] = c
	return c
}

// collections lists the collections of a practice.
func (ix *index) collections(practice string) []*collection {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var out []*collection
	for _, c := range ix.colls {
		if c.practice == practice {
			out = append(out, c)
		}
	}
	return out
}

// nameID returns the number of a parameter name, assigning one (writer only).
func (ix *index) nameID(name string) (uint16, error) {
	d := ix.dict.Load()
	if id, ok := d.ids[name]; ok {
		return id, nil
	}
	if len(d.names) >= math.MaxUint16 {
		return 0, errors.New("sqlite: search index: too many parameter names")
	}
	nd, id := d.with(name)
	ix.dict.Store(nd)
	return id, nil
}

// subID returns the number of a sub (a token system or reference target
// type), assigning one while the dictionary has room (writer only); false
// when it has none: the sub is then spelled out.
func (ix *index) subID(sub string) (uint16, bool) {
	d := ix.subs.Load()
	if id, ok := d.ids[sub]; ok {
		return id, true
	}
	if len(d.names) >= maxSubs {
		return 0, false
	}
	nd, id := d.with(sub)
	ix.subs.Store(nd)
	return id, true
}

// appendSub appends a sub: its number plus one (a uvarint, never 0x00), or
// 0x00 and the escaped string when it has no number.
func (ix *index) appendSub(dst []byte, sub string) []byte {
	if id, ok := ix.subID(sub); ok {
		return binary.AppendUvarint(dst, uint64(id)+1)
	}
	return appendEsc(append(dst, 0), sub)
}

// dictView resolves the numbers a reader finds in keys and values. It
// starts from the dictionaries as they were when the read began, and
// reloads them when it meets a number assigned since (apply publishes a
// number before the batch that uses it commits).
type dictView struct {
	ix          *index
	names, subs []string
}

func (ix *index) view() *dictView {
	return &dictView{ix: ix, names: ix.dict.Load().names, subs: ix.subs.Load().names}
}

func (d *dictView) name(id uint64) (string, bool) {
	if id >= uint64(len(d.names)) {
		d.names = d.ix.dict.Load().names
		if id >= uint64(len(d.names)) {
			return "", false
		}
	}
	return d.names[id], true
}

func (d *dictView) sub(id uint64) (string, bool) {
	if id >= uint64(len(d.subs)) {
		d.subs = d.ix.subs.Load().names
		if id >= uint64(len(d.subs)) {
			return "", false
		}
	}
	return d.subs[id], true
}

// readSub decodes a sub written by appendSub at the start of b.
func (d *dictView) readSub(b []byte) (sub string, rest []byte, ok bool) {
	if len(b) == 0 {
		return "", nil, false
	}
	if b[0] == 0 {
		s, rest, ok := readEsc(b[1:])
		return unsafe.String(unsafe.SliceData(s), len(s)), rest, ok
	}
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return "", nil, false
	}
	s, ok := d.sub(n - 1)
	return s, b[k:], ok
}

// curState is a resource's current version as the cur table records it.
type curState struct {
	seq     int64
	version int
	deleted bool
	hash    [32]byte
	lu      int64 // sort key of the version (meaningless when deleted)
}

func appendCur(dst []byte, c curState) []byte {
	dst = binary.AppendUvarint(dst, uint64(c.seq))
	dst = binary.AppendUvarint(dst, uint64(c.version))
	flags := byte(0)
	if c.deleted {
		flags = 1
	}
	dst = append(dst, flags)
	dst = append(dst, c.hash[:]...)
	return binary.BigEndian.AppendUint64(dst, sortable(c.lu))
}

func decodeCur(b []byte) (curState, bool) {
	var c curState
	seq, n := binary.Uvarint(b)
	if n <= 0 {
		return c, false
	}
	b = b[n:]
	ver, n := binary.Uvarint(b)
	if n <= 0 || len(b) != n+1+32+8 {
		return c, false
	}
	b = b[n:]
	c.seq, c.version, c.deleted = int64(seq), int(ver), b[0]&1 != 0
	copy(c.hash[:], b[1:33])
	c.lu = unsortable(binary.BigEndian.Uint64(b[33:]))
	return c, true
}

// current returns the cur record of a resource.
func (ix *index) current(c *collection, id string) (curState, bool, error) {
	if c == nil || !c.ids.mayContain(id) {
		return curState{}, false, nil
	}
	var kb [64]byte
	key := curKey(kb[:0], c.id, id)
	v, closer, err := ix.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return curState{}, false, nil
	}
	if err != nil {
		return curState{}, false, fmt.Errorf("sqlite: search index: %w", err)
	}
	defer closer.Close()
	cs, ok := decodeCur(v)
	if !ok {
		return curState{}, false, errors.New("sqlite: search index: malformed current-version record")
	}
	return cs, true, nil
}

// curReader looks up cur records through one iterator: cheaper than a Get
// each when a batch looks up many (a Get builds an iterator every time).
// It sees the index as of its first lookup that reaches Pebble (the
// iterator is opened then: a batch of new ids may never need it).
type curReader struct {
	ix *index
	it *pebble.Iterator
	kb []byte
}

func (ix *index) newCurReader() (*curReader, error) {
	return &curReader{ix: ix}, nil
}

func (r *curReader) close() {
	if r.it != nil {
		r.it.Close()
	}
}

func (r *curReader) get(c *collection, id string) (curState, bool, error) {
	if c == nil || !c.ids.mayContain(id) {
		return curState{}, false, nil
	}
	if r.it == nil {
		it, err := r.ix.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagCur}, UpperBound: []byte{tagOrder}})
		if err != nil {
			return curState{}, false, fmt.Errorf("sqlite: search index: %w", err)
		}
		r.it = it
	}
	r.kb = curKey(r.kb[:0], c.id, id)
	// The whole key is the prefix (default Split), so this seek consults
	// the bloom filters.
	if !r.it.SeekPrefixGE(r.kb) || !bytes.Equal(r.it.Key(), r.kb) {
		if err := r.it.Error(); err != nil {
			return curState{}, false, fmt.Errorf("sqlite: search index: %w", err)
		}
		return curState{}, false, nil
	}
	v, err := r.it.ValueAndErr()
	if err != nil {
		return curState{}, false, fmt.Errorf("sqlite: search index: %w", err)
	}
	cs, ok := decodeCur(v)
	if !ok {
		return curState{}, false, errors.New("sqlite: search index: malformed current-version record")
	}
	return cs, true, nil
}

// storedEntries returns the entries recorded for a live resource (copies).
func (ix *index) storedEntries(c *collection, lu int64, id string) ([]searchparam.Entry, error) {
	var kb [64]byte
	key := orderKey(kb[:0], c.id, lu, id)
	v, closer, err := ix.db.Get(key)
	if err != nil {
		return nil, fmt.Errorf("sqlite: search index: entries of a current version: %w", err)
	}
	defer closer.Close()
	_, n := binary.Uvarint(v)
	if n <= 0 {
		return nil, errors.New("sqlite: search index: malformed order record")
	}
	var arena []byte
	es, err := decodeEntries(v[n:], ix.view(), id, nil, &arena)
	if err != nil {
		return nil, err
	}
	for i := range es { // es aliases v, which closer releases
		es[i].Name = strings.Clone(es[i].Name)
		es[i].Value = strings.Clone(es[i].Value)
		es[i].Exact = strings.Clone(es[i].Exact)
	}
	return es, nil
}

// indexedVersion is one version to move into the index: the new current
// version of a resource, and what it replaces.
type indexedVersion struct {
	practice, rt, id string
	cur              curState
	entries          []searchparam.Entry // the version's entries; nil when deleted
	hadPrev          bool
	prev             curState
	prevEntries      []searchparam.Entry // prev's entries when prev is live
}

// tip identifies the version the watermark points at, so a folder that
// belongs to another database (or is ahead of this one) is detected.
type tip struct {
	seq      int64
	hash     [32]byte
	storedAt int64
}

func appendTip(dst []byte, t tip) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(t.seq))
	dst = append(dst, t.hash[:]...)
	return binary.BigEndian.AppendUint64(dst, uint64(t.storedAt))
}

func decodeTip(b []byte) (tip, bool) {
	var t tip
	if len(b) != 8+32+8 {
		return t, false
	}
	t.seq = int64(binary.BigEndian.Uint64(b))
	copy(t.hash[:], b[8:40])
	t.storedAt = int64(binary.BigEndian.Uint64(b[40:]))
	return t, true
}

// ops collects a batch's writes so they can be applied in key order:
// Pebble's memtable inserts sorted keys about twice as fast as scattered
// ones. Keys and values live in one buffer.
type ops struct {
	buf []byte
	kv  []kvOp
}

type kvOp struct {
	// pfx and pfx2 are the key's first 16 bytes, big-endian, zero-padded:
	// most comparisons end with them.
	pfx, pfx2  uint64
	k0, k1, v1 uint32 // key buf[k0:k1], value buf[k1:v1] (small, so the sort moves less)
	del        bool
}

func keyPrefix(k []byte) (uint64, uint64) {
	if len(k) >= 16 {
		return binary.BigEndian.Uint64(k), binary.BigEndian.Uint64(k[8:])
	}
	var b [16]byte
	copy(b[:], k)
	return binary.BigEndian.Uint64(b[:]), binary.BigEndian.Uint64(b[8:])
}

// key starts a key at the end of the buffer; the caller appends to the
// returned slice and passes it back to set or del.
func (o *ops) key() []byte { return o.buf }

func (o *ops) set(withKey []byte, k0 int, value []byte) {
	o.buf = withKey
	k1 := len(o.buf)
	o.buf = append(o.buf, value...)
	p1, p2 := keyPrefix(o.buf[k0:k1])
	o.kv = append(o.kv, kvOp{pfx: p1, pfx2: p2, k0: uint32(k0), k1: uint32(k1), v1: uint32(len(o.buf))})
}

func (o *ops) del(withKey []byte, k0 int) {
	o.buf = withKey
	p1, p2 := keyPrefix(o.buf[k0:])
	o.kv = append(o.kv, kvOp{pfx: p1, pfx2: p2, k0: uint32(k0), k1: uint32(len(o.buf)), v1: uint32(len(o.buf)), del: true})
}

// less orders operations by key, then by the order they were added in (keys
// are laid out in the buffer in that order, so k0 breaks ties), for keys
// that agree on their first w bytes and whose pfx and pfx2 hold their bytes
// [w, w+16) (sort moves that window along long shared prefixes).
func (o *ops) less(x, y *kvOp, w uint32) bool {
	if x.pfx != y.pfx {
		return x.pfx < y.pfx
	}
	if x.pfx2 != y.pfx2 {
		return x.pfx2 < y.pfx2
	}
	from := w
	if x.k1-x.k0 >= w+16 && y.k1-y.k0 >= w+16 {
		from = w + 16 // the window's bytes are equal
	}
	if c := bytes.Compare(o.buf[x.k0+from:x.k1], o.buf[y.k0+from:y.k1]); c != 0 {
		return c < 0
	}
	return x.k0 < y.k0
}

// sortSmall is the size under which a group is sorted by comparisons.
const sortSmall = 48

// sort sorts kv by key, then by the order the operations were added in: a
// most-significant-byte radix sort, because in a bulk spill most keys share
// long prefixes with many others (a collection and parameter, then a value:
// a token's code, a patient's reference), which comparisons read again and
// again; small groups are sorted by comparisons, written out for kvOp (a
// generic sort's call per comparison was most of a batch's sort).
func (o *ops) sort(kv []kvOp) {
	o.radix(kv, 0, 0)
}

// radix sorts kv, whose keys agree on their first d bytes, and whose pfx and
// pfx2 hold their bytes [w, w+16), zero-padded, with w <= d <= w+16. Keys
// that agree on all 16 bytes get the next 16 in pfx and pfx2 while they are
// sorted (one read of the buffer per 16 shared bytes, where comparisons
// would read them at each step), and their own back after.
func (o *ops) radix(kv []kvOp, d, w uint32) {
	for len(kv) > 1 {
		// Skip the bytes of the window every key has (and no key ends in).
		x0, y0 := kv[0].pfx, kv[0].pfx2
		var dx, dy uint64
		short := uint32(math.MaxUint32)
		for i := range kv {
			e := &kv[i]
			dx |= e.pfx ^ x0
			dy |= e.pfx2 ^ y0
			short = min(short, e.k1-e.k0)
		}
		same := uint32(16)
		if dx != 0 {
			same = uint32(bits.LeadingZeros64(dx)) / 8
		} else if dy != 0 {
			same = 8 + uint32(bits.LeadingZeros64(dy))/8
		}
		d = max(d, min(w+same, short))
		if d == w+16 {
			// Every key is at least d long: move the window on.
			for i := range kv {
				e := &kv[i]
				e.pfx, e.pfx2 = keyPrefix(o.buf[e.k0+d : e.k1])
			}
			o.radix(kv, d, d)
			if w == 0 { // the keys' own first 16 bytes, all equal
				for i := range kv {
					kv[i].pfx, kv[i].pfx2 = x0, y0
				}
			}
			return
		}
		if len(kv) <= sortSmall {
			o.quick(kv, w)
			return
		}
		// Bucket 0 holds the keys that end at d; bucket 1+c those whose
		// byte d is c.
		var count [257]uint32
		second, sh := d-w >= 8, 56-8*((d-w)%8) // byte d's word and shift
		bucket := func(e *kvOp) uint32 {
			if e.k1-e.k0 <= d {
				return 0
			}
			if second {
				return 1 + uint32(byte(e.pfx2>>sh))
			}
			return 1 + uint32(byte(e.pfx>>sh))
		}
		for i := range kv {
			count[bucket(&kv[i])]++
		}
		if count[0] == uint32(len(kv)) { // equal keys
			byAddition(kv)
			return
		}
		// Move each operation to its bucket (in place: each swap puts
		// one where it belongs). count becomes the buckets' ends.
		var next [257]uint32
		at := uint32(0)
		for b := range count {
			next[b] = at
			at += count[b]
			count[b] = at
		}
		for b := range count {
			for next[b] < count[b] {
				i := next[b]
				t := bucket(&kv[i])
				for t != uint32(b) {
					j := next[t]
					next[t]++
					kv[i], kv[j] = kv[j], kv[i]
					t = bucket(&kv[i])
				}
				next[b]++
			}
		}
		// Equal keys (bucket 0) keep the order they were added in; the
		// others go on with the next byte.
		byAddition(kv[:count[0]])
		for b := 1; b < len(count); b++ {
			if lo, hi := count[b-1], count[b]; hi-lo > 1 {
				o.radix(kv[lo:hi], d+1, w)
			}
		}
		return
	}
}

// byAddition sorts operations on one key by the order they were added in:
// by insertion, or for a key written many times in a batch by a heapsort.
func byAddition(kv []kvOp) {
	if len(kv) <= 16 {
		for i := 1; i < len(kv); i++ {
			for j := i; j > 0 && kv[j].k0 < kv[j-1].k0; j-- {
				kv[j], kv[j-1] = kv[j-1], kv[j]
			}
		}
		return
	}
	down := func(i, n int) {
		for {
			c := 2*i + 1
			if c >= n {
				return
			}
			if c+1 < n && kv[c].k0 < kv[c+1].k0 {
				c++
			}
			if kv[i].k0 >= kv[c].k0 {
				return
			}
			kv[i], kv[c] = kv[c], kv[i]
			i = c
		}
	}
	for i := len(kv)/2 - 1; i >= 0; i-- {
		down(i, len(kv))
	}
	for n := len(kv) - 1; n > 0; n-- {
		kv[0], kv[n] = kv[n], kv[0]
		down(0, n)
	}
}

// quick sorts a small group by comparisons (see radix for w): quicksort
// with a median of three, insertion sort for the shortest.
func (o *ops) quick(kv []kvOp, w uint32) {
	for len(kv) > 12 {
		// Median of three to kv[0], then partition around it.
		m := len(kv) / 2
		a, b, c := 0, m, len(kv)-1
		if o.less(&kv[b], &kv[a], w) {
			a, b = b, a
		}
		if o.less(&kv[c], &kv[b], w) {
			b = c
			if o.less(&kv[b], &kv[a], w) {
				b = a
			}
		}
		kv[0], kv[b] = kv[b], kv[0]
		p := &kv[0]
		i, j := 1, len(kv)-1
		for {
			for i <= j && o.less(&kv[i], p, w) {
				i++
			}
			for i <= j && o.less(p, &kv[j], w) {
				j--
			}
			if i >= j {
				break
			}
			kv[i], kv[j] = kv[j], kv[i]
			i++
			j--
		}
		kv[0], kv[j] = kv[j], kv[0]
		// Recurse into the smaller side, loop on the larger.
		if j < len(kv)-j-1 {
			o.quick(kv[:j], w)
			kv = kv[j+1:]
		} else {
			o.quick(kv[j+1:], w)
			kv = kv[:j]
		}
	}
	for i := 1; i < len(kv); i++ {
		for j := i; j > 0 && o.less(&kv[j], &kv[j-1], w); j-- {
			kv[j], kv[j-1] = kv[j-1], kv[j]
		}
	}
}

// apply adds the operations to b in key order; for equal keys the order
// they were added in is kept (a delete then a set leaves the set).
func (o *ops) apply(b *pebble.Batch) error {
	if len(o.buf) > math.MaxUint32 {
		return errors.New("sqlite: search index: batch too large")
	}
	o.sort(o.kv)
	for _, op := range o.kv {
		var err error
		if op.del {
			err = b.Delete(o.buf[op.k0:op.k1], nil)
		} else {
			err = b.Set(o.buf[op.k0:op.k1], o.buf[op.k1:op.v1], nil)
		}
		if err != nil {
			return fmt.Errorf("sqlite: search index: %w", err)
		}
	}
	return nil
}

// apply writes versions (in seq order) and the watermark in one atomic
// batch. Writer only (Store.writeMu, or Open before the store is shared).
// The postings of a collection in a bulk window go to the bulk runs instead
// (indexbulk.go); they are dropped again if the batch fails.
func (ix *index) apply(vs []indexedVersion, t tip) error {
	b := &ix.bulk
	b.mu.Lock()
	defer b.mu.Unlock()
	mark, markKV, ncolls := len(b.buf.buf), len(b.buf.kv), len(b.colls)
	if err := ix.applyLocked(vs, t); err != nil {
		b.buf.buf, b.buf.kv = b.buf.buf[:mark], b.buf.kv[:markKV]
		for _, c := range b.colls[ncolls:] {
			c.bulkDeferred.Store(false) // its meta key was not committed
		}
		b.colls = b.colls[:ncolls]
		return err
	}
	if b.size() >= b.limit {
		return ix.spillBulk()
	}
	return nil
}

func (ix *index) applyLocked(vs []indexedVersion, t tip) error {
	type delta struct {
		c        *collection
		live     int64
		deferred bool // its postings go to the bulk runs
		newBulk  bool // this batch defers it first: record its meta key
	}
	var touched []delta
	bk := &ix.bulk
	deltaOf := func(c *collection) *delta {
		for i := range touched {
			if touched[i].c == c {
				return &touched[i]
			}
		}
		d := delta{c: c, deferred: bk.defers(c)}
		if d.deferred && !c.bulkDeferred.Load() {
			c.bulkDeferred.Store(true)
			bk.colls = append(bk.colls, c)
			d.newBulk = true
		}
		touched = append(touched, d)
		return &touched[len(touched)-1]
	}
	o := &ix.scratch
	o.buf, o.kv = o.buf[:0], o.kv[:0]
	defer func() {
		if cap(o.buf) > 16<<20 { // do not keep a huge batch's buffers
			*o = ops{}
		}
	}()
	var val []byte
	var err error
	for i := range vs {
		v := &vs[i]
		c := ix.collFor(v.practice, v.rt)
		d := deltaOf(c)
		prevLive := v.hadPrev && !v.prev.deleted
		if prevLive {
			k0 := len(o.buf)
			o.del(orderKey(o.key(), c.id, v.prev.lu, v.id), k0)
			if ix.codes, err = ix.codeEntries(ix.codes[:0], v.prevEntries); err != nil {
				return err
			}
			for k := range v.prevEntries {
				e := &v.prevEntries[k]
				if !c.posted(e) {
					continue
				}
				k0 := len(o.buf)
				key, err := ix.postingKey(o.key(), c, e, &ix.codes[k], v.prev.lu, v.id)
				if err != nil {
					return err
				}
				o.del(key, k0)
				if d.deferred { // the posting may be in a run
					bk.delCopy(key[k0:])
				}
			}
			d.live--
		}
		if !v.cur.deleted {
			if ix.codes, err = ix.codeEntries(ix.codes[:0], v.entries); err != nil {
				return err
			}
			val = binary.AppendUvarint(val[:0], uint64(v.cur.seq))
			val = ix.appendEntries(val, v.entries, ix.codes, v.id)
			k0 := len(o.buf)
			o.set(orderKey(o.key(), c.id, v.cur.lu, v.id), k0, val)
			val = binary.AppendUvarint(val[:0], uint64(v.cur.seq))
			for k := range v.entries {
				e := &v.entries[k]
				if e.Type == searchparam.Date {
					ix.noteDate(c, e, ix.codes[k].name)
				}
				if !c.posted(e) {
					continue
				}
				if d.deferred {
					k0 := len(bk.buf.buf)
					key, err := ix.postingKey(bk.buf.key(), c, e, &ix.codes[k], v.cur.lu, v.id)
					if err != nil {
						return err
					}
					bk.buf.set(key, k0, val)
					continue
				}
				k0 := len(o.buf)
				key, err := ix.postingKey(o.key(), c, e, &ix.codes[k], v.cur.lu, v.id)
				if err != nil {
					return err
				}
				o.set(key, k0, val)
			}
			d.live++
		}
		k0 := len(o.buf)
		o.set(curKey(o.key(), c.id, v.id), k0, appendCur(val[:0], v.cur))
		c.ids.add(v.id) // before the commit: a reader that misses it finds it queued
	}
	// Metadata: new collections and names, counts, date statistics, and the
	// watermark, all in the same batch as the data they describe.
	dict, subs := ix.dict.Load(), ix.subs.Load()
	for id := ix.dictPersisted; id < len(dict.names); id++ {
		k0 := len(o.buf)
		o.set(appendEsc(append(o.key(), tagMeta, metaName), dict.names[id]), k0, binary.BigEndian.AppendUint16(val[:0], uint16(id)))
	}
	for id := ix.subsPersisted; id < len(subs.names); id++ {
		k0 := len(o.buf)
		o.set(appendEsc(append(o.key(), tagMeta, metaSub), subs.names[id]), k0, binary.BigEndian.AppendUint16(val[:0], uint16(id)))
	}
	var written []*dateStat
	for _, d := range touched {
		c := d.c
		if !c.persisted {
			k0 := len(o.buf)
			o.set(appendEsc(appendEsc(append(o.key(), tagMeta, metaColl), c.practice), c.rt), k0, binary.BigEndian.AppendUint32(val[:0], c.id))
		}
		if d.newBulk {
			k0 := len(o.buf)
			o.set(binary.BigEndian.AppendUint32(append(o.key(), tagMeta, metaBulk), c.id), k0, nil)
		}
		k0 := len(o.buf)
		o.set(binary.BigEndian.AppendUint32(append(o.key(), tagMeta, metaLive), c.id), k0, binary.BigEndian.AppendUint64(val[:0], uint64(c.live.Load()+d.live)))
		c.statMu.RLock()
		for name, st := range c.stats {
			if !st.dirty {
				continue
			}
			inv := byte(0)
			if st.inverted {
				inv = 1
			}
			k0 := len(o.buf)
			o.set(binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint32(append(o.key(), tagMeta, metaStat), c.id), name), k0,
				append(binary.BigEndian.AppendUint64(val[:0], uint64(st.width)), inv))
			written = append(written, st)
		}
		c.statMu.RUnlock()
	}
	k0 := len(o.buf)
	o.set(append(o.key(), tagMeta, metaWatermark), k0, appendTip(val[:0], t))
	b := ix.db.NewBatchWithSize(len(o.buf) + 16*len(o.kv))
	defer b.Close()
	if err := o.apply(b); err != nil {
		return err
	}
	if err = b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("sqlite: search index: commit: %w", err)
	}
	ix.dictPersisted = len(dict.names)
	ix.subsPersisted = len(subs.names)
	for _, st := range written {
		st.dirty = false // writer only; readers never look at dirty
	}
	for _, d := range touched {
		d.c.persisted = true
		d.c.live.Add(d.live)
		d.c.gen.Add(1)
	}
	ix.watermark.Store(t.seq)
	ix.commits.Add(1)
	return nil
}

// noteDate widens the collection's statistics for a date entry. It runs
// before the batch commits: statistics that are too wide are harmless, too
// narrow would hide matches.
func (ix *index) noteDate(c *collection, e *searchparam.Entry, id uint16) {
	lo, hi := e.Low.Unix(), e.High.Unix()
	inverted := e.High.Before(e.Low)
	width := int64(0)
	if !inverted {
		width = clampSub(hi, lo) + 1
	}
	c.statMu.RLock()
	st := c.stats[id]
	ok := st != nil && st.width >= width && (st.inverted || !inverted)
	c.statMu.RUnlock()
	if ok {
		return
	}
	c.statMu.Lock()
	if st = c.stats[id]; st == nil {
		st = &dateStat{}
		c.stats[id] = st
	}
	st.width = max(st.width, width)
	st.inverted = st.inverted || inverted
	st.dirty = true
	c.statMu.Unlock()
}

// dateStatOf returns a collection's statistics for a date parameter.
func (c *collection) dateStatOf(name uint16) (width int64, inverted bool) {
	c.statMu.RLock()
	defer c.statMu.RUnlock()
	if st := c.stats[name]; st != nil {
		return st.width, st.inverted
	}
	return 0, false
}

func clampSub(a, b int64) int64 {
	d := a - b
	if (b < 0 && d < a) || (b > 0 && d > a) {
		if b < 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return d
}

// ---- keys

// sortable maps an int64 to a uint64 with the same order.
func sortable(v int64) uint64   { return uint64(v) ^ (1 << 63) }
func unsortable(u uint64) int64 { return int64(u ^ (1 << 63)) }

// appendEsc appends s so that byte order of the encodings is the order of
// the strings, and an encoding is never a prefix of another: 0x00 becomes
// 0x00 0xff, and 0x00 0x01 ends the string.
func appendEsc(dst []byte, s string) []byte {
	dst = appendEscPrefix(dst, s)
	return append(dst, 0, 1)
}

// appendEscPrefix appends s escaped but unterminated: every encoding of a
// string starting with s starts with it.
func appendEscPrefix(dst []byte, s string) []byte {
	for {
		i := strings.IndexByte(s, 0)
		if i < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:i]...)
		dst = append(dst, 0, 0xff)
		s = s[i+1:]
	}
}

// readEsc decodes an escaped string at the start of b. Without escapes the
// result aliases b.
func readEsc(b []byte) (s, rest []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 || i+1 >= len(b) {
		return nil, nil, false
	}
	if b[i+1] == 1 {
		return b[:i], b[i+2:], true
	}
	var out []byte
	for {
		if i < 0 || i+1 >= len(b) {
			return nil, nil, false
		}
		out = append(out, b[:i]...)
		switch b[i+1] {
		case 1:
			return out, b[i+2:], true
		case 0xff:
			out = append(out, 0)
			b = b[i+2:]
			i = bytes.IndexByte(b, 0)
		default:
			return nil, nil, false
		}
	}
}

// successor returns the smallest key greater than every key starting with p.
func successor(p []byte) []byte {
	out := bytes.Clone(p)
	for i := len(out) - 1; i >= 0; i-- {
		if out[i] < 0xff {
			out[i]++
			return out[:i+1]
		}
	}
	return nil // no upper bound
}

func collPrefix(dst []byte, tag byte, coll uint32) []byte {
	return binary.AppendUvarint(append(dst, tag), uint64(coll))
}

func curKey(dst []byte, coll uint32, id string) []byte {
	return appendEsc(collPrefix(dst, tagCur, coll), id)
}

func orderKey(dst []byte, coll uint32, lu int64, id string) []byte {
	return appendEsc(binary.BigEndian.AppendUint64(collPrefix(dst, tagOrder, coll), sortable(lu)), id)
}

func postingPrefix(dst []byte, coll uint32, name uint16) []byte {
	return binary.AppendUvarint(collPrefix(dst, tagPosting, coll), uint64(name))
}

// appendTime appends t as 12 sortable bytes (unix seconds, nanoseconds).
func appendTime(dst []byte, t time.Time) []byte {
	dst = binary.BigEndian.AppendUint64(dst, sortable(t.Unix()))
	return binary.BigEndian.AppendUint32(dst, uint32(t.Nanosecond()))
}

func readTime(b []byte) time.Time {
	return time.Unix(unsortable(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint32(b[8:]))).UTC()
}

// postingKey builds the posting of one entry of resource id; code is the
// entry's (codeEntries).
func (ix *index) postingKey(dst []byte, c *collection, e *searchparam.Entry, code *entryCode, lu int64, id string) ([]byte, error) {
	dst = postingPrefix(dst, c.id, code.name)
	switch e.Type {
	case searchparam.String:
		dst = appendEsc(appendEsc(dst, e.Value), e.Exact)
	case searchparam.Token, searchparam.Reference:
		// The code (token) or target id (reference) is the value; the
		// system or type the sub. A value without the separator (none is
		// extracted so) is all sub.
		dst = appendEsc(dst, code.rest)
	case searchparam.Date:
		dst = appendTime(appendTime(dst, e.Low), e.High)
	default:
		return nil, fmt.Errorf("sqlite: search index: parameter type %s is not indexed", e.Type)
	}
	dst = appendEsc(binary.BigEndian.AppendUint64(dst, sortable(lu)), id)
	switch {
	case e.Type != searchparam.Token && e.Type != searchparam.Reference:
	case code.sub >= 0:
		dst = binary.AppendUvarint(dst, uint64(code.sub)+1)
	case code.sub == subNone:
		dst = ix.appendSub(dst, e.Value)
	default:
		dst = appendEsc(append(dst, 0), code.subStr)
	}
	return dst, nil
}

// entryCode is what apply needs of an entry, looked up once: its name's
// number and, for a token or reference, the value split into sub and rest
// and the sub's number.
type entryCode struct {
	name   uint16
	sub    int32 // the sub's number, subLiteral (spelled out) or subNone (no separator)
	subStr string
	rest   string
}

const (
	subLiteral = -1
	subNone    = -2
)

func (ix *index) codeEntries(dst []entryCode, es []searchparam.Entry) ([]entryCode, error) {
	for i := range es {
		e := &es[i]
		name, err := ix.nameID(e.Name)
		if err != nil {
			return nil, err
		}
		switch e.Type {
		case searchparam.String, searchparam.Token, searchparam.Reference, searchparam.Date:
		default:
			return nil, fmt.Errorf("sqlite: search index: parameter type %s is not indexed", e.Type)
		}
		c := entryCode{name: name, sub: subNone}
		if sep := subSep(e.Type); sep != 0 {
			if i := strings.IndexByte(e.Value, sep); i >= 0 {
				c.subStr, c.rest, c.sub = e.Value[:i], e.Value[i+1:], subLiteral
				if id, ok := ix.subID(c.subStr); ok {
					c.sub = int32(id)
				}
			}
		}
		dst = append(dst, c)
	}
	return dst, nil
}

// ---- entries

// Entry encoding (the value of an order key, after the seq):
//
//	count<<1 | hasID (uvarint), then per entry: name number (uvarint), a type
//	byte, and the value:
//	  string     value (length-prefixed), then exact text unless the type
//	             byte has sameExact (exact text equals the folded value)
//	  token      with splitSub: system as a sub (appendSub), code; else the
//	  reference  whole value. A reference splits into target type and the
//	             rest the same way.
//	  date       low and high as varint seconds and uvarint nanoseconds
//
// The _id entry ("|" + id) is not stored: hasID says it was there, and the
// decoder makes it from the key's id.
const (
	sameExact = 0x80
	splitSub  = 0x40
	typeMask  = 0x3f
)

// subSep is the separator between a token's system and code ("|") or a
// reference's type and target ("/"); 0 for other types.
func subSep(t searchparam.Type) byte {
	switch t {
	case searchparam.Token:
		return '|'
	case searchparam.Reference:
		return '/'
	}
	return 0
}

func (ix *index) appendEntries(dst []byte, es []searchparam.Entry, codes []entryCode, id string) []byte {
	hasID := -1
	for i := range es {
		if es[i].Name == "_id" && es[i].Type == searchparam.Token && len(es[i].Value) == len(id)+1 &&
			es[i].Value[0] == '|' && es[i].Value[1:] == id {
			hasID = i
			break
		}
	}
	n := uint64(len(es)) << 1
	if hasID >= 0 {
		n = uint64(len(es)-1)<<1 | 1
	}
	dst = binary.AppendUvarint(dst, n)
	for i := range es {
		if i == hasID {
			continue
		}
		e, c := &es[i], &codes[i]
		dst = binary.AppendUvarint(dst, uint64(c.name))
		switch e.Type {
		case searchparam.String:
			if e.Exact == e.Value {
				dst = append(dst, byte(e.Type)|sameExact)
				dst = appendLenString(dst, e.Value)
			} else {
				dst = append(dst, byte(e.Type))
				dst = appendLenString(appendLenString(dst, e.Value), e.Exact)
			}
		case searchparam.Token, searchparam.Reference:
			switch {
			case c.sub >= 0:
				dst = append(dst, byte(e.Type)|splitSub)
				dst = binary.AppendUvarint(dst, uint64(c.sub)+1)
				dst = appendLenString(dst, c.rest)
			case c.sub == subLiteral:
				dst = append(dst, byte(e.Type)|splitSub)
				dst = appendEsc(append(dst, 0), c.subStr)
				dst = appendLenString(dst, c.rest)
			default:
				dst = append(dst, byte(e.Type))
				dst = appendLenString(dst, e.Value)
			}
		case searchparam.Date:
			dst = append(dst, byte(e.Type))
			dst = binary.AppendVarint(dst, e.Low.Unix())
			dst = binary.AppendUvarint(dst, uint64(e.Low.Nanosecond()))
			dst = binary.AppendVarint(dst, e.High.Unix())
			dst = binary.AppendUvarint(dst, uint64(e.High.Nanosecond()))
		}
	}
	return dst
}

func appendLenString(dst []byte, s string) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

var errBadEntries = errors.New("sqlite: search index: malformed entries")

// decodeEntries decodes the entries of resource id into buf (reused). The
// strings alias b, the dictionaries and *arena (reused: it is overwritten by
// the next call), so they are valid only until then and as long as b is.
func decodeEntries(b []byte, d *dictView, id string, buf []searchparam.Entry, arena *[]byte) ([]searchparam.Entry, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n>>1 > uint64(len(b)) {
		return nil, errBadEntries
	}
	b = b[k:]
	out := buf[:0]
	a := (*arena)[:0]
	// joined returns x + sep + y as a string in the arena. Earlier strings
	// stay valid when the arena grows: they keep the old array.
	joined := func(x string, sep byte, y string) string {
		start := len(a)
		a = append(append(append(a, x...), sep), y...)
		s := a[start:]
		return unsafe.String(unsafe.SliceData(s), len(s))
	}
	str := func() (string, bool) {
		l, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < l {
			return "", false
		}
		s := b[k : k+int(l)]
		b = b[k+int(l):]
		return unsafe.String(unsafe.SliceData(s), len(s)), true
	}
	num := func() (int64, bool) {
		v, k := binary.Varint(b)
		if k <= 0 {
			return 0, false
		}
		b = b[k:]
		return v, true
	}
	unum := func() (uint64, bool) {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return 0, false
		}
		b = b[k:]
		return v, true
	}
	for range n >> 1 {
		nid, ok := unum()
		if !ok || len(b) == 0 {
			return nil, errBadEntries
		}
		name, ok := d.name(nid)
		if !ok {
			return nil, errBadEntries
		}
		e := searchparam.Entry{Name: name, Type: searchparam.Type(b[0] & typeMask)}
		flags := b[0] &^ typeMask
		b = b[1:]
		switch e.Type {
		case searchparam.String:
			if e.Value, ok = str(); !ok {
				return nil, errBadEntries
			}
			e.Exact = e.Value
			if flags&sameExact == 0 {
				if e.Exact, ok = str(); !ok {
					return nil, errBadEntries
				}
			}
		case searchparam.Token, searchparam.Reference:
			if flags&splitSub == 0 {
				if e.Value, ok = str(); !ok {
					return nil, errBadEntries
				}
				break
			}
			var sub string
			if sub, b, ok = d.readSub(b); !ok {
				return nil, errBadEntries
			}
			rest, ok := str()
			if !ok {
				return nil, errBadEntries
			}
			e.Value = joined(sub, subSep(e.Type), rest)
		case searchparam.Date:
			ls, ok1 := num()
			ln, ok2 := unum()
			hs, ok3 := num()
			hn, ok4 := unum()
			if !ok1 || !ok2 || !ok3 || !ok4 {
				return nil, errBadEntries
			}
			e.Low, e.High = time.Unix(ls, int64(ln)).UTC(), time.Unix(hs, int64(hn)).UTC()
		default:
			return nil, errBadEntries
		}
		out = append(out, e)
	}
	if n&1 != 0 {
		out = append(out, searchparam.Entry{Name: "_id", Type: searchparam.Token, Value: joined("", '|', id)})
	}
	*arena = a
	return out, nil
}
