package bulk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
)

var (
	hdrKickoff = http.Header{"Accept": {"application/fhir+json"}, "Prefer": {"respond-async"}}
	hdrStatus  = http.Header{"Accept": {"application/json"}}
	hdrCancel  = http.Header{"Accept": {"application/fhir+json"}}
)

// maxStatusBody bounds a kick-off, status or cancel response body.
const maxStatusBody = 32 << 20

// KickoffURL returns the $export URL for req, or an error when req is invalid.
func (c *Client) KickoffURL(req Request) (string, error) {
	var path string
	switch req.Level {
	case LevelSystem, "":
		path = "/$export"
	case LevelPatient:
		path = "/Patient/$export"
	case LevelGroup:
		if req.GroupID == "" {
			return "", errors.New("bulk: a group export needs a GroupID")
		}
		path = "/Group/" + url.PathEscape(req.GroupID) + "/$export"
	default:
		return "", fmt.Errorf("bulk: unknown export level %q (want system, patient or group)", req.Level)
	}
	q := url.Values{}
	of := req.OutputFormat
	if of == "" {
		of = NDJSON
	}
	q.Set("_outputFormat", of)
	if !req.Since.IsZero() {
		q.Set("_since", fhir.FormatInstant(req.Since))
	}
	if len(req.Types) > 0 {
		for _, t := range req.Types {
			if !validType(t) {
				return "", fmt.Errorf("bulk: %q is not a resource type", t)
			}
		}
		q.Set("_type", strings.Join(req.Types, ","))
	}
	for _, f := range req.TypeFilters {
		q.Add("_typeFilter", f)
	}
	return c.base + path + "?" + q.Encode(), nil
}

// Kickoff starts an export and returns its job (status URL set, no
// manifest yet). A 429 is an *Error wrapping ErrBusy with the server's
// Retry-After; kick-offs are not retried otherwise (a retried kick-off may
// start a second job), except once after a 401 with a fresh token.
func (c *Client) Kickoff(ctx context.Context, req Request) (Job, error) {
	raw, err := c.KickoffURL(req)
	if err != nil {
		return Job{}, err
	}
	u, _ := url.Parse(raw)
	fail := func(e *Error) (Job, error) {
		e.Op, e.Method, e.URL = "kick-off", http.MethodGet, safeURL(raw)
		return Job{}, e
	}
	for attempt := 1; ; attempt++ {
		tok, err := c.token(ctx)
		if err != nil {
			return fail(&Error{Attempts: attempt, Err: err})
		}
		actx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
		resp, err := c.send(actx, http.MethodGet, u, hdrKickoff, tok, c.serverScope())
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				return Job{}, ctx.Err()
			}
			return fail(&Error{Attempts: attempt, Err: err})
		}
		body, rerr := readSmall(resp, maxStatusBody)
		cancel()
		switch {
		case resp.StatusCode == http.StatusAccepted:
			loc := resp.Header.Get("Content-Location")
			if loc == "" {
				return fail(&Error{Status: resp.StatusCode, Attempts: attempt, Err: errors.New("202 without a Content-Location (status URL)")})
			}
			su, err := resolve(u, loc)
			if err != nil {
				return fail(&Error{Status: resp.StatusCode, Attempts: attempt, Err: fmt.Errorf("Content-Location: %w", err)})
			}
			if originOf(su) != c.origin && c.tokens != nil {
				return fail(&Error{Status: resp.StatusCode, Attempts: attempt, Err: errors.New("the status URL is outside the server's origin: refused (the token would leave the server)")})
			}
			return Job{KickoffURL: raw, StatusURL: su.String(), StartedAt: c.cfg.Now()}, nil
		case resp.StatusCode == http.StatusUnauthorized && c.tokens != nil && attempt == 1:
			c.tokens.Invalidate(tok)
			continue
		case rerr != nil:
			return fail(&Error{Status: resp.StatusCode, Attempts: attempt, Err: rerr})
		}
		e := &Error{Status: resp.StatusCode, Attempts: attempt, Outcome: outcomeOf(body)}
		switch {
		case resp.StatusCode == http.StatusTooManyRequests:
			e.Err = ErrBusy
			if d, ok := retryAfter(resp.Header, c.cfg.Now()); ok {
				e.RetryAfter = d
			}
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			e.Err = errors.New("the server answered synchronously; only asynchronous (202) exports are supported")
		case resp.StatusCode < 400:
			e.Err = errors.New("unexpected answer")
		}
		return fail(e)
	}
}

