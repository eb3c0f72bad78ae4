package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/relay"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// The SOCKS5 front end (RFC 1928): CONNECT only, without authentication, the
// target's name passed to the tunnel unresolved (socks5h), so that the server
// resolves it as it does for HTTP CONNECT. No maintained Go SOCKS5 server
// library is available through the module proxy here (things-go/go-socks5 is
// not served; armon/go-socks5 has had no release since 2016), and the part
// used is small: the parser below is fuzzed (FuzzSOCKSHandshake).

// SOCKS5 wire constants.
const (
	socksVersion      = 0x05
	socksMethodNoAuth = 0x00
	socksNoAcceptable = 0xff

	socksCmdConnect = 0x01
	socksCmdBind    = 0x02
	socksCmdUDP     = 0x03

	socksAtypIPv4   = 0x01
	socksAtypDomain = 0x03
	socksAtypIPv6   = 0x04
)

// SOCKS5 reply codes.
const (
	socksSucceeded           byte = 0x00
	socksGeneralFailure      byte = 0x01
	socksNotAllowed          byte = 0x02
	socksNetworkUnreachable  byte = 0x03
	socksHostUnreachable     byte = 0x04
	socksConnectionRefused   byte = 0x05
	socksCommandNotSupported byte = 0x07
	socksAddressNotSupported byte = 0x08
)

// socksRequest is a parsed SOCKS5 request.
type socksRequest struct {
	cmd  byte
	host string // an IP address or a name, unresolved
	port uint16
}

func (r socksRequest) target() string {
	return net.JoinHostPort(r.host, strconv.Itoa(int(r.port)))
}

// socksError is a handshake failure that has a reply code to send (0 for one
// that gets no reply: the client does not speak SOCKS5 or offered no method we
// accept, which has its own answer).
type socksError struct {
	reply byte
	msg   string
}

func (e *socksError) Error() string { return "socks: " + e.msg }

// socksHandshake reads the client's greeting and request from r, writing the
// method selection to w; a request it cannot serve is answered on w with its
// reply code and returned as an error. On success nothing about the request
// has been answered yet: that waits for the tunnel's dial.
func socksHandshake(r io.Reader, w io.Writer) (socksRequest, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:2]); err != nil {
		return socksRequest{}, err
	}
	if hdr[0] != socksVersion {
		return socksRequest{}, &socksError{msg: fmt.Sprintf("version %d is not SOCKS5", hdr[0])}
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(r, methods); err != nil {
		return socksRequest{}, err
	}
	method := byte(socksNoAcceptable)
	for _, m := range methods {
		if m == socksMethodNoAuth {
			method = socksMethodNoAuth
		}
	}
	if _, err := w.Write([]byte{socksVersion, method}); err != nil {
		return socksRequest{}, err
	}
	if method == socksNoAcceptable {
		return socksRequest{}, &socksError{msg: "the client offers no method without authentication"}
	}

	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return socksRequest{}, err
	}
	fail := func(reply byte, format string, args ...any) (socksRequest, error) {
		_ = writeSOCKSReply(w, reply)
		return socksRequest{}, &socksError{reply: reply, msg: fmt.Sprintf(format, args...)}
	}
	if hdr[0] != socksVersion {
		return fail(socksGeneralFailure, "request version %d is not SOCKS5", hdr[0])
	}
	req := socksRequest{cmd: hdr[1]}
	switch hdr[3] {
	case socksAtypIPv4, socksAtypIPv6:
		ip := make(net.IP, 4)
		if hdr[3] == socksAtypIPv6 {
			ip = make(net.IP, 16)
		}
		if _, err := io.ReadFull(r, ip); err != nil {
			return socksRequest{}, err
		}
		req.host = ip.String()
	case socksAtypDomain:
		var n [1]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return socksRequest{}, err
		}
		name := make([]byte, n[0])
		if _, err := io.ReadFull(r, name); err != nil {
			return socksRequest{}, err
		}
		req.host = string(name)
	default:
		// The address's length is unknown: nothing after it can be read.
		return fail(socksAddressNotSupported, "address type %d", hdr[3])
	}
	var port [2]byte
	if _, err := io.ReadFull(r, port[:]); err != nil {
		return socksRequest{}, err
	}
	req.port = uint16(port[0])<<8 | uint16(port[1])
	switch {
	case req.cmd != socksCmdConnect:
		return fail(socksCommandNotSupported, "command %d (only CONNECT is supported)", req.cmd)
	case !validSOCKSHost(req.host):
		return fail(socksGeneralFailure, "invalid target name")
	case req.port == 0:
		return fail(socksGeneralFailure, "target port 0")
	}
	return req, nil
}

