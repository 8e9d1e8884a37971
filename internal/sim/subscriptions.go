package sim

// Topic-based Subscriptions as the FHIR R4 Subscriptions R5 Backport IG
// defines them (http://hl7.org/fhir/uv/subscriptions-backport/), over
// rest-hook: create, read, search and delete Subscription, a handshake on
// create, event notifications in the subscription's payload mode (empty,
// id-only, full-resource) with a per-subscription event number, heartbeats
// while idle, $status and $events over a bounded per-subscription event log.
// Every write to the tenant's store (change generator, write API, Sim.Put)
// reaches the subscriptions through the store's write hook. Each
// subscription has one delivery goroutine owned by the tenant's hub; the
// Sim stops them all with StopSubscriptions.
//
// A flavour may deviate from the IG (flavor.Subscriptions): athenahealth
// signs notifications with X-Hub-Signature, numbers events per
// notification and sends the SubscriptionStatus as a resource. For tests,
// SubscriptionOptions can make delivery at-least-once (Duplicates) and
// unordered (Shuffle) with any flavour.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/fhir/searchparam"
	"github.com/mediflow/mediflow/internal/sim/fault"
	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/sim/simstore"
	"github.com/mediflow/mediflow/internal/smart/authserver"
)

// The topics the simulator serves (SubscriptionTopic canonical URLs) and
// the resource types whose every create or update is an event of the topic.
const (
	TopicAppointmentChange = "http://mediflow.dev/topic/appointment-change"
	TopicPatientChange     = "http://mediflow.dev/topic/patient-change"
	TopicEncounterChange   = "http://mediflow.dev/topic/encounter-change"
)

// SubscriptionTopics returns topic → resource types for every topic the
// simulator knows (a tenant serves those whose types its flavour serves).
func SubscriptionTopics() map[string][]string {
	return map[string][]string{
		TopicAppointmentChange: {"Appointment"},
		TopicPatientChange:     {"Patient"},
		TopicEncounterChange:   {"Encounter"},
	}
}

// Canonical URLs of the Subscriptions Backport IG.
const (
	backportSD            = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
	extFilterCriteria     = backportSD + "backport-filter-criteria"
	extHeartbeatPeriod    = backportSD + "backport-heartbeat-period"
	extTimeout            = backportSD + "backport-timeout"
	extMaxCount           = backportSD + "backport-max-count"
	extPayloadContent     = backportSD + "backport-payload-content"
	extTopicCanonical     = backportSD + "capabilitystatement-subscriptiontopic-canonical"
	profileSubscription   = backportSD + "backport-subscription"
	profileNotification   = backportSD + "backport-subscription-notification-r4"
	profileStatus         = backportSD + "backport-subscription-status-r4"
	backportCapability    = "http://hl7.org/fhir/uv/subscriptions-backport/CapabilityStatement/backport-subscription-server-r4"
	backportStatusOpDef   = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"
	backportEventsOpDef   = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events"
	subscriptionType      = "Subscription"
	defaultSubEventLog    = 1000
	defaultSubRetries     = 2
	defaultSubTimeoutSecs = 10
)

// Payload content codes (backport-content-value-set).
const (
	ContentEmpty        = "empty"
	ContentIDOnly       = "id-only"
	ContentFullResource = "full-resource"
)

// SubscriptionOptions tune a tenant's subscriptions; the zero value gives the defaults.
type SubscriptionOptions struct {
	// TimeUnit is the real duration one second of heartbeatPeriod and
	// timeout stands for (default 1s): tests shorten it to get heartbeats
	// every few milliseconds.
	TimeUnit time.Duration
	// EventLog is how many recent events each subscription keeps for $events
	// (default 1000); older events are no longer retrievable.
	EventLog int
	// NoEventsOperation makes $events answer 405 (not supported), like a
	// server without the operation.
	NoEventsOperation bool
	// Retries is how many times a failed delivery is retried before the
	// subscription goes to status error (default 2; negative: none).
	Retries int
	// Duplicates is the probability (0..1) that an event notification,
	// once delivered, is delivered again — the same bytes — later in the
	// same burst (at-least-once delivery).
	Duplicates float64
	// Shuffle is the probability (0..1) that an event notification is held
	// back and sent after the newer ones of the same burst (unordered
	// delivery). Held notifications go out newest first once the
	// subscription has nothing else pending. The random choices follow the
	// tenant's seed.
	Shuffle float64
}

// HubSecretHeader is the request header of a Subscription create that
// carries the secret notifications are signed with, where the flavour
// signs (athenahealth's Event Subscription Platform takes it this way).
const HubSecretHeader = "X-Hub-Secret"

// HubSignatureHeader is the notification header carrying the signature:
// "sha256=" and the hex HMAC-SHA256 of the body under the secret.
const HubSignatureHeader = "X-Hub-Signature"

// SetSubscriptionOptions sets a tenant's subscription options; they apply
// to subscriptions created afterwards (EventLog, NoEventsOperation and
// Retries also to existing ones).
func (s *Sim) SetSubscriptionOptions(tenantID string, o SubscriptionOptions) error {
	t, err := s.tenant(tenantID)
	if err != nil {
		return err
	}
	t.subs.mu.Lock()
	t.subs.opts = o
	t.subs.mu.Unlock()
	return nil
}

