package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/relay"
)

// ErrServerClosed is returned by Serve and ServeConn after Shutdown or Close.
var ErrServerClosed = errors.New("tunnel: server closed")

// ContextDialer dials like net.Dialer.DialContext.
type ContextDialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// ServerConfig configures a Server.
type ServerConfig struct {
	Session SessionConfig
	// Logger receives session and stream events. Only target host names are logged,
	// never paths, queries, headers or bodies.
	Logger zerolog.Logger
	// TLSConfig is required by Serve; it must be TLS 1.3 only and require client
	// certificates (see NewServerTLSConfig). ServeConn takes connections the caller
	// has already authenticated and ignores it.
	TLSConfig *tls.Config
	// HandshakeTimeout bounds the TLS handshake of each accepted connection.
	HandshakeTimeout time.Duration
	// MaxPendingHandshakes caps connections still in their TLS handshake, so a port
	// scan or slowloris cannot starve authenticated clients.
	MaxPendingHandshakes int
	// MaxStreams caps concurrent streams over all sessions; beyond it a stream is
	// answered with an over_capacity error.
	MaxStreams int
	// HeaderTimeout bounds how long a new stream may take to send its request frame.
	HeaderTimeout time.Duration
	// DialTimeout bounds each dial to a target.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for a target's response headers.
	ResponseHeaderTimeout time.Duration
	// IdleTimeout closes CONNECT and WebSocket streams that move no byte for this long.
	IdleTimeout time.Duration
	// Egress is the policy every target dial (HTTP, CONNECT, WebSocket) is checked
	// against, after DNS resolution and before any connection. A refusal is answered
	// with the refused error code (403 at the agent). The default refuses loopback,
	// link-local, private and other non-public addresses; see EgressConfig.
	Egress EgressConfig
	// Breaker tunes the circuit breaker kept per target host; an open breaker is
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
	// Transport, if set, makes HTTP requests instead of the server's own pooled one.
	// Breakers and retries still apply to it, but the egress policy only does if its
	// dialer goes through the server (the server's own transport always does): a
	// custom Transport is for tests and special embeddings.
	Transport http.RoundTripper
}

// DefaultServerConfig returns the defaults, with the seed's max_connections of 100.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{
		Session:               DefaultSessionConfig(),
		Logger:                zerolog.Nop(),
		HandshakeTimeout:      10 * time.Second,
		MaxPendingHandshakes:  64,
		MaxStreams:            100,
		HeaderTimeout:         30 * time.Second,
		DialTimeout:           10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		IdleTimeout:           10 * time.Minute,
		Breaker:               defaultBreakerConfig(),
		Retry:                 defaultRetryConfig(),
	}
}

// Validate reports the first unusable setting.
func (c *ServerConfig) Validate() error {
	if err := c.Session.Validate(); err != nil {
		return err
	}
	switch {
	case c.HandshakeTimeout <= 0:
		return errors.New("tunnel: server: handshake timeout must be positive")
	case c.MaxPendingHandshakes <= 0:
		return errors.New("tunnel: server: max pending handshakes must be positive")
	case c.MaxStreams <= 0:
		return errors.New("tunnel: server: max streams must be positive")
	case c.HeaderTimeout <= 0 || c.DialTimeout <= 0 || c.ResponseHeaderTimeout <= 0:
		return errors.New("tunnel: server: header, dial and response header timeouts must be positive")
	case c.IdleTimeout < 0:
		return errors.New("tunnel: server: idle timeout must not be negative")
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
	if c.TLSConfig != nil {
		if c.TLSConfig.MinVersion < tls.VersionTLS13 {
			return errors.New("tunnel: server: TLS config must require TLS 1.3")
		}
		if c.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
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

	baseCtx    context.Context // cancelled by Close: aborts every upstream operation
	cancelBase context.CancelFunc

	streams    chan struct{} // admission tokens, cap MaxStreams
	handshakes chan struct{} // tokens for connections in their TLS handshake

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*yamux.Session]struct{}
	draining  bool
	closed    bool

	wg           sync.WaitGroup
	active       atomic.Int64
	lastActivity atomic.Int64
	idleCh       chan struct{} // signalled when active drops to zero
	closeOnce    sync.Once
}

// NewServer returns a server; it does nothing until Serve or ServeConn.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TLSConfig != nil {
		cfg.TLSConfig = cfg.TLSConfig.Clone()
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
		handshakes: make(chan struct{}, cfg.MaxPendingHandshakes),
		listeners:  make(map[net.Listener]struct{}),
		sessions:   make(map[*yamux.Session]struct{}),
		idleCh:     make(chan struct{}, 1),
		guards:     g,
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
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("tunnel: accept: %w", err)
		}
		select {
		case s.handshakes <- struct{}{}:
		default:
			s.log.Warn().Str("remote", conn.RemoteAddr().String()).Msg("too many pending handshakes; connection dropped")
			_ = conn.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handshakeAndServe(ctx, conn)
		}()
	}
}

