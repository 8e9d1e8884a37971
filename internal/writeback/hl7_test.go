package writeback

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/ack"
	"github.com/mediflow/mediflow/internal/hl7/fhirv2"
	"github.com/mediflow/mediflow/internal/hl7/mllp"
	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
	"github.com/mediflow/mediflow/internal/testutil/peers"
	"github.com/mediflow/mediflow/internal/writeback/contract"
	"github.com/mediflow/mediflow/internal/writeback/hl7out"
)

// hl7Patient is the Patient the tests' messages are built for. Its name
// must never appear in a stored reason or staff message.
const hl7Patient = `{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:oid:1.2.3","value":"MRN-77",` +
	`"type":{"coding":[{"code":"MR"}]}}],"name":[{"family":"Zebrowski","given":["Quill"]}],"birthDate":"1970-02-03"}`

// hl7Supports routes notes, bookings, cancellations and charges to HL7,
// as a contract that has them over HL7 only does.
func hl7Supports(i contract.Intent) contract.Support {
	for _, r := range contract.HL7Routes() {
		if r.Intent == i {
			return r
		}
	}
	return contract.Support{Intent: i, Reason: "not in this test's contract"}
}

// mllpPeer is an in-process MLLP receiver whose answers a test chooses.
type mllpPeer struct {
	addr string

	mu     sync.Mutex
	got    [][]byte
	answer func(m *hl7.Message) []byte // nil answer: no ACK
}

