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
// (migrations 0005 and 0006).
//
// Every write is one statement or transaction on the writer connection, so
// a claim (find the due queue heads, count an attempt, move them to the end
// of the lease) is atomic. Each (practice, queue_key) with open intents has
// exactly one head, marked in its row (head = 1, migration 0006): creating
// an intent in a queue without one makes it the head, an intent becoming
// final hands the head to the lowest open seq behind it (promoteHead), and
// a replay may take it back (ReplayIntent). A claim reads the due heads from
// the partial index writeback_intents_head_due in next_attempt order, at
// most limit + 1 rows, so its cost does not grow with the backlog or the
// number of patients; the unique index writeback_intents_head_queue keeps
// two intents of one queue from ever being heads at once.
//
// The statements used per intent are prepared once (Store.stmt).

const intentCols = `seq, practice, id, app, idem_key, request_hash, kind, patient, target_type, target_id, base_version,
	body, vendor_body, conflict_policy, status, attempts, next_attempt, first_attempt, last_attempt,
	external_id, external_version, last_error, rejection, differences, created_at, updated_at, finished_at`

func scanIntent(sc rowScanner) (store.Intent, error) {
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
	ins, err := s.stmt(ctx, intentInsertSQL)
	if err != nil {
		return store.Intent{}, false, fmt.Errorf("sqlite: create intent %s: %w", in.ID, err)
	}
	out, err := scanIntent(ins.QueryRowContext(ctx, in.Practice, in.ID, in.App, in.IdempotencyKey, in.RequestHash, in.Kind,
		in.PatientRef, intentQueueKey(in), in.TargetType, in.TargetID, in.BaseVersion, in.Body, in.VendorBody, in.ConflictPolicy,
		next.UnixNano(), created.UnixNano(), now.UnixNano()))
	if errors.Is(err, sql.ErrNoRows) {
		// The key was taken; read the intent from the writer connection so a
		// creation that just committed is seen.
		out, err := scanIntent(s.w.QueryRowContext(ctx, `SELECT `+intentCols+` FROM writeback_intents
			WHERE practice = ? AND app = ? AND idem_key = ?`, in.Practice, in.App, in.IdempotencyKey))
		if err != nil {
			return store.Intent{}, false, fmt.Errorf("sqlite: create intent %s: read the existing one: %w", in.ID, err)
		}
		return out, false, nil
	}
	if err != nil {
		return store.Intent{}, false, fmt.Errorf("sqlite: create intent %s: %w", in.ID, err)
	}
	s.kickCheckpoint()
	return out, true, nil
}

// intentInsertSQL stores a new intent unless its idempotency key is taken
// (then it returns no row). The intent is its queue's head when the queue
// has none, i.e. no open intent (one statement: the check and the insert
// are atomic on the single writer).
const intentInsertSQL = `INSERT INTO writeback_intents (practice, id, app, idem_key, request_hash, kind, patient, queue_key,
		target_type, target_id, base_version, body, vendor_body, conflict_policy, status, attempts, next_attempt,
		external_id, external_version, last_error, rejection, differences, created_at, updated_at, head)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 'accepted', 0, ?15, '', '', '', '', '[]', ?16, ?17,
			NOT EXISTS (SELECT 1 FROM writeback_intents INDEXED BY writeback_intents_head_queue
				WHERE practice = ?1 AND queue_key = ?8 AND head = 1))
		ON CONFLICT (practice, app, idem_key) DO NOTHING
		RETURNING ` + intentCols

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
	return queryAll(ctx, s.r, "list intents", scanIntent, q.String(), args...)
}

// CountIntents counts a practice's intents by status; statuses without
// intents are absent.
func (s *Store) CountIntents(ctx context.Context, practice string) (map[string]int, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	return countByStatus(ctx, s.r, "count intents", `SELECT status, count(*) FROM writeback_intents WHERE practice = ? GROUP BY status`, practice)
}

