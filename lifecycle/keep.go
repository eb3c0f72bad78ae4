package lifecycle

import (
	"context"
)

// Tunnel is what [Waker.Keep] needs of the tunnel client; *tunnel.Client
// implements it.
type Tunnel interface {
	// Connect brings a session up (dialling through the Waker's address).
	Connect(ctx context.Context) error
	// WaitUp returns once a session is up; WaitDown once none is.
	WaitUp(ctx context.Context) error
	WaitDown(ctx context.Context) error
}

// Keep watches t until ctx ends, so that the tunnel follows the server's
// lifecycle without ever waking it by itself:
//
//   - with wakeAtStart (wake_mode on_start) it connects once at the start,
//     which wakes the server;
//   - whenever every session has gone (the server was put to sleep, killed,
//     replaced, or the path broke), it asks the API for the state once
//     (Probe, which wakes nothing) instead of dialling the old address
//     again: a running server is reconnected to at once; a sleeping,
//     stopping or starting one is left alone until work arrives, which
//     wakes it through Address.
//
// Nothing here calls Wake after the start: only demand does.
func (w *Waker) Keep(ctx context.Context, t Tunnel, wakeAtStart bool) {
	if wakeAtStart {
		if err := t.Connect(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn().Err(err).Msg("tunnel not up at start; the next request wakes the server again")
		}
	}
	for {
		if t.WaitUp(ctx) != nil || t.WaitDown(ctx) != nil {
			return
		}
		w.lost(ctx, t)
	}
}

// lost decides what a tunnel that just lost its last session does.
func (w *Waker) lost(ctx context.Context, t Tunnel) {
	r, err := w.Probe(ctx)
	switch {
	case ctx.Err() != nil:
	case err != nil:
		// The API may be unreachable for the same reason the server is: the
		// next request tries the old address once, then wakes.
		w.log.Warn().Err(err).Msg("tunnel lost and the lifecycle API did not answer; reconnecting at the next request")
	case r.State == StateRunning && r.Address != "":
		w.log.Info().Msg("tunnel lost; the server is running: reconnecting")
		if err := t.Connect(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn().Err(err).Msg("reconnecting to the running server failed; the next request wakes it")
		}
	default:
		w.log.Info().Str("state", string(r.State)).Msg("tunnel closed: the server is not running; it is woken when a request arrives")
	}
}
