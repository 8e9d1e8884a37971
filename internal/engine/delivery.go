package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/mediflow/mediflow/internal/api"
	"github.com/mediflow/mediflow/internal/delivery"
	"github.com/mediflow/mediflow/internal/ingest/hl7in"
)

// Webhook delivery (package delivery, docs/delivery.md): with
// store.secret_key set, the engine runs one Dispatcher over its store for
// every practice, serves the webhook endpoints of the API through it, and
// tells it about new changes as they are written (sync pages, processed HL7
// messages, notifications). Writes that do not tell it (bulk ingest, replays
// from the command line) are found by its poll of the change feeds.

// deliveryPollInterval is how often the dispatcher reads the change feeds
// without being told: the bound on the delay of a change nobody announced.
const deliveryPollInterval = 250 * time.Millisecond

// buildDelivery builds the webhook dispatcher when store.secret_key is set
// (e.hooks stays nil otherwise) and makes it follow the engine's writes.
func (e *Engine) buildDelivery(opts Options) error {
	key, err := e.cfg.Store.ResolveSecretKey(e.cfg.BaseDir, opts.Getenv)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	if key == nil {
		return nil
	}
	practices := make([]string, 0, len(e.cfg.Practices))
	for _, p := range e.cfg.Practices {
		practices = append(practices, p.ID)
	}
	d, err := delivery.New(delivery.Options{
		Store:        e.store,
		Practices:    practices,
		SecretKey:    key,
		Client:       opts.DeliveryClient,
		Logger:       e.log,
		Now:          e.now,
		PollInterval: deliveryPollInterval,
	})
	if err != nil {
		return fmt.Errorf("engine: webhook delivery: %w", err)
	}
	e.hooks = d
	e.onWrite = d.Notify
	return nil
}

// webhookAPI is what the API manages webhooks through: nil (a nil
// interface, so the endpoints answer 501) without a dispatcher.
func (e *Engine) webhookAPI() api.Webhooks {
	if e.hooks == nil {
		return nil
	}
	return e.hooks
}

// runDelivery starts the dispatcher, when there is one, on a goroutine that
// ends with ctx; the channel is closed once it has stopped (at once without
// a dispatcher).
func (e *Engine) runDelivery(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	if e.hooks == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		if err := e.hooks.Run(ctx); err != nil {
			e.log.Error("webhook delivery stopped", "error", err.Error())
		}
	}()
	return done
}

// hl7Processed follows the HL7 pipeline: a message that wrote resources
// grew its practice's change feed.
func (e *Engine) hl7Processed(ev hl7in.Event) {
	if ev.Written > 0 {
		e.notifyWrites(ev.Practice)
	}
}
