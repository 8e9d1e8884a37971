package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// This file holds the write-back intent store (store.IntentStore): the
// outbox of writes to the EHR, per-patient queues and the attempts log
// (migration 0005).
//
// Every write is one statement or transaction on the writer connection, so
// a claim (find the due queue heads, count an attempt, move them to the end
// of the lease) is atomic. A queue head is the lowest open seq of a
// (practice, queue_key), found with the partial index writeback_intents_open;
// a claim reads one row per patient with open intents.

const intentCols = `seq, practice, id, app, idem_key, request_hash, kind, patient, target_type, target_id, base_version,
	body, vendor_body, conflict_policy, status, attempts, next_attempt, first_attempt, last_attempt,
	external_id, external_version, last_error, rejection, differences, created_at, updated_at, finished_at`

func scanIntent(sc interface{ Scan(...any) error }) (store.Intent, error) {
	var in store.Intent
	var diffs string
	var next, first, last, created, updated, finished sql.NullInt64
	if err := sc.Scan(&in.Seq, &in.Practice, &in.ID, &in.App, &in.IdempotencyKey, &in.RequestHash, &in.Kind, &in.PatientRef,
		&in.TargetType, &in.TargetID, &in.BaseVersion, &in.Body, &in.VendorBody, &in.ConflictPolicy, &in.Status, &in.Attempts,
		&next, &first, &last, &in.ExternalID, &in.ExternalVersion, &in.LastError, &in.Rejection, &diffs,
		&created, &updated, &finished); err != nil {
		return in, err
	}
	if diffs != "" && diffs != "[]" {
		if err := json.Unmarshal([]byte(diffs), &in.Differences); err != nil {
			return in, fmt.Errorf("intent %s: stored differences: %w", in.ID, err)
		}
	}
	in.NextAttempt, in.FirstAttempt, in.LastAttempt = fromNanos(next), fromNanos(first), fromNanos(last)
	in.CreatedAt, in.UpdatedAt, in.FinishedAt = fromNanos(created), fromNanos(updated), fromNanos(finished)
	return in, nil
}

func diffsJSON(d []string) (string, error) {
	if len(d) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(d)
	return string(b), err
}

// queueKey is the ordering key: the patient, or the intent's own key.
func intentQueueKey(in store.Intent) string {
	if in.PatientRef != "" {
		return "p:" + in.PatientRef
	}
	return "i:" + in.ID
}

func validPolicy(p string) bool {
	return p == store.ConflictFail || p == store.ConflictReapply || p == store.ConflictManual
}

