package hl7out

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/hl7/ack"
	"github.com/mediflow/mediflow/internal/hl7/mllp"
	"github.com/mediflow/mediflow/internal/retry"
	"github.com/mediflow/mediflow/internal/store"
)

const (
	// listBatch is how many queued messages a destination reads at once.
	listBatch = 100
	// maxErrorText bounds the error text stored with a message.
	maxErrorText = 500
	// maxAttemptBackoff caps the pause between attempts of one round.
	maxAttemptBackoff = 5 * time.Second
	// storeRetry is the first pause after a failed store call; it doubles
	// up to maxStoreRetry.
	storeRetry    = 100 * time.Millisecond
	maxStoreRetry = 10 * time.Second
	// finalWriteTimeout bounds recording an answer that arrived while Run
	// was stopping.
	finalWriteTimeout = 5 * time.Second
)

// worker delivers the messages of one destination. Only its goroutine uses
// it.
type worker struct {
	s      *Sender
	d      *dest
	cfg    Destination
	log    *slog.Logger
	client *mllp.Client
	after  int64 // every message of the destination up to this id has an outcome
}

func newWorker(s *Sender, d *dest) *worker {
	w := &worker{s: s, d: d, cfg: d.cfg,
		log: s.opts.Logger.With("practice", d.cfg.Practice, "destination", d.cfg.Name)}
	w.client = w.newClient()
	return w
}

func (w *worker) newClient() *mllp.Client {
	return mllp.NewClient(mllp.ClientConfig{
		Addr:           w.cfg.Addr,
		TLS:            w.cfg.TLS,
		DialTimeout:    w.cfg.DialTimeout,
		AckTimeout:     w.cfg.AckTimeout,
		MaxAttempts:    1, // attempts are counted (and stored) here
		MaxMessageSize: w.cfg.MaxMessageSize,
	})
}

// resetClient drops the connection after an answer that cannot be trusted.
func (w *worker) resetClient() {
	w.client.Close()
	w.client = w.newClient()
}

// run delivers until ctx ends.
func (w *worker) run(ctx context.Context) {
	defer func() { w.client.Close() }()
	poll := time.NewTimer(w.s.opts.PollInterval)
	defer poll.Stop()
	failures := 0
	for ctx.Err() == nil {
		msgs, err := w.s.opts.Store.ListHL7Messages(ctx, w.cfg.Practice, store.HL7Filter{
			Direction: store.DirectionOutbound,
			Channel:   w.cfg.Name,
			Status:    []string{store.MsgQueued, store.MsgSent},
			AfterID:   w.after,
			Ascending: true,
			Limit:     listBatch,
			WithBody:  true,
		})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			w.log.Error("hl7 outbound: cannot read the queue", "error", err.Error())
			if !sleep(ctx, storeBackoff(failures)) {
				return
			}
			continue
		}
		failures = 0
		for _, m := range msgs {
			if !w.deliver(ctx, m) {
				return
			}
			w.after = m.ID
		}
		if len(msgs) == listBatch {
			continue
		}
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
		poll.Reset(w.s.opts.PollInterval)
		select {
		case <-ctx.Done():
			return
		case <-w.d.wake:
		case <-poll.C:
		}
	}
}

// deliver sends one message until it has an outcome. It returns false when
// ctx ended first (the message then stays queued or sent, and is sent again
// at the next start); a message that disappeared from the store is passed
// over.
func (w *worker) deliver(ctx context.Context, m store.HL7Message) bool {
	if ctx.Err() != nil {
		return false
	}
	attempts := m.Attempts
	w.setHead(m.ID, attempts, "")
	defer w.setHead(0, 0, "")
	last := ""
	for round := 1; ; round++ {
		for a := 1; a <= w.cfg.MaxAttempts; a++ {
			if a > 1 && !sleep(ctx, retry.Jitter(retry.Backoff(w.cfg.Backoff, a-1, maxAttemptBackoff))) {
				return false
			}
			if !w.update(ctx, m.ID, store.HL7Update{Status: store.MsgSent, Error: last, SentAt: w.s.opts.Now().UTC(), AddAttempt: true}) {
				return ctx.Err() == nil
			}
			attempts++
			w.setHead(m.ID, attempts, last)
			reply, err := w.client.Send(ctx, m.Body)
			if err != nil && ctx.Err() != nil {
				return false
			}
			if err != nil {
				err = sendCause(err)
			} else {
				res, perr := ack.Parse(reply)
				switch {
				case perr != nil:
					err = fmt.Errorf("unreadable answer: %w", perr)
					w.resetClient()
				case res.ControlID != m.ControlID:
					err = fmt.Errorf("%s ACK for another message (MSA-2 %s)", res.Code, strconv.Quote(res.ControlID))
					w.resetClient()
				default:
					w.outcome(ctx, m, attempts, res)
					return true
				}
			}
			last = clip(fmt.Sprintf("attempt %d: %s", attempts, err.Error()))
			w.setHead(m.ID, attempts, last)
			w.log.Warn("hl7 outbound: attempt failed", "id", m.ID, "control_id", m.ControlID, "attempt", attempts, "error", err.Error())
			w.event(m, store.MsgSent, attempts, ack.Result{}, last)
		}
		if w.cfg.MaxRounds > 0 && round >= w.cfg.MaxRounds {
			text := clip(fmt.Sprintf("no acknowledgment after %d attempts; %s", attempts, last))
			if !w.finish(ctx, m.ID, store.HL7Update{Status: store.MsgTimedOut, Error: text, ProcessedAt: w.s.opts.Now().UTC()}) {
				return ctx.Err() == nil
			}
			w.d.mu.Lock()
			w.d.status.TimedOut++
			w.d.mu.Unlock()
			w.log.Warn("hl7 outbound: message timed out; going on with the next", "id", m.ID, "control_id", m.ControlID, "attempts", attempts)
			w.event(m, store.MsgTimedOut, attempts, ack.Result{}, text)
			return true
		}
		delay := retry.Jitter(retry.Backoff(w.cfg.RetryDelay, round, w.cfg.MaxRetryDelay))
		last = clip(fmt.Sprintf("%s; round %d failed, next round in %s", last, round, delay.Round(time.Millisecond)))
		if !w.update(ctx, m.ID, store.HL7Update{Error: last}) {
			return ctx.Err() == nil
		}
		w.setHead(m.ID, attempts, last)
		w.log.Warn("hl7 outbound: no acknowledgment; the destination holds its queue", "id", m.ID, "control_id", m.ControlID,
			"attempts", attempts, "round", round, "retry_in", delay.String())
		if !sleep(ctx, delay) {
			return false
		}
	}
}

