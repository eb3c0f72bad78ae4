package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/libp2p/go-yamux/v5"
	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/tunnel/internal/wire"
)

// ErrServerClosed is returned by Serve and ServeConn after Shutdown or Close.
var ErrServerClosed = errors.New("tunnel: server closed")

// ContextDialer dials like net.Dialer.DialContext.
type ContextDialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// ServerConfig configures a Server. The zero value means the defaults
// (DefaultServerConfig); Serve needs TLSConfig.
type ServerConfig struct {
	Session SessionConfig
	// Logger receives session and stream events. Only target host names are logged,
	// never paths, queries, headers or bodies. The zero value logs nothing.
	Logger zerolog.Logger
	// TLSConfig is required by Serve; it must be TLS 1.3 only and require client
	// certificates (see NewServerTLSConfig). ServeConn takes connections the caller
	// has already authenticated and ignores it.
	TLSConfig *tls.Config
	// HandshakeTimeout bounds the TLS handshake of each accepted connection.
	// Default 10 s.
	HandshakeTimeout time.Duration
	// FirstByteTimeout bounds the wait for an accepted connection's first byte. A
	// real TLS client sends its ClientHello as soon as it has connected, so a
	// connection silent this long is closed, freeing its place long before
	// HandshakeTimeout. Default 3 s: room for a lost and retransmitted first
	// segment (TCP's initial retransmission timeout is 1 s) and for an upstream
	// proxy relaying its CONNECT answer to the agent before the ClientHello leaves.
	FirstByteTimeout time.Duration
	// MaxPendingHandshakes caps connections still in their TLS handshake. At the
	// cap, a new connection pushes out the stalest pending one (the one longest
	// without progress; see handshake.go) instead of being dropped, so idle or slow
	// connections, however many, cannot lock authenticated clients out. Default 64.
	MaxPendingHandshakes int
	// MaxPendingHandshakesPerSource caps the pending handshakes of one source: an
	// IPv4 address, or an IPv6 /64. At the cap, a new connection from that source
	// pushes out the source's stalest pending one. Default 8. Behind a proxy or
	// load balancer that hides client addresses, set it to MaxPendingHandshakes.
	MaxPendingHandshakesPerSource int
	// MaxStreams caps concurrent streams over all sessions (the seed's
	// max_connections). A stream counts from the moment it is accepted; beyond the
	// cap it is answered with an over_capacity error. Default 100.
	MaxStreams int
	// MaxPendingStreams caps, per session, the streams whose request frame has not
	// fully arrived; further streams of that session wait to be accepted. It bounds
	// what one session can hold of MaxStreams with headers sent slowly or never.
	// Default 32.
	MaxPendingStreams int
	// HeaderTimeout bounds how long a new stream may take to send its request
	// frame. Default 5 s.
	HeaderTimeout time.Duration
	// DialTimeout bounds each dial to a target. Default 10 s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for a target's response headers.
	// Default 60 s.
	ResponseHeaderTimeout time.Duration
	// IdleTimeout closes CONNECT and WebSocket streams that move no byte for this
	// long. Default 10 min; negative means no limit.
	IdleTimeout time.Duration
	// ReceiveBudget bounds the receive-window memory of all streams of all
	// sessions together: past it, no stream's window grows. Default 128 MiB, a
	// quarter of the 512 MiB Fargate task.
	ReceiveBudget int64
	// Egress is the policy every target dial (HTTP, CONNECT, WebSocket) is checked
	// against, after DNS resolution and before any connection. A refusal is answered
	// with the refused error code (403 at the agent). The default refuses loopback,
	// link-local, private and other non-public addresses; see EgressConfig.
	Egress EgressConfig
	// Breaker tunes the circuit breaker kept per target; an open breaker is
	// answered at once with the breaker_open error code (503 at the agent).
	Breaker BreakerConfig
	// Retry tunes the retries of failed dials and of idempotent bodiless requests.
	Retry RetryConfig
	// Resolver resolves target names for the egress check. Default: the system's.
	Resolver Resolver
	// Dialer connects to targets underneath the egress policy: it is only ever handed
	// IP addresses the policy has approved, never names. Default: a net.Dialer that
	// checks the socket address once more just before connecting.
	Dialer ContextDialer
	// TargetTLSConfig is used for TLS to targets (https and wss); nil means the system
	// roots. The server clones it.
	TargetTLSConfig *tls.Config
	// Observer, if set, is told of sessions, streams, handshake refusals,
	// breaker changes and egress refusals (for metrics); see Observer.
	Observer *Observer
	// Decoy, when enabled, answers TLS clients without a client certificate like
	// an ordinary HTTPS server instead of failing their handshake; see
	// DecoyConfig. Off by default.
	Decoy DecoyConfig
	// Transport, if set, makes HTTP requests instead of the server's own pooled one.
	// Breakers and retries still apply to it, but the egress policy only does if its
	// dialer goes through the server (the server's own transport always does): a
	// custom Transport is for tests and special embeddings.
	Transport http.RoundTripper
}

