package tunnel

import (
	"sync"
	"time"
)

// workers runs the server's per-stream functions on goroutines that wait a
// while for the next one instead of exiting. A fresh goroutine starts with a
// small stack and grows it, copying, on every stream: on the plain-HTTP path
// that was 8–9 µs of the server's CPU per request (runtime.newstack), more
// than the request's JSON frames cost. A worker keeps the stack it grew.
//
// Every worker is counted in wg and exits when quit closes, so the server's
// Close waits for idle ones as for busy ones.
type workers struct {
	wg   *sync.WaitGroup
	quit <-chan struct{}
	next chan func() // unbuffered: a send succeeds only when a worker waits
	idle time.Duration
}

// workerIdle is how long a worker waits for its next function before it exits.
const workerIdle = 2 * time.Second

func newWorkers(wg *sync.WaitGroup, quit <-chan struct{}) *workers {
	return &workers{wg: wg, quit: quit, next: make(chan func()), idle: workerIdle}
}

// run calls f on an idle worker, or on a new one. As with wg.Add, it must be
// called from a goroutine that wg counts.
func (w *workers) run(f func()) {
	select {
	case w.next <- f:
		return
	default:
	}
	w.wg.Add(1)
	go w.loop(f)
}

func (w *workers) loop(f func()) {
	defer w.wg.Done()
	t := time.NewTimer(w.idle)
	defer t.Stop()
	for {
		f()
		f = nil // nothing of the last stream stays reachable while idle
		t.Reset(w.idle)
		select {
		case f = <-w.next:
		case <-t.C:
			return
		case <-w.quit:
			return
		}
	}
}