// SubscriptionStatus is the simulator's view of one subscription (for tests and tools).
type SubscriptionStatus struct {
	ID       string
	Topic    string
	Status   string // requested | active | error | off
	Events   int64  // events since subscription start
	Endpoint string
	// Signed reports whether notifications carry X-Hub-Signature.
	Signed bool
	// Duplicated and HeldBack count event notifications sent twice and
	// sent out of order (SubscriptionOptions.Duplicates and Shuffle).
	Duplicated, HeldBack int64
}

// Subscriptions lists a tenant's subscriptions, oldest first.
func (s *Sim) Subscriptions(tenantID string) []SubscriptionStatus {
	t, ok := s.tenants[tenantID]
	if !ok {
		return nil
	}
	var out []SubscriptionStatus
	for _, sub := range t.subs.list() {
		sub.mu.Lock()
		out = append(out, SubscriptionStatus{ID: sub.id, Topic: sub.topic, Status: sub.status, Events: sub.count, Endpoint: sub.endpoint,
			Signed: sub.hubSecret != nil, Duplicated: sub.duplicated, HeldBack: sub.heldBack})
		sub.mu.Unlock()
	}
	return out
}

// StopSubscriptions stops every subscription's delivery goroutine in every
// tenant and waits for them; afterwards creating a subscription fails (503).
// Call it when the simulator is no longer needed.
func (s *Sim) StopSubscriptions() {
	for _, id := range s.order {
		s.tenants[id].subs.close()
	}
}

// subHub is a tenant's subscriptions. Its zero value is ready: the store
// hook and the delivery context are set up on the first create.
//
// Lock order: the store's lock (held while the write hook runs) → hub.mu →
// simSub.mu. Nothing here calls into the store while holding hub.mu or a
// simSub.mu.
type subHub struct {
	hookOnce sync.Once

	mu     sync.Mutex
	opts   SubscriptionOptions
	subs   map[string]*simSub
	order  []string
	ctx    context.Context
	cancel context.CancelFunc
	closed bool
	wg     sync.WaitGroup
}

func (h *subHub) options() SubscriptionOptions {
	h.mu.Lock()
	defer h.mu.Unlock()
	o := h.opts
	if o.TimeUnit <= 0 {
		o.TimeUnit = time.Second
	}
	if o.EventLog <= 0 {
		o.EventLog = defaultSubEventLog
	}
	if o.Retries == 0 {
		o.Retries = defaultSubRetries
	} else if o.Retries < 0 {
		o.Retries = 0
	}
	return o
}

func (h *subHub) list() []*simSub {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*simSub, 0, len(h.order))
	for _, id := range h.order {
		out = append(out, h.subs[id])
	}
	return out
}

func (h *subHub) get(id string) (*simSub, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.subs[id]
	return s, ok
}

