package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/fluidity-tunnel/fluidity/internal/pki"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testPKI is one private CA with a server and a client certificate.
type testPKI struct {
	ca     *pki.CA
	server tls.Certificate
	client tls.Certificate
	pool   *x509.CertPool
}

var (
	pkiOnce sync.Once
	pkiVal  *testPKI
	pkiErr  error
)

func sharedPKI(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() {
		ca, err := pki.NewCA(pki.CAOptions{})
		if err != nil {
			pkiErr = err
			return
		}
		srv, err := ca.IssueServer(pki.ServerOptions{})
		if err != nil {
			pkiErr = err
			return
		}
		cli, err := ca.IssueClient(pki.ClientOptions{Name: "test-agent"})
		if err != nil {
			pkiErr = err
			return
		}
		p := &testPKI{ca: ca, pool: ca.CertPool()}
		if p.server, pkiErr = srv.TLSCertificate(); pkiErr != nil {
			return
		}
		p.client, pkiErr = cli.TLSCertificate()
		pkiVal = p
	})
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return pkiVal
}

// harness is one tunnel: a server and a client joined by one of the transports.
type harness struct {
	client *Client
	server *Server
}

type transportKind string

const (
	overPipe transportKind = "pipe"
	overTCP  transportKind = "tcp"
	overMTLS transportKind = "mtls"
)

var allTransports = []transportKind{overPipe, overTCP, overMTLS}

// forEachTransport runs fn as a subtest over net.Pipe, plain TCP and real mTLS.
func forEachTransport(t *testing.T, mod func(*ServerConfig), fn func(t *testing.T, h *harness)) {
	for _, kind := range allTransports {
		t.Run(string(kind), func(t *testing.T) {
			fn(t, newHarness(t, kind, mod))
		})
	}
}

func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

func newHarness(t testing.TB, kind transportKind, mod func(*ServerConfig)) *harness {
	t.Helper()
	return newHarnessWith(t, kind, mod, nil)
}

// newHarnessWith is newHarness with the client's configuration adjustable too.
func newHarnessWith(t testing.TB, kind transportKind, mod func(*ServerConfig), cmod func(*ClientConfig)) *harness {
	t.Helper()
	scfg := DefaultServerConfig()
	scfg.Logger = testLogger(t)
	// Test targets listen on loopback, which the default egress policy refuses.
	scfg.Egress.AllowCIDRs = []string{"127.0.0.0/8", "::1"}
	// The seed's retry and breaker timings are seconds long; keep tests quick.
	scfg.Retry = RetryConfig{Attempts: 3, Initial: 5 * time.Millisecond, Multiplier: 2, Max: 20 * time.Millisecond}
	scfg.Breaker.OpenTimeout = 200 * time.Millisecond
	if mod != nil {
		mod(&scfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var dial func(ctx context.Context) (net.Conn, error)
	var srv *Server
	var err error
	switch kind {
	case overPipe:
		srv, err = NewServer(scfg)
		if err != nil {
			t.Fatal(err)
		}
		dial = func(context.Context) (net.Conn, error) {
			c1, c2 := net.Pipe()
			go func() { _ = srv.ServeConn(ctx, c2) }()
			return c1, nil
		}
	case overTCP:
		srv, err = NewServer(scfg)
		if err != nil {
			t.Fatal(err)
		}
		ln := listen(t)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { _ = srv.ServeConn(ctx, c) }()
			}
		}()
		t.Cleanup(func() { _ = ln.Close() })
		dial = func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", ln.Addr().String())
		}
	case overMTLS:
		p := sharedPKI(t)
		scfg.TLSConfig = NewServerTLSConfig(p.server, p.pool)
		srv, err = NewServer(scfg)
		if err != nil {
			t.Fatal(err)
		}
		ln := listen(t)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = srv.Serve(ctx, ln)
		}()
		t.Cleanup(func() { <-done })
		clientTLS := NewClientTLSConfig(p.client, p.pool, DefaultServerName)
		dial = func(ctx context.Context) (net.Conn, error) {
			return DialTLS(ctx, ln.Addr().String(), clientTLS)
		}
	}
	ccfg := DefaultClientConfig()
	ccfg.Logger = testLogger(t)
	ccfg.Dial = dial
	if cmod != nil {
		cmod(&ccfg)
	}
	client, err := NewClient(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.Close()
		cancel()
		_ = srv.Close()
	})
	return &harness{client: client, server: srv}
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// cannedTarget is a raw TCP target that reads one request per connection and
// writes answer byte for byte; then it hangs up, or with hold it drains the
// connection until the peer drops it. It returns the target's address.
func cannedTarget(t testing.TB, answer string, hold bool) string {
	t.Helper()
	ln := listen(t)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				_, _ = io.WriteString(c, answer)
				if hold {
					_, _ = io.Copy(io.Discard, br)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var errTest = errors.New("test")

// errOnly is for a round trip whose error is all that matters, as in
// errOnly(c.RoundTrip(req)): it closes the response, if one came.
func errOnly(resp *http.Response, err error) error {
	if err == nil {
		resp.Body.Close()
	}
	return err
}

// wsErrOnly is errOnly for DialWebSocket.
func wsErrOnly(resp *http.Response, conn net.Conn, err error) error {
	if err == nil {
		resp.Body.Close()
		if conn != nil {
			conn.Close()
		}
	}
	return err
}
