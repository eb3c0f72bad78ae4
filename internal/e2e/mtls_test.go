package e2e

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/pki"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// TestMTLSRefusals dials the real server process with Go's TLS client and checks
// that only a TLS 1.3 client holding a certificate from the project's CA gets a
// session; and that an agent which does not trust the server's CA refuses it.
func TestMTLSRefusals(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOpts{})
	roots, err := tunnel.LoadCertPool(certPath("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	good, err := tls.LoadX509KeyPair(certPath("agent.crt"), certPath("agent.key"))
	if err != nil {
		t.Fatal(err)
	}
	foreignKP, err := otherCA.IssueClient(pki.ClientOptions{Name: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := foreignKP.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	base := func() *tls.Config {
		return &tls.Config{RootCAs: roots, ServerName: "fluidity-server", MinVersion: tls.VersionTLS12}
	}

	// attempt dials, handshakes, and reads for up to wait. The server speaks only
	// when the agent opens a stream, so an accepted client sees a read timeout
	// while a refused one sees the handshake fail or an alert on its first read.
	attempt := func(cfg *tls.Config, wait time.Duration) (handshake, read error) {
		d := &net.Dialer{Timeout: 5 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", srv.addr, cfg)
		if err != nil {
			return err, nil
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		_, err = conn.Read(make([]byte, 1))
		return nil, err
	}
	isTimeout := func(err error) bool {
		var ne net.Error
		return errors.As(err, &ne) && ne.Timeout()
	}

	t.Run("ValidClientAccepted", func(t *testing.T) {
		// The control: with the right certificate the connection stays up (the
		// server's multiplexer may speak first: it measures the round trip).
		cfg := base()
		cfg.Certificates = []tls.Certificate{good}
		hs, rd := attempt(cfg, 500*time.Millisecond)
		if hs != nil || (rd != nil && !isTimeout(rd)) {
			t.Fatalf("valid client: handshake %v, read %v; want success and data or a read timeout", hs, rd)
		}
	})

	refused := []struct {
		name string
		cfg  func() *tls.Config
	}{
		{"NoClientCertificate", base},
		{"ForeignCA", func() *tls.Config {
			cfg := base()
			// Certificates would not do: Go's client leaves out a certificate whose
			// issuer is not among the CAs the server asks for. Always send it.
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return &foreign, nil
			}
			return cfg
		}},
		{"TLS12", func() *tls.Config {
			cfg := base()
			cfg.Certificates = []tls.Certificate{good}
			cfg.MaxVersion = tls.VersionTLS12
			return cfg
		}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			hs, rd := attempt(tc.cfg(), 5*time.Second)
			switch {
			case hs != nil:
				t.Logf("handshake refused: %v", hs)
			case rd == nil:
				t.Fatal("the server sent data to a client it should have refused")
			case isTimeout(rd):
				t.Fatal("the server kept the connection open instead of refusing the client")
			default:
				t.Logf("refused on first read after %v: %v", time.Since(start).Round(time.Millisecond), rd)
			}
		})
	}

	t.Run("AgentDistrustsServer", func(t *testing.T) {
		// The agent trusts another CA, so the real server's certificate is unknown.
		a := startAgent(t, srv.addr, "--ca-cert-file", otherCADir+"/ca.crt", "--dial-timeout", "3s")
		c := proxiedClient(t, a.proxyURL, nil)
		resp, err := c.Get(pingTarget.URL + "/never")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("request through an agent that distrusts the server: %d, want 502", resp.StatusCode)
		}
		if _, ok := a.stderr.waitEntry(a.done, 5*time.Second, func(e logEntry) bool {
			return strings.Contains(e.str("error"), "certificate")
		}); !ok {
			t.Fatalf("the agent's log never mentions the certificate error")
		}
	})

	t.Run("AgentWrongServerName", func(t *testing.T) {
		// The right CA, but the agent expects a name the server certificate lacks.
		a := startAgent(t, srv.addr, "--server-name", "not-the-server.example", "--dial-timeout", "3s")
		c := proxiedClient(t, a.proxyURL, nil)
		resp, err := c.Get(pingTarget.URL + "/never")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("request through an agent expecting another server name: %d, want 502", resp.StatusCode)
		}
		if _, ok := a.stderr.waitEntry(a.done, 5*time.Second, func(e logEntry) bool {
			return strings.Contains(e.str("error"), "certificate")
		}); !ok {
			t.Fatalf("the agent's log never mentions the certificate error")
		}
	})

}
