package sync

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/url"
	"sort"
	gosync "sync"
	"time"

	"github.com/mediflow/mediflow/internal/connector/fhirrest"
	"github.com/mediflow/mediflow/internal/dataclass"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/vendors"
	"github.com/mediflow/mediflow/internal/vendors/profile"
)

// Per-patient fan-out. Some vendors refuse to list a resource type without
// a patient (athenahealth and Oracle Health for clinical types; Oracle
// Health's Appointment also needs a date window, which the profile adds).
// For a type whose profile SearchScope is PerPatient the sync runs one
// search per patient it knows — the Patient records this connection
// stored, current and not deleted, in id order — at most
// Source.PatientConcurrency at a time.
//
// The watermark stays one per type. Each patient's search covers every
// change up to the server's clock at its first page; the searches start at
// different times, so the type's new watermark is the highest
// meta.lastUpdated seen, capped by the EARLIEST such clock over all the
// patients' searches (what every search covered), and it is committed only
// when every patient's search completed. A failed patient search keeps the
// watermark where it was (the failure is the type's error, and the run is
// partial); the other patients' data is stored all the same.
//
// Progress is saved after each patient in a second cursor, keyed
// "<type>#patients": the last patient id up to which every patient is
// done, the highest lastUpdated and the earliest server clock so far. A
// crash or cancellation mid-fan-out resumes after that patient (patients
// that finished beyond it are searched again, which costs hash
// comparisons); a patient whose search was cut off mid-paging is searched
// again from its first page. A reconciliation sweep ignores saved progress
// and clears it when done.
//
// Known limit: a patient that joins the roster with records older than the
// type's watermark minus the overlap (a roster filled from another source)
// gets those records at the next reconciliation sweep.

// DefaultPatientConcurrency is the per-patient searches in flight at once
// when Source.PatientConcurrency is 0.
const DefaultPatientConcurrency = 4

// FanOutSuffix is appended to a resource type to key the cursor that holds
// the progress of an unfinished per-patient fan-out.
const FanOutSuffix = "#patients"

// byScope orders types so those listed with one search come first: a run's
// Patient search then fills the roster before the per-patient types use it.
func byScope(types []string, p vendors.Profile) []string {
	if p == nil {
		return types
	}
	sort.SliceStable(types, func(i, j int) bool {
		return p.SearchScope(types[i]) == profile.TypeLevel && p.SearchScope(types[j]) != profile.TypeLevel
	})
	return types
}

// fanOutProgress is what the "#patients" cursor records.
type fanOutProgress struct {
	done  string    // every patient with an id up to this one is done
	maxLU time.Time // highest meta.lastUpdated seen so far
	cap   time.Time // earliest server clock at the start of a patient's search
	runID int64
}

func encodeProgress(done string) string { return url.Values{"done": {done}}.Encode() }

func decodeProgress(c store.Cursor) (fanOutProgress, bool) {
	if c.PageURL == "" {
		return fanOutProgress{}, false
	}
	v, err := url.ParseQuery(c.PageURL)
	if err != nil || v.Get("done") == "" {
		return fanOutProgress{}, false
	}
	return fanOutProgress{done: v.Get("done"), maxLU: c.RunStart, cap: c.Watermark, runID: c.RunID}, true
}

