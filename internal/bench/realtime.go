package bench

// The real-time benchmark: a simulator change reaches an app's webhook.
//
// RunRealtime starts the simulator (generic flavour, SMART backend-services
// auth; in a child process with Setup.SimCommand) and an engine on a fresh
// SQLite store with store.secret_key set, whose one connection keeps the
// demographics, scheduling and billing classes in real time through FHIR
// Subscriptions on the appointment, patient and encounter change topics.
// Once the start-up polls have loaded the store and the subscriptions are
// active, an app registers a webhook through the API (POST
// /v1/practices/bench/webhooks) pointing at a receiver on loopback, which
// verifies every request's signature (delivery.VerifyRequest) and records
// when it arrived. Then the simulator makes changes at a fixed rate of
// events (changes of the subscribed types; the generator's other changes,
// observations, notes, ..., happen too and are counted apart) for a warm-up
// and a measured period.
//
// A change's latency is the arrival of the first webhook request whose
// resource version covers it minus the change's meta.lastUpdated at the
// simulator: the same machine and clock, lastUpdated in milliseconds
// (truncated, so latencies are overstated by under a millisecond). A
// webhook event names mediflow's version of the resource; the store says
// which source version (meta.versionId) that was. A change no webhook
// covers before the drain deadline is lost.
//
// The simulator process is driven over its standard input (SimSourceMain
// with --realtime): one JSON command per line, one JSON reply per line.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	gosync "sync"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/delivery"
	"github.com/mediflow/mediflow/internal/engine"
	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/smart"
	"github.com/mediflow/mediflow/internal/smart/authserver"
)

// Payload modes of RealtimeOptions.Payload (the subscriptions' payload content).
const (
	PayloadFullResource = config.SubscriptionPayloadFullResource
	PayloadIDOnly       = config.SubscriptionPayloadIDOnly
)

// Defaults of RealtimeOptions.
const (
	DefaultRealtimeRate      = 200
	DefaultRealtimeDuration  = 30 * time.Second
	DefaultRealtimeWarmup    = 5 * time.Second
	DefaultRealtimeResources = 20000
	DefaultRealtimeDrain     = 30 * time.Second
)

// realtimeTopics are the topics the engine subscribes to and their types.
var realtimeTopics = []struct {
	topic string
	types []string
}{
	{sim.TopicAppointmentChange, []string{"Appointment"}},
	{sim.TopicPatientChange, []string{"Patient"}},
	{sim.TopicEncounterChange, []string{"Encounter"}},
}

// realtimeClasses are the data classes kept in real time: those holding the
// topics' types.
var realtimeClasses = []string{"demographics", "scheduling", "billing"}

// RealtimeOptions configure RunRealtime. Setup.Resources sizes the
// simulator's data (0: DefaultRealtimeResources); Setup.PageSize is the
// start-up polls' page size (0: 500).
type RealtimeOptions struct {
	Setup
	// Rate is the events (changes of subscribed types) per second the
	// simulator makes (0: DefaultRealtimeRate).
	Rate float64
	// Duration is the measured period (0: DefaultRealtimeDuration); Warmup
	// runs before it at the same rate and is not counted (0: none).
	Duration, Warmup time.Duration
	// Payload is the subscriptions' payload content: PayloadFullResource
	// (default) or PayloadIDOnly (the engine reads each notified resource).
	Payload string
	// Drain is how long to wait, after the last change, for the webhooks
	// still due (0: DefaultRealtimeDrain). Changes not delivered by then are lost.
	Drain time.Duration
}

// RealtimeResult is what RunRealtime measured.
type RealtimeResult struct {
	// Events is the number of changes of subscribed types made in the
	// measured period; Delivered of them reached the webhook, Lost did not.
	Events, Delivered, Lost int
	// WarmupEvents were made during the warm-up (not measured);
	// WarmupLost of them never reached the webhook.
	WarmupEvents, WarmupLost int
	// OtherChanges counts the generator's changes of types nobody
	// subscribed to, made alongside the events (measured period and warm-up).
	OtherChanges int
	// Requests is the number of signed webhook requests received;
	// Duplicates of them repeated an event id already received. Every
	// request's signature was verified (a bad one fails the run).
	Requests, Duplicates int
	// Latency percentiles of the delivered events of the measured period:
	// webhook arrival minus the change's meta.lastUpdated.
	P50, P95, P99, Max, Mean time.Duration
	// Over250 is the number of delivered events slower than 250 ms.
	Over250 int
	// The latency in two parts: IngestP50/P99 from the change's
	// lastUpdated to the store's commit of the version that covers it
	// (subscription notification, raw copy, mapping, write), DispatchP50/P99
	// from that commit to the webhook's arrival (change feed, delivery
	// queue, signed request).
	IngestP50, IngestP99, DispatchP50, DispatchP99 time.Duration
	// Rate is the asked events/s; Achieved is the rate the measured events
	// were made at, by their lastUpdated; GeneratorLag is how far behind
	// schedule the generator fell at worst.
	Rate, Achieved float64
	GeneratorLag   time.Duration
	Duration       time.Duration
	Warmup         time.Duration
	// EngineCPU is this process's CPU time over the measured period, in
	// percent of one CPU: the engine and the webhook receiver, plus the
	// simulator when it runs in this process. SimCPU is the simulator
	// process's (0 without one).
	EngineCPU, SimCPU float64
	// StallMax is the longest a 5 ms timer in this process fired late
	// during the measured period, and Stalls50 how often it was over 50 ms
	// late: time the process could not run (other processes on the CPUs,
	// the Go runtime), which delays every event in flight alike.
	StallMax time.Duration
	Stalls50 int
	// LoadBefore and LoadAfter are the machine's 1, 5 and 15-minute load averages.
	LoadBefore, LoadAfter string
	Payload               string
	SimProcess            bool
	SourceResources       int
	// StartupSync is how long the engine's start-up polls took to load the
	// real-time classes.
	StartupSync time.Duration
	// Types counts the measured events per resource type.
	Types map[string]int
}

