package searchparam

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"time"
)

// Index is an in-memory inverted index over the search entries of one
// collection of resources (typically one resource type of one practice). It
// answers compiled criteria with the same semantics as Match, orders hits by
// (lastUpdated, id) and pages with keyset positions.
//
// Callers pass a resource's previous entries when they replace or remove it
// (they have the old body); the index keeps no per-resource copy of entries,
// which keeps it small. It is safe for concurrent use.
type Index struct {
	mu     sync.RWMutex
	docs   []idoc
	byID   map[string]uint32
	alive  int
	params map[string]*pindex
	order  keyList[orderEntry] // live documents by (lastUpdated, id)
	// maxWidth is the widest lastUpdated range seen, to bound range scans.
	maxWidth int64
}

// indexed reports whether an entry goes into the parameter maps; _id and
// _lastUpdated are answered from the document table and the order list.
func indexed(e *Entry) bool { return e.Name != "_id" && e.Name != "_lastUpdated" }

type idoc struct {
	id    string
	lu    int64 // lastUpdated range, the sort key being lu
	luHi  int64
	alive bool
}

// ords is a sorted list of document ordinals.
type ords []uint32

func (l *ords) add(o uint32) {
	n := len(*l)
	if n == 0 || (*l)[n-1] < o {
		*l = append(*l, o)
		return
	}
	i, found := slices.BinarySearch(*l, o)
	if !found {
		*l = slices.Insert(*l, i, o)
	}
}

func (l *ords) remove(o uint32) {
	if i, found := slices.BinarySearch(*l, o); found {
		*l = slices.Delete(*l, i, i+1)
	}
}

// posting holds the documents of one key, split by variant: for strings the
// exact text, for tokens the system, for references the resource type. Most
// keys have a single variant, kept inline.
type posting struct {
	sub  string
	docs ords
	more []variant
}

type variant struct {
	sub  string
	docs ords
}

// variant returns the document list of sub, creating it when create is set.
func (p *posting) variant(sub string, create bool) *ords {
	if p.sub == sub && (len(p.docs) > 0 || len(p.more) == 0) {
		return &p.docs
	}
	for i := range p.more {
		if p.more[i].sub == sub {
			return &p.more[i].docs
		}
	}
	if !create {
		return nil
	}
	if len(p.docs) == 0 {
		p.sub = sub
		return &p.docs
	}
	p.more = append(p.more, variant{sub: sub})
	return &p.more[len(p.more)-1].docs
}

// empty reports whether no document is left; it compacts empty variants.
func (p *posting) empty() bool {
	more := p.more[:0]
	for _, v := range p.more {
		if len(v.docs) > 0 {
			more = append(more, v)
		}
	}
	p.more = more
	if len(p.docs) == 0 && len(p.more) > 0 {
		p.sub, p.docs = p.more[0].sub, p.more[0].docs
		p.more = p.more[1:]
	}
	return len(p.docs) == 0
}

// each calls fn for every variant.
func (p *posting) each(fn func(sub string, docs ords)) {
	if len(p.docs) > 0 {
		fn(p.sub, p.docs)
	}
	for _, v := range p.more {
		if len(v.docs) > 0 {
			fn(v.sub, v.docs)
		}
	}
}

// dateKey is a date entry's range in unix nanoseconds (clamped).
type dateKey struct{ lo, hi int64 }

// dateRef is a dateKey in the sorted lists, with its documents, so a range
// scan reaches the postings without a map lookup per key. Lists compare
// only the key.
type dateRef struct {
	dateKey
	docs *ords
}

// pindex indexes one parameter.
type pindex struct {
	name    string
	typ     Type
	keys    map[string]*posting // String: folded value; Token: code; Reference: id
	dates   map[dateKey]*ords   // Date ranges
	present ords                // documents with at least one entry
	sorted  keyList[string]     // String keys, for prefix and substring search
	byLo    keyList[dateRef]    // Date, sorted by lo
	byHi    keyList[dateRef]    // Date, sorted by hi
	// inverted counts the date keys with lo > hi (from malformed sources,
	// e.g. a Period ending before it starts). While there are none, range
	// scans can assume lo <= hi and stop early.
	inverted int
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	ix := &Index{byID: map[string]uint32{}, params: map[string]*pindex{}}
	ix.order.cmp = func(a, b orderEntry) int {
		if a.lu != b.lu {
			return cmp.Compare(a.lu, b.lu)
		}
		return strings.Compare(ix.docs[a.ord].id, ix.docs[b.ord].id)
	}
	return ix
}