// pollResult is one status request's answer.
type pollResult struct {
	manifest   *Manifest
	expires    time.Time
	xprogress  string
	retryAfter time.Duration
	hasRA      bool
}

// statusOnce sends one status request. It returns (result, nil) for 200 and
// 202, and an *Error otherwise; transient says whether polling may go on.
func (c *Client) statusOnce(ctx context.Context, statusURL *url.URL) (*pollResult, *Error, bool) {
	tok, err := c.token(ctx)
	if err != nil {
		return nil, &Error{Err: err}, tokenRetryable(err)
	}
	actx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	resp, err := c.send(actx, http.MethodGet, statusURL, hdrStatus, tok, c.serverScope())
	if err != nil {
		if ctx.Err() == nil && actx.Err() != nil {
			err = errors.New("request timed out")
		}
		return nil, &Error{Err: err}, true
	}
	body, rerr := readSmall(resp, maxStatusBody)
	now := c.cfg.Now()
	ra, hasRA := retryAfter(resp.Header, now)
	switch resp.StatusCode {
	case http.StatusAccepted:
		return &pollResult{xprogress: printable(resp.Header.Get("X-Progress"), 100), retryAfter: ra, hasRA: hasRA}, nil, false
	case http.StatusOK:
		if rerr != nil {
			return nil, &Error{Status: resp.StatusCode, Err: rerr}, true
		}
		m, err := parseManifest(body)
		if err != nil {
			return nil, &Error{Status: resp.StatusCode, Err: err}, false
		}
		pr := &pollResult{manifest: m}
		if exp := resp.Header.Get("Expires"); exp != "" {
			if t, err := http.ParseTime(exp); err == nil {
				pr.expires = t
			}
		}
		return pr, nil, false
	}
	e := &Error{Status: resp.StatusCode, RetryAfter: ra}
	if rerr == nil {
		e.Outcome = outcomeOf(body)
	}
	switch code := resp.StatusCode; {
	case code == http.StatusUnauthorized:
		if c.tokens != nil {
			c.tokens.Invalidate(tok)
		}
		e.Err = errors.New("unauthorized")
		return nil, e, true
	case code == http.StatusNotFound || code == http.StatusGone:
		e.Err = ErrExpired
		return nil, e, false
	case code == http.StatusTooManyRequests:
		e.Err = errors.New("too many requests")
		return nil, e, true
	case e.Outcome != nil && outcomeTransient(e.Outcome):
		return nil, e, true
	case e.Outcome != nil && code >= 400:
		e.Err = ErrJobFailed
		return nil, e, false
	case code >= 500:
		return nil, e, true
	default:
		e.Err = ErrJobFailed
		return nil, e, false
	}
}

