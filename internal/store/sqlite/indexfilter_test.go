package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/mediflow/mediflow/internal/store"
)

// TestIDFilter: every added id is reported as possibly present (no false
// negatives) while the filter grows through several parts, absent ids are
// mostly reported absent, and a dropped filter answers "maybe" for all and
// returns its bits to the budget.
func TestIDFilter(t *testing.T) {
	before := filterBits.Load()
	f := newIDFilter()
	if f == nil {
		t.Fatal("no filter within the budget")
	}
	const n = 400_000 // seven parts
	for i := range n {
		f.add(fmt.Sprintf("id-%d", i))
	}
	if parts := len(*f.parts.Load()); parts < 7 {
		t.Errorf("%d parts for %d ids: the filter did not grow", parts, n)
	}
	for i := range n {
		if id := fmt.Sprintf("id-%d", i); !f.mayContain(id) {
			t.Fatalf("false negative for %s", id)
		}
	}
	fp := 0
	for i := range n {
		if f.mayContain(fmt.Sprintf("other-%d", i)) {
			fp++
		}
	}
	if rate := float64(fp) / n; rate > 0.02 {
		t.Errorf("false positive rate %.3f, want under 0.02", rate)
	} else {
		t.Logf("false positive rate %.4f", rate)
	}
	if filterBits.Load() <= before {
		t.Error("the filter's bits are not counted")
	}
	f.drop()
	if got := filterBits.Load(); got != before {
		t.Errorf("after drop the budget holds %d bits, want %d", got, before)
	}
	if !f.mayContain("other-1") {
		t.Error("a dropped filter rules out an id")
	}
	f.add("late") // no effect, no panic
	var none *idFilter
	if !none.mayContain("x") {
		t.Error("a nil filter rules out an id")
	}
}

// TestIDFilterBounded: a collection's filter is dropped rather than grown
// past filterMaxBits.
func TestIDFilterBounded(t *testing.T) {
	defer func(m int) { filterMaxBits = m }(filterMaxBits)
	filterMaxBits = 1 << 22
	before := filterBits.Load()
	f := newIDFilter()
	ids := 0
	for f.parts.Load() != nil {
		f.add(fmt.Sprint(ids))
		ids++
		if ids > 2*filterMaxBits/filterBitsPerID {
			t.Fatal("the filter grew past its bound")
		}
	}
	if ids < filterMaxBits/filterBitsPerID/4 {
		t.Errorf("dropped after %d ids, expected room for about %d", ids, filterMaxBits/filterBitsPerID)
	}
	if got := filterBits.Load(); got != before {
		t.Errorf("after the drop the budget holds %d bits, want %d", got, before)
	}
}

// TestIDFilterSkipsLookupsOfNewCollections: a collection created since Open
// has a filter, resources written to it are found (current, and as
// Updated / Unchanged on a re-write), and after reopening (collection loaded
// from disk) lookups still find them without a filter.
func TestIDFilterSkipsLookupsOfNewCollections(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	if _, err := s.WriteResources(ctx, "p1", crashPatients(0, 50)); err != nil {
		t.Fatal(err)
	}
	if err := s.waitIndexed(ctx); err != nil {
		t.Fatal(err)
	}
	c := s.idx.coll("p1", "Patient")
	if c == nil || c.ids == nil || c.ids.parts.Load() == nil {
		t.Fatal("a new collection has no id filter")
	}
	for i := range 50 {
		if _, ok, err := s.idx.current(c, fmt.Sprintf("c%03d", i)); err != nil || !ok {
			t.Fatalf("c%03d not found: %v", i, err)
		}
	}
	if _, ok, err := s.idx.current(c, "absent"); err != nil || ok {
		t.Errorf("absent id found: %v", err)
	}
	check := func() {
		t.Helper()
		res, err := s.WriteResources(ctx, "p1", crashPatients(10, 11))
		if err != nil || res[0].Outcome != store.Unchanged {
			t.Errorf("re-write: %+v %v", res, err)
		}
		res, err = s.WriteResources(ctx, "p1", []store.ResourceWrite{{ResourceType: "Patient", ID: "c020", Deleted: true}})
		if err != nil || res[0].Outcome != store.Updated {
			t.Errorf("delete: %+v %v", res, err)
		}
	}
	check()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(ctx, path, Options{}); err != nil {
		t.Fatal(err)
	}
	if c := s.idx.coll("p1", "Patient"); c == nil || c.ids != nil {
		t.Fatal("a collection loaded from disk must not have a filter (it has not seen its ids)")
	}
	res, err := s.WriteResources(ctx, "p1", crashPatients(30, 31))
	if err != nil || res[0].Outcome != store.Unchanged {
		t.Errorf("re-write after reopen: %+v %v", res, err)
	}
}
