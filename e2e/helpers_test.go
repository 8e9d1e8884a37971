// Package e2e holds mediflow's end-to-end tests: the engine, configured from a
// YAML file exactly as a user would write it, syncing from the built-in EHR
// simulator over real HTTP on loopback (SMART backend-services auth, real
// JWT signatures, fault injection), into a real SQLite store, read back
// through the app-facing API.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/dataclass"
	"github.com/mediflow/mediflow/internal/engine"
	"github.com/mediflow/mediflow/internal/mapping"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/smart"
	"github.com/mediflow/mediflow/internal/smart/authserver"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/profiles"
)

// e2eConnection is the connection name every test practice uses.
const e2eConnection = "ehr"

// e2eTrigger marks the sync runs the tests start.
const e2eTrigger = "e2e"

// practiceSpec describes one simulated practice and how the engine connects to it.
type practiceSpec struct {
	id       string
	flavor   string // "generic" or "epic"
	patients int    // synthetic patients (small: the tests must stay fast)
	seed     uint64
	pageSize int      // the connection's page_size (0: 25, so every type spans pages)
	classes  []string // data classes to sync (nil: every class)
	// realtime lists classes kept fresh by FHIR Subscriptions (mode
	// realtime, a 10-minute safety poll); topics are the subscriptions'
	// (topic URL → its types), sent with full-resource payloads.
	realtime []string
	topics   map[string][]string
	// interval is the poll interval of the other classes (0: 1m).
	interval time.Duration
	// nightly lists classes read by Bulk Data export (mode nightly).
	nightly []string
}

func (p practiceSpec) withDefaults() practiceSpec {
	if p.flavor == "" {
		p.flavor = "generic"
	}
	if p.patients == 0 {
		p.patients = 12
	}
	if p.seed == 0 {
		p.seed = 7
	}
	if p.pageSize == 0 {
		p.pageSize = 25
	}
	if p.classes == nil {
		p.classes = dataclass.Names()
	}
	return p
}

// algorithm is the signing algorithm of the practice's key: RS384 for
// generic and ES384 for epic, so both are exercised end to end.
func (p practiceSpec) algorithm() string {
	if p.flavor == "epic" {
		return smart.AlgES384
	}
	return smart.AlgRS384
}

// syncedTypes are the resource types the practice's classes name and its
// simulator serves: what the engine's store must end up holding.
func (p practiceSpec) syncedTypes(s *sim.Sim) []string {
	served := s.ResourceTypes(p.id)
	var out []string
	for _, c := range p.classes {
		cl, ok := dataclass.Lookup(c)
		if !ok {
			continue
		}
		for _, rt := range cl.ResourceTypes {
			if slices.Contains(served, rt) && !slices.Contains(out, rt) {
				out = append(out, rt)
			}
		}
	}
	sort.Strings(out)
	return out
}

// testData is the synthetic data set of a test practice: a short schedule
// window and hour-long slots keep it to a few hundred resources that still
// span several pages of every busy type.
func testData(patients int) *gen.Options {
	return &gen.Options{Patients: patients, PastDays: 7, FutureDays: 7, SlotMinutes: 60}
}

// world is one test's universe: a running simulator, keys registered with its
// authorization servers, an API key, and a configuration file in a temporary
// folder that engines are built from.
type world struct {
	t         *testing.T
	ctx       context.Context
	sim       *sim.Sim
	dir       string
	cfgPath   string
	apiKey    string
	otherKey  string // an app allowed only the first practice
	practices []practiceSpec
	logs      *logBuffer

	setsMu gosync.Mutex
	sets   map[string]*mapping.Set // vendor → the shipped mapping profile
}

