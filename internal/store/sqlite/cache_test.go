package sqlite

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/mediflow/mediflow/internal/store"
)

func TestVersionCacheBudget(t *testing.T) {
	const budget = 64 << 10
	c := newVersionCache(budget)
	body := bytes.Repeat([]byte("x"), 1000)
	for i := int64(1); i <= 500; i++ {
		c.put(&store.Resource{Seq: i, Practice: "p", ResourceType: "Patient", ID: fmt.Sprint(i), Body: body})
		if i%3 == 0 { // keep every third entry referenced
			c.get(i)
		}
		if _, used := c.stats(); used > budget {
			t.Fatalf("after %d puts the cache holds %d bytes, budget %d", i, used, budget)
		}
	}
	n, used := c.stats()
	if n == 0 || used == 0 {
		t.Fatalf("cache is empty after 500 puts: %d entries, %d bytes", n, used)
	}
	if _, ok := c.get(500); !ok {
		t.Error("the newest entry was evicted")
	}
	if _, ok := c.get(1); ok {
		t.Error("the oldest entry survived 500 puts into a budget of ~50")
	}
	// Too large to keep.
	c.put(&store.Resource{Seq: 9999, Body: bytes.Repeat([]byte("y"), budget)})
	if _, ok := c.get(9999); ok {
		t.Error("an entry larger than maxEntry was cached")
	}
	// The cache keeps its own copy of what it is given.
	r := store.Resource{Seq: 10000, Practice: "p", Body: []byte("abc")}
	c.put(&r)
	r.Body[0] = 'z'
	if got, _ := c.get(10000); string(got.Body) != "abc" {
		t.Errorf("cached body changed with the caller's: %q", got.Body)
	}
	var off *versionCache = newVersionCache(0)
	off.put(&r)
	if _, ok := off.get(10000); ok {
		t.Error("a disabled cache returned an entry")
	}
}

// TestCachedReadsAreCopies: resources served from the cache are the same as
// from SQLite, and changing a returned Body does not change later reads.
func TestCachedReadsAreCopies(t *testing.T) {
	ctx := context.Background()
	for _, mb := range []int{0, -1} {
		t.Run(fmt.Sprint("BodyCacheMB=", mb), func(t *testing.T) {
			s, err := Open(ctx, filepath.Join(t.TempDir(), "m.db"), Options{BodyCacheMB: mb})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var ws []store.ResourceWrite
			for i := range 30 {
				id := fmt.Sprint("c", i)
				ws = append(ws, store.ResourceWrite{ResourceType: "Patient", ID: id, Body: patientBody(id, i)})
			}
			if _, err := s.WriteResources(ctx, "p1", ws); err != nil {
				t.Fatal(err)
			}
			q := store.Query{ResourceType: "Patient", Count: 20}
			first, err := s.Search(ctx, "p1", q)
			if err != nil {
				t.Fatal(err)
			}
			want := make([][]byte, len(first.Resources))
			for i, r := range first.Resources {
				want[i] = bytes.Clone(r.Body)
				for j := range r.Body {
					r.Body[j] = '!'
				}
			}
			for round := range 2 {
				again, err := s.Search(ctx, "p1", q)
				if err != nil {
					t.Fatal(err)
				}
				if len(again.Resources) != len(want) {
					t.Fatalf("round %d: %d resources, want %d", round, len(again.Resources), len(want))
				}
				for i, r := range again.Resources {
					if !bytes.Equal(r.Body, want[i]) {
						t.Fatalf("round %d: %s body changed: %.40q", round, r.ID, r.Body)
					}
					if r.ID != first.Resources[i].ID || r.Seq != first.Resources[i].Seq || r.ContentHash != first.Resources[i].ContentHash {
						t.Fatalf("round %d: resource %d differs: %+v", round, i, r)
					}
					got, err := s.GetResource(ctx, "p1", "Patient", r.ID)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got.Body, want[i]) {
						t.Fatalf("GetResource %s: body differs", r.ID)
					}
					got.Body[0] = '!'
				}
			}
			// Another practice never sees a cached version.
			if _, err := s.GetResource(ctx, "p2", "Patient", first.Resources[0].ID); err == nil {
				t.Error("practice p2 read p1's resource")
			}
			if n, _ := s.cache.stats(); (mb < 0) != (n == 0) {
				t.Errorf("BodyCacheMB %d: %d cached entries", mb, n)
			}
		})
	}
}

// TestAuditBatchSizes: batches of every size path (one statement, several
// statements in a transaction) are written whole and in order.
func TestAuditBatchSizes(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	defer s.Close()
	written := 0
	for _, n := range []int{1, 7, auditOneStatement, auditOneStatement + 1, 3*auditOneStatement + 5} {
		evs := make([]store.AuditEvent, n)
		for i := range evs {
			evs[i] = store.AuditEvent{Practice: "p1", Actor: "app:a", Action: "read", Entity: fmt.Sprintf("Patient/%d-%d", n, i), Outcome: "success", Detail: "200"}
		}
		if err := s.Audit(ctx, evs...); err != nil {
			t.Fatalf("batch of %d: %v", n, err)
		}
		written += n
		got, err := s.ListAudit(ctx, "p1", store.AuditFilter{Limit: 10000})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != written {
			t.Fatalf("after a batch of %d: %d events listed, want %d", n, len(got), written)
		}
		// Newest first: the batch's last event leads.
		for i := 0; i < n; i++ {
			if want := fmt.Sprintf("Patient/%d-%d", n, n-1-i); got[i].Entity != want {
				t.Fatalf("batch of %d: event %d is %q, want %q", n, i, got[i].Entity, want)
			}
		}
	}
	// An invalid event fails the whole call and writes nothing.
	bad := []store.AuditEvent{{Practice: "p1", Actor: "a", Action: "read", Entity: "x", Outcome: "success"}, {Actor: "a"}}
	if err := s.Audit(ctx, bad...); err == nil {
		t.Error("an event without a practice was accepted")
	}
	if got, _ := s.ListAudit(ctx, "p1", store.AuditFilter{Limit: 10000}); len(got) != written {
		t.Errorf("%d events after a refused batch, want %d", len(got), written)
	}
}