// Len returns the number of indexed resources.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.alive
}

// UnixNanos converts t to the index's sort key, clamping to the int64 range.
func UnixNanos(t time.Time) int64 {
	switch {
	case t.Year() < 1678:
		return math.MinInt64
	case t.Year() > 2261:
		return math.MaxInt64
	}
	return t.UnixNano()
}

// slot is where one entry lives in the index.
type slot struct {
	param string
	typ   Type
	key   string
	sub   string
	dk    dateKey
}

func slotOf(e *Entry) slot {
	s := slot{param: e.Name, typ: e.Type}
	switch e.Type {
	case String:
		s.key, s.sub = e.Value, e.Exact
	case Token:
		s.sub, s.key, _ = strings.Cut(e.Value, "|")
	case Reference:
		s.sub, s.key, _ = strings.Cut(e.Value, "/")
	case Date:
		s.dk = dateKey{UnixNanos(e.Low), UnixNanos(e.High)}
	}
	return s
}

func (ix *Index) param(name string, typ Type) *pindex {
	p := ix.params[name]
	if p == nil {
		p = &pindex{name: name, typ: typ, keys: map[string]*posting{}, dates: map[dateKey]*ords{}}
		p.sorted.cmp = strings.Compare
		p.byLo.cmp = func(a, b dateRef) int { return cmp.Or(cmp.Compare(a.lo, b.lo), cmp.Compare(a.hi, b.hi)) }
		p.byHi.cmp = func(a, b dateRef) int { return cmp.Or(cmp.Compare(a.hi, b.hi), cmp.Compare(a.lo, b.lo)) }
		ix.params[name] = p
	}
	return p
}

func (p *pindex) add(s *slot, o uint32) {
	if s.typ == Date {
		l := p.dates[s.dk]
		if l == nil {
			l = new(ords)
			p.dates[s.dk] = l
			if s.dk.lo > s.dk.hi {
				p.inverted++
			}
			p.byLo.add(dateRef{s.dk, l})
			p.byHi.add(dateRef{s.dk, l})
		}
		l.add(o)
		return
	}
	pl := p.keys[s.key]
	if pl == nil {
		// Entry strings share one buffer per resource; clone what the
		// index keeps so it does not pin those buffers.
		key := strings.Clone(s.key)
		pl = &posting{sub: strings.Clone(s.sub)}
		p.keys[key] = pl
		if s.typ == String {
			p.sorted.add(key)
		}
	}
	v := pl.variant(s.sub, false)
	if v == nil {
		v = pl.variant(strings.Clone(s.sub), true)
	}
	v.add(o)
}

func (p *pindex) remove(s *slot, o uint32) {
	if s.typ == Date {
		l := p.dates[s.dk]
		if l == nil {
			return
		}
		l.remove(o)
		if len(*l) > 0 {
			return
		}
		delete(p.dates, s.dk)
		if s.dk.lo > s.dk.hi {
			p.inverted--
		}
		p.byLo.remove(dateRef{dateKey: s.dk})
		p.byHi.remove(dateRef{dateKey: s.dk})
		return
	}
	pl := p.keys[s.key]
	if pl == nil {
		return
	}
	if v := pl.variant(s.sub, false); v != nil {
		v.remove(o)
	}
	if pl.empty() {
		delete(p.keys, s.key)
		if s.typ == String {
			p.sorted.remove(s.key)
		}
	}
}

func namesOf(es []Entry) map[string]bool {
	out := make(map[string]bool, 8)
	for i := range es {
		out[es[i].Name] = true
	}
	return out
}

