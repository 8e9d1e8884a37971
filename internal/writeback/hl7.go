package writeback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/connector/fhirrest"
	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/ack"
	"github.com/mediflow/mediflow/internal/hl7/fhirv2"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/writeback/contract"
	"github.com/mediflow/mediflow/internal/writeback/hl7out"
)

// This file executes the intents a practice's write contract routes to
// HL7 v2 (contract.ChannelHL7): the vendor body is encoded with package
// fhirv2 (MSH-10 = the intent id) and queued on the practice's hl7out
// destination, which stores it before sending and delivers it in order.
// The stored message, found again by its control id, is the intent's
// state at the receiver: queued or sent (the intent waits, status sent),
// acked (confirmed), rejected (rejected, with a staff message from the
// ACK's ERR codes) or timed-out (dead).

// HL7Target is a practice's outbound HL7 v2 write path.
type HL7Target struct {
	// Sender delivers the messages; Destination names the practice's
	// destination in it.
	Sender      *hl7out.Sender
	Destination string
	// Messages is the store the Sender keeps its messages in: an intent's
	// message is looked up there by its control id.
	Messages store.MessageStore
	// Encoder configures the messages built (MSH-3 to MSH-6, identifier
	// systems); its ControlID is replaced by the intent id.
	Encoder fhirv2.Options
	// Patient returns the FHIR Patient JSON for a reference ("Patient/123"),
	// which PID is built from. nil: it is read through Target.FHIR.
	Patient func(ctx context.Context, ref string) ([]byte, error)
	// Poll is how often a sent intent's message is looked at when no
	// event from the Sender (Outbox.HL7Event) arrives first (0: 5 s).
	Poll time.Duration
}

func (h *HL7Target) validate(practice string) error {
	switch {
	case h.Sender == nil || h.Destination == "" || h.Messages == nil:
		return fmt.Errorf("writeback: practice %s: an HL7 target needs a Sender, a Destination and the message store", practice)
	case h.Poll < 0:
		return fmt.Errorf("writeback: practice %s: negative HL7 poll interval", practice)
	}
	return nil
}

// hl7Operations are the messages the HL7 channel builds.
var hl7Operations = map[string]bool{"MDM^T02": true, "SIU^S12": true, "SIU^S15": true, "DFT^P03": true}

// checkHL7 refuses an HL7-routed request the practice cannot send.
func (o *Outbox) checkHL7(r Request, sup contract.Support) error {
	if o.opts.Targets[r.Practice].HL7 == nil {
		return refused("%s goes through the HL7 v2 channel, and the practice has no HL7 destination for write-back", safeWord(string(r.Kind)))
	}
	if !hl7Operations[sup.Operation] {
		return refused("message %q is not built by the HL7 channel", hl7Word(sup.Operation))
	}
	if r.TargetID != "" {
		return refused("an HL7 write takes no target id: the record is identified in the message")
	}
	return nil
}

// HL7Event takes an event of the practices' hl7out Sender (pass it to
// hl7out.Options.OnEvent): when a message's outcome is known, the intent
// whose id is the message's control id is looked at without waiting for
// its next poll. It never blocks; an event that cannot be taken at once is
// dropped (the poll finds the outcome).
func (o *Outbox) HL7Event(ev hl7out.Event) {
	if !ev.Final() || ev.ControlID == "" {
		return
	}
	tgt, ok := o.opts.Targets[ev.Practice]
	if !ok || tgt.HL7 == nil || tgt.HL7.Destination != ev.Destination {
		return
	}
	// Remembered for a round that is deciding to wait right now: its
	// stored next look could otherwise land after this nudge (finish).
	o.hl7mu.Lock()
	if len(o.hl7seen) >= maxSeenOutcomes {
		clear(o.hl7seen)
	}
	o.hl7seen[ev.Practice+"/"+ev.ControlID] = true
	o.hl7mu.Unlock()
	select {
	case o.hl7c <- ev:
	default:
	}
}

// maxSeenOutcomes bounds the outcomes remembered for rounds in progress.
const maxSeenOutcomes = 10000

// hl7Outcome reports (and forgets) whether an outcome of the intent's
// message was reported since the last call.
func (o *Outbox) hl7Outcome(practice, id string) bool {
	o.hl7mu.Lock()
	defer o.hl7mu.Unlock()
	k := practice + "/" + id
	seen := o.hl7seen[k]
	delete(o.hl7seen, k)
	return seen
}

