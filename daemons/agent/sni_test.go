package main

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/awstest"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// TestAgentClientHello: the agent's ClientHello carries no SNI by default and
// server_sni when set, with ALPN h2, http/1.1, while the server certificate is
// still verified for server_name: requests go through either way.
func TestAgentClientHello(t *testing.T) {
	dir := t.TempDir()
	ca, srvKP, cliFiles := writeCerts(t, dir)
	cert, err := srvKP.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	hellos := make(chan *tls.ClientHelloInfo, 16)
	cfg := tunnel.DefaultServerConfig()
	cfg.TLSConfig = tunnel.NewServerTLSConfig(cert, ca.CertPool())
	cfg.TLSConfig.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		hellos <- h
		return nil, nil
	}
	cfg.Egress.AllowCIDRs = []string{"127.0.0.0/8"}
	srv, err := tunnel.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(context.Background(), ln) }()
	defer func() { _ = srv.Close(); <-done }()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer target.Close()

	for _, tc := range []struct{ name, sni string }{{"default", ""}, {"server_sni", "cdn.example.net"}} {
		t.Run(tc.name, func(t *testing.T) {
			proxyPort := awstest.FreePort(t)
			args := []string{
				"--server-ip", "127.0.0.1", "--server-port", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port),
				"--local-proxy-port", strconv.Itoa(proxyPort), "--admin-listen", "", "--sessions", "1",
				"--cert-file", cliFiles[0], "--key-file", cliFiles[1], "--ca-cert-file", filepath.Join(dir, "ca.crt"),
			}
			if tc.sni != "" {
				args = append(args, "--server-sni", tc.sni)
			}
			_, stop := runAgent(t, args)
			defer stop()
			proxyURL, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(proxyPort))
			c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 5 * time.Second}
			deadline := time.Now().Add(10 * time.Second)
			for {
				resp, err := c.Get(target.URL)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == 200 {
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("no request through the agent: %v", err)
				}
				time.Sleep(50 * time.Millisecond) // the agent is starting
			}
			select {
			case h := <-hellos:
				if h.ServerName != tc.sni {
					t.Errorf("SNI %q, want %q", h.ServerName, tc.sni)
				}
				if !slices.Equal(h.SupportedProtos, []string{"h2", "http/1.1"}) {
					t.Errorf("ALPN %q", h.SupportedProtos)
				}
			default:
				t.Fatal("no ClientHello seen")
			}
			stop()
			for len(hellos) > 0 {
				<-hellos
			}
		})
	}
}

// TestCheckSNI: host names pass, whatever Go's client would silently drop does not.
func TestCheckSNI(t *testing.T) {
	for s, ok := range map[string]bool{
		"": true, "www.example.com": true, "cdn-7.example.net": true, "localhost": true,
		"192.0.2.1": false, "2001:db8::1": false, "example.com.": false, "a..b": false,
		"under_score.example": false, "-a.example": false, "a-.example": false,
	} {
		if err := checkSNI(s); (err == nil) != ok {
			t.Errorf("checkSNI(%q) = %v, want ok %v", s, err, ok)
		}
	}
}
