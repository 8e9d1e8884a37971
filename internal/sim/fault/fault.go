// Package fault is the simulator's fault injection: per-tenant rules that,
// per endpoint and either at a rate (probability) or on every Nth request,
// add latency, answer 429/500/503, drop the connection, expire tokens or the
// search session in the middle of paging, garble a page of results, or let
// a write commit and then never answer it. Rules are plain data, so they can
// come from Go, JSON (the admin endpoint) or command-line specs.
package fault

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Kind is what a fault does.
type Kind string

// Fault kinds.
const (
	// Latency delays the answer by Fault.Latency, then serves normally.
	Latency Kind = "latency"
	// TooManyRequests answers 429 with Retry-After.
	TooManyRequests Kind = "429"
	// ServerError answers 500.
	ServerError Kind = "500"
	// Unavailable answers 503 with Retry-After.
	Unavailable Kind = "503"
	// Drop closes the connection without any answer.
	Drop Kind = "drop"
	// TokenExpiry expires every access token when a next-page request
	// arrives, so that request (and later ones) get 401 until a new token.
	TokenExpiry Kind = "token-expiry"
	// PageExpiry expires the search session when a next-page request
	// arrives, so it gets the flavour's "session expired" error.
	PageExpiry Kind = "page-expiry"
	// Malformed serves a search page with status 200 and a truncated body.
	Malformed Kind = "malformed"
	// TimeoutAfterCommit applies to writes only: the write is stored, then
	// the answer is held back for Fault.Latency (0: until the client gives
	// up or the server shuts down, at most 5 minutes) and the connection is
	// closed without one. The client sees a timeout or a reset although the
	// write happened.
	TimeoutAfterCommit Kind = "timeout-after-commit"
)

// Kinds lists every fault kind.
func Kinds() []Kind {
	return []Kind{Latency, TooManyRequests, ServerError, Unavailable, Drop, TokenExpiry, PageExpiry, Malformed, TimeoutAfterCommit}
}

// Endpoint names used besides resource types.
const (
	EndpointAll      = "*"
	EndpointToken    = "token"
	EndpointMetadata = "metadata"
	EndpointSmart    = "smart-configuration"
	// Bulk Data export: the kick-off, the status (poll) URL, and file
	// downloads (where the bytes are served: the storage URL when files
	// redirect).
	EndpointBulkKickoff = "bulk-kickoff"
	EndpointBulkStatus  = "bulk-status"
	EndpointBulkFile    = "bulk-file"
)

// Write endpoints. A rule's Endpoint "write" (or "write:*") matches every
// write (FHIR create, update and patch, and the vendor write APIs);
// "write:{type}" matches writes of one resource type. A plain resource type
// matches reads, searches and writes of that type; "*" matches everything.
// The terminal kinds (429, 500, 503, drop) answer before the write is
// stored, so nothing is written; timeout-after-commit answers (not) after.
const (
	EndpointWrite       = "write"
	EndpointWritePrefix = "write:"
)

// EndpointSubscriptionNotify names the simulator's outgoing subscription
// notifications (handshakes, heartbeats, events). A terminal fault (drop,
// 429, 500, 503) loses the notification silently; latency delays it. Rules
// for "*" do not apply to it: name it explicitly.
const EndpointSubscriptionNotify = "subscription-notify"

// Duration is a time.Duration written as a Go duration string in JSON ("250ms").
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON accepts a duration string or a number of milliseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("fault: duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return fmt.Errorf("fault: duration must be a string like \"250ms\" or a number of milliseconds")
	}
	*d = Duration(time.Duration(ms * float64(time.Millisecond)))
	return nil
}

