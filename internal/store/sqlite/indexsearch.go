package sqlite

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"

	"github.com/mediflow/mediflow/internal/fhir/searchparam"
)

// How a search runs: one criterion (or the order table) "drives" it,
// producing candidates in (lastUpdated, id) order; every other criterion is
// checked with searchparam's Criterion.Match against the candidate's
// recorded entries, so results agree with Match by construction. Drivers:
//
//   - the order table: every resource of the collection, with its entries
//     at hand (no criterion selective enough, or none at all);
//   - spans: a token or reference criterion, whose postings per value are
//     already in order (a k-way merge over its values);
//   - a set: any other indexable criterion whose postings are few (at most
//     setCap keys): collected, sorted and deduplicated;
//   - _id (cur-table lookups) and _lastUpdated (a range of the order table).
//
// The driver is chosen by probing each criterion's postings up to setCap
// keys, and remembered with the total number of matches until the
// collection changes (planCache), so paging through a search costs a page,
// not a count. The counting walk also records where in the order the
// matches are (at most maxRanges ranges, the smallest gaps merged away), and
// page walks seek over the gaps: a criterion that matches only the newest
// resources does not make every page walk the old ones.

// limits are the planner's bounds; tests shrink them to reach every path.
type limits struct {
	// setCap bounds the postings a set driver collects (and so the memory
	// one search holds) and how far the planner counts a criterion.
	setCap int
	// A gap of fewer than minGap candidates is not worth a seek, and a plan
	// keeps at most maxRanges ranges (the smallest gaps are merged away),
	// so plans stay small.
	minGap, maxRanges int
}

func defaultLimits() limits { return limits{setCap: 4096, minGap: 16, maxRanges: 64} }

// position is a keyset paging position: the (lastUpdated, id) of the last
// hit of the previous page.
type position struct {
	lu int64
	id string
}

// hit is one search result.
type hit struct {
	lu  int64
	id  string
	seq int64
}

type driverKind int

const (
	kindNone driverKind = iota // cannot drive: checked on candidates only
	kindID                     // _id: cur-table lookups
	kindLU                     // _lastUpdated: a range of the order table
	kindSpan                   // token or reference: ordered postings per value
	kindSet                    // other postings: collected and sorted
)

func kindOf(c *searchparam.Criterion, narrowed bool) driverKind {
	if c.Modifier == searchparam.ModMissing {
		if !c.Missing && !narrowed && c.Def.Name != "_id" && c.Def.Name != "_lastUpdated" {
			return kindSet // every posting of the parameter
		}
		return kindNone
	}
	switch c.Def.Name {
	case "_id":
		return kindID
	case "_lastUpdated":
		return kindLU
	}
	switch c.Def.Type {
	case searchparam.Token:
		for _, a := range c.Alts {
			if a.SystemSet && a.Code == "" {
				return kindSet // any code of a system: scan the parameter
			}
		}
		return kindSpan
	case searchparam.Reference:
		return kindSpan
	case searchparam.String, searchparam.Date:
		return kindSet
	}
	return kindNone
}

// plan is a search's driver and total, valid for one generation of its
// collection.
type plan struct {
	gen    uint64
	total  int
	driver int          // criterion index, or -1 for the order table
	ranges []matchRange // where the matches are; pages skip the rest
}

// planCache holds at most maxPlans plans.
type planCache struct {
	mu sync.Mutex
	m  map[string]*plan // guarded by mu
}

const maxPlans = 1024

func (pc *planCache) get(key string, gen uint64) (plan, bool) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	p := pc.m[key]
	if p == nil || p.gen != gen {
		return plan{}, false
	}
	return *p, true
}

func (pc *planCache) put(key string, p plan) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if _, ok := pc.m[key]; !ok && len(pc.m) >= maxPlans {
		for k := range pc.m { // drop an arbitrary plan
			delete(pc.m, k)
			break
		}
	}
	pc.m[key] = &p
}

func (pc *planCache) clear() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	clear(pc.m)
}

// query is one search's state.
type query struct {
	ix    *index
	c     *collection
	cs    []searchparam.Criterion
	dv    *dictView    // resolves names and subs
	ids   []int        // per criterion: the name number of its postings, -1 when never indexed
	kinds []driverKind // per criterion
	// narrow, per criterion: the target types, when its postings are those
	// of a broader parameter (see collection.narrow).
	narrow [][]string
	snap   *pebble.Snapshot // all of the query's iterators read it
	order  *pebble.Iterator // on the order table, for entry lookups
	ebuf   []searchparam.Entry
	arena  []byte // decodeEntries' strings
	kb     []byte
	sets   map[int][]hit // set drivers collected while probing
	seekTo position      // where a walk goes on after stepSeek
}

