package bulk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/connector/fhirrest"
	"github.com/mediflow/mediflow/internal/fhir"
)

// maxRedirects bounds a redirect chain.
const maxRedirects = 10

// tokenScope is where a request may carry the bearer token: one origin
// and, within it, one path prefix.
type tokenScope struct {
	origin string
	prefix string // escaped path prefix, "/" for the whole origin
}

func (s tokenScope) allows(u *url.URL) bool {
	if s.origin == "" || originOf(u) != s.origin {
		return false
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	return strings.HasPrefix(p, s.prefix)
}

// serverScope is the FHIR server's origin (kick-off, status, cancel).
func (c *Client) serverScope() tokenScope { return tokenScope{origin: c.origin, prefix: "/"} }

// fileScope is the directory of a file URL on the server's origin.
func fileScope(u *url.URL) tokenScope {
	p := u.EscapedPath()
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		p = p[:i+1]
	} else {
		p = "/"
	}
	return tokenScope{origin: originOf(u), prefix: p}
}

// resolve makes link absolute against ref.
func resolve(ref *url.URL, link string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(link))
	if err != nil || link == "" {
		return nil, errors.New("not a URL")
	}
	if !u.IsAbs() {
		u = ref.ResolveReference(u)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("not an http(s) URL")
	}
	return u, nil
}

// token returns a token when the client has a token source.
func (c *Client) token(ctx context.Context) (string, error) {
	if c.tokens == nil {
		return "", nil
	}
	t, err := c.tokens.Token(ctx)
	if err != nil {
		return "", fmt.Errorf("getting an access token: %w", err)
	}
	return t, nil
}

// tokenRetryable reports whether a token failure is worth retrying.
func tokenRetryable(err error) bool {
	var te fhirrest.RetryableTokenError
	if errors.As(err, &te) {
		return te.Retryable()
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// send sends one request and follows redirects itself: each hop carries the
// token only when scope allows its URL. A 303 turns the method into GET.
func (c *Client) send(ctx context.Context, method string, u *url.URL, hdr http.Header, tok string, scope tokenScope) (*http.Response, error) {
	for hop := 0; ; hop++ {
		req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
		if err != nil {
			return nil, errors.New("cannot build the request")
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		req.Header["User-Agent"] = []string{c.cfg.UserAgent}
		if tok != "" && scope.allows(u) {
			req.Header["Authorization"] = []string{"Bearer " + tok}
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // it prints the full URL, query included
			}
			return nil, err
		}
		switch resp.StatusCode {
		case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		default:
			return resp, nil
		}
		loc := resp.Header.Get("Location")
		drain(resp)
		if loc == "" {
			return nil, fmt.Errorf("redirect (HTTP %d) without a Location", resp.StatusCode)
		}
		if hop >= maxRedirects {
			return nil, fmt.Errorf("more than %d redirects", maxRedirects)
		}
		next, err := resolve(u, loc)
		if err != nil {
			return nil, fmt.Errorf("redirect Location: %w", err)
		}
		if resp.StatusCode == http.StatusSeeOther {
			method = http.MethodGet
		}
		u = next
	}
}

// drain reads a little of an unwanted body so the connection can be reused.
func drain(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
}

// readSmall reads a body of a status-like response (bounded).
func readSmall(resp *http.Response, max int64) ([]byte, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("body larger than %d bytes", max)
	}
	return b, nil
}

// outcomeOf parses an OperationOutcome body, nil when it is not one.
func outcomeOf(body []byte) *fhir.OperationOutcome {
	if oo, ok := fhir.ParseOutcome(body); ok {
		return oo
	}
	return nil
}

// retryAfter reads a Retry-After header (delay-seconds or HTTP-date).
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	return fhirrest.ParseRetryAfter(h.Get("Retry-After"), now)
}

func clamp(d, lo, hi time.Duration) time.Duration {
	if d < lo {
		return lo
	}
	if d > hi {
		return hi
	}
	return d
}

// backoff is the full-jitter wait before retry n (0-based).
func (c *Client) backoff(n int) time.Duration {
	ceil := c.cfg.BaseBackoff
	for i := 0; i < n && ceil < c.cfg.MaxBackoff; i++ {
		ceil *= 2
	}
	if ceil > c.cfg.MaxBackoff {
		ceil = c.cfg.MaxBackoff
	}
	f := c.cfg.Rand()
	if f < 0 || f >= 1 {
		f = 0
	}
	return time.Duration(f * float64(ceil))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
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

// originOf is scheme://host[:port] in lower case, default ports dropped.
func originOf(u *url.URL) string { return fhirrest.OriginOf(u) }

func validType(t string) bool {
	if t == "" || t[0] < 'A' || t[0] > 'Z' || len(t) > 64 {
		return false
	}
	for i := 0; i < len(t); i++ {
		ch := t[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z') {
			return false
		}
	}
	return true
}
