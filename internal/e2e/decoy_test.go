package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDecoyWithCurl: the real server with decoy and decoy_page, probed by curl
// without a client certificate as a browser or a scanner would, answers like a
// web server over h2 and HTTP/1.1, naming nothing; curl with a certificate of
// another CA fails the handshake; the real agent gets its tunnel on the same
// port; and the refusal summary counts the decoys.
func TestDecoyWithCurl(t *testing.T) {
	t.Parallel()
	page := filepath.Join(t.TempDir(), "index.html")
	if err := os.WriteFile(page, []byte("<!doctype html><title>Welcome</title><p>Nothing to see.</p>\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, serverOpts{args: []string{"--decoy", "--decoy-page", page}})
	_, port, err := net.SplitHostPort(srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	base := "https://fluidity-server:" + port
	probe := []string{"--cacert", certPath("ca.crt"), "--resolve", "fluidity-server:" + port + ":127.0.0.1",
		"-D", "-", "-w", "\n%{http_code} %{http_version}"}
	for _, tc := range []struct {
		name string
		args []string
		want string // the -w line
		body string
	}{
		{"h2, the page", []string{"--http2", base + "/"}, "200 2", "Nothing to see."},
		{"h2, elsewhere", []string{"--http2", base + "/wp-login.php"}, "404 2", "404 Not Found"},
		{"HTTP/1.1", []string{"--http1.1", base + "/admin"}, "404 1.1", "404 Not Found"},
	} {
		out := string(mustCurl(t, append(probe, tc.args...)...))
		if !strings.HasSuffix(out, "\n"+tc.want) || !strings.Contains(out, tc.body) {
			t.Errorf("%s: curl got\n%s\nwant %q with %q", tc.name, out, tc.want, tc.body)
		}
		if lower := strings.ToLower(out); strings.Contains(lower, "fluidity") || strings.Contains(lower, "\nserver:") {
			t.Errorf("%s: the answer names the product or a server:\n%s", tc.name, out)
		}
	}
	_, err = runCurl(t, "--cacert", certPath("ca.crt"), "--resolve", "fluidity-server:"+port+":127.0.0.1",
		"--cert", filepath.Join(otherCADir, "other-agent.crt"), "--key", filepath.Join(otherCADir, "other-agent.key"),
		base+"/")
	if err == nil {
		t.Error("a certificate of another CA got an answer")
	}
	a := startAgent(t, srv.addr)
	a.waitProxied(t)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(srv.stderr.String(), `"decoy":`) {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal summary counting decoys:\n%s", srv.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
