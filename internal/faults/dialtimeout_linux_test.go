//go:build linux

package faults

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// synDropAddr returns a loopback address whose SYNs go unanswered, as a
// firewalled host's would: a socket listening with a backlog of 0, never
// accepting, whose accept queue is filled at once. Linux drops SYNs to a listener
// with a full accept queue, so a dial there times out rather than being refused.
func synDropAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	// Fill the accept queue; once a dial times out, the queue is full.
	for i := 0; i < 8; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			if isTimeout(err) {
				return addr
			}
			t.Fatalf("filling the accept queue of %s: %v", addr, err)
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatalf("%s kept accepting connections with a backlog of 0", addr)
	return ""
}

// TestTargetDialTimeout: a target that never answers the SYN. The server gives up
// after its dial timeout (each of its three attempts) and the agent answers 504 —
// for HTTP and for CONNECT — instead of waiting; once the breaker has seen enough
// failures it answers 503 at once.
func TestTargetDialTimeout(t *testing.T) {
	t.Parallel()
	const dialTimeout = 300 * time.Millisecond
	_, saddr := startServer(t, func(c *tunnel.ServerConfig) {
		c.DialTimeout = dialTimeout
		c.Breaker.OpenTimeout = 10 * time.Second // stays open for the rest of the test
		// A request that fails after all its retries is one breaker failure: the GET
		// and the CONNECT below open it.
		c.Breaker.ConsecutiveFailures = 2
	})
	a := startAgent(t, saddr, nil)
	dead := synDropAddr(t)
	c := a.httpClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	// Three attempts, each bounded by the dial timeout, with millisecond backoffs.
	bound := 3*dialTimeout + slack

	took, _ := timedOp(func() error {
		status, _, err := get(ctx, c, "http://"+dead+"/")
		if err != nil || status != http.StatusGatewayTimeout {
			t.Errorf("GET to a target that drops SYNs: status %d, err %v; want 504", status, err)
		}
		return nil
	})
	t.Logf("GET answered after %v", took.Round(time.Millisecond))
	if took > bound {
		t.Errorf("GET answered after %v, want within %v", took, bound)
	}

	took, _ = timedOp(func() error {
		conn, status, err := a.connect(ctx, dead)
		if conn != nil {
			conn.Close()
		}
		// The second failed request: it still dials (and times out), then the
		// breaker opens.
		if err != nil || status != http.StatusGatewayTimeout {
			t.Errorf("CONNECT to a target that drops SYNs: status %d, err %v; want 504", status, err)
		}
		return nil
	})
	t.Logf("CONNECT answered after %v", took.Round(time.Millisecond))
	if took > bound {
		t.Errorf("CONNECT answered after %v, want within %v", took, bound)
	}

	// The breaker is open now: the answer is immediate.
	took, _ = timedOp(func() error {
		status, _, err := get(ctx, c, "http://"+dead+"/")
		if err != nil || status != http.StatusServiceUnavailable {
			t.Errorf("GET with the breaker open: status %d, err %v; want 503", status, err)
		}
		return nil
	})
	t.Logf("GET with the breaker open answered after %v", took.Round(time.Millisecond))
	if took > slack {
		t.Errorf("GET with the breaker open answered after %v, want at once", took)
	}
}
