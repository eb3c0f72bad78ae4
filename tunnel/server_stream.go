package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/tunnel/internal/wire"
)

// past is a deadline that has already expired; it wakes blocked reads and writes.
var past = time.Unix(1, 0)

// serveStream serves one stream the agent opened. It counts against MaxStreams
// from the start, and against the session's pending streams (pending) until
// its request frame is in: a client cannot hold memory or goroutines with
// streams that never say what they want.
func (s *Server) serveStream(st *stream, pending chan struct{}, log zerolog.Logger) {
	var once sync.Once
	unpend := func() { once.Do(func() { <-pending }) }
	defer unpend()
	defer st.Close()
	if s.isDraining() {
		s.answerError(st, &RemoteError{Code: CodeShuttingDown})
		s.cfg.Observer.refused(CodeShuttingDown)
		return
	}
	slot := s.acquire(st)
	if slot == nil {
		s.limit.event(log.Warn(), "over capacity").Int("max_streams", s.cfg.MaxStreams).Msg("over capacity; stream refused")
		s.answerError(st, &RemoteError{Code: CodeOverCapacity, Message: "server at max_connections"})
		s.cfg.Observer.refused(CodeOverCapacity)
		return
	}
	s.active.Add(1)
	s.touch()
	defer s.release(slot)

	_ = st.SetReadDeadline(time.Now().Add(s.cfg.HeaderTimeout))
	var req wire.Request
	err := wire.Read(st, s.cfg.Session.MaxHeaderSize, &req)
	_ = st.SetReadDeadline(time.Time{})
	s.holders.headerIn(slot)
	unpend()
	if err != nil {
		if code := s.refuseFrame(st, err, log); code != "" {
			s.cfg.Observer.refused(code)
		}
		return
	}
	ctx, cancel := context.WithCancel(s.baseCtx)
	defer cancel()
	start := time.Now()
	// Set before any other goroutine uses the stream.
	st.trace = s.cfg.Observer.startStream(StreamKind(req.Type))
	var target string
	switch req.Type {
	case wire.TypeHTTP:
		target, err = s.serveHTTP(ctx, cancel, st, req.HTTP(), log)
	case wire.TypeConnect:
		target, err = s.serveConnect(ctx, cancel, st, req.Connect(), log)
	case wire.TypeWebSocket:
		target, err = s.serveWebSocket(ctx, cancel, st, req.HTTP(), log)
	}
	cancel()
	st.endTrace(err)
	refused := errors.Is(err, ErrRefusedByPolicy)
	if refused {
		s.cfg.Observer.egressRefused()
	}
	// The stream's work is over (the agent may have seen its end already):
	// its slot goes back before the logging, not after.
	s.release(slot)
	if refused {
		// The session logger names the client; the target host is all that is said
		// about the destination.
		log.Info().Str("type", req.Type).Str("target", target).Msg("target refused by egress policy")
		return
	}
	ev := log.Debug()
	if err != nil {
		ev = log.Info().Err(err)
	}
	ev.Str("type", req.Type).Str("target", target).Dur("duration", time.Since(start).Round(time.Microsecond)).Msg("stream")
}

// refuseFrame answers a request frame that could not be read. A peer speaking
// an older version gets the refusal in its own version's framing, so that it can
// tell its user why; a newer one gets it in this version's. It returns the code
// answered, or "" when the agent gave up or the stream was pushed out (no
// request, so no outcome).
func (s *Server) refuseFrame(st *stream, err error, log zerolog.Logger) ErrorCode {
	var ve *wire.VersionError
	if errors.As(err, &ve) {
		log.Info().Int("version", int(ve.Version)).Msg("stream in an unsupported protocol version refused")
		version := byte(wire.Version)
		if ve.Version > 0 && ve.Version < wire.Version {
			version = ve.Version
		}
		msg := fmt.Sprintf("this server speaks protocol version %d; upgrade the agent", wire.Version)
		buf, _ := wire.AppendVersion(nil, version, wire.TypeError, wire.Error{Code: string(CodeUnsupportedVersion), Message: msg})
		_ = st.SetWriteDeadline(time.Now().Add(s.cfg.Session.WriteTimeout))
		s.holders.answering(st)
		if _, err := st.Write(buf); err == nil {
			s.finish(st)
		}
		return CodeUnsupportedVersion
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		log.Debug().Msg("no request frame within the header timeout; stream reset")
		_ = st.reset(wire.ResetCancel)
		return CodeTimeout
	}
	if errors.Is(err, ErrStreamReset) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		// The agent gave up, or the stream was pushed out for a fresher one.
		return ""
	}
	log.Debug().Err(err).Msg("bad request frame")
	s.answerError(st, &RemoteError{Code: CodeBadRequest, Message: err.Error()})
	return CodeBadRequest
}

