package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/pki"
)

// writePKI writes a fresh CA, server pair and client pair into dir (overwriting).
func writePKI(t *testing.T, dir, client string) {
	t.Helper()
	ca, err := pki.NewCA(pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.IssueServer(pki.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.IssueClient(pki.ClientOptions{Name: client})
	if err != nil {
		t.Fatal(err)
	}
	for name, kp := range map[string]*pki.KeyPair{"ca": &ca.KeyPair, "server": srv, "client": cli} {
		if err := kp.WriteFiles(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"), true); err != nil {
			t.Fatal(err)
		}
	}
	// Modification times have a coarse granularity on some file systems; make the
	// change visible to the reloader's stamp.
	later := time.Now().Add(time.Duration(len(client)) * time.Second)
	for _, f := range []string{"ca.crt", "server.crt", "server.key"} {
		_ = os.Chtimes(filepath.Join(dir, f), later, later)
	}
}

func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) error {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	errc := make(chan error, 1)
	go func() {
		s := tls.Server(b, serverCfg)
		err := s.HandshakeContext(context.Background())
		if err == nil {
			// TLS 1.3 client certificates are checked after the client's
			// handshake returns: read to learn the server's verdict.
			_, err = s.Write([]byte{1})
		}
		errc <- err
		b.Close()
	}()
	c := tls.Client(a, clientCfg)
	err := c.HandshakeContext(context.Background())
	if err == nil {
		_, err = c.Read(make([]byte, 1))
	}
	if serr := <-errc; err == nil {
		err = serr
	}
	return err
}

func TestCertReloadAndDenyList(t *testing.T) {
	serverDir, clientDir := t.TempDir(), t.TempDir()
	writePKI(t, serverDir, "alice")
	log := zerolog.Nop()
	srv, err := NewCertReloader(filepath.Join(serverDir, "server.crt"), filepath.Join(serverDir, "server.key"), filepath.Join(serverDir, "ca.crt"), log)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := NewCertReloader(filepath.Join(serverDir, "client.crt"), filepath.Join(serverDir, "client.key"), filepath.Join(serverDir, "ca.crt"), log)
	if err != nil {
		t.Fatal(err)
	}
	serverCfg := srv.ServerTLSConfig(nil)
	if err := handshake(t, serverCfg, cli.ClientTLSConfig(DefaultServerName)); err != nil {
		t.Fatalf("initial handshake: %v", err)
	}

	// Rotate everything to a new CA. Until reloaded, the server keeps the old files;
	// a client of the new CA is refused.
	writePKI(t, clientDir, "bob")
	newClient, err := NewCertReloader(filepath.Join(clientDir, "client.crt"), filepath.Join(clientDir, "client.key"), filepath.Join(clientDir, "ca.crt"), log)
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, serverCfg, newClient.ClientTLSConfig(DefaultServerName)); err == nil {
		t.Fatal("client of a foreign CA accepted")
	}
	for _, f := range []string{"ca.crt", "server.crt", "server.key"} {
		b, err := os.ReadFile(filepath.Join(clientDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(serverDir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
		later := time.Now().Add(time.Minute)
		_ = os.Chtimes(filepath.Join(serverDir, f), later, later)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Run(ctx, 10*time.Millisecond) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 5*time.Second, "reload to accept the new CA's client", func() bool {
		return handshake(t, serverCfg, newClient.ClientTLSConfig(DefaultServerName)) == nil
	})
	if err := handshake(t, serverCfg, cli.ClientTLSConfig(DefaultServerName)); err == nil {
		t.Fatal("client of the retired CA still accepted after reload")
	}

	// Deny list: by common name and by serial.
	leaf, err := pki.DecodeCertPEM(mustRead(t, filepath.Join(clientDir, "client.crt")))
	if err != nil {
		t.Fatal(err)
	}
	for _, deny := range []string{"bob", leaf.SerialNumber.Text(16)} {
		err := handshake(t, srv.ServerTLSConfig([]string{deny}), newClient.ClientTLSConfig(DefaultServerName))
		if err == nil {
			t.Errorf("client denied by %q accepted", deny)
		}
	}
	if err := handshake(t, srv.ServerTLSConfig([]string{"someone-else"}), newClient.ClientTLSConfig(DefaultServerName)); err != nil {
		t.Errorf("client not on the deny list refused: %v", err)
	}
}

func TestCheckDeniedError(t *testing.T) {
	if !errors.Is(checkDeniedForTest("mallory"), ErrClientDenied) {
		t.Fatal("denied client error does not match ErrClientDenied")
	}
}

func checkDeniedForTest(cn string) error {
	ca, _ := pki.NewCA(pki.CAOptions{})
	kp, _ := ca.IssueClient(pki.ClientOptions{Name: cn})
	return checkDenied(tls.ConnectionState{PeerCertificates: []*x509.Certificate{kp.Cert}}, map[string]bool{cn: true})
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSessionResumption: a second connection from the same agent resumes the TLS
// session (a handshake without certificate verification on either side), and the
// resumed session still carries the client's certificate, which the deny list and
// the logs rely on.
func TestSessionResumption(t *testing.T) {
	dir := t.TempDir()
	writePKI(t, dir, "carol")
	log := zerolog.Nop()
	srv, err := NewCertReloader(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.crt"), log)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := NewCertReloader(filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key"), filepath.Join(dir, "ca.crt"), log)
	if err != nil {
		t.Fatal(err)
	}
	serverCfg := srv.ServerTLSConfig([]string{"someone-else"})
	for i, wantResumed := range []bool{false, true, true} {
		client, server, err := handshakeStates(serverCfg, cli.ClientTLSConfig(DefaultServerName))
		if err != nil {
			t.Fatalf("handshake %d: %v", i+1, err)
		}
		if client.DidResume != wantResumed || server.DidResume != wantResumed {
			t.Errorf("handshake %d: resumed client %v server %v, want %v", i+1, client.DidResume, server.DidResume, wantResumed)
		}
		if len(server.PeerCertificates) == 0 || server.PeerCertificates[0].Subject.CommonName != "carol" {
			t.Errorf("handshake %d: the server does not see the client certificate (resumed %v)", i+1, server.DidResume)
		}
	}
	// A denied client is refused on resumption too (VerifyConnection runs on every
	// handshake): share the accepting config's ticket keys with a denying one.
	denying := srv.ServerTLSConfig([]string{"carol"})
	keys := [32]byte{1, 2, 3}
	serverCfg.SetSessionTicketKeys([][32]byte{keys})
	denying.SetSessionTicketKeys([][32]byte{keys})
	if _, _, err := handshakeStates(serverCfg, cli.ClientTLSConfig(DefaultServerName)); err != nil {
		t.Fatal(err)
	}
	// With shared keys another accepting config resumes, so the denying one below
	// is offered a resumption too.
	accepting := srv.ServerTLSConfig(nil)
	accepting.SetSessionTicketKeys([][32]byte{keys})
	if client, _, err := handshakeStates(accepting, cli.ClientTLSConfig(DefaultServerName)); err != nil || !client.DidResume {
		t.Fatalf("no resumption across configs sharing ticket keys: resumed %v, %v", client.DidResume, err)
	}
	client, _, err := handshakeStates(denying, cli.ClientTLSConfig(DefaultServerName))
	if err == nil {
		t.Fatalf("denied client accepted (resumed %v)", client.DidResume)
	}
}

// handshakeStates is handshake returning both sides' view of the connection. It
// runs over loopback TCP: a refusal on resumption has both sides writing at once,
// which net.Pipe (unbuffered) would deadlock.
func handshakeStates(serverCfg, clientCfg *tls.Config) (client, server tls.ConnectionState, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return client, server, err
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return client, server, err
	}
	defer a.Close()
	b, err := ln.Accept()
	if err != nil {
		return client, server, err
	}
	defer b.Close()
	type result struct {
		cs  tls.ConnectionState
		err error
	}
	done := make(chan result, 1)
	go func() {
		s := tls.Server(b, serverCfg)
		err := s.HandshakeContext(context.Background())
		if err == nil {
			_, err = s.Write([]byte{1})
		}
		done <- result{s.ConnectionState(), err}
		b.Close()
	}()
	c := tls.Client(a, clientCfg)
	err = c.HandshakeContext(context.Background())
	if err == nil {
		// Reading also takes in the session ticket the server sends after its
		// handshake.
		_, err = c.Read(make([]byte, 1))
	}
	r := <-done
	if err == nil {
		err = r.err
	}
	return c.ConnectionState(), r.cs, err
}
