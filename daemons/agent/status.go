package main

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/admin"
	"github.com/fluidity-tunnel/fluidity/internal/buildinfo"
	"github.com/fluidity-tunnel/fluidity/internal/config"
	"github.com/fluidity-tunnel/fluidity/internal/pac"
	"github.com/fluidity-tunnel/fluidity/internal/status"
	"github.com/fluidity-tunnel/fluidity/internal/upstream"
	"github.com/fluidity-tunnel/fluidity/lifecycle"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// agentStatus is the agent's cockpit on the admin listener: the status page
// (GET /), its facts (GET /status.json), the wake and sleep buttons (POST
// /wake, /sleep, with a lifecycle API) and the PAC file (GET /proxy.pac).
// The routes exist from the start; attach gives them the tunnel, once it
// exists.
type agentStatus struct {
	cfg     Config
	route   *upstream.Dialer
	log     zerolog.Logger
	tracker *status.Tracker

	mu  sync.Mutex
	api *lifecycle.APIClient
	pac http.Handler // nil until attach
}

func newAgentStatus(cfg Config, route *upstream.Dialer, log zerolog.Logger) *agentStatus {
	return &agentStatus{cfg: cfg, route: route, log: log, tracker: status.NewTracker()}
}

// routes are the admin listener's routes beside /metrics.
func (s *agentStatus) routes() []admin.Route {
	actions := &status.Actions{
		Wake: func(ctx context.Context) (string, error) {
			api := s.lifecycleAPI()
			if api == nil {
				return "", status.ErrNoLifecycle
			}
			r, err := api.Wake(ctx)
			return string(r.State), err
		},
		Sleep: func(ctx context.Context) (string, error) {
			api := s.lifecycleAPI()
			if api == nil {
				return "", status.ErrNoLifecycle
			}
			r, err := api.KillWith(ctx, lifecycle.KillRequest{}) // unconditional, as `fluidity sleep`
			return string(r.State), err
		},
	}
	if !s.cfg.Lifecycle.Enabled() {
		actions = nil
	}
	return []admin.Route{
		{Pattern: "/", Handler: status.Handler(s.tracker, actions, s.log)},
		{Pattern: "GET /proxy.pac", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			h := s.pac
			s.mu.Unlock()
			if h == nil {
				http.Error(w, "the agent is starting", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})},
	}
}

func (s *agentStatus) lifecycleAPI() *lifecycle.APIClient {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.api
}

// observe and dial wrap the tunnel client's Observer and Dial for the tracker.
func (s *agentStatus) observe(next *tunnel.Observer) *tunnel.Observer {
	return s.tracker.Observer(next)
}

func (s *agentStatus) dial(d func(context.Context) (net.Conn, error)) func(context.Context) (net.Conn, error) {
	return s.tracker.Dial(d)
}

// attach gives the routes the running tunnel: call it before the client
// runs and the proxy serves. waker and api are nil without a lifecycle API;
// proxy is the local proxy's listener address.
func (s *agentStatus) attach(client *tunnel.Client, waker *lifecycle.Waker, api *lifecycle.APIClient, proxy net.Addr) error {
	pacHandler, err := pac.Handler(s.pacConfig(proxy))
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.api, s.pac = api, pacHandler
	s.mu.Unlock()
	src := status.Sources{
		Version:  buildinfo.String(),
		Proxy:    proxy.String(),
		Server:   net.JoinHostPort(s.cfg.ServerIP, strconv.Itoa(s.cfg.ServerPort)),
		Route:    s.route.String(),
		Sessions: client.Sessions,
		// With a lifecycle API only requests wake the server (after the
		// start, in on_start mode): a tunnel that is down waits for one.
		OnDemand: waker != nil,
	}
	if waker != nil {
		src.Server = "(from " + lifecycle.RedactedEndpoint(s.cfg.Lifecycle.Endpoint) + ")"
		src.Wake = wakeStatus(waker)
	}
	s.tracker.Attach(src)
	return nil
}

// pacConfig is the PAC file's configuration: the agent's real proxy address
// (loopback when it listens on every interface), and its SOCKS5 listener.
func (s *agentStatus) pacConfig(proxy net.Addr) pac.Config {
	host, port, _ := net.SplitHostPort(proxy.String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	c := pac.Config{
		DirectDomains: s.cfg.DirectDomains,
		DirectCIDRs:   s.cfg.DirectCIDRs,
		Proxy:         net.JoinHostPort(host, port),
	}
	if s.cfg.SOCKSPort > 0 {
		// Clients that cannot use the HTTP proxy for something fall back to
		// SOCKS5 (on the same address, as the agent listens).
		c.SOCKS = net.JoinHostPort(host, strconv.Itoa(s.cfg.SOCKSPort))
	}
	return c
}

// SplitSettings are the split-tunnelling keys (the PAC file's); embedded in
// Config, they are top-level keys.
type SplitSettings struct {
	DirectDomains []string `koanf:"direct_domains" help:"DNS suffixes the PAC file (/proxy.pac) sends DIRECT rather than through the tunnel, e.g. corp.example,intranet.example (each covers the name and every name under it)"`
	DirectCIDRs   []string `koanf:"direct_cidrs" help:"IPv4 networks the PAC file sends DIRECT, e.g. 10.0.0.0/8,192.168.0.0/16 (the browser resolves a host name to check it)"`
}

// checkSplit validates the split-tunnelling keys.
func (c *SplitSettings) checkSplit() error {
	for _, d := range c.DirectDomains {
		if _, err := pac.CheckDomain(d); err != nil {
			return &config.FieldError{Key: "direct_domains", Err: err}
		}
	}
	for _, n := range c.DirectCIDRs {
		if _, err := pac.CheckCIDR(n); err != nil {
			return &config.FieldError{Key: "direct_cidrs", Err: err}
		}
	}
	return nil
}

// wakeStatus is the status page's view of the Waker.
func wakeStatus(w *lifecycle.Waker) func() status.Wake {
	return func() status.Wake {
		ws := w.Status()
		s := status.Wake{State: string(ws.State), Waking: ws.Waking, Since: ws.Since, Address: ws.Address}
		switch {
		case ws.Err != nil && ws.Stopped:
			s.Error = ws.Err.Error() + " (the agent calls the API no more: fix the configuration and restart it)"
		case ws.Err != nil:
			s.Error = ws.Err.Error()
		case ws.State == lifecycle.StateFailed && ws.Reason != "":
			s.Error = "the server failed to start: " + ws.Reason
		}
		return s
	}
}
