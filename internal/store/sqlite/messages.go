package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// This file holds the HL7 v2 message store (store.MessageStore).
//
// Durability. PutHL7Messages returns after its transaction has committed on
// the writer connection. With the store's WAL journal and synchronous=NORMAL
// (see Open) a commit is written to the WAL file but not fsynced: it
// survives a crash or kill of the mediflow process, and the database stays
// consistent after any crash, but the last commits before a power failure or
// an operating-system crash may be lost. That is what "durably stored" means
// for commit-then-ACK with this store. synchronous=FULL would fsync the WAL
// at every commit and extend the guarantee to power loss, for the cost of
// one fsync per transaction (group commit shares it between the messages of
// a batch).
//
// Cost. A message is one row appended in id order plus two index entries:
// (practice, id), which grows at its end, and the de-duplication entry
// (hash of the sender, control id, received_at), which lands next to the
// sender's previous message when control ids count up. In a one-message
// commit each of the three is one more WAL page; in a batch they share
// pages. Filters other than practice and id scan the practice's rows (no
// status or time index: each would cost a WAL page per put and per status
// update). The package benchmarks measure all of this.
//
// One message is written with a single INSERT that checks for a duplicate
// itself (INSERT ... SELECT ... WHERE NOT EXISTS), so it needs no BEGIN and
// COMMIT; a batch runs the same statements in one transaction.

// hl7Statuses are the valid HL7Message.Status values.
var hl7Statuses = map[string]bool{
	store.MsgReceived: true, store.MsgProcessed: true, store.MsgFailed: true, store.MsgQuarantined: true,
	store.MsgIgnored: true, store.MsgQueued: true, store.MsgSent: true, store.MsgAcked: true,
	store.MsgRejected: true, store.MsgTimedOut: true,
}

func checkHL7Status(s string) error {
	if !hl7Statuses[s] {
		return fmt.Errorf("sqlite: unknown HL7 message status %q", s)
	}
	return nil
}

func checkDirection(d string, emptyOK bool) error {
	if d == store.DirectionInbound || d == store.DirectionOutbound || (emptyOK && d == "") {
		return nil
	}
	return fmt.Errorf("sqlite: HL7 message direction %q is neither %q nor %q", d, store.DirectionInbound, store.DirectionOutbound)
}

