package mllp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestServerSeveralFramesInOneWrite(t *testing.T) {
	ts := startServer(t, ServerConfig{}, ackHandler())
	c := dialRaw(t, ts.addr)
	c.write(frames("one", "two", "three"))
	for _, want := range []string{"ACK:one", "ACK:two", "ACK:three"} {
		if got := c.readAck(); got != want {
			t.Fatalf("ACK %q, want %q", got, want)
		}
	}
	if s := ts.srv.Stats(); s.Messages != 3 || s.Accepted != 1 {
		t.Fatalf("stats %+v, want 3 messages on 1 connection", s)
	}
}

func TestServerFrameSplitByteByByte(t *testing.T) {
	ts := startServer(t, ServerConfig{}, ackHandler())
	c := dialRaw(t, ts.addr)
	msg := hl7msg("SPLIT1")
	for _, b := range AppendFrame(nil, msg) {
		c.write([]byte{b})
		time.Sleep(200 * time.Microsecond)
	}
	if got, want := c.readAck(), "ACK:"+string(msg); got != want {
		t.Fatalf("ACK %q, want %q", got, want)
	}
}

func TestServerStrayBytesBetweenFrames(t *testing.T) {
	ts := startServer(t, ServerConfig{}, ackHandler())
	c := dialRaw(t, ts.addr)
	c.write([]byte("\r\n"))
	c.write(frames("A"))
	c.write([]byte("\n\n\r junk "))
	c.write([]byte("\x0bB\x1c")) // end block without its CR
	c.write([]byte("\x0d\n"))
	for _, want := range []string{"ACK:A", "ACK:B"} {
		if got := c.readAck(); got != want {
			t.Fatalf("ACK %q, want %q", got, want)
		}
	}
}

func TestServerTooLarge(t *testing.T) {
	var calls atomic.Int64
	h := HandlerFunc(func(_ context.Context, req *Request) ([]byte, error) {
		calls.Add(1)
		return []byte("ACK"), nil
	})
	ts := startServer(t, ServerConfig{MaxMessageSize: 50}, h)

	ok := dialRaw(t, ts.addr)
	ok.write(frames(strings.Repeat("a", 50)))
	if got := ok.readAck(); got != "ACK" {
		t.Fatalf("message at the limit: ACK %q", got)
	}

	c := dialRaw(t, ts.addr)
	c.write(frames(strings.Repeat("b", 51)))
	c.expectClosed(5 * time.Second)
	if calls.Load() != 1 {
		t.Fatalf("handler called %d times, want 1 (not for the oversized message)", calls.Load())
	}
	eventually(t, "Rejected counted", func() bool { return ts.srv.Stats().Rejected == 1 })

	// Also when the frame has not ended yet: the limit is enforced early.
	c2 := dialRaw(t, ts.addr)
	c2.write([]byte("\x0b" + strings.Repeat("c", 200)))
	c2.expectClosed(5 * time.Second)
	eventually(t, "second rejection counted", func() bool { return ts.srv.Stats().Rejected == 2 })
	if calls.Load() != 1 {
		t.Fatalf("handler called %d times, want 1", calls.Load())
	}
}

func TestServerIdleTimeout(t *testing.T) {
	ts := startServer(t, ServerConfig{IdleTimeout: 150 * time.Millisecond}, ackHandler())

	idle := dialRaw(t, ts.addr)
	start := time.Now()
	idle.expectClosed(5 * time.Second)
	if el := time.Since(start); el < 100*time.Millisecond {
		t.Fatalf("closed after %v, before the idle timeout", el)
	}

	// A peer that starts a frame and never ends it is closed too.
	partial := dialRaw(t, ts.addr)
	partial.write([]byte("\x0bMSH|^~\\&|"))
	partial.expectClosed(5 * time.Second)

	// The timeout runs per message: a connection with steady traffic stays.
	busy := dialRaw(t, ts.addr)
	for i := range 5 {
		busy.write(frames(fmt.Sprint(i)))
		if got := busy.readAck(); got != "ACK:"+fmt.Sprint(i) {
			t.Fatalf("ACK %q", got)
		}
		time.Sleep(60 * time.Millisecond)
	}
	eventually(t, "idle connections gone", func() bool { return ts.srv.Stats().Conns <= 1 })
}

