// Package proxy is the agent's local front end: an HTTP proxy (plain HTTP
// forwarding in forward.go, HTTPS CONNECT through github.com/elazarl/goproxy,
// and WebSocket upgrades) and a SOCKS5 server (socks.go), whose every
// upstream connection is a tunnel stream. Failures are explained to the person
// behind the client (errorpage.go).
package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/relay"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// Tunnel is what the proxy needs from the tunnel; *tunnel.Client implements it.
type Tunnel interface {
	RoundTrip(*http.Request) (*http.Response, error)
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	DialWebSocket(ctx context.Context, req *http.Request) (*http.Response, net.Conn, error)
}

// Config configures a Proxy.
type Config struct {
	// Logger receives one event per request with the method, target host and status;
	// never paths, queries, headers or bodies.
	Logger zerolog.Logger
	// IdleTimeout closes WebSocket relays that move no byte for this long.
	IdleTimeout time.Duration
	// ReadHeaderTimeout bounds how long a local client may take to send its request headers.
	ReadHeaderTimeout time.Duration
	// MaxHeaderBytes caps a local client's request headers; larger ones get 431.
	MaxHeaderBytes int
	// Health, if set, decides what GET /healthz on the proxy itself answers: 200 when
	// it returns nil, 503 otherwise. The agent checks that the tunnel is up.
	Health func(ctx context.Context) error
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Logger:            zerolog.Nop(),
		IdleTimeout:       10 * time.Minute,
		ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes:    1 << 20,
	}
}

// Validate reports the first unusable setting.
func (c Config) Validate() error {
	if c.IdleTimeout < 0 || c.ReadHeaderTimeout <= 0 || c.MaxHeaderBytes <= 0 {
		return errors.New("proxy: idle timeout must not be negative; read header timeout and max header bytes must be positive")
	}
	return nil
}

// Proxy is an http.Handler serving proxy requests through a Tunnel.
type Proxy struct {
	tun     Tunnel
	cfg     Config
	log     zerolog.Logger
	gp      *goproxy.ProxyHttpServer
	tunnels atomic.Int64 // open CONNECT and WebSocket relays
}

// ActiveTunnels reports the CONNECT and WebSocket relays open now. They live on
// hijacked connections, which http.Server.Shutdown does not wait for.
func (p *Proxy) ActiveTunnels() int64 { return p.tunnels.Load() }

// countedConn decrements the proxy's tunnel count once, when closed.
type countedConn struct {
	net.Conn
	once sync.Once
	n    *atomic.Int64
}

func (p *Proxy) counted(c net.Conn) *countedConn {
	p.tunnels.Add(1)
	return &countedConn{Conn: c, n: &p.tunnels}
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.n.Add(-1) })
	return c.Conn.Close()
}

func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

func (c *countedConn) CloseRead() error {
	if cr, ok := c.Conn.(interface{ CloseRead() error }); ok {
		return cr.CloseRead()
	}
	return nil
}

// New returns a proxy that sends everything through tun.
func New(tun Tunnel, cfg Config) (*Proxy, error) {
	if tun == nil {
		return nil, errors.New("proxy: nil tunnel")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Proxy{tun: tun, cfg: cfg, log: cfg.Logger}
	gp := goproxy.NewProxyHttpServer()
	gp.Logger = log.New(io.Discard, "", 0)
	gp.Verbose = false
	// Only CONNECT reaches goproxy (ServeHTTP), and its own transport must never
	// be used: every CONNECT dials through the tunnel.
	gp.Tr = &http.Transport{Proxy: nil, DialContext: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("proxy: direct connections are disabled")
	}}
	gp.ConnectDial = nil
	gp.ConnectDialWithReq = p.connectDial
	gp.ConnectionErrHandler = p.connectError
	p.gp = gp
	return p, nil
}

// NewHTTPServer returns an http.Server for the proxy with sane limits; serve it on a
// listener and stop it with Shutdown.
func (p *Proxy) NewHTTPServer() *http.Server {
	return &http.Server{
		Handler:           p,
		ReadHeaderTimeout: p.cfg.ReadHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    p.cfg.MaxHeaderBytes,
		ErrorLog:          log.New(logWriter{p.log}, "", 0),
	}
}

