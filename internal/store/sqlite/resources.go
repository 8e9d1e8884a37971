package sqlite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/fhir/searchparam"
	"github.com/mediflow/mediflow/internal/store"
	"golang.org/x/sync/errgroup"
)

const versionCols = `seq, practice, resource_type, id, version, source_version_id, source_last_updated,
	content_hash, connection, raw_id, stored_at, deleted, body, body_encoding, body_dict`

// scanVersion reads a row of versionCols, decoding the body.
func (s *Store) scanVersion(ctx context.Context, sc rowScanner) (store.Resource, error) {
	var r store.Resource
	var slu, stored sql.NullInt64
	var hash []byte
	var deleted int
	var enc, dict int64
	if err := sc.Scan(&r.Seq, &r.Practice, &r.ResourceType, &r.ID, &r.Version, &r.SourceVersionID, &slu,
		&hash, &r.Connection, &r.RawID, &stored, &deleted, &r.Body, &enc, &dict); err != nil {
		return r, err
	}
	body, err := s.decodeVersionBody(ctx, r.Body, enc, dict, hash)
	if err != nil {
		return r, fmt.Errorf("%s/%s version %d: %w", r.ResourceType, r.ID, r.Version, err)
	}
	r.Body = body
	r.SourceLastUpdated = fromNanos(slu)
	r.StoredAt = fromNanos(stored)
	r.ContentHash = hex.EncodeToString(hash)
	r.Deleted = deleted != 0
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
	lu       int64 // sort key (searchparam.UnixNanos of lastUpdated)
	res      store.WriteResult
	prev     curState // state before this write
	hadPrev  bool
	prevFrom int // index in the batch of the write that produced prev, -1 if stored
	storedAt time.Time
	// hint is the stored state (queued or indexed) before this batch;
	// hintEntries are its entries when it comes from a queued update.
	hint        curState
	hasHint     bool
	hintEntries []searchparam.Entry
	// pre is the body compressed before the writer lock (preEncode).
	pre preEncoded
	// needEntries: the body may change the resource, so it is validated and
	// extracted (in parallel, before the outcomes are decided).
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

// markNew flags the writes whose ids the search index certainly does not
// hold (a collection it has never seen, or one whose id filter says no),
// and returns ps.
func (s *Store) markNew(practice string, ps []pending) []pending {
	var coll *collection
	rt := ""
	for i := range ps {
		p := &ps[i]
		if p.w.Deleted {
			continue
		}
		if i == 0 || p.w.ResourceType != rt {
			rt = p.w.ResourceType
			coll = s.idx.coll(practice, rt)
		}
		p.needEntries = coll == nil || !coll.ids.mayContain(p.w.ID)
	}
	return ps
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
//
// The versions are committed to SQLite, then handed to the indexer (see
// indexer.go), which updates the search index in the background while the
// caller goes on; reads wait for it, so they see every write that returned.
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
	// Writes of ids the index certainly does not hold are validated and
	// extracted before the writer lock is taken, so concurrent writers
	// (the bulk path's workers) do it in parallel instead of one after the
	// other under the lock. The answer is only a hint: extraction is pure,
	// and the outcomes are decided under the lock as before.
	if err := extractAll(ctx, s.markNew(practice, ps)); err != nil {
		return nil, err
	}
	defer s.preEncode(practice, ps)()

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.closed {
		return nil, errStoreClosed
	}
	if err := s.healIndex(ctx); err != nil {
		return nil, err
	}
	// The stored state of each resource: a queued index update if there is
	// one, else the index. Bodies identical to the stored version (the
	// common case when a sync re-reads an overlap window) need no
	// extraction: they were checked when first stored.
	s.pruneQueued(s.idx.watermark.Load())
	cr, err := s.idx.newCurReader()
	if err != nil {
		return nil, err
	}
	var coll *collection
	for i := range ps {
		p := &ps[i]
		p.needEntries = false
		if q, ok := s.queued(practice, p.w.ResourceType, p.w.ID); ok {
			p.hint, p.hasHint, p.hintEntries = q.cur, true, q.entries
		} else {
			if coll == nil || coll.rt != p.w.ResourceType {
				coll = s.idx.coll(practice, p.w.ResourceType)
			}
			c, ok, err := cr.get(coll, p.w.ID)
			if err != nil {
				cr.close()
				return nil, err
			}
			p.hint, p.hasHint = c, ok
		}
		if p.hasHint && !p.w.Deleted && !p.hint.deleted && p.hint.hash == p.hash {
			continue
		}
		p.needEntries = !p.w.Deleted && p.entries == nil
	}
	cr.close()
	if err := extractAll(ctx, ps); err != nil {
		return nil, err
	}

	now := s.now().UTC()
	// Decide outcomes against the stored state and earlier writes of the batch.
	latest := map[rkey]int{} // last write in the batch per resource
	seq := s.nextSeq
	for i := range ps {
		p := &ps[i]
		k := rkey{p.w.ResourceType, p.w.ID}
		var prev curState
		var has bool
		if j, ok := latest[k]; ok {
			q := &ps[j]
			if q.res.Outcome == store.Unchanged {
				prev, has, p.prevFrom = q.prev, q.hadPrev, q.prevFrom
			} else {
				prev = curState{seq: q.res.Seq, version: q.res.Version, deleted: q.w.Deleted, hash: q.hash, lu: q.lu}
				has, p.prevFrom = true, j
			}
		} else {
			prev, has = p.hint, p.hasHint
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
		} else {
			p.res = store.WriteResult{Outcome: store.Created, Version: 1, Seq: seq}
		}
		if !p.w.Deleted {
			var lu time.Time
			p.entries, lu = lastUpdatedOf(p.entries, p.w.SourceLastUpdated, now)
			p.lu = searchparam.UnixNanos(lu)
		}
	}
	if seq == s.nextSeq {
		return results(ps), nil
	}
	vs, err := s.indexedVersions(practice, ps)
	if err != nil {
		return nil, err
	}
	if err := s.insertVersions(ctx, practice, ps); err != nil {
		return nil, err
	}
	s.nextSeq = seq
	last := &ps[0]
	for i := range ps {
		if ps[i].res.Seq == seq {
			last = &ps[i]
		}
	}
	s.enqueueIndex(indexJob{vs: vs, tip: tip{seq: seq, hash: last.hash, storedAt: last.storedAt.UnixNano()}})
	return results(ps), nil
}

// indexedVersions turns the batch's new versions into index updates, with
// the entries of the versions they replace.
func (s *Store) indexedVersions(practice string, ps []pending) ([]indexedVersion, error) {
	vs := make([]indexedVersion, 0, len(ps))
	var coll *collection
	for i := range ps {
		p := &ps[i]
		if p.res.Outcome == store.Unchanged {
			continue
		}
		v := indexedVersion{practice: practice, rt: p.w.ResourceType, id: p.w.ID,
			cur:     curState{seq: p.res.Seq, version: p.res.Version, deleted: p.w.Deleted, hash: p.hash, lu: p.lu},
			hadPrev: p.hadPrev, prev: p.prev}
		if !p.w.Deleted {
			v.entries = p.entries
		}
		if p.hadPrev && !p.prev.deleted {
			if p.prevFrom >= 0 {
				v.prevEntries = ps[p.prevFrom].entries
			} else if p.hintEntries != nil {
				v.prevEntries = p.hintEntries
			} else {
				if coll == nil || coll.rt != p.w.ResourceType {
					coll = s.idx.coll(practice, p.w.ResourceType)
				}
				if coll == nil {
					return nil, fmt.Errorf("sqlite: search index has no collection for a stored %s", p.w.ResourceType)
				}
				es, err := s.idx.storedEntries(coll, p.prev.lu, p.w.ID)
				if err != nil {
					return nil, err
				}
				v.prevEntries = es
			}
		}
		vs = append(vs, v)
	}
	return vs, nil
}

func results(ps []pending) []store.WriteResult {
	out := make([]store.WriteResult, len(ps))
	for i := range ps {
		out[i] = ps[i].res
	}
	return out
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// Multi-row inserts bind the columns every row of a write shares once per
// statement, as ?1 to ?k ahead of the rows' own plain ? parameters (SQLite
// numbers a plain ? after the highest number used so far): a batch's rows
// share the practice and stored_at (one write, one clock reading), and
// usually the connection and raw_id.
// With 64 rows a statement binds 772 parameters instead of 1,024; each bind
// costs a driver round trip, and each boxed integer an allocation.
const (
	// insertShared: practice, connection, raw_id and stored_at shared.
	insertSharedSQL = `INSERT INTO resource_versions (practice, connection, raw_id, stored_at, seq, resource_type, id, version,
	prev_seq, source_version_id, source_last_updated, content_hash, deleted, body, body_encoding, body_dict) VALUES `
	insertSharedCols = "?1,?2,?3,?4,"
	// insertGeneral: practice and stored_at shared.
	insertGeneralSQL = `INSERT INTO resource_versions (practice, stored_at, seq, resource_type, id, version, prev_seq,
	source_version_id, source_last_updated, content_hash, connection, raw_id, deleted, body, body_encoding, body_dict) VALUES `
	insertGeneralCols = "?1,?2,"
	versionArgs       = 16
)

// insertSQL returns the multi-row insert for n rows; shared says whether
// the rows share their connection and raw_id too.
func insertSQL(n int, shared bool) string {
	head, cols, own := insertGeneralSQL, insertGeneralCols, versionArgs-2
	if shared {
		head, cols, own = insertSharedSQL, insertSharedCols, versionArgs-4
	}
	row := "(" + cols + placeholders(own) + ")"
	return head + strings.TrimSuffix(strings.Repeat(row+",", n), ",")
}

// chunk sizes for multi-row inserts, largest first.
var insertChunks = [...]int{64, 16, 4, 1}

// sameSource reports whether rows share their connection and raw payload.
func sameSource(rows []*pending) bool {
	for _, p := range rows[1:] {
		if p.w.Connection != rows[0].w.Connection || p.w.RawID != rows[0].w.RawID {
			return false
		}
	}
	return true
}

func (s *Store) insertVersions(ctx context.Context, practice string, ps []pending) error {
	var rows []*pending
	for i := range ps {
		if ps[i].res.Outcome != store.Unchanged {
			rows = append(rows, &ps[i])
		}
	}
	// Statements are prepared before the transaction takes the writer connection.
	var stmts [2][len(insertChunks)]*sql.Stmt
	for sh := range 2 {
		for k, c := range insertChunks {
			st, err := s.stmt(ctx, insertSQL(c, sh == 1))
			if err != nil {
				return fmt.Errorf("sqlite: prepare insert: %w", err)
			}
			stmts[sh][k] = st
		}
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin write: %w", err)
	}
	defer tx.Rollback()
	enc := versionEncoder{s: s, tx: tx, practice: practice}
	committed := false
	defer func() {
		if !committed {
			enc.abandon()
		}
		enc.release()
	}()
	args := make([]any, 0, insertChunks[0]*versionArgs)
	for len(rows) > 0 {
		k := 0
		for k < len(insertChunks)-1 && len(rows) < insertChunks[k] {
			k++
		}
		n := insertChunks[k]
		shared := sameSource(rows[:n])
		args = args[:0]
		if shared {
			args = append(args, practice, rows[0].w.Connection, rows[0].w.RawID, rows[0].storedAt.UnixNano())
		} else {
			args = append(args, practice, rows[0].storedAt.UnixNano())
		}
		enc.reset()
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
			stored, bodyEnc, dict := p.pre.b, p.pre.enc, p.pre.dict
			if !p.pre.ok {
				var err error
				if stored, bodyEnc, dict, err = enc.encode(ctx, p.w.ResourceType, body); err != nil {
					return err
				}
			}
			if shared {
				args = append(args, p.res.Seq, p.w.ResourceType, p.w.ID, p.res.Version, prevSeq, p.w.SourceVersionID,
					nanos(p.w.SourceLastUpdated), p.hash[:], deleted, stored, bodyEnc, dict)
			} else {
				args = append(args, p.res.Seq, p.w.ResourceType, p.w.ID, p.res.Version, prevSeq, p.w.SourceVersionID,
					nanos(p.w.SourceLastUpdated), p.hash[:], p.w.Connection, p.w.RawID, deleted, stored, bodyEnc, dict)
			}
		}
		st := stmts[0][k]
		if shared {
			st = stmts[1][k]
		}
		if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("sqlite: insert resource versions: %w", err)
		}
		rows = rows[n:]
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit resource versions: %w", err)
	}
	committed = true
	enc.done()
	s.kickCheckpoint()
	return nil
}

