package hl7in

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/store"
)

// Processor tuning. The queue bound keeps memory flat whatever the backlog:
// messages wait in the store, not in memory.
const (
	fetchPage    = 256             // messages read from the store at once
	maxQueued    = 2048            // messages held in memory (queued or running)
	pollInterval = 2 * time.Second // safety net: look for new messages even without a notification
	maxBackoff   = 5 * time.Minute
)

// processor converts the stored inbound messages of one practice into
// resources. It keeps one FIFO per (channel, sending facility), ordered by
// message id, and runs at most one message per FIFO at a time on a bounded
// set of workers: a facility's messages are processed in the order they
// were stored, different facilities in parallel.
//
// All queue state belongs to the dispatcher goroutine (run); workers get
// jobs and report results over channels.
type processor struct {
	practice    string
	st          Store
	conv        Converter
	mapper      Mapper // nil: no mapping
	log         *slog.Logger
	metrics     *obs.Metrics
	now         func() time.Time
	workers     int
	maxAttempts int
	backoff     time.Duration
	policies    map[string]string // channel -> unsupported policy
	onProcessed func(Event)
	locks       *stripes

	notify  chan struct{} // new messages were committed
	replays chan int64    // messages from this id on were set back to received
}

func newProcessor(practice string, o *Options, policies map[string]string) *processor {
	return &processor{
		practice: practice, st: o.Store, conv: o.Converter, mapper: o.Mapper, log: o.Logger.With("practice", practice), metrics: o.Metrics,
		now: o.Now, workers: o.Workers, maxAttempts: o.MaxAttempts, backoff: o.RetryBackoff, policies: policies,
		onProcessed: o.OnProcessed, locks: &stripes{},
		notify: make(chan struct{}, 1), replays: make(chan int64, 16),
	}
}

// wake tells the processor that messages up to some id were committed.
func (p *processor) wake() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// replayed tells the processor that messages from id on may be received again.
func (p *processor) replayed(id int64) {
	select {
	case p.replays <- id:
	default:
		// The queue of replay notices is full: the pending ones already
		// cover a rescan; fold this one in by waking a rescan from 0.
		select {
		case p.replays <- 0:
		default:
		}
	}
}

type job struct {
	key     string
	msg     store.HL7Message
	attempt int // earlier failed attempts in this process
}

type jobResult struct {
	key   string
	id    int64
	retry bool          // keep the message at the head of its queue
	delay time.Duration // before the retry
}

type fifo struct {
	msgs      []store.HL7Message // sorted by id
	busy      bool               // a worker holds msgs[i] with id running
	running   int64
	delayed   bool // waiting for notBefore after a failure
	notBefore time.Time
}

// dispatcher is the state of run; it is touched by the run goroutine only.
type dispatcher struct {
	queues   map[string]*fifo
	ready    []string // keys with a runnable head, FIFO
	inflight map[int64]bool
	retries  map[int64]int
	queued   int
	hw       int64 // messages up to hw were looked at by the incremental fetch
	more     bool  // the last incremental fetch filled a page
	// rescan, when active, reads received and failed messages with ids in
	// (scanNext, scanEnd]: at start-up (what an earlier process stored but
	// did not finish) and after a replay.
	scanning          bool
	scanNext, scanEnd int64
	retryFetchAt      time.Time // after a store error
}

// run processes messages until ctx ends. A message being processed when
// ctx ends is abandoned where it is; it is still received (or failed) in
// the store and is processed again on the next start, which is harmless
// (see the package documentation).
func (p *processor) run(ctx context.Context) error {
	d := &dispatcher{queues: map[string]*fifo{}, inflight: map[int64]bool{}, retries: map[int64]int{}}
	last, err := p.st.ListHL7Messages(ctx, p.practice, store.HL7Filter{Direction: store.DirectionInbound, Limit: 1})
	if err != nil {
		return fmt.Errorf("hl7in: practice %s: find the newest message: %w", p.practice, err)
	}
	if len(last) > 0 {
		d.hw = last[0].ID
		d.scanning, d.scanNext, d.scanEnd = true, 0, d.hw
	}

	work := make(chan job)
	results := make(chan jobResult, p.workers)
	var wg sync.WaitGroup
	for range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				results <- p.handle(ctx, j)
			}
		}()
	}
	defer func() {
		close(work)
		wg.Wait()
	}()

	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	retryTimer := time.NewTimer(time.Hour)
	defer retryTimer.Stop()
	wantFetch := true
	for {
		if ctx.Err() != nil {
			return nil
		}
		if wantFetch || d.more || d.scanning {
			if p.fetch(ctx, d) {
				wantFetch = false
			}
		}
		var send chan job
		var next job
		if len(d.ready) > 0 {
			key := d.ready[0]
			q := d.queues[key]
			next = job{key: key, msg: q.msgs[0], attempt: d.retries[q.msgs[0].ID]}
			send = work
		}
		// The earliest delayed queue decides the retry timer.
		var due time.Time
		for _, q := range d.queues {
			if q.delayed && (due.IsZero() || q.notBefore.Before(due)) {
				due = q.notBefore
			}
		}
		var retryC <-chan time.Time
		if !due.IsZero() {
			retryTimer.Reset(max(time.Until(due), 0))
			retryC = retryTimer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case send <- next:
			d.ready = d.ready[1:]
			q := d.queues[next.key]
			q.busy, q.running = true, next.msg.ID
		case r := <-results:
			p.finishJob(d, r)
		case <-p.notify:
			wantFetch = true
		case from := <-p.replays:
			p.startRescan(d, from)
		case <-retryC:
			now := time.Now()
			for key, q := range d.queues {
				if q.delayed && !q.notBefore.After(now) {
					q.delayed = false
					if !q.busy && len(q.msgs) > 0 {
						d.ready = append(d.ready, key)
					}
				}
			}
		case <-poll.C:
			wantFetch = true
		}
		retryTimer.Stop()
	}
}

