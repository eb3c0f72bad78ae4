package tunnel

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// streamConn is a yamux stream as a net.Conn with real close semantics: yamux's Close
// only sends FIN (a half-close) and leaves blocked reads waiting, which is right for
// CloseWrite but wrong for Close.
type streamConn struct {
	*yamux.Stream
	closed    atomic.Bool
	closeOnce sync.Once
	// peerDone is set once the peer's FIN has been read, finished once the
	// exchange on this stream is complete: closing the stream after either is
	// not an abort.
	peerDone atomic.Bool
	finished atomic.Bool
	// onAbort, set on the agent's streams, tells the server to stop work on a
	// stream the agent gives up early (PROTOCOL.md, control stream).
	onAbort func()
}

func newStreamConn(s *yamux.Stream) *streamConn { return &streamConn{Stream: s} }

// past is a deadline that has already expired; it wakes blocked reads and writes.
var past = time.Unix(1, 0)

func (c *streamConn) Read(p []byte) (int, error) {
	n, err := c.Stream.Read(p)
	if err == io.EOF {
		c.peerDone.Store(true)
	} else if err != nil && c.closed.Load() {
		err = net.ErrClosed
	}
	return n, err
}

func (c *streamConn) Write(p []byte) (int, error) {
	n, err := c.Stream.Write(p)
	if err != nil && c.closed.Load() {
		err = net.ErrClosed
	}
	return n, err
}

// CloseWrite sends FIN: the peer reads EOF and may keep sending.
func (c *streamConn) CloseWrite() error {
	err := c.Stream.Close()
	if errors.Is(err, yamux.ErrSessionShutdown) {
		return net.ErrClosed
	}
	return err
}

// CloseRead stops reading. Data the peer sends after this still counts against the
// stream window until the stream is closed; callers use it only after reading EOF.
func (c *streamConn) CloseRead() error { return nil }

// Close ends the stream in both directions and wakes any goroutine blocked on it.
func (c *streamConn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if c.onAbort != nil && !c.peerDone.Load() && !c.finished.Load() {
			c.onAbort()
		}
		_ = c.Stream.Close()
		_ = c.Stream.SetDeadline(past)
	})
	return nil
}

var _ interface {
	net.Conn
	CloseWrite() error
	CloseRead() error
} = (*streamConn)(nil)
