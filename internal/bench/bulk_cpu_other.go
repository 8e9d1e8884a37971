//go:build !unix

package bench

import "time"

// cpuTimes is a process's CPU time so far.
type cpuTimes struct{ user, system time.Duration }

// processCPU is zero where getrusage is not available.
func processCPU() cpuTimes { return cpuTimes{} }

// childCPU is unknown (-1) where /proc is not read.
func childCPU(int) time.Duration { return -1 }

// ioCounts is unknown where /proc is not read.
type ioCounts struct {
	wchar, syscw, rchar, syscr, writeBytes int64
	ok                                     bool
}

func processIO() ioCounts { return ioCounts{} }

func (c ioCounts) sub(ioCounts) ioCounts { return ioCounts{} }
