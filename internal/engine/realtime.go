package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	gosync "sync"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/connector/subscription"
	"github.com/mediflow/mediflow/internal/dataclass"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/sync"
)

// Real time: each subscription of a connection (config
// practices[].connections[].subscriptions[]) gets a subscription.Manager
// that keeps a FHIR topic-based Subscription on the EHR and receives its
// notifications at /hooks/fhir/{practice}/{connection}/{n}. The engine is
// the Managers' Sink: notifications are stored raw before they are
// answered, changed resources are mapped and written like synced ones
// (an older version never replaces a newer one: deliveries may come out of
// order), and a catch-up request triggers the poll jobs of the classes
// that hold the types. The safety poll of each realtime class keeps
// running at its interval whatever happens to the subscription. With a
// hub_secret, notifications must be signed (X-Hub-Signature); athenahealth
// connections count events per notification and get their ah-practice
// filter added.

// RawSourceSubscription is the RawPayload.Source of subscription notifications.
const RawSourceSubscription = "fhir-subscription"

// hookPrefix is where notification endpoints are served.
const hookPrefix = "/hooks/fhir/"

// realtime holds the subscription Managers of every connection.
type realtime struct {
	e    *Engine
	mu   gosync.Mutex
	subs []*realtimeSub
	// byPath maps "{practice}/{connection}/{n}" to its Manager once Run
	// has built it (the endpoint URL is known only when the engine listens).
	byPath map[string]*subscription.Manager
	// getenv resolves `env:` hub secrets (nil: os.Getenv).
	getenv func(string) string
}

type realtimeSub struct {
	c   *connection
	n   int // 1-based position in the connection's subscriptions
	cfg config.Subscription
}

func (s *realtimeSub) path() string {
	return s.c.practice + "/" + s.c.cfg.Name + "/" + strconv.Itoa(s.n)
}

func newRealtime(e *Engine) *realtime {
	rt := &realtime{e: e, byPath: map[string]*subscription.Manager{}}
	for _, c := range e.conns {
		if !hasRealtime(c.cfg) {
			continue
		}
		for i, sc := range c.cfg.Subscriptions {
			rt.subs = append(rt.subs, &realtimeSub{c: c, n: i + 1, cfg: sc})
		}
	}
	return rt
}

// hasRealtime reports whether a connection has a realtime class.
func hasRealtime(c config.Connection) bool {
	for _, p := range c.Sync {
		if p.Mode == dataclass.ModeRealtime {
			return true
		}
	}
	return false
}

// ServeHTTP serves the notification endpoints.
func (rt *realtime) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.URL.Path, hookPrefix)
	rt.mu.Lock()
	m := rt.byPath[key]
	rt.mu.Unlock()
	if m == nil {
		http.Error(w, "no subscription endpoint here", http.StatusNotFound)
		return
	}
	m.ServeHTTP(w, r)
}

// run builds the Managers with endpoints under base and runs them until ctx
// ends. A Manager that stops with an error is started again after a pause
// (the EHR may be down); the safety polls cover the gap.
func (rt *realtime) run(ctx context.Context, base string) {
	var wg gosync.WaitGroup
	for _, s := range rt.subs {
		m, err := rt.manager(s, base)
		if err != nil {
			rt.e.log.Error("subscription not started", "practice", s.c.practice, "connection", s.c.cfg.Name, "subscription", s.n, "error", err.Error())
			continue
		}
		rt.mu.Lock()
		rt.byPath[s.path()] = m
		rt.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				err := m.Run(ctx)
				if ctx.Err() != nil {
					return
				}
				rt.e.log.Warn("subscription stopped; restarting", "practice", s.c.practice, "connection", s.c.cfg.Name, "subscription", s.n, "error", errString(err))
				select {
				case <-ctx.Done():
					return
				case <-time.After(5 * time.Second):
				}
			}
		}()
	}
	wg.Wait()
}

func errString(err error) string {
	if err == nil {
		return "stopped"
	}
	return err.Error()
}

