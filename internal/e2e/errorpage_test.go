package e2e

import (
	"bufio"
	"bytes"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// curlPage fetches url through the agent at proxy as a browser (Accept:
// text/html) or as a program would, and returns the answer with its body,
// read and closed.
//
//bodyclose:handled
func curlPage(t *testing.T, proxy, url string, browser bool) (*http.Response, string) {
	t.Helper()
	args := []string{"-i", "-x", proxy, url}
	if browser {
		args = append(args, "-H", "Accept: text/html,application/xhtml+xml,*/*;q=0.8")
	}
	out := mustCurl(t, args...)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
	if err != nil {
		t.Fatalf("parse curl output: %v\n%s", err, out)
	}
	defer resp.Body.Close()
	var body strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&body)
	return resp, body.String()
}

// TestErrorPages: the agent's pages for failed requests, from the real
// binaries: a refused target, and a tunnel down because the server rejects
// the agent's certificate or the agent the server's.
func TestErrorPages(t *testing.T) {
	t.Parallel()
	t.Run("TargetRefused", func(t *testing.T) {
		t.Parallel()
		s := newStack(t, stackOpts{})
		target := closedAddr(t, "127.0.0.11")
		resp, body := curlPage(t, s.agent.proxyURL.String(), "http://"+target+"/some/path", true)
		if resp.StatusCode != 502 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
			resp.Header.Get("X-Fluidity-Error") != "connection_refused" {
			t.Fatalf("browser: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("X-Fluidity-Error"))
		}
		if !strings.Contains(body, "<h1>127.0.0.11 refused the connection</h1>") {
			t.Errorf("page does not say what happened:\n%s", body)
		}
		resp, body = curlPage(t, s.agent.proxyURL.String(), "http://"+target+"/some/path", false)
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") ||
			!strings.HasPrefix(body, "fluidity: 502 Bad Gateway (connection_refused): 127.0.0.11 refused the connection\n") {
			t.Errorf("curl: %q\n%s", resp.Header.Get("Content-Type"), body)
		}
		if strings.Contains(s.agent.stderr.String(), "/some/path") {
			t.Error("the agent logged the request's path")
		}
	})
	t.Run("CertificateRejected", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, serverOpts{})
		a := startAgent(t, srv.addr,
			"--cert-file", filepath.Join(otherCADir, "other-agent.crt"), "--key-file", filepath.Join(otherCADir, "other-agent.key"))
		// In TLS 1.3 the server refuses a client certificate after the agent's
		// side of the handshake: the first request already carries the alert.
		resp, body := curlPage(t, a.proxyURL.String(), pingTarget.URL+"/", true)
		if resp.StatusCode != 502 || !strings.Contains(body, "rejected this agent&#39;s certificate") {
			t.Errorf("%d, want 502 and a page saying the server rejected the agent's certificate:\n%s", resp.StatusCode, body)
		}
	})
	t.Run("ServerCertificateRejected", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, serverOpts{})
		a := startAgent(t, srv.addr, "--ca-cert-file", filepath.Join(otherCADir, "ca.crt"))
		resp, body := curlPage(t, a.proxyURL.String(), pingTarget.URL+"/", false)
		if resp.StatusCode != 502 || !strings.Contains(body, "The server's certificate was rejected") {
			t.Errorf("%d, want 502 and a text saying the agent rejected the server's certificate:\n%s", resp.StatusCode, body)
		}
	})
}
