package obs

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Sync outcome label values for ResourcesSynced.
const (
	OutcomeNew       = "new"
	OutcomeChanged   = "changed"
	OutcomeUnchanged = "unchanged"
	OutcomeFailed    = "failed"
)

// Metrics holds mediflow's Prometheus metrics on a private registry (nothing
// is registered globally). All methods are safe for concurrent use and do
// nothing on a nil *Metrics, so code under test may pass nil.
//
// Label values must be IDs from configuration (practice, connection, data
// class), resource types, status words or route patterns: never a raw URL
// path or anything from a resource.
type Metrics struct {
	reg *prometheus.Registry
	now func() time.Time

	syncRuns      *prometheus.CounterVec
	resources     *prometheus.CounterVec
	syncErrors    *prometheus.CounterVec
	pages         *prometheus.CounterVec
	pageDuration  *prometheus.HistogramVec
	httpRequests  *prometheus.CounterVec
	httpDuration  *prometheus.HistogramVec
	hl7Messages   *prometheus.CounterVec
	hl7Acks       *prometheus.CounterVec
	hl7AckLatency *prometheus.HistogramVec
	hl7Processed  *prometheus.CounterVec
	mappingIssues *prometheus.CounterVec
	freshness     *prometheus.HistogramVec
	lastSuccessMu sync.Mutex
	lastSuccess   map[[2]string]time.Time // (practice, class) -> time of the last successful run
	lagDesc       *prometheus.Desc
	lastDesc      *prometheus.Desc
}

// MetricsOption configures NewMetrics.
type MetricsOption func(*Metrics)

// WithClock sets the clock used to compute sync lag (default time.Now).
func WithClock(now func() time.Time) MetricsOption { return func(m *Metrics) { m.now = now } }