func (s *Server) handshakeAndServe(ctx context.Context, conn net.Conn) {
	// Keep little unsent data queued in the kernel, so that an interactive stream's
	// frames do not wait behind megabytes of a bulk download (head-of-line), and
	// gather each flush's TLS records into one write (corkConn).
	limitUnsent(conn, maxUnsent)
	tconn := tls.Server(&corkConn{Conn: conn}, s.cfg.TLSConfig)
	hctx, cancel := context.WithTimeout(ctx, s.cfg.HandshakeTimeout)
	err := tconn.HandshakeContext(hctx)
	cancel()
	<-s.handshakes
	if err != nil {
		s.log.Info().Str("remote", conn.RemoteAddr().String()).Err(err).Msg("tls handshake refused")
		_ = conn.Close()
		return
	}
	_ = s.ServeConn(ctx, tconn)
}

// ServeConn serves one session over conn, which the caller has authenticated (a
// *tls.Conn after its handshake, or any conn in tests). It blocks until the session
// ends and returns why.
func (s *Server) ServeConn(ctx context.Context, conn net.Conn) error {
	log := s.log.With().Str("remote", conn.RemoteAddr().String()).Str("client", PeerIdentity(conn)).Logger()
	mux, err := yamux.Server(newBatchConn(conn), s.cfg.Session.yamux(log))
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("tunnel: start session: %w", err)
	}
	if !s.trackSession(mux) {
		_ = mux.Close()
		return ErrServerClosed
	}
	defer s.untrackSession(mux)
	stop := context.AfterFunc(ctx, func() { _ = mux.Close() })
	defer stop()
	log.Info().Msg("session started")
	started := time.Now()
	reg := &streamRegistry{streams: make(map[uint32]func())}
	for {
		st, err := mux.AcceptStream()
		if err != nil {
			_ = mux.Close()
			log.Info().Dur("duration", time.Since(started)).Msg("session ended")
			if s.isClosing() {
				return ErrServerClosed
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %w", ErrSessionClosed, err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveStream(newStreamConn(st), reg, log)
		}()
	}
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

// streamRegistry maps a session's stream IDs to what aborts their work, for the
// agent's abort frames on the control stream.
type streamRegistry struct {
	mu      sync.Mutex
	streams map[uint32]func()
	control bool // a control stream is open; one per session
}

func (r *streamRegistry) add(id uint32, abort func()) {
	r.mu.Lock()
	r.streams[id] = abort
	r.mu.Unlock()
}

func (r *streamRegistry) remove(id uint32) {
	r.mu.Lock()
	delete(r.streams, id)
	r.mu.Unlock()
}

func (r *streamRegistry) abort(id uint32) {
	r.mu.Lock()
	fn := r.streams[id]
	r.mu.Unlock()
	if fn != nil {
		fn()
	}
}

func (r *streamRegistry) claimControl() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.control {
		return false
	}
	r.control = true
	return true
}

// serveControl reads abort frames until the session ends.
func (s *Server) serveControl(sc *streamConn, reg *streamRegistry, log zerolog.Logger) {
	if !reg.claimControl() {
		s.answerError(sc, &RemoteError{Code: CodeBadRequest, Message: "second control stream"})
		return
	}
	for {
		env, err := ReadFrame(sc, s.cfg.Session.MaxHeaderSize)
		if err != nil {
			return
		}
		if env.Type != TypeAbort {
			log.Debug().Str("type", env.Type).Msg("unknown control frame ignored")
			continue
		}
		var a AbortRequest
		if env.Decode(&a) == nil {
			reg.abort(a.Stream)
		}
	}
}

