// Package engine wires a configuration into a running mediflow: it opens the
// store, builds one SMART token client and FHIR client per connection,
// schedules one sync job per (connection, data class), runs the HL7 v2
// listeners and their processing (internal/ingest/hl7in), maps what both
// bring in to the canonical model (internal/mapping), serves the
// app-facing API, delivers webhooks, runs the write-back outbox of the
// practices that write to their EHR (intents.go), and owns every
// long-running goroutine until its context ends.
package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	gosync "sync"
	"time"

	"github.com/mediflow/mediflow/internal/api"
	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/connector/bulk"
	"github.com/mediflow/mediflow/internal/connector/fhirrest"
	"github.com/mediflow/mediflow/internal/dataclass"
	"github.com/mediflow/mediflow/internal/delivery"
	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/freshness"
	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
	"github.com/mediflow/mediflow/internal/ingest/hl7in"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/smart"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
	"github.com/mediflow/mediflow/internal/sync"
	"github.com/mediflow/mediflow/internal/vendors"
)

// Options are the parts of the outside world an Engine uses.
type Options struct {
	// Logger receives the engine's logs (default: JSON to stderr via obs, at
	// the configured level). It must redact PHI: use obs.NewLogger.
	Logger *slog.Logger
	// Getenv resolves `env:` secrets (default os.Getenv).
	Getenv func(string) string
	// Store overrides the configured store (tests, benchmarks).
	Store store.Store
	// HTTPClient is used for every outbound EHR request (default: a tuned client).
	HTTPClient *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Version is reported on the status page.
	Version string
	// HL7Converter overrides the HL7 v2 → FHIR converter of the HL7
	// listeners (tests; default: v2fhir with its embedded specs).
	HL7Converter hl7in.Converter
	// Profiles overrides the shipped mapping profiles (tests; default:
	// package profiles).
	Profiles fs.FS
	// DeliveryClient sends the webhook requests (tests; default: the
	// dispatcher's own client).
	DeliveryClient *http.Client
	// BulkMaxPoll caps the wait between status polls of bulk exports,
	// whatever Retry-After says (default: the bulk client's, 2 minutes;
	// tests use less).
	BulkMaxPoll time.Duration
	// StartWindow is how far the scheduler spreads the first runs of jobs
	// that have never run (default sync.DefaultStartWindow; tests use less).
	StartWindow time.Duration
}

// Engine is a configured, runnable mediflow.
type Engine struct {
	cfg     *config.Config
	log     *slog.Logger
	store   store.Store
	owns    bool // the engine opened the store and closes it
	metrics *obs.Metrics
	syncer  *sync.Syncer
	sched   *sync.Scheduler
	conns   []*connection
	handler http.Handler
	hl7     *hl7in.Pipeline // nil without HL7 listeners
	mapper  *Mapper         // maps synced and converted resources to the canonical model
	fresh   *freshness.Tracker
	rt      *realtime             // FHIR Subscriptions of realtime classes
	onWrite func(practice string) // called after resources of a practice were written (nil: nothing follows)
	hooks   *delivery.Dispatcher  // webhook delivery; nil without store.secret_key (delivery.go)
	wb      *Intents              // write-back; nil when no practice has it on (intents.go)
	// bulkMaxPoll caps bulk status poll waits (Options.BulkMaxPoll).
	bulkMaxPoll time.Duration
	now         func() time.Time
	version     string
	started     time.Time

	mu        gosync.Mutex
	lastError map[string]string // connection key → last error (PHI-free)
}

// connection is one configured EHR endpoint, ready to sync.
type connection struct {
	practice string
	cfg      config.Connection
	profile  vendors.Profile
	client   *fhirrest.Client
	tokens   *smart.Client // nil for auth type none
	hc       *http.Client
	bulk     *bulk.Client // built on the first nightly run (bulk.go)

	mu   gosync.Mutex
	caps *fhir.ServerCapabilities // nil until the CapabilityStatement was fetched
}

