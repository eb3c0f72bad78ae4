package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/fluidity-tunnel/fluidity/internal/pki"
)

// DefaultServerName is the name the server certificate carries and the agent
// verifies. The server's IP changes on every start, so the name, not the address,
// is what identifies it.
const DefaultServerName = pki.DefaultServerName // one name for the issuer and the verifier

// NewServerTLSConfig returns the server side of the tunnel's mutual TLS: TLS 1.3
// only, client certificates required and verified against clientCAs.
func NewServerTLSConfig(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCAs,
	}
}

// NewClientTLSConfig returns the agent side: TLS 1.3 only, the server verified
// against rootCAs for serverName whatever address is dialled, and session tickets
// cached so that reconnecting costs one round trip less.
func NewClientTLSConfig(cert tls.Certificate, rootCAs *x509.CertPool, serverName string) *tls.Config {
	if serverName == "" {
		serverName = DefaultServerName
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{cert},
		RootCAs:            rootCAs,
		ServerName:         serverName,
		ClientSessionCache: tls.NewLRUClientSessionCache(8),
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
	if cfg.ServerName == "" {
		// As tls.Dialer does: verify the dialled host.
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tunnel: dial server %s: %w", addr, err)
	}
	return conn, nil
}
