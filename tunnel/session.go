package tunnel

import (
	"context"
	"crypto/tls"
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

	"github.com/libp2p/go-yamux/v5"
	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/relay"
	"github.com/fluidity-tunnel/fluidity/tunnel/internal/wire"
)

// session is the agent's end of one tunnel connection: one yamux session over an
// established (normally mutually authenticated TLS) connection. Every method opens
// its own stream, so they are safe for concurrent use.
type session struct {
	mux     *yamux.Session
	conn    *recordingConn
	gate    *sendGate
	cfg     SessionConfig
	log     zerolog.Logger
	started time.Time // when the session was established (for Client.Sessions)

	closeOnce sync.Once
	closeErr  atomic.Pointer[closeReason] // first reason the session ended
	pings     sync.WaitGroup              // yamux pings, which end when the session does
	// pingMu orders starting a ping (pings.Add) before Close's pings.Wait:
	// a WaitGroup must not grow while it is waited for.
	pingMu  sync.Mutex
	closing bool
}

// closeReason is why a session ended: the first reason, whoever saw it.
type closeReason struct {
	err error
	// byClose: Close, not closeWith (a failure seen elsewhere, whose err also
	// matches ErrSessionClosed).
	byClose bool
	// own: the session had already ended on its own (its connection failed,
	// the peer left) when it was closed; err is that failure.
	own bool
}

// newSession starts the client side of a session over conn, which it then owns.
func newSession(conn net.Conn, cfg SessionConfig, budget *receiveBudget, limit *logLimit, obs *Observer, log zerolog.Logger) (*session, error) {
	cfg = cfg.withDefaults()
	rc := &recordingConn{Conn: conn}
	// The server never opens streams: any it tries is reset.
	gate := newSendGate()
	mux, err := newMux(rc, true, cfg.yamuxConfig(log, limit, 0), budget, obs, nil, gate)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("tunnel: start session: %w", err)
	}
	return &session{mux: mux, conn: rc, gate: gate, cfg: cfg, log: log, started: time.Now()}, nil
}

// Done is closed when the session has ended, for whatever reason.
func (s *session) Done() <-chan struct{} { return s.mux.CloseChan() }

// moved is the bytes the session has sent and received on its connection.
func (s *session) moved() int64 { return s.conn.moved.Load() }

// Err returns why the session ended, or nil while it is alive: the first
// reason, so that a session that failed and was closed afterwards (by a
// reconnect replacing it, or a retry retiring it) still says why it failed.
func (s *session) Err() error {
	if !s.mux.IsClosed() {
		return nil
	}
	if p := s.closeErr.Load(); p != nil {
		return p.err
	}
	return s.ownErr()
}

// ownErr is why a session ended on its own: the server's TLS alert, its
// connection's first error, or yamux's reason (keepalive, the peer's go-away
// or EOF).
func (s *session) ownErr() error {
	err := s.conn.peerAlert()
	if err == nil {
		err = s.conn.firstErr()
	}
	if err == nil || errors.Is(err, net.ErrClosed) {
		err = muxErr(s.mux)
	}
	if err == nil {
		return fmt.Errorf("%w: peer closed or keepalive failed", ErrSessionClosed)
	}
	return fmt.Errorf("%w: %w", ErrSessionClosed, explainConnErr(err))
}

// ErrClientCertificate wraps the server's refusal of the agent's certificate.
// With TLS 1.3 the client's handshake is over before the server has checked
// the client's certificate: the refusal is an alert that ends the first
// session, not its dial.
var ErrClientCertificate = errors.New("tunnel: the server refused the agent's certificate")

// certAlerts are the TLS alerts by which a server refuses a client's
// certificate (RFC 8446, section 6.2).
var certAlerts = []tls.AlertError{
	42,  // bad_certificate
	43,  // unsupported_certificate
	44,  // certificate_revoked
	45,  // certificate_expired
	46,  // certificate_unknown
	48,  // unknown_ca
	116, // certificate_required
}

// explainConnErr marks a connection error that is the server refusing the
// agent's certificate with ErrClientCertificate. crypto/tls reports a peer's
// alert as a *net.OpError "remote error" around an unexported type, whose text
// is the AlertError's.
func explainConnErr(err error) error {
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "remote error" || oe.Err == nil {
		return err
	}
	for _, a := range certAlerts {
		if oe.Err.Error() == a.Error() {
			return fmt.Errorf("%w: %w", ErrClientCertificate, err)
		}
	}
	return err
}