// searchable splits a class's types into those to sync and those skipped.
// A type the server's CapabilityStatement does not list with search-type is
// skipped; before the statement is known every type is tried, except the
// class's optional types (billing's ChargeItem and Claim, which many EHRs do
// not serve): those are synced only once the statement lists them, and only
// when the connection's scopes allow searching them.
func (c *connection) searchable(class dataclass.Class) (ok, skipped []string) {
	c.mu.Lock()
	caps := c.caps
	c.mu.Unlock()
	for _, rt := range class.AllTypes() {
		switch {
		case class.Optional(rt) && (caps == nil || !c.cfg.ScopesAllowSearch(rt)):
			skipped = append(skipped, rt)
		case caps == nil || caps.Supports(rt, "search-type"):
			ok = append(ok, rt)
		default:
			skipped = append(skipped, rt)
		}
	}
	return ok, skipped
}

func (c *connection) key() string { return c.practice + "/" + c.cfg.Name }

// New builds an Engine from a validated configuration. It opens the store
// (and migrates it) unless opts.Store is given.
func New(ctx context.Context, cfg *config.Config, opts Options) (*Engine, error) {
	if opts.Getenv == nil {
		opts.Getenv = func(string) string { return "" }
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		return nil, errors.New("engine: a logger is required (use obs.NewLogger)")
	}
	e := &Engine{cfg: cfg, log: opts.Logger, metrics: obs.NewMetrics(), now: opts.Now, lastError: map[string]string{}, version: opts.Version}
	e.started = e.now().UTC()
	e.bulkMaxPoll = opts.BulkMaxPoll

	e.store = opts.Store
	if e.store == nil {
		st, err := openStore(ctx, cfg)
		if err != nil {
			return nil, err
		}
		e.store, e.owns = st, true
	}
	if err := e.store.Migrate(ctx); err != nil {
		e.closeStore()
		return nil, fmt.Errorf("engine: migrate store: %w", err)
	}

	if err := e.closeAbandonedRuns(ctx); err != nil {
		e.closeStore()
		return nil, err
	}

	m, err := NewMapper(cfg, opts.Profiles)
	if err != nil {
		e.closeStore()
		return nil, err
	}
	m.metrics = e.metrics
	e.mapper = m

	if err := e.buildHL7(opts); err != nil {
		e.closeStore()
		return nil, err
	}

	hc := opts.HTTPClient
	if hc == nil {
		hc = newHTTPClient()
	}
	for _, p := range cfg.Practices {
		for _, cc := range p.Connections {
			c, err := e.buildConnection(p.ID, cc, hc, opts.Getenv)
			if err != nil {
				e.closeStore()
				return nil, fmt.Errorf("engine: practice %s connection %s: %w", p.ID, cc.Name, err)
			}
			e.conns = append(e.conns, c)
		}
	}

	if err := e.buildDelivery(opts); err != nil {
		e.closeStore()
		return nil, err
	}
	if err := e.buildIntents(opts); err != nil {
		e.closeStore()
		return nil, err
	}
	e.fresh = newFreshness(cfg, e.metrics, e.now)
	e.syncer = &sync.Syncer{Store: e.store, Logger: e.log, Now: e.now, Mapper: e.mapper, Freshness: e.fresh, Hooks: sync.Hooks{
		Page: func(practice, conn, rt string, n int, d time.Duration) {
			e.metrics.PageFetched(practice, conn, rt, d)
			if n > 0 {
				e.notifyWrites(practice)
			}
		},
		Run: e.recordRun,
	}}
	if err := e.schedule(ctx, opts.StartWindow); err != nil {
		e.closeStore()
		return nil, err
	}

	apps := make([]api.App, 0, len(cfg.Apps))
	for _, a := range cfg.Apps {
		key, err := a.Key.Resolve(cfg.BaseDir, opts.Getenv)
		if err != nil {
			e.closeStore()
			return nil, fmt.Errorf("engine: app %s key: %w", a.Name, err)
		}
		apps = append(apps, api.App{Name: a.Name, Key: key, Practices: a.Practices})
	}
	practiceIDs := make([]string, 0, len(cfg.Practices))
	for _, p := range cfg.Practices {
		practiceIDs = append(practiceIDs, p.ID)
	}
	h, err := api.New(api.Config{
		Store:     e.store,
		Apps:      apps,
		Practices: practiceIDs,
		Logger:    e.log,
		Metrics:   e.metrics,
		Status:    e.Status,
		Now:       e.now,
		BaseURL:   cfg.Server.PublicURL,
		Freshness: e.fresh.Snapshot,
		Webhooks:  e.webhookAPI(),
		Intents:   e.intentAPI(),
	})
	if err != nil {
		e.closeStore()
		return nil, fmt.Errorf("engine: api: %w", err)
	}
	e.rt = newRealtime(e)
	e.rt.getenv = opts.Getenv
	mux := http.NewServeMux()
	mux.Handle(hookPrefix, e.rt)
	mux.Handle("/", h)
	e.handler = mux
	return e, nil
}

