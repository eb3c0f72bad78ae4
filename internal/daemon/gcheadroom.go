package daemon

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// minHeadroomPercent is the lowest GC percent the headroom tuner sets: with a
// live heap far above the headroom (full receive windows) collections come
// at least every half of it, not back to back.
const minHeadroomPercent = 50

// headroomPercent is the GC percent that lets the heap grow headroom bytes
// past a live heap of live bytes, within [minHeadroomPercent, maxPercent].
func headroomPercent(live, headroom uint64, maxPercent int) int {
	if live == 0 {
		return maxPercent
	}
	p := headroom * 100 / live
	return int(max(min(p, uint64(maxPercent)), minHeadroomPercent)) //nolint:gosec // at most maxPercent, an int
}

// gcTuner lowers the GC percent from maxPercent while the live heap is above
// headroom × 100 / maxPercent, so that between collections the heap grows by
// about headroom rather than by maxPercent % of a live heap that bulk
// transfers' buffers have made large. It runs once after every collection
// (a finalizer re-armed each cycle), so an idle daemon does not wake for it.
type gcTuner struct {
	maxPercent int
	headroom   uint64
	sample     []metrics.Sample // the finalizer goroutine's alone

	mu      sync.Mutex // orders a last tune before stop's restore
	set     int        // the percent last set
	stopped bool
}

// sentinel is garbage from birth: its finalizer runs after the next
// collection. It holds a pointer and is larger than the tiny allocator's
// blocks, so that it is finalized on its own.
type sentinel struct {
	t *gcTuner
	_ [16]byte
}

// startGCHeadroom starts the tuner; stop ends it and restores maxPercent.
func startGCHeadroom(maxPercent int, headroom int64) (stop func()) {
	t := &gcTuner{
		maxPercent: maxPercent,
		headroom:   uint64(headroom), //nolint:gosec // checked positive by the caller
		set:        maxPercent,
		sample:     []metrics.Sample{{Name: "/gc/heap/live:bytes"}},
	}
	t.arm()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if !t.stopped {
			t.stopped = true
			debug.SetGCPercent(maxPercent)
		}
	}
}

func (t *gcTuner) arm() {
	runtime.SetFinalizer(&sentinel{t: t}, func(s *sentinel) { s.t.tune() })
}

func (t *gcTuner) tune() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	metrics.Read(t.sample)
	if p := headroomPercent(t.sample[0].Value.Uint64(), t.headroom, t.maxPercent); p != t.set {
		t.set = p
		debug.SetGCPercent(p)
	}
	t.arm()
}
