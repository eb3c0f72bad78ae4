package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/awstest"
	"github.com/fluidity-tunnel/fluidity/internal/metrics/metricstest"
	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

// TestAgentMetrics runs the agent in-process with its admin listener against
// an in-process server, pushes an HTTP request, a CONNECT and a request to a
// closed port through the proxy, and checks that /metrics moved with them and
// passes promlint.
func TestAgentMetrics(t *testing.T) {
	dir := t.TempDir()
	ca, srvCert, cliFiles := writeCerts(t, dir)
	serverPort := startServer(t, ca, srvCert)
	const body = "counted"
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, body) }))
	defer target.Close()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedURL := "http://" + closed.Addr().String() + "/"
	closed.Close()

	proxyPort, adminPort, socksPort := awstest.FreePort(t), awstest.FreePort(t), awstest.FreePort(t)
	args := []string{
		"--server-ip", "127.0.0.1", "--server-port", strconv.Itoa(serverPort),
		"--local-proxy-port", strconv.Itoa(proxyPort),
		"--admin-listen", "127.0.0.1:" + strconv.Itoa(adminPort),
		"--socks-port", strconv.Itoa(socksPort),
		"--cert-file", cliFiles[0], "--key-file", cliFiles[1], "--ca-cert-file", filepath.Join(dir, "ca.crt"),
	}
	logs, _ := runAgent(t, args)
	metricsURL := "http://127.0.0.1:" + strconv.Itoa(adminPort) + "/metrics"
	proxyAddr := "127.0.0.1:" + strconv.Itoa(proxyPort)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s, _, err := metricstest.Fetch(metricsURL); err == nil && s.Value("fluidity_agent_sessions") == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent sessions never 2; log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	proxyURL, _ := url.Parse("http://" + proxyAddr)
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := hc.Get(target.URL)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != body {
		t.Fatalf("through the proxy: %d %q", resp.StatusCode, got)
	}
	resp, err = hc.Get(closedURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("closed port: status %d, want 502", resp.StatusCode)
	}
	connectThrough(t, proxyAddr, strings.TrimPrefix(target.URL, "http://"), body)
	socksThrough(t, "127.0.0.1:"+strconv.Itoa(socksPort), target.URL, body) // a CONNECT too
	stalledUpload(t, proxyAddr)

	s := metricstest.WaitFor(t, metricsURL, 5*time.Second, []metricstest.AtLeast{
		{Name: "fluidity_agent_streams_total", Labels: []string{"kind", "http"}, Min: 2},
		{Name: "fluidity_agent_streams_total", Labels: []string{"kind", "connect"}, Min: 2},
		{Name: "fluidity_agent_stream_bytes_total", Labels: []string{"kind", "http", "direction", "received"}, Min: float64(len(body))},
		{Name: "fluidity_agent_stream_bytes_total", Labels: []string{"kind", "connect", "direction", "received"}, Min: float64(len(body))},
		{Name: "fluidity_agent_stream_bytes_total", Labels: []string{"kind", "connect", "direction", "sent"}, Min: 1},
		{Name: "fluidity_agent_stream_outcomes_total", Labels: []string{"code", "ok"}, Min: 2},
		{Name: "fluidity_agent_stream_outcomes_total", Labels: []string{"code", "connection_refused"}, Min: 1},
		{Name: "fluidity_agent_stream_first_byte_seconds", Labels: []string{"kind", "http"}, Min: 1}, // not the failure
		{Name: "fluidity_agent_stream_first_byte_seconds", Labels: []string{"kind", "connect"}, Min: 1},
		{Name: "fluidity_agent_keepalive_rtt_seconds", Labels: nil, Min: 1},
		{Name: "fluidity_agent_sessions", Labels: nil, Min: 2},
		// The stalled upload: the agent's writer waited on the stream's window.
		{Name: "fluidity_agent_stream_write_stalls_total", Labels: []string{"kind", "connect"}, Min: 1},
		{Name: "fluidity_agent_stream_write_stall_seconds_total", Labels: []string{"kind", "connect"}, Min: stallHold.Seconds() / 3},
	}, []string{"fluidity_agent_streams_active", "kind", "connect"}, []string{"fluidity_agent_streams_active", "kind", "http"})
	if v := s.Value("fluidity_agent_sessions"); v != 2 {
		t.Errorf("fluidity_agent_sessions = %v, want 2", v)
	}
	for _, name := range []string{"go_goroutines", "fluidity_agent_session_write_stalls_total", "fluidity_agent_session_write_stall_seconds_total"} {
		if _, ok := s[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
}

// stallHold is how long stalledUpload's target waits before it reads.
const stallHold = 300 * time.Millisecond

// stalledUpload sends 16 MiB over CONNECT through the proxy to a target that
// reads only after stallHold. The kernel's buffers between the server and the
// target take a few MiB, the stream's window 256 KiB; then the agent's writer
// waits on the window until the target reads.
func stalledUpload(t *testing.T, proxyAddr string) {
	t.Helper()
	const size = 16 << 20
	addr, got := testbin.DiscardTarget(t, stallHold)
	c, err := net.DialTimeout("tcp", proxyAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	_, _ = io.WriteString(c, "CONNECT "+addr+" HTTP/1.1\r\nHost: "+addr+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatalf("CONNECT: %v", err)
	}
	// A 200 to CONNECT has no length: closing its body reads nothing.
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	if _, err := c.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	if n := <-got; n != size {
		t.Fatalf("stalled upload: the target received %d of %d bytes", n, size)
	}
}

// connectThrough opens a CONNECT tunnel through the proxy to addr and makes
// one HTTP request over it, expecting body.
func connectThrough(t *testing.T, proxyAddr, addr, body string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxyAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, "CONNECT "+addr+" HTTP/1.1\r\nHost: "+addr+"\r\n\r\n")
	br := bufio.NewReader(c)
	cresp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatalf("CONNECT: %v", err)
	}
	// A 200 to CONNECT has no length: closing its body reads nothing from br,
	// which carries the tunnel.
	defer cresp.Body.Close()
	if cresp.StatusCode != 200 {
		t.Fatalf("CONNECT: %s", cresp.Status)
	}
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+addr+"\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != body {
		t.Fatalf("over CONNECT: %q", got)
	}
}

// TestAgentStartsWithAdminPortTaken: an admin address already in use (a second
// agent, another program) turns metrics off with a warning; the proxy works.
func TestAgentStartsWithAdminPortTaken(t *testing.T) {
	dir := t.TempDir()
	ca, srvCert, cliFiles := writeCerts(t, dir)
	serverPort := startServer(t, ca, srvCert)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "still proxied") }))
	defer target.Close()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	proxyPort := awstest.FreePort(t)
	args := []string{
		"--server-ip", "127.0.0.1", "--server-port", strconv.Itoa(serverPort),
		"--local-proxy-port", strconv.Itoa(proxyPort),
		"--admin-listen", taken.Addr().String(),
		"--cert-file", cliFiles[0], "--key-file", cliFiles[1], "--ca-cert-file", filepath.Join(dir, "ca.crt"),
	}
	logs, _ := runAgent(t, args)
	proxyURL, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(proxyPort))
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), DisableKeepAlives: true}, Timeout: 5 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := hc.Get(target.URL)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) == "still proxied" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer through the agent: %v; log:\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "admin listener not started") {
		t.Errorf("no warning about the admin address; log:\n%s", logs.String())
	}
}
