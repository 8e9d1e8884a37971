package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mediflow/mediflow/internal/api"
	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/engine"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/smart"
	"github.com/mediflow/mediflow/internal/smart/authserver"
)

// demoPractice is one practice the demo creates in the simulator.
type demoPractice struct {
	id, name, flavor, alg string
}

var demoPractices = []demoPractice{
	{id: "valley-family", name: "Valley Family Medicine", flavor: "generic", alg: smart.AlgRS384},
	{id: "lakeside-clinic", name: "Lakeside Clinic", flavor: "epic", alg: smart.AlgES384},
}

// demoScopes are the scopes each demo connection asks for (SMART v2 syntax).
var demoScopes = []string{
	"system/Patient.rs", "system/Practitioner.rs", "system/Organization.rs", "system/Location.rs",
	"system/Schedule.rs", "system/Slot.rs", "system/Appointment.rs", "system/Coverage.rs",
	"system/Encounter.rs", "system/Condition.rs", "system/Observation.rs", "system/AllergyIntolerance.rs",
	"system/MedicationRequest.rs", "system/DocumentReference.rs",
}

func demoCmd() *command {
	return &command{
		name:    "demo",
		summary: "run the EHR simulator, the engine, the API and the status page in one process",
		long: `Starts the built-in EHR simulator with two practices on different vendor flavours
(generic FHIR R4 and Epic), makes a signing key per practice and registers it with the
simulator's SMART authorization server, writes a configuration file for them, and runs the
engine from that file on an embedded SQLite store. Prints the API URL, an API key and a live
summary until Ctrl-C or --duration. Everything lives in --dir (a temporary folder by default,
removed at exit unless --keep).`,
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			dir := fs.String("dir", "", "folder for the store, keys and config (default: a new temporary folder)")
			keep := fs.Bool("keep", false, "keep the temporary folder at exit")
			listen := fs.String("listen", "127.0.0.1:8080", "API and status page `address` (use port 0 for any free port)")
			simListen := fs.String("sim-listen", "127.0.0.1:0", "simulator `address`")
			patients := fs.Int("patients", 40, "synthetic patients per practice")
			seed := fs.Int64("seed", 1, "seed for the synthetic data")
			changeRate := fs.Float64("change-rate", 1, "simulated EHR changes per second per practice (0: none)")
			duration := fs.Duration("duration", 0, "stop after this long (0: run until Ctrl-C)")
			every := fs.Duration("summary-every", 5*time.Second, "how often to print the live summary")
			logLevel := fs.String("log-level", "warn", "engine log level (logs go to DIR/mediflow.log)")
			return func(ctx context.Context, env *cliEnv, args []string) error {
				if len(args) > 0 {
					return usagef("demo takes no arguments")
				}
				if *duration > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, *duration)
					defer cancel()
				}
				d := demo{dir: *dir, keep: *keep, listen: *listen, simListen: *simListen, patients: *patients,
					seed: *seed, changeRate: *changeRate, every: *every, logLevel: *logLevel, env: env}
				return d.run(ctx)
			}
		},
	}
}

type demo struct {
	dir, listen, simListen, logLevel string
	keep                             bool
	patients                         int
	seed                             int64
	changeRate                       float64
	every                            time.Duration
	env                              *cliEnv
}