func (h *subHub) close() {
	h.mu.Lock()
	h.closed = true
	if h.cancel != nil {
		h.cancel()
	}
	for _, s := range h.subs {
		s.halt()
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// simSub is one subscription.
type simSub struct {
	id        string
	topic     string
	types     []string
	filters   map[string][]*criteria // per resource type, ANDed
	endpoint  string
	headers   []string // "Name: value"
	content   string
	heartbeat time.Duration // 0: none
	timeout   time.Duration
	maxCount  int
	raw       []byte // the stored resource, rendered with the current status on read
	created   time.Time
	hubSecret []byte // non-nil: notifications are signed (X-Hub-Signature)
	seq       uint64 // creation order in the tenant: seeds the delivery's random choices
	// practiceNamed: a filter named the practice (flavours with a
	// PracticeFilter); set while parsing.
	practiceNamed bool

	wake chan struct{} // cap 1: new pending events
	stop chan struct{} // closed by halt

	mu      sync.Mutex
	status  string
	errText string
	count   int64      // events since subscription start
	log     []subEvent // the most recent events, oldest first
	pending []subEvent // events not yet handed to delivery
	halted  bool
	// duplicated and heldBack count deliveries made twice or out of order.
	duplicated, heldBack int64
}

type subEvent struct {
	num int64
	at  time.Time
	v   *simstore.Version
}

func (s *simSub) halt() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.halted {
		s.halted = true
		close(s.stop)
	}
}

func (s *simSub) setStatus(status, errText string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status == "error" && status == "active" {
		return
	}
	s.status, s.errText = status, errText
	if status != "active" && status != "requested" {
		s.pending = nil
	}
}

func (s *simSub) matches(v *simstore.Version) bool {
	for _, c := range s.filters[v.ResourceType] {
		if !c.match(v) {
			return false
		}
	}
	return true
}

// record counts an event, keeps it in the log and queues it for delivery
// while the subscription is requested or active.
func (s *simSub) record(v *simstore.Version, logSize int) {
	s.mu.Lock()
	if s.halted || s.status == "off" {
		s.mu.Unlock()
		return
	}
	s.count++
	e := subEvent{num: s.count, at: v.LastUpdated, v: v}
	s.log = appendBounded(s.log, e, logSize)
	queued := false
	if s.status == "requested" || s.status == "active" {
		s.pending = appendBounded(s.pending, e, logSize)
		queued = true
	}
	s.mu.Unlock()
	if queued {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// appendBounded appends e and keeps the last n elements (copying down only
// now and then, so appends stay amortized O(1)).
func appendBounded(xs []subEvent, e subEvent, n int) []subEvent {
	xs = append(xs, e)
	if len(xs) > 2*n {
		xs = append(xs[:0:0], xs[len(xs)-n:]...)
	}
	return xs
}

func tail(xs []subEvent, n int) []subEvent {
	if len(xs) > n {
		return xs[len(xs)-n:]
	}
	return xs
}

// take removes up to n pending events.
func (s *simSub) take(n int) []subEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return nil
	}
	n = min(n, len(s.pending))
	out := append([]subEvent(nil), s.pending[:n]...)
	s.pending = s.pending[n:]
	if len(s.pending) == 0 {
		s.pending = nil
	}
	return out
}

// onWrite is the store's write hook: it runs with the store's lock held,
// in write order, so each subscription numbers its events in write order.
func (t *tenant) subscriptionsOnWrite(v *simstore.Version, _ bool) {
	h := &t.subs
	h.mu.Lock()
	if len(h.subs) == 0 {
		h.mu.Unlock()
		return
	}
	var hit []*simSub
	for _, id := range h.order {
		s := h.subs[id]
		for _, rt := range s.types {
			if rt == v.ResourceType {
				hit = append(hit, s)
				break
			}
		}
	}
	logSize := h.opts.EventLog
	h.mu.Unlock()
	if logSize <= 0 {
		logSize = defaultSubEventLog
	}
	for _, s := range hit {
		if s.matches(v) {
			s.record(v, logSize)
		}
	}
}

// isSubscriptionPath reports whether a FHIR path (relative to the base)
// addresses Subscription.
func isSubscriptionPath(p string) bool {
	return p == subscriptionType || strings.HasPrefix(p, subscriptionType+"/")
}

// serveSubscription serves [base]/Subscription[/{id}[/$status|$events]].
func (t *tenant) serveSubscription(w http.ResponseWriter, r *http.Request, p string) {
	parts := strings.Split(p, "/")
	var op byte
	var handle func()
	allow := ""
	switch {
	case len(parts) == 1:
		allow = "GET, POST"
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			op, handle = 's', func() { t.searchSubscriptions(w, r) }
		case http.MethodPost:
			op, handle = 'c', func() { t.createSubscription(w, r) }
		}
	case len(parts) == 2 && validID(parts[1]):
		allow = "GET, DELETE"
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			op, handle = 'r', func() { t.readSubscription(w, r, parts[1]) }
		case http.MethodDelete:
			op, handle = 'd', func() { t.deleteSubscription(w, parts[1]) }
		}
	case len(parts) == 3 && validID(parts[1]) && (parts[2] == "$status" || parts[2] == "$events"):
		allow = "GET"
		if r.Method == http.MethodGet {
			if parts[2] == "$status" {
				op, handle = 'r', func() { t.serveSubscriptionStatus(w, parts[1]) }
			} else {
				op, handle = 'r', func() { t.serveSubscriptionEvents(w, r, parts[1]) }
			}
		}
	default:
		t.problem(w, flavor.Problem{Kind: flavor.NotFound, Diagnostics: "no such endpoint"}, nil)
		return
	}
	if handle == nil {
		t.problem(w, flavor.Problem{Kind: flavor.MethodNotAllowed, Diagnostics: r.Method + " is not allowed here"}, map[string]string{"Allow": allow})
		return
	}
	if !t.applyFaults(w, r, fault.Request{Endpoint: subscriptionType}, nil) {
		return
	}
	if !acceptsJSON(r) {
		t.problem(w, flavor.Problem{Kind: flavor.NotAcceptable, Diagnostics: "only JSON (application/fhir+json) is supported"}, nil)
		return
	}
	if !t.cfg.OpenAuth {
		if _, err := t.auth.Authenticate(r, subscriptionType, op); err != nil {
			kind, hdr := flavor.Unauthorized, map[string]string{}
			var ae *authserver.AuthError
			if errors.As(err, &ae) {
				if ae.Status == http.StatusForbidden {
					kind = flavor.Forbidden
				}
				hdr["WWW-Authenticate"] = ae.WWWAuthenticate()
			}
			t.problem(w, flavor.Problem{Kind: kind, Diagnostics: err.Error()}, hdr)
			return
		}
	}
	handle()
}

// subscriptionJSON is what the simulator reads of a posted Subscription.
type subscriptionJSON struct {
	ResourceType string   `json:"resourceType"`
	Criteria     string   `json:"criteria"`
	CriteriaExt  *extHost `json:"_criteria"`
	Channel      struct {
		Extension  []extJSON `json:"extension"`
		Type       string    `json:"type"`
		Endpoint   string    `json:"endpoint"`
		Payload    string    `json:"payload"`
		PayloadExt *extHost  `json:"_payload"`
		Header     []string  `json:"header"`
	} `json:"channel"`
}

type extHost struct {
	Extension []extJSON `json:"extension"`
}

type extJSON struct {
	URL              string       `json:"url"`
	ValueString      string       `json:"valueString"`
	ValueCode        string       `json:"valueCode"`
	ValueUnsignedInt *json.Number `json:"valueUnsignedInt"`
	ValuePositiveInt *json.Number `json:"valuePositiveInt"`
}

func extInt(e extJSON) (int, bool) {
	n := e.ValueUnsignedInt
	if n == nil {
		n = e.ValuePositiveInt
	}
	if n == nil {
		return 0, false
	}
	v, err := strconv.Atoi(n.String())
	return v, err == nil && v >= 0
}

