package hl7feed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/hl7/ack"
	"github.com/mediflow/mediflow/internal/hl7/mllp"
)

// testMessage is a minimal ADT with control id ctrl.
func testMessage(ctrl string) []byte {
	return []byte("MSH|^~\\&|APP|FAC|RCV|RFAC|20260601120000||ADT^A08^ADT_A01|" + ctrl + "|P|2.5.1\rPID|1||123^^^FAC^MR||Doe^Jane\r")
}

func send(t *testing.T, addr string, cfg mllp.ClientConfig, msg []byte) ([]byte, time.Duration, error) {
	t.Helper()
	cfg.Addr = addr
	c := mllp.NewClient(cfg)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	a, err := c.Send(ctx, msg)
	return a, time.Since(start), err
}

func parseAck(t *testing.T, a []byte, ctrl string) ack.Result {
	t.Helper()
	res, err := ack.Parse(a)
	if err != nil {
		t.Fatalf("ack: %v (%q)", err, a)
	}
	if res.ControlID != ctrl {
		t.Errorf("MSA-2 %q, want %q", res.ControlID, ctrl)
	}
	return res
}

func TestReceiverAcks(t *testing.T) {
	r := NewReceiver(ReceiverConfig{})
	addr := startReceiver(t, r)
	a, _, err := send(t, addr, mllp.ClientConfig{}, testMessage("C1"))
	if err != nil {
		t.Fatal(err)
	}
	if res := parseAck(t, a, "C1"); res.Code != ack.AA {
		t.Errorf("code %s", res.Code)
	}
	// A message that does not parse gets AE.
	a, _, err = send(t, addr, mllp.ClientConfig{}, []byte("not hl7"))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := ack.Parse(a); err != nil || res.Code != ack.AE {
		t.Errorf("unparseable: %+v %v", res, err)
	}
	if st := r.Stats(); st != (ReceiverStats{Received: 2, Acked: 1, Invalid: 1}) {
		t.Errorf("stats %+v", st)
	}
	got := r.Messages()
	if len(got) != 2 || !bytes.Equal(got[0], testMessage("C1")) || string(got[1]) != "not hl7" {
		t.Errorf("messages %q", got)
	}
}

func TestReceiverNAKAndReject(t *testing.T) {
	for _, tc := range []struct {
		fault Fault
		code  ack.Code
	}{{FaultNAK, ack.AE}, {FaultReject, ack.AR}} {
		r := NewReceiver(ReceiverConfig{Fault: tc.fault})
		addr := startReceiver(t, r)
		a, _, err := send(t, addr, mllp.ClientConfig{}, testMessage("N1"))
		if err != nil {
			t.Fatal(err)
		}
		res := parseAck(t, a, "N1")
		if res.Code != tc.code || len(res.Errors) != 1 || res.Errors[0].Code != 207 {
			t.Errorf("%s: %+v", tc.fault, res)
		}
		st := r.Stats()
		if st.Received != 1 || st.Naks+st.Rejects != 1 || st.Acked != 0 {
			t.Errorf("%s: stats %+v", tc.fault, st)
		}
	}
}

func TestReceiverNoAck(t *testing.T) {
	r := NewReceiver(ReceiverConfig{Fault: FaultNoAck})
	addr := startReceiver(t, r)
	const timeout = 150 * time.Millisecond
	_, took, err := send(t, addr, mllp.ClientConfig{AckTimeout: timeout, MaxAttempts: 1}, testMessage("X1"))
	if !errors.Is(err, mllp.ErrNoAck) {
		t.Fatalf("err %v", err)
	}
	if took < timeout {
		t.Errorf("no ACK noticed after %v, before the %v timeout", took, timeout)
	}
	// The client resends on a new connection; each attempt is received and
	// left unanswered.
	_, _, err = send(t, addr, mllp.ClientConfig{AckTimeout: 50 * time.Millisecond, MaxAttempts: 3, Backoff: time.Millisecond}, testMessage("X2"))
	if !errors.Is(err, mllp.ErrNoAck) {
		t.Fatalf("err %v", err)
	}
	if st := r.Stats(); st.Received != 4 || st.NoAcks != 4 || st.Acked != 0 {
		t.Errorf("stats %+v", st)
	}
}

