package tunnel

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-yamux/v5"
)

// go-yamux queues every frame a stream writes in one first-in, first-out
// channel per session (64 frames of up to 64 KiB: 4 MiB), which its send
// loop drains into the connection. A bulk stream keeps that queue full, so
// a small frame of another stream on the same session waits behind up to
// 4 MiB: measured on the server beside two downloads sharing the session,
// 3.9 MiB queued at the median 100 ms sample (BENCHMARKS.md, "Head-of-line
// beside an upload: cause and levers"). The send gate keeps the frames of bulk
// streams out of that queue while gateLimit bytes of data already wait in
// it; an interactive stream's frames pass at once, so they wait behind at
// most gateLimit bytes of bulk data (plus the connection's own buffers).
//
// A stream counts as bulk while it has written bulkBytes or more within
// about bulkWindow: a download or an upload, not a keep-alive tunnel of
// small requests or a page's subresources.
const (
	gateLimit  = 256 << 10
	bulkBytes  = 256 << 10
	bulkWindow = 50 * time.Millisecond
	// gateChunk is the most a bulk stream hands yamux per pass of the
	// gate: one frame (maxMessage less yamux's 12-byte header).
	gateChunk = maxMessage - yamuxHeader
)

// yamuxHeader is the size of a yamux frame header; yamuxTypeData is the
// frame type of stream data (yamux's spec.md).
const (
	yamuxHeader   = 12
	yamuxTypeData = 0
)

// sendGate counts the data bytes that streams of one session have handed
// yamux and that its send loop has not yet written to the connection, and
// holds bulk streams back while more than gateLimit wait.
type sendGate struct {
	queued  atomic.Int64
	waiting atomic.Bool // a writer may be waiting: drained must look
	mu      sync.Mutex
	wake    chan struct{} // closed to wake the writers waiting; nil when none
	closed  bool
}

func newSendGate() *sendGate { return &sendGate{} }

// pass returns nil once at most gateLimit bytes wait in the session's queue,
// or once the session has ended (the write that follows then fails). It
// returns an error, and the writer gives up, once w ends the wait: the
// stream's write deadline passed, or the stream was closed or reset. A writer
// counts its bytes only once yamux has queued them (submitted): a write that
// then waits inside yamux for the peer's window holds no place in the gate,
// so bulk streams whose readers stopped cannot shut it for the others. The
// price: writers woken together may each add a frame past the limit.
func (g *sendGate) pass(w *gateWait) error {
	for g.queued.Load() > gateLimit {
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			return nil
		}
		if g.wake == nil {
			g.wake = make(chan struct{})
		}
		wake := g.wake
		// waiting is set before queued is read again: drained subtracts
		// before it reads waiting, so one of the two sees the other.
		g.waiting.Store(true)
		if g.queued.Load() <= gateLimit {
			g.mu.Unlock()
			return nil
		}
		g.mu.Unlock()
		// Only a writer that waits asks for w's channels: the open gate
		// takes no lock and allocates nothing.
		expired, ended := w.channels()
		select {
		case <-wake:
		case <-expired:
			if isClosed(ended) {
				return w.err() // ended says more than the deadline
			}
			return yamux.ErrTimeout
		case <-ended:
			return w.err()
		}
	}
	return nil
}

// submitted counts n bytes that a stream handed yamux.
func (g *sendGate) submitted(n int) { g.queued.Add(int64(n)) }

// drained counts n data bytes that yamux wrote to the connection.
func (g *sendGate) drained(n int) {
	if g.queued.Add(-int64(n)) <= gateLimit && g.waiting.Load() {
		g.mu.Lock()
		g.release()
		g.mu.Unlock()
	}
}

// release wakes every waiting writer; g.mu is held.
func (g *sendGate) release() {
	g.waiting.Store(false)
	if g.wake != nil {
		close(g.wake)
		g.wake = nil
	}
}

// close lets every writer through for good: the session has ended.
func (g *sendGate) close() {
	g.mu.Lock()
	g.closed = true
	g.release()
	g.mu.Unlock()
}

// gateConn is the connection yamux writes to: it tells the gate of every
// data frame the send loop writes. go-yamux writes each frame, header and
// body, with one Write.
type gateConn struct {
	net.Conn
	gate *sendGate
}

func (c *gateConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if len(p) >= yamuxHeader && p[1] == yamuxTypeData {
		// Counted whether or not the write succeeded: after a failure the
		// session ends, and no writer may wait for bytes that never leave.
		c.gate.drained(len(p) - yamuxHeader)
	}
	return n, err
}