func (p *processor) startRescan(d *dispatcher, from int64) {
	next := max(from-1, 0)
	if d.scanning {
		d.scanNext = min(d.scanNext, next)
		d.scanEnd = max(d.scanEnd, d.hw)
		return
	}
	d.scanning, d.scanNext, d.scanEnd = true, next, d.hw
}

// fetch fills the queues from the store while there is room: first the
// rescan, then messages newer than hw. It reports whether it got through
// (false after a store error: it is tried again later).
func (p *processor) fetch(ctx context.Context, d *dispatcher) bool {
	if !d.retryFetchAt.IsZero() && time.Now().Before(d.retryFetchAt) {
		return false
	}
	for d.scanning && d.queued < maxQueued {
		msgs, err := p.st.ListHL7Messages(ctx, p.practice, store.HL7Filter{
			Direction: store.DirectionInbound, Status: []string{store.MsgReceived, store.MsgFailed},
			AfterID: d.scanNext, Ascending: true, Limit: min(fetchPage, maxQueued-d.queued), WithBody: true,
		})
		if err != nil {
			p.fetchFailed(ctx, d, err)
			return false
		}
		for _, m := range msgs {
			if m.ID > d.scanEnd {
				d.scanning = false
				break
			}
			d.scanNext = m.ID
			p.enqueue(d, m)
		}
		if len(msgs) == 0 || d.scanNext >= d.scanEnd {
			d.scanning = false
		}
	}
	if d.scanning {
		return true // no room; the rescan goes on when messages finish
	}
	d.more = false
	for d.queued < maxQueued {
		limit := min(fetchPage, maxQueued-d.queued)
		msgs, err := p.st.ListHL7Messages(ctx, p.practice, store.HL7Filter{
			Direction: store.DirectionInbound, AfterID: d.hw, Ascending: true, Limit: limit, WithBody: true,
		})
		if err != nil {
			p.fetchFailed(ctx, d, err)
			return false
		}
		for _, m := range msgs {
			d.hw = m.ID
			if m.Status == store.MsgReceived || m.Status == store.MsgFailed {
				p.enqueue(d, m)
			}
		}
		if len(msgs) < limit {
			return true
		}
		d.more = true
	}
	return true
}

func (p *processor) fetchFailed(ctx context.Context, d *dispatcher, err error) {
	if ctx.Err() != nil {
		return
	}
	d.retryFetchAt = time.Now().Add(time.Second)
	p.log.Error("hl7 processor cannot read messages; retrying", "error", err.Error())
}

// enqueue adds a message to its (channel, facility) queue in id order.
func (p *processor) enqueue(d *dispatcher, m store.HL7Message) {
	if d.inflight[m.ID] {
		return
	}
	d.inflight[m.ID] = true
	d.queued++
	key := m.Channel + "\x00" + m.SendingFacility
	q := d.queues[key]
	if q == nil {
		q = &fifo{}
		d.queues[key] = q
	}
	i := sort.Search(len(q.msgs), func(i int) bool { return q.msgs[i].ID > m.ID })
	q.msgs = slices.Insert(q.msgs, i, m)
	if len(q.msgs) == 1 && !q.busy && !q.delayed {
		d.ready = append(d.ready, key)
	}
}

// finishJob takes a worker's result: the message leaves its queue, or stays
// at its head for a retry after a delay.
func (p *processor) finishJob(d *dispatcher, r jobResult) {
	q := d.queues[r.key]
	if q == nil {
		return
	}
	q.busy = false
	if r.retry {
		d.retries[r.id]++
		q.delayed, q.notBefore = true, time.Now().Add(r.delay)
		return
	}
	for i := range q.msgs {
		if q.msgs[i].ID == r.id {
			q.msgs = slices.Delete(q.msgs, i, i+1)
			break
		}
	}
	delete(d.inflight, r.id)
	delete(d.retries, r.id)
	d.queued--
	switch {
	case len(q.msgs) == 0 && !q.delayed:
		delete(d.queues, r.key)
	case !q.delayed:
		d.ready = append(d.ready, r.key)
	}
}

// retryable marks a processing error worth trying again: the store failed,
// not the message.
type retryable struct{ err error }

func (e retryable) Error() string { return e.err.Error() }
func (e retryable) Unwrap() error { return e.err }

