package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/mediflow/mediflow/internal/api"
	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/connector/fhirrest"
	"github.com/mediflow/mediflow/internal/delivery"
	"github.com/mediflow/mediflow/internal/hl7/fhirv2"
	"github.com/mediflow/mediflow/internal/mapping"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/vendors/athenahealth"
	"github.com/mediflow/mediflow/internal/writeback"
	"github.com/mediflow/mediflow/internal/writeback/contract"
	"github.com/mediflow/mediflow/internal/writeback/hl7out"
	"github.com/mediflow/mediflow/profiles"
)

// Write-back (package writeback, docs/writeback.md): every practice with
// writeback.enabled gets a write target in one Outbox over the engine's
// store: its first connection's FHIR client, and its vendor's write
// contract at the practice's vendor_version. An intent is checked and
// mapped (canonical → vendor, the connection's mapping Set) before the
// outbox stores it; verification maps the read-back in again, so it
// compares canonical forms. Status changes become "intent.status" webhook
// events to the app that asked (when webhooks are on).
//
// A practice with writeback.hl7 also gets the HL7 v2 routes of the write
// contract (contract.Options.HL7Outbound): intents the vendor's FHIR API
// does not take go to its MLLP destination through one hl7out Sender over
// the engine's store (destination name "writeback"), which Intents.Run
// runs next to the outbox. PID is built from the patient read through the
// practice's FHIR connection.
//
// A practice on athenahealth also gets athenahealth's v1 API
// (writeback.VendorRESTTarget) for the appointment intents its contract
// routes to the vendor-rest channel: at the connection's v1_base_url, or
// its FHIR base with the /fhir/… path replaced by /v1, called with the
// connection's HTTP client and SMART token source.

// IntentStatusEvent is the type of the app event sent on every status
// change of an intent.
const IntentStatusEvent = "intent.status"

// IntentStatus is the data of an "intent.status" event: PHI-free.
type IntentStatus struct {
	IntentID string `json:"intentId"`
	Kind     string `json:"kind"`
	From     string `json:"from,omitempty"` // "" when the intent was just accepted
	Status   string `json:"status"`
	// Record is the record at the EHR ("DocumentReference/123"), once known.
	Record string `json:"record,omitempty"`
	// Intent is where the app reads the intent: the API path, or its URL
	// under server.public_url.
	Intent string `json:"intent"`
}

// statusEventTimeout bounds enqueueing one status event.
const statusEventTimeout = 5 * time.Second

// Intents is the engine's write-back: the outbox, with each practice's
// write contract and mapping in front of it. It implements api.Intents;
// `mediflow writeback test` drives it directly.
type Intents struct {
	ob        *writeback.Outbox
	hl7       *hl7out.Sender // nil: no practice writes over HL7
	targets   map[string]*writeTarget
	hooks     *delivery.Dispatcher // nil: no status events
	log       *slog.Logger
	publicURL string
}

// writeTarget is one practice's write path.
type writeTarget struct {
	conn     *connection
	contract *contract.Contract
	set      *mapping.Set // canonical → vendor (Direction out), for validation
}

var _ api.Intents = (*Intents)(nil)

