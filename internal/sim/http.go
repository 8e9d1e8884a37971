package sim

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/sim/fault"
	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/smart/authserver"
)

const (
	fhirJSON    = "application/fhir+json; charset=utf-8"
	maxBodySize = 16 << 20
)

// interaction is what a FHIR request asks for.
type interaction int

const (
	opNone interaction = iota
	opSearch
	opRead
	opVRead
	opHistory
	opCreate
	opUpdate
	opMetadata
	opSmartConfig
	opExport // Bulk Data kick-off (bulk.go)
	opPatch  // JSON Patch (write.go)
)

// call is one FHIR request being served.
type call struct {
	t         *tenant
	w         http.ResponseWriter
	r         *http.Request
	op        interaction
	rt        string
	id        string
	vid       string
	nextPage  bool
	malformed bool
	level     string // opExport: flavor.BulkSystem, BulkPatient or BulkGroup (group id in id)
	// afterCommit is a timeout-after-commit fault to apply once the write
	// is stored (write.go, vendorapi.go).
	afterCommit *fault.Fault
}

// ServeHTTP routes /{tenant}/... to the tenant (token endpoint, FHIR base)
// and /_sim/... to the admin API.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if path == "/_sim" || strings.HasPrefix(path, "/_sim/") {
		if !s.cfg.DisableAdmin {
			s.serveAdmin(w, r)
			return
		}
	}
	if path == "/" {
		s.serveIndex(w, r)
		return
	}
	if strings.HasPrefix(path, bulkStoragePrefix) {
		s.serveBulkStorage(w, r)
		return
	}
	seg, rest, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	t, ok := s.tenants[seg]
	if !ok {
		writeOutcome(w, http.StatusNotFound, fhir.NewOutcome("error", "not-found", "no such tenant"), nil)
		return
	}
	rest = "/" + rest
	base := t.info.BasePath
	switch {
	case rest == t.info.TokenPath:
		t.serveToken(w, r)
	case t.serveVendorAPI(w, r, rest):
		// a proprietary write API (vendorapi.go)
	case t.serveBulkPath(w, r, rest):
		// a bulk export status URL or file
	case rest == base || strings.HasPrefix(rest, base+"/"):
		t.serveFHIR(w, r, strings.TrimPrefix(rest[len(base):], "/"))
	case t.info.AuthorizePath != "" && rest == t.info.AuthorizePath:
		// Advertised for fidelity; backend services never use it.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"unsupported_response_type","error_description":"the simulator supports backend services (client_credentials) only"}`))
	default:
		t.problem(w, flavor.Problem{Kind: flavor.NotFound, Diagnostics: "no such endpoint"}, nil)
	}
}

