//go:build !unix

package mapping

import "time"

func processCPU() (time.Duration, bool) { return 0, false }
