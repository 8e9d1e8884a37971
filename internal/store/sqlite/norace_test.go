//go:build !race

package sqlite

// raceEnabled: the race detector slows writes about tenfold, so the
// heaviest tests use less data under it.
const raceEnabled = false
