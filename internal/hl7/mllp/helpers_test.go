package mllp

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"testing"
	"time"
)

// testServer is a Server on a loopback port, stopped at the end of the test.
type testServer struct {
	srv  *Server
	addr string
	stop func() error // cancels Serve and returns its result
}

func startServer(t testing.TB, cfg ServerConfig, h Handler) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(cfg, h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var result error
	stopped := false
	stop := func() error {
		if stopped {
			return result
		}
		stopped = true
		cancel()
		select {
		case result = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return within 10s of its context ending")
		}
		return result
	}
	t.Cleanup(func() { stop() })
	return &testServer{srv: srv, addr: ln.Addr().String(), stop: stop}
}

// ackHandler answers every message with "ACK:" + message.
func ackHandler() Handler {
	return HandlerFunc(func(_ context.Context, req *Request) ([]byte, error) {
		return append([]byte("ACK:"), req.Message...), nil
	})
}

// rawConn is a plain TCP connection to a test server, with a frame reader.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	rd *Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, rd: NewReader(nc, 0)}
}

func (c *rawConn) write(b []byte) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// readAck returns the next frame's content, failing the test after 5s.
func (c *rawConn) readAck() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := c.rd.ReadMessage()
	if err != nil {
		c.t.Fatalf("reading ACK: %v", err)
	}
	return string(m)
}

// expectClosed asserts that the server closes the connection within d
// without sending anything more.
func (c *rawConn) expectClosed(d time.Duration) {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(d))
	var buf [64]byte
	n, err := c.nc.Read(buf[:])
	if n > 0 {
		c.t.Fatalf("got %q from the server, want the connection closed without an answer", buf[:n])
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatalf("connection still open after %v", d)
	}
	if err == nil {
		c.t.Fatal("read returned nothing and no error")
	}
}

// eventually polls cond until it holds or 5s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// goroutinesBackTo waits until the goroutine count drops to n or less.
func goroutinesBackTo(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), n, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func hl7msg(id string) []byte {
	return []byte("MSH|^~\\&|LAB|HOSP|MF|CLINIC|20240102030405||ADT^A01^ADT_A01|" + id + "|P|2.5.1\rPID|1||12345^^^HOSP^MR||Doe^Jane\r")
}

func contains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }
