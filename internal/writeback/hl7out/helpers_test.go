package hl7out

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/ack"
	"github.com/mediflow/mediflow/internal/hl7/mllp"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
)

const testPractice = "clinic"

// openStore opens a fresh SQLite store in the test's directory.
func openStore(t testing.TB) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "mediflow.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// mdm builds an outbound message with the given control id.
func mdm(control, family string) []byte {
	return []byte("MSH|^~\\&|MEDIFLOW|CLINIC|EHR|HOSP|20240501120000||MDM^T02^MDM_T02|" + control + "|P|2.5.1\r" +
		"EVN|T02|20240501120000\r" +
		"PID|1||12345^^^HOSP^MR||" + family + "^Pat\r" +
		"TXA|1|CN|TX|20240501120000|||||||||DOC-" + control + "||||||AU\r" +
		"OBX|1|TX|NOTE^Note||Visit note\r")
}

// peer is a loopback MLLP receiver whose answers a test chooses.
type peer struct {
	addr string

	mu     sync.Mutex
	got    [][]byte // every complete message received, in order (copies)
	answer func(m *hl7.Message, n int) []byte
	seen   map[string]int // control id → times received
}

// aa answers every message with AA.
func aa(m *hl7.Message, _ int) []byte { return ack.Build(m, ack.Options{Code: ack.AA}) }

// startPeer serves on addr ("" picks a free loopback port) until the test
// ends or stop is called.
func startPeer(t testing.TB, addr string, answer func(m *hl7.Message, n int) []byte) (*peer, func()) {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{addr: ln.Addr().String(), answer: answer, seen: map[string]int{}}
	h := mllp.HandlerFunc(func(_ context.Context, req *mllp.Request) ([]byte, error) {
		m, err := hl7.Parse(req.Message, hl7.ParseOptions{})
		if err != nil {
			return ack.BuildRaw(req.Message, ack.Options{Code: ack.AR}), nil
		}
		p.mu.Lock()
		p.got = append(p.got, bytes.Clone(req.Message))
		id := m.Header().ControlID
		p.seen[id]++
		n := p.seen[id]
		f := p.answer
		p.mu.Unlock()
		return f(m, n), nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mllp.NewServer(mllp.ServerConfig{}, h).Serve(ctx, ln); err != nil {
			t.Errorf("peer: %v", err)
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return p, stop
}

func (p *peer) received() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.got...)
}

func (p *peer) setAnswer(f func(m *hl7.Message, n int) []byte) {
	p.mu.Lock()
	p.answer = f
	p.mu.Unlock()
}

// freeAddr returns a loopback address nothing listens on (for a while).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// fastDest is a destination with short timeouts for tests.
func fastDest(name, addr string) Destination {
	return Destination{Practice: testPractice, Name: name, Addr: addr, AckTimeout: 2 * time.Second,
		Backoff: 5 * time.Millisecond, RetryDelay: 20 * time.Millisecond, MaxRetryDelay: 50 * time.Millisecond}
}

// events records what a Sender reports.
type events struct {
	mu   sync.Mutex
	list []Event
}

func (e *events) add(ev Event) {
	e.mu.Lock()
	e.list = append(e.list, ev)
	e.mu.Unlock()
}

func (e *events) all() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Event(nil), e.list...)
}

// newSender builds a Sender whose events are recorded; the poll interval
// is long, so delivery depends on Enqueue's wake-up.
func newSender(t *testing.T, st store.MessageStore, dests ...Destination) (*Sender, *events) {
	t.Helper()
	ev := &events{}
	s, err := New(Options{Store: st, Destinations: dests, PollInterval: time.Hour, OnEvent: ev.add})
	if err != nil {
		t.Fatal(err)
	}
	return s, ev
}

// run runs s until the returned stop is called (or the test ends).
func run(t *testing.T, s *Sender) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not return within 10s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func enqueue(t *testing.T, s *Sender, dest string, msg []byte) int64 {
	t.Helper()
	id, err := s.Enqueue(t.Context(), testPractice, dest, msg)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return id
}

func get(t *testing.T, st store.MessageStore, id int64) store.HL7Message {
	t.Helper()
	m, err := st.GetHL7Message(t.Context(), testPractice, id)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitStatus waits until every message has one of the final statuses.
func waitFinal(t *testing.T, st store.MessageStore, d time.Duration, ids ...int64) {
	t.Helper()
	waitFor(t, "the messages' outcomes", d, func() bool {
		for _, id := range ids {
			m, err := st.GetHL7Message(t.Context(), testPractice, id)
			if err != nil {
				t.Fatal(err)
			}
			switch m.Status {
			case store.MsgAcked, store.MsgRejected, store.MsgTimedOut:
			default:
				return false
			}
		}
		return true
	})
}

// waitFinalEvents is waitFinal, then waits for each message's final event:
// the sender reports an outcome after storing it.
func waitFinalEvents(t *testing.T, st store.MessageStore, ev *events, d time.Duration, ids ...int64) {
	t.Helper()
	waitFinal(t, st, d, ids...)
	waitFor(t, "the messages' final events", d, func() bool {
		seen := map[int64]bool{}
		for _, e := range ev.all() {
			if e.Final() {
				seen[e.ID] = true
			}
		}
		for _, id := range ids {
			if !seen[id] {
				return false
			}
		}
		return true
	})
}
