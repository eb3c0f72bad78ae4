package tunnel

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-yamux/v5"

	"github.com/fluidity-tunnel/fluidity/internal/relay"
	"github.com/fluidity-tunnel/fluidity/tunnel/internal/wire"
)

// Observer receives the events a Client or Server goes through, for metrics,
// in the spirit of net/http/httptrace: a struct of optional funcs. A nil
// *Observer, or a nil field, observes nothing. The funcs are called on the
// tunnel's own goroutines, concurrently: they must be safe for concurrent use
// and quick (count, do not block). No event carries a URL, a host or an
// address, so nothing observed can leak them into labels.
//
// Streams are observed once each, from StreamStart to StreamEnd. On a Client a
// "stream" is one RoundTrip, DialContext or DialWebSocket call: it starts when
// the call does, and ends when the call fails or, once it succeeded, when the
// response body or the returned conn is closed; a stream retried on a fresh
// session is still one. On a Server it is one stream an agent opened, from its
// request frame to its end. Bytes are counted where streams already count
// them, in stream reads and writes, never with a call per read; stalls are
// timed there too, with one clock reading before and one after each write,
// only when StreamStall is set (and, for ConnStall, one pair per write to the
// connection of a batch of frames).
type Observer struct {
	// StreamStart is called when a stream of kind starts.
	StreamStart func(kind StreamKind)
	// StreamFirstByte is called once per stream when its answer, response
	// headers or CONNECT's connected, arrives (at a Client) or leaves (at a
	// Server), with the time since StreamStart. An error answer is not a first
	// byte: the stream's outcome tells of it.
	StreamFirstByte func(kind StreamKind, elapsed time.Duration)
	// StreamEnd is called when a stream has ended. A Server also calls it,
	// with an empty Kind and no StreamStart before, for a stream it refused
	// before reading its request frame (over capacity, shutting down, a bad
	// or unsupported frame).
	StreamEnd func(StreamStats)
	// StreamStall is called when one write into a stream of kind (a body,
	// a relayed chunk, a frame) took longer than StallThreshold, with how long
	// it took: the writer waited on the tunnel, because the peer's window for
	// the stream was full (its reader is slower than this writer, or the
	// window is smaller than bandwidth × round trip) or because the session's
	// connection was backed up (see ConnStall). Writes are timed only when
	// this is set.
	StreamStall func(kind StreamKind, blocked time.Duration)

	// SessionUp is called when a session (one connection) is established.
	SessionUp func()
	// SessionDown is called when a session that was up has ended, with why
	// (one of the SessionEnd constants).
	SessionDown func(reason string)
	// Reconnect is called (on a Client) when a session is established in
	// place of one that had been up before.
	Reconnect func()
	// ConnStall is called when one write of a session's queued frames to its
	// connection took longer than StallThreshold, with how long it took: the
	// kernel's send buffer was full (TCP flow control: a slow or lossy link,
	// or a peer that does not read). Stream stalls without connection stalls
	// mean windows too small for the link, or slow readers at the far end;
	// with them, the link itself is the limit.
	ConnStall func(blocked time.Duration)
	// RTT is called (on a Client) with a round trip measured by a ping: Ping,
	// and a ping each KeepAliveInterval on every session, which Observer.RTT
	// being set turns on.
	RTT func(time.Duration)

	// HandshakeRefused is called (on a Server) when a connection did not
	// become a session, with why: "evicted", "evicted_source", "silent",
	// "slow", "denied" (a certificate on the deny list), "failed", or "decoy" (no
	// client certificate, answered by the decoy; see DecoyConfig).
	HandshakeRefused func(reason string)
	// BreakerStateChange is called (on a Server) when a target's circuit
	// breaker changes state: "closed", "half-open" or "open".
	BreakerStateChange func(from, to string)
	// EgressRefused is called (on a Server) when the egress policy refuses a
	// stream's target.
	EgressRefused func()
}

