package daemon

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestHeadroomPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		live, headroom uint64
		max, want      int
	}{
		{0, 16 * mib, 200, 200},          // nothing live yet
		{4 * mib, 16 * mib, 200, 200},    // small heaps keep gc_percent
		{8 * mib, 16 * mib, 200, 200},    // the crossover
		{16 * mib, 16 * mib, 200, 100},   // above it the growth stays near the headroom
		{20 * mib, 16 * mib, 200, 80},    // figure 2's server on upload
		{64 * mib, 16 * mib, 200, 50},    // never below minHeadroomPercent
		{1 << 40, 16 * mib, 200, 50},     //
		{16 * mib, 16 * mib, 60, 60},     // a lower gc_percent is the cap
		{8 * mib, 64 * mib, 1000, 800},   //
		{32 * mib, 1 << 40, 200, 200},    // a huge headroom is gc_percent alone
		{1, 16 * mib, 200, 200},          //
		{3 * mib, 1 * mib, 200, 50},      //
		{100 * mib, 100 * mib, 100, 100}, //
	} {
		if got := headroomPercent(tc.live, tc.headroom, tc.max); got != tc.want {
			t.Errorf("headroomPercent(live %d, headroom %d, max %d) = %d, want %d", tc.live, tc.headroom, tc.max, got, tc.want)
		}
	}
}

// TestGCHeadroomTunes holds a live heap far above the headroom and checks
// that after collections the tuner has lowered the GC percent, and that stop
// restores gc_percent.
func TestGCHeadroomTunes(t *testing.T) {
	orig := debug.SetGCPercent(200)
	defer debug.SetGCPercent(orig)
	stop := startGCHeadroom(200, 1<<20)
	live := make([][]byte, 32)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		time.Sleep(time.Millisecond) // the finalizer runs on its own goroutine
		if p := debug.SetGCPercent(-1); p != 200 || time.Now().After(deadline) {
			debug.SetGCPercent(p)
			if p != minHeadroomPercent {
				t.Errorf("GC percent %d with 32 MiB live and 1 MiB headroom, want %d", p, minHeadroomPercent)
			}
			break
		} else {
			debug.SetGCPercent(p)
		}
	}
	runtime.KeepAlive(live)
	stop()
	stop() // idempotent
	if p := debug.SetGCPercent(200); p != 200 {
		t.Errorf("GC percent %d after stop, want gc_percent's 200", p)
	}
	// Stopped: later collections leave the percent alone.
	debug.SetGCPercent(150)
	runtime.GC()
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	if p := debug.SetGCPercent(200); p != 150 {
		t.Errorf("GC percent %d after collections past stop, want 150 left alone", p)
	}
}
