package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// TunnelTransport returns an HTTP/1.1 transport whose every connection is a
// stream opened with p.Dial (a CONNECT tunnel, a SOCKS stream or a TCP
// connection), as a browser reaches https:// origins through a proxy. With
// tlsCfg set, https:// URLs run TLS to the target inside that stream.
func (p *Path) TunnelTransport(conns int, tlsCfg *tls.Config) *http.Transport {
	return &http.Transport{
		DialContext:         func(ctx context.Context, _, addr string) (net.Conn, error) { return p.Dial(ctx, addr) },
		TLSClientConfig:     tlsCfg,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1, one request at a time per connection
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
}

// TunnelLoad is SmallLoad with every connection a stream opened with p.Dial
// (CONNECT for Fluidity, SOCKS for ssh -D) instead of plain proxy requests.
// With tlsCfg set it runs HTTPS to addr (one of the target's Origins) inside
// each stream.
func TunnelLoad(ctx context.Context, p *Path, addr string, tlsCfg *tls.Config, conns int, dur time.Duration, measuring func()) (float64, []time.Duration, error) {
	tr := p.TunnelTransport(conns, tlsCfg)
	defer tr.CloseIdleConnections()
	scheme := "http://"
	if tlsCfg != nil {
		scheme = "https://"
	}
	return keepAliveLoad(ctx, &http.Client{Transport: tr, Timeout: 10 * time.Second}, scheme+addr+"/small", conns, dur, measuring)
}

// Page is the page-load figure's page: one HTML document from the first
// origin, then Subresources spread evenly over every origin, fetched as a
// browser does over HTTP/1.1: one connection per origin, each origin's
// requests one after another on it, the origins in parallel.
const (
	PageHTMLBytes   = 32 << 10
	Subresources    = 30
	SubresourceSize = 16 << 10
	PageRequests    = 1 + Subresources
)

// PageLoads loads the page n times, one load after another, each with fresh
// connections (a new tunnel and TLS handshake per origin; TLS sessions are
// resumed, as a browser's would be), and returns each load's time.
func PageLoads(ctx context.Context, p *Path, origins []string, tlsCfg *tls.Config, n int) ([]time.Duration, error) {
	var out []time.Duration
	for range n {
		d, err := pageLoad(ctx, p, origins, tlsCfg)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func pageLoad(ctx context.Context, p *Path, origins []string, tlsCfg *tls.Config) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tr := p.TunnelTransport(1, tlsCfg)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	start := time.Now()
	if err := get(ctx, client, fmt.Sprintf("https://%s/bulk?n=%d", origins[0], PageHTMLBytes)); err != nil {
		return 0, fmt.Errorf("page html: %w", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(origins))
	for i, o := range origins {
		wg.Go(func() {
			for j := i; j < Subresources && errs[i] == nil; j += len(origins) {
				errs[i] = get(ctx, client, fmt.Sprintf("https://%s/bulk?n=%d", o, SubresourceSize))
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	for _, err := range errs {
		if err != nil {
			return 0, fmt.Errorf("page subresource: %w", err)
		}
	}
	return d, nil
}
