package tunnel

import (
	"context"
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
)

// Session is the agent's end of one tunnel connection: one yamux session over an
// established (normally mutually authenticated TLS) connection. Every method opens
// its own stream, so they are safe for concurrent use.
type Session struct {
	mux  *yamux.Session
	conn *recordingConn
	cfg  SessionConfig
	log  zerolog.Logger

	wg        sync.WaitGroup // request-body pumps
	ctrlMu    sync.Mutex     // serialises writes to ctrl
	ctrl      *streamConn    // control stream (PROTOCOL.md)
	closeOnce sync.Once
	closeErr  atomic.Pointer[error] // first reason the session ended
}

// NewSession starts the client side of a session over conn, which it then owns.
func NewSession(conn net.Conn, cfg SessionConfig, log zerolog.Logger) (*Session, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rc := &recordingConn{Conn: conn}
	mux, err := yamux.Client(newBatchConn(rc), cfg.yamux(log))
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("tunnel: start session: %w", err)
	}
	s := &Session{mux: mux, conn: rc, cfg: cfg, log: log}
	// The control stream carries aborts: yamux has no way to reset one stream.
	st, err := mux.OpenStream()
	if err == nil {
		s.ctrl = newStreamConn(st)
		err = WriteFrame(s.ctrl, TypeControl, struct{}{})
	}
	if err != nil {
		_ = mux.Close()
		return nil, fmt.Errorf("tunnel: open control stream: %w", err)
	}
	return s, nil
}

// abort asks the server to stop the work of stream id at once. It is best effort:
// on a dead session there is nothing left to stop.
func (s *Session) abort(id uint32) {
	s.ctrlMu.Lock()
	defer s.ctrlMu.Unlock()
	_ = s.ctrl.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	_ = WriteFrame(s.ctrl, TypeAbort, AbortRequest{Stream: id})
}

// Done is closed when the session has ended, for whatever reason.
func (s *Session) Done() <-chan struct{} { return s.mux.CloseChan() }

// moved is the bytes the session has sent and received on its connection.
func (s *Session) moved() int64 { return s.conn.moved.Load() }

// Err returns why the session ended, or nil while it is alive.
func (s *Session) Err() error {
	if !s.mux.IsClosed() {
		return nil
	}
	if p := s.closeErr.Load(); p != nil {
		return *p
	}
	if err := s.conn.firstErr(); err != nil {
		return fmt.Errorf("%w: %w", ErrSessionClosed, err)
	}
	return fmt.Errorf("%w: peer closed or keepalive failed", ErrSessionClosed)
}

// NumStreams reports the streams currently open (not counting the control stream).
func (s *Session) NumStreams() int { return max(0, s.mux.NumStreams()-1) }

// Close ends the session and every stream in it, and waits for the goroutines it owns.
func (s *Session) Close() error {
	return s.closeWith(ErrSessionClosed)
}

// closeWith is Close, recording reason as why the session ended unless an
// earlier reason was recorded.
func (s *Session) closeWith(reason error) error {
	s.closeOnce.Do(func() {
		s.closeErr.CompareAndSwap(nil, &reason)
		_ = s.mux.Close()
	})
	s.wg.Wait()
	return nil
}

// failed reports whether the session ended on its own (connection error,
// keepalive, peer), rather than by Close.
func (s *Session) failed() bool {
	if !s.mux.IsClosed() {
		return false
	}
	p := s.closeErr.Load()
	return p == nil || *p != ErrSessionClosed
}

func (s *Session) open(ctx context.Context) (*streamConn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := s.mux.OpenStream()
	if err != nil {
		if isGoAway(err) {
			// The server is draining: this session takes no new work, but its
			// streams in flight carry on.
			return nil, fmt.Errorf("%w: %w: %w", errNotOpened, ErrServerDraining, err)
		}
		if errors.Is(err, yamux.ErrSessionShutdown) || s.mux.IsClosed() {
			return nil, fmt.Errorf("%w: %w", errNotOpened, s.Err())
		}
		return nil, fmt.Errorf("tunnel: open stream: %w", err)
	}
	sc := newStreamConn(st)
	sc.onAbort = func() { s.abort(st.StreamID()) }
	return sc, nil
}

// exchange opens a stream, sends the request frame and waits for the answer frame.
// Cancelling ctx aborts the stream, until the caller calls the returned release.
// beforeAnswer runs after the request frame is written (it starts a body pump).
func (s *Session) exchange(ctx context.Context, typ string, payload any, beforeAnswer func(*streamConn)) (*streamConn, Envelope, func() bool, error) {
	sc, err := s.open(ctx)
	if err != nil {
		return nil, Envelope{}, nil, err
	}
	release := context.AfterFunc(ctx, func() { _ = sc.Close() })
	fail := func(err error) (*streamConn, Envelope, func() bool, error) {
		release()
		_ = sc.Close()
		return nil, Envelope{}, nil, err
	}
	if err := WriteFrame(sc, typ, payload); err != nil {
		return fail(s.streamErr(ctx, err))
	}
	if beforeAnswer != nil {
		beforeAnswer(sc)
	}
	env, err := ReadFrame(sc, s.cfg.MaxHeaderSize)
	if err != nil {
		return fail(s.streamErr(ctx, err))
	}
	if env.Type == TypeError {
		if err := ctx.Err(); err != nil {
			// The caller gave up; the server's answer to the abort is moot.
			return fail(err)
		}
		sc.finished.Store(true) // the server has closed the stream after its answer
		re := &RemoteError{}
		if err := env.Decode(re); err != nil {
			return fail(err)
		}
		return fail(re)
	}
	return sc, env, release, nil
}

