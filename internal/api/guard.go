package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// call is the state of one request to a keyed or tenant route. Tenant-route
// handlers do not write the response themselves: they leave it here, so the
// guard can write the audit event first and answer 500 instead if the audit
// trail cannot be written (no PHI leaves without its audit record).
type call struct {
	app      *appEntry
	practice string
	entity   string // audit entity: "Patient/123", "Patient?family,gender", "changes"

	status      int
	contentType string
	body        []byte
	issueCode   string // the OperationOutcome code of an error answer
	pooled      *[]byte
}

// respond sets the answer of a tenant call.
func (c *call) respond(status int, contentType string, body []byte) {
	c.status, c.contentType, c.body = status, contentType, body
}

// fail sets an OperationOutcome answer.
func (c *call) fail(status int, code, diagnostics string) {
	c.status, c.contentType, c.body, c.issueCode = status, fhirJSON, outcomeJSON(status, code, diagnostics), code
}

// guard wraps a route's handler with the checks its access level demands.
func (s *server) guard(rt route) http.Handler {
	switch rt.access {
	case public:
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rt.handle(s, w, r, nil) })
	case local:
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !s.exposeStatus && !isLoopback(r.RemoteAddr) {
				writeOutcome(w, http.StatusForbidden, "forbidden", "this endpoint answers loopback clients only")
				return
			}
			rt.handle(s, w, r, nil)
		})
	case keyed:
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			app, msg := s.authenticate(r)
			if app == nil {
				unauthorized(w, msg)
				return
			}
			rt.handle(s, w, r, &call{app: app})
		})
	default:
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveTenant(rt, w, r) })
	}
}

// Answers shared by every refusal, so they reveal nothing about the practice.
const (
	msgNoKey      = "an API key is required: send Authorization: Bearer <key> or X-API-Key"
	msgBadKey     = "the API key is not valid"
	msgNotAllowed = "the API key is not allowed to read this practice, or the practice does not exist"
)

func (s *server) serveTenant(rt route, w http.ResponseWriter, r *http.Request) {
	practice := r.PathValue("practice")
	known := s.practices[practice]
	app, msg := s.authenticate(r)
	if app == nil {
		if known {
			s.audit(r.Context(), store.AuditEvent{Practice: practice, Actor: "unauthenticated", Action: rt.action,
				Entity: deniedEntity(r), Outcome: "denied", Detail: "401"})
		}
		unauthorized(w, msg)
		return
	}
	if !known || !app.allows(practice) {
		if known {
			s.audit(r.Context(), store.AuditEvent{Practice: practice, Actor: "app:" + app.name, Action: rt.action,
				Entity: deniedEntity(r), Outcome: "denied", Detail: "403"})
		}
		writeOutcome(w, http.StatusForbidden, "forbidden", msgNotAllowed)
		return
	}
	c := &call{app: app, practice: practice}
	defer c.release()

	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	}
	if !acceptsFHIRJSON(r) {
		c.fail(http.StatusNotAcceptable, "not-supported", "only JSON is supported: use Accept: application/fhir+json or _format=json")
	} else {
		rt.handle(s, w, r, c)
	}
	if c.status == 0 {
		c.fail(http.StatusInternalServerError, "exception", "handler produced no answer")
	}
	if rt.auditSuccess || c.status >= 400 {
		ev := store.AuditEvent{Practice: practice, Actor: "app:" + app.name, Action: rt.action, Entity: c.entity,
			Outcome: auditOutcome(c.status), Detail: strconv.Itoa(c.status)}
		if c.issueCode != "" {
			ev.Detail += " " + c.issueCode
		}
		if ev.Entity == "" {
			ev.Entity = deniedEntity(r)
		}
		if err := s.audit(r.Context(), ev); err != nil && c.status < 400 {
			// Fail closed: data whose access cannot be recorded is not sent.
			h := w.Header()
			for _, k := range []string{"ETag", "Last-Modified", "Location"} {
				h.Del(k)
			}
			c.fail(http.StatusInternalServerError, "exception", "the audit trail is unavailable")
		}
	}
	h := w.Header()
	if c.status == http.StatusNotModified {
		w.WriteHeader(c.status)
		return
	}
	h.Set("Content-Type", c.contentType)
	h.Set("Content-Length", strconv.Itoa(len(c.body)))
	w.WriteHeader(c.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(c.body)
	}
}