// no-ack holds only the connection of the message it hits: other
// connections are answered meanwhile.
func TestReceiverNoAckHoldsOneConnection(t *testing.T) {
	// Find a seed whose fault hits message 0 and spares message 1.
	var r *Receiver
	for seed := uint64(0); ; seed++ {
		r = NewReceiver(ReceiverConfig{Fault: FaultNoAck, FaultRate: 0.5, Seed: seed})
		if r.hits(0) && !r.hits(1) {
			break
		}
	}
	addr := startReceiver(t, r)
	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := mllp.WriteFrame(held, testMessage("H1")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.Stats().NoAcks == 0 {
		if time.Now().After(deadline) {
			t.Fatal("first message never received")
		}
		time.Sleep(5 * time.Millisecond)
	}
	a, _, err := send(t, addr, mllp.ClientConfig{AckTimeout: 2 * time.Second, MaxAttempts: 1}, testMessage("H2"))
	if err != nil {
		t.Fatalf("second connection: %v", err)
	}
	parseAck(t, a, "H2")
	// The held connection is still open and unanswered.
	held.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := held.Read(make([]byte, 64)); n != 0 || !isTimeout(err) {
		t.Errorf("held connection: read %d bytes, %v", n, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestReceiverSlowAck(t *testing.T) {
	const slow = 120 * time.Millisecond
	r := NewReceiver(ReceiverConfig{Fault: FaultSlowAck, SlowAck: slow})
	addr := startReceiver(t, r)
	a, took, err := send(t, addr, mllp.ClientConfig{}, testMessage("S1"))
	if err != nil {
		t.Fatal(err)
	}
	if took < slow {
		t.Errorf("ACK after %v, want ≥ %v", took, slow)
	}
	if res := parseAck(t, a, "S1"); res.Code != ack.AA {
		t.Errorf("code %s", res.Code)
	}
	if st := r.Stats(); st.Slow != 1 || st.Acked != 1 {
		t.Errorf("stats %+v", st)
	}
	// A client that waits less than the delay times out.
	_, _, err = send(t, addr, mllp.ClientConfig{AckTimeout: slow / 3, MaxAttempts: 1}, testMessage("S2"))
	if !errors.Is(err, mllp.ErrNoAck) {
		t.Errorf("short timeout: %v", err)
	}
}

func TestReceiverDisconnect(t *testing.T) {
	r := NewReceiver(ReceiverConfig{Fault: FaultDisconnect})
	addr := startReceiver(t, r)
	// Every frame is cut: the client sees the connection close, well before
	// its ACK timeout.
	_, took, err := send(t, addr, mllp.ClientConfig{AckTimeout: 5 * time.Second, MaxAttempts: 1}, testMessage("D1"))
	if !errors.Is(err, mllp.ErrNoAck) || isTimeout(errors.Unwrap(err)) {
		t.Fatalf("err %v", err)
	}
	if took > 3*time.Second {
		t.Errorf("disconnect noticed after %v", took)
	}
	if st := r.Stats(); st.Disconnects != 1 || st.Received != 0 {
		t.Errorf("stats %+v", st)
	}

	// With a rate below 1 the resend gets through: find a seed whose fault
	// cuts the first frame and spares the second.
	var r2 *Receiver
	for seed := uint64(0); ; seed++ {
		r2 = NewReceiver(ReceiverConfig{Fault: FaultDisconnect, FaultRate: 0.5, Seed: seed})
		if r2.hits(0) && !r2.hits(1) {
			break
		}
	}
	addr2 := startReceiver(t, r2)
	a, _, err := send(t, addr2, mllp.ClientConfig{AckTimeout: 5 * time.Second, MaxAttempts: 3, Backoff: 10 * time.Millisecond}, testMessage("D2"))
	if err != nil {
		t.Fatalf("resend: %v", err)
	}
	if res := parseAck(t, a, "D2"); res.Code != ack.AA {
		t.Errorf("code %s", res.Code)
	}
	if st := r2.Stats(); st.Disconnects != 1 || st.Received != 1 || st.Acked != 1 {
		t.Errorf("stats %+v", st)
	}
	if got := r2.Messages(); len(got) != 1 || !bytes.Equal(got[0], testMessage("D2")) {
		t.Errorf("messages %q", got)
	}
}

// The fault hits about FaultRate of the messages, the same ones for the
// same seed.
func TestReceiverFaultRate(t *testing.T) {
	a := NewReceiver(ReceiverConfig{Fault: FaultNAK, FaultRate: 0.3, Seed: 5})
	b := NewReceiver(ReceiverConfig{Fault: FaultNAK, FaultRate: 0.3, Seed: 5})
	c := NewReceiver(ReceiverConfig{Fault: FaultNAK, FaultRate: 0.3, Seed: 6})
	hits, diff := 0, 0
	for k := range uint64(10_000) {
		if a.hits(k) != b.hits(k) {
			t.Fatalf("same seed, different fault at %d", k)
		}
		if a.hits(k) {
			hits++
		}
		if a.hits(k) != c.hits(k) {
			diff++
		}
	}
	if hits < 2700 || hits > 3300 {
		t.Errorf("rate 0.3 hit %d of 10000", hits)
	}
	if diff == 0 {
		t.Error("another seed hits the same messages")
	}
	if NewReceiver(ReceiverConfig{}).hits(0) {
		t.Error("no fault configured, yet a hit")
	}
}

func TestReceiverKeepsLatestMessages(t *testing.T) {
	r := NewReceiver(ReceiverConfig{Keep: 3})
	addr := startReceiver(t, r)
	c := mllp.NewClient(mllp.ClientConfig{Addr: addr})
	defer c.Close()
	for i := range 5 {
		if _, err := c.Send(context.Background(), testMessage(fmt.Sprintf("K%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	got := r.Messages()
	if len(got) != 3 {
		t.Fatalf("%d messages kept", len(got))
	}
	for i, m := range got {
		if !bytes.Equal(m, testMessage(fmt.Sprintf("K%d", i+2))) {
			t.Errorf("kept[%d] = %q", i, m)
		}
	}
	got[0][0] = 'X' // copies: changing them changes nothing inside
	if r.Messages()[0][0] != 'M' {
		t.Error("Messages returned the receiver's own slices")
	}
}

func TestReceiverConfigValidate(t *testing.T) {
	for _, c := range []ReceiverConfig{{Fault: "teapot"}, {FaultRate: -0.1}, {FaultRate: 1.5}, {SlowAck: -time.Second}} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (ReceiverConfig{Fault: FaultSlowAck, FaultRate: 0.5, SlowAck: time.Second}).Validate(); err != nil {
		t.Error(err)
	}
	for _, f := range Faults() {
		if got, err := ParseFault(string(f)); err != nil || got != f {
			t.Errorf("ParseFault(%q) = %q, %v", f, got, err)
		}
	}
	if f, err := ParseFault(""); err != nil || f != FaultNone {
		t.Errorf("ParseFault(\"\") = %q, %v", f, err)
	}
}
