package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/fluidity-tunnel/fluidity/internal/config"
)

// upstreamTLS is the TLS configuration for an https:// upstream proxy: nil
// (the system's roots) unless caFile names CA certificates to trust as well.
// Corporate proxies often present a certificate from an internal CA that a
// managed laptop's system store has and a person's own machine lacks.
func upstreamTLS(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return nil, &config.FieldError{Key: "upstream_proxy_ca_file", Err: err}
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		// No system store (some minimal containers): the file alone.
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, &config.FieldError{Key: "upstream_proxy_ca_file", Err: fmt.Errorf("%s: %w", caFile, errNoCerts)}
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

var errNoCerts = errors.New("no PEM certificates in the file")
