package tunnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
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
	cerr, serr := handshakeErrs(serverCfg, clientCfg)
	if cerr != nil {
		return cerr
	}
	return serr
}

// handshakeErrs is handshake returning each side's error: the server's says why
// it refused.
func handshakeErrs(serverCfg, clientCfg *tls.Config) (clientErr, serverErr error) {
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
	return err, <-errc
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
	d, _ := parseDenyList([]string{cn})
	return checkDenied(tls.ConnectionState{PeerCertificates: []*x509.Certificate{kp.Cert}}, d)
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
// the logs rely on. Without SNI the client caches sessions by the server's
// address, which stays the same for one server process (the one that knows the
// tickets), so every handshake here goes to one listener.
func TestSessionResumption(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
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
		client, server, err := handshakeStates(ln, serverCfg, cli.ClientTLSConfig(DefaultServerName))
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
	if _, _, err := handshakeStates(ln, serverCfg, cli.ClientTLSConfig(DefaultServerName)); err != nil {
		t.Fatal(err)
	}
	// With shared keys another accepting config resumes, so the denying one below
	// is offered a resumption too.
	accepting := srv.ServerTLSConfig(nil)
	accepting.SetSessionTicketKeys([][32]byte{keys})
	if client, _, err := handshakeStates(ln, accepting, cli.ClientTLSConfig(DefaultServerName)); err != nil || !client.DidResume {
		t.Fatalf("no resumption across configs sharing ticket keys: resumed %v, %v", client.DidResume, err)
	}
	client, _, err := handshakeStates(ln, denying, cli.ClientTLSConfig(DefaultServerName))
	if err == nil {
		t.Fatalf("denied client accepted (resumed %v)", client.DidResume)
	}
}

// handshakeStates is handshake returning both sides' view of the connection. It
// runs over loopback TCP: a refusal on resumption has both sides writing at once,
// which net.Pipe (unbuffered) would deadlock.
func handshakeStates(ln net.Listener, serverCfg, clientCfg *tls.Config) (client, server tls.ConnectionState, err error) {
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

// TestDenyListSerialForms: a serial number matches whichever way it was written,
// openssl's forms included, and never matches another certificate.
func TestDenyListSerialForms(t *testing.T) {
	// The high bit is set, so DER (and openssl x509 -text) carries a leading 00.
	serial, _ := new(big.Int).SetString("a8249f0c3e5d17b2", 16)
	cert := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "laptop"}}
	other := &x509.Certificate{SerialNumber: big.NewInt(0xa8249f), Subject: pkix.Name{CommonName: "desktop"}}
	forms := []string{
		"a8249f0c3e5d17b2",               // Go's Text(16), what the logs print
		"A8249F0C3E5D17B2",               // upper case
		"00a8249f0c3e5d17b2",             // leading zero byte
		"0000A8249F0C3E5D17B2",           // two
		"0xa8249f0c3e5d17b2",             // 0x
		"0XA8249F0C3E5D17B2",             // 0X
		"serial=A8249F0C3E5D17B2",        // openssl x509 -noout -serial
		"SERIAL=00a8249f0c3e5d17b2",      // any case, leading zeros
		"serial= a8249f0c3e5d17b2",       // space after =
		"a8:24:9f:0c:3e:5d:17:b2",        // openssl x509 -text
		"00:a8:24:9f:0c:3e:5d:17:b2",     // ... with the DER pad byte
		"A8:24:9F:0C:3E:5D:17:B2",        // upper case
		"0x00:A8:24:9F:0C:3E:5D:17:B2",   // mixed
		"serial=A8:24:9F:0C:3E:5D:17:B2", // mixed
		"a8 24 9f 0c 3e 5d 17 b2",        // space-separated bytes (certificate viewers)
		"  a8:24:9f:0c:3e:5d:17:b2\t",    // surrounding space
		"00 A8 24 9F 0C 3E 5D 17 B2",     // spaces, pad byte
	}
	for _, f := range forms {
		d, warnings := parseDenyList([]string{f})
		if len(warnings) != 0 {
			t.Errorf("%q: warnings %v", f, warnings)
		}
		if err := checkDenied(tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}, d); !errors.Is(err, ErrClientDenied) {
			t.Errorf("%q does not deny serial %x: %v", f, serial, err)
		}
		if err := checkDenied(tls.ConnectionState{PeerCertificates: []*x509.Certificate{other}}, d); err != nil {
			t.Errorf("%q denies serial %x too: %v", f, other.SerialNumber, err)
		}
	}
	// A bare hex entry is also a name; a marked one is not.
	hexName := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "CAFE"}}
	for f, want := range map[string]bool{"cafe": true, "0xcafe": false, "ca:fe": false, "serial=cafe": false} {
		d, _ := parseDenyList([]string{f})
		err := checkDenied(tls.ConnectionState{PeerCertificates: []*x509.Certificate{hexName}}, d)
		if errors.Is(err, ErrClientDenied) != want {
			t.Errorf("%q against common name CAFE: %v, want denied=%v", f, err, want)
		}
	}
}

