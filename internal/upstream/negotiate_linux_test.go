package upstream

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

const krbPassword = "kerberos-SECRET-pw"

// TestNegotiateSquid: Negotiate against a real MIT KDC and a real squid whose
// negotiate_kerberos_auth checks the ticket with the proxy's keytab. The user
// logs in with a password or a keytab; squid logs the Kerberos principal. A
// wrong password fails at the KDC with an error naming the principal and the
// key it came from, never the password; a proxy named by an address the
// realm has no service principal for fails naming the SPN.
func TestNegotiateSquid(t *testing.T) {
	kdc := testbin.StartKDC(t, testbin.KDCOptions{})
	kdc.AddUser(t, "alice", krbPassword)
	userKeytab := kdc.UserKeytab(t, "bob")
	// The proxy URL names localhost, so the ticket is for HTTP/localhost.
	proxyKeytab := kdc.AddService(t, "HTTP/localhost")
	target := stub(t, echo)
	_, port, _ := net.SplitHostPort(target)
	sq := testbin.StartSquid(t, testbin.SquidOptions{
		Auth: testbin.SquidNegotiate, ConnectPorts: []string{port},
		Keytab: proxyKeytab, Krb5Conf: kdc.Krb5Conf,
	})
	_, sqPort, _ := net.SplitHostPort(sq.Addr)
	byName := "http://localhost:" + sqPort

	for _, tc := range []struct {
		name, proxy, creds, keytab string
		logged                     string // the user in squid's access log
	}{
		{"password", byName, "alice:" + krbPassword, "", "alice@" + kdc.Realm},
		{"password with realm", byName, "alice@" + kdc.Realm + ":" + krbPassword, "", "alice@" + kdc.Realm},
		{"keytab", byName, "", userKeytab, "bob@" + kdc.Realm},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Proxy: tc.proxy, Krb5Conf: kdc.Krb5Conf, Keytab: tc.keytab}
			if tc.creds != "" {
				cfg.CredentialsFile = credFile(t, tc.creds+"\n", 0o600)
			}
			d, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			for i := range 2 { // the second reuses the cached service ticket
				c, err := d.DialContext(dialCtx(t), "tcp", target)
				if err != nil {
					t.Fatalf("dial %d: %v", i, err)
				}
				checkEcho(t, c, "")
				c.Close()
			}
			want := "CONNECT " + target + " " + tc.logged
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(sq.AccessLog(), want) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if log := sq.AccessLog(); !strings.Contains(log, want) {
				t.Errorf("squid's access log lacks %q:\n%s", want, log)
			}
		})
	}

	for _, tc := range []struct {
		name, proxy, creds string
		want               []string
	}{
		{"wrong password", byName, "alice:wrong-" + krbPassword,
			[]string{"407", "kerberos login as alice@" + kdc.Realm, KeyCredentialsFile, "password/keytab incorrect"}},
		{"no such service principal", "http://" + sq.Addr, "alice:" + krbPassword,
			[]string{"407", "HTTP/127.0.0.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := New(Config{Proxy: tc.proxy, Krb5Conf: kdc.Krb5Conf, CredentialsFile: credFile(t, tc.creds+"\n", 0o600)})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			c, err := d.DialContext(dialCtx(t), "tcp", target)
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			if !errors.Is(err, ErrProxyAuth) {
				t.Errorf("error %v does not match ErrProxyAuth", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), krbPassword) {
				t.Errorf("error carries the password: %v", err)
			}
		})
	}
}

// TestNegotiateRejected: a squid whose keytab is stale (the service was
// rekeyed since) cannot read the ticket and answers 407 again; the error says
// the proxy rejected the ticket, for which SPN and as whom.
func TestNegotiateRejected(t *testing.T) {
	kdc := testbin.StartKDC(t, testbin.KDCOptions{})
	kdc.AddUser(t, "alice", krbPassword)
	stale := kdc.AddService(t, "HTTP/localhost")
	kdc.Rekey(t, "HTTP/localhost")
	target := stub(t, echo)
	_, port, _ := net.SplitHostPort(target)
	sq := testbin.StartSquid(t, testbin.SquidOptions{
		Auth: testbin.SquidNegotiate, ConnectPorts: []string{port}, Keytab: stale, Krb5Conf: kdc.Krb5Conf,
	})
	_, sqPort, _ := net.SplitHostPort(sq.Addr)
	d, err := New(Config{Proxy: "http://localhost:" + sqPort, Krb5Conf: kdc.Krb5Conf, CredentialsFile: credFile(t, "alice:"+krbPassword+"\n", 0o600)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c, err := d.DialContext(dialCtx(t), "tcp", target)
	if err == nil {
		c.Close()
		t.Fatal("dial succeeded with a ticket the proxy cannot read")
	}
	want := "the proxy rejected the Kerberos ticket for HTTP/localhost as alice@" + kdc.Realm + " (from " + KeyCredentialsFile + ")"
	if !errors.Is(err, ErrProxyAuth) || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want ErrProxyAuth saying %q", err, want)
	}
}

// TestKerberosConfig: what New refuses, naming the key to fix.
func TestKerberosConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "krb5.conf")
	if err := os.WriteFile(conf, []byte("[libdefaults]\n default_realm = EXAMPLE.TEST\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noRealm := filepath.Join(dir, "norealm.conf")
	if err := os.WriteFile(noRealm, []byte("[libdefaults]\n dns_lookup_kdc = false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	openKeytab := filepath.Join(dir, "open.keytab")
	if err := os.WriteFile(openKeytab, []byte{5, 2}, 0o644); err != nil {
		t.Fatal(err)
	}
	creds := credFile(t, "alice:"+krbPassword+"\n", 0o600)
	for _, tc := range []struct {
		name string
		cfg  Config
		key  string
	}{
		{"direct", Config{Krb5Conf: conf}, KeyKrb5Conf},
		{"keytab alone", Config{Proxy: "http://proxy.example:3128", Keytab: openKeytab}, KeyKeytab},
		{"socks", Config{Proxy: "socks5://proxy.example:1080", Krb5Conf: conf, CredentialsFile: creds}, KeyKrb5Conf},
		{"no secret", Config{Proxy: "http://proxy.example:3128", Krb5Conf: conf}, KeyKrb5Conf},
		{"missing krb5.conf", Config{Proxy: "http://proxy.example:3128", Krb5Conf: filepath.Join(dir, "none"), CredentialsFile: creds}, KeyKrb5Conf},
		{"no realm", Config{Proxy: "http://proxy.example:3128", Krb5Conf: noRealm, CredentialsFile: creds}, KeyKrb5Conf},
		{"keytab others may read", Config{Proxy: "http://proxy.example:3128", Krb5Conf: conf, Keytab: openKeytab}, KeyKeytab},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := New(tc.cfg)
			if err == nil {
				d.Close()
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(err.Error(), "config: "+tc.key+":") {
				t.Errorf("error %q does not start with %s", err, tc.key)
			}
			if strings.Contains(err.Error(), krbPassword) {
				t.Errorf("error carries the password: %v", err)
			}
		})
	}
}
