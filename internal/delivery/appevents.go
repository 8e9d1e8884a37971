package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// App events: besides the change feed, mediflow tells one app about things
// that concern it alone, such as the status of a write it asked for
// (type "intent.status"). An app event goes to the app's active webhooks in
// the practice whose types are empty or name the event's type; it joins
// each webhook's queue, so it is signed, ordered, retried and dead-lettered
// like a change event.

// AppEvent is the JSON body of an app event.
type AppEvent struct {
	ID         string    `json:"id"` // the event id, as in Mediflow-Event-Id
	Practice   string    `json:"practice"`
	Type       string    `json:"type"` // e.g. "intent.status"
	OccurredAt time.Time `json:"occurredAt"`
	// Data are the type's fields; PHI-free.
	Data json.RawMessage `json:"data"`
}

// AppEventSpec asks for an app event.
type AppEventSpec struct {
	Practice string
	App      string
	Type     string
	// Key names the event within the practice and app: the same key
	// enqueues nothing new (the event ids derive from it), so an event
	// reported twice is sent once.
	Key        string
	OccurredAt time.Time // zero: now
	// Data is encoded as the event's "data" (it must be PHI-free).
	Data any
}

// AppEventID is the id of an app event for one webhook: the same every
// time it is computed.
func AppEventID(practice, app, key, webhookID string) string {
	var b []byte
	for _, p := range [...]string{"app", practice, app, key, webhookID} {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	sum := sha256.Sum256(b)
	return "evt_" + hex.EncodeToString(sum[:16])
}

// SendAppEvent enqueues an app event for every active webhook of the app
// in the practice that wants its type, and returns how many deliveries
// were added (0 when the app has no such webhook, or the key was used
// before). The change-feed cursor does not move.
func (d *Dispatcher) SendAppEvent(ctx context.Context, ev AppEventSpec) (int, error) {
	switch {
	case !d.practices[ev.Practice]:
		return 0, fmt.Errorf("%w: unknown practice", ErrInvalid)
	case ev.App == "":
		return 0, fmt.Errorf("%w: no app", ErrInvalid)
	case ev.Type == "":
		return 0, fmt.Errorf("%w: no event type", ErrInvalid)
	case ev.Key == "":
		return 0, fmt.Errorf("%w: no event key", ErrInvalid)
	}
	data, err := json.Marshal(ev.Data)
	if err != nil {
		return 0, fmt.Errorf("delivery: encode %s event: %w", ev.Type, err)
	}
	hooks, err := d.st.ListWebhooks(ctx, ev.Practice, store.WebhookFilter{App: ev.App, ActiveOnly: true})
	if err != nil {
		return 0, fmt.Errorf("delivery: list webhooks: %w", err)
	}
	now := d.opts.Now().UTC()
	at := ev.OccurredAt
	if at.IsZero() {
		at = now
	}
	var ds []store.Delivery
	for _, h := range hooks {
		if h.App != ev.App || (len(h.Types) > 0 && !slices.Contains(h.Types, ev.Type)) {
			continue
		}
		body := AppEvent{ID: AppEventID(ev.Practice, ev.App, ev.Key, h.ID), Practice: ev.Practice, Type: ev.Type, OccurredAt: at.UTC(), Data: data}
		payload, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("delivery: encode %s event: %w", ev.Type, err)
		}
		ds = append(ds, store.Delivery{WebhookID: h.ID, EventID: body.ID, Payload: payload, NextAttempt: now, CreatedAt: now})
	}
	if len(ds) == 0 {
		return 0, nil
	}
	res, err := d.st.EnqueueDeliveries(ctx, ev.Practice, ds, 0)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) { // a webhook went away meanwhile
			return 0, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return 0, fmt.Errorf("delivery: enqueue %s event: %w", ev.Type, err)
	}
	added := 0
	for _, r := range res {
		if !r.Duplicate {
			added++
		}
	}
	if added > 0 {
		d.log.Debug("webhooks: app event enqueued", "practice", ev.Practice, "app", ev.App, "type", ev.Type, "deliveries", added)
		d.wakeSender(ev.Practice)
	}
	return added, nil
}
