//go:build unix

package bench

import (
	"syscall"
	"time"
)

// cpuTimes is a process's CPU time so far.
type cpuTimes struct{ user, system time.Duration }

// processCPU is this process's user and system CPU time (getrusage);
// zero when it cannot be read.
func processCPU() cpuTimes {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuTimes{}
	}
	return cpuTimes{user: time.Duration(ru.Utime.Nano()), system: time.Duration(ru.Stime.Nano())}
}