// Server defaults; see ServerConfig.
const (
	defaultHandshakeTimeout      = 10 * time.Second
	defaultFirstByteTimeout      = 3 * time.Second
	defaultMaxPendingHandshakes  = 64
	defaultMaxPendingPerSource   = 8
	defaultMaxStreams            = 100
	defaultMaxPendingStreams     = 32
	defaultHeaderTimeout         = 5 * time.Second
	defaultTargetDialTimeout     = 10 * time.Second
	defaultResponseHeaderTimeout = 60 * time.Second
	defaultIdleTimeout           = 10 * time.Minute
)

// DefaultServerConfig returns what a zero ServerConfig stands for, with the
// seed's max_connections of 100.
func DefaultServerConfig() ServerConfig { return ServerConfig{}.withDefaults() }

func (c ServerConfig) withDefaults() ServerConfig {
	c.Session = c.Session.withDefaults()
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&c.HandshakeTimeout, defaultHandshakeTimeout)
	set(&c.FirstByteTimeout, defaultFirstByteTimeout)
	set(&c.HeaderTimeout, defaultHeaderTimeout)
	set(&c.DialTimeout, defaultTargetDialTimeout)
	set(&c.ResponseHeaderTimeout, defaultResponseHeaderTimeout)
	set(&c.IdleTimeout, defaultIdleTimeout)
	if c.MaxPendingHandshakes == 0 {
		c.MaxPendingHandshakes = defaultMaxPendingHandshakes
	}
	if c.MaxPendingHandshakesPerSource == 0 {
		c.MaxPendingHandshakesPerSource = defaultMaxPendingPerSource
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = defaultMaxStreams
	}
	if c.MaxPendingStreams == 0 {
		c.MaxPendingStreams = defaultMaxPendingStreams
	}
	if c.ReceiveBudget == 0 {
		c.ReceiveBudget = defaultReceiveBudget
	}
	c.Breaker = c.Breaker.withDefaults()
	c.Retry = c.Retry.withDefaults()
	return c
}