// RunRealtime runs the real-time benchmark (see the comment at the top of
// this file) and returns its measurements. It fails when a webhook request
// has a bad signature or the engine does not become ready; lost events
// are reported, not an error.
func RunRealtime(ctx context.Context, o RealtimeOptions) (*RealtimeResult, error) {
	if o.Resources == 0 {
		o.Resources = DefaultRealtimeResources
	}
	if o.PageSize == 0 {
		o.PageSize = 500
	}
	if o.Rate == 0 {
		o.Rate = DefaultRealtimeRate
	}
	if o.Duration == 0 {
		o.Duration = DefaultRealtimeDuration
	}
	if o.Drain == 0 {
		o.Drain = DefaultRealtimeDrain
	}
	if o.Payload == "" {
		o.Payload = PayloadFullResource
	}
	switch {
	case o.Resources < 0 || o.Rate < 0 || o.Duration < 0 || o.Warmup < 0 || o.Drain < 0:
		return nil, errors.New("bench: realtime: resources, rate, duration, warm-up and drain must not be negative")
	case o.PageSize < 1 || o.PageSize > 1000:
		return nil, fmt.Errorf("bench: page size %d must be between 1 and 1000", o.PageSize)
	case o.Payload != PayloadFullResource && o.Payload != PayloadIDOnly:
		return nil, fmt.Errorf("bench: realtime: payload %q: want %s or %s", o.Payload, PayloadFullResource, PayloadIDOnly)
	case o.Rate*o.Duration.Seconds() < 1:
		return nil, errors.New("bench: realtime: the rate and duration make no event")
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	progress := func(format string, a ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", a...)
		}
	}
	res := &RealtimeResult{Rate: o.Rate, Duration: o.Duration, Warmup: o.Warmup, Payload: o.Payload,
		SimProcess: len(o.SimCommand) > 0, LoadBefore: loadAverages(), Types: map[string]int{}}

	r, err := newRealtimeEnv(ctx, o, progress)
	if err != nil {
		return nil, err
	}
	defer r.close()
	res.SourceResources = r.sourceResources

	if err := r.start(ctx, progress); err != nil {
		return nil, err
	}
	res.StartupSync = r.startupSync

	// The changes: warm-up, then the measured period; this process's CPU
	// time is read when the measured period starts and ends.
	progress("making %.0f events/s for %s (+%s warm-up), payload %s", o.Rate, o.Duration, o.Warmup, o.Payload)
	plan := changePlan{Rate: o.Rate, Warmup: o.Warmup, Duration: o.Duration, Types: realtimeTypes()}
	cpuc := make(chan float64, 1)
	stallc := make(chan stalls, 1)
	cpuCtx, stopCPU := context.WithCancel(ctx)
	go func() { cpuc <- measureCPU(cpuCtx, o.Warmup, o.Duration) }()
	go func() { stallc <- probeStalls(cpuCtx, o.Warmup, o.Duration) }()
	log, err := r.src.changes(ctx, plan)
	stopCPU()
	res.EngineCPU = <-cpuc
	st := <-stallc
	res.StallMax, res.Stalls50 = st.max, st.over50
	if err != nil {
		return nil, err
	}
	res.OtherChanges, res.GeneratorLag = log.Other, time.Duration(log.MaxLagNanos)
	if res.SimProcess {
		res.SimCPU = log.CPUPercent
	}
	// The rate achieved is read from the changes' own timestamps: the
	// events of the measured period over the time between the first and
	// the last of them.
	var firstAt, lastAt int64
	for _, c := range log.Changes {
		if c.Warmup {
			continue
		}
		if res.Events == 0 {
			firstAt = c.LastUpdatedNanos
		}
		lastAt = c.LastUpdatedNanos
		res.Events++
	}
	if span := time.Duration(lastAt - firstAt); res.Events > 1 && span > 0 {
		res.Achieved = float64(res.Events-1) / span.Seconds()
	}

	// Wait for the webhooks still due, then match them with the changes.
	progress("%d events made (%d other changes); waiting for their webhooks", len(log.Changes), log.Other)
	cov, err := r.drain(ctx, log.Changes, o.Drain)
	if err != nil {
		return nil, err
	}
	res.LoadAfter = loadAverages()
	var lat, ingest, dispatch []time.Duration
	for i, c := range log.Changes {
		first, ok := cov.first[i]
		switch {
		case c.Warmup && !ok:
			res.WarmupLost++
		case c.Warmup:
		case !ok:
			res.Lost++
		default:
			res.Delivered++
			res.Types[c.Type]++
			changed := time.Unix(0, c.LastUpdatedNanos)
			lat = append(lat, first.at.Sub(changed))
			ingest = append(ingest, first.stored.Sub(changed))
			dispatch = append(dispatch, first.at.Sub(first.stored))
		}
		if c.Warmup {
			res.WarmupEvents++
		}
	}
	res.Requests, res.Duplicates = cov.requests, cov.duplicates
	if cov.badSignatures > 0 {
		return nil, fmt.Errorf("bench: realtime: %d webhook requests failed signature verification", cov.badSignatures)
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		if lat[0] < -5*time.Millisecond {
			return nil, fmt.Errorf("bench: realtime: a webhook arrived %s before its change's lastUpdated: the simulator's clock is not this machine's", -lat[0])
		}
		res.P50, res.P95, res.P99 = quantile(lat, 0.50), quantile(lat, 0.95), quantile(lat, 0.99)
		res.Max = lat[len(lat)-1]
		var sum time.Duration
		for _, d := range lat {
			sum += d
			if d > 250*time.Millisecond {
				res.Over250++
			}
		}
		res.Mean = sum / time.Duration(len(lat))
		slices.Sort(ingest)
		slices.Sort(dispatch)
		res.IngestP50, res.IngestP99 = quantile(ingest, 0.50), quantile(ingest, 0.99)
		res.DispatchP50, res.DispatchP99 = quantile(dispatch, 0.50), quantile(dispatch, 0.99)
	}
	return res, nil
}

