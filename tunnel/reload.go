package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// ErrClientDenied is returned during the handshake with a client whose certificate
// is on the server's deny list.
var ErrClientDenied = errors.New("tunnel: client certificate denied")

// CertReloader holds a certificate, its key and a CA pool loaded from PEM files and
// reloads them when the files change, so certificates can be rotated without a
// restart: new sessions use the new files, sessions already up carry on.
type CertReloader struct {
	certFile, keyFile, caFile string
	log                       zerolog.Logger

	// tickets is shared by every client config, so that reconnects resume.
	tickets tls.ClientSessionCache

	mu    sync.RWMutex
	cert  *tls.Certificate
	pool  *x509.CertPool
	stamp string // modification times and sizes of the three files
}

// NewCertReloader loads the files once; it fails if they are unusable.
func NewCertReloader(certFile, keyFile, caFile string, log zerolog.Logger) (*CertReloader, error) {
	r := &CertReloader{certFile: certFile, keyFile: keyFile, caFile: caFile, log: log,
		tickets: tls.NewLRUClientSessionCache(8)}
	if _, err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *CertReloader) fileStamp() (string, error) {
	var b strings.Builder
	for _, f := range []string{r.certFile, r.keyFile, r.caFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s:%d:%d;", f, fi.ModTime().UnixNano(), fi.Size())
	}
	return b.String(), nil
}

// Reload reads the files again if they changed since the last load and reports
// whether it replaced anything. On error the previous certificates stay in use.
func (r *CertReloader) Reload() (bool, error) {
	stamp, err := r.fileStamp()
	if err != nil {
		return false, fmt.Errorf("tunnel: certificates: %w", err)
	}
	r.mu.RLock()
	same := stamp == r.stamp
	r.mu.RUnlock()
	if same {
		return false, nil
	}
	cert, pool, err := loadPair(r.certFile, r.keyFile, r.caFile)
	if err != nil {
		return false, err
	}
	r.mu.Lock()
	r.cert, r.pool, r.stamp = &cert, pool, stamp
	r.mu.Unlock()
	return true, nil
}

// Run checks the files every interval until ctx ends, logging each reload and
// each failed attempt (which keeps the old certificates).
func (r *CertReloader) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			changed, err := r.Reload()
			switch {
			case err != nil:
				r.log.Warn().Err(err).Msg("certificate reload failed; keeping the current ones")
			case changed:
				r.log.Info().Str("cert_file", r.certFile).Msg("certificates reloaded")
			}
		}
	}
}

func (r *CertReloader) current() (*tls.Certificate, *x509.CertPool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cert, r.pool
}

// ServerTLSConfig returns a server configuration (as NewServerTLSConfig) that
// picks up reloaded files at every handshake and refuses clients on deny: each
// entry is a certificate serial number in hex or a subject common name, so a lost
// laptop's certificate can be revoked without re-issuing the CA.
func (r *CertReloader) ServerTLSConfig(deny []string) *tls.Config {
	denied := make(map[string]bool, len(deny))
	for _, d := range deny {
		denied[strings.ToLower(strings.TrimSpace(d))] = true
	}
	base := NewServerTLSConfig(tls.Certificate{}, nil)
	base.Certificates = nil
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, pool := r.current()
		cfg := NewServerTLSConfig(*cert, pool)
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return checkDenied(cs, denied)
		}
		return cfg, nil
	}
	// Validate() inspects these fields of the outer config.
	return base
}

func checkDenied(cs tls.ConnectionState, denied map[string]bool) error {
	if len(denied) == 0 || len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	if denied[strings.ToLower(leaf.SerialNumber.Text(16))] || denied[strings.ToLower(leaf.Subject.CommonName)] {
		return fmt.Errorf("%w: %s", ErrClientDenied, certIdentity(leaf))
	}
	return nil
}

// ClientTLSConfig returns a client configuration (as NewClientTLSConfig) built
// from the current files; call it for every dial so that reloads take effect. The
// session ticket cache is shared across calls.
func (r *CertReloader) ClientTLSConfig(serverName string) *tls.Config {
	cert, pool := r.current()
	cfg := NewClientTLSConfig(*cert, pool, serverName)
	cfg.ClientSessionCache = r.tickets
	return cfg
}
