package mllp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ConnInfo describes the connection a message arrived on.
type ConnInfo struct {
	RemoteAddr string
	LocalAddr  string
	// TLS is true when the connection is TLS.
	TLS bool
	// PeerCertSubject is the subject of the client certificate, filled only
	// when the certificate was verified (mutual TLS).
	PeerCertSubject string
}

// Request is one received message.
type Request struct {
	Conn ConnInfo
	// Message is the message without its framing. It belongs to the
	// handler only for the duration of the call: copy it to keep it.
	Message    []byte
	ReceivedAt time.Time
}

// Handler answers the messages of a Server.
//
// HandleMLLP returns the acknowledgment to send back, without framing. A
// nil (or empty) ACK with a nil error sends nothing. An error sends nothing
// and closes the connection: a sender that gets no ACK sends the message
// again. The Request (and its Message) must not be retained after the call.
// Calls for one connection are made one at a time, in the order the
// messages arrived; calls for different connections run concurrently.
type Handler interface {
	HandleMLLP(ctx context.Context, req *Request) ([]byte, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *Request) ([]byte, error)

// HandleMLLP calls f.
func (f HandlerFunc) HandleMLLP(ctx context.Context, req *Request) ([]byte, error) {
	return f(ctx, req)
}

// ServerConfig configures a Server. Zero values select the defaults.
type ServerConfig struct {
	// TLS, when set, makes the server speak TLS. Mutual TLS: set
	// ClientAuth to tls.RequireAndVerifyClientCert and ClientCAs.
	TLS *tls.Config
	// MaxMessageSize is the largest message accepted (0: 1 MiB). A larger
	// one is not passed to the handler, gets no answer, and its connection
	// is closed.
	MaxMessageSize int
	// IdleTimeout closes a connection on which no complete message arrived
	// within it (0: 5m). It also bounds the TLS handshake.
	IdleTimeout time.Duration
	// WriteTimeout bounds writing one ACK (0: 30s).
	WriteTimeout time.Duration
	// MaxConns is the most connections open at once (0: 64). A connection
	// beyond it is accepted and closed at once, without reading from it.
	MaxConns int
	// KeepAlive is the TCP keep-alive period (0: 30s; negative: off).
	KeepAlive time.Duration
	// ShutdownTimeout is how long, after Serve's context ends, handlers in
	// progress may run before the context passed to them is cancelled
	// (0: 30s).
	ShutdownTimeout time.Duration
	// Logger receives connection events (never message contents); nil
	// discards them.
	Logger *slog.Logger
}

// Stats counts what a Server did. Conns is a gauge, the others counters.
type Stats struct {
	Conns    int64 // connections open now
	Accepted int64 // connections accepted (including those refused by MaxConns)
	Messages int64 // messages passed to the handler
	Rejected int64 // refused: oversized messages and connections over MaxConns
	Errors   int64 // handler errors and panics, failed TLS handshakes, failed ACK writes, frames cut off
}

// Server receives MLLP messages and answers them through a Handler.
type Server struct {
	cfg ServerConfig
	h   Handler
	log *slog.Logger

	conns, accepted, messages, rejected, errs atomic.Int64
}

// NewServer returns a Server that passes each message to h.
func NewServer(cfg ServerConfig, h Handler) *Server {
	if h == nil {
		panic("mllp: NewServer with a nil Handler")
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 64
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = 30 * time.Second
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 30 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, h: h, log: log}
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Conns:    s.conns.Load(),
		Accepted: s.accepted.Load(),
		Messages: s.messages.Load(),
		Rejected: s.rejected.Load(),
		Errors:   s.errs.Load(),
	}
}