// Fault is one injection rule.
type Fault struct {
	// Endpoint is a resource type, "token", "metadata",
	// "smart-configuration", "bulk-kickoff", "bulk-status", "bulk-file",
	// "write", "write:{type}", or "*" (or empty) for every endpoint.
	Endpoint string `json:"endpoint,omitempty"`
	Kind     Kind   `json:"kind"`
	// Rate fires the fault with this probability per matching request.
	Rate float64 `json:"rate,omitempty"`
	// Every fires the fault on every Nth matching request (deterministic).
	// With neither Rate nor Every the fault fires on every matching request.
	Every int `json:"every,omitempty"`
	// Limit stops the fault after it fired this many times (0: no limit).
	Limit int `json:"limit,omitempty"`
	// Latency is the delay of a latency fault, and how long a
	// timeout-after-commit fault holds the answer back (0: until the
	// client goes away).
	Latency Duration `json:"latency,omitempty"`
	// RetryAfter is sent with 429 and 503 (default 1s; rounded up to seconds).
	RetryAfter Duration `json:"retryAfter,omitempty"`
}

// Validate reports a rule that cannot work.
func (f Fault) Validate() error {
	known := false
	for _, k := range Kinds() {
		known = known || f.Kind == k
	}
	if !known {
		return fmt.Errorf("fault: unknown kind %q (want one of %s)", f.Kind, kindList())
	}
	if f.Rate < 0 || f.Rate > 1 {
		return fmt.Errorf("fault %s: rate %v must be between 0 and 1", f.Kind, f.Rate)
	}
	if f.Every < 0 || f.Limit < 0 {
		return fmt.Errorf("fault %s: every and limit must not be negative", f.Kind)
	}
	if f.Rate > 0 && f.Every > 0 {
		return fmt.Errorf("fault %s: give rate or every, not both", f.Kind)
	}
	if f.Kind == Latency && f.Latency <= 0 {
		return fmt.Errorf("fault latency: latency must be positive")
	}
	if f.Latency < 0 || f.RetryAfter < 0 {
		return fmt.Errorf("fault %s: durations must not be negative", f.Kind)
	}
	return nil
}

func kindList() string {
	ks := Kinds()
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

// RetryAfterSeconds is the Retry-After header value (whole seconds, at least 0).
func (f Fault) RetryAfterSeconds() int {
	d := time.Duration(f.RetryAfter)
	if d == 0 {
		d = time.Second
	}
	return int((d + time.Second - 1) / time.Second)
}

// Terminal reports whether the fault replaces the answer (429, 500, 503, drop).
func (f Fault) Terminal() bool {
	switch f.Kind {
	case TooManyRequests, ServerError, Unavailable, Drop:
		return true
	}
	return false
}

// Status is a rule with its counters.
type Status struct {
	Fault
	Seen  int `json:"seen"`  // matching requests evaluated
	Fired int `json:"fired"` // times it fired
}

// Request describes a request for matching.
type Request struct {
	Endpoint string // resource type or one of the Endpoint* names
	NextPage bool   // a continuation page of a search
	Search   bool   // a search (first or later page)
	Write    bool   // a create, update or patch (FHIR or a vendor write API)
}

// Decision is what the faults decided for one request.
type Decision struct {
	Latency      time.Duration
	Fail         *Fault // terminal fault to answer with, or nil
	ExpireTokens bool
	ExpirePage   bool
	Malformed    bool
	// AfterCommit is a timeout-after-commit fault to apply once the write
	// is stored (nil: answer normally).
	AfterCommit *Fault
}

// Set is one tenant's rules. It is safe for concurrent use.
type Set struct {
	mu    sync.Mutex
	rng   *rand.Rand
	rules []Status
}

// NewSet returns an empty set whose rate decisions draw from a source seeded with seed.
func NewSet(seed uint64) *Set {
	return &Set{rng: rand.New(rand.NewPCG(seed, 0x5eed))}
}

// Replace validates and installs rules, resetting counters.
func (s *Set) Replace(fs []Fault) error {
	rules := make([]Status, 0, len(fs))
	for i, f := range fs {
		if err := f.Validate(); err != nil {
			return fmt.Errorf("rule %d: %w", i+1, err)
		}
		if f.Endpoint == "" {
			f.Endpoint = EndpointAll
		}
		rules = append(rules, Status{Fault: f})
	}
	s.mu.Lock()
	s.rules = rules
	s.mu.Unlock()
	return nil
}

// List returns the rules with their counters.
func (s *Set) List() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Status(nil), s.rules...)
}

