package sqlite

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/testutil/syncbuf"
)

// windowCorpus is the random Patient and Observation corpus of
// TestIndexAgreesWithMatch, with what the store should hold.
type windowCorpus struct {
	t      *testing.T
	s      *Store
	g      *corpusGen
	bodies map[string][]byte    // "Type/id" -> current body
	source map[string]time.Time // "Type/id" -> SourceLastUpdated
}

const windowCorpusN = 160

func newWindowCorpus(t *testing.T, s *Store, seed uint64) *windowCorpus {
	return &windowCorpus{t: t, s: s, g: &corpusGen{r: rand.New(rand.NewPCG(seed, 11))}, bodies: map[string][]byte{}, source: map[string]time.Time{}}
}

func (c *windowCorpus) newWrite(i int) store.ResourceWrite {
	if i%2 == 0 {
		id := fmt.Sprint("pat-", i/2)
		w := store.ResourceWrite{ResourceType: "Patient", ID: id, Body: c.g.patient(id, i%10 != 0)}
		if i%10 == 0 {
			w.SourceLastUpdated = time.Date(2025, 2, 11, 10, 0, 0, 0, time.UTC).Add(time.Duration(c.g.r.IntN(3)) * time.Millisecond)
		}
		return w
	}
	id := fmt.Sprint("obs-", i/2)
	return store.ResourceWrite{ResourceType: "Observation", ID: id, Body: c.g.observation(id)}
}

func (c *windowCorpus) write(ws []store.ResourceWrite) {
	c.t.Helper()
	// Small batches, so the bulk buffer fills between them.
	for len(ws) > 0 {
		n := min(len(ws), 25)
		if _, err := c.s.WriteResources(context.Background(), "p1", ws[:n]); err != nil {
			c.t.Fatal(err)
		}
		for _, w := range ws[:n] {
			key := w.ResourceType + "/" + w.ID
			if w.Deleted {
				delete(c.bodies, key)
				continue
			}
			c.bodies[key] = w.Body
			c.source[key] = w.SourceLastUpdated
		}
		ws = ws[n:]
	}
}

func (c *windowCorpus) create() {
	var ws []store.ResourceWrite
	for i := range windowCorpusN {
		ws = append(ws, c.newWrite(i))
	}
	c.write(ws)
}

// round updates, deletes and re-creates random resources, some twice in a
// batch.
func (c *windowCorpus) round() {
	var ws []store.ResourceWrite
	for range 60 {
		i := c.g.r.IntN(windowCorpusN)
		w := c.newWrite(i)
		if _, live := c.bodies[w.ResourceType+"/"+w.ID]; live && c.g.r.IntN(5) == 0 {
			w = store.ResourceWrite{ResourceType: w.ResourceType, ID: w.ID, Deleted: true}
		}
		ws = append(ws, w)
		if c.g.r.IntN(10) == 0 {
			ws = append(ws, c.newWrite(i))
		}
	}
	c.write(ws)
}

// check runs every query of indexQueries under the default and the tiny
// planner limits, and compares with searchparam.Match over the bodies.
func (c *windowCorpus) check(round string) {
	c.t.Helper()
	s := c.s
	for _, l := range []limits{defaultLimits(), {setCap: 2, minGap: 1, maxRanges: 2}} {
		s.idx.limits = l
		s.idx.plans.clear()
		for _, q := range indexQueries {
			params := parseQuery(c.t, q.rt, q.q)
			want := expectedSearch(c.t, q.rt, c.bodies, c.source, params)
			for _, count := range []int{7, 1000} {
				got, total := pageAll(c.t, s, q.rt, params, count)
				if !equalIDs(got, want) || total != len(want) {
					c.t.Fatalf("%s, setCap %d, %s?%s count %d:\n got %v (total %d)\nwant %v", round, l.setCap, q.rt, q.q, count, got, total, want)
				}
			}
		}
	}
	s.idx.limits = defaultLimits()
}