// validSOCKSHost refuses names that would not survive as the host of a
// host:port: empty, or holding control characters, spaces or a colon.
func validSOCKSHost(h string) bool {
	if h == "" {
		return false
	}
	if net.ParseIP(h) != nil {
		return true
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; c <= ' ' || c == ':' || c == 0x7f || c == '/' || c == '[' || c == ']' {
			return false
		}
	}
	return true
}

// writeSOCKSReply answers a request. The bound address is always 0.0.0.0:0:
// the real one is the server's, far away, and clients ignore it for CONNECT.
func writeSOCKSReply(w io.Writer, reply byte) error {
	_, err := w.Write([]byte{socksVersion, reply, 0, socksAtypIPv4, 0, 0, 0, 0, 0, 0})
	return err
}

// socksReplyFor maps a failed tunnel dial to the reply code a SOCKS client
// understands, the way tunnel.HTTPStatus does for HTTP.
func socksReplyFor(err error) byte {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return socksGeneralFailure // the server is starting
	}
	var re *tunnel.RemoteError
	if errors.As(err, &re) {
		switch re.Code {
		case tunnel.CodeRefused:
			return socksNotAllowed
		case tunnel.CodeDNS, tunnel.CodeTimeout:
			return socksHostUnreachable
		case tunnel.CodeConnectionRefused:
			return socksConnectionRefused
		case tunnel.CodeUnreachable:
			return socksNetworkUnreachable
		}
		return socksGeneralFailure
	}
	if tunnel.HTTPStatus(err) == http.StatusGatewayTimeout && !errors.Is(err, tunnel.ErrTunnelUnavailable) {
		return socksHostUnreachable
	}
	return socksGeneralFailure // the tunnel is down, or something of ours failed
}

// SOCKSServer serves SOCKS5 CONNECT requests through a Proxy's tunnel. Like
// http.Server: Serve on listeners, then Shutdown (stop accepting, let open
// connections finish) or Close (end everything). Its relays count in the
// Proxy's ActiveTunnels.
type SOCKSServer struct {
	p      *Proxy
	ctx    context.Context // canceled by Close: ends dials in progress
	cancel context.CancelFunc

	mu          sync.Mutex
	closing     bool
	listeners   map[net.Listener]struct{}
	negotiating map[net.Conn]struct{} // still reading their request
	conns       map[net.Conn]struct{}
	wg          sync.WaitGroup // one per connection
}

// NewSOCKSServer returns a SOCKS5 server for p.
func (p *Proxy) NewSOCKSServer() *SOCKSServer {
	ctx, cancel := context.WithCancel(context.Background())
	return &SOCKSServer{p: p, ctx: ctx, cancel: cancel,
		listeners: map[net.Listener]struct{}{}, negotiating: map[net.Conn]struct{}{}, conns: map[net.Conn]struct{}{}}
}

// Serve accepts connections on ln until Shutdown or Close, then returns
// http.ErrServerClosed (as http.Server does).
func (s *SOCKSServer) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = ln.Close()
		return http.ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.p.log.Warn().Err(err).Dur("retry_in", backoff).Msg("socks: accept failed; retrying")
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if !s.track(c) {
			_ = c.Close()
			return http.ErrServerClosed
		}
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.serveConn(c)
		}()
	}
}

func (s *SOCKSServer) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *SOCKSServer) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	s.negotiating[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *SOCKSServer) negotiated(c net.Conn) {
	s.mu.Lock()
	delete(s.negotiating, c)
	s.mu.Unlock()
}

