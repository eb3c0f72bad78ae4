// Package relay moves bytes both ways between two connections, carrying half-close
// through and giving up on connections that stay idle too long.
package relay

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is a connection that can shut down its write side alone (TCP, TLS, tunnel streams).
type Conn interface {
	net.Conn
	CloseWrite() error
}

// AsConn gives a conn without CloseWrite (rare: custom dialers, wrapped conns) a
// full close in its place, which still ends the other side's read rather than
// leaving it waiting.
func AsConn(c net.Conn) Conn {
	if rc, ok := c.(Conn); ok {
		return rc
	}
	return closeWriteByClose{c}
}

type closeWriteByClose struct{ net.Conn }

func (c closeWriteByClose) CloseWrite() error { return c.Close() }

// copyBufSize balances per-copy overhead against memory held per active relay.
const copyBufSize = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// GetBuffer lends a copy buffer from the shared pool; give it back with PutBuffer.
func GetBuffer() *[]byte { return bufPool.Get().(*[]byte) }

// PutBuffer returns a buffer from GetBuffer.
func PutBuffer(b *[]byte) { bufPool.Put(b) }

// Copy is io.Copy with a pooled buffer. It hides ReaderFrom and WriterTo on purpose:
// the tunnel's streams have neither, and io.Copy's fallback allocates a fresh buffer.
func Copy(dst io.Writer, src io.Reader) (int64, error) {
	b := GetBuffer()
	defer PutBuffer(b)
	return io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *b)
}

// Prefixed reads prefix, then r: the bytes read ahead of a relay (while a
// request or handshake was parsed) and then the connection itself, so that no
// parsing buffer stays in the data path. prefix is not copied.
func Prefixed(prefix []byte, r io.Reader) io.Reader {
	if len(prefix) == 0 {
		return r
	}
	return io.MultiReader(bytes.NewReader(prefix), r)
}

// Buffered returns what br holds unread, without reading more: with Prefixed,
// the rest of a connection after a header parsed through br. It aliases br's
// buffer, so br must not be used afterwards.
func Buffered(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return b
}

// Options tune one relay.
type Options struct {
	// IdleTimeout closes both sides when no byte has moved either way for this long.
	// Zero means no limit.
	IdleTimeout time.Duration
	// AReader, if set, is read instead of A (for bytes buffered while A was parsed).
	AReader io.Reader
	// BReader, if set, is read instead of B.
	BReader io.Reader
}

// Result reports what a relay moved.
type Result struct {
	AtoB, BtoA int64
	// Err is the first error other than a clean end of stream, or ErrIdle.
	Err error
}

// ErrIdle reports that a relay was closed by its idle timeout.
var ErrIdle = errors.New("relay: idle timeout")

// Run copies A→B and B→A until both directions have ended, then closes both. A clean
// EOF on one side half-closes the other (CloseWrite) and the opposite direction goes
// on; an error on either direction closes both at once so that nothing hangs.
func Run(a, b Conn, opt Options) Result {
	ar, br := io.Reader(a), io.Reader(b)
	if opt.AReader != nil {
		ar = opt.AReader
	}
	if opt.BReader != nil {
		br = opt.BReader
	}
	var (
		last     atomic.Int64
		idleHit  atomic.Bool
		closeAll sync.Once
		res      Result
		errMu    sync.Mutex
	)
	shut := func() {
		closeAll.Do(func() {
			_ = a.Close()
			_ = b.Close()
		})
	}
	fail := func(err error) {
		errMu.Lock()
		if res.Err == nil {
			res.Err = err
		}
		errMu.Unlock()
		shut()
	}
	touch := func() { last.Store(time.Now().UnixNano()) }
	touch()

	var stopIdle func()
	if opt.IdleTimeout > 0 {
		var (
			mu      sync.Mutex
			t       *time.Timer
			stopped bool
		)
		check := func() {
			mu.Lock()
			defer mu.Unlock()
			if stopped {
				return
			}
			idle := time.Since(time.Unix(0, last.Load()))
			if idle >= opt.IdleTimeout {
				idleHit.Store(true)
				fail(ErrIdle)
				return
			}
			t.Reset(opt.IdleTimeout - idle)
		}
		mu.Lock()
		t = time.AfterFunc(opt.IdleTimeout, check)
		mu.Unlock()
		stopIdle = func() {
			mu.Lock()
			stopped = true
			t.Stop()
			mu.Unlock()
		}
	}

	pump := func(dst Conn, src io.Reader, n *int64) {
		written, err := Copy(&touchWriter{w: dst, touch: touch}, src)
		*n = written
		if err != nil {
			if !idleHit.Load() && !errors.Is(err, net.ErrClosed) {
				fail(err)
			} else {
				shut()
			}
			return
		}
		if cerr := dst.CloseWrite(); cerr != nil {
			shut()
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pump(b, ar, &res.AtoB)
	}()
	pump(a, br, &res.BtoA)
	wg.Wait()
	if stopIdle != nil {
		stopIdle()
	}
	shut()
	return res
}

type touchWriter struct {
	w     io.Writer
	touch func()
}

func (t *touchWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	t.touch()
	return n, err
}