func TestServerHandlerErrorClosesWithoutAck(t *testing.T) {
	h := HandlerFunc(func(_ context.Context, req *Request) ([]byte, error) {
		switch string(req.Message) {
		case "fail":
			return nil, errors.New("store unavailable")
		case "panic":
			var m map[string]int
			m["x"]++ // a nil map write panics
		}
		return []byte("ACK:" + string(req.Message)), nil
	})
	ts := startServer(t, ServerConfig{}, h)

	c := dialRaw(t, ts.addr)
	c.write(frames("ok", "fail", "never"))
	if got := c.readAck(); got != "ACK:ok" {
		t.Fatalf("ACK %q", got)
	}
	c.expectClosed(5 * time.Second)

	p := dialRaw(t, ts.addr)
	p.write(frames("panic"))
	p.expectClosed(5 * time.Second)

	eventually(t, "errors counted", func() bool { return ts.srv.Stats().Errors == 2 })
	if s := ts.srv.Stats(); s.Messages != 3 {
		t.Fatalf("messages %d, want 3 (the one after the failure is not handled)", s.Messages)
	}
	// The server still works.
	ok := dialRaw(t, ts.addr)
	ok.write(frames("again"))
	if got := ok.readAck(); got != "ACK:again" {
		t.Fatalf("ACK %q", got)
	}
}

func TestServerNilAckSendsNothing(t *testing.T) {
	h := HandlerFunc(func(_ context.Context, req *Request) ([]byte, error) {
		if string(req.Message) == "quiet" {
			return nil, nil
		}
		return []byte("ACK:" + string(req.Message)), nil
	})
	ts := startServer(t, ServerConfig{}, h)
	c := dialRaw(t, ts.addr)
	c.write(frames("quiet", "loud"))
	if got := c.readAck(); got != "ACK:loud" {
		t.Fatalf("first answer %q, want ACK:loud (nothing for the nil ACK)", got)
	}
}

func TestServerOrderingOnOneConnection(t *testing.T) {
	var (
		mu       sync.Mutex
		seen     []string
		inFlight atomic.Int64
		overlap  atomic.Bool
	)
	h := HandlerFunc(func(_ context.Context, req *Request) ([]byte, error) {
		if inFlight.Add(1) > 1 {
			overlap.Store(true)
		}
		defer inFlight.Add(-1)
		if rand.IntN(10) == 0 {
			time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
		}
		mu.Lock()
		seen = append(seen, string(req.Message))
		mu.Unlock()
		return []byte("ACK:" + string(req.Message)), nil
	})
	ts := startServer(t, ServerConfig{}, h)
	c := dialRaw(t, ts.addr)
	const n = 300
	var batch []byte
	for i := range n {
		batch = AppendFrame(batch, []byte(fmt.Sprintf("m%03d", i)))
	}
	c.write(batch)
	for i := range n {
		if got, want := c.readAck(), fmt.Sprintf("ACK:m%03d", i); got != want {
			t.Fatalf("ACK %d = %q, want %q", i, got, want)
		}
	}
	if overlap.Load() {
		t.Fatal("two messages of one connection were handled at the same time")
	}
	mu.Lock()
	defer mu.Unlock()
	for i, m := range seen {
		if want := fmt.Sprintf("m%03d", i); m != want {
			t.Fatalf("handled #%d = %q, want %q", i, m, want)
		}
	}
}

func TestServerMaxConns(t *testing.T) {
	ts := startServer(t, ServerConfig{MaxConns: 2}, ackHandler())
	a := dialRaw(t, ts.addr)
	b := dialRaw(t, ts.addr)
	for _, c := range []*rawConn{a, b} {
		c.write(frames("hi"))
		if got := c.readAck(); got != "ACK:hi" {
			t.Fatalf("ACK %q", got)
		}
	}
	third := dialRaw(t, ts.addr)
	third.write(frames("hi"))
	third.expectClosed(5 * time.Second)
	eventually(t, "refused connection counted", func() bool { return ts.srv.Stats().Rejected == 1 })
	if s := ts.srv.Stats(); s.Conns != 2 || s.Accepted != 3 {
		t.Fatalf("stats %+v, want 2 open of 3 accepted", s)
	}

	// Once a slot is free, a new connection is served.
	a.nc.Close()
	eventually(t, "slot freed", func() bool { return ts.srv.Stats().Conns == 1 })
	d := dialRaw(t, ts.addr)
	d.write(frames("back"))
	if got := d.readAck(); got != "ACK:back" {
		t.Fatalf("ACK %q", got)
	}
}

