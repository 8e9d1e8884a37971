package writeback

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// This file holds Run's bookkeeping: how many intents execute at once,
// over all practices and per EHR, and the intents claimed ahead of a free
// slot.

// Default bounds of the intents executed at once (Options.Concurrency,
// Options.EHRConcurrency).
const (
	// DefaultConcurrency bounds the outbox as a whole.
	DefaultConcurrency = 32
	// DefaultEHRConcurrency bounds the writes in flight to one EHR: a
	// production engine must not hammer a practice's EHR, and one EHR is
	// one practice's or a few practices' sharing a FHIR base URL.
	DefaultEHRConcurrency = 8
)

// claimed is an intent claimed and not started yet.
type claimed struct {
	in Intent
	at time.Time // when it was claimed (wall clock, for the lease)
}

// ehrSlots is one EHR's share: its bound, what executes and what waits.
type ehrSlots struct {
	limit   int
	running int
	ready   []claimed // claimed in advance, oldest first
}

func (e *ehrSlots) held() int { return e.running + len(e.ready) }

// schedule tracks Run's intents. It is used by Run's goroutine only.
type schedule struct {
	o       *Outbox
	limit   int // Options.Concurrency
	running int // executing, over all EHRs
	held    int // executing or ready, over all EHRs
	ehrOf   map[string]*ehrSlots
	ehrs    []*ehrSlots // fixed order, for taking turns when starting
	turn    int
}

func newSchedule(o *Outbox) *schedule {
	s := &schedule{o: o, limit: o.opts.Concurrency, ehrOf: map[string]*ehrSlots{}}
	byKey := map[string]*ehrSlots{}
	for _, p := range o.practices {
		n := o.opts.EHRConcurrency[p]
		if n <= 0 {
			n = DefaultEHRConcurrency
		}
		n = min(n, s.limit)
		key := ehrKey(p, o.opts.Targets[p])
		e := byKey[key]
		if e == nil {
			e = &ehrSlots{limit: n}
			byKey[key] = e
			s.ehrs = append(s.ehrs, e)
		}
		e.limit = min(e.limit, n)
		s.ehrOf[p] = e
	}
	return s
}

// ehrKey names the EHR a practice writes to: its FHIR base URL, or the
// practice itself when it has no FHIR target.
func ehrKey(practice string, t Target) string {
	if t.FHIR != nil {
		return "fhir " + strings.TrimRight(t.FHIR.BaseURL(), "/")
	}
	return "practice " + practice
}

// claimable reports whether a bound with held intents has room for a
// claim: it may hold twice its bound (the executing ones and as many
// claimed ahead), and claims once a quarter of that is free, so claims
// come in batches and never leave the slots idle.
func claimable(limit, held int) bool {
	return held <= 2*limit-max(limit/2, 1)
}

// mayClaim reports whether practice p may claim now; "" asks about the
// outbox as a whole.
func (s *schedule) mayClaim(p string) bool {
	if p == "" {
		return claimable(s.limit, s.held)
	}
	e := s.ehrOf[p]
	return claimable(s.limit, s.held) && claimable(e.limit, e.held())
}

// room is how many intents practice p may claim.
func (s *schedule) room(p string) int {
	e := s.ehrOf[p]
	return max(min(2*s.limit-s.held, 2*e.limit-e.held()), 0)
}

// add takes the intents claimed for practice p.
func (s *schedule) add(p string, ins []Intent) {
	e := s.ehrOf[p]
	now := time.Now()
	for _, in := range ins {
		e.ready = append(e.ready, claimed{in: in, at: now})
	}
	s.held += len(ins)
}

// startReady starts claimed intents while there are free slots, the EHRs
// taking turns. An intent that waited past a quarter of the lease (its
// round, bounded by three quarters, must end within the lease) is handed
// back instead.
func (s *schedule) startReady(ctx context.Context, start func(Intent)) {
	for s.running < s.limit && ctx.Err() == nil {
		started := false
		for i := range s.ehrs {
			e := s.ehrs[(s.turn+i)%len(s.ehrs)]
			if len(e.ready) == 0 || e.running >= e.limit {
				continue
			}
			c := e.ready[0]
			e.ready[0] = claimed{}
			e.ready = e.ready[1:]
			if time.Since(c.at) > s.o.opts.Lease/4 {
				s.held--
				s.o.handBack(ctx, c.in)
				started = true
				break
			}
			e.running++
			s.running++
			start(c.in)
			s.turn = (s.turn + i + 1) % len(s.ehrs)
			started = true
			break
		}
		if !started {
			return
		}
	}
}

// finished counts an execution of practice p as done.
func (s *schedule) finished(p string) {
	e := s.ehrOf[p]
	e.running--
	s.running--
	s.held--
}

// handBack returns every intent claimed and not started (Run is ending).
func (s *schedule) handBack(ctx context.Context) {
	for _, e := range s.ehrs {
		for _, c := range e.ready {
			s.o.handBack(ctx, c.in)
		}
		s.held -= len(e.ready)
		e.ready = nil
	}
}

// handBack makes a claimed intent that was not started due again at once,
// as it was (nothing was sent for this claim). Its claim still counts as
// an attempt.
func (o *Outbox) handBack(ctx context.Context, in Intent) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalWriteTimeout)
	defer cancel()
	now := o.opts.Now()
	_, err := o.updateIntent(rctx, in.Practice, in.ID, store.IntentUpdate{Attempt: in.Attempts, Status: in.Status, NextAttempt: now,
		LastError: in.LastError, Rejection: in.Rejection, Differences: in.Differences, At: now})
	if err != nil && !errors.Is(err, store.ErrIntentState) {
		o.log.Error("writeback: cannot hand back a claimed intent; it is claimed again after its lease", "practice", in.Practice,
			"intent", in.ID, "error", err.Error())
	}
}