// buildHL7 builds the HL7 v2 pipeline of the configured listeners (none:
// e.hl7 stays nil). TLS files and keys are read here, so a bad one stops
// the start.
func (e *Engine) buildHL7(opts Options) error {
	ls, err := HL7Listeners(e.cfg, opts.Getenv)
	if err != nil {
		return err
	}
	if len(ls) == 0 {
		return nil
	}
	ms, ok := e.store.(hl7in.Store)
	if !ok {
		return errors.New("engine: HL7 listeners are configured but the store does not keep HL7 messages")
	}
	conv := opts.HL7Converter
	if conv == nil {
		c, err := v2fhir.New(v2fhir.Options{})
		if err != nil {
			return fmt.Errorf("engine: HL7 v2 converter: %w", err)
		}
		conv = c
	}
	p, err := hl7in.New(hl7in.Options{Store: ms, Converter: conv, Mapper: e.mapper, Logger: e.log, Metrics: e.metrics, Now: e.now, OnProcessed: e.hl7Processed}, ls)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	e.hl7 = p
	return nil
}

// HL7Listeners turns the configured HL7 listeners of every practice into
// pipeline listeners, reading their TLS files and keys (getenv resolves
// `env:` secrets). `mediflow hl7 listen --config` uses it too.
func HL7Listeners(cfg *config.Config, getenv func(string) string) ([]hl7in.Listener, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	var ls []hl7in.Listener
	for _, p := range cfg.Practices {
		for _, l := range p.HL7Listeners {
			var tc *tls.Config
			if l.TLS.Enabled() {
				var err error
				if tc, err = listenerTLS(cfg, l.TLS, getenv); err != nil {
					return nil, fmt.Errorf("engine: practice %s HL7 listener %s: %w", p.ID, l.Name, err)
				}
			}
			ls = append(ls, hl7in.Listener{
				Practice: p.ID, Name: l.Name, Addr: l.Listen, TLS: tc,
				MaxMessageSize: l.MaxMessageSize, MaxConns: l.MaxConnections, IdleTimeout: l.IdleTimeout,
				DedupWindow: l.DedupWindow, AckMode: l.AckMode, Unsupported: l.Unsupported,
			})
		}
	}
	return ls, nil
}

// listenerTLS reads an HL7 listener's certificate, key and client CAs.
func listenerTLS(cfg *config.Config, t config.HL7TLS, getenv func(string) string) (*tls.Config, error) {
	cert, err := os.ReadFile(cfg.Abs(t.Cert))
	if err != nil {
		return nil, fmt.Errorf("tls cert: %w", err)
	}
	key, err := t.Key.Resolve(cfg.BaseDir, getenv)
	if err != nil {
		return nil, fmt.Errorf("tls key (%s): %w", t.Key.Source(), err)
	}
	var ca []byte
	if t.ClientCA != "" {
		if ca, err = os.ReadFile(cfg.Abs(t.ClientCA)); err != nil {
			return nil, fmt.Errorf("tls client_ca: %w", err)
		}
	}
	return hl7in.ServerTLS(cert, key, ca)
}

// HL7 is the HL7 v2 inbound pipeline (nil when no listener is configured),
// for replays and tests.
func (e *Engine) HL7() *hl7in.Pipeline { return e.hl7 }

// HL7Addr is the bound address of an HL7 listener: nil until Run has bound
// it, or when there is no such listener.
func (e *Engine) HL7Addr(practice, listener string) net.Addr {
	if e.hl7 == nil {
		return nil
	}
	return e.hl7.Addr(practice, listener)
}