// manager builds the Manager of one subscription.
func (rt *realtime) manager(s *realtimeSub, base string) (*subscription.Manager, error) {
	secret, err := hookSecret()
	if err != nil {
		return nil, err
	}
	cfg := subscription.Config{
		Practice:        s.c.practice,
		Connection:      s.c.cfg.Name,
		Client:          s.c.client,
		Topic:           s.cfg.Topic,
		Types:           s.cfg.Types,
		Filters:         s.cfg.Filters,
		Payload:         subscription.Payload(s.cfg.Payload),
		HeartbeatPeriod: s.cfg.Heartbeat,
		Endpoint:        strings.TrimRight(base, "/") + hookPrefix + s.path(),
		Secret:          secret,
		Sink:            rt,
		State:           stateStore{st: rt.e.store, n: s.n},
		Logger:          rt.e.log.With("practice", s.c.practice, "connection", s.c.cfg.Name, "subscription", s.n),
		Now:             rt.e.now,
	}
	if s.c.tokens != nil {
		cfg.Tokens = s.c.tokens
	}
	if s.cfg.HubSecret.IsSet() {
		hub, err := s.cfg.HubSecret.Resolve(rt.e.cfg.BaseDir, rt.getenv)
		if err != nil {
			return nil, fmt.Errorf("engine: subscription hub_secret (%s): %w", s.cfg.HubSecret.Source(), err)
		}
		// The signature authenticates notifications; a vendor that signs
		// need not echo channel headers, so no bearer secret is asked for.
		cfg.HubSecret, cfg.Secret = string(hub), ""
	}
	// Vendor deviations come from the vendor profile (athenahealth:
	// events numbered per notification, an ah-practice filter).
	if vp, ok := s.c.profile.(subscriptionProfile); ok {
		if vp.SubscriptionPerNotificationEvents() {
			cfg.EventNumbers = subscription.NumbersPerNotification
		}
		if param, value := vp.SubscriptionFilter(); param != "" && !hasFilter(cfg.Filters, param) {
			cfg.Filters = append(append([]string(nil), cfg.Filters...), param+"="+value)
		}
	}
	return subscription.New(cfg)
}

// subscriptionProfile is what a vendor profile may say about its
// subscriptions (package vendors/athenahealth implements it).
type subscriptionProfile interface {
	SubscriptionPerNotificationEvents() bool
	SubscriptionFilter() (param, value string)
}

// hasFilter reports whether a filter criterion uses the parameter param.
func hasFilter(filters []string, param string) bool {
	for _, f := range filters {
		_, q, ok := strings.Cut(f, "?")
		if !ok {
			q = f
		}
		for _, kv := range strings.Split(q, "&") {
			if k, _, _ := strings.Cut(kv, "="); k == param {
				return true
			}
		}
	}
	return false
}

