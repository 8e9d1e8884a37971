// Package subscription keeps one EHR connection fresh in real time through
// a FHIR R4 topic-based Subscription (the Subscriptions R5 Backport IG) over
// rest-hook: it creates or reuses the Subscription, serves the notification
// endpoint, tracks event numbers and heartbeats, detects missed
// notifications and recovers them ($events, then $status, then a catch-up
// poll the engine runs), and hands what changed to the engine's Sink.
//
// A Manager serves one connection. Mount it (an http.Handler) at the URL
// given as Config.Endpoint and run Run in a goroutine the engine owns. The
// handler only checks the notification (shared secret or X-Hub-Signature,
// our subscription, not a replay), stores it raw through the Sink and
// queues it; all fetching happens in Run's goroutine.
//
// Delivery may be at-least-once and unordered: an event seen before (by
// number, or by id where the EHR numbers events per notification, as
// athenahealth does) is not handed over twice, a resource version older
// than one handed over is not handed over, and an event-number gap waits
// ReorderWait for late notifications before it is recovered.
package subscription

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediflow/mediflow/internal/connector/fhirrest"
)

// Payload is how much a notification carries (backport-payload-content).
type Payload string

// Payload modes.
const (
	PayloadEmpty        Payload = "empty"         // nothing: we poll the topic's types
	PayloadIDOnly       Payload = "id-only"       // the focus reference: we read it
	PayloadFullResource Payload = "full-resource" // the resource itself
)

// EventNumbering is how an EHR numbers subscription events.
type EventNumbering string

// Event numberings.
const (
	// NumbersPerSubscription is the Backport IG's: one gap-free counter per
	// subscription, so a jump reveals lost notifications ($events fills it)
	// and a number at or below the last handled is a duplicate.
	NumbersPerSubscription EventNumbering = "subscription"
	// NumbersPerNotification is athenahealth's deviation: the events of
	// each notification are numbered 1..k and eventsSinceSubscriptionStart
	// is k. Numbers then say nothing about gaps or duplicates: events are
	// told apart by their id (else focus and timestamp), and lost
	// notifications are left to the EHR's retries and the safety poll.
	NumbersPerNotification EventNumbering = "notification"
)

// HubSignatureHeader is the notification header WebSub-style signatures
// travel in: "sha256=" and the hex HMAC-SHA256 of the body.
const HubSignatureHeader = "X-Hub-Signature"

// Resource is one changed resource handed to the Sink.
type Resource struct {
	Type, ID    string
	VersionID   string    // meta.versionId ("" when the EHR sends none)
	LastUpdated time.Time // meta.lastUpdated (zero when absent)
	Body        json.RawMessage
	// EventNumber is the subscription event that named it.
	EventNumber int64
}

// Sink is what the engine implements. Every method may be retried with the
// same arguments (after a failure, or a restart before the state was
// saved): implementations must be idempotent.
type Sink interface {
	// Notification stores a notification body exactly as received, before
	// it is acknowledged (raw first). An error answers the EHR 503, so it
	// sends again.
	Notification(ctx context.Context, practice, connection string, body []byte) error
	// Resources stores changed resources. On error the events are retried
	// later (the event number does not advance).
	Resources(ctx context.Context, practice, connection string, rs []Resource) error
	// CatchUp asks for a poll of types for changes since the given time,
	// when notifications cannot say what changed (empty payloads) or were
	// lost beyond what $events can return. It returns once the poll is done
	// or durably scheduled.
	CatchUp(ctx context.Context, practice, connection string, types []string, since time.Time) error
}

// State is what a Manager persists so a restart resumes where it stopped.
type State struct {
	SubscriptionID string  `json:"subscriptionId"`
	Topic          string  `json:"topic"`
	Endpoint       string  `json:"endpoint"`
	Payload        Payload `json:"payload"`
	// LastEventNumber is the last event handed to the Sink (or covered by a
	// catch-up poll).
	LastEventNumber int64 `json:"lastEventNumber"`
	// LastEventTime is the time up to which changes were handed over; a
	// catch-up poll starts there.
	LastEventTime time.Time `json:"lastEventTime"`
	// Created is when the subscription was created.
	Created time.Time `json:"created"`
}

// StateStore loads and saves a connection's State.
type StateStore interface {
	LoadState(ctx context.Context, practice, connection string) (State, bool, error)
	SaveState(ctx context.Context, practice, connection string, s State) error
}

// MemoryStateStore is a StateStore in memory (tests, demos). Its zero value is ready.
type MemoryStateStore struct {
	mu sync.Mutex
	m  map[string]State
}

// LoadState implements StateStore.
func (s *MemoryStateStore) LoadState(_ context.Context, practice, connection string) (State, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.m[practice+"\x00"+connection]
	return st, ok, nil
}

// SaveState implements StateStore.
func (s *MemoryStateStore) SaveState(_ context.Context, practice, connection string, st State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]State{}
	}
	s.m[practice+"\x00"+connection] = st
	return nil
}

