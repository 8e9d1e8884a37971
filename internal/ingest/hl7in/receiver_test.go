package hl7in

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/hl7/ack"
	"github.com/mediflow/mediflow/internal/hl7/mllp"
	"github.com/mediflow/mediflow/internal/store"
)

// gatedStore records every PutHL7Messages batch size and can hold commits
// until released, or fail them.
type gatedStore struct {
	Store
	mu      sync.Mutex
	batches []int
	gate    chan struct{} // when not nil, each put waits for a receive
	entered chan struct{} // a put started (buffered)
	fail    func(msgs []store.HL7Message) error
}

func (s *gatedStore) PutHL7Messages(ctx context.Context, practice string, msgs []store.HL7Message, w time.Duration) ([]store.HL7PutResult, error) {
	s.mu.Lock()
	s.batches = append(s.batches, len(msgs))
	gate, fail, entered := s.gate, s.fail, s.entered
	s.mu.Unlock()
	if entered != nil {
		entered <- struct{}{}
	}
	if gate != nil {
		<-gate
	}
	if fail != nil {
		if err := fail(msgs); err != nil {
			return nil, err
		}
	}
	return s.Store.PutHL7Messages(ctx, practice, msgs, w)
}

func (s *gatedStore) sizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.batches...)
}

// testReceiver is a listener's receiver with a running committer.
func testReceiver(t *testing.T, st store.MessageStore, l Listener) *receiver {
	t.Helper()
	if l.Practice == "" {
		l.Practice = testPractice
	}
	if l.Name == "" {
		l.Name = "feed"
	}
	c := newCommitter(st, l.Practice, l.DedupWindow, 64, time.Millisecond, nil)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.run(t.Context(), stop)
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
	return &receiver{cfg: l, c: c, log: discardLogger(), now: time.Now}
}

func handle(t *testing.T, r *receiver, msg string) ([]byte, error) {
	t.Helper()
	return r.HandleMLLP(t.Context(), &mllp.Request{Conn: mllp.ConnInfo{RemoteAddr: "127.0.0.1:40000"}, Message: []byte(msg), ReceivedAt: time.Now()})
}

func parseAck(t *testing.T, a []byte) ack.Result {
	t.Helper()
	if len(a) == 0 {
		t.Fatal("no ACK")
	}
	res, err := ack.Parse(a)
	if err != nil {
		t.Fatalf("ACK does not parse: %v\n%q", err, a)
	}
	return res
}

// Handlers of concurrent connections are committed together, and none of
// them gets its ACK before its batch's commit returned.
func TestGroupCommitAcksOnlyAfterCommit(t *testing.T) {
	st := openStore(t)
	gs := &gatedStore{Store: st, gate: make(chan struct{}), entered: make(chan struct{}, 100)}
	r := testReceiver(t, gs, Listener{DedupWindow: time.Hour})

	var acked atomic.Int64
	var wg sync.WaitGroup
	send := func(i int) {
		defer wg.Done()
		a, err := handle(t, r, adt("A08", "F", ctrl(i), "M1", "Doe"))
		if err != nil {
			t.Errorf("message %d: %v", i, err)
			return
		}
		if res := parseAck(t, a); res.Code != "AA" || res.ControlID != ctrl(i) {
			t.Errorf("message %d: ACK %+v", i, res)
		}
		acked.Add(1)
	}
	wg.Add(1)
	go send(0)
	<-gs.entered // the first commit is in progress (and held)
	const n = 40
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go send(i)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(r.c.reqs) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d messages queued", len(r.c.reqs))
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if a := acked.Load(); a != 0 {
		t.Fatalf("%d ACKs were sent before any commit returned", a)
	}
	close(gs.gate)
	wg.Wait()
	if sizes := gs.sizes(); len(sizes) != 2 || sizes[0] != 1 || sizes[1] != n {
		t.Errorf("commit batch sizes %v, want [1 %d]", sizes, n)
	}
	msgs, err := st.ListHL7Messages(t.Context(), testPractice, store.HL7Filter{Limit: 1000})
	if err != nil || len(msgs) != n+1 {
		t.Fatalf("%d messages stored (%v), want %d", len(msgs), err, n+1)
	}
	for _, m := range msgs {
		if m.Status != store.MsgReceived || m.AckCode != "AA" || m.Channel != "feed" || m.SendingFacility != "F" ||
			m.MessageCode != "ADT" || m.TriggerEvent != "A08" || m.Peer != "127.0.0.1:40000" {
			t.Errorf("stored %+v", m)
		}
	}
}

// A store failure sends no ACK; one message the store refuses does not
// take the other messages of its batch down.
func TestStoreFailureSendsNoAck(t *testing.T) {
	st := openStore(t)
	gs := &gatedStore{Store: st, fail: func(msgs []store.HL7Message) error {
		for _, m := range msgs {
			if m.ControlID == "POISON" {
				return errors.New("constraint failed")
			}
		}
		return nil
	}}
	r := testReceiver(t, gs, Listener{})
	a, err := handle(t, r, adt("A01", "F", "POISON", "M1", "Doe"))
	if err == nil || a != nil {
		t.Fatalf("store failure: ack %q err %v; want no ACK and an error", a, err)
	}

	// A batch with the poison message and good ones.
	gs.mu.Lock()
	gs.gate = make(chan struct{})
	gs.entered = make(chan struct{}, 100)
	gs.mu.Unlock()
	var wg sync.WaitGroup
	results := make([]error, 6)
	wg.Add(1)
	go func() { defer wg.Done(); _, results[0] = handle(t, r, adt("A01", "F", "FIRST", "M1", "Doe")) }()
	<-gs.entered
	for i := 1; i < 6; i++ {
		c := ctrl(i)
		if i == 3 {
			c = "POISON"
		}
		wg.Add(1)
		go func() { defer wg.Done(); _, results[i] = handle(t, r, adt("A01", "F", c, "M1", "Doe")) }()
	}
	for len(r.c.reqs) < 5 {
		time.Sleep(time.Millisecond)
	}
	gs.mu.Lock()
	close(gs.gate) // every put from now on goes through
	gs.mu.Unlock()
	wg.Wait()
	for i, err := range results {
		if (i == 3) != (err != nil) {
			t.Errorf("message %d: err %v", i, err)
		}
	}
	if c, _ := st.CountHL7Messages(t.Context(), testPractice, ""); c[store.MsgReceived] != 5 {
		t.Errorf("stored %v, want 5 received", c)
	}
	// The batch of five was tried as a whole, then message by message.
	if sizes := gs.sizes(); len(sizes) != 8 || sizes[1] != 1 || sizes[2] != 5 {
		t.Errorf("commit batch sizes %v, want [1 1 5 1 1 1 1 1]", sizes)
	}
}

