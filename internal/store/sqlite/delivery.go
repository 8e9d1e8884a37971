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

// This file holds the webhook delivery store (store.DeliveryStore): webhook
// subscriptions, their delivery queues and the per-practice position in the
// change feed up to which deliveries were made (migration 0003).
//
// Every write is one transaction on the writer connection, so a claim (find
// the due queue heads, count an attempt, move their NextAttempt to the end of
// the lease) is atomic: no other writer sees a head between the read and the
// update. A queue head is the lowest pending id of a webhook, found with the
// partial index deliveries_pending; the number of heads is the number of
// webhooks with pending deliveries, not the number of deliveries.

func checkWebhookID(id string) error {
	if id == "" {
		return errors.New("sqlite: a webhook needs an id")
	}
	return nil
}

// PutWebhook creates or replaces a webhook.
func (s *Store) PutWebhook(ctx context.Context, w store.Webhook) error {
	if err := checkPractice(w.Practice); err != nil {
		return err
	}
	if err := checkWebhookID(w.ID); err != nil {
		return err
	}
	switch {
	case w.App == "":
		return fmt.Errorf("sqlite: put webhook %s: no app", w.ID)
	case w.URL == "":
		return fmt.Errorf("sqlite: put webhook %s: no URL", w.ID)
	case len(w.SealedSecret) == 0:
		return fmt.Errorf("sqlite: put webhook %s: no secret", w.ID)
	}
	types := w.Types
	if types == nil {
		types = []string{}
	}
	tj, err := json.Marshal(types)
	if err != nil {
		return fmt.Errorf("sqlite: put webhook %s: %w", w.ID, err)
	}
	now := s.now().UnixNano()
	_, err = s.w.ExecContext(ctx, `INSERT INTO webhooks (practice, id, app, url, secret, types, active, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (practice, id) DO UPDATE SET app = excluded.app, url = excluded.url, secret = excluded.secret,
			types = excluded.types, active = excluded.active, updated_at = excluded.updated_at`,
		w.Practice, w.ID, w.App, w.URL, w.SealedSecret, string(tj), boolInt(w.Active), now, now)
	if err != nil {
		return fmt.Errorf("sqlite: put webhook %s: %w", w.ID, err)
	}
	s.kickCheckpoint()
	return nil
}

const webhookCols = `practice, id, app, url, secret, types, active, created_at, updated_at`

func scanWebhook(sc rowScanner) (store.Webhook, error) {
	var w store.Webhook
	var types string
	var active int
	var created, updated sql.NullInt64
	if err := sc.Scan(&w.Practice, &w.ID, &w.App, &w.URL, &w.SealedSecret, &types, &active, &created, &updated); err != nil {
		return w, err
	}
	if err := json.Unmarshal([]byte(types), &w.Types); err != nil {
		return w, fmt.Errorf("webhook %s: stored types: %w", w.ID, err)
	}
	if len(w.Types) == 0 {
		w.Types = nil
	}
	w.Active = active != 0
	w.CreatedAt, w.UpdatedAt = fromNanos(created), fromNanos(updated)
	return w, nil
}

