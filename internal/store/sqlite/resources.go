package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/fhir/searchparam"
	"github.com/mediflow/mediflow/internal/store"
	"golang.org/x/sync/errgroup"
)

// typeState is the in-memory state of one resource type of one practice.
type typeState struct {
	cur map[string]*current // guarded by Store.stateMu
	idx *searchparam.Index  // has its own lock
}

// current describes the newest version of one resource.
type current struct {
	seq     int64
	version int
	deleted bool
	hash    [32]byte
}

// lookup returns the current version of a resource, or nil.
func (s *Store) lookup(practice, rt, id string) (current, bool) {
	s.stateMu.RLock()
	defer s.stateMu.RUnlock()
	if ts := s.practices[practice][rt]; ts != nil {
		if c := ts.cur[id]; c != nil {
			return *c, true
		}
	}
	return current{}, false
}

func (s *Store) typeStateLocked(practice, rt string) *typeState {
	types := s.practices[practice]
	if types == nil {
		types = map[string]*typeState{}
		s.practices[practice] = types
	}
	ts := types[rt]
	if ts == nil {
		ts = &typeState{cur: map[string]*current{}, idx: searchparam.NewIndex()}
		types[rt] = ts
	}
	return ts
}

func (s *Store) typeState(practice, rt string) *typeState {
	s.stateMu.RLock()
	defer s.stateMu.RUnlock()
	return s.practices[practice][rt]
}

const versionCols = `seq, practice, resource_type, id, version, source_version_id, source_last_updated,
	content_hash, connection, raw_id, stored_at, deleted, body`

func scanVersion(sc interface{ Scan(...any) error }) (store.Resource, error) {
	var r store.Resource
	var slu, stored sql.NullInt64
	var hash []byte
	var deleted int
	if err := sc.Scan(&r.Seq, &r.Practice, &r.ResourceType, &r.ID, &r.Version, &r.SourceVersionID, &slu,
		&hash, &r.Connection, &r.RawID, &stored, &deleted, &r.Body); err != nil {
		return r, err
	}
	r.SourceLastUpdated = fromNanos(slu)
	r.StoredAt = fromNanos(stored)
	r.ContentHash = hex.EncodeToString(hash)
	r.Deleted = deleted != 0
	if r.Body == nil {
		r.Body = []byte{}
	}
	return r, nil
}

// lastUpdatedOf returns the sort key of a version: meta.lastUpdated from its
// entries, else the source's lastUpdated, else when it was stored. When the
// body has no meta.lastUpdated an equivalent _lastUpdated entry (millisecond
// range) is appended, so searches on _lastUpdated see the same value.
func lastUpdatedOf(entries []searchparam.Entry, source, stored time.Time) ([]searchparam.Entry, time.Time) {
	for _, e := range entries {
		if e.Name == "_lastUpdated" {
			return entries, e.Low
		}
	}
	t := source
	if t.IsZero() {
		t = stored
	}
	lo := t.UTC().Truncate(time.Millisecond)
	entries = append(entries, searchparam.Entry{Name: "_lastUpdated", Type: searchparam.Date, Low: lo, High: lo.Add(time.Millisecond - 1)})
	return entries, lo
}

type rkey struct{ rt, id string }

// pending is one write being processed.
type pending struct {
	w        store.ResourceWrite
	hash     [32]byte
	entries  []searchparam.Entry
	lu       time.Time
	res      store.WriteResult
	prev     current // state before this write
	hadPrev  bool
	prevFrom int // index in the batch of the write that produced prev, -1 if stored
	storedAt time.Time
	// needEntries: the body may change the resource, so it is validated and
	// extracted before the write lock is taken.
	needEntries bool
}

