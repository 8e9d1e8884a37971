// Package subscription keeps one EHR connection fresh in real time through
// a FHIR R4 topic-based Subscription (the Subscriptions R5 Backport IG) over
// rest-hook: it creates or reuses the Subscription, serves the notification
// endpoint, tracks event numbers and heartbeats, detects missed
// notifications and recovers them ($events, then $status, then a catch-up
// poll the engine runs), and hands what changed to the engine's Sink.
//
// A Manager serves one connection. Mount it (an http.Handler) at the URL
// given as Config.Endpoint and run Run in a goroutine the engine owns. The
// handler only checks the notification, stores it raw through the Sink and
// queues it; all fetching happens in Run's goroutine.
package subscription

import (
	"context"
	"crypto/subtle"
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

	// Owned by Run's goroutine.
	st            State
	handshakeSeen bool
	handshakeDue  time.Time
	seen          *versionSet
	readyClosed   bool
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
		cfg:   cfg,
		base:  cfg.Client.BaseURL(),
		log:   cfg.Logger.With("practice", cfg.Practice, "connection", cfg.Connection),
		queue: make(chan *notification, cfg.QueueSize),
		ready: make(chan struct{}),
		seen:  newVersionSet(50000),
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
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case n := <-m.queue:
			m.handle(ctx, n)
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
			m.mu.Lock()
			m.subID = st.SubscriptionID
			m.mu.Unlock()
			m.handshakeSeen = rs.Status == "active"
			m.handshakeDue = m.cfg.Now().Add(m.cfg.HandshakeTimeout)
			m.touch(m.cfg.Now())
			m.log.Info("subscription reused", "subscription", st.SubscriptionID, "lastEvent", st.LastEventNumber)
			// What happened while we were away: $status tells, $events fills.
			m.verify(ctx)
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
	if err := m.cfg.State.SaveState(ctx, m.cfg.Practice, m.cfg.Connection, m.st); err != nil {
		m.log.Warn("saving the subscription state failed", "err", err)
	}
}

// ServeHTTP is the notification endpoint: it checks the notification names
// our subscription (404 otherwise), stores it raw through the Sink, queues
// it for Run and answers 200. It does no fetching.
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
		if n.since > m.st.LastEventNumber {
			m.bump(func(s *Stats) { s.Gaps++ })
			err = m.fill(ctx, m.st.LastEventNumber+1, n.since)
		}
	case TypeEventNotification:
		m.handshakeSeen = true
		err = m.apply(ctx, n.events, n.entries)
		if err == nil && n.since > m.st.LastEventNumber {
			m.bump(func(s *Stats) { s.Gaps++ })
			err = m.fill(ctx, m.st.LastEventNumber+1, n.since)
		}
	}
	if err != nil && ctx.Err() == nil {
		m.log.Warn("processing a notification failed; recovered at the next heartbeat or check", "type", n.typ, "err", err)
	}
}

// apply hands over events in order: duplicates are skipped, a jump in event
// numbers is filled first.
func (m *Manager) apply(ctx context.Context, evs []event, entries map[string][]json.RawMessage) error {
	var batch []event
	next := m.st.LastEventNumber + 1
	for _, e := range evs {
		if e.num < next {
			m.bump(func(s *Stats) { s.Duplicates++ })
			continue
		}
		if e.num > next {
			if err := m.deliver(ctx, batch, entries); err != nil {
				return err
			}
			batch = nil
			m.bump(func(s *Stats) { s.Gaps++ })
			if err := m.fill(ctx, next, e.num-1); err != nil {
				return err
			}
			if next = m.st.LastEventNumber + 1; e.num < next {
				continue
			}
		}
		batch = append(batch, e)
		next = e.num + 1
	}
	return m.deliver(ctx, batch, entries)
}

// deliver hands one contiguous run of events to the Sink and advances the state.
func (m *Manager) deliver(ctx context.Context, batch []event, entries map[string][]json.RawMessage) error {
	if len(batch) == 0 {
		return nil
	}
	var rs []Resource
	needCatchUp := false
	used := map[string]int{}  // focus → bodies used (several versions in one Bundle)
	read := map[string]bool{} // focus already read in this batch
	for _, e := range batch {
		if e.focus == "" {
			needCatchUp = true
			continue
		}
		if bodies := entries[e.focus]; len(bodies) > 0 {
			i := min(used[e.focus], len(bodies)-1)
			used[e.focus]++
			r, err := resourceOf(bodies[i], e.num)
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
	for _, e := range batch {
		if e.at.After(m.st.LastEventTime) {
			m.st.LastEventTime = e.at
		}
	}
	m.st.LastEventNumber = batch[len(batch)-1].num
	m.bump(func(s *Stats) { s.Events += int64(len(batch)) })
	m.save(ctx)
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
		if err := m.deliver(ctx, evs, n.entries); err != nil {
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

// check runs from Run's ticker: a missing handshake, a late heartbeat or a
// queue overflow makes it ask the EHR.
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
	m.mu.Lock()
	last, overflow := m.lastContact, m.overflow
	m.overflow = false
	m.mu.Unlock()
	late := now.Sub(last) > m.cfg.HeartbeatPeriod+m.cfg.HeartbeatGrace
	if !late && !overflow {
		return
	}
	if late {
		m.bump(func(s *Stats) { s.HeartbeatTimeouts++ })
	}
	m.touch(now) // one look per period while the EHR stays silent
	m.verify(ctx)
}

// verify asks $status what we missed and recovers it; when $status fails
// it asks for a catch-up poll.
func (m *Manager) verify(ctx context.Context) {
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
	case n.since > m.st.LastEventNumber:
		m.bump(func(s *Stats) { s.Gaps++ })
		err = m.fill(ctx, m.st.LastEventNumber+1, n.since)
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

// versionSet remembers the last version handed over per resource (bounded,
// oldest forgotten first).
type versionSet struct {
	max  int
	m    map[string]string
	keys []string
}

func newVersionSet(n int) *versionSet { return &versionSet{max: n, m: map[string]string{}} }

// has reports whether r's version (or a later one) was handed over already.
func (s *versionSet) has(r Resource) bool {
	if r.VersionID == "" {
		return false
	}
	old, ok := s.m[r.Type+"/"+r.ID]
	if !ok {
		return false
	}
	if old == r.VersionID {
		return true
	}
	a, err1 := strconv.ParseInt(old, 10, 64)
	b, err2 := strconv.ParseInt(r.VersionID, 10, 64)
	return err1 == nil && err2 == nil && b <= a
}

func (s *versionSet) add(r Resource) {
	if r.VersionID == "" {
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
	s.m[k] = r.VersionID
}