// Validate reports the first unusable setting. Zero fields take their defaults.
func (c ServerConfig) Validate() error {
	if err := c.Session.Validate(); err != nil {
		return err
	}
	c = c.withDefaults()
	switch {
	case c.HandshakeTimeout < 0:
		return errors.New("tunnel: server: handshake timeout must not be negative")
	case c.FirstByteTimeout < 0:
		return errors.New("tunnel: server: first byte timeout must not be negative")
	case c.MaxPendingHandshakes < 0:
		return errors.New("tunnel: server: max pending handshakes must not be negative")
	case c.MaxPendingHandshakesPerSource < 0:
		return errors.New("tunnel: server: max pending handshakes per source must not be negative")
	case c.MaxStreams < 0:
		return errors.New("tunnel: server: max streams must not be negative")
	case c.MaxPendingStreams < 0:
		return errors.New("tunnel: server: max pending streams must not be negative")
	case c.MaxStreams > math.MaxInt32 || c.MaxPendingStreams > math.MaxInt32:
		// Their sum is yamux's per-session stream cap, a uint32.
		return errors.New("tunnel: server: max streams and max pending streams must each be at most 2^31-1")
	case c.HeaderTimeout < 0 || c.DialTimeout < 0 || c.ResponseHeaderTimeout < 0:
		return errors.New("tunnel: server: header, dial and response header timeouts must not be negative")
	case c.ReceiveBudget < minStreamWindow:
		return fmt.Errorf("tunnel: server: receive budget %d below one stream window (256 KiB)", c.ReceiveBudget)
	}
	if err := c.Egress.internal().Validate(); err != nil {
		return fmt.Errorf("tunnel: server: %w", err)
	}
	if err := c.Breaker.validate(); err != nil {
		return err
	}
	if err := c.Retry.validate(); err != nil {
		return err
	}
	if err := c.Decoy.validate(); err != nil {
		return err
	}
	if c.TLSConfig != nil {
		if c.TLSConfig.MinVersion < tls.VersionTLS13 {
			return errors.New("tunnel: server: TLS config must require TLS 1.3")
		}
		if c.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
			// Even with a decoy: the server relaxes it itself (decoyTLS), so a
			// config that does not demand certificates is a mistake either way.
			return errors.New("tunnel: server: TLS config must require and verify client certificates")
		}
	}
	return nil
}

// Server accepts tunnel sessions and serves their streams: it makes the HTTP
// requests, dials the CONNECT targets and relays the WebSockets its clients ask for.
type Server struct {
	cfg       ServerConfig
	log       zerolog.Logger
	transport http.RoundTripper
	ownedTr   *http.Transport
	guards    *guards
	budget    *receiveBudget
	limit     *logLimit
	holders   *holders

	baseCtx    context.Context // cancelled by Close: aborts every upstream operation and handshake
	cancelBase context.CancelFunc

	streams  chan struct{} // admission tokens, cap MaxStreams
	pending  *admission    // connections in their TLS handshake
	refusals *refusalLog
	decoy    *decoy // nil without DecoyConfig.Enabled

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*yamux.Session]struct{}
	draining  bool
	closed    bool

	wg           sync.WaitGroup
	workers      *workers // serve streams, counted in wg
	active       atomic.Int64
	lastActivity atomic.Int64
	idleCh       chan struct{} // signalled when active drops to zero
	closeOnce    sync.Once
}

// NewServer returns a server; it does nothing until Serve or ServeConn. It does
// not keep cfg (TLSConfig is cloned).
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.TLSConfig != nil {
		cfg.TLSConfig = cfg.TLSConfig.Clone()
		if cfg.Decoy.Enabled {
			cfg.TLSConfig = decoyTLS(cfg.TLSConfig)
		}
	}
	g, err := newGuards(&cfg, cfg.Logger)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		baseCtx:    ctx,
		cancelBase: cancel,
		streams:    make(chan struct{}, cfg.MaxStreams),
		pending:    newAdmission(cfg.MaxPendingHandshakes, cfg.MaxPendingHandshakesPerSource),
		refusals:   &refusalLog{log: cfg.Logger, every: refusalLogEvery},
		listeners:  make(map[net.Listener]struct{}),
		sessions:   make(map[*yamux.Session]struct{}),
		idleCh:     make(chan struct{}, 1),
		guards:     g,
		budget:     newReceiveBudget(cfg.ReceiveBudget),
		limit:      newLogLimit(),
		holders:    newHolders(),
	}
	s.workers = newWorkers(&s.wg, ctx.Done())
	if cfg.Decoy.Enabled {
		s.decoy = newDecoy(cfg.Decoy)
	}
	s.lastActivity.Store(time.Now().UnixNano())
	s.transport = cfg.Transport
	if s.transport == nil {
		s.ownedTr = s.newTransport()
		s.transport = s.ownedTr
	}
	return s, nil
}