// closeAbandonedRuns marks runs still "running" from an earlier process as
// failed: that process stopped mid-run. Their cursors stay, so the next run
// of the same connection resumes from the last committed page.
func (e *Engine) closeAbandonedRuns(ctx context.Context) error {
	for _, p := range e.cfg.Practices {
		runs, err := e.store.ListRuns(ctx, p.ID, "", 1000)
		if err != nil {
			return fmt.Errorf("engine: list sync runs of %s: %w", p.ID, err)
		}
		for _, r := range runs {
			if r.Status != store.RunRunning {
				continue
			}
			r.Status = store.RunFailed
			r.FinishedAt = e.now().UTC()
			r.Error = "abandoned: the engine stopped during this run; the next run resumes from its last committed page"
			if err := e.store.UpdateRun(ctx, r); err != nil {
				return fmt.Errorf("engine: close abandoned run %d of %s: %w", r.ID, p.ID, err)
			}
		}
	}
	return nil
}

func jobName(c *connection, class string) string { return c.key() + "/" + class }

// Rate limits of the sync jobs' starts (runs a second, and bursts), per EHR
// base URL and per token endpoint (see sync.Job.Limits): the scheduler
// spreads the runs of the classes of one connection, and of connections
// sharing an endpoint.
const (
	baseURLRate, baseURLBurst   = 5, 10
	tokenURLRate, tokenURLBurst = 5, 10
)

// limitKeys are the rate-limit keys of a connection's sync jobs: its base
// URL and, with SMART auth, its token endpoint (the base URL stands for a
// token endpoint still to be discovered).
func limitKeys(c *connection) []string {
	keys := []string{"base:" + c.cfg.BaseURL}
	if c.cfg.Auth.Type == config.AuthSMARTBackend {
		tok := c.cfg.Auth.TokenURL
		if tok == "" {
			tok = "discovered-from:" + c.cfg.BaseURL
		}
		keys = append(keys, "token:"+tok)
	}
	return keys
}

// schedule builds the scheduler with one job per (connection, data class),
// following the class's policy: a realtime class's job is its safety poll,
// a poll class's job polls at its interval, hourly and nightly jobs run at
// their period (config has set Interval to it). Each job resumes the place
// it had in the previous process (its last run in the store), so a restart
// does not run everything at once.
func (e *Engine) schedule(ctx context.Context, startWindow time.Duration) error {
	e.sched = sync.NewScheduler(e.log)
	if startWindow > 0 {
		e.sched.StartWindow = startWindow
	}
	last, err := e.lastStarts(ctx)
	if err != nil {
		return err
	}
	for _, c := range e.conns {
		keys := limitKeys(c)
		e.sched.SetLimit(keys[0], sync.Limit{Rate: baseURLRate, Burst: baseURLBurst})
		if len(keys) > 1 {
			e.sched.SetLimit(keys[1], sync.Limit{Rate: tokenURLRate, Burst: tokenURLBurst})
		}
		for _, pol := range c.cfg.Sync {
			class, ok := dataclass.Lookup(pol.Class)
			if !ok {
				return fmt.Errorf("engine: unknown data class %q", pol.Class)
			}
			if pol.Interval <= 0 {
				return fmt.Errorf("engine: %s: sync policy without an interval (was the config parsed?)", jobName(c, class.Name))
			}
			c, class := c, class
			name := jobName(c, class.Name)
			err := e.sched.Add(sync.Job{
				Name:       name,
				Interval:   pol.Interval,
				Jitter:     0.1,
				RunAtStart: true,
				Limits:     keys,
				LastRun:    last[name],
				Run: func(ctx context.Context, trigger string) error {
					return e.syncClass(ctx, c, class, trigger)
				},
			})
			if err != nil {
				return fmt.Errorf("engine: schedule %s: %w", name, err)
			}
		}
		if j := e.reconcileJob(c, keys); j != nil {
			j.LastRun = last[j.Name]
			if err := e.sched.Add(*j); err != nil {
				return fmt.Errorf("engine: schedule %s: %w", j.Name, err)
			}
		}
	}
	return nil
}

// lastStartsScan is how many recent runs per practice lastStarts reads.
const lastStartsScan = 1000

// lastStarts returns, by job name, when each (connection, class) job last
// started in an earlier process, from the store's run records (a run's
// statistics name the resource types it synced). A job whose last run is
// older than the practice's last lastStartsScan runs is not found: it is
// then treated as new, and its first run is spread over the start window.
func (e *Engine) lastStarts(ctx context.Context) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	for _, p := range e.cfg.Practices {
		if len(p.Connections) == 0 {
			continue
		}
		runs, err := e.store.ListRuns(ctx, p.ID, "", lastStartsScan)
		if err != nil {
			return nil, fmt.Errorf("engine: list sync runs of %s: %w", p.ID, err)
		}
		for _, r := range runs {
			for rt := range r.Stats {
				cl, ok := dataclass.ForResourceType(rt)
				if !ok {
					continue
				}
				name := p.ID + "/" + r.Connection + "/" + cl.Name
				if r.StartedAt.After(out[name]) {
					out[name] = r.StartedAt
				}
			}
		}
	}
	return out, nil
}

