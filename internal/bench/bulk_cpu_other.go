//go:build !unix

package bench

import "time"

// cpuTimes is a process's CPU time so far.
type cpuTimes struct{ user, system time.Duration }

// processCPU is zero where getrusage is not available.
func processCPU() cpuTimes { return cpuTimes{} }

// childCPU is unknown (-1) where /proc is not read.
func childCPU(int) time.Duration { return -1 }
