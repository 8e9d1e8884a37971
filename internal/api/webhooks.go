package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/delivery"
	"github.com/mediflow/mediflow/internal/store"
)

// Webhooks manages apps' webhooks and their dead letters (docs/delivery.md).
// *delivery.Dispatcher implements it. Every call is scoped to one practice
// and one app: another app's webhook or delivery is delivery.ErrNotFound.
type Webhooks interface {
	CreateWebhook(ctx context.Context, spec delivery.WebhookSpec) (delivery.Webhook, string, error)
	Webhooks(ctx context.Context, practice, app string) ([]delivery.Webhook, error)
	Webhook(ctx context.Context, practice, app, id string) (delivery.Webhook, error)
	UpdateWebhook(ctx context.Context, practice, app, id string, ch delivery.WebhookChange) (delivery.Webhook, error)
	RotateSecret(ctx context.Context, practice, app, id string) (string, error)
	DeadLetters(ctx context.Context, practice, app, webhookID string, beforeID int64, limit int) ([]store.Delivery, error)
	Replay(ctx context.Context, practice, app string, deliveryID int64) error
	Counts(ctx context.Context, practice, app, id string) (map[string]int, error)
}

var _ Webhooks = (*delivery.Dispatcher)(nil)

// Limits of the webhook endpoints.
const (
	maxWebhookBody         = 64 << 10
	defaultDeadLetterLimit = 100
	maxDeadLetterLimit     = 1000
)

// msgNoWebhooks answers every webhook call when no dispatcher is configured.
const msgNoWebhooks = "webhooks are not enabled on this server: the operator must set store.secret_key in the configuration (see docs/delivery.md)"

// webhookJSON is a webhook as the API shows it; Secret is set only in the
// answers to a creation (and a rotation shows the secret alone).
type webhookJSON struct {
	delivery.Webhook
	Secret string `json:"secret,omitempty"`
	// Deliveries counts the webhook's deliveries by status (single reads).
	Deliveries map[string]int `json:"deliveries,omitempty"`
}

type deadLetterJSON struct {
	ID          int64           `json:"id"`
	WebhookID   string          `json:"webhookId"`
	EventID     string          `json:"eventId"`
	Seq         int64           `json:"seq"`
	Attempts    int             `json:"attempts"`
	LastError   string          `json:"lastError"`
	LastAttempt *time.Time      `json:"lastAttempt,omitempty"`
	CreatedAt   time.Time       `json:"createdAt"`
	Event       json.RawMessage `json:"event,omitempty"` // the notification as sent (PHI-free)
}

// webhookCall starts every webhook handler: it names the audit entity and
// answers 501 when webhooks are not configured (false: answered).
func (s *server) webhookCall(c *call, entity string) bool {
	c.entity = entity
	if s.webhooks == nil {
		c.fail(http.StatusNotImplemented, "not-supported", msgNoWebhooks)
		return false
	}
	return true
}

// webhookFailed maps a delivery error to the answer: ErrNotFound → 404,
// ErrInvalid → 400 (or invalidStatus), anything else → 500.
func (s *server) webhookFailed(ctx context.Context, c *call, op string, err error, invalidStatus int) {
	switch {
	case errors.Is(err, delivery.ErrNotFound):
		c.fail(http.StatusNotFound, "not-found", "no such webhook or delivery of this app in this practice")
	case errors.Is(err, delivery.ErrInvalid):
		code := "invalid"
		if invalidStatus == http.StatusConflict {
			code = "conflict"
		}
		c.fail(invalidStatus, code, strings.TrimPrefix(err.Error(), delivery.ErrInvalid.Error()+": "))
	default:
		s.log.ErrorContext(ctx, "webhook call failed", "op", op, "practice", c.practice, "app", c.app.name, "err", err)
		c.fail(http.StatusInternalServerError, "exception", "the webhook store could not answer")
	}
}

// decodeBody reads a JSON object into v, refusing unknown keys and trailing data.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("the body is larger than %d bytes", maxWebhookBody)
		}
		if errors.Is(err, io.EOF) {
			return errors.New("the body must be a JSON object")
		}
		// The decoder names the offending key or type, never a value.
		return fmt.Errorf("the body is not a valid request: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return errors.New("the body must hold one JSON object")
	}
	return nil
}

