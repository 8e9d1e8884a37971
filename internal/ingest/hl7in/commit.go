package hl7in

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// errStopped is returned to a handler whose message reached the committer
// after it stopped: nothing was stored, so nothing is acknowledged.
var errStopped = errors.New("hl7in: the pipeline is stopping; message not stored")

// commitTimeout bounds one group commit. A commit is not cancelled with the
// pipeline's context: a batch that started is finished, so its handlers can
// acknowledge what was stored.
const commitTimeout = 30 * time.Second

// committer is the group-commit batcher of one listener. Handlers of
// concurrent connections each submit one message and wait; the committer
// stores every message waiting at that moment in one PutHL7Messages call
// (one transaction, one WAL sync), then wakes each handler with its own
// result. Batches form by themselves while a commit is running; besides, a
// batch waits up to maxDelay for messages that have arrived but are still
// being parsed (arriving > 0), and never grows beyond maxBatch.
type committer struct {
	st       store.MessageStore
	practice string
	window   time.Duration
	maxBatch int
	maxDelay time.Duration
	// onCommit is called after each commit with the highest id of a newly
	// stored message to process (0: none).
	onCommit func(maxID int64)

	reqs     chan *putReq
	arriving atomic.Int64  // handlers between reading a message and submitting it
	done     chan struct{} // closed when run has returned
}

type putReq struct {
	msg  store.HL7Message
	res  store.HL7PutResult
	err  error
	done chan struct{}
}

func newCommitter(st store.MessageStore, practice string, window time.Duration, maxBatch int, maxDelay time.Duration, onCommit func(int64)) *committer {
	return &committer{st: st, practice: practice, window: window, maxBatch: maxBatch, maxDelay: maxDelay,
		onCommit: onCommit, reqs: make(chan *putReq, 4*maxBatch), done: make(chan struct{})}
}

// begin announces a message that will be submitted (or abandoned) soon.
func (c *committer) begin() { c.arriving.Add(1) }

// abandon withdraws an announced message that will not be submitted.
func (c *committer) abandon() { c.arriving.Add(-1) }

// put submits an announced message and waits until its batch is committed.
// A nil error means the message (or its original, for a duplicate) is
// durable.
func (c *committer) put(ctx context.Context, m store.HL7Message) (store.HL7PutResult, error) {
	r := &putReq{msg: m, done: make(chan struct{})}
	select {
	case c.reqs <- r:
		c.arriving.Add(-1)
	case <-ctx.Done():
		c.arriving.Add(-1)
		return store.HL7PutResult{}, ctx.Err()
	case <-c.done:
		c.arriving.Add(-1)
		return store.HL7PutResult{}, errStopped
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-c.done:
		// The committer finishes the batch it holds before it stops, so a
		// request it took is done by now.
		select {
		case <-r.done:
			return r.res, r.err
		default:
			return store.HL7PutResult{}, errStopped
		}
	}
}

// run commits batches until stop is closed, then fails what is still queued.
func (c *committer) run(ctx context.Context, stop <-chan struct{}) {
	defer close(c.done)
	batch := make([]*putReq, 0, c.maxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var first *putReq
		select {
		case first = <-c.reqs:
		case <-stop:
			c.failQueued()
			return
		}
		batch = append(batch[:0], first)
		timerSet := false
	gather:
		for len(batch) < c.maxBatch {
			select {
			case r := <-c.reqs:
				batch = append(batch, r)
				continue
			default:
			}
			if c.arriving.Load() <= 0 {
				break gather
			}
			if !timerSet {
				timer.Reset(c.maxDelay)
				timerSet = true
			}
			select {
			case r := <-c.reqs:
				batch = append(batch, r)
			case <-timer.C:
				timerSet = false
				break gather
			case <-stop:
				break gather
			}
		}
		if timerSet {
			timer.Stop() // since Go 1.23 a stopped timer delivers nothing stale
		}
		c.commit(ctx, batch)
		clear(batch)
	}
}

// failQueued fails every request still in the queue.
func (c *committer) failQueued() {
	for {
		select {
		case r := <-c.reqs:
			r.err = errStopped
			close(r.done)
		default:
			return
		}
	}
}

// commit stores one batch. If the batch as a whole fails, each message is
// tried alone, so one message the store refuses cannot take the others
// down with it.
func (c *committer) commit(ctx context.Context, batch []*putReq) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	msgs := make([]store.HL7Message, len(batch))
	for i, r := range batch {
		msgs[i] = r.msg
	}
	res, err := c.st.PutHL7Messages(cctx, c.practice, msgs, c.window)
	if err == nil && len(res) != len(batch) {
		err = fmt.Errorf("hl7in: the store returned %d results for %d messages", len(res), len(batch))
	}
	if err == nil {
		for i, r := range batch {
			r.res = res[i]
		}
	} else if len(batch) == 1 {
		batch[0].err = err
	} else {
		for _, r := range batch {
			one, err := c.st.PutHL7Messages(cctx, c.practice, []store.HL7Message{r.msg}, c.window)
			switch {
			case err != nil:
				r.err = err
			case len(one) != 1:
				r.err = fmt.Errorf("hl7in: the store returned %d results for 1 message", len(one))
			default:
				r.res = one[0]
			}
		}
	}
	var maxID int64
	for _, r := range batch {
		if r.err == nil && !r.res.Duplicate && r.res.Status == store.MsgReceived && r.res.ID > maxID {
			maxID = r.res.ID
		}
	}
	if maxID > 0 && c.onCommit != nil {
		c.onCommit(maxID)
	}
	for _, r := range batch {
		close(r.done)
	}
}
