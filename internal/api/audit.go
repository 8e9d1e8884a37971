package api

import (
	"context"
	"sync"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// Audit batching limits.
const (
	// maxAuditBatch bounds how many events one store write carries.
	maxAuditBatch = 256
	// auditInterval is the least time between the end of one audit write and
	// the start of the next: under load, events that arrive meanwhile share
	// the next write (at most 4000 writes a second); an idle API writes at once.
	// Every request waits for its batch, so this wait is part of the latency
	// of each audited request: with 1 ms, 8 closed-loop clients were capped
	// near 4,000 requests/s by the wait alone, with the CPUs partly idle
	// (docs/benchmarks.md). At 250 µs the audit writes take ~10 % of the CPU
	// of that benchmark.
	auditInterval = 250 * time.Microsecond
)

// auditBatcher group-commits audit events. Every caller waits until its own
// event is written (the API sends no PHI whose access is not on record), but
// events of concurrent requests share one store write instead of each paying
// for a transaction of their own.
//
// There is no background goroutine: the first waiting caller writes the
// batch (it "leads"), and when its write is done it hands the lead to the
// oldest caller still queued, so no request writes more than one batch. A
// leader that follows a write by less than auditInterval waits out the rest
// of the interval first, gathering the events that arrive meanwhile.
type auditBatcher struct {
	write    func(ctx context.Context, evs []store.AuditEvent) error
	interval time.Duration

	mu        sync.Mutex
	queue     []*auditReq
	leading   bool
	lastWrite time.Time // when the last write ended
}

type auditReq struct {
	ev   store.AuditEvent
	done chan error    // the result of the write that carried ev
	lead chan struct{} // "write the queue now"
}

func newAuditBatcher(write func(ctx context.Context, evs []store.AuditEvent) error) *auditBatcher {
	return &auditBatcher{write: write, interval: auditInterval}
}

// record writes ev, possibly together with other callers' events, and
// returns the result of that write.
func (b *auditBatcher) record(ctx context.Context, ev store.AuditEvent) error {
	req := &auditReq{ev: ev, done: make(chan error, 1), lead: make(chan struct{}, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, req)
	if !b.leading {
		b.leading = true
		b.mu.Unlock()
		return b.leadOnce(ctx)
	}
	b.mu.Unlock()
	select {
	case err := <-req.done:
		return err
	case <-req.lead:
		return b.leadOnce(ctx)
	}
}

// leadOnce waits out the interval since the last write, writes the queued
// events (the leader's own among them), reports the result to their callers
// and passes the lead on.
func (b *auditBatcher) leadOnce(ctx context.Context) error {
	b.mu.Lock()
	wait := b.interval - time.Since(b.lastWrite)
	b.mu.Unlock()
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}

	b.mu.Lock()
	n := min(len(b.queue), maxAuditBatch)
	batch := b.queue[:n:n]
	b.queue = b.queue[n:]
	b.mu.Unlock()

	evs := make([]store.AuditEvent, len(batch))
	for i, r := range batch {
		evs[i] = r.ev
	}
	err := b.write(ctx, evs)
	for _, r := range batch {
		r.done <- err
	}

	b.mu.Lock()
	b.lastWrite = time.Now()
	if len(b.queue) > 0 {
		b.queue[0].lead <- struct{}{}
	} else {
		b.leading = false
		b.queue = nil
	}
	b.mu.Unlock()
	// The leader's own request is always in its batch: when it became
	// leader it was first in the queue, and only leaders take from it.
	return err
}
