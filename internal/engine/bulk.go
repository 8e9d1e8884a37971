package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/connector/bulk"
	"github.com/mediflow/mediflow/internal/connector/fhirrest"
	"github.com/mediflow/mediflow/internal/dataclass"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/sync"
)

// Nightly classes and reconciliation sweeps.
//
// A `nightly` class is read with a Bulk Data export of its types
// (sync.BulkIngester): a Group export when the connection names
// bulk_group, else a system-level one; incremental (_since) after the
// first. Each connection with `reconcile` set also gets a sweep job that
// reads every type of its polled classes in full, stores what incremental
// searches missed and turns records gone at the EHR into tombstones.

// policyOf returns the connection's policy for a class.
func policyOf(c *connection, class dataclass.Class) config.SyncPolicy {
	for _, p := range c.cfg.Sync {
		if cl, ok := dataclass.Lookup(p.Class); ok && cl.Name == class.Name {
			return p
		}
	}
	return config.SyncPolicy{}
}

// bulkClient returns the connection's Bulk Data client.
func (e *Engine) bulkClient(c *connection) (*bulk.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bulk != nil {
		return c.bulk, nil
	}
	cfg := bulk.Config{BaseURL: c.cfg.BaseURL, HTTPClient: c.hc, Logger: e.log.With("practice", c.practice, "connection", c.cfg.Name), Now: e.now,
		MaxPoll: e.bulkMaxPoll}
	if c.tokens != nil {
		cfg.Tokens = c.tokens
	}
	bc, err := bulk.New(cfg)
	if err != nil {
		return nil, err
	}
	c.bulk = bc
	return bc, nil
}

// exportClass runs one bulk export of a nightly class.
func (e *Engine) exportClass(ctx context.Context, c *connection, class dataclass.Class, trigger string) error {
	bc, err := e.bulkClient(c)
	if err != nil {
		return fmt.Errorf("engine: %s: %w", jobName(c, class.Name), err)
	}
	req := bulk.Request{Level: bulk.LevelSystem, Types: class.ResourceTypes}
	if c.cfg.BulkGroup != "" {
		req.Level, req.GroupID = bulk.LevelGroup, c.cfg.BulkGroup
	}
	in := &sync.BulkIngester{Store: e.store, Mapper: e.mapper, Freshness: e.fresh, Logger: e.log, Now: e.now,
		Hooks: sync.Hooks{Run: e.recordRun}}
	run, err := in.Run(ctx, sync.BulkSource{Practice: c.practice, Connection: c.cfg.Name, Class: class.Name, Client: bc, Request: req,
		FullOnly: !c.profile.BulkSince()}, trigger)
	e.afterRun(c, class, run, err)
	return err
}

// afterRun updates metrics and the connection's last error after a run.
func (e *Engine) afterRun(c *connection, class dataclass.Class, run store.Run, err error) {
	if err != nil {
		e.metrics.SyncError(fhirrest.KindOf(err).String())
	} else if run.Status == store.RunPartial || run.Status == store.RunFailed {
		e.metrics.SyncError("partial-run")
	}
	e.mu.Lock()
	if err != nil {
		e.lastError[c.key()] = err.Error()
	} else if run.Status == store.RunSucceeded {
		delete(e.lastError, c.key())
	}
	e.mu.Unlock()
	if err == nil && (run.Status == store.RunSucceeded || run.Status == store.RunPartial) {
		e.metrics.SyncSucceeded(c.practice, class.Name, e.now())
	}
	e.notifyWrites(c.practice)
}

// reconcileJob is the sweep job of a connection (nil without `reconcile`).
func (e *Engine) reconcileJob(c *connection, keys []string) *sync.Job {
	if c.cfg.Reconcile <= 0 {
		return nil
	}
	return &sync.Job{
		Name:     c.key() + "/reconcile",
		Interval: c.cfg.Reconcile,
		Jitter:   0.1,
		Limits:   keys,
		Run: func(ctx context.Context, trigger string) error {
			return e.Reconcile(ctx, c.practice, c.cfg.Name, trigger)
		},
	}
}

// Reconcile runs one reconciliation sweep of a connection: every type of
// its polled (not nightly) classes the server can search.
func (e *Engine) Reconcile(ctx context.Context, practice, conn, trigger string) error {
	var c *connection
	for _, x := range e.conns {
		if x.practice == practice && x.cfg.Name == conn {
			c = x
		}
	}
	if c == nil {
		return fmt.Errorf("engine: no connection %s/%s", practice, conn)
	}
	var types []string
	for _, p := range c.cfg.Sync {
		cl, ok := dataclass.Lookup(p.Class)
		if !ok || p.Mode == dataclass.ModeNightly {
			continue
		}
		ok2, _ := c.searchable(cl)
		types = append(types, ok2...)
	}
	if len(types) == 0 {
		return nil
	}
	src := e.source(c, types)
	src.Reconcile = true
	start := time.Now()
	run, err := e.syncer.Run(ctx, src, trigger)
	e.log.Info("reconciliation sweep", "practice", practice, "connection", conn, "status", run.Status, "took", time.Since(start).String())
	e.notifyWrites(practice)
	return err
}
