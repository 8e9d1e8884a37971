package retry

import (
	"testing"
	"time"
)

func TestDefaultJitterRange(t *testing.T) {
	d := 10 * time.Second
	lo, hi := d, time.Duration(0)
	for range 2000 {
		j := Jitter(d)
		if j < d/2 || j > d {
			t.Fatalf("jitter(%s) = %s, outside [%s, %s]", d, j, d/2, d)
		}
		lo, hi = min(lo, j), max(hi, j)
	}
	if hi-lo < d/4 {
		t.Errorf("jitter spread only over [%s, %s]", lo, hi)
	}
}

func TestBackoff(t *testing.T) {
	base, limit := 5*time.Second, 15*time.Minute
	for n, want := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 4: 40 * time.Second, 8: 640 * time.Second, 9: 15 * time.Minute, 40: 15 * time.Minute} {
		if got := Backoff(base, n, limit); got != want {
			t.Errorf("Backoff(%s, %d, %s) = %s, want %s", base, n, limit, got, want)
		}
	}
	if got := Backoff(time.Minute, 3, time.Second); got != time.Minute {
		t.Errorf("a limit below base: %s, want base", got)
	}
}
