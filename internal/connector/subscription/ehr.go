package subscription

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Canonical URLs of the Subscriptions R5 Backport IG.
const (
	backportSD          = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
	extFilterCriteria   = backportSD + "backport-filter-criteria"
	extHeartbeatPeriod  = backportSD + "backport-heartbeat-period"
	extTimeout          = backportSD + "backport-timeout"
	extMaxCount         = backportSD + "backport-max-count"
	extPayloadContent   = backportSD + "backport-payload-content"
	profileSubscription = backportSD + "backport-subscription"
)

// ErrUnsupported is returned (wrapped) when the EHR does not implement an
// operation ($events, $status): 405, 501, or a 400 to $events.
var ErrUnsupported = errors.New("subscription: operation not supported by the EHR")

// ErrNotFound is returned (wrapped) when the Subscription does not exist on the EHR.
var ErrNotFound = errors.New("subscription: not found on the EHR")

// ehrError is a failed request to the EHR; its message holds no query and no body.
type ehrError struct {
	method, path string
	status       int
	err          error
}

func (e *ehrError) Error() string {
	s := "subscription: " + e.method + " " + e.path
	if e.status != 0 {
		s += ": HTTP " + strconv.Itoa(e.status)
	}
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

func (e *ehrError) Unwrap() error { return e.err }

// hubSecretHeader carries the hub secret on the Subscription create
// (athenahealth's Event Subscription Platform registers it this way).
const hubSecretHeader = "X-Hub-Secret"

// call sends one request to [base]/path with the bearer token, retrying
// network errors, 429 and 5xx a few times and a 401 once with a fresh
// token. It returns the 2xx answer's body.
func (m *Manager) call(ctx context.Context, method, path string, query url.Values, body []byte) ([]byte, int, error) {
	return m.callWith(ctx, method, path, query, body, nil)
}

// callWith is call with extra request headers.
func (m *Manager) callWith(ctx context.Context, method, path string, query url.Values, body []byte, hdr http.Header) ([]byte, int, error) {
	u := m.base + "/" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	authRetried := false
	var last error
	for attempt := 0; attempt < 4; attempt++ {
		if attempt > 0 {
			if err := sleep(ctx, time.Duration(attempt)*m.cfg.RetryWait); err != nil {
				return nil, 0, &ehrError{method: method, path: path, err: err}
			}
		}
		var tok string
		if m.cfg.Tokens != nil {
			t, err := m.cfg.Tokens.Token(ctx)
			if err != nil {
				return nil, 0, &ehrError{method: method, path: path, err: fmt.Errorf("getting an access token: %w", err)}
			}
			tok = t
		}
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, u, rd)
		if err != nil {
			return nil, 0, &ehrError{method: method, path: path, err: errors.New("cannot build the request")}
		}
		req.Header.Set("Accept", "application/fhir+json")
		if body != nil {
			req.Header.Set("Content-Type", "application/fhir+json")
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		for k, vs := range hdr {
			req.Header[k] = vs
		}
		res, err := m.cfg.HTTPClient.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, 0, &ehrError{method: method, path: path, err: ctx.Err()}
			}
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // the wrapper prints the URL with its query
			}
			last = &ehrError{method: method, path: path, err: err}
			continue
		}
		rb, rerr := io.ReadAll(io.LimitReader(res.Body, 64<<20))
		res.Body.Close()
		switch st := res.StatusCode; {
		case st >= 200 && st < 300:
			if rerr != nil {
				last = &ehrError{method: method, path: path, status: st, err: errors.New("reading the body failed")}
				continue
			}
			return rb, st, nil
		case st == http.StatusUnauthorized && m.cfg.Tokens != nil && !authRetried:
			authRetried = true
			m.cfg.Tokens.Invalidate(tok)
			attempt-- // the token refresh does not count as a retry
			continue
		case st == http.StatusTooManyRequests || st >= 500 && st != http.StatusNotImplemented:
			last = &ehrError{method: method, path: path, status: st}
			continue
		case st == http.StatusNotFound || st == http.StatusGone:
			return nil, st, &ehrError{method: method, path: path, status: st, err: ErrNotFound}
		case st == http.StatusMethodNotAllowed || st == http.StatusNotImplemented:
			return nil, st, &ehrError{method: method, path: path, status: st, err: ErrUnsupported}
		default:
			return nil, st, &ehrError{method: method, path: path, status: st}
		}
	}
	return nil, 0, last
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// subscriptionResource renders the Subscription we ask for.
func (m *Manager) subscriptionResource() ([]byte, error) {
	c := m.cfg
	type ext struct {
		URL              string `json:"url"`
		ValueString      string `json:"valueString,omitempty"`
		ValueCode        string `json:"valueCode,omitempty"`
		ValueUnsignedInt *int   `json:"valueUnsignedInt,omitempty"`
		ValuePositiveInt *int   `json:"valuePositiveInt,omitempty"`
	}
	type extHost struct {
		Extension []ext `json:"extension"`
	}
	secs := func(d time.Duration) *int {
		n := int((d + time.Second - 1) / time.Second)
		return &n
	}
	channel := map[string]any{
		"type":     "rest-hook",
		"endpoint": c.Endpoint,
		"payload":  "application/fhir+json",
		"_payload": extHost{Extension: []ext{{URL: extPayloadContent, ValueCode: string(c.Payload)}}},
	}
	exts := []ext{{URL: extHeartbeatPeriod, ValueUnsignedInt: secs(c.HeartbeatPeriod)}}
	if c.DeliveryTimeout > 0 {
		exts = append(exts, ext{URL: extTimeout, ValueUnsignedInt: secs(c.DeliveryTimeout)})
	}
	if c.MaxCount > 0 {
		n := c.MaxCount
		exts = append(exts, ext{URL: extMaxCount, ValuePositiveInt: &n})
	}
	channel["extension"] = exts
	if c.Secret != "" {
		channel["header"] = []string{"Authorization: Bearer " + c.Secret}
	}
	sub := map[string]any{
		"resourceType": "Subscription",
		"meta":         map[string]any{"profile": []string{profileSubscription}},
		"status":       "requested",
		"reason":       "mediflow real-time sync (" + c.Practice + "/" + c.Connection + ")",
		"criteria":     c.Topic,
		"channel":      channel,
	}
	if len(c.Filters) > 0 {
		var fs []ext
		for _, f := range c.Filters {
			fs = append(fs, ext{URL: extFilterCriteria, ValueString: f})
		}
		sub["_criteria"] = extHost{Extension: fs}
	}
	return json.Marshal(sub)
}