// nudge makes the sent intent of an HL7 event due now. An intent that is
// not sent, or was claimed again meanwhile, is left alone.
func (o *Outbox) nudge(ctx context.Context, ev hl7out.Event) {
	tgt, ok := o.opts.Targets[ev.Practice]
	if !ok || tgt.HL7 == nil || tgt.HL7.Destination != ev.Destination {
		return
	}
	in, err := o.st.GetIntent(ctx, ev.Practice, ev.ControlID)
	if err != nil || in.Status != store.IntentSent {
		return
	}
	now := o.opts.Now()
	_, err = o.st.UpdateIntent(ctx, in.Practice, in.ID, store.IntentUpdate{Attempt: in.Attempts, Status: store.IntentSent,
		NextAttempt: now, LastError: in.LastError, At: now})
	if err != nil && !errors.Is(err, store.ErrIntentState) && ctx.Err() == nil {
		o.log.Warn("writeback: cannot wake an intent after its HL7 outcome", "practice", in.Practice, "intent", in.ID, "error", err.Error())
	}
}

// hl7 is one round of an HL7-routed intent.
func (e *exec) hl7(ctx context.Context) *decision {
	h := e.tgt.HL7
	msg, found, d := e.hl7Message(ctx)
	if d != nil {
		return d
	}
	if e.in.Status != store.IntentSent {
		// A message of an earlier life of the intent (before a replay) that
		// was rejected or given up is not this attempt's: send again.
		if found && (msg.Status == store.MsgRejected || msg.Status == store.MsgTimedOut) {
			found = false
		}
		if !found {
			if d := e.hl7Enqueue(ctx); d != nil {
				return d
			}
			if msg, found, d = e.hl7Message(ctx); d != nil {
				return d
			}
		}
		if d := e.markSent(ctx, "", ""); d != nil {
			return d
		}
	}
	if !found {
		return final(store.IntentDead, "the intent's HL7 message is no longer in the message store")
	}
	switch msg.Status {
	case store.MsgAcked:
		e.hl7Record(ctx, store.IntentAttempt{Step: "ack", Outcome: "message " + strconv.FormatInt(msg.ID, 10) + " " + hl7Word(msg.AckCode)}, true)
		return final(store.IntentConfirmed, "")
	case store.MsgRejected:
		res := ackOfStored(msg.AckCode, msg.Error)
		codes := ackCodes(res)
		e.hl7Record(ctx, store.IntentAttempt{Step: "ack", Outcome: "message " + strconv.FormatInt(msg.ID, 10) + " " + codes}, false)
		d := final(store.IntentRejected, "refused by the HL7 receiver: "+codes)
		d.rejection = TranslateAck(res)
		return d
	case store.MsgTimedOut:
		e.hl7Record(ctx, store.IntentAttempt{Step: "ack", Outcome: "message " + strconv.FormatInt(msg.ID, 10) + " timed-out after " +
			strconv.Itoa(msg.Attempts) + " attempts"}, false)
		return final(store.IntentDead, clip("the HL7 destination gave up without an acknowledgment: "+msg.Error))
	}
	poll := h.Poll
	if poll == 0 {
		poll = 5 * time.Second
	}
	reason := "waiting for the HL7 receiver's acknowledgment (message " + strconv.FormatInt(msg.ID, 10) + " " + msg.Status + ")"
	if msg.Error != "" {
		reason += "; last: " + msg.Error
	}
	return &decision{kind: decideWait, reason: reason, wait: poll}
}

// hl7Message finds the newest outbound message of the practice's
// destination whose control id is the intent id.
func (e *exec) hl7Message(ctx context.Context) (store.HL7Message, bool, *decision) {
	h := e.tgt.HL7
	ms, err := h.Messages.ListHL7Messages(ctx, e.in.Practice, store.HL7Filter{Direction: store.DirectionOutbound, Channel: h.Destination,
		ControlID: e.in.ID, Limit: 1})
	if err != nil {
		return store.HL7Message{}, false, retry("cannot look for the intent's HL7 message in the store")
	}
	if len(ms) == 0 {
		return store.HL7Message{}, false, nil
	}
	return ms[0], true, nil
}