// buildIntents builds the outbox when a practice has write-back enabled
// (e.wb stays nil otherwise). It runs after the connections and the
// webhook dispatcher are built.
func (e *Engine) buildIntents(opts Options) error {
	targets := map[string]*writeTarget{}
	outTargets := map[string]writeback.Target{}
	var dests []hl7out.Destination
	for _, p := range e.cfg.Practices {
		if p.Writeback.Enabled && p.Writeback.HL7.Destination != "" {
			dests = append(dests, hl7out.Destination{Practice: p.ID, Name: WritebackHL7Destination, Addr: p.Writeback.HL7.Destination,
				AckTimeout: p.Writeback.HL7.AckTimeout, MaxRounds: p.Writeback.HL7.MaxRounds})
		}
	}
	var sender *hl7out.Sender
	var ob *writeback.Outbox // set below; the Sender reports outcomes to it once both run
	var ms store.MessageStore
	if len(dests) > 0 {
		var ok bool
		if ms, ok = e.store.(store.MessageStore); !ok {
			return errors.New("engine: write-back over HL7 is configured but the store does not keep HL7 messages")
		}
		s, err := hl7out.New(hl7out.Options{Store: ms, Destinations: dests, Logger: e.log, Now: e.now,
			OnEvent: func(ev hl7out.Event) { ob.HL7Event(ev) }})
		if err != nil {
			return fmt.Errorf("engine: write-back over HL7: %w", err)
		}
		sender = s
	}
	for _, p := range e.cfg.Practices {
		if !p.Writeback.Enabled {
			continue
		}
		if len(p.Connections) == 0 {
			return fmt.Errorf("engine: practice %s: write-back needs a FHIR connection", p.ID)
		}
		var conn *connection
		for _, c := range e.conns {
			if c.practice == p.ID && c.cfg.Name == p.Connections[0].Name {
				conn = c
				break
			}
		}
		if conn == nil {
			return fmt.Errorf("engine: practice %s: connection %s was not built", p.ID, p.Connections[0].Name)
		}
		withHL7 := p.Writeback.HL7.Destination != ""
		ct, err := contract.Default().ForPractice(conn.cfg.Vendor, p.Mapping.VendorVersion, contract.Options{HL7Outbound: withHL7})
		if err != nil {
			return fmt.Errorf("engine: practice %s write-back: %w", p.ID, err)
		}
		set := e.mapper.Set(p.ID, conn.cfg.Name)
		var mapIn func(ctx context.Context, rt string, vendor []byte) ([]byte, error)
		if set != nil {
			practice, source := p.ID, conn.cfg.Name
			mapIn = func(ctx context.Context, rt string, vendor []byte) ([]byte, error) {
				return e.mapper.Map(ctx, practice, source, rt, vendor)
			}
		} else {
			// Mapping is off (resources are stored as the EHR sent them):
			// writes are still mapped out and checked, and verification
			// compares vendor forms.
			if set, err = loadWriteSet(e.cfg, p, conn.cfg.Name, opts.Profiles); err != nil {
				return fmt.Errorf("engine: practice %s write-back: %w", p.ID, err)
			}
		}
		targets[p.ID] = &writeTarget{conn: conn, contract: ct, set: set}
		tgt := writeback.Target{FHIR: conn.client, Support: ct.Support, MapIn: mapIn}
		if tgt.VendorREST, err = e.vendorRESTTarget(p, conn, ct); err != nil {
			return fmt.Errorf("engine: practice %s write-back: %w", p.ID, err)
		}
		if withHL7 {
			tgt.HL7 = &writeback.HL7Target{Sender: sender, Destination: WritebackHL7Destination, Messages: ms,
				Encoder: fhirv2.Options{SendingApplication: "MEDIFLOW", SendingFacility: p.ID, Now: e.now}}
		}
		outTargets[p.ID] = tgt
	}
	if len(targets) == 0 {
		return nil
	}
	w := &Intents{targets: targets, hl7: sender, hooks: e.hooks, log: e.log, publicURL: e.cfg.Server.PublicURL}
	var err error
	// One outbox serves every practice: it holds intents for the smallest
	// lease any of them asks for.
	var lease time.Duration
	for _, p := range e.cfg.Practices {
		if p.Writeback.Enabled && p.Writeback.Lease > 0 && (lease == 0 || p.Writeback.Lease < lease) {
			lease = p.Writeback.Lease
		}
	}
	// Each practice's writeback.concurrency bounds the writes to its EHR;
	// the outbox as a whole runs its default, or the largest of them.
	ehrConcurrency := map[string]int{}
	concurrency := writeback.DefaultConcurrency
	for _, p := range e.cfg.Practices {
		if p.Writeback.Enabled && p.Writeback.Concurrency > 0 {
			ehrConcurrency[p.ID] = p.Writeback.Concurrency
			concurrency = max(concurrency, p.Writeback.Concurrency)
		}
	}
	ob, err = writeback.New(writeback.Options{
		Store:          e.store,
		Targets:        outTargets,
		Logger:         e.log,
		Now:            e.now,
		Lease:          lease,
		Concurrency:    concurrency,
		EHRConcurrency: ehrConcurrency,
		OnStatus:       w.statusChanged,
	})
	if err != nil {
		return fmt.Errorf("engine: write-back: %w", err)
	}
	w.ob = ob
	e.wb = w
	return nil
}

