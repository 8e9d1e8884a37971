package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/mediflow/mediflow/internal/store"
)

// This file holds the small record stores: raw payloads, cursors, sync runs,
// capability statements and audit events.

// PutRaw stores an inbound payload and returns its id. Payloads of
// compressMin bytes or more are stored compressed when that saves space
// (see codec.go); GetRaw and ListRaw return them byte for byte as put.
func (s *Store) PutRaw(ctx context.Context, p store.RawPayload) (int64, error) {
	if err := checkPractice(p.Practice); err != nil {
		return 0, err
	}
	body := p.Body
	if body == nil {
		body = []byte{}
	}
	// Compressed before the statement takes the writer connection. The
	// driver copies bound values, so the buffer is free again once the
	// statement has run.
	buf := encBufs.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= encBufMax {
			encBufs.Put(buf)
		}
	}()
	stored, enc := encodeBody(buf, body)
	st, err := s.stmt(ctx, `INSERT INTO raw_payloads (practice, connection, source, request_url, content_type, fetched_at, body, body_encoding)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return 0, fmt.Errorf("sqlite: put raw payload: %w", err)
	}
	res, err := st.ExecContext(ctx, p.Practice, p.Connection, p.Source, p.RequestURL, p.ContentType, nanos(p.FetchedAt), stored, enc)
	if err != nil {
		return 0, fmt.Errorf("sqlite: put raw payload: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("sqlite: put raw payload: %w", err)
	}
	s.kickCheckpoint()
	return id, nil
}

const rawCols = `id, practice, connection, source, request_url, content_type, fetched_at, body, body_encoding`

// scanRaw reads a row of rawCols, decoding the body.
func scanRaw(sc rowScanner) (store.RawPayload, error) {
	var p store.RawPayload
	var fetched sql.NullInt64
	var enc int64
	if err := sc.Scan(&p.ID, &p.Practice, &p.Connection, &p.Source, &p.RequestURL, &p.ContentType, &fetched, &p.Body, &enc); err != nil {
		return p, err
	}
	p.FetchedAt = fromNanos(fetched)
	body, err := decodeBody(p.Body, enc)
	if err != nil {
		return p, fmt.Errorf("raw payload %d: %w", p.ID, err)
	}
	p.Body = body
	return p, nil
}

// GetRaw returns one raw payload of the practice.
func (s *Store) GetRaw(ctx context.Context, practice string, id int64) (store.RawPayload, error) {
	if err := checkPractice(practice); err != nil {
		return store.RawPayload{}, err
	}
	p, err := scanRaw(s.r.QueryRowContext(ctx, `SELECT `+rawCols+` FROM raw_payloads WHERE id = ? AND practice = ?`, id, practice))
	if errors.Is(err, sql.ErrNoRows) {
		return store.RawPayload{}, notFound("sqlite: raw payload %d", id)
	}
	if err != nil {
		return store.RawPayload{}, fmt.Errorf("sqlite: get raw payload %d: %w", id, err)
	}
	return p, nil
}

// ListRaw lists a practice's raw payloads, newest first.
func (s *Store) ListRaw(ctx context.Context, practice string, f store.RawFilter) ([]store.RawPayload, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	q := `SELECT ` + rawCols + ` FROM raw_payloads WHERE practice = ?`
	args := []any{practice}
	if f.Connection != "" {
		q += ` AND connection = ?`
		args = append(args, f.Connection)
	}
	if !f.Since.IsZero() {
		q += ` AND fetched_at >= ?`
		args = append(args, f.Since.UnixNano())
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, limitOr(f.Limit, 100, 10000))
	return queryAll(ctx, s.r, "list raw payloads", scanRaw, q, args...)
}

// GetCursor returns the cursor, or a zero Cursor with its keys set.
func (s *Store) GetCursor(ctx context.Context, practice, connection, resourceType string) (store.Cursor, error) {
	if err := checkPractice(practice); err != nil {
		return store.Cursor{}, err
	}
	c := store.Cursor{Practice: practice, Connection: connection, ResourceType: resourceType}
	var wm, rs, up sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT watermark, page_url, run_id, run_start, updated_at FROM cursors
		WHERE practice = ? AND connection = ? AND resource_type = ?`, practice, connection, resourceType).Scan(&wm, &c.PageURL, &c.RunID, &rs, &up)
	if errors.Is(err, sql.ErrNoRows) {
		return c, nil
	}
	if err != nil {
		return store.Cursor{}, fmt.Errorf("sqlite: get cursor: %w", err)
	}
	c.Watermark, c.RunStart, c.UpdatedAt = fromNanos(wm), fromNanos(rs), fromNanos(up)
	return c, nil
}