func (s *Server) serveStream(sc *streamConn, reg *streamRegistry, log zerolog.Logger) {
	defer sc.Close()
	_ = sc.SetReadDeadline(time.Now().Add(s.cfg.HeaderTimeout))
	env, err := ReadFrame(sc, s.cfg.Session.MaxHeaderSize)
	_ = sc.SetReadDeadline(time.Time{})
	if err != nil {
		var ve *VersionError
		code := CodeBadRequest
		if errors.As(err, &ve) {
			code = CodeUnsupportedVersion
		}
		log.Debug().Err(err).Msg("bad request frame")
		s.answerError(sc, &RemoteError{Code: code, Message: err.Error()})
		return
	}
	if env.Type == TypeControl {
		s.serveControl(sc, reg, log)
		return
	}
	if s.isDraining() {
		s.answerError(sc, &RemoteError{Code: CodeShuttingDown})
		return
	}
	select {
	case s.streams <- struct{}{}:
	default:
		log.Warn().Int("max_streams", s.cfg.MaxStreams).Msg("over capacity; stream refused")
		s.answerError(sc, &RemoteError{Code: CodeOverCapacity, Message: "server at max_connections"})
		return
	}
	s.active.Add(1)
	s.touch()
	defer func() {
		<-s.streams
		s.touch()
		if s.active.Add(-1) == 0 {
			select {
			case s.idleCh <- struct{}{}:
			default:
			}
		}
	}()

	ctx, cancel := context.WithCancel(s.baseCtx)
	defer cancel()
	id := sc.StreamID()
	reg.add(id, func() {
		cancel()
		_ = sc.Close()
	})
	defer reg.remove(id)
	start := time.Now()
	var target string
	switch env.Type {
	case TypeHTTP:
		target, err = s.serveHTTP(ctx, cancel, sc, env, log)
	case TypeConnect:
		target, err = s.serveConnect(ctx, cancel, sc, env, log)
	case TypeWebSocket:
		target, err = s.serveWebSocket(ctx, cancel, sc, env, log)
	default:
		err = &RemoteError{Code: CodeBadRequest, Message: fmt.Sprintf("unknown frame type %q", env.Type)}
		s.answerError(sc, err.(*RemoteError))
	}
	if errors.Is(err, ErrRefusedByPolicy) {
		// The session logger names the client; the target host is all that is said
		// about the destination.
		log.Info().Str("type", env.Type).Str("target", target).Msg("target refused by egress policy")
		return
	}
	ev := log.Debug()
	if err != nil {
		ev = log.Info().Err(err)
	}
	ev.Str("type", env.Type).Str("target", target).Dur("duration", time.Since(start)).Msg("stream")
}

func (s *Server) touch() { s.lastActivity.Store(time.Now().UnixNano()) }

// answerError sends an error frame; the stream is closed by the caller.
func (s *Server) answerError(sc *streamConn, re *RemoteError) {
	_ = sc.SetWriteDeadline(time.Now().Add(s.cfg.Session.WriteTimeout))
	_ = WriteFrame(sc, TypeError, re)
}

// fail answers with the classified error and returns it for logging.
func (s *Server) fail(sc *streamConn, err error) error {
	re := classify(err)
	s.answerError(sc, re)
	return re
}

func (s *Server) serveHTTP(ctx context.Context, abort context.CancelFunc, sc *streamConn, env Envelope, log zerolog.Logger) (string, error) {
	var p HTTPRequest
	if err := env.Decode(&p); err != nil {
		return "", s.fail(sc, &RemoteError{Code: CodeBadRequest, Message: err.Error()})
	}
	u, err := parseTargetURL(p.URL, "http", "https")
	if err != nil {
		return "", s.fail(sc, err)
	}
	host := u.Hostname()
	// The agent closing its side once the request body is complete is an abort
	// (PROTOCOL.md): watch for it so the upstream request stops at once.
	watch := func() {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			var b [1]byte
			if _, err := sc.Read(b[:]); err != nil {
				abort()
			}
		}()
	}
	if err := validRequest(p.Method, p.Host, p.Header); err != nil {
		return host, s.fail(sc, err)
	}
	var (
		body  io.Reader
		bodyW *bodyWatch
	)
	if p.ContentLength == 0 {
		watch()
	} else {
		bodyW = &bodyWatch{r: &onEOF{r: bodyReader(sc, p.ContentLength), fn: watch}}
		body = bodyW
	}
	req, err := http.NewRequestWithContext(ctx, p.Method, u.String(), body)
	if err != nil {
		return host, s.fail(sc, &RemoteError{Code: CodeBadRequest, Message: err.Error()})
	}
	if p.Header == nil {
		p.Header = make(http.Header)
	}
	removeHopHeaders(p.Header, false)
	req.Header = p.Header
	req.ContentLength = p.ContentLength
	if p.ContentLength == 0 {
		req.Body = nil
	}
	if p.Host != "" {
		req.Host = p.Host
	}
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = nil // do not add Go's default
	}
	resp, err := s.roundTripGuarded(ctx, log, host, req, bodyW)
	if err != nil {
		return host, s.fail(sc, err)
	}
	defer resp.Body.Close()
	return host, s.forwardResponse(sc, req.Method, resp)
}