// TestDenyListWarnings: an entry that is neither a serial nor a plausible common
// name is logged at start, naming it; it is kept as a common name.
func TestDenyListWarnings(t *testing.T) {
	bad := []string{
		"a8:24:zz",           // colons, not hex
		"a8:249f",            // colons, not byte pairs
		"a8::24",             // empty group
		"0xnothex",           // 0x, not hex
		"serial=",            // nothing after serial=
		"serial=a8-24",       // serial=, not hex
		"CN=alice",           // a distinguished name pasted whole
		"subject=CN = alice", // openssl x509 -subject
		"",                   // empty
		strings.Repeat("n", 65),
		"ali\x00ce",
		"\xff\xfe",
	}
	good := []string{"alice", "Alice Smith", "laptop-42.corp.example", "a8:24:9f", "deadbeef", "José's laptop", strings.Repeat("n", 64)}
	_, warnings := parseDenyList(append(append([]string{}, good...), bad...))
	var got []string
	for _, w := range warnings {
		got = append(got, w.entry)
		if w.problem == "" {
			t.Errorf("%q: warning without a problem", w.entry)
		}
	}
	want := make([]string, len(bad))
	for i, b := range bad {
		want[i] = strings.TrimSpace(b)
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("warnings for %q, want %q", got, want)
	}

	// Through the logger the reloader was given, naming the entry.
	dir := t.TempDir()
	writePKI(t, dir, "alice")
	var buf bytes.Buffer
	srv, err := NewCertReloader(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.crt"), zerolog.New(&buf))
	if err != nil {
		t.Fatal(err)
	}
	cfg := srv.ServerTLSConfig([]string{"bob", "CN=alice", "a8:24:zz"})
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 || lines[0]["entry"] != "CN=alice" || lines[1]["entry"] != "a8:24:zz" ||
		lines[0]["level"] != "warn" || lines[0]["problem"] == nil {
		t.Errorf("log = %s", buf.String())
	}
	// Kept as a common name: a client actually named "CN=alice" is refused.
	writePKI(t, dir, "CN=alice")
	cli, err := NewCertReloader(filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key"), filepath.Join(dir, "ca.crt"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, serr := handshakeErrs(cfg, cli.ClientTLSConfig(DefaultServerName)); !errors.Is(serr, ErrClientDenied) {
		t.Errorf("client named CN=alice: server error %v, want ErrClientDenied", serr)
	}
}

// TestDenyListWithPEMCertificates: certificates given as PEM text (the Fargate
// set-up) serve handshakes and apply the deny list, by name and by each serial
// form, in a real mutual TLS handshake.
func TestDenyListWithPEMCertificates(t *testing.T) {
	ca, err := pki.NewCA(pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srvKP, err := ca.IssueServer(pki.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cliKP, err := ca.IssueClient(pki.ClientOptions{Name: "lost-laptop"})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := srvKP.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewCertReloaderFromPEM(srvKP.CertPEM(), keyPEM, ca.CertPEM(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := srv.Reload(); changed || err != nil {
		t.Errorf("Reload of PEM certificates = %v, %v; want nothing to do", changed, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv.Run(ctx, time.Millisecond) // returns at once: nothing to watch

	cert, err := cliKP.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	clientCfg := func() *tls.Config { return NewClientTLSConfig(cert, ca.CertPool(), DefaultServerName) }
	if err := handshake(t, srv.ServerTLSConfig(nil), clientCfg()); err != nil {
		t.Fatalf("handshake with PEM certificates: %v", err)
	}
	if err := handshake(t, srv.ServerTLSConfig([]string{"someone-else", "0x01"}), clientCfg()); err != nil {
		t.Fatalf("client not on the deny list refused: %v", err)
	}
	b := cliKP.Cert.SerialNumber.Bytes()
	colons := make([]string, len(b))
	for i, x := range b {
		colons[i] = fmt.Sprintf("%02X", x)
	}
	for _, deny := range []string{
		"lost-laptop",
		"LOST-LAPTOP",
		cliKP.Cert.SerialNumber.Text(16),
		"serial=" + strings.ToUpper(cliKP.Cert.SerialNumber.Text(16)),
		"00:" + strings.Join(colons, ":"),
		"0x" + cliKP.Cert.SerialNumber.Text(16),
	} {
		cerr, serr := handshakeErrs(srv.ServerTLSConfig([]string{"someone-else", deny}), clientCfg())
		if cerr == nil || !errors.Is(serr, ErrClientDenied) {
			t.Errorf("deny %q: client error %v, server error %v; want the client refused", deny, cerr, serr)
		}
	}

	for _, bad := range [][3][]byte{
		{[]byte("x"), keyPEM, ca.CertPEM()},
		{srvKP.CertPEM(), keyPEM, []byte("no certificate here")},
	} {
		if _, err := NewCertReloaderFromPEM(bad[0], bad[1], bad[2], zerolog.Nop()); err == nil {
			t.Error("unusable PEM accepted")
		}
	}
}
