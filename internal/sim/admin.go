package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/mediflow/mediflow/internal/sim/fault"
	"github.com/mediflow/mediflow/internal/smart/authserver"
)

// serveAdmin is the simulator's control API, served only on the
// simulator's own listener (never through the engine):
//
//	GET  /_sim/tenants                  tenants with their URLs
//	GET  /_sim/{tenant}/faults          fault rules with counters
//	PUT  /_sim/{tenant}/faults          replace rules: a JSON array of fault.Fault
//	GET  /_sim/{tenant}/counts          resources per type
//	POST /_sim/{tenant}/tick?n=N        make N changes now
//	POST /_sim/{tenant}/expire-tokens   invalidate issued access tokens
//	POST /_sim/{tenant}/expire-searches drop search sessions (next links fail)
//	POST /_sim/{tenant}/clients         register a client: {"id","jwks","jwksUrl","scopes"}
func (s *Sim) serveAdmin(w http.ResponseWriter, r *http.Request) {
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/_sim"), "/")
	if rest == "" || rest == "tenants" {
		s.serveIndex(w, r)
		return
	}
	id, action, _ := strings.Cut(rest, "/")
	t, ok := s.tenants[id]
	if !ok {
		adminError(w, http.StatusNotFound, "no such tenant")
		return
	}
	method := func(m string) bool {
		if r.Method != m {
			w.Header().Set("Allow", m)
			adminError(w, http.StatusMethodNotAllowed, action+" accepts "+m)
			return false
		}
		return true
	}
	switch action {
	case "faults":
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, t.faults.List())
		case http.MethodPut, http.MethodPost:
			var fs []fault.Fault
			dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&fs); err != nil {
				adminError(w, http.StatusBadRequest, "body must be a JSON array of faults: "+err.Error())
				return
			}
			if err := t.faults.Replace(fs); err != nil {
				adminError(w, http.StatusBadRequest, err.Error())
				return
			}
			writeJSON(w, http.StatusOK, t.faults.List())
		default:
			w.Header().Set("Allow", "GET, PUT")
			adminError(w, http.StatusMethodNotAllowed, "faults accepts GET and PUT")
		}
	case "counts":
		if method(http.MethodGet) {
			writeJSON(w, http.StatusOK, t.store.Counts())
		}
	case "tick":
		if !method(http.MethodPost) {
			return
		}
		n := 1
		if v := r.URL.Query().Get("n"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 100000 {
				adminError(w, http.StatusBadRequest, "n must be an integer from 1 to 100000")
				return
			}
		}
		changes, err := t.tick(n)
		if err != nil {
			adminError(w, http.StatusConflict, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"changes": len(changes)})
	case "expire-tokens":
		if method(http.MethodPost) {
			t.auth.ExpireTokens()
			w.WriteHeader(http.StatusNoContent)
		}
	case "expire-searches":
		if method(http.MethodPost) {
			t.sessions.clear()
			w.WriteHeader(http.StatusNoContent)
		}
	case "clients":
		if !method(http.MethodPost) {
			return
		}
		var in struct {
			ID      string          `json:"id"`
			JWKS    json.RawMessage `json:"jwks"`
			JWKSURL string          `json:"jwksUrl"`
			Scopes  []string        `json:"scopes"`
		}
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			adminError(w, http.StatusBadRequest, "body must be {\"id\",\"jwks\",\"jwksUrl\",\"scopes\"}: "+err.Error())
			return
		}
		c := authserver.Client{ID: in.ID, JWKSURL: in.JWKSURL, Scopes: in.Scopes}
		if len(in.JWKS) > 0 && string(in.JWKS) != "null" {
			c.JWKS = in.JWKS
		}
		if err := t.auth.RegisterClient(c); err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		adminError(w, http.StatusNotFound, "unknown admin action")
	}
}

func adminError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
