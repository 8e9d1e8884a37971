// Package simstore is the simulator's in-memory resource store for one
// tenant: versioned resources (history kept) with each version's JSON cached
// as bytes, an index by lastUpdated for incremental searches, and a monotonic
// clock so a new version is never older than any existing one. It is safe for
// concurrent use.
package simstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/sim/gen"
)

// ErrNotFound is returned (wrapped) when a resource or version does not exist.
var ErrNotFound = errors.New("simstore: not found")

// ErrExists is returned (wrapped) by Load when the resource already exists.
var ErrExists = errors.New("simstore: already exists")

// ConflictError is returned when a write's version precondition fails.
type ConflictError struct {
	Current int // the current version id (0 when the resource does not exist)
	Want    int // the version the writer expected
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("simstore: version conflict: current version is %d, precondition wanted %d", e.Current, e.Want)
}

// Version is one immutable version of a resource. Body is the full JSON with
// id and meta.versionId/lastUpdated set; callers must not modify it.
type Version struct {
	ResourceType string
	ID           string
	VersionID    int
	LastUpdated  time.Time
	Body         []byte

	seq   int64
	index atomic.Pointer[any]
	// shift turns VersionID (1, 2, ...) into the number the server shows
	// (Number): 0 normally, -1 for vendors whose versions start at 0.
	shift int
}

// Number is the version number as served (meta.versionId, ETag): VersionID
// on a store with the default base, VersionID-1 on a zero-based one.
func (v *Version) Number() int { return v.VersionID + v.shift }

// ETag is the weak ETag of this version, W/"<versionId as served>".
func (v *Version) ETag() string { return `W/"` + strconv.Itoa(v.Number()) + `"` }

// Index returns a value derived from the body (e.g. search-parameter
// entries), computing it with compute on first use and caching it.
func (v *Version) Index(compute func(body []byte) any) any {
	if p := v.index.Load(); p != nil {
		return *p
	}
	x := compute(v.Body)
	v.index.Store(&x)
	return x
}

type record struct {
	versions []*Version // versions[i].VersionID == i+1
}

func (r *record) current() *Version { return r.versions[len(r.versions)-1] }

type logEntry struct {
	t   int64 // lastUpdated, unix milliseconds
	seq int64
	v   *Version
	rec *record
}

type table struct {
	byID   map[string]*record
	order  []*record // insertion order
	log    []logEntry
	sorted bool
	// byIdent lists, per identifier ("system|value"), the records a
	// version of which carried it: nil until the first lookup by
	// identifier (Query.Identifier) builds it from the log; writes keep it
	// up to date from then on. Candidates only: a query checks the current
	// version with its Match.
	byIdent map[string][]*record
}