// hl7Enqueue builds the intent's message and stores it for delivery.
func (e *exec) hl7Enqueue(ctx context.Context) *decision {
	h := e.tgt.HL7
	patient, d := e.hl7Patient(ctx)
	if d != nil {
		return d
	}
	body, err := hl7Body(e.in.VendorBody, e.sup.Operation, e.in.ID)
	if err != nil {
		d := final(store.IntentRejected, "cannot build the HL7 message: "+err.Error())
		d.rejection = "mediflow could not build the HL7 message for this write (mapping problem). Report it to the mediflow administrator."
		return d
	}
	opts := h.Encoder
	id := e.in.ID
	opts.ControlID = func() string { return id }
	enc := fhirv2.New(opts)
	var m *hl7.Message
	switch e.sup.Operation {
	case "MDM^T02":
		m, err = enc.Note(body, patient, nil)
	case "SIU^S12":
		m, err = enc.Book(body, patient, nil)
	case "SIU^S15":
		m, err = enc.Cancel(body, patient, nil)
	case "DFT^P03":
		m, err = enc.Charges(patient, []fhirv2.Charge{{Item: body}}, nil)
	default:
		d := final(store.IntentRejected, "unknown HL7 operation")
		d.rejection = "mediflow cannot send this write as HL7 v2 (message " + hl7Word(e.sup.Operation) + ")."
		return d
	}
	if err != nil {
		d := final(store.IntentRejected, "cannot build the HL7 message: "+err.Error())
		d.rejection = "mediflow could not build the HL7 message for this write"
		if errors.Is(err, fhirv2.ErrMissingData) {
			d.rejection += " because information is missing (" + missingElement(err) + "). Complete the record and send again."
		} else {
			d.rejection += " (mapping problem). Report it to the mediflow administrator."
		}
		return d
	}
	body = m.Encode()
	start := time.Now()
	mid, err := h.Sender.EnqueueMessage(ctx, e.in.Practice, h.Destination, m)
	a := store.IntentAttempt{Step: "enqueue", BodyHash: bodyHash(body), Took: time.Since(start),
		Headers: map[string]string{"MSH-9": e.sup.Operation, "MSH-10": e.in.ID}}
	if err != nil {
		a.Outcome = "not stored"
		e.hl7Record(ctx, a, false)
		if errors.Is(err, hl7out.ErrUnknownDestination) {
			d := final(store.IntentRejected, "the practice's HL7 destination is not configured")
			d.rejection = "The practice's HL7 destination for write-back is not set up. Ask the mediflow administrator."
			return d
		}
		return retry("cannot queue the HL7 message")
	}
	a.Outcome = "queued as message " + strconv.FormatInt(mid, 10)
	e.hl7Record(ctx, a, true)
	return nil
}

// missingElement is the FHIR element a fhirv2 ErrMissingData error names
// ("DocumentReference.type"), or "a required element" when the text is
// not plainly element names.
func missingElement(err error) string {
	_, s, _ := strings.Cut(err.Error(), fhirv2.ErrMissingData.Error()+": ")
	s, _, _ = strings.Cut(s, " (")
	if s == "" || len(s) > 120 {
		return "a required element"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == ',' || c == ' ') {
			return "a required element"
		}
	}
	return s
}

// hl7Body is the vendor body a message is built from: a note, a charge and
// a booking without identifier or id carry the intent's identifier
// (urn:mediflow:intent), which becomes the document number (TXA-12), the
// transaction id (FT1-2) or the placer appointment id (SCH-1), so the
// receiver can tell the record mediflow wrote. A cancellation is sent as
// it is: it must name the appointment as it was booked.
func hl7Body(vendor []byte, op, id string) ([]byte, error) {
	if op == "SIU^S15" {
		return vendor, nil
	}
	m, err := decodeObject(vendor)
	if err != nil {
		return nil, fmt.Errorf("the vendor body is %w", err)
	}
	ids, _ := m["identifier"].([]any)
	if op == "SIU^S12" && (len(ids) > 0 || m["id"] != nil) {
		return vendor, nil
	}
	for _, x := range ids {
		if xm, ok := x.(map[string]any); ok && xm["system"] == IdentifierSystem && xm["value"] == id {
			return vendor, nil
		}
	}
	m["identifier"] = append(ids, map[string]any{"system": IdentifierSystem, "value": id})
	return encode(m)
}

// hl7Patient returns the Patient the message's PID is built from.
func (e *exec) hl7Patient(ctx context.Context) ([]byte, *decision) {
	ref := e.in.PatientRef
	if ref == "" {
		ref = patientOf(e.in.VendorBody)
	}
	typ, id, ok := strings.Cut(ref, "/")
	if !ok || typ != "Patient" || id == "" {
		d := final(store.IntentRejected, "no patient reference")
		d.rejection = "The write does not say which patient it is for. Add the patient and send again."
		return nil, d
	}
	if p := e.tgt.HL7.Patient; p != nil {
		body, err := p(ctx, ref)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				d := final(store.IntentRejected, "the patient is not known")
				d.rejection = "mediflow does not know the patient this write is for. Check the patient and send again."
				return nil, d
			}
			return nil, retry("cannot read the patient for the HL7 message")
		}
		return body, nil
	}
	if e.tgt.FHIR == nil {
		d := final(store.IntentRejected, "no way to read the patient")
		d.rejection = "mediflow cannot read the patient for the HL7 message (no FHIR connection). Ask the mediflow administrator."
		return nil, d
	}
	res, err := e.tgt.FHIR.Read(ctx, "Patient", id)
	if err != nil {
		var fe *fhirrest.Error
		if errors.As(err, &fe) && fe.Kind == fhirrest.KindNotFound {
			d := final(store.IntentRejected, "the patient does not exist at the EHR")
			d.rejection = "The patient this write is for does not exist at the EHR. Check the patient and send again."
			return nil, d
		}
		_, reason := errStatus(err)
		return nil, retry("cannot read the patient at the EHR: " + reason)
	}
	return res.Body, nil
}

