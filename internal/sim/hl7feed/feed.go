package hl7feed

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mediflow/mediflow/internal/hl7/ack"
	"github.com/mediflow/mediflow/internal/hl7/mllp"
)

// FeedConfig configures a Feed.
type FeedConfig struct {
	// To is the receiver's host:port.
	To string
	// Rate is messages per second (0: as fast as ACKs come back). A slow
	// receiver lowers it: sends are one at a time, and ticks missed while
	// waiting for an ACK are dropped, not caught up in a burst.
	Rate float64
	// Count is how many messages to send (0: until the context ends).
	Count int
	// Mix weighs the message kinds (empty: DefaultMix).
	Mix Mix
	// Seed drives which messages are sent about which resources.
	Seed uint64
	// SendingApplication and SendingFacility are MSH-3 and MSH-4 (defaults
	// "MEDIFLOW-SIM" and "SIM"); the facility is also the namespace of the
	// MRN's assigning authority in PID-3.
	SendingApplication, SendingFacility string
	// ReceivingApplication and ReceivingFacility are MSH-5 (default
	// "MEDIFLOW") and MSH-6.
	ReceivingApplication, ReceivingFacility string
	// TLS, when set, speaks MLLP over TLS.
	TLS *tls.Config
	// AckTimeout, MaxAttempts and Backoff tune the MLLP client (zero: the
	// client's defaults, 30 s, 3 and 200 ms).
	AckTimeout  time.Duration
	MaxAttempts int
	Backoff     time.Duration
	// ControlIDPrefix starts every MSH-10; the rest is a sequence number.
	// Default for Run: a prefix from the start time, so a restarted feed does
	// not repeat control ids (receivers drop duplicates); for Messages: one
	// derived from the seed.
	ControlIDPrefix string
	// Refresh is how often Run re-reads the source to pick up the change
	// generator's work (default 15 s).
	Refresh time.Duration
	// Now is the clock for MSH-7 and EVN-2 (default time.Now; Messages uses a
	// fixed clock when nil so its output is reproducible).
	Now func() time.Time
	// Logger receives PHI-free logs (control ids and counts; default: discard).
	Logger *slog.Logger
}

// FeedStats counts a feed's outcomes.
type FeedStats struct {
	Sent     int64 // messages whose send completed (an ACK came or all attempts failed)
	Accepted int64 // ACK with AA or CA
	Errors   int64 // ACK with AE, AR, CE or CR
	NoAck    int64 // no ACK after every attempt (timeouts, refused or cut connections)
	BadAck   int64 // a reply that is not an ACK or does not echo the message's MSH-10
}

// Feed sends HL7 v2 messages built from a Source to a receiver. Create it
// with NewFeed.
type Feed struct {
	src Source
	cfg FeedConfig
	log *slog.Logger

	sent, accepted, errs, noAck, badAck atomic.Int64
}

// NewFeed returns a feed of src's data; Run sends it.
func NewFeed(src Source, cfg FeedConfig) *Feed {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 15 * time.Second
	}
	return &Feed{src: src, cfg: cfg, log: log}
}

// Validate reports a configuration Run cannot work with.
func (c FeedConfig) Validate() error {
	if _, _, err := net.SplitHostPort(c.To); err != nil {
		return fmt.Errorf("hl7feed: destination %q: want host:port", c.To)
	}
	if c.Rate < 0 || c.Rate != c.Rate {
		return errors.New("hl7feed: rate must not be negative")
	}
	if c.Count < 0 {
		return errors.New("hl7feed: count must not be negative")
	}
	if len(c.ControlIDPrefix) > 12 {
		return errors.New("hl7feed: control id prefix longer than 12 characters")
	}
	_, err := c.Mix.weights()
	return err
}

// Stats returns the counts so far; safe to call while Run runs.
func (f *Feed) Stats() FeedStats {
	return FeedStats{
		Sent: f.sent.Load(), Accepted: f.accepted.Load(), Errors: f.errs.Load(),
		NoAck: f.noAck.Load(), BadAck: f.badAck.Load(),
	}
}

