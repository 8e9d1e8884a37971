package delivery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// Errors of the webhook management calls. Both wrap store errors or are
// returned as they are, so errors.Is works with either.
var (
	// ErrNotFound: no such webhook or delivery for this practice and app
	// (another app's webhook is not found either). Wraps store.ErrNotFound.
	ErrNotFound = fmt.Errorf("delivery: %w", store.ErrNotFound)
	// ErrInvalid: the request cannot be honoured as given (bad URL, unknown
	// practice, a replay of a delivery that is not dead).
	ErrInvalid = errors.New("delivery: invalid request")
)

// Webhook is a subscription as apps see it: everything but the secret.
type Webhook struct {
	ID        string    `json:"id"`
	Practice  string    `json:"practice"`
	App       string    `json:"app"`
	URL       string    `json:"url"`
	Types     []string  `json:"types,omitempty"` // empty: all resource types
	Active    bool      `json:"active"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

func viewOf(w store.Webhook) Webhook {
	return Webhook{ID: w.ID, Practice: w.Practice, App: w.App, URL: w.URL, Types: w.Types, Active: w.Active,
		CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt}
}

// WebhookSpec asks for a new webhook.
type WebhookSpec struct {
	Practice string
	App      string
	URL      string
	Types    []string // FHIR resource types; empty: all
}

// WebhookChange changes a webhook; nil fields stay as they are.
type WebhookChange struct {
	URL    *string
	Types  *[]string
	Active *bool
}

// checkURL accepts https URLs, and http ones to loopback hosts (or any with
// AllowInsecureURLs). User information and fragments are refused: the URL is
// stored and shown as it is.
func (d *Dispatcher) checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return fmt.Errorf("%w: the webhook URL must be an absolute http(s) URL", ErrInvalid)
	}
	if u.User != nil {
		return fmt.Errorf("%w: the webhook URL must not contain credentials", ErrInvalid)
	}
	if u.Fragment != "" {
		return fmt.Errorf("%w: the webhook URL must not have a fragment", ErrInvalid)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if d.opts.AllowInsecureURLs || isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%w: the webhook URL must use https (plain http only to loopback)", ErrInvalid)
	}
	return fmt.Errorf("%w: the webhook URL must use https", ErrInvalid)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkTypes(types []string) ([]string, error) {
	var out []string
	for _, t := range types {
		t = strings.TrimSpace(t)
		if t == "" || strings.ContainsAny(t, " ,/?") {
			return nil, fmt.Errorf("%w: %q is not a resource type", ErrInvalid, t)
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// CreateWebhook registers a webhook and returns it with its secret. The
// secret is shown this once: the store keeps it sealed.
func (d *Dispatcher) CreateWebhook(ctx context.Context, spec WebhookSpec) (Webhook, string, error) {
	if !d.practices[spec.Practice] {
		return Webhook{}, "", fmt.Errorf("%w: unknown practice", ErrInvalid)
	}
	if spec.App == "" {
		return Webhook{}, "", fmt.Errorf("%w: no app", ErrInvalid)
	}
	if err := d.checkURL(spec.URL); err != nil {
		return Webhook{}, "", err
	}
	types, err := checkTypes(spec.Types)
	if err != nil {
		return Webhook{}, "", err
	}
	id := newID("wh_")
	secret := newSecret()
	w := store.Webhook{ID: id, Practice: spec.Practice, App: spec.App, URL: spec.URL, Types: types, Active: true,
		SealedSecret: d.seal.seal(spec.Practice, id, []byte(secret))}
	if err := d.st.PutWebhook(ctx, w); err != nil {
		return Webhook{}, "", fmt.Errorf("delivery: create webhook: %w", err)
	}
	stored, err := d.st.GetWebhook(ctx, spec.Practice, id)
	if err != nil {
		return Webhook{}, "", fmt.Errorf("delivery: create webhook: %w", err)
	}
	d.log.Info("webhooks: webhook created", "practice", spec.Practice, "app", spec.App, "webhook", id)
	return viewOf(stored), secret, nil
}

// own returns the app's webhook, or ErrNotFound.
func (d *Dispatcher) own(ctx context.Context, practice, app, id string) (store.Webhook, error) {
	if !d.practices[practice] {
		return store.Webhook{}, ErrNotFound
	}
	w, err := d.st.GetWebhook(ctx, practice, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && w.App != app) {
		return store.Webhook{}, ErrNotFound
	}
	if err != nil {
		return store.Webhook{}, fmt.Errorf("delivery: read webhook: %w", err)
	}
	return w, nil
}

// Webhook returns one of the app's webhooks.
func (d *Dispatcher) Webhook(ctx context.Context, practice, app, id string) (Webhook, error) {
	w, err := d.own(ctx, practice, app, id)
	if err != nil {
		return Webhook{}, err
	}
	return viewOf(w), nil
}

// Webhooks lists the app's webhooks of the practice.
func (d *Dispatcher) Webhooks(ctx context.Context, practice, app string) ([]Webhook, error) {
	if !d.practices[practice] {
		return []Webhook{}, nil
	}
	ws, err := d.st.ListWebhooks(ctx, practice, store.WebhookFilter{App: app})
	if err != nil {
		return nil, fmt.Errorf("delivery: list webhooks: %w", err)
	}
	out := make([]Webhook, 0, len(ws))
	for _, w := range ws {
		out = append(out, viewOf(w))
	}
	return out, nil
}

// UpdateWebhook changes the URL, types or active flag of one of the app's
// webhooks. A deactivated webhook gets no new events and its pending ones
// wait; reactivated, it gets them, in order.
func (d *Dispatcher) UpdateWebhook(ctx context.Context, practice, app, id string, ch WebhookChange) (Webhook, error) {
	w, err := d.own(ctx, practice, app, id)
	if err != nil {
		return Webhook{}, err
	}
	if ch.URL != nil {
		if err := d.checkURL(*ch.URL); err != nil {
			return Webhook{}, err
		}
		w.URL = *ch.URL
	}
	if ch.Types != nil {
		if w.Types, err = checkTypes(*ch.Types); err != nil {
			return Webhook{}, err
		}
	}
	if ch.Active != nil {
		w.Active = *ch.Active
	}
	if err := d.st.PutWebhook(ctx, w); err != nil {
		return Webhook{}, fmt.Errorf("delivery: update webhook: %w", err)
	}
	if w.Active {
		d.wakeSender(practice)
	}
	return d.Webhook(ctx, practice, app, id)
}

// RotateSecret gives one of the app's webhooks a new secret and returns it.
// Requests signed from then on use the new secret only.
func (d *Dispatcher) RotateSecret(ctx context.Context, practice, app, id string) (string, error) {
	w, err := d.own(ctx, practice, app, id)
	if err != nil {
		return "", err
	}
	secret := newSecret()
	w.SealedSecret = d.seal.seal(practice, id, []byte(secret))
	if err := d.st.PutWebhook(ctx, w); err != nil {
		return "", fmt.Errorf("delivery: rotate secret: %w", err)
	}
	d.log.Info("webhooks: secret rotated", "practice", practice, "app", app, "webhook", id)
	return secret, nil
}

// DeadLetters lists the app's dead deliveries of the practice, newest first:
// of one webhook (webhookID != ""), before an id (beforeID > 0, paging), at
// most limit (0: 100).
func (d *Dispatcher) DeadLetters(ctx context.Context, practice, app, webhookID string, beforeID int64, limit int) ([]store.Delivery, error) {
	if !d.practices[practice] {
		return []store.Delivery{}, nil
	}
	ds, err := d.st.ListDeliveries(ctx, practice, store.DeliveryFilter{WebhookID: webhookID, App: app,
		Status: []string{store.DeliveryDead}, BeforeID: beforeID, Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("delivery: list dead letters: %w", err)
	}
	return ds, nil
}

// Replay makes one of the app's dead deliveries pending again, due now,
// with a fresh retry window. It goes out before the pending events queued
// after it.
func (d *Dispatcher) Replay(ctx context.Context, practice, app string, deliveryID int64) error {
	if !d.practices[practice] {
		return ErrNotFound
	}
	del, err := d.st.GetDelivery(ctx, practice, deliveryID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && del.App != app) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("delivery: replay: %w", err)
	}
	err = d.st.ReplayDelivery(ctx, practice, deliveryID, d.opts.Now().UTC())
	if errors.Is(err, store.ErrDeliveryState) {
		return fmt.Errorf("%w: delivery %d is %s, not dead", ErrInvalid, deliveryID, del.Status)
	}
	if err != nil {
		return fmt.Errorf("delivery: replay: %w", err)
	}
	d.log.Info("webhooks: dead delivery replayed", "practice", practice, "app", app, "delivery", deliveryID, "webhook", del.WebhookID)
	d.wakeSender(practice)
	return nil
}

// Counts returns the deliveries of one of the app's webhooks by status.
func (d *Dispatcher) Counts(ctx context.Context, practice, app, id string) (map[string]int, error) {
	if _, err := d.own(ctx, practice, app, id); err != nil {
		return nil, err
	}
	c, err := d.st.CountDeliveries(ctx, practice, id)
	if err != nil {
		return nil, fmt.Errorf("delivery: count deliveries: %w", err)
	}
	return c, nil
}