// StallThreshold is how long a write must block to count as a stall
// (Observer.StreamStall, Observer.ConnStall). A write that does not wait for
// the peer costs microseconds: a copy into yamux's queue, or, at the
// connection, TLS sealing and a copy into the kernel. Measured in-process over
// mTLS on two cores at a load average of 12 (32 concurrent small requests),
// 99 % of stream writes took under 1 ms and 99 % of flushes under 3 ms; the
// slowest, 20 to 45 ms, were run-queue waits of a CPU six times
// oversubscribed (0.5 % of writes there exceeded 5 ms: a starved daemon shows
// stalls too, which its process_cpu_seconds_total tells apart). A window
// refills after a round trip to the peer, tens of milliseconds between a
// laptop and a cloud region, and a wait shorter than the threshold goes
// uncounted, so it must stay well below that: 5 ms.
const StallThreshold = 5 * time.Millisecond

// StreamKind is what a stream carries.
type StreamKind string

// Stream kinds.
const (
	KindHTTP      StreamKind = wire.TypeHTTP
	KindConnect   StreamKind = wire.TypeConnect
	KindWebSocket StreamKind = wire.TypeWebSocket
)

// Stream outcomes that are not the server's error codes: a StreamStats.Code is
// one of these or one of the Code constants.
const (
	// OutcomeOK: the stream did its work (an HTTP error status is still ok).
	OutcomeOK ErrorCode = "ok"
	// OutcomeCanceled: the caller gave up (context cancelled or expired).
	OutcomeCanceled ErrorCode = "canceled"
	// OutcomeTunnelUnavailable: the server could not be reached, or the
	// session ended before the stream was answered.
	OutcomeTunnelUnavailable ErrorCode = "tunnel_unavailable"
	// OutcomeAborted: the stream failed after its answer (a reset, a
	// truncated body, a broken relay).
	OutcomeAborted ErrorCode = "aborted"
	// OutcomeIdle: a CONNECT or WebSocket relay closed by its idle timeout.
	OutcomeIdle ErrorCode = "idle_timeout"
)

// Why a session ended (Observer.SessionDown).
const (
	SessionEndClosed    = "closed"            // this side closed it (Close, Shutdown, a retired session)
	SessionEndPeer      = "peer_closed"       // the peer ended it (GoAway, or closed its connection)
	SessionEndKeepalive = "keepalive_timeout" // a ping went unanswered
	SessionEndError     = "connection_error"  // the connection or the protocol failed
)

// StreamStats describes a stream that has ended.
type StreamStats struct {
	Kind StreamKind
	// Code is OutcomeOK, another Outcome constant or the server's error code.
	Code ErrorCode
	// Sent and Received count the stream's bytes as this end wrote and read
	// them: frames and bodies, not yamux's or TLS's overhead. A Server starts
	// counting after the request frame, which it reads before it knows the
	// stream's kind.
	Sent, Received int64
	// Duration runs from StreamStart to the end.
	Duration time.Duration
}

// trace follows one observed stream; nil when there is no observer.
type trace struct {
	obs   *Observer
	kind  StreamKind
	start time.Time
	first atomic.Bool
	ended atomic.Bool
	mu    sync.Mutex
	code  ErrorCode // first failure recorded; "" means ok
}

// startStream begins the trace of a stream of kind, or returns nil.
func (o *Observer) startStream(kind StreamKind) *trace {
	if o == nil || (o.StreamStart == nil && o.StreamEnd == nil && o.StreamFirstByte == nil && o.StreamStall == nil) {
		return nil
	}
	if o.StreamStart != nil {
		o.StreamStart(kind)
	}
	return &trace{obs: o, kind: kind, start: time.Now()}
}

// refused reports a stream refused before its kind was known.
func (o *Observer) refused(code ErrorCode) {
	if o != nil && o.StreamEnd != nil {
		o.StreamEnd(StreamStats{Code: code})
	}
}

// firstByte records the stream's answer, once.
func (t *trace) firstByte() {
	if t == nil || t.first.Swap(true) || t.obs.StreamFirstByte == nil {
		return
	}
	t.obs.StreamFirstByte(t.kind, time.Since(t.start))
}

// timesWrites reports whether writes into the stream are timed.
func (t *trace) timesWrites() bool { return t != nil && t.obs.StreamStall != nil }

// wrote reports a write into the stream that began at start (zero when writes
// are not timed) as a stall if it blocked for longer than StallThreshold.
func (t *trace) wrote(start time.Time) {
	if start.IsZero() {
		return
	}
	if d := time.Since(start); d > StallThreshold {
		t.obs.StreamStall(t.kind, d)
	}
}

