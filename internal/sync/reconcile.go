package sync

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"

	"github.com/mediflow/mediflow/internal/store"
)

// Reconciliation catches what incremental polling and real-time feeds
// miss: a change whose notification was lost, a change that did not move
// _lastUpdated (some EHRs skip non-clinical edits), and deletions, which
// an incremental search cannot see at all. A sweep (Source.Reconcile)
// reads every resource of each type from the EHR through the normal page
// path, so a missed change is stored like any other (a resource the store
// already holds unchanged costs a hash comparison). When the search of a
// type completes, every resource this connection stored that the EHR no
// longer returned becomes a tombstone: a new, deleted version that apps
// see in the change feed and that answers 410 through the FHIR API.
//
// A sweep tombstones nothing for a type when any resource of it failed to
// parse or map (the failed entry's id might be one of the "missing"), or
// when the search did not run from its first page in this run.

// tombstones writes deletions for the records of t's type and connection
// that the completed sweep did not see.
func (s *Syncer) tombstones(ctx context.Context, t *typeRun, log *slog.Logger) error {
	if !t.fromStart || t.ts.Failed > 0 {
		log.LogAttrs(ctx, slog.LevelWarn, "reconciliation: deletions not checked",
			slog.String("type", t.rt), slog.Int("failed", t.ts.Failed), slog.Bool("complete", t.fromStart))
		return nil
	}
	refs, err := s.Store.CurrentRefs(ctx, t.src.Practice, t.rt)
	if err != nil {
		return fmt.Errorf("reconciliation: listing stored records: %w", err)
	}
	var ws []store.ResourceWrite
	for _, r := range refs {
		if r.Deleted || r.Connection != t.src.Connection {
			continue
		}
		if _, ok := t.seen[maphash.String(t.seed, r.ID)]; ok {
			continue
		}
		ws = append(ws, store.ResourceWrite{ResourceType: t.rt, ID: r.ID, Connection: t.src.Connection,
			SourceVersionID: r.SourceVersionID, SourceLastUpdated: r.SourceLastUpdated, Deleted: true})
	}
	const batch = 500
	for len(ws) > 0 {
		n := min(len(ws), batch)
		res, err := s.Store.WriteResources(ctx, t.src.Practice, ws[:n])
		if err != nil {
			return fmt.Errorf("reconciliation: writing tombstones: %w", err)
		}
		for _, r := range res {
			if r.Outcome != store.Unchanged {
				t.ts.Deleted++
			}
		}
		ws = ws[n:]
	}
	if t.ts.Deleted > 0 {
		log.LogAttrs(ctx, slog.LevelInfo, "reconciliation: records deleted at the EHR", slog.String("type", t.rt), slog.Int("deleted", t.ts.Deleted))
	}
	return nil
}