// realtimeTypes are the resource types of the subscribed topics.
func realtimeTypes() []string {
	var ts []string
	for _, t := range realtimeTopics {
		ts = append(ts, t.types...)
	}
	return ts
}

// Print writes the result as a short report.
func (r *RealtimeResult) Print(w io.Writer) {
	where := "in this process"
	if r.SimProcess {
		where = "in a child process"
	}
	fmt.Fprintf(w, "simulator      generic flavour, %d resources, %s; start-up polls loaded the real-time classes in %.1f s\n",
		r.SourceResources, where, r.StartupSync.Seconds())
	fmt.Fprintf(w, "subscriptions  appointment, patient and encounter change topics, payload %s\n", r.Payload)
	fmt.Fprintf(w, "events         %d in %s (+%d in %s warm-up); asked %.0f/s, made %.1f/s (generator at worst %.1f ms behind schedule)\n",
		r.Events, r.Duration, r.WarmupEvents, r.Warmup, r.Rate, r.Achieved, ms(r.GeneratorLag))
	fmt.Fprintf(w, "other changes  %d (types not subscribed: observations, notes, conditions, coverage; made alongside, not delivered in real time)\n", r.OtherChanges)
	fmt.Fprintf(w, "delivered      %d, lost %d (warm-up lost %d); %d signed webhook requests, all signatures verified, %d duplicates\n",
		r.Delivered, r.Lost, r.WarmupLost, r.Requests, r.Duplicates)
	fmt.Fprintf(w, "latency        p50 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms, mean %.1f ms (change lastUpdated → webhook arrival); %d over 250 ms\n",
		ms(r.P50), ms(r.P95), ms(r.P99), ms(r.Max), ms(r.Mean), r.Over250)
	fmt.Fprintf(w, "  of which    change → stored p50 %.1f ms, p99 %.1f ms; stored → webhook p50 %.1f ms, p99 %.1f ms\n",
		ms(r.IngestP50), ms(r.IngestP99), ms(r.DispatchP50), ms(r.DispatchP99))
	per := make([]string, 0, len(r.Types))
	for _, t := range realtimeSortedTypes(r.Types) {
		per = append(per, fmt.Sprintf("%s %d", t, r.Types[t]))
	}
	fmt.Fprintf(w, "per type       %s\n", strings.Join(per, ", "))
	if r.SimProcess {
		fmt.Fprintf(w, "CPU            engine process %.0f%% of one CPU (engine and webhook receiver), simulator process %.0f%%, over the measured period\n", r.EngineCPU, r.SimCPU)
	} else {
		fmt.Fprintf(w, "CPU            %.0f%% of one CPU over the measured period (engine, webhook receiver and the in-process simulator)\n", r.EngineCPU)
	}
	fmt.Fprintf(w, "stalls         a 5 ms timer in the engine process fired up to %.1f ms late, %d times over 50 ms late\n", ms(r.StallMax), r.Stalls50)
	fmt.Fprintf(w, "load average   %s before, %s after\n", r.LoadBefore, r.LoadAfter)
	verdict := "met"
	if r.Lost > 0 || r.P99 >= 250*time.Millisecond || r.Achieved < 0.95*r.Rate {
		verdict = "MISSED"
	}
	fmt.Fprintf(w, "target         p99 < 250 ms at %.0f events/s, none lost: %s\n", r.Rate, verdict)
}

