package writeback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
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
// fhirv2 (SIU^S13 is a booking's SIU_S12 message turned into a
// rescheduling here, see reschedule) and queued on the practice's hl7out
// destination, which stores it before sending and delivers it in order.
//
// MSH-10 is hl7out.ControlID(intent id): 20 characters, as HL7 v2.5.1
// allows for a control id (the intent id has 26), the same on every
// attempt, rebuild and replay of the intent, so the receiver recognises a
// resend, and told apart from every other intent's. The full intent id is
// in the message too where the receiver keeps it: an SIU message carries
// it in an NTE segment (intentNote), a note, a charge and a booking
// without an identifier of their own in TXA-12, FT1-2 or SCH-1 (hl7Body).
//
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
	// systems); its ControlID is replaced by hl7out.ControlID of the
	// intent id.
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

// hl7Operations are the messages the HL7 channel builds; true: the
// message changes an existing appointment, which a target id may name.
var hl7Operations = map[string]bool{"MDM^T02": false, "SIU^S12": false, "SIU^S13": true, "SIU^S15": true, "DFT^P03": false}

// checkHL7 refuses an HL7-routed request the practice cannot send.
func (o *Outbox) checkHL7(r Request, sup contract.Support) error {
	if o.opts.Targets[r.Practice].HL7 == nil {
		return refused("%s goes through the HL7 v2 channel, and the practice has no HL7 destination for write-back", safeWord(string(r.Kind)))
	}
	changes, ok := hl7Operations[sup.Operation]
	if !ok {
		return refused("message %q is not built by the HL7 channel", hl7Word(sup.Operation))
	}
	if r.TargetID != "" && !changes {
		return refused("an HL7 %s takes no target id: the record is identified in the message", hl7Word(sup.Operation))
	}
	if !changes {
		return nil
	}
	body := r.VendorBody
	if len(body) == 0 {
		body = r.Body
	}
	var res struct {
		ID *string `json:"id"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return refused("the body is not a JSON object with a string id")
	}
	switch {
	case res.ID != nil && r.TargetID != "" && *res.ID != r.TargetID:
		return refused("the resource's id differs from the target id: leave it out or make them equal")
	case sup.Operation == "SIU^S13" && r.TargetID == "" && (res.ID == nil || *res.ID == ""):
		return refused("a reschedule (SIU^S13) names the appointment it moves: give its id as the target")
	}
	return nil
}

// HL7Event takes an event of the practices' hl7out Sender (pass it to
// hl7out.Options.OnEvent): when a message's outcome is known, the intent
// whose control id (hl7out.ControlID of its id) is the message's is looked
// at without waiting for its next poll. It never blocks; an event that
// cannot be taken at once, or whose intent this process has not sent or
// looked at since it started, is dropped (the poll finds the outcome).
func (o *Outbox) HL7Event(ev hl7out.Event) {
	if !ev.Final() || ev.ControlID == "" {
		return
	}
	tgt, ok := o.opts.Targets[ev.Practice]
	if !ok || tgt.HL7 == nil || tgt.HL7.Destination != ev.Destination {
		return
	}
	id, ok := o.hl7ids.intent(ev.ControlID)
	if !ok {
		return
	}
	ev.ControlID = id // from here on, events name the intent
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

// maxControlIDs bounds the control ids an Outbox remembers (hl7ids).
const maxControlIDs = 100000

// controlIDMemo remembers which intent a control id belongs to, for the
// intents an Outbox has queued or looked at (hl7Message): the inverse of
// hl7out.ControlID, which cannot be computed from the id. Forgotten
// entries (an intent finished, or the memory full) only cost an event:
// the intent's poll finds its outcome.
type controlIDMemo struct {
	mu  sync.Mutex
	ids map[string]string // control id → intent id
}

// control returns the intent's control id and remembers it.
func (c *controlIDMemo) control(intentID string) string {
	cid := hl7out.ControlID(intentID)
	c.mu.Lock()
	if len(c.ids) >= maxControlIDs {
		clear(c.ids)
	}
	c.ids[cid] = intentID
	c.mu.Unlock()
	return cid
}

func (c *controlIDMemo) intent(controlID string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.ids[controlID]
	return id, ok
}

func (c *controlIDMemo) forget(intentID string) {
	cid := hl7out.ControlID(intentID)
	c.mu.Lock()
	delete(c.ids, cid)
	c.mu.Unlock()
}

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

// nudge makes the sent intent of an HL7 event (ev.ControlID holds the
// intent id, see HL7Event) due now. An intent that is not sent, or was
// claimed again meanwhile, is left alone.
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
		e.o.hl7ids.forget(e.in.ID)
		return final(store.IntentDead, "the intent's HL7 message is no longer in the message store")
	}
	switch msg.Status {
	case store.MsgAcked, store.MsgRejected, store.MsgTimedOut:
		e.o.hl7ids.forget(e.in.ID)
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
// destination whose control id is the intent's (hl7out.ControlID of its
// id), else one whose control id is the intent id itself: mediflow before
// the 20-character control ids queued its messages so, and an intent sent
// then is still followed to its outcome.
func (e *exec) hl7Message(ctx context.Context) (store.HL7Message, bool, *decision) {
	h := e.tgt.HL7
	for _, cid := range []string{e.o.hl7ids.control(e.in.ID), e.in.ID} {
		ms, err := h.Messages.ListHL7Messages(ctx, e.in.Practice, store.HL7Filter{Direction: store.DirectionOutbound, Channel: h.Destination,
			ControlID: cid, Limit: 1})
		if err != nil {
			return store.HL7Message{}, false, retry("cannot look for the intent's HL7 message in the store")
		}
		if len(ms) > 0 {
			return ms[0], true, nil
		}
	}
	return store.HL7Message{}, false, nil
}

// hl7Enqueue builds the intent's message and stores it for delivery.
func (e *exec) hl7Enqueue(ctx context.Context) *decision {
	h := e.tgt.HL7
	if _, ok := hl7Operations[e.sup.Operation]; !ok {
		d := final(store.IntentRejected, "unknown HL7 operation")
		d.rejection = "mediflow cannot send this write as HL7 v2 (message " + hl7Word(e.sup.Operation) + ")."
		return d
	}
	patient, d := e.hl7Patient(ctx)
	if d != nil {
		return d
	}
	body, err := hl7Body(e.in.VendorBody, e.sup.Operation, e.in.ID, e.in.TargetID)
	if err != nil {
		d := final(store.IntentRejected, "cannot build the HL7 message: "+err.Error())
		d.rejection = "mediflow could not build the HL7 message for this write (mapping problem). Report it to the mediflow administrator."
		return d
	}
	control := e.o.hl7ids.control(e.in.ID)
	m, err := buildHL7(h.Encoder, e.sup.Operation, body, patient, hl7Sender{intent: e.in.ID, control: control, app: e.in.App})
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
		Headers: map[string]string{"MSH-9": e.sup.Operation, "MSH-10": control}}
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
// receiver can tell the record mediflow wrote. A reschedule and a
// cancellation name the appointment as it was booked: their identifiers
// are left as they are (the intent's would become SCH-1), and the target
// id, when there is one, is the resource's id.
func hl7Body(vendor []byte, op, id, target string) ([]byte, error) {
	m, err := decodeObject(vendor)
	if err != nil {
		return nil, fmt.Errorf("the vendor body is %w", err)
	}
	if hl7Operations[op] { // S13, S15
		if target == "" {
			return vendor, nil
		}
		switch rid := m["id"]; {
		case rid == nil:
			m["id"] = target
			return encode(m)
		case rid != target:
			return nil, errors.New("the resource's id differs from the target id")
		}
		return vendor, nil
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

// hl7Sender is what a message says about the write it carries.
type hl7Sender struct {
	intent  string // the intent id (NTE of an SIU message)
	control string // MSH-10: hl7out.ControlID(intent)
	app     string // the app that asked for it (SCH-16 and SCH-20 of an SIU^S13)
}

// buildHL7 builds the message op from a vendor body and the patient's
// FHIR Patient. Every SIU message gets the intent's NTE (intentNote); an
// SIU^S13 is built by reschedule.
func buildHL7(opts fhirv2.Options, op string, body, patient []byte, w hl7Sender) (*hl7.Message, error) {
	opts.ControlID = func() string { return w.control }
	enc := fhirv2.New(opts)
	var m *hl7.Message
	var err error
	switch op {
	case "MDM^T02":
		return enc.Note(body, patient, nil)
	case "DFT^P03":
		return enc.Charges(patient, []fhirv2.Charge{{Item: body}}, nil)
	case "SIU^S12":
		m, err = enc.Book(body, patient, nil)
	case "SIU^S13":
		m, err = reschedule(enc, body, patient, opts.SendingApplication, w.app)
	case "SIU^S15":
		m, err = enc.Cancel(body, patient, nil)
	default:
		return nil, fmt.Errorf("message %s is not built by the HL7 channel", hl7Word(op))
	}
	if err != nil {
		return nil, err
	}
	if err := intentNote(m, w.intent); err != nil {
		return nil, err
	}
	return m, nil
}

// rescheduleReason is SCH-6 of an SIU^S13 whose appointment gives no
// cancelationReason: the trigger event itself (HL7 table 0003), since the
// notification was sent because the appointment moved.
var rescheduleReason = [3]string{"S13", "Notification of appointment rescheduling", "HL70003"}

// reschedule builds an SIU^S13 (notification of appointment rescheduling,
// HL7 v2.5.1 chapter 10): the message structure is a booking's (SIU_S12),
// so the segments are those Book writes from the appointment as it is now
// — SCH-1/SCH-2 the appointment's placer and filler ids (the identifier
// typed PLAC, else the first untyped one; the one typed FILL; without
// either, the resource id, which is the intent's target id, under MSH-3),
// SCH-9 to SCH-11 and TQ1 the new duration, start and end, SCH-25 the
// filler status; NTE; PID; RGS, AIS, AIL and AIP with the new start — and
// then the fields chapter 10 requires that Book leaves empty:
//
//   - MSH-9-2 is S13;
//   - SCH-6 (event reason, CE, required): the appointment's
//     cancelationReason, the reason the booked time was given up (FHIR R4
//     has no element of its own for why an appointment moved), else
//     rescheduleReason;
//   - SCH-16 (filler contact person) and SCH-20 (entered by person), both
//     XCN and required: the app that asked for the reschedule, its name as
//     the id (XCN-1) under MSH-3 as the assigning authority (XCN-9).
//
// The appointment must have a start and must not be cancelled, a no-show
// or entered in error (Book's checks).
func reschedule(enc *fhirv2.Encoder, body, patient []byte, sendingApp, app string) (*hl7.Message, error) {
	m, err := enc.Book(body, patient, nil)
	if err != nil {
		return nil, err
	}
	var a struct {
		CancelationReason *struct {
			Coding []struct{ System, Code, Display string } `json:"coding"`
			Text   string                                   `json:"text"`
		} `json:"cancelationReason"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("the appointment is %w", err)
	}
	reason := rescheduleReason
	if cr := a.CancelationReason; cr != nil {
		reason = [3]string{"", cr.Text, ""}
		for _, c := range cr.Coding {
			if c.Code == "" {
				continue
			}
			reason = [3]string{c.Code, c.Display, v2CodeSystem(c.System)}
			if reason[1] == "" {
				reason[1] = cr.Text
			}
			break
		}
		if reason[0] == "" && reason[1] == "" {
			reason = rescheduleReason
		}
	}
	if app == "" {
		app = "mediflow"
	}
	sets := [][2]string{
		{"MSH-9-2", "S13"},
		{"SCH-6-1", reason[0]}, {"SCH-6-2", reason[1]}, {"SCH-6-3", reason[2]},
		{"SCH-16-1", app}, {"SCH-16-9-1", sendingApp},
		{"SCH-20-1", app}, {"SCH-20-9-1", sendingApp},
	}
	for _, f := range sets {
		if f[1] == "" {
			continue
		}
		if err := m.Set(f[0], f[1]); err != nil {
			return nil, fmt.Errorf("SIU^S13 %s: %w", f[0], err)
		}
	}
	return m, nil
}