func startMLLPPeer(t *testing.T, answer func(m *hl7.Message) []byte) *mllpPeer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &mllpPeer{addr: ln.Addr().String(), answer: answer}
	h := mllp.HandlerFunc(func(_ context.Context, req *mllp.Request) ([]byte, error) {
		m, err := hl7.Parse(req.Message, hl7.ParseOptions{})
		if err != nil {
			return ack.BuildRaw(req.Message, ack.Options{Code: ack.AR}), nil
		}
		p.mu.Lock()
		p.got = append(p.got, bytes.Clone(req.Message))
		f := p.answer
		p.mu.Unlock()
		return f(m), nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mllp.NewServer(mllp.ServerConfig{ShutdownTimeout: 100 * time.Millisecond}, h).Serve(ctx, ln); err != nil {
			t.Errorf("peer: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

func (p *mllpPeer) received() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.got...)
}

// hl7Fixture is an outbox whose practice writes over HL7 through an
// hl7out Sender, both running.
type hl7Fixture struct {
	st *sqlite.Store
	ob *Outbox
	s  *hl7out.Sender
}

// hl7Dest is a destination with short timeouts: two attempts per round,
// two rounds, then the message is given up.
func hl7Dest(practiceID, name, addr string) hl7out.Destination {
	return hl7out.Destination{Practice: practiceID, Name: name, Addr: addr, DialTimeout: time.Second, AckTimeout: 300 * time.Millisecond,
		MaxAttempts: 2, Backoff: 10 * time.Millisecond, RetryDelay: 20 * time.Millisecond, MaxRetryDelay: 40 * time.Millisecond, MaxRounds: 2}
}

// startHL7 runs an Outbox and a Sender over one store; dests maps each
// practice to its destination. poll is the HL7 poll of the targets.
func startHL7(t *testing.T, poll time.Duration, dests ...hl7out.Destination) *hl7Fixture {
	t.Helper()
	f := newHL7Fixture(t, poll, dests...)
	f.start(t)
	return f
}

// start runs the fixture's Sender and Outbox until the test ends.
func (f *hl7Fixture) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := f.s.Run(ctx); err != nil {
			t.Errorf("sender: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	run(t, f.ob)
}

// newHL7Fixture is startHL7 without starting anything.
func newHL7Fixture(t *testing.T, poll time.Duration, dests ...hl7out.Destination) *hl7Fixture {
	t.Helper()
	st, _ := openStore(t)
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	f := &hl7Fixture{st: st}
	var obMu sync.Mutex
	var events []hl7out.Event
	s, err := hl7out.New(hl7out.Options{Store: st, Destinations: dests, OnEvent: func(ev hl7out.Event) {
		obMu.Lock()
		events = append(events, ev)
		ob := f.ob
		obMu.Unlock()
		if ob != nil {
			ob.HL7Event(ev)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	f.s = s
	targets := map[string]Target{}
	for _, d := range dests {
		targets[d.Practice] = Target{Support: hl7Supports, HL7: &HL7Target{Sender: s, Destination: d.Name, Messages: st, Poll: poll,
			Encoder: fhirv2.Options{SendingApplication: "MEDIFLOW", ReceivingApplication: "EHR"},
			Patient: func(_ context.Context, ref string) ([]byte, error) {
				if ref != "Patient/p1" {
					return nil, store.ErrNotFound
				}
				return []byte(hl7Patient), nil
			}}}
	}
	opts := testOptions(st, targets)
	opts.MaxAge = time.Minute // the destination, not MaxAge, must end a message that gets no ACK
	ob := newOutbox(t, opts)
	obMu.Lock()
	f.ob = ob
	obMu.Unlock()
	return f
}

// hl7DocBody is a DocumentReference an MDM^T02 can be built from.
func hl7DocBody(patientID, text string) []byte {
	return fmt.Appendf(nil, `{"resourceType":"DocumentReference","status":"current",`+
		`"type":{"coding":[{"system":"http://loinc.org","code":"11506-3","display":"Progress note"}]},`+
		`"subject":{"reference":"Patient/%s"},"date":"2026-03-02T10:00:00Z",`+
		`"content":[{"attachment":{"contentType":"text/plain","data":%q}}]}`,
		patientID, base64.StdEncoding.EncodeToString([]byte(text)))
}

func hl7Note(practiceID, key string) Request {
	return Request{Practice: practiceID, App: "notes", IdempotencyKey: key, Kind: contract.NoteCreate,
		PatientRef: "Patient/p1", Body: hl7DocBody("p1", "Follow-up in two weeks.")}
}

func controlID(t *testing.T, msg []byte) string {
	t.Helper()
	m, err := hl7.Parse(msg, hl7.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m.Header().ControlID
}

func steps(t *testing.T, ob *Outbox, practiceID, id string) string {
	t.Helper()
	as, err := ob.Attempts(context.Background(), practiceID, id)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, a := range as {
		s = append(s, a.Step+" "+a.Method+" "+a.Outcome)
	}
	return strings.Join(s, "; ")
}

func TestHL7NoteConfirmedOnAA(t *testing.T) {
	peer := startMLLPPeer(t, func(m *hl7.Message) []byte { return ack.Build(m, ack.Options{Code: ack.AA}) })
	// A long poll: the Sender's event, not the poll, must bring the outcome.
	f := startHL7(t, time.Minute, hl7Dest(practice, "ehr", peer.addr))
	in := submit(t, f.ob, hl7Note(practice, "note-1"))
	got := waitFinal(t, f.st, 10*time.Second, in.ID)[in.ID]
	if got.Status != store.IntentConfirmed {
		t.Fatalf("status %s (%s), want confirmed", got.Status, got.LastError)
	}
	msgs := peer.received()
	if len(msgs) != 1 {
		t.Fatalf("the peer received %d messages, want 1", len(msgs))
	}
	m, err := hl7.Parse(msgs[0], hl7.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := m.Header()
	if h.ControlID != hl7out.ControlID(in.ID) || len(h.ControlID) > hl7out.MaxControlID || h.MessageCode != "MDM" || h.TriggerEvent != "T02" {
		t.Errorf("sent %s^%s control id %q, want MDM^T02 with the intent's control id %s", h.MessageCode, h.TriggerEvent, h.ControlID, hl7out.ControlID(in.ID))
	}
	// the full intent id is in the message as the document number
	if doc, _ := m.Get("TXA-12-1"); doc != in.ID {
		t.Errorf("TXA-12-1 = %q, want the intent id %s", doc, in.ID)
	}
	if pid, _ := m.Get("PID-3-1"); pid != "MRN-77" {
		t.Errorf("PID-3-1 = %q, want the patient's MRN", pid)
	}
	s := steps(t, f.ob, practice, in.ID)
	if !strings.Contains(s, "enqueue MLLP queued as message") || !strings.Contains(s, "ack MLLP message") || !strings.Contains(s, " AA") {
		t.Errorf("attempts log %q lacks the enqueue and the AA", s)
	}
	// Submitting again with the key sends nothing more.
	again, created, err := f.ob.Submit(context.Background(), hl7Note(practice, "note-1"))
	if err != nil || created || again.ID != in.ID {
		t.Fatalf("resubmit: %v created %v id %s", err, created, again.ID)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(peer.received()); n != 1 {
		t.Errorf("after a resubmit the peer has %d messages, want 1", n)
	}
}

func TestHL7RejectedWithERR(t *testing.T) {
	peer := startMLLPPeer(t, func(m *hl7.Message) []byte {
		// the receiver's texts echo the patient: they must not reach staff
		return ack.Build(m, ack.Options{Code: ack.AE, Text: "Zebrowski unknown",
			Errors: []ack.Error{{Location: "PID-3", Code: 204, Text: "no chart for Zebrowski"}}})
	})
	f := startHL7(t, 20*time.Millisecond, hl7Dest(practice, "ehr", peer.addr))
	in := submit(t, f.ob, hl7Note(practice, "note-ae"))
	got := waitFinal(t, f.st, 10*time.Second, in.ID)[in.ID]
	if got.Status != store.IntentRejected {
		t.Fatalf("status %s (%s), want rejected", got.Status, got.LastError)
	}
	if want := TranslateAck(ack.Result{Code: ack.AE, Errors: []ack.Error{{Location: "PID-3", Code: 204}}}); got.Rejection != want {
		t.Errorf("rejection %q, want %q", got.Rejection, want)
	}
	if !strings.Contains(got.Rejection, "does not know the patient") || !strings.Contains(got.Rejection, "PID-3") {
		t.Errorf("rejection %q does not say what to fix", got.Rejection)
	}
	if !strings.Contains(got.LastError, "AE ERR PID-3 204") {
		t.Errorf("reason %q lacks the ACK's codes", got.LastError)
	}
	for _, s := range []string{got.Rejection, got.LastError, steps(t, f.ob, practice, in.ID)} {
		if strings.Contains(s, "Zebrowski") || strings.Contains(s, "MRN-77") {
			t.Errorf("PHI in %q", s)
		}
	}
	rs, err := f.ob.Rejections(context.Background(), practice, 0)
	if err != nil || len(rs) != 1 || rs[0].IntentID != in.ID || rs[0].Message != got.Rejection {
		t.Errorf("Rejections: %+v, %v", rs, err)
	}

	// A replay sends the message again, with the same control id; the
	// receiver now accepts it.
	peer.mu.Lock()
	peer.answer = func(m *hl7.Message) []byte { return ack.Build(m, ack.Options{Code: ack.AA}) }
	peer.mu.Unlock()
	if _, err := f.ob.Replay(context.Background(), practice, in.ID); err != nil {
		t.Fatal(err)
	}
	got = waitFinal(t, f.st, 10*time.Second, in.ID)[in.ID]
	if got.Status != store.IntentConfirmed {
		t.Fatalf("after replay: status %s (%s), want confirmed", got.Status, got.LastError)
	}
	msgs := peer.received()
	cid := hl7out.ControlID(in.ID)
	if len(msgs) != 2 || controlID(t, msgs[0]) != cid || controlID(t, msgs[1]) != cid {
		t.Errorf("the peer received %d messages, want 2 with control id %s", len(msgs), cid)
	}
}

func TestHL7NoAckRetriedThenDead(t *testing.T) {
	peer := startMLLPPeer(t, func(*hl7.Message) []byte { return nil }) // reads, never answers
	f := startHL7(t, 20*time.Millisecond, hl7Dest(practice, "ehr", peer.addr))
	in := submit(t, f.ob, hl7Note(practice, "note-silent"))
	got := waitFinal(t, f.st, 20*time.Second, in.ID)[in.ID]
	if got.Status != store.IntentDead {
		t.Fatalf("status %s (%s), want dead", got.Status, got.LastError)
	}
	if !strings.Contains(got.LastError, "gave up without an acknowledgment") {
		t.Errorf("reason %q does not say the destination gave up", got.LastError)
	}
	msgs := peer.received()
	if len(msgs) != 4 { // 2 rounds of 2 attempts
		t.Fatalf("the peer received %d copies, want 4", len(msgs))
	}
	// every retry carries the same MSH-10, which fits HL7 v2.5.1's 20
	// characters and is the intent's
	for i, m := range msgs {
		if !bytes.Equal(m, msgs[0]) {
			t.Errorf("resend %d differs from the first send", i)
		}
		if id := controlID(t, m); id != hl7out.ControlID(in.ID) || len(id) > 20 {
			t.Errorf("resend %d has MSH-10 %q (%d characters), want %s", i, id, len(id), hl7out.ControlID(in.ID))
		}
	}
}

func TestHL7SubmitChecks(t *testing.T) {
	peer := startMLLPPeer(t, func(m *hl7.Message) []byte { return ack.Build(m, ack.Options{Code: ack.AA}) })
	f := startHL7(t, 20*time.Millisecond, hl7Dest(practice, "ehr", peer.addr))
	r := hl7Note(practice, "with-target")
	r.TargetID = "123"
	if _, _, err := f.ob.Submit(context.Background(), r); !errors.Is(err, ErrInvalid) {
		t.Errorf("an HL7 note with a target id: %v, want ErrInvalid", err)
	}

	// a cancellation, like a reschedule, may name its appointment by target
	cancel := Request{Practice: practice, App: "scheduler", IdempotencyKey: "cancel-target", Kind: contract.AppointmentCancel,
		PatientRef: "Patient/p1", TargetID: "a7", Body: []byte(`{"resourceType":"Appointment","status":"cancelled",` +
			`"participant":[{"actor":{"reference":"Patient/p1"}}]}`)}
	in := submit(t, f.ob, cancel)
	if got := waitFinal(t, f.st, 10*time.Second, in.ID)[in.ID]; got.Status != store.IntentConfirmed {
		t.Errorf("a cancellation with a target: status %s (%s)", got.Status, got.LastError)
	}
	if msgs := peer.received(); len(msgs) != 1 || !bytes.Contains(msgs[0], []byte("|SIU^S15^SIU_S12|")) || !bytes.Contains(msgs[0], []byte("\rSCH|a7^MEDIFLOW|")) {
		t.Errorf("the peer received %q, want one SIU^S15 for a7", msgs)
	}

	// Without an HL7 target the same intent is refused before it is stored.
	st, _ := openStore(t)
	ob := newOutbox(t, testOptions(st, map[string]Target{practice: {FHIR: fhirClient(t, "http://127.0.0.1:1/fhir"), Support: hl7Supports}}))
	_, _, err := ob.Submit(context.Background(), hl7Note(practice, "no-hl7"))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "no HL7 destination") {
		t.Errorf("without an HL7 target: %v", err)
	}
}

func TestHL7UnknownPatientRejected(t *testing.T) {
	peer := startMLLPPeer(t, func(m *hl7.Message) []byte { return ack.Build(m, ack.Options{Code: ack.AA}) })
	f := startHL7(t, 20*time.Millisecond, hl7Dest(practice, "ehr", peer.addr))
	r := hl7Note(practice, "stranger")
	r.PatientRef, r.Body = "Patient/p2", hl7DocBody("p2", "text")
	in := submit(t, f.ob, r)
	got := waitFinal(t, f.st, 10*time.Second, in.ID)[in.ID]
	if got.Status != store.IntentRejected || !strings.Contains(got.Rejection, "does not know the patient") {
		t.Errorf("status %s rejection %q", got.Status, got.Rejection)
	}
	if n := len(peer.received()); n != 0 {
		t.Errorf("the peer received %d messages, want none", n)
	}
}

func TestAckOfStored(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []ack.Error
	}{
		{"AE Zebrowski; ERR PID-3 code 101: missing for Zebrowski", []ack.Error{{Location: "PID-3", Code: 101}}},
		{"AR; ERR code 207; ERR OBX(2)-5 code 102 severity W", []ack.Error{{Code: 207}, {Location: "OBX(2)-5", Code: 102, Severity: "W"}}},
		{"AE: text only", nil},
	} {
		got := ackOfStored("AE", tc.text)
		if len(got.Errors) != len(tc.want) {
			t.Errorf("%q: %+v, want %+v", tc.text, got.Errors, tc.want)
			continue
		}
		for i := range tc.want {
			if got.Errors[i] != tc.want[i] {
				t.Errorf("%q: error %d = %+v, want %+v", tc.text, i, got.Errors[i], tc.want[i])
			}
		}
	}
}

// TestHL7NodeServer writes a note (MDM^T02) and a booking (SIU^S12) to
// node-hl7-server, a receiver nobody on this project wrote. It cannot take
// a second message on one connection, so each goes to its own destination
// (two practices), that is its own connection.
func TestHL7NodeServer(t *testing.T) {
	srv := peers.StartHL7NodeServer(t)
	dn, db := hl7Dest("notes-clinic", "node", srv.Addr), hl7Dest("sched-clinic", "node", srv.Addr)
	dn.AckTimeout, db.AckTimeout = 10*time.Second, 10*time.Second
	f := startHL7(t, 50*time.Millisecond, dn, db)

	note := submit(t, f.ob, hl7Note("notes-clinic", "node-note"))
	appt := `{"resourceType":"Appointment","id":"a1","status":"booked","start":"2026-03-02T09:00:00Z","end":"2026-03-02T09:30:00Z",` +
		`"participant":[{"actor":{"reference":"Patient/p1"},"status":"accepted"},{"actor":{"reference":"Practitioner/d1","display":"Dr Who"},"status":"accepted"}]}`
	book := submit(t, f.ob, Request{Practice: "sched-clinic", App: "scheduler", IdempotencyKey: "node-book", Kind: contract.AppointmentBook,
		PatientRef: "Patient/p1", Body: []byte(appt)})

	for _, c := range []struct {
		practice string
		in       Intent
	}{{"notes-clinic", note}, {"sched-clinic", book}} {
		deadline := time.Now().Add(60 * time.Second)
		for {
			got, err := f.st.GetIntent(context.Background(), c.practice, c.in.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !store.IntentOpen(got.Status) {
				if got.Status != store.IntentConfirmed {
					t.Errorf("%s: status %s (%s) rejection %q, want confirmed", c.in.Kind, got.Status, got.LastError, got.Rejection)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still %s (%s)", c.in.Kind, got.Status, got.LastError)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	rcv := srv.WaitReceived(t, 2)
	byID := map[string]peers.HL7Received{}
	for _, r := range rcv {
		byID[r.ControlID] = r
	}
	if r := byID[hl7out.ControlID(note.ID)]; r.Type != "MDM^T02" || r.Ack != "AA" {
		t.Errorf("note: node-hl7-server got %+v, want MDM^T02 answered AA with control id %s", r, hl7out.ControlID(note.ID))
	}
	if r := byID[hl7out.ControlID(book.ID)]; r.Type != "SIU^S12" || r.Ack != "AA" {
		t.Errorf("booking: node-hl7-server got %+v, want SIU^S12 answered AA with control id %s", r, hl7out.ControlID(book.ID))
	}
}

// hl7Resched is an appointment moved to a new time: its placer and filler
// ids as the booking gave them, the reason the old time was given up, a
// practitioner and a room.
const hl7Resched = `{"resourceType":"Appointment","status":"booked",
 "identifier":[{"system":"urn:oid:1.2.3.4","value":"PL-9","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"PLAC"}]}},
  {"system":"urn:oid:1.2.3.5","value":"FL-7","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"FILL"}]}}],
 "cancelationReason":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason","code":"pat","display":"Patient"}]},
 "serviceType":[{"coding":[{"system":"http://example.org/services","code":"FU","display":"Follow-up"}]}],
 "start":"2026-03-09T14:00:00Z","end":"2026-03-09T14:45:00Z",
 "participant":[{"actor":{"reference":"Patient/p1"},"status":"accepted"},
  {"actor":{"reference":"Practitioner/d1","display":"Dr Who"},"status":"accepted"},
  {"actor":{"reference":"Location/l1","display":"Room 4"},"status":"accepted"}]}`

// TestHL7RescheduleMessage builds SIU^S13 messages the way an intent does,
// reads them back with our strict parser and converts them back to FHIR.
func TestHL7RescheduleMessage(t *testing.T) {
	const intent = "01J9ZQ4X7M3K8TB2N6RVCWDYEH"
	opts := fhirv2.Options{SendingApplication: "MEDIFLOW", ReceivingApplication: "EHR",
		Now: func() time.Time { return time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC) }}
	build := func(t *testing.T, vendor, target string) *hl7.Message {
		t.Helper()
		body, err := hl7Body([]byte(vendor), "SIU^S13", intent, target)
		if err != nil {
			t.Fatal(err)
		}
		m, err := buildHL7(opts, "SIU^S13", body, []byte(hl7Patient), hl7Sender{intent: intent, control: hl7out.ControlID(intent), app: "scheduler"})
		if err != nil {
			t.Fatal(err)
		}
		// what is sent is what our parser reads back, without a defect
		parsed, err := hl7.Parse(m.Encode(), hl7.ParseOptions{Strict: true})
		if err != nil {
			t.Fatalf("strict parse of\n%s\n%v", strings.ReplaceAll(string(m.Encode()), "\r", "\n"), err)
		}
		return parsed
	}
	check := func(t *testing.T, m *hl7.Message, want map[string]string) {
		t.Helper()
		for path, w := range want {
			if got, err := m.Get(path); err != nil || got != w {
				t.Errorf("%s = %q (%v), want %q", path, got, err, w)
			}
		}
	}

	m := build(t, hl7Resched, "a1")
	check(t, m, map[string]string{
		"MSH-9-1": "SIU", "MSH-9-2": "S13", "MSH-9-3": "SIU_S12", "MSH-10": hl7out.ControlID(intent), "MSH-12": "2.5.1",
		// the appointment as it was booked
		"SCH-1-1": "PL-9", "SCH-2-1": "FL-7",
		// why it moved, who moved it (both required by v2.5.1 chapter 10)
		"SCH-6-1": "pat", "SCH-6-2": "Patient", "SCH-6-3": "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason",
		"SCH-16-1": "scheduler", "SCH-16-9-1": "MEDIFLOW", "SCH-20-1": "scheduler", "SCH-20-9-1": "MEDIFLOW",
		// the new time: 45 minutes from 14:00
		"SCH-9": "45", "SCH-10-1": "MIN", "SCH-11-3": "M45", "SCH-11-4": "20260309140000+0000", "SCH-11-5": "20260309144500+0000",
		"SCH-25-1": "Booked",
		"TQ1-6-1":  "45", "TQ1-7": "20260309140000+0000", "TQ1-8": "20260309144500+0000",
		// the intent, in full, where the receiver keeps it
		"NTE-1": "1", "NTE-2": "O", "NTE-3": "mediflow write-back intent " + intent, "NTE-4-1": "RE",
		"PID-3-1": "MRN-77", "PID-5-1": "Zebrowski",
		"RGS-1": "1", "AIS-3-1": "FU", "AIS-4": "20260309140000+0000", "AIS-7": "45",
		"AIP-6": "20260309140000+0000", "AIL-6": "20260309140000+0000",
	})
	if len(m.Header().ControlID) > 20 {
		t.Errorf("MSH-10 %q is longer than HL7 v2.5.1's 20 characters", m.Header().ControlID)
	}
	var order []string
	for _, sg := range m.Segments() {
		order = append(order, sg.ID())
	}
	if got := strings.Join(order, " "); got != "MSH SCH TQ1 NTE PID RGS AIS AIL AIP" {
		t.Errorf("segments %s, want SIU_S12's order MSH SCH TQ1 NTE PID RGS AIS AIL AIP", got)
	}

	// our v2 → FHIR conversion reads it as the appointment at its new time
	conv, err := v2fhir.New(v2fhir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := conv.Convert(m)
	if err != nil {
		t.Fatal(err)
	}
	var appt struct {
		Status, Start, End string
		Identifier         []struct{ Value string }
	}
	for _, r := range res.Resources {
		if r.Type == "Appointment" {
			if err := json.Unmarshal(r.Body, &appt); err != nil {
				t.Fatal(err)
			}
		}
	}
	if appt.Status != "booked" || !strings.HasPrefix(appt.Start, "2026-03-09T14:00:00") || !strings.HasPrefix(appt.End, "2026-03-09T14:45:00") ||
		len(appt.Identifier) != 2 || appt.Identifier[0].Value != "PL-9" || appt.Identifier[1].Value != "FL-7" {
		t.Errorf("converted back: %+v", appt)
	}

	// Without identifiers and a reason: SCH-1 is the target id under
	// MSH-3, as a booking sent with that id had it, and SCH-6 the event.
	bare := `{"resourceType":"Appointment","status":"booked","start":"2026-03-10T09:00:00Z","minutesDuration":20,
	  "participant":[{"actor":{"reference":"Patient/p1"}}]}`
	m = build(t, bare, "a1")
	check(t, m, map[string]string{"SCH-1-1": "a1", "SCH-1-2": "MEDIFLOW", "SCH-2": "", "SCH-6-1": "S13", "SCH-6-3": "HL70003",
		"SCH-11-4": "20260310090000+0000", "SCH-9": "20", "NTE-3": "mediflow write-back intent " + intent})
	book, err := buildHL7(opts, "SIU^S12", []byte(strings.Replace(bare, `"status"`, `"id":"a1","status"`, 1)), []byte(hl7Patient),
		hl7Sender{intent: "other", control: "C1", app: "scheduler"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"SCH-1-1", "SCH-1-2"} {
		if b, _ := book.Get(f); b != first(m.Get(f)) {
			t.Errorf("%s: the booking has %q, the reschedule %q", f, b, first(m.Get(f)))
		}
	}

	// What cannot be a reschedule is not built.
	for name, tc := range map[string]struct{ body, target string }{
		"cancelled": {strings.Replace(bare, `"booked"`, `"cancelled"`, 1), "a1"},
		"no start":  {strings.Replace(bare, `"start":"2026-03-10T09:00:00Z",`, ``, 1), "a1"},
		"other id":  {strings.Replace(bare, `"status"`, `"id":"a2","status"`, 1), "a1"},
	} {
		body, err := hl7Body([]byte(tc.body), "SIU^S13", intent, tc.target)
		if err == nil {
			_, err = buildHL7(opts, "SIU^S13", body, []byte(hl7Patient), hl7Sender{intent: intent, control: "C", app: "a"})
		}
		if err == nil {
			t.Errorf("%s: built", name)
		}
	}
}

func first(s string, _ error) string { return s }

func hl7Reschedule(practiceID, key, target string) Request {
	return Request{Practice: practiceID, App: "scheduler", IdempotencyKey: key, Kind: contract.AppointmentResched,
		PatientRef: "Patient/p1", TargetID: target, Body: []byte(hl7Resched)}
}

// TestHL7RescheduleIntent: a reschedule intent goes out as SIU^S13 and is
// confirmed by the ACK; what cannot name the appointment is refused.
func TestHL7RescheduleIntent(t *testing.T) {
	peer := startMLLPPeer(t, func(m *hl7.Message) []byte { return ack.Build(m, ack.Options{Code: ack.AA}) })
	f := startHL7(t, time.Minute, hl7Dest(practice, "ehr", peer.addr))
	in := submit(t, f.ob, hl7Reschedule(practice, "move-1", "a1"))
	got := waitFinal(t, f.st, 10*time.Second, in.ID)[in.ID]
	if got.Status != store.IntentConfirmed {
		t.Fatalf("status %s (%s), want confirmed", got.Status, got.LastError)
	}
	msgs := peer.received()
	if len(msgs) != 1 {
		t.Fatalf("the peer received %d messages, want 1", len(msgs))
	}
	m, err := hl7.Parse(msgs[0], hl7.ParseOptions{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	for path, w := range map[string]string{"MSH-9-1": "SIU", "MSH-9-2": "S13", "MSH-9-3": "SIU_S12", "MSH-10": hl7out.ControlID(in.ID),
		"SCH-1-1": "PL-9", "SCH-2-1": "FL-7", "SCH-6-1": "pat", "SCH-20-1": "scheduler", "TQ1-7": "20260309140000+0000",
		"NTE-3": "mediflow write-back intent " + in.ID} {
		if got := first(m.Get(path)); got != w {
			t.Errorf("%s = %q, want %q", path, got, w)
		}
	}
	if s := steps(t, f.ob, practice, in.ID); !strings.Contains(s, "ack MLLP message") || !strings.Contains(s, " AA") {
		t.Errorf("attempts log %q lacks the AA", s)
	}
	as, err := f.ob.Attempts(context.Background(), practice, in.ID)
	if err != nil || len(as) == 0 || as[0].Headers["MSH-9"] != "SIU^S13" || as[0].Headers["MSH-10"] != hl7out.ControlID(in.ID) {
		t.Errorf("enqueue attempt %+v (%v): want MSH-9 SIU^S13 and the intent's control id", as, err)
	}

	// refused at submission: nothing names the appointment, or two ids do
	noTarget := hl7Reschedule(practice, "move-2", "")
	if _, _, err := f.ob.Submit(context.Background(), noTarget); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "names the appointment") {
		t.Errorf("a reschedule without a target: %v", err)
	}
	twoIDs := hl7Reschedule(practice, "move-3", "a1")
	twoIDs.Body = []byte(strings.Replace(hl7Resched, `"status"`, `"id":"a2","status"`, 1))
	if _, _, err := f.ob.Submit(context.Background(), twoIDs); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "differs from the target") {
		t.Errorf("a reschedule whose resource names another appointment: %v", err)
	}
	// the resource's own id names it as well as a target does
	byID := hl7Reschedule(practice, "move-4", "")
	byID.Body = []byte(strings.Replace(hl7Resched, `"status"`, `"id":"a1","status"`, 1))
	in2 := submit(t, f.ob, byID)
	if got := waitFinal(t, f.st, 10*time.Second, in2.ID)[in2.ID]; got.Status != store.IntentConfirmed {
		t.Errorf("a reschedule by the resource's id: status %s (%s)", got.Status, got.LastError)
	}
}

// TestHL7RescheduleRejected: a receiver that answers an SIU^S13 with AE or
// AR and ERR segments rejects the intent; the staff message comes from the
// ERR codes, the receiver's own texts stay in the message store.
func TestHL7RescheduleRejected(t *testing.T) {
	for _, tc := range []struct {
		code ack.Code
		err  ack.Error
		want string // in the staff message
	}{
		{ack.AE, ack.Error{Location: "SCH-2", Code: 204, Text: "no appointment FL-7 for Zebrowski"}, "does not know the patient or record (at SCH-2)"},
		{ack.AR, ack.Error{Code: 201, Text: "S13 not accepted for Zebrowski"}, "does not accept this event"},
	} {
		t.Run(string(tc.code), func(t *testing.T) {
			peer := startMLLPPeer(t, func(m *hl7.Message) []byte {
				return ack.Build(m, ack.Options{Code: tc.code, Text: "refused", Errors: []ack.Error{tc.err}})
			})
			f := startHL7(t, 20*time.Millisecond, hl7Dest(practice, "ehr", peer.addr))
			in := submit(t, f.ob, hl7Reschedule(practice, "move-"+string(tc.code), "a1"))
			got := waitFinal(t, f.st, 10*time.Second, in.ID)[in.ID]
			if got.Status != store.IntentRejected {
				t.Fatalf("status %s (%s), want rejected", got.Status, got.LastError)
			}
			wantCodes := string(tc.code) + " ERR"
			if tc.err.Location != "" {
				wantCodes += " " + tc.err.Location
			}
			wantCodes += " " + fmt.Sprint(tc.err.Code)
			if !strings.Contains(got.LastError, wantCodes) {
				t.Errorf("reason %q lacks %q", got.LastError, wantCodes)
			}
			if !strings.Contains(got.Rejection, tc.want) {
				t.Errorf("rejection %q does not say %q", got.Rejection, tc.want)
			}
			for _, s := range []string{got.Rejection, got.LastError} {
				if strings.Contains(s, "Zebrowski") || strings.Contains(s, "FL-7") {
					t.Errorf("receiver text in %q", s)
				}
			}
			// the receiver's ERR text is kept with the message, found by the
			// intent's control id
			ms, err := f.st.ListHL7Messages(context.Background(), practice, store.HL7Filter{Direction: store.DirectionOutbound,
				ControlID: hl7out.ControlID(in.ID)})
			if err != nil || len(ms) != 1 {
				t.Fatalf("messages of the intent: %d, %v", len(ms), err)
			}
			if ms[0].Status != store.MsgRejected || ms[0].AckCode != string(tc.code) || !strings.Contains(ms[0].Error, tc.err.Text) ||
				ms[0].TriggerEvent != "S13" {
				t.Errorf("stored message: %s %s %s^%s %q", ms[0].Status, ms[0].AckCode, ms[0].MessageCode, ms[0].TriggerEvent, ms[0].Error)
			}
		})
	}
}

// TestHL7LegacyControlID: an intent whose message was queued with the
// intent id as MSH-10 (before control ids were cut to 20 characters) is
// followed to that message's outcome, not sent a second time.
func TestHL7LegacyControlID(t *testing.T) {
	peer := startMLLPPeer(t, func(m *hl7.Message) []byte { return ack.Build(m, ack.Options{Code: ack.AA}) })
	f := newHL7Fixture(t, 20*time.Millisecond, hl7Dest(practice, "ehr", peer.addr))
	in := submit(t, f.ob, hl7Note(practice, "legacy"))
	// the message as an earlier mediflow built it
	opts := fhirv2.Options{SendingApplication: "MEDIFLOW", ControlID: func() string { return in.ID }}
	body, err := hl7Body(in.VendorBody, "MDM^T02", in.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	m, err := fhirv2.New(opts).Note(body, []byte(hl7Patient), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.EnqueueMessage(context.Background(), practice, "ehr", m); err != nil {
		t.Fatal(err)
	}
	f.start(t)
	got := waitFinal(t, f.st, 10*time.Second, in.ID)[in.ID]
	if got.Status != store.IntentConfirmed {
		t.Fatalf("status %s (%s), want confirmed", got.Status, got.LastError)
	}
	msgs := peer.received()
	if len(msgs) != 1 || controlID(t, msgs[0]) != in.ID {
		t.Errorf("the peer received %d messages, want the one queued with control id %s", len(msgs), in.ID)
	}
}

// TestHL7RescheduleNodeServer sends SIU^S13 messages to node-hl7-server, a
// receiver nobody on this project wrote: a reschedule intent is answered AA
// and confirmed; a message whose MSH-10 starts with NAK is answered AE
// (node-hl7-server's rule), stored rejected, and an intent with that
// answer gets the staff message of an AE without ERR. Each message goes to
// its own destination: node-hl7-server takes one message per connection.
func TestHL7RescheduleNodeServer(t *testing.T) {
	srv := peers.StartHL7NodeServer(t)
	dm, dn := hl7Dest("move-clinic", "node", srv.Addr), hl7Dest("nak-clinic", "node", srv.Addr)
	dm.AckTimeout, dn.AckTimeout = 10*time.Second, 10*time.Second
	f := startHL7(t, 50*time.Millisecond, dm, dn)

	in := submit(t, f.ob, hl7Reschedule("move-clinic", "node-move", "a1"))
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := f.st.GetIntent(context.Background(), "move-clinic", in.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !store.IntentOpen(got.Status) {
			if got.Status != store.IntentConfirmed {
				t.Fatalf("status %s (%s) rejection %q, want confirmed", got.Status, got.LastError, got.Rejection)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %s (%s)", got.Status, got.LastError)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// the same kind of message, with a control id node-hl7-server refuses
	body, err := hl7Body([]byte(hl7Resched), "SIU^S13", "01J9ZQ4X7M3K8TB2N6RVCWDYEH", "a1")
	if err != nil {
		t.Fatal(err)
	}
	nak := "NAK" + hl7out.ControlID("01J9ZQ4X7M3K8TB2N6RVCWDYEH")[:17]
	m, err := buildHL7(fhirv2.Options{SendingApplication: "MEDIFLOW", ReceivingApplication: "EHR"}, "SIU^S13", body, []byte(hl7Patient),
		hl7Sender{intent: "01J9ZQ4X7M3K8TB2N6RVCWDYEH", control: nak, app: "scheduler"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := f.s.EnqueueMessage(context.Background(), "nak-clinic", "node", m)
	if err != nil {
		t.Fatal(err)
	}
	var stored store.HL7Message
	for deadline := time.Now().Add(60 * time.Second); ; {
		if stored, err = f.st.GetHL7Message(context.Background(), "nak-clinic", id); err != nil {
			t.Fatal(err)
		}
		if stored.Status == store.MsgAcked || stored.Status == store.MsgRejected || stored.Status == store.MsgTimedOut {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the NAK message is still %s (%s)", stored.Status, stored.Error)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if stored.Status != store.MsgRejected || stored.AckCode != "AE" || !strings.HasPrefix(stored.Error, "AE") {
		t.Errorf("NAK message: status %s ack %s error %q, want rejected AE", stored.Status, stored.AckCode, stored.Error)
	}
	if r := TranslateAck(ackOfStored(stored.AckCode, stored.Error)); !strings.Contains(r, "found an error in the message (AE)") {
		t.Errorf("staff message for node-hl7-server's AE: %q", r)
	}

	rcv := srv.WaitReceived(t, 2)
	byID := map[string]peers.HL7Received{}
	for _, r := range rcv {
		byID[r.ControlID] = r
	}
	r := byID[hl7out.ControlID(in.ID)]
	if r.Type != "SIU^S13" || r.Ack != "AA" {
		t.Errorf("reschedule: node-hl7-server got %+v, want SIU^S13 answered AA with control id %s", r, hl7out.ControlID(in.ID))
	}
	// node-hl7-server's parser read the fields we meant
	for _, want := range []string{"SCH|PL-9^", "|FL-7^", "|pat^Patient^", "|^^M45^20260309140000+0000^20260309144500+0000|", "|scheduler^^^^^^^^MEDIFLOW|",
		"TQ1|1|||||45^min&&UCUM|20260309140000+0000|20260309144500+0000", "NTE|1|O|mediflow write-back intent " + in.ID + "|RE"} {
		if !strings.Contains(r.Message, want) {
			t.Errorf("node-hl7-server's reading of the SIU^S13 lacks %q:\n%s", want, strings.ReplaceAll(r.Message, "\r", "\n"))
		}
	}
	if n := byID[nak]; n.Type != "SIU^S13" || n.Ack != "AE" {
		t.Errorf("NAK: node-hl7-server got %+v, want SIU^S13 answered AE", n)
	}
}