// roster lists the ids of the patients this connection stored, in order.
func (s *Syncer) roster(ctx context.Context, src Source) ([]string, error) {
	refs, err := s.Store.CurrentRefs(ctx, src.Practice, "Patient")
	if err != nil {
		return nil, fmt.Errorf("listing the known patients: %w", err)
	}
	ids := make([]string, 0, len(refs))
	for _, r := range refs {
		if !r.Deleted && r.Connection == src.Connection {
			ids = append(ids, r.ID)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

func (s *Syncer) syncPerPatient(ctx context.Context, run *store.Run, src Source, rt string, ts *store.TypeStats, log *slog.Logger) error {
	cur, err := s.Store.GetCursor(ctx, src.Practice, src.Connection, rt)
	if err != nil {
		return fmt.Errorf("reading the cursor: %w", err)
	}
	progressKey := rt + FanOutSuffix
	pc, err := s.Store.GetCursor(ctx, src.Practice, src.Connection, progressKey)
	if err != nil {
		return fmt.Errorf("reading the fan-out progress: %w", err)
	}
	patients, err := s.roster(ctx, src)
	if err != nil {
		return err
	}
	t := &typeRun{src: src, rt: rt, run: run, ts: ts, cursor: cur, seed: maphash.MakeSeed(), seen: make(map[uint64]uint64), fanout: true, fromStart: true}
	if cl, ok := dataclass.ForResourceType(rt); ok {
		t.class = cl.Name
	}
	if prog, ok := decodeProgress(pc); ok && !src.Reconcile {
		t.fromStart = false
		t.maxLU, t.fanCap = prog.maxLU, prog.cap
		n := sort.SearchStrings(patients, prog.done)
		if n < len(patients) && patients[n] == prog.done {
			n++
		}
		log.LogAttrs(ctx, slog.LevelInfo, "resuming an interrupted per-patient search", slog.String("type", rt),
			slog.Int64("from_run", prog.runID), slog.Int("patients_done", n), slog.Int("patients", len(patients)))
		patients = patients[n:]
	}
	if len(patients) == 0 && t.fromStart {
		log.LogAttrs(ctx, slog.LevelWarn, "no known patients for a per-patient resource type: nothing searched", slog.String("type", rt))
	}
	since, now, count := t.since(), s.now(), t.count()

	workers := src.PatientConcurrency
	if workers <= 0 {
		workers = DefaultPatientConcurrency
	}
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		mu       gosync.Mutex // guards finished, prefix, failed, firstErr, saveErr
		finished = make([]bool, len(patients))
		prefix   int // patients[:prefix] are all done
		failed   int
		firstErr error
		saveErr  error
	)
	jobs := make(chan int)
	var wg gosync.WaitGroup
	for range min(workers, max(len(patients), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				err := s.patientSearch(fctx, t, src.Profile.PatientSearchParams(rt, patients[i], since, now, count), log)
				mu.Lock()
				if err != nil {
					if fctx.Err() == nil || !errors.Is(err, context.Canceled) {
						failed++
						if firstErr == nil {
							firstErr = err
						}
						// A failure that is not about this patient (auth,
						// the server, the network) would fail the others too.
						if k := fhirrest.KindOf(err); k.Retryable() || k == profile.KindAuth {
							stop()
						}
					}
					mu.Unlock()
					continue
				}
				finished[i] = true
				advanced := false
				for prefix < len(finished) && finished[prefix] {
					prefix++
					advanced = true
				}
				if advanced && saveErr == nil {
					saveErr = s.saveProgress(ctx, t, progressKey, patients[prefix-1])
					if saveErr != nil {
						stop()
					}
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for i := range patients {
		select {
		case jobs <- i:
		case <-fctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()

	if err := ctx.Err(); err != nil {
		return err // stopped: the saved progress stands
	}
	if saveErr != nil {
		return fmt.Errorf("saving the fan-out progress: %w", saveErr)
	}
	if firstErr != nil {
		return fmt.Errorf("%d of %d patient searches failed (watermark kept): %w", failed, len(patients), firstErr)
	}
	if src.Reconcile {
		if err := s.tombstones(ctx, t, log); err != nil {
			return err
		}
	}
	candidate := t.maxLU
	if !t.fanCap.IsZero() && candidate.After(t.fanCap) {
		candidate = t.fanCap
	}
	wm := cur.Watermark
	if candidate.After(wm) {
		wm = candidate
	}
	done := store.Cursor{Practice: src.Practice, Connection: src.Connection, ResourceType: rt, Watermark: wm, RunID: run.ID, UpdatedAt: s.now()}
	if err := s.Store.PutCursor(ctx, done); err != nil {
		return fmt.Errorf("saving the watermark: %w", err)
	}
	clear := store.Cursor{Practice: src.Practice, Connection: src.Connection, ResourceType: progressKey, RunID: run.ID, UpdatedAt: s.now()}
	if err := s.Store.PutCursor(ctx, clear); err != nil {
		return fmt.Errorf("clearing the fan-out progress: %w", err)
	}
	log.LogAttrs(ctx, slog.LevelInfo, "resource type synced per patient", slog.String("type", rt), slog.Int("patients", len(patients)),
		slog.Int("pages", ts.Pages), slog.Int("fetched", ts.Fetched), slog.Int("new", ts.New), slog.Int("changed", ts.Changed),
		slog.Int("unchanged", ts.Unchanged), slog.Int("failed", ts.Failed))
	return nil
}

// patientSearch runs one patient's search to its end, restarting it when
// the server dropped its paging session.
func (s *Syncer) patientSearch(ctx context.Context, t *typeRun, q url.Values, log *slog.Logger) error {
	for restarts := 0; ; restarts++ {
		err := s.pages(ctx, t, "", q, log)
		if err == nil {
			return nil
		}
		if fhirrest.KindOf(err) == profile.KindSearchExpired && restarts < maxRestarts && ctx.Err() == nil {
			log.LogAttrs(ctx, slog.LevelInfo, "search session expired: restarting the patient's search", slog.String("type", t.rt), slog.Int("restart", restarts+1))
			continue
		}
		return err
	}
}

// saveProgress records that every patient up to done (in id order) is done.
func (s *Syncer) saveProgress(ctx context.Context, t *typeRun, key, done string) error {
	t.mu.Lock()
	c := store.Cursor{Practice: t.src.Practice, Connection: t.src.Connection, ResourceType: key,
		Watermark: t.fanCap, PageURL: encodeProgress(done), RunID: t.run.ID, RunStart: t.maxLU, UpdatedAt: s.now()}
	t.mu.Unlock()
	return s.Store.PutCursor(ctx, c)
}
