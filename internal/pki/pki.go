// Package pki mints and stores the private certificate authority, server
// certificate and client certificates that Fluidity's mutually authenticated
// TLS 1.3 tunnel trusts. Nothing here talks to a public CA: the CA's only job is
// to let the agent and the server recognise each other.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"
)

const (
	// DefaultValidity is how long certificates last unless told otherwise
	// (two years, per the product spec).
	DefaultValidity = 2 * 365 * 24 * time.Hour

	// DefaultServerName is the fixed DNS name the agent verifies the server
	// certificate against. The server's public IP changes on every start, so
	// the agent dials the IP but checks this name instead.
	DefaultServerName = "fluidity-server"

	// DefaultCACommonName names the CA when CAOptions.CommonName is empty.
	DefaultCACommonName = "Fluidity CA"

	// backdate absorbs clock skew between the machine that mints a
	// certificate and the peers that verify it (a laptop and a fresh Fargate
	// task rarely agree to the second).
	backdate = time.Hour
)

// CAOptions configures NewCA. The zero value is usable.
type CAOptions struct {
	// CommonName defaults to DefaultCACommonName.
	CommonName string
	// Validity defaults to DefaultValidity; ignored when NotAfter is set.
	Validity time.Duration
	// NotBefore and NotAfter, when non-zero, override the computed window so
	// tests can mint expired or not-yet-valid certificates.
	NotBefore time.Time
	NotAfter  time.Time
}

// ServerOptions configures CA.IssueServer. The zero value is usable.
type ServerOptions struct {
	// ServerName is the primary DNS SAN (and the subject CN); defaults to
	// DefaultServerName.
	ServerName string
	// DNSNames and IPAddresses are extra SANs, for deployments where the
	// agent dials a stable name or address.
	DNSNames    []string
	IPAddresses []net.IP
	// Validity defaults to DefaultValidity; ignored when NotAfter is set.
	Validity  time.Duration
	NotBefore time.Time
	NotAfter  time.Time
	// ExtKeyUsage overrides the default (ServerAuth only). It exists so tests
	// can prove that a certificate minted for the wrong purpose is refused.
	ExtKeyUsage []x509.ExtKeyUsage
}

// ClientOptions configures CA.IssueClient.
type ClientOptions struct {
	// Name becomes the subject CN; required.
	Name string
	// Validity defaults to DefaultValidity; ignored when NotAfter is set.
	Validity  time.Duration
	NotBefore time.Time
	NotAfter  time.Time
	// ExtKeyUsage overrides the default (ClientAuth only); see
	// ServerOptions.ExtKeyUsage.
	ExtKeyUsage []x509.ExtKeyUsage
}

// KeyPair is a certificate and its private key.
type KeyPair struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// CA is a certificate authority able to issue Fluidity certificates. It
// embeds its own KeyPair, so ca.WriteFiles stores the CA itself.
type CA struct {
	KeyPair
}

// NewCA creates a self-signed CA with a fresh ECDSA P-256 key. The CA may
// sign leaf certificates only (MaxPathLen 0), never intermediates.
func NewCA(opts CAOptions) (*CA, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	cn := opts.CommonName
	if cn == "" {
		cn = DefaultCACommonName
	}
	notBefore, notAfter, err := window(opts.NotBefore, opts.NotAfter, opts.Validity, time.Time{})
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Fluidity"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse ca certificate: %w", err)
	}
	return &CA{KeyPair{Cert: cert, Key: key}}, nil
}

// NewCAFromKeyPair wraps an existing certificate and key as a CA after
// checking that the certificate really is a CA and that the key matches it.
func NewCAFromKeyPair(kp *KeyPair) (*CA, error) {
	if kp == nil || kp.Cert == nil || kp.Key == nil {
		return nil, errors.New("pki: ca needs both a certificate and a key")
	}
	if !kp.Cert.IsCA || kp.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("pki: certificate %q is not a ca", kp.Cert.Subject.CommonName)
	}
	if err := checkKeyMatches(kp.Cert, kp.Key); err != nil {
		return nil, err
	}
	return &CA{*kp}, nil
}

// CertPool returns a pool holding only this CA, suitable for both
// tls.Config.RootCAs (agent) and tls.Config.ClientCAs (server).
func (ca *CA) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