// loadAverages is the first three fields of /proc/loadavg ("" where unavailable).
func loadAverages() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// measureCPU waits warmup, then returns this process's CPU time over the
// next d, or until ctx ends if sooner, in percent of one CPU (0 if ctx
// ends during the warm-up).
func measureCPU(ctx context.Context, warmup, d time.Duration) float64 {
	if !sleepCtx(ctx, warmup) {
		return 0
	}
	c0, t0 := processCPU(), time.Now()
	sleepCtx(ctx, d)
	c1, t1 := processCPU(), time.Now()
	return cpuPercent(c0, c1, t1.Sub(t0))
}

// stalls is what probeStalls saw.
type stalls struct {
	max    time.Duration
	over50 int
}

// probeStalls waits warmup, then for d (or until ctx ends) sleeps 5 ms at
// a time and records how much later than asked each sleep ended.
func probeStalls(ctx context.Context, warmup, d time.Duration) stalls {
	var s stalls
	if !sleepCtx(ctx, warmup) {
		return s
	}
	const step = 5 * time.Millisecond
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		t0 := time.Now()
		if !sleepCtx(ctx, step) {
			break
		}
		late := time.Since(t0) - step
		s.max = max(s.max, late)
		if late > 50*time.Millisecond {
			s.over50++
		}
	}
	return s
}

func cpuPercent(c0, c1 cpuTimes, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	used := (c1.user + c1.system) - (c0.user + c0.system)
	return 100 * float64(used) / float64(wall)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// ---- the environment: simulator, engine, webhook receiver ----

// realtimeEnv is a running real-time benchmark setup.
type realtimeEnv struct {
	o               RealtimeOptions
	dir             string
	tempDir         bool
	storePath       string
	apiKey          string
	src             realtimeSource
	local           *source     // the in-process simulator
	child           *simProcess // the simulator process
	sourceCounts    map[string]int
	sourceResources int

	eng       *engine.Engine
	apiURL    string
	stopEng   context.CancelFunc
	engDone   chan error
	recv      *receiver
	startupAt time.Time

	startupSync time.Duration
}

// newRealtimeEnv starts the simulator with the engine's client allowed to
// manage Subscriptions, writes the configuration and builds the engine.
func newRealtimeEnv(ctx context.Context, o RealtimeOptions, progress func(string, ...any)) (_ *realtimeEnv, err error) {
	r := &realtimeEnv{o: o, dir: o.Dir}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if r.dir == "" {
		if r.dir, err = os.MkdirTemp("", "mediflow-bench-realtime-"); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		r.tempDir = true
	} else if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	r.storePath = filepath.Join(r.dir, "bench.db")
	for _, suffix := range []string{"", "-wal", "-shm", ".index"} {
		if err := os.RemoveAll(r.storePath + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("bench: removing the previous store: %w", err)
		}
	}
	key, err := smart.GenerateKey(smart.AlgES384)
	if err != nil {
		return nil, err
	}
	pemBytes, err := smart.EncodePrivateKeyPEM(key)
	if err != nil {
		return nil, err
	}
	jwks, err := smart.PublicJWKS(key)
	if err != nil {
		return nil, err
	}
	r.apiKey = "bench-api-key-" + strconv.FormatUint(o.Seed, 16) + "-0123456789abcdef"
	storeKey := make([]byte, config.SecretKeySize)
	for i := range storeKey {
		storeKey[i] = byte(i*37 + 11) // a fixed key: the benchmark's store holds no real secret
	}
	files := map[string][]byte{
		"bench.key.pem":   pemBytes,
		"bench.jwks.json": jwks,
		"app.key":         []byte(r.apiKey + "\n"),
		"store.key":       fmt.Appendf(nil, "%x\n", storeKey),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(r.dir, name), b, 0o600); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}

	var baseURL string
	if len(o.SimCommand) > 0 {
		progress("starting the simulator process")
		cmd := append(slices.Clone(o.SimCommand), "--realtime")
		r.child, err = startSimProcess(ctx, cmd, o.Resources, o.Seed, filepath.Join(r.dir, "bench.jwks.json"), o.Progress)
		if err != nil {
			return nil, err
		}
		r.src = &childSource{p: r.child}
		baseURL, r.sourceCounts, r.sourceResources = r.child.ready.BaseURL, r.child.ready.Counts, r.child.ready.Resources
	} else {
		if r.local, err = startSource(ctx, o.Resources, o.Seed, jwks, progress); err != nil {
			return nil, err
		}
		if err := registerRealtimeClient(r.local.sim, jwks); err != nil {
			return nil, err
		}
		r.src = localSource{s: r.local.sim}
		baseURL, r.sourceCounts, r.sourceResources = r.local.sim.BaseURL(Practice), r.local.sim.Counts(Practice), r.local.resources
	}

	cfgPath := filepath.Join(r.dir, "mediflow.yaml")
	if err := os.WriteFile(cfgPath, []byte(realtimeConfigYAML(baseURL, filepath.Base(r.storePath), o.PageSize, o.Payload)), 0o600); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	cfg, err := config.Load(cfgPath, func(string) string { return "" })
	if err != nil {
		return nil, fmt.Errorf("bench: configuration: %w", err)
	}
	log := o.Log
	if log == nil {
		log = obs.NewLogger(io.Discard, slog.LevelError, "json")
	}
	r.eng, err = engine.New(ctx, cfg, engine.Options{Logger: log, Getenv: func(string) string { return "" },
		StartWindow: 100 * time.Millisecond})
	if err != nil {
		return nil, fmt.Errorf("bench: engine: %w", err)
	}
	return r, nil
}