// GetWebhook returns one webhook of the practice.
func (s *Store) GetWebhook(ctx context.Context, practice, id string) (store.Webhook, error) {
	if err := checkPractice(practice); err != nil {
		return store.Webhook{}, err
	}
	w, err := scanWebhook(s.r.QueryRowContext(ctx, `SELECT `+webhookCols+` FROM webhooks WHERE practice = ? AND id = ?`, practice, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Webhook{}, notFound("sqlite: webhook %q", id)
	}
	if err != nil {
		return store.Webhook{}, fmt.Errorf("sqlite: get webhook %q: %w", id, err)
	}
	return w, nil
}

// ListWebhooks lists a practice's webhooks in id order.
func (s *Store) ListWebhooks(ctx context.Context, practice string, f store.WebhookFilter) ([]store.Webhook, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	q := `SELECT ` + webhookCols + ` FROM webhooks WHERE practice = ?`
	args := []any{practice}
	if f.App != "" {
		q += ` AND app = ?`
		args = append(args, f.App)
	}
	if f.ActiveOnly {
		q += ` AND active = 1`
	}
	return queryAll(ctx, s.r, "list webhooks", scanWebhook, q+` ORDER BY id`, args...)
}

// DeliveryCursor returns the practice's delivery position in the change feed.
func (s *Store) DeliveryCursor(ctx context.Context, practice string) (int64, error) {
	if err := checkPractice(practice); err != nil {
		return 0, err
	}
	var seq int64
	err := s.r.QueryRowContext(ctx, `SELECT seq FROM delivery_cursors WHERE practice = ?`, practice).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: delivery cursor: %w", err)
	}
	return seq, nil
}

// enqueueSQL stores one delivery unless the webhook already has its event.
// The app comes from the webhook row, so a delivery for an unknown webhook
// inserts nothing. (The WHERE clause also keeps SQLite from reading ON as a
// join constraint.)
const enqueueSQL = `INSERT INTO deliveries (practice, app, webhook_id, event_id, seq, payload, status, attempts,
		next_attempt, last_error, created_at, updated_at)
	SELECT w.practice, w.app, w.id, ?, ?, ?, 'pending', 0, ?, '', ?, ?
	FROM webhooks w WHERE w.practice = ? AND w.id = ?
	ON CONFLICT (practice, webhook_id, event_id) DO NOTHING`