// streamErr explains a failed stream operation: the caller's cancellation, the end of
// the session, or the stream's own error, in that order.
func (s *Session) streamErr(ctx context.Context, err error) error {
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
// returned conn carries raw bytes; CloseWrite half-closes it. Only TCP is supported.
func (s *Session) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError(network)}
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("tunnel: dial %q: %w", addr, err)
	}
	sc, env, release, err := s.exchange(ctx, TypeConnect, ConnectRequest{Addr: addr}, nil)
	if err != nil {
		return nil, err
	}
	if !release() {
		_ = sc.Close()
		return nil, ctx.Err()
	}
	if env.Type != TypeConnected {
		_ = sc.Close()
		return nil, fmt.Errorf("%w: unexpected %q answer to connect", ErrMalformedHeader, env.Type)
	}
	return sc, nil
}

// RoundTrip sends one HTTP request through the server, which makes it with its own
// pooled client. req.URL must be absolute (http or https). The response body streams
// from the server; closing it early aborts the upstream request.
func (s *Session) RoundTrip(req *http.Request) (*http.Response, error) {
	payload, err := requestPayload(req, false)
	if err != nil {
		return nil, err
	}
	ctx := req.Context()
	var answered atomic.Bool
	startPump := func(sc *streamConn) {
		if payload.ContentLength == 0 {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if _, err := writeBody(sc, req.Body, payload.ContentLength); err != nil && !answered.Load() {
				// Without its whole body the request is meaningless; once the answer
				// is in, the server no longer needs the rest.
				s.log.Debug().Err(err).Msg("request body aborted")
				_ = sc.Close()
			}
		}()
	}
	sc, env, release, err := s.exchange(ctx, TypeHTTP, payload, startPump)
	answered.Store(true)
	if err != nil {
		return nil, err
	}
	// The request's context keeps governing the stream until the body is closed, as
	// with net/http: cancelling it aborts a download in progress.
	resp, err := s.response(req, sc, env, release)
	if err != nil {
		release()
		_ = sc.Close()
		return nil, err
	}
	return resp, nil
}

// DialWebSocket sends a WebSocket opening handshake through the server. On 101 it
// returns the response and a conn carrying the raw WebSocket frames; on any other
// status it returns the response (with its body) and a nil conn.
func (s *Session) DialWebSocket(ctx context.Context, req *http.Request) (*http.Response, net.Conn, error) {
	payload, err := requestPayload(req, true)
	if err != nil {
		return nil, nil, err
	}
	payload.ContentLength = 0
	sc, env, release, err := s.exchange(ctx, TypeWebSocket, payload, nil)
	if err != nil {
		return nil, nil, err
	}
	if !release() {
		_ = sc.Close()
		return nil, nil, ctx.Err()
	}
	resp, err := s.response(req, sc, env, func() bool { return true })
	if err != nil {
		_ = sc.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return resp, nil, nil
	}
	resp.Body = http.NoBody
	return resp, sc, nil
}

// response builds the http.Response for an answer frame; release is called when the
// stream is done with.
func (s *Session) response(req *http.Request, sc *streamConn, env Envelope, release func() bool) (*http.Response, error) {
	if env.Type != TypeResponse {
		return nil, fmt.Errorf("%w: unexpected %q answer to %s", ErrMalformedHeader, env.Type, TypeHTTP)
	}
	var p HTTPResponse
	if err := env.Decode(&p); err != nil {
		return nil, err
	}
	if p.Status < 100 || p.Status > 999 {
		return nil, fmt.Errorf("%w: status %d", ErrMalformedHeader, p.Status)
	}
	if p.Header == nil {
		p.Header = make(http.Header)
	}
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
	if !bodyAllowed(req.Method, p.Status) {
		if req.Method != http.MethodHead {
			resp.ContentLength = 0
		}
		resp.Body = http.NoBody
		if p.Status != http.StatusSwitchingProtocols {
			sc.finished.Store(true)
			release()
			_ = sc.Close()
		}
		return resp, nil
	}
	if p.ContentLength < 0 {
		resp.TransferEncoding = []string{"chunked"}
	}
	resp.Body = &responseBody{sc: sc, r: bodyReader(sc, p.ContentLength), release: release}
	return resp, nil
}

// responseBody ends its stream on Close: cleanly after EOF, as an abort before it.
type responseBody struct {
	sc      *streamConn
	r       io.Reader
	release func() bool
}

func (b *responseBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.sc.finished.Store(true)
	}
	return n, err
}

func (b *responseBody) Close() error {
	b.release()
	return b.sc.Close()
}

// requestPayload describes req for an "http" or "websocket" frame.
func requestPayload(req *http.Request, websocket bool) (HTTPRequest, error) {
	u := req.URL
	if u == nil || !u.IsAbs() || u.Host == "" {
		return HTTPRequest{}, fmt.Errorf("%w: request URL must be absolute", ErrBadRequest)
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
		return HTTPRequest{}, fmt.Errorf("%w: unsupported scheme %q", ErrBadRequest, u.Scheme)
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
	return HTTPRequest{Method: req.Method, URL: u.String(), Host: host, Header: h, ContentLength: n}, nil
}

func cloneURL(u *url.URL) *url.URL {
	u2 := *u
	return &u2
}

// recordingConn remembers the first I/O error on the underlying connection, so that
// a session can say why it ended, and counts the bytes it moves, so that a Client
// can tell a busy session from an idle one.
type recordingConn struct {
	net.Conn
	moved atomic.Int64
	mu    sync.Mutex
	err   error
}

func (c *recordingConn) record(err error) {
	if err == nil {
		return
	}
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

func (c *recordingConn) firstErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
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
	c.record(err)
	return n, err
}
