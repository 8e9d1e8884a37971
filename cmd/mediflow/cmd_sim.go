package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/fault"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/smart/authserver"
)

const simLong = `
Runs the EHR simulator: several practices ("tenants") on one listener, each a
FHIR R4 server in a vendor flavour (generic, epic) with its own SMART Backend
Services token endpoint, deterministic synthetic data (or Synthea bundles), a
change generator that keeps creating and updating records, and optional fault
injection. It prints each tenant's FHIR base URL and token URL and runs until
Ctrl-C.

Admin API on the same listener (no auth; bind to loopback):
  GET /_sim/tenants, GET|PUT /_sim/{tenant}/faults, GET /_sim/{tenant}/counts,
  POST /_sim/{tenant}/tick?n=N, POST /_sim/{tenant}/clients

Fault specs (--fault, repeatable) are comma-separated key=value pairs:
  tenant=ID (default: every tenant), endpoint=TYPE|token|metadata|* ,
  kind=latency|429|500|503|drop|token-expiry|page-expiry|malformed,
  rate=P or every=N, limit=N, latency=DUR, retry-after=DUR

Examples:
  mediflow sim
  mediflow sim --tenants north:generic,south:epic --patients 2000 --change-rate 20
  mediflow keys new --out keys --name demo
  mediflow sim --client-id demo --client-jwks keys/demo.jwks.json \
      --fault 'endpoint=Observation,kind=503,rate=0.05,retry-after=1s'`

// faultFlags collects repeated --fault specs.
type faultFlags []string

func (f *faultFlags) String() string     { return strings.Join(*f, "; ") }
func (f *faultFlags) Set(v string) error { *f = append(*f, v); return nil }

// simOptions are the flags of `mediflow sim`, defined once for parsing,
// --help and validation.
type simOptions struct {
	listen       string
	seed         uint64
	tenants      string
	patients     int
	synthea      string
	changeRate   float64
	clientID     string
	clientJWKS   string
	clientScopes string
	faults       faultFlags
	openAuth     bool
	strict       bool
	anchor       string
	pageTTL      time.Duration
	logLevel     string
}

func (o *simOptions) define(fs *flag.FlagSet) {
	fs.StringVar(&o.listen, "listen", "127.0.0.1:9090", "`host:port` to listen on")
	fs.Uint64Var(&o.seed, "seed", 1, "random seed: the same seed gives the same data")
	fs.StringVar(&o.tenants, "tenants", sim.DefaultTenantSpec, "tenants as `id:flavor,...` (flavors: "+strings.Join(sim.FlavorNames(), ", ")+")")
	fs.IntVar(&o.patients, "patients", 200, "synthetic patients per tenant (0: none)")
	fs.StringVar(&o.synthea, "synthea", "", "also load the Synthea FHIR bundles of this `dir` into every tenant")
	fs.Float64Var(&o.changeRate, "change-rate", 1, "changes per second per tenant made by the change generator (0: off)")
	fs.StringVar(&o.clientID, "client-id", "", "register a backend client with this id at every tenant (default \"mediflow\" when --client-jwks is set)")
	fs.StringVar(&o.clientJWKS, "client-jwks", "", "public JWKS of that client: a `file` (e.g. from `mediflow keys new`) or an https URL")
	fs.StringVar(&o.clientScopes, "client-scopes", "system/*.cruds", "space-separated scopes the client may be granted")
	fs.Var(&o.faults, "fault", "fault injection `spec` (repeatable; see above)")
	fs.BoolVar(&o.openAuth, "open", false, "serve FHIR without access tokens")
	fs.BoolVar(&o.strict, "strict", false, "apply vendors' search restrictions (Epic: required parameters, 100-patient limit)")
	fs.StringVar(&o.anchor, "anchor", "", "`date` (YYYY-MM-DD) the synthetic data is built around (default: today, UTC)")
	fs.DurationVar(&o.pageTTL, "page-ttl", 10*time.Minute, "how long an idle search session behind next links lives")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
}