// Config configures a Manager. Zero values pick the documented defaults.
type Config struct {
	Practice, Connection string
	// Client reads focus resources (id-only payloads); its BaseURL is the
	// EHR's FHIR base (required).
	Client *fhirrest.Client
	// HTTPClient sends the Subscription requests: create, read, delete,
	// $status, $events (default: 30 s timeout).
	HTTPClient *http.Client
	// Tokens supplies bearer tokens for those requests (nil: none). The
	// SMART client needs Subscription scopes (e.g. system/Subscription.crs
	// and .d to delete).
	Tokens fhirrest.TokenSource
	// Topic is the SubscriptionTopic canonical URL (required).
	Topic string
	// Types are the resource types the topic covers, polled on catch-up (required).
	Types []string
	// Filters are backport filter criteria, e.g. "Appointment?patient=Patient/123".
	Filters []string
	// Payload is the notification content (default id-only).
	Payload Payload
	// HeartbeatPeriod is asked of the EHR (rounded up to whole seconds on
	// the wire) and watched as configured (default 60s).
	HeartbeatPeriod time.Duration
	// HeartbeatGrace is how late a heartbeat may be before we ask the EHR
	// ($status) what we missed (default: half the period).
	HeartbeatGrace time.Duration
	// DeliveryTimeout, when set, is asked of the EHR (backport-timeout).
	DeliveryTimeout time.Duration
	// MaxCount, when set, is the most events the EHR may put in one notification.
	MaxCount int
	// Endpoint is the absolute URL this Manager's handler is reachable at (required).
	Endpoint string
	// Secret, when set, is sent to the EHR as channel header
	// "Authorization: Bearer <Secret>" and required on every notification.
	Secret string
	// HubSecret, when set, authenticates notifications the WebSub way
	// (athenahealth): it is sent once, as the X-Hub-Secret header of the
	// Subscription create, and every notification must then carry
	// "X-Hub-Signature: sha256=<hex HMAC-SHA256 of the raw body>". A
	// notification without it, or with a signature that does not match,
	// is answered 401 and not stored.
	HubSecret string
	// EventNumbers is how the EHR numbers events (default
	// NumbersPerSubscription; athenahealth: NumbersPerNotification).
	EventNumbers EventNumbering
	// ReorderWait is how long a gap in event numbers stays open for late
	// notifications (delivery may be unordered) before the missing events
	// are fetched with $events (default 1s; negative: no wait). At most one
	// recovery runs per wait, however many notifications come out of order.
	ReorderWait time.Duration
	// ReplayWindow: an event notification whose events are all older than
	// this (by their timestamps) and all processed already is a replay —
	// answered 200, neither stored nor processed (default 5m). A
	// notification within the window is stored raw even when it repeats
	// one (at-least-once delivery), and its events are skipped.
	ReplayWindow time.Duration
	// Sink receives notifications, resources and catch-up requests (required).
	Sink Sink
	// State persists the subscription id and event position (required).
	State StateStore
	// HandshakeTimeout is how long to wait for the handshake before reading
	// the Subscription's status instead (default 30s).
	HandshakeTimeout time.Duration
	// CheckInterval is how often Run checks heartbeats (default: a quarter
	// of the period, at most 5s).
	CheckInterval time.Duration
	// QueueSize bounds notifications accepted but not yet processed
	// (default 256); beyond it they are stored raw, acknowledged, and
	// recovered through $status.
	QueueSize int
	// MaxEventsPerQuery bounds one $events request (default 500).
	MaxEventsPerQuery int64
	// RetryWait is the base wait between retries (default 500ms).
	RetryWait time.Duration
	// MaxNotificationBytes bounds a notification body (default 32 MiB).
	MaxNotificationBytes int64
	Logger               *slog.Logger
	Now                  func() time.Time
}

// Stats counts what a Manager did.
type Stats struct {
	Notifications     int64 // accepted by the handler
	Heartbeats        int64
	Events            int64 // events handed over (notified or recovered)
	Duplicates        int64 // events or resource versions seen before, skipped
	Gaps              int64 // gaps detected (event number jumps, heartbeat or $status ahead)
	EventsRecovered   int64 // events fetched through $events
	CatchUps          int64 // catch-up polls asked of the Sink
	HeartbeatTimeouts int64
	Recreated         int64 // subscriptions replaced (gone, error or off)
	Overflows         int64 // notifications acknowledged but not queued
	BadSignatures     int64 // notifications refused for a missing or wrong X-Hub-Signature
	Replays           int64 // stale notifications of processed events, dropped unstored
	Reordered         int64 // gaps closed by notifications that came late, without $events
}

// Manager keeps one connection's subscription. Create it with New.
type Manager struct {
	cfg     Config
	base    string
	log     *slog.Logger
	queue   chan *notification
	ready   chan struct{}
	started atomic.Bool

	mu          sync.Mutex
	subID       string        // the subscription notifications must name
	creating    chan struct{} // non-nil while a create is in flight
	lastContact time.Time
	overflow    bool
	stats       Stats

	// What the handler's replay check reads: the last event number handled
	// (a mirror of st.LastEventNumber) and the keys of events handled
	// (NumbersPerNotification).
	handled atomic.Int64
	events  *keySet

	// Owned by Run's goroutine.
	st            State
	handshakeSeen bool
	handshakeDue  time.Time
	seen          *versionSet
	readyClosed   bool
	// Events that came after a gap in numbers, waiting for the missing ones.
	held   map[int64]pending
	gapTo  int64     // the highest event number known to exist
	gapDue time.Time // when an open gap is recovered; zero: none open
	// lost: a NumbersPerNotification hand-over failed after the EHR was
	// answered; the next check asks for a catch-up poll.
	lost bool
}

