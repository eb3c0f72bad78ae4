package tunnel

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-yamux/v5"

	"github.com/fluidity-tunnel/fluidity/tunnel/internal/wire"
)

// ErrStreamReset reports a stream that the peer reset: an abort or a truncation
// (PROTOCOL.md).
var ErrStreamReset = errors.New("tunnel: stream reset")

// resetError is a stream reset by the peer, with the code it sent (PROTOCOL.md).
type resetError struct {
	Code uint32
}

func (e *resetError) Error() string {
	return fmt.Sprintf("tunnel: stream reset by peer (%s)", wire.ResetName(e.Code))
}

// Is makes a resetError match ErrStreamReset.
func (e *resetError) Is(target error) bool { return target == ErrStreamReset }

// stream is a yamux stream as a net.Conn with the tunnel's close semantics
// (PROTOCOL.md): CloseWrite sends FIN, the end of what this side sends; Close
// after both sides have sent FIN is a clean end, and any other Close is an
// abort, a reset the peer sees at once, whatever it was doing.
type stream struct {
	*yamux.Stream
	wroteFIN atomic.Bool
	readEOF  atomic.Bool
	closed   atomic.Bool

	// With an observer: the stream's trace, and its bytes each way. A
	// client's trace ends when the stream closes (endOnClose); a server's
	// when serveStream returns.
	trace      *trace
	endOnClose atomic.Bool
	sent, recv atomic.Int64

	// gate, if not nil, is the session's send gate; pace classifies the
	// stream as bulk or interactive for it, and wait ends a write's wait at
	// it (sendgate.go).
	gate *sendGate
	pace pace
	wait gateWait
}

func newStream(s *yamux.Stream, gate *sendGate) *stream { return &stream{Stream: s, gate: gate} }

func (s *stream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	if s.trace != nil {
		s.recv.Add(int64(n))
	}
	if errors.Is(err, io.EOF) {
		s.readEOF.Store(true)
		return n, err
	}
	return n, s.mapErr(err)
}

func (s *stream) Write(p []byte) (int, error) {
	// One clock read before and after, and only when stalls are observed:
	// yamux blocks in Write while the peer's window is full or its send
	// queue is, and says nothing of it.
	var start time.Time
	if s.trace.timesWrites() {
		start = time.Now()
	}
	n, err := s.gatedWrite(p)
	if s.trace != nil {
		s.sent.Add(int64(n))
		s.trace.wrote(start)
	}
	return n, s.mapErr(err)
}

// mapErr turns yamux's errors into the tunnel's: a reset by the peer is a
// *resetError, a use after Close is net.ErrClosed; timeouts stay net.Errors.
func (s *stream) mapErr(err error) error {
	if err == nil {
		return nil
	}
	if s.closed.Load() {
		return net.ErrClosed
	}
	var se *yamux.StreamError
	if errors.As(err, &se) && se.Remote {
		re := &resetError{Code: se.ErrorCode}
		// A write waiting at the send gate learns of the reset from the
		// read that found it (yamux tells a stream's writer only once it
		// writes).
		s.wait.close(re)
		return re
	}
	return err
}

// SetDeadline sets the read and write deadlines, the write deadline also for
// a write waiting at the send gate.
func (s *stream) SetDeadline(t time.Time) error {
	s.wait.setDeadline(t)
	return s.Stream.SetDeadline(t)
}

// SetWriteDeadline sets the write deadline, also for a write waiting at the
// send gate: yamux's own does not reach it.
func (s *stream) SetWriteDeadline(t time.Time) error {
	s.wait.setDeadline(t)
	return s.Stream.SetWriteDeadline(t)
}

// CloseWrite sends FIN: the peer reads EOF and may keep sending.
func (s *stream) CloseWrite() error {
	s.wroteFIN.Store(true)
	return s.mapErr(s.Stream.CloseWrite())
}

// CloseRead stops reading; the peer is not told.
func (s *stream) CloseRead() error { return s.Stream.CloseRead() }

// done reports whether both sides have sent FIN.
func (s *stream) done() bool { return s.wroteFIN.Load() && s.readEOF.Load() }

// Close ends the stream: cleanly once both sides have sent FIN, as an abort
// (reset with the cancel code) otherwise. It wakes every goroutine blocked on
// the stream, a write waiting at the send gate too, and is idempotent.
func (s *stream) Close() error {
	if s.done() {
		if !s.closed.Swap(true) {
			s.wait.close(net.ErrClosed)
			_ = s.Stream.Close()
			s.ended()
		}
		return nil
	}
	return s.reset(wire.ResetCancel)
}

// reset aborts the stream with code.
func (s *stream) reset(code uint32) error {
	if !s.closed.Swap(true) {
		s.wait.close(net.ErrClosed)
		_ = s.Stream.ResetWithError(code)
		s.ended()
	}
	return nil
}

// ended ends a client stream's trace when the stream closes.
func (s *stream) ended() {
	if s.endOnClose.Load() {
		s.endTrace(nil)
	}
}

// endTrace reports the stream's end to its observer, with err as its failure.
func (s *stream) endTrace(err error) {
	if s.trace != nil {
		s.trace.end(err, s.sent.Load(), s.recv.Load())
	}
}

// fail records why the stream failed, before it is closed.
func (s *stream) fail(code ErrorCode) { s.trace.fail(code) }

var _ interface {
	net.Conn
	CloseWrite() error
	CloseRead() error
} = (*stream)(nil)