// outcome records the receiver's answer.
func (w *worker) outcome(ctx context.Context, m store.HL7Message, attempts int, res ack.Result) {
	u := store.HL7Update{Status: store.MsgAcked, AckCode: string(res.Code), ProcessedAt: w.s.opts.Now().UTC()}
	if !res.Accepted() {
		u.Status, u.Error = store.MsgRejected, ackErrorText(res)
	}
	// An answer in hand is recorded even when Run is stopping; if that
	// fails too, the message is sent again at the next start.
	if !w.finish(ctx, m.ID, u) {
		return
	}
	w.d.mu.Lock()
	if u.Status == store.MsgAcked {
		w.d.status.Acked++
	} else {
		w.d.status.Rejected++
	}
	w.d.mu.Unlock()
	if u.Status == store.MsgAcked {
		w.log.Debug("hl7 outbound: acknowledged", "id", m.ID, "control_id", m.ControlID, "ack", string(res.Code), "attempts", attempts)
	} else {
		w.log.Warn("hl7 outbound: rejected by the receiver", "id", m.ID, "control_id", m.ControlID, "ack", string(res.Code), "attempts", attempts)
	}
	w.event(m, u.Status, attempts, res, u.Error)
}

// finish writes an outcome, also after ctx ended (for a bounded time).
func (w *worker) finish(ctx context.Context, id int64, u store.HL7Update) bool {
	fctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		fctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), finalWriteTimeout)
		defer cancel()
	}
	return w.update(fctx, id, u)
}

// update writes u, retrying a failing store until ctx ends. It returns
// false when ctx ended (or the message is gone) before the write succeeded.
func (w *worker) update(ctx context.Context, id int64, u store.HL7Update) bool {
	for failures := 1; ; failures++ {
		err := w.s.opts.Store.UpdateHL7Message(ctx, w.cfg.Practice, id, u)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if errors.Is(err, store.ErrNotFound) {
			w.log.Error("hl7 outbound: the message is no longer in the store", "id", id)
			return false
		}
		w.log.Error("hl7 outbound: cannot update the message; retrying", "id", id, "error", err.Error())
		if !sleep(ctx, storeBackoff(failures)) {
			return false
		}
	}
}

// setHead records the message being delivered (id 0: none) for Status.
func (w *worker) setHead(id int64, attempts int, lastErr string) {
	w.d.mu.Lock()
	defer w.d.mu.Unlock()
	st := &w.d.status
	if st.Head != id {
		st.HeadSince = time.Time{}
		if id != 0 {
			st.HeadSince = w.s.opts.Now()
		}
	}
	st.Head, st.HeadAttempts, st.LastError = id, attempts, lastErr
}

func (w *worker) event(m store.HL7Message, status string, attempts int, res ack.Result, errText string) {
	if w.s.opts.OnEvent == nil {
		return
	}
	w.s.opts.OnEvent(Event{Practice: w.cfg.Practice, Destination: w.cfg.Name, ID: m.ID, MessageCode: m.MessageCode,
		TriggerEvent: m.TriggerEvent, ControlID: m.ControlID, Status: status, AckCode: string(res.Code), AckText: res.Text,
		Attempts: attempts, Error: errText})
}

// sendCause strips the client's "no acknowledgment after 1 attempts"
// wrapper (attempts are counted here) and keeps the cause: dial, write or
// read failure, timeout.
func sendCause(err error) error {
	if !errors.Is(err, mllp.ErrNoAck) {
		return err
	}
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range u.Unwrap() {
			if e != mllp.ErrNoAck {
				return fmt.Errorf("no acknowledgment: %w", e)
			}
		}
	}
	return err
}

// ackErrorText is the stored reason of a rejection: the code, MSA-3 and
// each ERR segment (texts the receiver wrote, which HL7 means to be free
// of patient data).
func ackErrorText(res ack.Result) string {
	var b strings.Builder
	b.WriteString(string(res.Code))
	if res.Text != "" {
		b.WriteString(" ")
		b.WriteString(res.Text)
	}
	for _, e := range res.Errors {
		b.WriteString("; ERR")
		if e.Location != "" {
			b.WriteString(" " + e.Location)
		}
		if e.Code != 0 {
			b.WriteString(" code " + strconv.Itoa(e.Code))
		}
		if e.Severity != "" && e.Severity != "E" {
			b.WriteString(" severity " + e.Severity)
		}
		if e.Text != "" && e.Text != res.Text {
			b.WriteString(": " + e.Text)
		}
	}
	return clip(strings.Join(strings.Fields(b.String()), " "))
}

func clip(s string) string {
	if len(s) <= maxErrorText {
		return s
	}
	// cut on a rune boundary
	cut := maxErrorText
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}

func storeBackoff(failures int) time.Duration {
	return retry.Jitter(retry.Backoff(storeRetry, failures, maxStoreRetry))
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