func openStore(ctx context.Context, cfg *config.Config) (store.Store, error) {
	switch cfg.Store.Driver {
	case "", "sqlite":
		path := cfg.Abs(cfg.Store.Path)
		st, err := sqlite.Open(ctx, path, sqlite.Options{})
		if err != nil {
			return nil, fmt.Errorf("engine: open sqlite store %s: %w", path, err)
		}
		return st, nil
	case "postgres":
		return nil, errors.New("engine: the postgres store is not available in this build yet; use driver: sqlite")
	default:
		return nil, fmt.Errorf("engine: unknown store driver %q", cfg.Store.Driver)
	}
}

func newHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	tr.MaxIdleConns = 256
	// Bulk NDJSON files are megabytes: with the default 4 KiB buffer a
	// download takes about three read calls per 64 KiB the server sends.
	// 64 KiB per connection (at most 256 idle ones) is a small price.
	tr.ReadBufferSize = 64 << 10
	return &http.Client{Transport: tr}
}

func (e *Engine) buildConnection(practice string, cc config.Connection, hc *http.Client, getenv func(string) string) (*connection, error) {
	prof, err := vendors.New(cc.Vendor, vendors.Params{PracticeID: cc.PracticeID})
	if err != nil {
		return nil, err
	}
	c := &connection{practice: practice, cfg: cc, profile: prof, hc: hc}
	var tokens fhirrest.TokenSource
	if cc.Auth.Type == config.AuthSMARTBackend {
		pem, err := cc.Auth.PrivateKey.Resolve(e.cfg.BaseDir, getenv)
		if err != nil {
			return nil, fmt.Errorf("private key: %w", err)
		}
		key, err := smart.DecodePrivateKeyPEM(pem)
		if err != nil {
			return nil, fmt.Errorf("private key (%s): %w", cc.Auth.PrivateKey.Source(), err)
		}
		scopes := cc.Auth.Scopes
		if len(scopes) == 0 {
			// Read-only system scopes for what the connection syncs; the client
			// converts them to v1 syntax for servers that only speak v1.
			for _, rt := range cc.ResourceTypes() {
				scopes = append(scopes, "system/"+rt+".rs")
			}
			scopes = append(scopes, e.writeScopes(practice, cc)...)
		}
		tc, err := smart.NewClient(smart.ClientConfig{
			ClientID:    cc.Auth.ClientID,
			FHIRBaseURL: cc.BaseURL,
			TokenURL:    cc.Auth.TokenURL,
			Key:         key,
			KeyID:       cc.Auth.KeyID,
			Algorithm:   cc.Auth.Algorithm,
			JKU:         cc.Auth.JKU,
			Scopes:      scopes,
			HTTPClient:  hc,
			Logger:      e.log.With("practice", practice, "connection", cc.Name),
			Now:         e.now,
		})
		if err != nil {
			return nil, fmt.Errorf("smart client: %w", err)
		}
		c.tokens, tokens = tc, tc
	}
	client, err := fhirrest.New(fhirrest.Config{
		BaseURL:    cc.BaseURL,
		HTTPClient: hc,
		Tokens:     tokens,
		Profile:    prof,
		Timeout:    cc.Timeout,
		Logger:     e.log.With("practice", practice, "connection", cc.Name),
		Now:        e.now,
	})
	if err != nil {
		return nil, err
	}
	c.client = client
	return c, nil
}

func (e *Engine) source(c *connection, types []string) sync.Source {
	return sync.Source{
		Practice:      c.practice,
		Connection:    c.cfg.Name,
		Client:        c.client,
		Profile:       c.profile,
		ResourceTypes: types,
		Overlap:       c.cfg.Overlap,
		PageSize:      c.cfg.PageSize,
	}
}

