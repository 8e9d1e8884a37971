package sqlite

import (
	"sync"

	"github.com/mediflow/mediflow/internal/store"
)

// versionCache keeps recently read resource versions in memory, keyed by
// seq, within a byte budget. A row of resource_versions never changes once
// written (a new version gets a new seq), so entries never go stale and need
// no invalidation; the cache only decides what to keep.
//
// Eviction is CLOCK (second chance): a hit sets the entry's reference bit;
// to make room the hand sweeps the ring, clearing set bits and evicting the
// first entry found clear. Entries larger than maxEntry are not kept, so one
// big resource cannot flush the cache.
//
// Bodies held here are never handed out: get copies them, so a caller that
// modifies a returned Body cannot change what the next caller reads.
type versionCache struct {
	budget   int64 // bytes
	maxEntry int64

	mu    sync.Mutex
	used  int64
	index map[int64]int32 // seq -> position in ring
	ring  []cacheEntry
	free  []int32 // empty positions in ring
	hand  int
}

type cacheEntry struct {
	res  store.Resource
	size int64
	ref  bool
	used bool
}

// entryOverhead approximates the bytes an entry costs beyond its strings and
// body: the ring slot, the map entry and the slice headers.
const entryOverhead = 256

// newVersionCache returns a cache holding at most budget bytes; nil when
// budget <= 0 (no caching).
func newVersionCache(budget int64) *versionCache {
	if budget <= 0 {
		return nil
	}
	return &versionCache{budget: budget, maxEntry: max(budget/64, 4<<10), index: map[int64]int32{}}
}

func sizeOf(r *store.Resource) int64 {
	return int64(len(r.Body)+len(r.Practice)+len(r.ResourceType)+len(r.ID)+len(r.SourceVersionID)+
		len(r.ContentHash)+len(r.Connection)) + entryOverhead
}

// get returns the cached version seq. Its Body still belongs to the cache:
// callers copy it before handing it out (see copyBodies).
func (c *versionCache) get(seq int64) (store.Resource, bool) {
	if c == nil {
		return store.Resource{}, false
	}
	c.mu.Lock()
	i, ok := c.index[seq]
	if !ok {
		c.mu.Unlock()
		return store.Resource{}, false
	}
	e := &c.ring[i]
	e.ref = true
	r := e.res
	c.mu.Unlock()
	return r, true
}

// put keeps a copy of r (the caller keeps r and its Body).
func (c *versionCache) put(r *store.Resource) {
	if c == nil {
		return
	}
	size := sizeOf(r)
	if size > c.maxEntry {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.index[r.Seq]; ok {
		return
	}
	for c.used+size > c.budget && len(c.index) > 0 {
		c.evictOne()
	}
	e := cacheEntry{res: *r, size: size, used: true}
	e.res.Body = append([]byte(nil), r.Body...)
	var pos int32
	if n := len(c.free); n > 0 {
		pos = c.free[n-1]
		c.free = c.free[:n-1]
		c.ring[pos] = e
	} else {
		pos = int32(len(c.ring))
		c.ring = append(c.ring, e)
	}
	c.index[r.Seq] = pos
	c.used += size
}

// evictOne removes one entry, giving referenced entries a second chance.
// c.mu is held and the cache is not empty.
func (c *versionCache) evictOne() {
	for {
		if c.hand >= len(c.ring) {
			c.hand = 0
		}
		e := &c.ring[c.hand]
		pos := c.hand
		c.hand++
		if !e.used {
			continue
		}
		if e.ref {
			e.ref = false
			continue
		}
		delete(c.index, e.res.Seq)
		c.used -= e.size
		*e = cacheEntry{}
		c.free = append(c.free, int32(pos))
		return
	}
}

// stats reports the number of entries and the bytes they are accounted at.
func (c *versionCache) stats() (entries int, bytes int64) {
	if c == nil {
		return 0, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.index), c.used
}

// copyBodies gives every resource in rs a Body of its own, all backed by one
// allocation.
func copyBodies(rs []store.Resource) {
	n := 0
	for i := range rs {
		n += len(rs[i].Body)
	}
	slab := make([]byte, 0, n)
	for i := range rs {
		start := len(slab)
		slab = append(slab, rs[i].Body...)
		rs[i].Body = slab[start:len(slab):len(slab)]
	}
}
