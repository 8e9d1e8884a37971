// Package freshness measures how fresh mediflow keeps each practice's data.
// For every change it stores, the lag is the time from the source's change
// (meta.lastUpdated, or the time of the event that announced it) to the
// moment the change became readable through the app API. The Tracker keeps
// those lags per (practice, data class) over a sliding window and reports
// percentiles and compliance with the class's freshness objective (SLO).
//
// It measures changes only: the first full load of a connection copies
// records that changed long ago, and its "lag" says nothing about how
// fresh the data is kept, so callers observe incremental and real-time
// changes only.
package freshness

import (
	"encoding/json"
	"slices"
	"sort"
	"sync"
	"time"
)

// Defaults of Options.
const (
	DefaultWindow     = time.Hour
	DefaultMaxSamples = 20000
	DefaultTarget     = 0.99
)

// Observer receives every observed lag, e.g. a Prometheus histogram.
type Observer interface {
	FreshnessLag(practice, class string, lag time.Duration)
}

// Options configure a Tracker. Zero values take the defaults.
type Options struct {
	// Window is how far back percentiles look.
	Window time.Duration
	// MaxSamples bounds the samples kept per (practice, class): beyond it
	// the oldest go first, so memory stays bounded at any change rate.
	MaxSamples int
	// Target is the fraction of changes that must be within the SLO for the
	// series to be compliant (0.99: 99%).
	Target float64
	// SLO returns the freshness objective of a practice's data class
	// (0: none set; the series is then reported without compliance).
	SLO func(practice, class string) time.Duration
	// Observer, when set, receives each lag as it is observed.
	Observer Observer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Tracker keeps lag samples. It is safe for concurrent use.
type Tracker struct {
	opts   Options
	mu     sync.Mutex
	series map[key]*series
}

type key struct{ practice, class string }

type sample struct {
	at  time.Time // when the change became readable
	lag time.Duration
}

// series is a ring of samples, oldest at head.
type series struct {
	ring  []sample
	head  int
	total int64 // all observations ever
	last  time.Time
}

// New returns a Tracker.
func New(opts Options) *Tracker {
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	if opts.MaxSamples <= 0 {
		opts.MaxSamples = DefaultMaxSamples
	}
	if opts.Target <= 0 || opts.Target > 1 {
		opts.Target = DefaultTarget
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Tracker{opts: opts, series: map[key]*series{}}
}

// Observe records one change of a practice's data class that the source
// made at changedAt and that became readable at readableAt. A zero
// changedAt (the source gave no time) is ignored; a change time after
// readableAt (clock skew between the EHR and us) counts as lag 0.
func (t *Tracker) Observe(practice, class string, changedAt, readableAt time.Time) {
	if t == nil || changedAt.IsZero() {
		return
	}
	lag := max(readableAt.Sub(changedAt), 0)
	t.mu.Lock()
	k := key{practice, class}
	s := t.series[k]
	if s == nil {
		s = &series{ring: make([]sample, 0, min(t.opts.MaxSamples, 256))}
		t.series[k] = s
	}
	s.add(sample{at: readableAt, lag: lag}, t.opts.MaxSamples)
	t.mu.Unlock()
	if t.opts.Observer != nil {
		t.opts.Observer.FreshnessLag(practice, class, lag)
	}
}

func (s *series) add(x sample, limit int) {
	s.total++
	if x.at.After(s.last) {
		s.last = x.at
	}
	if len(s.ring) < limit {
		s.ring = append(s.ring, x)
		return
	}
	// Full: overwrite the oldest.
	s.ring[s.head] = x
	s.head = (s.head + 1) % len(s.ring)
}

// Stat is the freshness of one data class of one practice over the window.
type Stat struct {
	Practice string        `json:"practice"`
	Class    string        `json:"class"`
	Window   time.Duration `json:"-"`
	// Count is the number of changes in the window; Total since start.
	Count int   `json:"count"`
	Total int64 `json:"total"`
	// Percentiles of the lag over the window (zero when Count is 0).
	P50 time.Duration `json:"-"`
	P95 time.Duration `json:"-"`
	P99 time.Duration `json:"-"`
	Max time.Duration `json:"-"`
	// SLO is the objective (0: none); WithinSLO the fraction of changes in
	// the window whose lag was at most SLO; Compliant whether that
	// fraction reaches the target (true when the window holds no change).
	SLO        time.Duration `json:"-"`
	WithinSLO  float64       `json:"withinSlo"`
	Target     float64       `json:"target"`
	Compliant  bool          `json:"compliant"`
	LastChange time.Time     `json:"lastChange"`
}

// Snapshot returns the freshness of every (practice, class) seen, sorted by
// practice and class. practice "" means all practices.
func (t *Tracker) Snapshot(practice string) []Stat {
	if t == nil {
		return nil
	}
	now := t.opts.Now()
	from := now.Add(-t.opts.Window)
	type copied struct {
		k     key
		lags  []time.Duration
		total int64
		last  time.Time
	}
	var cs []copied
	t.mu.Lock()
	for k, s := range t.series {
		if practice != "" && k.practice != practice {
			continue
		}
		c := copied{k: k, total: s.total, last: s.last}
		for _, x := range s.ring {
			if !x.at.Before(from) {
				c.lags = append(c.lags, x.lag)
			}
		}
		cs = append(cs, c)
	}
	t.mu.Unlock()

	out := make([]Stat, 0, len(cs))
	for _, c := range cs {
		st := Stat{Practice: c.k.practice, Class: c.k.class, Window: t.opts.Window, Count: len(c.lags),
			Total: c.total, Target: t.opts.Target, LastChange: c.last, Compliant: true}
		if t.opts.SLO != nil {
			st.SLO = t.opts.SLO(c.k.practice, c.k.class)
		}
		if n := len(c.lags); n > 0 {
			slices.Sort(c.lags)
			st.P50, st.P95, st.P99 = quantile(c.lags, 0.50), quantile(c.lags, 0.95), quantile(c.lags, 0.99)
			st.Max = c.lags[n-1]
			if st.SLO > 0 {
				within := sort.Search(n, func(i int) bool { return c.lags[i] > st.SLO })
				st.WithinSLO = float64(within) / float64(n)
				st.Compliant = st.WithinSLO >= st.Target
			}
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Practice != out[j].Practice {
			return out[i].Practice < out[j].Practice
		}
		return out[i].Class < out[j].Class
	})
	return out
}

// quantile is the nearest-rank quantile of sorted values: the smallest
// value with at least q of the values at or below it.
func quantile(sorted []time.Duration, q float64) time.Duration {
	n := len(sorted)
	rank := int(q*float64(n)+0.999999999) - 1
	return sorted[min(max(rank, 0), n-1)]
}

// MarshalJSON renders durations as seconds (with millisecond precision), so
// the API and the status page need no conversion.
func (s Stat) MarshalJSON() ([]byte, error) {
	type plain Stat
	secs := func(d time.Duration) float64 { return float64(d.Milliseconds()) / 1000 }
	return json.Marshal(struct {
		plain
		WindowSeconds float64 `json:"windowSeconds"`
		P50           float64 `json:"p50Seconds"`
		P95           float64 `json:"p95Seconds"`
		P99           float64 `json:"p99Seconds"`
		Max           float64 `json:"maxSeconds"`
		SLO           float64 `json:"sloSeconds,omitempty"`
	}{plain(s), secs(s.Window), secs(s.P50), secs(s.P95), secs(s.P99), secs(s.Max), secs(s.SLO)})
}
