package metrics

import (
	"testing"

	"github.com/fluidity-tunnel/fluidity/tunnel"
)

type upDown struct{ up, down int }

func (c *upDown) Up()   { c.up++ }
func (c *upDown) Down() { c.down++ }

// CountSessions counts sessions and still feeds the observer it wraps (the
// status page and metrics).
func TestCountSessions(t *testing.T) {
	t.Parallel()
	var c upDown
	var starts, ups, downs int
	next := &tunnel.Observer{
		StreamStart: func(tunnel.StreamKind) { starts++ },
		SessionUp:   func() { ups++ },
		SessionDown: func(string) { downs++ },
	}
	o := CountSessions(&c, next)
	o.SessionUp()
	o.SessionUp()
	o.SessionDown(tunnel.SessionEndPeer)
	o.StreamStart(tunnel.KindHTTP)
	if c != (upDown{2, 1}) || ups != 2 || downs != 1 || starts != 1 {
		t.Fatalf("counted %+v, passed on %d ups, %d downs, %d starts; want 2/1 counted and passed on, 1 start", c, ups, downs, starts)
	}
	bare := CountSessions(&c, nil) // no observer to pass on to
	bare.SessionUp()
	bare.SessionDown(tunnel.SessionEndClosed)
	if c != (upDown{3, 2}) {
		t.Fatalf("without a next observer: %+v", c)
	}
}