// handle runs one job on a worker.
func (p *processor) handle(ctx context.Context, j job) jobResult {
	res := jobResult{key: j.key, id: j.msg.ID}
	ev, err := p.process(ctx, j.msg)
	if err == nil {
		p.report(ev)
		return res
	}
	if ctx.Err() != nil {
		// Stopping: leave the message as it is in the store.
		res.retry = true
		return res
	}
	attempt := j.attempt + 1
	reason := clip(err.Error())
	if attempt >= p.maxAttempts {
		reason = clip(fmt.Sprintf("gave up after %d attempts: %s", attempt, err.Error()))
		ev = p.event(j.msg, store.MsgQuarantined, reason)
		if uerr := p.mark(ctx, j.msg.ID, store.MsgQuarantined, reason); uerr != nil {
			p.log.Error("hl7 message cannot be marked quarantined; retrying", "message_id", j.msg.ID, "error", uerr.Error())
			res.retry, res.delay = true, p.delay(attempt)
			return res
		}
		p.log.Error("hl7 message quarantined after repeated failures", "message_id", j.msg.ID, "attempts", attempt, "error", reason)
		p.report(ev)
		return res
	}
	if uerr := p.mark(ctx, j.msg.ID, store.MsgFailed, reason); uerr != nil {
		p.log.Warn("hl7 message cannot be marked failed", "message_id", j.msg.ID, "error", uerr.Error())
	}
	p.log.Warn("hl7 message processing failed; will retry", "message_id", j.msg.ID, "attempt", attempt, "error", reason)
	p.report(p.event(j.msg, store.MsgFailed, reason))
	res.retry, res.delay = true, p.delay(attempt)
	return res
}

func (p *processor) delay(attempt int) time.Duration {
	d := p.backoff
	for i := 1; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

func (p *processor) report(ev Event) {
	p.metrics.HL7Processed(ev.Practice, ev.Channel, ev.Status)
	if p.onProcessed != nil {
		p.onProcessed(ev)
	}
}

func (p *processor) event(m store.HL7Message, status, reason string) Event {
	return Event{Practice: p.practice, Channel: m.Channel, ID: m.ID, MessageCode: m.MessageCode, TriggerEvent: m.TriggerEvent,
		ControlID: m.ControlID, SendingApp: m.SendingApp, SendingFacility: m.SendingFacility, AckCode: m.AckCode,
		Status: status, Error: reason}
}

// mark records a final or failed state of a message.
func (p *processor) mark(ctx context.Context, id int64, status, reason string) error {
	u := store.HL7Update{Status: status, Error: reason, AddAttempt: true}
	if status != store.MsgFailed {
		u.ProcessedAt = p.now().UTC()
	}
	return p.st.UpdateHL7Message(ctx, p.practice, id, u)
}

// process converts one message and records the outcome. A nil error means
// the message reached a final status (processed, ignored or quarantined);
// a retryable error leaves it for another attempt.
func (p *processor) process(ctx context.Context, m store.HL7Message) (Event, error) {
	msg, err := hl7.Parse(m.Body, hl7.ParseOptions{})
	if err != nil {
		return p.final(ctx, m, store.MsgQuarantined, clip("parse: "+err.Error()))
	}
	res, err := p.conv.Convert(msg)
	var unsupported *v2fhir.UnsupportedError
	switch {
	case errors.As(err, &unsupported):
		status := store.MsgIgnored
		if p.policies[m.Channel] == UnsupportedQuarantine {
			status = store.MsgQuarantined
		}
		return p.final(ctx, m, status, clip(fmt.Sprintf("no conversion for %s^%s", unsupported.MessageCode, unsupported.TriggerEvent)))
	case err != nil:
		return p.final(ctx, m, store.MsgQuarantined, clip("conversion: "+err.Error()))
	case res == nil:
		return p.final(ctx, m, store.MsgQuarantined, "conversion: no result")
	}
	if err := p.mapResources(ctx, m, res); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return Event{}, retryable{cerr}
		}
		return p.final(ctx, m, store.MsgQuarantined, clip(err.Error()))
	}
	st, err := p.apply(ctx, m, res)
	if err != nil {
		return Event{}, retryable{err}
	}
	ev, err := p.final(ctx, m, store.MsgProcessed, "")
	ev.Written, ev.Unchanged, ev.Stale = st.written, st.unchanged, st.stale
	if err == nil && len(res.Warnings) > 0 {
		p.log.Debug("hl7 message converted with warnings", "message_id", m.ID, "warnings", len(res.Warnings))
	}
	return ev, err
}

// final marks a message with a final status.
func (p *processor) final(ctx context.Context, m store.HL7Message, status, reason string) (Event, error) {
	if err := p.mark(ctx, m.ID, status, reason); err != nil {
		return Event{}, retryable{fmt.Errorf("mark message %d %s: %w", m.ID, status, err)}
	}
	if status == store.MsgQuarantined {
		p.log.Warn("hl7 message quarantined", "message_id", m.ID, "channel", m.Channel, "reason", reason)
	}
	return p.event(m, status, reason), nil
}