// forwardResponse sends a response frame and body. A failure after the frame has
// gone out cannot be reported in-band; the stream is closed with the body incomplete,
// which the agent detects (PROTOCOL.md).
func (s *Server) forwardResponse(sc *streamConn, method string, resp *http.Response) error {
	removeHopHeaders(resp.Header, false)
	n := resp.ContentLength
	if !bodyAllowed(method, resp.StatusCode) {
		if method != http.MethodHead {
			n = 0
		}
	}
	if err := WriteFrame(sc, TypeResponse, HTTPResponse{Status: resp.StatusCode, Header: resp.Header, ContentLength: n}); err != nil {
		return err
	}
	if !bodyAllowed(method, resp.StatusCode) {
		return nil
	}
	if _, err := writeBody(sc, resp.Body, n); err != nil {
		return fmt.Errorf("response body: %w", err)
	}
	return nil
}

// onEOF calls fn once when r reaches a clean end.
type onEOF struct {
	r    io.Reader
	fn   func()
	done bool
}

func (o *onEOF) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	if err == io.EOF && !o.done {
		o.done = true
		o.fn()
	}
	return n, err
}

func (s *Server) serveConnect(ctx context.Context, abort context.CancelFunc, sc *streamConn, env Envelope, log zerolog.Logger) (string, error) {
	var p ConnectRequest
	if err := env.Decode(&p); err != nil {
		return "", s.fail(sc, &RemoteError{Code: CodeBadRequest, Message: err.Error()})
	}
	host, port, err := net.SplitHostPort(p.Addr)
	if err != nil || host == "" || port == "" {
		return "", s.fail(sc, &RemoteError{Code: CodeBadRequest, Message: fmt.Sprintf("bad connect address %q", p.Addr)})
	}
	stopWatch := s.watchPeer(sc, abort)
	defer stopWatch()
	target, err := s.dialGuarded(ctx, log, host, p.Addr)
	if err != nil {
		return host, s.fail(sc, err)
	}
	early := stopWatch()
	// An abort (or shutdown) cancels ctx; closing the target is what ends a relay
	// whose target side is silent.
	stopClose := context.AfterFunc(ctx, func() { _ = target.Close() })
	defer stopClose()
	if err := WriteFrame(sc, TypeConnected, struct{}{}); err != nil {
		_ = target.Close()
		return host, err
	}
	res := relay.Run(sc, relay.AsConn(target), relay.Options{IdleTimeout: s.cfg.IdleTimeout, AReader: relay.Prefixed(early, sc)})
	return host, res.Err
}

