package hl7out

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/store"
)

// Errors of Enqueue.
var (
	// ErrUnknownDestination: no destination of that name for the practice.
	ErrUnknownDestination = errors.New("hl7out: unknown destination")
	// ErrNoControlID: the message has no MSH-10, so its ACK cannot be
	// matched and the receiver could not de-duplicate a resend.
	ErrNoControlID = errors.New("hl7out: message has no control id (MSH-10)")
)

// Destination is one outbound MLLP connection of a practice. Zero durations
// and counts select the defaults.
type Destination struct {
	Practice string
	// Name is the channel stored with every message sent here; unique
	// within the practice.
	Name string
	// Addr is the receiver's host:port.
	Addr string
	// TLS, when set, speaks TLS (a client certificate in it gives mutual TLS).
	TLS *tls.Config
	// DialTimeout bounds connecting, TLS handshake included (0: 5 s).
	DialTimeout time.Duration
	// AckTimeout bounds one attempt: writing the message and reading its
	// answer (0: 30 s).
	AckTimeout time.Duration
	// MaxAttempts is the number of attempts in one delivery round (0: 3).
	MaxAttempts int
	// Backoff is the pause before the second attempt of a round (0: 200 ms);
	// it doubles for each further attempt, at most 5 s, jittered.
	Backoff time.Duration
	// RetryDelay is the pause after a failed round (0: 10 s); it doubles
	// after each failed round of the same message up to MaxRetryDelay
	// (0: 5 min), jittered.
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// MaxRounds is the number of failed rounds after which a message is
	// marked timed-out and the next one is sent (0: never; the destination
	// holds its queue and keeps trying).
	MaxRounds int
	// MaxMessageSize bounds an answer in bytes (0: 1 MiB).
	MaxMessageSize int
}

func (d *Destination) validate() error {
	switch {
	case d.Practice == "":
		return errors.New("hl7out: a destination needs a practice")
	case d.Name == "":
		return fmt.Errorf("hl7out: practice %s: a destination needs a name", d.Practice)
	case d.Addr == "":
		return fmt.Errorf("hl7out: practice %s destination %s: no address", d.Practice, d.Name)
	case d.DialTimeout < 0, d.AckTimeout < 0, d.Backoff < 0, d.RetryDelay < 0, d.MaxRetryDelay < 0:
		return fmt.Errorf("hl7out: practice %s destination %s: negative duration", d.Practice, d.Name)
	case d.MaxAttempts < 0, d.MaxRounds < 0, d.MaxMessageSize < 0:
		return fmt.Errorf("hl7out: practice %s destination %s: negative count", d.Practice, d.Name)
	}
	if d.DialTimeout == 0 {
		d.DialTimeout = 5 * time.Second
	}
	if d.AckTimeout == 0 {
		d.AckTimeout = 30 * time.Second
	}
	if d.MaxAttempts == 0 {
		d.MaxAttempts = 3
	}
	if d.Backoff == 0 {
		d.Backoff = 200 * time.Millisecond
	}
	if d.RetryDelay == 0 {
		d.RetryDelay = 10 * time.Second
	}
	if d.MaxRetryDelay == 0 {
		d.MaxRetryDelay = 5 * time.Minute
	}
	d.MaxRetryDelay = max(d.MaxRetryDelay, d.RetryDelay)
	return nil
}

// Event is one step of an outbound message, PHI-free.
type Event struct {
	Practice     string
	Destination  string
	ID           int64 // message id in the store
	MessageCode  string
	TriggerEvent string
	ControlID    string
	// Status is the message's status after the step: queued (enqueued),
	// sent (an attempt failed, another follows), acked, rejected or
	// timed-out.
	Status   string
	AckCode  string // the receiver's MSA-1 (acked, rejected)
	AckText  string // the receiver's MSA-3
	Attempts int    // attempts so far, the stored count
	Error    string // the stored error text (sent, rejected, timed-out)
}

// Final reports whether the event is the message's outcome.
func (e Event) Final() bool {
	return e.Status == store.MsgAcked || e.Status == store.MsgRejected || e.Status == store.MsgTimedOut
}

// Options configure a Sender.
type Options struct {
	Store        store.MessageStore
	Destinations []Destination
	Logger       *slog.Logger     // nil: discard
	Now          func() time.Time // nil: time.Now
	// PollInterval is how often an idle destination looks at the store
	// without being woken by Enqueue (0: 1 min).
	PollInterval time.Duration
	// OnEvent, when set, is called for every step of every message: from
	// Enqueue for queued, and on the destination's goroutine, before it
	// goes on, for the others. It must return quickly.
	OnEvent func(Event)
}

// Sender queues outbound messages in the store and delivers them. Create it
// with New; Run delivers.
type Sender struct {
	opts  Options
	dests map[destKey]*dest
	order []*dest

	mu      sync.Mutex
	running bool
}

type destKey struct{ practice, name string }

// dest is one destination's shared state.
type dest struct {
	cfg  Destination
	wake chan struct{} // one pending wake-up at most

	// enqMu makes the stored ids of this destination visible in id order:
	// one store call at a time.
	enqMu sync.Mutex

	mu     sync.Mutex // guards status
	status DestinationStatus
}