func (s *Sim) serveIndex(w http.ResponseWriter, _ *http.Request) {
	type entry struct {
		ID       string `json:"id"`
		Flavor   string `json:"flavor"`
		FHIRBase string `json:"fhirBase"`
		TokenURL string `json:"tokenUrl"`
	}
	var out []entry
	for _, id := range s.order {
		t := s.tenants[id]
		out = append(out, entry{ID: id, Flavor: t.cfg.Flavor, FHIRBase: s.baseURL(t), TokenURL: s.tokenURL(t)})
	}
	writeJSON(w, http.StatusOK, map[string]any{"simulator": "mediflow", "tenants": out})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeOutcome(w http.ResponseWriter, status int, oo *fhir.OperationOutcome, hdr map[string]string) {
	b, err := json.Marshal(oo)
	if err != nil {
		http.Error(w, "encoding failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	for k, v := range hdr {
		h.Set(k, v)
	}
	h.Set("Content-Type", fhirJSON)
	h.Del("ETag")
	h.Del("Last-Modified")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// problem answers with the flavour's rendering of p.
func (t *tenant) problem(w http.ResponseWriter, p flavor.Problem, hdr map[string]string) {
	status, oo := t.fl.Outcome(p)
	writeOutcome(w, status, oo, hdr)
}

// classify works out the interaction of a FHIR request from method and path.
func (c *call) classify(p string) *flavor.Problem {
	r := c.r
	switch p {
	case "":
		return &flavor.Problem{Kind: flavor.MethodNotAllowed, Diagnostics: "batch, transaction and system-level search are not supported"}
	case "metadata":
		c.op = opMetadata
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return &flavor.Problem{Kind: flavor.MethodNotAllowed, Diagnostics: "metadata accepts GET only"}
		}
		return nil
	case ".well-known/smart-configuration":
		c.op = opSmartConfig
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return &flavor.Problem{Kind: flavor.MethodNotAllowed, Diagnostics: "smart-configuration accepts GET only"}
		}
		return nil
	}
	parts := strings.Split(p, "/")
	if prob, ok := c.classifyExport(parts); ok {
		return prob
	}
	c.rt = parts[0]
	if !c.t.info.Serves(c.rt) {
		return &flavor.Problem{Kind: flavor.UnknownType, Diagnostics: "resource type not supported by this server"}
	}
	notAllowed := &flavor.Problem{Kind: flavor.MethodNotAllowed, Diagnostics: r.Method + " is not allowed here"}
	switch {
	case len(parts) == 1:
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			c.op = opSearch
		case http.MethodPost:
			c.op = opCreate
		default:
			return notAllowed
		}
	case len(parts) == 2 && parts[1] == "_search":
		if r.Method != http.MethodPost && r.Method != http.MethodGet {
			return notAllowed
		}
		c.op = opSearch
	case len(parts) == 2:
		c.id = parts[1]
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			c.op = opRead
		case http.MethodPut:
			c.op = opUpdate
		case http.MethodPatch:
			c.op = opPatch
		default:
			return notAllowed
		}
	case len(parts) == 3 && parts[2] == "_history":
		c.id, c.op = parts[1], opHistory
		if r.Method != http.MethodGet {
			return notAllowed
		}
	case len(parts) == 4 && parts[2] == "_history":
		c.id, c.vid, c.op = parts[1], parts[3], opVRead
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return notAllowed
		}
	default:
		return &flavor.Problem{Kind: flavor.NotFound, Diagnostics: "no such endpoint"}
	}
	if c.id != "" && !validID(c.id) {
		return &flavor.Problem{Kind: flavor.BadRequest, Diagnostics: "invalid resource id"}
	}
	if (c.op == opHistory || c.op == opVRead) && !c.t.info.History {
		return &flavor.Problem{Kind: flavor.MethodNotAllowed, Diagnostics: "history and vread are not supported by this server"}
	}
	if c.op == opSearch {
		c.nextPage = r.URL.Query().Get(c.t.pageParam()) != ""
	}
	return nil
}

// validID checks the FHIR id syntax: [A-Za-z0-9\-\.]{1,64}.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func (t *tenant) serveFHIR(w http.ResponseWriter, r *http.Request, p string) {
	if isSubscriptionPath(p) {
		t.serveSubscription(w, r, p) // subscriptions.go
		return
	}
	c := &call{t: t, w: w, r: r}
	if prob := c.classify(p); prob != nil {
		var hdr map[string]string
		if prob.Kind == flavor.MethodNotAllowed {
			hdr = map[string]string{"Allow": t.allow(c.rt)}
			if c.op == opExport {
				hdr["Allow"] = "GET, POST"
			}
		}
		t.problem(w, *prob, hdr)
		return
	}
	endpoint := c.rt
	switch c.op {
	case opMetadata:
		endpoint = fault.EndpointMetadata
	case opSmartConfig:
		endpoint = fault.EndpointSmart
	case opExport:
		endpoint = fault.EndpointBulkKickoff
	}
	write := c.op == opCreate || c.op == opUpdate || c.op == opPatch
	if !t.applyFaults(w, r, fault.Request{Endpoint: endpoint, NextPage: c.nextPage, Search: c.op == opSearch, Write: write}, c) {
		return
	}
	switch c.op {
	case opMetadata:
		t.serveMetadata(w, r)
		return
	case opSmartConfig:
		t.serveSmartConfig(w, r)
		return
	}
	if !acceptsJSON(r) {
		t.problem(w, flavor.Problem{Kind: flavor.NotAcceptable, Diagnostics: "only JSON (application/fhir+json) is supported"}, nil)
		return
	}
	if c.op == opExport {
		t.serveExportKickoff(c) // authenticates per requested type
		return
	}
	var authOp byte
	switch c.op {
	case opSearch:
		authOp = 's'
	case opRead, opVRead, opHistory:
		authOp = 'r'
	case opCreate:
		authOp = 'c'
	case opUpdate, opPatch:
		authOp = 'u'
	}
	if !t.cfg.OpenAuth {
		if _, err := t.auth.Authenticate(r, c.rt, authOp); err != nil {
			kind, hdr := flavor.Unauthorized, map[string]string{}
			var ae *authserver.AuthError
			if errors.As(err, &ae) {
				if ae.Status == http.StatusForbidden {
					kind = flavor.Forbidden
				}
				hdr["WWW-Authenticate"] = ae.WWWAuthenticate()
			}
			t.problem(w, flavor.Problem{Kind: kind, Diagnostics: err.Error()}, hdr)
			return
		}
	}
	switch c.op {
	case opSearch:
		t.serveSearch(c)
	case opRead:
		t.serveRead(c)
	case opVRead:
		t.serveVRead(c)
	case opHistory:
		t.serveHistory(c)
	case opCreate, opUpdate, opPatch:
		t.serveWrite(c)
	}
}