// Serve accepts connections on ln and serves each in its own goroutine
// until ctx ends. Then it closes ln, closes the connections that are
// waiting for a message, lets handlers in progress finish and write their
// ACK (their context stays alive for ShutdownTimeout), closes the remaining
// connections and returns nil once every connection goroutine is gone. If
// accepting fails for another reason, Serve shuts down the same way and
// returns the error. Handlers get a context that carries ctx's values.
// Serve closes ln; with TLS configured it runs the TLS server side on each
// accepted connection (as tls.NewListener would).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	sess := &session{conns: make(map[*conn]struct{})}

	var (
		once  sync.Once
		grace *time.Timer
	)
	shutdown := func() {
		once.Do(func() {
			ln.Close()
			sess.stopAll()
			grace = time.AfterFunc(s.cfg.ShutdownTimeout, hcancel)
		})
	}
	stopWatch := context.AfterFunc(ctx, shutdown)
	defer stopWatch()

	var (
		wg        sync.WaitGroup
		acceptErr error
		delay     time.Duration
	)
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if temporaryAcceptError(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("mllp accept failed; retrying", "error", err.Error(), "retry_in", delay)
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
				}
				continue
			}
			acceptErr = fmt.Errorf("mllp: accept: %w", err)
			break
		}
		delay = 0
		s.accepted.Add(1)
		c := s.admit(sess, nc)
		if c == nil {
			continue
		}
		wg.Go(func() { c.serve(hctx) })
	}
	shutdown()
	wg.Wait()
	grace.Stop()
	return acceptErr
}

// admit registers an accepted connection, or closes it when the server is
// stopping or full.
func (s *Server) admit(sess *session, nc net.Conn) *conn {
	for {
		n := s.conns.Load()
		if n >= int64(s.cfg.MaxConns) {
			s.rejected.Add(1)
			s.log.Warn("mllp connection refused: too many connections", "peer", nc.RemoteAddr().String(), "max_conns", s.cfg.MaxConns)
			nc.Close()
			return nil
		}
		if s.conns.CompareAndSwap(n, n+1) {
			break
		}
	}
	c := &conn{srv: s, sess: sess, raw: nc}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.stopping {
		s.conns.Add(-1)
		nc.Close()
		return nil
	}
	sess.conns[c] = struct{}{}
	return c
}

// temporaryAcceptError reports whether Accept may succeed if tried again.
func temporaryAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// session is the set of connections of one Serve call.
type session struct {
	mu       sync.Mutex
	stopping bool
	conns    map[*conn]struct{}
}

func (ss *session) stopAll() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.stopping = true
	for c := range ss.conns {
		c.stop()
	}
}

func (ss *session) remove(c *conn) {
	ss.mu.Lock()
	delete(ss.conns, c)
	ss.mu.Unlock()
}

// aLongTimeAgo is a deadline in the past, to make blocked I/O return now.
var aLongTimeAgo = time.Unix(1, 0)

// conn is one served connection. Its goroutine owns it; stop may be called
// from the Serve goroutine.
type conn struct {
	srv  *Server
	sess *session
	raw  net.Conn // the accepted connection; deadlines are set on it

	mu       sync.Mutex
	waiting  bool // blocked waiting for input: stop interrupts it
	stopping bool
}

// stop asks the connection to end: right away if it waits for input,
// otherwise once its handler has returned and the ACK is written.
func (c *conn) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopping = true
	if c.waiting {
		c.raw.SetReadDeadline(aLongTimeAgo)
	}
}

// beginWait arms the idle deadline before waiting for input; false means
// the connection is stopping.
func (c *conn) beginWait() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return false
	}
	c.waiting = true
	c.raw.SetReadDeadline(time.Now().Add(c.srv.cfg.IdleTimeout))
	return true
}

// endWait marks the wait over; false means the connection is stopping.
func (c *conn) endWait() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiting = false
	return !c.stopping
}

