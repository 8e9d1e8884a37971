package api

import (
	"bytes"
	"context"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/mediflow/mediflow/internal/freshness"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/web"
)

// Status is a PHI-free snapshot of the engine for the status page and
// GET /v1/status. It holds configuration names, counts, times, status words
// and PHI-free error texts only: never a resource, a patient attribute or a
// full URL with a query.
type Status struct {
	GeneratedAt time.Time        `json:"generated_at"`
	Version     string           `json:"version,omitempty"`
	StartedAt   time.Time        `json:"started_at,omitzero"`
	Practices   []PracticeStatus `json:"practices"`
}

// PracticeStatus is the state of one practice (tenant).
type PracticeStatus struct {
	ID          string             `json:"id"`
	Name        string             `json:"name,omitempty"` // display name from the configuration
	Connections []ConnectionStatus `json:"connections"`
	// Resources counts the current (not deleted) resources per type.
	Resources map[string]int `json:"resources"`
	// LastRun is the most recent sync run of any connection of the practice.
	LastRun *RunStatus `json:"last_run,omitempty"`
	// Errors are recent PHI-free error texts, newest first.
	Errors []string `json:"errors,omitempty"`
	// Freshness is the measured lag from a change at the source to it
	// being readable here, per data class (see package freshness).
	Freshness []freshness.Stat `json:"freshness,omitempty"`
}

// ConnectionStatus is the state of one EHR connection of a practice.
type ConnectionStatus struct {
	Name        string     `json:"name"`
	Vendor      string     `json:"vendor,omitempty"`
	BaseURLHost string     `json:"base_url_host,omitempty"` // the host of the EHR base URL, never the full URL
	State       string     `json:"state,omitempty"`         // "ok", "syncing", "error", "idle", ...
	LastRun     *RunStatus `json:"last_run,omitempty"`
	LastError   string     `json:"last_error,omitempty"` // PHI-free
}

// RunStatus summarizes one sync run.
type RunStatus struct {
	ID         int64     `json:"id"`
	Connection string    `json:"connection"`
	Trigger    string    `json:"trigger,omitempty"`
	Status     string    `json:"status"` // store.RunRunning, RunSucceeded, RunFailed, RunPartial
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	Fetched    int       `json:"fetched"`
	New        int       `json:"new"`
	Changed    int       `json:"changed"`
	Unchanged  int       `json:"unchanged"`
	Failed     int       `json:"failed"`
	Error      string    `json:"error,omitempty"` // PHI-free
}

// RunStatusOf summarizes a stored run, adding up its per-type counts.
func RunStatusOf(r store.Run) RunStatus {
	rs := RunStatus{ID: r.ID, Connection: r.Connection, Trigger: r.Trigger, Status: r.Status,
		StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, Error: r.Error}
	for _, t := range r.Stats {
		if t == nil {
			continue
		}
		rs.Fetched += t.Fetched
		rs.New += t.New
		rs.Changed += t.Changed
		rs.Unchanged += t.Unchanged
		rs.Failed += t.Failed
	}
	return rs
}

// StoreStatus returns a StatusFunc that reads what the store knows: resource
// counts, the latest run per connection and recent run errors. Connections
// appear once they have run; their vendor and host are unknown to the store.
// The engine may call it and add what only it knows.
func StoreStatus(st store.Store, practices []string) StatusFunc {
	return func(ctx context.Context) Status {
		out := Status{GeneratedAt: time.Now().UTC(), Practices: make([]PracticeStatus, 0, len(practices))}
		for _, p := range practices {
			ps := PracticeStatus{ID: p, Resources: map[string]int{}, Connections: []ConnectionStatus{}}
			counts, err := st.CountResources(ctx, p)
			if err != nil {
				ps.Errors = append(ps.Errors, "resource counts unavailable: store error")
			}
			for k, v := range counts {
				ps.Resources[k] = v
			}
			runs, err := st.ListRuns(ctx, p, "", 50)
			if err != nil {
				ps.Errors = append(ps.Errors, "sync runs unavailable: store error")
			}
			seen := map[string]bool{}
			for i, r := range runs {
				rs := RunStatusOf(r)
				if i == 0 {
					ps.LastRun = &rs
				}
				if r.Error != "" && len(ps.Errors) < 10 {
					ps.Errors = append(ps.Errors, r.Connection+": "+r.Error)
				}
				if seen[r.Connection] {
					continue
				}
				seen[r.Connection] = true
				cs := ConnectionStatus{Name: r.Connection, LastRun: &rs, State: stateOf(r.Status), LastError: r.Error}
				ps.Connections = append(ps.Connections, cs)
			}
			out.Practices = append(out.Practices, ps)
		}
		return out
	}
}

