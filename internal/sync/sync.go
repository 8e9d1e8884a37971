// Package sync pulls FHIR resources from a connection into the store by
// polling: incremental _lastUpdated searches with an overlap window, raw
// pages stored before anything is parsed, de-duplication by content hash,
// resumable cursors committed after every page, and per-type run statistics
// (fetched / new / changed / unchanged / failed with reasons). It also holds
// the small Scheduler that runs sync jobs at intervals.
package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	gosync "sync"
	"time"

	"github.com/mediflow/mediflow/internal/connector/fhirrest"
	"github.com/mediflow/mediflow/internal/dataclass"
	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/vendors"
	"github.com/mediflow/mediflow/internal/vendors/profile"
)

// RawSource is the RawPayload.Source of pages fetched by this package.
const RawSource = "fhir-rest"

// DefaultOverlap is how far before the watermark an incremental search starts.
const DefaultOverlap = 2 * time.Minute

// maxRestarts bounds how often one type's search is restarted after its
// paging session expired within one run.
const maxRestarts = 3

// maxFailureReasons bounds the reasons kept per type and run; the count in
// TypeStats.Failed is always complete.
const maxFailureReasons = 100

// Source is one connection to sync: where to read and what.
type Source struct {
	Practice, Connection string
	Client               *fhirrest.Client
	// Profile decides page sizes and search parameters (default: the client's).
	Profile       vendors.Profile
	ResourceTypes []string
	// Overlap is subtracted from the watermark of incremental searches
	// (0: DefaultOverlap; negative: none).
	Overlap time.Duration
	// PageSize is the _count to ask for (0: the profile's default; always
	// capped at the profile's maximum).
	PageSize int
	// Reconcile makes the run a reconciliation sweep (see reconcile.go):
	// every resource of each type is read, not only those changed since
	// the watermark, and records the EHR no longer holds become tombstones.
	Reconcile bool
	// PatientConcurrency bounds the per-patient searches in flight at once
	// for types the profile searches per patient (see fanout.go; 0:
	// DefaultPatientConcurrency).
	PatientConcurrency int
}

// Hooks receive progress, e.g. for metrics. Nil hooks are skipped.
type Hooks struct {
	// Page is called after each committed page with the number of resources
	// it held and the time from the start of its fetch to its commit.
	Page func(practice, connection, resourceType string, resources int, d time.Duration)
	// Run is called once a run has finished, with its final record.
	Run func(store.Run)
}

// Store is what a sync needs of the store: raw payloads, resources,
// cursors, run records and capabilities (and audit, for what it reads).
type Store interface {
	store.RawStore
	store.ResourceStore
	store.CursorStore
	store.RunStore
	store.CapabilityStore
	store.AuditStore
}

// Mapper turns a resource as the EHR sent it into mediflow's canonical
// model (package mapping, wired by the engine). An error means this
// resource cannot be mapped: it is counted as failed, with the error as its
// reason, and the rest of the page goes on. Errors must not quote the
// resource's values.
type Mapper interface {
	Map(ctx context.Context, practice, connection, resourceType string, body []byte) ([]byte, error)
}

// IssueMapper is a Mapper that also says what went wrong per element of a
// resource it mapped: one "<rule id>: <kind>" entry per occurrence, kind
// failed, required-empty or unmapped-code (rule ids only, never values). When
// Syncer.Mapper implements it, each run counts the issues per type in
// TypeStats.MappingIssues. Issues come with a mapping error too (the code
// that made the resource fail, for instance).
type IssueMapper interface {
	Mapper
	MapWithIssues(ctx context.Context, practice, connection, resourceType string, body []byte) ([]byte, []string, error)
}