// IssueServer issues a server certificate (ExtKeyUsage ServerAuth only) for
// opts.ServerName plus any extra SANs.
func (ca *CA) IssueServer(opts ServerOptions) (*KeyPair, error) {
	name := opts.ServerName
	if name == "" {
		name = DefaultServerName
	}
	if err := CheckDNSName(name); err != nil {
		return nil, fmt.Errorf("pki: server name: %w", err)
	}
	dns := []string{name}
	for _, n := range opts.DNSNames {
		if err := CheckDNSName(n); err != nil {
			return nil, fmt.Errorf("pki: dns name: %w", err)
		}
		if !slices.Contains(dns, n) {
			dns = append(dns, n)
		}
	}
	var ips []net.IP
	for _, ip := range opts.IPAddresses {
		if ip == nil {
			return nil, errors.New("pki: nil ip address")
		}
		if !slices.ContainsFunc(ips, ip.Equal) {
			ips = append(ips, ip)
		}
	}
	eku := opts.ExtKeyUsage
	if eku == nil {
		eku = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name, Organization: []string{"Fluidity"}},
		DNSNames:    dns,
		IPAddresses: ips,
		ExtKeyUsage: eku,
	}
	return ca.issue(tmpl, opts.NotBefore, opts.NotAfter, opts.Validity)
}

// IssueClient issues a client certificate (ExtKeyUsage ClientAuth only) whose
// subject CN is opts.Name, so the server can tell agents apart in its logs.
func (ca *CA) IssueClient(opts ClientOptions) (*KeyPair, error) {
	if strings.TrimSpace(opts.Name) == "" {
		return nil, errors.New("pki: client name is empty")
	}
	eku := opts.ExtKeyUsage
	if eku == nil {
		eku = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: opts.Name, Organization: []string{"Fluidity"}},
		ExtKeyUsage: eku,
	}
	return ca.issue(tmpl, opts.NotBefore, opts.NotAfter, opts.Validity)
}

func (ca *CA) issue(tmpl *x509.Certificate, notBefore, notAfter time.Time, validity time.Duration) (*KeyPair, error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, errors.New("pki: ca is not initialised")
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter, err = window(notBefore, notAfter, validity, ca.Cert.NotAfter)
	if err != nil {
		return nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}

// TLSCertificate returns the pair in the form crypto/tls wants.
func (kp *KeyPair) TLSCertificate() (tls.Certificate, error) {
	if kp == nil || kp.Cert == nil || kp.Key == nil {
		return tls.Certificate{}, errors.New("pki: key pair needs both a certificate and a key")
	}
	if err := checkKeyMatches(kp.Cert, kp.Key); err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{
		Certificate: [][]byte{kp.Cert.Raw},
		PrivateKey:  kp.Key,
		Leaf:        kp.Cert,
	}, nil
}

// window computes a certificate's validity period. A leaf never outlives its
// issuer unless the caller asked for explicit dates (tests do).
func window(notBefore, notAfter time.Time, validity time.Duration, issuerNotAfter time.Time) (time.Time, time.Time, error) {
	if validity < 0 {
		return time.Time{}, time.Time{}, fmt.Errorf("pki: negative validity %s", validity)
	}
	if validity == 0 {
		validity = DefaultValidity
	}
	now := time.Now().Truncate(time.Second)
	if notBefore.IsZero() {
		notBefore = now.Add(-backdate)
	}
	if notAfter.IsZero() {
		notAfter = now.Add(validity)
		if !issuerNotAfter.IsZero() && notAfter.After(issuerNotAfter) {
			notAfter = issuerNotAfter
		}
	}
	if !notAfter.After(notBefore) {
		return time.Time{}, time.Time{}, fmt.Errorf("pki: not after (%s) is not after not before (%s)",
			notAfter.Format(time.RFC3339), notBefore.Format(time.RFC3339))
	}
	return notBefore, notAfter, nil
}

func newKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate key: %w", err)
	}
	return key, nil
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("pki: generate serial: %w", err)
		}
		// Zero is not a valid serial (RFC 5280 requires a positive integer).
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

func checkKeyMatches(cert *x509.Certificate, key crypto.Signer) error {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return fmt.Errorf("pki: private key does not match certificate %q", cert.Subject.CommonName)
	}
	return nil
}

// CheckDNSName rejects names that could never match a TLS server name, so a
// typo fails at issue time rather than at the first handshake. Wildcards are
// refused: Fluidity servers have one fixed name.
func CheckDNSName(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("invalid dns name %q", name)
	}
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("invalid dns name %q", name)
		}
		for _, r := range label {
			ok := r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
			if !ok {
				return fmt.Errorf("invalid dns name %q", name)
			}
		}
	}
	return nil
}