func (s *Server) touch() { s.lastActivity.Store(time.Now().UnixNano()) }

// answer writes the answer frame, within the write timeout.
func (s *Server) answer(st *stream, typ string, payload any) error {
	_ = st.SetWriteDeadline(time.Now().Add(s.cfg.Session.WriteTimeout))
	err := wire.Write(st, typ, payload)
	_ = st.SetWriteDeadline(time.Time{})
	if err == nil && typ != wire.TypeError {
		st.trace.firstByte()
	}
	return err
}

// answerError sends an error frame and ends the stream.
func (s *Server) answerError(st *stream, re *RemoteError) {
	s.holders.answering(st)
	if s.answer(st, wire.TypeError, wire.Error{Code: string(re.Code), Message: re.Message}) == nil {
		s.finish(st)
	}
}

// finish ends a stream whose answer is complete: FIN, then, if the agent is
// still sending (a request body nobody will read), a reset with no_error, which
// tells it to stop without taking back what it has received (PROTOCOL.md).
func (s *Server) finish(st *stream) {
	_ = st.CloseWrite()
	if !st.readEOF.Load() {
		_ = st.reset(wire.ResetNoError)
	}
}

// fail answers with the classified error and returns it for logging.
func (s *Server) fail(st *stream, err error) error {
	re := classify(err)
	s.answerError(st, re)
	return re
}

// abortWatch notices, while the server works on a stream and reads nothing from
// it, that the agent reset it: the work is then cancelled at once (retries and
// backoff included). It reads at most one byte, which it keeps.
type abortWatch struct {
	st    *stream
	begin chan struct{} // closed when the watch may start reading
	quit  chan struct{}
	done  chan struct{}
	once  sync.Once
	stop1 sync.Once
	buf   [1]byte
	n     int
	fin   atomic.Bool // the agent sent FIN: it sends nothing more
}

// watchAbort starts a watch on st; it reads once begin is called (at once if
// now). stop ends it. With strict, a byte from the agent is a protocol error
// (after a request body of known length nothing may follow); otherwise it is
// kept (an early byte of a raw stream).
func (s *Server) watchAbort(st *stream, abort context.CancelFunc, now, strict bool) *abortWatch {
	w := &abortWatch{st: st, begin: make(chan struct{}), quit: make(chan struct{}), done: make(chan struct{})}
	if now {
		w.start()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(w.done)
		select {
		case <-w.begin:
		case <-w.quit:
			return
		}
		n, err := st.Read(w.buf[:])
		w.n = n
		var ne net.Error
		switch {
		case n > 0 && strict:
			_ = st.reset(wire.ResetProtocol)
			abort()
		case errors.Is(err, io.EOF):
			w.fin.Store(true)
		case err == nil || w.stopped():
			// Woken by stop's deadline, as every watch of a plain-HTTP request
			// is: errors.As below costs a reflective walk (2 % of the server's
			// CPU forwarding small requests, BENCHMARKS.md) to say what quit
			// already says.
		case !(errors.As(err, &ne) && ne.Timeout()):
			abort()
		}
	}()
	return w
}

func (w *abortWatch) stopped() bool {
	select {
	case <-w.quit:
		return true
	default:
		return false
	}
}

// start lets the watch read: the stream has nothing else to read before the answer.
func (w *abortWatch) start() { w.once.Do(func() { close(w.begin) }) }

// stop ends the watch and returns the byte it read, if the agent did send one
// (an early byte of a raw stream), so that it can still be forwarded.
func (w *abortWatch) stop() []byte {
	w.stop1.Do(func() {
		close(w.quit)
		_ = w.st.SetReadDeadline(past)
		<-w.done
		_ = w.st.SetReadDeadline(time.Time{})
	})
	return w.buf[:w.n]
}
