package writeback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/mediflow/mediflow/internal/connector/fhirrest"
	backoff "github.com/mediflow/mediflow/internal/retry"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/writeback/contract"
	"github.com/mediflow/mediflow/internal/writeback/hl7out"
)

// Store is what an Outbox needs from the store. store.Store has both.
type Store interface {
	store.IntentStore
	store.AuditStore
}

// Intent is a stored write-back intent.
type Intent = store.Intent

// Target is one practice's write path: FHIR, and HL7 v2 when the practice
// has an outbound HL7 interface.
type Target struct {
	// FHIR reads, searches and writes at the practice's EHR (nil only with
	// HL7: FHIR-routed intents are then refused).
	FHIR *fhirrest.Client
	// HL7, when set, sends the intents the contract routes to
	// contract.ChannelHL7 (hl7.go); nil: they are refused.
	HL7 *HL7Target
	// VendorREST, when set, sends the intents the contract routes to
	// contract.ChannelVendorREST through the vendor's own API
	// (vendorrest.go: athenahealth's v1 API); nil: they are refused.
	VendorREST *VendorRESTTarget
	// Support says what the practice's write contract allows for an
	// intent kind (contract.Contract.Support of the practice's vendor and
	// version).
	Support func(contract.Intent) contract.Support
	// MapIn, when set, maps a vendor resource read back from the EHR to the
	// canonical model, so verification compares canonical forms (the
	// intent's Body). nil: the written vendor body is compared with the
	// read-back.
	MapIn func(ctx context.Context, resourceType string, vendor []byte) ([]byte, error)
}

// Request is what an app asks for.
type Request struct {
	Practice string
	App      string
	// IdempotencyKey is the app's key for this write (required).
	IdempotencyKey string
	Kind           contract.Intent
	// PatientRef ("Patient/123") orders the practice's intents per patient.
	PatientRef string
	// ResourceType is the FHIR type written; empty: the contract's.
	ResourceType string
	// TargetID is the record updated or cancelled (updates and patches).
	TargetID string
	// BaseVersion is the EHR version the app's change was based on; empty:
	// the version read just before writing.
	BaseVersion string
	// Body is the canonical resource (create) or the elements to set
	// (update), as JSON.
	Body []byte
	// VendorBody is Body mapped to the vendor's shape; nil: Body.
	VendorBody []byte
	// ConflictPolicy is store.ConflictFail (default), ConflictReapply or
	// ConflictManual.
	ConflictPolicy string
}

// StatusChange reports an intent's move from one status to another.
type StatusChange struct {
	Practice string
	App      string
	IntentID string
	Kind     string
	From, To string
	// Ref is the record at the EHR ("DocumentReference/123"), once known.
	Ref string
	At  time.Time
}

// Options configure an Outbox. Zero durations and counts select defaults.
type Options struct {
	Store Store
	// Targets are the practices' write paths, by practice id; only these
	// practices accept intents and are executed.
	Targets map[string]Target
	// Validate checks a request before it is accepted (the API passes the
	// write contract's validation); an error refuses it. nil: none.
	Validate func(ctx context.Context, r Request) error
	Logger   *slog.Logger     // nil: discard
	Now      func() time.Time // nil: time.Now
	// Jitter spreads a retry delay (nil: uniformly over [d/2, d]).
	Jitter func(time.Duration) time.Duration
	// BaseDelay is the delay after the first failed attempt (0: 5 s),
	// doubling up to MaxDelay (0: 15 min).
	BaseDelay, MaxDelay time.Duration
	// SettleDelay is the least wait after a write that got no answer before
	// the record is looked for again and the write retried (0: 30 s), so a
	// request still in flight at the EHR lands first.
	SettleDelay time.Duration
	// MaxAge is how long after its first attempt an intent is retried
	// before it is dead (0: 24 h).
	MaxAge time.Duration
	// Lease is how long a claimed intent is held (0: 5 min); one execution
	// round is bounded by three quarters of it.
	Lease time.Duration
	// Concurrency bounds the intents executed at once over every practice
	// (0: 32); a patient never has more than one.
	Concurrency int
	// EHRConcurrency bounds the intents executed at once against one
	// practice's EHR, by practice id (absent or 0: DefaultEHRConcurrency,
	// at most Concurrency). Practices whose targets write to the same FHIR
	// base URL share one EHR and the smallest of their bounds.
	EHRConcurrency map[string]int
	// PollInterval is how often the queues are looked at without a wake-up
	// (0: 1 s).
	PollInterval time.Duration
	// OnStatus, when set, is called after every stored status change, on
	// the goroutine that made it. It must return quickly.
	OnStatus func(StatusChange)
}

