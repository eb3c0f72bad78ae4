package main

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/fluidity-tunnel/fluidity/lifecycle"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// heldTunnel is the proxy's tunnel when the server scales to zero: work that
// arrives while no session is up waits (up to bound) for the server to wake
// and the tunnel to come up, as a scale-to-zero activator holds requests,
// instead of failing. Past the bound it fails with a *lifecycle.StartingError,
// which the proxy answers 503 with Retry-After.
type heldTunnel struct {
	client *tunnel.Client
	waker  *lifecycle.Waker
	bound  time.Duration
}

func (h *heldTunnel) ready(ctx context.Context) error {
	if h.client.Up() {
		return nil
	}
	return h.waker.Hold(ctx, h.bound, h.client.Connect)
}

func (h *heldTunnel) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := h.ready(req.Context()); err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	return h.client.RoundTrip(req)
}

func (h *heldTunnel) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := h.ready(ctx); err != nil {
		return nil, err
	}
	return h.client.DialContext(ctx, network, addr)
}

func (h *heldTunnel) DialWebSocket(ctx context.Context, req *http.Request) (*http.Response, net.Conn, error) {
	if err := h.ready(ctx); err != nil {
		return nil, nil, err
	}
	return h.client.DialWebSocket(ctx, req)
}

// lifecycleHealth is /healthz with the lifecycle API: a tunnel that is up
// must answer a ping; one that is down because the server sleeps is healthy
// (the next request wakes it) and is not connected by the check, which would
// wake the server; a misconfiguration the Waker stopped on is not.
func lifecycleHealth(ctx context.Context, client *tunnel.Client, w *lifecycle.Waker) error {
	if st := w.Status(); st.Stopped {
		return st.Err
	}
	if !client.Up() {
		return nil
	}
	_, err := client.Ping(ctx)
	return err
}
