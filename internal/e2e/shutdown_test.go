package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// TestGracefulShutdown sends SIGTERM to the agent, then (in another stack) to
// the server, while slow requests are in flight, plain HTTP and through CONNECT:
// they complete with 200, the daemon stops accepting at once, and exits 0
// without waiting out its shutdown timeout.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	for _, victim := range []string{"agent", "server"} {
		t.Run(victim, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, stackOpts{})
			arrived := make(chan struct{}, 2)
			slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				arrived <- struct{}{}
				time.Sleep(time.Second)
				fmt.Fprintf(w, "slow %s done", r.URL.Path)
			})
			plain := httpTarget(t, slow)
			secure, pool, _ := tlsTarget(t, slow)
			// No keep-alive: the CONNECT tunnel ends with its one request, as a
			// browser's would when the user stops using it.
			c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
				Proxy:             http.ProxyURL(s.agent.proxyURL),
				TLSClientConfig:   &tls.Config{RootCAs: pool},
				DisableKeepAlives: true,
			}}

			type result struct {
				status int
				body   string
				err    error
			}
			results := make(chan result, 2)
			for _, u := range []string{plain.URL + "/plain", secure.URL + "/connect"} {
				go func() {
					resp, err := c.Get(u)
					if err != nil {
						results <- result{err: err}
						return
					}
					defer resp.Body.Close()
					b, err := io.ReadAll(resp.Body)
					results <- result{resp.StatusCode, string(b), err}
				}()
			}
			for range 2 {
				select {
				case <-arrived:
				case <-time.After(10 * time.Second):
					t.Fatal("the slow requests never reached the target")
				}
			}

			p, addr := s.agent.proc, s.agent.addr
			if victim == "server" {
				p, addr = s.server.proc, s.server.addr
			}
			signalled := time.Now()
			p.signal(syscall.SIGTERM)

			// It stops accepting while the requests are still in flight.
			deadline := time.Now().Add(500 * time.Millisecond)
			for {
				conn, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					break
				}
				conn.Close()
				if time.Now().After(deadline) {
					t.Errorf("the %s still accepts connections 500ms after SIGTERM", victim)
					break
				}
				time.Sleep(20 * time.Millisecond)
			}

			for range 2 {
				r := <-results
				if r.err != nil || r.status != http.StatusOK || len(r.body) < 9 {
					t.Errorf("request in flight during SIGTERM: status %d, body %q, error %v", r.status, r.body, r.err)
				}
			}
			if code := p.wait(t, stopTimeout); code != 0 {
				t.Fatalf("%s exit code %d after SIGTERM, want 0", victim, code)
			}
			if d := time.Since(signalled); d > 5*time.Second {
				t.Errorf("the %s took %v to exit after its requests finished", victim, d)
			}
			if _, ok := p.stderr.waitEntry(p.done, time.Second, msgIs(victim+" stopped")); !ok {
				t.Errorf("the %s did not log %q", victim, victim+" stopped")
			}
		})
	}
}
