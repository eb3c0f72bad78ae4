package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/pki"
)

// serveMTLS runs a Server on a loopback listener with the given certificate and
// client CA pool, and returns its address.
func serveMTLS(t *testing.T, cert tls.Certificate, clientCAs *x509.CertPool) string {
	t.Helper()
	cfg := DefaultServerConfig()
	cfg.TLSConfig = NewServerTLSConfig(cert, clientCAs)
	return serveConfig(t, cfg)
}

// serveConfig runs a Server with cfg (its TLSConfig set) on a loopback listener
// and returns its address.
func serveConfig(t *testing.T, cfg ServerConfig) string {
	t.Helper()
	cfg.Logger = testLogger(t)
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
	return sessionAnswer(conn)
}

// sessionAnswer is serverAnswer over a connection dialled already.
func sessionAnswer(conn net.Conn) error {
	_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err := conn.Read(make([]byte, 1))
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

// badClientCerts are client certificates the server must refuse.
type badClientCerts struct {
	otherCA, expired, notYetValid tls.Certificate
}

func badClients(t *testing.T, p *testPKI) badClientCerts {
	t.Helper()
	other, err := pki.NewCA(pki.CAOptions{CommonName: "Other CA"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var b badClientCerts
	kp, err := other.IssueClient(pki.ClientOptions{Name: "stranger"})
	b.otherCA = mustTLSCert(t, kp, err)
	kp, err = p.ca.IssueClient(pki.ClientOptions{Name: "expired", NotBefore: now.Add(-72 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})
	b.expired = mustTLSCert(t, kp, err)
	kp, err = p.ca.IssueClient(pki.ClientOptions{Name: "future", NotBefore: now.Add(24 * time.Hour), NotAfter: now.Add(72 * time.Hour)})
	b.notYetValid = mustTLSCert(t, kp, err)
	return b
}

// TestServerRefusesClients: the server requires a client certificate, issued by its
// CA, for client authentication, valid now, over TLS 1.3.
func TestServerRefusesClients(t *testing.T) {
	p := sharedPKI(t)
	addr := serveMTLS(t, p.server, p.pool)
	bad := badClients(t, p)
	otherCA, expired, notYetValid := bad.otherCA, bad.expired, bad.notYetValid

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
	kp, err = p.ca.IssueServer(pki.ServerOptions{NotBefore: time.Now().Add(time.Hour), NotAfter: time.Now().Add(72 * time.Hour)})
	notYetValid := mustTLSCert(t, kp, err)
	kp, err = p.ca.IssueServer(pki.ServerOptions{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	clientUsage := mustTLSCert(t, kp, err)

	cases := []struct {
		name string
		cert tls.Certificate
		cfg  func() *tls.Config // nil: the agent's config for DefaultServerName
		want func(error) bool
	}{
		{"certificate of other CA", otherServer, nil, func(err error) bool {
			var e x509.UnknownAuthorityError
			return errors.As(err, &e)
		}},
		{"wrong server name", wrongName, nil, func(err error) bool {
			var e x509.HostnameError
			return errors.As(err, &e)
		}},
		{"right name, client-auth usage", clientUsage, nil, func(err error) bool {
			var e x509.CertificateInvalidError
			return errors.As(err, &e) && e.Reason == x509.IncompatibleUsage
		}},
		{"expired", expired, nil, func(err error) bool {
			var e x509.CertificateInvalidError
			return errors.As(err, &e) && e.Reason == x509.Expired
		}},
		{"not yet valid", notYetValid, nil, func(err error) bool {
			var e x509.CertificateInvalidError
			return errors.As(err, &e) && e.Reason == x509.Expired
		}},
		// The SNI says nothing about what is verified: naming the wrong
		// server's name in it does not make its certificate acceptable.
		{"SNI naming the wrong name", wrongName, func() *tls.Config {
			c := NewClientTLSConfig(p.client, p.pool, DefaultServerName)
			c.ServerName = "someone-else"
			return c
		}, func(err error) bool {
			var e x509.HostnameError
			return errors.As(err, &e)
		}},
		// Fails closed: without a CA the system roots are not consulted.
		{"no CA pool", p.server, func() *tls.Config { return NewClientTLSConfig(p.client, nil, DefaultServerName) },
			func(err error) bool { return err != nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := serveMTLS(t, tc.cert, p.pool)
			cfg := tc.cfg
			if cfg == nil {
				cfg = func() *tls.Config { return NewClientTLSConfig(p.client, p.pool, DefaultServerName) }
			}
			ccfg := DefaultClientConfig()
			ccfg.Logger = testLogger(t)
			ccfg.Dial = func(ctx context.Context) (net.Conn, error) {
				return DialTLS(ctx, addr, cfg())
			}
			c, err := NewClient(ccfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.DialContext(context.Background(), "tcp", "127.0.0.1:1")
			if err == nil || !tc.want(err) || !errors.Is(err, ErrServerCertificate) {
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

// reloaders loads writePKI's files into a server and a client CertReloader.
func reloaders(t *testing.T) (srv, cli *CertReloader) {
	t.Helper()
	dir := t.TempDir()
	writePKI(t, dir, "dave")
	f := func(n string) string { return filepath.Join(dir, n) }
	srv, err := NewCertReloader(f("server.crt"), f("server.key"), f("ca.crt"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	cli, err = NewCertReloader(f("client.crt"), f("client.key"), f("ca.crt"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return srv, cli
}

// TestClientHello: what an observer reads in the agent's ClientHello. No server
// name (SNI) by default, not even the dialled host name; the one SetClientSNI
// chose otherwise, except an IP address, which is never sent; ALPN h2 and
// http/1.1 as browsers offer them, of which the server picks h2 as an ordinary
// HTTPS server does. The certificate is verified for server_name whatever the
// SNI says, so every dial here makes a session.
func TestClientHello(t *testing.T) {
	srvCerts, cli := reloaders(t)
	hellos := make(chan *tls.ClientHelloInfo, 1)
	scfg := srvCerts.ServerTLSConfig(nil)
	inner := scfg.GetConfigForClient
	scfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		hellos <- h
		return inner(h)
	}
	cfg := DefaultServerConfig()
	cfg.TLSConfig = scfg
	addr := serveConfig(t, cfg)
	byName := dialerFunc(func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	})
	for _, tc := range []struct {
		name, sni, dial, wantSNI string
	}{
		{"default", "", addr, ""},
		{"dialled by host name", "", "fluidity.example:443", ""},
		{"server_sni set", "www.example.com", addr, "www.example.com"},
		{"server_sni an IP address", "192.0.2.1", addr, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli.SetClientSNI(tc.sni)
			defer cli.SetClientSNI("")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			conn, err := DialTLSWith(ctx, byName, tc.dial, cli.ClientTLSConfig(DefaultServerName))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			h := <-hellos
			if h.ServerName != tc.wantSNI {
				t.Errorf("SNI %q, want %q", h.ServerName, tc.wantSNI)
			}
			if !slices.Equal(h.SupportedProtos, []string{"h2", "http/1.1"}) {
				t.Errorf("ALPN offered %q, want h2, http/1.1", h.SupportedProtos)
			}
			if p := conn.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "h2" {
				t.Errorf("server chose %q, want h2", p)
			}
			if err := sessionAnswer(conn); err != nil {
				t.Errorf("no session: %v", err)
			}
		})
	}
}

// TestResumptionVerifiedAgain: a resumed session is verified as a full handshake
// is (VerifyConnection runs on both), so a session ticket cached for the right
// server is of no use to a config that expects another name.
func TestResumptionVerifiedAgain(t *testing.T) {
	srvCerts, cli := reloaders(t)
	ln := listen(t)
	defer ln.Close()
	scfg := srvCerts.ServerTLSConfig(nil)
	for i, want := range []bool{false, true} {
		client, _, err := handshakeStates(ln, scfg, cli.ClientTLSConfig(DefaultServerName))
		if err != nil || client.DidResume != want {
			t.Fatalf("handshake %d: resumed %v, %v; want resumed %v", i+1, client.DidResume, err, want)
		}
	}
	_, _, err := handshakeStates(ln, scfg, cli.ClientTLSConfig("someone-else"))
	var he x509.HostnameError
	if !errors.Is(err, ErrServerCertificate) || !errors.As(err, &he) {
		t.Fatalf("resumption for another name: %v, want a hostname error", err)
	}
}