// A resend of a stored message is ACKed again with the original's code,
// not stored again and not processed again.
func TestDuplicateAckedAgainNotReprocessed(t *testing.T) {
	st := openStore(t)
	conv := newFakeConverter()
	p := newTestPipeline(t, st, conv, nil)
	runPipeline(t, p)
	r := testReceiver(t, st, Listener{DedupWindow: 24 * time.Hour})
	r.c.onCommit = func(int64) { p.procs[testPractice].wake() }
	msg := adt("A01", "F", "D1", "M1", "Doe")
	for i := range 3 {
		a, err := handle(t, r, msg)
		if err != nil {
			t.Fatal(err)
		}
		res := parseAck(t, a)
		if res.Code != "AA" || res.ControlID != "D1" {
			t.Fatalf("send %d: ACK %+v", i, res)
		}
		if i > 0 && !strings.Contains(res.Text, "duplicate") {
			t.Errorf("send %d: ACK text %q should say duplicate", i, res.Text)
		}
	}
	msgs, _ := st.ListHL7Messages(t.Context(), testPractice, store.HL7Filter{})
	if len(msgs) != 1 || msgs[0].Duplicates != 2 {
		t.Fatalf("stored %d messages (duplicates %v), want 1 with 2 duplicates", len(msgs), msgs)
	}
	waitStatus(t, st, msgs[0].ID, store.MsgProcessed)
	time.Sleep(50 * time.Millisecond)
	if got := conv.orderOf("F"); len(got) != 1 {
		t.Errorf("converted %d times, want once", len(got))
	}
	// Another sender with the same control id is not a duplicate.
	if _, err := handle(t, r, adt("A01", "OTHER", "D1", "M2", "Roe")); err != nil {
		t.Fatal(err)
	}
	if msgs, _ := st.ListHL7Messages(t.Context(), testPractice, store.HL7Filter{}); len(msgs) != 2 {
		t.Errorf("%d messages, want 2", len(msgs))
	}
}

// A message that cannot be parsed is stored in quarantine and answered AE
// with an ERR segment; an empty frame is refused with AR and not stored.
func TestUnparseableQuarantinedWithAE(t *testing.T) {
	st := openStore(t)
	r := testReceiver(t, st, Listener{})
	a, err := handle(t, r, "this is not an HL7 message\r")
	if err != nil {
		t.Fatal(err)
	}
	res := parseAck(t, a)
	if res.Code != "AE" || len(res.Errors) != 1 || res.Errors[0].Code != 100 || !strings.Contains(res.Text, "quarantine") {
		t.Errorf("ACK %+v", res)
	}
	msgs, _ := st.ListHL7Messages(t.Context(), testPractice, store.HL7Filter{WithBody: true})
	if len(msgs) != 1 || msgs[0].Status != store.MsgQuarantined || msgs[0].AckCode != "AE" ||
		!strings.HasPrefix(msgs[0].Error, "parse: ") || string(msgs[0].Body) != "this is not an HL7 message\r" {
		t.Fatalf("stored %+v", msgs)
	}
	if !strings.Contains(res.Text, fmt.Sprintf("message %d", msgs[0].ID)) {
		t.Errorf("ACK text %q should name the stored message", res.Text)
	}
	if strings.Contains(msgs[0].Error, "this is not") {
		t.Errorf("error %q quotes the message", msgs[0].Error)
	}

	a, err = handle(t, r, "\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if res := parseAck(t, a); res.Code != "AR" {
		t.Errorf("empty frame: ACK %+v", res)
	}
	if msgs, _ := st.ListHL7Messages(t.Context(), testPractice, store.HL7Filter{}); len(msgs) != 1 {
		t.Errorf("the empty frame was stored")
	}
}

// Enhanced mode when MSH-15/16 are valued (auto), or forced either way.
func TestAckModes(t *testing.T) {
	st := openStore(t)
	plain := adt("A01", "F", "E1", "M1", "Doe")
	enhanced := strings.Replace(adt("A01", "F", "E2", "M1", "Doe"), "|P|2.5.1\r", "|P|2.5.1|||AL|NE\r", 1)
	for _, tc := range []struct {
		mode, msg, want string
	}{
		{AckAuto, plain, "AA"}, {AckAuto, enhanced, "CA"},
		{AckOriginal, enhanced, "AA"}, {AckEnhanced, plain, "CA"},
	} {
		r := testReceiver(t, st, Listener{Name: "m-" + tc.mode, AckMode: tc.mode})
		a, err := handle(t, r, tc.msg)
		if err != nil {
			t.Fatal(err)
		}
		if res := parseAck(t, a); string(res.Code) != tc.want {
			t.Errorf("mode %s: ACK code %s, want %s", tc.mode, res.Code, tc.want)
		}
	}
}
