package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
)

// APIOptions configure RunAPI.
type APIOptions struct {
	Setup
	// Concurrency is the number of keep-alive clients (default 8).
	Concurrency int
	// Duration is how long each target is measured (default 10 s).
	Duration time.Duration
	// Warmup is sent before each measurement and not counted (default 1 s).
	Warmup time.Duration
	// Medplum also measures the Medplum peer (peers/) with the same Patients
	// and the same load, when it is installed; PeersDir overrides where.
	Medplum  bool
	PeersDir string
}

// APIResult is what RunAPI measured.
type APIResult struct {
	Fill    *SyncResult  // how the store was filled
	Results []LoadResult // one per target, mediflow's first
	// PeerNote says why the peer was not measured, when it was not.
	PeerNote string
	PeakRSS  int64
}

// PageSize is the search page the API benchmark asks for.
const PageSize = 20

// RunAPI fills a store by syncing from the simulator, serves the engine's
// API on loopback and measures GET /fhir/{practice}/Patient?_count=20 and a
// date search on Observation under concurrent load; with opts.Medplum it
// loads the same Patients into the Medplum peer and measures its
// Patient?_count=20 the same way.
func RunAPI(ctx context.Context, o APIOptions) (*APIResult, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	} else if o.Warmup == 0 {
		o.Warmup = time.Second
	}
	env, err := NewEnv(ctx, o.Setup)
	if err != nil {
		return nil, err
	}
	defer env.Close()
	fill, err := env.Sync(ctx)
	if err != nil {
		return nil, err
	}
	fill.PageSize = o.PageSize
	out := &APIResult{Fill: fill}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	srv := &http.Server{Handler: env.Engine.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	base := "http://" + ln.Addr().String() + "/fhir/" + Practice
	auth := http.Header{"Authorization": {"Bearer " + env.APIKey}, "Accept": {"application/fhir+json"}}
	targets := []Target{
		{Name: "mediflow GET Patient?_count=20", URL: base + "/Patient?_count=20", Header: auth},
		{Name: "mediflow GET Observation?date=ge…&_count=20", URL: base + "/Observation?date=ge2026-01-01&_count=20", Header: auth},
	}

	hc := NewLoadClient(o.Concurrency)
	defer hc.CloseIdleConnections()
	for _, t := range targets {
		if err := checkPage(ctx, hc, t, PageSize); err != nil {
			return nil, err
		}
		r, err := Load(ctx, hc, t, o.Concurrency, o.Warmup, o.Duration)
		if err != nil {
			return nil, err
		}
		out.Results = append(out.Results, r)
	}

	if o.Medplum {
		r, note, err := measureMedplum(ctx, o, env, hc)
		switch {
		case err != nil:
			return nil, err
		case note != "":
			out.PeerNote = note
		default:
			out.Results = append(out.Results, r)
		}
	}
	out.PeakRSS = PeakRSS()
	return out, nil
}

// measureMedplum loads the simulator's Patients into the Medplum peer and
// measures its Patient?_count=20. A missing peer is a note, not an error.
func measureMedplum(ctx context.Context, o APIOptions, env *Env, hc *http.Client) (LoadResult, string, error) {
	dir := o.PeersDir
	if dir == "" {
		d, err := FindPeersDir()
		if err != nil {
			return LoadResult{}, "Medplum peer not measured: " + err.Error(), nil
		}
		dir = d
	}
	m, err := StartMedplum(ctx, dir)
	if err != nil {
		return LoadResult{}, "Medplum peer not measured: " + err.Error(), nil
	}
	defer m.Close()
	patients := env.Sim.Current(Practice, "Patient")
	if err := m.LoadResources(ctx, &http.Client{Timeout: 5 * time.Minute}, "Patient", patients, 250); err != nil {
		return LoadResult{}, "", err
	}
	t := Target{Name: fmt.Sprintf("Medplum peer GET Patient?_count=20 (%d)", len(patients)), URL: m.BaseURL + "/Patient?_count=20",
		Header: http.Header{"Accept": {"application/fhir+json"}}}
	mhc := NewLoadClient(o.Concurrency)
	defer mhc.CloseIdleConnections()
	if err := checkPage(ctx, mhc, t, PageSize); err != nil {
		return LoadResult{}, "", err
	}
	r, err := Load(ctx, mhc, t, o.Concurrency, o.Warmup, o.Duration)
	return r, "", err
}

// checkPage fetches a target once and checks it is a searchset with want entries.
func checkPage(ctx context.Context, hc *http.Client, t Target, want int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return err
	}
	for k, v := range t.Header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("bench: %s: %w", t.Name, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("bench: %s: %w", t.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: %s: status %d", t.Name, resp.StatusCode)
	}
	var b fhir.Bundle
	if err := json.Unmarshal(body, &b); err != nil {
		return fmt.Errorf("bench: %s: %w", t.Name, err)
	}
	if b.Type != "searchset" || len(b.Entry) != want {
		return fmt.Errorf("bench: %s: a %s Bundle with %d entries, want a searchset page of %d", t.Name, b.Type, len(b.Entry), want)
	}
	return nil
}

// Print writes the result as a short report.
func (r *APIResult) Print(w io.Writer) {
	fmt.Fprintf(w, "store filled by a sync of %d resources in %.2f s\n", r.Fill.Resources, r.Fill.Duration.Seconds())
	for _, lr := range r.Results {
		lr.Print(w)
	}
	if r.PeerNote != "" {
		fmt.Fprintln(w, r.PeerNote)
	}
	fmt.Fprintf(w, "peak RSS %.0f MiB (whole process: simulator, engine, API and load generator)\n", float64(r.PeakRSS)/(1<<20))
}