func (ix *index) newQuery(c *collection, cs []searchparam.Criterion) *query {
	d := ix.dict.Load()
	q := &query{ix: ix, c: c, cs: cs, dv: ix.view(), ids: make([]int, len(cs)), kinds: make([]driverKind, len(cs)), narrow: make([][]string, len(cs))}
	for i := range cs {
		name := cs[i].Def.Name
		n, narrowed := c.narrow[name]
		if narrowed {
			name, q.narrow[i] = n.Broad, n.Targets
		}
		q.ids[i] = -1
		if id, ok := d.ids[name]; ok {
			q.ids[i] = int(id)
		}
		q.kinds[i] = kindOf(&cs[i], narrowed)
	}
	return q
}

func (q *query) close() {
	if q.order != nil {
		q.order.Close()
	}
	if q.snap != nil {
		q.snap.Close()
	}
}

// newIter opens an iterator on a consistent view: the first one reads the
// DB directly; once there are two, they share a snapshot.
func (q *query) newIter(lower, upper []byte) (*pebble.Iterator, error) {
	if q.snap == nil {
		q.snap = q.ix.db.NewSnapshot()
	}
	it, err := q.snap.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("sqlite: search index: %w", err)
	}
	return it, nil
}

var errTooMany = errors.New("sqlite: search index: set driver over its cap")

// search returns up to limit hits after `after` in (lastUpdated, id) order,
// the total number of matches and whether more hits follow. key identifies
// the search (practice, type and criteria) for the plan cache.
func (ix *index) search(c *collection, cs []searchparam.Criterion, key string, after *position, limit int) ([]hit, int, bool, error) {
	q := ix.newQuery(c, cs)
	defer q.close()
	if len(cs) == 0 {
		total := int(c.live.Load())
		if limit == 0 {
			return nil, total, false, nil
		}
		hits, _, more, _, err := q.run(-1, after, limit, false, nil)
		return hits, total, more, err
	}
	// Postings a bulk load deferred are merged in before they are read.
	done, err := ix.readingPostings(c)
	if err != nil {
		return nil, 0, false, err
	}
	defer done()
	gen := c.gen.Load()
	if p, ok := ix.plans.get(key, gen); ok {
		if limit == 0 {
			return nil, p.total, false, nil
		}
		hits, _, more, _, err := q.run(p.driver, after, limit, false, p.ranges)
		if errors.Is(err, errTooMany) { // the collection grew since the plan was made
			hits, _, more, _, err = q.run(-1, after, limit, false, nil)
		}
		return hits, p.total, more, err
	}
	driver, err := q.choose()
	if err != nil {
		return nil, 0, false, err
	}
	hits, total, more, ranges, err := q.run(driver, after, limit, true, nil)
	if errors.Is(err, errTooMany) {
		driver = -1
		hits, total, more, ranges, err = q.run(driver, after, limit, true, nil)
	}
	if err != nil {
		return nil, 0, false, err
	}
	ix.plans.put(key, plan{gen: gen, total: total, driver: driver, ranges: ranges})
	return hits, total, more, nil
}

// choose picks the driver: the criterion with the fewest postings, as far
// as setCap lets it count; when none is under the cap, an ordered driver
// (spans, then a _lastUpdated range) over the whole order table.
func (q *query) choose() (int, error) {
	best, bestEst := -1, math.MaxInt
	rank := func(k driverKind) int { // ties: ordered drivers need no sort
		switch k {
		case kindID:
			return 0
		case kindSpan:
			return 1
		case kindLU:
			return 2
		}
		return 3
	}
	for i := range q.cs {
		k := q.kinds[i]
		var est int
		var err error
		switch k {
		case kindNone:
			continue
		case kindID:
			est = len(q.cs[i].Alts)
		case kindLU:
			est, err = q.countLU(i, q.ix.setCap)
		case kindSpan:
			est, err = q.countSpans(i, q.ix.setCap)
		case kindSet:
			var hits []hit
			hits, err = q.collect(i, q.ix.setCap)
			if errors.Is(err, errTooMany) {
				est, err = q.ix.setCap, nil
			} else if err == nil {
				est = len(hits)
				if q.sets == nil {
					q.sets = map[int][]hit{}
				}
				q.sets[i] = hits
			}
		}
		if err != nil {
			return 0, err
		}
		if k == kindSet && est >= q.ix.setCap {
			continue // too many to collect
		}
		if best < 0 || est < bestEst || (est == bestEst && rank(k) < rank(q.kinds[best])) {
			best, bestEst = i, est
		}
	}
	return best, nil
}

