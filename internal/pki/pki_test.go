package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

func mustCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA(CAOptions{})
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

func TestCAProperties(t *testing.T) {
	ca := mustCA(t)
	c := ca.Cert
	if !c.IsCA || !c.BasicConstraintsValid {
		t.Errorf("IsCA=%v BasicConstraintsValid=%v, want both true", c.IsCA, c.BasicConstraintsValid)
	}
	if c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("MaxPathLen=%d MaxPathLenZero=%v, want 0/true", c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("KeyUsage %v lacks CertSign", c.KeyUsage)
	}
	if c.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("key algorithm %v, want ECDSA", c.PublicKeyAlgorithm)
	}
	if c.Subject.CommonName != DefaultCACommonName {
		t.Errorf("CN %q, want %q", c.Subject.CommonName, DefaultCACommonName)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v not a positive 128-bit number", c.SerialNumber)
	}
}

func TestValidityDefaultsToTwoYears(t *testing.T) {
	ca := mustCA(t)
	srv, err := ca.IssueServer(ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.IssueClient(ClientOptions{Name: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*x509.Certificate{"ca": ca.Cert, "server": srv.Cert, "client": cli.Cert} {
		got := time.Until(c.NotAfter)
		if d := got - DefaultValidity; d < -time.Minute || d > time.Minute {
			t.Errorf("%s: expires in %v, want about %v", name, got, DefaultValidity)
		}
		if !c.NotBefore.Before(time.Now()) {
			t.Errorf("%s: NotBefore %v is not in the past", name, c.NotBefore)
		}
	}
}

func TestLeafDoesNotOutliveCA(t *testing.T) {
	ca, err := NewCA(CAOptions{Validity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.IssueClient(ClientOptions{Name: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	if kp.Cert.NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("leaf NotAfter %v after CA NotAfter %v", kp.Cert.NotAfter, ca.Cert.NotAfter)
	}
}

func TestSerialsAreUnique(t *testing.T) {
	ca := mustCA(t)
	seen := map[string]bool{ca.Cert.SerialNumber.String(): true}
	for range 20 {
		kp, err := ca.IssueClient(ClientOptions{Name: "agent"})
		if err != nil {
			t.Fatal(err)
		}
		s := kp.Cert.SerialNumber.String()
		if seen[s] {
			t.Fatalf("duplicate serial %s", s)
		}
		seen[s] = true
	}
}

func TestVerifyUsage(t *testing.T) {
	ca := mustCA(t)
	srv, err := ca.IssueServer(ServerOptions{
		DNSNames:    []string{"tunnel.example.com"},
		IPAddresses: []net.IP{net.ParseIP("203.0.113.7")},
	})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.IssueClient(ClientOptions{Name: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	wrongSrv, err := ca.IssueServer(ServerOptions{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Fatal(err)
	}
	other := mustCA(t)
	foreign, err := other.IssueClient(ClientOptions{Name: "intruder"})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := ca.IssueClient(ClientOptions{Name: "old",
		NotBefore: time.Now().Add(-3 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	future, err := ca.IssueClient(ClientOptions{Name: "early",
		NotBefore: time.Now().Add(time.Hour), NotAfter: time.Now().Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}

	server := x509.ExtKeyUsageServerAuth
	client := x509.ExtKeyUsageClientAuth
	tests := []struct {
		name    string
		cert    *x509.Certificate
		usage   x509.ExtKeyUsage
		dnsName string
		wantOK  bool
	}{
		{"server for server auth", srv.Cert, server, DefaultServerName, true},
		{"server extra dns san", srv.Cert, server, "tunnel.example.com", true},
		{"server ip san", srv.Cert, server, "203.0.113.7", true},
		{"server wrong name", srv.Cert, server, "evil.example.com", false},
		{"server for client auth", srv.Cert, client, "", false},
		{"client for client auth", cli.Cert, client, "", true},
		{"client for server auth", cli.Cert, server, DefaultServerName, false},
		{"server minted with client eku", wrongSrv.Cert, server, DefaultServerName, false},
		{"other ca's client", foreign.Cert, client, "", false},
		{"expired client", expired.Cert, client, "", false},
		{"not yet valid client", future.Cert, client, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cert.Verify(x509.VerifyOptions{
				Roots:     ca.CertPool(),
				DNSName:   tt.dnsName,
				KeyUsages: []x509.ExtKeyUsage{tt.usage},
			})
			if (err == nil) != tt.wantOK {
				t.Errorf("Verify error = %v, want ok=%v", err, tt.wantOK)
			}
		})
	}
}

func TestLeafFields(t *testing.T) {
	ca := mustCA(t)
	srv, err := ca.IssueServer(ServerOptions{ServerName: "fluidity-server", DNSNames: []string{"fluidity-server", "x.example"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.Cert.DNSNames; len(got) != 2 || got[0] != "fluidity-server" || got[1] != "x.example" {
		t.Errorf("DNSNames = %v, want [fluidity-server x.example] (deduplicated)", got)
	}
	cli, err := ca.IssueClient(ClientOptions{Name: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	for _, kp := range []*KeyPair{srv, cli} {
		c := kp.Cert
		if c.IsCA {
			t.Errorf("%s: leaf is a CA", c.Subject.CommonName)
		}
		if c.KeyUsage != x509.KeyUsageDigitalSignature {
			t.Errorf("%s: KeyUsage = %v, want DigitalSignature only", c.Subject.CommonName, c.KeyUsage)
		}
		if len(c.ExtKeyUsage) != 1 {
			t.Errorf("%s: ExtKeyUsage = %v, want exactly one", c.Subject.CommonName, c.ExtKeyUsage)
		}
	}
	if cli.Cert.Subject.CommonName != "agent" {
		t.Errorf("client CN = %q, want agent", cli.Cert.Subject.CommonName)
	}
}

func TestIssueErrors(t *testing.T) {
	ca := mustCA(t)
	tests := []struct {
		name string
		fn   func() error
	}{
		{"empty client name", func() error { _, err := ca.IssueClient(ClientOptions{}); return err }},
		{"bad server name", func() error { _, err := ca.IssueServer(ServerOptions{ServerName: "bad name"}); return err }},
		{"bad extra dns", func() error { _, err := ca.IssueServer(ServerOptions{DNSNames: []string{"-x.example"}}); return err }},
		{"inverted window", func() error {
			_, err := ca.IssueClient(ClientOptions{Name: "a", NotBefore: time.Now(), NotAfter: time.Now().Add(-time.Hour)})
			return err
		}},
		{"negative validity", func() error { _, err := NewCA(CAOptions{Validity: -time.Hour}); return err }},
		{"uninitialised ca", func() error { _, err := (&CA{}).IssueClient(ClientOptions{Name: "a"}); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.fn(); err == nil {
				t.Fatal("want error, got nil")
			}
		})
	}
}

func TestPEMRoundTrip(t *testing.T) {
	ca := mustCA(t)
	kp, err := ca.IssueClient(ClientOptions{Name: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := DecodeCertPEM(kp.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	if !cert.Equal(kp.Cert) {
		t.Error("decoded certificate differs")
	}
	keyPEM, err := kp.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	key, err := DecodeKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkKeyMatches(cert, key); err != nil {
		t.Error(err)
	}
	if _, err := DecodeCertPEM(keyPEM); err == nil {
		t.Error("DecodeCertPEM accepted a key")
	}
	if _, err := DecodeKeyPEM(kp.CertPEM()); err == nil {
		t.Error("DecodeKeyPEM accepted a certificate")
	}
	if _, err := DecodeKeyPEM([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")); err == nil {
		t.Error("DecodeKeyPEM accepted garbage")
	}
}

func TestWriteFilesAndLoad(t *testing.T) {
	dir := t.TempDir()
	ca := mustCA(t)
	caCrt, caKey := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := ca.WriteFiles(caCrt, caKey, false); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		for path, want := range map[string]fs.FileMode{caKey: 0o600, caCrt: 0o644} {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != want {
				t.Errorf("%s mode = %v, want %v", filepath.Base(path), got, want)
			}
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}

	loaded, err := LoadCA(caCrt, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) {
		t.Error("loaded CA differs")
	}
	// A CA loaded from disk must still issue certificates that verify.
	kp, err := loaded.IssueClient(ClientOptions{Name: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kp.Cert.Verify(x509.VerifyOptions{Roots: ca.CertPool(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("leaf from loaded CA: %v", err)
	}

	// A leaf is not a CA.
	leafCrt, leafKey := filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key")
	if err := kp.WriteFiles(leafCrt, leafKey, false); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(leafCrt, leafKey); err == nil {
		t.Error("LoadCA accepted a leaf certificate")
	}
	// Mismatched certificate and key.
	if _, err := LoadKeyPair(caCrt, leafKey); err == nil {
		t.Error("LoadKeyPair accepted a mismatched key")
	}
	if _, err := LoadKeyPair(filepath.Join(dir, "missing.crt"), leafKey); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want fs.ErrNotExist", err)
	}
}

func TestWriteFilesNoClobber(t *testing.T) {
	other := mustCA(t)

	tests := []struct {
		name     string
		existing []string // files present before the write
		force    bool
		wantErr  bool
	}{
		{"fresh", nil, false, false},
		{"key exists", []string{"x.key"}, false, true},
		{"cert exists", []string{"x.crt"}, false, true},
		{"both exist", []string{"x.crt", "x.key"}, false, true},
		{"both exist forced", []string{"x.crt", "x.key"}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			crt, key := filepath.Join(dir, "x.crt"), filepath.Join(dir, "x.key")
			before := map[string][]byte{}
			for _, name := range tt.existing {
				p := filepath.Join(dir, name)
				data := []byte("original " + name)
				if err := os.WriteFile(p, data, 0o600); err != nil {
					t.Fatal(err)
				}
				before[p] = data
			}
			err := other.WriteFiles(crt, key, tt.force)
			if tt.wantErr {
				if !errors.Is(err, ErrExists) {
					t.Fatalf("err = %v, want ErrExists", err)
				}
				for p, data := range before {
					got, _ := os.ReadFile(p)
					if string(got) != string(data) {
						t.Errorf("%s was modified", p)
					}
				}
				// Nothing new may appear either: a refused write is all-or-nothing.
				for _, p := range []string{crt, key} {
					if _, ok := before[p]; !ok {
						if _, err := os.Stat(p); err == nil {
							t.Errorf("%s was created despite the refusal", p)
						}
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := LoadKeyPair(crt, key)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Cert.Equal(other.Cert) {
				t.Error("files do not hold the written pair")
			}
			if runtime.GOOS != "windows" {
				fi, _ := os.Stat(key)
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("key mode = %v, want 0600", fi.Mode().Perm())
				}
			}
		})
	}
}

// handshake runs a TLS 1.3 handshake over an in-memory pipe with the same
// settings the tunnel uses and returns both sides' errors.
func handshake(t *testing.T, ca *CA, server, client *KeyPair, serverName string) (serverErr, clientErr error) {
	t.Helper()
	srvCert, err := server.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	cliCert, err := client.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	_ = sc.SetDeadline(time.Now().Add(10 * time.Second))
	_ = cc.SetDeadline(time.Now().Add(10 * time.Second))
	srv := tls.Server(sc, &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{srvCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.CertPool(),
	})
	cli := tls.Client(cc, &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cliCert},
		RootCAs:      ca.CertPool(),
		ServerName:   serverName,
	})
	done := make(chan error, 1)
	go func() {
		err := srv.Handshake()
		if err == nil {
			// In TLS 1.3 the client's certificate is checked after the
			// client thinks it is done; a read surfaces the server's verdict.
			_, err = srv.Write([]byte{1})
		}
		if err != nil {
			sc.Close()
		}
		done <- err
	}()
	clientErr = cli.Handshake()
	if clientErr == nil {
		_, clientErr = cli.Read(make([]byte, 1))
	}
	if clientErr != nil {
		cc.Close()
	}
	serverErr = <-done
	if clientErr == nil && serverErr == nil && cli.ConnectionState().Version != tls.VersionTLS13 {
		t.Errorf("negotiated version %x, want TLS 1.3", cli.ConnectionState().Version)
	}
	return serverErr, clientErr
}

func TestTLSHandshake(t *testing.T) {
	ca := mustCA(t)
	srv, err := ca.IssueServer(ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.IssueClient(ClientOptions{Name: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	cliAsSrv, err := ca.IssueServer(ServerOptions{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Fatal(err)
	}
	srvAsCli, err := ca.IssueClient(ClientOptions{Name: "agent", ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		t.Fatal(err)
	}
	foreignCA := mustCA(t)
	foreignCli, err := foreignCA.IssueClient(ClientOptions{Name: "intruder"})
	if err != nil {
		t.Fatal(err)
	}
	expiredCli, err := ca.IssueClient(ClientOptions{Name: "old",
		NotBefore: time.Now().Add(-3 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		server     *KeyPair
		client     *KeyPair
		serverName string
		wantOK     bool
	}{
		{"valid pair", srv, cli, DefaultServerName, true},
		{"wrong server name", srv, cli, "203.0.113.7", false},
		{"server cert lacks server auth", cliAsSrv, cli, DefaultServerName, false},
		{"client cert lacks client auth", srv, srvAsCli, DefaultServerName, false},
		{"client from another ca", srv, foreignCli, DefaultServerName, false},
		{"expired client", srv, expiredCli, DefaultServerName, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverErr, clientErr := handshake(t, ca, tt.server, tt.client, tt.serverName)
			ok := serverErr == nil && clientErr == nil
			if ok != tt.wantOK {
				t.Errorf("server err = %v, client err = %v; want ok=%v", serverErr, clientErr, tt.wantOK)
			}
		})
	}
}

func TestTLSCertificateRejectsMismatch(t *testing.T) {
	ca := mustCA(t)
	a, _ := ca.IssueClient(ClientOptions{Name: "a"})
	b, _ := ca.IssueClient(ClientOptions{Name: "b"})
	if _, err := (&KeyPair{Cert: a.Cert, Key: b.Key}).TLSCertificate(); err == nil {
		t.Error("TLSCertificate accepted a mismatched key")
	}
}

func TestCheckDNSName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"fluidity-server", true},
		{"tunnel.example.com", true},
		{"tunnel.example.com.", true},
		{"", false},
		{"has space", false},
		{"-leading", false},
		{"a..b", false},
		{"*.example.com", false},
		{"exa_mple.com", true},
	}
	for _, tt := range tests {
		if err := CheckDNSName(tt.name); (err == nil) != tt.ok {
			t.Errorf("CheckDNSName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}
