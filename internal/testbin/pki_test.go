package testbin

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/fluidity-tunnel/fluidity/internal/pki"
)

// TestMintPKI checks that the helper's certificates are what the daemons
// accept: the server's for pki.DefaultServerName, the agent's for client auth,
// both chaining to the CA, and the files loadable as the daemons load them.
func TestMintPKI(t *testing.T) {
	dir := t.TempDir()
	p, files := MintPKI(t, dir, PKIOptions{AgentName: "laptop"})

	verify := func(name string, cert *x509.Certificate, usage x509.ExtKeyUsage, host string) {
		t.Helper()
		if _, err := cert.Verify(x509.VerifyOptions{Roots: p.Pool(), KeyUsages: []x509.ExtKeyUsage{usage}, DNSName: host}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	verify("server", p.ServerTLS.Leaf, x509.ExtKeyUsageServerAuth, pki.DefaultServerName)
	verify("agent", p.AgentTLS.Leaf, x509.ExtKeyUsageClientAuth, "")
	if cn := p.Agent.Cert.Subject.CommonName; cn != "laptop" {
		t.Errorf("agent CN = %q, want laptop", cn)
	}

	ca, err := pki.LoadCA(files.CACert, files.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Cert.Equal(p.CA.Cert) {
		t.Error("ca.crt is not the CA")
	}
	for _, pair := range [][2]string{{files.ServerCert, files.ServerKey}, {files.AgentCert, files.AgentKey}} {
		if _, err := tls.LoadX509KeyPair(pair[0], pair[1]); err != nil {
			t.Errorf("%s: %v", pair[0], err)
		}
	}
	if !strings.HasSuffix(files.AgentCert, "/laptop.crt") {
		t.Errorf("agent certificate written to %s, want laptop.crt", files.AgentCert)
	}

	// A second mint into the same directory replaces the files, as a rotation does.
	q, _ := MintPKI(t, dir, PKIOptions{})
	if ca, err := pki.LoadCA(files.CACert, files.CAKey); err != nil || !ca.Cert.Equal(q.CA.Cert) {
		t.Errorf("second mint did not replace ca.crt (err %v)", err)
	}

	env := map[string]string{}
	for _, kv := range p.ServerEnv() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for k, want := range map[string][]byte{
		"FLUIDITY_SERVER_CERT_PEM":    p.Server.CertPEM(),
		"FLUIDITY_SERVER_CA_CERT_PEM": p.CA.CertPEM(),
	} {
		if env[k] != string(want) {
			t.Errorf("%s is not the PEM it should be", k)
		}
	}
	if _, err := tls.X509KeyPair([]byte(env["FLUIDITY_SERVER_CERT_PEM"]), []byte(env["FLUIDITY_SERVER_KEY_PEM"])); err != nil {
		t.Errorf("server env pair: %v", err)
	}
}