func stateOf(runStatus string) string {
	switch runStatus {
	case store.RunSucceeded:
		return "ok"
	case store.RunRunning:
		return "syncing"
	case store.RunFailed:
		return "error"
	case store.RunPartial:
		return "partial"
	}
	return runStatus
}

// snapshot calls the status function, filling what it left empty.
func (s *server) snapshot(ctx context.Context) Status {
	st := s.status(ctx)
	if st.GeneratedAt.IsZero() {
		st.GeneratedAt = s.now().UTC()
	}
	if st.Version == "" {
		st.Version = s.version
	}
	if st.Practices == nil {
		st.Practices = []PracticeStatus{}
	}
	if s.freshness != nil {
		for i := range st.Practices {
			if st.Practices[i].Freshness == nil {
				st.Practices[i].Freshness = s.freshness(st.Practices[i].ID)
			}
		}
	}
	return st
}

// freshnessJSON is the answer of GET /v1/practices/{practice}/freshness.
type freshnessJSON struct {
	Practice string           `json:"practice"`
	Classes  []freshness.Stat `json:"classes"`
}

// practiceFreshness: GET /v1/practices/{practice}/freshness, the measured
// lag from a change at the EHR to it being readable here, per data class:
// percentiles over the window and compliance with each class's SLO.
func (s *server) practiceFreshness(w http.ResponseWriter, r *http.Request, c *call) {
	c.entity = "freshness"
	out := freshnessJSON{Practice: c.practice, Classes: []freshness.Stat{}}
	if s.freshness != nil {
		if st := s.freshness(c.practice); st != nil {
			out.Classes = st
		}
	}
	writeJSON(w, http.StatusOK, plainJSON, out)
}

// statusJSON: GET /v1/status
func (s *server) statusJSON(w http.ResponseWriter, r *http.Request, _ *call) {
	writeJSON(w, http.StatusOK, plainJSON, s.snapshot(r.Context()))
}

// statusPage: GET /
func (s *server) statusPage(w http.ResponseWriter, r *http.Request, _ *call) {
	var buf bytes.Buffer
	if err := s.tmpl.Execute(&buf, s.snapshot(r.Context())); err != nil {
		s.log.Error("status page render failed", "err", err)
		http.Error(w, "status page unavailable", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

// static: GET /static/{file}
func (s *server) static(w http.ResponseWriter, r *http.Request, _ *call) {
	http.StripPrefix("/static/", web.Static()).ServeHTTP(w, r)
}

// serveMetrics: GET /metrics
func (s *server) serveMetrics(w http.ResponseWriter, r *http.Request, _ *call) {
	s.metrics.Handler().ServeHTTP(w, r)
}

// healthz: GET /healthz, the process is up.
func (s *server) healthz(w http.ResponseWriter, _ *http.Request, _ *call) {
	writeJSON(w, http.StatusOK, plainJSON, map[string]string{"status": "ok"})
}

// Pinger is implemented by stores that have a cheap reachability check;
// /readyz uses it when present.
type Pinger interface {
	Ping(ctx context.Context) error
}

// readyz: GET /readyz, the store answers a cheap query.
func (s *server) readyz(w http.ResponseWriter, r *http.Request, _ *call) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var err error
	if p, ok := s.st.(Pinger); ok {
		err = p.Ping(ctx)
	} else {
		// An index lookup past the end of the change feed: touches the
		// database, reads nothing.
		_, err = s.st.Changes(ctx, "_readyz", math.MaxInt64, 1)
	}
	if err != nil {
		s.log.Warn("readiness check failed", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, plainJSON, map[string]string{"status": "unavailable", "reason": "store unreachable"})
		return
	}
	writeJSON(w, http.StatusOK, plainJSON, map[string]string{"status": "ready"})
}