func unprocessable(msg string) flavor.Problem {
	return flavor.Problem{Kind: flavor.Unprocessable, Diagnostics: msg}
}

// parseSubscription checks a posted Subscription against the backport
// profile and what the simulator supports.
func (t *tenant) parseSubscription(body []byte, opts SubscriptionOptions) (*simSub, *flavor.Problem) {
	var in subscriptionJSON
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, badRequest("the body is not a Subscription in JSON")
	}
	if in.ResourceType != subscriptionType {
		return nil, badRequest("the body's resourceType must be Subscription")
	}
	types, ok := SubscriptionTopics()[in.Criteria]
	if !ok {
		p := unprocessable("Subscription.criteria must be the canonical URL of a topic this server supports (topic-based subscriptions only)")
		return nil, &p
	}
	for _, rt := range types {
		if !t.info.Serves(rt) {
			p := unprocessable("this server does not serve the topic's resource type " + rt)
			return nil, &p
		}
	}
	s := &simSub{
		topic: in.Criteria, types: types, filters: map[string][]*criteria{},
		content: ContentEmpty, timeout: defaultSubTimeoutSecs * opts.TimeUnit, maxCount: 1,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), status: "requested",
	}
	if in.CriteriaExt != nil {
		for _, e := range in.CriteriaExt.Extension {
			if e.URL != extFilterCriteria {
				continue
			}
			if prob := t.addFilter(s, e.ValueString); prob != nil {
				return nil, prob
			}
		}
	}
	ch := in.Channel
	if ch.Type != "rest-hook" {
		p := unprocessable("Subscription.channel.type must be rest-hook")
		return nil, &p
	}
	u, err := url.Parse(ch.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p := unprocessable("Subscription.channel.endpoint must be an absolute http(s) URL")
		return nil, &p
	}
	s.endpoint = ch.Endpoint
	if mt := strings.TrimSpace(strings.Split(ch.Payload, ";")[0]); mt != "" && mt != "application/fhir+json" && mt != "application/json" {
		p := unprocessable("Subscription.channel.payload must be application/fhir+json")
		return nil, &p
	}
	if ch.PayloadExt != nil {
		for _, e := range ch.PayloadExt.Extension {
			if e.URL != extPayloadContent {
				continue
			}
			switch e.ValueCode {
			case ContentEmpty, ContentIDOnly, ContentFullResource:
				s.content = e.ValueCode
			default:
				p := unprocessable("the payload content must be empty, id-only or full-resource")
				return nil, &p
			}
		}
	}
	if ps := t.info.Subscriptions.Payloads; len(ps) > 0 && !slices.Contains(ps, s.content) {
		p := unprocessable("this server sends only these payload contents: " + strings.Join(ps, ", "))
		return nil, &p
	}
	if pf := t.info.Subscriptions.PracticeFilter; pf != "" && !s.practiceNamed {
		p := unprocessable("a backport-filter-criteria must name the practice: " + pf + "=" + t.info.Subscriptions.PracticeValue)
		return nil, &p
	}
	for _, h := range ch.Header {
		name, _, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" || strings.ContainsAny(h, "\r\n") {
			p := unprocessable("each Subscription.channel.header must look like \"Name: value\"")
			return nil, &p
		}
		s.headers = append(s.headers, h)
	}
	for _, e := range ch.Extension {
		n, ok := extInt(e)
		switch e.URL {
		case extHeartbeatPeriod:
			if !ok {
				p := unprocessable("heartbeatPeriod must be an unsignedInt")
				return nil, &p
			}
			s.heartbeat = time.Duration(n) * opts.TimeUnit
		case extTimeout:
			if !ok || n == 0 {
				p := unprocessable("timeout must be a positive number of seconds")
				return nil, &p
			}
			s.timeout = time.Duration(n) * opts.TimeUnit
		case extMaxCount:
			if !ok || n == 0 {
				p := unprocessable("maxCount must be a positiveInt")
				return nil, &p
			}
			s.maxCount = n
		}
	}
	return s, nil
}

// addFilter parses one backport filter criterion, "Type?param=value&..."
// (or "param=value" for every type of the topic), with the same search
// parameters as the tenant's search.
func (t *tenant) addFilter(s *simSub, f string) *flavor.Problem {
	rt, query, hasType := strings.Cut(f, "?")
	if !hasType {
		rt, query = "", f
	}
	types := s.types
	if rt != "" {
		found := false
		for _, x := range s.types {
			found = found || x == rt
		}
		if !found {
			p := unprocessable("a filter criterion names a resource type outside the topic")
			return &p
		}
		types = []string{rt}
	}
	q, err := url.ParseQuery(query)
	if err != nil || len(q) == 0 {
		p := unprocessable("a filter criterion must look like Type?param=value")
		return &p
	}
	if pf := t.info.Subscriptions.PracticeFilter; pf != "" && q.Has(pf) {
		if len(q[pf]) != 1 || q.Get(pf) != t.info.Subscriptions.PracticeValue {
			p := unprocessable(pf + " does not name a practice this client may subscribe to")
			return &p
		}
		s.practiceNamed = true
		if q.Del(pf); len(q) == 0 {
			return nil
		}
	}
	for _, typ := range types {
		qc := url.Values{}
		for k, v := range q {
			qc[k] = append([]string(nil), v...)
		}
		params, _, prob := t.parseSearch(typ, qc, false)
		if prob != nil {
			p := unprocessable("filter criterion: " + prob.Diagnostics)
			return &p
		}
		c := &criteria{rt: typ}
		for _, sp := range params {
			cr, err := searchparam.Compile(typ, sp)
			if err != nil {
				p := unprocessable("filter criterion: " + err.Error())
				return &p
			}
			c.crit = append(c.crit, cr)
		}
		s.filters[typ] = append(s.filters[typ], c)
	}
	return nil
}