// remoteSubscription is what we read back of a Subscription.
type remoteSubscription struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Criteria string `json:"criteria"`
	Channel  struct {
		Endpoint string `json:"endpoint"`
	} `json:"channel"`
}

func (m *Manager) createSubscription(ctx context.Context) (string, error) {
	body, err := m.subscriptionResource()
	if err != nil {
		return "", fmt.Errorf("subscription: rendering the Subscription: %w", err)
	}
	var hdr http.Header
	if m.cfg.HubSecret != "" {
		hdr = http.Header{hubSecretHeader: {m.cfg.HubSecret}}
	}
	rb, _, err := m.callWith(ctx, http.MethodPost, "Subscription", nil, body, hdr)
	if err != nil {
		return "", err
	}
	var rs remoteSubscription
	if err := json.Unmarshal(rb, &rs); err != nil || !validID(rs.ID) {
		return "", errors.New("subscription: the EHR's answer to the create has no Subscription id")
	}
	return rs.ID, nil
}

func (m *Manager) readSubscription(ctx context.Context, id string) (*remoteSubscription, error) {
	rb, _, err := m.call(ctx, http.MethodGet, "Subscription/"+id, nil, nil)
	if err != nil {
		return nil, err
	}
	var rs remoteSubscription
	if err := json.Unmarshal(rb, &rs); err != nil {
		return nil, errors.New("subscription: the EHR's Subscription is not readable JSON")
	}
	return &rs, nil
}

func (m *Manager) deleteSubscription(ctx context.Context, id string) error {
	_, _, err := m.call(ctx, http.MethodDelete, "Subscription/"+id, nil, nil)
	return err
}

// queryStatus calls $status.
func (m *Manager) queryStatus(ctx context.Context, id string) (*notification, error) {
	rb, _, err := m.call(ctx, http.MethodGet, "Subscription/"+id+"/$status", nil, nil)
	if err != nil {
		return nil, err
	}
	n, err := parseNotification(rb, m.base)
	if err != nil {
		return nil, fmt.Errorf("subscription: $status answer: %w", err)
	}
	return n, nil
}

// queryEvents calls $events for [from, to], asking for full resources when
// our payload has them and ids otherwise (a hint the EHR may ignore).
func (m *Manager) queryEvents(ctx context.Context, id string, from, to int64) (*notification, error) {
	content := PayloadIDOnly
	if m.cfg.Payload == PayloadFullResource {
		content = PayloadFullResource
	}
	q := url.Values{
		"eventsSinceNumber": {strconv.FormatInt(from, 10)},
		"eventsUntilNumber": {strconv.FormatInt(to, 10)},
		"content":           {string(content)},
	}
	rb, status, err := m.call(ctx, http.MethodGet, "Subscription/"+id+"/$events", q, nil)
	if err != nil {
		if status == http.StatusBadRequest {
			return nil, fmt.Errorf("%w: %w", ErrUnsupported, err)
		}
		return nil, err
	}
	n, err := parseNotification(rb, m.base)
	if err != nil {
		return nil, fmt.Errorf("subscription: $events answer: %w", err)
	}
	return n, nil
}
