// Package sqlite is mediflow's embedded store: store.Store on one SQLite file
// (pure Go, modernc.org/sqlite) and, next to it, a search index in a Pebble
// LSM tree (the folder <file>.index).
//
// Design, driven by the sync throughput target (tens of thousands of
// resources per second on two cores) and by memory that must not grow with
// the number of resources stored:
//   - SQLite is written append-only and is the source of truth. Every
//     resource version is one row of resource_versions, whose seq is also
//     the change-feed position, so a write batch is one transaction of
//     sequential inserts. No SQLite table is keyed by resource id or by
//     search value: random-key B-tree inserts cost 15-40 µs per row here
//     (page write amplification in the WAL), which would cap sync far below
//     the target.
//   - The current version of every resource (id -> seq, version, deleted,
//     content hash, lastUpdated), the (lastUpdated, id) order with each
//     resource's search entries, and the postings of every search parameter
//     live in the index (index.go). It is derived data: it records the seq
//     it is complete up to in the same atomic batch as the data, catches up
//     from resource_versions when it is behind (after a crash, a failed
//     update, or a missing folder) and is rebuilt when it belongs to another
//     database or an older format. An LSM tree turns the index's random
//     keys into sequential writes; batches are applied in key order.
//   - Memory is bounded, whatever the store holds: Pebble's block cache and
//     memtables (Options.IndexCacheMB, IndexMemTableMB: 48 MiB by default),
//     the version cache (BodyCacheMB), SQLite's page caches (CacheMB per
//     connection), a plan cache of at most 1,024 searches, and per
//     collection (practice and type) and parameter name a few counters. No
//     map or slice grows with the number of resources; a search holds at
//     most a page plus a bounded candidate set (indexsearch.go).
//   - Writes go through one writer connection under a mutex, so they never
//     meet SQLITE_BUSY; reads use a separate pool of read-only connections.
//     WAL journal, synchronous=NORMAL, busy_timeout, foreign keys on. After
//     the SQLite commit a batch goes to the indexer goroutine (indexer.go),
//     so a writer's next batch overlaps the index update of the previous
//     one; reads wait for it, so they see every write that returned.
//   - Searches are answered by the index (indexsearch.go) with exactly
//     searchparam.Match's semantics, in (lastUpdated, id) order with keyset
//     pages; a search's plan and total are cached until its collection
//     changes. Bodies come from the version cache (keyed by seq: a version
//     never changes, so it needs no invalidation) or SQLite.
//   - A background goroutine (owned by the Store, stopped by Close) copies
//     the WAL into the database file with PASSIVE checkpoints, so commits do
//     not pay for it; Close leaves an empty WAL and a flushed index.
//   - Raw payloads are stored S2-compressed when that pays (codec.go): a bulk
//     batch of NDJSON shrinks about 8:1, which removes most of what a bulk
//     load writes to the WAL and copies again in checkpoints. Resource
//     version bodies are S2-compressed against a dictionary per practice
//     and resource type made from the first bodies of that type the store
//     writes (bodydict.go): 4 – 8:1 where a body alone gives 1.4:1.
//
// Opening a store reads only the index's metadata (milliseconds); a missing
// or foreign index is rebuilt from resource_versions (about 3 s per 100,000
// versions on two cores).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/mediflow/mediflow/internal/store"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Options tune a Store. The zero value is usable.
type Options struct {
	// Logger receives operational messages (never resource contents). nil: discard.
	Logger *slog.Logger
	// ReadConns is the size of the read connection pool; 0: 4.
	ReadConns int
	// CacheMB is SQLite's page cache per connection in MiB; 0: 8. Writes
	// append, so the writer needs few pages; bodies read often are kept by
	// the version cache (BodyCacheMB).
	CacheMB int
	// Now is the clock used for StoredAt and UpdatedAt; nil: time.Now.
	Now func() time.Time
	// BodyCacheMB bounds the in-memory cache of resource versions read by
	// Search and GetResource (bodies and metadata, keyed by seq), in MiB;
	// 0: 64, negative: no cache. Versions are immutable, so the cache never
	// serves stale data; it only saves SQLite reads of hot resources.
	BodyCacheMB int
	// IndexCacheMB is the search index's block cache (Pebble), in MiB; 0: 16.
	IndexCacheMB int
	// IndexMemTableMB is the size of one of the search index's memtables
	// (Pebble; at most two exist at once), in MiB; 0: 16.
	//
	// The defaults were chosen for the memory target of a 1,000,000-resource
	// bulk export (docs/benchmarks.md, "Bulk ingest"): the store's caches
	// and memtables take at most 8 + 16 + 32 MiB while it writes. Larger
	// memtables save compaction work at 1 – 2 MiB of RSS per MiB (16 MiB
	// instead of 8: half the flushes, 5 % less CPU per resource in a bulk
	// load, 10 – 16 MiB more peak RSS); a larger block cache helps searches
	// on large stores.
	IndexMemTableMB int

	// indexFS replaces the file system of the search index (tests only:
	// a crashable in-memory one simulates losing what was not flushed).
	indexFS vfs.FS
}

