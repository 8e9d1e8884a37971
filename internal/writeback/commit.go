package writeback

import (
	"context"
	"sync"

	"github.com/mediflow/mediflow/internal/store"
)

// The outbox's intent updates go through a group commit: executions that
// record an outcome at the same moment share one store transaction
// (store.IntentStore.UpdateIntents), so the cost of a commit — most of an
// update's — is paid once per batch instead of once per intent. There is
// no goroutine of its own: the first caller of a batch writes it and,
// when more updates queued meanwhile, hands the next batch to the first
// of their callers; every caller waits for its own result.

// commits is the queue of updates waiting for a batch.
type commits struct {
	mu    sync.Mutex
	queue []*pendingUpdate
	busy  bool // a caller is writing a batch
}

// pendingUpdate is one caller's update and, once written, its result.
type pendingUpdate struct {
	change store.IntentChange
	result store.IntentChanged
	lead   chan struct{} // this caller writes the next batch (buffered)
	done   chan struct{} // closed when result is set
}

// updateIntent stores an update of a claimed intent as UpdateIntent would,
// batched with the updates other executions make at the same moment. The
// batch is written even after ctx ended (with finalWriteTimeout): it holds
// other callers' outcomes too.
func (o *Outbox) updateIntent(ctx context.Context, practice, id string, u store.IntentUpdate) (Intent, error) {
	p := &pendingUpdate{change: store.IntentChange{Practice: practice, ID: id, Update: u},
		lead: make(chan struct{}, 1), done: make(chan struct{})}
	c := &o.commits
	c.mu.Lock()
	c.queue = append(c.queue, p)
	first := !c.busy
	c.busy = true
	c.mu.Unlock()
	if first {
		o.commitBatch(ctx)
	}
	for {
		select {
		case <-p.done:
			return p.result.Intent, p.result.Err
		case <-p.lead:
			o.commitBatch(ctx)
		}
	}
}

// commitBatch writes every queued update in one store call, then hands
// the queue on.
func (o *Outbox) commitBatch(ctx context.Context) {
	c := &o.commits
	c.mu.Lock()
	batch := c.queue
	c.queue = nil
	c.mu.Unlock()
	changes := make([]store.IntentChange, len(batch))
	for i, p := range batch {
		changes[i] = p.change
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalWriteTimeout)
	results := o.st.UpdateIntents(wctx, changes)
	cancel()
	for i, p := range batch {
		p.result = results[i]
		close(p.done)
	}
	c.mu.Lock()
	if len(c.queue) > 0 {
		c.queue[0].lead <- struct{}{}
	} else {
		c.busy = false
	}
	c.mu.Unlock()
}
