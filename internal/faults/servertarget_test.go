package faults

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// targetRig is a tunnel (agent straight to the server) whose server reaches the
// HTTP/WebSocket target and the CONNECT echo target through toxiproxies.
type targetRig struct {
	agent    *agent
	target   *target
	httpTox  *toxProxy
	echoTox  *toxProxy
	httpBase string // the target, through its toxiproxy
}

func newTargetRig(t *testing.T, smod func(*tunnel.ServerConfig), before func(*toxProxy)) *targetRig {
	t.Helper()
	r := &targetRig{target: newTarget(t)}
	echo := echoServer(t)
	x := newToxics()
	r.httpTox = x.proxy(t, "server-target", strings.TrimPrefix(r.target.URL, "http://"))
	r.echoTox = x.proxy(t, "server-echo", echo)
	if before != nil {
		before(r.httpTox)
		before(r.echoTox)
	}
	r.httpBase = "http://" + r.httpTox.addr()
	_, saddr := startServer(t, smod)
	r.agent = startAgent(t, saddr, nil)
	return r
}

// both adds a toxic on both streams of both toxiproxies.
func (r *targetRig) both(t *testing.T, typ, attrs string) {
	r.httpTox.both(t, typ, attrs)
	r.echoTox.both(t, typ, attrs)
}

func (r *targetRig) reset() {
	r.httpTox.reset()
	r.echoTox.reset()
}

// TestServerTargetLink injects faults between the server and the target.
func TestServerTargetLink(t *testing.T) {
	t.Parallel()

	t.Run("Latency", func(t *testing.T) {
		r := newTargetRig(t, nil, nil)
		r.both(t, "latency", `{"latency":50,"jitter":10}`)
		took, _ := timedOp(func() error { checkTraffic(t, r.agent, r.httpBase, r.echoTox.addr(), 1<<20); return nil })
		t.Logf("traffic with 50±10 ms each way took %v", took.Round(time.Millisecond))
		if took < 300*time.Millisecond {
			t.Errorf("traffic took %v: the latency toxic did not apply", took)
		}
	})

	t.Run("Bandwidth", func(t *testing.T) {
		r := newTargetRig(t, nil, nil)
		r.both(t, "bandwidth", `{"rate":1024}`)
		took, _ := timedOp(func() error { checkTraffic(t, r.agent, r.httpBase, r.echoTox.addr(), 512<<10); return nil })
		t.Logf("traffic at 1 MB/s took %v", took.Round(time.Millisecond))
		if took < 800*time.Millisecond {
			t.Errorf("traffic took %v: the bandwidth toxic did not apply", took)
		}
	})

	t.Run("Slicer", func(t *testing.T) {
		r := newTargetRig(t, nil, nil)
		r.both(t, "slicer", `{"average_size":64,"size_variation":48,"delay":20}`)
		checkTraffic(t, r.agent, r.httpBase, r.echoTox.addr(), 256<<10)
	})

	// The target is reset mid-transfer: the download fails (never reported as
	// complete), CONNECT and WebSocket connections close, all at once.
	for _, chunked := range []bool{false, true} {
		name := "ResetMidDownload/ContentLength"
		if chunked {
			name = "ResetMidDownload/Chunked"
		}
		t.Run(name, func(t *testing.T) {
			var toxic string
			r := newTargetRig(t, nil, func(p *toxProxy) {
				toxic = p.addWith(t, "reset_peer", "downstream", 0, `{"timeout":0}`)
			})
			f := startInFlight(t, r.agent, r.agent.httpClient(t), r.httpBase, r.echoTox.addr(), chunked)
			fault := time.Now()
			r.httpTox.setToxicity(t, toxic, 1)
			r.echoTox.setToxicity(t, toxic, 1)
			f.poke() // idle relays: the reset comes with the next bytes from the target
			f.expectFailed(t, fault, slack)
			r.reset()
			checkTraffic(t, r.agent, r.httpBase, r.echoTox.addr(), 64<<10)
		})
	}

	// The target swallows everything: an HTTP request or WebSocket handshake gets
	// 504 once the server's response header timeout passes; a CONNECT relay that
	// moves nothing is closed by the server's idle timeout. Nothing waits longer.
	t.Run("BlackHole", func(t *testing.T) {
		const (
			headerTimeout = 500 * time.Millisecond
			idleTimeout   = time.Second
		)
		r := newTargetRig(t, func(c *tunnel.ServerConfig) {
			c.ResponseHeaderTimeout = headerTimeout
			c.IdleTimeout = idleTimeout
		}, nil)
		r.both(t, "timeout", `{"timeout":0}`)
		c := r.agent.httpClient(t)
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()

		took, _ := timedOp(func() error {
			status, _, err := get(ctx, c, r.httpBase+"/blob?n=100")
			if err != nil || status != http.StatusGatewayTimeout {
				t.Errorf("GET from a black-holed target: status %d, err %v; want 504", status, err)
			}
			return nil
		})
		t.Logf("GET answered after %v", took.Round(time.Millisecond))
		if took > headerTimeout+slack {
			t.Errorf("GET answered after %v, want within the response header timeout %v", took, headerTimeout)
		}

		took, _ = timedOp(func() error {
			_, resp, err := websocket.Dial(ctx, "ws://"+r.httpTox.addr()+"/ws", &websocket.DialOptions{HTTPClient: c})
			if err == nil || resp == nil || resp.StatusCode != http.StatusGatewayTimeout {
				status := 0
				if resp != nil {
					status = resp.StatusCode
				}
				t.Errorf("WebSocket to a black-holed target: status %d, err %v; want 504", status, err)
			}
			return nil
		})
		t.Logf("WebSocket handshake answered after %v", took.Round(time.Millisecond))
		if took > headerTimeout+slack {
			t.Errorf("WebSocket handshake answered after %v, want within %v", took, headerTimeout)
		}

		conn, status, err := r.agent.connect(ctx, r.echoTox.addr())
		if err != nil || status != http.StatusOK {
			t.Fatalf("CONNECT: status %d, err %v (the toxiproxy accepts, so the dial succeeds)", status, err)
		}
		start := time.Now()
		_, _ = conn.Write([]byte("into the void"))
		_ = conn.SetReadDeadline(time.Now().Add(opTimeout))
		_, err = io.Copy(io.Discard, conn)
		conn.Close()
		took = time.Since(start)
		t.Logf("silent CONNECT closed after %v (err %v)", took.Round(time.Millisecond), err)
		if isTimeout(err) {
			t.Errorf("silent CONNECT relay still open after %v", opTimeout)
		} else if took > idleTimeout+slack {
			t.Errorf("silent CONNECT relay closed after %v, want within the idle timeout %v", took, idleTimeout)
		}

		r.reset()
		checkTraffic(t, r.agent, r.httpBase, r.echoTox.addr(), 64<<10)
	})
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}
