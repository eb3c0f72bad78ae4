package tunnel

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/pki"
)

// reasons counts HandshakeRefused by reason.
type reasons struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *reasons) observer() *Observer {
	r.n = map[string]int{}
	return &Observer{HandshakeRefused: func(why string) {
		r.mu.Lock()
		r.n[why]++
		r.mu.Unlock()
	}}
}

func (r *reasons) get(why string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[why]
}

// serveDecoy runs a server with the decoy on (and deny_clients denying the CN
// "denied") and returns its address and refusal counts.
func serveDecoy(t *testing.T, d DecoyConfig) (string, *reasons) {
	t.Helper()
	p := sharedPKI(t)
	d.Enabled = true
	cfg := DefaultServerConfig()
	cfg.Decoy = d
	cfg.TLSConfig = NewServerTLSConfig(p.server, p.pool)
	denied := parseDenyListOrDie(t, "denied")
	cfg.TLSConfig.VerifyConnection = func(cs tls.ConnectionState) error { return checkDenied(cs, denied) }
	var r reasons
	cfg.Observer = r.observer()
	return serveConfig(t, cfg), &r
}

func parseDenyListOrDie(t *testing.T, entries ...string) denyList {
	t.Helper()
	d, warnings := parseDenyList(entries)
	if len(warnings) > 0 {
		t.Fatal(warnings)
	}
	return d
}

// prober is an HTTPS client as a scanner would use: it trusts the server's
// certificate (a scanner does not care) and presents none. protos is its ALPN.
func prober(t *testing.T, protos ...string) *http.Client {
	t.Helper()
	p := sharedPKI(t)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.pool, ServerName: DefaultServerName, NextProtos: protos},
	}
	tr.ForceAttemptHTTP2 = len(protos) > 0 && protos[0] == "h2"
	if !tr.ForceAttemptHTTP2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1 only
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// noMarker fails if the answer names the product anywhere, headers included.
func noMarker(t *testing.T, resp *http.Response, body []byte) {
	t.Helper()
	var all strings.Builder
	for k, vs := range resp.Header {
		all.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
	}
	all.Write(body)
	for _, word := range []string{"fluidity", "tunnel", "yamux", "go-http", "golang"} {
		if strings.Contains(strings.ToLower(all.String()), word) {
			t.Errorf("the decoy answer says %q:\n%s", word, all.String())
		}
	}
	if resp.Header.Get("Server") != "" {
		t.Errorf("Server header %q", resp.Header.Get("Server"))
	}
}

// TestDecoyAnswersProbes: a TLS client without a certificate, as a browser or a
// scanner connects, completes the handshake and gets a small 404 in the HTTP
// version ALPN chose, h2 or HTTP/1.1, with nothing in it naming the product;
// counted as reason "decoy".
func TestDecoyAnswersProbes(t *testing.T) {
	addr, r := serveDecoy(t, DecoyConfig{})
	for _, tc := range []struct {
		name      string
		protos    []string
		wantMajor int
	}{
		{"browser (h2, http/1.1)", []string{"h2", "http/1.1"}, 2},
		{"HTTP/1.1 only", []string{"http/1.1"}, 1},
		{"no ALPN", nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := r.get("decoy")
			for _, path := range []string{"/", "/index.html", "/.well-known/whatever?q=1"} {
				resp, err := prober(t, tc.protos...).Get("https://" + addr + path)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusNotFound || resp.ProtoMajor != tc.wantMajor {
					t.Fatalf("%s: %s %s, want 404 over HTTP/%d", path, resp.Proto, resp.Status, tc.wantMajor)
				}
				if !strings.Contains(string(body), "404 Not Found") || len(body) > 512 {
					t.Errorf("%s: body %q", path, body)
				}
				noMarker(t, resp, body)
			}
			if r.get("decoy") <= before {
				t.Error("decoy connections not counted as reason decoy")
			}
		})
	}
}

// TestDecoyPage: with a page configured, GET and HEAD of / are 200 with it,
// other methods of / 405, every other path still 404.
func TestDecoyPage(t *testing.T) {
	page := []byte("<!doctype html>\n<html><head><title>Welcome</title></head><body>It works.</body></html>\n")
	addr, _ := serveDecoy(t, DecoyConfig{Page: page})
	c := prober(t, "h2", "http/1.1")
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/", 200, string(page)},
		{"HEAD", "/", 200, ""},
		{"POST", "/", 405, "405 Method Not Allowed"},
		{"GET", "/admin", 404, "404 Not Found"},
	} {
		req, _ := http.NewRequest(tc.method, "https://"+addr+tc.path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(body), tc.body) {
			t.Errorf("%s %s: %d %q, want %d with %q", tc.method, tc.path, resp.StatusCode, body, tc.code, tc.body)
		}
		if tc.code == 200 && resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("%s %s: content type %q", tc.method, tc.path, resp.Header.Get("Content-Type"))
		}
		noMarker(t, resp, body)
	}
}

