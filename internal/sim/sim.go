// Package sim is mediflow's EHR simulator: one http.Handler serving several
// tenants ("practices"), each a FHIR R4 server in a vendor flavour (generic,
// epic, ...) with its own SMART Backend Services authorization server,
// synthetic or Synthea data, a change generator that keeps data moving, and
// fault injection. It is the sandbox that demos, tests and benchmarks run
// against, and it exposes ground truth (Current, Counts) so end-to-end tests
// can check an engine finished with exactly the source's data.
package sim

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/sim/fault"
	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/sim/flavor/athenahealth"
	"github.com/mediflow/mediflow/internal/sim/flavor/eclinicalworks"
	"github.com/mediflow/mediflow/internal/sim/flavor/epic"
	"github.com/mediflow/mediflow/internal/sim/flavor/generic"
	"github.com/mediflow/mediflow/internal/sim/flavor/oraclehealth"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/sim/simstore"
	"github.com/mediflow/mediflow/internal/sim/synthea"
	"github.com/mediflow/mediflow/internal/smart/authserver"
)

// builtinFlavors maps flavour names to constructors. Adding a vendor is one
// folder under flavor/ and one line here.
func builtinFlavors() map[string]func() flavor.Flavor {
	return map[string]func() flavor.Flavor{
		generic.Name:        generic.New,
		epic.Name:           epic.New,
		athenahealth.Name:   athenahealth.New,
		oraclehealth.Name:   oraclehealth.New,
		eclinicalworks.Name: eclinicalworks.New,
	}
}

