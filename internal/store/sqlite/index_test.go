package sqlite

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/mediflow/mediflow/internal/fhir/searchparam"
	"github.com/mediflow/mediflow/internal/store"
)

// corpusGen makes random resources whose search values collide often:
// few names, codes and dates, equal lastUpdated values, open and inverted
// periods, references of several types.
type corpusGen struct {
	r *rand.Rand
}

func (g *corpusGen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

func (g *corpusGen) lastUpdated() string {
	return fmt.Sprintf("2025-0%d-1%dT10:00:0%d.000Z", 1+g.r.IntN(3), g.r.IntN(3), g.r.IntN(2))
}

func (g *corpusGen) when() string {
	switch g.r.IntN(4) {
	case 0:
		return g.pick("2024", "2025", "2023")
	case 1:
		return g.pick("2024-03", "2024-12", "2025-01")
	case 2:
		return g.pick("2024-03-10", "2024-03-11", "2025-01-01", "2023-12-31")
	}
	return g.pick("2024-03-10T08:30:00Z", "2024-03-10T23:59:59Z", "2025-01-01T00:00:00+02:00", "2024-03-10T08:30:00.250Z")
}

func (g *corpusGen) ref() string {
	switch g.r.IntN(6) {
	case 0:
		return "Group/g" + fmt.Sprint(g.r.IntN(2))
	case 1:
		return "p" + fmt.Sprint(g.r.IntN(5)) // no type
	case 2:
		return "urn:uuid:p" + fmt.Sprint(g.r.IntN(5))
	}
	return "Patient/p" + fmt.Sprint(g.r.IntN(5))
}

func (g *corpusGen) patient(id string, withMeta bool) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"resourceType":"Patient","id":%q`, id)
	if withMeta {
		fmt.Fprintf(&b, `,"meta":{"lastUpdated":%q}`, g.lastUpdated())
	}
	fmt.Fprintf(&b, `,"name":[{"family":%q,"given":[%q]}]`, g.pick("Smith", "smith", "Smyth", "Müller", "Muller", "García", "Lee", "Leeson", "O'Neil"), g.pick("Anna", "Ann", "Jo", "José", "Zoë"))
	if g.r.IntN(4) > 0 {
		fmt.Fprintf(&b, `,"gender":%q`, g.pick("male", "female", "other"))
	}
	if g.r.IntN(5) > 0 {
		fmt.Fprintf(&b, `,"birthDate":%q`, g.pick("1980", "1980-05", "1980-05-17", "1975-12-31", "2001-01-01", "1600-02-29"))
	}
	fmt.Fprintf(&b, `,"identifier":[{"system":%q,"value":%q}]`, g.pick("urn:mrn", "urn:ssn"), fmt.Sprint(g.r.IntN(6)))
	if g.r.IntN(2) == 0 {
		fmt.Fprintf(&b, `,"generalPractitioner":[{"reference":%q}]`, g.pick("Practitioner/d1", "Practitioner/d2", "Organization/o1"))
	}
	b.WriteString("}")
	return []byte(b.String())
}

func (g *corpusGen) observation(id string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"resourceType":"Observation","id":%q,"meta":{"lastUpdated":%q},"status":%q`, id, g.lastUpdated(), g.pick("final", "amended", "preliminary"))
	fmt.Fprintf(&b, `,"code":{"coding":[{"system":"http://loinc.org","code":%q}`, g.pick("8867-4", "8480-6", "29463-7"))
	if g.r.IntN(3) == 0 {
		fmt.Fprintf(&b, `,{"system":"http://snomed.info/sct","code":%q}`, g.pick("8867-4", "271649006"))
	}
	b.WriteString("]}")
	if g.r.IntN(5) > 0 {
		ref := g.ref()
		if strings.HasPrefix(ref, "p") && g.r.IntN(2) == 0 {
			fmt.Fprintf(&b, `,"subject":{"reference":%q,"type":"Patient"}`, ref)
		} else {
			fmt.Fprintf(&b, `,"subject":{"reference":%q}`, ref)
		}
	}
	switch g.r.IntN(5) {
	case 0: // none
	case 1:
		start, end := g.when(), g.when()
		switch g.r.IntN(3) {
		case 0:
			fmt.Fprintf(&b, `,"effectivePeriod":{"start":%q}`, start) // open end
		case 1:
			fmt.Fprintf(&b, `,"effectivePeriod":{"end":%q}`, end) // open start
		default:
			fmt.Fprintf(&b, `,"effectivePeriod":{"start":%q,"end":%q}`, start, end) // may be inverted
		}
	default:
		fmt.Fprintf(&b, `,"effectiveDateTime":%q`, g.when())
	}
	if g.r.IntN(3) == 0 {
		fmt.Fprintf(&b, `,"valueString":%q`, g.pick("High", "high-ish", "Normal"))
	}
	b.WriteString("}")
	return []byte(b.String())
}

