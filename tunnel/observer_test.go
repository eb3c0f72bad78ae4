package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-yamux/v5"
)

// events records what an Observer is told, as short lines.
type events struct {
	mu    sync.Mutex
	lines []string
	ends  []StreamStats
}

func (e *events) add(format string, args ...any) {
	e.mu.Lock()
	e.lines = append(e.lines, fmt.Sprintf(format, args...))
	e.mu.Unlock()
}

func (e *events) has(line string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Contains(e.lines, line)
}

func (e *events) count(prefix string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, l := range e.lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

func (e *events) end(kind StreamKind, code ErrorCode) (StreamStats, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.ends {
		if s.Kind == kind && s.Code == code {
			return s, true
		}
	}
	return StreamStats{}, false
}

func (e *events) observer() *Observer {
	return &Observer{
		StreamStart:     func(k StreamKind) { e.add("start %s", k) },
		StreamFirstByte: func(k StreamKind, d time.Duration) { e.add("first %s", k) },
		StreamEnd: func(s StreamStats) {
			e.add("end %s %s", s.Kind, s.Code)
			e.mu.Lock()
			e.ends = append(e.ends, s)
			e.mu.Unlock()
		},
		SessionUp:          func() { e.add("session up") },
		SessionDown:        func(r string) { e.add("session down %s", r) },
		Reconnect:          func() { e.add("reconnect") },
		RTT:                func(time.Duration) { e.add("rtt") },
		HandshakeRefused:   func(r string) { e.add("handshake %s", r) },
		BreakerStateChange: func(from, to string) { e.add("breaker %s %s", from, to) },
		EgressRefused:      func() { e.add("egress refused") },
	}
}

// TestObserver pushes an HTTP request, a CONNECT, a refused target and a dead
// target through a tunnel and checks what both ends' observers are told.
func TestObserver(t *testing.T) {
	var cli, srv events
	const body = "hello, observer"
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, body) }))
	defer target.Close()
	h := newHarnessWith(t, overMTLS, func(c *ServerConfig) {
		c.Observer = srv.observer()
		c.Egress.DenyHosts = []string{"refused.test"}
		c.Breaker.ConsecutiveFailures = 1
		c.Retry.Attempts = 1
	}, func(c *ClientConfig) {
		c.Observer = cli.observer()
		c.Sessions = 1
	})

	resp, err := h.client.RoundTrip(mustRequest("GET", target.URL))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != body {
		t.Fatalf("body %q", got)
	}

	conn, err := h.client.DialContext(context.Background(), "tcp", strings.TrimPrefix(target.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	raw, _ := io.ReadAll(conn)
	conn.Close()
	if !strings.Contains(string(raw), body) {
		t.Fatalf("CONNECT answer %q", raw)
	}

	if err := errOnly(h.client.RoundTrip(mustRequest("GET", "http://refused.test/"))); !errors.Is(err, ErrRefusedByPolicy) {
		t.Fatalf("refused target: %v", err)
	}
	dead := listen(t)
	deadAddr := dead.Addr().String()
	dead.Close()
	if _, err := h.client.DialContext(context.Background(), "tcp", deadAddr); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	if _, err := h.client.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}

	waitFor(t, 5*time.Second, "the server's stream ends", func() bool { return srv.count("end ") == 4 })
	waitFor(t, 5*time.Second, "the client's stream ends", func() bool { return cli.count("end ") == 4 })
	for _, e := range []*events{&cli, &srv} {
		for _, line := range []string{"session up", "start http", "start connect", "first http", "first connect",
			"end http ok", "end connect ok", "end http refused", "end connect connection_refused"} {
			if !e.has(line) {
				t.Errorf("missing %q in %q", line, e.lines)
			}
		}
	}
	for _, line := range []string{"egress refused", "breaker closed open"} {
		if !srv.has(line) {
			t.Errorf("server: missing %q in %q", line, srv.lines)
		}
	}
	if !cli.has("rtt") {
		t.Errorf("client: no RTT sample in %q", cli.lines)
	}
	// Bytes: the client received the body (and the answer frame), the server sent it.
	c, _ := cli.end(KindHTTP, OutcomeOK)
	s, _ := srv.end(KindHTTP, OutcomeOK)
	if c.Received < int64(len(body)) || s.Sent < int64(len(body)) || c.Sent == 0 {
		t.Errorf("http bytes: client %+v, server %+v", c, s)
	}
	c, _ = cli.end(KindConnect, OutcomeOK)
	s, _ = srv.end(KindConnect, OutcomeOK)
	if c.Received < int64(len(body)) || s.Sent < int64(len(body)) || s.Received == 0 {
		t.Errorf("connect bytes: client %+v, server %+v", c, s)
	}

	_ = h.client.Close()
	waitFor(t, 5*time.Second, "the sessions' ends", func() bool {
		return cli.has("session down closed") && srv.has("session down peer_closed")
	})
}