// CreateIntent stores a new intent unless its idempotency key is taken.
func (s *Store) CreateIntent(ctx context.Context, in store.Intent) (store.Intent, bool, error) {
	if err := checkPractice(in.Practice); err != nil {
		return store.Intent{}, false, err
	}
	switch {
	case in.ID == "":
		return store.Intent{}, false, errors.New("sqlite: create intent: no id")
	case in.App == "":
		return store.Intent{}, false, fmt.Errorf("sqlite: create intent %s: no app", in.ID)
	case in.IdempotencyKey == "":
		return store.Intent{}, false, fmt.Errorf("sqlite: create intent %s: no idempotency key", in.ID)
	case in.Kind == "":
		return store.Intent{}, false, fmt.Errorf("sqlite: create intent %s: no kind", in.ID)
	case in.TargetType == "":
		return store.Intent{}, false, fmt.Errorf("sqlite: create intent %s: no target type", in.ID)
	}
	if in.ConflictPolicy == "" {
		in.ConflictPolicy = store.ConflictFail
	}
	if !validPolicy(in.ConflictPolicy) {
		return store.Intent{}, false, fmt.Errorf("sqlite: create intent %s: unknown conflict policy %q", in.ID, in.ConflictPolicy)
	}
	if in.Body == nil {
		in.Body = []byte{}
	}
	if in.VendorBody == nil {
		in.VendorBody = []byte{}
	}
	now := s.now()
	next := in.NextAttempt
	if next.IsZero() {
		next = now
	}
	created := in.CreatedAt
	if created.IsZero() {
		created = now
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO writeback_intents (practice, id, app, idem_key, request_hash, kind, patient, queue_key,
		target_type, target_id, base_version, body, vendor_body, conflict_policy, status, attempts, next_attempt,
		external_id, external_version, last_error, rejection, differences, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'accepted', 0, ?, '', '', '', '', '[]', ?, ?)
		ON CONFLICT (practice, app, idem_key) DO NOTHING`,
		in.Practice, in.ID, in.App, in.IdempotencyKey, in.RequestHash, in.Kind, in.PatientRef, intentQueueKey(in),
		in.TargetType, in.TargetID, in.BaseVersion, in.Body, in.VendorBody, in.ConflictPolicy, next.UnixNano(),
		created.UnixNano(), now.UnixNano())
	if err != nil {
		return store.Intent{}, false, fmt.Errorf("sqlite: create intent %s: %w", in.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return store.Intent{}, false, fmt.Errorf("sqlite: create intent %s: %w", in.ID, err)
	}
	if n == 0 {
		// The key was taken; read the intent from the writer connection so a
		// creation that just committed is seen.
		out, err := scanIntent(s.w.QueryRowContext(ctx, `SELECT `+intentCols+` FROM writeback_intents
			WHERE practice = ? AND app = ? AND idem_key = ?`, in.Practice, in.App, in.IdempotencyKey))
		if err != nil {
			return store.Intent{}, false, fmt.Errorf("sqlite: create intent %s: read the existing one: %w", in.ID, err)
		}
		return out, false, nil
	}
	s.kickCheckpoint()
	out, err := scanIntent(s.w.QueryRowContext(ctx, `SELECT `+intentCols+` FROM writeback_intents WHERE practice = ? AND id = ?`,
		in.Practice, in.ID))
	if err != nil {
		return store.Intent{}, false, fmt.Errorf("sqlite: create intent %s: read back: %w", in.ID, err)
	}
	return out, true, nil
}

// GetIntent returns one intent of the practice.
func (s *Store) GetIntent(ctx context.Context, practice, id string) (store.Intent, error) {
	if err := checkPractice(practice); err != nil {
		return store.Intent{}, err
	}
	in, err := scanIntent(s.r.QueryRowContext(ctx, `SELECT `+intentCols+` FROM writeback_intents WHERE practice = ? AND id = ?`, practice, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Intent{}, notFound("sqlite: intent %q", id)
	}
	if err != nil {
		return store.Intent{}, fmt.Errorf("sqlite: get intent %q: %w", id, err)
	}
	return in, nil
}

// GetIntentByKey returns the intent of an app with an idempotency key.
func (s *Store) GetIntentByKey(ctx context.Context, practice, app, key string) (store.Intent, error) {
	if err := checkPractice(practice); err != nil {
		return store.Intent{}, err
	}
	in, err := scanIntent(s.r.QueryRowContext(ctx, `SELECT `+intentCols+` FROM writeback_intents
		WHERE practice = ? AND app = ? AND idem_key = ?`, practice, app, key))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Intent{}, notFound("sqlite: intent with this idempotency key")
	}
	if err != nil {
		return store.Intent{}, fmt.Errorf("sqlite: get intent by key: %w", err)
	}
	return in, nil
}

// ListIntents lists a practice's intents matching f, newest first, at most
// f.Limit (0: 100, at most 10,000).
func (s *Store) ListIntents(ctx context.Context, practice string, f store.IntentFilter) ([]store.Intent, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	var q strings.Builder
	q.WriteString(`SELECT ` + intentCols + ` FROM writeback_intents WHERE practice = ?`)
	args := []any{practice}
	if f.App != "" {
		q.WriteString(` AND app = ?`)
		args = append(args, f.App)
	}
	if f.PatientRef != "" {
		q.WriteString(` AND patient = ?`)
		args = append(args, f.PatientRef)
	}
	if len(f.Status) > 0 {
		q.WriteString(` AND status IN (?` + strings.Repeat(`,?`, len(f.Status)-1) + `)`)
		for _, st := range f.Status {
			args = append(args, st)
		}
	}
	if f.BeforeSeq > 0 {
		q.WriteString(` AND seq < ?`)
		args = append(args, f.BeforeSeq)
	}
	q.WriteString(` ORDER BY seq DESC LIMIT ?`)
	args = append(args, limitOr(f.Limit, 100, 10000))
	rows, err := s.r.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list intents: %w", err)
	}
	defer rows.Close()
	out := []store.Intent{}
	for rows.Next() {
		in, err := scanIntent(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list intents: %w", err)
		}
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list intents: %w", err)
	}
	return out, nil
}

// CountIntents counts a practice's intents by status; statuses without
// intents are absent.
func (s *Store) CountIntents(ctx context.Context, practice string) (map[string]int, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT status, count(*) FROM writeback_intents WHERE practice = ? GROUP BY status`, practice)
	if err != nil {
		return nil, fmt.Errorf("sqlite: count intents: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("sqlite: count intents: %w", err)
		}
		out[st] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: count intents: %w", err)
	}
	return out, nil
}