// indexQueries cover every driver: spans (token, reference, narrowed
// reference), sets (string, date, system-only token, :missing=false), _id,
// _lastUpdated, the order table (:missing=true, :contains, nothing), and
// combinations.
var indexQueries = []struct{ rt, q string }{
	{"Patient", ""},
	{"Patient", "family=smi"},
	{"Patient", "family=m"},
	{"Patient", "name=l,s"},
	{"Patient", "family:exact=Müller"},
	{"Patient", "family:contains=ll"},
	{"Patient", "given=jo"},
	{"Patient", "gender=female"},
	{"Patient", "gender=male,other"},
	{"Patient", "gender:missing=true"},
	{"Patient", "gender:missing=false"},
	{"Patient", "gender=female&family=smi"},
	{"Patient", "identifier=urn:mrn|3"},
	{"Patient", "identifier=3"},
	{"Patient", "identifier=urn:ssn|"},
	{"Patient", "birthdate=1980"},
	{"Patient", "birthdate=1980-05-17"},
	{"Patient", "birthdate=ge1980-05-17"},
	{"Patient", "birthdate=gt1980-05"},
	{"Patient", "birthdate=lt1980-05-17"},
	{"Patient", "birthdate=le1975-12-31"},
	{"Patient", "birthdate=sa1980"},
	{"Patient", "birthdate=eb1980-05-17"},
	{"Patient", "birthdate=ap1980-05"},
	{"Patient", "birthdate=ne1980"},
	{"Patient", "birthdate=lt1700"},
	{"Patient", "birthdate=ge1980&birthdate=lt2000"},
	{"Patient", "general-practitioner=Practitioner/d1"},
	{"Patient", "general-practitioner=d2"},
	{"Patient", "_id=pat-1,pat-7,pat-40,nope"},
	{"Patient", "_lastUpdated=ge2025-02-11"},
	{"Patient", "_lastUpdated=lt2025-02"},
	{"Patient", "_lastUpdated=2025-01-10T10:00:01Z"},
	{"Patient", "_lastUpdated=ap2025-02-11&gender=male"},
	{"Patient", "_id=pat-3&family=s"},
	{"Observation", ""},
	{"Observation", "code=8867-4"},
	{"Observation", "code=http://loinc.org|8867-4"},
	{"Observation", "code=http://snomed.info/sct|"},
	{"Observation", "code=|8867-4"},
	{"Observation", "code=8867-4,29463-7"},
	{"Observation", "status=final"},
	{"Observation", "status=final&code=8480-6"},
	{"Observation", "subject=Patient/p1"},
	{"Observation", "subject=p1"},
	{"Observation", "subject=Group/g0"},
	{"Observation", "subject:Patient=p2"},
	{"Observation", "patient=p1"},
	{"Observation", "patient=p1,p3"},
	{"Observation", "patient:missing=false"},
	{"Observation", "patient:missing=true"},
	{"Observation", "subject:missing=false"},
	{"Observation", "date=2024-03-10"},
	{"Observation", "date=2024"},
	{"Observation", "date=ge2024-03-10"},
	{"Observation", "date=gt2024-03-10T08:30:00Z"},
	{"Observation", "date=lt2024-03"},
	{"Observation", "date=le2024-03-10"},
	{"Observation", "date=sa2024"},
	{"Observation", "date=eb2024-03-11"},
	{"Observation", "date=ap2024-03-10"},
	{"Observation", "date=ne2024-03-10"},
	{"Observation", "date:missing=true"},
	{"Observation", "date=ge2024&code=8867-4"},
	{"Observation", "date=2024-03&patient=p1"},
	{"Observation", "value-string=hi"},
	{"Observation", "value-string:exact=High"},
	{"Observation", "_lastUpdated=ge2025-03&status=final"},
}

