package testbin

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/fluidity-tunnel/fluidity/internal/pki"
)

// PKIOptions configures NewPKI. The zero value is what `fluidity certs` makes
// by default: a CA, a server certificate for pki.DefaultServerName and one
// client certificate named "agent".
type PKIOptions struct {
	CA     pki.CAOptions
	Server pki.ServerOptions
	// AgentName is the client certificate's subject CN and file name;
	// defaults to "agent".
	AgentName string
}

// PKI is one private CA with a server and an agent certificate, minted by
// internal/pki (the code `fluidity certs` runs), so that tests trust what
// deployments trust rather than hand-rolled x509.
type PKI struct {
	CA     *pki.CA
	Server *pki.KeyPair
	Agent  *pki.KeyPair
	// ServerTLS and AgentTLS are the pairs as crypto/tls takes them.
	ServerTLS tls.Certificate
	AgentTLS  tls.Certificate

	agentName    string
	serverKeyPEM []byte
}

// PKIFiles are the paths WriteFiles wrote.
type PKIFiles struct {
	CACert, CAKey         string
	ServerCert, ServerKey string
	AgentCert, AgentKey   string
}

// NewPKI mints a CA and its two leaves. It returns errors rather than failing
// a test so TestMain set-ups, which have no *testing.T, can use it too; tests
// call MintPKI.
func NewPKI(opts PKIOptions) (*PKI, error) {
	p := &PKI{agentName: opts.AgentName}
	if p.agentName == "" {
		p.agentName = "agent"
	}
	var err error
	if p.CA, err = pki.NewCA(opts.CA); err != nil {
		return nil, err
	}
	if p.Server, err = p.CA.IssueServer(opts.Server); err != nil {
		return nil, err
	}
	if p.Agent, err = p.CA.IssueClient(pki.ClientOptions{Name: p.agentName}); err != nil {
		return nil, err
	}
	if p.ServerTLS, err = p.Server.TLSCertificate(); err != nil {
		return nil, err
	}
	if p.AgentTLS, err = p.Agent.TLSCertificate(); err != nil {
		return nil, err
	}
	if p.serverKeyPEM, err = p.Server.KeyPEM(); err != nil {
		return nil, err
	}
	return p, nil
}

// MintPKI is NewPKI for a test, failing t on error; when dir is not empty it
// also writes the files there (see WriteFiles) and returns their paths.
func MintPKI(t testing.TB, dir string, opts PKIOptions) (*PKI, PKIFiles) {
	t.Helper()
	p, err := NewPKI(opts)
	if err != nil {
		t.Fatal(err)
	}
	if dir == "" {
		return p, PKIFiles{}
	}
	files, err := p.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	return p, files
}

// Pool is a pool holding only the CA, for tls.Config's RootCAs or ClientCAs.
func (p *PKI) Pool() *x509.CertPool { return p.CA.CertPool() }

// ServerEnv is the environment that hands the server its certificates as PEM
// text, as the Fargate task definition does.
func (p *PKI) ServerEnv() []string {
	return []string{
		"FLUIDITY_SERVER_CERT_PEM=" + string(p.Server.CertPEM()),
		"FLUIDITY_SERVER_KEY_PEM=" + string(p.serverKeyPEM),
		"FLUIDITY_SERVER_CA_CERT_PEM=" + string(p.CA.CertPEM()),
	}
}

// WriteFiles writes the layout `fluidity certs --dir dir` writes (ca.crt,
// ca.key, server.crt, server.key, and the agent's NAME.crt and NAME.key),
// creating dir and replacing what is there, as a rotation would.
func (p *PKI) WriteFiles(dir string) (PKIFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return PKIFiles{}, fmt.Errorf("testbin: %w", err)
	}
	at := func(name string) string { return filepath.Join(dir, name) }
	f := PKIFiles{
		CACert: at("ca.crt"), CAKey: at("ca.key"),
		ServerCert: at("server.crt"), ServerKey: at("server.key"),
		AgentCert: at(p.agentName + ".crt"), AgentKey: at(p.agentName + ".key"),
	}
	for _, w := range []struct {
		kp       *pki.KeyPair
		crt, key string
	}{{&p.CA.KeyPair, f.CACert, f.CAKey}, {p.Server, f.ServerCert, f.ServerKey}, {p.Agent, f.AgentCert, f.AgentKey}} {
		if err := w.kp.WriteFiles(w.crt, w.key, true); err != nil {
			return PKIFiles{}, err
		}
	}
	return f, nil
}
