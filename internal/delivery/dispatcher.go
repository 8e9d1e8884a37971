package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/mediflow/mediflow/internal/retry"
	"github.com/mediflow/mediflow/internal/store"
)

// Store is what a Dispatcher needs from the store: the change feed and the
// delivery store. store.Store has both.
type Store interface {
	store.DeliveryStore
	Changes(ctx context.Context, practice string, since int64, limit int) ([]store.Change, error)
}

// Options configure a Dispatcher. Zero durations and counts select the
// defaults.
type Options struct {
	Store Store
	// Practices are the practices whose changes are delivered; webhooks can
	// be created for these only.
	Practices []string
	// SecretKey (SecretKeySize bytes) seals webhook secrets in the store.
	// Losing or changing it makes the stored secrets unusable: deliveries
	// then fail (and are retried) until the webhooks get new secrets.
	SecretKey []byte
	// Client sends the requests (nil: a client of the Dispatcher's own).
	// Redirects are never followed, whatever its CheckRedirect says.
	Client *http.Client
	Logger *slog.Logger     // nil: discard
	Now    func() time.Time // nil: time.Now; decides what is due, and signs
	// Jitter spreads a retry delay (nil: uniformly over [d/2, d]).
	Jitter func(time.Duration) time.Duration
	// BaseDelay is the delay after the first failed attempt (0: 10 s); it
	// doubles after each further one up to MaxDelay (0: 1 h).
	BaseDelay, MaxDelay time.Duration
	// MaxAge is how long after its first attempt an event is retried before
	// it is dead (0: 72 h).
	MaxAge time.Duration
	// RequestTimeout bounds one request, answer included (0: 30 s).
	RequestTimeout time.Duration
	// Lease is how long a claimed delivery is held before another claim may
	// take it (0: RequestTimeout + 30 s). It must exceed RequestTimeout.
	Lease time.Duration
	// Concurrency bounds the requests in flight (0: 8); a webhook never has
	// more than one.
	Concurrency int
	// PollInterval is how often the change feeds and the queues are looked
	// at without a Notify (0: 1 s).
	PollInterval time.Duration
	// FeedBatch is how many changes are read at once (0: 500).
	FeedBatch int
	// Retention is how long delivered deliveries are kept (0: 7 days;
	// negative: forever). Dead ones are kept until replayed.
	Retention time.Duration
	// AllowInsecureURLs lets webhooks use plain http to hosts that are not
	// on loopback (tests, closed networks). Loopback http is always allowed.
	AllowInsecureURLs bool
	// OnAttempt, when set, is called after every attempt's outcome is
	// stored, on the goroutine that made it. It must return quickly.
	OnAttempt func(Attempt)
}

// Attempt reports one delivery attempt, PHI-free.
type Attempt struct {
	Practice   string
	WebhookID  string
	DeliveryID int64
	EventID    string
	Seq        int64
	Attempt    int    // 1 for the first
	Status     string // store.DeliveryDelivered, DeliveryDead or DeliveryPending (retry)
	HTTPStatus int    // 0: no answer
	Error      string // the stored reason ("" when delivered)
	// NextAttempt is when a retry is due (Status pending).
	NextAttempt time.Time
	// Released is true when the attempt was cut short by the Dispatcher
	// stopping; the delivery is due again at once.
	Released bool
}

// Event is the JSON body of a webhook request: a notification that a
// resource changed, without its content.
type Event struct {
	ID         string    `json:"id"` // the event id, as in Mediflow-Event-Id
	Practice   string    `json:"practice"`
	Type       string    `json:"type"` // the FHIR resource type
	ResourceID string    `json:"resourceId"`
	Version    int       `json:"version"` // mediflow's version of the resource (1, 2, ...)
	Deleted    bool      `json:"deleted"`
	Seq        int64     `json:"seq"` // the change-feed position (GET /v1/practices/{id}/changes)
	OccurredAt time.Time `json:"occurredAt"`
}