// expectedSearch answers a query with searchparam.Match over the bodies,
// ordered by (lastUpdated, id).
func expectedSearch(t *testing.T, rt string, bodies map[string][]byte, source map[string]time.Time, params []store.SearchParam) []string {
	t.Helper()
	type h struct {
		lu int64
		id string
	}
	var hs []h
	for key, b := range bodies {
		typ, id, _ := strings.Cut(key, "/")
		if typ != rt {
			continue
		}
		es, err := searchparam.Extract(rt, b)
		if err != nil {
			t.Fatal(err)
		}
		es, lu := lastUpdatedOf(es, source[key], time.Time{})
		ok := true
		for _, p := range params {
			ok = ok && searchparam.Match(es, p)
		}
		if ok {
			hs = append(hs, h{searchparam.UnixNanos(lu), id})
		}
	}
	sort.Slice(hs, func(i, j int) bool {
		if hs[i].lu != hs[j].lu {
			return hs[i].lu < hs[j].lu
		}
		return hs[i].id < hs[j].id
	})
	out := make([]string, len(hs))
	for i, x := range hs {
		out[i] = x.id
	}
	return out
}

func parseQuery(t *testing.T, rt, q string) []store.SearchParam {
	t.Helper()
	vals, err := url.ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	ps, _, err := searchparam.Parse(rt, vals)
	if err != nil {
		t.Fatalf("%s?%s: %v", rt, q, err)
	}
	return ps
}

// pageAll pages through a search and returns the ids and the total.
func pageAll(t *testing.T, s *Store, rt string, params []store.SearchParam, count int) ([]string, int) {
	t.Helper()
	var ids []string
	total, after := -1, ""
	for range 10000 {
		page, err := s.Search(context.Background(), "p1", store.Query{ResourceType: rt, Params: params, Count: count, After: after})
		if err != nil {
			t.Fatalf("Search: %v", err)
		}
		if total >= 0 && page.Total != total {
			t.Fatalf("total changed between pages: %d, %d", total, page.Total)
		}
		total = page.Total
		for _, r := range page.Resources {
			ids = append(ids, r.ID)
		}
		if page.Next == "" {
			return ids, total
		}
		if len(page.Resources) == 0 {
			t.Fatal("empty page with a next token")
		}
		after = page.Next
	}
	t.Fatal("paging does not end")
	return nil, 0
}

// TestIndexAgreesWithMatch writes rounds of creates, updates, deletes and
// duplicate writes, and after each round checks every query, paged three
// ways, under the default planner limits and under limits that force the
// other drivers (tiny caps: spans and order walks with many ranges; huge
// caps: every set collected), and after reopening the store.
//
// It runs twice: with the sub dictionary as shipped, and with room for only
// two subs, so most token systems and reference types are spelled out in
// postings and entries (the path a source with endless systems takes).
func TestIndexAgreesWithMatch(t *testing.T) {
	t.Run("numbered subs", testIndexAgreesWithMatch)
	t.Run("spelled-out subs", func(t *testing.T) {
		defer func(n int) { maxSubs = n }(maxSubs)
		maxSubs = 2
		testIndexAgreesWithMatch(t)
	})
}