// config validates the options and builds the simulator configuration.
func (o *simOptions) config(now time.Time, log *slog.Logger) (sim.Config, error) {
	tenants, err := sim.ParseTenantSpec(o.tenants)
	if err != nil {
		return sim.Config{}, usagef("--tenants: %v", err)
	}
	if o.patients < 0 {
		return sim.Config{}, usagef("--patients must not be negative")
	}
	if o.changeRate < 0 {
		return sim.Config{}, usagef("--change-rate must not be negative")
	}
	anchor := now.UTC().Truncate(24 * time.Hour)
	if o.anchor != "" {
		if anchor, err = time.Parse("2006-01-02", o.anchor); err != nil {
			return sim.Config{}, usagef("--anchor %q: want YYYY-MM-DD", o.anchor)
		}
	}
	if o.synthea != "" {
		if st, err := os.Stat(o.synthea); err != nil || !st.IsDir() {
			return sim.Config{}, usagef("--synthea %q is not a directory", o.synthea)
		}
	}
	var client *authserver.Client
	if o.clientJWKS != "" || o.clientID != "" {
		if o.clientJWKS == "" {
			return sim.Config{}, usagef("--client-id needs --client-jwks")
		}
		c := authserver.Client{ID: o.clientID, Scopes: strings.Fields(o.clientScopes)}
		if c.ID == "" {
			c.ID = "mediflow"
		}
		if strings.HasPrefix(o.clientJWKS, "https://") || strings.HasPrefix(o.clientJWKS, "http://") {
			c.JWKSURL = o.clientJWKS
		} else if c.JWKS, err = os.ReadFile(o.clientJWKS); err != nil {
			return sim.Config{}, usagef("--client-jwks: %v", err)
		}
		client = &c
	}
	byTenant := map[string][]fault.Fault{}
	for _, spec := range o.faults {
		tenant, f, err := fault.ParseSpec(spec)
		if err != nil {
			return sim.Config{}, usagef("--fault: %v", err)
		}
		byTenant[tenant] = append(byTenant[tenant], f)
	}
	for t := range byTenant {
		found := t == ""
		for _, tc := range tenants {
			found = found || tc.ID == t
		}
		if !found {
			return sim.Config{}, usagef("--fault names tenant %q, which is not in --tenants", t)
		}
	}
	for i := range tenants {
		tc := &tenants[i]
		tc.Seed = o.seed + uint64(i)
		if o.patients > 0 {
			tc.Data = &gen.Options{Patients: o.patients, Anchor: anchor}
		}
		tc.SyntheaDir = o.synthea
		tc.OpenAuth = o.openAuth
		tc.Strict = o.strict
		tc.ChangeRate = o.changeRate
		if client != nil {
			tc.Clients = []authserver.Client{*client}
		}
		tc.Faults = append(append([]fault.Fault(nil), byTenant[""]...), byTenant[tc.ID]...)
	}
	return sim.Config{Tenants: tenants, Logger: log, PageTTL: o.pageTTL}, nil
}

func simCmd() *command {
	return &command{
		name:    "sim",
		summary: "run the EHR simulator (generic and Epic-flavoured FHIR R4 practices)",
		long:    simLong,
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			o := &simOptions{}
			o.define(fs)
			return func(ctx context.Context, env *cliEnv, args []string) error {
				if len(args) > 0 {
					return usagef("sim takes no arguments (got %q)", args[0])
				}
				var level slog.Level
				if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
					return usagef("--log-level %q: want debug, info, warn or error", o.logLevel)
				}
				log := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: level}))
				cfg, err := o.config(time.Now(), log)
				if err != nil {
					return err
				}
				start := time.Now()
				s, err := sim.New(cfg)
				if err != nil {
					return err
				}
				ln, err := net.Listen("tcp", o.listen)
				if err != nil {
					return fmt.Errorf("listen on %s: %w", o.listen, err)
				}
				s.SetRoot("http://" + ln.Addr().String())
				printSimBanner(env, s, time.Since(start), cfg.Tenants[0].ChangeRate, cfg.Tenants[0].Clients)
				return s.Serve(ctx, ln)
			}
		},
	}
}

func printSimBanner(env *cliEnv, s *sim.Sim, took time.Duration, rate float64, clients []authserver.Client) {
	w := env.stdout
	fmt.Fprintf(w, "mediflow EHR simulator on %s (data ready in %s)\n\n", s.Root(), took.Round(time.Millisecond))
	for _, id := range s.Tenants() {
		total := 0
		for _, n := range s.Counts(id) {
			total += n
		}
		fmt.Fprintf(w, "  %-12s %-8s %7d resources\n", id, s.Flavor(id), total)
		fmt.Fprintf(w, "    FHIR base  %s\n", s.BaseURL(id))
		fmt.Fprintf(w, "    token URL  %s\n", s.TokenURL(id))
	}
	fmt.Fprintln(w)
	if len(clients) > 0 {
		fmt.Fprintf(w, "Registered client %q at every tenant (scopes: %s).\n", clients[0].ID, strings.Join(clients[0].Scopes, " "))
	} else {
		fmt.Fprintln(w, "No client registered: use --client-jwks, or POST /_sim/{tenant}/clients.")
	}
	if rate > 0 {
		fmt.Fprintf(w, "Change generator: %g changes/s per tenant.\n", rate)
	}
	fmt.Fprintf(w, "Admin: %s/_sim/tenants   Press Ctrl-C to stop.\n", s.Root())
}