// poll waits for the job's manifest.
func (r *run) poll(ctx context.Context) error {
	c := r.c
	su, err := url.Parse(r.job.StatusURL)
	if err != nil || !su.IsAbs() {
		return &Error{Op: "status", URL: safeURL(r.job.StatusURL), Err: errors.New("the job's status URL is not an absolute URL")}
	}
	failures, unauthorized, quiet := 0, 0, 0
	for {
		pr, e, transient := c.statusOnce(ctx, su)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if e != nil {
			e.Op, e.Method, e.URL = "status", http.MethodGet, safeURL(r.job.StatusURL)
			if !transient {
				return e
			}
			var wait time.Duration
			switch {
			case e.Status == http.StatusTooManyRequests:
				wait = c.cfg.MinPoll
				if e.RetryAfter > 0 {
					wait = clamp(e.RetryAfter, c.cfg.MinPoll, c.cfg.MaxPoll)
				}
			case e.Status == http.StatusUnauthorized:
				if unauthorized++; unauthorized > 1 {
					return e // refused with a fresh token too
				}
				continue
			default:
				failures++
				e.Attempts = failures
				if failures > c.cfg.MaxRetries {
					return e
				}
				wait = c.backoff(failures - 1)
				if e.RetryAfter > 0 {
					wait = clamp(e.RetryAfter, 0, c.cfg.MaxPoll)
				}
			}
			c.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "bulk status request failed, retrying",
				slog.String("url", e.URL), slog.Int("status", e.Status), slog.Int("failures", failures), slog.Duration("wait", wait))
			if err := c.cfg.Sleep(ctx, wait); err != nil {
				return err
			}
			continue
		}
		failures, unauthorized = 0, 0
		if pr.manifest != nil {
			r.mu.Lock()
			r.polls++
			r.job.Manifest = pr.manifest
			r.job.CompletedAt = c.cfg.Now()
			r.job.ExpiresAt = pr.expires
			r.job.Files = filesOf(pr.manifest)
			r.mu.Unlock()
			return nil
		}
		var wait time.Duration
		if pr.hasRA {
			wait = clamp(pr.retryAfter, c.cfg.MinPoll, c.cfg.MaxPoll)
		} else {
			wait = c.cfg.MinPoll
			for i := 0; i < quiet && wait < c.cfg.MaxPoll; i++ {
				wait += wait / 2
			}
			wait = clamp(wait, c.cfg.MinPoll, c.cfg.MaxPoll)
			quiet++
		}
		r.mu.Lock()
		r.polls++
		r.xprogress = pr.xprogress
		r.nextPoll = wait
		r.progressLocked()
		r.mu.Unlock()
		if err := c.cfg.Sleep(ctx, wait); err != nil {
			return err
		}
	}
}

func parseManifest(body []byte) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		return nil, errors.New("the manifest is not valid JSON of the expected shape")
	}
	check := func(kind string, items []FileItem) error {
		for i, it := range items {
			if it.URL == "" {
				return fmt.Errorf("the manifest's %s[%d] has no url", kind, i)
			}
		}
		return nil
	}
	for _, err := range []error{check("output", m.Output), check("deleted", m.Deleted), check("error", m.Error)} {
		if err != nil {
			return nil, err
		}
	}
	return &m, nil
}

// filesOf lists a manifest's files: error files first (small, and their
// issues explain what is missing), then deleted, then output.
func filesOf(m *Manifest) []FileState {
	var out []FileState
	for _, it := range m.Error {
		out = append(out, FileState{Kind: KindError, Type: it.Type, URL: it.URL})
	}
	for _, it := range m.Deleted {
		out = append(out, FileState{Kind: KindDeleted, Type: it.Type, URL: it.URL})
	}
	for _, it := range m.Output {
		out = append(out, FileState{Kind: KindOutput, Type: it.Type, URL: it.URL})
	}
	return out
}

// Cancel sends DELETE to a job's status URL: the server stops the job (or,
// once complete, may delete its files). A job already gone is an *Error
// wrapping ErrExpired.
func (c *Client) Cancel(ctx context.Context, statusURL string) error {
	u, err := url.Parse(statusURL)
	fail := func(e *Error) error {
		e.Op, e.Method, e.URL = "cancel", http.MethodDelete, safeURL(statusURL)
		return e
	}
	if err != nil || !u.IsAbs() {
		return fail(&Error{Err: errors.New("not an absolute URL")})
	}
	for attempt := 1; ; attempt++ {
		tok, err := c.token(ctx)
		if err != nil {
			return fail(&Error{Err: err})
		}
		actx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
		resp, err := c.send(actx, http.MethodDelete, u, hdrCancel, tok, c.serverScope())
		if err != nil {
			cancel()
			return fail(&Error{Attempts: attempt, Err: err})
		}
		body, _ := readSmall(resp, maxStatusBody)
		cancel()
		switch code := resp.StatusCode; {
		case code >= 200 && code < 300:
			return nil
		case code == http.StatusUnauthorized && c.tokens != nil && attempt == 1:
			c.tokens.Invalidate(tok)
			continue
		case code == http.StatusNotFound || code == http.StatusGone:
			return fail(&Error{Status: code, Attempts: attempt, Outcome: outcomeOf(body), Err: ErrExpired})
		default:
			return fail(&Error{Status: code, Attempts: attempt, Outcome: outcomeOf(body)})
		}
	}
}
