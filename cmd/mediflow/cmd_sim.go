package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/fault"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/sim/hl7feed"
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

HL7 v2 (MLLP):
  --hl7-feed HOST:PORT sends ADT^A01/A04/A08/A03, SIU^S12/S14/S15 and ORU^R01
  messages built from one tenant's FHIR data (--hl7-tenant, default the first)
  at --hl7-rate messages/s: PID-3 is the patient's MRN, SCH-1 the Appointment
  id, PV1-19 the Encounter id, OBX-3 the Observation's LOINC code. Every ACK
  is checked (MSA-2 must echo MSH-10); a summary is printed on exit.
  --hl7-listen ADDR runs a receiver that ACKs (AA) what it gets, or misbehaves
  with --hl7-fault: nak (AE), reject (AR), no-ack (never answers),
  slow-ack (answers after --hl7-slow-ack), disconnect (closes the connection
  in the middle of the message), on --hl7-fault-rate of the messages.

Examples:
  mediflow sim
  mediflow sim --tenants north:generic,south:epic --patients 2000 --change-rate 20
  mediflow keys new --out keys --name demo
  mediflow sim --client-id demo --client-jwks keys/demo.jwks.json \
      --fault 'endpoint=Observation,kind=503,rate=0.05,retry-after=1s'
  mediflow sim --hl7-feed 127.0.0.1:2575 --hl7-rate 20
  mediflow sim --hl7-listen 127.0.0.1:2576 --hl7-fault nak --hl7-fault-rate 0.1`

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

	hl7Feed      string
	hl7Tenant    string
	hl7Rate      float64
	hl7Count     int
	hl7Listen    string
	hl7Fault     string
	hl7FaultRate float64
	hl7SlowAck   time.Duration
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
	fs.StringVar(&o.hl7Feed, "hl7-feed", "", "send an HL7 v2 feed over MLLP to `host:port`")
	fs.StringVar(&o.hl7Tenant, "hl7-tenant", "", "tenant whose data the HL7 feed carries (default: the first)")
	fs.Float64Var(&o.hl7Rate, "hl7-rate", 10, "HL7 feed messages per second (0: as fast as ACKs come back)")
	fs.IntVar(&o.hl7Count, "hl7-count", 0, "HL7 messages to send (0: until stopped)")
	fs.StringVar(&o.hl7Listen, "hl7-listen", "", "run an HL7 receiver (MLLP) on `addr` (host defaults to 127.0.0.1; port 0 picks one)")
	fs.StringVar(&o.hl7Fault, "hl7-fault", "none", "HL7 receiver fault: none, nak, reject, no-ack, slow-ack, disconnect")
	fs.Float64Var(&o.hl7FaultRate, "hl7-fault-rate", 1, "share of messages the HL7 receiver fault hits, in (0, 1]")
	fs.DurationVar(&o.hl7SlowAck, "hl7-slow-ack", 5*time.Second, "ACK delay of the slow-ack fault")
}

// hl7Setup is the HL7 side of `mediflow sim`: a feed, a receiver, both or
// neither.
type hl7Setup struct {
	feedTenant string
	feed       *hl7feed.FeedConfig
	listen     string
	receiver   *hl7feed.ReceiverConfig
}

// hl7 validates the --hl7-* flags against the configured tenants.
func (o *simOptions) hl7(tenants []sim.TenantConfig, seed uint64, log *slog.Logger) (hl7Setup, error) {
	var h hl7Setup
	if o.hl7Feed != "" {
		tenant := o.hl7Tenant
		if tenant == "" {
			tenant = tenants[0].ID
		}
		found := false
		for _, tc := range tenants {
			found = found || tc.ID == tenant
		}
		if !found {
			return h, usagef("--hl7-tenant %q is not in --tenants", tenant)
		}
		fc := hl7feed.FeedConfig{
			To: o.hl7Feed, Rate: o.hl7Rate, Count: o.hl7Count, Seed: seed,
			SendingFacility: strings.ToUpper(tenant),
			Logger:          log.With("component", "hl7-feed", "tenant", tenant),
		}
		if err := fc.Validate(); err != nil {
			return h, usagef("--hl7-feed/--hl7-rate/--hl7-count: %v", strings.TrimPrefix(err.Error(), "hl7feed: "))
		}
		h.feedTenant, h.feed = tenant, &fc
	} else if o.hl7Tenant != "" {
		return h, usagef("--hl7-tenant needs --hl7-feed")
	}
	f, err := hl7feed.ParseFault(o.hl7Fault)
	if err != nil {
		return h, usagef("--hl7-fault: %v", strings.TrimPrefix(err.Error(), "hl7feed: "))
	}
	if o.hl7Listen == "" {
		if f != hl7feed.FaultNone {
			return h, usagef("--hl7-fault needs --hl7-listen")
		}
		return h, nil
	}
	if !(o.hl7FaultRate > 0 && o.hl7FaultRate <= 1) {
		return h, usagef("--hl7-fault-rate %g: want a share in (0, 1]", o.hl7FaultRate)
	}
	if o.hl7SlowAck <= 0 {
		return h, usagef("--hl7-slow-ack must be positive")
	}
	addr := o.hl7Listen
	if !strings.Contains(addr, ":") {
		addr = ":" + addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return h, usagef("--hl7-listen %q: want [host:]port", o.hl7Listen)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	h.listen = net.JoinHostPort(host, port)
	h.receiver = &hl7feed.ReceiverConfig{
		Fault: f, FaultRate: o.hl7FaultRate, SlowAck: o.hl7SlowAck, Seed: seed,
		Logger: log.With("component", "hl7-receiver"),
	}
	return h, nil
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
				h, err := o.hl7(cfg.Tenants, o.seed, log)
				if err != nil {
					return err
				}
				start := time.Now()
				s, err := sim.New(cfg)
				if err != nil {
					return err
				}
				var feed *hl7feed.Feed
				if h.feed != nil {
					src := hl7feed.FromSim(s, h.feedTenant)
					if _, err := hl7feed.Messages(src, 1, 0, hl7feed.FeedConfig{}); err != nil {
						return fmt.Errorf("--hl7-feed: tenant %s: %w", h.feedTenant, err)
					}
					feed = hl7feed.NewFeed(src, *h.feed)
				}
				ln, err := net.Listen("tcp", o.listen)
				if err != nil {
					return fmt.Errorf("listen on %s: %w", o.listen, err)
				}
				var hl7ln net.Listener
				var rcv *hl7feed.Receiver
				if h.receiver != nil {
					if hl7ln, err = net.Listen("tcp", h.listen); err != nil {
						ln.Close()
						return fmt.Errorf("--hl7-listen %s: %w", h.listen, err)
					}
					rcv = hl7feed.NewReceiver(*h.receiver)
				}
				s.SetRoot("http://" + ln.Addr().String())
				printSimBanner(env, s, time.Since(start), cfg.Tenants[0].ChangeRate, cfg.Tenants[0].Clients,
					func() { printHL7Banner(env, h, hl7ln) })
				return runSim(ctx, env, s, ln, rcv, hl7ln, feed)
			}
		},
	}
}

// runSim serves the simulator and its HL7 feed and receiver until ctx ends
// (the feed may finish first), then prints the HL7 counts.
func runSim(ctx context.Context, env *cliEnv, s *sim.Sim, ln net.Listener, rcv *hl7feed.Receiver, hl7ln net.Listener, feed *hl7feed.Feed) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Serve(gctx, ln) })
	if rcv != nil {
		g.Go(func() error { return rcv.Serve(gctx, hl7ln) })
	}
	feedDone := false
	if feed != nil {
		g.Go(func() error {
			err := feed.Run(gctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("hl7 feed: %w", err)
			}
			if err == nil && gctx.Err() == nil { // --hl7-count reached
				printFeedStats(env, "HL7 feed finished", feed.Stats())
				feedDone = true
			}
			return nil
		})
	}
	err := g.Wait()
	if feed != nil && !feedDone {
		printFeedStats(env, "HL7 feed", feed.Stats())
	}
	if rcv != nil {
		st := rcv.Stats()
		fmt.Fprintf(env.stdout, "HL7 receiver: %d received, %d AA, %d AE, %d AR, %d unanswered, %d slow, %d disconnects\n",
			st.Received, st.Acked, st.Naks+st.Invalid, st.Rejects, st.NoAcks, st.Slow, st.Disconnects)
	}
	return err
}

func printFeedStats(env *cliEnv, what string, st hl7feed.FeedStats) {
	fmt.Fprintf(env.stdout, "%s: %d sent, %d accepted, %d not accepted (AE/AR), %d without ACK, %d bad ACKs\n",
		what, st.Sent, st.Accepted, st.Errors, st.NoAck, st.BadAck)
}

func printHL7Banner(env *cliEnv, h hl7Setup, hl7ln net.Listener) {
	w := env.stdout
	if hl7ln != nil {
		what := "ACKs every message"
		if rc := h.receiver; rc.Fault != hl7feed.FaultNone {
			what = fmt.Sprintf("fault %s on %g%% of messages", rc.Fault, rc.FaultRate*100)
			if rc.Fault == hl7feed.FaultSlowAck {
				what += fmt.Sprintf(" (%s)", rc.SlowAck)
			}
		}
		fmt.Fprintf(w, "HL7 receiver  %s  (MLLP; %s)\n", hl7ln.Addr(), what)
	}
	if fc := h.feed; fc != nil {
		rate := "as fast as ACKs come back"
		if fc.Rate > 0 {
			rate = fmt.Sprintf("%g msg/s", fc.Rate)
		}
		count := "until stopped"
		if fc.Count > 0 {
			count = fmt.Sprintf("%d messages", fc.Count)
		}
		fmt.Fprintf(w, "HL7 feed      %s  (MLLP; tenant %s, %s, %s)\n", fc.To, h.feedTenant, rate, count)
	}
}

// printSimBanner prints the tenants' URLs and the settings; more prints
// further lines (the HL7 ones) before the last.
func printSimBanner(env *cliEnv, s *sim.Sim, took time.Duration, rate float64, clients []authserver.Client, more func()) {
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
	more()
	fmt.Fprintf(w, "Admin: %s/_sim/tenants   Press Ctrl-C to stop.\n", s.Root())
}
