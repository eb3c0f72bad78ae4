package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// TestServeDecoy: with decoy and decoy_page set, a browser without a client
// certificate gets the page at / and a 404 elsewhere, over h2, while an agent
// with its certificate gets its session on the same port.
func TestServeDecoy(t *testing.T) {
	ca, env, port := pemServer(t)
	page := filepath.Join(t.TempDir(), "index.html")
	if err := os.WriteFile(page, []byte("<html><body>Hello</body></html>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env = append(env, "FLUIDITY_SERVER_DECOY=true", "FLUIDITY_SERVER_DECOY_PAGE="+page)
	defer runServer(t, env, nil)()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.CertPool(), ServerName: tunnel.DefaultServerName}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	browser := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	get := func(path string) (int, string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			resp, err := browser.Get("https://" + addr + path)
			if err == nil {
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if resp.ProtoMajor != 2 {
					t.Errorf("%s over %s, want h2", path, resp.Proto)
				}
				return resp.StatusCode, string(b)
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // the server is starting
		}
	}
	if code, body := get("/"); code != 200 || !strings.Contains(body, "Hello") {
		t.Errorf("GET / = %d %q, want the page", code, body)
	}
	if code, body := get("/login"); code != 404 || strings.Contains(strings.ToLower(body), "fluidity") {
		t.Errorf("GET /login = %d %q, want a plain 404", code, body)
	}
	client := agentClient(t, ca, port, 0)
	defer client.Close()
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	if err := client.Connect(cctx); err != nil {
		t.Fatalf("the agent got no session beside the decoy: %v", err)
	}
}

// TestDecoyPageRefused: a decoy_page that cannot be served stops the start,
// naming the key.
func TestDecoyPageRefused(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.html")
	if err := os.WriteFile(big, make([]byte, maxDecoyPage+1), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.html")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"missing": filepath.Join(dir, "none.html"), "over 1 MiB": big, "empty": empty} {
		cfg := defaultConfig()
		cfg.Decoy, cfg.DecoyPage = true, path
		if _, err := decoyConfig(cfg); err == nil || !strings.Contains(err.Error(), "decoy_page") {
			t.Errorf("%s: %v, want an error naming decoy_page", name, err)
		}
	}
}
