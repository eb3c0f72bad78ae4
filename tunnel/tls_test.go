package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/pki"
)

// serveMTLS runs a Server on a loopback listener with the given certificate and
// client CA pool, and returns its address.
func serveMTLS(t *testing.T, cert tls.Certificate, clientCAs *x509.CertPool) string {
	t.Helper()
	cfg := DefaultServerConfig()
	cfg.Logger = testLogger(t)
	cfg.TLSConfig = NewServerTLSConfig(cert, clientCAs)
	cfg.HandshakeTimeout = 5 * time.Second
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(context.Background(), ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String()
}

func mustTLSCert(t *testing.T, kp *pki.KeyPair, err error) tls.Certificate {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	c, err := kp.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serverAnswer connects with cfg and reports how the server treated the client: nil
// if it accepted the session (it then waits for the client to speak and the read
// times out), the error otherwise. In TLS 1.3 the client's handshake completes
// before the server has checked the client certificate, so a refusal shows up as
// an alert on the first read.
func serverAnswer(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	if err == nil {
		// The session is up: yamux measures the round trip at once.
		return nil
	}
	return err
}

// TestServerRefusesClients: the server requires a client certificate, issued by its
// CA, for client authentication, valid now, over TLS 1.3.
func TestServerRefusesClients(t *testing.T) {
	p := sharedPKI(t)
	addr := serveMTLS(t, p.server, p.pool)
	other, err := pki.NewCA(pki.CAOptions{CommonName: "Other CA"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	kp, err := other.IssueClient(pki.ClientOptions{Name: "stranger"})
	otherCA := mustTLSCert(t, kp, err)
	kp, err = p.ca.IssueClient(pki.ClientOptions{Name: "expired", NotBefore: now.Add(-72 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})
	expired := mustTLSCert(t, kp, err)
	kp, err = p.ca.IssueClient(pki.ClientOptions{Name: "future", NotBefore: now.Add(24 * time.Hour), NotAfter: now.Add(72 * time.Hour)})
	notYetValid := mustTLSCert(t, kp, err)

	good := func() *tls.Config { return NewClientTLSConfig(p.client, p.pool, DefaultServerName) }
	with := func(mod func(c *tls.Config)) *tls.Config {
		c := good()
		mod(c)
		return c
	}
	// Positive control: the same probe sees the server accept a good client.
	if err := serverAnswer(t, addr, good()); err != nil {
		t.Fatalf("good client refused: %v", err)
	}
	cases := map[string]*tls.Config{
		"no certificate":          with(func(c *tls.Config) { c.Certificates = nil }),
		"certificate of other CA": with(func(c *tls.Config) { c.Certificates = []tls.Certificate{otherCA} }),
		"expired":                 with(func(c *tls.Config) { c.Certificates = []tls.Certificate{expired} }),
		"not yet valid":           with(func(c *tls.Config) { c.Certificates = []tls.Certificate{notYetValid} }),
		"server certificate as client certificate": with(func(c *tls.Config) { c.Certificates = []tls.Certificate{p.server} }),
		"TLS 1.2 only": with(func(c *tls.Config) {
			c.MinVersion = tls.VersionTLS12
			c.MaxVersion = tls.VersionTLS12
		}),
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			err := serverAnswer(t, addr, cfg)
			if err == nil {
				t.Fatal("server accepted the session")
			}
			if !strings.Contains(err.Error(), "tls") {
				t.Fatalf("refused, but not by TLS: %v", err)
			}
		})
	}
	// The library's Client reports the refusal as a failed request, not a hang.
	ccfg := DefaultClientConfig()
	ccfg.Logger = testLogger(t)
	ccfg.Dial = func(ctx context.Context) (net.Conn, error) { return DialTLS(ctx, addr, cases["expired"]) }
	c, err := NewClient(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.DialContext(ctx, "tcp", "127.0.0.1:1"); err == nil || ctx.Err() != nil {
		t.Fatalf("expired client: %v (ctx %v)", err, ctx.Err())
	}
}

// TestClientRefusesServers: the agent verifies the server against its CA for the
// configured server name, whatever address it dialled.
func TestClientRefusesServers(t *testing.T) {
	p := sharedPKI(t)
	other, err := pki.NewCA(pki.CAOptions{CommonName: "Other CA"})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := other.IssueServer(pki.ServerOptions{})
	otherServer := mustTLSCert(t, kp, err)
	kp, err = p.ca.IssueServer(pki.ServerOptions{ServerName: "someone-else"})
	wrongName := mustTLSCert(t, kp, err)
	kp, err = p.ca.IssueServer(pki.ServerOptions{NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	expired := mustTLSCert(t, kp, err)
	kp, err = p.ca.IssueServer(pki.ServerOptions{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	clientUsage := mustTLSCert(t, kp, err)

	cases := []struct {
		name string
		cert tls.Certificate
		want func(error) bool
	}{
		{"certificate of other CA", otherServer, func(err error) bool {
			var e x509.UnknownAuthorityError
			return errors.As(err, &e)
		}},
		{"wrong server name", wrongName, func(err error) bool {
			var e x509.HostnameError
			return errors.As(err, &e)
		}},
		{"right name, client-auth usage", clientUsage, func(err error) bool {
			var e x509.CertificateInvalidError
			return errors.As(err, &e) && e.Reason == x509.IncompatibleUsage
		}},
		{"expired", expired, func(err error) bool {
			var e x509.CertificateInvalidError
			return errors.As(err, &e) && e.Reason == x509.Expired
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := serveMTLS(t, tc.cert, p.pool)
			ccfg := DefaultClientConfig()
			ccfg.Logger = testLogger(t)
			ccfg.Dial = func(ctx context.Context) (net.Conn, error) {
				return DialTLS(ctx, addr, NewClientTLSConfig(p.client, p.pool, DefaultServerName))
			}
			c, err := NewClient(ccfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.DialContext(context.Background(), "tcp", "127.0.0.1:1")
			if err == nil || !tc.want(err) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

// TestTLSConfigValidation: the server will not run with a TLS config that is not
// TLS 1.3 only with verified client certificates.
func TestTLSConfigValidation(t *testing.T) {
	p := sharedPKI(t)
	for name, mod := range map[string]func(*tls.Config){
		"TLS 1.2 allowed":        func(c *tls.Config) { c.MinVersion = tls.VersionTLS12 },
		"client cert optional":   func(c *tls.Config) { c.ClientAuth = tls.VerifyClientCertIfGiven },
		"client cert unverified": func(c *tls.Config) { c.ClientAuth = tls.RequireAnyClientCert },
	} {
		cfg := DefaultServerConfig()
		cfg.TLSConfig = NewServerTLSConfig(p.server, p.pool)
		mod(cfg.TLSConfig)
		if _, err := NewServer(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestDialTLSWith: the connection comes from the dialer given (the agent's
// upstream proxy), to the address given, and the server is verified as strictly
// as by DialTLS: a wrong name still fails.
func TestDialTLSWith(t *testing.T) {
	p := sharedPKI(t)
	addr := serveMTLS(t, p.server, p.pool)
	var asked []string
	d := dialerFunc(func(ctx context.Context, network, a string) (net.Conn, error) {
		asked = append(asked, network+" "+a)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := DialTLSWith(ctx, d, "fluidity.example:8443", NewClientTLSConfig(p.client, p.pool, DefaultServerName))
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if len(asked) != 1 || asked[0] != "tcp fluidity.example:8443" {
		t.Errorf("dialer asked for %q, want one tcp fluidity.example:8443", asked)
	}
	_, err = DialTLSWith(ctx, d, "fluidity.example:8443", NewClientTLSConfig(p.client, p.pool, "someone-else"))
	var he x509.HostnameError
	if !errors.As(err, &he) {
		t.Errorf("wrong server name: %v, want a hostname error", err)
	}
	if _, err := DialTLSWith(ctx, nil, addr, NewClientTLSConfig(p.client, p.pool, "")); err == nil {
		t.Error("a nil dialer was accepted")
	}
}
