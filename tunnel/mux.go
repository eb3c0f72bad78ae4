package tunnel

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-yamux/v5"
	"github.com/rs/zerolog"
)

// The multiplexer is github.com/libp2p/go-yamux, a maintained fork of
// hashicorp/yamux that speaks the same protocol and adds what the tunnel needs:
// per-stream reset (an abort that is not a half-close), RTT-based receive-window
// auto-tuning, a memory manager that bounds all receive windows together, and a
// cap on streams the peer may open.

// yamuxConfig builds the multiplexer's configuration. incoming caps the streams
// the peer may have open at once; beyond it yamux resets new ones.
func (c SessionConfig) yamuxConfig(log zerolog.Logger, limit *logLimit, incoming uint32) *yamux.Config {
	c = c.withDefaults()
	y := yamux.DefaultConfig()
	y.AcceptBacklog = c.AcceptBacklog
	y.EnableKeepAlive = true
	y.KeepAliveInterval = c.KeepAliveInterval
	y.ConnectionWriteTimeout = c.WriteTimeout
	y.MaxStreamWindowSize = c.StreamWindow
	y.MaxIncomingStreams = incoming
	y.LogOutput = yamuxLog{log: log, limit: limit}
	// The connection under yamux (batchConn) gathers frames into few writes;
	// yamux's own coalescing is disabled in this version anyway.
	y.WriteCoalesceDelay = 0
	y.MaxMessageSize = maxMessage
	return y
}

// yamuxLog routes yamux's log lines into zerolog by the level yamux writes in
// front of each: "[ERR]" at error, "[WARN]" at warn, anything else at debug.
// Errors and warnings go through limit: a peer flooding pings or streams makes
// yamux warn once per frame.
type yamuxLog struct {
	log   zerolog.Logger
	limit *logLimit
}

func (l yamuxLog) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	// yamux's logger prefixes a date and time; the level tag follows them.
	if i := strings.IndexByte(line, '['); i > 0 {
		line = line[i:]
	}
	var ev *zerolog.Event
	switch {
	case strings.HasPrefix(line, "[ERR]"):
		ev = l.limit.event(l.log.Error(), limitKeyOf(line))
	case strings.HasPrefix(line, "[WARN]"):
		ev = l.limit.event(l.log.Warn(), limitKeyOf(line))
	default:
		ev = l.log.Debug()
	}
	ev.Msg(line)
	return len(p), nil
}

// errReceiveBudget is what the receive budget answers a window that would grow
// past it; yamux then keeps that stream's window as it is.
var errReceiveBudget = errors.New("tunnel: receive window budget exhausted")

// streamOpenPriority is the priority yamux reserves a new stream's initial
// window with; a refusal there would end the whole session.
const streamOpenPriority = 255

// receiveBudget bounds the receive-window memory of every stream of a Client or
// a Server together. A stream's initial 256 KiB window is always granted (yamux
// ends the session when it is not), and counted; growing a window is granted
// only within the budget. The number of streams, and so of initial windows, is
// bounded elsewhere (max_connections, MaxIncomingStreams).
type receiveBudget struct {
	limit int64
	used  atomic.Int64
}

func newReceiveBudget(limit int64) *receiveBudget { return &receiveBudget{limit: limit} }

// Used reports the bytes of receive window currently granted.
func (b *receiveBudget) Used() int64 { return b.used.Load() }

// span is yamux's per-stream memory manager constructor.
func (b *receiveBudget) span() (yamux.MemoryManager, error) { return &budgetSpan{b: b}, nil }

// budgetSpan is one stream's share of the budget.
type budgetSpan struct {
	b    *receiveBudget
	mu   sync.Mutex
	held int64
	done bool
}

func (s *budgetSpan) ReserveMemory(size int, prio uint8) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return errReceiveBudget
	}
	n := int64(size)
	if prio < streamOpenPriority {
		for {
			used := s.b.used.Load()
			if used+n > s.b.limit {
				return errReceiveBudget
			}
			if s.b.used.CompareAndSwap(used, used+n) {
				break
			}
		}
	} else {
		s.b.used.Add(n)
	}
	s.held += n
	return nil
}

func (s *budgetSpan) ReleaseMemory(size int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(int64(size), s.held)
	s.held -= n
	s.b.used.Add(-n)
}

func (s *budgetSpan) Done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	s.done = true
	s.b.used.Add(-s.held)
	s.held = 0
}

// newMux starts yamux over conn (wrapped in a batchConn) on the client or the
// server side; obs, if not nil, is told of the connection's write stalls.
// streams, if not nil, counts the streams the server is serving (see
// maxUnsentAlone); it must not block, since the flusher calls it. gate, if
// not nil, is told of the data frames yamux writes (sendgate.go).
func newMux(conn net.Conn, client bool, cfg *yamux.Config, budget *receiveBudget, obs *Observer, streams func() int, gate *sendGate) (*yamux.Session, error) {
	bc := newBatchConn(conn, !client, obs.connStall(), streams)
	open := yamux.Server
	if client {
		open = yamux.Client
	}
	var yc net.Conn = bc
	if gate != nil {
		yc = &gateConn{Conn: bc, gate: gate}
	}
	mux, err := open(yc, cfg, budget.span)
	if err != nil {
		_ = bc.Close()
		return nil, err
	}
	return mux, nil
}

// maxMessage is the largest yamux frame a stream writes: a 64 KiB write (the
// relay's buffer) plus yamux's 12-byte header, so that one write is one frame
// rather than yamux's default of a 65,524-byte frame and a 12-byte one.
const maxMessage = 64<<10 + 12