// EnqueueDeliveries stores a batch and moves the cursor, in one transaction.
func (s *Store) EnqueueDeliveries(ctx context.Context, practice string, ds []store.Delivery, through int64) ([]store.EnqueueResult, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	for i, d := range ds {
		switch {
		case d.Practice != "" && d.Practice != practice:
			return nil, fmt.Errorf("sqlite: enqueue delivery %d: it names practice %q, the call %q", i, d.Practice, practice)
		case d.WebhookID == "":
			return nil, fmt.Errorf("sqlite: enqueue delivery %d: no webhook", i)
		case d.EventID == "":
			return nil, fmt.Errorf("sqlite: enqueue delivery %d: no event id", i)
		case len(d.Payload) == 0:
			return nil, fmt.Errorf("sqlite: enqueue delivery %d: empty payload", i)
		}
	}
	out := make([]store.EnqueueResult, len(ds))
	if len(ds) == 0 && through <= 0 {
		return out, nil
	}
	now := s.now()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: enqueue deliveries: begin: %w", err)
	}
	defer tx.Rollback()
	var ins, find *sql.Stmt
	if len(ds) > 0 {
		if ins, err = tx.PrepareContext(ctx, enqueueSQL); err != nil {
			return nil, fmt.Errorf("sqlite: enqueue deliveries: %w", err)
		}
		defer ins.Close()
		if find, err = tx.PrepareContext(ctx, `SELECT id FROM deliveries WHERE practice = ? AND webhook_id = ? AND event_id = ?`); err != nil {
			return nil, fmt.Errorf("sqlite: enqueue deliveries: %w", err)
		}
		defer find.Close()
	}
	for i, d := range ds {
		next, created := d.NextAttempt, d.CreatedAt
		if next.IsZero() {
			next = now
		}
		if created.IsZero() {
			created = now
		}
		res, err := ins.ExecContext(ctx, d.EventID, d.Seq, d.Payload, next.UnixNano(), created.UnixNano(), now.UnixNano(), practice, d.WebhookID)
		if err != nil {
			return nil, fmt.Errorf("sqlite: enqueue delivery %d: %w", i, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("sqlite: enqueue delivery %d: %w", i, err)
		}
		if n == 1 {
			if out[i].ID, err = res.LastInsertId(); err != nil {
				return nil, fmt.Errorf("sqlite: enqueue delivery %d: %w", i, err)
			}
			continue
		}
		err = find.QueryRowContext(ctx, practice, d.WebhookID, d.EventID).Scan(&out[i].ID)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, notFound("sqlite: enqueue delivery %d: webhook %q", i, d.WebhookID)
		}
		if err != nil {
			return nil, fmt.Errorf("sqlite: enqueue delivery %d: %w", i, err)
		}
		out[i].Duplicate = true
	}
	if through > 0 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO delivery_cursors (practice, seq, updated_at) VALUES (?, ?, ?)
			ON CONFLICT (practice) DO UPDATE SET seq = max(seq, excluded.seq), updated_at = excluded.updated_at`,
			practice, through, now.UnixNano()); err != nil {
			return nil, fmt.Errorf("sqlite: enqueue deliveries: move cursor: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlite: enqueue deliveries: commit: %w", err)
	}
	s.kickCheckpoint()
	return out, nil
}

const deliveryCols = `id, practice, app, webhook_id, event_id, seq, payload, status, attempts, next_attempt,
	first_attempt, last_attempt, last_error, created_at, updated_at, delivered_at`

func scanDelivery(sc rowScanner) (store.Delivery, error) {
	var d store.Delivery
	var next, first, last, created, updated, delivered sql.NullInt64
	if err := sc.Scan(&d.ID, &d.Practice, &d.App, &d.WebhookID, &d.EventID, &d.Seq, &d.Payload, &d.Status, &d.Attempts,
		&next, &first, &last, &d.LastError, &created, &updated, &delivered); err != nil {
		return d, err
	}
	d.NextAttempt, d.FirstAttempt, d.LastAttempt = fromNanos(next), fromNanos(first), fromNanos(last)
	d.CreatedAt, d.UpdatedAt, d.DeliveredAt = fromNanos(created), fromNanos(updated), fromNanos(delivered)
	return d, nil
}

// headsSQL lists the queue head (lowest pending id) of every active webhook
// of a practice with its NextAttempt: one seek in deliveries_pending per
// webhook, however long the queues are (a grouped scan of the pending rows
// would read every queued delivery at every claim).
const headsSQL = `SELECT d.id, d.next_attempt
	FROM webhooks w
	JOIN deliveries d ON d.id = (SELECT p.id FROM deliveries p INDEXED BY deliveries_pending
		WHERE p.practice = w.practice AND p.webhook_id = w.id AND p.status = 'pending' ORDER BY p.id LIMIT 1)
	WHERE w.practice = ? AND w.active = 1
	ORDER BY d.next_attempt, d.id`

// dueHeads reads the queue heads: the ids of at most limit due ones, and
// the earliest NextAttempt of the others (zero: none).
func dueHeads(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, practice string, now time.Time, limit int) ([]int64, time.Time, error) {
	rows, err := q.QueryContext(ctx, headsSQL, practice)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer rows.Close()
	var due []int64
	var nextDue int64
	t := now.UnixNano()
	for rows.Next() {
		var id, next int64
		if err := rows.Scan(&id, &next); err != nil {
			return nil, time.Time{}, err
		}
		if next <= t && len(due) < limit {
			due = append(due, id)
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

// ClaimDeliveries claims the due queue heads. The heads are read first on
// the read pool, so a look at a practice with nothing due costs no write
// transaction; when something is due they are read again, and claimed, in
// one write transaction.
func (s *Store) ClaimDeliveries(ctx context.Context, practice string, now time.Time, lease time.Duration, limit int) (store.Claim, error) {
	if err := checkPractice(practice); err != nil {
		return store.Claim{}, err
	}
	if lease <= 0 {
		return store.Claim{}, errors.New("sqlite: claim deliveries: the lease must be positive")
	}
	if limit <= 0 {
		return store.Claim{}, nil
	}
	due, nextDue, err := dueHeads(ctx, s.r, practice, now, limit)
	if err != nil {
		return store.Claim{}, fmt.Errorf("sqlite: claim deliveries: %w", err)
	}
	if len(due) == 0 {
		return store.Claim{NextDue: nextDue}, nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return store.Claim{}, fmt.Errorf("sqlite: claim deliveries: begin: %w", err)
	}
	defer tx.Rollback()
	var out store.Claim
	if due, out.NextDue, err = dueHeads(ctx, tx, practice, now, limit); err != nil {
		return store.Claim{}, fmt.Errorf("sqlite: claim deliveries: %w", err)
	}
	if len(due) == 0 {
		return out, nil
	}
	t := now.UnixNano()
	upd, err := tx.PrepareContext(ctx, `UPDATE deliveries SET attempts = attempts + 1, first_attempt = coalesce(first_attempt, ?),
		last_attempt = ?, next_attempt = ?, updated_at = ? WHERE id = ? AND practice = ? RETURNING `+deliveryCols)
	if err != nil {
		return store.Claim{}, fmt.Errorf("sqlite: claim deliveries: %w", err)
	}
	defer upd.Close()
	until := now.Add(lease).UnixNano()
	out.Deliveries = make([]store.Delivery, 0, len(due))
	for _, id := range due {
		d, err := scanDelivery(upd.QueryRowContext(ctx, t, t, until, s.now().UnixNano(), id, practice))
		if err != nil {
			return store.Claim{}, fmt.Errorf("sqlite: claim delivery %d: %w", id, err)
		}
		out.Deliveries = append(out.Deliveries, d)
	}
	if err := tx.Commit(); err != nil {
		return store.Claim{}, fmt.Errorf("sqlite: claim deliveries: commit: %w", err)
	}
	s.kickCheckpoint()
	return out, nil
}

// RecordAttempt records the outcome of a claimed attempt.
func (s *Store) RecordAttempt(ctx context.Context, practice string, id int64, r store.AttemptResult) error {
	if err := checkPractice(practice); err != nil {
		return err
	}
	at := r.At
	if at.IsZero() {
		at = s.now()
	}
	var q string
	var args []any
	switch r.Status {
	case store.DeliveryDelivered:
		q = `UPDATE deliveries SET status = 'delivered', delivered_at = ?, last_error = ?, updated_at = ?`
		args = []any{at.UnixNano(), r.Error, s.now().UnixNano()}
	case store.DeliveryDead:
		q = `UPDATE deliveries SET status = 'dead', last_error = ?, updated_at = ?`
		args = []any{r.Error, s.now().UnixNano()}
	case store.DeliveryPending:
		if r.NextAttempt.IsZero() {
			return fmt.Errorf("sqlite: record attempt of delivery %d: a retry needs a next attempt time", id)
		}
		q = `UPDATE deliveries SET next_attempt = ?, last_error = ?, updated_at = ?`
		args = []any{r.NextAttempt.UnixNano(), r.Error, s.now().UnixNano()}
	default:
		return fmt.Errorf("sqlite: record attempt of delivery %d: unknown status %q", id, r.Status)
	}
	res, err := s.w.ExecContext(ctx, q+` WHERE id = ? AND practice = ? AND status = 'pending' AND attempts = ?`,
		append(args, id, practice, r.Attempt)...)
	if err != nil {
		return fmt.Errorf("sqlite: record attempt of delivery %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: record attempt of delivery %d: %w", id, err)
	} else if n == 0 {
		return s.missingOr(ctx, practice, id, "record attempt %d of delivery %d: it is no longer pending or was claimed again", r.Attempt, id)
	}
	s.kickCheckpoint()
	return nil
}

// missingOr returns ErrNotFound when the delivery does not exist in the
// practice, otherwise ErrDeliveryState with the message.
func (s *Store) missingOr(ctx context.Context, practice string, id int64, format string, args ...any) error {
	if _, err := s.GetDelivery(ctx, practice, id); err != nil {
		return err
	}
	return fmt.Errorf("sqlite: %s: %w", fmt.Sprintf(format, args...), store.ErrDeliveryState)
}

// GetDelivery returns one delivery of the practice.
func (s *Store) GetDelivery(ctx context.Context, practice string, id int64) (store.Delivery, error) {
	if err := checkPractice(practice); err != nil {
		return store.Delivery{}, err
	}
	d, err := scanDelivery(s.r.QueryRowContext(ctx, `SELECT `+deliveryCols+` FROM deliveries WHERE id = ? AND practice = ?`, id, practice))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Delivery{}, notFound("sqlite: delivery %d", id)
	}
	if err != nil {
		return store.Delivery{}, fmt.Errorf("sqlite: get delivery %d: %w", id, err)
	}
	return d, nil
}

// ListDeliveries lists a practice's deliveries matching f, newest first, at
// most f.Limit (0: 100, at most 10,000).
func (s *Store) ListDeliveries(ctx context.Context, practice string, f store.DeliveryFilter) ([]store.Delivery, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	var q strings.Builder
	q.WriteString(`SELECT ` + deliveryCols + ` FROM deliveries WHERE practice = ?`)
	args := []any{practice}
	if f.WebhookID != "" {
		q.WriteString(` AND webhook_id = ?`)
		args = append(args, f.WebhookID)
	}
	if f.App != "" {
		q.WriteString(` AND app = ?`)
		args = append(args, f.App)
	}
	if len(f.Status) > 0 {
		q.WriteString(` AND status IN (?` + strings.Repeat(`,?`, len(f.Status)-1) + `)`)
		for _, st := range f.Status {
			args = append(args, st)
		}
	}
	if f.BeforeID > 0 {
		q.WriteString(` AND id < ?`)
		args = append(args, f.BeforeID)
	}
	q.WriteString(` ORDER BY id DESC LIMIT ?`)
	args = append(args, limitOr(f.Limit, 100, 10000))
	return queryAll(ctx, s.r, "list deliveries", scanDelivery, q.String(), args...)
}

// CountDeliveries counts a practice's deliveries by status, for one webhook
// or ("" ) all. Statuses without deliveries are absent.
func (s *Store) CountDeliveries(ctx context.Context, practice, webhookID string) (map[string]int, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	q := `SELECT status, count(*) FROM deliveries WHERE practice = ?`
	args := []any{practice}
	if webhookID != "" {
		q += ` AND webhook_id = ?`
		args = append(args, webhookID)
	}
	return countByStatus(ctx, s.r, "count deliveries", q+` GROUP BY status`, args...)
}

// ReplayDelivery makes a dead delivery pending again with a fresh retry window.
func (s *Store) ReplayDelivery(ctx context.Context, practice string, id int64, now time.Time) error {
	if err := checkPractice(practice); err != nil {
		return err
	}
	res, err := s.w.ExecContext(ctx, `UPDATE deliveries SET status = 'pending', attempts = 0, first_attempt = NULL,
		next_attempt = ?, updated_at = ? WHERE id = ? AND practice = ? AND status = 'dead'`,
		now.UnixNano(), s.now().UnixNano(), id, practice)
	if err != nil {
		return fmt.Errorf("sqlite: replay delivery %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: replay delivery %d: %w", id, err)
	} else if n == 0 {
		return s.missingOr(ctx, practice, id, "replay delivery %d: it is not dead", id)
	}
	s.kickCheckpoint()
	return nil
}

// PruneDeliveries deletes the practice's deliveries delivered before before.
func (s *Store) PruneDeliveries(ctx context.Context, practice string, before time.Time) (int64, error) {
	if err := checkPractice(practice); err != nil {
		return 0, err
	}
	res, err := s.w.ExecContext(ctx, `DELETE FROM deliveries WHERE practice = ? AND status = 'delivered' AND delivered_at < ?`,
		practice, before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune deliveries: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune deliveries: %w", err)
	}
	if n > 0 {
		s.kickCheckpoint()
	}
	return n, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
