package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/pki"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// must keeps the examples short; real programs handle their errors.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// A Client's DialContext routes any program's connections through the tunnel, for
// instance as the DialContext of an http.Transport: the program speaks to the
// target end to end (TLS included, for https), the tunnel carries the bytes.
func ExampleClient_DialContext() {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello through the tunnel")
	}))
	defer web.Close()

	// A tunnel server, joined to the client by an in-memory pipe to keep the
	// example short (see ExampleServer_Serve for mutual TLS over TCP). Zero
	// configuration fields mean the defaults; the egress policy refuses loopback
	// targets unless told otherwise.
	srv := must(tunnel.NewServer(tunnel.ServerConfig{
		Egress: tunnel.EgressConfig{AllowCIDRs: []string{"127.0.0.0/8"}},
	}))
	defer srv.Close()

	client := must(tunnel.NewClient(tunnel.ClientConfig{
		Dial: func(ctx context.Context) (net.Conn, error) {
			agentEnd, serverEnd := net.Pipe()
			go func() { _ = srv.ServeConn(context.Background(), serverEnd) }()
			return agentEnd, nil
		},
	}))
	defer client.Close()

	tr := &http.Transport{DialContext: client.DialContext}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(web.URL)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body := must(io.ReadAll(resp.Body))
	fmt.Println(resp.Status, string(body))
	// Output: 200 OK hello through the tunnel
}

// A Server can be embedded in any program: it serves mutually authenticated TLS
// sessions on a listener the caller owns, until Shutdown.
func ExampleServer_Serve() {
	// A private CA, the server's certificate (for tunnel.DefaultServerName) and
	// one agent's certificate. Real deployments load them from files.
	ca := must(pki.NewCA(pki.CAOptions{}))
	serverCert := must(must(ca.IssueServer(pki.ServerOptions{})).TLSCertificate())
	agentCert := must(must(ca.IssueClient(pki.ClientOptions{Name: "example-agent"})).TLSCertificate())

	cfg := tunnel.DefaultServerConfig()
	cfg.TLSConfig = tunnel.NewServerTLSConfig(serverCert, ca.CertPool())
	cfg.Egress.AllowCIDRs = []string{"127.0.0.0/8"} // the example's target is local
	srv := must(tunnel.NewServer(cfg))
	ln := must(net.Listen("tcp", "127.0.0.1:0"))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), ln) }()

	// The agent side verifies the server for its name, not for the address dialled.
	clientTLS := tunnel.NewClientTLSConfig(agentCert, ca.CertPool(), tunnel.DefaultServerName)
	ccfg := tunnel.DefaultClientConfig()
	ccfg.Dial = func(ctx context.Context) (net.Conn, error) {
		return tunnel.DialTLS(ctx, ln.Addr().String(), clientTLS)
	}
	client := must(tunnel.NewClient(ccfg))

	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
	}))
	defer web.Close()
	// The Client is an http.RoundTripper: the server makes the request for it.
	resp, err := (&http.Client{Transport: client}).Get(web.URL + "/greeting")
	if err != nil {
		panic(err)
	}
	body := must(io.ReadAll(resp.Body))
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))

	// A target the default egress policy refuses: the EC2 metadata endpoint.
	_, err = client.DialContext(context.Background(), "tcp", "169.254.169.254:80")
	fmt.Println(errors.Is(err, tunnel.ErrRefusedByPolicy), tunnel.HTTPStatus(err))

	_ = client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx) // drains streams in flight, then closes
	fmt.Println(errors.Is(<-served, tunnel.ErrServerClosed))
	// Output:
	// 200 GET /greeting
	// true 403
	// true
}
