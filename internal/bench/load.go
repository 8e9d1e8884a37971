package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Target is one request the load generator repeats.
type Target struct {
	Name   string
	URL    string
	Header http.Header
}

// LoadResult is what the load generator measured for one target.
type LoadResult struct {
	Name        string
	URL         string
	Concurrency int
	Requests    int // completed with status 200
	Errors      int // transport errors and other statuses
	FirstError  string
	Duration    time.Duration
	PerSecond   float64 // Requests / Duration
	P50, P90    time.Duration
	P99, Max    time.Duration
	BytesPerReq int64 // mean response body size
}

// Print writes the result as one line.
func (r LoadResult) Print(w io.Writer) {
	fmt.Fprintf(w, "%-44s %8.0f req/s  p50 %6.2f ms  p90 %6.2f ms  p99 %6.2f ms  max %7.2f ms  (%d requests, %d errors, %d B/response, %d clients)\n",
		r.Name, r.PerSecond, ms(r.P50), ms(r.P90), ms(r.P99), ms(r.Max), r.Requests, r.Errors, r.BytesPerReq, r.Concurrency)
	if r.FirstError != "" {
		fmt.Fprintf(w, "%-44s first error: %s\n", "", r.FirstError)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// NewLoadClient returns an HTTP client with enough keep-alive connections
// for concurrency workers to one host.
func NewLoadClient(concurrency int) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        concurrency * 2,
		MaxIdleConnsPerHost: concurrency * 2,
		MaxConnsPerHost:     concurrency * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// Load sends GET t.URL from concurrency workers, each on its own keep-alive
// connection and each waiting for its answer before the next request (a
// closed loop), for warmup (not measured) and then for d. It reports the
// request rate and latency percentiles of the measured period.
func Load(ctx context.Context, hc *http.Client, t Target, concurrency int, warmup, d time.Duration) (LoadResult, error) {
	if concurrency < 1 {
		return LoadResult{}, errors.New("bench: concurrency must be at least 1")
	}
	if d <= 0 {
		return LoadResult{}, errors.New("bench: duration must be positive")
	}
	res := LoadResult{Name: t.Name, URL: t.URL, Concurrency: concurrency}
	if warmup > 0 {
		_, _ = run(ctx, hc, t, concurrency, warmup)
	}
	ws, took := run(ctx, hc, t, concurrency, d)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	var lat []time.Duration
	var bytes int64
	for _, w := range ws {
		lat = append(lat, w.lat...)
		res.Errors += w.errors
		bytes += w.bytes
		if res.FirstError == "" {
			res.FirstError = w.firstErr
		}
	}
	res.Requests = len(lat)
	res.Duration = took
	if res.Requests == 0 {
		return res, fmt.Errorf("bench: %s: no request succeeded (%d errors; first: %s)", t.Name, res.Errors, res.FirstError)
	}
	res.PerSecond = float64(res.Requests) / took.Seconds()
	res.BytesPerReq = bytes / int64(res.Requests)
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	res.P50, res.P90, res.P99, res.Max = pct(0.50), pct(0.90), pct(0.99), lat[len(lat)-1]
	return res, nil
}

type worker struct {
	lat      []time.Duration
	errors   int
	bytes    int64
	firstErr string
}

func run(ctx context.Context, hc *http.Client, t Target, concurrency int, d time.Duration) ([]*worker, time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	ws := make([]*worker, concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range ws {
		w := &worker{lat: make([]time.Duration, 0, 4096)}
		ws[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				w.once(ctx, hc, t)
			}
		}()
	}
	wg.Wait()
	return ws, time.Since(start)
}

func (w *worker) once(ctx context.Context, hc *http.Client, t Target) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		w.fail(err.Error())
		return
	}
	for k, v := range t.Header {
		req.Header[k] = v
	}
	began := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			w.fail(err.Error())
		}
		return
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(began)
	switch {
	case ctx.Err() != nil:
		// Cut off by the end of the period: not counted.
	case err != nil:
		w.fail(err.Error())
	case resp.StatusCode != http.StatusOK:
		w.fail(fmt.Sprintf("status %d", resp.StatusCode))
	default:
		w.lat = append(w.lat, took)
		w.bytes += n
	}
}

func (w *worker) fail(msg string) {
	w.errors++
	if w.firstErr == "" {
		w.firstErr = msg
	}
}