// Put indexes resource id with its current entries, replacing the previous
// ones (old: the entries the index was last given for id, nil when new).
// lastUpdated is the resource's sort key.
func (ix *Index) Put(id string, lastUpdated time.Time, old, cur []Entry) {
	lu := UnixNanos(lastUpdated)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	o, exists := ix.byID[id]
	if !exists {
		o = uint32(len(ix.docs))
		id = strings.Clone(id) // the caller's string may pin a large buffer
		ix.docs = append(ix.docs, idoc{id: id})
		ix.byID[id] = o
	}
	d := &ix.docs[o]
	if !d.alive {
		old = nil // a removed document has no entries left
	}
	if len(old) == 0 {
		// New document: no diff needed.
		var p *pindex
		for i := range cur {
			e := &cur[i]
			if p == nil || p.name != e.Name {
				p = ix.param(e.Name, e.Type)
				p.present.add(o)
			}
			if indexed(e) {
				s := slotOf(e)
				p.add(&s, o)
			}
		}
	} else {
		had := make(map[slot]bool, len(old))
		for i := range old {
			if indexed(&old[i]) {
				had[slotOf(&old[i])] = true
			}
		}
		keep := make(map[slot]bool, len(cur))
		for i := range cur {
			if !indexed(&cur[i]) {
				continue
			}
			s := slotOf(&cur[i])
			keep[s] = true
			if !had[s] {
				ix.param(s.param, s.typ).add(&s, o)
			}
		}
		for s := range had {
			if !keep[s] {
				if p := ix.params[s.param]; p != nil {
					p.remove(&s, o)
				}
			}
		}
		curNames := namesOf(cur)
		for name := range namesOf(old) {
			if !curNames[name] {
				if p := ix.params[name]; p != nil {
					p.present.remove(o)
				}
			}
		}
		for i := range cur {
			ix.param(cur[i].Name, cur[i].Type).present.add(o)
		}
	}
	luHi := lu
	for i := range cur {
		if cur[i].Name == "_lastUpdated" {
			luHi = max(lu, UnixNanos(cur[i].High))
			break
		}
	}
	d.luHi = luHi
	if w := luHi - lu; w > ix.maxWidth {
		ix.maxWidth = w
	}
	if !d.alive {
		d.alive = true
		ix.alive++
		d.lu = lu
		ix.order.add(orderEntry{lu: lu, ord: o})
	} else if d.lu != lu {
		ix.order.remove(orderEntry{lu: d.lu, ord: o})
		d.lu = lu
		ix.order.add(orderEntry{lu: lu, ord: o})
	}
}

// Remove drops resource id (old: its entries as last given to Put).
func (ix *Index) Remove(id string, old []Entry) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	o, exists := ix.byID[id]
	if !exists || !ix.docs[o].alive {
		return
	}
	for i := range old {
		if !indexed(&old[i]) {
			continue
		}
		s := slotOf(&old[i])
		if p := ix.params[s.param]; p != nil {
			p.remove(&s, o)
		}
	}
	for name := range namesOf(old) {
		if p := ix.params[name]; p != nil {
			p.present.remove(o)
		}
	}
	d := &ix.docs[o]
	ix.order.remove(orderEntry{lu: d.lu, ord: o})
	d.alive = false
	ix.alive--
}

// Position is a keyset paging position: the (lastUpdated, id) of the last
// hit of the previous page.
type Position struct {
	LastUpdated int64 // UnixNanos
	ID          string
}

// Hit is one search result.
type Hit struct {
	ID          string
	LastUpdated int64 // UnixNanos
}