func (f Fault) applies(r Request) bool {
	switch {
	case f.Endpoint == EndpointWrite || f.Endpoint == EndpointWritePrefix+"*":
		if !r.Write {
			return false
		}
	case strings.HasPrefix(f.Endpoint, EndpointWritePrefix):
		if !r.Write || f.Endpoint[len(EndpointWritePrefix):] != r.Endpoint {
			return false
		}
	case f.Endpoint != EndpointAll && f.Endpoint != r.Endpoint:
		return false
	}
	if f.Endpoint == EndpointAll && r.Endpoint == EndpointSubscriptionNotify {
		return false
	}
	switch f.Kind {
	case TokenExpiry, PageExpiry:
		return r.NextPage
	case Malformed:
		return r.Search
	case TimeoutAfterCommit:
		return r.Write
	}
	return true
}

// Decide evaluates the rules, in order, for one request.
func (s *Set) Decide(r Request) Decision {
	var d Decision
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.rules {
		st := &s.rules[i]
		if !st.applies(r) || (st.Terminal() && d.Fail != nil) || (st.Kind == TimeoutAfterCommit && d.AfterCommit != nil) {
			continue
		}
		if st.Limit > 0 && st.Fired >= st.Limit {
			continue
		}
		st.Seen++
		var fire bool
		switch {
		case st.Every > 0:
			fire = st.Seen%st.Every == 0
		case st.Rate > 0:
			fire = s.rng.Float64() < st.Rate
		default:
			fire = true
		}
		if !fire {
			continue
		}
		st.Fired++
		switch st.Kind {
		case Latency:
			d.Latency += time.Duration(st.Latency)
		case TokenExpiry:
			d.ExpireTokens = true
		case PageExpiry:
			d.ExpirePage = true
		case Malformed:
			d.Malformed = true
		case TimeoutAfterCommit:
			f := st.Fault
			d.AfterCommit = &f
		default:
			f := st.Fault
			d.Fail = &f
		}
	}
	return d
}

// ParseSpec parses a command-line rule: comma-separated key=value pairs with
// keys tenant, endpoint, kind, rate, every, limit, latency, retry-after, e.g.
// "tenant=acme,endpoint=Patient,kind=503,rate=0.05,retry-after=2s". The
// tenant is returned separately ("" means every tenant).
func ParseSpec(spec string) (tenant string, f Fault, err error) {
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return "", f, fmt.Errorf("fault spec %q: %q is not key=value", spec, part)
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "tenant":
			tenant = v
		case "endpoint":
			f.Endpoint = v
		case "kind":
			f.Kind = Kind(v)
		case "rate":
			if f.Rate, err = strconv.ParseFloat(v, 64); err != nil {
				return "", f, fmt.Errorf("fault spec: rate %q is not a number", v)
			}
		case "every":
			if f.Every, err = strconv.Atoi(v); err != nil {
				return "", f, fmt.Errorf("fault spec: every %q is not an integer", v)
			}
		case "limit":
			if f.Limit, err = strconv.Atoi(v); err != nil {
				return "", f, fmt.Errorf("fault spec: limit %q is not an integer", v)
			}
		case "latency":
			d, err := time.ParseDuration(v)
			if err != nil {
				return "", f, fmt.Errorf("fault spec: latency %q: %w", v, err)
			}
			f.Latency = Duration(d)
		case "retry-after", "retryafter":
			d, err := time.ParseDuration(v)
			if err != nil {
				return "", f, fmt.Errorf("fault spec: retry-after %q: %w", v, err)
			}
			f.RetryAfter = Duration(d)
		default:
			return "", f, fmt.Errorf("fault spec %q: unknown key %q (want tenant, endpoint, kind, rate, every, limit, latency, retry-after)", spec, k)
		}
	}
	if err := f.Validate(); err != nil {
		return "", f, err
	}
	return tenant, f, nil
}
