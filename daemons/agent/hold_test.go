package main

import (
	"testing"

	"github.com/fluidity-tunnel/fluidity/lifecycle"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// countStreams counts what the Kill on exit reports and still feeds the
// observer it wraps (the status page and metrics).
func TestCountStreams(t *testing.T) {
	t.Parallel()
	peak := lifecycle.NewStreamPeak(0)
	var starts, ends, ups int
	next := &tunnel.Observer{
		StreamStart: func(tunnel.StreamKind) { starts++ },
		StreamEnd:   func(tunnel.StreamStats) { ends++ },
		SessionUp:   func() { ups++ },
	}
	o := countStreams(peak, next)
	o.StreamStart(tunnel.KindHTTP)
	o.StreamStart(tunnel.KindConnect)
	o.StreamEnd(tunnel.StreamStats{Kind: tunnel.KindHTTP, Code: tunnel.OutcomeOK})
	o.StreamEnd(tunnel.StreamStats{Code: tunnel.OutcomeTunnelUnavailable}) // no kind: not one of ours
	o.SessionUp()
	if got := peak.Peak(); got != 2 {
		t.Errorf("peak %d, want 2", got)
	}
	if starts != 2 || ends != 2 || ups != 1 {
		t.Errorf("passed on %d starts, %d ends, %d session ups; want 2, 2, 1", starts, ends, ups)
	}
	o.StreamEnd(tunnel.StreamStats{Kind: tunnel.KindConnect, Code: tunnel.OutcomeOK})
	countStreams(peak, nil).StreamStart(tunnel.KindWebSocket) // no observer to pass on to
	if got := peak.Peak(); got != 2 {
		t.Errorf("peak after all ended and one more = %d, want 2", got)
	}
}
