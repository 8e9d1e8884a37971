package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/store"
)

func pragmaInt(t *testing.T, db *sql.DB, name string) int64 {
	t.Helper()
	var v int64
	if err := db.QueryRow(`PRAGMA ` + name).Scan(&v); err != nil {
		t.Fatalf("PRAGMA %s: %v", name, err)
	}
	return v
}

// A store creates its database with 16 KiB pages in WAL mode, and sizes
// the commit-time checkpoint threshold in bytes, not pages.
func TestNewStoreUsesLargePages(t *testing.T) {
	s, _ := openTemp(t)
	defer s.Close()
	if got := pragmaInt(t, s.w, "page_size"); got != pageSize {
		t.Fatalf("page_size = %d, want %d", got, pageSize)
	}
	var mode string
	if err := s.w.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || !strings.EqualFold(mode, "wal") {
		t.Fatalf("journal_mode = %q (%v), want wal", mode, err)
	}
	if got := pragmaInt(t, s.w, "wal_autocheckpoint"); got != walMaxBytes/pageSize {
		t.Fatalf("wal_autocheckpoint = %d, want %d", got, walMaxBytes/pageSize)
	}
}

// A database created with SQLite's default 4 KiB pages (every store made
// before the change) keeps them, and works as before.
func TestExistingDatabaseKeepsItsPageSize(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	for _, q := range []string{`PRAGMA page_size = 4096`, `PRAGMA journal_mode = WAL`, `CREATE TABLE before_upgrade (x INTEGER)`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := pragmaInt(t, s.w, "page_size"); got != 4096 {
		t.Fatalf("page_size = %d, want the existing 4096", got)
	}
	if got := pragmaInt(t, s.w, "wal_autocheckpoint"); got != walMaxBytes/4096 {
		t.Fatalf("wal_autocheckpoint = %d, want %d", got, walMaxBytes/4096)
	}
	if _, err := s.WriteResources(ctx, "p1", []store.ResourceWrite{{ResourceType: "Patient", ID: "a", Body: patientBody("a", 1)}}); err != nil {
		t.Fatal(err)
	}
	r, err := s.GetResource(ctx, "p1", "Patient", "a")
	if err != nil || r.ID != "a" || r.Version != 1 {
		t.Fatalf("read back %+v, %v", r, err)
	}
	if err := s.w.QueryRow(`SELECT count(*) FROM before_upgrade`).Scan(new(int)); err != nil {
		t.Fatalf("the existing table is gone: %v", err)
	}
}