// vendorRESTTarget is the athenahealth v1 API of a practice whose write
// contract routes intents to the vendor-rest channel (nil for any other):
// v1_base_url, or the connection's FHIR base with its /fhir/… path
// replaced by /v1, with the connection's HTTP client, token source,
// timeout and the practice's mapping time zone. A base that cannot be
// derived is logged, and those intents are refused at submission.
func (e *Engine) vendorRESTTarget(p config.Practice, conn *connection, ct *contract.Contract) (*writeback.VendorRESTTarget, error) {
	uses := false
	for _, s := range ct.Supports() {
		uses = uses || (s.Supported && s.Channel == contract.ChannelVendorREST)
	}
	if !uses || conn.cfg.Vendor != contract.VendorAthenahealth {
		return nil, nil
	}
	base := conn.cfg.V1BaseURL
	if base == "" {
		var ok bool
		if base, ok = athenahealth.V1Base(conn.cfg.BaseURL); !ok {
			e.log.Warn("write-back: the athenahealth v1 API base cannot be derived from base_url; set v1_base_url, "+
				"until then appointment intents are refused", "practice", p.ID, "connection", conn.cfg.Name)
			return nil, nil
		}
	}
	loc, err := p.Mapping.Location()
	if err != nil {
		return nil, fmt.Errorf("mapping time zone: %w", err)
	}
	v := &writeback.VendorRESTTarget{BaseURL: base, PracticeID: conn.cfg.PracticeID, HTTPClient: conn.hc,
		Timeout: conn.cfg.Timeout, Location: loc}
	if conn.tokens != nil { // not a typed nil in the interface
		v.Tokens = conn.tokens
	}
	return v, nil
}

// loadWriteSet loads the mapping Set of a practice's connection when the
// practice's mapping is disabled.
func loadWriteSet(cfg *config.Config, p config.Practice, conn string, fsys fs.FS) (*mapping.Set, error) {
	if fsys == nil {
		fsys = profiles.FS
	}
	pm, err := loadPractice(cfg, p, fsys)
	if err != nil {
		return nil, err
	}
	return pm.sources[conn], nil
}

// writeScopes are what write-back adds to a connection's default scopes:
// create, read, update and search of every resource type the practice's
// write contract writes over FHIR or, with the same token, through the
// vendor's own API (athenahealth's v1 appointments). None unless the
// connection is the first of a practice with write-back on (or the vendor
// has no contract: the start then fails in buildIntents).
func (e *Engine) writeScopes(practice string, cc config.Connection) []string {
	var p *config.Practice
	for i := range e.cfg.Practices {
		if e.cfg.Practices[i].ID == practice {
			p = &e.cfg.Practices[i]
		}
	}
	if p == nil || !p.Writeback.Enabled || len(p.Connections) == 0 || p.Connections[0].Name != cc.Name {
		return nil
	}
	ct, err := contract.Default().ForPractice(cc.Vendor, p.Mapping.VendorVersion, contract.Options{})
	if err != nil {
		return nil
	}
	var types []string
	for _, s := range ct.Supports() {
		api := s.Channel == contract.ChannelFHIR || s.Channel == contract.ChannelVendorREST
		if s.Supported && api && s.ResourceType != "" && !slices.Contains(types, s.ResourceType) {
			types = append(types, s.ResourceType)
		}
	}
	slices.Sort(types)
	scopes := make([]string, 0, len(types))
	for _, rt := range types {
		scopes = append(scopes, "system/"+rt+".crus")
	}
	return scopes
}

// intentAPI is what the API serves intents through: nil (a nil interface,
// so the endpoints answer 501) without write-back.
func (e *Engine) intentAPI() api.Intents {
	if e.wb == nil {
		return nil
	}
	return e.wb
}

// Intents is the engine's write-back (nil when no practice has it on).
// Engine.Run runs its outbox; tools that do not run the engine call
// Intents.Run themselves.
func (e *Engine) Intents() *Intents { return e.wb }

// runIntents starts the outbox, when there is one, on a goroutine that
// ends with ctx; the channel is closed once it has stopped.
func (e *Engine) runIntents(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	if e.wb == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		if err := e.wb.Run(ctx); err != nil {
			e.log.Error("write-back stopped", "error", err.Error())
		}
	}()
	return done
}

// WritebackHL7Destination is the hl7out destination name (the channel of
// the stored messages) of a practice's writeback.hl7.
const WritebackHL7Destination = "writeback"