// ServeHTTP hands CONNECT to goproxy and serves the rest itself: requests to
// the proxy itself, WebSocket upgrades (goproxy's relay neither closes the
// client connection nor carries half-close) and plain-HTTP forwarding.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodConnect:
		p.gp.ServeHTTP(w, r)
	case !r.URL.IsAbs():
		p.nonProxy(w, r)
	case tunnel.IsWebSocketUpgrade(r):
		p.serveWebSocket(w, r)
	default:
		p.forward(w, r)
	}
}

func (p *Proxy) connectDial(r *http.Request, network, addr string) (net.Conn, error) {
	conn, err := p.tun.DialContext(r.Context(), network, addr)
	host, _, _ := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	p.log.Debug().Str("method", http.MethodConnect).Str("target", host).Msg("tunnel opened")
	return p.counted(conn), nil
}

// connectError answers a failed CONNECT with the status its cause maps to and a
// short plain body: what reads it is a program, not a person.
func (p *Proxy) connectError(w io.Writer, ctx *goproxy.ProxyCtx, err error) {
	host := ctx.Req.URL.Hostname()
	f := explain(err, host)
	p.logRequest(http.MethodConnect, host, f.Status, time.Now(), err)
	msg := f.text()
	h := http.Header{}
	f.header(h)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(msg)))
	h.Set("Connection", "close")
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", f.Status, http.StatusText(f.Status))
	_ = h.Write(&b)
	b.WriteString("\r\n")
	b.WriteString(msg)
	_, _ = io.WriteString(w, b.String())
}

func (p *Proxy) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	host := r.URL.Hostname()
	resp, conn, err := p.tun.DialWebSocket(r.Context(), r)
	if err != nil {
		f := explain(err, host)
		p.logRequest(r.Method, host, f.Status, start, err)
		f.header(w.Header())
		http.Error(w, f.text(), f.Status)
		return
	}
	if conn == nil {
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = relay.Copy(w, resp.Body)
		p.logRequest(r.Method, host, resp.StatusCode, start, nil)
		return
	}
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		_ = conn.Close()
		http.Error(w, "websocket: cannot take over the connection", http.StatusInternalServerError)
		return
	}
	if err := writeSwitchingProtocols(client, resp); err != nil {
		_ = client.Close()
		_ = conn.Close()
		return
	}
	p.logRequest(r.Method, host, resp.StatusCode, start, nil)
	tc := p.counted(conn)
	// Frames the client sent right behind its handshake sit in brw's buffer.
	res := relay.Run(relay.AsConn(client), tc, relay.Options{
		IdleTimeout: p.cfg.IdleTimeout,
		AReader:     relay.Prefixed(relay.Buffered(brw.Reader), client),
	})
	p.log.Debug().Str("target", host).Int64("sent", res.AtoB).Int64("received", res.BtoA).Msg("websocket closed")
}

func writeSwitchingProtocols(w io.Writer, resp *http.Response) error {
	bw := bufio.NewWriter(w)
	_, _ = fmt.Fprintf(bw, "HTTP/1.1 101 Switching Protocols\r\n")
	if err := resp.Header.Write(bw); err != nil {
		return err
	}
	_, _ = bw.WriteString("\r\n")
	return bw.Flush()
}

// nonProxy answers requests addressed to the proxy itself: a health check for
// scripts and a hint for people who point a browser at it.
func (p *Proxy) nonProxy(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		if p.cfg.Health != nil {
			if err := p.cfg.Health(r.Context()); err != nil {
				// Scripts and people both want to know why, not only that.
				http.Error(w, "tunnel down: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = io.WriteString(w, "ok\n")
		return
	}
	http.Error(w, "This is the Fluidity agent, an HTTP proxy: configure it as your proxy rather than visiting it.", http.StatusBadRequest)
}

func (p *Proxy) logRequest(method, host string, status int, start time.Time, err error) {
	ev := p.log.Debug()
	if err != nil {
		ev = p.log.Warn().Err(err)
	}
	ev.Str("method", method).Str("target", host).Int("status", status).Dur("duration", time.Since(start).Round(time.Microsecond)).Msg("request")
}

// logWriter sends net/http's server errors (TLS probes, bad requests) to zerolog.
type logWriter struct{ log zerolog.Logger }

func (l logWriter) Write(p []byte) (int, error) {
	l.log.Debug().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
