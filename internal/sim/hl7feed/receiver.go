package hl7feed

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/ack"
	"github.com/mediflow/mediflow/internal/hl7/mllp"
)

// Fault is how a Receiver misbehaves for the messages it hits.
type Fault string

// Receiver faults.
const (
	FaultNone       Fault = "none"       // acknowledge with AA
	FaultNAK        Fault = "nak"        // AE with an ERR segment (HL7 table 0357 code 207)
	FaultReject     Fault = "reject"     // AR with an ERR segment
	FaultNoAck      Fault = "no-ack"     // read the message, never answer; the connection stays open
	FaultSlowAck    Fault = "slow-ack"   // AA after ReceiverConfig.SlowAck
	FaultDisconnect Fault = "disconnect" // close the connection after part of the message's frame
)

// Faults lists the fault modes.
func Faults() []Fault {
	return []Fault{FaultNone, FaultNAK, FaultReject, FaultNoAck, FaultSlowAck, FaultDisconnect}
}

// ParseFault reads a fault name ("" is FaultNone).
func ParseFault(s string) (Fault, error) {
	if s == "" {
		return FaultNone, nil
	}
	for _, f := range Faults() {
		if string(f) == s {
			return f, nil
		}
	}
	names := make([]string, 0, 6)
	for _, f := range Faults() {
		names = append(names, string(f))
	}
	return "", fmt.Errorf("hl7feed: unknown fault %q (have %s)", s, strings.Join(names, ", "))
}

// ReceiverConfig configures a Receiver.
type ReceiverConfig struct {
	Fault Fault
	// FaultRate is the share of messages the fault hits, 0..1 (0: all of
	// them, when Fault is set). Which ones is decided by a hash of Seed and
	// the message's position (for disconnect: the frame's position, counting
	// resends), so the same traffic meets the same faults.
	FaultRate float64
	// SlowAck is how long slow-ack waits before answering (default 5 s).
	SlowAck time.Duration
	Seed    uint64
	// MaxMessageSize bounds one message (0: the MLLP server's 1 MiB).
	MaxMessageSize int
	// Keep is how many received messages Messages returns, the latest
	// (default 10,000).
	Keep int
	// Logger receives PHI-free logs (default: discard).
	Logger *slog.Logger
}

// Validate reports a configuration the receiver cannot use.
func (c ReceiverConfig) Validate() error {
	if _, err := ParseFault(string(c.Fault)); err != nil {
		return err
	}
	if c.FaultRate < 0 || c.FaultRate > 1 || c.FaultRate != c.FaultRate {
		return fmt.Errorf("hl7feed: fault rate %g: want 0..1", c.FaultRate)
	}
	if c.SlowAck < 0 {
		return fmt.Errorf("hl7feed: slow-ack delay must not be negative")
	}
	return nil
}

// ReceiverStats counts what a Receiver did.
type ReceiverStats struct {
	Received    int64 // complete messages read
	Acked       int64 // answered AA (slow ones included)
	Naks        int64 // answered AE by the nak fault
	Rejects     int64 // answered AR by the reject fault
	Invalid     int64 // answered AE because the message did not parse
	NoAcks      int64 // left unanswered by the no-ack fault
	Slow        int64 // answered late by the slow-ack fault
	Disconnects int64 // connections cut in the middle of a message
}

// Receiver is an MLLP endpoint that acknowledges HL7 v2 messages, with an
// optional fault. Create it with NewReceiver; Serve runs it.
type Receiver struct {
	cfg ReceiverConfig
	log *slog.Logger

	handled atomic.Uint64 // messages handed to the handler: their positions
	frames  atomic.Uint64 // frame starts seen (disconnect fault)

	received, acked, naks, rejects, invalid, noAcks, slow, disconnects atomic.Int64

	mu   sync.Mutex
	kept [][]byte // ring of the last cfg.Keep messages
	next int      // where the next message goes once the ring is full
}

// NewReceiver returns a receiver; check cfg with Validate first (NewReceiver
// treats an unknown fault as none and clamps the rate).
func NewReceiver(cfg ReceiverConfig) *Receiver {
	if f, err := ParseFault(string(cfg.Fault)); err != nil || f == "" {
		cfg.Fault = FaultNone
	} else {
		cfg.Fault = f
	}
	if cfg.FaultRate <= 0 || cfg.FaultRate > 1 || cfg.FaultRate != cfg.FaultRate {
		cfg.FaultRate = 1
	}
	if cfg.SlowAck <= 0 {
		cfg.SlowAck = 5 * time.Second
	}
	if cfg.Keep <= 0 {
		cfg.Keep = 10_000
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Receiver{cfg: cfg, log: log}
}

// Serve accepts MLLP connections on ln until ctx ends, then closes ln and
// returns nil (or the accept error that stopped it).
func (r *Receiver) Serve(ctx context.Context, ln net.Listener) error {
	log := r.log
	if r.cfg.Fault == FaultDisconnect {
		ln = &cutListener{Listener: ln, r: r}
		// The server warns about every frame the fault cuts; those are ours.
		log = slog.New(minLevel{log.Handler(), slog.LevelError})
	}
	srv := mllp.NewServer(mllp.ServerConfig{MaxMessageSize: r.cfg.MaxMessageSize, Logger: log}, mllp.HandlerFunc(r.handle))
	if err := srv.Serve(ctx, ln); err != nil {
		return fmt.Errorf("hl7feed: receiver: %w", err)
	}
	return nil
}

// Messages returns copies of the latest messages received (at most Keep),
// oldest first.
func (r *Receiver) Messages() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([][]byte, 0, len(r.kept))
	for i := range r.kept {
		out = append(out, append([]byte(nil), r.kept[(r.next+i)%len(r.kept)]...))
	}
	return out
}