// Store is the SQLite implementation of store.Store.
type Store struct {
	log *slog.Logger
	now func() time.Time
	w   *sql.DB // exactly one connection: all writes
	r   *sql.DB // read-only pool

	// writeMu serializes resource writes: outcome decisions, seq allocation,
	// the transaction and the index update happen as one step.
	writeMu sync.Mutex
	nextSeq int64 // guarded by writeMu
	closed  bool  // guarded by writeMu

	// idx holds the current version of every resource and the search
	// index, on disk next to the database (see index.go); queue feeds it
	// (see indexer.go).
	idx   *index
	queue indexState
	// readMu lets Close wait for reads of the index in progress; readers
	// hold it shared (see readIndex).
	readMu     sync.RWMutex
	readClosed bool // guarded by readMu
	// beforeIndex, when set (tests only), runs before the indexer applies
	// a batch; an error skips the update, as a crash between the SQLite
	// commit and the index commit would.
	beforeIndex atomic.Pointer[func() error]

	cache *versionCache // recently read versions by seq; nil: disabled

	bodies bodyDicts // dictionaries of compressed version bodies (bodydict.go)

	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt // prepared on w, keyed by SQL text
	rstmts map[string]*sql.Stmt // prepared on r

	// The checkpointer copies the WAL into the database file in the
	// background, so commits do not pay for it (wal_autocheckpoint is off).
	ckpt     *sql.DB            // one connection, used only for checkpoints
	ckptKick chan struct{}      // a commit happened (see kickCheckpoint)
	ckptStop context.CancelFunc // stops the checkpointer
	ckptDone chan struct{}      // closed when it has stopped

	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the store at path, applies migrations and
// loads the in-memory state.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlite: invalid database path %q", path)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ReadConns <= 0 {
		opts.ReadConns = 4
	}
	if opts.CacheMB <= 0 {
		opts.CacheMB = 8
	}
	if opts.BodyCacheMB == 0 {
		opts.BodyCacheMB = 64
	}
	if opts.IndexCacheMB <= 0 {
		opts.IndexCacheMB = 16
	}
	if opts.IndexMemTableMB <= 0 {
		opts.IndexMemTableMB = 16
	}
	if err := createWithPageSize(ctx, path, pageSize); err != nil {
		return nil, err
	}
	pragmas := fmt.Sprintf("_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"+
		"&_pragma=foreign_keys(1)&_pragma=temp_store(MEMORY)&_pragma=cache_size(-%d)", opts.CacheMB*1024)
	w, err := sql.Open("sqlite", path+"?"+pragmas+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", path+"?"+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s for reading: %w", path, err)
	}
	r.SetMaxOpenConns(opts.ReadConns)
	r.SetMaxIdleConns(opts.ReadConns)
	r.SetConnMaxIdleTime(0)
	r.SetConnMaxLifetime(0)
	ckpt, err := sql.Open("sqlite", path+"?"+pragmas)
	if err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("sqlite: open %s for checkpoints: %w", path, err)
	}
	ckpt.SetMaxOpenConns(1)
	ckpt.SetMaxIdleConns(1)
	ckpt.SetConnMaxIdleTime(0)
	ckpt.SetConnMaxLifetime(0)
	s := &Store{
		ckpt:     ckpt,
		ckptKick: make(chan struct{}, 1),
		ckptDone: make(chan struct{}),
		log:      opts.Logger,
		now:      opts.Now,
		w:        w,
		r:        r,
		stmts:    map[string]*sql.Stmt{},
		rstmts:   map[string]*sql.Stmt{},
		cache:    newVersionCache(int64(opts.BodyCacheMB) << 20),
	}
	ckptCtx, stop := context.WithCancel(context.Background())
	s.ckptStop = stop
	go s.checkpointer(ckptCtx)
	// Commits checkpoint only if the background checkpointer falls far behind.
	var pageBytes int64
	if err := s.w.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&pageBytes); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: read page size: %w", err)
	}
	if pageBytes <= 0 {
		s.Close()
		return nil, fmt.Errorf("sqlite: %s reports a page size of %d", path, pageBytes)
	}
	if _, err := s.w.ExecContext(ctx, fmt.Sprintf(`PRAGMA wal_autocheckpoint = %d`, walMaxBytes/pageBytes)); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: configure checkpoints: %w", err)
	}
	if err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	start := time.Now()
	var maxSeq sql.NullInt64
	if err := s.w.QueryRowContext(ctx, `SELECT seq FROM sqlite_sequence WHERE name = 'resource_versions'`).Scan(&maxSeq); err != nil && !errors.Is(err, sql.ErrNoRows) {
		s.Close()
		return nil, fmt.Errorf("sqlite: read sequence: %w", err)
	}
	s.nextSeq = maxSeq.Int64
	if s.idx, err = openIndex(IndexDir(path), indexOptions{CacheMB: opts.IndexCacheMB, MemTableMB: opts.IndexMemTableMB, FS: opts.indexFS}, s.log); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.syncIndex(ctx); err != nil {
		s.Close()
		return nil, err
	}
	s.startIndexer()
	var n int64
	for _, c := range s.idx.colls {
		n += c.live.Load()
	}
	s.log.Info("store opened", "path", path, "resources", n, "open_ms", time.Since(start).Milliseconds())
	return s, nil
}