// Run executes intents until ctx ends (see writeback.Outbox.Run), and
// delivers the HL7 messages of the practices that write over HL7 (see
// hl7out.Sender.Run). It runs once: Engine.Run calls it.
func (w *Intents) Run(ctx context.Context) error {
	if w.hl7 == nil {
		return w.ob.Run(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sent := make(chan error, 1)
	go func() { sent <- w.hl7.Run(ctx) }()
	err := w.ob.Run(ctx)
	cancel() // the outbox stopped: so does delivery
	if serr := <-sent; err == nil && serr != nil {
		err = fmt.Errorf("hl7 outbound: %w", serr)
	}
	return err
}

// Practices lists the practices with write-back on, sorted.
func (w *Intents) Practices() []string {
	out := make([]string, 0, len(w.targets))
	for p := range w.targets {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// FHIR is the client intents of a practice are written with (nil: the
// practice has no write-back), for reading records back.
func (w *Intents) FHIR(practice string) *fhirrest.Client {
	if t := w.targets[practice]; t != nil {
		return t.conn.client
	}
	return nil
}

// Support says what the practice's write contract allows for an intent
// kind; writeback.ErrUnknownPractice when the practice has no write-back.
func (w *Intents) Support(practice string, kind contract.Intent) (contract.Support, error) {
	t := w.targets[practice]
	if t == nil {
		return contract.Support{}, fmt.Errorf("%w: %s", writeback.ErrUnknownPractice, practice)
	}
	return t.contract.Support(kind), nil
}

// Submit checks the request against the practice's contract (mapping the
// canonical body to the vendor's shape) and hands it to the outbox with
// the vendor body. An unsupported intent is refused with the contract's
// reason, a body that breaks the contract with its field errors (joined,
// wrapped in writeback.ErrInvalid); nothing refused is stored.
func (w *Intents) Submit(ctx context.Context, r writeback.Request) (store.Intent, bool, error) {
	t := w.targets[r.Practice]
	if t == nil {
		return store.Intent{}, false, fmt.Errorf("%w: %s", writeback.ErrUnknownPractice, r.Practice)
	}
	body, sup, fes, err := contract.Validate(ctx, t.set, t.contract, r.Kind, r.Body)
	switch {
	case err != nil:
		return store.Intent{}, false, fmt.Errorf("engine: write-back: %w", err)
	case !sup.Supported:
		return store.Intent{}, false, fmt.Errorf("%w: %s", writeback.ErrInvalid, sup.Reason)
	case len(fes) > 0:
		errs := make([]error, len(fes))
		for i, fe := range fes {
			errs[i] = fe
		}
		return store.Intent{}, false, fmt.Errorf("%w: %w", writeback.ErrInvalid, errors.Join(errs...))
	}
	r.VendorBody = body
	return w.ob.Submit(ctx, r)
}

// Get returns one intent of a practice.
func (w *Intents) Get(ctx context.Context, practice, id string) (store.Intent, error) {
	return w.ob.Get(ctx, practice, id)
}

// List lists a practice's intents, newest first.
func (w *Intents) List(ctx context.Context, practice string, f store.IntentFilter) ([]store.Intent, error) {
	return w.ob.List(ctx, practice, f)
}

// Attempts lists the exchanges made for an intent, oldest first.
func (w *Intents) Attempts(ctx context.Context, practice, id string) ([]store.IntentAttempt, error) {
	return w.ob.Attempts(ctx, practice, id)
}

// Rejections lists a practice's rejected intents, newest first.
func (w *Intents) Rejections(ctx context.Context, practice string, limit int) ([]writeback.Rejection, error) {
	return w.ob.Rejections(ctx, practice, limit)
}

// Replay makes a dead, conflict, rejected or mismatch intent accepted again.
func (w *Intents) Replay(ctx context.Context, practice, id string) (store.Intent, error) {
	return w.ob.Replay(ctx, practice, id)
}

// statusChanged turns an intent's status change into an "intent.status"
// event for the app's webhooks (when webhooks are on). It is the outbox's
// OnStatus: it runs on the goroutine that made the change, and the
// enqueue is one store transaction, bounded by statusEventTimeout.
func (w *Intents) statusChanged(c writeback.StatusChange) {
	if w.hooks == nil {
		return
	}
	path := "/v1/practices/" + url.PathEscape(c.Practice) + "/intents/" + url.PathEscape(c.IntentID)
	if w.publicURL != "" {
		path = trimSlash(w.publicURL) + path
	}
	ctx, cancel := context.WithTimeout(context.Background(), statusEventTimeout)
	defer cancel()
	_, err := w.hooks.SendAppEvent(ctx, delivery.AppEventSpec{
		Practice: c.Practice, App: c.App, Type: IntentStatusEvent,
		Key:        c.IntentID + ":" + c.From + ">" + c.To + ":" + strconv.FormatInt(c.At.UnixNano(), 10),
		OccurredAt: c.At,
		Data:       IntentStatus{IntentID: c.IntentID, Kind: c.Kind, From: c.From, Status: c.To, Record: c.Ref, Intent: path},
	})
	if err != nil {
		w.log.Error("write-back: cannot enqueue the status event", "practice", c.Practice, "app", c.App, "intent", c.IntentID, "status", c.To, "error", err.Error())
	}
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}
