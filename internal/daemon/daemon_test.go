package daemon

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/config"
)

func TestCheckRuntime(t *testing.T) {
	for _, tc := range []struct {
		percent int
		limit   int64
		bad     string // the key at fault, "" for none
	}{
		{DefaultGCPercent, 0, ""},
		{10, 0, ""},
		{1000, 0, ""},
		{9, 0, "gc_percent"},
		{0, 0, "gc_percent"},
		{-1, 0, "gc_percent"},
		{DefaultGCPercent, 16 << 20, ""},
		{DefaultGCPercent, 1 << 40, ""},
		{DefaultGCPercent, 16<<20 - 1, "memory_limit"},
		{DefaultGCPercent, -1, "memory_limit"},
	} {
		err := RuntimeSettings{GCPercent: tc.percent, MemoryLimit: tc.limit}.CheckRuntime()
		var fe *config.FieldError
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("gc_percent %d, memory_limit %d: %v", tc.percent, tc.limit, err)
		case tc.bad != "" && (!errors.As(err, &fe) || fe.Key != tc.bad):
			t.Errorf("gc_percent %d, memory_limit %d: got %v, want an error naming %s", tc.percent, tc.limit, err, tc.bad)
		}
	}
}

func TestApplyRuntime(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	origLimit := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(origLimit)

	RuntimeSettings{GCPercent: 100, MemoryLimit: 48 << 20}.ApplyRuntime(nil)
	if got := debug.SetMemoryLimit(-1); got != 48<<20 {
		t.Errorf("memory limit = %d after ApplyRuntime(48 MiB), want %d", got, 48<<20)
	}
	// GOMEMLIMIT in the environment wins, as GOGC does; 0 leaves the limit alone.
	debug.SetMemoryLimit(math.MaxInt64)
	RuntimeSettings{GCPercent: 100, MemoryLimit: 48 << 20}.ApplyRuntime([]string{"GOMEMLIMIT=1GiB"})
	RuntimeSettings{GCPercent: 100}.ApplyRuntime(nil)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("memory limit = %d with GOMEMLIMIT set or memory_limit 0, want it unchanged", got)
	}

	RuntimeSettings{GCPercent: 300}.ApplyRuntime([]string{"HOME=/root"})
	if got := debug.SetGCPercent(100); got != 300 {
		t.Errorf("gc percent = %d after ApplyRuntime(300), want 300", got)
	}
	// GOGC in the environment is the person's choice, already applied by the runtime.
	RuntimeSettings{GCPercent: 300}.ApplyRuntime([]string{"GOGC=150"})
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("gc percent = %d with GOGC set, want it left at 100", got)
	}
}

func TestStartProfiles(t *testing.T) {
	dir := t.TempDir()
	r := RuntimeSettings{CPUProfile: filepath.Join(dir, "cpu.pprof"), MemProfile: filepath.Join(dir, "allocs.pprof")}
	stop, err := r.StartProfiles(zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	stop()
	stop() // idempotent
	for _, p := range []string{r.CPUProfile, r.MemProfile} {
		if st, err := os.Stat(p); err != nil {
			t.Error(err)
		} else if st.Size() == 0 {
			t.Errorf("%s is empty", p)
		}
	}
	if _, err := (RuntimeSettings{CPUProfile: filepath.Join(dir, "missing", "cpu.pprof")}).StartProfiles(zerolog.Nop()); err == nil {
		t.Error("StartProfiles with an unwritable cpu_profile: no error")
	}
	stop, err = RuntimeSettings{}.StartProfiles(zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	stop()
}

func TestHeapProfile(t *testing.T) {
	dir := t.TempDir()
	r := RuntimeSettings{HeapProfile: filepath.Join(dir, "heap.pprof")}
	stop, err := r.StartProfiles(zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	// The first reading is a new high: the watcher writes at once.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(r.HeapProfile + ".txt"); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	stop() // idempotent
	if st, err := os.Stat(r.HeapProfile); err != nil || st.Size() == 0 {
		t.Fatalf("heap profile: %v, %v", st, err)
	}
	txt, err := os.ReadFile(r.HeapProfile + ".txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"VmRSS:bytes ", "/gc/heap/live:bytes ", "/memory/classes/heap/free:bytes "} {
		if !strings.Contains(string(txt), want) {
			t.Errorf("figures lack %q:\n%s", want, txt)
		}
	}
}

func TestHeapProfileUnwritable(t *testing.T) {
	warned := make(chan error, 1)
	stop := watchPeak(filepath.Join(t.TempDir(), "missing", "heap.pprof"), func(err error) { warned <- err })
	defer stop()
	select {
	case err := <-warned:
		if !strings.Contains(err.Error(), "heap_profile") {
			t.Errorf("error %q does not name heap_profile", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no warning for an unwritable heap_profile")
	}
}
