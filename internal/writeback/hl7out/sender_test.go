package hl7out

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/ack"
	"github.com/mediflow/mediflow/internal/sim/hl7feed"
	"github.com/mediflow/mediflow/internal/store"
)

// startFeedReceiver runs the simulator's receiver with a fault.
func startFeedReceiver(t *testing.T, cfg hl7feed.ReceiverConfig) (*hl7feed.Receiver, string) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := hl7feed.NewReceiver(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("receiver: %v", err)
		}
	})
	return r, ln.Addr().String()
}

func TestDeliversInOrderAndStoresOutcome(t *testing.T) {
	st := openStore(t)
	rcv, addr := startFeedReceiver(t, hl7feed.ReceiverConfig{})
	s, ev := newSender(t, st, fastDest("ehr", addr))

	// some messages wait in the store before Run, the others wake it
	var ids []int64
	var bodies [][]byte
	for i := range 5 {
		b := mdm(fmt.Sprintf("OUT%03d", i), "Doe")
		bodies = append(bodies, b)
		ids = append(ids, enqueue(t, s, "ehr", b))
	}
	before := time.Now()
	for _, id := range ids {
		if m := get(t, st, id); m.Status != store.MsgQueued || m.Attempts != 0 || !m.SentAt.IsZero() {
			t.Fatalf("message %d before Run: status %s, attempts %d, sent %v", id, m.Status, m.Attempts, m.SentAt)
		}
	}
	run(t, s)
	for i := 5; i < 20; i++ {
		b := mdm(fmt.Sprintf("OUT%03d", i), "Doe")
		bodies = append(bodies, b)
		ids = append(ids, enqueue(t, s, "ehr", b))
	}
	waitFinalEvents(t, st, ev, 10*time.Second, ids...)

	got := rcv.Messages()
	if len(got) != len(bodies) {
		t.Fatalf("the receiver got %d messages, want %d", len(got), len(bodies))
	}
	for i := range bodies {
		if !bytes.Equal(got[i], bodies[i]) {
			t.Fatalf("message %d at the receiver:\n%q\nwant (in enqueue order):\n%q", i, got[i], bodies[i])
		}
	}
	for i, id := range ids {
		m := get(t, st, id)
		if i > 0 && id <= ids[i-1] {
			t.Errorf("ids not increasing: %d after %d", id, ids[i-1])
		}
		if m.Status != store.MsgAcked || m.AckCode != "AA" || m.Attempts != 1 || m.Error != "" {
			t.Errorf("message %d: status %s ack %q attempts %d error %q", id, m.Status, m.AckCode, m.Attempts, m.Error)
		}
		if m.Direction != store.DirectionOutbound || m.Channel != "ehr" || m.Peer != addr {
			t.Errorf("message %d: direction %s channel %s peer %s", id, m.Direction, m.Channel, m.Peer)
		}
		if m.MessageCode != "MDM" || m.TriggerEvent != "T02" || m.ControlID != fmt.Sprintf("OUT%03d", i) ||
			m.SendingApp != "MEDIFLOW" || m.SendingFacility != "CLINIC" || m.ReceivingApp != "EHR" || m.ReceivingFacility != "HOSP" {
			t.Errorf("message %d metadata: %+v", id, m)
		}
		if m.SentAt.IsZero() || m.SentAt.Before(m.ReceivedAt) || m.ProcessedAt.Before(m.SentAt) {
			t.Errorf("message %d times: queued %v sent %v done %v", id, m.ReceivedAt, m.SentAt, m.ProcessedAt)
		}
		if i < 5 && m.SentAt.Before(before) {
			t.Errorf("message %d sent at %v, before Run started (%v)", id, m.SentAt, before)
		}
		if !bytes.Equal(m.Body, bodies[i]) {
			t.Errorf("message %d stored body differs from what was enqueued", id)
		}
	}
	// one queued and one acked event per message, in order
	var acked []int64
	queued := 0
	for _, e := range ev.all() {
		switch e.Status {
		case store.MsgQueued:
			queued++
		case store.MsgAcked:
			if !e.Final() || e.AckCode != "AA" || e.Attempts != 1 || e.Destination != "ehr" || e.Practice != testPractice {
				t.Errorf("event %+v", e)
			}
			acked = append(acked, e.ID)
		default:
			t.Errorf("unexpected event %+v", e)
		}
	}
	if queued != len(ids) || fmt.Sprint(acked) != fmt.Sprint(ids) {
		t.Errorf("%d queued events; acked events for %v, want %v", queued, acked, ids)
	}
	st0 := s.Status()
	if len(st0) != 1 || st0[0].Acked != int64(len(ids)) || st0[0].Head != 0 {
		t.Errorf("Status: %+v", st0)
	}
}