// intentHeadsSQL lists a practice's queue heads, earliest NextAttempt
// first, then by seq, from the partial index of heads: a claim reads at
// most limit + 1 rows whatever the backlog.
const intentHeadsSQL = `SELECT seq, next_attempt FROM writeback_intents INDEXED BY writeback_intents_head_due
	WHERE practice = ? AND head = 1 ORDER BY next_attempt, seq LIMIT ?`

// intentClaimSQL claims one head: counts an attempt, moves it to the end of
// the lease, accepted → sending.
const intentClaimSQL = `UPDATE writeback_intents SET attempts = attempts + 1,
		status = CASE status WHEN 'accepted' THEN 'sending' ELSE status END,
		first_attempt = coalesce(first_attempt, ?), last_attempt = ?, next_attempt = ?, updated_at = ?
		WHERE seq = ? AND practice = ? AND head = 1 RETURNING ` + intentCols

// dueIntentHeads reads the queue heads: the seqs of at most limit due ones
// and the earliest NextAttempt of the others (zero: none).
func dueIntentHeads(ctx context.Context, q *sql.Stmt, practice string, now time.Time, limit int) ([]int64, time.Time, error) {
	rows, err := q.QueryContext(ctx, practice, limit+1)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer rows.Close()
	due := make([]int64, 0, limit)
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
		// Rows come earliest first: the first one not claimed is the
		// earliest of the others.
		nextDue = next
		break
	}
	if err := rows.Err(); err != nil {
		return nil, time.Time{}, err
	}
	if nextDue == 0 {
		return due, time.Time{}, nil
	}
	return due, time.Unix(0, nextDue).UTC(), nil
}