// intentHeadsSQL lists the queue head (lowest open seq) of every patient
// of a practice with its NextAttempt. It walks the partial index of open
// intents as a skip scan — one seek for the next queue key, one for its
// lowest seq — so a claim costs O(queues × log n), not a read of the whole
// backlog (a GROUP BY over every open intent made 20,000 queued intents
// claim at ~150/s).
const intentHeadsSQL = `WITH RECURSIVE q(k) AS (
		SELECT min(queue_key) FROM writeback_intents INDEXED BY writeback_intents_open
			WHERE practice = ?1 AND status IN ('accepted', 'sending', 'sent')
		UNION ALL
		SELECT (SELECT min(queue_key) FROM writeback_intents INDEXED BY writeback_intents_open
			WHERE practice = ?1 AND status IN ('accepted', 'sending', 'sent') AND queue_key > q.k)
		FROM q WHERE q.k IS NOT NULL
	), h(seq) AS (
		SELECT (SELECT min(seq) FROM writeback_intents INDEXED BY writeback_intents_open
			WHERE practice = ?1 AND status IN ('accepted', 'sending', 'sent') AND queue_key = q.k)
		FROM q WHERE q.k IS NOT NULL
	)
	SELECT h.seq, i.next_attempt FROM h JOIN writeback_intents i ON i.seq = h.seq
	ORDER BY i.next_attempt, i.seq`

// dueIntentHeads reads the queue heads: the seqs of at most limit due ones
// and the earliest NextAttempt of the others (zero: none).
func dueIntentHeads(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, practice string, now time.Time, limit int) ([]int64, time.Time, error) {
	rows, err := q.QueryContext(ctx, intentHeadsSQL, practice)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer rows.Close()
	var due []int64
	var nextDue int64
	t := now.UnixNano()
	for rows.Next() {
		var seq, next int64
		if err := rows.Scan(&seq, &next); err != nil {
			return nil, time.Time{}, err
		}
		if next <= t && len(due) < limit {
			due = append(due, seq)
			continue
		}
		if nextDue == 0 || next < nextDue {
			nextDue = next
		}
	}
	if err := rows.Err(); err != nil {
		return nil, time.Time{}, err
	}
	if nextDue == 0 {
		return due, time.Time{}, nil
	}
	return due, time.Unix(0, nextDue).UTC(), nil
}