func TestRejectedKeepsReceiverErrorAndGoesOn(t *testing.T) {
	st := openStore(t)
	// our own receiver: AE with an ERR segment for REJ..., AR for AR...
	p, _ := startPeer(t, "", func(m *hl7.Message, _ int) []byte {
		switch id := m.Header().ControlID; {
		case strings.HasPrefix(id, "REJ"):
			return ack.Build(m, ack.Options{Code: ack.AE, Text: "Unknown patient",
				Errors: []ack.Error{{Location: "PID-3", Code: 204, Text: "Unknown key identifier"}}})
		case strings.HasPrefix(id, "AR"):
			return ack.Build(m, ack.Options{Code: ack.AR, Text: "Unsupported message type"})
		}
		return aa(m, 0)
	})
	// and the simulator's receiver, which NAKs everything
	_, nakAddr := startFeedReceiver(t, hl7feed.ReceiverConfig{Fault: hl7feed.FaultNAK})
	s, ev := newSender(t, st, fastDest("ehr", p.addr), fastDest("sim", nakAddr))
	run(t, s)

	rej := enqueue(t, s, "ehr", mdm("REJ1", "Doe"))
	ar := enqueue(t, s, "ehr", mdm("AR1", "Doe"))
	ok := enqueue(t, s, "ehr", mdm("OK1", "Doe"))
	nak := enqueue(t, s, "sim", mdm("NAK1", "Doe"))
	waitFinalEvents(t, st, ev, 10*time.Second, rej, ar, ok, nak)

	m := get(t, st, rej)
	if m.Status != store.MsgRejected || m.AckCode != "AE" || m.Attempts != 1 {
		t.Errorf("AE: status %s ack %s attempts %d", m.Status, m.AckCode, m.Attempts)
	}
	if want := "AE Unknown patient; ERR PID-3 code 204: Unknown key identifier"; m.Error != want {
		t.Errorf("AE error text %q, want %q", m.Error, want)
	}
	if m = get(t, st, ar); m.Status != store.MsgRejected || m.AckCode != "AR" || m.Error != "AR Unsupported message type" {
		t.Errorf("AR: status %s ack %s error %q", m.Status, m.AckCode, m.Error)
	}
	if m = get(t, st, ok); m.Status != store.MsgAcked || m.AckCode != "AA" {
		t.Errorf("the message after two rejections: status %s ack %s", m.Status, m.AckCode)
	}
	if n := len(p.received()); n != 3 {
		t.Errorf("the receiver got %d messages, want 3 (a rejection is not resent)", n)
	}
	m = get(t, st, nak)
	if m.Status != store.MsgRejected || m.AckCode != "AE" || !strings.HasPrefix(m.Error, "AE ") || !strings.Contains(m.Error, "; ERR MSH code 207") {
		t.Errorf("simulator NAK: status %s ack %s error %q", m.Status, m.AckCode, m.Error)
	}
	for _, e := range ev.all() {
		if e.ID == rej && e.Final() && (e.AckText != "Unknown patient" || e.Error != get(t, st, rej).Error) {
			t.Errorf("rejected event %+v", e)
		}
	}
}