func (d *demo) run(ctx context.Context) error {
	out := d.env.stdout
	if d.dir == "" {
		tmp, err := os.MkdirTemp("", "mediflow-demo-")
		if err != nil {
			return err
		}
		d.dir = tmp
		if !d.keep {
			defer os.RemoveAll(tmp)
		}
	} else if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return err
	}

	// 1. The EHR simulator.
	tenants := make([]sim.TenantConfig, 0, len(demoPractices))
	for i, p := range demoPractices {
		tenants = append(tenants, sim.TenantConfig{ID: p.id, Flavor: p.flavor, Seed: uint64(d.seed) + uint64(i),
			Data: &gen.Options{Patients: d.patients, Anchor: time.Now().UTC().Truncate(24 * time.Hour)}, ChangeRate: d.changeRate})
	}
	s, err := sim.New(sim.Config{Tenants: tenants})
	if err != nil {
		return fmt.Errorf("simulator: %w", err)
	}
	simCtx, stopSim := context.WithCancel(ctx)
	defer stopSim()
	simRoot, err := s.Start(simCtx, d.simListen)
	if err != nil {
		return fmt.Errorf("simulator: %w", err)
	}

	// 2. A key per practice, registered with the simulator's authorization server.
	keyDir := filepath.Join(d.dir, "keys")
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		return err
	}
	for _, p := range demoPractices {
		key, err := smart.GenerateKey(p.alg)
		if err != nil {
			return err
		}
		pemBytes, err := smart.EncodePrivateKeyPEM(key)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(keyDir, p.id+".key.pem"), pemBytes, 0o600); err != nil {
			return err
		}
		jwks, err := smart.PublicJWKS(key)
		if err != nil {
			return err
		}
		if err := s.RegisterClient(p.id, authserver.Client{ID: "mediflow-" + p.id, JWKS: jwks, Scopes: demoScopes}); err != nil {
			return fmt.Errorf("register client with simulator: %w", err)
		}
	}

	// 3. An API key and a configuration file, loaded like any other.
	apiKey := randomHex(24)
	if err := os.WriteFile(filepath.Join(d.dir, "app.key"), []byte(apiKey+"\n"), 0o600); err != nil {
		return err
	}
	// The store's secret key seals webhook secrets (store.secret_key).
	if err := os.WriteFile(filepath.Join(keyDir, "store.key"), []byte(randomHex(32)+"\n"), 0o600); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", d.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (pick another with --listen 127.0.0.1:0)", d.listen, err)
	}
	apiURL := "http://" + ln.Addr().String()
	cfgPath := filepath.Join(d.dir, "mediflow.yaml")
	if err := os.WriteFile(cfgPath, []byte(d.configYAML(s, ln.Addr().String())), 0o600); err != nil {
		ln.Close()
		return err
	}
	cfg, err := config.Load(cfgPath, d.env.getenv)
	if err != nil {
		ln.Close()
		return fmt.Errorf("demo configuration: %w", err)
	}

	// 4. The engine, logging to a file so the terminal shows the summary.
	logFile, err := os.OpenFile(filepath.Join(d.dir, "mediflow.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		ln.Close()
		return err
	}
	defer logFile.Close()
	log := obs.NewLogger(logFile, parseLevel(d.logLevel), "json")
	eng, err := engine.New(ctx, cfg, engine.Options{Logger: log, Getenv: d.env.getenv, Version: version})
	if err != nil {
		ln.Close()
		return err
	}
	defer eng.Close()

	fmt.Fprintf(out, "mediflow demo\n\n")
	fmt.Fprintf(out, "  EHR simulator   %s\n", simRoot)
	for _, p := range demoPractices {
		fmt.Fprintf(out, "    %-16s %-8s %s\n", p.id, p.flavor, s.BaseURL(p.id))
	}
	fmt.Fprintf(out, "  API             %s/fhir/{practice}/…   change feed %s/v1/practices/{practice}/changes\n", apiURL, apiURL)
	fmt.Fprintf(out, "  webhooks        %s/v1/practices/{practice}/webhooks   (docs/delivery.md)\n", apiURL)
	fmt.Fprintf(out, "  status page     %s/\n", apiURL)
	fmt.Fprintf(out, "  metrics         %s/metrics\n", apiURL)
	fmt.Fprintf(out, "  API key         %s\n", apiKey)
	fmt.Fprintf(out, "  folder          %s (config: mediflow.yaml, log: mediflow.log)\n\n", d.dir)
	fmt.Fprintf(out, "Try:\n  curl -H 'Authorization: Bearer %s' '%s/fhir/%s/Patient?_count=5'\n\n", apiKey, apiURL, demoPractices[0].id)

	runErr := make(chan error, 1)
	go func() { runErr <- eng.Run(ctx, ln) }()

	tick := time.NewTicker(d.every)
	defer tick.Stop()
	for {
		select {
		case err := <-runErr:
			stopSim()
			printSummary(out, eng.Status(context.WithoutCancel(ctx)))
			if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(ctx.Err(), context.Canceled) {
				return nil
			}
			return err
		case <-tick.C:
			printSummary(out, eng.Status(ctx))
		}
	}
}

// configYAML writes the demo's configuration: one connection per simulator
// tenant with SMART backend-services auth and short poll intervals.
func (d *demo) configYAML(s *sim.Sim, listen string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by `mediflow demo`; run it yourself with `mediflow serve --config %s`\n", "mediflow.yaml")
	fmt.Fprintf(&b, "server:\n  listen: %s\nstore:\n  driver: sqlite\n  path: mediflow.db\n  secret_key: {file: keys/store.key}\nlog:\n  level: %s\n  format: json\n", listen, d.logLevel)
	b.WriteString("practices:\n")
	for _, p := range demoPractices {
		fmt.Fprintf(&b, "  - id: %s\n    name: %s\n    connections:\n", p.id, p.name)
		fmt.Fprintf(&b, "      - name: ehr\n        vendor: %s\n        base_url: %s\n", p.flavor, s.BaseURL(p.id))
		fmt.Fprintf(&b, "        auth:\n          type: smart-backend\n          client_id: mediflow-%s\n", p.id)
		fmt.Fprintf(&b, "          private_key: {file: keys/%s.key.pem}\n          algorithm: %s\n", p.id, p.alg)
		fmt.Fprintf(&b, "          scopes: [%s]\n", strings.Join(demoScopes, ", "))
		b.WriteString("        sync:\n")
		for _, c := range []struct {
			class    string
			interval string
		}{{"demographics", "15s"}, {"reference", "1m"}, {"scheduling", "10s"}, {"insurance", "30s"}, {"clinical", "20s"}, {"documents", "30s"}, {"billing", "30s"}} {
			fmt.Fprintf(&b, "          - class: %s\n            interval: %s\n", c.class, c.interval)
		}
	}
	b.WriteString("apps:\n  - name: demo-app\n    key: {file: app.key}\n    practices: [\"*\"]\n")
	return b.String()
}

// printSummary writes a PHI-free table of what each practice holds.
func printSummary(w io.Writer, st api.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tpractice\tresources\tlast sync\tstatus\tfetched/new/changed/unchanged/failed\terrors\n", st.GeneratedAt.Local().Format("15:04:05"))
	for _, p := range st.Practices {
		total := 0
		types := make([]string, 0, len(p.Resources))
		for t, n := range p.Resources {
			total += n
			types = append(types, t)
		}
		sort.Strings(types)
		last, status, counts := "never", "-", "-"
		if r := p.LastRun; r != nil {
			status = r.Status
			t := r.FinishedAt
			if t.IsZero() {
				t = r.StartedAt
			}
			last = t.Local().Format("15:04:05")
			counts = fmt.Sprintf("%d/%d/%d/%d/%d", r.Fetched, r.New, r.Changed, r.Unchanged, r.Failed)
		}
		errs := "0"
		if len(p.Errors) > 0 {
			errs = fmt.Sprintf("%d (%s)", len(p.Errors), p.Errors[0])
		}
		fmt.Fprintf(tw, "\t%s\t%d\t%s\t%s\t%s\t%s\n", p.ID, total, last, status, counts, errs)
	}
	tw.Flush()
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}