func (s *Server) serveWebSocket(ctx context.Context, abort context.CancelFunc, sc *streamConn, env Envelope, log zerolog.Logger) (string, error) {
	var p HTTPRequest
	if err := env.Decode(&p); err != nil {
		return "", s.fail(sc, &RemoteError{Code: CodeBadRequest, Message: err.Error()})
	}
	u, err := parseTargetURL(p.URL, "ws", "wss")
	if err != nil {
		return "", s.fail(sc, err)
	}
	host := u.Hostname()
	port := u.Port()
	if port == "" {
		port = map[string]string{"ws": "80", "wss": "443"}[u.Scheme]
	}
	if err := validRequest(http.MethodGet, p.Host, p.Header); err != nil {
		return host, s.fail(sc, err)
	}
	stopWatch := s.watchPeer(sc, abort)
	defer stopWatch()
	conn, err := s.dialGuarded(ctx, log, host, net.JoinHostPort(host, port))
	if err != nil {
		return host, s.fail(sc, err)
	}
	if u.Scheme == "wss" {
		tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if s.cfg.TargetTLSConfig != nil {
			tlsCfg = s.cfg.TargetTLSConfig.Clone()
		}
		tlsCfg.ServerName = host
		tlsCfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(conn, tlsCfg)
		hctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = conn.Close()
			return host, s.fail(sc, err)
		}
		conn = tc
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	req := &http.Request{
		Method:     http.MethodGet,
		URL:        &url.URL{Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     p.Header,
		Host:       u.Host,
	}
	if req.Header == nil {
		req.Header = make(http.Header)
	}
	if p.Host != "" {
		req.Host = p.Host
	}
	removeHopHeaders(req.Header, true)
	_ = conn.SetDeadline(time.Now().Add(s.cfg.ResponseHeaderTimeout))
	br := bufio.NewReader(conn)
	var resp *http.Response
	if err = req.Write(conn); err == nil {
		resp, err = http.ReadResponse(br, req)
	}
	_ = conn.SetDeadline(time.Time{})
	if err != nil {
		_ = conn.Close()
		return host, s.fail(sc, err)
	}
	early := stopWatch()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer conn.Close()
		defer resp.Body.Close()
		return host, s.forwardResponse(sc, req.Method, resp)
	}
	removeHopHeaders(resp.Header, true)
	if err := WriteFrame(sc, TypeResponse, HTTPResponse{Status: resp.StatusCode, Header: resp.Header}); err != nil {
		_ = conn.Close()
		return host, err
	}
	// br may already hold the target's first frames: they go first.
	res := relay.Run(sc, relay.AsConn(conn), relay.Options{IdleTimeout: s.cfg.IdleTimeout,
		AReader: relay.Prefixed(early, sc), BReader: relay.Prefixed(relay.Buffered(br), conn)})
	return host, res.Err
}

// validRequest refuses a method, Host or header the HTTP client would refuse anyway,
// so that the agent gets bad_request rather than a failure charged to the target.
func validRequest(method, host string, h http.Header) error {
	if !validToken(method) {
		return &RemoteError{Code: CodeBadRequest, Message: "invalid method"}
	}
	for i := 0; i < len(host); i++ {
		if !validHostByte(host[i]) {
			return &RemoteError{Code: CodeBadRequest, Message: "invalid Host header"}
		}
	}
	for name, values := range h {
		if !validToken(name) {
			return &RemoteError{Code: CodeBadRequest, Message: "invalid header name"}
		}
		for _, v := range values {
			if !validHeaderValue(v) {
				return &RemoteError{Code: CodeBadRequest, Message: "invalid header value"}
			}
		}
	}
	return nil
}

// validToken reports whether s is an RFC 9110 token.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHostByte mirrors the bytes net/http accepts in a Host header.
func validHostByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("!$%&'()*+,-.:;=[]_~", c) >= 0
}

// validHeaderValue refuses control characters other than tab (RFC 9110 §5.5).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func parseTargetURL(raw string, schemes ...string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, &RemoteError{Code: CodeBadRequest, Message: "unparsable URL"}
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, &RemoteError{Code: CodeBadRequest, Message: "URL without host"}
	}
	for _, sch := range schemes {
		if strings.EqualFold(u.Scheme, sch) {
			u.Scheme = sch
			return u, nil
		}
	}
	return nil, &RemoteError{Code: CodeBadRequest, Message: fmt.Sprintf("unsupported scheme %q", u.Scheme)}
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

func (s *Server) trackSession(m *yamux.Session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.sessions[m] = struct{}{}
	if s.draining {
		_ = m.GoAway()
	}
	return true
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

// Shutdown stops accepting connections and streams, lets the streams in flight
// finish until ctx ends, then closes everything. It returns ctx.Err() if streams had
// to be cut off.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for m := range s.sessions {
		// GoAway refuses new streams from the peer while existing ones finish.
		_ = m.GoAway()
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
	_ = s.Close()
	return err
}

// Close stops everything at once: listeners, sessions, streams and upstream
// requests. It waits for every goroutine the server started and is idempotent.
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
	s.wg.Wait()
	if s.ownedTr != nil {
		s.ownedTr.CloseIdleConnections()
	}
	return nil
}
