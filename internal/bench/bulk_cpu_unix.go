//go:build unix

package bench

import (
	"os"
	"strconv"
	"strings"
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

// childCPU is another process's user + system CPU time so far, read from
// /proc/<pid>/stat (Linux; clock ticks of 1/100 s, the kernel's USER_HZ);
// -1 when it cannot be read.
func childCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	// The command name (field 2) may hold spaces; the fields after it
	// start behind its closing parenthesis: state is field 3, utime 14,
	// stime 15.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return -1
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// ioCounts is what a process has written and read so far, from
// /proc/self/io (Linux): bytes passed to write and read calls (all files
// and sockets), the number of those calls, and the bytes the process
// caused to be sent to storage. ok is false when /proc/self/io cannot be
// read.
type ioCounts struct {
	wchar, syscw, rchar, syscr, writeBytes int64
	ok                                     bool
}

func processIO() ioCounts {
	f := procFields("/proc/self/io")
	if f == nil {
		return ioCounts{}
	}
	return ioCounts{wchar: f["wchar"], syscw: f["syscw"], rchar: f["rchar"], syscr: f["syscr"], writeBytes: f["write_bytes"], ok: true}
}

// sub is what happened between o and c.
func (c ioCounts) sub(o ioCounts) ioCounts {
	return ioCounts{wchar: c.wchar - o.wchar, syscw: c.syscw - o.syscw, rchar: c.rchar - o.rchar,
		syscr: c.syscr - o.syscr, writeBytes: c.writeBytes - o.writeBytes, ok: c.ok && o.ok}
}