// hookSecret is a fresh random secret for a subscription's channel header:
// the EHR sends it back on every notification. A restarted engine makes a
// new one and the Manager replaces a subscription whose endpoint or secret
// it no longer has.
func hookSecret() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("engine: subscription secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// stateStore keeps a Manager's state in the store's state documents under
// "subscription/<connection>/<n>".
type stateStore struct {
	st store.Store
	n  int
}

func (s stateStore) key(connection string) string {
	return "subscription/" + connection + "/" + strconv.Itoa(s.n)
}

func (s stateStore) LoadState(ctx context.Context, practice, connection string) (subscription.State, bool, error) {
	raw, err := s.st.GetState(ctx, practice, s.key(connection))
	if errors.Is(err, store.ErrNotFound) {
		return subscription.State{}, false, nil
	}
	if err != nil {
		return subscription.State{}, false, err
	}
	var st subscription.State
	if err := json.Unmarshal(raw, &st); err != nil {
		return subscription.State{}, false, fmt.Errorf("engine: subscription state: %w", err)
	}
	return st, true, nil
}

func (s stateStore) SaveState(ctx context.Context, practice, connection string, st subscription.State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return s.st.PutState(ctx, practice, s.key(connection), b)
}

// Notification stores a notification as received, before it is answered.
func (rt *realtime) Notification(ctx context.Context, practice, connection string, body []byte) error {
	_, err := rt.e.store.PutRaw(ctx, store.RawPayload{
		Practice: practice, Connection: connection, Source: RawSourceSubscription,
		ContentType: "application/fhir+json", FetchedAt: rt.e.now(), Body: body,
	})
	return err
}

// Resources maps and stores changed resources. A resource older than the
// stored version (by meta.lastUpdated) is skipped: notifications may come
// out of order and a late one must not undo a newer change.
func (rt *realtime) Resources(ctx context.Context, practice, connection string, rs []subscription.Resource) error {
	ws := make([]store.ResourceWrite, 0, len(rs))
	for _, r := range rs {
		if len(r.Body) == 0 {
			continue
		}
		cur, err := rt.e.store.GetResource(ctx, practice, r.Type, r.ID)
		switch {
		case err == nil:
			if !cur.SourceLastUpdated.IsZero() && !r.LastUpdated.IsZero() && r.LastUpdated.Before(cur.SourceLastUpdated) {
				continue
			}
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		body, err := rt.e.mapper.Map(ctx, practice, connection, r.Type, r.Body)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// Cannot be mapped: kept raw (the notification), reported, and
			// not retried (it would fail again).
			rt.e.log.Warn("subscription resource not mapped", "practice", practice, "connection", connection, "type", r.Type, "error", err.Error())
			rt.e.metrics.SyncError("mapping")
			continue
		}
		ws = append(ws, store.ResourceWrite{ResourceType: r.Type, ID: r.ID, SourceVersionID: r.VersionID,
			SourceLastUpdated: r.LastUpdated, Connection: connection, Body: body})
	}
	if len(ws) == 0 {
		return nil
	}
	res, err := rt.e.store.WriteResources(ctx, practice, ws)
	if err != nil {
		return err
	}
	readable := time.Now()
	for i, r := range res {
		if r.Outcome == store.Unchanged {
			continue
		}
		if cl, ok := dataclass.ForResourceType(ws[i].ResourceType); ok {
			rt.e.fresh.Observe(practice, cl.Name, ws[i].SourceLastUpdated, readable)
		}
		rt.e.metrics.ResourcesSynced(practice, ws[i].ResourceType, outcomeLabel(r.Outcome), 1)
	}
	rt.e.notifyWrites(practice)
	return nil
}

func outcomeLabel(o store.Outcome) string {
	if o == store.Created {
		return "new"
	}
	return "changed"
}

// CatchUp triggers the poll jobs of the connection's classes that hold the
// types; the scheduler coalesces them with runs already pending.
func (rt *realtime) CatchUp(ctx context.Context, practice, conn string, types []string, since time.Time) error {
	var c *connection
	for _, x := range rt.e.conns {
		if x.practice == practice && x.cfg.Name == conn {
			c = x
		}
	}
	if c == nil {
		return fmt.Errorf("engine: catch-up for unknown connection %s/%s", practice, conn)
	}
	var errs []error
	for _, pol := range c.cfg.Sync {
		cl, ok := dataclass.Lookup(pol.Class)
		if !ok {
			continue
		}
		for _, t := range types {
			if cl.Optional(t) || containsType(cl.ResourceTypes, t) {
				if err := rt.e.sched.Trigger(jobName(c, cl.Name)); err != nil && !errors.Is(err, sync.ErrUnknownJob) {
					errs = append(errs, err)
				}
				break
			}
		}
	}
	return errors.Join(errs...)
}

func containsType(ts []string, t string) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// listenBase is the base URL notifications are sent to: the configured
// public URL, else the address the engine listens on.
func listenBase(cfg *config.Config, ln net.Listener) string {
	if cfg.Server.PublicURL != "" {
		return cfg.Server.PublicURL
	}
	return "http://" + ln.Addr().String()
}

// notifyWrites tells the parts that follow the change feed (webhook
// delivery) that a practice has new changes.
func (e *Engine) notifyWrites(practice string) {
	if e.onWrite != nil {
		e.onWrite(practice)
	}
}
