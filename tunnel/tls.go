package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/pki"
)

// DefaultServerName is the name the server certificate carries and the agent
// verifies. The server's IP changes on every start, so the name, not the address,
// is what identifies it.
const DefaultServerName = pki.DefaultServerName // one name for the issuer and the verifier

// ALPN is what both ends offer for application protocols: what browsers send
// (and what an ordinary HTTPS server accepts), so that neither the agent's
// ClientHello nor the server's answer to one stands out. The tunnel itself
// ignores the protocol negotiated; a decoy answer (DecoyConfig) speaks it.
var ALPN = []string{"h2", "http/1.1"}

// NewServerTLSConfig returns the server side of the tunnel's mutual TLS: TLS 1.3
// only, client certificates required and verified against clientCAs, and the
// application protocols of an ordinary HTTPS server (ALPN), of which it picks h2
// when the client offers it, as such a server does.
func NewServerTLSConfig(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCAs,
		NextProtos:   slices.Clone(ALPN),
	}
}

// ErrServerCertificate wraps every refusal of the server's certificate by the
// agent's verification (see NewClientTLSConfig); the x509 error is wrapped too.
var ErrServerCertificate = errors.New("tunnel: server certificate refused")

// NewClientTLSConfig returns the agent side: TLS 1.3 only, the server verified
// against rootCAs for serverName (DefaultServerName if empty) whatever address
// is dialled, ALPN as browsers send it, and session tickets cached so that
// reconnecting costs one round trip less.
//
// The ClientHello carries no server name (SNI) unless the caller sets one in the
// returned config's ServerName: that field only says what an observer of the
// ClientHello reads, never what is verified. Go's TLS client sends no SNI only
// with InsecureSkipVerify, so the config sets it, and verifies in
// VerifyConnection instead, exactly as strictly as Go would: the whole chain
// against rootCAs (never the system roots; a nil pool refuses every server),
// server-auth usage, serverName among the SANs, every certificate valid now. It
// fails closed: no certificate, or any error, ends the handshake. A resumed
// session is verified again in the same way.
func NewClientTLSConfig(cert tls.Certificate, rootCAs *x509.CertPool, serverName string) *tls.Config {
	return newClientTLSConfig(cert, rootCAs, serverName, time.Now)
}

// newClientTLSConfig is NewClientTLSConfig checking validity at now(), for tests
// on a fake clock.
func newClientTLSConfig(cert tls.Certificate, rootCAs *x509.CertPool, serverName string, now func() time.Time) *tls.Config {
	if serverName == "" {
		serverName = DefaultServerName
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// Not consulted (InsecureSkipVerify), but kept so the config says which
		// CA it trusts.
		RootCAs:            rootCAs,
		NextProtos:         slices.Clone(ALPN),
		InsecureSkipVerify: true, // #nosec G402 -- only so that no SNI is sent; verifyServer (VerifyConnection) checks the chain and the name
		VerifyConnection:   verifyServer(rootCAs, serverName, now),
		ClientSessionCache: tls.NewLRUClientSessionCache(8),
	}
}

// verifyServer is the server verification crypto/tls would do with RootCAs and
// ServerName set, done by hand because InsecureSkipVerify turns Go's off.
func verifyServer(roots *x509.CertPool, serverName string, now func() time.Time) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if roots == nil {
			// x509 would fall back to the system roots: never for the tunnel.
			return fmt.Errorf("%w: no CA to verify it against", ErrServerCertificate)
		}
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: the server sent none", ErrServerCertificate)
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
			Roots:         roots,
			Intermediates: inter,
			DNSName:       serverName,
			CurrentTime:   now(),
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err != nil {
			return fmt.Errorf("%w: %w", ErrServerCertificate, err)
		}
		return nil
	}
}

// LoadServerTLSConfig reads PEM files and returns NewServerTLSConfig's result.
func LoadServerTLSConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, pool, err := loadPair(certFile, keyFile, caFile)
	if err != nil {
		return nil, err
	}
	return NewServerTLSConfig(cert, pool), nil
}

// LoadClientTLSConfig reads PEM files and returns NewClientTLSConfig's result.
func LoadClientTLSConfig(certFile, keyFile, caFile, serverName string) (*tls.Config, error) {
	cert, pool, err := loadPair(certFile, keyFile, caFile)
	if err != nil {
		return nil, err
	}
	return NewClientTLSConfig(cert, pool, serverName), nil
}

func loadPair(certFile, keyFile, caFile string) (tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("tunnel: load key pair: %w", err)
	}
	pool, err := LoadCertPool(caFile)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return cert, pool, nil
}

// LoadCertPool reads a PEM file of CA certificates.
func LoadCertPool(caFile string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tunnel: read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tunnel: no certificate in CA file %s", caFile)
	}
	return pool, nil
}

// DialTLS dials addr over TCP and completes the TLS handshake, both within ctx.
func DialTLS(ctx context.Context, addr string, cfg *tls.Config) (net.Conn, error) {
	return DialTLSWith(ctx, &net.Dialer{}, addr, cfg)
}

// DialTLSWith is DialTLS over the connection dialer makes, e.g. a tunnel
// through the agent's upstream proxy: TLS end to end with the server, the
// proxy seeing only encrypted bytes.
func DialTLSWith(ctx context.Context, dialer ContextDialer, addr string, cfg *tls.Config) (net.Conn, error) {
	if cfg == nil {
		return nil, errors.New("tunnel: DialTLS needs a TLS config")
	}
	if dialer == nil {
		return nil, errors.New("tunnel: DialTLSWith needs a dialer")
	}
	raw, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tunnel: dial server %s: %w", addr, err)
	}
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		// As tls.Dialer does: verify the dialled host. Not for a config that
		// verifies for itself (NewClientTLSConfig): its empty ServerName means
		// no SNI.
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	// corkConn: the session's batching writer sends each flush's TLS records
	// in one write rather than one per 16 KiB record (an upload's cost).
	conn := tls.Client(&corkConn{Conn: raw}, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tunnel: dial server %s: %w", addr, err)
	}
	return conn, nil
}