func (s *server) webhookAnswer(c *call, status int, v any) {
	b, err := marshalLine(v)
	if err != nil {
		c.fail(http.StatusInternalServerError, "exception", "cannot encode the answer")
		return
	}
	c.respond(status, plainJSON, b)
}

func webhookPath(r *http.Request, s *server, practice, id string) string {
	return s.baseURL(r) + "/v1/practices/" + url.PathEscape(practice) + "/webhooks/" + url.PathEscape(id)
}

// createWebhook: POST /v1/practices/{practice}/webhooks {"url": ..., "types": [...]}
func (s *server) createWebhook(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.webhookCall(c, "webhooks") {
		return
	}
	var body struct {
		URL   string   `json:"url"`
		Types []string `json:"types"`
	}
	if err := decodeBody(w, r, &body); err != nil {
		c.fail(http.StatusBadRequest, "invalid", err.Error())
		return
	}
	if body.URL == "" {
		c.fail(http.StatusBadRequest, "required", "url is required")
		return
	}
	wh, secret, err := s.webhooks.CreateWebhook(r.Context(), delivery.WebhookSpec{Practice: c.practice, App: c.app.name, URL: body.URL, Types: body.Types})
	if err != nil {
		s.webhookFailed(r.Context(), c, "create", err, http.StatusBadRequest)
		return
	}
	c.entity = "webhooks/" + clip(wh.ID)
	w.Header().Set("Location", webhookPath(r, s, c.practice, wh.ID))
	s.webhookAnswer(c, http.StatusCreated, webhookJSON{Webhook: wh, Secret: secret})
}

// listWebhooks: GET /v1/practices/{practice}/webhooks, the caller's webhooks (never their secrets).
func (s *server) listWebhooks(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.webhookCall(c, "webhooks") {
		return
	}
	ws, err := s.webhooks.Webhooks(r.Context(), c.practice, c.app.name)
	if err != nil {
		s.webhookFailed(r.Context(), c, "list", err, http.StatusBadRequest)
		return
	}
	out := struct {
		Webhooks []webhookJSON `json:"webhooks"`
	}{Webhooks: make([]webhookJSON, 0, len(ws))}
	for _, wh := range ws {
		out.Webhooks = append(out.Webhooks, webhookJSON{Webhook: wh})
	}
	s.webhookAnswer(c, http.StatusOK, out)
}

// getWebhook: GET /v1/practices/{practice}/webhooks/{id}, with delivery counts.
func (s *server) getWebhook(w http.ResponseWriter, r *http.Request, c *call) {
	id := r.PathValue("id")
	if !s.webhookCall(c, "webhooks/"+clip(id)) {
		return
	}
	wh, err := s.webhooks.Webhook(r.Context(), c.practice, c.app.name, id)
	if err != nil {
		s.webhookFailed(r.Context(), c, "read", err, http.StatusBadRequest)
		return
	}
	counts, err := s.webhooks.Counts(r.Context(), c.practice, c.app.name, id)
	if err != nil {
		s.webhookFailed(r.Context(), c, "counts", err, http.StatusBadRequest)
		return
	}
	full := map[string]int{store.DeliveryPending: 0, store.DeliveryDelivered: 0, store.DeliveryDead: 0}
	for k, n := range counts {
		full[k] = n
	}
	s.webhookAnswer(c, http.StatusOK, webhookJSON{Webhook: wh, Deliveries: full})
}

// updateWebhook: PATCH /v1/practices/{practice}/webhooks/{id} {"url", "types", "active"}; absent keys stay.
func (s *server) updateWebhook(w http.ResponseWriter, r *http.Request, c *call) {
	id := r.PathValue("id")
	if !s.webhookCall(c, "webhooks/"+clip(id)) {
		return
	}
	var body struct {
		URL    *string   `json:"url"`
		Types  *[]string `json:"types"`
		Active *bool     `json:"active"`
	}
	if err := decodeBody(w, r, &body); err != nil {
		c.fail(http.StatusBadRequest, "invalid", err.Error())
		return
	}
	if body.URL == nil && body.Types == nil && body.Active == nil {
		c.fail(http.StatusBadRequest, "required", "give at least one of url, types and active")
		return
	}
	wh, err := s.webhooks.UpdateWebhook(r.Context(), c.practice, c.app.name, id,
		delivery.WebhookChange{URL: body.URL, Types: body.Types, Active: body.Active})
	if err != nil {
		s.webhookFailed(r.Context(), c, "update", err, http.StatusBadRequest)
		return
	}
	s.webhookAnswer(c, http.StatusOK, webhookJSON{Webhook: wh})
}

