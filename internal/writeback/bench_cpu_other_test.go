//go:build !unix

package writeback

import (
	"testing"
	"time"
)

// processCPUTime is -1: not measured on this system.
func processCPUTime(*testing.B) time.Duration { return -1 }