// NewMetrics creates the metrics and their registry, with the Go runtime and
// process collectors included.
func NewMetrics(opts ...MetricsOption) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), now: time.Now, lastSuccess: map[[2]string]time.Time{}}
	for _, o := range opts {
		o(m)
	}
	m.syncRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediflow_sync_runs_total",
		Help: "Finished sync runs by practice, connection and final status (succeeded, partial, failed).",
	}, []string{"practice", "connection", "status"})
	m.resources = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediflow_sync_resources_total",
		Help: "Resources processed by sync, by practice, resource type and outcome (new, changed, unchanged, failed).",
	}, []string{"practice", "resource_type", "outcome"})
	m.syncErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediflow_sync_errors_total",
		Help: "Sync errors by kind (auth, throttled, server, network, parse, store, ...).",
	}, []string{"kind"})
	m.pages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediflow_sync_pages_total",
		Help: "Search result pages fetched from EHRs, by practice, connection and resource type.",
	}, []string{"practice", "connection", "resource_type"})
	m.pageDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mediflow_sync_page_fetch_seconds",
		Help:    "Time to fetch one search result page from an EHR, by practice and connection.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"practice", "connection"})
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediflow_http_requests_total",
		Help: "HTTP requests served, by server, route pattern, method and status code.",
	}, []string{"server", "route", "method", "code"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mediflow_http_request_duration_seconds",
		Help:    "HTTP request latency by server, route pattern and method.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"server", "route", "method"})
	m.hl7Messages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediflow_hl7_messages_total",
		Help: "Inbound HL7 v2 messages by practice, listener and result: stored, duplicate (ACKed again, not stored), quarantined (stored unparsed), rejected (not stored: empty frame) or error (not stored, no ACK).",
	}, []string{"practice", "listener", "result"})
	m.hl7Acks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediflow_hl7_acks_total",
		Help: "ACKs sent for inbound HL7 v2 messages, by practice, listener and code (AA, AE, AR, CA, CE, CR).",
	}, []string{"practice", "listener", "code"})
	m.hl7AckLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mediflow_hl7_ack_latency_seconds",
		Help:    "Time from the end of an inbound HL7 v2 message to its ACK being ready (parse, durable commit, ACK build), by practice and listener.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 5},
	}, []string{"practice", "listener"})
	m.hl7Processed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediflow_hl7_processed_total",
		Help: "Inbound HL7 v2 messages processed into FHIR resources, by practice, listener and final status (processed, ignored, quarantined, failed: will be retried).",
	}, []string{"practice", "listener", "status"})
	m.mappingIssues = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediflow_mapping_issues_total",
		Help: "Mapping issues of canonical resources, by practice, resource type, rule id and kind: failed (a transform failed; the element kept what the EHR sent), required-empty (a required element stayed empty), unmapped-code (a code table did not list a code), rejected (the resource could not be mapped).",
	}, []string{"practice", "resource_type", "rule", "kind"})
	m.freshness = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mediflow_freshness_lag_seconds",
		Help:    "Time from a change at the source (meta.lastUpdated or the event time) to the change being readable through the app API, by practice and data class. Incremental and real-time changes only.",
		Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600},
	}, []string{"practice", "class"})
	m.lagDesc = prometheus.NewDesc("mediflow_sync_lag_seconds",
		"Seconds since the last successful sync run, by practice and data class.", []string{"practice", "class"}, nil)
	m.lastDesc = prometheus.NewDesc("mediflow_sync_last_success_timestamp_seconds",
		"Unix time of the last successful sync run, by practice and data class.", []string{"practice", "class"}, nil)

	m.reg.MustRegister(m.syncRuns, m.resources, m.syncErrors, m.pages, m.pageDuration,
		m.httpRequests, m.httpDuration, m.hl7Messages, m.hl7Acks, m.hl7AckLatency, m.hl7Processed, m.mappingIssues, m.freshness, lagCollector{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the private registry, for packages that add collectors of their own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format (for /metrics).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// RunFinished counts one finished sync run with its final status.
func (m *Metrics) RunFinished(practice, connection, status string) {
	if m == nil {
		return
	}
	m.syncRuns.WithLabelValues(practice, connection, status).Inc()
}

// ResourcesSynced adds n resources of one type with one outcome (OutcomeNew, ...).
func (m *Metrics) ResourcesSynced(practice, resourceType, outcome string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.resources.WithLabelValues(practice, resourceType, outcome).Add(float64(n))
}

// SyncError counts one sync error of the given kind.
func (m *Metrics) SyncError(kind string) {
	if m == nil {
		return
	}
	m.syncErrors.WithLabelValues(kind).Inc()
}

// SyncSucceeded records that a data class of a practice finished a successful
// run at t; mediflow_sync_lag_seconds is computed from it at scrape time.
func (m *Metrics) SyncSucceeded(practice, class string, t time.Time) {
	if m == nil {
		return
	}
	m.lastSuccessMu.Lock()
	defer m.lastSuccessMu.Unlock()
	k := [2]string{practice, class}
	if t.After(m.lastSuccess[k]) {
		m.lastSuccess[k] = t
	}
}

// FreshnessLag records the lag of one change of a practice's data class
// (it implements freshness.Observer).
func (m *Metrics) FreshnessLag(practice, class string, lag time.Duration) {
	if m == nil {
		return
	}
	m.freshness.WithLabelValues(practice, class).Observe(lag.Seconds())
}

// PageFetched counts one fetched page and how long the fetch took.
func (m *Metrics) PageFetched(practice, connection, resourceType string, d time.Duration) {
	if m == nil {
		return
	}
	m.pages.WithLabelValues(practice, connection, resourceType).Inc()
	m.pageDuration.WithLabelValues(practice, connection).Observe(d.Seconds())
}

// HTTPRequest records one served request; route must be the route pattern.
func (m *Metrics) HTTPRequest(server, route, method string, code int, d time.Duration) {
	if m == nil {
		return
	}
	m.httpRequests.WithLabelValues(server, route, method, statusCode(code)).Inc()
	m.httpDuration.WithLabelValues(server, route, method).Observe(d.Seconds())
}

// HL7 inbound message results for HL7Message.
const (
	HL7Stored      = "stored"
	HL7Duplicate   = "duplicate"
	HL7Quarantined = "quarantined"
	HL7Rejected    = "rejected"
	HL7Error       = "error"
)

// HL7Message counts one inbound HL7 v2 message on a listener with its result
// (HL7Stored, HL7Duplicate, ...).
func (m *Metrics) HL7Message(practice, listener, result string) {
	if m == nil {
		return
	}
	m.hl7Messages.WithLabelValues(practice, listener, result).Inc()
}

// HL7Acked counts one ACK with its code and the time since the message was read.
func (m *Metrics) HL7Acked(practice, listener, code string, d time.Duration) {
	if m == nil {
		return
	}
	m.hl7Acks.WithLabelValues(practice, listener, code).Inc()
	m.hl7AckLatency.WithLabelValues(practice, listener).Observe(d.Seconds())
}

// HL7Processed counts one inbound message that reached a processing status.
func (m *Metrics) HL7Processed(practice, listener, status string) {
	if m == nil {
		return
	}
	m.hl7Processed.WithLabelValues(practice, listener, status).Inc()
}

// Kinds of mapping issues for MappingIssue.
const (
	MappingFailed        = "failed"
	MappingRequiredEmpty = "required-empty"
	MappingUnmappedCode  = "unmapped-code"
	MappingRejected      = "rejected"
)

// MappingIssue counts one issue of one mapping rule on one resource.
func (m *Metrics) MappingIssue(practice, resourceType, rule, kind string) {
	if m == nil {
		return
	}
	m.mappingIssues.WithLabelValues(practice, resourceType, rule, kind).Inc()
}

// statusCode formats common codes without allocating.
func statusCode(c int) string {
	switch c {
	case 200:
		return "200"
	case 304:
		return "304"
	case 400:
		return "400"
	case 401:
		return "401"
	case 403:
		return "403"
	case 404:
		return "404"
	case 500:
		return "500"
	}
	const digits = "0123456789"
	if c >= 100 && c <= 999 {
		return string([]byte{digits[c/100], digits[c/10%10], digits[c%10]})
	}
	return "other"
}

// lagCollector computes sync lag when Prometheus scrapes.
type lagCollector struct{ m *Metrics }

func (c lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.m.lagDesc
	ch <- c.m.lastDesc
}

func (c lagCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.m.now()
	c.m.lastSuccessMu.Lock()
	defer c.m.lastSuccessMu.Unlock()
	for k, t := range c.m.lastSuccess {
		lag := now.Sub(t).Seconds()
		if lag < 0 {
			lag = 0
		}
		ch <- prometheus.MustNewConstMetric(c.m.lagDesc, prometheus.GaugeValue, lag, k[0], k[1])
		ch <- prometheus.MustNewConstMetric(c.m.lastDesc, prometheus.GaugeValue, float64(t.UnixNano())/1e9, k[0], k[1])
	}
}