func (s *Server) newTransport() *http.Transport {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.cfg.TargetTLSConfig != nil {
		tlsCfg = s.cfg.TargetTLSConfig.Clone()
	}
	if tlsCfg.ClientSessionCache == nil {
		tlsCfg.ClientSessionCache = tls.NewLRUClientSessionCache(256)
	}
	return &http.Transport{
		Proxy:                 nil, // never chain through an environment proxy
		DialContext:           s.dialTarget,
		TLSClientConfig:       tlsCfg,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   128, // a browser easily keeps dozens of requests to one host in flight
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   s.cfg.DialTimeout,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: s.cfg.ResponseHeaderTimeout,
		// Encodings pass through untouched: the agent's client negotiated them and
		// compressed bytes are cheaper to carry through the tunnel.
		DisableCompression: true,
	}
}

// ActiveStreams reports the streams being served now.
func (s *Server) ActiveStreams() int64 { return s.active.Load() }

func (s *Server) activeStreams() int { return int(s.active.Load()) }

// LastActivity reports when a stream last started or ended.
func (s *Server) LastActivity() time.Time { return time.Unix(0, s.lastActivity.Load()) }

// Serve accepts connections on ln, which it closes on return, authenticates them
// with TLSConfig and serves each as a session. It returns ErrServerClosed after
// Shutdown or Close, ctx.Err() when ctx ends, or the listener's error.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.cfg.TLSConfig == nil {
		return errors.New("tunnel: server: Serve needs a TLS config")
	}
	if !s.track(ln) {
		_ = ln.Close()
		return ErrServerClosed
	}
	defer s.untrack(ln)
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if acceptRetryable(err) {
				// Out of file descriptors, or a timeout: wait and accept again,
				// as net/http does, rather than stop serving for good.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed; retrying")
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
				case <-s.baseCtx.Done():
					t.Stop()
				}
				continue
			}
			return fmt.Errorf("tunnel: accept: %w", err)
		}
		backoff = 0
		p, victim := s.pending.admit(conn)
		if victim != nil {
			// Its goroutine sees the handshake fail and reports the refusal.
			_ = victim.conn.Close()
		}
		// Added under the lock that Close sets closed under, so that Close's
		// Wait never misses a handshake accepted while it was closing.
		s.mu.Lock()
		closed := s.closed
		if !closed {
			s.wg.Add(1)
		}
		s.mu.Unlock()
		if closed {
			s.pending.release(p)
			_ = conn.Close()
			return ErrServerClosed
		}
		go func() {
			defer s.wg.Done()
			s.handshakeAndServe(ctx, p)
		}()
	}
}

func (s *Server) handshakeAndServe(ctx context.Context, p *pendingConn) {
	conn := p.conn
	// Keep little unsent data queued in the kernel, so that an interactive stream's
	// frames do not wait behind megabytes of a bulk download (head-of-line), and
	// gather each flush's TLS records into one write (corkConn).
	unsent := newUnsentLimit(conn, maxUnsent)
	_ = conn.SetReadDeadline(time.Now().Add(s.cfg.FirstByteTimeout))
	watched := &firstByteConn{Conn: conn, onFirst: func() { s.pending.progress(p) }}
	tconn := tls.Server(&corkConn{Conn: watched, unsent: unsent}, s.cfg.TLSConfig)
	// Close cancels handshakes in progress rather than waiting for them.
	hctx, cancel := context.WithTimeout(ctx, s.cfg.HandshakeTimeout)
	stop := context.AfterFunc(s.baseCtx, cancel)
	err := tconn.HandshakeContext(hctx)
	stop()
	cancel()
	out, started := s.pending.release(p)
	if err == nil && out == notEvicted {
		// The one gate to the tunnel: a client certificate that crypto/tls
		// verified against the CA (and the deny list passed). Whatever the
		// TLS config says, nothing else becomes a session.
		cs := tconn.ConnectionState()
		if len(cs.VerifiedChains) > 0 {
			_ = s.ServeConn(ctx, tconn)
			return
		}
		if s.decoy != nil && len(cs.PeerCertificates) == 0 {
			s.refusals.add(refusedDecoy, conn.RemoteAddr(), nil)
			s.cfg.Observer.handshakeRefused(refusalNames[refusedDecoy])
			s.decoy.serve(tconn, s.goOwned)
			return
		}
		err = errUnverifiedClient
	}
	_ = conn.Close()
	var why refusal
	denied := false
	switch {
	case s.baseCtx.Err() != nil || ctx.Err() != nil:
		return // the server is closing: not a refusal
	case out == evictedFull:
		why = refusedFull
	case out == evictedSource:
		why = refusedSource
	case !started && errors.Is(err, os.ErrDeadlineExceeded):
		why = refusedSilent
	case !started:
		// Connected and hung up without a word: a TCP health check (Fargate's) or
		// a port scan, not worth a line.
		return
	case errors.Is(err, context.DeadlineExceeded):
		why = refusedSlow
	case errors.Is(err, ErrClientDenied):
		// Only a holder of a certificate from the CA gets this far, so this
		// cannot be a stranger's flood: worth its own line, as before.
		s.log.Info().Str("remote", conn.RemoteAddr().String()).Err(err).Msg("tls handshake refused")
		why, denied = refusedFailed, true
	default:
		why = refusedFailed
	}
	s.refusals.add(why, conn.RemoteAddr(), err)
	if denied {
		s.cfg.Observer.handshakeRefused("denied")
	} else {
		s.cfg.Observer.handshakeRefused(refusalNames[why])
	}
}