// extractAll extracts the writes that need it, spreading large batches over
// the available cores.
func extractAll(ctx context.Context, ps []pending) error {
	workers := min(runtime.GOMAXPROCS(0), 4, len(ps)/64)
	if workers <= 1 {
		for i := range ps {
			if ps[i].needEntries {
				if err := ps[i].extract(); err != nil {
					return err
				}
			}
		}
		return nil
	}
	g, _ := errgroup.WithContext(ctx)
	per := (len(ps) + workers - 1) / workers
	for start := 0; start < len(ps); start += per {
		part := ps[start:min(start+per, len(ps))]
		g.Go(func() error {
			for i := range part {
				if part[i].needEntries {
					if err := part[i].extract(); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// extract validates the body and computes its index entries.
func (p *pending) extract() error {
	es, err := searchparam.Extract(p.w.ResourceType, p.w.Body)
	if err != nil {
		return fmt.Errorf("sqlite: write %s/%s: %w", p.w.ResourceType, p.w.ID, err)
	}
	for _, e := range es {
		if e.Name == "_id" && e.Value != "|"+p.w.ID {
			return fmt.Errorf("sqlite: write %s/%s: body has a different id", p.w.ResourceType, p.w.ID)
		}
	}
	if es == nil {
		es = []searchparam.Entry{}
	}
	p.entries = es
	return nil
}

// WriteResources records a batch atomically (see store.ResourceStore).
// Bodies must be JSON resources of the named type; a body whose id differs
// from the write's ID is rejected. Deleting a resource that does not exist,
// or is already deleted, is Unchanged.
func (s *Store) WriteResources(ctx context.Context, practice string, ws []store.ResourceWrite) ([]store.WriteResult, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	if len(ws) == 0 {
		return []store.WriteResult{}, nil
	}
	ps := make([]pending, len(ws))
	for i, w := range ws {
		if w.ResourceType == "" || w.ID == "" {
			return nil, fmt.Errorf("sqlite: write %d: resource type and id are required", i)
		}
		p := &ps[i]
		p.w = w
		p.prevFrom = -1
		p.hash = sha256.Sum256(w.Body)
	}
	// Bodies identical to the stored version (the common case when a sync
	// re-reads an overlap window) need no extraction: they were checked when
	// first stored. The decision below is made again under the write lock;
	// extract() covers writes that turn out to change something after all.
	s.stateMu.RLock()
	for i := range ps {
		p := &ps[i]
		if ts := s.practices[practice][p.w.ResourceType]; ts != nil && !p.w.Deleted {
			if c := ts.cur[p.w.ID]; c != nil && !c.deleted && c.hash == p.hash {
				continue
			}
		}
		p.needEntries = !p.w.Deleted
	}
	s.stateMu.RUnlock()
	if err := extractAll(ctx, ps); err != nil {
		return nil, err
	}

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	now := s.now().UTC()
	// Decide outcomes against the stored state and earlier writes of the batch.
	latest := map[rkey]int{} // last write in the batch per resource
	seq := s.nextSeq
	var needOld []int64 // seqs of stored versions whose entries must leave the index
	for i := range ps {
		p := &ps[i]
		k := rkey{p.w.ResourceType, p.w.ID}
		var prev current
		var has bool
		if j, ok := latest[k]; ok {
			q := &ps[j]
			if q.res.Outcome == store.Unchanged {
				prev, has, p.prevFrom = q.prev, q.hadPrev, q.prevFrom
			} else {
				prev = current{seq: q.res.Seq, version: q.res.Version, deleted: q.w.Deleted, hash: q.hash}
				has, p.prevFrom = true, j
			}
		} else {
			prev, has = s.lookup(practice, k.rt, k.id)
		}
		p.prev, p.hadPrev = prev, has
		latest[k] = i
		switch {
		case !has && p.w.Deleted, has && prev.deleted && p.w.Deleted:
			p.res = store.WriteResult{Outcome: store.Unchanged, Version: prev.version}
			continue
		case has && !prev.deleted && !p.w.Deleted && prev.hash == p.hash:
			p.res = store.WriteResult{Outcome: store.Unchanged, Version: prev.version}
			continue
		}
		if !p.w.Deleted && p.entries == nil {
			if err := p.extract(); err != nil {
				return nil, err
			}
		}
		seq++
		p.storedAt = now
		if has {
			p.res = store.WriteResult{Outcome: store.Updated, Version: prev.version + 1, Seq: seq}
			if !prev.deleted && p.prevFrom < 0 {
				needOld = append(needOld, prev.seq)
			}
		} else {
			p.res = store.WriteResult{Outcome: store.Created, Version: 1, Seq: seq}
		}
		if !p.w.Deleted {
			p.entries, p.lu = lastUpdatedOf(p.entries, p.w.SourceLastUpdated, now)
		}
	}
	if seq == s.nextSeq {
		return results(ps), nil
	}
	oldEntries, err := s.storedEntries(ctx, needOld)
	if err != nil {
		return nil, err
	}
	if err := s.insertVersions(ctx, practice, ps); err != nil {
		return nil, err
	}
	s.nextSeq = seq
	s.apply(practice, ps, oldEntries)
	return results(ps), nil
}

func results(ps []pending) []store.WriteResult {
	out := make([]store.WriteResult, len(ps))
	for i := range ps {
		out[i] = ps[i].res
	}
	return out
}

// storedEntries re-extracts the index entries of stored versions (by seq).
func (s *Store) storedEntries(ctx context.Context, seqs []int64) (map[int64][]searchparam.Entry, error) {
	out := make(map[int64][]searchparam.Entry, len(seqs))
	for len(seqs) > 0 {
		n := min(len(seqs), 500)
		chunk := seqs[:n]
		seqs = seqs[n:]
		args := make([]any, len(chunk))
		for i, v := range chunk {
			args[i] = v
		}
		rows, err := s.r.QueryContext(ctx, `SELECT seq, resource_type, source_last_updated, stored_at, body FROM resource_versions WHERE seq IN (`+placeholders(n)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: read previous versions: %w", err)
		}
		for rows.Next() {
			var seq int64
			var rt string
			var slu, stored sql.NullInt64
			var body []byte
			if err := rows.Scan(&seq, &rt, &slu, &stored, &body); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: read previous versions: %w", err)
			}
			es, err := searchparam.Extract(rt, body)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: previous version %d: %w", seq, err)
			}
			es, _ = lastUpdatedOf(es, fromNanos(slu), fromNanos(stored))
			out[seq] = es
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("sqlite: read previous versions: %w", err)
		}
	}
	return out, nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

const insertVersionSQL = `INSERT INTO resource_versions (seq, practice, resource_type, id, version, prev_seq, source_version_id,
	source_last_updated, content_hash, connection, raw_id, stored_at, deleted, body) VALUES `

const versionArgs = 14

// insertSQL returns the multi-row insert for n rows.
func insertSQL(n int) string {
	row := "(" + placeholders(versionArgs) + ")"
	return insertVersionSQL + strings.TrimSuffix(strings.Repeat(row+",", n), ",")
}

// chunk sizes for multi-row inserts, largest first.
var insertChunks = [...]int{64, 16, 4, 1}

func (s *Store) insertVersions(ctx context.Context, practice string, ps []pending) error {
	var rows []*pending
	for i := range ps {
		if ps[i].res.Outcome != store.Unchanged {
			rows = append(rows, &ps[i])
		}
	}
	// Statements are prepared before the transaction takes the writer connection.
	var stmts [len(insertChunks)]*sql.Stmt
	for k, c := range insertChunks {
		st, err := s.stmt(ctx, insertSQL(c))
		if err != nil {
			return fmt.Errorf("sqlite: prepare insert: %w", err)
		}
		stmts[k] = st
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin write: %w", err)
	}
	defer tx.Rollback()
	args := make([]any, 0, insertChunks[0]*versionArgs)
	for len(rows) > 0 {
		var st *sql.Stmt
		n := 1
		for k, c := range insertChunks {
			if len(rows) >= c {
				n, st = c, stmts[k]
				break
			}
		}
		args = args[:0]
		for _, p := range rows[:n] {
			prevSeq := int64(0)
			if p.hadPrev {
				prevSeq = p.prev.seq
			}
			deleted := 0
			if p.w.Deleted {
				deleted = 1
			}
			body := p.w.Body
			if body == nil {
				body = []byte{}
			}
			args = append(args, p.res.Seq, practice, p.w.ResourceType, p.w.ID, p.res.Version, prevSeq, p.w.SourceVersionID,
				nanos(p.w.SourceLastUpdated), p.hash[:], p.w.Connection, p.w.RawID, p.storedAt.UnixNano(), deleted, body)
		}
		if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("sqlite: insert resource versions: %w", err)
		}
		rows = rows[n:]
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit resource versions: %w", err)
	}
	s.kickCheckpoint()
	return nil
}

// apply moves committed writes into the in-memory state and index.
func (s *Store) apply(practice string, ps []pending, stored map[int64][]searchparam.Entry) {
	type idxOp struct {
		ts       *typeState
		p        *pending
		old      []searchparam.Entry
		hadIndex bool
	}
	ops := make([]idxOp, 0, len(ps))
	s.stateMu.Lock()
	for i := range ps {
		p := &ps[i]
		if p.res.Outcome == store.Unchanged {
			continue
		}
		ts := s.typeStateLocked(practice, p.w.ResourceType)
		c := ts.cur[p.w.ID]
		if c == nil {
			c = &current{}
			ts.cur[strings.Clone(p.w.ID)] = c // the caller's string may pin a large buffer
		}
		*c = current{seq: p.res.Seq, version: p.res.Version, deleted: p.w.Deleted, hash: p.hash}
		op := idxOp{ts: ts, p: p, hadIndex: p.hadPrev && !p.prev.deleted}
		if op.hadIndex {
			if p.prevFrom >= 0 {
				op.old = ps[p.prevFrom].entries
			} else {
				op.old = stored[p.prev.seq]
			}
		}
		ops = append(ops, op)
	}
	s.stateMu.Unlock()
	for _, op := range ops {
		if op.p.w.Deleted {
			if op.hadIndex {
				op.ts.idx.Remove(op.p.w.ID, op.old)
			}
			continue
		}
		op.ts.idx.Put(op.p.w.ID, op.p.lu, op.old, op.p.entries)
	}
}

// load rebuilds the in-memory state from resource_versions.
func (s *Store) load(ctx context.Context) (int, error) {
	var maxSeq sql.NullInt64
	if err := s.w.QueryRowContext(ctx, `SELECT seq FROM sqlite_sequence WHERE name = 'resource_versions'`).Scan(&maxSeq); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("sqlite: read sequence: %w", err)
	}
	s.nextSeq = maxSeq.Int64
	rows, err := s.r.QueryContext(ctx, `SELECT seq, practice, resource_type, id, version, deleted, content_hash FROM resource_versions ORDER BY seq`)
	if err != nil {
		return 0, fmt.Errorf("sqlite: load resources: %w", err)
	}
	type live struct {
		ts *typeState
		id string
	}
	s.stateMu.Lock()
	for rows.Next() {
		var c current
		var practice, rt, id string
		var deleted int
		var hash []byte
		if err := rows.Scan(&c.seq, &practice, &rt, &id, &c.version, &deleted, &hash); err != nil {
			rows.Close()
			s.stateMu.Unlock()
			return 0, fmt.Errorf("sqlite: load resources: %w", err)
		}
		c.deleted = deleted != 0
		copy(c.hash[:], hash)
		ts := s.typeStateLocked(practice, rt)
		cc := c
		ts.cur[id] = &cc
		if c.seq > s.nextSeq {
			s.nextSeq = c.seq
		}
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		s.stateMu.Unlock()
		return 0, fmt.Errorf("sqlite: load resources: %w", err)
	}
	bySeq := map[int64]live{}
	var seqs []int64
	for _, types := range s.practices {
		for _, ts := range types {
			for id, c := range ts.cur {
				if !c.deleted {
					bySeq[c.seq] = live{ts, id}
					seqs = append(seqs, c.seq)
				}
			}
		}
	}
	s.stateMu.Unlock()
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for start := 0; start < len(seqs); start += 500 {
		chunk := seqs[start:min(start+500, len(seqs))]
		args := make([]any, len(chunk))
		for i, v := range chunk {
			args[i] = v
		}
		rows, err := s.r.QueryContext(ctx, `SELECT seq, resource_type, source_last_updated, stored_at, body FROM resource_versions WHERE seq IN (`+placeholders(len(chunk))+`)`, args...)
		if err != nil {
			return 0, fmt.Errorf("sqlite: load index: %w", err)
		}
		type loaded struct {
			seq         int64
			rt          string
			slu, stored sql.NullInt64
			body        []byte
			es          []searchparam.Entry
			lu          time.Time
		}
		var batch []loaded
		for rows.Next() {
			var l loaded
			if err := rows.Scan(&l.seq, &l.rt, &l.slu, &l.stored, &l.body); err != nil {
				rows.Close()
				return 0, fmt.Errorf("sqlite: load index: %w", err)
			}
			batch = append(batch, l)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return 0, fmt.Errorf("sqlite: load index: %w", err)
		}
		// Extraction dominates: spread it over the cores.
		g, _ := errgroup.WithContext(ctx)
		g.SetLimit(max(1, min(runtime.GOMAXPROCS(0), 4)))
		for i := 0; i < len(batch); i += 64 {
			part := batch[i:min(i+64, len(batch))]
			g.Go(func() error {
				for k := range part {
					l := &part[k]
					es, err := searchparam.Extract(l.rt, l.body)
					if err != nil {
						return fmt.Errorf("sqlite: load index: version %d: %w", l.seq, err)
					}
					l.es, l.lu = lastUpdatedOf(es, fromNanos(l.slu), fromNanos(l.stored))
					l.body = nil
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return 0, err
		}
		for k := range batch {
			l := bySeq[batch[k].seq]
			l.ts.idx.Put(l.id, batch[k].lu, nil, batch[k].es)
		}
	}
	return len(seqs), nil
}

// GetResource returns the current version (which may be a deletion, with
// Deleted set).
func (s *Store) GetResource(ctx context.Context, practice, resourceType, id string) (store.Resource, error) {
	if err := checkPractice(practice); err != nil {
		return store.Resource{}, err
	}
	c, ok := s.lookup(practice, resourceType, id)
	if !ok {
		return store.Resource{}, notFound("sqlite: %s/%s", resourceType, id)
	}
	if r, ok := s.cache.get(c.seq); ok {
		if r.Practice != practice {
			return store.Resource{}, notFound("sqlite: %s/%s", resourceType, id)
		}
		r.Body = append(make([]byte, 0, len(r.Body)), r.Body...) // the cache keeps its own
		return r, nil
	}
	row := s.r.QueryRowContext(ctx, `SELECT `+versionCols+` FROM resource_versions WHERE seq = ? AND +practice = ?`, c.seq, practice)
	r, err := scanVersion(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Resource{}, notFound("sqlite: %s/%s", resourceType, id)
	}
	if err != nil {
		return store.Resource{}, fmt.Errorf("sqlite: read %s/%s: %w", resourceType, id, err)
	}
	s.cache.put(&r)
	return r, nil
}

const chainSQL = `WITH RECURSIVE chain(s) AS (
	SELECT ?
	UNION ALL
	SELECT v.prev_seq FROM resource_versions v JOIN chain ON v.seq = chain.s WHERE v.prev_seq > 0
)
SELECT ` + versionCols + ` FROM resource_versions WHERE seq IN (SELECT s FROM chain) AND +practice = ?`

// GetResourceVersion returns one version of a resource.
func (s *Store) GetResourceVersion(ctx context.Context, practice, resourceType, id string, version int) (store.Resource, error) {
	if err := checkPractice(practice); err != nil {
		return store.Resource{}, err
	}
	c, ok := s.lookup(practice, resourceType, id)
	if !ok || version < 1 || version > c.version {
		return store.Resource{}, notFound("sqlite: %s/%s version %d", resourceType, id, version)
	}
	row := s.r.QueryRowContext(ctx, chainSQL+` AND version = ?`, c.seq, practice, version)
	r, err := scanVersion(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Resource{}, notFound("sqlite: %s/%s version %d", resourceType, id, version)
	}
	if err != nil {
		return store.Resource{}, fmt.Errorf("sqlite: read %s/%s version %d: %w", resourceType, id, version, err)
	}
	return r, nil
}

// History lists all versions of a resource, newest first.
func (s *Store) History(ctx context.Context, practice, resourceType, id string) ([]store.Resource, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	c, ok := s.lookup(practice, resourceType, id)
	if !ok {
		return nil, notFound("sqlite: %s/%s", resourceType, id)
	}
	rows, err := s.r.QueryContext(ctx, chainSQL+` ORDER BY seq DESC`, c.seq, practice)
	if err != nil {
		return nil, fmt.Errorf("sqlite: history of %s/%s: %w", resourceType, id, err)
	}
	defer rows.Close()
	var out []store.Resource
	for rows.Next() {
		r, err := scanVersion(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: history of %s/%s: %w", resourceType, id, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: history of %s/%s: %w", resourceType, id, err)
	}
	return out, nil
}

// Changes lists the practice's changes with Seq > since, oldest first.
func (s *Store) Changes(ctx context.Context, practice string, since int64, limit int) ([]store.Change, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	limit = limitOr(limit, 100, 10000)
	rows, err := s.r.QueryContext(ctx, `SELECT seq, resource_type, id, version, deleted, stored_at FROM resource_versions
		WHERE practice = ? AND seq > ? ORDER BY seq LIMIT ?`, practice, since, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: changes: %w", err)
	}
	defer rows.Close()
	out := []store.Change{}
	for rows.Next() {
		var c store.Change
		var deleted int
		var stored sql.NullInt64
		if err := rows.Scan(&c.Seq, &c.ResourceType, &c.ID, &c.Version, &deleted, &stored); err != nil {
			return nil, fmt.Errorf("sqlite: changes: %w", err)
		}
		c.Deleted = deleted != 0
		c.StoredAt = fromNanos(stored)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: changes: %w", err)
	}
	return out, nil
}

// CountResources counts current, non-deleted resources per type. Types
// without any are left out.
func (s *Store) CountResources(ctx context.Context, practice string) (map[string]int, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	s.stateMu.RLock()
	defer s.stateMu.RUnlock()
	out := map[string]int{}
	for rt, ts := range s.practices[practice] {
		if n := ts.idx.Len(); n > 0 {
			out[rt] = n
		}
	}
	return out, nil
}