func testIndexAgreesWithMatch(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	defer func() { s.Close() }()
	g := &corpusGen{r: rand.New(rand.NewPCG(7, 11))}
	bodies := map[string][]byte{}    // "Type/id" -> current body
	source := map[string]time.Time{} // "Type/id" -> SourceLastUpdated, for bodies without meta
	variants := []struct {
		name string
		l    limits
	}{
		{"default", defaultLimits()},
		{"tiny", limits{setCap: 2, minGap: 1, maxRanges: 2}},
		{"huge", limits{setCap: 1 << 30, minGap: 1, maxRanges: 1 << 20}},
	}
	check := func(round string) {
		for _, v := range variants {
			s.idx.limits = v.l
			s.idx.plans.clear()
			for _, q := range indexQueries {
				params := parseQuery(t, q.rt, q.q)
				want := expectedSearch(t, q.rt, bodies, source, params)
				for _, count := range []int{1, 7, 1000} {
					if count == 1 && len(want) > 40 {
						continue // long enough with 7 per page
					}
					got, total := pageAll(t, s, q.rt, params, count)
					if !slices.Equal(got, want) || total != len(want) {
						t.Fatalf("%s, %s limits, %s?%s count %d:\n got %v (total %d)\nwant %v", round, v.name, q.rt, q.q, count, got, total, want)
					}
				}
				page, err := s.Search(ctx, "p1", store.Query{ResourceType: q.rt, Params: params, Count: -1})
				if err != nil || page.Total != len(want) || len(page.Resources) != 0 {
					t.Fatalf("%s?%s count -1: total %d, %d resources, %v", q.rt, q.q, page.Total, len(page.Resources), err)
				}
			}
		}
		s.idx.limits = defaultLimits()
	}
	write := func(ws []store.ResourceWrite) {
		t.Helper()
		if _, err := s.WriteResources(ctx, "p1", ws); err != nil {
			t.Fatal(err)
		}
		for _, w := range ws {
			key := w.ResourceType + "/" + w.ID
			if w.Deleted {
				delete(bodies, key)
				continue
			}
			bodies[key] = w.Body
			source[key] = w.SourceLastUpdated
		}
	}
	newWrite := func(i int) store.ResourceWrite {
		if i%2 == 0 {
			id := fmt.Sprint("pat-", i/2)
			w := store.ResourceWrite{ResourceType: "Patient", ID: id, Body: g.patient(id, i%10 != 0)}
			if i%10 == 0 {
				w.SourceLastUpdated = time.Date(2025, 2, 11, 10, 0, 0, 0, time.UTC).Add(time.Duration(g.r.IntN(3)) * time.Millisecond)
			}
			return w
		}
		id := fmt.Sprint("obs-", i/2)
		return store.ResourceWrite{ResourceType: "Observation", ID: id, Body: g.observation(id)}
	}
	const n = 160
	var ws []store.ResourceWrite
	for i := range n {
		ws = append(ws, newWrite(i))
	}
	write(ws)
	check("created")

	for round := range 3 {
		ws = ws[:0]
		for range 60 {
			i := g.r.IntN(n)
			w := newWrite(i)
			key := w.ResourceType + "/" + w.ID
			if _, live := bodies[key]; live && g.r.IntN(5) == 0 {
				w = store.ResourceWrite{ResourceType: w.ResourceType, ID: w.ID, Deleted: true}
			}
			ws = append(ws, w)
			if g.r.IntN(10) == 0 { // the same resource again in the batch
				ws = append(ws, newWrite(i))
			}
		}
		write(ws)
		check(fmt.Sprint("round ", round))
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var err error
	if s, err = Open(ctx, path, Options{}); err != nil {
		t.Fatal(err)
	}
	check("reopened")
	counts, err := s.CountResources(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for key := range bodies {
		typ, _, _ := strings.Cut(key, "/")
		want[typ]++
	}
	if !maps(counts, want) {
		t.Errorf("CountResources %v, want %v", counts, want)
	}
}

func maps(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// indexedIDs returns the ids a family search finds (all Patients written by
// the crash tests have family "Crash").
func indexedIDs(t *testing.T, s *Store) []string {
	t.Helper()
	ids, total := pageAll(t, s, "Patient", []store.SearchParam{{Name: "family", Values: []string{"crash"}}}, 100)
	if total != len(ids) {
		t.Fatalf("total %d for %d ids", total, len(ids))
	}
	slices.Sort(ids)
	return ids
}

func crashPatients(from, to int) []store.ResourceWrite {
	var ws []store.ResourceWrite
	for i := from; i < to; i++ {
		id := fmt.Sprintf("c%03d", i)
		ws = append(ws, store.ResourceWrite{ResourceType: "Patient", ID: id, Body: []byte(fmt.Sprintf(
			`{"resourceType":"Patient","id":%q,"meta":{"lastUpdated":"2025-01-01T00:00:%02dZ"},"name":[{"family":"Crash"}]}`, id, i%60))})
	}
	return ws
}

func idRange(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("c%03d", i))
	}
	return out
}

// failIndex makes the indexer fail its next batches, as a crash between the
// SQLite commit and the index commit would leave them.
func failIndex(s *Store) {
	f := func() error { return errors.New("simulated crash before the index commit") }
	s.beforeIndex.Store(&f)
}

func waitBroken(t *testing.T, s *Store) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !s.queue.broken.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the index update did not fail")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestIndexHealsAfterFailedUpdate: an index update that fails after its
// SQLite commit leaves the versions readable by id and the index as it
// was; the next write catches the index up.
func TestIndexHealsAfterFailedUpdate(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	defer s.Close()
	if _, err := s.WriteResources(ctx, "p1", crashPatients(0, 10)); err != nil {
		t.Fatal(err)
	}
	if err := s.waitIndexed(ctx); err != nil {
		t.Fatal(err)
	}
	failIndex(s)
	if _, err := s.WriteResources(ctx, "p1", crashPatients(10, 20)); err != nil {
		t.Fatal(err)
	}
	waitBroken(t, s)
	s.beforeIndex.Store(nil)
	if got := indexedIDs(t, s); !slices.Equal(got, idRange(0, 10)) {
		t.Errorf("while broken the index serves what it has: %v", got)
	}
	r, err := s.GetResource(ctx, "p1", "Patient", "c015")
	if err != nil || r.Version != 1 {
		t.Fatalf("a stored version not yet indexed is not readable: %+v %v", r, err)
	}
	// Re-writing it is unchanged (the writer knows it is stored).
	res, err := s.WriteResources(ctx, "p1", crashPatients(15, 25))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		want := store.Created
		if i < 5 {
			want = store.Unchanged
		}
		if r.Outcome != want {
			t.Errorf("write %d: %v, want %v", i, r.Outcome, want)
		}
	}
	if got := indexedIDs(t, s); !slices.Equal(got, idRange(0, 25)) {
		t.Errorf("after the next write: %v", got)
	}
	if n, _ := s.CountResources(ctx, "p1"); n["Patient"] != 25 {
		t.Errorf("CountResources: %v", n)
	}
}

