package tunnel

import (
	"container/list"
	"sync"
	"time"

	"github.com/fluidity-tunnel/fluidity/tunnel/internal/wire"
)

// A stream counts against MaxStreams from the moment it is accepted, before its
// request frame has arrived. So a client could hold every slot with streams
// that never send their frame (MaxPendingStreams per session, over several
// sessions), until HeaderTimeout, again and again. When the server is full, a
// new stream therefore pushes out the stream that has owed its frame longest,
// if it has for longer than an honest agent's frame takes to arrive: an honest
// frame follows its stream's opening at once, so the stream pushed out is, all
// but surely, one that is not going to send it.

// staleHeader is how long a stream must have owed its request frame before a
// new stream may push it out. An agent writes the frame together with the
// stream's opening; even a 64 KiB header over a slow, long link arrives well
// within it.
const staleHeader = 500 * time.Millisecond

// evictWait bounds how long a new stream waits for the slot of the stream it
// pushed out; that stream's goroutine frees it as soon as it sees its reset.
const evictWait = 100 * time.Millisecond

// headerWaits lists the admitted streams still owing their request frame,
// oldest first.
type headerWaits struct {
	mu sync.Mutex
	l  *list.List // of *headerWait
}

type headerWait struct {
	st    *stream
	since time.Time
	el    *list.Element
}

func newHeaderWaits() *headerWaits { return &headerWaits{l: list.New()} }

// add records that st holds a slot and owes its frame.
func (h *headerWaits) add(st *stream) *headerWait {
	w := &headerWait{st: st, since: time.Now()}
	h.mu.Lock()
	w.el = h.l.PushBack(w)
	h.mu.Unlock()
	return w
}

// done records that w's frame came (or its stream ended); idempotent.
func (h *headerWaits) done(w *headerWait) {
	h.mu.Lock()
	if w.el != nil {
		h.l.Remove(w.el)
		w.el = nil
	}
	h.mu.Unlock()
}

// evictStalest resets the stream that has owed its frame longest, if it has
// for at least minAge, and reports whether it did.
func (h *headerWaits) evictStalest(minAge time.Duration) bool {
	h.mu.Lock()
	front := h.l.Front()
	if front == nil || time.Since(front.Value.(*headerWait).since) < minAge {
		h.mu.Unlock()
		return false
	}
	w := front.Value.(*headerWait)
	h.l.Remove(front)
	w.el = nil
	h.mu.Unlock()
	// Refused: nothing was done with it, so an honest agent may send it again.
	_ = w.st.reset(wire.ResetRefused)
	return true
}

// acquire takes a MaxStreams slot for a new stream, pushing out a stale
// headerless one when the server is full. It reports whether it got one.
func (s *Server) acquire() bool {
	select {
	case s.streams <- struct{}{}:
		return true
	default:
	}
	if !s.waiting.evictStalest(staleHeader) {
		return false
	}
	t := time.NewTimer(evictWait)
	defer t.Stop()
	select {
	case s.streams <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}