// Syncer runs syncs into Store. It holds no per-run state and is safe for
// concurrent use on different connections; one connection must not be synced
// by two runs at the same time (the Scheduler guarantees it per job).
type Syncer struct {
	Store  Store
	Logger *slog.Logger
	Hooks  Hooks
	Now    func() time.Time
	// Mapper, when set, maps every resource after its raw page is stored
	// and before it is written: raw payloads keep exactly what the EHR
	// sent, the resource store holds the canonical resources (and their
	// content hashes are of the canonical form). Nil: resources are stored
	// as received.
	Mapper Mapper
	// Freshness, when set, observes the lag of every change an incremental
	// run stores: from the resource's meta.lastUpdated at the EHR to the
	// moment it was readable in the store. First loads are not observed.
	Freshness FreshnessObserver
}

// FreshnessObserver receives the lag of each stored change, per practice
// and data class (package freshness implements it).
type FreshnessObserver interface {
	Observe(practice, class string, changedAt, readableAt time.Time)
}

func (s *Syncer) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Syncer) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Run syncs every resource type of src once and records the run. It returns
// the final run record; the error is non-nil when the run failed as a whole
// (it could not start, was cancelled, or every type failed). A run where only
// some types or resources failed ends "partial" with a nil error.
func (s *Syncer) Run(ctx context.Context, src Source, trigger string) (store.Run, error) {
	if src.Client == nil {
		return store.Run{}, errors.New("sync: source has no client")
	}
	if src.Profile == nil {
		src.Profile = src.Client.Profile()
	}
	switch {
	case src.Overlap == 0:
		src.Overlap = DefaultOverlap
	case src.Overlap < 0:
		src.Overlap = 0
	}
	types := byScope(uniq(src.ResourceTypes), src.Profile)
	run := store.Run{
		Practice: src.Practice, Connection: src.Connection, Trigger: trigger,
		Status: store.RunRunning, StartedAt: s.now(), Stats: make(map[string]*store.TypeStats, len(types)),
	}
	for _, rt := range types {
		run.Stats[rt] = &store.TypeStats{}
	}
	id, err := s.Store.StartRun(ctx, run)
	if err != nil {
		return run, fmt.Errorf("sync %s/%s: starting the run record: %w", src.Practice, src.Connection, err)
	}
	run.ID = id
	log := s.logger().With(slog.String("practice", src.Practice), slog.String("connection", src.Connection), slog.Int64("run", id))
	log.LogAttrs(ctx, slog.LevelInfo, "sync run started", slog.String("trigger", trigger), slog.Int("types", len(types)))

	var typeErrs []string
	var runErr error
	for _, rt := range types {
		ts := run.Stats[rt]
		err := s.syncType(ctx, &run, src, rt, ts, log)
		if ctx.Err() != nil {
			runErr = ctx.Err()
			break
		}
		if err != nil {
			reason := rt + ": " + err.Error()
			typeErrs = append(typeErrs, reason)
			addFailure(ts, "search failed: "+err.Error())
			log.LogAttrs(ctx, slog.LevelWarn, "sync of a resource type failed", slog.String("type", rt), slog.String("error", err.Error()))
		}
	}

	run.FinishedAt = s.now()
	failed := 0
	for _, ts := range run.Stats {
		failed += ts.Failed
	}
	switch {
	case runErr != nil:
		run.Status = store.RunFailed
		run.Error = "cancelled: " + runErr.Error()
		runErr = fmt.Errorf("sync %s/%s: %w", src.Practice, src.Connection, runErr)
	case len(types) > 0 && len(typeErrs) == len(types):
		run.Status = store.RunFailed
		run.Error = clip(strings.Join(typeErrs, "; "), 4000)
		runErr = fmt.Errorf("sync %s/%s: every resource type failed: %s", src.Practice, src.Connection, run.Error)
	case len(typeErrs) > 0 || failed > 0:
		run.Status = store.RunPartial
		run.Error = clip(strings.Join(typeErrs, "; "), 4000)
		if run.Error == "" {
			run.Error = fmt.Sprintf("%d resources failed", failed)
		}
	default:
		run.Status = store.RunSucceeded
	}
	// Record the end even when ctx was cancelled.
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.Store.UpdateRun(uctx, run); err != nil {
		log.LogAttrs(ctx, slog.LevelError, "recording the end of a sync run failed", slog.String("error", err.Error()))
		if runErr == nil {
			runErr = fmt.Errorf("sync %s/%s: recording the run: %w", src.Practice, src.Connection, err)
		}
	}
	log.LogAttrs(ctx, slog.LevelInfo, "sync run finished", slog.String("status", run.Status),
		slog.Duration("took", run.FinishedAt.Sub(run.StartedAt)), slog.Int("failed_resources", failed), slog.Int("failed_types", len(typeErrs)))
	if s.Hooks.Run != nil {
		s.Hooks.Run(run)
	}
	return run, runErr
}