// syncClass runs one sync of a data class on a connection.
func (e *Engine) syncClass(ctx context.Context, c *connection, class dataclass.Class, trigger string) error {
	c.mu.Lock()
	known := c.caps != nil
	c.mu.Unlock()
	if !known {
		// Learn what the server supports before the first sync; if the
		// statement cannot be fetched, every type is tried.
		if err := e.fetchCapability(ctx, c); err != nil {
			e.log.Warn("capability statement fetch failed", "practice", c.practice, "connection", c.cfg.Name, "error", err.Error())
		}
	}
	if policyOf(c, class).Mode == dataclass.ModeNightly {
		return e.exportClass(ctx, c, class, trigger)
	}
	types, skipped := c.searchable(class)
	if len(skipped) > 0 && trigger != sync.TriggerSchedule {
		e.log.Info("not syncing these resource types: the server does not list them as searchable, or (optional types) not yet, or the scopes do not allow them",
			"practice", c.practice, "connection", c.cfg.Name, "class", class.Name, "types", skipped)
	}
	if len(types) == 0 {
		return nil
	}
	run, err := e.syncer.Run(ctx, e.source(c, types), trigger)
	if err != nil {
		e.metrics.SyncError(fhirrest.KindOf(err).String())
	} else if run.Status == store.RunPartial || run.Status == store.RunFailed {
		e.metrics.SyncError("partial-run")
	}
	e.mu.Lock()
	if err != nil {
		e.lastError[c.key()] = err.Error()
	} else if run.Status == store.RunSucceeded {
		delete(e.lastError, c.key())
	}
	e.mu.Unlock()
	if err == nil && (run.Status == store.RunSucceeded || run.Status == store.RunPartial) {
		e.metrics.SyncSucceeded(c.practice, class.Name, e.now())
	}
	return err
}

func (e *Engine) recordRun(r store.Run) {
	e.metrics.RunFinished(r.Practice, r.Connection, r.Status)
	for rt, st := range r.Stats {
		e.metrics.ResourcesSynced(r.Practice, rt, "new", st.New)
		e.metrics.ResourcesSynced(r.Practice, rt, "changed", st.Changed)
		e.metrics.ResourcesSynced(r.Practice, rt, "unchanged", st.Unchanged)
		e.metrics.ResourcesSynced(r.Practice, rt, "failed", st.Failed)
	}
}

// Handler is the app-facing HTTP handler (API, status page, health, metrics).
func (e *Engine) Handler() http.Handler { return e.handler }

// Store is the engine's store.
func (e *Engine) Store() store.Store { return e.store }

// Metrics is the engine's metric set.
func (e *Engine) Metrics() *obs.Metrics { return e.metrics }

// FetchCapabilities fetches and stores every connection's CapabilityStatement.
// Failures are logged and returned joined; they do not stop the others.
func (e *Engine) FetchCapabilities(ctx context.Context) error {
	var errs []error
	for _, c := range e.conns {
		if err := e.fetchCapability(ctx, c); err != nil {
			e.log.Warn("capability statement fetch failed", "practice", c.practice, "connection", c.cfg.Name, "error", err.Error())
			errs = append(errs, fmt.Errorf("%s: %w", c.key(), err))
		}
	}
	return errors.Join(errs...)
}

// fetchCapability fetches, stores and reads one connection's CapabilityStatement.
func (e *Engine) fetchCapability(ctx context.Context, c *connection) error {
	if err := e.syncer.FetchCapabilities(ctx, e.source(c, nil)); err != nil {
		return err
	}
	stored, err := e.store.GetCapability(ctx, c.practice, c.cfg.Name)
	if err != nil {
		return fmt.Errorf("read stored capability statement: %w", err)
	}
	caps, err := fhir.ParseCapabilities(stored.Body)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.caps = caps
	c.mu.Unlock()
	return nil
}

// SyncAll runs every (connection, class) sync once, in order, and returns the
// first error of each job joined. It is what `serve --once` and tests use.
func (e *Engine) SyncAll(ctx context.Context, trigger string) error {
	var errs []error
	for _, c := range e.conns {
		for _, pol := range c.cfg.Sync {
			class, _ := dataclass.Lookup(pol.Class)
			if err := e.syncClass(ctx, c, class, trigger); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", jobName(c, class.Name), err))
			}
		}
	}
	return errors.Join(errs...)
}