func (t *tenant) createSubscription(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.Contains(ct, "json") {
		t.problem(w, flavor.Problem{Kind: flavor.UnsupportedMedia, Diagnostics: "send application/fhir+json"}, nil)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		t.problem(w, *badRequest("cannot read the request body"), nil)
		return
	}
	h := &t.subs
	opts := h.options()
	s, prob := t.parseSubscription(body, opts)
	if prob != nil {
		t.problem(w, *prob, nil)
		return
	}
	if t.info.Subscriptions.HubSignature {
		if v := r.Header.Get(HubSecretHeader); v != "" {
			s.hubSecret = []byte(v)
		}
	}
	obj, err := gen.ParseObj(body)
	if err != nil {
		t.problem(w, *badRequest("the body is not a JSON object"), nil)
		return
	}
	s.id = "sub-" + randomHex(8)
	s.created = t.store.Now()
	obj.Delete("id")
	obj.Delete("meta")
	obj.SetAfter("resourceType", "id", s.id)
	obj.SetAfter("id", "meta", gen.O("versionId", "1", "lastUpdated", fhir.FormatInstant(s.created), "profile", gen.A(profileSubscription)))
	obj.Delete("error")
	if s.raw, err = obj.Bytes(); err != nil {
		t.problem(w, flavor.Problem{Kind: flavor.ServerError, Diagnostics: "cannot store the Subscription"}, nil)
		return
	}
	h.hookOnce.Do(func() { t.store.SetOnWrite(t.subscriptionsOnWrite) })
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		t.problem(w, flavor.Problem{Kind: flavor.Unavailable, Diagnostics: "subscriptions are stopped"}, nil)
		return
	}
	if h.ctx == nil {
		h.ctx, h.cancel = context.WithCancel(context.Background())
	}
	if h.subs == nil {
		h.subs = map[string]*simSub{}
	}
	h.subs[s.id] = s
	h.order = append(h.order, s.id)
	s.seq = uint64(len(h.order))
	ctx := h.ctx
	h.wg.Add(1)
	h.mu.Unlock()
	created, err := s.render() // status requested: the handshake may finish before we answer
	go func() {
		defer h.wg.Done()
		t.deliverLoop(ctx, s)
	}()
	if err != nil {
		t.problem(w, flavor.Problem{Kind: flavor.ServerError, Diagnostics: "cannot render the Subscription"}, nil)
		return
	}
	w.Header().Set("Location", t.sim.baseURL(t)+"/Subscription/"+s.id+"/_history/1")
	w.Header().Set("Content-Type", fhirJSON)
	w.Header().Set("ETag", `W/"1"`)
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(created)
}

// render returns the stored resource with the current status (and error).
func (s *simSub) render() ([]byte, error) {
	obj, err := gen.ParseObj(s.raw)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	status, errText := s.status, s.errText
	s.mu.Unlock()
	obj.Set("status", status)
	if errText != "" {
		obj.SetAfter("status", "error", errText)
	}
	return obj.Bytes()
}

func (t *tenant) writeSubscription(w http.ResponseWriter, r *http.Request, status int, s *simSub) {
	b, err := s.render()
	if err != nil {
		t.problem(w, flavor.Problem{Kind: flavor.ServerError, Diagnostics: "cannot render the Subscription"}, nil)
		return
	}
	w.Header().Set("Content-Type", fhirJSON)
	w.Header().Set("ETag", `W/"1"`)
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

func (t *tenant) subscriptionNotFound(w http.ResponseWriter) {
	t.problem(w, flavor.Problem{Kind: flavor.NotFound, Diagnostics: "Subscription not found"}, nil)
}

func (t *tenant) readSubscription(w http.ResponseWriter, r *http.Request, id string) {
	s, ok := t.subs.get(id)
	if !ok {
		t.subscriptionNotFound(w)
		return
	}
	t.writeSubscription(w, r, http.StatusOK, s)
}

func (t *tenant) deleteSubscription(w http.ResponseWriter, id string) {
	h := &t.subs
	h.mu.Lock()
	s, ok := h.subs[id]
	if ok {
		delete(h.subs, id)
		for i, x := range h.order {
			if x == id {
				h.order = append(h.order[:i:i], h.order[i+1:]...)
				break
			}
		}
	}
	h.mu.Unlock()
	if !ok {
		t.subscriptionNotFound(w)
		return
	}
	s.setStatus("off", "")
	s.halt()
	w.WriteHeader(http.StatusNoContent)
}

// searchSubscriptions answers GET [base]/Subscription with the parameters
// url (channel endpoint), status and criteria (topic), all exact.
func (t *tenant) searchSubscriptions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "url", "status", "criteria", "_count", "_format":
		default:
			t.problem(w, *badRequest("unknown search parameter for Subscription: " + k), nil)
			return
		}
	}
	var entries []any
	base := t.sim.baseURL(t)
	for _, s := range t.subs.list() {
		s.mu.Lock()
		status := s.status
		s.mu.Unlock()
		if (q.Has("url") && q.Get("url") != s.endpoint) || (q.Has("status") && q.Get("status") != status) ||
			(q.Has("criteria") && q.Get("criteria") != s.topic) {
			continue
		}
		b, err := s.render()
		if err != nil {
			continue
		}
		entries = append(entries, gen.O("fullUrl", base+"/Subscription/"+s.id, "resource", json.RawMessage(b), "search", gen.O("mode", "match")))
	}
	bu := gen.O("resourceType", "Bundle", "type", "searchset", "total", len(entries),
		"link", gen.A(gen.O("relation", "self", "url", base+"/Subscription?"+q.Encode())))
	if len(entries) > 0 {
		bu.Set("entry", entries)
	}
	writeObj(w, http.StatusOK, bu)
}

