package daemon

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/config"
)

// StartProfiles starts the CPU profile cpu_profile names and heap_profile's
// peak watcher, and returns stop, which ends both and writes the allocation
// profile mem_profile names. Both
// are files on the daemon's own machine, written only when a person asks:
// unlike an HTTP pprof endpoint on the admin listener (which the agent's
// browser can reach) they add nothing anyone else can trigger. stop is
// idempotent and logs what it could not write to log; with neither key set it
// does nothing.
func (r RuntimeSettings) StartProfiles(log zerolog.Logger) (stop func(), err error) {
	var cpu *os.File
	if r.CPUProfile != "" {
		if cpu, err = os.Create(r.CPUProfile); err != nil {
			return nil, &config.FieldError{Key: "cpu_profile", Err: err}
		}
		if err := pprof.StartCPUProfile(cpu); err != nil {
			_ = cpu.Close()
			return nil, &config.FieldError{Key: "cpu_profile", Err: err}
		}
	}
	stopPeak := func() {}
	if r.HeapProfile != "" {
		stopPeak = watchPeak(r.HeapProfile, func(err error) { log.Warn().Err(err).Msg("heap profile not written") })
	}
	stopped := false
	return func() {
		if stopped {
			return
		}
		stopped = true
		stopPeak()
		var errs []error
		if cpu != nil {
			pprof.StopCPUProfile()
			if err := cpu.Close(); err != nil {
				errs = append(errs, fmt.Errorf("cpu_profile: %w", err))
			}
		}
		if r.MemProfile != "" {
			errs = append(errs, writeAllocs(r.MemProfile))
		}
		if err := errors.Join(errs...); err != nil {
			log.Warn().Err(err).Msg("profile not written")
		}
	}, nil
}

// writeAllocs writes the allocations since start (pprof's "allocs" profile:
// alloc_objects / alloc_space, plus what is still in use) to path.
func writeAllocs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("mem_profile: %w", err)
	}
	runtime.GC() // the in-use figures are as of the last collection
	err = pprof.Lookup("allocs").WriteTo(f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("mem_profile: %w", err)
	}
	return nil
}