// ClaimIntents claims the due queue heads. The heads are read first on the
// read pool, so a look with nothing due costs no write transaction.
func (s *Store) ClaimIntents(ctx context.Context, practice string, now time.Time, lease time.Duration, limit int) (store.IntentClaim, error) {
	if err := checkPractice(practice); err != nil {
		return store.IntentClaim{}, err
	}
	if lease <= 0 {
		return store.IntentClaim{}, errors.New("sqlite: claim intents: the lease must be positive")
	}
	if limit <= 0 {
		return store.IntentClaim{}, nil
	}
	due, nextDue, err := dueIntentHeads(ctx, s.r, practice, now, limit)
	if err != nil {
		return store.IntentClaim{}, fmt.Errorf("sqlite: claim intents: %w", err)
	}
	if len(due) == 0 {
		return store.IntentClaim{NextDue: nextDue}, nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return store.IntentClaim{}, fmt.Errorf("sqlite: claim intents: begin: %w", err)
	}
	defer tx.Rollback()
	var out store.IntentClaim
	if due, out.NextDue, err = dueIntentHeads(ctx, tx, practice, now, limit); err != nil {
		return store.IntentClaim{}, fmt.Errorf("sqlite: claim intents: %w", err)
	}
	if len(due) == 0 {
		return out, nil
	}
	upd, err := tx.PrepareContext(ctx, `UPDATE writeback_intents SET attempts = attempts + 1,
		status = CASE status WHEN 'accepted' THEN 'sending' ELSE status END,
		first_attempt = coalesce(first_attempt, ?), last_attempt = ?, next_attempt = ?, updated_at = ?
		WHERE seq = ? AND practice = ? RETURNING `+intentCols)
	if err != nil {
		return store.IntentClaim{}, fmt.Errorf("sqlite: claim intents: %w", err)
	}
	defer upd.Close()
	t, until := now.UnixNano(), now.Add(lease).UnixNano()
	out.Intents = make([]store.Intent, 0, len(due))
	for _, seq := range due {
		in, err := scanIntent(upd.QueryRowContext(ctx, t, t, until, s.now().UnixNano(), seq, practice))
		if err != nil {
			return store.IntentClaim{}, fmt.Errorf("sqlite: claim intent %d: %w", seq, err)
		}
		out.Intents = append(out.Intents, in)
	}
	if err := tx.Commit(); err != nil {
		return store.IntentClaim{}, fmt.Errorf("sqlite: claim intents: commit: %w", err)
	}
	s.kickCheckpoint()
	return out, nil
}

// nanosOrZero is t in Unix nanoseconds, 0 for the zero time.
func nanosOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func knownIntentStatus(st string) bool {
	return store.IntentOpen(st) || store.IntentReplayable(st) || st == store.IntentConfirmed
}

// UpdateIntent records progress of a claimed, open intent.
func (s *Store) UpdateIntent(ctx context.Context, practice, id string, u store.IntentUpdate) (store.Intent, error) {
	if err := checkPractice(practice); err != nil {
		return store.Intent{}, err
	}
	if !knownIntentStatus(u.Status) {
		return store.Intent{}, fmt.Errorf("sqlite: update intent %s: unknown status %q", id, u.Status)
	}
	diffs, err := diffsJSON(u.Differences)
	if err != nil {
		return store.Intent{}, fmt.Errorf("sqlite: update intent %s: %w", id, err)
	}
	at := u.At
	if at.IsZero() {
		at = s.now()
	}
	var finished any
	if !store.IntentOpen(u.Status) {
		finished = at.UnixNano()
	}
	in, err := scanIntent(s.w.QueryRowContext(ctx, `UPDATE writeback_intents SET status = ?,
		next_attempt = CASE WHEN ? = 1 THEN next_attempt ELSE ? END,
		external_id = CASE WHEN ? = '' THEN external_id ELSE ? END,
		external_version = CASE WHEN ? = '' THEN external_version ELSE ? END,
		last_error = ?, rejection = ?, differences = ?, updated_at = ?, finished_at = ?
		WHERE practice = ? AND id = ? AND attempts = ? AND status IN ('accepted', 'sending', 'sent')
		RETURNING `+intentCols,
		u.Status, boolInt(u.NextAttempt.IsZero()), nanosOrZero(u.NextAttempt), u.ExternalID, u.ExternalID, u.ExternalVersion, u.ExternalVersion,
		u.LastError, u.Rejection, diffs, s.now().UnixNano(), finished, practice, id, u.Attempt))
	if errors.Is(err, sql.ErrNoRows) {
		if _, gerr := s.GetIntent(ctx, practice, id); gerr != nil {
			return store.Intent{}, gerr
		}
		return store.Intent{}, fmt.Errorf("sqlite: update intent %s by claim %d: it is final or was claimed again: %w", id, u.Attempt, store.ErrIntentState)
	}
	if err != nil {
		return store.Intent{}, fmt.Errorf("sqlite: update intent %s: %w", id, err)
	}
	s.kickCheckpoint()
	return in, nil
}