// Search returns up to limit hits after position after (nil: from the start)
// in (lastUpdated, id) order, the total number of matches, and whether more
// hits follow. Criteria are ANDed.
func (ix *Index) Search(cs []Criterion, after *Position, limit int) (hits []Hit, total int, more bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var set []uint32
	var member []uint64 // the matches as a bitmap, when one criterion gave one
	all := len(cs) == 0
	if len(cs) == 1 {
		ds := ix.evalSet(&cs[0])
		total = ds.count()
		if total == 0 {
			return nil, 0, false
		}
		if ds.bits != nil && total*16 >= ix.alive {
			member = ds.bits // dense: the order walk below tests membership
		} else {
			set = ds.ords()
		}
	} else if !all {
		type counted struct {
			docSet
			n int
		}
		sets := make([]counted, 0, len(cs))
		for i := range cs {
			ds := ix.evalSet(&cs[i])
			n := ds.count()
			if n == 0 {
				return nil, 0, false
			}
			sets = append(sets, counted{ds, n})
		}
		slices.SortFunc(sets, func(a, b counted) int { return cmp.Compare(a.n, b.n) })
		set = sets[0].ords()
		for _, s := range sets[1:] {
			if s.bits != nil {
				set = filterBits(set, s.bits) // test membership; no list needed
			} else {
				set = intersect(set, s.list)
			}
			if len(set) == 0 {
				return nil, 0, false
			}
		}
		total = len(set)
	} else {
		total = ix.alive
	}
	if limit <= 0 || total == 0 {
		return nil, total, false
	}
	after2 := func(d *idoc) bool {
		if after == nil {
			return true
		}
		return d.lu > after.LastUpdated || (d.lu == after.LastUpdated && d.id > after.ID)
	}
	if !all && member == nil && len(set)*16 < ix.alive {
		// Sparse: order the matches directly.
		// Keep the best limit candidates in a small sorted slice.
		best := make([]uint32, 0, limit+1)
		n := 0
		for _, o := range set {
			if !after2(&ix.docs[o]) {
				continue
			}
			n++
			if len(best) == limit && ix.compareDocs(o, best[limit-1]) >= 0 {
				continue
			}
			i, _ := slices.BinarySearchFunc(best, o, ix.compareDocs)
			best = slices.Insert(best, i, o)
			if len(best) > limit {
				best = best[:limit]
			}
		}
		hits = make([]Hit, len(best))
		for i, o := range best {
			d := &ix.docs[o]
			hits[i] = Hit{ID: d.id, LastUpdated: d.lu}
		}
		return hits, total, n > len(best)
	}
	// Dense: walk the global order and test membership.
	if !all && member == nil {
		member = make([]uint64, (len(ix.docs)+63)/64)
		for _, o := range set {
			member[o/64] |= 1 << (o % 64)
		}
	}
	hits = make([]Hit, 0, limit)
	before := func(e orderEntry) bool { return false }
	if after != nil {
		before = func(e orderEntry) bool {
			return e.lu < after.LastUpdated || (e.lu == after.LastUpdated && ix.docs[e.ord].id <= after.ID)
		}
	}
	ix.order.scanFrom(before, func(e orderEntry) bool {
		o := e.ord
		if member != nil && member[o/64]&(1<<(o%64)) == 0 {
			return true
		}
		if len(hits) == limit {
			more = true
			return false
		}
		d := &ix.docs[o]
		hits = append(hits, Hit{ID: d.id, LastUpdated: d.lu})
		return true
	})
	return hits, total, more
}

func (ix *Index) compareDocs(a, b uint32) int {
	da, db := &ix.docs[a], &ix.docs[b]
	if da.lu != db.lu {
		return cmp.Compare(da.lu, db.lu)
	}
	return strings.Compare(da.id, db.id)
}

// filterBits returns the members of a whose bit is set (a new slice).
func filterBits(a []uint32, bits []uint64) []uint32 {
	out := make([]uint32, 0, len(a))
	for _, o := range a {
		if bits[o/64]&(1<<(o%64)) != 0 {
			out = append(out, o)
		}
	}
	return out
}

func intersect(a, b []uint32) []uint32 {
	out := make([]uint32, 0, min(len(a), len(b)))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			i++
		case a[i] > b[j]:
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	return out
}

// collector unions postings into a sorted set. While the union is small it
// keeps the lists; once their total passes 1/64 of the ordinals (when a
// bitmap of all ordinals costs no more to scan than the lists) it switches to
// a bitmap and sets bits as lists arrive, so a range over many small
// postings costs no list bookkeeping.
type collector struct {
	n     int // number of ordinals in the index
	lists [][]uint32
	size  int
	bits  []uint64 // dense mode
}

func (c *collector) add(o ords) {
	if len(o) == 0 {
		return
	}
	if c.bits != nil {
		for _, x := range o {
			c.bits[x/64] |= 1 << (x % 64)
		}
		return
	}
	c.lists = append(c.lists, o)
	c.size += len(o)
	if len(c.lists) > 1 && c.size*64 > c.n {
		c.bits = make([]uint64, (c.n+63)/64)
		for _, l := range c.lists {
			for _, x := range l {
				c.bits[x/64] |= 1 << (x % 64)
			}
		}
		c.lists = nil
	}
}

// addAll adds every variant of a posting.
func (c *collector) addAll(p *posting) {
	if p != nil {
		p.each(func(_ string, docs ords) { c.add(docs) })
	}
}

// addSub adds the variant sub of a posting.
func (c *collector) addSub(p *posting, sub string) {
	if p != nil {
		if v := p.variant(sub, false); v != nil {
			c.add(*v)
		}
	}
}

