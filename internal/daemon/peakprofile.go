package daemon

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// peakEvery is how often the peak watcher reads the process's resident
// memory; peakStep is how far above the last profile's a reading must be for
// a new one (so a climb from 10 to 100 MB writes about 40).
const (
	peakEvery = 25 * time.Millisecond
	peakStep  = 1.05
)

// peakMetrics are the runtime's memory figures written beside each peak
// profile: where resident memory sits (live heap, garbage not yet
// collected, free spans the runtime keeps, stacks) and the collector's goal.
var peakMetrics = []string{
	"/memory/classes/total:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/stacks:bytes",
	"/memory/classes/os-stacks:bytes",
	"/memory/classes/metadata/other:bytes",
	"/memory/classes/other:bytes",
	"/gc/heap/live:bytes",
	"/gc/heap/goal:bytes",
	"/gc/gogc:percent",
	"/gc/gomemlimit:bytes",
	"/gc/cycles/total:gc-cycles",
	"/sched/goroutines:goroutines",
}

// watchPeak writes a heap profile (pprof heap: what was in use at the last
// collection, by allocation site) to path, and the runtime's memory figures
// to path + ".txt", each time the process's resident memory passes 5 % above
// that of the profile before: what is left afterwards is the profile of the
// highest peak. It is for finding what holds memory at a daemon's peak, which
// the allocation profile at exit cannot show. stop ends the watcher and waits
// for it; it is idempotent.
func watchPeak(path string, warn func(error)) (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(peakEvery)
		defer t.Stop()
		var high int64
		for {
			if rss := residentBytes(); float64(rss) > float64(high)*peakStep {
				high = rss
				if err := writePeak(path, rss); err != nil {
					warn(err)
					return
				}
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	stopped := false
	return func() {
		if !stopped {
			stopped = true
			close(done)
			<-exited
		}
	}
}

// writePeak writes the heap profile and the figures, each through a
// temporary file so that a reader never sees half of one.
func writePeak(path string, rss int64) error {
	var prof bytes.Buffer
	if err := pprof.Lookup("heap").WriteTo(&prof, 0); err != nil {
		return fmt.Errorf("heap_profile: %w", err)
	}
	samples := make([]metrics.Sample, len(peakMetrics))
	for i, name := range peakMetrics {
		samples[i].Name = name
	}
	metrics.Read(samples)
	var txt strings.Builder
	fmt.Fprintf(&txt, "time %s\nVmRSS:bytes %d\n", time.Now().UTC().Format(time.RFC3339Nano), rss)
	for _, s := range samples {
		switch s.Value.Kind() {
		case metrics.KindUint64:
			fmt.Fprintf(&txt, "%s %d\n", s.Name, s.Value.Uint64())
		case metrics.KindFloat64:
			fmt.Fprintf(&txt, "%s %g\n", s.Name, s.Value.Float64())
		}
	}
	for name, b := range map[string][]byte{path: prof.Bytes(), path + ".txt": []byte(txt.String())} {
		if err := os.WriteFile(name+".tmp", b, 0o600); err != nil {
			return fmt.Errorf("heap_profile: %w", err)
		}
		if err := os.Rename(name+".tmp", name); err != nil {
			return fmt.Errorf("heap_profile: %w", err)
		}
	}
	return nil
}

// residentBytes is the process's resident set (VmRSS) where /proc has it,
// and otherwise what the Go runtime has mapped and not returned to the OS.
func residentBytes() int64 {
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			if pages, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				return pages * int64(os.Getpagesize())
			}
		}
	}
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return int64(min(s[0].Value.Uint64()-s[1].Value.Uint64(), math.MaxInt64))
}