// v2CodeSystem names a FHIR code system as a CE's coding system (CE-3):
// HL7 v2 tables (http://terminology.hl7.org/CodeSystem/v2-0276) as HL7
// writes them (HL70276), other systems by their URI.
func v2CodeSystem(system string) string {
	if t, ok := strings.CutPrefix(system, "http://terminology.hl7.org/CodeSystem/v2-"); ok && t != "" {
		return "HL7" + t
	}
	return system
}

// intentNote adds an NTE carrying the intent id to an SIU message, after
// SCH, TQ1 and the appointment's own notes, where SIU_S12 allows notes:
// NTE-2 O (HL7 table 0105: another system is the source of the comment),
// NTE-3 "mediflow write-back intent <id>", NTE-4 RE (remark, HL7 table
// 0364). The control id (MSH-10) is derived from the intent id but cannot
// be turned back into it; the note lets the receiver's staff and mediflow's
// administrator name the same write.
func intentNote(m *hl7.Message, intent string) error {
	at, notes := -1, 0
	for i, sg := range m.Segments() {
		switch sg.ID() {
		case "SCH", "TQ1":
			at = i
		case "NTE":
			at = i
			notes++
		}
		if sg.ID() == "PID" || sg.ID() == "RGS" {
			break
		}
	}
	if at < 0 {
		return errors.New("the SIU message has no SCH segment")
	}
	nte := m.InsertSegment(at+1, "NTE")
	for _, f := range [][2]string{{"1", strconv.Itoa(notes + 1)}, {"2", "O"}, {"3", "mediflow write-back intent " + intent}, {"4-1", "RE"}} {
		if err := nte.Set(f[0], f[1]); err != nil {
			return fmt.Errorf("NTE-%s: %w", f[0], err)
		}
	}
	return nil
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