// ReplayIntent makes a replayable intent accepted again.
func (s *Store) ReplayIntent(ctx context.Context, practice, id string, now time.Time) (store.Intent, error) {
	if err := checkPractice(practice); err != nil {
		return store.Intent{}, err
	}
	in, err := scanIntent(s.w.QueryRowContext(ctx, `UPDATE writeback_intents SET status = 'accepted', attempts = 0,
		first_attempt = NULL, next_attempt = ?, rejection = '', base_version = '', finished_at = NULL, updated_at = ?
		WHERE practice = ? AND id = ? AND status IN ('dead', 'conflict', 'rejected', 'mismatch')
		RETURNING `+intentCols, now.UnixNano(), s.now().UnixNano(), practice, id))
	if errors.Is(err, sql.ErrNoRows) {
		if _, gerr := s.GetIntent(ctx, practice, id); gerr != nil {
			return store.Intent{}, gerr
		}
		return store.Intent{}, fmt.Errorf("sqlite: replay intent %s: it is not dead, conflict, rejected or mismatch: %w", id, store.ErrIntentState)
	}
	if err != nil {
		return store.Intent{}, fmt.Errorf("sqlite: replay intent %s: %w", id, err)
	}
	s.kickCheckpoint()
	return in, nil
}

// AppendIntentAttempts appends exchanges to the attempts log in one transaction.
func (s *Store) AppendIntentAttempts(ctx context.Context, practice string, as ...store.IntentAttempt) error {
	if err := checkPractice(practice); err != nil {
		return err
	}
	if len(as) == 0 {
		return nil
	}
	for i, a := range as {
		switch {
		case a.Practice != "" && a.Practice != practice:
			return fmt.Errorf("sqlite: append intent attempt %d: it names practice %q, the call %q", i, a.Practice, practice)
		case a.IntentID == "":
			return fmt.Errorf("sqlite: append intent attempt %d: no intent id", i)
		case strings.ContainsAny(a.Path, "?#"):
			return fmt.Errorf("sqlite: append intent attempt %d: the path must not carry a query", i)
		}
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: append intent attempts: begin: %w", err)
	}
	defer tx.Rollback()
	ins, err := tx.PrepareContext(ctx, `INSERT INTO writeback_attempts (practice, intent_id, attempt, step, at, method, path,
		headers, body_hash, status, outcome, took_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("sqlite: append intent attempts: %w", err)
	}
	defer ins.Close()
	for i, a := range as {
		hdr := a.Headers
		if hdr == nil {
			hdr = map[string]string{}
		}
		hj, err := json.Marshal(hdr)
		if err != nil {
			return fmt.Errorf("sqlite: append intent attempt %d: %w", i, err)
		}
		at := a.At
		if at.IsZero() {
			at = s.now()
		}
		if _, err := ins.ExecContext(ctx, practice, a.IntentID, a.Attempt, a.Step, at.UnixNano(), a.Method, a.Path,
			string(hj), a.BodyHash, a.Status, a.Outcome, int64(a.Took)); err != nil {
			return fmt.Errorf("sqlite: append intent attempt %d: %w", i, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: append intent attempts: commit: %w", err)
	}
	s.kickCheckpoint()
	return nil
}

// ListIntentAttempts lists an intent's exchanges, oldest first.
func (s *Store) ListIntentAttempts(ctx context.Context, practice, intentID string) ([]store.IntentAttempt, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id, practice, intent_id, attempt, step, at, method, path, headers, body_hash,
		status, outcome, took_ns FROM writeback_attempts WHERE practice = ? AND intent_id = ? ORDER BY id`, practice, intentID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list intent attempts: %w", err)
	}
	defer rows.Close()
	out := []store.IntentAttempt{}
	for rows.Next() {
		var a store.IntentAttempt
		var at sql.NullInt64
		var hj string
		var took int64
		if err := rows.Scan(&a.ID, &a.Practice, &a.IntentID, &a.Attempt, &a.Step, &at, &a.Method, &a.Path, &hj, &a.BodyHash,
			&a.Status, &a.Outcome, &took); err != nil {
			return nil, fmt.Errorf("sqlite: list intent attempts: %w", err)
		}
		if err := json.Unmarshal([]byte(hj), &a.Headers); err != nil {
			return nil, fmt.Errorf("sqlite: list intent attempts: stored headers: %w", err)
		}
		if len(a.Headers) == 0 {
			a.Headers = nil
		}
		a.At, a.Took = fromNanos(at), time.Duration(took)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list intent attempts: %w", err)
	}
	return out, nil
}