func equalIDs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// postingsAgree checks that the postings in Pebble are exactly those the
// order values (every live resource's entries) call for, values included:
// no stale posting, none missing.
func postingsAgree(t *testing.T, s *Store) {
	t.Helper()
	ix := s.idx
	ix.bulk.mu.Lock() // no apply meanwhile
	defer ix.bulk.mu.Unlock()
	if len(ix.bulk.runs) != 0 || len(ix.bulk.buf.kv) != 0 || len(ix.bulk.colls) != 0 {
		t.Fatalf("deferred postings left: %d runs, %d buffered, %d collections", len(ix.bulk.runs), len(ix.bulk.buf.kv), len(ix.bulk.colls))
	}
	got := scanPostings(t, s)
	want := map[string]string{}
	var arena []byte
	for _, c := range ix.collections("p1") {
		prefix := collPrefix(nil, tagOrder, c.id)
		it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: successor(prefix)})
		if err != nil {
			t.Fatal(err)
		}
		for valid := it.First(); valid; valid = it.Next() {
			k := it.Key()[len(prefix):]
			lu := unsortable(binary.BigEndian.Uint64(k))
			id, _, _ := readEsc(k[8:])
			seq, n := binary.Uvarint(it.Value())
			es, err := decodeEntries(it.Value()[n:], ix.view(), string(id), nil, &arena)
			if err != nil {
				t.Fatal(err)
			}
			codes, err := ix.codeEntries(nil, es)
			if err != nil {
				t.Fatal(err)
			}
			for i := range es {
				if !c.posted(&es[i]) {
					continue
				}
				key, err := ix.postingKey(nil, c, &es[i], &codes[i], lu, string(id))
				if err != nil {
					t.Fatal(err)
				}
				want[string(key)] = string(binary.AppendUvarint(nil, seq))
			}
		}
		it.Close()
	}
	if len(want) == 0 {
		t.Fatal("no postings expected: the corpus is empty")
	}
	for k, v := range got {
		if w, ok := want[k]; !ok {
			t.Errorf("stale posting %x", k)
		} else if w != v {
			t.Errorf("posting %x has seq %x, want %x", k, v, w)
		}
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("missing posting %x", k)
		}
	}
}

// scanPostings returns every posting key and value in Pebble.
func scanPostings(t *testing.T, s *Store) map[string]string {
	t.Helper()
	it, err := s.idx.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagPosting}, UpperBound: []byte{tagPosting + 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	out := map[string]string{}
	for valid := it.First(); valid; valid = it.Next() {
		out[string(it.Key())] = string(it.Value())
	}
	return out
}