// catchUpChunk is how many versions catchUp reads and indexes per batch.
const catchUpChunk = 2000

// syncIndex makes the index match resource_versions: an index whose
// watermark names a version this database does not have (another database's
// index, or one that survived its database's lost tail) is rebuilt, and one
// that is behind catches up. Called by Open, before the store is shared.
func (s *Store) syncIndex(ctx context.Context) error {
	raw, err := s.idx.getMeta([]byte{tagMeta, metaWatermark})
	if err != nil {
		return err
	}
	if raw != nil {
		t, ok := decodeTip(raw)
		match := false
		if ok {
			var hash []byte
			var stored int64
			err := s.r.QueryRowContext(ctx, `SELECT content_hash, stored_at FROM resource_versions WHERE seq = ?`, t.seq).Scan(&hash, &stored)
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return fmt.Errorf("sqlite: check search index: %w", err)
			default:
				match = bytes.Equal(hash, t.hash[:]) && stored == t.storedAt
			}
		}
		if !match {
			s.log.Warn("search index does not belong to this database: rebuilding", "dir", s.idx.dir)
			if err := s.idx.wipe([]byte(indexFormat + " " + searchparam.CatalogVersion())); err != nil {
				return err
			}
		}
	}
	return s.catchUp(ctx)
}

// catchUp indexes every version after the index's watermark, in seq order
// and in chunks, each chunk one atomic index batch. Callers hold writeMu
// (or are Open).
func (s *Store) catchUp(ctx context.Context) error {
	start, from := time.Now(), s.idx.watermark.Load()
	n := 0
	for {
		rows, err := s.r.QueryContext(ctx, `SELECT seq, practice, resource_type, id, version, deleted, content_hash,
			source_last_updated, stored_at, body, body_encoding, body_dict FROM resource_versions WHERE seq > ? ORDER BY seq LIMIT ?`, s.idx.watermark.Load(), catchUpChunk)
		if err != nil {
			return fmt.Errorf("sqlite: index catch-up: %w", err)
		}
		type row struct {
			v           indexedVersion
			slu, stored sql.NullInt64
			body        []byte
			enc, dict   int64
		}
		var batch []row
		var last tip
		for rows.Next() {
			var r row
			var deleted int
			var hash []byte
			if err := rows.Scan(&r.v.cur.seq, &r.v.practice, &r.v.rt, &r.v.id, &r.v.cur.version, &deleted, &hash, &r.slu, &r.stored, &r.body, &r.enc, &r.dict); err != nil {
				rows.Close()
				return fmt.Errorf("sqlite: index catch-up: %w", err)
			}
			r.v.cur.deleted = deleted != 0
			copy(r.v.cur.hash[:], hash)
			last = tip{seq: r.v.cur.seq, hash: r.v.cur.hash, storedAt: r.stored.Int64}
			batch = append(batch, r)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("sqlite: index catch-up: %w", err)
		}
		if len(batch) == 0 {
			break
		}
		// Extraction dominates: spread it over the cores.
		g, _ := errgroup.WithContext(ctx)
		g.SetLimit(max(1, min(runtime.GOMAXPROCS(0), 4)))
		for i := 0; i < len(batch); i += 64 {
			part := batch[i:min(i+64, len(batch))]
			g.Go(func() error {
				for k := range part {
					r := &part[k]
					if r.v.cur.deleted {
						continue
					}
					body, err := s.decodeVersionBody(ctx, r.body, r.enc, r.dict, r.v.cur.hash[:])
					var es []searchparam.Entry
					if err == nil {
						es, err = searchparam.Extract(r.v.rt, body)
					}
					if err != nil {
						// Accepted when written, so the extraction rules
						// changed (or the stored body is damaged: reading
						// it is an error); keep the resource findable by id
						// and date.
						s.log.Warn("stored version no longer extracts; indexed without its search values", "seq", r.v.cur.seq, "type", r.v.rt)
						es = []searchparam.Entry{{Name: "_id", Type: searchparam.Token, Value: "|" + r.v.id}}
					}
					var lu time.Time
					r.v.entries, lu = lastUpdatedOf(es, fromNanos(r.slu), fromNanos(r.stored))
					r.v.cur.lu = searchparam.UnixNanos(lu)
					r.body = nil
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		// Previous versions: from this chunk, else from the index.
		vs := make([]indexedVersion, len(batch))
		latest := map[[3]string]int{}
		for i := range batch {
			v := batch[i].v
			k := [3]string{v.practice, v.rt, v.id}
			if j, ok := latest[k]; ok {
				v.hadPrev, v.prev = true, vs[j].cur
				v.prevEntries = vs[j].entries
			} else {
				coll := s.idx.coll(v.practice, v.rt)
				prev, ok, err := s.idx.current(coll, v.id)
				if err != nil {
					return err
				}
				v.hadPrev, v.prev = ok, prev
				if ok && !prev.deleted {
					if v.prevEntries, err = s.idx.storedEntries(coll, prev.lu, v.id); err != nil {
						return err
					}
				}
			}
			latest[k] = i
			vs[i] = v
		}
		if err := s.idx.apply(vs, last); err != nil {
			return err
		}
		n += len(batch)
	}
	if n > 0 {
		s.log.Info("search index caught up", "versions", n, "from_seq", from, "ms", time.Since(start).Milliseconds())
	}
	return nil
}

// GetResource returns the current version (which may be a deletion, with
// Deleted set).
func (s *Store) GetResource(ctx context.Context, practice, resourceType, id string) (store.Resource, error) {
	if err := checkPractice(practice); err != nil {
		return store.Resource{}, err
	}
	done, err := s.readIndex()
	if err != nil {
		return store.Resource{}, err
	}
	c, ok, err := s.current(practice, resourceType, id)
	done()
	if err != nil {
		return store.Resource{}, err
	}
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
	st, err := s.readStmt(ctx, getVersionSQL)
	if err != nil {
		return store.Resource{}, fmt.Errorf("sqlite: read %s/%s: %w", resourceType, id, err)
	}
	r, err := s.scanVersion(ctx, st.QueryRowContext(ctx, c.seq, practice))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Resource{}, notFound("sqlite: %s/%s", resourceType, id)
	}
	if err != nil {
		return store.Resource{}, fmt.Errorf("sqlite: read %s/%s: %w", resourceType, id, err)
	}
	s.cache.put(&r)
	return r, nil
}

// The read queries of the API's hot paths, prepared once per read
// connection (readStmt): parsing them on every call took a quarter of an
// uncached GetResource and half of a History.
const (
	getVersionSQL = `SELECT ` + versionCols + ` FROM resource_versions WHERE seq = ? AND +practice = ?`

	chainSQL = `WITH RECURSIVE chain(s) AS (
	SELECT ?
	UNION ALL
	SELECT v.prev_seq FROM resource_versions v JOIN chain ON v.seq = chain.s WHERE v.prev_seq > 0
)
SELECT ` + versionCols + ` FROM resource_versions WHERE seq IN (SELECT s FROM chain) AND +practice = ?`
	versionOfSQL = chainSQL + ` AND version = ?`
	historySQL   = chainSQL + ` ORDER BY seq DESC`

	changesSQL = `SELECT seq, resource_type, id, version, deleted, stored_at FROM resource_versions
		WHERE practice = ? AND seq > ? ORDER BY seq LIMIT ?`
)

// GetResourceVersion returns one version of a resource.
func (s *Store) GetResourceVersion(ctx context.Context, practice, resourceType, id string, version int) (store.Resource, error) {
	if err := checkPractice(practice); err != nil {
		return store.Resource{}, err
	}
	done, err := s.readIndex()
	if err != nil {
		return store.Resource{}, err
	}
	c, ok, err := s.current(practice, resourceType, id)
	done()
	if err != nil {
		return store.Resource{}, err
	}
	if !ok || version < 1 || version > c.version {
		return store.Resource{}, notFound("sqlite: %s/%s version %d", resourceType, id, version)
	}
	st, err := s.readStmt(ctx, versionOfSQL)
	if err != nil {
		return store.Resource{}, fmt.Errorf("sqlite: read %s/%s version %d: %w", resourceType, id, version, err)
	}
	r, err := s.scanVersion(ctx, st.QueryRowContext(ctx, c.seq, practice, version))
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
	done, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	c, ok, err := s.current(practice, resourceType, id)
	done()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, notFound("sqlite: %s/%s", resourceType, id)
	}
	st, err := s.readStmt(ctx, historySQL)
	if err != nil {
		return nil, fmt.Errorf("sqlite: history of %s/%s: %w", resourceType, id, err)
	}
	rows, err := st.QueryContext(ctx, c.seq, practice)
	if err != nil {
		return nil, fmt.Errorf("sqlite: history of %s/%s: %w", resourceType, id, err)
	}
	defer rows.Close()
	var out []store.Resource
	for rows.Next() {
		r, err := s.scanVersion(ctx, rows)
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
	st, err := s.readStmt(ctx, changesSQL)
	if err != nil {
		return nil, fmt.Errorf("sqlite: changes: %w", err)
	}
	rows, err := st.QueryContext(ctx, practice, since, limit)
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
	done, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	defer done()
	if err := s.waitIndexed(ctx); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, c := range s.idx.collections(practice) {
		if n := c.live.Load(); n > 0 {
			out[c.rt] = int(n)
		}
	}
	return out, nil
}

// CurrentRefs lists the current version of every resource of a type in the
// practice, deleted ones included, ordered by id. It reads the version
// table (SQLite's bare-column rule takes the other columns from the row
// with the highest seq of each id), so it is a scan of the practice's
// versions: made for periodic reconciliation, not for request paths.
func (s *Store) CurrentRefs(ctx context.Context, practice, resourceType string) ([]store.ResourceRef, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id, max(seq), version, source_version_id, source_last_updated, connection, deleted
		FROM resource_versions WHERE practice = ? AND resource_type = ? GROUP BY id ORDER BY id`, practice, resourceType)
	if err != nil {
		return nil, fmt.Errorf("sqlite: current refs of %s: %w", resourceType, err)
	}
	defer rows.Close()
	out := []store.ResourceRef{}
	for rows.Next() {
		var (
			r       store.ResourceRef
			seq     int64
			slu     sql.NullInt64
			deleted int
		)
		if err := rows.Scan(&r.ID, &seq, &r.Version, &r.SourceVersionID, &slu, &r.Connection, &deleted); err != nil {
			return nil, fmt.Errorf("sqlite: current refs of %s: %w", resourceType, err)
		}
		r.SourceLastUpdated = fromNanos(slu)
		r.Deleted = deleted != 0
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: current refs of %s: %w", resourceType, err)
	}
	return out, nil
}