// exact reports whether driver i's candidates all satisfy criterion i (so
// it need not be checked again).
func (q *query) exact(i int) bool {
	switch q.kinds[i] {
	case kindSpan, kindSet:
		return true
	}
	return false
}

// run walks the driver's candidates, checks the other criteria and keeps
// the page. With countAll it starts at the beginning, counts every match
// and records where in the order the matches are (ranges); otherwise it
// starts after `after`, skips the gaps between ranges (when given) and
// stops once the page is full and one more match is known.
func (q *query) run(driver int, after *position, limit int, countAll bool, ranges []matchRange) (hits []hit, total int, more bool, found []matchRange, err error) {
	var check []int
	for i := range q.cs {
		if i != driver || !q.exact(i) {
			check = append(check, i)
		}
	}
	from := after
	var rb *rangeBuilder
	if countAll {
		from, ranges, rb = nil, nil, &rangeBuilder{limits: q.ix.limits}
	}
	ri := 0 // the first range that can hold the current candidate
	emit := func(lu int64, id []byte, seq int64, entries []byte) (step, error) {
		if ranges != nil {
			for ri < len(ranges) && posAfter(lu, id, ranges[ri].end) {
				ri++
			}
			if ri == len(ranges) {
				return stepStop, nil // no match beyond the last range
			}
			if r := &ranges[ri]; posBefore(lu, id, r.start) {
				q.seekTo = r.start
				return stepSeek, nil
			}
		}
		if len(check) > 0 {
			if entries == nil {
				var ok bool
				var err error
				if seq, entries, ok, err = q.orderEntry(lu, id); err != nil || !ok {
					return stepNext, err
				}
			}
			es, err := decodeEntries(entries, q.dv, unsafe.String(unsafe.SliceData(id), len(id)), q.ebuf, &q.arena)
			if err != nil {
				return stepStop, err
			}
			q.ebuf = es[:0]
			for _, i := range check {
				if !q.cs[i].Match(es) {
					if rb != nil {
						rb.miss()
					}
					return stepNext, nil
				}
			}
		}
		total++
		if rb != nil {
			rb.match(lu, id)
		}
		if after != nil && !afterPos(lu, id, after) {
			return stepNext, nil
		}
		if len(hits) < limit {
			hits = append(hits, hit{lu: lu, id: string(id), seq: seq})
			return stepNext, nil
		}
		more = true
		if countAll {
			return stepNext, nil
		}
		return stepStop, nil
	}
	if limit == 0 && !countAll {
		return nil, 0, false, nil, nil
	}
	switch {
	case driver < 0:
		err = q.walkOrder(math.MinInt64, math.MaxInt64, from, emit)
	default:
		switch q.kinds[driver] {
		case kindID:
			err = q.walkIDs(driver, from, emit)
		case kindLU:
			lo, hi := q.luBounds(driver)
			err = q.walkOrder(lo, hi, from, emit)
		case kindSpan:
			err = q.walkSpans(driver, from, emit)
		case kindSet:
			hs, ok := q.sets[driver]
			if !ok {
				if hs, err = q.collect(driver, 2*q.ix.setCap); err != nil {
					return nil, 0, false, nil, err
				}
			}
			err = q.walkHits(hs, from, emit)
		default:
			err = q.walkOrder(math.MinInt64, math.MaxInt64, from, emit)
		}
	}
	if err != nil {
		return nil, 0, false, nil, err
	}
	if rb != nil {
		found = rb.done()
	}
	return hits, total, more, found, nil
}

// afterPos reports whether (lu, id) comes after p.
func afterPos(lu int64, id []byte, p *position) bool {
	if lu != p.lu {
		return lu > p.lu
	}
	return string(id) > p.id
}

func posAfter(lu int64, id []byte, p position) bool { return afterPos(lu, id, &p) }

func posBefore(lu int64, id []byte, p position) bool {
	if lu != p.lu {
		return lu < p.lu
	}
	return string(id) < p.id
}

// step tells a driver's walk what to do after a candidate.
type step int

const (
	stepNext step = iota // go on with the next candidate
	stepStop             // done
	stepSeek             // go on from q.seekTo (inclusive)
)