// set returns the union.
func (c *collector) set() docSet {
	switch {
	case c.bits != nil:
		return docSet{bits: c.bits}
	case len(c.lists) == 0:
		return docSet{}
	case len(c.lists) == 1:
		return docSet{list: c.lists[0]}
	}
	out := make([]uint32, 0, c.size)
	for _, l := range c.lists {
		out = append(out, l...)
	}
	slices.Sort(out)
	return docSet{list: slices.Compact(out)}
}

// docSet is a set of document ordinals: a sorted list, or (when bits is
// not nil) a bitmap.
type docSet struct {
	list []uint32
	bits []uint64
}

func (d docSet) count() int {
	if d.bits == nil {
		return len(d.list)
	}
	n := 0
	for _, w := range d.bits {
		n += bits.OnesCount64(w)
	}
	return n
}

// ords returns the set as a sorted list.
func (d docSet) ords() []uint32 {
	if d.bits == nil {
		return d.list
	}
	return fromBits(d.bits, d.count())
}

func fromBits(b []uint64, hint int) []uint32 {
	out := make([]uint32, 0, hint)
	for w, word := range b {
		for word != 0 {
			t := bits.TrailingZeros64(word)
			out = append(out, uint32(w*64+t))
			word &= word - 1
		}
	}
	return out
}

// evalSet returns the set of documents matching one criterion.
func (ix *Index) evalSet(c *Criterion) docSet {
	switch c.Def.Name {
	case "_id":
		if c.Modifier != ModMissing {
			return docSet{list: ix.evalID(c)}
		}
	case "_lastUpdated":
		if c.Modifier != ModMissing {
			return docSet{list: ix.evalLastUpdated(c)}
		}
	}
	p := ix.params[c.Def.Name]
	if c.Modifier == ModMissing {
		var present ords
		if p != nil {
			present = p.present
		}
		if !c.Missing {
			return docSet{list: present}
		}
		bits := make([]uint64, (len(ix.docs)+63)/64)
		for o := range ix.docs {
			if ix.docs[o].alive {
				bits[o/64] |= 1 << (o % 64)
			}
		}
		for _, o := range present {
			bits[o/64] &^= 1 << (o % 64)
		}
		return docSet{bits: bits}
	}
	if p == nil {
		return docSet{}
	}
	col := collector{n: len(ix.docs)}
	for k := range c.Alts {
		a := &c.Alts[k]
		switch p.typ {
		case String:
			switch c.Modifier {
			case ModExact:
				col.addSub(p.keys[Fold(a.Text)], a.Text)
			case ModContains:
				p.sorted.each(func(key string) bool {
					if strings.Contains(key, a.Text) {
						col.addAll(p.keys[key])
					}
					return true
				})
			default:
				p.sorted.rangeFrom(a.Text, func(key string) bool {
					if !strings.HasPrefix(key, a.Text) {
						return false
					}
					col.addAll(p.keys[key])
					return true
				})
			}
		case Token:
			switch {
			case !a.SystemSet:
				col.addAll(p.keys[a.Code])
			case a.Code == "":
				for _, pl := range p.keys { // rare query: a scan is fine
					col.addSub(pl, a.System)
				}
			default:
				col.addSub(p.keys[a.Code], a.System)
			}
		case Reference:
			pl := p.keys[a.RefID]
			if a.RefType == "" {
				col.addAll(pl)
			} else {
				col.addSub(pl, a.RefType)
				col.addSub(pl, "")
			}
		case Date:
			ix.evalDate(p, a, &col)
		}
	}
	return col.set()
}