// Close closes the database. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.stmtMu.Lock()
		for _, st := range s.stmts {
			st.Close()
		}
		for _, st := range s.rstmts {
			st.Close()
		}
		s.stmts, s.rstmts = nil, nil
		s.stmtMu.Unlock()
		if s.ckptStop != nil {
			s.ckptStop()
			<-s.ckptDone
		}
		// A final checkpoint folds the WAL into the database file.
		_, ckErr := s.w.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
		var idxErr error
		if s.idx != nil {
			s.readMu.Lock() // no read of the index in progress; later ones fail
			s.readClosed = true
			s.writeMu.Lock() // no write in progress; later ones fail
			s.stopIndexer()  // the queued batches are applied first
			s.closed = true
			idxErr = s.idx.close()
			s.writeMu.Unlock()
			s.readMu.Unlock()
		}
		s.closeErr = errors.Join(ckErr, idxErr, s.r.Close(), s.ckpt.Close(), s.w.Close())
	})
	return s.closeErr
}

// checkpointInterval spaces background checkpoints; past walMaxBytes of
// WAL frames a commit checkpoints by itself (the background one fell behind).
const (
	checkpointInterval = 250 * time.Millisecond
	walMaxBytes        = 256 << 20
)

// pageSize is the page size of a database this package creates (SQLite's
// default is 4 KiB). A bulk load appends rows and large raw payloads, and
// every page goes through the WAL as a 24-byte frame header and the page,
// written with one system call each, then into the database file by a
// checkpoint: 16 KiB pages take a quarter of the calls, the raw payloads'
// overflow chains a quarter of the pages. A database created before keeps
// its page size.
const pageSize = 16 << 10