type emitFunc func(lu int64, id []byte, seq int64, entries []byte) (step, error)

// matchRange is a stretch of the (lastUpdated, id) order, from its first to
// its last match (inclusive), between gaps with no match.
type matchRange struct {
	start, end position
	gapBefore  int // candidates without a match before start
}

// rangeBuilder records matchRanges during a counting walk.
type rangeBuilder struct {
	limits
	rs      []matchRange
	gap     int
	lastLU  int64
	lastID  []byte
	started bool
}

func (b *rangeBuilder) miss() { b.gap++ }

func (b *rangeBuilder) match(lu int64, id []byte) {
	if !b.started || b.gap >= b.minGap {
		if b.started {
			b.rs[len(b.rs)-1].end = position{b.lastLU, string(b.lastID)}
		}
		b.rs = append(b.rs, matchRange{start: position{lu, string(id)}, gapBefore: b.gap})
		b.started = true
		if len(b.rs) > 2*b.maxRanges {
			b.compact(b.maxRanges + 1) // the last range is still open
		}
	}
	b.gap = 0
	b.lastLU, b.lastID = lu, append(b.lastID[:0], id...)
}

func (b *rangeBuilder) done() []matchRange {
	if !b.started {
		return []matchRange{}
	}
	b.rs[len(b.rs)-1].end = position{b.lastLU, string(b.lastID)}
	b.compact(b.maxRanges)
	return slices.Clip(b.rs)
}

// compact merges ranges across the smallest gaps until at most n remain.
func (b *rangeBuilder) compact(n int) {
	if len(b.rs) <= n {
		return
	}
	if n <= 1 {
		b.rs[0].end = b.rs[len(b.rs)-1].end
		b.rs = b.rs[:1]
		return
	}
	gaps := make([]int, 0, len(b.rs)-1)
	for _, r := range b.rs[1:] {
		gaps = append(gaps, r.gapBefore)
	}
	slices.Sort(gaps)
	// Keep the n-1 largest gaps as boundaries.
	threshold := gaps[len(gaps)-(n-1)]
	keep := n - 1
	for _, g := range gaps[len(gaps)-(n-1):] {
		if g == threshold {
			keep-- // ties at the threshold: take them in order below
		}
	}
	atThreshold := n - 1 - keep
	out := b.rs[:1]
	for _, r := range b.rs[1:] {
		boundary := r.gapBefore > threshold
		if r.gapBefore == threshold && atThreshold > 0 {
			boundary, atThreshold = true, atThreshold-1
		}
		if boundary {
			out = append(out, r)
		} else {
			out[len(out)-1].end = r.end
		}
	}
	b.rs = out
}

// walkOrder emits the order table's resources with lo <= lu <= hi, from
// `from` on (nil: the start).
func (q *query) walkOrder(lo, hi int64, from *position, emit emitFunc) error {
	prefix := collPrefix(nil, tagOrder, q.c.id)
	lower := binary.BigEndian.AppendUint64(bytes.Clone(prefix), sortable(lo))
	var upper []byte
	if hi == math.MaxInt64 {
		upper = successor(prefix)
	} else {
		upper = binary.BigEndian.AppendUint64(bytes.Clone(prefix), sortable(hi+1))
	}
	it, err := q.newIter(lower, upper)
	if err != nil {
		return err
	}
	defer it.Close()
	var valid bool
	if from != nil {
		seek := append(orderKey(nil, q.c.id, from.lu, from.id), 0)
		if bytes.Compare(seek, lower) < 0 {
			seek = lower
		}
		valid = it.SeekGE(seek)
	} else {
		valid = it.First()
	}
	for valid {
		k := it.Key()
		if len(k) < len(prefix)+8 {
			return errors.New("sqlite: search index: malformed order key")
		}
		lu := unsortable(binary.BigEndian.Uint64(k[len(prefix):]))
		id, _, ok := readEsc(k[len(prefix)+8:])
		if !ok {
			return errors.New("sqlite: search index: malformed order key")
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("sqlite: search index: %w", err)
		}
		seq, n := binary.Uvarint(v)
		if n <= 0 {
			return errors.New("sqlite: search index: malformed order record")
		}
		st, err := emit(lu, id, int64(seq), v[n:])
		switch {
		case err != nil || st == stepStop:
			return err
		case st == stepSeek:
			seek := orderKey(nil, q.c.id, q.seekTo.lu, q.seekTo.id)
			if bytes.Compare(seek, lower) < 0 {
				seek = lower
			}
			valid = it.SeekGE(seek)
		default:
			valid = it.Next()
		}
	}
	return it.Error()
}