// TestIndexCatchesUpOnOpen: a store closed (or crashed) with versions the
// index never received indexes them when it opens.
func TestIndexCatchesUpOnOpen(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	if _, err := s.WriteResources(ctx, "p1", crashPatients(0, 10)); err != nil {
		t.Fatal(err)
	}
	if err := s.waitIndexed(ctx); err != nil {
		t.Fatal(err)
	}
	failIndex(s)
	if _, err := s.WriteResources(ctx, "p1", crashPatients(10, 20)); err != nil {
		t.Fatal(err)
	}
	del := []store.ResourceWrite{{ResourceType: "Patient", ID: "c003", Deleted: true}}
	if _, err := s.WriteResources(ctx, "p1", del); err != nil {
		t.Fatal(err)
	}
	waitBroken(t, s)
	wm := s.idx.watermark.Load()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.idx.watermark.Load() <= wm || s.idx.watermark.Load() != s.nextSeq {
		t.Errorf("watermark %d after open (was %d), want %d", s.idx.watermark.Load(), wm, s.nextSeq)
	}
	want := slices.DeleteFunc(idRange(0, 20), func(id string) bool { return id == "c003" })
	if got := indexedIDs(t, s); !slices.Equal(got, want) {
		t.Errorf("after reopen: %v", got)
	}
	res, err := s.WriteResources(ctx, "p1", crashPatients(12, 13))
	if err != nil || res[0].Outcome != store.Unchanged || res[0].Version != 1 {
		t.Errorf("re-write after catch-up: %+v %v", res, err)
	}
	res, err = s.WriteResources(ctx, "p1", crashPatients(3, 4))
	if err != nil || res[0].Outcome != store.Updated || res[0].Version != 3 {
		t.Errorf("re-create of a deleted resource after catch-up: %+v %v", res, err)
	}
}

