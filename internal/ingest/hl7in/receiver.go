package hl7in

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/ack"
	"github.com/mediflow/mediflow/internal/hl7/mllp"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/store"
)

// maxErrorText bounds the error text stored with a message.
const maxErrorText = 500

// receiver answers the messages of one listener (an mllp.Handler): it reads
// the MSH metadata, has the message committed with its batch, and only then
// builds the ACK.
type receiver struct {
	cfg        Listener
	c          *committer
	log        *slog.Logger
	metrics    *obs.Metrics
	now        func() time.Time
	onReceived func(Event)
}

var _ mllp.Handler = (*receiver)(nil)

// HandleMLLP stores one message and returns its ACK. An error (the store
// failed, or the pipeline is stopping) sends no ACK and closes the
// connection: the message may not be stored, so the sender must send it
// again, and de-duplication makes that safe if it was.
func (r *receiver) HandleMLLP(ctx context.Context, req *mllp.Request) ([]byte, error) {
	r.c.begin()
	received := req.ReceivedAt
	if received.IsZero() {
		received = r.now()
	}
	rec := store.HL7Message{
		Direction:  store.DirectionInbound,
		Channel:    r.cfg.Name,
		Peer:       req.Conn.RemoteAddr,
		ReceivedAt: received.UTC(),
		Body:       req.Message,
	}
	if len(trimSpace(req.Message)) == 0 {
		// Nothing to store and nothing to de-duplicate: an empty frame is
		// refused (AR) rather than acknowledged.
		r.c.abandon()
		code := string(r.codes(nil).reject)
		a := ack.BuildRaw(req.Message, ack.Options{Code: ack.Code(code), Text: "empty message: nothing was stored", Now: r.now(),
			Errors: []ack.Error{{Location: "MSH", Code: 100, Severity: "E", Text: "empty message"}}})
		r.metrics.HL7Message(r.cfg.Practice, r.cfg.Name, obs.HL7Rejected)
		r.acked(Event{AckCode: code, Status: ""}, received)
		return a, nil
	}

	msg, perr := hl7.Parse(req.Message, hl7.ParseOptions{})
	var h hl7.Header
	var codes ackCodes
	if perr == nil {
		h = msg.Header()
		rec.SendingApp, rec.SendingFacility = h.SendingApplication, h.SendingFacility
		rec.ReceivingApp, rec.ReceivingFacility = h.ReceivingApplication, h.ReceivingFacility
		rec.MessageCode, rec.TriggerEvent, rec.ControlID = h.MessageCode, h.TriggerEvent, h.ControlID
		codes = r.codes(&h)
		rec.Status, rec.AckCode = store.MsgReceived, string(codes.accept)
	} else {
		// Stored all the same, in quarantine, so nothing that reached us is
		// lost; the error text of the parser names positions and defect
		// codes, never values.
		codes = r.codes(nil)
		rec.Status, rec.AckCode = store.MsgQuarantined, string(codes.errorCode)
		rec.Error = clip("parse: " + perr.Error())
	}

	res, err := r.c.put(ctx, rec)
	if err != nil {
		r.metrics.HL7Message(r.cfg.Practice, r.cfg.Name, obs.HL7Error)
		r.log.Error("hl7 message not stored; no ACK sent, the connection is closed so the sender resends",
			"practice", r.cfg.Practice, "listener", r.cfg.Name, "peer", req.Conn.RemoteAddr, "error", err.Error())
		return nil, fmt.Errorf("hl7in: store message: %w", err)
	}

	ev := Event{ID: res.ID, MessageCode: rec.MessageCode, TriggerEvent: rec.TriggerEvent, ControlID: rec.ControlID,
		SendingApp: rec.SendingApp, SendingFacility: rec.SendingFacility, Duplicate: res.Duplicate, Status: res.Status}
	code := ack.Code(rec.AckCode)
	var text string
	var errs []ack.Error
	switch {
	case res.Duplicate:
		if res.AckCode != "" {
			code = ack.Code(res.AckCode)
		}
		text = fmt.Sprintf("duplicate of message %d (same sender and control id): not processed again", res.ID)
		r.metrics.HL7Message(r.cfg.Practice, r.cfg.Name, obs.HL7Duplicate)
	case perr != nil:
		text = fmt.Sprintf("message could not be parsed; it is stored in quarantine as message %d", res.ID)
		errs = []ack.Error{parseAckError(perr)}
		r.metrics.HL7Message(r.cfg.Practice, r.cfg.Name, obs.HL7Quarantined)
		ev.Error = rec.Error
	default:
		r.metrics.HL7Message(r.cfg.Practice, r.cfg.Name, obs.HL7Stored)
	}
	opts := ack.Options{Code: code, Text: text, Errors: errs, Now: r.now()}
	var a []byte
	if perr == nil {
		a = ack.Build(msg, opts)
	} else {
		a = ack.BuildRaw(req.Message, opts)
	}
	ev.AckCode = string(code)
	r.acked(ev, received)
	return a, nil
}

// acked records an ACK in the metrics and reports the event.
func (r *receiver) acked(ev Event, received time.Time) {
	r.metrics.HL7Acked(r.cfg.Practice, r.cfg.Name, ev.AckCode, r.now().Sub(received))
	if r.onReceived != nil {
		ev.Practice, ev.Channel = r.cfg.Practice, r.cfg.Name
		r.onReceived(ev)
	}
}

// ackCodes are the acknowledgment codes of one mode.
type ackCodes struct{ accept, errorCode, reject ack.Code }

var (
	originalCodes = ackCodes{"AA", "AE", "AR"}
	enhancedCodes = ackCodes{"CA", "CE", "CR"}
)

// codes picks original or enhanced mode for a message (h nil: it did not
// parse, so only a forced mode can make it enhanced).
func (r *receiver) codes(h *hl7.Header) ackCodes {
	switch r.cfg.AckMode {
	case AckOriginal:
		return originalCodes
	case AckEnhanced:
		return enhancedCodes
	}
	if h != nil && (h.AcceptAckType != "" || h.AppAckType != "") {
		return enhancedCodes
	}
	return originalCodes
}

// parseAckError is the ERR segment of a message that could not be parsed:
// HL7 table 0357 code 100 (segment sequence error: no usable MSH) at the
// first defect's position, with the parser's PHI-free defect code.
func parseAckError(err error) ack.Error {
	e := ack.Error{Code: 100, Severity: "E", Text: "message could not be parsed"}
	var pe *hl7.ParseError
	if errors.As(err, &pe) && len(pe.Defects) > 0 {
		d := pe.Defects[0]
		if d.Pos.SegmentID != "" {
			e.Location = d.Pos.SegmentID
			if d.Pos.Field > 0 {
				e.Location += fmt.Sprintf("-%d", d.Pos.Field)
			}
		}
		if d.Code != "" {
			e.Text += ": " + d.Code
		}
	}
	return e
}

// clip bounds an error text for storage.
func clip(s string) string {
	if len(s) <= maxErrorText {
		return s
	}
	return s[:maxErrorText] + "…"
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == 0 }