// release returns a pooled response buffer.
func (c *call) release() {
	if c.pooled != nil {
		putBuf(c.pooled)
		c.pooled = nil
	}
}

func auditOutcome(status int) string {
	switch {
	case status < 400:
		return "success"
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return "denied"
	default:
		return "error"
	}
}

// deniedEntity names what a request asked for from its path alone (never its query values).
func deniedEntity(r *http.Request) string {
	typ, id := r.PathValue("type"), r.PathValue("id")
	const v1 = "/v1/practices/{practice}/"
	switch {
	case strings.Contains(r.Pattern, v1):
		// The route's own words, with its wildcards filled in (ids of
		// ours, clipped): "changes", "freshness", "intents/01J…",
		// "webhooks/…/rotate-secret".
		rest := r.Pattern[strings.Index(r.Pattern, v1)+len(v1):]
		parts := strings.Split(rest, "/")
		for i, p := range parts {
			if strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}") {
				parts[i] = clip(r.PathValue(strings.TrimSuffix(strings.Trim(p, "{}"), "...")))
			}
		}
		return strings.Join(parts, "/")
	case typ == "" && strings.HasSuffix(r.Pattern, "/metadata"):
		return "metadata"
	case id != "":
		return clip(typ) + "/" + clip(id)
	default:
		return clip(typ) + "?"
	}
}

// clip bounds a client-supplied path segment before it goes to the audit trail.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// audit writes one audit event, stamping its time. Failures are logged
// (PHI-free: the event holds only ids and parameter names) and returned.
func (s *server) audit(ctx context.Context, ev store.AuditEvent) error {
	ev.Time = s.now().UTC()
	// The request may be cancelled by a departing client: record the access anyway.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.auditor.record(ctx, ev); err != nil {
		s.log.Error("audit write failed", "practice", ev.Practice, "action", ev.Action, "outcome", ev.Outcome, "err", err)
		return err
	}
	return nil
}

// authenticate finds the app whose key the request carries. On failure it
// returns nil and the message for the 401 answer.
func (s *server) authenticate(r *http.Request) (*appEntry, string) {
	key := ""
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return nil, msgNoKey
		}
		key = strings.TrimSpace(token)
	} else {
		key = strings.TrimSpace(r.Header.Get("X-API-Key"))
	}
	if key == "" {
		return nil, msgNoKey
	}
	sum := sha256.Sum256([]byte(key))
	found := -1
	// Compare against every app, without stopping early, in constant time per comparison.
	for i := range s.apps {
		if subtle.ConstantTimeCompare(sum[:], s.apps[i].keyHash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return nil, msgBadKey
	}
	return &s.apps[found], ""
}

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="mediflow"`)
	writeOutcome(w, http.StatusUnauthorized, "login", msg)
}

func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// acceptsFHIRJSON reports whether the client can take a FHIR JSON answer:
// _format, when given, must name JSON; otherwise Accept, when given, must
// allow a JSON type.
func acceptsFHIRJSON(r *http.Request) bool {
	if strings.Contains(r.URL.RawQuery, "_format") {
		if f := r.URL.Query().Get("_format"); f != "" {
			return isJSONFormat(f)
		}
	}
	if r.Method == http.MethodPost {
		if f := r.PostFormValue("_format"); f != "" {
			return isJSONFormat(f)
		}
	}
	accept := r.Header.Get("Accept")
	if accept == "" {
		return true
	}
	for _, part := range strings.Split(accept, ",") {
		mt, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.Contains(strings.ReplaceAll(params, " ", ""), "q=0") && !strings.Contains(params, "q=0.") {
			continue // explicitly refused
		}
		switch strings.ToLower(strings.TrimSpace(mt)) {
		case "*/*", "application/*", "application/json", "application/fhir+json", "application/json+fhir":
			return true
		}
	}
	return false
}

func isJSONFormat(f string) bool {
	switch strings.ToLower(strings.TrimSpace(f)) {
	case "json", "application/json", "application/fhir+json", "application/json+fhir":
		return true
	}
	return false
}