// connStall returns the func a session's connection writer reports its
// stalls to, or nil.
func (o *Observer) connStall() func(time.Duration) {
	if o == nil {
		return nil
	}
	return o.ConnStall
}

// fail records why the stream failed, unless an earlier failure was recorded.
func (t *trace) fail(code ErrorCode) {
	if t == nil {
		return
	}
	t.mu.Lock()
	if t.code == "" {
		t.code = code
	}
	t.mu.Unlock()
}

// relayed records the end of a CONNECT or WebSocket relay, which settles the
// outcome: ok however either side hung up, unless the idle timeout closed it.
func (t *trace) relayed(err error) {
	if errors.Is(err, relay.ErrIdle) {
		t.fail(OutcomeIdle)
	} else {
		t.fail(OutcomeOK)
	}
}

// end reports the stream's end, once; err, if not nil, is recorded first.
func (t *trace) end(err error, sent, received int64) {
	if t == nil {
		return
	}
	if err != nil {
		t.fail(outcomeOf(err))
	}
	if t.ended.Swap(true) || t.obs.StreamEnd == nil {
		return
	}
	t.mu.Lock()
	code := t.code
	t.mu.Unlock()
	if code == "" {
		code = OutcomeOK
	}
	t.obs.StreamEnd(StreamStats{Kind: t.kind, Code: code, Sent: sent, Received: received, Duration: time.Since(t.start)})
}

// outcomeOf names the outcome of a failed stream with a fixed, small set of
// codes (they become metric labels).
func outcomeOf(err error) ErrorCode {
	var re *RemoteError
	switch {
	case err == nil:
		return OutcomeOK
	case errors.As(err, &re):
		for _, c := range codeTable {
			if c.Code == re.Code {
				return re.Code
			}
		}
		return CodeInternal // a code from a newer server: not a label of its choosing
	case errors.Is(err, relay.ErrIdle):
		return OutcomeIdle
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return OutcomeCanceled
	case errors.Is(err, ErrTunnelUnavailable), errors.Is(err, ErrSessionClosed):
		return OutcomeTunnelUnavailable
	case errors.Is(err, ErrBadRequest):
		return CodeBadRequest
	}
	return OutcomeAborted
}

func (o *Observer) sessionUp() {
	if o != nil && o.SessionUp != nil {
		o.SessionUp()
	}
}

func (o *Observer) sessionDown(reason string) {
	if o != nil && o.SessionDown != nil {
		o.SessionDown(reason)
	}
}

func (o *Observer) reconnect() {
	if o != nil && o.Reconnect != nil {
		o.Reconnect()
	}
}

func (o *Observer) rtt(d time.Duration) {
	if o != nil && o.RTT != nil {
		o.RTT(d)
	}
}

func (o *Observer) wantsRTT() bool { return o != nil && o.RTT != nil }

func (o *Observer) handshakeRefused(reason string) {
	if o != nil && o.HandshakeRefused != nil {
		o.HandshakeRefused(reason)
	}
}

func (o *Observer) breakerChange(from, to string) {
	if o != nil && o.BreakerStateChange != nil {
		o.BreakerStateChange(from, to)
	}
}

func (o *Observer) egressRefused() {
	if o != nil && o.EgressRefused != nil {
		o.EgressRefused()
	}
}

// sessionEnd names why a session ended: local when this side closed it,
// otherwise from the first error of the connection or of yamux.
func sessionEnd(local bool, err error) string {
	var ga *yamux.GoAwayError
	switch {
	case local:
		return SessionEndClosed
	case errors.Is(err, yamux.ErrKeepAliveTimeout):
		return SessionEndKeepalive
	case errors.As(err, &ga) && ga.Remote, errors.Is(err, io.EOF), errors.Is(err, ErrServerDraining):
		return SessionEndPeer
	}
	return SessionEndError
}

// muxErr is why yamux ended a closed session: it answers OpenStream on a
// closed session with that error at once, without opening anything.
func muxErr(m *yamux.Session) error {
	if !m.IsClosed() {
		return nil
	}
	_, err := m.OpenStream(context.Background())
	return err
}