func TestResendsSameBytesWhenNoAnswer(t *testing.T) {
	st := openStore(t)
	// no answer to the first attempt of each message; AA to the next
	p, _ := startPeer(t, "", func(m *hl7.Message, n int) []byte {
		if n == 1 {
			return nil
		}
		return aa(m, n)
	})
	d := fastDest("ehr", p.addr)
	d.AckTimeout = 300 * time.Millisecond
	s, ev := newSender(t, st, d)
	run(t, s)
	start := time.Now()
	id := enqueue(t, s, "ehr", mdm("SLOW1", "Doe"))
	next := enqueue(t, s, "ehr", mdm("SLOW2", "Roe"))
	waitFinalEvents(t, st, ev, 10*time.Second, id, next)

	got := p.received()
	if len(got) != 4 {
		t.Fatalf("the receiver got %d messages, want each of 2 twice", len(got))
	}
	if !bytes.Equal(got[0], got[1]) || !bytes.Equal(got[2], got[3]) || bytes.Equal(got[1], got[2]) {
		t.Errorf("resends differ from the first attempts, or messages are interleaved:\n%q", got)
	}
	for _, x := range []int64{id, next} {
		m := get(t, st, x)
		if m.Status != store.MsgAcked || m.AckCode != "AA" || m.Attempts != 2 || m.Error != "" {
			t.Errorf("message %d: status %s ack %s attempts %d error %q", x, m.Status, m.AckCode, m.Attempts, m.Error)
		}
		if !bytes.Equal(m.Body, got[0]) && !bytes.Equal(m.Body, got[2]) {
			t.Errorf("message %d: what was sent is not what is stored", x)
		}
	}
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Errorf("two 300ms timeouts took %v", d)
	}
	var retries int
	for _, e := range ev.all() {
		if e.Status == store.MsgSent {
			retries++
			if e.Attempts != 1 || !strings.Contains(e.Error, "attempt 1") || e.Final() {
				t.Errorf("retry event %+v", e)
			}
		}
	}
	if retries != 2 {
		t.Errorf("%d failed-attempt events, want 2", retries)
	}
}

func TestMismatchedAckIsRetried(t *testing.T) {
	st := openStore(t)
	// the first answer acknowledges another control id
	p, _ := startPeer(t, "", func(m *hl7.Message, n int) []byte {
		if n == 1 {
			other, err := hl7.Parse(m.Encode(), hl7.ParseOptions{})
			if err == nil {
				err = other.Set("MSH-10", "SOMEONE-ELSE")
			}
			if err != nil {
				panic(err)
			}
			return ack.Build(other, ack.Options{Code: ack.AA})
		}
		return aa(m, n)
	})
	s, _ := newSender(t, st, fastDest("ehr", p.addr))
	run(t, s)
	id := enqueue(t, s, "ehr", mdm("MIX1", "Doe"))
	waitFinal(t, st, 10*time.Second, id)
	m := get(t, st, id)
	if m.Status != store.MsgAcked || m.Attempts != 2 {
		t.Errorf("status %s attempts %d, want acked after 2", m.Status, m.Attempts)
	}
	if got := p.received(); len(got) != 2 || !bytes.Equal(got[0], got[1]) {
		t.Errorf("the receiver got %d messages (want the same one twice)", len(got))
	}
}

func TestReceiverDownHoldsTheQueue(t *testing.T) {
	st := openStore(t)
	addr := freeAddr(t)
	d := fastDest("ehr", addr)
	d.MaxAttempts = 2
	s, _ := newSender(t, st, d)
	run(t, s)
	a := enqueue(t, s, "ehr", mdm("DOWN1", "Doe"))
	b := enqueue(t, s, "ehr", mdm("DOWN2", "Roe"))
	c := enqueue(t, s, "ehr", mdm("DOWN3", "Poe"))

	// two rounds of two attempts on the first message; the others wait
	waitFor(t, "two failed rounds", 10*time.Second, func() bool {
		m := get(t, st, a)
		return m.Attempts >= 4 && strings.Contains(m.Error, "failed, next round in")
	})
	m := get(t, st, a)
	if m.Status != store.MsgSent || !strings.Contains(m.Error, "connection refused") || m.SentAt.IsZero() {
		t.Errorf("held message: status %s error %q sent %v", m.Status, m.Error, m.SentAt)
	}
	for _, id := range []int64{b, c} {
		if m := get(t, st, id); m.Status != store.MsgQueued || m.Attempts != 0 {
			t.Errorf("message %d behind a held one: status %s attempts %d", id, m.Status, m.Attempts)
		}
	}
	if ds := s.Status()[0]; ds.Head != a || ds.HeadAttempts < 4 || ds.LastError == "" || ds.HeadSince.IsZero() {
		t.Errorf("Status while held: %+v", ds)
	}

	// the receiver comes up: everything is delivered, in order
	p, _ := startPeer(t, addr, aa)
	waitFinal(t, st, 10*time.Second, a, b, c)
	for _, id := range []int64{a, b, c} {
		if m := get(t, st, id); m.Status != store.MsgAcked || m.Error != "" {
			t.Errorf("message %d: status %s error %q", id, m.Status, m.Error)
		}
	}
	var order []string
	for _, g := range p.received() {
		m, err := hl7.Parse(g, hl7.ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, m.Header().ControlID)
	}
	if fmt.Sprint(order) != "[DOWN1 DOWN2 DOWN3]" {
		t.Errorf("delivered %v", order)
	}
}