// PutCursor creates or replaces a cursor. A zero UpdatedAt is set to now.
func (s *Store) PutCursor(ctx context.Context, c store.Cursor) error {
	if err := checkPractice(c.Practice); err != nil {
		return err
	}
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = s.now()
	}
	st, err := s.stmt(ctx, `INSERT INTO cursors (practice, connection, resource_type, watermark, page_url, run_id, run_start, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (practice, connection, resource_type) DO UPDATE SET watermark = excluded.watermark,
		page_url = excluded.page_url, run_id = excluded.run_id, run_start = excluded.run_start, updated_at = excluded.updated_at`)
	if err != nil {
		return fmt.Errorf("sqlite: put cursor: %w", err)
	}
	if _, err := st.ExecContext(ctx, c.Practice, c.Connection, c.ResourceType, nanos(c.Watermark), c.PageURL, c.RunID, nanos(c.RunStart), nanos(c.UpdatedAt)); err != nil {
		return fmt.Errorf("sqlite: put cursor: %w", err)
	}
	s.kickCheckpoint()
	return nil
}

func statsJSON(m map[string]*store.TypeStats) (string, error) {
	if m == nil {
		m = map[string]*store.TypeStats{}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("sqlite: encode run stats: %w", err)
	}
	return string(b), nil
}

// StartRun records a new run and returns its id.
func (s *Store) StartRun(ctx context.Context, r store.Run) (int64, error) {
	if err := checkPractice(r.Practice); err != nil {
		return 0, err
	}
	if r.Status == "" {
		r.Status = store.RunRunning
	}
	stats, err := statsJSON(r.Stats)
	if err != nil {
		return 0, err
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO sync_runs (practice, connection, run_trigger, status, started_at, finished_at, error, stats)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, r.Practice, r.Connection, r.Trigger, r.Status, nanos(r.StartedAt), nanos(r.FinishedAt), r.Error, stats)
	if err != nil {
		return 0, fmt.Errorf("sqlite: start run: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("sqlite: start run: %w", err)
	}
	s.kickCheckpoint()
	return id, nil
}

// UpdateRun overwrites status, finish time, error and stats of run r.ID.
func (s *Store) UpdateRun(ctx context.Context, r store.Run) error {
	if err := checkPractice(r.Practice); err != nil {
		return err
	}
	stats, err := statsJSON(r.Stats)
	if err != nil {
		return err
	}
	res, err := s.w.ExecContext(ctx, `UPDATE sync_runs SET status = ?, finished_at = ?, error = ?, stats = ? WHERE id = ? AND practice = ?`,
		r.Status, nanos(r.FinishedAt), r.Error, stats, r.ID, r.Practice)
	if err != nil {
		return fmt.Errorf("sqlite: update run %d: %w", r.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: update run %d: %w", r.ID, err)
	} else if n == 0 {
		return notFound("sqlite: run %d", r.ID)
	}
	s.kickCheckpoint()
	return nil
}

const runCols = `id, practice, connection, run_trigger, status, started_at, finished_at, error, stats`

func scanRun(sc rowScanner) (store.Run, error) {
	var r store.Run
	var started, finished sql.NullInt64
	var stats string
	if err := sc.Scan(&r.ID, &r.Practice, &r.Connection, &r.Trigger, &r.Status, &started, &finished, &r.Error, &stats); err != nil {
		return r, err
	}
	r.StartedAt, r.FinishedAt = fromNanos(started), fromNanos(finished)
	r.Stats = map[string]*store.TypeStats{}
	if err := json.Unmarshal([]byte(stats), &r.Stats); err != nil {
		return r, fmt.Errorf("decode run stats: %w", err)
	}
	return r, nil
}

// GetRun returns one run of the practice.
func (s *Store) GetRun(ctx context.Context, practice string, id int64) (store.Run, error) {
	if err := checkPractice(practice); err != nil {
		return store.Run{}, err
	}
	r, err := scanRun(s.r.QueryRowContext(ctx, `SELECT `+runCols+` FROM sync_runs WHERE id = ? AND practice = ?`, id, practice))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Run{}, notFound("sqlite: run %d", id)
	}
	if err != nil {
		return store.Run{}, fmt.Errorf("sqlite: get run %d: %w", id, err)
	}
	return r, nil
}

// ListRuns lists a practice's runs, newest first; connection "" means all.
func (s *Store) ListRuns(ctx context.Context, practice, connection string, limit int) ([]store.Run, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	q := `SELECT ` + runCols + ` FROM sync_runs WHERE practice = ?`
	args := []any{practice}
	if connection != "" {
		q += ` AND connection = ?`
		args = append(args, connection)
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, limitOr(limit, 100, 10000))
	return queryAll(ctx, s.r, "list runs", scanRun, q, args...)
}

// PutCapability records a fetched CapabilityStatement; history is kept.
func (s *Store) PutCapability(ctx context.Context, c store.Capability) error {
	if err := checkPractice(c.Practice); err != nil {
		return err
	}
	body := c.Body
	if body == nil {
		body = []byte{}
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO capabilities (practice, connection, fetched_at, fhir_version, software, body) VALUES (?, ?, ?, ?, ?, ?)`,
		c.Practice, c.Connection, nanos(c.FetchedAt), c.FHIRVersion, c.Software, body); err != nil {
		return fmt.Errorf("sqlite: put capability: %w", err)
	}
	s.kickCheckpoint()
	return nil
}

// GetCapability returns the most recently fetched CapabilityStatement of a
// connection (ties: the last stored).
func (s *Store) GetCapability(ctx context.Context, practice, connection string) (store.Capability, error) {
	if err := checkPractice(practice); err != nil {
		return store.Capability{}, err
	}
	c := store.Capability{}
	var fetched sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT practice, connection, fetched_at, fhir_version, software, body FROM capabilities
		WHERE practice = ? AND connection = ? ORDER BY fetched_at DESC, id DESC LIMIT 1`, practice, connection).
		Scan(&c.Practice, &c.Connection, &fetched, &c.FHIRVersion, &c.Software, &c.Body)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Capability{}, notFound("sqlite: capability statement of connection %q", connection)
	}
	if err != nil {
		return store.Capability{}, fmt.Errorf("sqlite: get capability: %w", err)
	}
	c.FetchedAt = fromNanos(fetched)
	return c, nil
}