// patientOf finds the patient a resource points to: subject, patient, or
// an Appointment participant's actor.
func patientOf(body []byte) string {
	var r struct {
		Subject     *struct{ Reference string } `json:"subject"`
		Patient     *struct{ Reference string } `json:"patient"`
		Participant []struct {
			Actor *struct{ Reference string } `json:"actor"`
		} `json:"participant"`
	}
	if json.Unmarshal(body, &r) != nil {
		return ""
	}
	for _, ref := range []*struct{ Reference string }{r.Subject, r.Patient} {
		if ref != nil && strings.HasPrefix(ref.Reference, "Patient/") {
			return ref.Reference
		}
	}
	for _, p := range r.Participant {
		if p.Actor != nil && strings.HasPrefix(p.Actor.Reference, "Patient/") {
			return p.Actor.Reference
		}
	}
	return ""
}

// hl7Record appends an HL7 step to the attempts log and the audit trail.
func (e *exec) hl7Record(ctx context.Context, a store.IntentAttempt, ok bool) {
	a.Practice, a.IntentID, a.Attempt, a.At = e.in.Practice, e.in.ID, e.in.Attempts, e.o.opts.Now().UTC()
	a.Method, a.Path = "MLLP", e.tgt.HL7.Destination
	rctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), finalWriteTimeout)
		defer cancel()
	}
	if err := e.o.st.AppendIntentAttempts(rctx, e.in.Practice, a); err != nil {
		e.o.log.Error("writeback: cannot record an exchange", "practice", e.in.Practice, "intent", e.in.ID, "error", err.Error())
	}
	outcome := "success"
	if !ok {
		outcome = "error"
	}
	ev := store.AuditEvent{Practice: e.in.Practice, Time: a.At, Actor: "app:" + e.in.App, Action: "write", Entity: e.in.TargetType, Outcome: outcome,
		Detail: fmt.Sprintf("intent %s attempt %d %s: HL7 %s to %s -> %s", e.in.ID, a.Attempt, a.Step, hl7Word(e.sup.Operation), a.Path, a.Outcome)}
	if err := e.o.st.Audit(rctx, ev); err != nil {
		e.o.log.Error("writeback: cannot audit an exchange", "practice", e.in.Practice, "intent", e.in.ID, "error", err.Error())
	}
}

// ackOfStored rebuilds what an acknowledgment said from what hl7out
// stored: the code and the error text it wrote ("AE text; ERR PID-3 code
// 101: text; ..."). Only locations, codes and severities are read back;
// texts are left out.
func ackOfStored(code, text string) ack.Result {
	r := ack.Result{Code: ack.Code(code)}
	parts := strings.Split(text, "; ERR")
	for _, p := range parts[1:] {
		var e ack.Error
		fields := strings.Fields(p)
		for i := 0; i < len(fields); i++ {
			f, last := strings.CutSuffix(fields[i], ":")
			switch {
			case f == "code" && i+1 < len(fields):
				v, end := strings.CutSuffix(fields[i+1], ":")
				e.Code, _ = strconv.Atoi(v)
				i++
				last = last || end
			case f == "severity" && i+1 < len(fields):
				v, end := strings.CutSuffix(fields[i+1], ":")
				e.Severity = v
				i++
				last = last || end
			case i == 0:
				e.Location = f
			default:
				last = true
			}
			if last {
				break
			}
		}
		r.Errors = append(r.Errors, e)
	}
	return r
}

// ackCodes summarizes an acknowledgment without its texts: "AE ERR PID-3
// 101".
func ackCodes(r ack.Result) string {
	s := hl7Word(string(r.Code))
	for _, e := range r.Errors {
		s += " ERR"
		if e.Location != "" {
			s += " " + hl7Word(e.Location)
		}
		if e.Code != 0 {
			s += " " + strconv.Itoa(e.Code)
		}
	}
	return s
}

// hl7Word returns s when it is a short HL7 token (a message type, an ACK
// code, a location such as "OBX(2)-5"), "?" otherwise, so no value can
// slip into a stored reason.
func hl7Word(s string) string {
	if s == "" || len(s) > 64 {
		return "?"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._^()", c) >= 0) {
			return "?"
		}
	}
	return s
}