// realtimeScopes are the SMART scopes of the engine's client: read and
// search of every type, and managing Subscriptions.
func realtimeScopes() []string {
	var scopes []string
	for _, rt := range flavor.AllTypes() {
		scopes = append(scopes, "system/"+rt+".rs")
	}
	return append(scopes, "system/Subscription.cruds")
}

// registerRealtimeClient registers the client "mediflow-bench" again, now
// allowed to manage Subscriptions too.
func registerRealtimeClient(s *sim.Sim, jwks []byte) error {
	if err := s.RegisterClient(Practice, authserver.Client{ID: "mediflow-bench", JWKS: jwks, Scopes: realtimeScopes()}); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// realtimeConfigYAML is the real-time benchmark's configuration: the
// demographics, scheduling and billing classes in real time (10-minute
// safety polls), one subscription per topic, webhooks sealed with
// store.secret_key, one app.
func realtimeConfigYAML(baseURL, storeFile string, pageSize int, payload string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "server:\n  listen: 127.0.0.1:0\nstore:\n  driver: sqlite\n  path: %s\n  secret_key: {file: store.key}\nlog:\n  level: error\n", storeFile)
	fmt.Fprintf(&b, "practices:\n  - id: %s\n    name: Benchmark Practice\n    connections:\n", Practice)
	fmt.Fprintf(&b, "      - name: %s\n        vendor: generic\n        base_url: %s\n        timeout: 60s\n        page_size: %d\n", connectionName, baseURL, pageSize)
	b.WriteString("        auth:\n          type: smart-backend\n          client_id: mediflow-bench\n")
	b.WriteString("          private_key: {file: bench.key.pem}\n          algorithm: ES384\n")
	fmt.Fprintf(&b, "          scopes: [%s]\n        sync:\n", strings.Join(realtimeScopes(), ", "))
	for _, c := range realtimeClasses {
		fmt.Fprintf(&b, "          - class: %s\n            mode: realtime\n            interval: 10m\n", c)
	}
	b.WriteString("        subscriptions:\n")
	for _, t := range realtimeTopics {
		fmt.Fprintf(&b, "          - topic: %s\n            types: [%s]\n            payload: %s\n            heartbeat: 10s\n",
			t.topic, strings.Join(t.types, ", "), payload)
	}
	fmt.Fprintf(&b, "apps:\n  - name: bench\n    key: {file: app.key}\n    practices: [%s]\n", Practice)
	return b.String()
}