// evalID answers _id from the document table.
func (ix *Index) evalID(c *Criterion) []uint32 {
	var out []uint32
	for _, a := range c.Alts {
		if a.SystemSet && a.System != "" {
			continue
		}
		if o, ok := ix.byID[a.Code]; ok && ix.docs[o].alive {
			out = append(out, o)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// evalLastUpdated answers _lastUpdated by scanning the order list over the
// range of sort keys that can match.
func (ix *Index) evalLastUpdated(c *Criterion) []uint32 {
	sub := func(a, b int64) int64 { // saturating a-b for b >= 0
		if a < math.MinInt64+b {
			return math.MinInt64
		}
		return a - b
	}
	var out []uint32
	for _, a := range c.Alts {
		qlo, qhi := UnixNanos(a.Low), UnixNanos(a.High)
		lower, upper := int64(math.MinInt64), int64(math.MaxInt64)
		switch a.Prefix {
		case "", "eq":
			lower, upper = qlo, qhi
		case "gt":
			lower = sub(qhi, ix.maxWidth)
		case "lt", "eb":
			upper = qlo
		case "ge":
			lower = min(qlo, sub(qhi, ix.maxWidth))
		case "le":
			upper = qhi
		case "sa":
			lower = qhi
		case "ap":
			lower, upper = sub(qlo, ix.maxWidth), qhi
		}
		ix.order.scanFrom(func(e orderEntry) bool { return e.lu < lower }, func(e orderEntry) bool {
			if e.lu > upper {
				return false
			}
			d := &ix.docs[e.ord]
			if dateMatchesNanos(a.Prefix, qlo, qhi, d.lu, d.luHi) {
				out = append(out, e.ord)
			}
			return true
		})
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (ix *Index) evalDate(p *pindex, a *Alt, col *collector) {
	qlo, qhi := UnixNanos(a.Low), UnixNanos(a.High)
	take := func(k dateRef) {
		col.add(*k.docs)
	}
	matches := func(k dateRef) bool {
		return dateMatchesNanos(a.Prefix, qlo, qhi, k.lo, k.hi)
	}
	// within takes the keys inside [qlo, qhi]. Well-formed keys there
	// have qlo <= lo <= qhi; inverted ones can have any lo >= qlo.
	within := func() {
		p.byLo.rangeFrom(dateRef{dateKey: dateKey{qlo, math.MinInt64}}, func(k dateRef) bool {
			if k.lo > qhi && p.inverted == 0 {
				return false
			}
			if k.hi <= qhi {
				take(k)
			}
			return true
		})
	}
	switch a.Prefix {
	case "", "eq":
		within()
	case "gt", "sa":
		// gt: hi > qhi; sa: lo > qhi (which implies hi > qhi)
		p.byHi.rangeFrom(dateRef{dateKey: dateKey{lo: math.MinInt64, hi: qhi + 1}}, func(k dateRef) bool {
			if matches(k) {
				take(k)
			}
			return true
		})
	case "ge":
		// hi > qhi, or within [qlo, qhi]: two disjoint scans. (A range
		// may have lo > hi when its source is malformed, so "within"
		// is not bounded by hi >= qlo.)
		// The first scan can take most of the index: a plain loop.
		ci, i := p.byHi.seek(dateRef{dateKey: dateKey{lo: math.MinInt64, hi: qhi + 1}})
		for ; ci < len(p.byHi.chunks); ci++ {
			for _, k := range p.byHi.chunks[ci][i:] {
				if d := *k.docs; col.bits != nil && len(d) == 1 {
					col.bits[d[0]/64] |= 1 << (d[0] % 64)
				} else {
					col.add(d)
				}
			}
			i = 0
		}
		within()
	case "le":
		// lo < qlo, or within [qlo, qhi]: two disjoint scans.
		p.byLo.each(func(k dateRef) bool {
			if k.lo >= qlo {
				return false
			}
			take(k)
			return true
		})
		within()
	case "lt", "eb", "ap":
		// lt: lo < qlo; eb: hi < qlo (implies lo < qlo unless the key is
		// inverted); ap: lo <= qhi
		bound := qlo
		if a.Prefix == "ap" {
			bound = qhi
		}
		p.byLo.each(func(k dateRef) bool {
			if k.lo > bound && (a.Prefix != "eb" || p.inverted == 0) {
				return false
			}
			if matches(k) {
				take(k)
			}
			return true
		})
	default: // ne: evaluate every distinct range
		p.byLo.each(func(k dateRef) bool {
			if matches(k) {
				take(k)
			}
			return true
		})
	}
}

// dateMatchesNanos is DateMatches on clamped unix nanoseconds.
func dateMatchesNanos(prefix string, qlo, qhi, rlo, rhi int64) bool {
	within := rlo >= qlo && rhi <= qhi
	switch prefix {
	case "", "eq":
		return within
	case "ne":
		return !within
	case "gt":
		return rhi > qhi
	case "lt":
		return rlo < qlo
	case "ge":
		return rhi > qhi || within
	case "le":
		return rlo < qlo || within
	case "sa":
		return rlo > qhi
	case "eb":
		return rhi < qlo
	case "ap":
		return rlo <= qhi && rhi >= qlo
	}
	return false
}

// keyList is a sorted set kept as a list of small sorted chunks (a two-level
// B-tree): inserts and deletes move at most one chunk, range scans are in order.
type keyList[K any] struct {
	chunks [][]K // each sorted and non-empty; chunk i's keys precede chunk i+1's
	cmp    func(a, b K) int
}

const chunkMax = 128

// chunkFor returns the chunk that holds, or would hold, k.
func (l *keyList[K]) chunkFor(k K) int {
	i, _ := slices.BinarySearchFunc(l.chunks, k, func(c []K, k K) int {
		if l.cmp(c[0], k) > 0 {
			return 1
		}
		return -1
	})
	if i > 0 {
		i--
	}
	return i
}

func (l *keyList[K]) add(k K) {
	if len(l.chunks) == 0 {
		c := make([]K, 1, chunkMax)
		c[0] = k
		l.chunks = append(l.chunks, c)
		return
	}
	ci := l.chunkFor(k)
	c := l.chunks[ci]
	i, found := slices.BinarySearchFunc(c, k, l.cmp)
	if found {
		return
	}
	if len(c) < chunkMax {
		l.chunks[ci] = slices.Insert(c, i, k)
		return
	}
	if ci == len(l.chunks)-1 && i == len(c) {
		// Appending past the end (the usual case for ascending keys): new chunk.
		n := make([]K, 1, chunkMax)
		n[0] = k
		l.chunks = append(l.chunks, n)
		return
	}
	half := len(c) / 2
	right := make([]K, len(c)-half, chunkMax)
	copy(right, c[half:])
	left := c[:half]
	if i <= half {
		left = slices.Insert(left, i, k)
	} else {
		right = slices.Insert(right, i-half, k)
	}
	l.chunks[ci] = left
	l.chunks = slices.Insert(l.chunks, ci+1, right)
}

func (l *keyList[K]) remove(k K) {
	if len(l.chunks) == 0 {
		return
	}
	ci := l.chunkFor(k)
	c := l.chunks[ci]
	i, found := slices.BinarySearchFunc(c, k, l.cmp)
	if !found {
		return
	}
	c = slices.Delete(c, i, i+1)
	if len(c) == 0 {
		l.chunks = slices.Delete(l.chunks, ci, ci+1)
		return
	}
	l.chunks[ci] = c
}

// seek returns the position (chunk, index in chunk) of the first key >=
// from; ci == len(l.chunks) when there is none.
func (l *keyList[K]) seek(from K) (ci, i int) {
	if len(l.chunks) == 0 {
		return 0, 0
	}
	ci = l.chunkFor(from)
	i, _ = slices.BinarySearchFunc(l.chunks[ci], from, l.cmp)
	if i == len(l.chunks[ci]) {
		return ci + 1, 0
	}
	return ci, i
}

// rangeFrom calls fn for keys >= from in ascending order until fn returns false.
func (l *keyList[K]) rangeFrom(from K, fn func(K) bool) {
	if len(l.chunks) == 0 {
		return
	}
	ci := l.chunkFor(from)
	i, _ := slices.BinarySearchFunc(l.chunks[ci], from, l.cmp)
	for ; ci < len(l.chunks); ci++ {
		for _, k := range l.chunks[ci][i:] {
			if !fn(k) {
				return
			}
		}
		i = 0
	}
}

// each calls fn for every key in ascending order until fn returns false.
func (l *keyList[K]) each(fn func(K) bool) {
	for _, c := range l.chunks {
		for _, k := range c {
			if !fn(k) {
				return
			}
		}
	}
}

// scanFrom calls fn, in order, for the keys after the prefix of keys for
// which before returns true (before must be monotone), until fn returns false.
func (l *keyList[K]) scanFrom(before func(K) bool, fn func(K) bool) {
	ci, _ := slices.BinarySearchFunc(l.chunks, 0, func(c []K, _ int) int {
		if before(c[len(c)-1]) {
			return -1
		}
		return 1
	})
	if ci == len(l.chunks) {
		return
	}
	c := l.chunks[ci]
	i, _ := slices.BinarySearchFunc(c, 0, func(k K, _ int) int {
		if before(k) {
			return -1
		}
		return 1
	})
	for ; ci < len(l.chunks); ci++ {
		for _, k := range l.chunks[ci][i:] {
			if !fn(k) {
				return
			}
		}
		i = 0
	}
}

// orderEntry places a live document in (lastUpdated, id) order.
type orderEntry struct {
	lu  int64
	ord uint32
}