// errUnverifiedClient is why a completed handshake without a verified client
// certificate was closed: only possible with a TLS config that does not verify
// them (NewServer refuses those, but GetConfigForClient may return one).
var errUnverifiedClient = errors.New("tunnel: client certificate not verified")

// goOwned runs f in a goroutine Close waits for. Only called from a goroutine
// Close already waits for, so the WaitGroup cannot be at zero.
func (s *Server) goOwned(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// ServeConn serves one session over conn, which the caller has authenticated (a
// *tls.Conn after its handshake, or any conn in tests). It blocks until the session
// ends and returns why.
func (s *Server) ServeConn(ctx context.Context, conn net.Conn) error {
	log := s.log.With().Str("remote", conn.RemoteAddr().String()).Str("client", PeerIdentity(conn)).Logger()
	rc := &recordingConn{Conn: conn}
	// A session may hold at most every admitted stream plus its pending ones;
	// yamux resets streams past that before they cost anything.
	incoming := uint32(s.cfg.MaxStreams + s.cfg.MaxPendingStreams) // #nosec G115 -- Validate caps both at MaxInt32
	gate := newSendGate()
	mux, err := s.startSession(rc, s.cfg.Session.yamuxConfig(log, s.limit, incoming), gate)
	if err != nil {
		_ = conn.Close()
		return err
	}
	defer s.untrackSession(mux)
	stop := context.AfterFunc(ctx, func() { _ = mux.Close() })
	defer stop()
	log.Info().Msg("session started")
	s.cfg.Observer.sessionUp()
	started := time.Now()
	// A session's streams wait here while MaxPendingStreams of them owe their
	// request frame: a client sending headers slowly or never holds up only its
	// own session, and yamux's MaxIncomingStreams bounds what waits.
	pending := make(chan struct{}, s.cfg.MaxPendingStreams)
	for {
		slot := false
		select {
		case pending <- struct{}{}:
			slot = true
		case <-mux.CloseChan():
		}
		st, err := mux.AcceptStream()
		if err != nil {
			_ = mux.Close()
			reason := sessionEndReason(err, rc)
			log.Info().Dur("duration", time.Since(started).Round(time.Millisecond)).AnErr("reason", reason).Msg("session ended")
			s.cfg.Observer.sessionDown(sessionEnd(s.isClosing() || ctx.Err() != nil, reason))
			if s.isClosing() {
				return ErrServerClosed
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %w", ErrSessionClosed, reason)
		}
		if !slot {
			// The session is closing; yamux may still hand out a stream it had
			// queued, which must not wait for a slot nobody will free.
			_ = st.ResetWithError(wire.ResetRefused)
			continue
		}
		s.workers.run(func() { s.serveStream(newStream(st, gate), pending, log) })
	}
}

// acceptRetryable reports whether an accept error is passing: a timeout, or a
// lack of resources (file descriptors, buffers) that closing connections frees.
func acceptRetryable(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// sessionEndReason is the first thing that went wrong with a session: the
// connection's own error when it failed first (yamux then reports only the
// consequence), yamux's (keepalive, protocol error, peer gone) otherwise.
func sessionEndReason(muxErr error, rc *recordingConn) error {
	if err := rc.firstErr(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return muxErr
}

// PeerIdentity names the client of an authenticated connection: the subject common
// name and serial of its certificate, or "" when conn is not TLS.
func PeerIdentity(conn net.Conn) string {
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return ""
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return ""
	}
	return certIdentity(certs[0])
}

// certIdentity names a client certificate the way logs and the deny list's
// refusals do: common name and serial (hex, which is what deny_clients takes).
func certIdentity(c *x509.Certificate) string {
	return fmt.Sprintf("%s (serial %s)", c.Subject.CommonName, c.SerialNumber.Text(16))
}

func (s *Server) track(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining || s.closed {
		return false
	}
	s.listeners[ln] = struct{}{}
	return true
}

func (s *Server) untrack(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
	_ = ln.Close()
}

// startSession starts yamux on conn and tracks the session, under the lock
// Close takes: yamux answers (pings, its first frames) as soon as it starts,
// so a session started apart from being tracked could answer a moment after
// Close had returned. A closed server starts nothing.
func (s *Server) startSession(conn net.Conn, cfg *yamux.Config, gate *sendGate) (*yamux.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrServerClosed
	}
	mux, err := newMux(conn, false, cfg, s.budget, s.cfg.Observer, s.activeStreams, gate)
	if err != nil {
		return nil, fmt.Errorf("tunnel: start session: %w", err)
	}
	s.sessions[mux] = struct{}{}
	return mux, nil
}

func (s *Server) untrackSession(m *yamux.Session) {
	s.mu.Lock()
	delete(s.sessions, m)
	s.mu.Unlock()
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining || s.closed
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// Shutdown stops accepting connections and work: new streams are answered
// shutting_down, which tells the agent to take its work elsewhere. It lets the
// streams in flight finish until ctx ends, asks the agents to end their
// sessions (waiting a little for them), then closes everything. It returns
// ctx.Err() if streams had to be cut off.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	s.mu.Unlock()
	var err error
	for s.active.Load() > 0 && err == nil {
		select {
		case <-s.idleCh:
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err == nil {
		s.endSessions(ctx)
	}
	_ = s.Close()
	return err
}

// sessionLinger bounds how long a drained server waits for its agents to end
// their sessions before it closes them itself.
const sessionLinger = 2 * time.Second

// endSessions asks every agent to end its session, once no stream is left, and
// waits for them to do so. Closing a session from this side could drop the
// last frames of the streams that just finished, still queued in yamux; a
// GoAway goes out behind them, and go-yamux's client ends the session when it
// reads it, after everything before it.
func (s *Server) endSessions(ctx context.Context) {
	s.mu.Lock()
	for m := range s.sessions {
		_ = m.GoAway()
	}
	s.mu.Unlock()
	deadline := time.NewTimer(sessionLinger)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.sessions)
		s.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// Close stops everything at once: listeners, handshakes, sessions, streams and
// upstream requests. It waits for every goroutine the server started and is
// idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		for ln := range s.listeners {
			_ = ln.Close()
		}
		for m := range s.sessions {
			_ = m.Close()
		}
		s.mu.Unlock()
		s.cancelBase()
	})
	if s.decoy != nil {
		// Before Wait: the decoy's Serve returns only once it is closed.
		s.decoy.close()
	}
	s.wg.Wait()
	s.refusals.stop()
	if s.ownedTr != nil {
		s.ownedTr.CloseIdleConnections()
	}
	return nil
}