// senderHash hashes the sender part of an inbound message's de-duplication
// key (practice, channel, sending application and facility) into the signed
// 64-bit integer SQLite stores. Each part is length-prefixed, so ("ab", "c")
// and ("a", "bc") differ.
func senderHash(practice string, m *store.HL7Message) int64 {
	var buf [192]byte
	b := buf[:0]
	for _, p := range [...]string{practice, m.Channel, m.SendingApp, m.SendingFacility} {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	sum := sha256.Sum256(b)
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

const hl7Cols = `id, practice, direction, channel, peer, sending_app, sending_facility, receiving_app, receiving_facility,
	message_code, trigger_event, control_id, received_at, sent_at, processed_at, ack_code, status, attempts, duplicates, error`

const hl7InsertCols = `practice, direction, channel, peer, sending_app, sending_facility, receiving_app,
	receiving_facility, message_code, trigger_event, control_id, received_at, sent_at, processed_at, ack_code, status,
	attempts, duplicates, error, sender_hash, body`

const hl7InsertArgs = 21

// hl7InsertSQL stores a message that is not de-duplicated.
const hl7InsertSQL = `INSERT INTO hl7_messages (` + hl7InsertCols + `) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`

// hl7DedupWhere matches the stored inbound messages with the same key whose
// received_at is in [lo, hi]. The real key columns are compared, not only
// the hash. Arguments: sender_hash, control_id, lo, hi, practice, channel,
// sending_app, sending_facility.
const hl7DedupWhere = `sender_hash = ? AND control_id = ? AND received_at >= ? AND received_at <= ?
	AND practice = ? AND direction = 'in' AND channel = ? AND sending_app = ? AND sending_facility = ?`

// hl7InsertNewSQL stores a message unless it is a duplicate: the check and
// the insert are one statement, so one message needs no explicit
// transaction.
const hl7InsertNewSQL = `INSERT INTO hl7_messages (` + hl7InsertCols + `) SELECT ?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?
	WHERE NOT EXISTS (SELECT 1 FROM hl7_messages WHERE ` + hl7DedupWhere + `)`

// hl7CountDupSQL counts a duplicate on the newest matching original and
// returns it.
const hl7CountDupSQL = `UPDATE hl7_messages SET duplicates = duplicates + 1
	WHERE id = (SELECT id FROM hl7_messages WHERE ` + hl7DedupWhere + ` ORDER BY received_at DESC, id DESC LIMIT 1)
	RETURNING id, ack_code, status`

// PutHL7Messages stores a batch in one transaction. A stored inbound message
// with the same key is a duplicate when its ReceivedAt is within dedupWindow
// of the new one's, on either side (a clock stepped back must not defeat
// de-duplication). A zero ReceivedAt is set to now; an empty Status becomes
// MsgReceived (inbound) or MsgQueued (outbound). ID, Duplicates and Practice
// of the given messages are ignored (Practice may be empty or equal to
// practice).
func (s *Store) PutHL7Messages(ctx context.Context, practice string, msgs []store.HL7Message, dedupWindow time.Duration) ([]store.HL7PutResult, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return []store.HL7PutResult{}, nil
	}
	rows := make([]hl7Row, len(msgs))
	var now time.Time
	for i := range msgs {
		m := &msgs[i]
		if m.Practice != "" && m.Practice != practice {
			return nil, fmt.Errorf("sqlite: put HL7 message %d: it names practice %q, the call %q", i, m.Practice, practice)
		}
		if err := checkDirection(m.Direction, false); err != nil {
			return nil, fmt.Errorf("put HL7 message %d: %w", i, err)
		}
		if len(m.Body) == 0 {
			return nil, fmt.Errorf("sqlite: put HL7 message %d: empty body", i)
		}
		r := hl7Row{m: m, status: m.Status}
		if r.status == "" {
			r.status = store.MsgReceived
			if m.Direction == store.DirectionOutbound {
				r.status = store.MsgQueued
			}
		} else if err := checkHL7Status(r.status); err != nil {
			return nil, fmt.Errorf("put HL7 message %d: %w", i, err)
		}
		recv := m.ReceivedAt
		if recv.IsZero() {
			if now.IsZero() {
				now = s.now()
			}
			recv = now
		}
		args := make([]any, hl7InsertArgs, hl7InsertArgs+8)
		var key any
		if m.Direction == store.DirectionInbound && m.ControlID != "" {
			h := senderHash(practice, m)
			key = h
			if dedupWindow > 0 {
				w, t := int64(dedupWindow), recv.UnixNano()
				r.dedupArgs = []any{h, m.ControlID, satSub(t, w), satAdd(t, w), practice, m.Channel, m.SendingApp, m.SendingFacility}
			}
		}
		args[0], args[1], args[2], args[3], args[4], args[5], args[6] = practice, m.Direction, m.Channel, m.Peer, m.SendingApp, m.SendingFacility, m.ReceivingApp
		args[7], args[8], args[9], args[10], args[11], args[12], args[13] = m.ReceivingFacility, m.MessageCode, m.TriggerEvent, m.ControlID, recv.UnixNano(), nanos(m.SentAt), nanos(m.ProcessedAt)
		args[14], args[15], args[16], args[17], args[18], args[19], args[20] = m.AckCode, r.status, m.Attempts, 0, m.Error, key, m.Body
		r.args = append(args, r.dedupArgs...)
		rows[i] = r
	}
	// Statements are prepared before a transaction takes the writer's only connection.
	var st hl7Stmts
	var err error
	if st.insert, err = s.stmt(ctx, hl7InsertSQL); err != nil {
		return nil, fmt.Errorf("sqlite: put HL7 messages: %w", err)
	}
	if st.insertNew, err = s.stmt(ctx, hl7InsertNewSQL); err != nil {
		return nil, fmt.Errorf("sqlite: put HL7 messages: %w", err)
	}
	if st.countDup, err = s.stmt(ctx, hl7CountDupSQL); err != nil {
		return nil, fmt.Errorf("sqlite: put HL7 messages: %w", err)
	}
	out := make([]store.HL7PutResult, len(rows))
	if len(rows) == 1 {
		// One statement is its own transaction (a duplicate takes a second
		// one that only counts it). This saves BEGIN and COMMIT.
		if out[0], err = st.put(ctx, &rows[0]); err != nil {
			return nil, fmt.Errorf("sqlite: put HL7 message: %w", err)
		}
		s.kickCheckpoint()
		return out, nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: put HL7 messages: begin: %w", err)
	}
	defer tx.Rollback()
	txst := hl7Stmts{insert: tx.StmtContext(ctx, st.insert), insertNew: tx.StmtContext(ctx, st.insertNew), countDup: tx.StmtContext(ctx, st.countDup)}
	for i := range rows {
		if out[i], err = txst.put(ctx, &rows[i]); err != nil {
			return nil, fmt.Errorf("sqlite: put HL7 message %d: %w", i, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlite: put HL7 messages: commit: %w", err)
	}
	s.kickCheckpoint()
	return out, nil
}

// hl7Row is one validated message with its statement arguments.
type hl7Row struct {
	m         *store.HL7Message
	status    string
	args      []any // insert arguments, then dedupArgs
	dedupArgs []any // nil: not de-duplicated
}

type hl7Stmts struct{ insert, insertNew, countDup *sql.Stmt }

// put stores one message, or counts it as a duplicate of the original.
func (st hl7Stmts) put(ctx context.Context, r *hl7Row) (store.HL7PutResult, error) {
	var res sql.Result
	var err error
	if r.dedupArgs == nil {
		res, err = st.insert.ExecContext(ctx, r.args[:hl7InsertArgs]...)
	} else {
		res, err = st.insertNew.ExecContext(ctx, r.args...)
	}
	if err != nil {
		return store.HL7PutResult{}, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return store.HL7PutResult{}, err
	}
	if n == 1 {
		id, err := res.LastInsertId()
		if err != nil {
			return store.HL7PutResult{}, err
		}
		return store.HL7PutResult{ID: id, AckCode: r.m.AckCode, Status: r.status}, nil
	}
	out := store.HL7PutResult{Duplicate: true}
	if err := st.countDup.QueryRowContext(ctx, r.dedupArgs...).Scan(&out.ID, &out.AckCode, &out.Status); err != nil {
		// Nothing deletes messages, so the original that made the insert a
		// no-op is still there.
		return store.HL7PutResult{}, fmt.Errorf("count duplicate: %w", err)
	}
	return out, nil
}

func satAdd(a, b int64) int64 {
	if a > 0 && b > (1<<63-1)-a {
		return 1<<63 - 1
	}
	return a + b
}

func satSub(a, b int64) int64 {
	if a < 0 && b > a-(-1<<63) {
		return -1 << 63
	}
	return a - b
}

func scanHL7(sc rowScanner, withBody bool) (store.HL7Message, error) {
	var m store.HL7Message
	var recv, sent, processed sql.NullInt64
	dest := []any{&m.ID, &m.Practice, &m.Direction, &m.Channel, &m.Peer, &m.SendingApp, &m.SendingFacility,
		&m.ReceivingApp, &m.ReceivingFacility, &m.MessageCode, &m.TriggerEvent, &m.ControlID, &recv, &sent, &processed,
		&m.AckCode, &m.Status, &m.Attempts, &m.Duplicates, &m.Error}
	if withBody {
		dest = append(dest, &m.Body)
	}
	if err := sc.Scan(dest...); err != nil {
		return m, err
	}
	m.ReceivedAt, m.SentAt, m.ProcessedAt = fromNanos(recv), fromNanos(sent), fromNanos(processed)
	if withBody && m.Body == nil {
		m.Body = []byte{}
	}
	return m, nil
}

// GetHL7Message returns one message of the practice, with its body.
func (s *Store) GetHL7Message(ctx context.Context, practice string, id int64) (store.HL7Message, error) {
	if err := checkPractice(practice); err != nil {
		return store.HL7Message{}, err
	}
	st, err := s.readStmt(ctx, `SELECT `+hl7Cols+`, body FROM hl7_messages WHERE id = ? AND practice = ?`)
	if err != nil {
		return store.HL7Message{}, fmt.Errorf("sqlite: get HL7 message %d: %w", id, err)
	}
	m, err := scanHL7(st.QueryRowContext(ctx, id, practice), true)
	if errors.Is(err, sql.ErrNoRows) {
		return store.HL7Message{}, notFound("sqlite: HL7 message %d", id)
	}
	if err != nil {
		return store.HL7Message{}, fmt.Errorf("sqlite: get HL7 message %d: %w", id, err)
	}
	return m, nil
}

// UpdateHL7Message changes the processing state of one message. A non-empty
// Status also sets Error (so an empty Error clears it); a non-empty Error
// without Status sets Error alone.
func (s *Store) UpdateHL7Message(ctx context.Context, practice string, id int64, u store.HL7Update) error {
	if err := checkPractice(practice); err != nil {
		return err
	}
	var set []string
	var args []any
	if u.Status != "" {
		if err := checkHL7Status(u.Status); err != nil {
			return fmt.Errorf("update HL7 message %d: %w", id, err)
		}
		set = append(set, `status = ?`, `error = ?`)
		args = append(args, u.Status, u.Error)
	} else if u.Error != "" {
		set = append(set, `error = ?`)
		args = append(args, u.Error)
	}
	if u.AckCode != "" {
		set = append(set, `ack_code = ?`)
		args = append(args, u.AckCode)
	}
	if !u.SentAt.IsZero() {
		set = append(set, `sent_at = ?`)
		args = append(args, u.SentAt.UnixNano())
	}
	if !u.ProcessedAt.IsZero() {
		set = append(set, `processed_at = ?`)
		args = append(args, u.ProcessedAt.UnixNano())
	}
	if u.AddAttempt {
		set = append(set, `attempts = attempts + 1`)
	}
	if len(set) == 0 {
		// Nothing to change, but an unknown message is still an error.
		if _, err := s.GetHL7Message(ctx, practice, id); err != nil {
			return err
		}
		return nil
	}
	// The set of column combinations is small (at most 2^6), so the
	// prepared statements stay bounded.
	st, err := s.stmt(ctx, `UPDATE hl7_messages SET `+strings.Join(set, `, `)+` WHERE id = ? AND practice = ?`)
	if err != nil {
		return fmt.Errorf("sqlite: update HL7 message %d: %w", id, err)
	}
	res, err := st.ExecContext(ctx, append(args, id, practice)...)
	if err != nil {
		return fmt.Errorf("sqlite: update HL7 message %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: update HL7 message %d: %w", id, err)
	} else if n == 0 {
		return notFound("sqlite: HL7 message %d", id)
	}
	s.kickCheckpoint()
	return nil
}

// ListHL7Messages lists a practice's messages matching f, newest first
// unless f.Ascending, at most f.Limit (0: 100, at most 10,000).
func (s *Store) ListHL7Messages(ctx context.Context, practice string, f store.HL7Filter) ([]store.HL7Message, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	if err := checkDirection(f.Direction, true); err != nil {
		return nil, fmt.Errorf("list HL7 messages: %w", err)
	}
	var q strings.Builder
	q.WriteString(`SELECT ` + hl7Cols)
	if f.WithBody {
		q.WriteString(`, body`)
	}
	q.WriteString(` FROM hl7_messages WHERE practice = ?`)
	args := []any{practice}
	eq := func(col, v string) {
		if v != "" {
			q.WriteString(` AND ` + col + ` = ?`)
			args = append(args, v)
		}
	}
	eq("direction", f.Direction)
	eq("channel", f.Channel)
	eq("message_code", f.MessageCode)
	eq("trigger_event", f.TriggerEvent)
	eq("control_id", f.ControlID)
	eq("sending_facility", f.SendingFacility)
	eq("ack_code", f.AckCode)
	if len(f.Status) > 0 {
		q.WriteString(` AND status IN (`)
		for i, st := range f.Status {
			if i > 0 {
				q.WriteString(`,`)
			}
			q.WriteString(`?`)
			args = append(args, st)
		}
		q.WriteString(`)`)
	}
	if !f.Since.IsZero() {
		q.WriteString(` AND received_at >= ?`)
		args = append(args, f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		q.WriteString(` AND received_at < ?`)
		args = append(args, f.Until.UnixNano())
	}
	if f.Ascending {
		if f.AfterID > 0 {
			q.WriteString(` AND id > ?`)
			args = append(args, f.AfterID)
		}
		q.WriteString(` ORDER BY id ASC`)
	} else {
		if f.AfterID > 0 {
			q.WriteString(` AND id < ?`)
			args = append(args, f.AfterID)
		}
		q.WriteString(` ORDER BY id DESC`)
	}
	q.WriteString(` LIMIT ?`)
	args = append(args, limitOr(f.Limit, 100, 10000))
	scan := func(sc rowScanner) (store.HL7Message, error) { return scanHL7(sc, f.WithBody) }
	return queryAll(ctx, s.r, "list HL7 messages", scan, q.String(), args...)
}

// CountHL7Messages counts a practice's messages by status for one direction
// ("" both). Statuses without messages are absent from the map.
func (s *Store) CountHL7Messages(ctx context.Context, practice, direction string) (map[string]int, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	if err := checkDirection(direction, true); err != nil {
		return nil, fmt.Errorf("count HL7 messages: %w", err)
	}
	q := `SELECT status, count(*) FROM hl7_messages WHERE practice = ?`
	args := []any{practice}
	if direction != "" {
		q += ` AND direction = ?`
		args = append(args, direction)
	}
	q += ` GROUP BY status`
	return countByStatus(ctx, s.r, "count HL7 messages", q, args...)
}