func (c *conn) serve(ctx context.Context) {
	s := c.srv
	defer func() {
		c.raw.Close()
		c.sess.remove(c)
		s.conns.Add(-1)
	}()
	setKeepAlive(c.raw, s.cfg.KeepAlive)
	info := ConnInfo{RemoteAddr: c.raw.RemoteAddr().String(), LocalAddr: c.raw.LocalAddr().String()}
	var rw io.ReadWriter = c.raw
	if s.cfg.TLS != nil {
		tc := tls.Server(c.raw, s.cfg.TLS)
		if !c.beginWait() {
			return
		}
		err := tc.HandshakeContext(ctx)
		if !c.endWait() {
			return
		}
		if err != nil {
			s.errs.Add(1)
			s.log.Warn("mllp TLS handshake failed", "peer", info.RemoteAddr, "error", err.Error())
			return
		}
		st := tc.ConnectionState()
		info.TLS = true
		if len(st.VerifiedChains) > 0 && len(st.VerifiedChains[0]) > 0 {
			info.PeerCertSubject = st.VerifiedChains[0][0].Subject.String()
		}
		rw = tc
	}
	s.log.Debug("mllp connection opened", "peer", info.RemoteAddr, "tls", info.TLS)

	rd := NewReader(rw, s.cfg.MaxMessageSize)
	req := &Request{Conn: info}
	var out []byte
	for {
		if !c.beginWait() {
			return
		}
		msg, err := rd.ReadMessage()
		if !c.endWait() {
			// Stopping: a message read now is not handled and gets no ACK;
			// its sender sends it again.
			return
		}
		if err != nil {
			c.readFailed(info.RemoteAddr, err)
			return
		}
		req.Message, req.ReceivedAt = msg, time.Now()
		s.messages.Add(1)
		ack, err := c.handle(ctx, req)
		req.Message = nil
		if err != nil {
			s.errs.Add(1)
			s.log.Warn("mllp handler failed; connection closed without ACK", "peer", info.RemoteAddr, "error", err.Error())
			return
		}
		if len(ack) == 0 {
			continue
		}
		out = AppendFrame(out[:0], ack)
		c.raw.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		if _, err := rw.Write(out); err != nil {
			s.errs.Add(1)
			s.log.Warn("mllp ACK not written; connection closed", "peer", info.RemoteAddr, "error", err.Error())
			return
		}
	}
}

// readFailed counts and logs why reading ended.
func (c *conn) readFailed(peer string, err error) {
	s := c.srv
	switch {
	case errors.Is(err, ErrTooLarge):
		s.rejected.Add(1)
		s.log.Warn("mllp message over the size limit; connection closed without ACK", "peer", peer, "max_size", s.cfg.MaxMessageSize)
	case errors.Is(err, io.EOF):
		s.log.Debug("mllp connection closed by peer", "peer", peer)
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.log.Debug("mllp connection idle; closed", "peer", peer, "idle_timeout", s.cfg.IdleTimeout)
	case errors.Is(err, io.ErrUnexpectedEOF):
		s.errs.Add(1)
		s.log.Warn("mllp connection closed by peer inside a frame", "peer", peer)
	default:
		s.log.Debug("mllp read failed; connection closed", "peer", peer, "error", err.Error())
	}
}

// handle calls the handler and turns a panic into an error.
func (c *conn) handle(ctx context.Context, req *Request) (ack []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			// The panic value is not logged: it might quote the message.
			what := fmt.Sprintf("%T", p)
			if re, ok := p.(runtime.Error); ok {
				what = re.Error()
			}
			buf := make([]byte, 8<<10)
			buf = buf[:runtime.Stack(buf, false)]
			c.srv.log.Error("mllp handler panicked", "panic", what, "stack", string(buf))
			ack, err = nil, fmt.Errorf("mllp: handler panicked: %s", what)
		}
	}()
	return c.srv.h.HandleMLLP(ctx, req)
}

// setKeepAlive applies the keep-alive setting to a TCP connection.
func setKeepAlive(nc net.Conn, period time.Duration) {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return
	}
	if period < 0 {
		tc.SetKeepAlive(false)
		return
	}
	tc.SetKeepAlive(true)
	tc.SetKeepAlivePeriod(period)
}