// start runs the engine, waits for its start-up polls to load the
// real-time classes, for the dispatcher to have read the change feed they
// made, and for the subscriptions to be active; then registers the
// webhook.
func (r *realtimeEnv) start(ctx context.Context, progress func(string, ...any)) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	r.apiURL = "http://" + ln.Addr().String()
	runCtx, stop := context.WithCancel(ctx)
	r.stopEng, r.engDone = stop, make(chan error, 1)
	r.startupAt = time.Now()
	go func() { r.engDone <- r.eng.Run(runCtx, ln) }()

	progress("engine started; waiting for the start-up polls and the subscriptions")
	st := r.eng.Store()
	synced := false
	deadline := time.Now().Add(5*time.Minute + time.Duration(r.sourceResources)*time.Millisecond)
	for {
		if err := r.engineFailed(); err != nil {
			return err
		}
		if !synced {
			ok, err := r.loaded(ctx)
			if err != nil {
				return err
			}
			if ok {
				synced = true
				r.startupSync = time.Since(r.startupAt)
				progress("start-up polls done in %.1f s", r.startupSync.Seconds())
			}
		}
		if synced {
			cursor, err := st.DeliveryCursor(ctx, Practice)
			if err != nil {
				return fmt.Errorf("bench: %w", err)
			}
			rest, err := st.Changes(ctx, Practice, cursor, 1)
			if err != nil {
				return fmt.Errorf("bench: %w", err)
			}
			subs, err := r.src.subscriptions(ctx)
			if err != nil {
				return err
			}
			active := 0
			for _, s := range subs {
				if s.Status == "active" {
					active++
				}
			}
			if len(rest) == 0 && active == len(realtimeTopics) {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: realtime: the engine did not load the store and activate %d subscriptions in time", len(realtimeTopics))
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}

	r.recv, err = newReceiver()
	if err != nil {
		return err
	}
	secret, err := r.registerWebhook(ctx, r.recv.url)
	if err != nil {
		return err
	}
	r.recv.setSecret(secret)
	progress("webhook registered; subscriptions active")
	return nil
}

// engineFailed reports the engine's error if Run has returned.
func (r *realtimeEnv) engineFailed() error {
	select {
	case err := <-r.engDone:
		r.engDone <- err
		if err == nil {
			err = errors.New("stopped")
		}
		return fmt.Errorf("bench: the engine stopped: %w", err)
	default:
		return nil
	}
}

// loaded reports whether the store holds as many resources of every type
// of the real-time classes as the simulator, with no poll running.
func (r *realtimeEnv) loaded(ctx context.Context) (bool, error) {
	st := r.eng.Store()
	runs, err := st.ListRuns(ctx, Practice, "", 100)
	if err != nil {
		return false, fmt.Errorf("bench: %w", err)
	}
	if len(runs) < len(realtimeClasses) {
		return false, nil
	}
	for _, run := range runs {
		if run.FinishedAt.IsZero() {
			return false, nil
		}
	}
	counts, err := st.CountResources(ctx, Practice)
	if err != nil {
		return false, fmt.Errorf("bench: %w", err)
	}
	for _, rt := range []string{"Patient", "Schedule", "Slot", "Appointment", "Encounter"} {
		if counts[rt] != r.sourceCounts[rt] {
			return false, nil
		}
	}
	return true, nil
}

// registerWebhook registers the receiver through the API, as an app would,
// and returns the secret.
func (r *realtimeEnv) registerWebhook(ctx context.Context, url string) ([]byte, error) {
	body, err := json.Marshal(map[string]any{"url": url, "types": realtimeTypes()})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.apiURL+"/v1/practices/"+Practice+"/webhooks", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+r.apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench: registering the webhook: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("bench: registering the webhook: %s", resp.Status)
	}
	var out struct {
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Secret == "" {
		return nil, errors.New("bench: registering the webhook: no secret in the answer")
	}
	return []byte(out.Secret), nil
}

// close stops the engine, the receiver and the simulator and removes a
// temporary folder.
func (r *realtimeEnv) close() {
	if r.stopEng != nil {
		r.stopEng()
		<-r.engDone
	}
	if r.recv != nil {
		r.recv.close()
	}
	if r.eng != nil {
		_ = r.eng.Close()
	}
	if r.local != nil {
		r.local.sim.StopSubscriptions()
		r.local.stop()
	}
	if r.child != nil {
		_, _ = r.child.stop()
	}
	if r.tempDir {
		_ = os.RemoveAll(r.dir)
	}
}

// coverage is which changes the webhooks covered.
type coverage struct {
	first                map[int]covered // change index → the first event covering it
	requests, duplicates int
	badSignatures        int
	resolved             int                  // receiver events resolved so far
	byResource           map[string][]covered // "Type/id" → events received
}

// covered is one received event resolved to the source version it carried.
type covered struct {
	sourceVersion int
	stored, at    time.Time // the version's commit in the store; the webhook's arrival
}

// drain resolves the received webhook events to source versions and waits
// until every change is covered or the drain time has passed.
func (r *realtimeEnv) drain(ctx context.Context, changes []changeRecord, d time.Duration) (*coverage, error) {
	cov := &coverage{first: map[int]covered{}, byResource: map[string][]covered{}}
	deadline := time.Now().Add(d)
	for {
		if err := r.resolve(ctx, cov); err != nil {
			return nil, err
		}
		missing := 0
		for i, c := range changes {
			if _, ok := cov.first[i]; ok {
				continue
			}
			key := c.Type + "/" + c.ID
			var best covered
			for _, e := range cov.byResource[key] {
				if e.sourceVersion >= c.Version && (best.at.IsZero() || e.at.Before(best.at)) {
					best = e
				}
			}
			if best.at.IsZero() {
				missing++
				continue
			}
			cov.first[i] = best
		}
		if missing == 0 || time.Now().After(deadline) {
			return cov, nil
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
}

// resolve reads the source version of every event received since the last call.
func (r *realtimeEnv) resolve(ctx context.Context, cov *coverage) error {
	evs, requests, dups, bad := r.recv.snapshot(cov.resolved)
	cov.requests, cov.duplicates, cov.badSignatures = requests, dups, bad
	st := r.eng.Store()
	for _, ev := range evs {
		cov.resolved++
		v, err := st.GetResourceVersion(ctx, Practice, ev.typ, ev.id, ev.version)
		if err != nil {
			return fmt.Errorf("bench: reading the version a webhook named: %w", err)
		}
		sv, err := strconv.Atoi(v.SourceVersionID)
		if err != nil {
			return fmt.Errorf("bench: a stored version has source version id %q", v.SourceVersionID)
		}
		key := ev.typ + "/" + ev.id
		cov.byResource[key] = append(cov.byResource[key], covered{sourceVersion: sv, stored: v.StoredAt, at: ev.at})
	}
	return nil
}

// ---- the app's webhook receiver ----

// receiver is the app's webhook endpoint on loopback: it verifies every
// request's signature with the secret the API gave and records when each
// event arrived.
type receiver struct {
	url string
	srv *http.Server
	ln  net.Listener

	mu       gosync.Mutex
	secret   []byte
	events   []received
	seen     map[string]bool
	requests int
	dups     int
	bad      int
	done     chan struct{}
}

// received is one webhook event as it arrived.
type received struct {
	typ, id string
	version int
	at      time.Time
}

func newReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: webhook receiver: %w", err)
	}
	rc := &receiver{ln: ln, url: "http://" + ln.Addr().String() + "/hook", seen: map[string]bool{}, done: make(chan struct{})}
	rc.srv = &http.Server{Handler: http.HandlerFunc(rc.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(rc.done)
		_ = rc.srv.Serve(ln)
	}()
	return rc, nil
}

func (rc *receiver) setSecret(s []byte) {
	rc.mu.Lock()
	rc.secret = s
	rc.mu.Unlock()
}

func (rc *receiver) serve(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	rc.mu.Lock()
	secret := rc.secret
	rc.mu.Unlock()
	body, err := delivery.VerifyRequest(req, secret, at, 0)
	if err != nil {
		rc.mu.Lock()
		rc.bad++
		rc.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev delivery.Event
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID == "" || ev.ID != req.Header.Get(delivery.EventIDHeader) {
		http.Error(w, "bad event", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.requests++
	if rc.seen[ev.ID] {
		rc.dups++
	} else {
		rc.seen[ev.ID] = true
		rc.events = append(rc.events, received{typ: ev.Type, id: ev.ResourceID, version: ev.Version, at: at})
	}
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// snapshot returns the events received after the first `from` and the counters.
func (rc *receiver) snapshot(from int) (evs []received, requests, dups, bad int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.events[min(from, len(rc.events)):]), rc.requests, rc.dups, rc.bad
}

func (rc *receiver) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = rc.srv.Shutdown(ctx)
	<-rc.done
}

// ---- driving the simulator ----

// realtimeSource is the simulator as the benchmark drives it: in this
// process or in the simulator process.
type realtimeSource interface {
	subscriptions(ctx context.Context) ([]sim.SubscriptionStatus, error)
	changes(ctx context.Context, p changePlan) (*changeLog, error)
}

// changePlan asks for events at Rate per second for Warmup then Duration.
type changePlan struct {
	Rate     float64       `json:"rate"`
	Warmup   time.Duration `json:"warmup"`
	Duration time.Duration `json:"duration"`
	Types    []string      `json:"types"`
}

// changeRecord is one event the simulator made.
type changeRecord struct {
	Type             string `json:"t"`
	ID               string `json:"i"`
	Version          int    `json:"v"`
	LastUpdatedNanos int64  `json:"u"`
	Warmup           bool   `json:"w,omitempty"`
}

// changeLog is what a change run made.
type changeLog struct {
	Changes []changeRecord `json:"changes"`
	// Other counts changes of types not in the plan.
	Other int `json:"other"`
	// MeasureStartNanos and EndNanos bound the measured period (unix ns).
	MeasureStartNanos int64 `json:"measureStart"`
	EndNanos          int64 `json:"end"`
	// MaxLagNanos is how far behind schedule an event was made at worst.
	MaxLagNanos int64 `json:"maxLag"`
	// CPUPercent is the making process's CPU over the measured period.
	CPUPercent float64 `json:"cpu"`
}

// driveChanges makes the plan's events: event i is due at start + i/Rate;
// each is the first change the generator makes of one of the plan's types
// (the changes of other types it makes on the way are counted in Other).
func driveChanges(ctx context.Context, s *sim.Sim, p changePlan) (*changeLog, error) {
	if p.Rate <= 0 || p.Duration <= 0 || len(p.Types) == 0 {
		return nil, errors.New("bench: a change plan needs a rate, a duration and types")
	}
	total := int(p.Rate * (p.Warmup + p.Duration).Seconds())
	warm := int(p.Rate * p.Warmup.Seconds())
	log := &changeLog{Changes: make([]changeRecord, 0, total)}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	start := time.Now()
	var cpu0 cpuTimes
	measureStart := start
	for i := 0; i < total; i++ {
		due := start.Add(time.Duration(float64(i) * float64(time.Second) / p.Rate))
		if i == warm {
			measureStart, cpu0 = due, processCPU()
		}
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-timer.C:
			}
		} else if lag := -wait; lag > time.Duration(log.MaxLagNanos) {
			log.MaxLagNanos = int64(lag)
		}
		rec, other, err := oneEvent(s, p.Types)
		log.Other += other
		if err != nil {
			return nil, err
		}
		rec.Warmup = i < warm
		log.Changes = append(log.Changes, rec)
	}
	end := start.Add(p.Warmup + p.Duration)
	if !sleepCtx(ctx, time.Until(end)) && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if warm >= total {
		measureStart, cpu0 = end, processCPU()
	}
	log.MeasureStartNanos, log.EndNanos = measureStart.UnixNano(), end.UnixNano()
	log.CPUPercent = cpuPercent(cpu0, processCPU(), end.Sub(measureStart))
	return log, nil
}

// oneEvent ticks the generator until it changes a resource of one of types
// and returns that change with its meta.lastUpdated.
func oneEvent(s *sim.Sim, types []string) (changeRecord, int, error) {
	other := 0
	for range 1000 {
		chs, err := s.Tick(Practice, 1)
		if err != nil {
			return changeRecord{}, other, fmt.Errorf("bench: simulator change: %w", err)
		}
		for _, c := range chs {
			if !slices.Contains(types, c.ResourceType) {
				other++
				continue
			}
			body, ok := s.Get(Practice, c.ResourceType, c.ID)
			if !ok {
				return changeRecord{}, other, fmt.Errorf("bench: the simulator lost the %s it just changed", c.ResourceType)
			}
			h, err := fhir.ParseHeader(body)
			if err != nil {
				return changeRecord{}, other, fmt.Errorf("bench: %w", err)
			}
			if h.VersionID != strconv.Itoa(c.Version) || h.LastUpdated.IsZero() {
				return changeRecord{}, other, fmt.Errorf("bench: a %s changed again under the benchmark (version %s, want %d)", c.ResourceType, h.VersionID, c.Version)
			}
			return changeRecord{Type: c.ResourceType, ID: c.ID, Version: c.Version, LastUpdatedNanos: h.LastUpdated.UnixNano()}, other, nil
		}
	}
	return changeRecord{}, other, fmt.Errorf("bench: the simulator made no change of %v in 1000 tries", types)
}

// localSource is the simulator in this process.
type localSource struct{ s *sim.Sim }

func (l localSource) subscriptions(context.Context) ([]sim.SubscriptionStatus, error) {
	return l.s.Subscriptions(Practice), nil
}

func (l localSource) changes(ctx context.Context, p changePlan) (*changeLog, error) {
	return driveChanges(ctx, l.s, p)
}

// rtCommand is one line the benchmark writes to a --realtime simulator process.
type rtCommand struct {
	Op   string      `json:"op"` // "subscriptions" or "changes"
	Plan *changePlan `json:"plan,omitempty"`
}

// rtReply is the simulator process's answer to one rtCommand.
type rtReply struct {
	Error         string                   `json:"error,omitempty"`
	Subscriptions []sim.SubscriptionStatus `json:"subscriptions,omitempty"`
	Log           *changeLog               `json:"log,omitempty"`
}

// childSource is the simulator process.
type childSource struct{ p *simProcess }

func (c *childSource) subscriptions(ctx context.Context) ([]sim.SubscriptionStatus, error) {
	rep, err := c.p.request(ctx, rtCommand{Op: "subscriptions"})
	if err != nil {
		return nil, err
	}
	return rep.Subscriptions, nil
}

func (c *childSource) changes(ctx context.Context, p changePlan) (*changeLog, error) {
	rep, err := c.p.request(ctx, rtCommand{Op: "changes", Plan: &p})
	if err != nil {
		return nil, err
	}
	if rep.Log == nil {
		return nil, errors.New("bench: the simulator process answered without a change log")
	}
	return rep.Log, nil
}

// request sends one command and reads its reply. The process is killed
// when the context it was started with ends, which ends the read.
func (p *simProcess) request(ctx context.Context, cmd rtCommand) (*rtReply, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("bench: the simulator process: %w%s", err, p.stderr.suffix())
	}
	line, err := p.stdout.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("bench: the simulator process's answer to %s: %w%s", cmd.Op, err, p.stderr.suffix())
	}
	var rep rtReply
	if err := json.Unmarshal(line, &rep); err != nil {
		return nil, fmt.Errorf("bench: the simulator process's answer to %s: %w", cmd.Op, err)
	}
	if rep.Error != "" {
		return nil, fmt.Errorf("bench: the simulator process: %s", rep.Error)
	}
	return &rep, nil
}

