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
//
// A stream gives its slot back when its goroutine is done with it, which is a
// moment after the agent has seen it end: the server's FIN (or reset) goes out
// first, and the agent may open its next stream, on this session or another,
// before that goroutine runs again. With max_connections 1, a tight loop of
// requests one after another was refused over_capacity up to half the time.
// So a full server also waits for the slot of a stream whose answer is out (it
// sent FIN or reset): that slot is about to be free, and waiting for it keeps
// MaxStreams the bound on streams at work.

// staleHeader is how long a stream must have owed its request frame before a
// new stream may push it out. An agent writes the frame together with the
// stream's opening; even a 64 KiB header over a slow, long link arrives well
// within it.
const staleHeader = 500 * time.Millisecond

// slotWait bounds how long a new stream waits for a slot about to be freed:
// the slot of the stream it pushed out, whose goroutine frees it as soon as it
// sees its reset, or of a stream whose answer is out. Either takes a few
// goroutine switches; the bound is for a stream that sent FIN while its agent
// keeps sending (a half-closed CONNECT), whose slot is not about to be free.
const slotWait = 100 * time.Millisecond

// holders lists the streams holding a MaxStreams slot, in the order they got
// it, and which of them still owe their request frame.
type holders struct {
	mu   sync.Mutex
	l    *list.List // of *hold
	bySt map[*stream]*hold
}

// hold is one stream's hold on a slot.
type hold struct {
	st    *stream
	since time.Time
	owes  bool          // its request frame has not arrived (and it was not pushed out)
	ended bool          // its error frame is out: the agent takes it as the end
	el    *list.Element // nil once the slot is given back
}

func newHolders() *holders { return &holders{l: list.New(), bySt: make(map[*stream]*hold)} }

// add records that st holds a slot and owes its frame.
func (h *holders) add(st *stream) *hold {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.addLocked(st)
}

func (h *holders) addLocked(st *stream) *hold {
	w := &hold{st: st, since: time.Now(), owes: true}
	w.el = h.l.PushBack(w)
	h.bySt[st] = w
	return w
}

// headerIn records that w's frame came (or its stream ended); idempotent.
func (h *holders) headerIn(w *hold) {
	h.mu.Lock()
	w.owes = false
	h.mu.Unlock()
}

// answering records that st, if it holds a slot, is about to send its error
// frame, which ends the stream for the agent before any FIN.
func (h *holders) answering(st *stream) {
	h.mu.Lock()
	if w := h.bySt[st]; w != nil {
		w.ended = true
	}
	h.mu.Unlock()
}

// evictStalest resets the stream that has owed its frame longest, if it has
// for at least minAge, and reports whether it did.
func (h *holders) evictStalest(minAge time.Duration) bool {
	h.mu.Lock()
	var w *hold
	// In admission order: the first that owes its frame has owed it longest.
	for el := h.l.Front(); el != nil; el = el.Next() {
		if c := el.Value.(*hold); c.owes {
			w = c
			break
		}
	}
	if w == nil || time.Since(w.since) < minAge {
		h.mu.Unlock()
		return false
	}
	w.owes = false
	h.mu.Unlock()
	// Refused: nothing was done with it, so an honest agent may send it again.
	_ = w.st.reset(wire.ResetRefused)
	return true
}

// acquire takes a MaxStreams slot for st, a new stream, pushing out a stale
// headerless one, or waiting for one whose answer is out, when the server is
// full. It returns the stream's hold on its slot, nil when it got none.
func (s *Server) acquire(st *stream) *hold {
	select {
	case s.streams <- struct{}{}:
		return s.holders.add(st)
	default:
	}
	w, soon := s.recheck(st)
	if w != nil {
		return w
	}
	if !soon && !s.holders.evictStalest(staleHeader) {
		return nil
	}
	t := time.NewTimer(slotWait)
	defer t.Stop()
	select {
	case s.streams <- struct{}{}:
		return s.holders.add(st)
	case <-t.C:
		return nil
	}
}

// recheck, on a full server, takes for st a slot given back since, or else
// reports whether a holder has its answer out (an error frame, FIN or reset), so that
// its slot is about to be given back. It holds the lock that release gives a
// slot back under: it sees either the holder or its free slot.
func (s *Server) recheck(st *stream) (w *hold, soon bool) {
	h := s.holders
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case s.streams <- struct{}{}:
		return h.addLocked(st), false
	default:
	}
	for el := h.l.Front(); el != nil; el = el.Next() {
		if w := el.Value.(*hold); w.ended || w.st.wroteFIN.Load() || w.st.closed.Load() {
			return nil, true
		}
	}
	return nil, false
}

// release gives w's slot back; idempotent.
func (s *Server) release(w *hold) {
	h := s.holders
	h.mu.Lock()
	if w.el == nil {
		h.mu.Unlock()
		return
	}
	h.l.Remove(w.el)
	w.el = nil
	delete(h.bySt, w.st)
	<-s.streams
	h.mu.Unlock()
	s.touch()
	if s.active.Add(-1) == 0 {
		select {
		case s.idleCh <- struct{}{}:
		default:
		}
	}
}
