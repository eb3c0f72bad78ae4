package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fluidity-tunnel/fluidity/internal/pki"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// startTLSTunnel is startTunnel over mTLS on loopback TCP, the way the daemons
// run it, so a profile of a benchmark shows what each request really costs.
func startTLSTunnel(b *testing.B) *tunnel.Client {
	b.Helper()
	ca, err := pki.NewCA(pki.CAOptions{})
	if err != nil {
		b.Fatal(err)
	}
	serverCert := leaf(b)(ca.IssueServer(pki.ServerOptions{}))
	clientCert := leaf(b)(ca.IssueClient(pki.ClientOptions{Name: "bench-agent"}))
	scfg := tunnel.DefaultServerConfig()
	scfg.TLSConfig = tunnel.NewServerTLSConfig(serverCert, ca.CertPool())
	allowLoopback(&scfg)
	scfg.MaxStreams = 4096
	srv, err := tunnel.NewServer(scfg)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ctx, ln) }()
	ccfg := tunnel.DefaultClientConfig()
	clientTLS := tunnel.NewClientTLSConfig(clientCert, ca.CertPool(), "")
	ccfg.Dial = func(ctx context.Context) (net.Conn, error) {
		return tunnel.DialTLS(ctx, ln.Addr().String(), clientTLS)
	}
	client, err := tunnel.NewClient(ccfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = client.Close()
		cancel()
		_ = srv.Close()
		<-served
	})
	return client
}

func leaf(b *testing.B) func(*pki.KeyPair, error) tls.Certificate {
	return func(kp *pki.KeyPair, err error) tls.Certificate {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
		cert, err := kp.TLSCertificate()
		if err != nil {
			b.Fatal(err)
		}
		return cert
	}
}

// BenchmarkSmallRequests is figure 3 of the benchmark in one process: keep-alive
// connections through the proxy, each issuing small GETs for plain http:// URLs.
func BenchmarkSmallRequests(b *testing.B) {
	tgt := httptest.NewServer(targetMux())
	defer tgt.Close()
	proxyURL := startProxy(b, startTLSTunnel(b), nil)
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(tgt.URL + "/hello")
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
