package sqlite

import (
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
)

// idFilter answers "is this id certainly not in the collection?" without
// reading the index. A bulk load into a new collection looks up the current
// version of every resource it writes, and every lookup misses; in Pebble a
// miss still consults each memtable and every L0 file's bloom filter (tens
// of them while a bulk load runs), about a fifth of the index's CPU. A
// collection created since Open (so every id it holds went through apply in
// this process) gets a filter of its ids; a negative answer skips the
// lookup, a positive one (a hit, or about 2% false positives) does it.
//
// The filter is a list of blocked Bloom filters (one 64-byte cache line
// per id, eight bits set), each twice the capacity of the one before, so it
// grows with the collection: a part has 16 bits per id of its capacity (12
// rounded up to a power of two of lines), the list 16 to 32 bits per id
// held. A lookup checks one line in each part; the false positive rates add
// up over the parts (0.5% at 400,000 ids, TestIDFilter). Past filterMaxBits for one
// collection, or filterBudgetBits for the whole index, the collection's
// filter is dropped and its lookups go to Pebble as before, so the memory
// stays bounded whatever the store holds.
//
// Ids are added by apply (the indexer) before the batch commits, and read
// by writers and readers at any time: the words are atomic, and the list
// only grows, published through an atomic pointer.
type idFilter struct {
	mu    sync.Mutex                    // serializes adds (apply is the only writer, but drop may race with it)
	parts atomic.Pointer[[]*filterPart] // nil after drop
	added int                           // ids in the last part; guarded by mu
}

type filterPart struct {
	words []atomic.Uint64
	lines uint64 // len(words)/8 (a power of two)
	cap   int    // ids it is sized for
}

const (
	filterFirstIDs   = 1 << 12 // the first part's capacity
	filterBitsPerID  = 12
	filterBudgetBits = 1 << 28 // 32 MiB for all collections
)

// filterMaxBits bounds one collection's filter: 16 MiB, room for about 8
// million ids (a variable so tests can lower it).
var filterMaxBits = 1 << 27

var filterSeed = maphash.MakeSeed()

// filterBits counts the bits held by every filter of the process, so the
// budget holds across stores too (tests open many).
var filterBits atomic.Int64

func newFilterPart(ids int) *filterPart {
	lines := 1 << bits.Len(uint(ids*filterBitsPerID/512-1)) // a power of two
	return &filterPart{words: make([]atomic.Uint64, 8*lines), lines: uint64(lines), cap: ids}
}

// newIDFilter returns an empty filter, or nil when the budget is spent.
func newIDFilter() *idFilter {
	p := newFilterPart(filterFirstIDs)
	if filterBits.Add(int64(len(p.words))*64) > filterBudgetBits {
		filterBits.Add(-int64(len(p.words)) * 64)
		return nil
	}
	f := &idFilter{}
	f.parts.Store(&[]*filterPart{p})
	return f
}

// filterProbe is where an id's bits are: a line (from the hash's low bits,
// masked per part) and eight bit positions in it.
type filterProbe struct {
	h   uint64
	pos [8]uint16 // 0..511
}

func probe(id string) filterProbe {
	h := maphash.String(filterSeed, id)
	p := filterProbe{h: h}
	x := h>>32 | h<<32
	x *= 0x9e3779b97f4a7c15 // the positions use bits the line index does not
	for j := range p.pos {
		p.pos[j] = uint16(x>>(64-9)) & 511
		x *= 0x9e3779b97f4a7c15
	}
	return p
}

func (p *filterPart) has(pr *filterProbe) bool {
	line := p.words[(pr.h&(p.lines-1))*8:][:8]
	for _, pos := range pr.pos {
		if line[pos>>6].Load()&(1<<(pos&63)) == 0 {
			return false
		}
	}
	return true
}

func (p *filterPart) set(pr *filterProbe) {
	line := p.words[(pr.h&(p.lines-1))*8:][:8]
	for _, pos := range pr.pos {
		line[pos>>6].Or(1 << (pos & 63))
	}
}

// mayContain reports whether id may be in the collection; false is certain.
// A nil filter (none, or dropped) may contain anything.
func (f *idFilter) mayContain(id string) bool {
	if f == nil {
		return true
	}
	ps := f.parts.Load()
	if ps == nil {
		return true
	}
	pr := probe(id)
	for i := len(*ps) - 1; i >= 0; i-- { // the newest part holds most ids
		if (*ps)[i].has(&pr) {
			return true
		}
	}
	return false
}

// add records id; when the filter would outgrow its bounds it is dropped
// (every later mayContain answers true).
func (f *idFilter) add(id string) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ps := f.parts.Load()
	if ps == nil {
		return
	}
	last := (*ps)[len(*ps)-1]
	if f.added >= last.cap {
		held := 0
		for _, p := range *ps {
			held += len(p.words) * 64
		}
		next := newFilterPart(2 * last.cap)
		grow := int64(len(next.words)) * 64
		if held+int(grow) > filterMaxBits || filterBits.Add(grow) > filterBudgetBits {
			if held+int(grow) <= filterMaxBits {
				filterBits.Add(-grow)
			}
			f.dropLocked()
			return
		}
		nps := append((*ps)[:len(*ps):len(*ps)], next)
		f.parts.Store(&nps)
		last, f.added = next, 0
	}
	pr := probe(id)
	last.set(&pr)
	f.added++
}

// drop releases the filter; the collection's lookups go to the index.
func (f *idFilter) drop() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropLocked()
}

func (f *idFilter) dropLocked() {
	ps := f.parts.Swap(nil)
	if ps == nil {
		return
	}
	for _, p := range *ps {
		filterBits.Add(-int64(len(p.words)) * 64)
	}
}
