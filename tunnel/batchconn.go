package tunnel

import (
	"net"
	"runtime"
	"sync"
	"time"
)

// batchConn batches yamux's frame writes into as few syscalls (and TLS records) as
// the link allows. yamux's send loop writes every frame header and every body with
// separate Write calls; under many small requests that is most of the tunnel's CPU.
// Writes are appended to a buffer and a flusher goroutine drains it: while one
// flush is in the kernel, further frames pile up and leave together. An idle link
// is flushed at once, so batching adds no latency.
//
// The buffer is bounded: a writer blocks while limit bytes wait, which keeps
// backpressure (and yamux's write timeout) working as on a plain conn.
type batchConn struct {
	net.Conn

	mu      sync.Mutex
	cond    *sync.Cond // signals both "data to flush" and "room to write"
	pending []byte
	spare   []byte
	err     error
	closed  bool
	done    chan struct{}
	// cork, when Conn is a TLS conn over a corkConn, gathers the TLS records of one
	// flush into one write.
	cork  *corkConn
	limit int // maxPending, or maxPendingServer on the server
	// stall, if not nil, is told of every flush that blocked for longer than
	// StallThreshold (Observer.ConnStall).
	stall func(time.Duration)
	// streams, on the server, counts the streams it serves: with one, more
	// may wait unsent (maxUnsentAlone). It never blocks: yamux's own count
	// (NumStreams) takes a lock that yamux holds while it waits for its send
	// queue, which waits for this flusher.
	streams func() int
	// rate is the link's delivery rate in bytes per second, as rateOf (the
	// kernel's estimate) last gave it: read at most every rateEvery while the
	// server serves one stream; rateAt is when. Under mu.
	rateOf func() uint64
	rate   uint64
	rateAt time.Time
}

// maxPending bounds the bytes waiting for the flusher. Every byte queued there, and
// unsent in the kernel, delays the frames of other streams behind a bulk transfer.
// On the server, whose records leave corked (one write per flush) and whose socket
// keeps at most maxUnsent bytes unsent (Linux), maxPendingServer halves the
// head-of-line p99 of small responses next to a download; elsewhere the larger
// bound keeps bulk writes in bigger batches.
const (
	maxPending       = 512 << 10
	maxPendingServer = 128 << 10
	maxUnsent        = 128 << 10
	// maxUnsentAlone is the most the unsent bound grows to while the server
	// serves one stream: nothing waits behind a bulk transfer then, and a
	// longer queue in the kernel lets the server write more per wake-up.
	// Measured on loopback downloads (BENCHMARKS.md, "Bulk: profile and
	// levers"): server CPU 2.61 -> 2.35 s per GB, 127 -> 146 MB/s.
	maxUnsentAlone = 1 << 20
	// aloneDrain bounds how long the larger queues of a lone stream (unsent,
	// and pending for the flusher) take to leave at the link's delivery
	// rate: the first request opened beside a lone download waits behind
	// them. On loopback (hundreds of MB/s) and figure 2's 40 ms link (about
	// 140 MB/s) that allows the full bounds (measured: bulkab); on a 6 MB/s
	// link it keeps the shared ones (128 KiB, about 20 ms there), where 1 MiB
	// unsent and 512 KiB pending would be a quarter of a second (arithmetic:
	// no benchmark runs a slow link; TestUnsentFollowsStreams pins the bounds).
	aloneDrain = 8 * time.Millisecond
	// rateEvery: the delivery rate is read (one getsockopt) at most this often.
	rateEvery = 10 * time.Millisecond
	// maxSpare is the largest flushed buffer kept for reuse: one write may be
	// larger than the bound (a single frame is never split).
	maxSpare = 1 << 20
	// gatherBelow: a flush of fewer bytes yields once first, to gather more.
	gatherBelow = 16 << 10
)

func newBatchConn(c net.Conn, server bool, stall func(time.Duration), streams func() int) *batchConn {
	b := &batchConn{Conn: c, done: make(chan struct{}), limit: maxPending, stall: stall, streams: streams}
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		b.cork, _ = tc.NetConn().(*corkConn)
	}
	if server {
		b.limit = maxPendingServer
	}
	if b.cork != nil && streams != nil {
		// Only the server's flusher, which counts streams, bounds a lone one.
		b.rateOf = b.cork.unsent.deliveryRate
	}
	b.cond = sync.NewCond(&b.mu)
	go b.flushLoop()
	return b
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	limit := b.pendingLimit()
	for b.err == nil && !b.closed && len(b.pending) > 0 && len(b.pending)+len(p) > limit {
		b.cond.Wait()
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.closed {
		return 0, net.ErrClosed
	}
	b.pending = append(b.pending, p...)
	b.cond.Broadcast()
	return len(p), nil
}