// refused reports whether the session ended because the server refused the
// agent's certificate: that session never was up, whatever the handshake
// said, and one made again at once would be refused again.
func (s *session) refused() bool { return s.failed() && errors.Is(s.Err(), ErrClientCertificate) }

// NumStreams reports the streams currently open.
func (s *session) NumStreams() int { return s.mux.NumStreams() }

// Close ends the session and every stream in it, and waits for its pings (which
// end with it). It does not wait for request bodies being read from callers:
// their pumps end at their next write.
func (s *session) Close() error { return s.end(closeReason{err: ErrSessionClosed, byClose: true}) }

// closeWith ends the session as Close does, for a failure seen elsewhere: the
// session counts as failed, and reason is recorded as why it ended unless an
// earlier reason was.
func (s *session) closeWith(reason error) error { return s.end(closeReason{err: reason}) }

func (s *session) end(reason closeReason) error {
	s.closeOnce.Do(func() {
		if s.mux.IsClosed() {
			// It ended before anyone closed it: that is the first reason.
			reason = closeReason{err: s.ownErr(), own: true}
		}
		s.closeErr.CompareAndSwap(nil, &reason)
		s.pingMu.Lock()
		s.closing = true
		s.pingMu.Unlock()
		_ = s.mux.Close()
	})
	s.pings.Wait()
	return nil
}

// endReason names why the session ended, for Observer.SessionDown.
func (s *session) endReason() string {
	if p := s.closeErr.Load(); p != nil && !p.byClose && !p.own {
		// Closed after a sibling failed and this one's ping went unanswered.
		return SessionEndKeepalive
	}
	err := s.conn.firstErr()
	if err == nil || errors.Is(err, net.ErrClosed) {
		err = muxErr(s.mux)
	}
	return sessionEnd(!s.failed(), err)
}

// failed reports whether the session ended on its own (connection error,
// keepalive, peer), rather than by Close.
func (s *session) failed() bool {
	if !s.mux.IsClosed() {
		return false
	}
	p := s.closeErr.Load()
	return p == nil || !p.byClose
}