func (s *SOCKSServer) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	delete(s.negotiating, c)
	s.mu.Unlock()
	_ = c.Close()
}

// stop closes the listeners and, with all set, every connection; otherwise
// only those still negotiating (nothing is in flight on them yet).
func (s *SOCKSServer) stop(all bool) {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	victims := s.negotiating
	if all {
		victims = s.conns
	}
	for c := range victims {
		_ = c.Close()
	}
	s.mu.Unlock()
	if all {
		s.cancel()
	}
}

// Shutdown stops accepting, ends connections that have not made their request
// yet, and waits for the others (relays in progress) to finish, or for ctx.
// Like http.Server.Shutdown it polls rather than start a goroutine to wait.
func (s *SOCKSServer) Shutdown(ctx context.Context) error {
	s.stop(false)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close ends every listener and connection and waits for their goroutines. It
// is idempotent.
func (s *SOCKSServer) Close() error {
	s.stop(true)
	s.wg.Wait()
	return nil
}

func (s *SOCKSServer) serveConn(c net.Conn) {
	start := time.Now()
	_ = c.SetDeadline(start.Add(s.p.cfg.ReadHeaderTimeout))
	req, err := socksHandshake(c, c)
	if err != nil {
		var se *socksError
		if errors.As(err, &se) {
			s.p.log.Debug().Err(err).Msg("socks: request refused")
		}
		return
	}
	// From here the request is in flight: Shutdown waits for it. The dial may
	// take a whole wake-up of the server: no deadline but the tunnel's own.
	s.negotiated(c)
	_ = c.SetDeadline(time.Time{})
	conn, err := s.p.tun.DialContext(s.ctx, "tcp", req.target())
	if err != nil {
		reply := socksReplyFor(err)
		_ = writeSOCKSReply(c, reply)
		s.p.log.Warn().Err(err).Str("method", "SOCKS5").Str("target", req.host).Int("reply", int(reply)).
			Dur("duration", time.Since(start).Round(time.Microsecond)).Msg("request")
		return
	}
	tc := s.p.counted(conn)
	if err := writeSOCKSReply(c, socksSucceeded); err != nil {
		_ = tc.Close()
		return
	}
	s.p.log.Debug().Str("method", "SOCKS5").Str("target", req.host).Msg("tunnel opened")
	relay.Run(relay.AsConn(c), tc, relay.Options{})
}

// SniffSOCKS wraps the HTTP proxy's listener so that a SOCKS client pointed at
// it by mistake learns so at once: net/http would wait ReadHeaderTimeout for a
// request line that never comes, then answer 400. A SOCKS5 greeting gets "no
// acceptable method" and a SOCKS4 request "rejected", and the connection ends.
func (p *Proxy) SniffSOCKS(ln net.Listener) net.Listener { return sniffListener{ln, p} }

type sniffListener struct {
	net.Listener
	p *Proxy
}

func (l sniffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &sniffConn{Conn: c, p: l.p}, nil
}

// sniffConn looks at the first bytes read from a connection.
type sniffConn struct {
	net.Conn
	p       *Proxy
	sniffed bool
}

func (c *sniffConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.sniffed || n == 0 {
		return n, err
	}
	c.sniffed = true
	var reply []byte
	switch b[0] {
	case socksVersion:
		reply = []byte{socksVersion, socksNoAcceptable}
	case 0x04:
		reply = []byte{0, 0x5b, 0, 0, 0, 0, 0, 0} // SOCKS4: request rejected
	default:
		return n, err
	}
	c.p.log.Warn().Int("socks_version", int(b[0])).
		Msg("a SOCKS client connected to the HTTP proxy: point it at the SOCKS5 listener (the agent's socks_port) instead")
	_, _ = c.Conn.Write(reply)
	return 0, io.EOF
}

// CloseWrite and CloseRead keep the half-close of the connection underneath,
// which CONNECT relays use.
func (c *sniffConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

func (c *sniffConn) CloseRead() error {
	if cr, ok := c.Conn.(interface{ CloseRead() error }); ok {
		return cr.CloseRead()
	}
	return nil
}
