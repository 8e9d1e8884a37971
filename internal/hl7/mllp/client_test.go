package mllp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// recorder is a handler that keeps a copy of every message it gets and
// answers through answer (nil: "ACK:" + message).
type recorder struct {
	mu     sync.Mutex
	msgs   [][]byte
	answer func(n int, msg []byte) ([]byte, error)
}

func (r *recorder) HandleMLLP(_ context.Context, req *Request) ([]byte, error) {
	r.mu.Lock()
	r.msgs = append(r.msgs, bytes.Clone(req.Message))
	n := len(r.msgs)
	r.mu.Unlock()
	if r.answer != nil {
		return r.answer(n, req.Message)
	}
	return append([]byte("ACK:"), req.Message...), nil
}

func (r *recorder) got() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.msgs...)
}

func TestClientRoundTripKeepsConnection(t *testing.T) {
	ts := startServer(t, ServerConfig{}, ackHandler())
	c := NewClient(ClientConfig{Addr: ts.addr})
	defer c.Close()
	for i := range 10 {
		msg := hl7msg(fmt.Sprint("CTRL", i))
		ack, err := c.Send(t.Context(), msg)
		if err != nil {
			t.Fatal(err)
		}
		if string(ack) != "ACK:"+string(msg) {
			t.Fatalf("ACK %q", ack)
		}
	}
	if s := ts.srv.Stats(); s.Accepted != 1 || s.Messages != 10 {
		t.Fatalf("stats %+v, want 10 messages over 1 connection", s)
	}
}

// The receiver drops the first attempt (closes without ACK); the client
// resends, on a new connection, exactly the same bytes.
func TestClientResendsSameBytes(t *testing.T) {
	rec := &recorder{answer: func(n int, msg []byte) ([]byte, error) {
		if n == 1 {
			return nil, errors.New("not stored")
		}
		return []byte("MSA|AA|ABC123"), nil
	}}
	ts := startServer(t, ServerConfig{}, rec)
	c := NewClient(ClientConfig{Addr: ts.addr, Backoff: 10 * time.Millisecond})
	defer c.Close()
	msg := []byte("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|ABC123|P|2.5\rPID|1\r")
	ack, err := c.Send(t.Context(), msg)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if string(ack) != "MSA|AA|ABC123" {
		t.Fatalf("ACK %q", ack)
	}
	got := rec.got()
	if len(got) != 2 {
		t.Fatalf("server got %d copies, want 2", len(got))
	}
	if !bytes.Equal(got[0], msg) || !bytes.Equal(got[1], msg) {
		t.Fatalf("attempts differ from the message:\n%q\n%q", got[0], got[1])
	}
	if s := ts.srv.Stats(); s.Accepted != 2 {
		t.Fatalf("%d connections, want a new one for the second attempt", s.Accepted)
	}
}

func TestClientErrNoAckAfterMaxAttempts(t *testing.T) {
	rec := &recorder{answer: func(int, []byte) ([]byte, error) { return nil, nil }} // never answers
	ts := startServer(t, ServerConfig{}, rec)
	c := NewClient(ClientConfig{Addr: ts.addr, AckTimeout: 100 * time.Millisecond, MaxAttempts: 3, Backoff: 10 * time.Millisecond})
	defer c.Close()
	msg := hl7msg("NOACK1")
	_, err := c.Send(t.Context(), msg)
	if !errors.Is(err, ErrNoAck) {
		t.Fatalf("err = %v, want ErrNoAck", err)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v, want the timeout as its cause", err)
	}
	if !strings.Contains(err.Error(), "3 attempts") {
		t.Fatalf("err %q does not give the attempt count", err)
	}
	eventually(t, "three copies received", func() bool { return len(rec.got()) == 3 })
	for i, m := range rec.got() {
		if !bytes.Equal(m, msg) {
			t.Fatalf("attempt %d carried different bytes", i+1)
		}
	}
	if s := ts.srv.Stats(); s.Accepted != 3 {
		t.Fatalf("%d connections, want one per attempt", s.Accepted)
	}
}

func TestClientAckTimeout(t *testing.T) {
	ts := startServer(t, ServerConfig{}, HandlerFunc(func(context.Context, *Request) ([]byte, error) { return nil, nil }))
	c := NewClient(ClientConfig{Addr: ts.addr, AckTimeout: 200 * time.Millisecond, MaxAttempts: 1})
	defer c.Close()
	start := time.Now()
	_, err := c.Send(t.Context(), hl7msg("SLOW1"))
	el := time.Since(start)
	if !errors.Is(err, ErrNoAck) {
		t.Fatalf("err = %v, want ErrNoAck", err)
	}
	if el < 180*time.Millisecond || el > 3*time.Second {
		t.Fatalf("Send gave up after %v, want about 200ms", el)
	}
}

func TestClientDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c := NewClient(ClientConfig{Addr: addr, MaxAttempts: 2, Backoff: 5 * time.Millisecond, DialTimeout: time.Second})
	defer c.Close()
	_, err = c.Send(t.Context(), hl7msg("X"))
	if !errors.Is(err, ErrNoAck) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("err = %v, want ErrNoAck caused by a refused connection", err)
	}
	if !strings.Contains(err.Error(), "2 attempts") {
		t.Fatalf("err %q does not give the attempt count", err)
	}
}

func TestClientContextCancel(t *testing.T) {
	ts := startServer(t, ServerConfig{}, HandlerFunc(func(context.Context, *Request) ([]byte, error) { return nil, nil }))
	c := NewClient(ClientConfig{Addr: ts.addr, AckTimeout: 10 * time.Second})
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Send(ctx, hl7msg("CANCEL1"))
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNoAck) {
		t.Fatalf("err = %v, want the context's error", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("Send returned after %v, not when the context ended", el)
	}
}

func TestClientConcurrentSend(t *testing.T) {
	var inFlight, maxInFlight atomic.Int64
	h := HandlerFunc(func(_ context.Context, req *Request) ([]byte, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		return append([]byte("ACK:"), req.Message...), nil
	})
	ts := startServer(t, ServerConfig{}, h)
	c := NewClient(ClientConfig{Addr: ts.addr})
	defer c.Close()
	const workers, each = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				msg := hl7msg(fmt.Sprintf("W%02dM%02d", w, i))
				ack, err := c.Send(t.Context(), msg)
				if err != nil {
					errs <- err
					return
				}
				if string(ack) != "ACK:"+string(msg) {
					errs <- fmt.Errorf("worker %d message %d got the ACK %q", w, i, ack)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if s := ts.srv.Stats(); s.Messages != workers*each || s.Accepted != 1 {
		t.Fatalf("stats %+v, want %d messages over one connection", s, workers*each)
	}
	if maxInFlight.Load() != 1 {
		t.Fatalf("%d messages handled at once on the client's connection", maxInFlight.Load())
	}
}

// The server closes the kept-open connection while it is idle; the next
// Send reconnects without using up an attempt.
func TestClientReconnectsAfterIdleClose(t *testing.T) {
	ts := startServer(t, ServerConfig{IdleTimeout: 100 * time.Millisecond}, ackHandler())
	c := NewClient(ClientConfig{Addr: ts.addr, MaxAttempts: 1})
	defer c.Close()
	if _, err := c.Send(t.Context(), hl7msg("ONE")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "server closed the idle connection", func() bool { return ts.srv.Stats().Conns == 0 })
	time.Sleep(20 * time.Millisecond) // let the FIN reach the client
	ack, err := c.Send(t.Context(), hl7msg("TWO"))
	if err != nil {
		t.Fatalf("Send after idle close: %v", err)
	}
	if !contains(ack, "TWO") {
		t.Fatalf("ACK %q", ack)
	}
}

func TestClientRefusesFramingBytes(t *testing.T) {
	c := NewClient(ClientConfig{Addr: "127.0.0.1:1"})
	defer c.Close()
	for _, m := range []string{"MSH|\x1c", "\x0bMSH|"} {
		if _, err := c.Send(t.Context(), []byte(m)); err == nil {
			t.Fatalf("Send(%q) succeeded", m)
		}
	}
}

func TestClientClose(t *testing.T) {
	ts := startServer(t, ServerConfig{}, ackHandler())
	c := NewClient(ClientConfig{Addr: ts.addr})
	if _, err := c.Send(t.Context(), hl7msg("A")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(t.Context(), hl7msg("B")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Send after Close: %v, want net.ErrClosed", err)
	}
	eventually(t, "server saw the close", func() bool { return ts.srv.Stats().Conns == 0 })
}

// An ACK larger than the client's limit fails the attempt.
func TestClientAckTooLarge(t *testing.T) {
	ts := startServer(t, ServerConfig{}, HandlerFunc(func(context.Context, *Request) ([]byte, error) {
		return bytes.Repeat([]byte("A"), 5000), nil
	}))
	c := NewClient(ClientConfig{Addr: ts.addr, MaxMessageSize: 1000, MaxAttempts: 1})
	defer c.Close()
	if _, err := c.Send(t.Context(), hl7msg("BIG")); !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrNoAck) {
		t.Fatalf("err = %v, want ErrNoAck caused by ErrTooLarge", err)
	}
}

func TestClientBackoff(t *testing.T) {
	c := NewClient(ClientConfig{Backoff: 100 * time.Millisecond})
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 10: 5 * time.Second} {
		for range 20 {
			if d := c.backoff(attempt); d < want/2 || d > want {
				t.Fatalf("backoff after attempt %d = %v, want within [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
}
