//go:build unix

package writeback

import (
	"syscall"
	"testing"
	"time"
)

// processCPUTime is this process's user and system CPU time so far.
func processCPUTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