// createWithPageSize creates the database file at path with the given page
// size if it does not exist yet. The page size must be set before anything
// is written, and the driver applies the DSN's pragmas in name order, so
// journal_mode would come first: it gets a connection of its own.
func createWithPageSize(ctx context.Context, path string, size int) error {
	if _, err := os.Stat(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return nil // exists, or Open reports why it cannot be read
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return fmt.Errorf("sqlite: create %s: %w", path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, fmt.Sprintf(`PRAGMA page_size = %d`, size)); err != nil {
		return fmt.Errorf("sqlite: create %s: %w", path, err)
	}
	if _, err := db.ExecContext(ctx, `PRAGMA journal_mode = WAL`); err != nil {
		return fmt.Errorf("sqlite: create %s: %w", path, err)
	}
	return db.Close()
}

// kickCheckpoint tells the checkpointer that the WAL grew.
func (s *Store) kickCheckpoint() {
	select {
	case s.ckptKick <- struct{}{}:
	default:
	}
}

// checkpointer runs PASSIVE checkpoints after commits, at most every
// checkpointInterval, until ctx is cancelled. A PASSIVE checkpoint never
// blocks the writer or readers.
func (s *Store) checkpointer(ctx context.Context) {
	defer close(s.ckptDone)
	t := time.NewTimer(checkpointInterval)
	defer t.Stop()
	pending := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.ckptKick:
			pending = true
			continue
		case <-t.C:
		}
		t.Reset(checkpointInterval)
		if !pending {
			continue
		}
		pending = false
		var busy, logFrames, done int
		if err := s.ckpt.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logFrames, &done); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("background checkpoint failed", "err", err)
			}
			continue
		}
		if done < logFrames {
			pending = true // readers held back part of the log; try again
		}
	}
}

// readStmt returns a statement prepared for the read pool (database/sql
// prepares it on each connection as needed). Callers use it only for a
// bounded set of query texts.
func (s *Store) readStmt(ctx context.Context, query string) (*sql.Stmt, error) {
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if s.rstmts == nil {
		return nil, errors.New("sqlite: store is closed")
	}
	if st := s.rstmts[query]; st != nil {
		return st, nil
	}
	st, err := s.r.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.rstmts[query] = st
	return st, nil
}

// stmt returns a statement prepared on the writer connection.
func (s *Store) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if s.stmts == nil {
		return nil, errors.New("sqlite: store is closed")
	}
	if st := s.stmts[query]; st != nil {
		return st, nil
	}
	st, err := s.w.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.stmts[query] = st
	return st, nil
}

type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, n := range names {
		base := strings.TrimPrefix(n, "migrations/")
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("sqlite: migration file %s is not named NNNN_name.sql", base)
		}
		b, err := migrationFiles.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: base, sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("sqlite: two migrations numbered %d", out[i].version)
		}
	}
	return out, nil
}

// Migrate applies every migration not yet recorded in schema_migrations,
// each in its own transaction. It is idempotent.
func (s *Store) Migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("sqlite: create schema_migrations: %w", err)
	}
	for _, m := range ms {
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", m.name, err)
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, m.version).Scan(&n); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite: migration %s: %w", m.name, err)
		}
		if n > 0 {
			tx.Rollback()
			continue
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite: migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, s.now().UnixNano()); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite: migration %s: %w", m.name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", m.name, err)
		}
		s.log.Info("applied migration", "migration", m.name)
	}
	return nil
}

// nanos encodes a time for an INTEGER column; the zero time is NULL.
func nanos(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

func fromNanos(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.Unix(0, v.Int64).UTC()
}

func checkPractice(practice string) error {
	if practice == "" {
		return errors.New("sqlite: practice is required")
	}
	return nil
}

func notFound(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), store.ErrNotFound)
}

func limitOr(n, def, max int) int {
	if n <= 0 {
		return def
	}
	if n > max {
		return max
	}
	return n
}
