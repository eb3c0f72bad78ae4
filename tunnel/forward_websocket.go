package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/relay"
	"github.com/fluidity-tunnel/fluidity/tunnel/internal/wire"
)

// serveWebSocket replays a WebSocket opening handshake to the target and, on
// 101, relays the raw frames both ways.
func (s *Server) serveWebSocket(ctx context.Context, abort context.CancelFunc, st *stream, p *wire.HTTPRequest, log zerolog.Logger) (string, error) {
	u, err := parseTargetURL(p.URL, "ws", "wss")
	if err != nil {
		return "", s.fail(st, err)
	}
	host := u.Hostname()
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "wss" {
			port = "443"
		}
	}
	if err := validRequest(http.MethodGet, p.Host); err != nil {
		return host, s.fail(st, err)
	}
	watch := s.watchAbort(st, abort, true, false)
	defer watch.stop()
	conn, err := s.dialGuarded(ctx, log, host, net.JoinHostPort(host, port))
	if err != nil {
		return host, s.fail(st, err)
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
			return host, s.fail(st, err)
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
		return host, s.fail(st, err)
	}
	early := watch.stop()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer conn.Close()
		defer resp.Body.Close()
		return host, s.forwardResponse(st, req.Method, resp, nil)
	}
	removeHopHeaders(resp.Header, true)
	if err := s.answer(st, wire.TypeResponse, wire.HTTPResponse{Status: resp.StatusCode, Header: resp.Header}); err != nil {
		_ = conn.Close()
		return host, err
	}
	// br may already hold the target's first frames: they go first.
	res := relay.Run(st, relay.AsConn(conn), relay.Options{IdleTimeout: s.idleTimeout(),
		AReader: relay.Prefixed(early, st), BReader: relay.Prefixed(relay.Buffered(br), conn)})
	st.trace.relayed(res.Err)
	return host, res.Err
}
