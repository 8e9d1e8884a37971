package obs

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"
)

// HTTPConfig configures HTTPMiddleware.
type HTTPConfig struct {
	Logger  *slog.Logger // nil: no request logs
	Metrics *Metrics     // nil: no metrics
	// Server labels the metrics, so several servers can share one registry ("api", "sim").
	Server string
	// OnPanic writes the response after a recovered panic when nothing was
	// written yet; nil writes a plain 500.
	OnPanic func(w http.ResponseWriter, r *http.Request)
}

// HTTPMiddleware logs, measures and recovers every request handled by next.
//
// next should be (or directly wrap) an *http.ServeMux: after it has served,
// the request's Pattern names the matched route, and that pattern — never
// the raw path, which holds IDs, nor the query string — is what the log line
// and the metrics carry. Requests that matched no pattern are labelled
// "unmatched".
func HTTPMiddleware(cfg HTTPConfig) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rw := &statusWriter{ResponseWriter: w}
			defer func() {
				if p := recover(); p != nil {
					if p == http.ErrAbortHandler {
						panic(p)
					}
					if cfg.Logger != nil {
						// The panic value may hold data from the request: log its type only.
						cfg.Logger.Error("http handler panicked", "route", routeOf(r), "method", r.Method,
							"panic_type", fmt.Sprintf("%T", p), "stack", string(debug.Stack()))
					}
					if !rw.wrote {
						if cfg.OnPanic != nil {
							cfg.OnPanic(rw, r)
						} else {
							http.Error(rw, "internal server error", http.StatusInternalServerError)
						}
					}
					if rw.status == 0 {
						rw.status = http.StatusInternalServerError
					}
				}
				finish(cfg, r, rw, time.Since(start))
			}()
			next.ServeHTTP(rw, r)
		})
	}
}

func finish(cfg HTTPConfig, r *http.Request, rw *statusWriter, d time.Duration) {
	status := rw.status
	if status == 0 {
		status = http.StatusOK
	}
	route := routeOf(r)
	cfg.Metrics.HTTPRequest(cfg.Server, route, r.Method, status, d)
	if cfg.Logger == nil {
		return
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	ctx := r.Context()
	if !cfg.Logger.Enabled(ctx, level) {
		return
	}
	cfg.Logger.LogAttrs(ctx, level, "http request",
		slog.String("server", cfg.Server),
		slog.String("method", r.Method),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Int64("bytes", rw.bytes),
		slog.Duration("duration", d))
}

func routeOf(r *http.Request) string {
	if r.Pattern == "" {
		return "unmatched"
	}
	return r.Pattern
}

// statusWriter records the status code and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status = code
		w.wrote = code >= 200 // 1xx responses are informational
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status = http.StatusOK
		w.wrote = true
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush implements http.Flusher when the underlying writer does.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		if !w.wrote {
			w.status, w.wrote = http.StatusOK, true
		}
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