// New checks cfg and returns a Manager.
func New(cfg Config) (*Manager, error) {
	switch {
	case cfg.Practice == "" || cfg.Connection == "":
		return nil, errors.New("subscription: Practice and Connection are required")
	case cfg.Client == nil:
		return nil, errors.New("subscription: Client is required")
	case cfg.Topic == "":
		return nil, errors.New("subscription: Topic is required")
	case len(cfg.Types) == 0:
		return nil, errors.New("subscription: Types (the topic's resource types) are required")
	case cfg.Sink == nil || cfg.State == nil:
		return nil, errors.New("subscription: Sink and State are required")
	}
	if u, err := url.Parse(cfg.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("subscription: Endpoint must be an absolute http(s) URL")
	}
	switch cfg.EventNumbers {
	case "":
		cfg.EventNumbers = NumbersPerSubscription
	case NumbersPerSubscription, NumbersPerNotification:
	default:
		return nil, fmt.Errorf("subscription: event numbering %q: want subscription or notification", cfg.EventNumbers)
	}
	if cfg.ReorderWait == 0 {
		cfg.ReorderWait = time.Second
	} else if cfg.ReorderWait < 0 {
		cfg.ReorderWait = 0
	}
	if cfg.ReplayWindow <= 0 {
		cfg.ReplayWindow = 5 * time.Minute
	}
	switch cfg.Payload {
	case "":
		cfg.Payload = PayloadIDOnly
	case PayloadEmpty, PayloadIDOnly, PayloadFullResource:
	default:
		return nil, fmt.Errorf("subscription: payload %q: want empty, id-only or full-resource", cfg.Payload)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.HeartbeatPeriod <= 0 {
		cfg.HeartbeatPeriod = 60 * time.Second
	}
	if cfg.HeartbeatGrace <= 0 {
		cfg.HeartbeatGrace = cfg.HeartbeatPeriod / 2
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 30 * time.Second
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = min(max(cfg.HeartbeatPeriod/4, 10*time.Millisecond), 5*time.Second)
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 256
	}
	if cfg.MaxEventsPerQuery <= 0 {
		cfg.MaxEventsPerQuery = 500
	}
	if cfg.RetryWait <= 0 {
		cfg.RetryWait = 500 * time.Millisecond
	}
	if cfg.MaxNotificationBytes <= 0 {
		cfg.MaxNotificationBytes = 32 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Manager{
		cfg:    cfg,
		base:   cfg.Client.BaseURL(),
		log:    cfg.Logger.With("practice", cfg.Practice, "connection", cfg.Connection),
		queue:  make(chan *notification, cfg.QueueSize),
		ready:  make(chan struct{}),
		seen:   newVersionSet(50000),
		events: newKeySet(100000),
		held:   map[int64]pending{},
	}, nil
}

// Ready is closed once Run has a subscription in place (created or reused).
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// SubscriptionID is the id of the subscription notifications must name ("" before Ready).
func (m *Manager) SubscriptionID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.subID
}

// Stats returns the counters so far.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

func (m *Manager) bump(f func(*Stats)) {
	m.mu.Lock()
	f(&m.stats)
	m.mu.Unlock()
}

func (m *Manager) touch(t time.Time) {
	m.mu.Lock()
	if t.After(m.lastContact) {
		m.lastContact = t
	}
	m.mu.Unlock()
}

// Run creates or reuses the subscription, then processes notifications and
// watches heartbeats until ctx is cancelled; it returns ctx's error. Call it
// once, in a goroutine the caller owns.
func (m *Manager) Run(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return errors.New("subscription: Run called twice")
	}
	if err := m.ensure(ctx); err != nil {
		return err
	}
	tick := time.NewTicker(m.cfg.CheckInterval)
	defer tick.Stop()
	gap := time.NewTimer(time.Hour)
	gap.Stop()
	armed := false
	for {
		if !armed && !m.gapDue.IsZero() {
			gap.Reset(max(m.gapDue.Sub(m.cfg.Now()), 0))
			armed = true
		}
		select {
		case <-ctx.Done():
			gap.Stop()
			return ctx.Err()
		case n := <-m.queue:
			m.handle(ctx, n)
		case <-gap.C:
			armed = false
			m.resolveGap(ctx)
		case <-tick.C:
			m.check(ctx)
		}
	}
}

func (m *Manager) markReady() {
	if !m.readyClosed {
		m.readyClosed = true
		close(m.ready)
	}
}

