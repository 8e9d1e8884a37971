package sqlite

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/mediflow/mediflow/internal/fhir/searchparam"
	"github.com/mediflow/mediflow/internal/sim/gen"
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

// bulkPostings returns the deferred postings of the bulk benchmark's data
// set (the simulator's generator, as mediflow bench bulk exports it) for
// the given number of patients, built as apply builds them in a bulk
// window, in the order it buffers them when the export is loaded type by
// type, each type in the generator's order (patient by patient, so
// references to a patient or an encounter repeat within a run as in the
// real load). Nothing is written to Pebble, so no flush or compaction runs
// behind a benchmark.
func bulkPostings(tb testing.TB, ix *index, patients int) ops {
	tb.Helper()
	var types []string
	byType := map[string][]gen.Resource{}
	if _, err := gen.Generate(gen.Options{Tenant: "p1", Seed: 1, Patients: patients}, gen.Plain{}, func(r gen.Resource) error {
		if byType[r.Type] == nil {
			types = append(types, r.Type)
		}
		byType[r.Type] = append(byType[r.Type], r)
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	var o ops
	var val []byte
	seq := uint64(0)
	for _, rt := range types {
		c := ix.collFor("p1", rt)
		for _, r := range byType[rt] {
			body, err := r.Obj.Bytes()
			if err != nil {
				tb.Fatal(err)
			}
			es, err := searchparam.Extract(r.Type, body)
			if err != nil {
				tb.Fatal(err)
			}
			es, lu := lastUpdatedOf(es, time.Time{}, r.LastUpdated)
			if ix.codes, err = ix.codeEntries(ix.codes[:0], es); err != nil {
				tb.Fatal(err)
			}
			seq++
			val = binary.AppendUvarint(val[:0], seq)
			for k := range es {
				if !c.posted(&es[k]) {
					continue
				}
				k0 := len(o.buf)
				key, err := ix.postingKey(o.key(), c, &es[k], &ix.codes[k], searchparam.UnixNanos(lu), r.ID)
				if err != nil {
					tb.Fatal(err)
				}
				o.set(key, k0, val)
			}
		}
	}
	return o
}

// BenchmarkBulkSpillMerge measures the deferred postings' path of a bulk
// load: the buffer filled with the postings of 6,000 patients (1.1 M keys,
// or $MEDIFLOW_BULK_BENCH_PATIENTS), sorted and spilled as runs of
// bulkBufferBytes, and the runs merged into sstables (not ingested).
// spill-ns/key and merge-ns/key are wall time, the -cpu- metrics the
// process's CPU time (the merge runs two workers). For instruction counts
// that the host's load does not move, run it under valgrind's cachegrind
// with a smaller $MEDIFLOW_BULK_BENCH_PATIENTS, GOMAXPROCS=1 and
// GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off, at two -benchtime counts.
func BenchmarkBulkSpillMerge(b *testing.B) {
	ix, err := openIndex(filepath.Join(b.TempDir(), "ix"), indexOptions{CacheMB: 16, MemTableMB: 8}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer ix.close()
	patients := 6000
	if n, err := strconv.Atoi(os.Getenv("MEDIFLOW_BULK_BENCH_PATIENTS")); err == nil && n > 0 {
		patients = n // smaller, for runs under valgrind
	}
	src := bulkPostings(b, ix, patients)
	bk := &ix.bulk
	var spill, merge, spillCPU, mergeCPU time.Duration
	var keys, tableBytes, runBytes int64
	runs := 0
	for b.Loop() {
		bk.mu.Lock()
		c0, t0 := processCPU(), time.Now()
		for i := range src.kv {
			op := &src.kv[i]
			k0 := len(bk.buf.buf)
			key := append(bk.buf.key(), src.buf[op.k0:op.k1]...)
			if op.del {
				bk.buf.del(key, k0)
			} else {
				bk.buf.set(key, k0, src.buf[op.k1:op.v1])
			}
			if bk.size() >= bk.limit {
				if err := ix.spillBulk(); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := ix.spillBulk(); err != nil {
			b.Fatal(err)
		}
		t1, c1 := time.Now(), processCPU()
		paths, _, err := ix.mergeRuns(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		spillCPU += c1 - c0
		mergeCPU += processCPU() - c1
		spill += t1.Sub(t0)
		merge += t2.Sub(t1)
		keys += int64(len(src.kv))
		runs = len(bk.runs)
		for _, p := range paths {
			if st, err := bk.fs.Stat(p); err == nil {
				tableBytes += st.Size()
			}
			_ = bk.fs.Remove(p)
		}
		for _, r := range bk.runs {
			if st, err := bk.fs.Stat(r.path); err == nil {
				runBytes += st.Size()
			}
			_ = bk.fs.Remove(r.path)
		}
		bk.runs = nil
		bk.mu.Unlock()
	}
	b.ReportMetric(float64(spill.Nanoseconds())/float64(keys), "spill-ns/key")
	b.ReportMetric(float64(merge.Nanoseconds())/float64(keys), "merge-ns/key")
	b.ReportMetric(float64(spillCPU.Nanoseconds())/float64(keys), "spill-cpu-ns/key")
	b.ReportMetric(float64(mergeCPU.Nanoseconds())/float64(keys), "merge-cpu-ns/key")
	b.ReportMetric(float64(tableBytes)/float64(keys), "table-B/key")
	b.ReportMetric(float64(runBytes)/float64(keys), "run-B/key")
	b.ReportMetric(float64(runs), "runs")
	b.ReportMetric(float64(len(src.kv)), "keys")
}

// TestBulkMergeAgreesWithModel spills random operations on keys built to
// stress the merge (long shared prefixes, keys that are prefixes of
// others, zero and 0xff bytes, long keys and values, the same key in many
// runs, groups spanning several blocks) as runs, merges and ingests them,
// and compares the postings with the operations applied in order to a map:
// the newest operation of a key wins, deletes leave nothing.
func TestBulkMergeAgreesWithModel(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	ctx := context.Background()
	var prefixes [][]byte
	for _, coll := range []uint64{1, 2, 300} {
		for _, name := range []uint64{0, 1, 200} {
			prefixes = append(prefixes, binary.AppendUvarint(collPrefix(nil, tagPosting, uint32(coll)), name))
		}
	}
	alphabet := []byte{0, 1, 2, 0x7f, 0x80, 0xff}
	segment := []byte("0123456789abcdefghijklmn")
	randomKey := func(groups int) []byte {
		k := bytes.Clone(prefixes[r.IntN(groups)])
		for n := r.IntN(6); n > 0; n-- {
			switch r.IntN(8) {
			case 0:
				k = append(k, segment[:r.IntN(len(segment))]...)
			case 1:
				if r.IntN(20) == 0 {
					k = append(k, bytes.Repeat([]byte{'x'}, 150+r.IntN(200))...) // varints of two bytes
				}
			default:
				k = append(k, alphabet[r.IntN(len(alphabet))])
			}
		}
		return k
	}
	for trial := range 40 {
		ix, err := openIndex(filepath.Join(t.TempDir(), "ix"), indexOptions{CacheMB: 4, MemTableMB: 4}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		bk := &ix.bulk
		bk.mu.Lock()
		nops, nkeys, groups := 1+r.IntN(400), 1+r.IntN(300), 1+r.IntN(len(prefixes))
		if trial%10 == 9 { // groups of several blocks in every run
			nops, nkeys, groups = 30000, 20000, 2
		}
		keys := make([][]byte, nkeys)
		for i := range keys {
			keys[i] = randomKey(groups)
		}
		spillEvery := 1 + r.IntN(nops)
		model := map[string]string{}
		for i := range nops {
			key := keys[r.IntN(len(keys))]
			k0 := len(bk.buf.buf)
			if r.IntN(4) == 0 {
				bk.buf.del(append(bk.buf.key(), key...), k0)
				delete(model, string(key))
			} else {
				val := binary.AppendUvarint(nil, uint64(i))
				if r.IntN(30) == 0 {
					val = append(val, bytes.Repeat([]byte{'v'}, 200)...)
				}
				bk.buf.set(append(bk.buf.key(), key...), k0, val)
				model[string(key)] = string(val)
			}
			if r.IntN(spillEvery) == 0 {
				if err := ix.spillBulk(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := ix.spillBulk(); err != nil {
			t.Fatal(err)
		}
		runs := len(bk.runs)
		checkRunGroups(t, bk)
		paths, _, err := ix.mergeRuns(ctx)
		if err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		if len(paths) > 0 {
			if err := ix.db.Ingest(ctx, paths); err != nil {
				t.Fatalf("trial %d: %v", trial, err)
			}
		}
		bk.runs = nil
		bk.mu.Unlock()
		got := scanPostings(t, &Store{idx: ix})
		if len(got) != len(model) {
			t.Errorf("trial %d (%d operations, %d runs): %d postings, want %d", trial, nops, runs, len(got), len(model))
		}
		for k, v := range model {
			if g, ok := got[k]; !ok {
				t.Errorf("trial %d: missing %x", trial, k)
			} else if g != v {
				t.Errorf("trial %d: %x = %x, want %x", trial, k, g, v)
			}
		}
		if err := ix.close(); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

// TestOpsSortLongPrefixes checks ops.sort against a stable sort by
// bytes.Compare on inputs the size of a bulk spill's groups, with the key
// shapes its radix sort treats apart: long shared prefixes (its 16-byte
// window moves along them), keys ending at a window's edge or inside a
// shared prefix, keys that are prefixes of others, duplicates (some keys
// hundreds of times), zero bytes.
// The operations must come out whole (the window restored).
func TestOpsSortLongPrefixes(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 13))
	shared := []byte("0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ")
	for trial := range 60 {
		n := r.IntN(5000)
		heads := make([][]byte, 1+r.IntN(6))
		for i := range heads {
			heads[i] = shared[:r.IntN(len(shared))]
			if r.IntN(3) == 0 {
				heads[i] = append(bytes.Clone(heads[i]), byte(r.IntN(3)))
			}
		}
		var o ops
		var keys [][]byte
		dups := 6
		if trial%5 == 4 { // keys written many times (a resource updated again and again in a batch)
			dups = 1
		}
		for i := range n {
			var k []byte
			if i > 8 && r.IntN(dups) == 0 {
				k = keys[r.IntN(8)] // a duplicate
			} else if i > 0 && r.IntN(6) == 0 {
				k = keys[r.IntN(len(keys))] // a duplicate
			} else {
				k = bytes.Clone(heads[r.IntN(len(heads))])
				switch r.IntN(4) {
				case 0: // ends at the edge of a window
					for len(k)%16 != 0 || len(k) == 0 {
						k = append(k, byte(r.IntN(2)))
					}
				case 1:
					for range r.IntN(40) {
						k = append(k, byte(r.IntN(256)))
					}
				default:
					for range r.IntN(6) {
						k = append(k, []byte{0, 1, 0xff}[r.IntN(3)])
					}
				}
				if len(k) == 0 {
					k = []byte{0}
				}
			}
			keys = append(keys, k)
			k0 := len(o.buf)
			if r.IntN(5) == 0 {
				o.del(append(o.key(), k...), k0)
			} else {
				o.set(append(o.key(), k...), k0, []byte{byte(i)})
			}
		}
		want := slices.Clone(o.kv)
		slices.SortStableFunc(want, func(x, y kvOp) int {
			return cmp.Or(bytes.Compare(o.buf[x.k0:x.k1], o.buf[y.k0:y.k1]), cmp.Compare(x.k0, y.k0))
		})
		o.sort(o.kv)
		for i := range o.kv {
			if o.kv[i] != want[i] {
				t.Fatalf("trial %d, %d operations: first difference at %d: %+v %x, want %+v %x", trial, n, i,
					o.kv[i], o.buf[o.kv[i].k0:o.kv[i].k1], want[i], o.buf[want[i].k0:want[i].k1])
			}
		}
	}
}

// BenchmarkOpsSortSpill measures ops.sort on the buffers a bulk load
// spills: the postings of 1,000 patients of the bulk benchmark's data set,
// cut into buffers of bulkBufferBytes.
func BenchmarkOpsSortSpill(b *testing.B) {
	ix, err := openIndex(filepath.Join(b.TempDir(), "ix"), indexOptions{CacheMB: 16, MemTableMB: 8}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer ix.close()
	src := bulkPostings(b, ix, 1000)
	var bufs []ops
	var o ops
	for i := range src.kv {
		op := &src.kv[i]
		k0 := len(o.buf)
		o.set(append(o.key(), src.buf[op.k0:op.k1]...), k0, src.buf[op.k1:op.v1])
		if len(o.buf)+32*len(o.kv) >= bulkBufferBytes {
			bufs = append(bufs, o)
			o = ops{}
		}
	}
	bufs = append(bufs, o)
	var scratch []kvOp
	n := 0
	c0 := processCPU()
	for b.Loop() {
		for i := range bufs {
			o := &bufs[i]
			scratch = append(scratch[:0], o.kv...)
			o.sort(scratch)
			n += len(scratch)
		}
	}
	b.ReportMetric(float64((processCPU()-c0).Nanoseconds())/float64(n), "cpu-ns/key")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/key")
}

// checkRunGroups reads every group of every run on its own and checks that
// its keys have its prefix and increase, and that its raw size is that of
// its keys and values.
func checkRunGroups(t *testing.T, bk *bulkState) {
	t.Helper()
	for _, run := range bk.runs {
		f, err := bk.fs.Open(run.path)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range run.groups {
			r := &runReader{f: f}
			r.r = bufio.NewReader(io.NewSectionReader(f, g.off, g.end-g.off))
			var raw int64
			var prev []byte
			for {
				if err := r.next(); err != nil {
					t.Fatal(err)
				}
				if r.code == codeEnd {
					break
				}
				if !bytes.HasPrefix(r.key, g.prefix) || bytes.Compare(prev, r.key) >= 0 {
					t.Fatalf("%s: key %x after %x in group %x", run.path, r.key, prev, g.prefix)
				}
				prev = append(prev[:0], r.key...)
				raw += int64(len(r.key) + len(r.val))
			}
			if raw != g.raw {
				t.Fatalf("%s: group %x holds %d bytes, recorded %d", run.path, g.prefix, raw, g.raw)
			}
		}
		f.Close()
	}
}