// ping measures one round trip on the session, within ctx.
func (s *session) ping(ctx context.Context) (time.Duration, error) {
	type result struct {
		rtt time.Duration
		err error
	}
	// yamux's Ping takes no context; it gives up within two write timeouts.
	ch := make(chan result, 1)
	s.pingMu.Lock()
	if s.closing {
		s.pingMu.Unlock()
		return 0, fmt.Errorf("tunnel: ping: %w", s.closeErr.Load().err)
	}
	s.pings.Go(func() {
		rtt, err := s.mux.Ping()
		ch <- result{rtt, err}
	})
	s.pingMu.Unlock()
	select {
	case r := <-ch:
		if r.err != nil {
			if s.mux.IsClosed() {
				r.err = s.Err() // yamux says only that the session shut down, or its raw cause
			}
			return 0, fmt.Errorf("tunnel: ping: %w", r.err)
		}
		return r.rtt, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (s *session) open(ctx context.Context) (*stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := s.mux.OpenStream(ctx)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		if s.mux.IsClosed() {
			return nil, notOpened(s.Err())
		}
		return nil, notOpened(fmt.Errorf("tunnel: open stream: %w", err))
	}
	return newStream(st, s.gate), nil
}

// exchange opens a stream, sends the request frame and waits for the answer.
// Cancelling ctx aborts the stream until the caller calls the returned release.
// afterFrame runs once the request frame is written (it starts a body pump).
// tr, if not nil, is the stream's trace: it ends when the stream closes.
func (s *session) exchange(ctx context.Context, typ string, payload any, afterFrame func(*stream), tr *trace) (*stream, *wire.Answer, func() bool, error) {
	st, err := s.open(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	if tr != nil {
		st.trace = tr
		st.endOnClose.Store(true)
	}
	release := context.AfterFunc(ctx, func() {
		st.fail(OutcomeCanceled)
		_ = st.Close()
	})
	fail := func(err error) (*stream, *wire.Answer, func() bool, error) {
		release()
		if errors.Is(err, errNotOpened) {
			// It may be sent again on another session, as the same stream.
			st.endOnClose.Store(false)
		} else {
			st.fail(outcomeOf(err))
		}
		_ = st.Close()
		return nil, nil, nil, err
	}
	var writeErr error
	if err := wire.Write(st, typ, payload); err != nil {
		var re *resetError
		if !errors.As(err, &re) {
			return fail(s.streamErr(ctx, err))
		}
		// The server may have answered before reading the frame (over capacity,
		// shutting down) and reset the rest: that answer is still readable.
		writeErr = err
	} else if afterFrame != nil {
		afterFrame(st)
	}
	var ans wire.Answer
	if err := wire.Read(st, s.cfg.MaxHeaderSize, &ans); err != nil {
		if writeErr != nil {
			err = writeErr
		}
		var re *resetError
		if errors.As(err, &re) && (re.Code == wire.ResetRefused || re.Code == wire.ResetNoError) && ctx.Err() == nil {
			// Refused before any answer, by the server or by yamux itself (past
			// its stream limit, with code 0): no work was done, so it may be sent
			// again.
			return fail(streamRefused(err))
		}
		return fail(s.streamErr(ctx, err))
	}
	if ans.Type == wire.TypeError {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		p := ans.Err()
		re := &RemoteError{Code: ErrorCode(p.Code), Message: p.Message}
		if re.Code == CodeShuttingDown {
			// The server did nothing with this stream and takes no more work on
			// this session: it is safe to send it again on a fresh one.
			return fail(notOpened(re))
		}
		return fail(re)
	}
	tr.firstByte()
	return st, &ans, release, nil
}

// streamErr explains a failed stream operation: the caller's cancellation, the end of
// the session, or the stream's own error, in that order.
func (s *session) streamErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if s.mux.IsClosed() {
		return s.Err()
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("tunnel: stream: %w", err)
}

// DialContext opens a CONNECT stream to addr ("host:port") through the server. The
// returned conn carries raw bytes; CloseWrite half-closes it, and Close before
// both sides have half-closed is an abort the server acts on at once.
func (s *session) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return s.dialContext(ctx, network, addr, nil)
}

func (s *session) dialContext(ctx context.Context, network, addr string, tr *trace) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError(network)}
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("tunnel: dial %q: %w", addr, err)
	}
	st, ans, release, err := s.exchange(ctx, wire.TypeConnect, wire.ConnectRequest{Addr: addr}, nil, tr)
	if err != nil {
		return nil, err
	}
	if !release() {
		st.fail(OutcomeCanceled)
		_ = st.Close()
		return nil, ctx.Err()
	}
	if ans.Type != wire.TypeConnected {
		st.fail(OutcomeAborted)
		_ = st.Close()
		return nil, fmt.Errorf("%w: unexpected %q answer to connect", wire.ErrMalformed, ans.Type)
	}
	return st, nil
}

// RoundTrip sends one HTTP request through the server, which makes it with its own
// pooled client. req.URL must be absolute (http or https). The response body streams
// from the server; closing it early aborts the upstream request. As an
// http.RoundTripper must, it closes req.Body, on errors too.
func (s *session) RoundTrip(req *http.Request) (*http.Response, error) { return s.roundTrip(req, nil) }

func (s *session) roundTrip(req *http.Request, tr *trace) (*http.Response, error) {
	payload, err := requestPayload(req, false)
	if err != nil {
		return nil, err
	}
	ctx := req.Context()
	pump := &bodyPump{body: req.Body, n: payload.ContentLength}
	st, ans, release, err := s.exchange(ctx, wire.TypeHTTP, payload, pump.start, tr)
	if err != nil {
		if perr := pump.failure(); perr != nil {
			// The stream failed because the caller's body did: say so.
			return nil, perr
		}
		if pump.started() && pump.n != 0 {
			// Some of the body may be gone: this request cannot be sent again.
			err = keepOpened(err)
		}
		return nil, err
	}
	// The request's context keeps governing the stream until the body is closed,
	// as with net/http: cancelling it aborts a download in progress.
	resp, err := s.response(req, st, ans, release, pump)
	if err != nil {
		release()
		st.fail(OutcomeAborted)
		_ = st.Close()
		return nil, err
	}
	return resp, nil
}

