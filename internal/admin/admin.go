// Package admin is a daemon's admin listener: a small HTTP server for
// operators, on loopback by default, serving GET /metrics (Prometheus) and
// whatever routes the daemon adds (the agent's status page and PAC file).
//
// It is reachable from the machine's browser, so it defends against web pages:
// it answers only requests whose Host is its own address or localhost (a page
// cannot reach it through a name of its own that resolves to 127.0.0.1: DNS
// rebinding), and it refuses cross-origin requests other than GET, HEAD and
// OPTIONS (net/http's CrossOriginProtection: Sec-Fetch-Site, then Origin
// against Host), so that no page can make it act.
package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/metrics"
)

// Server is a running admin listener.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
	once sync.Once
	err  error
}

// Route is one more pattern the admin mux serves (http.ServeMux syntax).
type Route struct {
	Pattern string
	Handler http.Handler
}

// Start listens on addr and serves the admin mux, with /metrics gathered
// from reg, and routes; all behind Guard.
func Start(addr string, reg *prometheus.Registry, log zerolog.Logger, routes ...Route) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: promLog{log}}))
	for _, r := range routes {
		mux.Handle(r.Pattern, r.Handler)
	}
	s := &Server{
		srv: &http.Server{
			Handler:           Guard(ln.Addr(), mux),
			ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout:       time.Minute,
		},
		ln:   ln,
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	log.Info().Str("admin", ln.Addr().String()).Int("routes", 1+len(routes)).Msg("admin listener started")
	return s, nil
}

// Addr is the address the listener is bound to.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the listener, letting requests in flight finish for a moment.
// It is idempotent.
func (s *Server) Close() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			_ = s.srv.Close()
		}
		if err := <-s.done; !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	})
	return s.err
}

// Guard wraps h, served on the listener bound at self: requests whose Host is
// neither self's address nor localhost (with self's port, or none) get 421
// Misdirected Request; cross-origin requests that are not GET, HEAD or OPTIONS
// get 403.
func Guard(self net.Addr, h http.Handler) http.Handler {
	bound, _ := netip.ParseAddrPort(self.String())
	cop := http.NewCrossOriginProtection()
	protected := cop.Handler(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hostAllowed(r.Host, bound) {
			http.Error(w, "admin listener: unknown host; use localhost or the listener's address", http.StatusMisdirectedRequest)
			return
		}
		protected.ServeHTTP(w, r)
	})
}

// hostAllowed reports whether a request's Host names the listener: localhost
// or the bound address (any IP when bound to all interfaces: an address
// literal cannot be rebound), with the bound port or none.
func hostAllowed(host string, bound netip.AddrPort) bool {
	name, port := host, ""
	if h, p, err := net.SplitHostPort(host); err == nil {
		name, port = h, p
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		name = host[1 : len(host)-1]
	}
	if port != "" && port != fmt.Sprint(bound.Port()) {
		return false
	}
	if strings.EqualFold(name, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(name)
	if err != nil || !bound.IsValid() {
		return false
	}
	ip = ip.Unmap()
	return ip == bound.Addr().Unmap() || bound.Addr().IsUnspecified()
}

// promLog sends promhttp's errors (a collector failing) to the daemon's log.
type promLog struct{ log zerolog.Logger }

func (l promLog) Println(v ...any) { l.log.Warn().Msg(fmt.Sprint(v...)) }

// CheckAddr reports whether addr can be an admin listener's address: host:port
// with an IP address or localhost, and a port.
func CheckAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if _, err := netip.ParseAddr(host); err != nil && host != "localhost" {
		return fmt.Errorf("%q is not an IP address or localhost", host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q is not a port", port)
	}
	return nil
}

// StartMetrics builds daemon d's metrics and serves them at addr. With addr
// empty it serves nothing and returns nil metrics (whose Observer is nil). stop
// closes the listener. routes are served beside /metrics.
func StartMetrics(addr string, d metrics.Daemon, log zerolog.Logger, routes ...Route) (m *metrics.Metrics, stop func(), err error) {
	if addr == "" {
		return nil, func() {}, nil
	}
	reg, m := metrics.NewRegistry(d)
	s, err := Start(addr, reg, log, routes...)
	if err != nil {
		return nil, nil, err
	}
	return m, func() { _ = s.Close() }, nil
}