func writeObj(w http.ResponseWriter, status int, o *gen.Obj) {
	b, err := o.Bytes()
	if err != nil {
		http.Error(w, "encoding failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", fhirJSON)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// serveSubscriptionStatus answers $status: a searchset Bundle with the
// subscription's status (a Parameters in R4) of type query-status.
func (t *tenant) serveSubscriptionStatus(w http.ResponseWriter, id string) {
	s, ok := t.subs.get(id)
	if !ok {
		t.subscriptionNotFound(w)
		return
	}
	s.mu.Lock()
	status, count, errText := s.status, s.count, s.errText
	s.mu.Unlock()
	params := t.statusParams(s, "query-status", status, count, nil, s.content)
	switch {
	case errText != "" && t.info.Subscriptions.StatusResource:
		params.Set("error", gen.A(gen.O("text", errText)))
	case errText != "":
		params.Set("parameter", append(params.List("parameter"), gen.O("name", "error",
			"valueCodeableConcept", gen.O("text", errText))))
	}
	base := t.sim.baseURL(t)
	bu := gen.O("resourceType", "Bundle", "type", "searchset", "total", 1,
		"entry", gen.A(gen.O("fullUrl", "urn:uuid:"+uuid(), "resource", params, "search", gen.O("mode", "match"))),
		"link", gen.A(gen.O("relation", "self", "url", base+"/Subscription/"+s.id+"/$status")))
	writeObj(w, http.StatusOK, bu)
}

// serveSubscriptionEvents answers $events with the retained events in
// [eventsSinceNumber, eventsUntilNumber], as a notification Bundle of type
// query-event.
func (t *tenant) serveSubscriptionEvents(w http.ResponseWriter, r *http.Request, id string) {
	if t.subs.options().NoEventsOperation || t.info.Subscriptions.PerNotificationCount {
		t.problem(w, flavor.Problem{Kind: flavor.MethodNotAllowed, Diagnostics: "$events is not supported by this server"}, nil)
		return
	}
	s, ok := t.subs.get(id)
	if !ok {
		t.subscriptionNotFound(w)
		return
	}
	q := r.URL.Query()
	since, until := int64(1), int64(-1)
	for name, dst := range map[string]*int64{"eventsSinceNumber": &since, "eventsUntilNumber": &until} {
		if v := q.Get(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				t.problem(w, *badRequest(name + " must be a non-negative integer"), nil)
				return
			}
			*dst = n
		}
	}
	content := s.content
	if c := q.Get("content"); c != "" {
		switch c {
		case ContentEmpty, ContentIDOnly, ContentFullResource:
			content = c
		default:
			t.problem(w, *badRequest("content must be empty, id-only or full-resource"), nil)
			return
		}
	}
	logSize := t.subs.options().EventLog
	s.mu.Lock()
	status, count := s.status, s.count
	var events []subEvent
	for _, e := range tail(s.log, logSize) {
		if e.num >= since && (until < 0 || e.num <= until) {
			events = append(events, e)
		}
	}
	s.mu.Unlock()
	b, err := t.notificationBundle(s, "query-event", status, count, events, content)
	if err != nil {
		t.problem(w, flavor.Problem{Kind: flavor.ServerError, Diagnostics: "cannot render the events"}, nil)
		return
	}
	w.Header().Set("Content-Type", fhirJSON)
	_, _ = w.Write(b)
}

// eventID is the unique id of a subscription's event n; it is stable, so a
// notification sent again carries the same ids.
func eventID(subID string, n int64) string {
	sum := sha256.Sum256([]byte(subID + "/" + strconv.FormatInt(n, 10)))
	h := hex.EncodeToString(sum[:16])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// statusParams builds the SubscriptionStatus: the R4 Parameters resource,
// or the SubscriptionStatus resource where the flavour sends that. Where
// the flavour counts per notification, the events are numbered 1..k and
// the count is k.
func (t *tenant) statusParams(s *simSub, typ, status string, count int64, events []subEvent, content string) *gen.Obj {
	dev := t.info.Subscriptions
	number := func(i int, e subEvent) int64 { return e.num }
	if dev.PerNotificationCount {
		count = int64(len(events))
		number = func(i int, _ subEvent) int64 { return int64(i + 1) }
	}
	if dev.StatusResource {
		ss := gen.O("resourceType", "SubscriptionStatus", "id", uuid(), "status", status, "type", typ,
			"eventsSinceSubscriptionStart", strconv.FormatInt(count, 10), "eventsInNotification", len(events),
			"subscription", gen.O("reference", subscriptionType+"/"+s.id), "topic", s.topic)
		var nes []any
		for i, e := range events {
			ne := gen.O("id", eventID(s.id, e.num), "eventNumber", strconv.FormatInt(number(i, e), 10),
				"timestamp", fhir.FormatInstant(e.at))
			if content != ContentEmpty {
				ne.Set("focus", gen.O("reference", e.v.ResourceType+"/"+e.v.ID))
			}
			nes = append(nes, ne)
		}
		if len(nes) > 0 {
			ss.Set("notificationEvent", nes)
		}
		return ss
	}
	base := t.sim.baseURL(t)
	ps := []any{
		gen.O("name", "subscription", "valueReference", gen.O("reference", base+"/Subscription/"+s.id)),
		gen.O("name", "topic", "valueCanonical", s.topic),
		gen.O("name", "status", "valueCode", status),
		gen.O("name", "type", "valueCode", typ),
		gen.O("name", "events-since-subscription-start", "valueString", strconv.FormatInt(count, 10)),
	}
	for i, e := range events {
		parts := []any{
			gen.O("name", "event-number", "valueString", strconv.FormatInt(number(i, e), 10)),
			gen.O("name", "timestamp", "valueInstant", fhir.FormatInstant(e.at)),
		}
		if dev.PerNotificationCount {
			parts = append(parts, gen.O("name", "id", "valueString", eventID(s.id, e.num)))
		}
		if content != ContentEmpty {
			parts = append(parts, gen.O("name", "focus", "valueReference", gen.O("reference", base+"/"+e.v.ResourceType+"/"+e.v.ID)))
		}
		ps = append(ps, gen.O("name", "notification-event", "part", parts))
	}
	id := uuid()
	return gen.O("resourceType", "Parameters", "id", id, "meta", gen.O("profile", gen.A(profileStatus)), "parameter", ps)
}

// notificationBundle renders a notification (history Bundle, status first).
func (t *tenant) notificationBundle(s *simSub, typ, status string, count int64, events []subEvent, content string) ([]byte, error) {
	base := t.sim.baseURL(t)
	params := t.statusParams(s, typ, status, count, events, content)
	entries := []any{gen.O("fullUrl", "urn:uuid:"+params.Str("id"), "resource", params,
		"request", gen.O("method", "GET", "url", base+"/Subscription/"+s.id+"/$status"),
		"response", gen.O("status", "200"))}
	if content == ContentFullResource || content == ContentIDOnly && !t.info.Subscriptions.StatusResource {
		for _, e := range events {
			v := e.v
			req := gen.O("method", "PUT", "url", v.ResourceType+"/"+v.ID)
			resp := gen.O("status", "200")
			if v.VersionID == 1 {
				req = gen.O("method", "POST", "url", v.ResourceType)
				resp = gen.O("status", "201")
			}
			en := gen.O("fullUrl", base+"/"+v.ResourceType+"/"+v.ID)
			if content == ContentFullResource {
				en.Set("resource", json.RawMessage(v.Body))
			}
			en.Set("request", req)
			en.Set("response", resp)
			entries = append(entries, en)
		}
	}
	bu := gen.O("resourceType", "Bundle", "id", uuid(), "meta", gen.O("profile", gen.A(profileNotification)),
		"type", "history", "timestamp", fhir.FormatInstant(t.store.Now()), "entry", entries)
	return bu.Bytes()
}

func uuid() string {
	h := randomHex(16)
	return h[0:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:32]
}

// deliverLoop is a subscription's delivery goroutine: the handshake, then
// event notifications as events arrive and heartbeats while idle, until the
// subscription is deleted, fails, or the hub stops.
func (t *tenant) deliverLoop(ctx context.Context, s *simSub) {
	if !t.deliver(ctx, s, "handshake", nil) {
		if ctx.Err() == nil {
			s.setStatus("error", "the handshake was not acknowledged")
		}
		return
	}
	s.setStatus("active", "")
	var hb *time.Timer
	var hbC <-chan time.Time
	if s.heartbeat > 0 {
		hb = time.NewTimer(s.heartbeat)
		defer hb.Stop()
		hbC = hb.C
	}
	resetHeartbeat := func() {
		if hb != nil {
			hb.Stop()
			select {
			case <-hb.C:
			default:
			}
			hb.Reset(s.heartbeat)
		}
	}
	// Random choices of Duplicates and Shuffle: owned by this goroutine.
	rng := rand.New(rand.NewPCG(t.cfg.Seed, s.seq))
	var held [][]byte // notifications held back or to be sent again
	drain := func() bool {
		opts := t.subs.options()
		for {
			batch := s.take(s.maxCount)
			if len(batch) == 0 {
				break
			}
			body, ok := t.render(s, "event-notification", batch)
			if !ok {
				return false
			}
			if opts.Shuffle > 0 && rng.Float64() < opts.Shuffle {
				held = append(held, body)
				s.mu.Lock()
				s.heldBack++
				s.mu.Unlock()
				continue
			}
			if !t.send(ctx, s, "event-notification", body) {
				return false
			}
			if opts.Duplicates > 0 && rng.Float64() < opts.Duplicates {
				held = append(held, body)
				s.mu.Lock()
				s.duplicated++
				s.mu.Unlock()
			}
			resetHeartbeat()
		}
		for len(held) > 0 { // newest first
			body := held[len(held)-1]
			held = held[:len(held)-1]
			if !t.send(ctx, s, "event-notification", body) {
				return false
			}
			resetHeartbeat()
		}
		return true
	}
	fail := func() {
		if ctx.Err() == nil {
			s.setStatus("error", "notification delivery failed")
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.stop:
			return
		case <-s.wake:
			if !drain() {
				fail()
				return
			}
		case <-hbC:
			if !drain() || !t.deliver(ctx, s, "heartbeat", nil) {
				fail()
				return
			}
			resetHeartbeat()
		}
	}
}

// deliver renders one notification and sends it.
func (t *tenant) deliver(ctx context.Context, s *simSub, typ string, events []subEvent) bool {
	body, ok := t.render(s, typ, events)
	return ok && t.send(ctx, s, typ, body)
}

// render renders a notification of the subscription's current status.
func (t *tenant) render(s *simSub, typ string, events []subEvent) ([]byte, bool) {
	s.mu.Lock()
	status, count := s.status, s.count
	s.mu.Unlock()
	if typ == "event-notification" && len(events) > 0 {
		count = events[len(events)-1].num
	}
	body, err := t.notificationBundle(s, typ, status, count, events, s.content)
	if err != nil {
		t.sim.log.Error("subscription notification", "tenant", t.id, "err", err)
		return nil, false
	}
	return body, true
}

// send sends one rendered notification, retrying a little. A fault rule on
// the "subscription-notify" endpoint can delay it (latency) or lose it
// (drop, 429, 500, 503: it is never sent, and counts as delivered, like a
// notification lost behind an intermediary that acknowledged it).
func (t *tenant) send(ctx context.Context, s *simSub, typ string, body []byte) bool {
	d := t.faults.Decide(fault.Request{Endpoint: fault.EndpointSubscriptionNotify})
	if d.Latency > 0 && !sleepOrDone(ctx, s.stop, d.Latency) {
		return false
	}
	if d.Fail != nil {
		t.sim.log.Debug("subscription notification lost (injected)", "tenant", t.id, "type", typ)
		return true
	}
	opts := t.subs.options()
	for attempt := 0; ; attempt++ {
		if t.post(ctx, s, body) {
			return true
		}
		if attempt >= opts.Retries {
			return false
		}
		if !sleepOrDone(ctx, s.stop, time.Duration(attempt+1)*opts.TimeUnit/10) {
			return false
		}
	}
}

// HubSignature is the X-Hub-Signature value of body under secret:
// "sha256=" and the hex HMAC-SHA256.
func HubSignature(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func (t *tenant) post(ctx context.Context, s *simSub, body []byte) bool {
	actx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, s.endpoint, bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	for _, h := range s.headers {
		name, val, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(name), strings.TrimSpace(val))
	}
	if s.hubSecret != nil {
		req.Header.Set(HubSignatureHeader, HubSignature(s.hubSecret, body))
	}
	res, err := t.sim.cfg.HTTPClient.Do(req)
	if err != nil {
		t.sim.log.Debug("subscription notification failed", "tenant", t.id, "err", errors.Unwrap(err))
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	res.Body.Close()
	return res.StatusCode >= 200 && res.StatusCode < 300
}

func sleepOrDone(ctx context.Context, stop <-chan struct{}, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	case <-stop:
		return false
	}
}

// withSubscriptions declares Subscription (backport profile, topics,
// $status and $events) in a CapabilityStatement rendered by the flavour.
func (t *tenant) withSubscriptions(b []byte) []byte {
	cs, err := gen.ParseObj(b)
	if err != nil {
		return b
	}
	rests := cs.List("rest")
	if len(rests) == 0 {
		return b
	}
	rest, ok := rests[0].(*gen.Obj)
	if !ok {
		return b
	}
	inst := append(cs.List("instantiates"), backportCapability)
	if _, ok := cs.Get("instantiates"); ok {
		cs.Set("instantiates", inst)
	} else {
		cs.SetAfter("kind", "instantiates", inst)
	}
	var topics []string
	for topic, types := range SubscriptionTopics() {
		if t.servesAll(types) {
			topics = append(topics, topic)
		}
	}
	sort.Strings(topics)
	var exts []any
	for _, topic := range topics {
		exts = append(exts, gen.O("url", extTopicCanonical, "valueCanonical", topic))
	}
	res := gen.O("extension", exts, "type", subscriptionType, "supportedProfile", gen.A(profileSubscription),
		"interaction", gen.A(gen.O("code", "create"), gen.O("code", "read"), gen.O("code", "delete"), gen.O("code", "search-type")),
		"searchParam", gen.A(
			gen.O("name", "url", "type", "uri"),
			gen.O("name", "status", "type", "token"),
			gen.O("name", "criteria", "type", "string")),
		"operation", gen.A(gen.O("name", "status", "definition", backportStatusOpDef)))
	if !t.info.Subscriptions.PerNotificationCount {
		res.Set("operation", append(res.List("operation"), gen.O("name", "events", "definition", backportEventsOpDef)))
	}
	rest.Set("resource", append(rest.List("resource"), res))
	out, err := cs.Bytes()
	if err != nil {
		return b
	}
	return out
}