// orderEntry looks up a resource's order record: its seq and entries.
func (q *query) orderEntry(lu int64, id []byte) (int64, []byte, bool, error) {
	if q.order == nil {
		prefix := collPrefix(nil, tagOrder, q.c.id)
		it, err := q.newIter(prefix, successor(prefix))
		if err != nil {
			return 0, nil, false, err
		}
		q.order = it
	}
	q.kb = orderKey(q.kb[:0], q.c.id, lu, string(id))
	if !q.order.SeekGE(q.kb) || !bytes.Equal(q.order.Key(), q.kb) {
		return 0, nil, false, q.order.Error()
	}
	v, err := q.order.ValueAndErr()
	if err != nil {
		return 0, nil, false, fmt.Errorf("sqlite: search index: %w", err)
	}
	seq, n := binary.Uvarint(v)
	if n <= 0 {
		return 0, nil, false, errors.New("sqlite: search index: malformed order record")
	}
	return int64(seq), v[n:], true, nil
}

// walkHits emits sorted hits from `from` on.
func (q *query) walkHits(hs []hit, from *position, emit emitFunc) error {
	find := func(p position) int { // the first hit at or after p
		i, _ := slices.BinarySearchFunc(hs, p, func(h hit, p position) int {
			return cmp.Or(cmp.Compare(h.lu, p.lu), cmp.Compare(h.id, p.id))
		})
		return i
	}
	i := 0
	if from != nil {
		i = find(*from)
		for i < len(hs) && hs[i].lu == from.lu && hs[i].id == from.id {
			i++
		}
	}
	for i < len(hs) {
		st, err := emit(hs[i].lu, []byte(hs[i].id), hs[i].seq, nil)
		switch {
		case err != nil || st == stepStop:
			return err
		case st == stepSeek:
			i = max(i+1, find(q.seekTo))
		default:
			i++
		}
	}
	return nil
}

// sortHits orders hits by (lastUpdated, id) and drops duplicates.
func sortHits(hs []hit) []hit {
	slices.SortFunc(hs, func(a, b hit) int { return cmp.Or(cmp.Compare(a.lu, b.lu), cmp.Compare(a.id, b.id)) })
	return slices.CompactFunc(hs, func(a, b hit) bool { return a.lu == b.lu && a.id == b.id })
}

// walkIDs emits the live resources named by an _id criterion.
func (q *query) walkIDs(i int, from *position, emit emitFunc) error {
	var hs []hit
	for _, a := range q.cs[i].Alts {
		if a.Code == "" || (a.SystemSet && a.System != "") {
			continue // "|id" entries have no system
		}
		cur, ok, err := q.ix.current(q.c, a.Code)
		if err != nil {
			return err
		}
		if ok && !cur.deleted {
			hs = append(hs, hit{lu: cur.lu, id: a.Code, seq: cur.seq})
		}
	}
	return q.walkHits(sortHits(hs), from, emit)
}

// luBounds is the range of sort keys a _lastUpdated criterion can match: a
// resource's range starts at its sort key and is at most the collection's
// widest _lastUpdated range long.
func (q *query) luBounds(i int) (lower, upper int64) {
	var width int64
	if q.ids[i] >= 0 {
		w, _ := q.c.dateStatOf(uint16(q.ids[i]))
		width = clampMul(w, int64(time.Second))
	}
	lower, upper = math.MaxInt64, math.MinInt64
	for _, a := range q.cs[i].Alts {
		qlo, qhi := searchparam.UnixNanos(a.Low), searchparam.UnixNanos(a.High)
		lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
		switch a.Prefix {
		case "", "eq":
			lo, hi = qlo, qhi
		case "gt":
			lo = clampSub(qhi, width)
		case "lt", "eb":
			hi = qlo
		case "ge":
			lo = min(qlo, clampSub(qhi, width))
		case "le":
			hi = qhi
		case "sa":
			lo = qhi
		case "ap":
			lo, hi = clampSub(qlo, width), qhi
		}
		lower, upper = min(lower, lo), max(upper, hi)
	}
	return lower, upper
}

