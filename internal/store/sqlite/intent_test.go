package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// openAtVersion creates a database with the migrations up to version only,
// as an older mediflow left it.
func openAtVersion(t *testing.T, path string, version int) *sql.DB {
	t.Helper()
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.version > version {
			break
		}
		if _, err := db.Exec(m.sql); err != nil {
			t.Fatalf("migration %s: %v", m.name, err)
		}
		if _, err := db.Exec(`INSERT INTO schema_migrations VALUES (?, ?, 0)`, m.version, m.name); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// TestIntentHeadsMigration: a database with intents queued by a mediflow
// before migration 0006 upgrades, and its queues go on in order.
func TestIntentHeadsMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	db := openAtVersion(t, path, 5)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Patient a: a1 confirmed, a2 claimed (sending, leased for a minute),
	// a3 waiting. Patient b: b1, b2 waiting. n1 (no patient) dead, n2
	// waiting. Another practice's c1 waiting.
	rows := []struct {
		practice, id, patient, status string
		attempts                      int
		next                          time.Duration
	}{
		{"p1", "a1", "Patient/a", "confirmed", 1, 0},
		{"p1", "a2", "Patient/a", "sending", 1, time.Minute},
		{"p1", "b1", "Patient/b", "accepted", 0, 0},
		{"p1", "a3", "Patient/a", "accepted", 0, 0},
		{"p1", "n1", "", "dead", 3, 0},
		{"p1", "b2", "Patient/b", "accepted", 0, 0},
		{"p1", "n2", "", "accepted", 0, 0},
		{"p2", "c1", "Patient/a", "accepted", 0, 0},
	}
	for _, r := range rows {
		key := "p:" + r.patient
		if r.patient == "" {
			key = "i:" + r.id
		}
		if _, err := db.Exec(`INSERT INTO writeback_intents (practice, id, app, idem_key, request_hash, kind, patient, queue_key,
			target_type, target_id, base_version, body, vendor_body, conflict_policy, status, attempts, next_attempt,
			external_id, external_version, last_error, rejection, differences, created_at, updated_at)
			VALUES (?, ?, 'app1', ?, 'h', 'note.create', ?, ?, 'DocumentReference', '', '', x'7b7d', x'7b7d', 'fail', ?, ?, ?,
			'', '', '', '', '[]', ?, ?)`,
			r.practice, r.id, "key-"+r.id, r.patient, key, r.status, r.attempts, t0.Add(r.next).UnixNano(), t0.UnixNano(), t0.UnixNano()); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatalf("opening the old database: %v", err)
	}
	defer s.Close()
	heads := func() []string {
		t.Helper()
		rs, err := s.r.Query(`SELECT practice || '/' || id FROM writeback_intents WHERE head = 1 ORDER BY seq`)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		var out []string
		for rs.Next() {
			var id string
			if err := rs.Scan(&id); err != nil {
				t.Fatal(err)
			}
			out = append(out, id)
		}
		return out
	}
	if got := heads(); !slices.Equal(got, []string{"p1/a2", "p1/b1", "p1/n2", "p2/c1"}) {
		t.Errorf("heads after the upgrade %v, want [p1/a2 p1/b1 p1/n2 p2/c1]", got)
	}
	ctx := context.Background()
	// a2's lease runs: only b1 and n2 are due.
	c, err := s.ClaimIntents(ctx, "p1", t0.Add(time.Second), time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, in := range c.Intents {
		ids = append(ids, in.ID)
	}
	if !slices.Equal(ids, []string{"b1", "n2"}) || !c.NextDue.Equal(t0.Add(time.Minute)) {
		t.Errorf("claimed %v (next due %v), want [b1 n2] and a2's lease end", ids, c.NextDue)
	}
	// a2 finishes: a3 is next; b1 finishes: b2 is next.
	if _, err := s.UpdateIntent(ctx, "p1", "a2", store.IntentUpdate{Attempt: 1, Status: store.IntentConfirmed}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateIntent(ctx, "p1", "b1", store.IntentUpdate{Attempt: 1, Status: store.IntentConfirmed}); err != nil {
		t.Fatal(err)
	}
	c, err = s.ClaimIntents(ctx, "p1", t0.Add(2*time.Second), time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	ids = ids[:0]
	for _, in := range c.Intents {
		ids = append(ids, in.ID)
	}
	if !slices.Equal(ids, []string{"a3", "b2"}) {
		t.Errorf("claimed %v, want [a3 b2]", ids)
	}
	// Opening again applies nothing more.
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestIntentClaimReadsHeadsOnly: the claim queries are answered from the
// index of queue heads, not from the open intents (whose number is the
// backlog).
func TestIntentClaimReadsHeadsOnly(t *testing.T) {
	s, _ := openTemp(t)
	defer s.Close()
	for _, q := range []string{intentHeadsSQL, promoteHeadSQL} {
		rs, err := s.r.Query(`EXPLAIN QUERY PLAN `+q, "p1", 10)
		if q == promoteHeadSQL {
			rs, err = s.w.Query(`EXPLAIN QUERY PLAN `+q, "p1", "p:Patient/1")
		}
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rs.Next() {
			var id, parent, unused int
			var detail string
			if err := rs.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rs.Close()
		text := strings.Join(plan, "; ")
		t.Logf("%s", text)
		if strings.Contains(text, "SCAN") || strings.Contains(text, "TEMP B-TREE") {
			t.Errorf("plan of %.60q… scans or sorts: %s", q, text)
		}
	}
}

// BenchmarkClaimIntents measures one claim of 8 heads and their final
// updates, with backlog intents queued over 200 patients: the cost must
// not grow with the backlog.
func BenchmarkClaimIntents(b *testing.B) {
	for _, backlog := range []int{2000, 20000} {
		b.Run(fmt.Sprintf("backlog=%d", backlog), func(b *testing.B) {
			s, _ := openTemp(b)
			defer s.Close()
			ctx := context.Background()
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			fill := func(from, n int) {
				for i := from; i < from+n; i++ {
					in := store.Intent{Practice: "p1", ID: fmt.Sprintf("i%07d", i), App: "a", IdempotencyKey: fmt.Sprintf("k%07d", i),
						Kind: "note.create", PatientRef: fmt.Sprintf("Patient/%d", i%200), TargetType: "DocumentReference", NextAttempt: t0}
					if _, _, err := s.CreateIntent(ctx, in); err != nil {
						b.Fatal(err)
					}
				}
			}
			fill(0, backlog)
			next := backlog
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c, err := s.ClaimIntents(ctx, "p1", t0.Add(time.Duration(i)*time.Second), time.Minute, 8)
				if err != nil || len(c.Intents) != 8 {
					b.Fatalf("claimed %d: %v", len(c.Intents), err)
				}
				for _, in := range c.Intents {
					if _, err := s.UpdateIntent(ctx, "p1", in.ID, store.IntentUpdate{Attempt: in.Attempts, Status: store.IntentConfirmed}); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				fill(next, 8) // keep the backlog
				next += 8
				b.StartTimer()
			}
		})
	}
}