// FetchCapabilities fetches the connection's CapabilityStatement and stores
// it with its FHIR version and software name and version.
func (s *Syncer) FetchCapabilities(ctx context.Context, src Source) error {
	if src.Client == nil {
		return errors.New("sync: source has no client")
	}
	res, err := src.Client.Capabilities(ctx)
	if err != nil {
		return fmt.Errorf("sync %s/%s: fetching the CapabilityStatement: %w", src.Practice, src.Connection, err)
	}
	var cs struct {
		FHIRVersion string `json:"fhirVersion"`
		Software    struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"software"`
	}
	if err := json.Unmarshal(res.Body, &cs); err != nil {
		return fmt.Errorf("sync %s/%s: reading the CapabilityStatement: %w", src.Practice, src.Connection, err)
	}
	c := store.Capability{
		Practice: src.Practice, Connection: src.Connection, FetchedAt: res.FetchedAt,
		FHIRVersion: cs.FHIRVersion, Software: strings.TrimSpace(cs.Software.Name + " " + cs.Software.Version),
		Body: res.Body,
	}
	if err := s.Store.PutCapability(ctx, c); err != nil {
		return fmt.Errorf("sync %s/%s: storing the CapabilityStatement: %w", src.Practice, src.Connection, err)
	}
	return nil
}

// typeRun is the state of one resource type's sync within one run.
type typeRun struct {
	src    Source
	rt     string
	run    *store.Run
	ts     *store.TypeStats
	cursor store.Cursor
	// candidate is the watermark this run will commit when the type's
	// search completes: the highest meta.lastUpdated seen, capped by the
	// server's clock at the start of the search (so changes made while paging
	// are picked up by the next run).
	candidate time.Time
	seed      maphash.Seed
	seen      map[uint64]uint64 // hash(id) → hash(body) of resources seen this run
	pages     int
	omitted   int
	// fromStart: the search began at its first page in this run (not
	// resumed from a saved page link), so seen holds every id it returned.
	fromStart bool
	class     string // the data class of rt, for freshness

	// Per-patient fan-out (fanout.go): pages of several patients' searches
	// are committed under mu; no page link is saved (progress is per
	// patient); maxLU is the highest meta.lastUpdated seen and fanCap the
	// earliest server clock at the start of any patient's search.
	fanout bool
	mu     gosync.Mutex
	maxLU  time.Time
	fanCap time.Time
}

func (s *Syncer) syncType(ctx context.Context, run *store.Run, src Source, rt string, ts *store.TypeStats, log *slog.Logger) error {
	switch src.Profile.SearchScope(rt) {
	case profile.PerPatient:
		return s.syncPerPatient(ctx, run, src, rt, ts, log)
	case profile.NotSearchable:
		addFailure(ts, "skipped: the "+src.Profile.Name()+" profile has no search that lists "+rt)
		log.LogAttrs(ctx, slog.LevelInfo, "resource type not searchable at this vendor: skipped", slog.String("type", rt))
		return nil
	}
	cur, err := s.Store.GetCursor(ctx, src.Practice, src.Connection, rt)
	if err != nil {
		return fmt.Errorf("reading the cursor: %w", err)
	}
	t := &typeRun{src: src, rt: rt, run: run, ts: ts, cursor: cur, seed: maphash.MakeSeed(), seen: make(map[uint64]uint64)}
	start := ""
	if cur.PageURL != "" && !src.Reconcile {
		if src.Client.SameOrigin(cur.PageURL) {
			start = cur.PageURL
			t.candidate = cur.RunStart
			log.LogAttrs(ctx, slog.LevelInfo, "resuming an interrupted search", slog.String("type", rt), slog.Int64("from_run", cur.RunID))
		} else {
			log.LogAttrs(ctx, slog.LevelWarn, "saved page link is not on this server: restarting the search", slog.String("type", rt))
		}
	}
	if cl, ok := dataclass.ForResourceType(rt); ok {
		t.class = cl.Name
	}
	for restarts := 0; ; restarts++ {
		t.fromStart = t.fromStart || start == ""
		err := s.pages(ctx, t, start, nil, log)
		if err == nil {
			break
		}
		if fhirrest.KindOf(err) == profile.KindSearchExpired && restarts < maxRestarts && ctx.Err() == nil {
			log.LogAttrs(ctx, slog.LevelInfo, "search session expired: restarting from the watermark", slog.String("type", rt), slog.Int("restart", restarts+1))
			start = ""
			continue
		}
		return err
	}
	if src.Reconcile {
		if err := s.tombstones(ctx, t, log); err != nil {
			return err
		}
	}
	wm := cur.Watermark
	if t.candidate.After(wm) {
		wm = t.candidate
	}
	done := store.Cursor{Practice: src.Practice, Connection: src.Connection, ResourceType: rt, Watermark: wm, RunID: run.ID, UpdatedAt: s.now()}
	if err := s.Store.PutCursor(ctx, done); err != nil {
		return fmt.Errorf("saving the watermark: %w", err)
	}
	log.LogAttrs(ctx, slog.LevelInfo, "resource type synced", slog.String("type", rt), slog.Int("pages", ts.Pages),
		slog.Int("fetched", ts.Fetched), slog.Int("new", ts.New), slog.Int("changed", ts.Changed),
		slog.Int("unchanged", ts.Unchanged), slog.Int("failed", ts.Failed))
	return nil
}

// fetched is one page handed from the fetcher to the writer.
type fetched struct {
	page    *fhirrest.Page
	entries []parsedEntry
	maxLU   time.Time // highest meta.lastUpdated of the page's valid entries
	cap     time.Time // the server's clock when the search started (zero: unknown)
	started time.Time
	// issues are the mapping issues of each entry (same index as entries;
	// nil when the Mapper reports none or is not an IssueMapper).
	issues [][]string
	err    error
}

// pages runs one search (or resumes one at start) to its end. A fetcher
// goroutine keeps exactly one page ahead of the writer. query is the first
// request's parameters (nil: the profile's type-level search from the
// watermark).
func (s *Syncer) pages(ctx context.Context, t *typeRun, start string, query url.Values, log *slog.Logger) error {
	fctx, cancel := context.WithCancel(ctx)
	ch := make(chan fetched)
	var wg gosync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ch)
		s.fetchPages(fctx, t, start, query, ch)
	}()
	defer func() {
		cancel()
		wg.Wait()
	}()
	for f := range ch {
		if f.err != nil {
			return f.err
		}
		if err := ctx.Err(); err != nil {
			return err // stopped: nothing more is committed
		}
		if err := s.commitPage(ctx, t, f); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (s *Syncer) fetchPages(ctx context.Context, t *typeRun, start string, query url.Values, ch chan<- fetched) {
	if query == nil && start == "" {
		query = t.src.Profile.SearchParams(t.rt, t.since(), t.count())
	}
	var cap time.Time
	next := start
	first := true
	for {
		began := time.Now()
		var p *fhirrest.Page
		var err error
		if first && next == "" {
			p, err = t.src.Client.Search(ctx, t.rt, query)
		} else {
			p, err = t.src.Client.Next(ctx, next)
		}
		f := fetched{page: p, err: err, started: began}
		if err == nil {
			if first {
				cap = serverTime(p)
			}
			f.cap = cap
			f.entries, f.maxLU = parseEntries(p.Bundle, t.rt, t.seed)
			f.issues, f.err = s.mapEntries(ctx, t, f.entries)
		}
		first = false
		select {
		case ch <- f:
		case <-ctx.Done():
			return
		}
		if err != nil || p.Next == "" {
			return
		}
		next = p.Next
	}
}

// mapEntries maps the valid entries of a page with s.Mapper. It runs on the
// fetcher, a page ahead of the writer, so mapping overlaps storing; the
// writer still stores the raw page first and only then the canonical
// resources. A resource that cannot be mapped is marked failed; only a
// stopped context fails the page. When s.Mapper is an IssueMapper it
// returns each entry's mapping issues (indexed like entries; nil when there
// are none).
func (s *Syncer) mapEntries(ctx context.Context, t *typeRun, entries []parsedEntry) ([][]string, error) {
	if s.Mapper == nil {
		return nil, nil
	}
	im, _ := s.Mapper.(IssueMapper)
	var issues [][]string
	for i := range entries {
		e := &entries[i]
		if e.fail != "" {
			continue
		}
		var body []byte
		var err error
		if im != nil {
			var is []string
			body, is, err = im.MapWithIssues(ctx, t.src.Practice, t.src.Connection, t.rt, e.w.Body)
			if len(is) > 0 {
				if issues == nil {
					issues = make([][]string, len(entries))
				}
				issues[i] = is
			}
		} else {
			body, err = s.Mapper.Map(ctx, t.src.Practice, t.src.Connection, t.rt, e.w.Body)
		}
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return nil, cerr
			}
			e.mapFail = clip(err.Error(), 500)
			continue
		}
		e.mapped = body
	}
	return issues, nil
}

// addMappingIssues counts one entry's mapping issues in the type's stats.
func (t *typeRun) addMappingIssues(issues []string) {
	if len(issues) == 0 {
		return
	}
	if t.ts.MappingIssues == nil {
		t.ts.MappingIssues = make(map[string]int)
	}
	for _, k := range issues {
		t.ts.MappingIssues[k]++
	}
}

// since is the lower bound of the type's incremental search: the watermark
// minus the overlap (zero: read everything, as a first run or a
// reconciliation sweep does).
func (t *typeRun) since() time.Time {
	if t.cursor.Watermark.IsZero() || t.src.Reconcile {
		return time.Time{}
	}
	return t.cursor.Watermark.Add(-t.src.Overlap)
}

// count is the _count to ask for.
func (t *typeRun) count() int {
	def, max := t.src.Profile.PageSize(t.rt)
	return profile.ClampPageSize(t.src.PageSize, def, max)
}

// commitPage stores the raw page, then its resources (canonical, when
// s.Mapper mapped them), then the cursor and the run's progress. Pages of
// a per-patient fan-out come from several searches at once: t.mu makes
// their commits one at a time.
func (s *Syncer) commitPage(ctx context.Context, t *typeRun, f fetched) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := f.page
	t.pages++
	rawID, err := s.Store.PutRaw(ctx, store.RawPayload{
		Practice: t.src.Practice, Connection: t.src.Connection, Source: RawSource,
		RequestURL: p.URL, ContentType: p.Header.Get("Content-Type"), FetchedAt: p.FetchedAt, Body: p.Body,
	})
	if err != nil {
		return fmt.Errorf("storing raw page %d: %w", t.pages, err)
	}
	ws := make([]store.ResourceWrite, 0, len(f.entries))
	for i := range f.entries {
		e := &f.entries[i]
		t.ts.Fetched++
		if e.fail != "" {
			t.ts.Failed++
			t.addFailure(fmt.Sprintf("raw %d entry %d: %s", rawID, e.index, e.fail))
			continue
		}
		if prev, ok := t.seen[e.idHash]; ok && prev == e.bodyHash {
			t.ts.Unchanged++ // already stored by this run (same id on two pages, or a restarted search)
			continue
		}
		if i < len(f.issues) {
			// Counted once per resource the run stores or fails (not for a
			// resource it already stored), with the resource's counts.
			t.addMappingIssues(f.issues[i])
		}
		if e.mapFail != "" {
			t.ts.Failed++
			t.addFailure(fmt.Sprintf("raw %d entry %d: %s", rawID, e.index, e.mapFail))
			continue
		}
		if e.mapped != nil {
			e.w.Body = e.mapped
		}
		// Mapping is deterministic, so the hash of the source body stands
		// for the canonical one within the run.
		t.seen[e.idHash] = e.bodyHash
		e.w.Connection = t.src.Connection
		e.w.RawID = rawID
		ws = append(ws, e.w)
	}
	if len(ws) > 0 {
		res, err := s.Store.WriteResources(ctx, t.src.Practice, ws)
		if err != nil {
			return fmt.Errorf("writing the resources of raw page %d: %w", rawID, err)
		}
		if len(res) != len(ws) {
			return fmt.Errorf("writing the resources of raw page %d: store returned %d results for %d writes", rawID, len(res), len(ws))
		}
		readable := time.Now()
		measure := s.Freshness != nil && !t.cursor.Watermark.IsZero() && t.class != ""
		for i, r := range res {
			switch r.Outcome {
			case store.Created:
				t.ts.New++
			case store.Updated:
				t.ts.Changed++
			default:
				t.ts.Unchanged++
				continue
			}
			if measure {
				s.Freshness.Observe(t.src.Practice, t.class, ws[i].SourceLastUpdated, readable)
			}
		}
	}
	t.ts.Pages++
	if t.fanout {
		// The watermark is settled when the whole fan-out completes.
		if f.maxLU.After(t.maxLU) {
			t.maxLU = f.maxLU
		}
		if !f.cap.IsZero() && (t.fanCap.IsZero() || f.cap.Before(t.fanCap)) {
			t.fanCap = f.cap
		}
	} else if !f.maxLU.IsZero() {
		lu := f.maxLU
		if !f.cap.IsZero() && lu.After(f.cap) {
			lu = f.cap
		}
		if lu.After(t.candidate) {
			t.candidate = lu
		}
	}
	if p.Next != "" && !t.fanout {
		c := store.Cursor{
			Practice: t.src.Practice, Connection: t.src.Connection, ResourceType: t.rt,
			Watermark: t.cursor.Watermark, PageURL: p.Next, RunID: t.run.ID, RunStart: t.candidate, UpdatedAt: s.now(),
		}
		if err := s.Store.PutCursor(ctx, c); err != nil {
			return fmt.Errorf("saving the cursor after raw page %d: %w", rawID, err)
		}
	}
	if err := s.Store.UpdateRun(ctx, *t.run); err != nil {
		return fmt.Errorf("recording run progress: %w", err)
	}
	if s.Hooks.Page != nil {
		s.Hooks.Page(t.src.Practice, t.src.Connection, t.rt, len(f.entries), time.Since(f.started))
	}
	return nil
}

func (t *typeRun) addFailure(reason string) {
	if len(t.ts.Failures) < maxFailureReasons {
		t.ts.Failures = append(t.ts.Failures, reason)
		return
	}
	t.omitted++
	more := fmt.Sprintf("... and %d more", t.omitted)
	if t.omitted == 1 {
		t.ts.Failures = append(t.ts.Failures, more)
	} else {
		t.ts.Failures[len(t.ts.Failures)-1] = more
	}
}

func addFailure(ts *store.TypeStats, reason string) {
	ts.Failures = append(ts.Failures, reason)
}

// serverTime is the server's clock when it built the page: the Bundle's
// meta.lastUpdated, else the Date header; zero when neither is usable.
func serverTime(p *fhirrest.Page) time.Time {
	if p.Bundle != nil && p.Bundle.Meta != nil && p.Bundle.Meta.LastUpdated != "" {
		if t, err := fhir.ParseInstant(p.Bundle.Meta.LastUpdated); err == nil {
			return t
		}
	}
	if d := p.Header.Get("Date"); d != "" {
		if t, err := http.ParseTime(d); err == nil {
			return t
		}
	}
	return time.Time{}
}

func uniq(in []string) []string {
	out := make([]string, 0, len(in))
	seen := make(map[string]bool, len(in))
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