func TestGivesUpAfterMaxRounds(t *testing.T) {
	st := openStore(t)
	p, _ := startPeer(t, "", func(m *hl7.Message, n int) []byte {
		if strings.HasPrefix(m.Header().ControlID, "SIL") {
			return nil
		}
		return aa(m, n)
	})
	d := fastDest("ehr", p.addr)
	d.AckTimeout, d.MaxAttempts, d.MaxRounds = 150*time.Millisecond, 2, 2
	s, ev := newSender(t, st, d)
	run(t, s)
	sil := enqueue(t, s, "ehr", mdm("SIL1", "Doe"))
	ok := enqueue(t, s, "ehr", mdm("OK1", "Roe"))
	waitFinalEvents(t, st, ev, 10*time.Second, sil, ok)
	m := get(t, st, sil)
	if m.Status != store.MsgTimedOut || m.Attempts != 4 || m.AckCode != "" || !strings.Contains(m.Error, "no acknowledgment after 4 attempts") || !strings.Contains(m.Error, "timeout") {
		t.Errorf("silent message: status %s attempts %d ack %q error %q", m.Status, m.Attempts, m.AckCode, m.Error)
	}
	if m := get(t, st, ok); m.Status != store.MsgAcked || m.Attempts != 1 {
		t.Errorf("next message: status %s attempts %d", m.Status, m.Attempts)
	}
	if n := len(p.received()); n != 5 {
		t.Errorf("the receiver got %d messages, want 4 attempts + 1", n)
	}
	// Events and counters follow the store update: wait for them.
	finals := func() []string {
		var final []string
		for _, e := range ev.all() {
			if e.Final() {
				final = append(final, e.Status)
			}
		}
		return final
	}
	waitFor(t, "two final events", 10*time.Second, func() bool { return len(finals()) >= 2 && s.Status()[0].Acked == 1 })
	if final := finals(); fmt.Sprint(final) != "[timed-out acked]" {
		t.Errorf("final events %v", final)
	}
	if ds := s.Status()[0]; ds.TimedOut != 1 || ds.Acked != 1 {
		t.Errorf("Status: %+v", ds)
	}
}

func TestRestartDeliversWhatWasLeft(t *testing.T) {
	st := openStore(t)
	// silent until the first sender has been stopped
	p, _ := startPeer(t, "", func(*hl7.Message, int) []byte { return nil })
	d := fastDest("ehr", p.addr)
	d.AckTimeout = time.Minute // the first sender is stopped while it waits

	s1, _ := newSender(t, st, d)
	stop1 := run(t, s1)
	a := enqueue(t, s1, "ehr", mdm("LEFT1", "Doe"))
	b := enqueue(t, s1, "ehr", mdm("LEFT2", "Roe"))
	waitFor(t, "the first message to reach the receiver", 10*time.Second, func() bool { return len(p.received()) == 1 })
	stop1()
	if m := get(t, st, a); m.Status != store.MsgSent || m.Attempts != 1 || m.AckCode != "" {
		t.Fatalf("after the stop, message %d: status %s attempts %d ack %q", a, m.Status, m.Attempts, m.AckCode)
	}
	if m := get(t, st, b); m.Status != store.MsgQueued || m.Attempts != 0 {
		t.Fatalf("after the stop, message %d: status %s attempts %d", b, m.Status, m.Attempts)
	}
	// a message enqueued by a sender that is not running is delivered too
	c := enqueue(t, s1, "ehr", mdm("LEFT3", "Poe"))

	p.setAnswer(aa)
	s2, _ := newSender(t, st, fastDest("ehr", p.addr))
	run(t, s2)
	waitFinal(t, st, 10*time.Second, a, b, c)
	got := p.received()
	if len(got) != 4 || !bytes.Equal(got[0], got[1]) {
		t.Fatalf("the receiver got %d messages; want the interrupted one twice (same bytes) and two more", len(got))
	}
	for i, want := range []int64{a, a, b, c} {
		if m := get(t, st, want); !bytes.Equal(got[i], m.Body) {
			t.Errorf("delivery %d is not message %d", i, want)
		}
	}
	wantAttempts := map[int64]int{a: 2, b: 1, c: 1}
	for id, n := range wantAttempts {
		if m := get(t, st, id); m.Status != store.MsgAcked || m.Attempts != n {
			t.Errorf("message %d: status %s attempts %d, want acked after %d", id, m.Status, m.Attempts, n)
		}
	}
}