// Run sends messages until Count are sent or ctx ends. Failed sends are
// counted (see Stats), not returned: a feed keeps going when its receiver
// misbehaves. Run returns nil when it sent Count messages or, with Count 0,
// when ctx ends; ctx's error when ctx ends before Count were sent; and an
// error for a bad configuration or a source without usable data.
func (f *Feed) Run(ctx context.Context) error {
	cfg := f.cfg
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.ControlIDPrefix == "" {
		cfg.ControlIDPrefix = "S" + strings.ToUpper(strconv.FormatInt(time.Now().UnixMilli(), 36))
	}
	b, err := newBuilder(cfg, cfg.Seed)
	if err != nil {
		return err
	}
	snap := load(f.src)
	loaded := time.Now()
	client := mllp.NewClient(mllp.ClientConfig{
		Addr: cfg.To, TLS: cfg.TLS, AckTimeout: cfg.AckTimeout,
		MaxAttempts: cfg.MaxAttempts, Backoff: cfg.Backoff,
	})
	defer client.Close()

	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.Rate)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	next := time.Now()
	for i := 0; cfg.Count == 0 || i < cfg.Count; i++ {
		if interval > 0 {
			// Absolute deadlines: the schedule does not drift with the time
			// spent sending; a deadline already passed is sent at once and
			// the schedule restarts from now (no catch-up burst).
			if d := time.Until(next); d > 0 {
				timer.Reset(d)
				select {
				case <-ctx.Done():
					return f.stopped(ctx, cfg.Count)
				case <-timer.C:
				}
			} else {
				next = time.Now()
			}
			next = next.Add(interval)
		} else if ctx.Err() != nil {
			return f.stopped(ctx, cfg.Count)
		}
		if time.Since(loaded) >= cfg.Refresh {
			snap, loaded = load(f.src), time.Now()
		}
		msg, ctrl, err := b.next(snap, cfg.Now())
		if err != nil {
			return err
		}
		if err := f.send(ctx, client, msg, ctrl); err != nil {
			return f.stopped(ctx, cfg.Count)
		}
	}
	return nil
}

func (f *Feed) stopped(ctx context.Context, count int) error {
	if count == 0 {
		return nil
	}
	return ctx.Err()
}

// send sends one message and counts the outcome; it returns an error only
// when ctx ended during the send.
func (f *Feed) send(ctx context.Context, c *mllp.Client, msg []byte, ctrl string) error {
	reply, err := c.Send(ctx, msg)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		f.sent.Add(1)
		f.noAck.Add(1)
		f.log.Debug("hl7 feed: no ACK", "control_id", ctrl, "err", err)
		return nil
	}
	f.sent.Add(1)
	res, err := ack.Parse(reply)
	switch {
	case err != nil:
		f.badAck.Add(1)
		f.log.Debug("hl7 feed: reply is not an ACK", "control_id", ctrl, "err", err)
	case res.ControlID != ctrl:
		f.badAck.Add(1)
		f.log.Debug("hl7 feed: ACK for another message", "control_id", ctrl, "acked", res.ControlID)
	case res.Accepted():
		f.accepted.Add(1)
	default:
		f.errs.Add(1)
		f.log.Debug("hl7 feed: message not accepted", "control_id", ctrl, "code", string(res.Code))
	}
	return nil
}

// fixedEpoch is the clock Messages uses when cfg.Now is nil.
var fixedEpoch = time.Date(2026, time.June, 1, 12, 0, 0, 0, time.UTC)

// Messages builds n messages from src without sending them: the same source
// data, n, seed and cfg give the same bytes (seed replaces cfg.Seed; with
// cfg.Now nil, MSH-7 counts seconds from a fixed time). For benchmarks and
// tests.
func Messages(src Source, n int, seed uint64, cfg FeedConfig) ([][]byte, error) {
	if cfg.ControlIDPrefix == "" {
		h := fnv.New32a()
		fmt.Fprint(h, seed)
		cfg.ControlIDPrefix = fmt.Sprintf("M%08X", h.Sum32())
	}
	b, err := newBuilder(cfg, seed)
	if err != nil {
		return nil, err
	}
	snap := load(src)
	out := make([][]byte, 0, max(n, 0))
	for i := range n {
		now := fixedEpoch.Add(time.Duration(i) * time.Second)
		if cfg.Now != nil {
			now = cfg.Now()
		}
		msg, _, err := b.next(snap, now)
		if err != nil {
			return nil, err
		}
		out = append(out, msg)
	}
	return out, nil
}
