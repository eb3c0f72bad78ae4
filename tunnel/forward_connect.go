package tunnel

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/relay"
	"github.com/fluidity-tunnel/fluidity/tunnel/internal/wire"
)

// serveConnect dials a CONNECT target for the agent and relays raw bytes.
func (s *Server) serveConnect(ctx context.Context, abort context.CancelFunc, st *stream, p *wire.ConnectRequest, log zerolog.Logger) (string, error) {
	host, port, err := net.SplitHostPort(p.Addr)
	if err != nil || host == "" || port == "" {
		return "", s.fail(st, &RemoteError{Code: CodeBadRequest, Message: fmt.Sprintf("bad connect address %q", p.Addr)})
	}
	watch := s.watchAbort(st, abort, true, false)
	defer watch.stop()
	target, err := s.dialGuarded(ctx, log, host, p.Addr)
	if err != nil {
		return host, s.fail(st, err)
	}
	early := watch.stop()
	// An abort (or shutdown) cancels ctx; closing the target is what ends a relay
	// whose target side is silent.
	stopClose := context.AfterFunc(ctx, func() { _ = target.Close() })
	defer stopClose()
	if err := s.answer(st, wire.TypeConnected, struct{}{}); err != nil {
		_ = target.Close()
		return host, err
	}
	res := relay.Run(st, relay.AsConn(target), relay.Options{IdleTimeout: s.idleTimeout(), AReader: relay.Prefixed(early, st)})
	st.trace.relayed(res.Err)
	return host, res.Err
}

// idleTimeout is the relays' idle limit: zero (none) when configured negative.
func (s *Server) idleTimeout() time.Duration { return max(s.cfg.IdleTimeout, 0) }
