package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rs/zerolog"
)

// ErrClientDenied is returned during the handshake with a client whose certificate
// is on the server's deny list.
var ErrClientDenied = errors.New("tunnel: client certificate denied")

// CertReloader holds a certificate, its key and a CA pool loaded from PEM files and
// reloads them when the files change, so certificates can be rotated without a
// restart: new sessions use the new files, sessions already up carry on. Made by
// NewCertReloaderFromPEM it holds PEM text given once instead, and never reloads;
// its TLS configurations, deny list included, are the same.
type CertReloader struct {
	certFile, keyFile, caFile string
	static                    bool // from PEM text: nothing to reload
	log                       zerolog.Logger

	// tickets is shared by every client config, so that reconnects resume.
	tickets tls.ClientSessionCache

	mu    sync.RWMutex
	cert  *tls.Certificate
	pool  *x509.CertPool
	stamp string // modification times and sizes of the three files
	sni   string // server name in the client configs' ClientHellos; "" for none
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

// NewCertReloaderFromPEM holds certificates given as PEM text (for secrets passed
// in the environment, as on Fargate) rather than files. Reload and Run do nothing;
// ServerTLSConfig and ClientTLSConfig work as for files.
func NewCertReloaderFromPEM(certPEM, keyPEM, caPEM []byte, log zerolog.Logger) (*CertReloader, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tunnel: key pair: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("tunnel: no certificate in the CA PEM")
	}
	return &CertReloader{static: true, log: log, tickets: tls.NewLRUClientSessionCache(8),
		cert: &cert, pool: pool}, nil
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
	if r.static {
		return false, nil
	}
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
// each failed attempt (which keeps the old certificates). Without files (see
// NewCertReloaderFromPEM) it returns at once.
func (r *CertReloader) Run(ctx context.Context, interval time.Duration) {
	if r.static {
		return
	}
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
// picks up reloaded files at every handshake and refuses clients on deny, so a
// lost laptop's certificate can be revoked without re-issuing the CA. Each entry
// is a certificate serial number or a subject common name (see parseDenyList);
// entries that are neither are logged as warnings, naming them.
func (r *CertReloader) ServerTLSConfig(deny []string) *tls.Config {
	denied, warnings := parseDenyList(deny)
	for _, w := range warnings {
		r.log.Warn().Str("entry", w.entry).Str("problem", w.problem).
			Msg("deny_clients entry is neither a certificate serial number nor a plausible common name; it is matched as a common name only")
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

// denyList is deny_clients parsed: serial numbers in one canonical form (big.Int
// in lower-case hex without leading zeros, as certIdentity prints them) and common
// names in lower case.
type denyList struct {
	serials map[string]bool
	names   map[string]bool
}

// denyWarning is an entry of deny_clients that is probably a mistake.
type denyWarning struct{ entry, problem string }

// maxCommonName is the X.509 upper bound on a common name (RFC 5280, ub-common-name).
const maxCommonName = 64

// parseDenyList reads deny_clients entries (surrounding space ignored):
//
//   - a serial number, in any form openssl and browsers print it: hex digits
//     (A8249F, a8249f), with leading zero bytes (00a8249f), with 0x (0xa8249f),
//     as openssl x509 -serial prints it (serial=A8249F), or as hex pairs separated
//     by colons (a8:24:9f, as openssl x509 -text prints it) or spaces (a8 24 9f);
//     all are the same number and match the certificate whatever form it was
//     written in;
//   - otherwise a subject common name, matched case-insensitively.
//
// A bare hex entry (A8249F, or pairs separated by spaces) is also matched as a
// common name, since names such as "cafe" are hex too. An entry marked as a serial
// (serial=, 0x, colons) that is not valid hex, and an entry that is not a plausible
// common name (empty, over 64 characters, control characters or invalid UTF-8, or
// an '=' as in a pasted distinguished name "CN=alice"), are returned as warnings;
// they are still matched as common names, which can only refuse more.
func parseDenyList(entries []string) (denyList, []denyWarning) {
	d := denyList{serials: map[string]bool{}, names: map[string]bool{}}
	var warnings []denyWarning
	for _, raw := range entries {
		e := strings.TrimSpace(raw)
		serial, marked, ok := parseSerial(e)
		switch {
		case ok:
			d.serials[serial.Text(16)] = true
			if marked {
				continue
			}
		case marked:
			warnings = append(warnings, denyWarning{e, "written as a serial number (serial=, 0x or colons) but not hex bytes"})
		default:
			if problem := implausibleName(e); problem != "" {
				warnings = append(warnings, denyWarning{e, problem})
			}
		}
		if e != "" {
			d.names[strings.ToLower(e)] = true
		}
	}
	return d, warnings
}

// parseSerial reads s as a serial number. marked reports a form that can only be
// a serial: a serial= or 0x prefix, or colons.
func parseSerial(s string) (serial *big.Int, marked, ok bool) {
	if len(s) >= len("serial=") && strings.EqualFold(s[:len("serial=")], "serial=") {
		s, marked = strings.TrimSpace(s[len("serial="):]), true
	}
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		s, marked = s[2:], true
	}
	var groups []string
	switch {
	case strings.Contains(s, ":"):
		groups, marked = strings.Split(s, ":"), true
	case strings.ContainsAny(s, " \t"):
		groups = strings.Fields(s)
	}
	if groups != nil {
		// openssl always prints two digits per byte; anything else is a typo.
		for _, g := range groups {
			if len(g) != 2 {
				return nil, marked, false
			}
		}
		s = strings.Join(groups, "")
	}
	if s == "" || strings.Trim(s, "0123456789abcdefABCDEF") != "" {
		return nil, marked, false
	}
	serial, ok = new(big.Int).SetString(s, 16)
	return serial, marked, ok
}

// implausibleName says why e cannot be a certificate's common name, or "".
func implausibleName(e string) string {
	switch {
	case e == "":
		return "empty entry"
	case !utf8.ValidString(e):
		return "not valid UTF-8"
	case strings.IndexFunc(e, unicode.IsControl) >= 0:
		return "contains control characters"
	case utf8.RuneCountInString(e) > maxCommonName:
		return "longer than 64 characters, the X.509 limit for a common name"
	case strings.Contains(e, "="):
		return "contains '=': write the common name alone (alice, not CN=alice)"
	}
	return ""
}

func checkDenied(cs tls.ConnectionState, d denyList) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	if d.serials[leaf.SerialNumber.Text(16)] || d.names[strings.ToLower(leaf.Subject.CommonName)] {
		return fmt.Errorf("%w: %s", ErrClientDenied, certIdentity(leaf))
	}
	return nil
}

// ClientTLSConfig returns a client configuration (as NewClientTLSConfig) built
// from the current files; call it for every dial so that reloads take effect. The
// session ticket cache is shared across calls. Its ClientHello carries the
// server name SetClientSNI set, none by default; serverName is what the server
// certificate is verified for, whatever the SNI says.
func (r *CertReloader) ClientTLSConfig(serverName string) *tls.Config {
	r.mu.RLock()
	cert, pool, sni := r.cert, r.pool, r.sni
	r.mu.RUnlock()
	cfg := NewClientTLSConfig(*cert, pool, serverName)
	cfg.ClientSessionCache = r.tickets
	cfg.ServerName = sni
	return cfg
}

// SetClientSNI sets the server name (SNI) the ClientHellos of ClientTLSConfig's
// configurations carry in clear text: empty, the default, sends none, so that
// nothing names the product to an observer; or a name of the user's choosing. It
// changes nothing in what is verified. An IP address is never sent as SNI (RFC
// 6066), so one here means none.
func (r *CertReloader) SetClientSNI(sni string) {
	r.mu.Lock()
	r.sni = sni
	r.mu.Unlock()
}