// Run serves the API on the configured listener (or ln when not nil), runs
// the HL7 listeners and their processing, fetches capabilities and runs the
// sync scheduler until ctx ends, then shuts down gracefully. The caller
// closes the engine afterwards.
func (e *Engine) Run(ctx context.Context, ln net.Listener) error {
	if ln == nil {
		var err error
		ln, err = net.Listen("tcp", e.cfg.Server.Listen)
		if err != nil {
			return fmt.Errorf("engine: listen on %s: %w", e.cfg.Server.Listen, err)
		}
	}
	if e.hl7 != nil {
		if err := e.hl7.Listen(); err != nil {
			ln.Close()
			return fmt.Errorf("engine: %w", err)
		}
	}
	ctx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	srv := &http.Server{Handler: e.handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 3)
	hl7Done := make(chan struct{})
	go func() {
		defer close(hl7Done)
		if e.hl7 == nil {
			return
		}
		if err := e.hl7.Run(ctx); err != nil {
			errc <- fmt.Errorf("engine: %w", err)
		}
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("engine: http server: %w", err)
		}
	}()
	e.log.Info("api listening", "addr", ln.Addr().String())

	rtDone := make(chan struct{})
	go func() {
		defer close(rtDone)
		e.rt.run(ctx, listenBase(e.cfg, ln))
	}()
	deliveryDone := e.runDelivery(ctx)
	intentsDone := e.runIntents(ctx)
	schedDone := make(chan struct{})
	go func() {
		defer close(schedDone)
		_ = e.FetchCapabilities(ctx)
		if err := e.sched.Run(ctx); err != nil && ctx.Err() == nil {
			e.log.Error("scheduler stopped", "error", err.Error())
		}
	}()

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancelRun()
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	<-schedDone
	<-deliveryDone
	<-intentsDone
	<-rtDone
	<-hl7Done
	return err
}

// Close releases the store if the engine opened it.
func (e *Engine) Close() error { return e.closeStore() }

func (e *Engine) closeStore() error {
	if e.owns && e.store != nil {
		err := e.store.Close()
		e.store = nil
		return err
	}
	return nil
}

// Status reports, PHI-free, what every practice holds and how its last syncs went.
func (e *Engine) Status(ctx context.Context) api.Status {
	st := api.Status{GeneratedAt: e.now().UTC(), Version: e.version, StartedAt: e.started}
	for _, p := range e.cfg.Practices {
		ps := api.PracticeStatus{ID: p.ID, Name: p.Name, Resources: map[string]int{}}
		if counts, err := e.store.CountResources(ctx, p.ID); err == nil {
			ps.Resources = counts
		} else {
			ps.Errors = append(ps.Errors, "resource counts unavailable: store error")
		}
		for _, cc := range p.Connections {
			cs := api.ConnectionStatus{Name: cc.Name, Vendor: cc.Vendor, BaseURLHost: hostOf(cc.BaseURL), State: "idle"}
			if runs, err := e.store.ListRuns(ctx, p.ID, cc.Name, 1); err == nil && len(runs) > 0 {
				rs := api.RunStatusOf(runs[0])
				cs.LastRun = &rs
				cs.State = stateOf(runs[0].Status)
				if ps.LastRun == nil || rs.StartedAt.After(ps.LastRun.StartedAt) {
					ps.LastRun = &rs
				}
			}
			e.mu.Lock()
			cs.LastError = e.lastError[p.ID+"/"+cc.Name]
			e.mu.Unlock()
			if cs.LastError != "" {
				cs.State = "error"
				ps.Errors = append(ps.Errors, cc.Name+": "+cs.LastError)
			}
			ps.Connections = append(ps.Connections, cs)
		}
		for _, l := range p.HL7Listeners {
			cs := api.ConnectionStatus{Name: l.Name, Vendor: "hl7v2-mllp", BaseURLHost: l.Listen, State: "idle"}
			if a := e.HL7Addr(p.ID, l.Name); a != nil {
				cs.BaseURLHost, cs.State = a.String(), "listening"
			}
			ps.Connections = append(ps.Connections, cs)
		}
		st.Practices = append(st.Practices, ps)
	}
	sort.Slice(st.Practices, func(i, j int) bool { return st.Practices[i].ID < st.Practices[j].ID })
	return st
}

func stateOf(runStatus string) string {
	switch runStatus {
	case store.RunRunning:
		return "syncing"
	case store.RunSucceeded:
		return "ok"
	case store.RunPartial:
		return "degraded"
	default:
		return "error"
	}
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}
