package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/config"
	"github.com/fluidity-tunnel/fluidity/proxy"
)

// checkSOCKS validates socks_port against the agent's other listeners.
func (c *Config) checkSOCKS() error {
	bad := func(format string, args ...any) error {
		return &config.FieldError{Key: "socks_port", Err: fmt.Errorf(format, args...)}
	}
	switch {
	case c.SOCKSPort < 0 || c.SOCKSPort > 65535:
		return bad("%d is not a port", c.SOCKSPort)
	case c.SOCKSPort == 0:
		return nil
	case c.SOCKSPort == c.LocalProxyPort:
		return bad("%d is local_proxy_port too", c.SOCKSPort)
	case c.AdminListen == net.JoinHostPort(c.ListenAddr, strconv.Itoa(c.SOCKSPort)):
		return bad("%d is admin_listen's port too", c.SOCKSPort)
	}
	return nil
}

// socksFront is the SOCKS5 listener, when socks_port turns it on.
type socksFront struct {
	srv    *proxy.SOCKSServer
	stopCh chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

// startSOCKS listens on listen_addr:socks_port, if set, and serves SOCKS5
// there until ctx (the agent's stop signal) ends: then it stops accepting,
// while the relays it carries finish with the HTTP proxy's (they count in
// px.ActiveTunnels). Close ends what is left.
func startSOCKS(ctx context.Context, cfg Config, px *proxy.Proxy, log zerolog.Logger) (*socksFront, error) {
	f := &socksFront{stopCh: make(chan struct{})}
	if cfg.SOCKSPort == 0 {
		return f, nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.ListenAddr, strconv.Itoa(cfg.SOCKSPort)))
	if err != nil {
		return nil, fmt.Errorf("socks listen: %w", err)
	}
	if ip := net.ParseIP(cfg.ListenAddr); ip != nil && !ip.IsLoopback() {
		log.Warn().Str("listen_addr", cfg.ListenAddr).
			Msg("the SOCKS5 listener takes no password and listens beyond this machine: anyone who can reach it can use your tunnel")
	}
	f.srv = px.NewSOCKSServer()
	f.wg.Add(2)
	go func() {
		defer f.wg.Done()
		err := f.srv.Serve(ln)
		if !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("socks listener failed")
		}
	}()
	go func() { // #nosec G118 -- ctx is already done here: an already-cancelled context makes Shutdown stop at once
		defer f.wg.Done()
		select {
		case <-ctx.Done():
			// Stop accepting now; relays in flight are waited for by the
			// agent's shutdown, through ActiveTunnels.
			sctx, cancel := context.WithCancel(context.Background())
			cancel()
			_ = f.srv.Shutdown(sctx)
		case <-f.stopCh:
		}
	}()
	log.Info().Str("socks", ln.Addr().String()).Msg("socks5 listener started")
	return f, nil
}

// Close ends the listener and every SOCKS connection left, and waits for them.
func (f *socksFront) Close() {
	f.once.Do(func() {
		close(f.stopCh)
		if f.srv != nil {
			_ = f.srv.Close()
		}
		f.wg.Wait()
	})
}
