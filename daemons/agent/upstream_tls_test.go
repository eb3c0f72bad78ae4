package main

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/config"
	"github.com/fluidity-tunnel/fluidity/internal/upstream"
	"github.com/fluidity-tunnel/fluidity/lifecycle"
)

// TestUpstreamProxyCA: an https:// upstream proxy whose certificate comes from
// a CA the system does not know is refused, and trusted with
// upstream_proxy_ca_file naming that CA; the Wake API call then goes through it.
func TestUpstreamProxyCA(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"state":"sleeping","desired_count":0}`)
	}))
	defer api.Close()
	var tunnels atomic.Int32
	proxy := httptest.NewUnstartedServer(connectHandler(&tunnels))
	proxy.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted case's handshake failure
	proxy.StartTLS()
	defer proxy.Close()
	caFile := filepath.Join(t.TempDir(), "corp-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: proxy.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	wake := func(caFile string) error {
		tcfg, err := upstreamTLS(caFile)
		if err != nil {
			t.Fatal(err)
		}
		route, err := upstream.New(upstream.Config{Proxy: proxy.URL, TLS: tcfg})
		if err != nil {
			t.Fatal(err)
		}
		defer route.Close()
		c := &lifecycle.APIClient{Endpoint: api.URL, APIKey: "k", HTTPClient: apiHTTPClient(route, 0)}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = c.Wake(ctx)
		return err
	}
	if err := wake(""); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without upstream_proxy_ca_file: Wake = %v, want a certificate error", err)
	}
	if err := wake(caFile); err != nil {
		t.Fatalf("with upstream_proxy_ca_file: Wake = %v", err)
	}
	if n := tunnels.Load(); n != 1 {
		t.Errorf("%d tunnels through the proxy, want 1", n)
	}
}

func TestUpstreamTLSRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	noPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(noPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, file := range map[string]string{"missing": filepath.Join(dir, "absent.pem"), "no PEM": noPEM} {
		_, err := upstreamTLS(file)
		var fe *config.FieldError
		if !errors.As(err, &fe) || fe.Key != "upstream_proxy_ca_file" {
			t.Errorf("%s: upstreamTLS = %v, want an error naming upstream_proxy_ca_file", name, err)
		}
	}
	if c, err := upstreamTLS(""); c != nil || err != nil {
		t.Errorf("upstreamTLS(\"\") = %v, %v; want nil, nil (the system's roots)", c, err)
	}
}