func TestServerConnInfo(t *testing.T) {
	infos := make(chan Request, 1)
	h := HandlerFunc(func(_ context.Context, req *Request) ([]byte, error) {
		infos <- Request{Conn: req.Conn, ReceivedAt: req.ReceivedAt}
		return []byte("ACK"), nil
	})
	ts := startServer(t, ServerConfig{}, h)
	c := dialRaw(t, ts.addr)
	before := time.Now()
	c.write(frames("x"))
	c.readAck()
	got := <-infos
	if got.Conn.RemoteAddr != c.nc.LocalAddr().String() || got.Conn.LocalAddr != ts.addr {
		t.Fatalf("ConnInfo %+v; client is %s, server %s", got.Conn, c.nc.LocalAddr(), ts.addr)
	}
	if got.Conn.TLS || got.Conn.PeerCertSubject != "" {
		t.Fatalf("plain connection reported as TLS: %+v", got.Conn)
	}
	if got.ReceivedAt.Before(before) || time.Since(got.ReceivedAt) > 5*time.Second {
		t.Fatalf("ReceivedAt %v not around %v", got.ReceivedAt, before)
	}
}

// Shutdown: idle connections close at once; a handler in progress finishes
// and its ACK is delivered; Serve returns nil; no goroutine is left.
func TestServerShutdown(t *testing.T) {
	base := runtime.NumGoroutine()
	entered := make(chan struct{})
	release := make(chan struct{})
	var handlerCtxErr atomic.Value
	h := HandlerFunc(func(ctx context.Context, req *Request) ([]byte, error) {
		if string(req.Message) == "slow" {
			close(entered)
			<-release
			handlerCtxErr.Store(fmt.Sprint(ctx.Err()))
		}
		return []byte("ACK:" + string(req.Message)), nil
	})
	ts := startServer(t, ServerConfig{}, h)

	idle := dialRaw(t, ts.addr)
	idle.write(frames("warm-up"))
	idle.readAck()

	busy := dialRaw(t, ts.addr)
	busy.write(frames("slow"))
	<-entered

	stopped := make(chan error, 1)
	go func() { stopped <- ts.stop() }()

	// The idle connection is closed right away, while the handler runs.
	idle.expectClosed(5 * time.Second)
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned (%v) while a handler was running", err)
	case <-time.After(50 * time.Millisecond):
	}
	// New connections are refused.
	if nc, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		var b [1]byte
		if n, err := nc.Read(b[:]); n > 0 || err == nil {
			t.Fatal("a connection made after shutdown was served")
		}
		nc.Close()
	}

	close(release)
	if got := busy.readAck(); got != "ACK:slow" {
		t.Fatalf("ACK of the in-flight message %q", got)
	}
	busy.expectClosed(5 * time.Second)
	if err := <-stopped; err != nil {
		t.Fatalf("Serve returned %v, want nil", err)
	}
	if got := handlerCtxErr.Load(); got != "<nil>" {
		t.Fatalf("handler context error during the grace period: %v", got)
	}
	if s := ts.srv.Stats(); s.Conns != 0 {
		t.Fatalf("%d connections still counted open", s.Conns)
	}
	idle.nc.Close()
	busy.nc.Close()
	goroutinesBackTo(t, base)
}

// A handler that does not finish within ShutdownTimeout sees its context
// cancelled.
func TestServerShutdownTimeoutCancelsHandler(t *testing.T) {
	entered := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, req *Request) ([]byte, error) {
		close(entered)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	ts := startServer(t, ServerConfig{ShutdownTimeout: 100 * time.Millisecond}, h)
	c := dialRaw(t, ts.addr)
	c.write(frames("stuck"))
	<-entered
	start := time.Now()
	if err := ts.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if el := time.Since(start); el < 80*time.Millisecond {
		t.Fatalf("Serve returned after %v, before the shutdown timeout", el)
	}
	c.expectClosed(5 * time.Second)
}

// Serve without connections returns promptly and leaves nothing behind.
func TestServeNoLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	for range 3 {
		ts := startServer(t, ServerConfig{}, ackHandler())
		c := dialRaw(t, ts.addr)
		c.write(frames("x"))
		c.readAck()
		if err := ts.stop(); err != nil {
			t.Fatal(err)
		}
		c.nc.Close()
	}
	goroutinesBackTo(t, base)
}

type failingListener struct {
	net.Listener
	err error
}

func (l failingListener) Accept() (net.Conn, error) { return nil, l.err }

func TestServeAcceptError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("listener broken")
	srv := NewServer(ServerConfig{}, ackHandler())
	err = srv.Serve(context.Background(), failingListener{Listener: ln, err: boom})
	if !errors.Is(err, boom) {
		t.Fatalf("Serve = %v, want the accept error", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("listener not closed by Serve: %v", err)
	}
}