// rotateSecret: POST /v1/practices/{practice}/webhooks/{id}/rotate-secret → {"id", "secret"}.
func (s *server) rotateSecret(w http.ResponseWriter, r *http.Request, c *call) {
	id := r.PathValue("id")
	if !s.webhookCall(c, "webhooks/"+clip(id)) {
		return
	}
	secret, err := s.webhooks.RotateSecret(r.Context(), c.practice, c.app.name, id)
	if err != nil {
		s.webhookFailed(r.Context(), c, "rotate", err, http.StatusBadRequest)
		return
	}
	s.webhookAnswer(c, http.StatusOK, struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}{ID: id, Secret: secret})
}

// deadLetters: GET /v1/practices/{practice}/webhooks/dead-letters?webhook=&before=&limit=,
// newest first; "next" is the URL of the next page when this one is full.
func (s *server) deadLetters(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.webhookCall(c, "dead-letters") {
		return
	}
	q := r.URL.Query()
	var before int64
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			c.fail(http.StatusBadRequest, "invalid", "before must be a delivery id (a positive integer)")
			return
		}
		before = n
	}
	limit := defaultDeadLetterLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			c.fail(http.StatusBadRequest, "invalid", "limit must be a positive integer")
			return
		}
		limit = min(n, maxDeadLetterLimit)
	}
	webhook := q.Get("webhook")
	ds, err := s.webhooks.DeadLetters(r.Context(), c.practice, c.app.name, webhook, before, limit)
	if err != nil {
		s.webhookFailed(r.Context(), c, "dead-letters", err, http.StatusBadRequest)
		return
	}
	out := struct {
		DeadLetters []deadLetterJSON `json:"deadLetters"`
		Next        string           `json:"next,omitempty"`
	}{DeadLetters: make([]deadLetterJSON, 0, len(ds))}
	for _, d := range ds {
		dl := deadLetterJSON{ID: d.ID, WebhookID: d.WebhookID, EventID: d.EventID, Seq: d.Seq, Attempts: d.Attempts,
			LastError: d.LastError, CreatedAt: d.CreatedAt.UTC()}
		if !d.LastAttempt.IsZero() {
			t := d.LastAttempt.UTC()
			dl.LastAttempt = &t
		}
		if json.Valid(d.Payload) {
			dl.Event = d.Payload
		}
		out.DeadLetters = append(out.DeadLetters, dl)
	}
	if len(ds) == limit {
		next := url.Values{}
		if webhook != "" {
			next.Set("webhook", webhook)
		}
		next.Set("before", strconv.FormatInt(ds[len(ds)-1].ID, 10))
		next.Set("limit", strconv.Itoa(limit))
		out.Next = s.baseURL(r) + "/v1/practices/" + url.PathEscape(c.practice) + "/webhooks/dead-letters?" + next.Encode()
	}
	s.webhookAnswer(c, http.StatusOK, out)
}

// replayDeadLetter: POST /v1/practices/{practice}/webhooks/dead-letters/{id}/replay → 202.
func (s *server) replayDeadLetter(w http.ResponseWriter, r *http.Request, c *call) {
	raw := r.PathValue("id")
	if !s.webhookCall(c, "dead-letters/"+clip(raw)) {
		return
	}
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id < 1 {
		c.fail(http.StatusNotFound, "not-found", "no such webhook or delivery of this app in this practice")
		return
	}
	if err := s.webhooks.Replay(r.Context(), c.practice, c.app.name, id); err != nil {
		s.webhookFailed(r.Context(), c, "replay", err, http.StatusConflict)
		return
	}
	s.webhookAnswer(c, http.StatusAccepted, struct {
		ID     int64  `json:"id"`
		Status string `json:"status"`
	}{ID: id, Status: store.DeliveryPending})
}
