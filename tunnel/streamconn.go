package tunnel

import (
	"errors"
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
}

func newStreamConn(s *yamux.Stream) *streamConn { return &streamConn{Stream: s} }

// past is a deadline that has already expired; it wakes blocked reads and writes.
var past = time.Unix(1, 0)

func (c *streamConn) Read(p []byte) (int, error) {
	n, err := c.Stream.Read(p)
	if err != nil && c.closed.Load() {
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