// TestIndexRebuiltWhenItDoesNotMatch: an index folder left by another
// database, one deleted, or one whose format changed is rebuilt from
// resource_versions.
func TestIndexRebuiltWhenItDoesNotMatch(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "m.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteResources(ctx, "p1", crashPatients(0, 30)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Another database at the same path, the old index folder still there.
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}
	if s, err = Open(ctx, path, Options{}); err != nil {
		t.Fatal(err)
	}
	if got := indexedIDs(t, s); len(got) != 0 {
		t.Errorf("a new database found %d resources of the old one's index", len(got))
	}
	if _, err := s.WriteResources(ctx, "p1", crashPatients(40, 45)); err != nil {
		t.Fatal(err)
	}
	if got := indexedIDs(t, s); !slices.Equal(got, idRange(40, 45)) {
		t.Errorf("new database: %v", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The index folder deleted.
	if err := os.RemoveAll(IndexDir(path)); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(ctx, path, Options{}); err != nil {
		t.Fatal(err)
	}
	if got := indexedIDs(t, s); !slices.Equal(got, idRange(40, 45)) {
		t.Errorf("rebuilt index: %v", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A different format: the postings are dropped too, so only a rebuild
	// can answer the search.
	db, err := pebble.Open(IndexDir(path), &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: pebbleLog{s.log}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteRange([]byte{tagPosting}, []byte{tagEnd}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte{tagMeta, metaFormat}, []byte("an older format"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(ctx, path, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := indexedIDs(t, s); !slices.Equal(got, idRange(40, 45)) {
		t.Errorf("index of an older format: %v", got)
	}
}

// TestIndexMemoryBounded: the store's Go heap does not grow with the
// number of resources stored. (The design this replaced kept about 600
// bytes per resource in memory: 24 MB for the 40,000 added here.)
func TestIndexMemoryBounded(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "m.db"), Options{BodyCacheMB: -1, CacheMB: 1, IndexCacheMB: 4, IndexMemTableMB: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write := func(from, to int) {
		for i := from; i < to; i += 500 {
			ws := make([]store.ResourceWrite, 0, 500)
			for j := i; j < i+500; j++ {
				id := fmt.Sprint("obs-", j)
				ws = append(ws, store.ResourceWrite{ResourceType: "Observation", ID: id, Body: observationBody(id, j)})
			}
			if _, err := s.WriteResources(ctx, "p1", ws); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.CountResources(ctx, "p1"); err != nil { // waits for the indexer
			t.Fatal(err)
		}
	}
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	warm, added := 20000, 40000
	if raceEnabled {
		warm, added = 10000, 20000 // the old design: +12 MB
	}
	write(0, warm) // caches and pools reach their size
	before := heap()
	write(warm, warm+added)
	after := heap()
	growth := int64(after) - int64(before)
	t.Logf("live heap %d KiB at %d resources, %d KiB at %d (%+d bytes per added resource)", before>>10, warm, after>>10, warm+added, growth/int64(added))
	if growth > 8<<20 {
		t.Errorf("the heap grew by %d MiB for %d resources", growth>>20, added)
	}
}

// TestRangeBuilder: the ranges a counting walk records cover every match,
// never more than maxRanges of them, and keep the largest gaps.
func TestRangeBuilder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		l := limits{minGap: 1 + r.IntN(4), maxRanges: 1 + r.IntN(6)}
		b := &rangeBuilder{limits: l}
		var matches []position
		n := 50 + r.IntN(400)
		for i := range n {
			id := []byte(fmt.Sprintf("%05d", i))
			if r.IntN(10) < 3 || (i/50)%3 == 0 {
				b.match(int64(i/7), id)
				matches = append(matches, position{int64(i / 7), string(id)})
			} else {
				b.miss()
			}
		}
		rs := b.done()
		if len(rs) > l.maxRanges {
			t.Fatalf("trial %d: %d ranges, max %d", trial, len(rs), l.maxRanges)
		}
		for _, m := range matches {
			in := false
			for _, rg := range rs {
				if !posBefore(m.lu, []byte(m.id), rg.start) && !posAfter(m.lu, []byte(m.id), rg.end) {
					in = true
				}
			}
			if !in {
				t.Fatalf("trial %d: match %v outside every range %v", trial, m, rs)
			}
		}
		for i := 1; i < len(rs); i++ {
			if !posAfter(rs[i].start.lu, []byte(rs[i].start.id), rs[i-1].end) {
				t.Fatalf("trial %d: ranges overlap or are out of order: %v", trial, rs)
			}
		}
	}
}

// TestClosedStoreRefusesIndexReads: reads after Close fail cleanly.
func TestClosedStoreRefusesIndexReads(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	if _, err := s.WriteResources(ctx, "p1", crashPatients(0, 3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Search(ctx, "p1", store.Query{ResourceType: "Patient"}); !errors.Is(err, errStoreClosed) {
		t.Errorf("Search after Close: %v", err)
	}
	if _, err := s.GetResource(ctx, "p1", "Patient", "c001"); !errors.Is(err, errStoreClosed) {
		t.Errorf("GetResource after Close: %v", err)
	}
	if _, err := s.CountResources(ctx, "p1"); !errors.Is(err, errStoreClosed) {
		t.Errorf("CountResources after Close: %v", err)
	}
	if _, err := s.WriteResources(ctx, "p1", crashPatients(3, 4)); !errors.Is(err, errStoreClosed) {
		t.Errorf("WriteResources after Close: %v", err)
	}
}

// BenchmarkStoreFootprint measures a store left by `mediflow bench sync
// --dir DIR` in a process of its own: set MEDIFLOW_BENCH_STORE=DIR/bench.db.
// It opens the store, then each iteration runs the API benchmark's two
// searches and a code search; it reports the open time, the resident set
// (VmRSS) and the live heap afterwards. See docs/benchmarks.md.
func BenchmarkStoreFootprint(b *testing.B) {
	path := os.Getenv("MEDIFLOW_BENCH_STORE")
	if path == "" {
		b.Skip("set MEDIFLOW_BENCH_STORE to a store written by mediflow bench sync --dir")
	}
	ctx := context.Background()
	start := time.Now()
	s, err := Open(ctx, path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	open := time.Since(start)
	qs := []store.Query{
		{ResourceType: "Patient", Count: 20},
		{ResourceType: "Observation", Count: 20, Params: []store.SearchParam{{Name: "date", Prefix: "ge", Values: []string{"2026-01-01"}}}},
		{ResourceType: "Observation", Count: 20, Params: []store.SearchParam{{Name: "code", Values: []string{"8867-4"}}}},
	}
	for b.Loop() {
		for _, q := range qs {
			if _, err := s.Search(ctx, "bench", q); err != nil {
				b.Fatal(err)
			}
		}
	}
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	status, _ := os.ReadFile("/proc/self/status")
	var rss float64
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fmt.Sscanf(strings.TrimSpace(v), "%f", &rss)
		}
	}
	n, _ := s.CountResources(ctx, "bench")
	total := 0
	for _, v := range n {
		total += v
	}
	b.ReportMetric(float64(total), "resources")
	b.ReportMetric(open.Seconds()*1000, "open-ms")
	b.ReportMetric(rss/1024, "rss-MiB")
	b.ReportMetric(float64(m.HeapAlloc)/(1<<20), "heap-MiB")
}

// TestIndexLostTailReappliedOnOpen: the index has no write-ahead log and
// commits without fsync, so a crash loses the batches still in its
// memtables. What survives is the index as of an earlier batch, watermark
// included; the next Open re-applies the rest from resource_versions.
func TestIndexLostTailReappliedOnOpen(t *testing.T) {
	for _, unsynced := range []int{0, 50} {
		t.Run(fmt.Sprintf("unsynced-%d%%", unsynced), func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "m.db")
			mem := vfs.NewCrashableMem()
			s, err := Open(ctx, path, Options{indexFS: mem})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { s.Close() }()
			// Durable part: written, indexed and flushed.
			if _, err := s.WriteResources(ctx, "p1", crashPatients(0, 10)); err != nil {
				t.Fatal(err)
			}
			if err := s.waitIndexed(ctx); err != nil {
				t.Fatal(err)
			}
			if err := s.idx.db.Flush(); err != nil {
				t.Fatal(err)
			}
			flushed := s.idx.watermark.Load()
			// Tail: new resources, an update and a deletion, indexed only in
			// the memtable.
			if _, err := s.WriteResources(ctx, "p1", crashPatients(10, 20)); err != nil {
				t.Fatal(err)
			}
			upd := crashPatients(4, 5)
			upd[0].Body = []byte(`{"resourceType":"Patient","id":"c004","meta":{"lastUpdated":"2025-02-01T00:00:00Z"},"name":[{"family":"Moved"}]}`)
			del := store.ResourceWrite{ResourceType: "Patient", ID: "c007", Deleted: true}
			if _, err := s.WriteResources(ctx, "p1", append(upd, del)); err != nil {
				t.Fatal(err)
			}
			if err := s.waitIndexed(ctx); err != nil {
				t.Fatal(err)
			}
			if s.idx.watermark.Load() != s.nextSeq || s.nextSeq <= flushed {
				t.Fatalf("watermark %d, next seq %d, flushed %d", s.idx.watermark.Load(), s.nextSeq, flushed)
			}
			wantSeq := s.nextSeq
			// The crash: the index keeps only what reached its files.
			crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: unsynced, RNG: rand.New(rand.NewPCG(1, uint64(unsynced)))})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			db, err := pebble.Open(IndexDir(path), &pebble.Options{FS: crashed, FormatMajorVersion: pebble.FormatNewest, Logger: pebbleLog{s.log}, DisableWAL: true})
			if err != nil {
				t.Fatal(err)
			}
			raw, closer, err := db.Get([]byte{tagMeta, metaWatermark})
			if err != nil {
				t.Fatal(err)
			}
			lost, ok := decodeTip(raw)
			closer.Close()
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if !ok || lost.seq != flushed {
				t.Fatalf("crashed index has watermark %d, want the flushed %d (the tail must be lost for this test)", lost.seq, flushed)
			}

			s, err = Open(ctx, path, Options{indexFS: crashed})
			if err != nil {
				t.Fatal(err)
			}
			if s.idx.watermark.Load() != wantSeq {
				t.Errorf("watermark %d after open, want %d", s.idx.watermark.Load(), wantSeq)
			}
			want := slices.DeleteFunc(idRange(0, 20), func(id string) bool { return id == "c004" || id == "c007" })
			if got := indexedIDs(t, s); !slices.Equal(got, want) {
				t.Errorf("family=crash after reopen: %v, want %v", got, want)
			}
			ids, _ := pageAll(t, s, "Patient", []store.SearchParam{{Name: "family", Values: []string{"moved"}}}, 10)
			if !slices.Equal(ids, []string{"c004"}) {
				t.Errorf("family=moved after reopen: %v", ids)
			}
			if n, err := s.CountResources(ctx, "p1"); err != nil || n["Patient"] != 19 {
				t.Errorf("CountResources after reopen: %v %v", n, err)
			}
			res, err := s.WriteResources(ctx, "p1", append(crashPatients(15, 16), upd[0]))
			if err != nil || res[0].Outcome != store.Unchanged || res[1].Outcome != store.Unchanged || res[1].Version != 2 {
				t.Errorf("re-writes after reopen: %+v %v", res, err)
			}
			res, err = s.WriteResources(ctx, "p1", crashPatients(7, 8))
			if err != nil || res[0].Outcome != store.Updated || res[0].Version != 3 {
				t.Errorf("re-create of the deleted resource after reopen: %+v %v", res, err)
			}
		})
	}
}