// TestObserverTunnelDown: a request with no server to reach ends as
// tunnel_unavailable, with no session and no reconnect reported.
func TestObserverTunnelDown(t *testing.T) {
	var cli events
	c, err := NewClient(ClientConfig{
		Observer: cli.observer(),
		Dial:     func(context.Context) (net.Conn, error) { return nil, errTest },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := errOnly(c.RoundTrip(mustRequest("GET", "http://example.test/"))); err == nil {
		t.Fatal("round trip without a server succeeded")
	}
	if !cli.has("start http") || !cli.has("end http tunnel_unavailable") || cli.count("session") != 0 {
		t.Fatalf("events %q", cli.lines)
	}
}

// TestObserverReconnect: a session the server ends is reported down, and its
// replacement up and as a reconnect.
func TestObserverReconnect(t *testing.T) {
	var cli events
	h := newHarnessWith(t, overTCP, nil, func(c *ClientConfig) {
		c.Observer = cli.observer()
		c.Sessions = 1
		c.ReconnectMin = 10 * time.Millisecond
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.client.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 5*time.Second, "the first session", func() bool { return cli.count("session up") == 1 })
	h.server.mu.Lock()
	for m := range h.server.sessions {
		_ = m.Close()
	}
	h.server.mu.Unlock()
	waitFor(t, 5*time.Second, "a reconnect", func() bool { return cli.has("reconnect") && cli.count("session up") == 2 })
	if !cli.has("session down peer_closed") {
		t.Errorf("events %q", cli.lines)
	}
}

func TestOutcomeOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want ErrorCode
	}{
		{nil, OutcomeOK},
		{&RemoteError{Code: CodeDNS}, CodeDNS},
		{fmt.Errorf("wrapped: %w", &RemoteError{Code: CodeBreakerOpen}), CodeBreakerOpen},
		{&RemoteError{Code: "from_the_future"}, CodeInternal},
		{context.Canceled, OutcomeCanceled},
		{fmt.Errorf("%w: dial", ErrTunnelUnavailable), OutcomeTunnelUnavailable},
		{io.ErrUnexpectedEOF, OutcomeAborted},
	} {
		if got := outcomeOf(c.err); got != c.want {
			t.Errorf("outcomeOf(%v) = %q, want %q", c.err, got, c.want)
		}
	}
	for _, c := range []struct {
		local bool
		err   error
		want  string
	}{
		{true, io.EOF, SessionEndClosed},
		{false, io.EOF, SessionEndPeer},
		{false, yamux.ErrRemoteGoAway, SessionEndPeer},
		{false, yamux.ErrKeepAliveTimeout, SessionEndKeepalive},
		{false, errTest, SessionEndError},
	} {
		if got := sessionEnd(c.local, c.err); got != c.want {
			t.Errorf("sessionEnd(%v, %v) = %q, want %q", c.local, c.err, got, c.want)
		}
	}
}

// A nil observer, and one with no funcs, cost nothing and report nothing.
func TestObserverNil(t *testing.T) {
	var o *Observer
	o.startStream(KindHTTP).end(errTest, 1, 1)
	o.sessionUp()
	o.refused(CodeOverCapacity)
	if (&Observer{}).startStream(KindHTTP) != nil {
		t.Fatal("an empty observer traces streams")
	}
}
