package hl7in

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"

	"github.com/mediflow/mediflow/internal/hl7/mllp"
)

// Pipeline is the HL7 v2 inbound pipeline of an engine: one MLLP server
// and group committer per listener, one processor per practice.
type Pipeline struct {
	opts      Options
	listeners []*listener
	procs     map[string]*processor

	mu      sync.Mutex
	running bool
}

type listener struct {
	cfg Listener
	rcv *receiver
	c   *committer
	ln  net.Listener // nil until Listen
}

// New builds a pipeline. It does not bind or start anything.
func New(opts Options, listeners []Listener) (*Pipeline, error) {
	if err := opts.withDefaults(); err != nil {
		return nil, err
	}
	p := &Pipeline{opts: opts, procs: map[string]*processor{}}
	policies := map[string]map[string]string{}
	for _, l := range opts.Channels {
		if policies[l.Practice] == nil {
			policies[l.Practice] = map[string]string{}
		}
		policies[l.Practice][l.Name] = l.Unsupported
	}
	names := map[string]bool{}
	for _, l := range listeners {
		if l.Practice == "" || l.Name == "" {
			return nil, errors.New("hl7in: a listener needs a practice and a name")
		}
		if names[l.Practice+"/"+l.Name] {
			return nil, fmt.Errorf("hl7in: practice %s has two listeners named %s", l.Practice, l.Name)
		}
		names[l.Practice+"/"+l.Name] = true
		switch l.AckMode {
		case "", AckAuto, AckOriginal, AckEnhanced:
		default:
			return nil, fmt.Errorf("hl7in: listener %s: unknown ack mode %q", l.Name, l.AckMode)
		}
		switch l.Unsupported {
		case "", UnsupportedIgnore, UnsupportedQuarantine:
		default:
			return nil, fmt.Errorf("hl7in: listener %s: unknown unsupported-message policy %q", l.Name, l.Unsupported)
		}
		if policies[l.Practice] == nil {
			policies[l.Practice] = map[string]string{}
		}
		policies[l.Practice][l.Name] = l.Unsupported
	}
	practices := slices.Clone(opts.Practices)
	for _, l := range slices.Concat(opts.Channels, listeners) {
		practices = append(practices, l.Practice)
	}
	for _, pr := range practices {
		if p.procs[pr] == nil {
			p.procs[pr] = newProcessor(pr, &p.opts, policies[pr])
		}
	}
	for _, l := range listeners {
		proc := p.procs[l.Practice]
		c := newCommitter(opts.Store, l.Practice, l.DedupWindow, opts.MaxBatch, opts.MaxDelay, func(int64) { proc.wake() })
		rcv := &receiver{cfg: l, c: c, log: p.opts.Logger, metrics: opts.Metrics, now: p.opts.Now, onReceived: opts.OnReceived}
		p.listeners = append(p.listeners, &listener{cfg: l, rcv: rcv, c: c})
	}
	return p, nil
}

// Listen binds every listener that is not bound yet. On an error the ones
// bound by this call are closed again.
func (p *Pipeline) Listen() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var bound []*listener
	for _, l := range p.listeners {
		if l.ln != nil {
			continue
		}
		ln, err := net.Listen("tcp", l.cfg.Addr)
		if err != nil {
			for _, b := range bound {
				b.ln.Close()
				b.ln = nil
			}
			return fmt.Errorf("hl7in: practice %s listener %s: listen on %s: %w", l.cfg.Practice, l.cfg.Name, l.cfg.Addr, err)
		}
		l.ln = ln
		bound = append(bound, l)
	}
	return nil
}

// Addr is the bound address of a listener (nil before Listen, or for an
// unknown listener).
func (p *Pipeline) Addr(practice, name string) net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.listeners {
		if l.cfg.Practice == practice && l.cfg.Name == name && l.ln != nil {
			return l.ln.Addr()
		}
	}
	return nil
}

// Run binds the listeners (if Listen was not called), then receives and
// processes messages until ctx ends or a listener fails. It returns once
// every connection is closed, every handler has returned and every
// processor has stopped. A Pipeline runs once.
func (p *Pipeline) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.running {
		p.mu.Unlock()
		return errors.New("hl7in: the pipeline is already running or has run")
	}
	p.running = true
	p.mu.Unlock()
	if err := p.Listen(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var procs sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		cancel()
	}
	for _, proc := range p.procs {
		if p.opts.DisableProcessing {
			break
		}
		procs.Add(1)
		go func() {
			defer procs.Done()
			if err := proc.run(ctx); err != nil {
				fail(err)
			}
		}()
	}

	// Committers outlive the servers: a handler waiting for its commit
	// must get its answer before the server's shutdown is complete.
	stopCommit := make(chan struct{})
	var commits sync.WaitGroup
	for _, l := range p.listeners {
		commits.Add(1)
		go func() {
			defer commits.Done()
			l.c.run(ctx, stopCommit)
		}()
	}
	var servers sync.WaitGroup
	for _, l := range p.listeners {
		srv := mllp.NewServer(mllp.ServerConfig{
			TLS:            l.cfg.TLS,
			MaxMessageSize: l.cfg.MaxMessageSize,
			IdleTimeout:    l.cfg.IdleTimeout,
			MaxConns:       orDefault(l.cfg.MaxConns, 64),
			Logger:         p.opts.Logger.With("practice", l.cfg.Practice, "listener", l.cfg.Name),
		}, l.rcv)
		servers.Add(1)
		go func() {
			defer servers.Done()
			p.opts.Logger.Info("hl7 listener started", "practice", l.cfg.Practice, "listener", l.cfg.Name,
				"addr", l.ln.Addr().String(), "tls", l.cfg.TLS != nil)
			if err := srv.Serve(ctx, l.ln); err != nil && ctx.Err() == nil {
				fail(fmt.Errorf("hl7in: practice %s listener %s: %w", l.cfg.Practice, l.cfg.Name, err))
			}
		}()
	}
	<-ctx.Done()
	servers.Wait()
	close(stopCommit)
	commits.Wait()
	procs.Wait()
	for _, l := range p.listeners {
		l.ln.Close() // Serve closes it too; a second close is harmless
	}
	return errors.Join(errs...)
}

// Replay sets the selected messages of a practice back to received and has
// the practice's processor take them (see Replay).
func (p *Pipeline) Replay(ctx context.Context, practice string, sel Selection) (ReplayResult, error) {
	res, err := Replay(ctx, p.opts.Store, practice, sel)
	if res.Replayed > 0 {
		if proc := p.procs[practice]; proc != nil {
			proc.replayed(res.FirstID)
		}
	}
	return res, err
}

func orDefault(v, d int) int {
	if v <= 0 {
		return d
	}
	return v
}
