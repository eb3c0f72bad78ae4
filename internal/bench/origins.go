package bench

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/fluidity-tunnel/fluidity/internal/pki"
)

// OriginCount is how many HTTPS origins the target serves: one per origin
// of the page-load figure's page.
const OriginCount = 6

// Origins are the target's HTTPS listeners: the same routes as the plain
// target, over TLS 1.3 with a certificate for 127.0.0.1, one listener per
// origin of a page (browsers keep one set of connections per origin).
type Origins struct {
	Addrs []string
	Roots *x509.CertPool
	srv   *http.Server
}

func startOrigins(h http.Handler, n int) (*Origins, error) {
	ca, err := pki.NewCA(pki.CAOptions{})
	if err != nil {
		return nil, err
	}
	kp, err := ca.IssueServer(pki.ServerOptions{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		return nil, err
	}
	cert, err := kp.TLSCertificate()
	if err != nil {
		return nil, err
	}
	o := &Origins{Roots: ca.CertPool(), srv: &http.Server{
		Handler:   h,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}},
		// HTTP/1.1 only, as the page-load figure's browser-like client speaks.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}}
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			o.close()
			return nil, err
		}
		o.Addrs = append(o.Addrs, ln.Addr().String())
		go func() {
			if err := o.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fmt.Println("target origin:", err)
			}
		}()
	}
	return o, nil
}

// ClientConfig is the TLS configuration a client of the origins uses.
func (o *Origins) ClientConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: o.Roots, ClientSessionCache: tls.NewLRUClientSessionCache(64)}
}

func (o *Origins) close() { o.srv.Close() }