func (c *gateConn) Close() error {
	c.gate.close()
	return c.Conn.Close()
}

// pace measures one stream's recent writes: the bytes written in the
// current bulkWindow and in the one before it. Writes to one stream may come
// from several goroutines (a request's frame, then its body pump).
type pace struct {
	mu        sync.Mutex
	start     time.Time
	cur, prev int64
}

// bulk reports whether the stream has written bulkBytes within about the
// last bulkWindow, as of now.
func (p *pace) bulk(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch d := now.Sub(p.start); {
	case d >= 2*bulkWindow:
		p.start, p.prev, p.cur = now, 0, 0
	case d >= bulkWindow:
		p.start, p.prev, p.cur = p.start.Add(bulkWindow), p.cur, 0
	}
	return p.prev+p.cur >= bulkBytes
}

// wrote counts n bytes written.
func (p *pace) wrote(n int) {
	p.mu.Lock()
	p.cur += int64(n)
	p.mu.Unlock()
}

// gatedWrite writes p to the yamux stream: at once for an interactive
// stream, one frame at a time through the session's gate for a bulk one. A
// write waiting at the gate ends as a write waiting inside yamux does: at the
// stream's write deadline (yamux's own timeout error, so callers see one
// behaviour), when the stream is closed (net.ErrClosed) or found reset by the
// peer (its *resetError), and when the session ends.
func (s *stream) gatedWrite(p []byte) (int, error) {
	g := s.gate
	if g == nil {
		return s.Stream.Write(p)
	}
	written := 0
	for {
		chunk := p[written:]
		if s.pace.bulk(time.Now()) {
			chunk = chunk[:min(len(chunk), gateChunk)]
			if err := g.pass(&s.wait); err != nil {
				return written, err
			}
		}
		n, err := s.Stream.Write(chunk)
		s.pace.wrote(n)
		g.submitted(n)
		written += n
		if err != nil || written == len(p) {
			return written, err
		}
	}
}

// gateWait is what ends a stream's waits at the gate other than the gate
// opening: its write deadline, kept here as well as in yamux, which keeps
// its own to itself; and its end, by Close or by a reset that a read found.
// As with net.Conn, a deadline set while a write waits applies to that
// write. Its channels are made the first time a write waits, so streams
// that never wait pay nothing but the struct.
type gateWait struct {
	mu       sync.Mutex
	deadline time.Time
	timer    *time.Timer
	expired  chan struct{} // closed while the deadline has passed; nil until a write waits
	ended    chan struct{} // closed once the stream has ended; nil until a write waits
	end      error         // why it ended; nil while it has not
}

// channels returns the channel closed while the write deadline has passed
// and the one closed once the stream has ended.
func (w *gateWait) channels() (expired, ended <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.expired == nil {
		w.expired = make(chan struct{})
		w.ended = make(chan struct{})
		if w.end != nil {
			close(w.ended)
		} else {
			w.arm()
		}
	}
	return w.expired, w.ended
}

// setDeadline sets the write deadline; zero means none.
func (w *gateWait) setDeadline(t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.deadline = t
	if w.expired != nil && w.end == nil {
		w.arm()
	}
}

// arm makes expired follow the deadline, as net.Pipe's deadlines do: the
// channel a waiting write holds stays open, and closes at the new deadline,
// while the deadline moves within the future; it closes at once for a
// deadline in the past. w.mu is held and expired is not nil.
func (w *gateWait) arm() {
	if w.timer != nil && !w.timer.Stop() {
		<-w.expired // the timer fired: its close is done or under way
	}
	w.timer = nil
	closed := isClosed(w.expired)
	if w.deadline.IsZero() {
		if closed {
			w.expired = make(chan struct{})
		}
		return
	}
	if d := time.Until(w.deadline); d > 0 {
		if closed {
			w.expired = make(chan struct{})
		}
		expired := w.expired
		w.timer = time.AfterFunc(d, func() { close(expired) })
		return
	}
	if !closed {
		close(w.expired)
	}
}

// close ends every wait, for good, with err; later calls do nothing.
func (w *gateWait) close(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.end != nil {
		return
	}
	w.end = err
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	if w.ended != nil {
		close(w.ended)
	}
}

// err is why the stream ended.
func (w *gateWait) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.end
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
