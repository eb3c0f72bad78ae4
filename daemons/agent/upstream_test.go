package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/config"
	"github.com/fluidity-tunnel/fluidity/internal/upstream"
	"github.com/fluidity-tunnel/fluidity/lifecycle"
)

// connectProxy is a minimal HTTP CONNECT proxy counting the tunnels it made.
func connectProxy(t *testing.T, count *atomic.Int32) *httptest.Server {
	srv := httptest.NewServer(connectHandler(count))
	t.Cleanup(srv.Close)
	return srv
}

// connectHandler serves CONNECT, counting the tunnels it made.
func connectHandler(count *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		target, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer target.Close()
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		count.Add(1)
		_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		go func() { _, _ = io.Copy(target, brw); _ = target.(*net.TCPConn).CloseWrite() }()
		_, _ = io.Copy(c, target)
	})
}

// TestAPIClientFollowsTheRoute: Wake goes through upstream_proxy, and never
// through a proxy the environment names (which net/http's default would follow).
func TestAPIClientFollowsTheRoute(t *testing.T) {
	var tunnels, strays atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"state":"sleeping","desired_count":0}`)
	}))
	defer api.Close()
	proxy := connectProxy(t, &tunnels)
	stray := connectProxy(t, &strays)
	t.Setenv("HTTPS_PROXY", stray.URL)
	t.Setenv("HTTP_PROXY", stray.URL)

	for _, tc := range []struct {
		proxy       string
		wantTunnels int32
	}{{"", 0}, {proxy.URL, 1}} {
		route, err := upstream.New(upstream.Config{Proxy: tc.proxy})
		if err != nil {
			t.Fatal(err)
		}
		c := &lifecycle.APIClient{Endpoint: api.URL, APIKey: "k", HTTPClient: apiHTTPClient(route, 0)}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := c.Wake(ctx)
		cancel()
		if err != nil || r.State != lifecycle.StateSleeping {
			t.Fatalf("upstream %q: Wake = %+v, %v", tc.proxy, r, err)
		}
		if got := tunnels.Load(); got != tc.wantTunnels {
			t.Errorf("upstream %q: %d tunnels through the proxy, want %d", tc.proxy, got, tc.wantTunnels)
		}
	}
	if n := strays.Load(); n != 0 {
		t.Errorf("the environment's proxy was used %d times", n)
	}
}

func TestValidateUpstream(t *testing.T) {
	for key, mutate := range map[string]func(*Config){
		"upstream_proxy":                  func(c *Config) { c.UpstreamProxy = "ftp://proxy:21" },
		"upstream_proxy_credentials_file": func(c *Config) { c.UpstreamCreds = "/etc/proxy-creds" },
		"upstream_proxy_ca_file":          func(c *Config) { c.UpstreamCA = "/etc/corp-ca.pem" },
	} {
		c := validAgentConfig()
		mutate(&c)
		var fe *config.FieldError
		if err := c.Validate(); !errors.As(err, &fe) || fe.Key != key {
			t.Errorf("Validate() = %v, want an error naming %s", err, key)
		}
	}
	for _, ok := range []string{"", "env", "http://proxy.corp:3128", "socks5h://127.0.0.1:1080"} {
		c := validAgentConfig()
		c.UpstreamProxy = ok
		if err := c.Validate(); err != nil {
			t.Errorf("upstream_proxy %q refused: %v", ok, err)
		}
	}
}
