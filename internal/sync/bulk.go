package sync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	gosync "sync"
	"time"
	"unsafe"

	"github.com/mediflow/mediflow/internal/connector/bulk"
	"github.com/mediflow/mediflow/internal/dataclass"
	"github.com/mediflow/mediflow/internal/store"
)

// Bulk ingest: the nightly policy reads a connection's data with a FHIR
// Bulk Data export instead of paged searches. The first export is full;
// later ones ask for _since the previous export's transactionTime. Each
// batch of NDJSON lines is stored raw first (one raw payload per batch),
// then mapped and written like a search page; deleted files become
// tombstones. The job (status URL, manifest, which files are done) is kept
// in the store's state after every step, so an engine killed mid-export
// resumes the same job and downloads only the files not yet done. A file
// is the unit of resumption: a file cut off by a crash is read again, and
// its resources that were already written come back Unchanged.

// RawSourceBulk is the RawPayload.Source of bulk export batches.
const RawSourceBulk = "fhir-bulk"

// BulkStore is what a bulk ingest needs of the store.
type BulkStore interface {
	Store
	store.StateStore
}

// BulkSource is one connection to export from.
type BulkSource struct {
	Practice, Connection string
	// Class names the export when a connection runs several (each keeps
	// its own job and _since): the state key is "bulk/<connection>/<class>".
	Class  string
	Client *bulk.Client
	// Request says the level (system, patient, group and its id) and the
	// types; Since is set by the ingester from the last export.
	Request bulk.Request
	// Progress receives the export's progress (nil: none).
	Progress func(bulk.Progress)
	// FullOnly makes every export a full one (no _since): for vendors whose
	// export is not incremental (vendors.Profile.BulkSince).
	FullOnly bool
}

// bulkState is the document kept under the key "bulk/<connection>".
type bulkState struct {
	// Job is the export in flight (nil between exports).
	Job *bulk.Job `json:"job,omitempty"`
	// RunID is the run record of the job in flight.
	RunID int64 `json:"runId,omitempty"`
	// Since is the _since the job in flight asked for (zero: full export).
	Since time.Time `json:"since,omitzero"`
	// Last is the transactionTime of the last completed export: the next
	// export asks for changes since then.
	Last time.Time `json:"last,omitzero"`
}

func bulkStateKey(connection string) string { return "bulk/" + connection }

// BulkIngester runs bulk exports into a store. It is safe for concurrent
// use on different connections; one connection must not run two at once
// (the scheduler runs one job per connection and class).
type BulkIngester struct {
	Store  BulkStore
	Mapper Mapper
	// Freshness observes the lag of changes stored by incremental exports.
	Freshness FreshnessObserver
	Logger    *slog.Logger
	Hooks     Hooks
	Now       func() time.Time
}

func (b *BulkIngester) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