func TestConcurrentEnqueueKeepsOrderPerDestination(t *testing.T) {
	st := openStore(t)
	pa, _ := startPeer(t, "", aa)
	pb, _ := startPeer(t, "", aa)
	s, _ := newSender(t, st, fastDest("a", pa.addr), fastDest("b", pb.addr))
	run(t, s)

	const writers, each = 8, 25
	var mu sync.Mutex
	idOf := map[string]int64{} // control id → stored id
	var all []int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range each {
				dest := "a"
				if rng.IntN(2) == 1 {
					dest = "b"
				}
				ctl := fmt.Sprintf("W%d-%03d-%s", w, i, dest)
				id, err := s.Enqueue(context.Background(), testPractice, dest, mdm(ctl, "Doe"))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				idOf[ctl] = id
				all = append(all, id)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	waitFinal(t, st, 30*time.Second, all...)
	total := 0
	for name, p := range map[string]*peer{"a": pa, "b": pb} {
		prev := int64(0)
		got := p.received()
		total += len(got)
		for _, g := range got {
			m, err := hl7.Parse(g, hl7.ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ctl := m.Header().ControlID
			if !strings.HasSuffix(ctl, "-"+name) {
				t.Fatalf("destination %s got %s", name, ctl)
			}
			id := idOf[ctl]
			if id <= prev {
				t.Fatalf("destination %s: message %d (%s) arrived after message %d", name, id, ctl, prev)
			}
			prev = id
		}
	}
	if total != writers*each {
		t.Errorf("the receivers got %d messages, want %d", total, writers*each)
	}
}

func TestDisconnectingReceiver(t *testing.T) {
	st := openStore(t)
	// the simulator's receiver cuts a third of the frames in the middle
	rcv, addr := startFeedReceiver(t, hl7feed.ReceiverConfig{Fault: hl7feed.FaultDisconnect, FaultRate: 0.3, Seed: 42})
	s, _ := newSender(t, st, fastDest("ehr", addr))
	run(t, s)
	var ids []int64
	for i := range 30 {
		ids = append(ids, enqueue(t, s, "ehr", mdm(fmt.Sprintf("CUT%02d", i), "Doe")))
	}
	waitFinal(t, st, 30*time.Second, ids...)
	retried := 0
	for _, id := range ids {
		m := get(t, st, id)
		if m.Status != store.MsgAcked {
			t.Errorf("message %d: status %s error %q", id, m.Status, m.Error)
		}
		if m.Attempts > 1 {
			retried++
		}
	}
	if rcv.Stats().Disconnects == 0 || retried == 0 {
		t.Errorf("no disconnects (%d) or no retried message (%d): the test tested nothing", rcv.Stats().Disconnects, retried)
	}
	got := rcv.Messages()
	if len(got) != len(ids) {
		t.Fatalf("the receiver got %d complete messages, want %d", len(got), len(ids))
	}
	for i, g := range got {
		if want := get(t, st, ids[i]).Body; !bytes.Equal(g, want) {
			t.Fatalf("complete message %d at the receiver is not message %d", i, ids[i])
		}
	}
}

func TestEnqueueRefuses(t *testing.T) {
	st := openStore(t)
	s, _ := newSender(t, st, fastDest("ehr", "127.0.0.1:1"))
	ctx := t.Context()
	if _, err := s.Enqueue(ctx, testPractice, "nowhere", mdm("X1", "Doe")); !errors.Is(err, ErrUnknownDestination) {
		t.Errorf("unknown destination: %v", err)
	}
	if _, err := s.Enqueue(ctx, "other", "ehr", mdm("X1", "Doe")); !errors.Is(err, ErrUnknownDestination) {
		t.Errorf("other practice: %v", err)
	}
	if _, err := s.Enqueue(ctx, testPractice, "ehr", mdm("", "Doe")); !errors.Is(err, ErrNoControlID) {
		t.Errorf("no control id: %v", err)
	}
	if _, err := s.Enqueue(ctx, testPractice, "ehr", []byte("not HL7")); err == nil {
		t.Error("a message without MSH was queued")
	}
	if _, err := s.Enqueue(ctx, testPractice, "ehr", append(mdm("X2", "Doe"), 0x1C)); err == nil {
		t.Error("a message with an MLLP block character was queued")
	}
	n, err := st.CountHL7Messages(ctx, testPractice, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(n) != 0 {
		t.Errorf("refused messages were stored: %v", n)
	}
	// LF line ends are stored (and sent) as CR
	id := enqueue(t, s, "ehr", bytes.ReplaceAll(mdm("LF1", "Doe"), []byte("\r"), []byte("\n")))
	if m := get(t, st, id); !bytes.Equal(m.Body, mdm("LF1", "Doe")) {
		t.Errorf("stored %q", m.Body)
	}
	// EnqueueMessage stores what Encode gives
	pm, err := hl7.Parse(mdm("PM1", "Doe"), hl7.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id, err = s.EnqueueMessage(ctx, testPractice, "ehr", pm)
	if err != nil {
		t.Fatal(err)
	}
	if m := get(t, st, id); !bytes.Equal(m.Body, pm.Encode()) || m.ControlID != "PM1" || m.Status != store.MsgQueued {
		t.Errorf("EnqueueMessage stored %+v", m)
	}
}

func TestNewValidates(t *testing.T) {
	st := openStore(t)
	good := Destination{Practice: "p", Name: "d", Addr: "127.0.0.1:1"}
	cases := map[string]Options{
		"no store":      {Destinations: []Destination{good}},
		"no practice":   {Store: st, Destinations: []Destination{{Name: "d", Addr: "x:1"}}},
		"no name":       {Store: st, Destinations: []Destination{{Practice: "p", Addr: "x:1"}}},
		"no address":    {Store: st, Destinations: []Destination{{Practice: "p", Name: "d"}}},
		"negative":      {Store: st, Destinations: []Destination{{Practice: "p", Name: "d", Addr: "x:1", MaxAttempts: -1}}},
		"negative time": {Store: st, Destinations: []Destination{{Practice: "p", Name: "d", Addr: "x:1", AckTimeout: -1}}},
		"twice":         {Store: st, Destinations: []Destination{good, good}},
		"poll":          {Store: st, PollInterval: -1},
	}
	for name, o := range cases {
		if _, err := New(o); err == nil {
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
	s, err := New(Options{Store: st, Destinations: []Destination{good, {Practice: "q", Name: "d", Addr: "x:1"}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := s.Run(ctx); err == nil {
		t.Error("a Sender ran twice")
	}
}

func TestAckErrorText(t *testing.T) {
	res := ack.Result{Code: ack.AE, Text: "Bad", Errors: []ack.Error{
		{Location: "PID-3", Code: 204, Text: "Bad"},
		{Code: 207, Severity: "W", Text: "Retry  later\r\nplease"},
	}}
	if got, want := ackErrorText(res), "AE Bad; ERR PID-3 code 204; ERR code 207 severity W: Retry later please"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	long := ackErrorText(ack.Result{Code: ack.AR, Text: strings.Repeat("é", 400)})
	if len(long) > maxErrorText+len("…") || !strings.HasSuffix(long, "…") || !strings.HasPrefix(long, "AR é") {
		t.Errorf("long text clipped to %d bytes: %q…", len(long), long[:20])
	}
	if s := long[:len(long)-len("…")]; !strings.HasSuffix(s, "é") {
		t.Errorf("clipped inside a character")
	}
}