// ensure puts a subscription in place, retrying with backoff.
func (m *Manager) ensure(ctx context.Context) error {
	wait := m.cfg.RetryWait
	for {
		err := m.ensureOnce(ctx)
		if err == nil {
			m.markReady()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		m.log.Warn("subscription setup failed, retrying", "err", err, "wait", wait)
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (m *Manager) ensureOnce(ctx context.Context) error {
	st, ok, err := m.cfg.State.LoadState(ctx, m.cfg.Practice, m.cfg.Connection)
	if err != nil {
		return fmt.Errorf("subscription: loading the state: %w", err)
	}
	if ok && st.SubscriptionID != "" && st.Topic == m.cfg.Topic && st.Endpoint == m.cfg.Endpoint && st.Payload == m.cfg.Payload {
		rs, err := m.readSubscription(ctx, st.SubscriptionID)
		switch {
		case err == nil && (rs.Status == "active" || rs.Status == "requested"):
			m.st = st
			m.handled.Store(st.LastEventNumber)
			m.mu.Lock()
			m.subID = st.SubscriptionID
			m.mu.Unlock()
			m.handshakeSeen = rs.Status == "active"
			m.handshakeDue = m.cfg.Now().Add(m.cfg.HandshakeTimeout)
			m.touch(m.cfg.Now())
			m.log.Info("subscription reused", "subscription", st.SubscriptionID, "lastEvent", st.LastEventNumber)
			// What happened while we were away: $status tells, $events fills.
			m.verify(ctx, false)
			return nil
		case err != nil && !errors.Is(err, ErrNotFound):
			return err
		}
	}
	return m.replace(ctx, st, ok && st.SubscriptionID != "")
}

// replace creates a new subscription. With a previous one (gone, failed or
// configured differently) what it may have missed is polled (CatchUp since
// its last event time) and it is deleted, best effort.
func (m *Manager) replace(ctx context.Context, old State, hadOld bool) error {
	ch := make(chan struct{})
	m.mu.Lock()
	m.creating = ch
	m.mu.Unlock()
	t0 := m.cfg.Now()
	id, err := m.createSubscription(ctx)
	m.mu.Lock()
	if err == nil {
		m.subID = id
	}
	m.creating = nil
	m.mu.Unlock()
	close(ch)
	if err != nil {
		return err
	}
	st := State{SubscriptionID: id, Topic: m.cfg.Topic, Endpoint: m.cfg.Endpoint, Payload: m.cfg.Payload, Created: t0, LastEventTime: t0}
	since := old.LastEventTime
	if since.IsZero() {
		since = old.Created
	}
	if hadOld {
		st.LastEventTime = since // until the catch-up below succeeds
		m.bump(func(s *Stats) { s.Recreated++ })
	}
	m.st = st
	m.held, m.gapTo, m.gapDue = map[int64]pending{}, 0, time.Time{}
	m.handshakeSeen = false
	m.handshakeDue = m.cfg.Now().Add(m.cfg.HandshakeTimeout)
	m.touch(m.cfg.Now())
	m.save(ctx)
	m.log.Info("subscription created", "subscription", id, "replaces", old.SubscriptionID)
	if hadOld {
		if old.SubscriptionID != id {
			if err := m.deleteSubscription(ctx, old.SubscriptionID); err != nil && !errors.Is(err, ErrNotFound) {
				m.log.Warn("deleting the old subscription failed", "err", err)
			}
		}
		if err := m.catchUp(ctx, since); err != nil {
			m.log.Warn("catch-up after replacing the subscription failed; retried at the next check", "err", err)
			return nil
		}
		m.st.LastEventTime = t0
		m.save(ctx)
	}
	return nil
}

func (m *Manager) save(ctx context.Context) {
	m.handled.Store(m.st.LastEventNumber)
	if err := m.cfg.State.SaveState(ctx, m.cfg.Practice, m.cfg.Connection, m.st); err != nil {
		m.log.Warn("saving the subscription state failed", "err", err)
	}
}

// ServeHTTP is the notification endpoint: it checks the credentials (the
// channel secret, 401; with HubSecret the X-Hub-Signature over the raw
// body, 401), that the notification names our subscription (404), drops a
// replay (200, unstored), stores the rest raw through the Sink, queues it
// for Run and answers 200. It does no fetching, so it answers in the time
// of the raw store even while Run is busy (a full queue is not waited for).
func (m *Manager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeOutcome(w, http.StatusMethodNotAllowed, "not-supported", "notifications are POSTed")
		return
	}
	if m.cfg.Secret != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+m.cfg.Secret)) != 1 {
		writeOutcome(w, http.StatusUnauthorized, "login", "missing or wrong notification credentials")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, m.cfg.MaxNotificationBytes))
	if err != nil {
		writeOutcome(w, http.StatusRequestEntityTooLarge, "too-long", "the notification is too large or unreadable")
		return
	}
	if m.cfg.HubSecret != "" && !validHubSignature(r.Header.Get(HubSignatureHeader), body, m.cfg.HubSecret) {
		m.bump(func(s *Stats) { s.BadSignatures++ })
		writeOutcome(w, http.StatusUnauthorized, "login", "missing or invalid "+HubSignatureHeader)
		return
	}
	n, err := parseNotification(body, m.base)
	if err != nil {
		writeOutcome(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	id := subscriptionID(n.subRef, m.base)
	if id == "" || id != m.knownID(r.Context()) {
		writeOutcome(w, http.StatusNotFound, "not-found", "unknown subscription")
		return
	}
	if m.isReplay(n) {
		// Acknowledged, so a genuine late redelivery stops; not stored, so
		// a captured notification sent again cannot fill the raw store.
		m.bump(func(s *Stats) { s.Replays++ })
		m.log.Info("stale notification of processed events dropped as a replay", "subscription", id)
		w.WriteHeader(http.StatusOK)
		return
	}
	if err := m.cfg.Sink.Notification(r.Context(), m.cfg.Practice, m.cfg.Connection, body); err != nil {
		m.log.Warn("storing a notification failed", "err", err)
		w.Header().Set("Retry-After", "1")
		writeOutcome(w, http.StatusServiceUnavailable, "transient", "the notification could not be stored")
		return
	}
	m.touch(m.cfg.Now())
	m.bump(func(s *Stats) {
		s.Notifications++
		if n.typ == TypeHeartbeat {
			s.Heartbeats++
		}
	})
	select {
	case m.queue <- n:
	default:
		// Stored raw and acknowledged; Run asks $status what it missed.
		m.mu.Lock()
		m.overflow = true
		m.stats.Overflows++
		m.mu.Unlock()
	}
	w.WriteHeader(http.StatusOK)
}

// validHubSignature checks a WebSub signature header ("sha256=<hex>")
// against the HMAC-SHA256 of body under secret, in constant time.
func validHubSignature(header string, body []byte, secret string) bool {
	method, sig, ok := strings.Cut(strings.TrimSpace(header), "=")
	if !ok || !strings.EqualFold(method, "sha256") {
		return false
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// isReplay reports whether an event notification repeats events already
// processed and is older than the replay window: every event has a
// timestamp before now − ReplayWindow and was handled (its number is at
// or below the last handled, or, numbered per notification, its key was
// seen). A signature covers the body only, so this is what stops a
// captured notification from being accepted again.
func (m *Manager) isReplay(n *notification) bool {
	if n.typ != TypeEventNotification || len(n.events) == 0 {
		return false
	}
	cutoff := m.cfg.Now().Add(-m.cfg.ReplayWindow)
	last := m.handled.Load()
	for _, e := range n.events {
		if e.at.IsZero() || !e.at.Before(cutoff) {
			return false
		}
		if m.numbered() {
			if e.num > last {
				return false
			}
		} else if k := e.key(); k == "" || !m.events.has(k) {
			return false
		}
	}
	return true
}

func (m *Manager) numbered() bool { return m.cfg.EventNumbers != NumbersPerNotification }

// knownID is the subscription id notifications must name. While a create
// is in flight (the EHR may send the handshake before answering it) it
// waits for the create to finish.
func (m *Manager) knownID(ctx context.Context) string {
	m.mu.Lock()
	ch, id := m.creating, m.subID
	m.mu.Unlock()
	if ch == nil {
		return id
	}
	t := time.NewTimer(m.cfg.HandshakeTimeout)
	defer t.Stop()
	select {
	case <-ch:
	case <-ctx.Done():
	case <-t.C:
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.subID
}

func writeOutcome(w http.ResponseWriter, status int, code, msg string) {
	b, _ := json.Marshal(map[string]any{"resourceType": "OperationOutcome",
		"issue": []any{map[string]string{"severity": "error", "code": code, "diagnostics": msg}}})
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// handle processes one notification (Run's goroutine).
func (m *Manager) handle(ctx context.Context, n *notification) {
	if subscriptionID(n.subRef, m.base) != m.st.SubscriptionID {
		return // from a subscription replaced since
	}
	var err error
	switch n.typ {
	case TypeHandshake:
		m.handshakeSeen = true
	case TypeHeartbeat:
		m.handshakeSeen = true
		if n.status == "error" || n.status == "off" {
			err = m.recreate(ctx)
			break
		}
		if m.numbered() {
			m.expect(n.since)
		}
	case TypeEventNotification:
		m.handshakeSeen = true
		if !m.numbered() {
			if err = m.applyUnnumbered(ctx, n.events, n.entries); err != nil {
				m.lost = true
			}
			break
		}
		err = m.apply(ctx, n.events, n.entries)
		if err == nil {
			m.expect(n.since)
		}
	}
	if err != nil && ctx.Err() == nil {
		m.log.Warn("processing a notification failed; recovered at the next heartbeat or check", "type", n.typ, "err", err)
	}
}

// pending is one event with the resource body its notification carried
// (full-resource payloads), if any.
type pending struct {
	ev   event
	body json.RawMessage
}

// resolve pairs events with the resources of their Bundle: several events
// about one resource take its versions in order.
func resolve(evs []event, entries map[string][]json.RawMessage) []pending {
	used := map[string]int{}
	out := make([]pending, 0, len(evs))
	for _, e := range evs {
		p := pending{ev: e}
		if bodies := entries[e.focus]; e.focus != "" && len(bodies) > 0 {
			p.body = bodies[min(used[e.focus], len(bodies)-1)]
			used[e.focus]++
		}
		out = append(out, p)
	}
	return out
}

// maxHeld bounds the events held for a gap; beyond it they are dropped and
// recovered with the gap.
const maxHeld = 10000

// apply hands over events in number order: numbers at or below the last
// handled are duplicates; events after a gap are held until the missing
// ones arrive or the gap is recovered (resolveGap).
func (m *Manager) apply(ctx context.Context, evs []event, entries map[string][]json.RawMessage) error {
	for _, p := range resolve(evs, entries) {
		num := p.ev.num
		if _, dup := m.held[num]; dup || num <= m.st.LastEventNumber {
			m.bump(func(s *Stats) { s.Duplicates++ })
			continue
		}
		m.gapTo = max(m.gapTo, num)
		if len(m.held) < maxHeld {
			m.held[num] = p
		}
	}
	return m.drainHeld(ctx)
}

// drainHeld hands over the held events that continue the last one handled;
// what is left opens (or keeps open) a gap.
func (m *Manager) drainHeld(ctx context.Context) error {
	var run []pending
	for next := m.st.LastEventNumber + 1; ; next++ {
		p, ok := m.held[next]
		if !ok {
			break
		}
		run = append(run, p)
	}
	if len(run) > 0 {
		if err := m.deliverNumbered(ctx, run); err != nil {
			m.openGap() // retried when the gap is recovered
			return err
		}
		for _, p := range run {
			delete(m.held, p.ev.num)
		}
	}
	switch {
	case len(m.held) > 0 || m.gapTo > m.st.LastEventNumber:
		m.openGap()
	case !m.gapDue.IsZero():
		m.gapDue = time.Time{} // the late notifications came
		m.bump(func(s *Stats) { s.Reordered++ })
	}
	return nil
}

// expect notes that the EHR has sent events up to since: beyond the last
// handled, that is a gap.
func (m *Manager) expect(since int64) {
	if since > m.st.LastEventNumber {
		m.gapTo = max(m.gapTo, since)
		m.openGap()
	}
}

// openGap starts the reorder wait of a gap unless one is running.
func (m *Manager) openGap() {
	if m.gapDue.IsZero() {
		m.gapDue = m.cfg.Now().Add(m.cfg.ReorderWait)
		m.bump(func(s *Stats) { s.Gaps++ })
	}
}

// resolveGap runs when a gap's reorder wait is over: the missing events
// (and the held ones) are recovered in one go.
func (m *Manager) resolveGap(ctx context.Context) {
	if m.gapDue.IsZero() || m.cfg.Now().Before(m.gapDue) {
		return
	}
	m.gapDue = time.Time{}
	if err := m.recoverTo(ctx, m.gapTo); err != nil && ctx.Err() == nil {
		m.log.Warn("recovering missed events failed; retried after the reorder wait", "err", err)
		m.openGap()
	}
}

// recoverTo fills the events after the last handled up to `to` (and any
// held beyond it): through $events, else a catch-up poll.
func (m *Manager) recoverTo(ctx context.Context, to int64) error {
	for n := range m.held {
		to = max(to, n)
	}
	m.gapTo = max(m.gapTo, to)
	if to > m.st.LastEventNumber {
		if err := m.fill(ctx, m.st.LastEventNumber+1, to); err != nil {
			return err
		}
	}
	for n := range m.held {
		if n <= m.st.LastEventNumber {
			delete(m.held, n)
		}
	}
	m.gapDue = time.Time{}
	return m.drainHeld(ctx)
}

// deliverNumbered hands over one contiguous run of numbered events and
// advances the state.
func (m *Manager) deliverNumbered(ctx context.Context, run []pending) error {
	if len(run) == 0 {
		return nil
	}
	if err := m.handOver(ctx, run); err != nil {
		return err
	}
	m.st.LastEventNumber = run[len(run)-1].ev.num
	m.bump(func(s *Stats) { s.Events += int64(len(run)) })
	m.save(ctx)
	return nil
}

// applyUnnumbered hands over the events of a notification from an EHR
// that numbers events per notification: an event whose key was handled
// before is a duplicate.
func (m *Manager) applyUnnumbered(ctx context.Context, evs []event, entries map[string][]json.RawMessage) error {
	var fresh []pending
	keys := map[string]bool{}
	for _, p := range resolve(evs, entries) {
		k := p.ev.key()
		if k != "" && (keys[k] || m.events.has(k)) {
			m.bump(func(s *Stats) { s.Duplicates++ })
			continue
		}
		if k != "" {
			keys[k] = true
		}
		fresh = append(fresh, p)
	}
	if len(fresh) == 0 {
		return nil
	}
	if err := m.handOver(ctx, fresh); err != nil {
		return err
	}
	for k := range keys {
		m.events.add(k)
	}
	m.bump(func(s *Stats) { s.Events += int64(len(fresh)) })
	m.save(ctx)
	return nil
}

// handOver reads or takes the events' resources and hands them to the
// Sink, skipping versions handed over already (or older ones), and moves
// the last event time forward.
func (m *Manager) handOver(ctx context.Context, batch []pending) error {
	var rs []Resource
	needCatchUp := false
	read := map[string]bool{} // focus already read in this batch
	for _, p := range batch {
		e := p.ev
		if e.focus == "" {
			needCatchUp = true
			continue
		}
		if p.body != nil {
			r, err := resourceOf(p.body, e.num)
			if err != nil {
				return err
			}
			rs = append(rs, r)
			continue
		}
		if read[e.focus] {
			continue
		}
		read[e.focus] = true
		typ, id, _ := strings.Cut(e.focus, "/")
		res, err := m.cfg.Client.Read(ctx, typ, id)
		if err != nil {
			if fhirrest.KindOf(err) == fhirrest.KindNotFound {
				continue // gone since (deletes are not handed over)
			}
			return fmt.Errorf("subscription: reading a notified %s: %w", typ, err)
		}
		r, err := resourceOf(res.Body, e.num)
		if err != nil {
			return err
		}
		rs = append(rs, r)
	}
	if needCatchUp {
		if err := m.catchUp(ctx, m.st.LastEventTime); err != nil {
			return err
		}
	}
	fresh := rs[:0]
	for _, r := range rs {
		if m.seen.has(r) {
			m.bump(func(s *Stats) { s.Duplicates++ })
			continue
		}
		fresh = append(fresh, r)
	}
	if len(fresh) > 0 {
		if err := m.cfg.Sink.Resources(ctx, m.cfg.Practice, m.cfg.Connection, fresh); err != nil {
			return fmt.Errorf("subscription: sink: %w", err)
		}
		for _, r := range fresh {
			m.seen.add(r)
		}
	}
	for _, p := range batch {
		if p.ev.at.After(m.st.LastEventTime) {
			m.st.LastEventTime = p.ev.at
		}
	}
	return nil
}

// fill recovers the events [from, to]: through $events when the EHR has
// them all, otherwise with a catch-up poll.
func (m *Manager) fill(ctx context.Context, from, to int64) error {
	for from <= to {
		end := min(to, from+m.cfg.MaxEventsPerQuery-1)
		n, err := m.queryEvents(ctx, m.st.SubscriptionID, from, end)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			m.log.Info("$events failed; catching up by polling", "err", err)
			return m.catchUpTo(ctx, to)
		}
		var evs []event
		for _, e := range n.events {
			if e.num >= from && e.num <= end && (len(evs) == 0 || e.num > evs[len(evs)-1].num) {
				evs = append(evs, e)
			}
		}
		if int64(len(evs)) != end-from+1 {
			m.log.Info("$events no longer has every missed event; catching up by polling", "want", end-from+1, "got", len(evs))
			return m.catchUpTo(ctx, to)
		}
		m.bump(func(s *Stats) { s.EventsRecovered += int64(len(evs)) })
		if err := m.deliverNumbered(ctx, resolve(evs, n.entries)); err != nil {
			return err
		}
		from = end + 1
	}
	return nil
}

// catchUpTo asks for a poll since the last event time and counts events up
// to `to` as handled.
func (m *Manager) catchUpTo(ctx context.Context, to int64) error {
	t0 := m.cfg.Now()
	if err := m.catchUp(ctx, m.st.LastEventTime); err != nil {
		return err
	}
	if to > m.st.LastEventNumber {
		m.st.LastEventNumber = to
	}
	if t0.After(m.st.LastEventTime) {
		m.st.LastEventTime = t0
	}
	m.save(ctx)
	return nil
}

func (m *Manager) catchUp(ctx context.Context, since time.Time) error {
	m.bump(func(s *Stats) { s.CatchUps++ })
	if err := m.cfg.Sink.CatchUp(ctx, m.cfg.Practice, m.cfg.Connection, append([]string(nil), m.cfg.Types...), since); err != nil {
		return fmt.Errorf("subscription: catch-up poll: %w", err)
	}
	return nil
}

// check runs from Run's ticker: a missing handshake, a late heartbeat, a
// queue overflow or a lost hand-over makes it ask the EHR; an open gap
// whose wait is over is recovered.
func (m *Manager) check(ctx context.Context) {
	now := m.cfg.Now()
	if !m.handshakeSeen && now.After(m.handshakeDue) {
		rs, err := m.readSubscription(ctx, m.st.SubscriptionID)
		switch {
		case err == nil && rs.Status == "active":
			m.handshakeSeen = true // the handshake was lost, the subscription is fine
		case err == nil && rs.Status == "requested":
			m.handshakeDue = now.Add(m.cfg.HandshakeTimeout)
		case err == nil || errors.Is(err, ErrNotFound):
			if err := m.recreate(ctx); err != nil {
				m.log.Warn("replacing the subscription failed", "err", err)
			}
			return
		default:
			m.log.Warn("reading the subscription failed", "err", err)
		}
	}
	m.resolveGap(ctx)
	m.mu.Lock()
	last, overflow := m.lastContact, m.overflow
	m.overflow = false
	m.mu.Unlock()
	overflow = overflow || m.lost
	late := now.Sub(last) > m.cfg.HeartbeatPeriod+m.cfg.HeartbeatGrace
	if !late && !overflow {
		return
	}
	if late {
		m.bump(func(s *Stats) { s.HeartbeatTimeouts++ })
	}
	m.touch(now) // one look per period while the EHR stays silent
	m.verify(ctx, overflow)
}

// verify asks the EHR what we missed and recovers it. With numbers per
// subscription, $status tells how many events there were ($events then
// fills them) and a failing $status asks for a catch-up poll. With numbers
// per notification there is nothing to count: the Subscription's status
// is read, and notifications known to be unprocessed (overflow, a failed
// hand-over) are covered by a catch-up poll.
func (m *Manager) verify(ctx context.Context, overflow bool) {
	if !m.numbered() {
		rs, err := m.readSubscription(ctx, m.st.SubscriptionID)
		switch {
		case errors.Is(err, ErrNotFound) || err == nil && (rs.Status == "error" || rs.Status == "off"):
			err = m.recreate(ctx)
		case err == nil && overflow:
			if err = m.catchUpTo(ctx, 0); err == nil {
				m.lost = false
			}
		}
		if err != nil && ctx.Err() == nil {
			m.log.Warn("recovery failed; retried at the next check", "err", err)
		}
		return
	}
	n, err := m.queryStatus(ctx, m.st.SubscriptionID)
	switch {
	case errors.Is(err, ErrNotFound):
		err = m.recreate(ctx)
	case err != nil:
		if ctx.Err() != nil {
			return
		}
		m.log.Info("$status failed; catching up by polling", "err", err)
		err = m.catchUpTo(ctx, m.st.LastEventNumber)
	case n.status == "error" || n.status == "off":
		err = m.recreate(ctx)
	case n.since > m.st.LastEventNumber || len(m.held) > 0:
		if n.since > m.st.LastEventNumber {
			m.bump(func(s *Stats) { s.Gaps++ })
		}
		err = m.recoverTo(ctx, n.since)
	}
	if err != nil && ctx.Err() == nil {
		m.log.Warn("recovery failed; retried at the next check", "err", err)
	}
}

func (m *Manager) recreate(ctx context.Context) error {
	m.log.Info("subscription is gone or failed; replacing it", "subscription", m.st.SubscriptionID)
	return m.replace(ctx, m.st, true)
}

// Unsubscribe deletes the subscription on the EHR and forgets it. Call it
// after Run has returned.
func (m *Manager) Unsubscribe(ctx context.Context) error {
	st, ok, err := m.cfg.State.LoadState(ctx, m.cfg.Practice, m.cfg.Connection)
	if err != nil {
		return fmt.Errorf("subscription: loading the state: %w", err)
	}
	if !ok || st.SubscriptionID == "" {
		return nil
	}
	if err := m.deleteSubscription(ctx, st.SubscriptionID); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	st.SubscriptionID = ""
	if err := m.cfg.State.SaveState(ctx, m.cfg.Practice, m.cfg.Connection, st); err != nil {
		return fmt.Errorf("subscription: saving the state: %w", err)
	}
	m.mu.Lock()
	m.subID = ""
	m.mu.Unlock()
	return nil
}

// versionSet remembers the last version handed over per resource
// (bounded, oldest forgotten first).
type versionSet struct {
	max  int
	m    map[string]seenVersion
	keys []string
}

type seenVersion struct {
	id          string
	lastUpdated time.Time
}

func newVersionSet(n int) *versionSet { return &versionSet{max: n, m: map[string]seenVersion{}} }

// has reports whether r's version, or a later one, was handed over
// already: the same versionId, a smaller numeric versionId, or an earlier
// meta.lastUpdated (versionIds that are not numbers).
func (s *versionSet) has(r Resource) bool {
	old, ok := s.m[r.Type+"/"+r.ID]
	if !ok {
		return false
	}
	if r.VersionID != "" && old.id == r.VersionID {
		return true
	}
	a, err1 := strconv.ParseInt(old.id, 10, 64)
	b, err2 := strconv.ParseInt(r.VersionID, 10, 64)
	if err1 == nil && err2 == nil {
		return b <= a
	}
	return !old.lastUpdated.IsZero() && !r.LastUpdated.IsZero() && r.LastUpdated.Before(old.lastUpdated)
}

func (s *versionSet) add(r Resource) {
	if r.VersionID == "" && r.LastUpdated.IsZero() {
		return
	}
	k := r.Type + "/" + r.ID
	if _, ok := s.m[k]; !ok {
		s.keys = append(s.keys, k)
		if len(s.keys) > s.max {
			delete(s.m, s.keys[0])
			s.keys = s.keys[1:]
		}
	}
	s.m[k] = seenVersion{id: r.VersionID, lastUpdated: r.LastUpdated}
}

// keySet remembers the keys of events handled (bounded, oldest forgotten
// first); the handler and Run use it concurrently.
type keySet struct {
	mu   sync.Mutex
	max  int
	m    map[string]struct{}
	keys []string
}

func newKeySet(n int) *keySet { return &keySet{max: n, m: map[string]struct{}{}} }

func (s *keySet) has(k string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[k]
	return ok
}

func (s *keySet) add(k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; ok {
		return
	}
	s.m[k] = struct{}{}
	s.keys = append(s.keys, k)
	if len(s.keys) > s.max {
		delete(s.m, s.keys[0])
		s.keys = s.keys[1:]
	}
}
