package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/mediflow/mediflow/internal/bench"
	"github.com/mediflow/mediflow/internal/obs"
)

const benchLong = `
Measures mediflow on this machine, everything in one process over loopback.

  sync  Starts the EHR simulator (generic flavour, SMART backend-services
        auth) with synthetic data sized to at least --resources resources,
        and runs one full sync of every data class into a fresh SQLite store
        in --dir. Prints resources, seconds, resources/s, peak RSS (VmHWM:
        it includes the simulator and its in-memory data) and the store size.
        Default --resources 200000.
  api   Fills a store the same way (default --resources 50000), serves the
        app-facing API on loopback and sends GET /fhir/bench/Patient?_count=20
        and a date search on Observation from --concurrency keep-alive clients
        for --duration each; prints req/s and p50/p90/p99 latency. With
        --peer (the default) the same Patients are loaded into the Medplum
        FHIR server of peers/ (needs Node.js and its node_modules) and its
        Patient?_count=20 is measured with the same load generator.

The load generator shares the CPUs with the server it measures; see
docs/benchmarks.md for method and numbers.

Flags may come before or after the word sync or api.

Examples:
  mediflow bench sync
  mediflow bench sync --resources 500000 --page-size 1000 --dir /tmp/bench
  mediflow bench api --concurrency 16 --duration 20s
  mediflow bench sync --cpuprofile sync.pprof && go tool pprof -top sync.pprof`

// benchOptions are the flags of `mediflow bench`.
type benchOptions struct {
	resources   int
	pageSize    int
	dir         string
	seed        uint64
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	peer        bool
	cpuProfile  string
	logLevel    string
}

func (o *benchOptions) define(fs *flag.FlagSet) {
	fs.IntVar(&o.resources, "resources", 0, "at least this many resources in the simulator (default: 200000 for sync, 50000 for api)")
	fs.IntVar(&o.pageSize, "page-size", 500, "page size (_count) the engine asks the simulator for (1-1000)")
	fs.StringVar(&o.dir, "dir", "", "`folder` for the store, key and config (default: a temporary folder, removed afterwards)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed for the synthetic data")
	fs.IntVar(&o.concurrency, "concurrency", 8, "api: concurrent keep-alive clients")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "api: how long each search is measured")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "api: load sent before each measurement, not counted")
	fs.BoolVar(&o.peer, "peer", true, "api: also measure the Medplum peer server when it is installed in peers/")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the measured part to `file`")
	fs.StringVar(&o.logLevel, "log-level", "error", "engine log level (logs go to stderr)")
}

func benchCmd() *command {
	return &command{
		name:    "bench",
		summary: "measure sync throughput and API search speed against the built-in simulator",
		usage:   "sync | api",
		long:    benchLong,
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			o := &benchOptions{}
			o.define(fs)
			return func(ctx context.Context, env *cliEnv, args []string) error {
				if len(args) == 0 {
					return usagef("say what to measure: sync or api")
				}
				mode := args[0]
				if err := fs.Parse(args[1:]); err != nil {
					return usagef("%v", err)
				}
				if fs.NArg() > 0 {
					return usagef("unexpected arguments %q", fs.Args())
				}
				if mode != "sync" && mode != "api" {
					return usagef("unknown benchmark %q (want sync or api)", mode)
				}
				return o.run(ctx, env, mode)
			}
		},
	}
}

func (o *benchOptions) run(ctx context.Context, env *cliEnv, mode string) error {
	if o.resources == 0 {
		o.resources = 200000
		if mode == "api" {
			o.resources = 50000
		}
	}
	if o.resources < 0 || o.pageSize < 1 || o.pageSize > 1000 || o.concurrency < 1 || o.duration <= 0 {
		return usagef("--resources, --concurrency and --duration must be positive and --page-size 1-1000")
	}
	out := env.stdout
	fmt.Fprintf(out, "mediflow bench %s — %s\n", mode, bench.ThisMachine())
	setup := bench.Setup{
		Resources: o.resources, PageSize: o.pageSize, Dir: o.dir, Seed: o.seed, Progress: env.stderr,
		Log: obs.NewLogger(env.stderr, parseLevel(o.logLevel), "json"),
	}
	stopProfile, err := o.startProfile()
	if err != nil {
		return err
	}
	defer stopProfile()
	switch mode {
	case "sync":
		res, err := bench.RunSync(ctx, setup)
		if err != nil {
			return err
		}
		res.Print(out)
	case "api":
		res, err := bench.RunAPI(ctx, bench.APIOptions{Setup: setup, Concurrency: o.concurrency, Duration: o.duration, Warmup: o.warmup, Medplum: o.peer})
		if err != nil {
			return err
		}
		res.Print(out)
	}
	return nil
}

// startProfile starts a CPU profile when --cpuprofile is set. It covers the
// whole run (data generation included); pprof's -focus narrows it.
func (o *benchOptions) startProfile() (func(), error) {
	if o.cpuProfile == "" {
		return func() {}, nil
	}
	f, err := os.Create(o.cpuProfile)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