func clampMul(a, b int64) int64 {
	if a != 0 && (a > math.MaxInt64/b || a < math.MinInt64/b) {
		if a > 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return a * b
}

// countLU counts order keys in a _lastUpdated criterion's range, up to limit.
func (q *query) countLU(i, limit int) (int, error) {
	lo, hi := q.luBounds(i)
	n := 0
	err := q.walkOrder(lo, hi, nil, func(int64, []byte, int64, []byte) (step, error) {
		if n++; n < limit {
			return stepNext, nil
		}
		return stepStop, nil
	})
	return n, err
}

// span is one value's postings of a token or reference criterion.
type span struct {
	prefix []byte
	keep   func(sub string) bool // the system or target type
	dv     *dictView
	it     *pebble.Iterator
	lu     int64
	id     []byte
	seq    int64
	valid  bool
}

// spans returns the spans of criterion i (not yet positioned).
func (q *query) spans(i int) []*span {
	c := &q.cs[i]
	if q.ids[i] < 0 {
		return nil
	}
	base := postingPrefix(nil, q.c.id, uint16(q.ids[i]))
	var out []*span
	for k := range c.Alts {
		a := &c.Alts[k]
		sp := &span{dv: q.dv}
		switch c.Def.Type {
		case searchparam.Token:
			sp.prefix = appendEsc(bytes.Clone(base), a.Code)
			if a.SystemSet {
				sp.keep = func(sub string) bool { return sub == a.System }
			}
		case searchparam.Reference:
			sp.prefix = appendEsc(bytes.Clone(base), a.RefID)
			targets := q.narrow[i]
			if a.RefType != "" || targets != nil {
				sp.keep = func(sub string) bool {
					if len(sub) == 0 {
						return true
					}
					if targets != nil && !slices.Contains(targets, sub) {
						return false // not an entry of the narrower parameter
					}
					return a.RefType == "" || sub == a.RefType
				}
			}
		}
		out = append(out, sp)
	}
	return out
}

// load reads the span's current posting, skipping those keep rejects.
func (sp *span) load(valid bool) error {
	for ; valid; valid = sp.it.Next() {
		k := sp.it.Key()[len(sp.prefix):]
		if len(k) < 8 {
			return errors.New("sqlite: search index: malformed posting")
		}
		id, rest, ok := readEsc(k[8:])
		if !ok {
			return errors.New("sqlite: search index: malformed posting")
		}
		if sp.keep != nil {
			sub, _, ok := sp.dv.readSub(rest)
			if !ok {
				return errors.New("sqlite: search index: malformed posting")
			}
			if !sp.keep(sub) {
				continue
			}
		}
		v, err := sp.it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("sqlite: search index: %w", err)
		}
		seq, n := binary.Uvarint(v)
		if n <= 0 {
			return errors.New("sqlite: search index: malformed posting")
		}
		sp.lu, sp.id, sp.seq, sp.valid = unsortable(binary.BigEndian.Uint64(k)), id, int64(seq), true
		return nil
	}
	sp.valid = false
	return sp.it.Error()
}

// walkSpans merges the spans of criterion i in (lastUpdated, id) order,
// each resource once.
func (q *query) walkSpans(i int, from *position, emit emitFunc) error {
	sps := q.spans(i)
	defer func() {
		for _, sp := range sps {
			if sp.it != nil {
				sp.it.Close()
			}
		}
	}()
	for _, sp := range sps {
		it, err := q.newIter(sp.prefix, successor(sp.prefix))
		if err != nil {
			return err
		}
		sp.it = it
		var valid bool
		if from != nil {
			seek := appendEscPrefix(binary.BigEndian.AppendUint64(bytes.Clone(sp.prefix), sortable(from.lu)), from.id)
			valid = it.SeekGE(append(seek, 0, 2)) // past every posting of from's resource
		} else {
			valid = it.First()
		}
		if err := sp.load(valid); err != nil {
			return err
		}
	}
	for {
		var next *span
		for _, sp := range sps {
			if sp.valid && (next == nil || sp.lu < next.lu || (sp.lu == next.lu && bytes.Compare(sp.id, next.id) < 0)) {
				next = sp
			}
		}
		if next == nil {
			return nil
		}
		lu, id, seq := next.lu, bytes.Clone(next.id), next.seq
		// Advance every span past this resource (a resource may have
		// several postings in a span, or be in several spans).
		for _, sp := range sps {
			for sp.valid && sp.lu == lu && bytes.Equal(sp.id, id) {
				if err := sp.load(sp.it.Next()); err != nil {
					return err
				}
			}
		}
		st, err := emit(lu, id, seq, nil)
		switch {
		case err != nil || st == stepStop:
			return err
		case st == stepSeek:
			for _, sp := range sps {
				seek := appendEsc(binary.BigEndian.AppendUint64(bytes.Clone(sp.prefix), sortable(q.seekTo.lu)), q.seekTo.id)
				if err := sp.load(sp.it.SeekGE(seek)); err != nil {
					return err
				}
			}
		}
	}
}