// Errors of Submit and Replay.
var (
	// ErrInvalid: the request was refused before it was stored (validation,
	// an unsupported intent, a malformed body). The error says why.
	ErrInvalid = errors.New("writeback: intent refused")
	// ErrKeyReused: the idempotency key names an intent with a different request.
	ErrKeyReused = errors.New("writeback: idempotency key already used for a different request")
	// ErrUnknownPractice: the practice has no write target here.
	ErrUnknownPractice = errors.New("writeback: practice has no write target")
)

// Outbox stores write intents and executes them at the EHRs. Create it
// with New; Submit and the readers work at any time, Run executes.
type Outbox struct {
	opts      Options
	st        Store
	log       *slog.Logger
	practices []string
	kickc     chan struct{}
	hl7c      chan hl7out.Event // outcomes of HL7 messages (HL7Event)

	mu      sync.Mutex
	running bool

	commits commits // intent updates waiting for a batch (commit.go)

	hl7mu   sync.Mutex
	hl7seen map[string]bool // "practice/intent id" of HL7 outcomes reported (HL7Event)
	hl7ids  controlIDMemo   // control id → intent id of the HL7 messages queued or looked at
}

// New checks the options and returns an Outbox.
func New(opts Options) (*Outbox, error) {
	if opts.Store == nil {
		return nil, errors.New("writeback: a store is required")
	}
	for _, d := range []time.Duration{opts.BaseDelay, opts.MaxDelay, opts.SettleDelay, opts.MaxAge, opts.Lease, opts.PollInterval} {
		if d < 0 {
			return nil, errors.New("writeback: negative duration in options")
		}
	}
	if opts.Concurrency < 0 {
		return nil, errors.New("writeback: negative concurrency")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Jitter == nil {
		opts.Jitter = backoff.Jitter
	}
	opts.BaseDelay = cmpOr(opts.BaseDelay, 5*time.Second)
	opts.MaxDelay = max(cmpOr(opts.MaxDelay, 15*time.Minute), opts.BaseDelay)
	opts.SettleDelay = cmpOr(opts.SettleDelay, 30*time.Second)
	opts.MaxAge = cmpOr(opts.MaxAge, 24*time.Hour)
	opts.Lease = cmpOr(opts.Lease, 5*time.Minute)
	opts.Concurrency = cmpOr(opts.Concurrency, DefaultConcurrency)
	for p, n := range opts.EHRConcurrency {
		if n < 0 {
			return nil, fmt.Errorf("writeback: practice %s: negative EHR concurrency", p)
		}
	}
	opts.PollInterval = cmpOr(opts.PollInterval, time.Second)
	o := &Outbox{opts: opts, st: opts.Store, log: opts.Logger, kickc: make(chan struct{}, 1), hl7c: make(chan hl7out.Event, 256),
		hl7seen: map[string]bool{}, hl7ids: controlIDMemo{ids: map[string]string{}}}
	for p, t := range opts.Targets {
		if p == "" {
			return nil, errors.New("writeback: empty practice id in targets")
		}
		if (t.FHIR == nil && t.HL7 == nil && t.VendorREST == nil) || t.Support == nil {
			return nil, fmt.Errorf("writeback: practice %s: a target needs a FHIR client, an HL7 target or a vendor API target, and a Support func", p)
		}
		if t.VendorREST != nil {
			if err := t.VendorREST.validate(p); err != nil {
				return nil, err
			}
		}
		if t.HL7 != nil {
			if err := t.HL7.validate(p); err != nil {
				return nil, err
			}
		}
		o.practices = append(o.practices, p)
	}
	slices.Sort(o.practices)
	return o, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func (o *Outbox) kick() {
	select {
	case o.kickc <- struct{}{}:
	default:
	}
}

func refused(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Submit stores an intent and returns it; created is false when the app's
// idempotency key already named one (which is returned as stored). A
// request refused before storing returns an error matching ErrInvalid
// (the caller's Validate error is wrapped inside), ErrKeyReused or
// ErrUnknownPractice.
func (o *Outbox) Submit(ctx context.Context, r Request) (Intent, bool, error) {
	switch {
	case r.Practice == "":
		return Intent{}, false, refused("no practice")
	case r.App == "":
		return Intent{}, false, refused("no app")
	case r.IdempotencyKey == "":
		return Intent{}, false, refused("an idempotency key is required")
	case len(r.IdempotencyKey) > 200:
		return Intent{}, false, refused("the idempotency key is longer than 200 characters")
	}
	tgt, ok := o.opts.Targets[r.Practice]
	if !ok {
		return Intent{}, false, fmt.Errorf("%w: %s", ErrUnknownPractice, r.Practice)
	}
	policy := r.ConflictPolicy
	if policy == "" {
		policy = store.ConflictFail
	}
	body, err := canonicalJSON(r.Body)
	if err != nil {
		return Intent{}, false, refused("the body is %v", err)
	}
	vendor := body
	if len(r.VendorBody) > 0 {
		if vendor, err = canonicalJSON(r.VendorBody); err != nil {
			return Intent{}, false, refused("the vendor body is %v", err)
		}
	}
	sup := tgt.Support(r.Kind)
	rt := r.ResourceType
	if rt == "" {
		rt = sup.ResourceType
	}
	hash := requestHash(string(r.Kind), r.PatientRef, rt, r.TargetID, r.BaseVersion, string(body), string(vendor), policy)
	if in, err := o.st.GetIntentByKey(ctx, r.Practice, r.App, r.IdempotencyKey); err == nil {
		if in.RequestHash != hash {
			return Intent{}, false, ErrKeyReused
		}
		return in, false, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return Intent{}, false, fmt.Errorf("writeback: submit: %w", err)
	}
	if err := o.check(ctx, r, sup, rt, policy); err != nil {
		return Intent{}, false, err
	}
	id, err := newID(o.opts.Now())
	if err != nil {
		return Intent{}, false, err
	}
	in, created, err := o.st.CreateIntent(ctx, store.Intent{
		ID: id, Practice: r.Practice, App: r.App, IdempotencyKey: r.IdempotencyKey, RequestHash: hash,
		Kind: string(r.Kind), PatientRef: r.PatientRef, TargetType: rt, TargetID: r.TargetID, BaseVersion: r.BaseVersion,
		Body: body, VendorBody: vendor, ConflictPolicy: policy, NextAttempt: o.opts.Now(), CreatedAt: o.opts.Now(),
	})
	if err != nil {
		return Intent{}, false, fmt.Errorf("writeback: submit: %w", err)
	}
	if !created && in.RequestHash != hash {
		return Intent{}, false, ErrKeyReused
	}
	if created {
		o.log.Debug("writeback: intent accepted", "practice", r.Practice, "intent", in.ID, "kind", in.Kind)
		o.report(in, "", in.Status)
		o.kick()
	}
	return in, created, nil
}

// check refuses a request the contract or the caller's validation does not accept.
func (o *Outbox) check(ctx context.Context, r Request, sup contract.Support, rt, policy string) error {
	if !sup.Supported {
		reason := sup.Reason
		if reason == "" {
			reason = fmt.Sprintf("the practice's EHR does not accept %s", safeWord(string(r.Kind)))
		}
		return refused("%s", reason)
	}
	if sup.Channel == contract.ChannelHL7 {
		if err := o.checkHL7(r, sup); err != nil {
			return err
		}
		return o.checkPolicy(ctx, r, policy)
	}
	if sup.Channel == contract.ChannelVendorREST {
		if err := o.checkVendorREST(r); err != nil {
			return err
		}
		return o.checkPolicy(ctx, r, policy)
	}
	if sup.Channel == contract.ChannelFHIR && o.opts.Targets[r.Practice].FHIR == nil {
		return refused("%s goes through FHIR, and the practice has no FHIR connection for write-back", safeWord(string(r.Kind)))
	}
	if sup.Channel != contract.ChannelFHIR {
		return refused("%s goes through the %s channel, which this outbox does not execute", safeWord(string(r.Kind)), safeWord(string(sup.Channel)))
	}
	switch op := sup.OperationFor(r.TargetID != ""); op {
	case "create":
		if r.TargetID != "" {
			return refused("a create takes no target id")
		}
	case "update", "patch":
		if r.TargetID == "" {
			return refused("an %s needs the target record's id", op)
		}
	default:
		return refused("operation %q is not executed over FHIR", safeWord(op))
	}
	if rt == "" {
		return refused("no resource type")
	}
	return o.checkPolicy(ctx, r, policy)
}

// checkPolicy checks the conflict policy and runs the caller's validation.
func (o *Outbox) checkPolicy(ctx context.Context, r Request, policy string) error {
	if policy != store.ConflictFail && policy != store.ConflictReapply && policy != store.ConflictManual {
		return refused("unknown conflict policy %q (fail, reapply or manual)", safeWord(policy))
	}
	if o.opts.Validate != nil {
		if err := o.opts.Validate(ctx, r); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	return nil
}

// Get returns one intent.
func (o *Outbox) Get(ctx context.Context, practice, id string) (Intent, error) {
	return o.st.GetIntent(ctx, practice, id)
}

// List lists a practice's intents, newest first.
func (o *Outbox) List(ctx context.Context, practice string, f store.IntentFilter) ([]Intent, error) {
	return o.st.ListIntents(ctx, practice, f)
}

// Counts counts a practice's intents by status.
func (o *Outbox) Counts(ctx context.Context, practice string) (map[string]int, error) {
	return o.st.CountIntents(ctx, practice)
}

// Attempts lists the exchanges made for an intent, oldest first.
func (o *Outbox) Attempts(ctx context.Context, practice, id string) ([]store.IntentAttempt, error) {
	if _, err := o.st.GetIntent(ctx, practice, id); err != nil {
		return nil, err
	}
	return o.st.ListIntentAttempts(ctx, practice, id)
}

// Rejection is one refused intent with its staff message.
type Rejection struct {
	IntentID string
	App      string
	Kind     string
	Message  string
	At       time.Time
}

// Rejections lists a practice's rejected intents with their messages,
// newest first (at most limit; 0: 100).
func (o *Outbox) Rejections(ctx context.Context, practice string, limit int) ([]Rejection, error) {
	ins, err := o.st.ListIntents(ctx, practice, store.IntentFilter{Status: []string{store.IntentRejected}, Limit: limit})
	if err != nil {
		return nil, err
	}
	out := make([]Rejection, 0, len(ins))
	for _, in := range ins {
		out = append(out, Rejection{IntentID: in.ID, App: in.App, Kind: in.Kind, Message: in.Rejection, At: in.FinishedAt})
	}
	return out, nil
}

// Replay makes a dead, conflict, rejected or mismatch intent accepted
// again (see store.IntentStore.ReplayIntent).
func (o *Outbox) Replay(ctx context.Context, practice, id string) (Intent, error) {
	before, err := o.st.GetIntent(ctx, practice, id)
	if err != nil {
		return Intent{}, err
	}
	in, err := o.st.ReplayIntent(ctx, practice, id, o.opts.Now())
	if err != nil {
		return Intent{}, err
	}
	o.log.Info("writeback: intent replayed", "practice", practice, "intent", id, "from", before.Status)
	o.report(in, before.Status, in.Status)
	o.kick()
	return in, nil
}

func (o *Outbox) report(in Intent, from, to string) {
	if o.opts.OnStatus == nil || from == to {
		return
	}
	ref := ""
	if in.ExternalID != "" {
		ref = in.TargetType + "/" + in.ExternalID
	}
	o.opts.OnStatus(StatusChange{Practice: in.Practice, App: in.App, IntentID: in.ID, Kind: in.Kind, From: from, To: to, Ref: ref, At: o.opts.Now()})
}

// Run executes due intents until ctx ends, then waits for the executions
// in progress, which hand their intents back (due again after
// SettleDelay, since a write may be in flight); intents claimed and not
// started are handed back due at once. An Outbox runs once.
//
// Scheduling: claims are batched and run ahead of the executions. The
// loop holds at most twice as many intents as it may execute (per EHR and
// over all): the ones executing and, claimed in advance, the ones that
// start as soon as a slot frees, so the slots stay busy while the next
// claim is made. It claims when at least a quarter of what it may hold is
// free, and fills it. A claim reads only the heads it takes (the store
// keeps the queue heads in their own index).
func (o *Outbox) Run(ctx context.Context) error {
	o.mu.Lock()
	if o.running {
		o.mu.Unlock()
		return errors.New("writeback: the outbox is already running or has run")
	}
	o.running = true
	o.mu.Unlock()
	s := newSchedule(o)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer s.handBack(ctx)
	done := make(chan string, o.opts.Concurrency) // the practice of a finished execution
	nextLook := map[string]time.Time{}
	failures := 0
	timer := time.NewTimer(0)
	defer timer.Stop()
	start := 0
	for {
		now := o.opts.Now()
		failed := false
		for i := range o.practices {
			if !s.mayClaim("") || ctx.Err() != nil {
				break
			}
			p := o.practices[(start+i)%len(o.practices)]
			if !s.mayClaim(p) {
				continue
			}
			if t, ok := nextLook[p]; ok && now.Before(t) {
				continue
			}
			c, err := o.st.ClaimIntents(ctx, p, now, o.opts.Lease, s.room(p))
			if err != nil {
				if ctx.Err() == nil {
					o.log.Error("writeback: cannot claim intents", "practice", p, "error", err.Error())
				}
				failed = true
				continue
			}
			s.add(p, c.Intents)
			next := now.Add(o.opts.PollInterval)
			if !c.NextDue.IsZero() && c.NextDue.Before(next) {
				next = c.NextDue
			}
			nextLook[p] = next
		}
		s.startReady(ctx, func(in Intent) {
			wg.Go(func() {
				defer func() { done <- in.Practice }()
				o.execute(ctx, in)
			})
		})
		if len(o.practices) > 0 {
			start = (start + 1) % len(o.practices)
		}
		// Wait for the earliest look due, of the practices that may claim;
		// a finished execution wakes the loop for the others.
		wait := o.opts.PollInterval
		now = o.opts.Now()
		if s.mayClaim("") {
			for _, p := range o.practices {
				if !s.mayClaim(p) {
					continue
				}
				if t, ok := nextLook[p]; ok {
					wait = min(wait, max(t.Sub(now), 0))
				} else {
					wait = 0
				}
			}
		}
		if failed {
			failures++
			wait = max(wait, backoff.Jitter(backoff.Backoff(100*time.Millisecond, failures, 10*time.Second)))
		} else {
			failures = 0
		}
		if wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return nil
			case <-o.kickc:
				clear(nextLook)
			case p := <-done:
				s.finished(p)
				delete(nextLook, p)
			case ev := <-o.hl7c:
				o.nudge(ctx, ev)
				delete(nextLook, ev.Practice)
			case <-timer.C:
			}
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
		for more := true; more; {
			select {
			case p := <-done:
				s.finished(p)
				delete(nextLook, p)
			default:
				more = false
			}
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// retryDelay is the pause after failed attempt n (1 for the first): the
// server's Retry-After when it gave one, otherwise BaseDelay doubled n-1
// times, at most MaxDelay, jittered.
func (o *Outbox) retryDelay(n int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return retryAfter
	}
	return o.opts.Jitter(backoff.Backoff(o.opts.BaseDelay, n, o.opts.MaxDelay))
}

// statusText is "HTTP 503 Service Unavailable".
func statusText(code int) string {
	s := fmt.Sprintf("HTTP %d", code)
	if t := http.StatusText(code); t != "" {
		s += " " + t
	}
	return s
}