// ClaimIntents claims the due queue heads. The earliest head is looked at
// first on the read pool, so a look with nothing due costs no write
// transaction.
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
	look, err := s.readStmt(ctx, intentHeadsSQL)
	if err != nil {
		return store.IntentClaim{}, fmt.Errorf("sqlite: claim intents: %w", err)
	}
	_, earliest, err := dueIntentHeads(ctx, look, practice, now, 0)
	if err != nil {
		return store.IntentClaim{}, fmt.Errorf("sqlite: claim intents: %w", err)
	}
	if earliest.IsZero() || earliest.After(now) {
		return store.IntentClaim{NextDue: earliest}, nil
	}
	heads, err := s.stmt(ctx, intentHeadsSQL)
	if err != nil {
		return store.IntentClaim{}, fmt.Errorf("sqlite: claim intents: %w", err)
	}
	claim, err := s.stmt(ctx, intentClaimSQL)
	if err != nil {
		return store.IntentClaim{}, fmt.Errorf("sqlite: claim intents: %w", err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return store.IntentClaim{}, fmt.Errorf("sqlite: claim intents: begin: %w", err)
	}
	defer tx.Rollback()
	var out store.IntentClaim
	var due []int64
	if due, out.NextDue, err = dueIntentHeads(ctx, tx.StmtContext(ctx, heads), practice, now, limit); err != nil {
		return store.IntentClaim{}, fmt.Errorf("sqlite: claim intents: %w", err)
	}
	if len(due) == 0 {
		return out, nil
	}
	upd := tx.StmtContext(ctx, claim)
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

// promoteHeadSQL makes the lowest open seq of a queue its head, unless the
// queue has one (?1 practice, ?2 queue key).
const promoteHeadSQL = `UPDATE writeback_intents SET head = 1
	WHERE seq = (SELECT min(seq) FROM writeback_intents INDEXED BY writeback_intents_open
		WHERE practice = ?1 AND queue_key = ?2 AND status IN ('accepted', 'sending', 'sent'))
	AND NOT EXISTS (SELECT 1 FROM writeback_intents INDEXED BY writeback_intents_head_queue
		WHERE practice = ?1 AND queue_key = ?2 AND head = 1)`

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

// intentUpdateSQL records an executor's progress on a claimed, open
// intent; a final status gives up the head (promoteHeadSQL passes it on).
const intentUpdateSQL = `UPDATE writeback_intents SET status = ?1,
		next_attempt = CASE WHEN ?2 = 1 THEN next_attempt ELSE ?3 END,
		external_id = CASE WHEN ?4 = '' THEN external_id ELSE ?4 END,
		external_version = CASE WHEN ?5 = '' THEN external_version ELSE ?5 END,
		last_error = ?6, rejection = ?7, differences = ?8, updated_at = ?9, finished_at = ?10,
		head = CASE WHEN ?10 IS NULL THEN head ELSE 0 END
		WHERE practice = ?11 AND id = ?12 AND attempts = ?13 AND status IN ('accepted', 'sending', 'sent')
		RETURNING ` + intentCols

// intentUpdateOp is one checked update of an intent, ready to run.
type intentUpdateOp struct {
	practice, id string
	attempt      int
	final        bool
	args         []any // of intentUpdateSQL
	log          intentLog
}

// intentUpdate checks an update and encodes it.
func (s *Store) intentUpdate(practice, id string, u store.IntentUpdate) (*intentUpdateOp, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	if !knownIntentStatus(u.Status) {
		return nil, fmt.Errorf("sqlite: update intent %s: unknown status %q", id, u.Status)
	}
	diffs, err := diffsJSON(u.Differences)
	if err != nil {
		return nil, fmt.Errorf("sqlite: update intent %s: %w", id, err)
	}
	op := &intentUpdateOp{practice: practice, id: id, attempt: u.Attempt, final: !store.IntentOpen(u.Status)}
	if op.log, err = s.intentLogArgs(practice, u.Exchanges, u.Audit); err != nil {
		return nil, fmt.Errorf("sqlite: update intent %s: %w", id, err)
	}
	at := u.At
	if at.IsZero() {
		at = s.now()
	}
	var finished any
	if op.final {
		finished = at.UnixNano()
	}
	op.args = []any{u.Status, boolInt(u.NextAttempt.IsZero()), nanosOrZero(u.NextAttempt), u.ExternalID, u.ExternalVersion,
		u.LastError, u.Rejection, diffs, s.now().UnixNano(), finished, practice, id, u.Attempt}
	return op, nil
}

// apply runs op in tx: its exchanges and audit events, the update and, for
// a final one, the hand-over of its queue's head. sql.ErrNoRows: the update
// does not apply (the exchanges and events are written all the same).
func (op *intentUpdateOp) apply(ctx context.Context, tx *sql.Tx, upd, promote *sql.Stmt) (store.Intent, error) {
	if err := op.log.write(ctx, tx); err != nil {
		return store.Intent{}, err
	}
	in, err := scanIntent(tx.StmtContext(ctx, upd).QueryRowContext(ctx, op.args...))
	if err != nil {
		return store.Intent{}, err
	}
	if op.final {
		if _, err := tx.StmtContext(ctx, promote).ExecContext(ctx, in.Practice, intentQueueKey(in)); err != nil {
			return store.Intent{}, fmt.Errorf("next queue head: %w", err)
		}
	}
	return in, nil
}

// result turns what apply returned into UpdateIntent's answer.
func (s *Store) intentUpdateResult(ctx context.Context, op *intentUpdateOp, in store.Intent, err error) (store.Intent, error) {
	if errors.Is(err, sql.ErrNoRows) {
		if _, gerr := s.GetIntent(ctx, op.practice, op.id); gerr != nil {
			return store.Intent{}, gerr
		}
		return store.Intent{}, fmt.Errorf("sqlite: update intent %s by claim %d: it is final or was claimed again: %w", op.id, op.attempt, store.ErrIntentState)
	}
	if err != nil {
		return store.Intent{}, fmt.Errorf("sqlite: update intent %s: %w", op.id, err)
	}
	return in, nil
}

// UpdateIntent records progress of a claimed, open intent. An intent
// becoming final hands its queue's head on, and the update's exchanges and
// audit events are appended, in the same transaction.
func (s *Store) UpdateIntent(ctx context.Context, practice, id string, u store.IntentUpdate) (store.Intent, error) {
	op, err := s.intentUpdate(practice, id, u)
	if err != nil {
		return store.Intent{}, err
	}
	var in store.Intent
	if !op.final && op.log.empty() {
		// One statement: no transaction needed.
		upd, err := s.stmt(ctx, intentUpdateSQL)
		if err != nil {
			return store.Intent{}, fmt.Errorf("sqlite: update intent %s: %w", id, err)
		}
		if in, err = scanIntent(upd.QueryRowContext(ctx, op.args...)); err == nil {
			s.kickCheckpoint()
		}
		return s.intentUpdateResult(ctx, op, in, err)
	}
	ins, errs := s.applyIntentUpdates(ctx, []*intentUpdateOp{op})
	return s.intentUpdateResult(ctx, op, ins[0], errs[0])
}

// UpdateIntents applies changes in one transaction (see store.IntentStore).
func (s *Store) UpdateIntents(ctx context.Context, cs []store.IntentChange) []store.IntentChanged {
	out := make([]store.IntentChanged, len(cs))
	ops := make([]*intentUpdateOp, 0, len(cs))
	at := make([]int, 0, len(cs))
	for i, c := range cs {
		op, err := s.intentUpdate(c.Practice, c.ID, c.Update)
		if err != nil {
			out[i].Err = err
			continue
		}
		ops, at = append(ops, op), append(at, i)
	}
	if len(ops) == 0 {
		return out
	}
	ins, errs := s.applyIntentUpdates(ctx, ops)
	for j, op := range ops {
		out[at[j]].Intent, out[at[j]].Err = s.intentUpdateResult(ctx, op, ins[j], errs[j])
	}
	return out
}

// applyIntentUpdates runs ops in one transaction. When one fails (other
// than by not applying), the transaction is rolled back and each op runs
// in its own, so one bad update does not undo the others.
func (s *Store) applyIntentUpdates(ctx context.Context, ops []*intentUpdateOp) ([]store.Intent, []error) {
	ins, errs := make([]store.Intent, len(ops)), make([]error, len(ops))
	all := func(err error) ([]store.Intent, []error) {
		for i := range errs {
			errs[i] = err
		}
		return ins, errs
	}
	// Statements are prepared before the transaction takes the writer's
	// only connection.
	upd, err := s.stmt(ctx, intentUpdateSQL)
	if err != nil {
		return all(err)
	}
	promote, err := s.stmt(ctx, promoteHeadSQL)
	if err != nil {
		return all(err)
	}
	for _, op := range ops {
		if err := op.log.prepare(ctx, s); err != nil {
			return all(err)
		}
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return all(fmt.Errorf("begin: %w", err))
	}
	defer tx.Rollback()
	for i, op := range ops {
		ins[i], errs[i] = op.apply(ctx, tx, upd, promote)
		if errs[i] != nil && !errors.Is(errs[i], sql.ErrNoRows) {
			if len(ops) == 1 {
				return ins, errs
			}
			tx.Rollback()
			for j, op := range ops {
				one, oneErr := s.applyIntentUpdates(ctx, []*intentUpdateOp{op})
				ins[j], errs[j] = one[0], oneErr[0]
			}
			return ins, errs
		}
	}
	if err := tx.Commit(); err != nil {
		return all(fmt.Errorf("commit: %w", err))
	}
	s.kickCheckpoint()
	return ins, errs
}

// ReplayIntent makes a replayable intent accepted again, at its seq's place
// in its queue. It takes the queue's head when the queue has none or the
// head is a later intent; a head that was already claimed may still be
// executing, so the replayed intent is then due no earlier than that
// head's NextAttempt (the end of its lease, or its next retry). A later
// head never claimed simply waits behind it again.
func (s *Store) ReplayIntent(ctx context.Context, practice, id string, now time.Time) (store.Intent, error) {
	if err := checkPractice(practice); err != nil {
		return store.Intent{}, err
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return store.Intent{}, fmt.Errorf("sqlite: replay intent %s: begin: %w", id, err)
	}
	defer tx.Rollback()
	in, err := scanIntent(tx.QueryRowContext(ctx, `UPDATE writeback_intents SET status = 'accepted', attempts = 0,
		first_attempt = NULL, next_attempt = ?, rejection = '', base_version = '', finished_at = NULL, updated_at = ?, head = 0
		WHERE practice = ? AND id = ? AND status IN ('dead', 'conflict', 'rejected', 'mismatch')
		RETURNING `+intentCols, now.UnixNano(), s.now().UnixNano(), practice, id))
	if errors.Is(err, sql.ErrNoRows) {
		tx.Rollback()
		if _, gerr := s.GetIntent(ctx, practice, id); gerr != nil {
			return store.Intent{}, gerr
		}
		return store.Intent{}, fmt.Errorf("sqlite: replay intent %s: it is not dead, conflict, rejected or mismatch: %w", id, store.ErrIntentState)
	}
	if err != nil {
		return store.Intent{}, fmt.Errorf("sqlite: replay intent %s: %w", id, err)
	}
	key := intentQueueKey(in)
	var headSeq, headNext int64
	var headAttempts int
	err = tx.QueryRowContext(ctx, `SELECT seq, next_attempt, attempts FROM writeback_intents INDEXED BY writeback_intents_head_queue
		WHERE practice = ? AND queue_key = ? AND head = 1`, practice, key).Scan(&headSeq, &headNext, &headAttempts)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		headSeq = 0
	case err != nil:
		return store.Intent{}, fmt.Errorf("sqlite: replay intent %s: read its queue's head: %w", id, err)
	}
	if headSeq == 0 || headSeq > in.Seq {
		next := now.UnixNano()
		if headSeq != 0 {
			if headAttempts > 0 {
				next = max(next, headNext)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE writeback_intents SET head = 0 WHERE seq = ?`, headSeq); err != nil {
				return store.Intent{}, fmt.Errorf("sqlite: replay intent %s: %w", id, err)
			}
		}
		if in, err = scanIntent(tx.QueryRowContext(ctx, `UPDATE writeback_intents SET head = 1, next_attempt = ? WHERE seq = ?
			RETURNING `+intentCols, next, in.Seq)); err != nil {
			return store.Intent{}, fmt.Errorf("sqlite: replay intent %s: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return store.Intent{}, fmt.Errorf("sqlite: replay intent %s: commit: %w", id, err)
	}
	s.kickCheckpoint()
	return in, nil
}

// intentAttemptInsertSQL appends one exchange to the attempts log.
const intentAttemptInsertSQL = `INSERT INTO writeback_attempts (practice, intent_id, attempt, step, at, method, path,
		headers, body_hash, status, outcome, took_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// intentLog is what an intent write appends besides the intent: exchanges
// (one argument list each) and audit events (auditArgs values each).
type intentLog struct {
	attempts [][]any
	audit    []any
	// set by prepare, before a transaction takes the writer
	ins       *sql.Stmt
	auditFull *sql.Stmt // auditOneStatement rows
	auditRest *sql.Stmt // the remainder
}

func (l *intentLog) empty() bool { return len(l.attempts) == 0 && len(l.audit) == 0 }

// intentLogArgs checks and encodes exchanges and audit events of a practice.
func (s *Store) intentLogArgs(practice string, as []store.IntentAttempt, events []store.AuditEvent) (intentLog, error) {
	var l intentLog
	for i, a := range as {
		switch {
		case a.Practice != "" && a.Practice != practice:
			return l, fmt.Errorf("intent attempt %d names practice %q, the call %q", i, a.Practice, practice)
		case a.IntentID == "":
			return l, fmt.Errorf("intent attempt %d: no intent id", i)
		case strings.ContainsAny(a.Path, "?#"):
			return l, fmt.Errorf("intent attempt %d: the path must not carry a query", i)
		}
		hdr := a.Headers
		if hdr == nil {
			hdr = map[string]string{}
		}
		hj, err := json.Marshal(hdr)
		if err != nil {
			return l, fmt.Errorf("intent attempt %d: %w", i, err)
		}
		at := a.At
		if at.IsZero() {
			at = s.now()
		}
		l.attempts = append(l.attempts, []any{practice, a.IntentID, a.Attempt, a.Step, at.UnixNano(), a.Method, a.Path,
			string(hj), a.BodyHash, a.Status, a.Outcome, int64(a.Took)})
	}
	for i, e := range events {
		if e.Practice != practice {
			return l, fmt.Errorf("audit event %d names practice %q, the call %q", i, e.Practice, practice)
		}
		if e.Time.IsZero() {
			e.Time = s.now()
		}
		l.audit = append(l.audit, e.Practice, nanos(e.Time), e.Actor, e.Action, e.Entity, e.Outcome, e.Detail)
	}
	return l, nil
}

// prepare gets the statements the log needs.
func (l *intentLog) prepare(ctx context.Context, s *Store) error {
	var err error
	if len(l.attempts) > 0 {
		if l.ins, err = s.stmt(ctx, intentAttemptInsertSQL); err != nil {
			return err
		}
	}
	n := len(l.audit) / auditArgs
	if n >= auditOneStatement {
		if l.auditFull, err = s.stmt(ctx, auditInsertSQL(auditOneStatement)); err != nil {
			return err
		}
	}
	if r := n % auditOneStatement; r > 0 {
		if l.auditRest, err = s.stmt(ctx, auditInsertSQL(r)); err != nil {
			return err
		}
	}
	return nil
}

// write appends the log in tx (prepare first).
func (l *intentLog) write(ctx context.Context, tx *sql.Tx) error {
	if len(l.attempts) > 0 {
		ins := tx.StmtContext(ctx, l.ins)
		for i := range l.attempts {
			if _, err := ins.ExecContext(ctx, l.attempts[i]...); err != nil {
				return fmt.Errorf("intent attempt %d: %w", i, err)
			}
		}
	}
	args := l.audit
	for len(args) >= auditOneStatement*auditArgs {
		if _, err := tx.StmtContext(ctx, l.auditFull).ExecContext(ctx, args[:auditOneStatement*auditArgs]...); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		args = args[auditOneStatement*auditArgs:]
	}
	if len(args) > 0 {
		if _, err := tx.StmtContext(ctx, l.auditRest).ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
	return nil
}

// AppendIntentAttempts appends exchanges to the attempts log in one
// transaction (one statement for a single exchange).
func (s *Store) AppendIntentAttempts(ctx context.Context, practice string, as ...store.IntentAttempt) error {
	return s.RecordIntentAttempts(ctx, practice, as, nil)
}

// RecordIntentAttempts appends exchanges and audit events in one
// transaction (one statement for a single exchange and no events).
func (s *Store) RecordIntentAttempts(ctx context.Context, practice string, as []store.IntentAttempt, events []store.AuditEvent) error {
	if err := checkPractice(practice); err != nil {
		return err
	}
	l, err := s.intentLogArgs(practice, as, events)
	if err != nil {
		return fmt.Errorf("sqlite: record intent attempts: %w", err)
	}
	if l.empty() {
		return nil
	}
	if err := l.prepare(ctx, s); err != nil {
		return fmt.Errorf("sqlite: record intent attempts: %w", err)
	}
	if len(l.attempts) == 1 && len(l.audit) == 0 {
		if _, err := l.ins.ExecContext(ctx, l.attempts[0]...); err != nil {
			return fmt.Errorf("sqlite: record intent attempt: %w", err)
		}
		s.kickCheckpoint()
		return nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: record intent attempts: begin: %w", err)
	}
	defer tx.Rollback()
	if err := l.write(ctx, tx); err != nil {
		return fmt.Errorf("sqlite: record intent attempts: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: record intent attempts: commit: %w", err)
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