// Dispatcher turns change-feed entries into webhook deliveries and sends
// them. Create it with New; Run works until its context ends.
type Dispatcher struct {
	opts      Options
	st        Store
	seal      *sealer
	client    *http.Client
	ownClient bool
	log       *slog.Logger
	practices map[string]bool

	feedKick chan struct{} // a Notify happened
	sendKick chan struct{} // something may be due
	mu       sync.Mutex
	dirty    map[string]bool // practices Notify named since the feeder last looked
	ready    map[string]bool // practices that may have due deliveries now
	running  bool
}

// New checks the options and returns a Dispatcher.
func New(opts Options) (*Dispatcher, error) {
	if opts.Store == nil {
		return nil, errors.New("delivery: a store is required")
	}
	seal, err := newSealer(opts.SecretKey)
	if err != nil {
		return nil, err
	}
	for _, d := range []time.Duration{opts.BaseDelay, opts.MaxDelay, opts.MaxAge, opts.RequestTimeout, opts.Lease, opts.PollInterval} {
		if d < 0 {
			return nil, errors.New("delivery: negative duration in options")
		}
	}
	if opts.Concurrency < 0 || opts.FeedBatch < 0 {
		return nil, errors.New("delivery: negative count in options")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Jitter == nil {
		opts.Jitter = retry.Jitter
	}
	opts.BaseDelay = cmpOr(opts.BaseDelay, 10*time.Second)
	opts.MaxDelay = max(cmpOr(opts.MaxDelay, time.Hour), opts.BaseDelay)
	opts.MaxAge = cmpOr(opts.MaxAge, 72*time.Hour)
	opts.RequestTimeout = cmpOr(opts.RequestTimeout, 30*time.Second)
	opts.Lease = cmpOr(opts.Lease, opts.RequestTimeout+30*time.Second)
	if opts.Lease <= opts.RequestTimeout {
		return nil, fmt.Errorf("delivery: the lease (%s) must be longer than the request timeout (%s)", opts.Lease, opts.RequestTimeout)
	}
	opts.Concurrency = cmpOr(opts.Concurrency, 8)
	opts.PollInterval = cmpOr(opts.PollInterval, time.Second)
	opts.FeedBatch = cmpOr(opts.FeedBatch, 500)
	opts.Retention = cmpOr(opts.Retention, 7*24*time.Hour)
	d := &Dispatcher{
		opts: opts, st: opts.Store, seal: seal, log: opts.Logger,
		practices: map[string]bool{},
		feedKick:  make(chan struct{}, 1), sendKick: make(chan struct{}, 1),
		dirty: map[string]bool{}, ready: map[string]bool{},
	}
	for _, p := range opts.Practices {
		if p == "" {
			return nil, errors.New("delivery: empty practice id")
		}
		d.practices[p] = true
	}
	if opts.Client != nil {
		c := *opts.Client
		c.CheckRedirect = noRedirects
		d.client = &c
	} else {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = opts.Concurrency
		d.client = &http.Client{Transport: tr, CheckRedirect: noRedirects}
		d.ownClient = true
	}
	return d, nil
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Notify tells the Dispatcher that the practice's change feed grew, so it
// reads it now instead of at the next poll. It never blocks.
func (d *Dispatcher) Notify(practice string) {
	d.mu.Lock()
	d.dirty[practice] = true
	d.mu.Unlock()
	kick(d.feedKick)
}

// wakeSender marks the practice as possibly having due deliveries.
func (d *Dispatcher) wakeSender(practice string) {
	d.mu.Lock()
	d.ready[practice] = true
	d.mu.Unlock()
	kick(d.sendKick)
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Run reads the change feeds and delivers until ctx ends, then stops its
// requests (releasing their deliveries in the store) and returns nil. A
// Dispatcher runs once.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.mu.Lock()
	if d.running {
		d.mu.Unlock()
		return errors.New("delivery: the dispatcher is already running or has run")
	}
	d.running = true
	d.mu.Unlock()
	if d.ownClient {
		defer d.client.CloseIdleConnections()
	}
	var wg sync.WaitGroup
	wg.Go(func() { d.feed(ctx) })
	wg.Go(func() { d.send(ctx) })
	wg.Wait()
	return nil
}

// sortedPractices returns the practices in a stable order.
func (d *Dispatcher) sortedPractices() []string {
	ps := make([]string, 0, len(d.practices))
	for p := range d.practices {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// ---- the feeder: change feed -> deliveries ----

// pruneInterval spaces the removal of old delivered deliveries.
const pruneInterval = time.Hour

// feed turns new changes of every practice into deliveries until ctx ends.
func (d *Dispatcher) feed(ctx context.Context) {
	practices := d.sortedPractices()
	cursors := map[string]int64{}
	loaded := map[string]bool{}
	failures := 0
	var lastPrune time.Time
	poll := time.NewTimer(0)
	defer poll.Stop()
	all := true // the first pass and every poll look at every practice
	for {
		var todo []string
		d.mu.Lock()
		if all {
			todo = practices
		} else {
			for _, p := range practices {
				if d.dirty[p] {
					todo = append(todo, p)
				}
			}
		}
		clear(d.dirty)
		d.mu.Unlock()
		failed := false
		for _, p := range todo {
			if ctx.Err() != nil {
				return
			}
			if !loaded[p] {
				c, err := d.st.DeliveryCursor(ctx, p)
				if err != nil {
					if ctx.Err() == nil {
						d.log.Error("webhooks: cannot read the delivery cursor", "practice", p, "error", err.Error())
					}
					failed = true
					continue
				}
				cursors[p], loaded[p] = c, true
			}
			c, err := d.feedPractice(ctx, p, cursors[p])
			cursors[p] = c
			if err != nil {
				if ctx.Err() == nil {
					d.log.Error("webhooks: cannot turn changes into deliveries", "practice", p, "error", err.Error())
				}
				failed = true
			}
		}
		if d.opts.Retention > 0 && ctx.Err() == nil && d.opts.Now().Sub(lastPrune) >= pruneInterval {
			lastPrune = d.opts.Now()
			d.prune(ctx, practices)
		}
		wait := d.opts.PollInterval
		if failed {
			failures++
			wait = max(wait, storeBackoff(failures))
		} else {
			failures = 0
		}
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
		poll.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-d.feedKick:
			all = failed
		case <-poll.C:
			all = true
		}
	}
}

// feedPractice enqueues the deliveries for the practice's changes after
// cursor and returns the new cursor.
func (d *Dispatcher) feedPractice(ctx context.Context, practice string, cursor int64) (int64, error) {
	for {
		changes, err := d.st.Changes(ctx, practice, cursor, d.opts.FeedBatch)
		if err != nil {
			return cursor, fmt.Errorf("read the change feed: %w", err)
		}
		if len(changes) == 0 {
			return cursor, nil
		}
		hooks, err := d.st.ListWebhooks(ctx, practice, store.WebhookFilter{ActiveOnly: true})
		if err != nil {
			return cursor, fmt.Errorf("list webhooks: %w", err)
		}
		now := d.opts.Now().UTC()
		var ds []store.Delivery
		for _, c := range changes {
			for _, h := range hooks {
				if len(h.Types) > 0 && !slices.Contains(h.Types, c.ResourceType) {
					continue
				}
				ev := Event{ID: EventID(practice, c.Seq, h.ID), Practice: practice, Type: c.ResourceType, ResourceID: c.ID,
					Version: c.Version, Deleted: c.Deleted, Seq: c.Seq, OccurredAt: c.StoredAt.UTC()}
				body, err := json.Marshal(ev)
				if err != nil {
					return cursor, fmt.Errorf("encode event: %w", err)
				}
				ds = append(ds, store.Delivery{WebhookID: h.ID, EventID: ev.ID, Seq: c.Seq, Payload: body, NextAttempt: now, CreatedAt: now})
			}
		}
		through := changes[len(changes)-1].Seq
		res, err := d.st.EnqueueDeliveries(ctx, practice, ds, through)
		if err != nil {
			return cursor, fmt.Errorf("enqueue %d deliveries: %w", len(ds), err)
		}
		cursor = through
		added := 0
		for _, r := range res {
			if !r.Duplicate {
				added++
			}
		}
		if added > 0 {
			d.log.Debug("webhooks: deliveries enqueued", "practice", practice, "deliveries", added, "through_seq", through)
			d.wakeSender(practice)
		}
		if len(changes) < d.opts.FeedBatch {
			return cursor, nil
		}
	}
}

// EventID is the id of the event about change seq of the practice for one
// webhook: the same every time it is computed, so enqueueing it again is a
// no-op.
func EventID(practice string, seq int64, webhookID string) string {
	var b []byte
	for _, p := range [...]string{practice, webhookID} {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(seq))
	sum := sha256.Sum256(b)
	return "evt_" + hex.EncodeToString(sum[:16])
}

func (d *Dispatcher) prune(ctx context.Context, practices []string) {
	before := d.opts.Now().Add(-d.opts.Retention)
	for _, p := range practices {
		n, err := d.st.PruneDeliveries(ctx, p, before)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("webhooks: cannot prune delivered deliveries", "practice", p, "error", err.Error())
			}
			return
		}
		if n > 0 {
			d.log.Debug("webhooks: pruned delivered deliveries", "practice", p, "deliveries", n)
		}
	}
}

// ---- the sender: claim due queue heads, send, record ----

// send claims due deliveries and starts a request for each, at most
// Concurrency at a time, until ctx ends; then it waits for its requests.
func (d *Dispatcher) send(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	practices := d.sortedPractices()
	done := make(chan string, d.opts.Concurrency) // a request finished (its practice)
	running := 0
	nextLook := map[string]time.Time{} // per practice: when to look again without a wake-up
	failures := 0
	timer := time.NewTimer(0)
	defer timer.Stop()
	start := 0 // rotates, so no practice always goes first
	for {
		d.mu.Lock()
		for p := range d.ready {
			delete(nextLook, p)
		}
		clear(d.ready)
		d.mu.Unlock()
		now := d.opts.Now()
		failed := false
		for i := range practices {
			if running >= d.opts.Concurrency || ctx.Err() != nil {
				break
			}
			p := practices[(start+i)%len(practices)]
			if t, ok := nextLook[p]; ok && now.Before(t) {
				continue
			}
			c, err := d.st.ClaimDeliveries(ctx, p, now, d.opts.Lease, d.opts.Concurrency-running)
			if err != nil {
				if ctx.Err() == nil {
					d.log.Error("webhooks: cannot claim deliveries", "practice", p, "error", err.Error())
				}
				failed = true
				continue
			}
			for _, del := range c.Deliveries {
				running++
				wg.Go(func() {
					defer func() { done <- del.Practice }()
					d.deliver(ctx, del)
				})
			}
			// Look again when the next head is due, at the latest after a
			// poll interval (a lease may end, a replay may happen elsewhere).
			next := now.Add(d.opts.PollInterval)
			if !c.NextDue.IsZero() && c.NextDue.Before(next) {
				next = c.NextDue
			}
			if len(c.Deliveries) > 0 && running >= d.opts.Concurrency {
				next = now // more may be due; look when a slot frees
			}
			nextLook[p] = next
		}
		if len(practices) > 0 {
			start = (start + 1) % len(practices)
		}
		// Sleep until the earliest nextLook (in real time: with a fake clock
		// the poll interval bounds the sleep).
		wait := d.opts.PollInterval
		now = d.opts.Now()
		for _, p := range practices {
			t, ok := nextLook[p]
			if !ok {
				wait = 0
				break
			}
			if w := t.Sub(now); w < wait {
				wait = max(w, 0)
			}
		}
		if running >= d.opts.Concurrency {
			wait = d.opts.PollInterval // a finished request wakes us
		}
		if failed {
			failures++
			wait = max(wait, storeBackoff(failures))
		} else {
			failures = 0
		}
		if wait > 0 {
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-d.sendKick:
			case p := <-done:
				running--
				delete(nextLook, p)
			case <-timer.C:
			}
		}
		// Collect every other finished request without blocking.
		for more := true; more; {
			select {
			case p := <-done:
				running--
				delete(nextLook, p)
			default:
				more = false
			}
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// finalWriteTimeout bounds recording an outcome after ctx ended.
const finalWriteTimeout = 5 * time.Second

// deliver makes one attempt of a claimed delivery and records its outcome.
func (d *Dispatcher) deliver(ctx context.Context, del store.Delivery) {
	log := d.log.With("practice", del.Practice, "webhook", del.WebhookID, "delivery", del.ID, "event", del.EventID, "attempt", del.Attempts)
	res := d.attempt(ctx, del)
	now := d.opts.Now().UTC()
	out := store.AttemptResult{Attempt: del.Attempts, At: now, Error: res.reason}
	rep := Attempt{Practice: del.Practice, WebhookID: del.WebhookID, DeliveryID: del.ID, EventID: del.EventID, Seq: del.Seq,
		Attempt: del.Attempts, HTTPStatus: res.status, Error: res.reason}
	switch {
	case res.interrupted:
		// Stopping: hand the delivery back, due at once for the next dispatcher.
		out.Status, out.NextAttempt, out.Error = store.DeliveryPending, now, "interrupted: the dispatcher stopped during the attempt"
		rep.Released = true
	case res.outcome == outcomeDelivered:
		out.Status, out.Error = store.DeliveryDelivered, ""
	case res.outcome == outcomeDead:
		out.Status = store.DeliveryDead
	default:
		first := del.FirstAttempt
		if first.IsZero() {
			first = del.LastAttempt
		}
		deadline := first.Add(d.opts.MaxAge)
		if !now.Before(deadline) {
			out.Status = store.DeliveryDead
			out.Error = clip(fmt.Sprintf("gave up %s after the first attempt; last: %s", d.opts.MaxAge, res.reason))
			break
		}
		delay := d.retryDelay(del.Attempts, res.retryAfter)
		out.Status, out.NextAttempt = store.DeliveryPending, now.Add(delay)
		if out.NextAttempt.After(deadline) {
			out.NextAttempt = deadline // the last try is made at the deadline
		}
	}
	rep.Status, rep.NextAttempt, rep.Error = out.Status, out.NextAttempt, out.Error
	if err := d.record(ctx, del, out); err != nil {
		if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			log.Error("webhooks: cannot record the outcome; the delivery is claimed again when its lease ends", "status", out.Status, "error", err.Error())
		}
		return
	}
	switch out.Status {
	case store.DeliveryDelivered:
		log.Debug("webhooks: delivered", "http_status", res.status)
	case store.DeliveryDead:
		log.Warn("webhooks: delivery is dead", "http_status", res.status, "reason", out.Error)
	default:
		if !rep.Released {
			log.Info("webhooks: attempt failed; retrying", "http_status", res.status, "reason", out.Error, "next_attempt", out.NextAttempt)
		}
	}
	if d.opts.OnAttempt != nil {
		d.opts.OnAttempt(rep)
	}
	d.wakeSender(del.Practice)
}

// record stores an outcome, retrying a failing store for a while; after ctx
// ended it still tries for finalWriteTimeout.
func (d *Dispatcher) record(ctx context.Context, del store.Delivery, out store.AttemptResult) error {
	rctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), finalWriteTimeout)
		defer cancel()
	}
	for failures := 1; ; failures++ {
		err := d.st.RecordAttempt(rctx, del.Practice, del.ID, out)
		if err == nil || errors.Is(err, store.ErrDeliveryState) || errors.Is(err, store.ErrNotFound) || rctx.Err() != nil {
			return err
		}
		d.log.Warn("webhooks: cannot record an outcome; retrying", "practice", del.Practice, "delivery", del.ID, "error", err.Error())
		if !sleep(rctx, storeBackoff(failures)) {
			return rctx.Err()
		}
	}
}

// retryDelay is the pause after failed attempt n (1 for the first): the
// receiver's Retry-After when it gave one (at least a second), otherwise
// BaseDelay doubled n-1 times, at most MaxDelay, jittered.
func (d *Dispatcher) retryDelay(n int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return max(retryAfter, time.Second)
	}
	return d.opts.Jitter(retry.Backoff(d.opts.BaseDelay, n, d.opts.MaxDelay))
}

// storeBackoff is the pause after the n-th consecutive store failure.
func storeBackoff(n int) time.Duration {
	return retry.Jitter(retry.Backoff(100*time.Millisecond, n, 10*time.Second))
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