// countSpans counts the postings of criterion i's spans, up to limit.
func (q *query) countSpans(i, limit int) (int, error) {
	n := 0
	for _, sp := range q.spans(i) {
		it, err := q.newIter(sp.prefix, successor(sp.prefix))
		if err != nil {
			return 0, err
		}
		for valid := it.First(); valid && n < limit; valid = it.Next() {
			n++
		}
		err = it.Error()
		it.Close()
		if err != nil {
			return 0, err
		}
		if n >= limit {
			break
		}
	}
	return n, nil
}

// scanRange is a range of postings and the check each must pass.
type scanRange struct {
	lower, upper []byte
}

// collect gathers the resources matching criterion i (a set driver) from
// its postings, sorted, scanning at most limit postings (errTooMany past it).
func (q *query) collect(i, limit int) ([]hit, error) {
	c := &q.cs[i]
	if q.ids[i] < 0 {
		return nil, nil
	}
	base := postingPrefix(nil, q.c.id, uint16(q.ids[i]))
	whole := []scanRange{{base, successor(base)}}
	var ranges []scanRange
	var check func(k []byte) (lu int64, id []byte, ok bool, err error)
	bad := errors.New("sqlite: search index: malformed posting")
	tail := func(k []byte) (int64, []byte, []byte, error) { // lu, id, rest
		if len(k) < 8 {
			return 0, nil, nil, bad
		}
		id, rest, ok := readEsc(k[8:])
		if !ok {
			return 0, nil, nil, bad
		}
		return unsortable(binary.BigEndian.Uint64(k)), id, rest, nil
	}
	switch {
	case c.Modifier == searchparam.ModMissing: // :missing=false: any posting
		ranges = whole
		check = func(k []byte) (int64, []byte, bool, error) { return postingTail(c.Def.Type, k) }
	case c.Def.Type == searchparam.String:
		if c.Modifier == searchparam.ModContains {
			ranges = whole
		} else {
			for k := range c.Alts {
				a := &c.Alts[k]
				var p []byte
				if c.Modifier == searchparam.ModExact {
					p = appendEsc(appendEsc(bytes.Clone(base), searchparam.Fold(a.Text)), a.Text)
				} else {
					p = appendEscPrefix(bytes.Clone(base), a.Text)
				}
				ranges = append(ranges, scanRange{p, successor(p)})
			}
		}
		check = func(k []byte) (int64, []byte, bool, error) {
			value, rest, ok := readEsc(k)
			exact, rest2, ok2 := readEsc(rest)
			if !ok || !ok2 {
				return 0, nil, false, bad
			}
			lu, id, _, err := tail(rest2)
			if err != nil {
				return 0, nil, false, err
			}
			for a := range c.Alts {
				if searchparam.MatchString(c.Modifier, &c.Alts[a], string(value), string(exact)) {
					return lu, id, true, nil
				}
			}
			return 0, nil, false, nil
		}
	case c.Def.Type == searchparam.Token:
		ranges = whole
		check = func(k []byte) (int64, []byte, bool, error) {
			code, rest, ok := readEsc(k)
			if !ok {
				return 0, nil, false, bad
			}
			lu, id, rest, err := tail(rest)
			if err != nil {
				return 0, nil, false, err
			}
			sys, _, ok := q.dv.readSub(rest)
			if !ok {
				return 0, nil, false, bad
			}
			for a := range c.Alts {
				if searchparam.MatchToken(&c.Alts[a], sys, string(code)) {
					return lu, id, true, nil
				}
			}
			return 0, nil, false, nil
		}
	case c.Def.Type == searchparam.Date:
		width, inverted := q.c.dateStatOf(uint16(q.ids[i]))
		for k := range c.Alts {
			if inverted {
				ranges = whole
				break
			}
			lo, hi := dateScan(&c.Alts[k], width)
			r := scanRange{lower: base, upper: successor(base)}
			if lo != math.MinInt64 {
				r.lower = binary.BigEndian.AppendUint64(bytes.Clone(base), sortable(lo))
			}
			if hi != math.MaxInt64 {
				r.upper = binary.BigEndian.AppendUint64(bytes.Clone(base), sortable(hi+1))
			}
			ranges = append(ranges, r)
		}
		check = func(k []byte) (int64, []byte, bool, error) {
			if len(k) < 24 {
				return 0, nil, false, bad
			}
			lo, hi := readTime(k), readTime(k[12:])
			lu, id, _, err := tail(k[24:])
			if err != nil {
				return 0, nil, false, err
			}
			for a := range c.Alts {
				al := &c.Alts[a]
				if searchparam.DateMatches(al.Prefix, al.Low, al.High, lo, hi) {
					return lu, id, true, nil
				}
			}
			return 0, nil, false, nil
		}
	default:
		return nil, errTooMany // not collectable: let the caller walk the order table
	}
	var hs []hit
	scanned := 0
	for _, r := range mergeRanges(ranges) {
		it, err := q.newIter(r.lower, r.upper)
		if err != nil {
			return nil, err
		}
		for valid := it.First(); valid; valid = it.Next() {
			if scanned++; scanned > limit {
				it.Close()
				return nil, errTooMany
			}
			lu, id, ok, err := check(it.Key()[len(base):])
			if err != nil {
				it.Close()
				return nil, err
			}
			if !ok {
				continue
			}
			v, err := it.ValueAndErr()
			if err != nil {
				it.Close()
				return nil, fmt.Errorf("sqlite: search index: %w", err)
			}
			seq, n := binary.Uvarint(v)
			if n <= 0 {
				it.Close()
				return nil, bad
			}
			hs = append(hs, hit{lu: lu, id: string(id), seq: int64(seq)})
		}
		err = it.Error()
		it.Close()
		if err != nil {
			return nil, fmt.Errorf("sqlite: search index: %w", err)
		}
	}
	return sortHits(hs), nil
}