// newWorld starts a simulator with the practices and writes the engine's
// configuration for them. Everything stops when the test ends.
func newWorld(t *testing.T, specs ...practiceSpec) *world {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &world{t: t, ctx: ctx, dir: t.TempDir(), logs: &logBuffer{}}
	tenants := make([]sim.TenantConfig, 0, len(specs))
	for _, sp := range specs {
		sp = sp.withDefaults()
		w.practices = append(w.practices, sp)
		tenants = append(tenants, sim.TenantConfig{ID: sp.id, Flavor: sp.flavor, Seed: sp.seed, Data: testData(sp.patients)})
	}
	s, err := sim.New(sim.Config{Tenants: tenants})
	if err != nil {
		cancel()
		t.Fatalf("simulator: %v", err)
	}
	if _, err := s.Start(ctx, "127.0.0.1:0"); err != nil {
		cancel()
		t.Fatalf("simulator: %v", err)
	}
	w.sim = s
	t.Cleanup(func() {
		cancel()
		s.Wait()
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("engine log (last 8 KiB):\n%s", w.logs.tail(8<<10))
		}
	})

	keyDir := filepath.Join(w.dir, "keys")
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, sp := range w.practices {
		key, err := smart.GenerateKey(sp.algorithm())
		if err != nil {
			t.Fatal(err)
		}
		pemBytes, err := smart.EncodePrivateKeyPEM(key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(keyDir, sp.id+".key.pem"), pemBytes, 0o600); err != nil {
			t.Fatal(err)
		}
		jwks, err := smart.PublicJWKS(key)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.RegisterClient(sp.id, authserver.Client{ID: "mediflow-" + sp.id, JWKS: jwks, Scopes: sp.scopes(s.ResourceTypes(sp.id))}); err != nil {
			t.Fatal(err)
		}
	}
	w.apiKey = "e2e-app-key-" + strings.Repeat("a1", 12)
	w.otherKey = "e2e-other-key-" + strings.Repeat("b2", 12)
	for name, key := range map[string]string{"app.key": w.apiKey, "other.key": w.otherKey, "store.key": strings.Repeat("5e", 32)} {
		if err := os.WriteFile(filepath.Join(w.dir, name), []byte(key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w.cfgPath = filepath.Join(w.dir, "mediflow.yaml")
	if err := os.WriteFile(w.cfgPath, []byte(w.configYAML()), 0o600); err != nil {
		t.Fatal(err)
	}
	return w
}

// readScopes are SMART v2 read/search system scopes for the types.
func readScopes(types []string) []string {
	out := make([]string, 0, len(types))
	for _, rt := range types {
		out = append(out, "system/"+rt+".rs")
	}
	return out
}

// scopes are what the practice's client may ask for: read and search of
// the types, and managing Subscriptions when it subscribes.
func (p practiceSpec) scopes(types []string) []string {
	out := readScopes(types)
	if len(p.topics) > 0 {
		out = append(out, "system/Subscription.cruds")
	}
	return out
}

// configYAML is the configuration a user would write for the world's practices.
func (w *world) configYAML() string {
	var b strings.Builder
	b.WriteString("server:\n  listen: 127.0.0.1:0\nstore:\n  driver: sqlite\n  path: mediflow.db\n  secret_key: {file: store.key}\nlog:\n  level: debug\n  format: json\n")
	b.WriteString("practices:\n")
	for _, sp := range w.practices {
		fmt.Fprintf(&b, "  - id: %s\n    name: Practice %s\n    connections:\n", sp.id, sp.id)
		fmt.Fprintf(&b, "      - name: %s\n        vendor: %s\n        base_url: %s\n", e2eConnection, sp.flavor, w.sim.BaseURL(sp.id))
		fmt.Fprintf(&b, "        timeout: 5s\n        page_size: %d\n", sp.pageSize)
		fmt.Fprintf(&b, "        auth:\n          type: smart-backend\n          client_id: mediflow-%s\n", sp.id)
		fmt.Fprintf(&b, "          private_key: {file: keys/%s.key.pem}\n          algorithm: %s\n", sp.id, sp.algorithm())
		if len(sp.topics) > 0 {
			fmt.Fprintf(&b, "          scopes: [%s]\n", strings.Join(sp.scopes(w.sim.ResourceTypes(sp.id)), ", "))
		}
		b.WriteString("        sync:\n")
		for _, c := range sp.classes {
			if slices.Contains(sp.nightly, c) {
				fmt.Fprintf(&b, "          - class: %s\n            mode: nightly\n", c)
				continue
			}
			if slices.Contains(sp.realtime, c) {
				fmt.Fprintf(&b, "          - class: %s\n            mode: realtime\n            interval: 10m\n", c)
				continue
			}
			interval := sp.interval
			if interval == 0 {
				interval = time.Minute
			}
			fmt.Fprintf(&b, "          - class: %s\n            interval: %s\n", c, interval)
		}
		if len(sp.topics) > 0 {
			b.WriteString("        subscriptions:\n")
			topics := slices.Sorted(maps.Keys(sp.topics))
			for _, topic := range topics {
				fmt.Fprintf(&b, "          - topic: %s\n            types: [%s]\n            payload: full-resource\n            heartbeat: 2s\n",
					topic, strings.Join(sp.topics[topic], ", "))
			}
		}
	}
	b.WriteString("apps:\n  - name: demo-app\n    key: {file: app.key}\n    practices: [\"*\"]\n")
	fmt.Fprintf(&b, "  - name: other-app\n    key: {file: other.key}\n    practices: [%s]\n", w.practices[0].id)
	return b.String()
}

// engineOptions adjust one engine of a world.
type engineOptions struct {
	transport http.RoundTripper // wraps outbound EHR requests (nil: a plain transport)
	// startWindow spreads the scheduler's first runs (0: 200ms, so a
	// running engine loads everything at once in tests).
	startWindow time.Duration
	logger      *slog.Logger // nil: debug JSON into the world's log buffer
}

// newEngine loads the world's configuration file and builds an engine from
// it, on the store file in the world's folder. The engine is closed when the
// test ends (closing twice is harmless).
func (w *world) newEngine(o engineOptions) *engine.Engine {
	w.t.Helper()
	cfg, err := config.Load(w.cfgPath, func(string) string { return "" })
	if err != nil {
		w.t.Fatalf("loading %s: %v\n%s", w.cfgPath, err, w.configYAML())
	}
	log := o.logger
	if log == nil {
		log = obs.NewLogger(w.logs, slog.LevelDebug, "json")
	}
	opts := engine.Options{Logger: log, Getenv: func(string) string { return "" }, StartWindow: o.startWindow,
		BulkMaxPoll: 20 * time.Millisecond}
	if opts.StartWindow == 0 {
		opts.StartWindow = 200 * time.Millisecond
	}
	if o.transport != nil {
		opts.HTTPClient = &http.Client{Transport: o.transport}
	}
	eng, err := engine.New(w.ctx, cfg, opts)
	if err != nil {
		w.t.Fatalf("engine: %v", err)
	}
	w.t.Cleanup(func() { _ = eng.Close() })
	return eng
}

// syncOutcome is what one SyncAll did, per practice.
type syncOutcome struct {
	err   error
	runs  map[string][]store.Run                 // practice → the runs SyncAll made, oldest first
	stats map[string]map[string]*store.TypeStats // practice → type → stats summed over those runs
	seq   map[string]int64                       // practice → change-feed position before the sync
}

// syncAll runs every configured sync once and gathers the runs it recorded.
func (w *world) syncAll(ctx context.Context, eng *engine.Engine) syncOutcome {
	w.t.Helper()
	st := eng.Store()
	before := map[string]int64{}
	out := syncOutcome{runs: map[string][]store.Run{}, stats: map[string]map[string]*store.TypeStats{}, seq: map[string]int64{}}
	for _, sp := range w.practices {
		before[sp.id] = lastRunID(w.t, st, sp.id)
		out.seq[sp.id] = latestSeq(w.t, st, sp.id)
	}
	out.err = eng.SyncAll(ctx, e2eTrigger)
	for _, sp := range w.practices {
		runs, err := st.ListRuns(context.Background(), sp.id, "", 1000)
		if err != nil {
			w.t.Fatalf("listing runs of %s: %v", sp.id, err)
		}
		stats := map[string]*store.TypeStats{}
		for i := len(runs) - 1; i >= 0; i-- {
			r := runs[i]
			if r.ID <= before[sp.id] {
				continue
			}
			out.runs[sp.id] = append(out.runs[sp.id], r)
			for rt, ts := range r.Stats {
				agg := stats[rt]
				if agg == nil {
					agg = &store.TypeStats{}
					stats[rt] = agg
				}
				agg.Fetched += ts.Fetched
				agg.New += ts.New
				agg.Changed += ts.Changed
				agg.Unchanged += ts.Unchanged
				agg.Failed += ts.Failed
				agg.Pages += ts.Pages
				agg.Failures = append(agg.Failures, ts.Failures...)
			}
		}
		out.stats[sp.id] = stats
	}
	return out
}

func lastRunID(t *testing.T, st store.Store, practice string) int64 {
	t.Helper()
	runs, err := st.ListRuns(context.Background(), practice, "", 1)
	if err != nil {
		t.Fatalf("listing runs of %s: %v", practice, err)
	}
	if len(runs) == 0 {
		return 0
	}
	return runs[0].ID
}

// latestSeq is the change-feed position of a practice's newest change.
func latestSeq(t *testing.T, st store.Store, practice string) int64 {
	t.Helper()
	var since int64
	for {
		chs, err := st.Changes(context.Background(), practice, since, 1000)
		if err != nil {
			t.Fatalf("change feed of %s: %v", practice, err)
		}
		for _, c := range chs {
			since = max(since, c.Seq)
		}
		if len(chs) < 1000 {
			return since
		}
	}
}

// requireSucceeded fails unless SyncAll's runs all succeeded. A type the
// practice's EHR does not serve at all (Epic has no R4 Schedule or Slot, yet
// the scheduling class names them) must not be asked for: the engine reads
// the CapabilityStatement and leaves such types out of the run.
func (w *world) requireSucceeded(o syncOutcome) {
	w.t.Helper()
	if o.err != nil {
		w.t.Fatalf("sync: %v", o.err)
	}
	for _, sp := range w.practices {
		if len(o.runs[sp.id]) != len(sp.classes) {
			w.t.Fatalf("%s: %d runs recorded, want one per class (%d); sync error: %v", sp.id, len(o.runs[sp.id]), len(sp.classes), o.err)
		}
		served := w.sim.ResourceTypes(sp.id)
		for _, r := range o.runs[sp.id] {
			if r.FinishedAt.IsZero() {
				w.t.Fatalf("%s run %d has no finish time", sp.id, r.ID)
			}
			if r.Status != store.RunSucceeded || r.Error != "" {
				w.t.Fatalf("%s run %d: status %q error %q, want succeeded", sp.id, r.ID, r.Status, r.Error)
			}
			for rt := range r.Stats {
				if !slices.Contains(served, rt) {
					w.t.Errorf("%s run %d synced %s, which the EHR does not serve: the engine should have skipped it", sp.id, r.ID, rt)
				}
			}
		}
	}
}

// wantFirstSync checks the stats of a sync into an empty store: every source
// resource fetched once and new, nothing else.
func (w *world) wantFirstSync(o syncOutcome) {
	w.t.Helper()
	for _, sp := range w.practices {
		for _, rt := range sp.syncedTypes(w.sim) {
			n := len(w.sim.Current(sp.id, rt))
			ts := o.stats[sp.id][rt]
			if ts == nil {
				w.t.Errorf("%s %s: no stats recorded", sp.id, rt)
				continue
			}
			if ts.Fetched != n || ts.New != n || ts.Changed != 0 || ts.Unchanged != 0 || ts.Failed != 0 || len(ts.Failures) != 0 {
				w.t.Errorf("%s %s: fetched/new/changed/unchanged/failed = %d/%d/%d/%d/%d (failures %q), want %d/%d/0/0/0",
					sp.id, rt, ts.Fetched, ts.New, ts.Changed, ts.Unchanged, ts.Failed, ts.Failures, n, n)
			}
			if n > sp.pageSize && ts.Pages < 2 {
				w.t.Errorf("%s %s: %d resources in %d pages with page size %d", sp.id, rt, n, ts.Pages, sp.pageSize)
			}
		}
	}
}

// requireIdentical fails unless the engine's store holds exactly the
// simulator's current resources of every synced type (the same ids and
// byte-equal bodies) and nothing of any other type.
func (w *world) requireIdentical(st store.Store) {
	w.t.Helper()
	for _, sp := range w.practices {
		counts, err := st.CountResources(context.Background(), sp.id)
		if err != nil {
			w.t.Fatalf("counting %s: %v", sp.id, err)
		}
		types := sp.syncedTypes(w.sim)
		for rt, n := range counts {
			if n > 0 && !slices.Contains(types, rt) {
				w.t.Errorf("%s: store holds %d %s, a type the source does not serve to this connection", sp.id, n, rt)
			}
		}
		w.requireTypesIdentical(st, sp.id, types)
	}
}

// mappingSet is the shipped mapping profile of the practice's vendor, loaded
// by the test itself (not taken from the engine), as the engine must run it.
func (w *world) mappingSet(practice string) *mapping.Set {
	w.t.Helper()
	vendor := ""
	for _, sp := range w.practices {
		if sp.id == practice {
			vendor = sp.flavor
		}
	}
	w.setsMu.Lock()
	defer w.setsMu.Unlock()
	if s := w.sets[vendor]; s != nil {
		return s
	}
	s, err := mapping.Load(profiles.FS, vendor, "")
	if err != nil {
		w.t.Fatalf("loading the %s mapping profile: %v", vendor, err)
	}
	if w.sets == nil {
		w.sets = map[string]*mapping.Set{}
	}
	w.sets[vendor] = s
	return s
}

// mapsType reports whether the engine maps resources of rt for the
// practice: its Set has rules of its own for the type (other types are
// stored as received; see engine.Mapper.Map).
func (w *world) mapsType(practice, rt string) bool {
	return slices.Contains(w.mappingSet(practice).ResourceTypes(), rt)
}

// canonical is the simulator's current resources of rt mapped through the
// practice's mapping profile: what the engine's store must hold.
func (w *world) canonical(practice, rt string) map[string][]byte {
	w.t.Helper()
	src := w.sim.Current(practice, rt)
	if !w.mapsType(practice, rt) {
		return src
	}
	set := w.mappingSet(practice)
	out := make(map[string][]byte, len(src))
	for id, body := range src {
		m, _, err := set.Map(context.Background(), body, mapping.MapOptions{})
		if err != nil {
			w.t.Fatalf("%s/%s: the source resource cannot be mapped: %v", rt, id, err)
		}
		out[id] = m
	}
	return out
}

// hasProfileTag reports whether a resource's meta.tag records the mapping
// profile version.
func hasProfileTag(body []byte, version string) bool {
	var r struct {
		Meta struct {
			Tag []struct{ System, Code string } `json:"tag"`
		} `json:"meta"`
	}
	if json.Unmarshal(body, &r) != nil {
		return false
	}
	for _, t := range r.Meta.Tag {
		if t.System == mapping.ProfileTagSystem && t.Code == version {
			return true
		}
	}
	return false
}

// requireTypesIdentical fails unless, for each of the types, the store holds
// exactly the simulator's current resources mapped through the practice's
// mapping profile (same ids, byte-equal bodies), every mapped resource
// records the profile version in meta.tag, and every resource's raw page
// holds the resource exactly as the simulator serves it.
func (w *world) requireTypesIdentical(st store.Store, practice string, types []string) {
	w.t.Helper()
	ctx := context.Background()
	counts, err := st.CountResources(ctx, practice)
	if err != nil {
		w.t.Fatalf("counting %s: %v", practice, err)
	}
	version := w.mappingSet(practice).Version()
	raws := map[int64][]byte{}
	rawOf := func(id int64) []byte {
		if b, ok := raws[id]; ok {
			return b
		}
		p, err := st.GetRaw(ctx, practice, id)
		if err != nil {
			w.t.Fatalf("raw payload %d of %s: %v", id, practice, err)
		}
		raws[id] = p.Body
		return p.Body
	}
	total, tagged := 0, 0
	var problems []string
	for _, rt := range types {
		source := w.sim.Current(practice, rt)
		want := w.canonical(practice, rt)
		mapped := w.mapsType(practice, rt)
		total += len(want)
		if counts[rt] != len(want) {
			problems = append(problems, fmt.Sprintf("%s: store has %d, source %d", rt, counts[rt], len(want)))
		}
		ids := make([]string, 0, len(want))
		for id := range want {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			got, err := st.GetResource(ctx, practice, rt, id)
			switch {
			case err != nil:
				problems = append(problems, fmt.Sprintf("%s/%s: %v", rt, id, err))
			case got.Deleted:
				problems = append(problems, fmt.Sprintf("%s/%s: deleted in the store", rt, id))
			case !bytes.Equal(got.Body, want[id]):
				problems = append(problems, fmt.Sprintf("%s/%s: body differs from the mapped source (store %d bytes, want %d)", rt, id, len(got.Body), len(want[id])))
			case mapped && !hasProfileTag(got.Body, version):
				problems = append(problems, fmt.Sprintf("%s/%s: no meta.tag %s|%s", rt, id, mapping.ProfileTagSystem, version))
			case got.RawID == 0 || !bytes.Contains(rawOf(got.RawID), source[id]):
				problems = append(problems, fmt.Sprintf("%s/%s: raw payload %d does not hold the resource as the source served it", rt, id, got.RawID))
			default:
				if mapped {
					tagged++
				}
			}
		}
	}
	if total == 0 {
		w.t.Fatalf("%s: the source has no resources of %v: the comparison proves nothing", practice, types)
	}
	if slices.Contains(types, "Patient") && tagged == 0 && len(problems) == 0 {
		// Patient always has rules: a run where none was mapped proves nothing.
		w.t.Fatalf("%s: no Patient carries the profile tag", practice)
	}
	if len(problems) > 0 {
		if len(problems) > 10 {
			problems = append(problems[:10], fmt.Sprintf("... and %d more", len(problems)-10))
		}
		w.t.Fatalf("%s: store differs from the source:\n  %s", practice, strings.Join(problems, "\n  "))
	}
}

// serveAPI serves the engine's app-facing handler on loopback and returns its URL.
func serveAPI(t *testing.T, eng *engine.Engine) string {
	t.Helper()
	srv := httptest.NewServer(eng.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// getJSON GETs url with an API key and decodes a 200 answer into v,
// returning the status.
func getJSON(t *testing.T, hc *http.Client, rawURL, key string, v any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	if resp.StatusCode == http.StatusOK && v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v", rawURL, err)
		}
	}
	return resp.StatusCode
}

// changeFeed reads a practice's change feed through the API from cursor
// since to its end and returns "Type/id" of every change.
func changeFeed(t *testing.T, hc *http.Client, apiURL, key, practice string, since int64) []string {
	t.Helper()
	var out []string
	cursor := fmt.Sprint(since)
	for range 1000 {
		var page struct {
			Changes []struct {
				ResourceType string `json:"resourceType"`
				ID           string `json:"id"`
			} `json:"changes"`
			NextCursor string `json:"next_cursor"`
			HasMore    bool   `json:"has_more"`
		}
		u := apiURL + "/v1/practices/" + url.PathEscape(practice) + "/changes?limit=50&since=" + url.QueryEscape(cursor)
		if code := getJSON(t, hc, u, key, &page); code != http.StatusOK {
			t.Fatalf("change feed: status %d", code)
		}
		for _, c := range page.Changes {
			out = append(out, c.ResourceType+"/"+c.ID)
		}
		if !page.HasMore {
			return out
		}
		cursor = page.NextCursor
	}
	t.Fatal("change feed did not end")
	return nil
}

// logBuffer collects an engine's log lines; safe for concurrent writers.
type logBuffer struct {
	mu  gosync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) tail(n int) string {
	s := b.String()
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// requestLog is an http.RoundTripper that records the outbound EHR requests
// (URL, timing, status) and can run a hook before each one, e.g. to cancel a
// sync mid-way.
type requestLog struct {
	next  http.RoundTripper
	mu    gosync.Mutex
	calls []call
	hook  func(u *url.URL) // called before the request is sent
}

func newRequestLog() *requestLog {
	return &requestLog{next: http.DefaultTransport.(*http.Transport).Clone()}
}

func (l *requestLog) RoundTrip(req *http.Request) (*http.Response, error) {
	l.mu.Lock()
	hook := l.hook
	l.mu.Unlock()
	if hook != nil {
		hook(req.URL)
	}
	c := call{url: req.URL.String(), sent: time.Now()}
	resp, err := l.next.RoundTrip(req)
	c.done = time.Now()
	if err == nil {
		c.status = resp.StatusCode
		c.retryAfter = resp.Header.Get("Retry-After")
	}
	l.mu.Lock()
	l.calls = append(l.calls, c)
	l.mu.Unlock()
	return resp, err
}

// searches returns the recorded search requests (first pages and next
// pages) for a resource type, in order.
func (l *requestLog) searches(baseURL, resourceType string) []string {
	prefix := baseURL + "/" + resourceType
	var out []string
	for _, c := range l.all() {
		if c.url == prefix || strings.HasPrefix(c.url, prefix+"?") {
			out = append(out, c.url)
		}
	}
	return out
}

// isNextPage reports whether a recorded search URL follows a next link
// (the simulator's page token) rather than starting a search.
func isNextPage(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Query().Get("_page") != ""
}

// withTimeout is a context for one sync, bounded so a hung test fails
// instead of stalling the package.
func withTimeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
