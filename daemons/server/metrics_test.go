package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/awstest"
	"github.com/fluidity-tunnel/fluidity/internal/metrics/metricstest"
	"github.com/fluidity-tunnel/fluidity/internal/testbin"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// TestServerMetrics runs the server in-process with its admin listener, pushes
// an HTTP request, a CONNECT, a request to a closed port and a connection that
// is not TLS through it, and checks that /metrics moved with them and passes
// promlint.
func TestServerMetrics(t *testing.T) {
	ca, env, port := pemServer(t)
	adminPort := awstest.FreePort(t)
	env = append(env,
		"FLUIDITY_SERVER_ADMIN_LISTEN=127.0.0.1:"+strconv.Itoa(adminPort),
		"FLUIDITY_SERVER_ALLOW_CIDRS=127.0.0.0/8",
	)
	defer runServer(t, env, nil)()

	const body = "counted by the server"
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, body) }))
	defer target.Close()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedURL := "http://" + closed.Addr().String() + "/"
	closed.Close()

	client := agentClient(t, ca, port, 1)
	defer client.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := client.RoundTrip(mustGet(target.URL))
		if err == nil {
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(got) != body {
				t.Fatalf("body %q", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if resp, err := client.RoundTrip(mustGet(closedURL)); err == nil {
		resp.Body.Close()
		t.Fatal("request to a closed port succeeded")
	}
	conn, err := client.DialContext(context.Background(), "tcp", strings.TrimPrefix(target.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if raw, _ := io.ReadAll(conn); !strings.Contains(string(raw), body) {
		t.Fatalf("over CONNECT: %q", raw)
	}
	conn.Close()
	stalledDownload(t, client)
	// Not TLS: a failed handshake.
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if plain, err := net.Dial("tcp", addr); err == nil {
		_, _ = io.WriteString(plain, "GET / HTTP/1.0\r\n\r\n")
		_, _ = io.Copy(io.Discard, plain)
		plain.Close()
	}

	metricsURL := "http://127.0.0.1:" + strconv.Itoa(adminPort) + "/metrics"
	s := metricstest.WaitFor(t, metricsURL, 5*time.Second, []metricstest.AtLeast{
		{Name: "fluidity_server_streams_total", Labels: []string{"kind", "http"}, Min: 2},
		{Name: "fluidity_server_streams_total", Labels: []string{"kind", "connect"}, Min: 1},
		{Name: "fluidity_server_stream_bytes_total", Labels: []string{"kind", "http", "direction", "sent"}, Min: float64(len(body))},
		{Name: "fluidity_server_stream_bytes_total", Labels: []string{"kind", "connect", "direction", "sent"}, Min: float64(len(body))},
		{Name: "fluidity_server_stream_bytes_total", Labels: []string{"kind", "connect", "direction", "received"}, Min: 1},
		{Name: "fluidity_server_stream_outcomes_total", Labels: []string{"code", "ok"}, Min: 2},
		{Name: "fluidity_server_stream_outcomes_total", Labels: []string{"code", "connection_refused"}, Min: 1},
		{Name: "fluidity_server_stream_first_byte_seconds", Labels: []string{"kind", "http"}, Min: 1},
		{Name: "fluidity_server_breaker_state_changes_total", Labels: nil, Min: 0},
		{Name: "fluidity_server_egress_refusals_total", Labels: nil, Min: 0},
		{Name: "fluidity_server_handshake_failures_total", Labels: []string{"reason", "failed"}, Min: 1},
		// The stalled download: its writer waited on the stream's window.
		{Name: "fluidity_server_stream_write_stalls_total", Labels: []string{"kind", "connect"}, Min: 1},
		{Name: "fluidity_server_stream_write_stall_seconds_total", Labels: []string{"kind", "connect"}, Min: stallHold.Seconds() / 3},
		{Name: "fluidity_server_session_write_stalls_total", Labels: nil, Min: 0},
		{Name: "fluidity_server_session_write_stall_seconds_total", Labels: nil, Min: 0},
	}, []string{"fluidity_server_streams_active", "kind", "connect"})
	if v := s.Value("fluidity_server_sessions"); v != 1 {
		t.Errorf("fluidity_server_sessions = %v, want 1", v)
	}
	for _, name := range []string{"fluidity_server_egress_refusals_total", "fluidity_server_session_write_stalls_total", "fluidity_server_session_write_stall_seconds_total"} {
		if _, ok := s[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
}

// stallHold is how long stalledDownload's reader waits before it reads.
const stallHold = 300 * time.Millisecond

// stalledDownload fetches 1 MiB (four times a stream's initial window) over
// CONNECT from a target that sends it at once, reading it only after
// stallHold: the server's writer waits on the window for about that long.
func stalledDownload(t *testing.T, client *tunnel.Client) {
	t.Helper()
	const size = 1 << 20
	addr := testbin.SendingTarget(t, make([]byte, size))
	conn, err := client.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	time.Sleep(stallHold)
	if n, err := io.Copy(io.Discard, io.LimitReader(conn, size)); n != size {
		t.Fatalf("stalled download: %d of %d bytes: %v", n, size, err)
	}
}

func mustGet(u string) *http.Request {
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		panic(err)
	}
	return req
}