// Stats returns the counts so far.
func (r *Receiver) Stats() ReceiverStats {
	return ReceiverStats{
		Received: r.received.Load(), Acked: r.acked.Load(), Naks: r.naks.Load(),
		Rejects: r.rejects.Load(), Invalid: r.invalid.Load(), NoAcks: r.noAcks.Load(),
		Slow: r.slow.Load(), Disconnects: r.disconnects.Load(),
	}
}

func (r *Receiver) keep(msg []byte) {
	c := append([]byte(nil), msg...)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.kept) < r.cfg.Keep {
		r.kept = append(r.kept, c)
		return
	}
	r.kept[r.next] = c
	r.next = (r.next + 1) % len(r.kept)
}

// hits reports whether the fault hits the message (or frame) at position k.
func (r *Receiver) hits(k uint64) bool {
	if r.cfg.Fault == FaultNone {
		return false
	}
	if r.cfg.FaultRate >= 1 {
		return true
	}
	x := splitmix64(r.cfg.Seed ^ splitmix64(k))
	return float64(x>>11)/(1<<53) < r.cfg.FaultRate
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// errorText is the ERR and MSA text of the simulated faults; it carries no
// message content.
const (
	nakText    = "simulated application error"
	rejectText = "simulated rejection: receiver unavailable"
)

func (r *Receiver) handle(ctx context.Context, req *mllp.Request) ([]byte, error) {
	k := r.handled.Add(1) - 1
	r.received.Add(1)
	r.keep(req.Message)
	orig, perr := hl7.Parse(req.Message, hl7.ParseOptions{})
	build := func(o ack.Options) []byte {
		if perr != nil {
			return ack.BuildRaw(req.Message, o)
		}
		return ack.Build(orig, o)
	}
	fault := FaultNone
	if r.cfg.Fault != FaultDisconnect && r.hits(k) {
		fault = r.cfg.Fault
	}
	switch fault {
	case FaultNoAck:
		r.noAcks.Add(1)
		return nil, nil // nothing is sent; the connection stays open
	case FaultNAK:
		r.naks.Add(1)
		return build(ack.Options{Code: ack.AE, Text: nakText,
			Errors: []ack.Error{{Location: "MSH", Code: 207, Severity: "E", Text: nakText}}}), nil
	case FaultReject:
		r.rejects.Add(1)
		return build(ack.Options{Code: ack.AR, Text: rejectText,
			Errors: []ack.Error{{Location: "MSH", Code: 207, Severity: "E", Text: rejectText}}}), nil
	case FaultSlowAck:
		t := time.NewTimer(r.cfg.SlowAck)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		r.slow.Add(1)
	}
	if perr != nil {
		r.invalid.Add(1)
		return build(ack.Options{Code: ack.AE, Text: "message could not be parsed",
			Errors: []ack.Error{{Code: 100, Severity: "E", Text: "message could not be parsed"}}}), nil
	}
	r.acked.Add(1)
	return build(ack.Options{Code: ack.AA}), nil
}

// cutListener hands out connections that the disconnect fault can cut.
type cutListener struct {
	net.Listener
	r *Receiver
}

func (l *cutListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &cutConn{Conn: c, r: l.r}, nil
}

// cutConn watches the bytes read for MLLP start blocks. When the fault hits
// a frame, it passes on the start block and a little of the message (never
// its end), closes the connection and reports EOF: the server sees a frame
// cut short, the peer a connection closed while it waits for the ACK.
type cutConn struct {
	net.Conn
	r   *Receiver
	cut bool // only touched by the reading goroutine
}

const (
	startBlock = 0x0B
	endBlock   = 0x1C
	cutAfter   = 16 // message bytes passed on before the cut, at most
)

func (c *cutConn) Read(p []byte) (int, error) {
	if c.cut {
		return 0, io.EOF
	}
	n, err := c.Conn.Read(p)
	for i := 0; i < n; i++ {
		if p[i] != startBlock {
			continue
		}
		if !c.r.hits(c.r.frames.Add(1) - 1) {
			continue
		}
		j := i + 1
		for j < n && j <= i+cutAfter && p[j] != endBlock {
			j++
		}
		c.cut = true
		c.r.disconnects.Add(1)
		_ = c.Conn.Close()
		return j, nil
	}
	return n, err
}

// minLevel drops records below a level.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.level}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.level}
}