func (b *BulkIngester) logger() *slog.Logger {
	if b.Logger != nil {
		return b.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Run runs (or resumes) one export of src and records it as a sync run.
func (b *BulkIngester) Run(ctx context.Context, src BulkSource, trigger string) (store.Run, error) {
	if src.Client == nil {
		return store.Run{}, errors.New("sync: bulk source has no client")
	}
	key := bulkStateKey(src.Connection)
	if src.Class != "" {
		key += "/" + src.Class
	}
	var state bulkState
	switch raw, err := b.Store.GetState(ctx, src.Practice, key); {
	case err == nil:
		if err := json.Unmarshal(raw, &state); err != nil {
			return store.Run{}, fmt.Errorf("sync %s/%s: reading the bulk export state: %w", src.Practice, src.Connection, err)
		}
	case !errors.Is(err, store.ErrNotFound):
		return store.Run{}, fmt.Errorf("sync %s/%s: reading the bulk export state: %w", src.Practice, src.Connection, err)
	}
	log := b.logger().With(slog.String("practice", src.Practice), slog.String("connection", src.Connection))

	run := store.Run{Practice: src.Practice, Connection: src.Connection, Trigger: trigger,
		Status: store.RunRunning, StartedAt: b.now(), Stats: map[string]*store.TypeStats{}}
	for _, t := range src.Request.Types {
		run.Stats[t] = &store.TypeStats{}
	}
	resuming := state.Job != nil
	if resuming && state.RunID != 0 {
		if prev, err := b.Store.GetRun(ctx, src.Practice, state.RunID); err == nil {
			run = prev // continue the interrupted run's record and counts
			run.Status = store.RunRunning
			if run.Stats == nil {
				run.Stats = map[string]*store.TypeStats{}
			}
		}
	}
	if run.ID == 0 {
		id, err := b.Store.StartRun(ctx, run)
		if err != nil {
			return run, fmt.Errorf("sync %s/%s: starting the run record: %w", src.Practice, src.Connection, err)
		}
		run.ID = id
	}
	if !resuming {
		state.Since = state.Last
		if src.FullOnly {
			state.Since = time.Time{}
		}
		state.RunID = run.ID
	}
	req := src.Request
	req.Since = state.Since

	w := &bulkWriter{b: b, src: src, run: &run, incremental: !state.Since.IsZero(), key: key, state: &state}
	opts := bulk.Options{
		Batches:    w.resources,
		Deleted:    w.deleted,
		Checkpoint: w.checkpoint,
		FileDone:   w.fileDone,
		Progress:   src.Progress,
	}
	// A store that loads faster in bulk is told where the load begins and
	// ends; end runs on every path (a cancelled run's too: it finishes what
	// the store deferred), and its error fails the run.
	endBulk := func(context.Context) error { return nil }
	if bl, ok := b.Store.(store.BulkLoader); ok {
		endBulk = bl.BeginBulkLoad(src.Practice)
	}
	var res *bulk.Result
	var err error
	func() {
		defer func() {
			if berr := endBulk(context.WithoutCancel(ctx)); berr != nil {
				err = errors.Join(err, fmt.Errorf("finishing the bulk load in the store: %w", berr))
			}
		}()
		if resuming {
			log.LogAttrs(ctx, slog.LevelInfo, "resuming a bulk export", slog.Int64("run", run.ID))
			res, err = src.Client.Resume(ctx, *state.Job, opts)
		} else {
			log.LogAttrs(ctx, slog.LevelInfo, "bulk export started", slog.Int64("run", run.ID), slog.Bool("incremental", w.incremental))
			res, err = src.Client.Export(ctx, req, opts)
		}
	}()

	run.FinishedAt = b.now()
	switch {
	case err != nil && ctx.Err() != nil:
		// Stopped: the job stays in the state and is resumed next time.
		run.Status = store.RunFailed
		run.Error = "cancelled: " + ctx.Err().Error()
	case err != nil:
		run.Status = store.RunFailed
		run.Error = clip("bulk export: "+err.Error(), 4000)
		if errors.Is(err, bulk.ErrExpired) || errors.Is(err, bulk.ErrJobFailed) {
			// The job cannot be continued: the next run starts a new one
			// from the same point.
			state.Job = nil
			w.save(context.WithoutCancel(ctx))
		}
	default:
		state.Job = nil
		state.Last = res.Job.Manifest.TransactionTime
		if err := w.save(ctx); err != nil {
			run.Status = store.RunFailed
			run.Error = clip("saving the bulk export state: "+err.Error(), 4000)
			break
		}
		failed := 0
		for _, ts := range run.Stats {
			failed += ts.Failed
		}
		run.Status = store.RunSucceeded
		if failed > 0 || len(res.Issues) > 0 {
			run.Status = store.RunPartial
			run.Error = fmt.Sprintf("%d resources failed; the export reported %d issues", failed, len(res.Issues))
		}
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if uerr := b.Store.UpdateRun(uctx, run); uerr != nil && err == nil {
		err = fmt.Errorf("recording the run: %w", uerr)
	}
	log.LogAttrs(ctx, slog.LevelInfo, "bulk export finished", slog.String("status", run.Status), slog.Duration("took", run.FinishedAt.Sub(run.StartedAt)))
	if b.Hooks.Run != nil {
		b.Hooks.Run(run)
	}
	if err != nil {
		return run, fmt.Errorf("sync %s/%s: %w", src.Practice, src.Connection, err)
	}
	return run, nil
}

// bulkWriter is the sink of one export: the bulk client calls it from
// several download workers at once.
type bulkWriter struct {
	b           *BulkIngester
	src         BulkSource
	key         string
	incremental bool

	mu    gosync.Mutex // guards run stats and state
	run   *store.Run
	state *bulkState
}

func (w *bulkWriter) stats(rt string) *store.TypeStats {
	ts := w.run.Stats[rt]
	if ts == nil {
		ts = &store.TypeStats{}
		w.run.Stats[rt] = ts
	}
	return ts
}

// resources stores one batch: raw first, then the canonical resources.
func (w *bulkWriter) resources(ctx context.Context, b bulk.Batch) error {
	batch := b.Resources
	if len(batch) == 0 {
		return nil
	}
	file := batch[0].File
	if i := strings.IndexByte(file, '?'); i >= 0 {
		file = file[:i] // signed storage URLs carry credentials in the query
	}
	// The batch's NDJSON is its raw payload as is: the store copies what
	// it keeps before PutRaw returns.
	rawID, err := w.b.Store.PutRaw(ctx, store.RawPayload{
		Practice: w.src.Practice, Connection: w.src.Connection, Source: RawSourceBulk,
		RequestURL: file, ContentType: bulk.NDJSON, FetchedAt: w.b.now(), Body: b.NDJSON,
	})
	if err != nil {
		return fmt.Errorf("storing a raw bulk batch: %w", err)
	}
	// The bodies are valid only during this call, and a write may keep its
	// body: an unmapped one takes its body from one copy of the batch.
	var own []byte
	if w.b.Mapper == nil {
		own = bytes.Clone(b.NDJSON)
	}
	type counted struct {
		rt     string
		fail   string
		issues []string
	}
	cs := make([]counted, len(batch))
	ws := make([]store.ResourceWrite, 0, len(batch))
	im, _ := w.b.Mapper.(IssueMapper)
	off := 0
	for i, r := range batch {
		cs[i].rt = r.Type
		var wr store.ResourceWrite
		body := r.Body
		if own != nil {
			body = own[off : off+len(r.Body) : off+len(r.Body)]
			off += len(r.Body) + 1
		}
		if fail := parseEntry(body, r.Type, &wr); fail != "" {
			cs[i].fail = fmt.Sprintf("raw %d line %d: %s", rawID, i+1, fail)
			continue
		}
		if w.b.Mapper != nil {
			var mapped []byte
			var err error
			if im != nil {
				mapped, cs[i].issues, err = im.MapWithIssues(ctx, w.src.Practice, w.src.Connection, r.Type, wr.Body)
			} else {
				mapped, err = w.b.Mapper.Map(ctx, w.src.Practice, w.src.Connection, r.Type, wr.Body)
			}
			if err != nil {
				if cerr := ctx.Err(); cerr != nil {
					return cerr
				}
				cs[i].fail = fmt.Sprintf("raw %d line %d: %s", rawID, i+1, clip(err.Error(), 500))
				continue
			}
			if overlaps(mapped, body) {
				// The mapper handed back (part of) its input, as it does
				// for a type it has no rules for: keep a copy.
				mapped = bytes.Clone(mapped)
			}
			wr.Body = mapped
		}
		wr.Connection = w.src.Connection
		wr.RawID = rawID
		ws = append(ws, wr)
	}
	var results []store.WriteResult
	if len(ws) > 0 {
		results, err = w.b.Store.WriteResources(ctx, w.src.Practice, ws)
		if err != nil {
			return fmt.Errorf("writing a bulk batch: %w", err)
		}
		if len(results) != len(ws) {
			return fmt.Errorf("writing a bulk batch: store returned %d results for %d writes", len(results), len(ws))
		}
	}
	readable := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range cs {
		ts := w.stats(cs[i].rt)
		ts.Fetched++
		for _, k := range cs[i].issues {
			if ts.MappingIssues == nil {
				ts.MappingIssues = map[string]int{}
			}
			ts.MappingIssues[k]++
		}
		if cs[i].fail != "" {
			ts.Failed++
			addFailure(ts, cs[i].fail)
		}
	}
	for k, r := range results {
		ts := w.stats(ws[k].ResourceType)
		switch r.Outcome {
		case store.Created:
			ts.New++
		case store.Updated:
			ts.Changed++
		default:
			ts.Unchanged++
			continue
		}
		if w.incremental && w.b.Freshness != nil {
			if cl, ok := dataclass.ForResourceType(ws[k].ResourceType); ok {
				w.b.Freshness.Observe(w.src.Practice, cl.Name, ws[k].SourceLastUpdated, readable)
			}
		}
	}
	return nil
}

// overlaps reports whether a and b share memory.
func overlaps(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	pa, pb := uintptr(unsafe.Pointer(unsafe.SliceData(a))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return pa < pb+uintptr(len(b)) && pb < pa+uintptr(len(a))
}

// deleted stores tombstones for resources the export lists as deleted.
func (w *bulkWriter) deleted(ctx context.Context, batch []bulk.Tombstone) error {
	ws := make([]store.ResourceWrite, 0, len(batch))
	for _, t := range batch {
		if !validID(t.ID) || t.Type == "" {
			continue
		}
		ws = append(ws, store.ResourceWrite{ResourceType: t.Type, ID: t.ID, Connection: w.src.Connection, Deleted: true})
	}
	if len(ws) == 0 {
		return nil
	}
	res, err := w.b.Store.WriteResources(ctx, w.src.Practice, ws)
	if err != nil {
		return fmt.Errorf("writing bulk tombstones: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, r := range res {
		if r.Outcome != store.Unchanged {
			w.stats(ws[k].ResourceType).Deleted++
		}
	}
	return nil
}

// checkpoint keeps the job in the state document after kick-off, once the
// manifest is in, and after each file.
func (w *bulkWriter) checkpoint(ctx context.Context, job bulk.Job) error {
	w.mu.Lock()
	j := job
	j.Files = slices.Clone(job.Files)
	w.state.Job = &j
	w.mu.Unlock()
	if err := w.save(ctx); err != nil {
		return err
	}
	// The run's counts go with it, so a resumed run continues them.
	w.mu.Lock()
	run := snapshotRun(*w.run)
	w.mu.Unlock()
	return w.b.Store.UpdateRun(ctx, run)
}

// snapshotRun copies a run with its stats, so it can be stored while the
// download workers go on counting.
func snapshotRun(r store.Run) store.Run {
	stats := make(map[string]*store.TypeStats, len(r.Stats))
	for k, ts := range r.Stats {
		c := *ts
		c.Failures = slices.Clone(ts.Failures)
		if ts.MappingIssues != nil {
			c.MappingIssues = make(map[string]int, len(ts.MappingIssues))
			for ik, n := range ts.MappingIssues {
				c.MappingIssues[ik] = n
			}
		}
		stats[k] = &c
	}
	r.Stats = stats
	return r
}

// fileDone: a file is complete; the checkpoint after it records that.
func (w *bulkWriter) fileDone(ctx context.Context, f bulk.FileState) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if f.Kind == bulk.KindOutput {
		w.stats(f.Type).Pages++ // a file counts as a page
	}
	return nil
}

func (w *bulkWriter) save(ctx context.Context) error {
	w.mu.Lock()
	b, err := json.Marshal(w.state)
	w.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encoding the bulk export state: %w", err)
	}
	if err := w.b.Store.PutState(ctx, w.src.Practice, w.key, b); err != nil {
		return fmt.Errorf("saving the bulk export state: %w", err)
	}
	return nil
}