// bodyPump sends a request body after its frame (PROTOCOL.md): n bytes, or for
// n = -1 everything up to the body's end followed by FIN. A body that fails, or
// delivers other than n bytes, resets the stream: the server must not take a
// truncated body for a whole one.
type bodyPump struct {
	body io.ReadCloser
	n    int64
	st   *stream
	done chan struct{}
	err  atomic.Pointer[error]
}

// start runs the pump for st; it returns at once.
func (p *bodyPump) start(st *stream) {
	p.st = st
	p.done = make(chan struct{})
	if p.n == 0 {
		close(p.done)
		closeBodyOf(p.body)
		return
	}
	// The pump's owner is the exchange: it ends when the body does, or at its
	// next write once the stream is closed. It reads the caller's body, which
	// nothing can interrupt, so no Close waits for it.
	go p.run()
}

func closeBodyOf(b io.ReadCloser) {
	if b != nil {
		_ = b.Close()
	}
}

func (p *bodyPump) run() {
	defer close(p.done)
	defer closeBodyOf(p.body)
	var (
		written int64
		err     error
	)
	if p.n > 0 {
		written, err = relay.Copy(p.st, io.LimitReader(p.body, p.n))
		if err == nil && written < p.n {
			err = errShortBody
		}
	} else {
		_, err = relay.Copy(p.st, p.body)
		if err == nil {
			err = p.st.CloseWrite()
		}
	}
	if err == nil {
		return
	}
	var re *resetError
	if errors.As(err, &re) || errors.Is(err, net.ErrClosed) {
		// The server answered early, or the stream was aborted: the rest of the
		// body is not wanted.
		return
	}
	err = fmt.Errorf("tunnel: request body: %w", err)
	p.err.Store(&err)
	p.st.fail(OutcomeAborted)
	_ = p.st.reset(wire.ResetCancel)
}

// started reports whether the pump has taken the body over.
func (p *bodyPump) started() bool { return p.st != nil }

func (p *bodyPump) failure() error {
	if e := p.err.Load(); e != nil {
		return *e
	}
	return nil
}

// DialWebSocket sends a WebSocket opening handshake through the server. On 101 it
// returns the response and a conn carrying the raw WebSocket frames; on any other
// status it returns the response (with its body) and a nil conn.
func (s *session) DialWebSocket(ctx context.Context, req *http.Request) (*http.Response, net.Conn, error) {
	return s.dialWebSocket(ctx, req, nil)
}

func (s *session) dialWebSocket(ctx context.Context, req *http.Request, tr *trace) (*http.Response, net.Conn, error) {
	payload, err := requestPayload(req, true)
	if err != nil {
		return nil, nil, err
	}
	payload.ContentLength = 0
	st, ans, release, err := s.exchange(ctx, wire.TypeWebSocket, payload, nil, tr)
	if err != nil {
		return nil, nil, err
	}
	if !release() {
		st.fail(OutcomeCanceled)
		_ = st.Close()
		return nil, nil, ctx.Err()
	}
	resp, err := s.response(req, st, ans, func() bool { return true }, nil)
	if err != nil {
		st.fail(OutcomeAborted)
		_ = st.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return resp, nil, nil
	}
	resp.Body = http.NoBody
	return resp, st, nil
}

// response builds the http.Response for an answer; release is called when the
// stream is done with.
func (s *session) response(req *http.Request, st *stream, ans *wire.Answer, release func() bool, pump *bodyPump) (*http.Response, error) {
	if ans.Type != wire.TypeResponse {
		return nil, fmt.Errorf("%w: unexpected %q answer to %s", wire.ErrMalformed, ans.Type, wire.TypeHTTP)
	}
	p := ans.Response()
	resp := &http.Response{
		Status:        fmt.Sprintf("%d %s", p.Status, http.StatusText(p.Status)),
		StatusCode:    p.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        p.Header,
		ContentLength: p.ContentLength,
		Request:       req,
	}
	if p.Status == http.StatusSwitchingProtocols && pump != nil {
		// Only a WebSocket handshake (DialWebSocket) may switch protocols.
		return nil, fmt.Errorf("%w: 101 answer to a request that did not ask to upgrade", wire.ErrMalformed)
	}
	body := &responseBody{st: st, release: release, pump: pump}
	if !bodyAllowed(req.Method, p.Status) {
		if req.Method != http.MethodHead {
			resp.ContentLength = 0
		}
		resp.Body = http.NoBody
		if p.Status != http.StatusSwitchingProtocols {
			// Nothing follows but the server's FIN.
			body.r = newBodyReader(st, 0, true)
			_, _ = body.Read(nil)
			_ = body.Close()
		}
		return resp, nil
	}
	if p.ContentLength < 0 {
		resp.TransferEncoding = []string{"chunked"}
	}
	body.r = newBodyReader(st, p.ContentLength, true)
	resp.Body = body
	return resp, nil
}