func waitIdx(t *testing.T, s *Store) {
	t.Helper()
	if err := s.waitIndexed(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// runsSpilled returns how many runs are waiting to be merged.
func runsSpilled(s *Store) int {
	s.idx.bulk.mu.Lock()
	defer s.idx.bulk.mu.Unlock()
	return len(s.idx.bulk.runs)
}

// TestBulkIndexAgreesWithMatch loads the corpus of TestIndexAgreesWithMatch
// inside a bulk window, with a buffer small enough to spill many runs, and
// checks every search against the matcher and every posting against the
// order values after the window ends; and in variants: resources indexed
// before the window and updated or deleted in it (their old postings are in
// Pebble), and a search in the middle of the window.
func TestBulkIndexAgreesWithMatch(t *testing.T) {
	for _, tc := range []struct {
		name          string
		postedBefore  bool // the corpus is created before the window
		searchMidway  bool
		spelledOutSub bool
	}{
		{name: "all in window"},
		{name: "all in window, spelled-out subs", spelledOutSub: true},
		{name: "posted before", postedBefore: true},
		{name: "search midway", searchMidway: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.spelledOutSub {
				defer func(n int) { maxSubs = n }(maxSubs)
				maxSubs = 2
			}
			ctx := context.Background()
			s, _ := openTemp(t)
			defer func() { s.Close() }()
			s.idx.bulk.limit = 4 << 10
			c := newWindowCorpus(t, s, 7)
			if tc.postedBefore {
				c.create()
				c.check("before the window")
			}
			end := s.BeginBulkLoad("p1")
			if !tc.postedBefore {
				c.create()
				waitIdx(t, s)
				if n := len(scanPostings(t, s)); n != 0 {
					t.Fatalf("%d postings in Pebble during the window, want them all deferred", n)
				}
			}
			c.round()
			waitIdx(t, s)
			if n := runsSpilled(s); n < 3 {
				t.Fatalf("%d runs spilled, want several", n)
			}
			var midway bulkStats
			if tc.searchMidway {
				c.check("midway")
				if n := runsSpilled(s); n != 0 {
					t.Fatalf("%d runs left after a search", n)
				}
				midway = s.idx.bulk.lastMerge
			}
			c.round()
			c.round()
			if err := end(ctx); err != nil {
				t.Fatal(err)
			}
			if err := end(ctx); err != nil { // a second call does nothing
				t.Fatal(err)
			}
			if tc.searchMidway {
				// Both types were searched: the rest of the window wrote
				// directly, and end had nothing to merge.
				if st := s.idx.bulk.lastMerge; st != midway || st.runs < 3 {
					t.Errorf("merges: midway %+v, last %+v", midway, st)
				}
			} else if st := s.idx.bulk.lastMerge; st.runs < 3 || st.tables < 2 {
				// Patients and Observations are two collections: two tables at least.
				t.Errorf("last merge %+v: want several runs and a table per collection", st)
			}
			c.check("after the window")
			postingsAgree(t, s)

			// After the window, writes go to Pebble directly again.
			c.round()
			waitIdx(t, s)
			if n := runsSpilled(s); n != 0 || s.idx.bulk.size() != 0 {
				t.Fatalf("writes after the window were deferred (%d runs)", n)
			}
			c.check("after a round past the window")
			postingsAgree(t, s)
		})
	}
}

// TestBulkSearchMidwayStopsDeferral: a search of a collection during a
// window merges what was deferred and keeps that collection's postings
// direct until the window closes; another collection stays deferred.
func TestBulkSearchMidwayStopsDeferral(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	defer func() { s.Close() }()
	c := newWindowCorpus(t, s, 3)
	end := s.BeginBulkLoad("p1")
	c.create()
	waitIdx(t, s)
	pat, obs := s.idx.coll("p1", "Patient"), s.idx.coll("p1", "Observation")
	if !pat.bulkDeferred.Load() || !obs.bulkDeferred.Load() {
		t.Fatal("collections not deferred in the window")
	}
	c.check("midway") // searches both types
	if pat.bulkDeferred.Load() || !pat.bulkNoDefer.Load() {
		t.Fatal("a searched collection is still deferred")
	}
	c.round()
	waitIdx(t, s)
	if pat.bulkDeferred.Load() || obs.bulkDeferred.Load() {
		t.Fatal("searched collections deferred again in the same window")
	}
	if err := end(ctx); err != nil {
		t.Fatal(err)
	}
	if pat.bulkNoDefer.Load() {
		t.Fatal("the window closed but the collection keeps its mark")
	}
	// A new window defers again.
	end = s.BeginBulkLoad("p1")
	c.round()
	waitIdx(t, s)
	if !pat.bulkDeferred.Load() {
		t.Fatal("a new window does not defer")
	}
	// Another practice's window does not defer p1.
	end2 := s.BeginBulkLoad("p2")
	if err := end(ctx); err != nil {
		t.Fatal(err)
	}
	c.round()
	waitIdx(t, s)
	if pat.bulkDeferred.Load() {
		t.Fatal("p1 deferred in p2's window")
	}
	if err := end2(ctx); err != nil {
		t.Fatal(err)
	}
	c.check("after")
	postingsAgree(t, s)
}

// TestBulkCloseWithoutEnd: Close merges what a window deferred, and the
// end called after Close does nothing.
func TestBulkCloseWithoutEnd(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	s.idx.bulk.limit = 4 << 10
	c := newWindowCorpus(t, s, 5)
	end := s.BeginBulkLoad("p1")
	c.create()
	c.round()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := end(ctx); err != nil {
		t.Fatalf("end after Close: %v", err)
	}
	s2, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	c.s = s2
	c.check("reopened")
	postingsAgree(t, s2)
}

// TestBulkLoadCrashRebuildsPostings crashes a store in a bulk window (its
// runs and buffer are lost, and so is the index's unflushed tail): the next
// Open rebuilds the deferred collections' postings from their order values
// and catches up the rest, and searches and postings agree.
func TestBulkLoadCrashRebuildsPostings(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	mem := vfs.NewCrashableMem()
	s, err := Open(ctx, path, Options{indexFS: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	s.idx.bulk.limit = 4 << 10
	c := newWindowCorpus(t, s, 9)
	c.create() // posted directly
	waitIdx(t, s)
	if err := s.idx.db.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = s.BeginBulkLoad("p1") // never ended
	c.round()
	c.round()
	waitIdx(t, s)
	if runsSpilled(s) == 0 {
		t.Fatal("no runs spilled")
	}
	if err := s.idx.db.Flush(); err != nil { // the meta key is on disk
		t.Fatal(err)
	}
	c.round() // the tail: lost with the memtables
	waitIdx(t, s)
	crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	var logs syncbuf.Buffer
	s, err = Open(ctx, path, Options{indexFS: crashed, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "postings of an interrupted bulk load rebuilt") {
		t.Fatalf("no rebuild on Open; log:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "search index caught up") {
		t.Fatalf("the lost tail was not caught up; log:\n%s", logs.String())
	}
	it, err := s.idx.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagMeta, metaBulk}, UpperBound: []byte{tagMeta, metaBulk + 1}})
	if err != nil {
		t.Fatal(err)
	}
	if it.First() {
		t.Error("deferral meta key left after the rebuild")
	}
	it.Close()
	if ls, err := crashed.List(s.idx.bulk.dir); err == nil && len(ls) != 0 {
		t.Errorf("leftover runs after Open: %v", ls)
	}
	c.s = s
	c.check("after the crash")
	postingsAgree(t, s)
}
