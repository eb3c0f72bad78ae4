package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/lifecycle"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// serverDialer connects to the server: at the configured address, or, with the
// lifecycle API, at the address Wake reports once the server is running.
type serverDialer struct {
	cfg   Config
	certs *tunnel.CertReloader
	waker *lifecycle.Waker
	log   zerolog.Logger
}

func (d *serverDialer) describe() string {
	if d.waker != nil {
		return "(from " + d.cfg.Lifecycle.Endpoint + ")"
	}
	return net.JoinHostPort(d.cfg.ServerIP, strconv.Itoa(d.cfg.ServerPort))
}

func (d *serverDialer) dial(ctx context.Context) (net.Conn, error) {
	if d.waker == nil {
		return d.dialOnce(ctx, net.JoinHostPort(d.cfg.ServerIP, strconv.Itoa(d.cfg.ServerPort)))
	}
	addr, err := d.waker.Address(ctx)
	if err != nil {
		return nil, fmt.Errorf("wake the server: %w", err)
	}
	// ECS reports a task running before the server inside it listens: keep trying
	// on a fixed schedule (the seed's 5 s, up to 90 s) before giving up.
	start := time.Now()
	for attempt := 1; ; attempt++ {
		conn, err := d.dialOnce(ctx, addr)
		if err == nil {
			return conn, nil
		}
		elapsed := time.Since(start)
		if ctx.Err() != nil || elapsed+d.cfg.RetryInterval > d.cfg.RetryTimeout {
			d.log.Error().Err(err).Str("server", addr).Dur("waited", elapsed.Round(time.Second)).
				Msg("server not reachable; giving up until the next request")
			// It may have been replaced or put to sleep: wake it again next time.
			d.waker.Forget(addr)
			return nil, err
		}
		d.log.Info().Str("server", addr).Int("attempt", attempt).Dur("elapsed", elapsed.Round(time.Second)).
			Msg("server not accepting yet; retrying")
		select {
		case <-time.After(d.cfg.RetryInterval):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (d *serverDialer) dialOnce(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.DialTimeout)
	defer cancel()
	return tunnel.DialTLS(ctx, addr, d.certs.ClientTLSConfig(d.cfg.ServerName))
}
