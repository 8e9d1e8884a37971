package mllp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"time"
)

// ErrNoAck is returned (wrapped, with the attempt count and the last cause)
// by Client.Send when no attempt got an answer.
var ErrNoAck = errors.New("mllp: no acknowledgment")

// errFramingBytes refuses a message that would break its own frame.
var errFramingBytes = errors.New("mllp: message contains an MLLP block character (0x0B or 0x1C)")

const (
	maxBackoff       = 5 * time.Second
	clientBufferSize = 4 << 10
)

// ClientConfig configures a Client. Zero values select the defaults.
type ClientConfig struct {
	// Addr is the host:port of the receiver.
	Addr string
	// TLS, when set, makes the client speak TLS (a client certificate in it
	// gives mutual TLS). An empty ServerName is taken from Addr.
	TLS *tls.Config
	// DialTimeout bounds connecting, TLS handshake included (0: 5s).
	DialTimeout time.Duration
	// AckTimeout bounds writing a message and reading its answer (0: 30s).
	AckTimeout time.Duration
	// MaxAttempts is the number of times Send tries one message (0: 3).
	MaxAttempts int
	// Backoff is the pause before the second attempt (0: 200ms); it
	// doubles for each further attempt up to 5s, and is jittered.
	Backoff time.Duration
	// MaxMessageSize is the largest answer accepted (0: 1 MiB).
	MaxMessageSize int
}

// Client sends messages over one kept-open MLLP connection and returns the
// answers. It dials when first needed and again after any failure. Send is
// safe for concurrent use; sends are serialized on the connection.
type Client struct {
	cfg ClientConfig
	sem chan struct{} // held by the Send in progress
	out []byte        // the frame being sent; guarded by sem

	mu     sync.Mutex // guards the fields below
	nc     net.Conn
	rd     *Reader
	closed bool
}

// NewClient returns a Client for cfg. It does not connect.
func NewClient(cfg ClientConfig) *Client {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 30 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 200 * time.Millisecond
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	return &Client{cfg: cfg, sem: make(chan struct{}, 1)}
}

// Send frames msg, writes it and returns the first framed answer (the ACK,
// without framing; the caller owns it). Send does not interpret the answer.
//
// When an attempt fails (no answer within AckTimeout, connection refused,
// closed or reset) the connection is closed and, after a backoff, the same
// bytes are sent again on a new connection, up to MaxAttempts times; the
// receiver can recognize the repeats by MSH-10. When every attempt fails the
// error wraps ErrNoAck and the last cause. One extra try, not counted and
// without backoff, is made when a kept-open connection turns out to have
// been closed by the receiver while it was idle. If ctx ends, Send returns
// at once with ctx's error.
func (c *Client) Send(ctx context.Context, msg []byte) ([]byte, error) {
	if bytes.IndexByte(msg, startBlock) >= 0 || bytes.IndexByte(msg, endBlock) >= 0 {
		return nil, errFramingBytes
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("mllp: send to %s: %w", c.cfg.Addr, context.Cause(ctx))
	}
	defer func() { <-c.sem }()
	c.out = AppendFrame(c.out[:0], msg)

	var last error
	staleRetry := true
	for attempt := 1; ; {
		ack, reused, err := c.attempt(ctx)
		if err == nil {
			return ack, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("mllp: send to %s: %w (attempt %d: %v)", c.cfg.Addr, context.Cause(ctx), attempt, err)
		}
		if c.isClosed() {
			return nil, fmt.Errorf("mllp: send to %s: %w", c.cfg.Addr, net.ErrClosed)
		}
		last = err
		if reused && staleRetry && closedByPeer(err) {
			staleRetry = false
			continue
		}
		if attempt >= c.cfg.MaxAttempts {
			return nil, fmt.Errorf("%w from %s after %d attempts: %w", ErrNoAck, c.cfg.Addr, attempt, last)
		}
		if err := sleep(ctx, c.backoff(attempt)); err != nil {
			return nil, fmt.Errorf("mllp: send to %s: %w (attempt %d: %v)", c.cfg.Addr, err, attempt, last)
		}
		attempt++
	}
}

// attempt sends c.out once and waits for the answer. reused tells whether
// the connection was already open.
func (c *Client) attempt(ctx context.Context) (ack []byte, reused bool, err error) {
	nc, rd, reused, err := c.conn(ctx)
	if err != nil {
		return nil, false, err
	}
	nc.SetDeadline(time.Now().Add(c.cfg.AckTimeout))
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { nc.SetDeadline(aLongTimeAgo) })
		defer stop()
	}
	if _, err := nc.Write(c.out); err != nil {
		c.drop(nc)
		return nil, reused, fmt.Errorf("write: %w", err)
	}
	a, err := rd.ReadMessage()
	if err != nil {
		c.drop(nc)
		return nil, reused, fmt.Errorf("read answer: %w", err)
	}
	return bytes.Clone(a), reused, nil
}

// conn returns the open connection or dials a new one.
func (c *Client) conn(ctx context.Context) (net.Conn, *Reader, bool, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, nil, false, net.ErrClosed
	}
	if c.nc != nil {
		if !c.rd.pendingFrame() {
			nc, rd := c.nc, c.rd
			c.mu.Unlock()
			return nc, rd, true, nil
		}
		// An answer nobody asked for: the stream cannot be trusted.
		c.nc.Close()
		c.nc, c.rd = nil, nil
	}
	c.mu.Unlock()

	d := &net.Dialer{Timeout: c.cfg.DialTimeout}
	var (
		nc  net.Conn
		err error
	)
	if c.cfg.TLS != nil {
		nc, err = (&tls.Dialer{NetDialer: d, Config: c.cfg.TLS}).DialContext(ctx, "tcp", c.cfg.Addr)
	} else {
		nc, err = d.DialContext(ctx, "tcp", c.cfg.Addr)
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("dial: %w", err)
	}
	rd := newReaderSize(nc, c.cfg.MaxMessageSize, clientBufferSize)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		nc.Close()
		return nil, nil, false, net.ErrClosed
	}
	c.nc, c.rd = nc, rd
	return nc, rd, false, nil
}

// drop closes nc and forgets it if it is still the client's connection.
func (c *Client) drop(nc net.Conn) {
	c.mu.Lock()
	if c.nc == nc {
		c.nc, c.rd = nil, nil
	}
	c.mu.Unlock()
	nc.Close()
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// backoff is the jittered pause after the given failed attempt.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.cfg.Backoff
	for i := 1; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, max(maxBackoff, c.cfg.Backoff))
	return d/2 + rand.N(d/2+1)
}

// Close closes the connection; a Send in progress fails and later ones
// return an error wrapping net.ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.nc == nil {
		return nil
	}
	err := c.nc.Close()
	c.nc, c.rd = nil, nil
	return err
}

// closedByPeer reports whether err is what a connection the peer closed
// while idle gives on its next use.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