// FlavorNames lists the built-in flavours, sorted.
func FlavorNames() []string {
	var out []string
	for n := range builtinFlavors() {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Config configures a simulator.
type Config struct {
	Tenants []TenantConfig
	// Logger receives PHI-free operational logs (default: discard).
	Logger *slog.Logger
	// Now is the clock for lastUpdated, tokens and page expiry (default time.Now).
	Now func() time.Time
	// PageTTL is how long an idle search session (behind next links) lives
	// (default 10 minutes).
	PageTTL time.Duration
	// MaxSessions bounds the search sessions kept per tenant (default 1000;
	// the least recently used goes first).
	MaxSessions int
	// HTTPClient fetches clients' JWKS URLs (default: 10 s timeout).
	HTTPClient *http.Client
	// Flavors adds or overrides flavours by name.
	Flavors map[string]flavor.Flavor
	// DisableAdmin turns off the /_sim/ admin routes.
	DisableAdmin bool
}

// TenantConfig configures one tenant.
type TenantConfig struct {
	// ID is the tenant's path segment: lower-case letters, digits, '-' and '_'.
	ID string
	// Flavor names the vendor flavour (default "generic").
	Flavor string
	// Seed drives synthetic data, ids of created resources, the change
	// generator and rate-based faults.
	Seed uint64
	// Data, when set, generates synthetic data (Tenant and Seed are filled in
	// from the tenant when empty).
	Data *gen.Options
	// SyntheaDir, when set, loads the Synthea bundles in that folder.
	SyntheaDir string
	// OpenAuth serves FHIR without access tokens.
	OpenAuth bool
	// Strict applies the vendor's search restrictions (required parameters,
	// result limits, only the vendor's parameters).
	Strict bool
	// ChangeRate is changes per second made by the background change
	// generator while Serve or Start runs (0: none).
	ChangeRate float64
	// Clients are registered with the tenant's authorization server.
	Clients []authserver.Client
	// Faults are the initial fault rules.
	Faults []fault.Fault
	// Bulk configures Bulk Data export jobs (see BulkOptions).
	Bulk BulkOptions
}

var tenantIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Sim is the simulator. It is an http.Handler; create it with New.
type Sim struct {
	cfg     Config
	log     *slog.Logger
	tenants map[string]*tenant
	order   []string
	root    atomic.Pointer[string]
	wg      sync.WaitGroup // goroutines started by Start
}

type tenant struct {
	id       string
	cfg      TenantConfig
	fl       flavor.Flavor
	info     flavor.Info
	store    *simstore.Store
	auth     *authserver.Server
	faults   *fault.Set
	sessions *sessionCache
	sim      *Sim

	writeMu  sync.Mutex
	writeRng *rand.Rand // ids of resources created over the API

	// createMu serializes creates over the APIs, so that conditional
	// create, duplicate rules and the insert are atomic (write.go).
	createMu sync.Mutex

	changeMu sync.Mutex
	changer  *changer

	bulk bulkState // Bulk Data export jobs (bulk.go)

	subs subHub // topic-based Subscriptions (subscriptions.go)
}

// New builds a simulator, generating and loading each tenant's data.
func New(cfg Config) (*Sim, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PageTTL <= 0 {
		cfg.PageTTL = 10 * time.Minute
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 1000
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Tenants) == 0 {
		return nil, errors.New("sim: no tenants configured")
	}
	s := &Sim{cfg: cfg, log: log, tenants: map[string]*tenant{}}
	empty := ""
	s.root.Store(&empty)
	flavors := builtinFlavors()
	for _, tc := range cfg.Tenants {
		if !tenantIDRE.MatchString(tc.ID) {
			return nil, fmt.Errorf("sim: tenant id %q: use lower-case letters, digits, '-' and '_' (max 63)", tc.ID)
		}
		if _, dup := s.tenants[tc.ID]; dup {
			return nil, fmt.Errorf("sim: tenant %q configured twice", tc.ID)
		}
		name := tc.Flavor
		if name == "" {
			name = generic.Name
		}
		fl, ok := cfg.Flavors[name]
		if !ok {
			mk, ok := flavors[name]
			if !ok {
				return nil, fmt.Errorf("sim: tenant %q: unknown flavor %q (have %s)", tc.ID, name, strings.Join(FlavorNames(), ", "))
			}
			fl = mk()
		}
		tc.Flavor = name
		info := fl.Info()
		t := &tenant{
			id: tc.ID, cfg: tc, fl: fl, info: info, sim: s,
			store:    simstore.New(cfg.Now),
			faults:   fault.NewSet(tc.Seed ^ 0xfa017),
			sessions: newSessionCache(cfg.MaxSessions),
			writeRng: rand.New(rand.NewPCG(tc.Seed, 0x3717e)),
			auth: authserver.New(authserver.Config{
				TokenTTL: info.TokenTTL, Now: cfg.Now, HTTPClient: cfg.HTTPClient,
				V1Only: info.V1Scopes, Logger: log.With("tenant", tc.ID),
			}),
		}
		if info.Writes.ZeroBasedVersions {
			t.store.SetVersionBase(0)
		}
		for _, c := range tc.Clients {
			if err := t.auth.RegisterClient(c); err != nil {
				return nil, fmt.Errorf("sim: tenant %q: %w", tc.ID, err)
			}
		}
		if err := t.faults.Replace(tc.Faults); err != nil {
			return nil, fmt.Errorf("sim: tenant %q faults: %w", tc.ID, err)
		}
		s.tenants[tc.ID] = t
		s.order = append(s.order, tc.ID)
	}
	// Generate tenants' data concurrently (it is CPU-bound and independent).
	errs := make([]error, len(s.order))
	var wg sync.WaitGroup
	for i, id := range s.order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.tenants[id].load()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func (t *tenant) load() error {
	if t.cfg.Data != nil {
		opt := *t.cfg.Data
		if opt.Tenant == "" {
			opt.Tenant = t.id
		}
		if opt.Seed == 0 {
			opt.Seed = t.cfg.Seed
		}
		_, err := gen.Generate(opt, t.fl, func(r gen.Resource) error {
			if !t.info.Serves(r.Type) {
				return nil
			}
			r.Obj.SetAfter("id", "meta", gen.O("versionId", strconv.Itoa(t.store.VersionBase()), "lastUpdated", fhir.FormatInstant(r.LastUpdated)))
			body, err := r.Obj.Bytes()
			if err != nil {
				return fmt.Errorf("%s: %w", r.Type, err)
			}
			return t.store.Load(r.Type, r.ID, r.LastUpdated, body)
		})
		if err != nil {
			return fmt.Errorf("sim: tenant %q: generate: %w", t.id, err)
		}
	}
	if t.cfg.SyntheaDir != "" {
		if _, err := t.loadSynthea(t.cfg.SyntheaDir); err != nil {
			return err
		}
	}
	return nil
}

func (t *tenant) loadSynthea(dir string) (synthea.Stats, error) {
	st, err := synthea.LoadDir(dir, t.info.Serves, func(r synthea.Resource) error {
		_, _, err := t.store.Put(r.Type, r.ID, r.Body, simstore.Precondition{})
		return err
	})
	if err != nil {
		return st, fmt.Errorf("sim: tenant %q: %w", t.id, err)
	}
	return st, nil
}

// LoadSynthea loads the Synthea bundles of dir into a tenant.
func (s *Sim) LoadSynthea(tenantID, dir string) (synthea.Stats, error) {
	t, err := s.tenant(tenantID)
	if err != nil {
		return synthea.Stats{}, err
	}
	return t.loadSynthea(dir)
}

func (s *Sim) tenant(id string) (*tenant, error) {
	t, ok := s.tenants[id]
	if !ok {
		return nil, fmt.Errorf("sim: unknown tenant %q", id)
	}
	return t, nil
}

// Tenants returns the tenant ids in configuration order.
func (s *Sim) Tenants() []string { return append([]string(nil), s.order...) }

// Flavor returns a tenant's flavour name ("" for an unknown tenant).
func (s *Sim) Flavor(tenantID string) string {
	if t, ok := s.tenants[tenantID]; ok {
		return t.cfg.Flavor
	}
	return ""
}

// ResourceTypes returns the resource types a tenant serves.
func (s *Sim) ResourceTypes(tenantID string) []string {
	if t, ok := s.tenants[tenantID]; ok {
		return append([]string(nil), t.info.ResourceTypes...)
	}
	return nil
}

// SetRoot sets the absolute URL the simulator is reachable at (e.g.
// "http://127.0.0.1:9090"); base and token URLs derive from it.
func (s *Sim) SetRoot(rootURL string) {
	rootURL = strings.TrimRight(rootURL, "/")
	s.root.Store(&rootURL)
	for _, t := range s.tenants {
		t.auth.SetTokenURL(s.tokenURL(t))
	}
}

// Root returns the root URL ("" before SetRoot, Serve or Start).
func (s *Sim) Root() string { return *s.root.Load() }

// BaseURL returns a tenant's FHIR base URL (no trailing slash), or "" for
// an unknown tenant.
func (s *Sim) BaseURL(tenantID string) string {
	t, ok := s.tenants[tenantID]
	if !ok {
		return ""
	}
	return s.baseURL(t)
}

func (s *Sim) baseURL(t *tenant) string { return s.Root() + "/" + t.id + t.info.BasePath }

// TokenURL returns a tenant's token endpoint URL, or "" for an unknown tenant.
func (s *Sim) TokenURL(tenantID string) string {
	t, ok := s.tenants[tenantID]
	if !ok {
		return ""
	}
	return s.tokenURL(t)
}

func (s *Sim) tokenURL(t *tenant) string { return s.Root() + "/" + t.id + t.info.TokenPath }

func (s *Sim) authorizeURL(t *tenant) string {
	if t.info.AuthorizePath == "" {
		return ""
	}
	return s.Root() + "/" + t.id + t.info.AuthorizePath
}

// RegisterClient registers a backend client with a tenant's authorization server.
func (s *Sim) RegisterClient(tenantID string, c authserver.Client) error {
	t, err := s.tenant(tenantID)
	if err != nil {
		return err
	}
	if err := t.auth.RegisterClient(c); err != nil {
		return fmt.Errorf("sim: tenant %q: %w", tenantID, err)
	}
	return nil
}

// AuthServer returns a tenant's authorization server (nil for an unknown tenant).
func (s *Sim) AuthServer(tenantID string) *authserver.Server {
	if t, ok := s.tenants[tenantID]; ok {
		return t.auth
	}
	return nil
}

// ExpireTokens invalidates every access token a tenant issued so far.
func (s *Sim) ExpireTokens(tenantID string) error {
	t, err := s.tenant(tenantID)
	if err != nil {
		return err
	}
	t.auth.ExpireTokens()
	return nil
}

// ExpireSearches drops every search session of a tenant: their next links
// then fail with the flavour's "session expired" error.
func (s *Sim) ExpireSearches(tenantID string) error {
	t, err := s.tenant(tenantID)
	if err != nil {
		return err
	}
	t.sessions.clear()
	return nil
}

// SetFaults replaces a tenant's fault rules (and resets their counters).
func (s *Sim) SetFaults(tenantID string, faults []fault.Fault) error {
	t, err := s.tenant(tenantID)
	if err != nil {
		return err
	}
	if err := t.faults.Replace(faults); err != nil {
		return fmt.Errorf("sim: tenant %q: %w", tenantID, err)
	}
	return nil
}

// Faults returns a tenant's fault rules with their counters.
func (s *Sim) Faults(tenantID string) []fault.Status {
	if t, ok := s.tenants[tenantID]; ok {
		return t.faults.List()
	}
	return nil
}

// Current returns id → current JSON of every resource of a type in a tenant:
// the ground truth an engine's copy must equal. The byte slices are shared
// with the simulator and must not be modified.
func (s *Sim) Current(tenantID, resourceType string) map[string][]byte {
	t, ok := s.tenants[tenantID]
	if !ok {
		return map[string][]byte{}
	}
	return t.store.Current(resourceType)
}

// Counts returns the number of resources per type in a tenant.
func (s *Sim) Counts(tenantID string) map[string]int {
	t, ok := s.tenants[tenantID]
	if !ok {
		return map[string]int{}
	}
	return t.store.Counts()
}

// Get returns the current JSON of one resource (shared; do not modify).
func (s *Sim) Get(tenantID, resourceType, id string) ([]byte, bool) {
	t, ok := s.tenants[tenantID]
	if !ok {
		return nil, false
	}
	v, ok := t.store.Get(resourceType, id)
	if !ok {
		return nil, false
	}
	return v.Body, true
}

// Put writes a resource into a tenant directly (not over HTTP, no auth or
// flavour write rules), assigning a new version; for tests and tools. The
// version is the number served (meta.versionId).
func (s *Sim) Put(tenantID string, body []byte) (resourceType, id string, version int, err error) {
	t, err := s.tenant(tenantID)
	if err != nil {
		return "", "", 0, err
	}
	h, err := fhir.ParseHeader(body)
	if err != nil {
		return "", "", 0, fmt.Errorf("sim: put: %w", err)
	}
	if !t.info.Serves(h.ResourceType) {
		return "", "", 0, fmt.Errorf("sim: tenant %q does not serve %s", tenantID, h.ResourceType)
	}
	id = h.ID
	if id == "" {
		id = t.newID(h.ResourceType)
	}
	v, _, err := t.store.Put(h.ResourceType, id, body, simstore.Precondition{})
	if err != nil {
		return "", "", 0, fmt.Errorf("sim: put: %w", err)
	}
	return h.ResourceType, id, v.Number(), nil
}

func (t *tenant) newID(rt string) string {
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	for {
		id := t.fl.NewID(rt, t.writeRng)
		if _, exists := t.store.Get(rt, id); !exists {
			return id
		}
	}
}

// Serve serves HTTP on ln and runs the change generators of tenants with a
// ChangeRate, until ctx is cancelled; then it shuts down gracefully. The
// root URL is set from ln's address unless SetRoot was called before.
func (s *Sim) Serve(ctx context.Context, ln net.Listener) error {
	if s.Root() == "" {
		s.SetRoot("http://" + ln.Addr().String())
	}
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	runCtx, stopRunners := context.WithCancel(ctx)
	defer stopRunners()
	var wg sync.WaitGroup
	for _, id := range s.order {
		if rate := s.tenants[id].cfg.ChangeRate; rate > 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.RunChanges(runCtx, id, rate); err != nil && !errors.Is(err, context.Canceled) {
					s.log.Error("change generator stopped", "tenant", id, "err", err)
				}
			}()
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err = srv.Shutdown(shutCtx)
		cancel()
		<-errc
	case err = <-errc:
	}
	stopRunners()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("sim: serve: %w", err)
	}
	return nil
}

// Start listens on addr (e.g. "127.0.0.1:0") and serves in the background
// until ctx is cancelled; it returns the root URL. Wait blocks until the
// background server has stopped.
func (s *Sim) Start(ctx context.Context, addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("sim: listen: %w", err)
	}
	s.SetRoot("http://" + ln.Addr().String())
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.Serve(ctx, ln); err != nil {
			s.log.Error("simulator stopped", "err", err)
		}
	}()
	return s.Root(), nil
}

// Wait blocks until servers started with Start have stopped.
func (s *Sim) Wait() { s.wg.Wait() }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := crand.Read(b); err != nil {
		// crypto/rand does not fail on supported platforms; fall back to a hash of the time.
		h := fnv.New64a()
		fmt.Fprint(h, time.Now().UnixNano())
		return fmt.Sprintf("%016x", h.Sum64())[:2*n]
	}
	return hex.EncodeToString(b)
}
