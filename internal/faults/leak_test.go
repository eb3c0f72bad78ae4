package faults

import (
	"bytes"
	"fmt"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"
)

// usage is the process's goroutine count and live heap after a full collection.
type usage struct {
	goroutines int
	heap       uint64
}

func (u usage) String() string {
	return fmt.Sprintf("%d goroutines, %.1f MiB heap", u.goroutines, float64(u.heap)/(1<<20))
}

func measure() usage {
	// Two cycles: the first clears sync.Pools into their victim caches, the second
	// frees them.
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return usage{goroutines: runtime.NumGoroutine(), heap: ms.HeapAlloc}
}

// expectBack waits (up to 10 s: connections and timers wind down asynchronously)
// for goroutines and heap to come back within the given margins of base, and fails
// the test with a goroutine dump if they do not.
func expectBack(t *testing.T, what string, base usage, goroutines int, heap uint64) usage {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		now := measure()
		okG := now.goroutines <= base.goroutines+goroutines
		okH := now.heap <= base.heap+heap
		if okG && okH {
			t.Logf("%s: %v (start: %v)", what, now, base)
			return now
		}
		if time.Now().After(deadline) {
			var dump bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&dump, 1)
			t.Errorf("%s: %v, want within %d goroutines and %.1f MiB of the start (%v)\n%s",
				what, now, goroutines, float64(heap)/(1<<20), base, dump.String())
			return now
		}
		time.Sleep(100 * time.Millisecond)
	}
}
