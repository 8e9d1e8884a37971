package freshness

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type recorder struct {
	mu   sync.Mutex
	lags []string
}

func (r *recorder) FreshnessLag(practice, class string, lag time.Duration) {
	r.mu.Lock()
	r.lags = append(r.lags, fmt.Sprintf("%s/%s=%s", practice, class, lag))
	r.mu.Unlock()
}

func TestPercentilesAndCompliance(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)}
	slo := map[string]time.Duration{"scheduling": 60 * time.Second, "clinical": 0}
	tr := New(Options{Now: c.now, Target: 0.9, SLO: func(p, class string) time.Duration { return slo[class] }})
	// 100 scheduling changes with lags 1s..100s.
	for i := 1; i <= 100; i++ {
		now := c.now()
		tr.Observe("p1", "scheduling", now.Add(-time.Duration(i)*time.Second), now)
	}
	tr.Observe("p1", "clinical", c.now().Add(-5*time.Second), c.now())
	tr.Observe("p2", "scheduling", c.now().Add(-2*time.Second), c.now())

	all := tr.Snapshot("")
	if len(all) != 3 {
		t.Fatalf("%d series, want 3: %+v", len(all), all)
	}
	st := tr.Snapshot("p1")
	if len(st) != 2 || st[0].Class != "clinical" || st[1].Class != "scheduling" {
		t.Fatalf("p1 snapshot %+v", st)
	}
	s := st[1]
	if s.Count != 100 || s.P50 != 50*time.Second || s.P95 != 95*time.Second || s.P99 != 99*time.Second || s.Max != 100*time.Second {
		t.Errorf("percentiles: count %d p50 %s p95 %s p99 %s max %s", s.Count, s.P50, s.P95, s.P99, s.Max)
	}
	// 60 of 100 within 60 s: below the 90% target.
	if s.WithinSLO != 0.6 || s.Compliant {
		t.Errorf("within %.2f compliant %v, want 0.60 false", s.WithinSLO, s.Compliant)
	}
	if cl := st[0]; cl.SLO != 0 || !cl.Compliant || cl.P50 != 5*time.Second {
		t.Errorf("class without SLO: %+v", cl)
	}
}

func TestWindowAndBound(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)}
	tr := New(Options{Now: c.now, Window: 10 * time.Minute, MaxSamples: 50})
	for i := 0; i < 30; i++ {
		tr.Observe("p", "demographics", c.now().Add(-time.Hour), c.now()) // slow changes
	}
	c.add(20 * time.Minute) // the slow ones leave the window
	for i := 0; i < 30; i++ {
		tr.Observe("p", "demographics", c.now().Add(-time.Second), c.now())
	}
	s := tr.Snapshot("p")[0]
	if s.Count != 30 || s.Max != time.Second || s.Total != 60 {
		t.Errorf("window: count %d max %s total %d, want 30, 1s, 60", s.Count, s.Max, s.Total)
	}
	// The ring keeps at most 50 samples; the newest win.
	for i := 0; i < 100; i++ {
		tr.Observe("p", "demographics", c.now().Add(-3*time.Second), c.now())
	}
	s = tr.Snapshot("p")[0]
	if s.Count != 50 || s.P50 != 3*time.Second || s.Max != 3*time.Second {
		t.Errorf("bounded ring: count %d p50 %s max %s, want 50 samples of 3s", s.Count, s.P50, s.Max)
	}
}

func TestSkewZeroTimeAndObserver(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)}
	rec := &recorder{}
	tr := New(Options{Now: c.now, Observer: rec})
	tr.Observe("p", "insurance", time.Time{}, c.now())              // no source time: ignored
	tr.Observe("p", "insurance", c.now().Add(time.Minute), c.now()) // EHR clock ahead: lag 0
	if got := strings.Join(rec.lags, ","); got != "p/insurance=0s" {
		t.Errorf("observer saw %q", got)
	}
	s := tr.Snapshot("")
	if len(s) != 1 || s[0].Count != 1 || s[0].Max != 0 {
		t.Errorf("snapshot %+v", s)
	}
	var nilT *Tracker
	nilT.Observe("p", "x", c.now(), c.now()) // a nil tracker measures nothing
	if nilT.Snapshot("") != nil {
		t.Error("nil tracker returned stats")
	}
}

func TestJSONInSeconds(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)}
	tr := New(Options{Now: c.now, SLO: func(string, string) time.Duration { return 30 * time.Second }})
	tr.Observe("p", "scheduling", c.now().Add(-1500*time.Millisecond), c.now())
	b, err := json.Marshal(tr.Snapshot("p")[0])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["p50Seconds"] != 1.5 || m["sloSeconds"] != 30.0 || m["compliant"] != true || m["class"] != "scheduling" || m["windowSeconds"] != 3600.0 {
		t.Errorf("json %s", b)
	}
}

func TestConcurrentObserve(t *testing.T) {
	tr := New(Options{MaxSamples: 1000})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				now := time.Now()
				tr.Observe("p", "clinical", now.Add(-time.Millisecond), now)
				if i%500 == 0 {
					tr.Snapshot("p")
				}
			}
		}()
	}
	wg.Wait()
	s := tr.Snapshot("p")[0]
	if s.Total != 8000 || s.Count != 1000 {
		t.Errorf("total %d count %d, want 8000 and 1000", s.Total, s.Count)
	}
}

func BenchmarkObserve(b *testing.B) {
	tr := New(Options{})
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tr.Observe("p", "clinical", now.Add(-time.Duration(i%1000)*time.Millisecond), now)
	}
}
