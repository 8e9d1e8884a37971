package writeback

import (
	"bytes"
	"context"
	"encoding/base64"
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
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Run(ctx); err != nil {
			t.Errorf("sender: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	run(t, ob)
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
	if h.ControlID != in.ID || h.MessageCode != "MDM" || h.TriggerEvent != "T02" {
		t.Errorf("sent %s^%s control id %q, want MDM^T02 with the intent id %s", h.MessageCode, h.TriggerEvent, h.ControlID, in.ID)
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
	if len(msgs) != 2 || controlID(t, msgs[0]) != in.ID || controlID(t, msgs[1]) != in.ID {
		t.Errorf("the peer received %d messages, want 2 with control id %s", len(msgs), in.ID)
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
	for i, m := range msgs {
		if !bytes.Equal(m, msgs[0]) {
			t.Errorf("resend %d differs from the first send", i)
		}
		if id := controlID(t, m); id != in.ID {
			t.Errorf("resend %d has MSH-10 %q, want %s", i, id, in.ID)
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
	if r := byID[note.ID]; r.Type != "MDM^T02" || r.Ack != "AA" {
		t.Errorf("note: node-hl7-server got %+v, want MDM^T02 answered AA with control id %s", r, note.ID)
	}
	if r := byID[book.ID]; r.Type != "SIU^S12" || r.Ack != "AA" {
		t.Errorf("booking: node-hl7-server got %+v, want SIU^S12 answered AA with control id %s", r, book.ID)
	}
}