// allow lists the methods allowed on a type's endpoints (for 405 answers).
func (t *tenant) allow(rt string) string {
	m := []string{"GET"}
	if t.info.CanCreate(rt) {
		m = append(m, "POST")
	}
	if t.info.CanUpdate(rt) {
		m = append(m, "PUT")
	}
	if t.info.CanPatch(rt) {
		m = append(m, "PATCH")
	}
	return strings.Join(m, ", ")
}

func acceptsJSON(r *http.Request) bool {
	if f := r.URL.Query().Get("_format"); f != "" {
		return strings.Contains(f, "json")
	}
	acc := r.Header.Get("Accept")
	if acc == "" || strings.Contains(acc, "json") || strings.Contains(acc, "*/*") {
		return true
	}
	return false
}

// applyFaults runs the fault rules for a request; false means the request
// was answered (or dropped) and must not be served.
func (t *tenant) applyFaults(w http.ResponseWriter, r *http.Request, fr fault.Request, c *call) bool {
	d := t.faults.Decide(fr)
	if d.Latency > 0 {
		timer := time.NewTimer(d.Latency)
		select {
		case <-timer.C:
		case <-r.Context().Done():
			timer.Stop()
			return false
		}
	}
	if f := d.Fail; f != nil {
		t.sim.log.Debug("fault injected", "tenant", t.id, "endpoint", fr.Endpoint, "kind", string(f.Kind))
		switch f.Kind {
		case fault.Drop:
			dropConnection(w)
		case fault.TooManyRequests:
			var hdr map[string]string
			if !t.info.NoRetryAfter {
				hdr = map[string]string{"Retry-After": strconv.Itoa(f.RetryAfterSeconds())}
			}
			t.problem(w, flavor.Problem{Kind: flavor.Throttled, Diagnostics: "rate limit exceeded (injected)"}, hdr)
		case fault.Unavailable:
			t.problem(w, flavor.Problem{Kind: flavor.Unavailable, Diagnostics: "service unavailable (injected)"},
				map[string]string{"Retry-After": strconv.Itoa(f.RetryAfterSeconds())})
		default:
			t.problem(w, flavor.Problem{Kind: flavor.ServerError, Diagnostics: "internal error (injected)"}, nil)
		}
		return false
	}
	if d.ExpireTokens {
		t.auth.ExpireTokens()
	}
	if d.ExpirePage && c != nil {
		if sid, _, ok := parsePageToken(r.URL.Query().Get(t.pageParam())); ok {
			t.sessions.remove(sid)
		}
	}
	if d.Malformed && c != nil {
		c.malformed = true
	}
	if d.AfterCommit != nil && c != nil {
		c.afterCommit = d.AfterCommit
	}
	return true
}

// dropConnection closes the client connection without an answer.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

func (t *tenant) serveToken(w http.ResponseWriter, r *http.Request) {
	if !t.applyFaults(w, r, fault.Request{Endpoint: fault.EndpointToken}, nil) {
		return
	}
	t.auth.ServeHTTP(w, r)
}

func (t *tenant) endpoint() flavor.Endpoint {
	s := t.sim
	return flavor.Endpoint{
		Tenant: t.id, BaseURL: s.baseURL(t), TokenURL: s.tokenURL(t), AuthorizeURL: s.authorizeURL(t),
		Now: t.store.Now(), Strict: t.cfg.Strict, OpenAuth: t.cfg.OpenAuth,
	}
}

func (t *tenant) serveMetadata(w http.ResponseWriter, _ *http.Request) {
	b, err := t.fl.CapabilityStatement(t.endpoint())
	if err != nil {
		t.sim.log.Error("capability statement", "tenant", t.id, "err", err)
		t.problem(w, flavor.Problem{Kind: flavor.ServerError, Diagnostics: "cannot render the CapabilityStatement"}, nil)
		return
	}
	w.Header().Set("Content-Type", fhirJSON)
	_, _ = w.Write(t.withSubscriptions(b))
}

func (t *tenant) serveSmartConfig(w http.ResponseWriter, _ *http.Request) {
	b, err := t.fl.SmartConfiguration(t.endpoint())
	if err != nil {
		t.sim.log.Error("smart configuration", "tenant", t.id, "err", err)
		t.problem(w, flavor.Problem{Kind: flavor.ServerError, Diagnostics: "cannot render the smart-configuration"}, nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