// Audit records events; each names its own practice. All or none are stored.
func (s *Store) Audit(ctx context.Context, events ...store.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	for _, e := range events {
		if err := checkPractice(e.Practice); err != nil {
			return err
		}
	}
	args := make([]any, 0, len(events)*auditArgs)
	for _, e := range events {
		if e.Time.IsZero() {
			e.Time = s.now()
		}
		args = append(args, e.Practice, nanos(e.Time), e.Actor, e.Action, e.Entity, e.Outcome, e.Detail)
	}
	if len(events) <= auditOneStatement {
		// One multi-row INSERT is its own transaction: no BEGIN and COMMIT
		// round trips for the small batches the API writes under load.
		st, err := s.stmt(ctx, auditInsertSQL(len(events)))
		if err != nil {
			return fmt.Errorf("sqlite: audit: %w", err)
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("sqlite: audit: %w", err)
		}
		s.kickCheckpoint()
		return nil
	}
	// Statements are prepared before the transaction takes the writer's
	// only connection.
	full, err := s.stmt(ctx, auditInsertSQL(auditOneStatement))
	if err != nil {
		return fmt.Errorf("sqlite: audit: %w", err)
	}
	rest := full
	if r := len(events) % auditOneStatement; r > 0 {
		if rest, err = s.stmt(ctx, auditInsertSQL(r)); err != nil {
			return fmt.Errorf("sqlite: audit: %w", err)
		}
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: audit: %w", err)
	}
	defer tx.Rollback()
	for len(args) > 0 {
		n, st := auditOneStatement, full
		if len(args) < n*auditArgs {
			n, st = len(args)/auditArgs, rest
		}
		if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, args[:n*auditArgs]...); err != nil {
			return fmt.Errorf("sqlite: audit: %w", err)
		}
		args = args[n*auditArgs:]
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: audit: %w", err)
	}
	s.kickCheckpoint()
	return nil
}

// auditArgs is the number of values per audit_events row; batches of up to
// auditOneStatement events are written by one INSERT (whose prepared
// statement is kept, one per batch size).
const (
	auditArgs         = 7
	auditOneStatement = 32
)

func auditInsertSQL(n int) string {
	row := "(" + placeholders(auditArgs) + ")"
	return `INSERT INTO audit_events (practice, time, actor, action, entity, outcome, detail) VALUES ` +
		strings.TrimSuffix(strings.Repeat(row+",", n), ",")
}

// ListAudit lists a practice's audit events, newest first.
func (s *Store) ListAudit(ctx context.Context, practice string, f store.AuditFilter) ([]store.AuditEvent, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	var where []string
	args := []any{practice}
	if f.Actor != "" {
		where = append(where, `actor = ?`)
		args = append(args, f.Actor)
	}
	if !f.Since.IsZero() {
		where = append(where, `time >= ?`)
		args = append(args, f.Since.UnixNano())
	}
	q := `SELECT id, practice, time, actor, action, entity, outcome, detail FROM audit_events WHERE practice = ?`
	for _, w := range where {
		q += ` AND ` + w
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, limitOr(f.Limit, 100, 10000))
	return queryAll(ctx, s.r, "list audit", func(sc rowScanner) (store.AuditEvent, error) {
		var e store.AuditEvent
		var t sql.NullInt64
		err := sc.Scan(&e.ID, &e.Practice, &t, &e.Actor, &e.Action, &e.Entity, &e.Outcome, &e.Detail)
		e.Time = fromNanos(t)
		return e, err
	}, q, args...)
}
