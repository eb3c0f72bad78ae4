package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/retry"
	"github.com/fluidity-tunnel/fluidity/internal/upstream"
	"github.com/fluidity-tunnel/fluidity/lifecycle"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// serverDialer connects to the server: at the configured address, or, with the
// lifecycle API, at the address Wake reports once the server is running.
type serverDialer struct {
	cfg   Config
	certs *tunnel.CertReloader
	waker *lifecycle.Waker
	route *upstream.Dialer // nil: direct
	log   zerolog.Logger
}

func (d *serverDialer) describe() string {
	if d.waker != nil {
		return "(from " + lifecycle.RedactedEndpoint(d.cfg.Lifecycle.Endpoint) + ")"
	}
	return net.JoinHostPort(d.cfg.ServerIP, strconv.Itoa(d.cfg.ServerPort))
}

// firstConnectRetry is the first wait between attempts to reach a server that
// Wake just reported running: a fixed 5 s would cost most of that in latency.
const firstConnectRetry = 250 * time.Millisecond

func (d *serverDialer) dial(ctx context.Context) (net.Conn, error) {
	if d.waker == nil {
		return d.dialOnce(ctx, net.JoinHostPort(d.cfg.ServerIP, strconv.Itoa(d.cfg.ServerPort)))
	}
	addr, woke, err := d.waker.Address(ctx)
	if err != nil {
		return nil, fmt.Errorf("wake the server: %w", err)
	}
	if !woke {
		// An address that served before: one attempt. If it refuses, the
		// server was put to sleep or replaced, and this dial is demand (the
		// tunnel's keeper never dials an address it has not just probed): wake it.
		conn, err := d.dialOnce(ctx, addr)
		if err == nil {
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		d.log.Info().Err(err).Str("server", addr).Msg("server no longer answers; waking it")
		d.waker.Forget(addr)
		if addr, _, err = d.waker.Address(ctx); err != nil {
			return nil, fmt.Errorf("wake the server: %w", err)
		}
	}
	conn, err := d.dialStarting(ctx, addr)
	if err != nil {
		// It may have been replaced or put to sleep: wake it again next time.
		d.waker.Forget(addr)
		return nil, err
	}
	d.waker.Connected(addr)
	return conn, nil
}

// dialStarting dials a server that was just reported running: ECS reports a
// task running before the server inside it listens, which takes it well
// under a second to do once its process runs. It keeps trying, from
// firstConnectRetry doubling up to RetryInterval (the seed's 5 s), for up to
// RetryTimeout (90 s). No wait starts that would end past RetryTimeout; 0
// means a single attempt.
func (d *serverDialer) dialStarting(ctx context.Context, addr string) (net.Conn, error) {
	p := retry.Policy{
		Attempts:   retry.Unlimited,
		Initial:    min(firstConnectRetry, d.cfg.RetryInterval),
		Multiplier: 2,
		Max:        d.cfg.RetryInterval,
		Jitter:     0.2,
		MaxElapsed: d.cfg.RetryTimeout,
	}
	if d.cfg.RetryTimeout == 0 {
		p.Attempts = 1
	}
	start := time.Now()
	p.OnRetry = func(attempt int, _ error, _ time.Duration) {
		d.log.Info().Str("server", addr).Int("attempt", attempt).Dur("elapsed", time.Since(start).Round(time.Second)).
			Msg("server not accepting yet; retrying")
	}
	var (
		conn     net.Conn
		cutShort bool // ctx ended during a dial
	)
	err := p.Do(ctx, func(ctx context.Context) error {
		c, err := d.dialOnce(ctx, addr)
		if err != nil && ctx.Err() != nil {
			cutShort = true
			return retry.Permanent(err)
		}
		conn = c
		return err
	}, nil)
	var exhausted *retry.ExhaustedError
	switch {
	case err == nil:
		return conn, nil
	case errors.As(err, &exhausted):
		err = exhausted.Err
	case cutShort:
		// ctx ended during a dial: give up as when the schedule runs out.
	case ctx.Err() != nil:
		return nil, ctx.Err() // cancelled while waiting between attempts
	default:
		return nil, err // an invalid schedule, which Config.Validate refuses
	}
	d.log.Error().Err(err).Str("server", addr).Dur("waited", time.Since(start).Round(time.Second)).
		Msg("server not reachable; giving up until the next request")
	return nil, err
}

func (d *serverDialer) dialOnce(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.DialTimeout)
	defer cancel()
	if d.route == nil {
		return tunnel.DialTLS(ctx, addr, d.certs.ClientTLSConfig(d.cfg.ServerName))
	}
	return tunnel.DialTLSWith(ctx, d.route, addr, d.certs.ClientTLSConfig(d.cfg.ServerName))
}