// postingTail decodes the (lu, id) of any posting of a parameter of type t.
func postingTail(t searchparam.Type, k []byte) (int64, []byte, bool, error) {
	bad := errors.New("sqlite: search index: malformed posting")
	switch t {
	case searchparam.String:
		_, rest, ok := readEsc(k)
		if !ok {
			return 0, nil, false, bad
		}
		if _, k, ok = readEsc(rest); !ok {
			return 0, nil, false, bad
		}
	case searchparam.Token, searchparam.Reference:
		_, rest, ok := readEsc(k)
		if !ok {
			return 0, nil, false, bad
		}
		k = rest
	case searchparam.Date:
		if len(k) < 24 {
			return 0, nil, false, bad
		}
		k = k[24:]
	default:
		return 0, nil, false, bad
	}
	if len(k) < 8 {
		return 0, nil, false, bad
	}
	id, _, ok := readEsc(k[8:])
	if !ok {
		return 0, nil, false, bad
	}
	return unsortable(binary.BigEndian.Uint64(k)), id, true, nil
}

// mergeRanges sorts ranges and merges overlapping ones, so no posting is
// scanned twice.
func mergeRanges(rs []scanRange) []scanRange {
	slices.SortFunc(rs, func(a, b scanRange) int { return bytes.Compare(a.lower, b.lower) })
	var out []scanRange
	for _, r := range rs {
		if n := len(out); n > 0 && (out[n-1].upper == nil || bytes.Compare(r.lower, out[n-1].upper) <= 0) {
			if out[n-1].upper != nil && (r.upper == nil || bytes.Compare(r.upper, out[n-1].upper) > 0) {
				out[n-1].upper = r.upper
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// dateScan returns the range of range starts (unix seconds, inclusive) a
// date alternative can match, given the parameter's widest range in
// seconds and no inverted ranges: a range [lo, hi] has hi - lo < width.
func dateScan(a *searchparam.Alt, width int64) (lo, hi int64) {
	qlo, qhi := a.Low.Unix(), a.High.Unix()
	lo, hi = math.MinInt64, math.MaxInt64
	switch a.Prefix {
	case "", "eq": // within [qlo, qhi]
		lo, hi = qlo, qhi
	case "gt": // hi > qhi
		lo = clampSub(qhi, width)
	case "lt", "eb": // lo < qlo (eb: hi < qlo, so lo < qlo)
		hi = qlo
	case "ge": // hi > qhi, or within
		lo = min(qlo, clampSub(qhi, width))
	case "le": // lo < qlo, or within
		hi = qhi
	case "sa": // lo > qhi
		lo = qhi
	case "ap": // lo <= qhi and hi >= qlo
		lo, hi = clampSub(qlo, width), qhi
	}
	return lo, hi
}