func (b *batchConn) flushLoop() {
	defer close(b.done)
	b.mu.Lock()
	for {
		for len(b.pending) == 0 && !b.closed {
			b.cond.Wait()
		}
		if len(b.pending) == 0 {
			b.mu.Unlock()
			return
		}
		if len(b.pending) < gatherBelow && !b.closed {
			// yamux's send loop queues the frames of many busy streams one
			// after another; let it add those already waiting before this
			// flush takes the buffer. An idle link loses a yield, not a wait.
			b.mu.Unlock()
			runtime.Gosched()
			b.mu.Lock()
			if len(b.pending) == 0 {
				continue
			}
		}
		out := b.pending
		b.pending = b.spare[:0]
		if b.cork != nil && b.streams != nil {
			// Under the lock, so that a writer that sees its bytes taken
			// sees the bound they leave under (a test relies on it); a
			// system call only when the bound changes.
			n := b.streams()
			if now := time.Now(); n <= 1 && now.Sub(b.rateAt) >= rateEvery {
				b.rate, b.rateAt = b.rateOf(), now
			}
			b.cork.unsent.set(unsentFor(n, b.rate))
		}
		b.cond.Broadcast()
		b.mu.Unlock()

		// Timed per flush, not per frame: one clock pair per batch, and the
		// time is the connection's alone (yamux's queue is not in it).
		var start time.Time
		if b.stall != nil {
			start = time.Now()
		}
		var err error
		if b.cork != nil {
			b.cork.corkWrites()
			_, err = b.Conn.Write(out)
			if ferr := b.cork.uncork(); err == nil {
				err = ferr
			}
		} else {
			_, err = b.Conn.Write(out)
		}
		if b.stall != nil {
			if d := time.Since(start); d > StallThreshold {
				b.stall(d)
			}
		}

		b.mu.Lock()
		if cap(out) <= maxSpare {
			b.spare = out[:0]
		}
		if err != nil {
			b.err = err
			b.pending = nil
			b.cond.Broadcast()
			b.mu.Unlock()
			return
		}
	}
}

// pendingLimit is the bound on bytes waiting for the flusher: the server's
// smaller one only while it serves more than one stream (as for the unsent
// bound, maxUnsentAlone). Alone, a download on a fast link leaves in batches
// of up to maxPending, larger writes: server CPU per GB downloaded 2.38 ->
// 2.16 s (BENCHMARKS.md, "Bulk: profile and levers"). Called under mu.
func (b *batchConn) pendingLimit() int {
	if b.streams != nil && b.streams() <= 1 {
		return aloneBound(b.rate, b.limit, maxPending)
	}
	return b.limit
}

// unsentFor is the unsent bound while the server serves n streams over a
// link delivering rate bytes per second.
func unsentFor(n int, rate uint64) int {
	if n <= 1 {
		return aloneBound(rate, maxUnsent, maxUnsentAlone)
	}
	return maxUnsent
}

// aloneBound is what leaves in aloneDrain at rate, within [lo, hi].
func aloneBound(rate uint64, lo, hi int) int {
	if n := rate / uint64(time.Second/aloneDrain); n < uint64(hi) { //nolint:gosec // hi is one of this file's positive constants
		return max(int(n), lo) //nolint:gosec // n < hi, an int
	}
	return hi
}

// closeFlushTimeout bounds how long Close waits for buffered frames to reach the
// kernel, as a plain conn's Close would have found them there already.
const closeFlushTimeout = 2 * time.Second

// Close sends what is buffered (the last frames of a session, such as a response's
// end and its FIN), then closes the connection.
func (b *batchConn) Close() error {
	b.mu.Lock()
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
	_ = b.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
	<-b.done
	return b.Conn.Close()
}

// corkConn sits under a TLS conn. crypto/tls writes every record (at most 16 KiB)
// with its own Write; while corked, corkConn gathers them and uncork sends them in
// one Write. Only the batchConn flusher corks, around its one TLS Write; other
// writes (handshake, alerts) pass straight through, or, if they happen while the
// flusher has it corked, join the batch in order.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	buf    []byte
	err    error
	// unsent, on the server, bounds the socket's unsent bytes; only the
	// flusher changes it. Nil elsewhere.
	unsent *unsentLimit
}

// maxCorked bounds what is gathered before it is written anyway.
const maxCorked = 256 << 10

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if !c.corked {
		n, err := c.Conn.Write(p)
		if err != nil {
			c.err = err
		}
		return n, err
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) >= maxCorked {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (c *corkConn) corkWrites() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork writes what was gathered and stops gathering.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if c.err != nil {
		return c.err
	}
	return c.flushLocked()
}

func (c *corkConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > 2*maxCorked {
		c.buf = nil
	} else {
		c.buf = c.buf[:0]
	}
	if err != nil {
		c.err = err
	}
	return err
}