// TestDecoyCertificateMatrix: with the decoy on, only a client certificate the CA
// verifies reaches the tunnel. No certificate gets the decoy; a certificate
// sent that fails verification (other CA, expired, not yet valid, without the
// client-auth usage) or is on the deny list fails the handshake as before, and
// never gets a session; TLS 1.2 is still refused.
func TestDecoyCertificateMatrix(t *testing.T) {
	p := sharedPKI(t)
	addr, r := serveDecoy(t, DecoyConfig{})
	bad := badClients(t, p)
	otherCA, expired, notYetValid := bad.otherCA, bad.expired, bad.notYetValid
	kp, err := p.ca.IssueClient(pki.ClientOptions{Name: "denied"})
	denied := mustTLSCert(t, kp, err)

	with := func(certs ...tls.Certificate) *tls.Config {
		c := NewClientTLSConfig(p.client, p.pool, DefaultServerName)
		c.Certificates = certs
		return c
	}
	// sending sends cert whatever the server asks for, as a client
	// other than Go's may.
	sending := func(cert tls.Certificate) *tls.Config {
		c := with()
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
		return c
	}
	if err := serverAnswer(t, addr, with(p.client)); err != nil {
		t.Fatalf("good client refused: %v", err)
	}
	tls12 := with(p.client)
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	for _, tc := range []struct {
		name   string
		cfg    *tls.Config
		reason string
	}{
		{"certificate of other CA", sending(otherCA), "failed"},
		{"expired", sending(expired), "failed"},
		{"not yet valid", sending(notYetValid), "failed"},
		{"server certificate as client certificate", sending(p.server), "failed"},
		{"on the deny list", sending(denied), "denied"},
		{"TLS 1.2 only", tls12, "failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := r.get(tc.reason)
			err := serverAnswer(t, addr, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), "tls") {
				t.Fatalf("got %v, want a TLS alert", err)
			}
			waitFor(t, 5*time.Second, "refusal counted as "+tc.reason, func() bool { return r.get(tc.reason) > before })
		})
	}
	for name, cfg := range map[string]*tls.Config{
		// The agent's own config without its certificate.
		"no certificate": with(),
		// Go's client sends no certificate the server's CertificateRequest
		// does not ask for (its CA list): this one gets the decoy.
		"other CA, left unsent by the client": with(otherCA),
	} {
		t.Run(name, func(t *testing.T) {
			before := r.get("decoy")
			tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound || resp.ProtoMajor != 2 {
				t.Fatalf("%s %s, want the decoy's 404 over h2", resp.Proto, resp.Status)
			}
			if r.get("decoy") <= before {
				t.Error("not counted as decoy")
			}
		})
	}
}

// TestDecoyBounded: at most MaxConns decoy connections are open at once; past
// that a new one is closed at once, and a freed place is taken again. Sessions
// are not held up by decoys.
func TestDecoyBounded(t *testing.T) {
	p := sharedPKI(t)
	addr, _ := serveDecoy(t, DecoyConfig{MaxConns: 2})
	probe := func() *tls.Conn {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: p.pool, ServerName: DefaultServerName, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// served reports whether the decoy answers a request on c.
	served := func(c *tls.Conn) bool {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return false
		}
		line := make([]byte, len("HTTP/1.1 404"))
		_, err := io.ReadFull(c, line)
		return err == nil && string(line) == "HTTP/1.1 404"
	}
	a, b := probe(), probe()
	if !served(a) || !served(b) {
		t.Fatal("the first two decoy connections were not served")
	}
	if served(probe()) {
		t.Fatal("a third decoy connection was served, over MaxConns 2")
	}
	if err := serverAnswer(t, addr, NewClientTLSConfig(p.client, p.pool, DefaultServerName)); err != nil {
		t.Fatalf("a session was refused while the decoy was full: %v", err)
	}
	a.Close()
	waitFor(t, 5*time.Second, "a freed decoy place taken again", func() bool { return served(probe()) })
}

// TestDecoyConfigValidation: a page over 1 MiB and a negative cap are refused,
// and the decoy does not loosen what NewServer accepts of the TLS config.
func TestDecoyConfigValidation(t *testing.T) {
	p := sharedPKI(t)
	for name, mod := range map[string]func(*ServerConfig){
		"page too big":       func(c *ServerConfig) { c.Decoy.Page = make([]byte, 1<<20+1) },
		"negative max conns": func(c *ServerConfig) { c.Decoy.MaxConns = -1 },
		"client cert optional in TLS config": func(c *ServerConfig) {
			c.TLSConfig.ClientAuth = tls.VerifyClientCertIfGiven
		},
	} {
		cfg := DefaultServerConfig()
		cfg.Decoy.Enabled = true
		cfg.TLSConfig = NewServerTLSConfig(p.server, p.pool)
		mod(&cfg)
		if _, err := NewServer(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestOnlyVerifiedCertificatesReachTheTunnel: the server serves a session only
// over a client certificate crypto/tls verified, whatever the TLS config says:
// one from GetConfigForClient that takes any certificate unverified still lets
// a stranger's certificate no further than a closed connection.
func TestOnlyVerifiedCertificatesReachTheTunnel(t *testing.T) {
	p := sharedPKI(t)
	other, err := pki.NewCA(pki.CAOptions{CommonName: "Other CA"})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := other.IssueClient(pki.ClientOptions{Name: "stranger"})
	stranger := mustTLSCert(t, kp, err)
	for _, decoyOn := range []bool{false, true} {
		cfg := DefaultServerConfig()
		cfg.Decoy.Enabled = decoyOn
		cfg.TLSConfig = NewServerTLSConfig(p.server, p.pool)
		cfg.TLSConfig.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			lax := NewServerTLSConfig(p.server, p.pool)
			lax.ClientAuth = tls.RequireAnyClientCert
			return lax, nil
		}
		var r reasons
		cfg.Observer = r.observer()
		addr := serveConfig(t, cfg)
		c := NewClientTLSConfig(p.client, p.pool, DefaultServerName)
		c.Certificates = []tls.Certificate{stranger}
		if err := serverAnswer(t, addr, c); err == nil {
			t.Fatalf("decoy %v: an unverified certificate got a session", decoyOn)
		}
		waitFor(t, 5*time.Second, "refusal counted as failed", func() bool { return r.get("failed") == 1 })
	}
}
