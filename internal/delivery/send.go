package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

type outcome int

const (
	outcomeRetry outcome = iota
	outcomeDelivered
	outcomeDead
)

// result is what one attempt came to.
type result struct {
	outcome     outcome
	status      int           // HTTP status (0: no answer)
	retryAfter  time.Duration // from a Retry-After header (0: none)
	reason      string        // PHI-free, for the store and logs
	interrupted bool          // ctx ended during the attempt
}

const (
	// maxErrorText bounds a stored reason.
	maxErrorText = 300
	// drainLimit is how much of an answer's body is read (and discarded) so
	// the connection can be reused.
	drainLimit = 16 << 10
	userAgent  = "mediflow-webhooks/1"
)

// attempt sends one claimed delivery to its webhook.
func (d *Dispatcher) attempt(ctx context.Context, del store.Delivery) result {
	hook, err := d.st.GetWebhook(ctx, del.Practice, del.WebhookID)
	if err != nil {
		if ctx.Err() != nil {
			return result{interrupted: true}
		}
		if errors.Is(err, store.ErrNotFound) {
			return result{outcome: outcomeDead, reason: "the webhook no longer exists"}
		}
		return result{outcome: outcomeRetry, reason: "cannot read the webhook from the store"}
	}
	secret, err := d.seal.open(hook.Practice, hook.ID, hook.SealedSecret)
	if err != nil {
		d.log.Error("webhooks: "+err.Error(), "practice", hook.Practice, "webhook", hook.ID)
		return result{outcome: outcomeRetry, reason: err.Error()}
	}
	rctx, cancel := context.WithTimeout(ctx, d.opts.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, hook.URL, bytes.NewReader(del.Payload))
	if err != nil {
		return result{outcome: outcomeDead, reason: "the webhook URL is not usable"}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(SignatureHeader, Sign(secret, d.opts.Now(), del.Payload))
	req.Header.Set(EventIDHeader, del.EventID)
	req.Header.Set(IdempotencyKeyHeader, del.EventID)
	req.Header.Set(AttemptHeader, strconv.Itoa(del.Attempts))
	resp, err := d.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return result{interrupted: true}
		}
		return result{outcome: outcomeRetry, reason: clip("no answer: " + transportReason(err, d.opts.RequestTimeout))}
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	resp.Body.Close()
	return classify(resp, d.opts.Now())
}

// classify turns an answer into an outcome: 2xx delivered; 408, 429 and 5xx
// retried (with the Retry-After delay, if any); anything else dead.
func classify(resp *http.Response, now time.Time) result {
	code := resp.StatusCode
	r := result{status: code, reason: "HTTP " + strconv.Itoa(code)}
	if t := http.StatusText(code); t != "" {
		r.reason += " " + t
	}
	switch {
	case code >= 200 && code < 300:
		r.outcome, r.reason = outcomeDelivered, ""
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		r.outcome = outcomeRetry
		r.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	case code >= 300 && code < 400:
		r.outcome = outcomeDead
		r.reason += ": redirects are not followed; register the final URL"
	default:
		r.outcome = outcomeDead
		r.reason += ": refused by the receiver"
	}
	return r
}

// parseRetryAfter reads a Retry-After value: delay seconds or an HTTP date.
// It returns 0 when there is none or it cannot be read.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(30*24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// transportReason describes a failed request without its URL (a query
// string may hold a token).
func transportReason(err error, timeout time.Duration) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("timeout after %s", timeout)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Sprintf("timeout after %s", timeout)
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		if oe.Err != nil {
			return oe.Op + ": " + oe.Err.Error()
		}
		return oe.Op + " failed"
	}
	return err.Error()
}

func clip(s string) string {
	if len(s) <= maxErrorText {
		return s
	}
	cut := maxErrorText
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
