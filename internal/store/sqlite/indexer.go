package sqlite

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/mediflow/mediflow/internal/fhir/searchparam"
)

// The indexer applies write batches to the search index in the background,
// in commit order, so a writer's next batch (its SQLite insert, the next
// page of a sync) overlaps the index update of the previous one.
//
//   - WriteResources commits to SQLite, records the batch's new current
//     versions in the queue overlay (s.queue), and sends the batch to the
//     indexer. At most indexQueue batches wait, so the overlay stays small.
//   - Writers read a resource's stored state from the overlay first, then
//     from the index. Only writers (under writeMu) drop versions from the
//     overlay, and only those the index's watermark already covers, read
//     before the index is: so a version is always in the overlay, or in the
//     index view read after it.
//   - GetResource, GetResourceVersion and History read the overlay the same
//     way; Search and CountResources wait until the index holds every
//     version committed before they were called (waitIndexed).
//   - If an index update fails, the indexer drops the batches behind it and
//     marks the index broken; the next write (which holds writeMu) waits for
//     the queue to drain and catches the index up from resource_versions, as
//     Open does after a crash. Reads meanwhile see the index as it was.

// indexQueue is how many batches may wait for the indexer.
const indexQueue = 2

// indexJob is one batch for the indexer; a job with flushed set carries no
// batch and is acknowledged when everything before it is done.
type indexJob struct {
	vs      []indexedVersion
	tip     tip
	flushed chan struct{}
}

// queuedVersion is a current version that is in SQLite but may not be in
// the index yet.
type queuedVersion struct {
	cur     curState
	entries []searchparam.Entry // nil when deleted
}

type queueKey struct{ practice, rt, id string }

// indexState is the Store's side of the indexer.
type indexState struct {
	jobs chan indexJob
	done chan struct{} // closed when the indexer has stopped

	mu      sync.Mutex
	overlay map[queueKey]queuedVersion // guarded by mu
	applied chan struct{}              // closed and replaced after each batch; guarded by mu

	committed atomic.Int64 // highest seq committed to SQLite
	broken    atomic.Bool  // an index update failed; healIndex repairs it
}

func (s *Store) startIndexer() {
	q := &s.queue
	q.jobs = make(chan indexJob, indexQueue)
	q.done = make(chan struct{})
	q.overlay = map[queueKey]queuedVersion{}
	q.applied = make(chan struct{})
	q.committed.Store(s.nextSeq)
	go s.runIndexer()
}

// stopIndexer lets the indexer finish the queued batches and waits for it.
// Callers hold writeMu.
func (s *Store) stopIndexer() {
	if s.queue.jobs == nil {
		return
	}
	close(s.queue.jobs)
	<-s.queue.done
	s.queue.jobs = nil
}

func (s *Store) runIndexer() {
	q := &s.queue
	defer close(q.done)
	for job := range q.jobs {
		if job.flushed != nil {
			close(job.flushed)
			continue
		}
		if q.broken.Load() {
			continue // out of order after a failure: healIndex redoes it
		}
		var err error
		if hook := s.beforeIndex.Load(); hook != nil {
			err = (*hook)()
		}
		if err == nil {
			err = s.idx.apply(job.vs, job.tip)
		}
		q.mu.Lock()
		if err != nil {
			s.log.Error("search index update failed; the next write catches it up", "err", err)
			q.broken.Store(true)
		}
		close(q.applied)
		q.applied = make(chan struct{})
		q.mu.Unlock()
	}
}

// enqueueIndex records a committed batch in the overlay and queues it.
// Callers hold writeMu.
func (s *Store) enqueueIndex(job indexJob) {
	q := &s.queue
	q.mu.Lock()
	for i := range job.vs {
		v := &job.vs[i]
		q.overlay[queueKey{v.practice, v.rt, v.id}] = queuedVersion{cur: v.cur, entries: v.entries}
	}
	q.mu.Unlock()
	q.committed.Store(job.tip.seq)
	q.jobs <- job
}

// pruneQueued drops the overlay's versions the index holds (seq <=
// watermark). Callers hold writeMu, and read the watermark before they
// read the index.
func (s *Store) pruneQueued(watermark int64) {
	q := &s.queue
	q.mu.Lock()
	defer q.mu.Unlock()
	for k, v := range q.overlay {
		if v.cur.seq <= watermark {
			delete(q.overlay, k)
		}
	}
}

// queued returns the queued current version of a resource, if any.
func (s *Store) queued(practice, rt, id string) (queuedVersion, bool) {
	q := &s.queue
	q.mu.Lock()
	defer q.mu.Unlock()
	v, ok := q.overlay[queueKey{practice, rt, id}]
	return v, ok
}

// current returns a resource's current version: queued, else indexed.
func (s *Store) current(practice, rt, id string) (curState, bool, error) {
	if v, ok := s.queued(practice, rt, id); ok {
		return v.cur, true, nil
	}
	return s.idx.current(s.idx.coll(practice, rt), id)
}

// waitIndexed waits until the index holds every version committed before
// the call. A broken index is not waited for: reads then see the index as
// it is until the next write repairs it.
func (s *Store) waitIndexed(ctx context.Context) error {
	q := &s.queue
	target := q.committed.Load()
	for {
		q.mu.Lock()
		ch := q.applied
		q.mu.Unlock()
		if s.idx.watermark.Load() >= target || q.broken.Load() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("sqlite: waiting for the search index: %w", ctx.Err())
		}
	}
}

// healIndex repairs the index after a failed update: it waits for the
// queue to drain, then catches up from resource_versions. Callers hold
// writeMu, so no batch is queued meanwhile.
func (s *Store) healIndex(ctx context.Context) error {
	q := &s.queue
	if !q.broken.Load() {
		return nil
	}
	done := make(chan struct{})
	q.jobs <- indexJob{flushed: done}
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("sqlite: waiting for the search index: %w", ctx.Err())
	}
	if err := s.catchUp(ctx); err != nil {
		return fmt.Errorf("sqlite: repairing the search index: %w", err)
	}
	q.mu.Lock()
	clear(q.overlay)
	q.broken.Store(false)
	close(q.applied)
	q.applied = make(chan struct{})
	q.mu.Unlock()
	return nil
}

var errStoreClosed = errors.New("sqlite: store is closed")

// readIndex marks a read of the index in progress (Close waits for it);
// the caller calls the returned function when done.
func (s *Store) readIndex() (func(), error) {
	s.readMu.RLock()
	if s.readClosed {
		s.readMu.RUnlock()
		return nil, errStoreClosed
	}
	return s.readMu.RUnlock, nil
}
