// Package api is mediflow's app-facing HTTP surface: a read-only FHIR R4 REST
// API per practice over the canonical store, the change feed, API-key
// authentication scoped to practices, the audit trail of every PHI access,
// and the operational endpoints (/healthz, /readyz, /metrics, the status page
// and its JSON).
//
// Routes (all errors are FHIR OperationOutcome documents):
//
//	GET  /fhir/{practice}/metadata                       CapabilityStatement
//	GET  /fhir/{practice}/{type}?params                  search → searchset Bundle (also GET|POST …/{type}/_search)
//	GET  /fhir/{practice}/{type}/{id}                    read (ETag W/"version", Last-Modified, If-None-Match)
//	GET  /fhir/{practice}/{type}/{id}/_history[/{vid}]   history Bundle / version read
//	GET  /v1/practices                                   the practices the key may read
//	GET  /v1/practices/{practice}/changes?since=&limit=  change feed (monotonic cursor)
//	POST|GET /v1/practices/{practice}/webhooks           register (secret shown once) / list the app's webhooks
//	GET|PATCH /v1/practices/{practice}/webhooks/{id}     read (with delivery counts) / change url, types, active
//	POST /v1/practices/{practice}/webhooks/{id}/rotate-secret
//	GET  /v1/practices/{practice}/webhooks/dead-letters  and POST …/dead-letters/{id}/replay (docs/delivery.md)
//	POST|GET /v1/practices/{practice}/intents            submit a write (Idempotency-Key) / list the app's intents (docs/writeback.md)
//	GET  /v1/practices/{practice}/intents/{id}           status and history; POST …/intents/{id}/replay
//	GET  /v1/practices/{practice}/rejections             the app's rejected writes, with the message for staff
//	GET  /healthz  /readyz                               probes (no key)
//	GET  /  /v1/status  /metrics  /static/…              status page, its JSON, Prometheus (loopback only by default)
//
// Keys travel as "Authorization: Bearer <key>" or "X-API-Key: <key>". A key
// that may not read a practice gets 403, and so does any key asking for a
// practice that does not exist: the two cannot be told apart.
//
// Every route is declared once, in the table returned by routes(); its access
// level decides which guard wraps it, so a route that takes a {practice}
// cannot be registered without the tenant check.
package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/fhir/searchparam"
	"github.com/mediflow/mediflow/internal/freshness"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/web"
)

// AllPractices in App.Practices lets an app read every practice.
const AllPractices = "*"

// App is one API client and the practices its key may read.
type App struct {
	Name      string
	Key       []byte   // the API key; only its SHA-256 is kept
	Practices []string // practice ids, or AllPractices
}

// Config configures the API handler.
type Config struct {
	Store     store.Store
	Apps      []App
	Practices []string // ids of the configured practices
	Logger    *slog.Logger
	// Metrics receives the HTTP metrics and is served on /metrics; nil creates a private one.
	Metrics *obs.Metrics
	// Status reports the engine's state for the status page and /v1/status;
	// nil derives a status from the store alone (StoreStatus).
	Status StatusFunc
	Now    func() time.Time // nil: time.Now
	// BaseURL is the public base ("https://mediflow.example.org") used in
	// fullUrl and links; empty derives it from each request's Host.
	BaseURL string
	// ExposeStatus serves the status page, /v1/status and /metrics to any
	// client; by default they answer loopback clients only.
	ExposeStatus bool
	// Version is reported in the CapabilityStatement and the status.
	Version string
	// Freshness reports measured freshness per data class of a practice
	// (GET /v1/practices/{practice}/freshness); nil: nothing measured.
	Freshness func(practice string) []freshness.Stat
	// Webhooks manages apps' webhooks (/v1/practices/{practice}/webhooks…,
	// docs/delivery.md); nil: those endpoints answer 501. Pass a nil
	// interface, not a nil *delivery.Dispatcher.
	Webhooks Webhooks
	// Intents is the write-back outbox (/v1/practices/{practice}/intents…,
	// /rejections; docs/writeback.md); nil: those endpoints answer 501.
	// Pass a nil interface, not a nil pointer.
	Intents Intents
}

// StatusFunc returns the engine's current status. It must be PHI-free.
type StatusFunc func(ctx context.Context) Status

// appEntry is an App with its key hashed.
type appEntry struct {
	name      string
	keyHash   [sha256.Size]byte
	all       bool
	practices map[string]bool
}

func (a *appEntry) allows(practice string) bool { return a.all || a.practices[practice] }

type server struct {
	st           store.Store
	apps         []appEntry
	practices    map[string]bool
	practiceList []string
	log          *slog.Logger
	metrics      *obs.Metrics
	status       StatusFunc
	now          func() time.Time
	base         string
	exposeStatus bool
	version      string
	types        map[string]bool
	typeList     []string
	tmpl         *template.Template
	mux          *http.ServeMux
	auditor      *auditBatcher
	freshness    func(practice string) []freshness.Stat
	webhooks     Webhooks // nil: webhooks not configured
	intents      Intents  // nil: write-back not configured
}

// New validates cfg and returns the API handler with its middleware (request
// logs, metrics, panic recovery) in place.
func New(cfg Config) (http.Handler, error) {
	if cfg.Store == nil {
		return nil, errors.New("api: Config.Store is required")
	}
	s := &server{
		st:           cfg.Store,
		practices:    map[string]bool{},
		log:          cfg.Logger,
		metrics:      cfg.Metrics,
		status:       cfg.Status,
		now:          cfg.Now,
		base:         strings.TrimRight(cfg.BaseURL, "/"),
		exposeStatus: cfg.ExposeStatus,
		version:      cfg.Version,
		types:        map[string]bool{},
		freshness:    cfg.Freshness,
		webhooks:     cfg.Webhooks,
		intents:      cfg.Intents,
	}
	s.auditor = newAuditBatcher(func(ctx context.Context, evs []store.AuditEvent) error { return s.st.Audit(ctx, evs...) })
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.metrics == nil {
		s.metrics = obs.NewMetrics()
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, p := range cfg.Practices {
		if p == "" || p == AllPractices || strings.ContainsAny(p, "/?#%") {
			return nil, fmt.Errorf("api: invalid practice id %q", p)
		}
		if s.practices[p] {
			return nil, fmt.Errorf("api: practice %q listed twice", p)
		}
		s.practices[p] = true
		s.practiceList = append(s.practiceList, p)
	}
	sort.Strings(s.practiceList)
	seenKeys := map[[sha256.Size]byte]string{}
	seenNames := map[string]bool{}
	for _, a := range cfg.Apps {
		if a.Name == "" {
			return nil, errors.New("api: an app has no name")
		}
		if seenNames[a.Name] {
			return nil, fmt.Errorf("api: app %q listed twice", a.Name)
		}
		seenNames[a.Name] = true
		// Keys are compared as sent in a header, which cannot carry surrounding whitespace.
		key := bytes.TrimSpace(a.Key)
		if len(key) < 16 {
			return nil, fmt.Errorf("api: app %q: API key is shorter than 16 bytes", a.Name)
		}
		e := appEntry{name: a.Name, keyHash: sha256.Sum256(key), practices: map[string]bool{}}
		if other, dup := seenKeys[e.keyHash]; dup {
			return nil, fmt.Errorf("api: apps %q and %q share an API key", other, a.Name)
		}
		seenKeys[e.keyHash] = a.Name
		for _, p := range a.Practices {
			switch {
			case p == AllPractices:
				e.all = true
			case s.practices[p]:
				e.practices[p] = true
			default:
				return nil, fmt.Errorf("api: app %q names unknown practice %q", a.Name, p)
			}
		}
		s.apps = append(s.apps, e)
	}
	if s.status == nil {
		s.status = StoreStatus(s.st, s.practiceList)
	}
	s.typeList = searchparam.ResourceTypes()
	for _, t := range s.typeList {
		s.types[t] = true
	}
	tmpl, err := web.StatusTemplate()
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s.tmpl = tmpl

	s.mux = http.NewServeMux()
	for _, rt := range routes() {
		s.mux.Handle(rt.pattern, s.guard(rt))
	}
	s.mux.HandleFunc("/", s.notFoundOrMethod)

	mw := obs.HTTPMiddleware(obs.HTTPConfig{
		Logger: s.log, Metrics: s.metrics, Server: "api",
		OnPanic: func(w http.ResponseWriter, r *http.Request) {
			writeOutcome(w, http.StatusInternalServerError, "exception", "internal server error")
		},
	})
	return mw(s.mux), nil
}

// access is what a route demands of a caller.
type access int

const (
	// public routes answer anyone (health probes).
	public access = iota
	// local routes answer loopback clients, or anyone with Config.ExposeStatus.
	local
	// keyed routes need a valid API key.
	keyed
	// tenant routes need a valid API key allowed for the {practice} in the path.
	tenant
)

func (a access) String() string {
	return [...]string{"public", "local", "keyed", "tenant"}[a]
}

// route is one entry of the route table.
type route struct {
	pattern string
	access  access
	// action names the access in audit events ("read", "search", ...). Tenant
	// routes with auditSuccess record every answered request; denied requests
	// to a known practice are recorded for every tenant route.
	action       string
	auditSuccess bool
	handle       func(s *server, w http.ResponseWriter, r *http.Request, c *call)
}

// routes is the single table of every route the API serves.
func routes() []route {
	return []route{
		{pattern: "GET /healthz", access: public, handle: (*server).healthz},
		{pattern: "GET /readyz", access: public, handle: (*server).readyz},
		{pattern: "GET /metrics", access: local, handle: (*server).serveMetrics},
		{pattern: "GET /{$}", access: local, handle: (*server).statusPage},
		{pattern: "GET /static/{file}", access: local, handle: (*server).static},
		{pattern: "GET /v1/status", access: local, handle: (*server).statusJSON},

		{pattern: "GET /v1/practices", access: keyed, handle: (*server).listPractices},
		{pattern: "GET /v1/practices/{practice}/freshness", access: tenant, action: "freshness", handle: (*server).practiceFreshness},
		{pattern: "GET /v1/practices/{practice}/changes", access: tenant, action: "changes", auditSuccess: true, handle: (*server).changes},
		{pattern: "POST /v1/practices/{practice}/webhooks", access: tenant, action: "webhook-create", auditSuccess: true, handle: (*server).createWebhook},
		{pattern: "GET /v1/practices/{practice}/webhooks", access: tenant, action: "webhook-list", auditSuccess: true, handle: (*server).listWebhooks},
		{pattern: "GET /v1/practices/{practice}/webhooks/{id}", access: tenant, action: "webhook-read", auditSuccess: true, handle: (*server).getWebhook},
		{pattern: "PATCH /v1/practices/{practice}/webhooks/{id}", access: tenant, action: "webhook-update", auditSuccess: true, handle: (*server).updateWebhook},
		{pattern: "POST /v1/practices/{practice}/webhooks/{id}/rotate-secret", access: tenant, action: "webhook-rotate-secret", auditSuccess: true, handle: (*server).rotateSecret},
		{pattern: "GET /v1/practices/{practice}/webhooks/dead-letters", access: tenant, action: "dead-letter-list", auditSuccess: true, handle: (*server).deadLetters},
		{pattern: "POST /v1/practices/{practice}/webhooks/dead-letters/{id}/replay", access: tenant, action: "dead-letter-replay", auditSuccess: true, handle: (*server).replayDeadLetter},
		{pattern: "POST /v1/practices/{practice}/intents", access: tenant, action: "intent-submit", auditSuccess: true, handle: (*server).submitIntent},
		{pattern: "GET /v1/practices/{practice}/intents", access: tenant, action: "intent-list", auditSuccess: true, handle: (*server).listIntents},
		{pattern: "GET /v1/practices/{practice}/intents/{id}", access: tenant, action: "intent-read", auditSuccess: true, handle: (*server).getIntent},
		{pattern: "POST /v1/practices/{practice}/intents/{id}/replay", access: tenant, action: "intent-replay", auditSuccess: true, handle: (*server).replayIntent},
		{pattern: "GET /v1/practices/{practice}/rejections", access: tenant, action: "rejection-list", auditSuccess: true, handle: (*server).listRejections},

		{pattern: "GET /fhir/{practice}/metadata", access: tenant, action: "capabilities", handle: (*server).metadata},
		{pattern: "GET /fhir/{practice}/{type}", access: tenant, action: "search", auditSuccess: true, handle: (*server).search},
		{pattern: "GET /fhir/{practice}/{type}/_search", access: tenant, action: "search", auditSuccess: true, handle: (*server).search},
		{pattern: "POST /fhir/{practice}/{type}/_search", access: tenant, action: "search", auditSuccess: true, handle: (*server).search},
		{pattern: "GET /fhir/{practice}/{type}/{id}", access: tenant, action: "read", auditSuccess: true, handle: (*server).read},
		{pattern: "GET /fhir/{practice}/{type}/{id}/_history", access: tenant, action: "history", auditSuccess: true, handle: (*server).history},
		{pattern: "GET /fhir/{practice}/{type}/{id}/_history/{vid}", access: tenant, action: "vread", auditSuccess: true, handle: (*server).vread},
	}
}

// notFoundOrMethod answers requests no route matched: 405 with an Allow
// header when the path exists for other methods, 404 otherwise, both as
// OperationOutcome.
func (s *server) notFoundOrMethod(w http.ResponseWriter, r *http.Request) {
	// The catch-all pattern is not a route: let the metrics say "unmatched".
	r.Pattern = ""
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pat := s.mux.Handler(probe); pat != "" && pat != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeOutcome(w, http.StatusMethodNotAllowed, "not-supported", "method "+r.Method+" is not allowed here; allowed: "+strings.Join(allow, ", "))
		return
	}
	writeOutcome(w, http.StatusNotFound, "not-found", "no such endpoint")
}
