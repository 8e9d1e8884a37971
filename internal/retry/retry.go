// Package retry computes the waits between attempts that the engine's
// outboxes and senders share: exponential backoff and jitter.
package retry

import (
	"math/rand/v2"
	"time"
)

// Backoff is base doubled n-1 times (n is the attempt that failed, 1 for
// the first), at most limit (or base, when limit is below it).
func Backoff(base time.Duration, n int, limit time.Duration) time.Duration {
	b := base
	for i := 1; i < n && b < limit; i++ {
		b *= 2
	}
	return min(b, max(limit, base))
}

// Jitter spreads d uniformly over [d/2, d], so retries of many callers do
// not fall on the same instant.
func Jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}