// serveRealtimeCommands answers rtCommands read from stdin, one reply line
// each, until stdin ends (nil) or ctx ends (its error). A change run in
// progress stops when stdin ends.
func serveRealtimeCommands(ctx context.Context, s *sim.Sim, stdin io.Reader, enc *json.Encoder) error {
	runCtx, eof := context.WithCancel(ctx)
	defer eof()
	lines := make(chan []byte)
	go func() {
		defer eof()
		rd := bufio.NewReader(stdin)
		for {
			line, err := rd.ReadBytes('\n')
			if len(bytes.TrimSpace(line)) > 0 {
				select {
				case lines <- line:
				case <-runCtx.Done():
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		var line []byte
		select {
		case <-runCtx.Done():
			if ctx.Err() != nil {
				if c, ok := stdin.(io.Closer); ok {
					_ = c.Close()
				}
				return ctx.Err()
			}
			return nil
		case line = <-lines:
		}
		var cmd rtCommand
		var rep rtReply
		if err := json.Unmarshal(line, &cmd); err != nil {
			rep.Error = "bad command: " + err.Error()
		} else {
			switch cmd.Op {
			case "subscriptions":
				rep.Subscriptions = s.Subscriptions(Practice)
			case "changes":
				if cmd.Plan == nil {
					rep.Error = "changes: no plan"
					break
				}
				log, err := driveChanges(runCtx, s, *cmd.Plan)
				if err != nil {
					if runCtx.Err() != nil && ctx.Err() == nil {
						return nil // stdin ended during the run
					}
					rep.Error = err.Error()
				}
				rep.Log = log
			default:
				rep.Error = fmt.Sprintf("unknown command %q", cmd.Op)
			}
		}
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("bench sim-source: %w", err)
		}
	}
}

// realtimeSortedTypes lists a count map's keys in order.
func realtimeSortedTypes(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
