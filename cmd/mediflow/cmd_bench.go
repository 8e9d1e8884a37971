package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/bench"
	"github.com/mediflow/mediflow/internal/obs"
)

const benchLong = `
Measures mediflow on this machine over loopback.

  sync  Starts the EHR simulator (generic flavour, SMART backend-services
        auth) with synthetic data sized to at least --resources resources,
        in a child process of this binary (--sim-process=false keeps it in
        this process), and runs one full sync of every data class into a
        fresh SQLite store in --dir. Prints resources, seconds, resources/s,
        the peak RSS (VmHWM) of the engine's process and, separately, of the
        simulator's (it holds the whole data set), and the store size.
        Default --resources 200000.
  bulk  Starts the simulator the same way (default --resources 1000000, in a
        child process unless --sim-process=false) and runs one system-level
        FHIR Bulk Data export into a fresh SQLite store in --dir, as the
        engine's nightly bulk policy does: kick-off, status polls, manifest,
        then --workers NDJSON files at once (default 2), each read in
        batches of --batch resources (default 1000), every batch stored raw,
        mapped with the production mapper (--mapping=false stores the
        resources unmapped, to see what mapping costs) and written. Checks
        the store holds exactly the simulator's resources per type. Prints
        resources/s for the whole export and for download + ingest, the
        engine process's CPU time and peak RSS (VmHWM), and the store size.
  api   Fills a store the same way (default --resources 50000), serves the
        app-facing API on loopback and sends GET /fhir/bench/Patient?_count=20
        and a date search on Observation from --concurrency keep-alive clients
        for --duration each; prints req/s and p50/p90/p99 latency. With
        --peer (the default) the same Patients are loaded into the Medplum
        FHIR server of peers/ (needs Node.js and its node_modules) and its
        Patient?_count=20 is measured with the same load generator.

  hl7-ingest
        Starts an HL7 v2 listener on loopback with a fresh SQLite store in
        --dir and sends --messages messages (default 100000, ADT^A08 and
        ORU^R01 from 20 facilities) over --concurrency MLLP connections, each
        waiting for its ACK (commit-then-ACK: an ACK means stored); prints
        messages/s. Then sends --rate messages/s (default 1000) for
        --duration and prints ACK latency p50/p90/p99 from each message's
        scheduled send time. Checks every ACK and that the store holds each
        message once. --process also converts the messages to FHIR while
        they arrive, as the engine does. Prints peak RSS (VmHWM).

  hl7-parse
        Parses every message of the CDC HL7 v2 sample set (shared test data
        beside the repository) and internal/hl7/testdata/*.hl7 over and over
        (about --messages messages per loop, default 100000) with mediflow's
        parser on one goroutine and, with --peer (the default), with
        Medplum's parser (peers/hl7-parse.mjs, one Node.js process; needs
        Node.js and its node_modules) on the same messages, one after the
        other. Prints messages/s and MB/s for parsing alone and for parsing
        plus reading MSH-9, MSH-10, PID-3, PID-5, OBX-3 and OBX-5, and the
        ratio between the two parsers.

  realtime
        Starts the simulator (generic flavour; default --resources 20000, in
        a child process unless --sim-process=false) and an engine on a fresh
        SQLite store in --dir with store.secret_key set, keeping the
        demographics, scheduling and billing classes in real time through
        FHIR Subscriptions to the appointment, patient and encounter change
        topics (--payload full-resource or id-only), mapped as in
        production. Once the start-up polls are done an app registers a
        webhook through the API; its receiver on loopback verifies every
        signature. The simulator then makes --rate events/s (changes of the
        subscribed types; default 200) for --warmup (default 5s, not
        counted) and --duration (default 30s). Prints the latency from each
        change's meta.lastUpdated at the simulator to its webhook's arrival
        (p50/p95/p99/max), events/s achieved, events lost (never delivered),
        the CPU of the engine's and the simulator's processes, and the load
        average.

  writeback
        Starts the simulator (generic flavour, open auth, --patients patients,
        default 200; in a child process unless --sim-process=false) and an
        engine with write-back on over a fresh SQLite store in --dir. Phase 1
        submits --intents note intents (default 20000) through the engine's
        write-back, each checked against the generic write contract and
        mapped as the API does, from --concurrency goroutines (default 8)
        with the outbox stopped: intents/s accepted. Phase 2 runs the outbox
        (its default concurrency and poll interval) until every intent is
        final, each write read back and verified: writes/s confirmed. Fails
        unless every intent is confirmed and the simulator holds exactly one
        note per intent. Prints counts per final status, duplicates at the
        EHR, the engine's CPU per phase and the load average.

The load generator shares the CPUs with the server it measures; see
docs/benchmarks.md for method and numbers.

Flags may come before or after the word sync, bulk, api, hl7-ingest, hl7-parse, realtime or writeback.

Examples:
  mediflow bench sync
  mediflow bench sync --resources 500000 --page-size 1000 --dir /tmp/bench
  mediflow bench bulk --resources 1000000 --workers 4 --batch 1000
  mediflow bench api --concurrency 16 --duration 20s
  mediflow bench hl7-ingest --concurrency 8 --messages 100000 --rate 1000
  mediflow bench hl7-parse --messages 200000
  mediflow bench realtime --rate 200 --duration 30s --payload id-only
  mediflow bench writeback --intents 20000 --concurrency 8
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
	traceFile   string
	heapProfile string
	logLevel    string
	messages    int
	rate        int
	process     bool
	simProcess  bool
	workers     int
	batch       int
	mapping     bool
	payload     string
	intents     int
	patients    int
	set         map[string]bool // flags given on the command line
}

func (o *benchOptions) define(fs *flag.FlagSet) {
	fs.IntVar(&o.resources, "resources", 0, "at least this many resources in the simulator (default: 200000 for sync, 1000000 for bulk, 50000 for api)")
	fs.IntVar(&o.pageSize, "page-size", 500, "page size (_count) the engine asks the simulator for (1-1000)")
	fs.StringVar(&o.dir, "dir", "", "`folder` for the store, key and config (default: a temporary folder, removed afterwards)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed for the synthetic data")
	fs.IntVar(&o.concurrency, "concurrency", 8, "api: concurrent keep-alive clients; writeback: submitting goroutines")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "api: how long each search is measured; realtime: the measured period (default 30s)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "api: load sent before each measurement, not counted; realtime: events made before the measured period (default 5s)")
	fs.BoolVar(&o.peer, "peer", true, "api, hl7-parse: also measure the Medplum peer (FHIR server, HL7 parser) when it is installed in peers/")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the measured part to `file`")
	fs.StringVar(&o.heapProfile, "heapprofile", "", "bench bulk: write a heap profile to `file` at each new peak of the live heap (the last one shows the peak)")
	fs.StringVar(&o.traceFile, "trace", "", "write a Go execution trace of the run to `file` (go tool trace reads it: where goroutines wait)")
	fs.StringVar(&o.logLevel, "log-level", "error", "engine log level (logs go to stderr)")
	fs.IntVar(&o.messages, "messages", 100000, "hl7-ingest: messages sent in the throughput phase; hl7-parse: messages parsed per measured loop")
	fs.IntVar(&o.rate, "rate", 1000, "hl7-ingest: messages/s of the latency phase (it lasts --duration; 0 skips it); realtime: events/s (default 200)")
	fs.BoolVar(&o.process, "process", false, "hl7-ingest: convert the messages to FHIR while they arrive")
	fs.BoolVar(&o.simProcess, "sim-process", true, "sync, bulk, realtime, writeback: run the simulator in a child process, so the engine's peak RSS and CPU are its own (false: in this process)")
	fs.IntVar(&o.workers, "workers", bench.DefaultBulkWorkers, "bulk: files downloaded and ingested at once")
	fs.IntVar(&o.batch, "batch", bench.DefaultBulkBatch, "bulk: resources per batch (one raw payload and one store transaction)")
	fs.BoolVar(&o.mapping, "mapping", true, "bulk: map the resources with the production mapper (false: store them as received)")
	fs.StringVar(&o.payload, "payload", bench.PayloadFullResource, "realtime: the subscriptions' payload, full-resource or id-only (the engine then reads each notified resource)")
	fs.IntVar(&o.intents, "intents", bench.DefaultWritebackIntents, "writeback: note intents submitted and delivered")
	fs.IntVar(&o.patients, "patients", bench.DefaultWritebackPatients, "writeback: patients in the simulator the notes are spread over")
}

func benchCmd() *command {
	return &command{
		name:    "bench",
		summary: "measure sync and bulk ingest throughput, API search speed, change-to-webhook latency and write-back throughput against the built-in simulator",
		usage:   "sync | bulk | api | hl7-ingest | hl7-parse | realtime | writeback",
		long:    benchLong,
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			o := &benchOptions{}
			o.define(fs)
			return func(ctx context.Context, env *cliEnv, args []string) error {
				if len(args) == 0 {
					return usagef("say what to measure: sync, bulk, api, hl7-ingest, hl7-parse, realtime or writeback")
				}
				mode := args[0]
				if mode == "sim-source" { // internal: the simulator process of bench sync, not in the help
					return bench.SimSourceMain(ctx, args[1:], os.Stdin, env.stdout, env.stderr)
				}
				if mode == "sim-writeback" { // internal: the simulator process of bench writeback
					return bench.WritebackSimMain(ctx, args[1:], os.Stdin, env.stdout, env.stderr)
				}
				if err := fs.Parse(args[1:]); err != nil {
					return usagef("%v", err)
				}
				if fs.NArg() > 0 {
					return usagef("unexpected arguments %q", fs.Args())
				}
				o.set = map[string]bool{}
				fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
				if mode != "sync" && mode != "bulk" && mode != "api" && mode != "hl7-ingest" && mode != "hl7-parse" && mode != "realtime" && mode != "writeback" {
					return usagef("unknown benchmark %q (want sync, bulk, api, hl7-ingest, hl7-parse, realtime or writeback)", mode)
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
		if mode == "bulk" {
			o.resources = 1000000
		}
		if mode == "realtime" {
			o.resources = bench.DefaultRealtimeResources
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
		if o.simProcess {
			if setup.SimCommand, err = simSourceCommand(); err != nil {
				return err
			}
		}
		res, err := bench.RunSync(ctx, setup)
		if err != nil {
			return err
		}
		res.Print(out)
	case "bulk":
		if o.workers < 1 || o.batch < 1 {
			return usagef("--workers and --batch must be positive")
		}
		if o.simProcess {
			if setup.SimCommand, err = simSourceCommand(); err != nil {
				return err
			}
		}
		res, err := bench.RunBulk(ctx, bench.BulkOptions{Setup: setup, Workers: o.workers, BatchSize: o.batch, NoMapping: !o.mapping, HeapProfile: o.heapProfile})
		if err != nil {
			return err
		}
		res.Print(out)
	case "hl7-ingest":
		if o.messages < 1 || o.rate < 0 {
			return usagef("--messages must be positive and --rate not negative")
		}
		rate := o.rate
		if rate == 0 {
			rate = -1
		}
		res, err := bench.RunHL7Ingest(ctx, bench.HL7IngestOptions{Messages: o.messages, Conns: o.concurrency, Rate: rate,
			RateDuration: o.duration, Process: o.process, Dir: o.dir, Log: setup.Log, Progress: env.stderr})
		if err != nil {
			return err
		}
		res.Print(out)
	case "hl7-parse":
		if o.messages < 1 {
			return usagef("--messages must be positive")
		}
		res, err := bench.RunHL7Parse(ctx, bench.HL7ParseOptions{Messages: o.messages, Peer: o.peer, Progress: env.stderr})
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
	case "realtime":
		ro := bench.RealtimeOptions{Setup: setup, Rate: float64(o.rate), Duration: o.duration, Warmup: o.warmup, Payload: o.payload}
		if !o.set["rate"] {
			ro.Rate = bench.DefaultRealtimeRate
		}
		if !o.set["duration"] {
			ro.Duration = bench.DefaultRealtimeDuration
		}
		if !o.set["warmup"] {
			ro.Warmup = bench.DefaultRealtimeWarmup
		}
		if ro.Rate <= 0 || ro.Warmup < 0 || (o.payload != bench.PayloadFullResource && o.payload != bench.PayloadIDOnly) {
			return usagef("--rate must be positive, --warmup not negative and --payload full-resource or id-only")
		}
		if o.simProcess {
			if ro.SimCommand, err = simSourceCommand(); err != nil {
				return err
			}
		}
		res, err := bench.RunRealtime(ctx, ro)
		if err != nil {
			return err
		}
		res.Print(out)
	case "writeback":
		if o.intents < 1 || o.patients < 1 {
			return usagef("--intents and --patients must be positive")
		}
		wo := bench.WritebackOptions{Intents: o.intents, Concurrency: o.concurrency, Patients: o.patients, Seed: o.seed,
			Dir: o.dir, Log: setup.Log, Progress: env.stderr}
		if o.simProcess {
			if wo.SimCommand, err = simCommand("sim-writeback"); err != nil {
				return err
			}
		}
		res, err := bench.RunWriteback(ctx, wo)
		if res != nil {
			res.Print(out)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// startProfile starts a CPU profile when --cpuprofile is set. It covers the
// whole run (data generation included); pprof's -focus narrows it.
func (o *benchOptions) startProfile() (func(), error) {
	stop := func() {}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
		stop = func() {
			pprof.StopCPUProfile()
			f.Close()
		}
	}
	if o.traceFile != "" {
		f, err := os.Create(o.traceFile)
		if err != nil {
			stop()
			return nil, fmt.Errorf("trace: %w", err)
		}
		if err := trace.Start(f); err != nil {
			f.Close()
			stop()
			return nil, fmt.Errorf("trace: %w", err)
		}
		prev := stop
		stop = func() {
			trace.Stop()
			f.Close()
			prev()
		}
	}
	return stop, nil
}

// simSourceCommand is how bench sync starts its simulator process: this
// binary's hidden `bench sim-source` mode. Under go test the executable is
// a test binary without that mode, so the simulator stays in-process (nil).
func simSourceCommand() ([]string, error) { return simCommand("sim-source") }

// simCommand is this binary's hidden `bench MODE` simulator process (nil
// under go test, as for simSourceCommand).
func simCommand(mode string) ([]string, error) {
	if testing.Testing() {
		return nil, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: finding this binary to run the simulator process: %w", err)
	}
	return []string{exe, "bench", mode}, nil
}