// responseBody ends its stream on Close: cleanly after EOF, as an abort before it.
type responseBody struct {
	st      *stream
	r       *bodyReader
	release func() bool
	pump    *bodyPump
	eof     bool
	once    sync.Once
}

func (b *responseBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if errors.Is(err, io.EOF) {
		b.eof = true
	} else if err != nil {
		b.st.fail(outcomeOf(err))
	}
	return n, err
}

func (b *responseBody) Close() error {
	b.once.Do(func() {
		b.release()
		if b.eof && (b.pump == nil || b.pump.finished()) {
			// The whole response is in and nothing more will be sent: end the
			// stream cleanly (FIN), not as an abort.
			_ = b.st.CloseWrite()
		} else if !b.eof {
			b.st.fail(OutcomeCanceled) // the caller stopped reading
		}
		_ = b.st.Close()
	})
	return nil
}

// finished reports whether the pump has nothing more to send.
func (p *bodyPump) finished() bool {
	if p.done == nil {
		return true
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// requestPayload describes req for an "http" or "websocket" frame.
func requestPayload(req *http.Request, websocket bool) (wire.HTTPRequest, error) {
	u := req.URL
	if u == nil || !u.IsAbs() || u.Host == "" {
		return wire.HTTPRequest{}, fmt.Errorf("%w: request URL must be absolute", ErrBadRequest)
	}
	schemes := [2]string{"http", "https"}
	if websocket {
		schemes = [2]string{"ws", "wss"}
		if u.Scheme == "http" || u.Scheme == "https" {
			u = cloneURL(u)
			u.Scheme = "ws" + strings.TrimPrefix(u.Scheme, "http") // http→ws, https→wss
		}
	}
	if u.Scheme != schemes[0] && u.Scheme != schemes[1] {
		return wire.HTTPRequest{}, fmt.Errorf("%w: unsupported scheme %q", ErrBadRequest, u.Scheme)
	}
	h := req.Header.Clone()
	if h == nil {
		h = make(http.Header)
	}
	removeHopHeaders(h, websocket)
	n := req.ContentLength
	switch {
	case req.Body == nil || req.Body == http.NoBody:
		n = 0
	case n == 0:
		n = -1 // a client request with a body and no length: length unknown
	}
	host := req.Host
	if host == u.Host {
		host = ""
	}
	return wire.HTTPRequest{Method: req.Method, URL: u.String(), Host: host, Header: h, ContentLength: n}, nil
}

func cloneURL(u *url.URL) *url.URL {
	u2 := *u
	return &u2
}

// recordingConn remembers the first I/O error on the underlying connection, so that
// a session can say why it ended, and counts the bytes it moves, so that a Client
// can tell a busy session from an idle one (and a status page, which way).
type recordingConn struct {
	net.Conn
	moved   atomic.Int64
	written atomic.Int64
	mu      sync.Mutex
	err     error
	// alert is the first TLS alert the peer sent. It says why the peer hung
	// up, even when a write failing on the closed connection came first.
	alert error
}

func (c *recordingConn) record(err error) {
	if err == nil {
		return
	}
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	var oe *net.OpError
	if c.alert == nil && errors.As(err, &oe) && oe.Op == "remote error" {
		c.alert = err
	}
	c.mu.Unlock()
}

// peerAlert returns the first TLS alert the peer sent, if any.
func (c *recordingConn) peerAlert() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.alert
}

func (c *recordingConn) firstErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// NetConn is the wrapped conn's NetConn, so that the batching writer finds a
// corkConn under the agent's TLS conn (DialTLSWith puts one there).
func (c *recordingConn) NetConn() net.Conn {
	if nc, ok := c.Conn.(interface{ NetConn() net.Conn }); ok {
		return nc.NetConn()
	}
	return nil
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.moved.Add(int64(n))
	c.record(err)
	return n, err
}

func (c *recordingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.moved.Add(int64(n))
	c.written.Add(int64(n))
	c.record(err)
	return n, err
}