// identifierKeys returns the "system|value" keys of a body's identifiers.
func identifierKeys(body []byte) []string {
	var doc struct {
		Identifier []struct {
			System string `json:"system"`
			Value  string `json:"value"`
		} `json:"identifier"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return nil
	}
	keys := make([]string, 0, len(doc.Identifier))
	for _, id := range doc.Identifier {
		if id.System != "" && id.Value != "" {
			keys = append(keys, id.System+"|"+id.Value)
		}
	}
	return keys
}

// indexIdentifiers adds rec under the identifiers of body.
func (t *table) indexIdentifiers(rec *record, body []byte) {
	for _, k := range identifierKeys(body) {
		if l := t.byIdent[k]; !slices.Contains(l, rec) {
			t.byIdent[k] = append(l, rec)
		}
	}
}

// Store holds one tenant's resources.
type Store struct {
	now func() time.Time

	mu     sync.RWMutex
	tables map[string]*table
	lastT  int64 // highest lastUpdated ever assigned or loaded (unix ms)
	seq    int64

	onWrite func(v *Version, created bool) // see SetOnWrite

	shift int // see SetVersionBase
}

// SetVersionBase sets the number served for a resource's first version:
// 1 (the default) or 0 (Oracle Health). VersionID stays 1-based inside the
// store (GetVersion, Precondition.IfMatch, ConflictError); Version.Number,
// ETag and the meta.versionId written into bodies use the base. Call it
// before anything is stored.
func (s *Store) SetVersionBase(base int) {
	s.mu.Lock()
	s.shift = base - 1
	s.mu.Unlock()
}

// VersionBase is the number served for a first version (1 or 0).
func (s *Store) VersionBase() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.shift + 1
}

// SetOnWrite installs fn to be called after every Put and PutObj with the
// new version (not for Load). fn runs with the store's lock held, so calls
// arrive in write order; it must be quick and must not call the Store.
func (s *Store) SetOnWrite(fn func(v *Version, created bool)) {
	s.mu.Lock()
	s.onWrite = fn
	s.mu.Unlock()
}

// New returns an empty store using now as its clock (time.Now when nil).
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{now: now, tables: map[string]*table{}}
}

func (s *Store) table(rt string) *table {
	t := s.tables[rt]
	if t == nil {
		t = &table{byID: map[string]*record{}, sorted: true}
		s.tables[rt] = t
	}
	return t
}

func (s *Store) appendLocked(t *table, rec *record, v *Version) {
	s.seq++
	v.seq = s.seq
	ms := v.LastUpdated.UnixMilli()
	if n := len(t.log); n > 0 && ms < t.log[n-1].t {
		t.sorted = false
	}
	t.log = append(t.log, logEntry{t: ms, seq: v.seq, v: v, rec: rec})
	if t.byIdent != nil {
		t.indexIdentifiers(rec, v.Body)
	}
	if ms > s.lastT {
		s.lastT = ms
	}
}

// Load adds version 1 of a resource whose body already carries its id and
// meta (versionId "1" — "0" on a zero-based store —, lastUpdated). It is the bulk path for generated data:
// the body is stored as given, without parsing.
func (s *Store) Load(rt, id string, lastUpdated time.Time, body []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.table(rt)
	if _, ok := t.byID[id]; ok {
		return fmt.Errorf("load %s/%s: %w", rt, id, ErrExists)
	}
	v := &Version{ResourceType: rt, ID: id, VersionID: 1, LastUpdated: lastUpdated.UTC().Truncate(time.Millisecond), Body: body, shift: s.shift}
	rec := &record{versions: []*Version{v}}
	t.byID[id] = rec
	t.order = append(t.order, rec)
	s.appendLocked(t, rec, v)
	return nil
}

// Precondition constrains a Put.
type Precondition struct {
	// IfMatch, when > 0, requires the current version to be IfMatch.
	IfMatch int
	// MustExist refuses to create a new resource (ErrNotFound).
	MustExist bool
	// MustNotExist refuses to overwrite an existing resource (ErrExists).
	MustNotExist bool
}

// Put writes a new version of resource rt/id with the body's id and
// meta.versionId/lastUpdated set by the store (other meta members are kept).
// It returns the new version and whether it created the resource.
func (s *Store) Put(rt, id string, body []byte, pre Precondition) (*Version, bool, error) {
	obj, err := gen.ParseObj(body)
	if err != nil {
		return nil, false, fmt.Errorf("put %s: %w", rt, err)
	}
	return s.PutObj(rt, id, obj, pre)
}

// PutObj is Put for a resource already parsed; it sets obj's id and meta.
func (s *Store) PutObj(rt, id string, obj *gen.Obj, pre Precondition) (*Version, bool, error) {
	if got := obj.Str("resourceType"); got != rt {
		return nil, false, fmt.Errorf("put %s: body is a %q", rt, got)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.table(rt)
	rec := t.byID[id]
	switch {
	case rec == nil && (pre.MustExist || pre.IfMatch > 0):
		if pre.IfMatch > 0 && !pre.MustExist {
			return nil, false, &ConflictError{Current: 0, Want: pre.IfMatch}
		}
		return nil, false, fmt.Errorf("put %s/%s: %w", rt, id, ErrNotFound)
	case rec != nil && pre.MustNotExist:
		return nil, false, fmt.Errorf("put %s/%s: %w", rt, id, ErrExists)
	case rec != nil && pre.IfMatch > 0 && rec.current().VersionID != pre.IfMatch:
		return nil, false, &ConflictError{Current: rec.current().VersionID, Want: pre.IfMatch}
	}
	vid := 1
	if rec != nil {
		vid = rec.current().VersionID + 1
	}
	ms := s.now().UTC().UnixMilli()
	if ms < s.lastT {
		ms = s.lastT
	}
	lu := time.UnixMilli(ms).UTC()
	obj.SetAfter("resourceType", "id", id)
	meta := obj.Child("meta")
	if meta == nil {
		meta = gen.NewObj()
	}
	meta.Delete("versionId")
	meta.Delete("lastUpdated")
	nm := gen.O("versionId", strconv.Itoa(vid+s.shift), "lastUpdated", fhir.FormatInstant(lu))
	for _, k := range meta.Keys() {
		v, _ := meta.Get(k)
		nm.Set(k, v)
	}
	obj.Delete("meta")
	obj.SetAfter("id", "meta", nm)
	out, err := obj.Bytes()
	if err != nil {
		return nil, false, fmt.Errorf("put %s/%s: %w", rt, id, err)
	}
	v := &Version{ResourceType: rt, ID: id, VersionID: vid, LastUpdated: lu, Body: out, shift: s.shift}
	created := rec == nil
	if created {
		rec = &record{}
		t.byID[id] = rec
		t.order = append(t.order, rec)
	}
	rec.versions = append(rec.versions, v)
	s.appendLocked(t, rec, v)
	if s.onWrite != nil {
		s.onWrite(v, created)
	}
	return v, created, nil
}

// Get returns the current version of rt/id.
func (s *Store) Get(rt, id string) (*Version, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.tables[rt]
	if t == nil {
		return nil, false
	}
	rec := t.byID[id]
	if rec == nil {
		return nil, false
	}
	return rec.current(), true
}

// GetVersion returns version vid of rt/id.
func (s *Store) GetVersion(rt, id string, vid int) (*Version, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.tables[rt]
	if t == nil {
		return nil, false
	}
	rec := t.byID[id]
	if rec == nil || vid < 1 || vid > len(rec.versions) {
		return nil, false
	}
	return rec.versions[vid-1], true
}

// History returns all versions of rt/id, newest first.
func (s *Store) History(rt, id string) []*Version {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.tables[rt]
	if t == nil || t.byID[id] == nil {
		return nil
	}
	vs := t.byID[id].versions
	out := make([]*Version, len(vs))
	for i, v := range vs {
		out[len(vs)-1-i] = v
	}
	return out
}

// Len is the number of resources of type rt.
func (s *Store) Len(rt string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if t := s.tables[rt]; t != nil {
		return len(t.order)
	}
	return 0
}

// Nth returns the current version of the i-th resource of type rt in
// insertion order (for deterministic picks).
func (s *Store) Nth(rt string, i int) (*Version, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.tables[rt]
	if t == nil || i < 0 || i >= len(t.order) {
		return nil, false
	}
	return t.order[i].current(), true
}

// Counts returns the number of resources per type.
func (s *Store) Counts() map[string]int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]int, len(s.tables))
	for rt, t := range s.tables {
		if len(t.order) > 0 {
			out[rt] = len(t.order)
		}
	}
	return out
}

// Current returns id → current JSON for every resource of type rt.
func (s *Store) Current(rt string) map[string][]byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.tables[rt]
	if t == nil {
		return map[string][]byte{}
	}
	out := make(map[string][]byte, len(t.byID))
	for id, rec := range t.byID {
		out[id] = rec.current().Body
	}
	return out
}

// Range selects versions by lastUpdated: From (inclusive) to To (exclusive),
// in unix milliseconds; zero values mean unbounded.
type Range struct {
	From, To int64
}

// Query selects current versions of one type.
type Query struct {
	Range Range
	// Desc sorts newest first (default oldest first, by lastUpdated then write order).
	Desc bool
	// Match filters versions; nil accepts all.
	Match func(*Version) bool
	// Identifier, when set ("system|value"), narrows the versions looked
	// at to the resources that carry that identifier, found in an index
	// instead of a scan of the type (Match still decides). A search or a
	// conditional create by identifier then costs the same however many
	// resources the type holds.
	Identifier string
}

// Snapshot returns the current versions of type rt that match q, in
// lastUpdated order, as of the moment of the call. The slice is the caller's.
func (s *Store) Snapshot(rt string, q Query) []*Version {
	if q.Identifier != "" {
		return s.snapshotByIdentifier(rt, q)
	}
	s.ensureSorted(rt)
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.tables[rt]
	if t == nil {
		return nil
	}
	lo, hi := 0, len(t.log)
	if q.Range.From != 0 {
		lo = sort.Search(len(t.log), func(i int) bool { return t.log[i].t >= q.Range.From })
	}
	if q.Range.To != 0 {
		hi = sort.Search(len(t.log), func(i int) bool { return t.log[i].t >= q.Range.To })
	}
	if hi < lo {
		return nil
	}
	var out []*Version
	visit := func(e logEntry) {
		if e.rec.current() != e.v {
			return // superseded by a later version
		}
		if q.Match != nil && !q.Match(e.v) {
			return
		}
		out = append(out, e.v)
	}
	if q.Desc {
		for i := hi - 1; i >= lo; i-- {
			visit(t.log[i])
		}
	} else {
		for i := lo; i < hi; i++ {
			visit(t.log[i])
		}
	}
	return out
}

// snapshotByIdentifier is Snapshot for a query with an Identifier.
func (s *Store) snapshotByIdentifier(rt string, q Query) []*Version {
	s.mu.RLock()
	t := s.tables[rt]
	if t != nil && t.byIdent == nil {
		s.mu.RUnlock()
		s.mu.Lock()
		if t.byIdent == nil {
			t.byIdent = map[string][]*record{}
			for _, e := range t.log {
				t.indexIdentifiers(e.rec, e.v.Body)
			}
		}
		s.mu.Unlock()
		s.mu.RLock()
	}
	defer s.mu.RUnlock()
	if t == nil {
		return nil
	}
	var out []*Version
	for _, rec := range t.byIdent[q.Identifier] {
		v := rec.current()
		ms := v.LastUpdated.UnixMilli()
		if (q.Range.From != 0 && ms < q.Range.From) || (q.Range.To != 0 && ms >= q.Range.To) {
			continue
		}
		if q.Match != nil && !q.Match(v) {
			continue
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.LastUpdated.Equal(b.LastUpdated) {
			return a.LastUpdated.Before(b.LastUpdated) != q.Desc
		}
		return (a.seq < b.seq) != q.Desc
	})
	return out
}

func (s *Store) ensureSorted(rt string) {
	s.mu.RLock()
	t := s.tables[rt]
	ok := t == nil || t.sorted
	s.mu.RUnlock()
	if ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.sorted {
		return
	}
	sort.Slice(t.log, func(i, j int) bool {
		if t.log[i].t != t.log[j].t {
			return t.log[i].t < t.log[j].t
		}
		return t.log[i].seq < t.log[j].seq
	})
	t.sorted = true
}

// Now returns the time the next write would be stamped with (monotonic:
// never earlier than any stored lastUpdated).
func (s *Store) Now() time.Time {
	ms := s.now().UTC().UnixMilli()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if ms < s.lastT {
		ms = s.lastT
	}
	return time.UnixMilli(ms).UTC()
}
