package bench

import (
	"fmt"
	"strings"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// WAN inserts user-space delay proxies (toxiproxy latency toxics) on
// loopback.
type WAN struct {
	srv     *toxiproxy.ApiServer
	proxies []*toxiproxy.Proxy
}

// NewWAN returns an empty set of delay proxies.
func NewWAN() *WAN {
	return &WAN{srv: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())}
}

// Add starts a proxy to upstream that delays each direction by oneWay and
// returns its listening address.
func (w *WAN) Add(name, upstream string, oneWay time.Duration) (string, error) {
	p := toxiproxy.NewProxy(w.srv, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		return "", fmt.Errorf("toxiproxy %s: %w", name, err)
	}
	w.proxies = append(w.proxies, p)
	for _, dir := range []string{"upstream", "downstream"} {
		js := fmt.Sprintf(`{"name":"latency_%s","type":"latency","stream":"%s","attributes":{"latency":%d}}`,
			dir, dir, oneWay.Milliseconds())
		if _, err := p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
			return "", fmt.Errorf("toxiproxy %s: %w", name, err)
		}
	}
	return p.Listen, nil
}

// Close stops every proxy and drops its connections.
func (w *WAN) Close() {
	for _, p := range w.proxies {
		p.Stop()
	}
}
