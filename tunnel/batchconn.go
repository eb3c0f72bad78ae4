package tunnel

import (
	"net"
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
// The buffer is bounded: a writer blocks while maxPending bytes wait, which keeps
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
}

const maxPending = 512 << 10

func newBatchConn(c net.Conn) *batchConn {
	b := &batchConn{Conn: c, done: make(chan struct{})}
	b.cond = sync.NewCond(&b.mu)
	go b.flushLoop()
	return b
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.err == nil && !b.closed && len(b.pending) > 0 && len(b.pending)+len(p) > maxPending {
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
		out := b.pending
		b.pending = b.spare[:0]
		b.cond.Broadcast()
		b.mu.Unlock()

		_, err := b.Conn.Write(out)

		b.mu.Lock()
		if cap(out) <= 2*maxPending {
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