func (d *dest) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// DestinationStatus is a snapshot of one destination.
type DestinationStatus struct {
	Practice, Name, Addr string
	// Head is the id of the message being delivered (0: idle), HeadSince
	// when its delivery began and HeadAttempts its stored attempts.
	Head         int64
	HeadSince    time.Time
	HeadAttempts int
	// LastError is why the head message's last attempt failed ("" when it
	// did not).
	LastError string
	// Counts since New.
	Acked, Rejected, TimedOut int64
}

// New checks the options and returns a Sender.
func New(opts Options) (*Sender, error) {
	if opts.Store == nil {
		return nil, errors.New("hl7out: a store is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PollInterval < 0 {
		return nil, errors.New("hl7out: negative poll interval")
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = time.Minute
	}
	s := &Sender{opts: opts, dests: make(map[destKey]*dest, len(opts.Destinations))}
	for _, cfg := range opts.Destinations {
		if err := cfg.validate(); err != nil {
			return nil, err
		}
		k := destKey{cfg.Practice, cfg.Name}
		if s.dests[k] != nil {
			return nil, fmt.Errorf("hl7out: practice %s has two destinations named %s", cfg.Practice, cfg.Name)
		}
		d := &dest{cfg: cfg, wake: make(chan struct{}, 1)}
		d.status = DestinationStatus{Practice: cfg.Practice, Name: cfg.Name, Addr: cfg.Addr}
		s.dests[k] = d
		s.order = append(s.order, d)
	}
	s.opts.Destinations = nil // the copies in dests are the ones used
	return s, nil
}

// Enqueue stores msg, an ER7 message, for delivery to the named destination
// of the practice and returns its id once the store has committed it. The
// message is parsed leniently for its MSH fields and stored with its
// segments ended by CR (as they are sent); nothing else is changed. It must
// have a control id (MSH-10). Enqueue does not wait for delivery.
func (s *Sender) Enqueue(ctx context.Context, practice, destination string, msg []byte) (int64, error) {
	d, err := s.dest(practice, destination)
	if err != nil {
		return 0, err
	}
	m, err := hl7.Parse(msg, hl7.ParseOptions{})
	if err != nil {
		return 0, fmt.Errorf("hl7out: enqueue: %w", err)
	}
	return s.enqueue(ctx, d, m)
}

// EnqueueMessage is Enqueue for a message that is already parsed (or built);
// it is stored as m.Encode() returns it.
func (s *Sender) EnqueueMessage(ctx context.Context, practice, destination string, m *hl7.Message) (int64, error) {
	d, err := s.dest(practice, destination)
	if err != nil {
		return 0, err
	}
	return s.enqueue(ctx, d, m)
}

func (s *Sender) dest(practice, name string) (*dest, error) {
	d := s.dests[destKey{practice, name}]
	if d == nil {
		return nil, fmt.Errorf("%w: practice %s has no destination %s", ErrUnknownDestination, practice, name)
	}
	return d, nil
}

func (s *Sender) enqueue(ctx context.Context, d *dest, m *hl7.Message) (int64, error) {
	h := m.Header()
	if h.ControlID == "" {
		return 0, ErrNoControlID
	}
	body := m.Encode()
	if bytes.IndexByte(body, 0x0B) >= 0 || bytes.IndexByte(body, 0x1C) >= 0 {
		return 0, errors.New("hl7out: enqueue: the message contains an MLLP block character (0x0B or 0x1C)")
	}
	rec := store.HL7Message{
		Direction:         store.DirectionOutbound,
		Channel:           d.cfg.Name,
		Peer:              d.cfg.Addr,
		SendingApp:        h.SendingApplication,
		SendingFacility:   h.SendingFacility,
		ReceivingApp:      h.ReceivingApplication,
		ReceivingFacility: h.ReceivingFacility,
		MessageCode:       h.MessageCode,
		TriggerEvent:      h.TriggerEvent,
		ControlID:         h.ControlID,
		ReceivedAt:        s.opts.Now().UTC(),
		Status:            store.MsgQueued,
		Body:              body,
	}
	d.enqMu.Lock()
	res, err := s.opts.Store.PutHL7Messages(ctx, d.cfg.Practice, []store.HL7Message{rec}, 0)
	d.enqMu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("hl7out: enqueue for %s/%s: %w", d.cfg.Practice, d.cfg.Name, err)
	}
	if len(res) != 1 || res[0].ID == 0 {
		return 0, fmt.Errorf("hl7out: enqueue for %s/%s: the store returned no id", d.cfg.Practice, d.cfg.Name)
	}
	id := res[0].ID
	d.signal()
	if s.opts.OnEvent != nil {
		s.opts.OnEvent(Event{Practice: d.cfg.Practice, Destination: d.cfg.Name, ID: id, MessageCode: h.MessageCode,
			TriggerEvent: h.TriggerEvent, ControlID: h.ControlID, Status: store.MsgQueued})
	}
	return id, nil
}

// Status returns a snapshot of every destination, in configuration order.
func (s *Sender) Status() []DestinationStatus {
	out := make([]DestinationStatus, 0, len(s.order))
	for _, d := range s.order {
		d.mu.Lock()
		out = append(out, d.status)
		d.mu.Unlock()
	}
	return out
}

// Run delivers queued messages until ctx ends, one goroutine per
// destination, and returns nil once they have all stopped. A Sender runs
// once.
func (s *Sender) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("hl7out: the sender is already running or has run")
	}
	s.running = true
	s.mu.Unlock()

	var wg sync.WaitGroup
	for _, d := range s.order {
		w := newWorker(s, d)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx)
		}()
	}
	wg.Wait()
	return nil
}
