package faults

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// linkRig is a tunnel whose agent reaches the server through a toxiproxy, with a
// local HTTP/WebSocket target and a CONNECT echo target.
type linkRig struct {
	agent  *agent
	server *tunnel.Server
	tox    *toxProxy
	target *target
	echo   string
}

// newLinkRig builds it; before runs after the toxiproxy starts and before the agent
// dials (to add toxics that must be there when the connection starts).
func newLinkRig(t *testing.T, smod func(*tunnel.ServerConfig), cmod func(*tunnel.ClientConfig), before func(*toxProxy)) *linkRig {
	t.Helper()
	r := &linkRig{target: newTarget(t), echo: echoServer(t)}
	var saddr string
	r.server, saddr = startServer(t, smod)
	r.tox = newToxics().proxy(t, "agent-server", saddr)
	if before != nil {
		before(r.tox)
	}
	r.agent = startAgent(t, r.tox.addr(), cmod)
	return r
}

// TestAgentServerLink injects faults between the agent and the server.
func TestAgentServerLink(t *testing.T) {
	t.Parallel()

	// Latency: everything arrives intact, and the session is never re-dialled.
	t.Run("Latency", func(t *testing.T) {
		r := newLinkRig(t, nil, nil, nil)
		r.tox.both(t, "latency", `{"latency":50,"jitter":10}`)
		took, _ := timedOp(func() error { checkTraffic(t, r.agent, r.target.URL, r.echo, 1<<20); return nil })
		t.Logf("traffic with 50±10 ms each way took %v", took.Round(time.Millisecond))
		if took < 300*time.Millisecond {
			t.Errorf("traffic took %v: the latency toxic did not apply", took)
		}
		if n := r.agent.dials.Load(); n != r.agent.sessions {
			t.Errorf("agent dialled %d times, want %d (once per session): keepalive false alarm under latency", n, r.agent.sessions)
		}
	})

	// Bandwidth: 1 MB/s each way. A slow link fills the socket buffers, which delays
	// keepalive pings: with the shipped keepalive the session survives.
	t.Run("Bandwidth", func(t *testing.T) {
		r := newLinkRig(t, nil, nil, nil)
		r.tox.both(t, "bandwidth", `{"rate":1024}`)
		took, _ := timedOp(func() error { checkTraffic(t, r.agent, r.target.URL, r.echo, 512<<10); return nil })
		t.Logf("traffic at 1 MB/s took %v", took.Round(time.Millisecond))
		if took < 800*time.Millisecond {
			t.Errorf("traffic took %v: the bandwidth toxic did not apply", took)
		}
		if n := r.agent.dials.Load(); n != r.agent.sessions {
			t.Errorf("agent dialled %d times, want %d (once per session): keepalive false alarm on a slow link", n, r.agent.sessions)
		}
	})

	// Slicer: TLS records and yamux frames arrive in small, uneven pieces.
	t.Run("Slicer", func(t *testing.T) {
		r := newLinkRig(t, nil, nil, nil)
		r.tox.both(t, "slicer", `{"average_size":200,"size_variation":150,"delay":20}`)
		checkTraffic(t, r.agent, r.target.URL, r.echo, 512<<10)
		if n := r.agent.dials.Load(); n != r.agent.sessions {
			t.Errorf("agent dialled %d times, want %d (once per session)", n, r.agent.sessions)
		}
	})

	// Black hole: the link swallows everything and never closes. Work in flight
	// fails within keepalive + write timeout (502 for the request waiting for its
	// answer, closed connections for CONNECT and WebSocket); new work fails within
	// the dial timeout instead of hanging; once the link is back, a request succeeds
	// within a second.
	t.Run("BlackHole", func(t *testing.T) {
		const dialTimeout = time.Second
		r := newLinkRig(t, fastServer, func(c *tunnel.ClientConfig) {
			fastClient(c)
			c.DialTimeout = dialTimeout
		}, nil)
		c := r.agent.httpClient(t)
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if status, _, err := get(ctx, c, r.target.URL+"/blob?n=10"); err != nil || status != http.StatusOK {
			t.Fatalf("before the fault: status %d, err %v", status, err)
		}
		f := startInFlight(t, r.agent, r.agent.httpClient(t), r.target.URL, r.echo, false)
		type answer struct {
			status int
			err    error
			at     time.Time
		}
		hang := make(chan answer, 1)
		before := r.target.started.Load()
		go func() {
			status, _, err := get(ctx, c, r.target.URL+"/hang")
			hang <- answer{status, err, time.Now()}
		}()
		waitFor(t, 5*time.Second, "the request to reach the target", func() bool { return r.target.started.Load() > before })

		fault := time.Now()
		r.tox.both(t, "timeout", `{"timeout":0}`)
		bound := deadPeer + slack
		select {
		case a := <-hang:
			took := a.at.Sub(fault)
			t.Logf("request in flight answered %d after %v (err %v)", a.status, took.Round(time.Millisecond), a.err)
			if a.err != nil || a.status != http.StatusBadGateway {
				t.Errorf("request in flight: status %d, err %v; want 502", a.status, a.err)
			}
			if took > bound {
				t.Errorf("request in flight answered after %v, want within %v (keepalive %v + write timeout %v)", took, bound, keepAlive, writeTimeout)
			}
		case <-time.After(bound + opTimeout):
			t.Fatalf("request in flight unanswered %v after the fault", bound+opTimeout)
		}
		f.expectFailed(t, fault, bound)

		// Still black-holed: a new request is answered with an error, within the
		// agent's dial timeout (it may join an attempt already under way).
		var status int
		took, _ := timedOp(func() error {
			var err error
			status, _, err = get(ctx, c, r.target.URL+"/blob?n=10")
			if err != nil || (status != http.StatusBadGateway && status != http.StatusGatewayTimeout) {
				t.Errorf("request while black-holed: status %d, err %v; want 502 or 504", status, err)
			}
			return nil
		})
		t.Logf("request while black-holed answered %d after %v", status, took.Round(time.Millisecond))
		if took > dialTimeout+slack {
			t.Errorf("request while black-holed answered after %v, want within the dial timeout %v", took, dialTimeout)
		}

		// Let a reconnect backoff build up, then heal the link.
		time.Sleep(1500 * time.Millisecond)
		healed := time.Now()
		r.tox.reset()
		first := waitSuccess(t, c, r.target.URL+"/blob?n=1024", healed, 5*time.Second)
		t.Logf("first request succeeded %v after the link healed", first.Round(time.Millisecond))
		if first > time.Second+reconnectSlack {
			t.Errorf("first successful request %v after the link healed, want within ~1 s", first.Round(time.Millisecond))
		}
		checkTraffic(t, r.agent, r.target.URL, r.echo, 64<<10)
	})

	// Reset: the link is reset (RST) mid-transfer. Everything in flight fails at
	// once; a download cut short is an error, never a short body reported complete.
	for _, chunked := range []bool{false, true} {
		name := "ResetMidDownload/ContentLength"
		if chunked {
			name = "ResetMidDownload/Chunked"
		}
		t.Run(name, func(t *testing.T) {
			var toxic string
			r := newLinkRig(t, nil, nil, func(p *toxProxy) {
				toxic = p.addWith(t, "reset_peer", "downstream", 0, `{"timeout":0}`)
			})
			f := startInFlight(t, r.agent, r.agent.httpClient(t), r.target.URL, r.echo, chunked)
			fault := time.Now()
			r.tox.setToxicity(t, toxic, 1)
			f.expectFailed(t, fault, slack)
			r.tox.reset()
			healed := time.Now()
			c := r.agent.httpClient(t)
			first := waitSuccess(t, c, r.target.URL+"/blob?n=1024", healed, 5*time.Second)
			t.Logf("first request succeeded %v after the reset", first.Round(time.Millisecond))
			if first > time.Second+reconnectSlack {
				t.Errorf("first successful request %v after the reset, want within ~1 s", first.Round(time.Millisecond))
			}
		})
	}
}

// reconnectSlack is what the ~1 s reconnect target may be exceeded by under -race.
const reconnectSlack = 500 * time.Millisecond

// waitSuccess requests u until it answers 200, for at most limit, and returns how
// long after since the first success came. Each attempt is bounded by 3 s.
func waitSuccess(t *testing.T, c *http.Client, u string, since time.Time, limit time.Duration) time.Duration {
	t.Helper()
	var last string
	for i := 0; time.Since(since) < limit && i < 1000; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		status, _, err := get(ctx, c, u)
		cancel()
		if err == nil && status == http.StatusOK {
			return time.Since(since)
		}
		last = fmt.Sprintf("status %d, err %v", status, err)
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no request succeeded within %v (last: %s)", limit, last)
	return 0
}
