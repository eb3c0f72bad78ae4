//go:build !unix

package tunnel

import "time"

// cpuTime is not measured here: reportCPU reports nothing.
func cpuTime() (time.Duration, bool) { return 0, false }
