package tunnel

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/tunnel/internal/wire"
)

// silentTarget accepts connections and holds them without reading or writing
// until the test ends: only the agent's abort can free a server stream to it.
func silentTarget(t *testing.T) string {
	t.Helper()
	ln := listen(t)
	conns := make(chan net.Conn, 64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(conns)
				return
			}
			conns <- c
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		for c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// TestAbandonedConnectsFreeSlots: a CONNECT conn closed (not half-closed) by
// the agent resets its stream, and the server frees the stream's slot at once:
// with MaxStreams 5 and five abandoned conns to a silent target, new work is
// served within a second, not after the 10-minute idle timeout.
func TestAbandonedConnectsFreeSlots(t *testing.T) {
	forEachTransport(t, func(c *ServerConfig) { c.MaxStreams = 5 }, func(t *testing.T, h *harness) {
		silent := silentTarget(t)
		tgt := target(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var conns []net.Conn
		for i := range 5 {
			c, err := h.client.DialContext(ctx, "tcp", silent)
			if err != nil {
				t.Fatalf("dial %d: %v", i, err)
			}
			conns = append(conns, c)
		}
		// The limit is real: a sixth stream is refused while the five are held.
		// (It should be over_capacity; a refusal that beats the request frame
		// can surface as a reset instead, which TestOverCapacity meets too.)
		if c, err := h.client.DialContext(ctx, "tcp", silent); err == nil {
			c.Close()
			t.Fatal("sixth dial with five held succeeded")
		}
		for _, c := range conns {
			if err := c.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
		}
		waitFor(t, time.Second, "server streams to end after the agent's aborts", func() bool { return h.server.ActiveStreams() == 0 })
		c, err := h.client.DialContext(ctx, "tcp", silent)
		if err != nil {
			t.Fatalf("dial after the aborts: %v", err)
		}
		_ = c.Close()
		resp, err := h.client.RoundTrip(mustRequest("GET", tgt.URL+"/hello").WithContext(ctx))
		if err != nil {
			t.Fatalf("request after the aborts: %v", err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != "hello" {
			t.Fatalf("request after the aborts: %q, %v", b, err)
		}
		waitFor(t, time.Second, "server streams to end", func() bool { return h.server.ActiveStreams() == 0 })
	})
}

// rawStream opens a stream on one of h's client sessions, for frames the
// client's API would never write.
func rawStream(t *testing.T, h *harness) *stream {
	t.Helper()
	sess, err := h.client.session(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sess.open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	_ = st.SetDeadline(time.Now().Add(10 * time.Second))
	return st
}

// rawFrame is a frame in any version's framing: magic, version, big-endian
// length, JSON.
func rawFrame(version byte, body string) []byte {
	b := append([]byte("FLDY"), version, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[5:], uint32(len(body)))
	return append(b, body...)
}

// readRawFrame reads one frame without the version check wire.Read makes, as a
// peer of another version would.
func readRawFrame(t *testing.T, r io.Reader) (version byte, typ string, payload map[string]any) {
	t.Helper()
	var prefix [wire.PrefixSize]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		t.Fatalf("answer prefix: %v", err)
	}
	if string(prefix[:4]) != "FLDY" {
		t.Fatalf("answer magic %q", prefix[:4])
	}
	body := make([]byte, binary.BigEndian.Uint32(prefix[5:]))
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatalf("answer body: %v", err)
	}
	var f struct {
		Type    string         `json:"type"`
		Payload map[string]any `json:"payload"`
	}
	if err := json.Unmarshal(body, &f); err != nil {
		t.Fatalf("answer %q: %v", body, err)
	}
	return prefix[4], f.Type, f.Payload
}

// TestUnsupportedVersionAnswer: a version-1 agent's frame is answered
// unsupported_version in version 1's framing, which it can read, with a message
// naming version 2; a frame of a later version is answered in version 2.
func TestUnsupportedVersionAnswer(t *testing.T) {
	h := newHarness(t, overPipe, nil)
	tgt := target(t)
	v1HTTP := fmt.Sprintf(`{"type":"http","payload":{"method":"GET","url":%q,"header":{},"content_length":0}}`, tgt.URL+"/hello")
	cases := []struct {
		name        string
		version     byte
		body        string
		wantVersion byte
	}{
		{"v1 control", 1, `{"type":"control","payload":{}}`, 1},
		{"v1 http", 1, v1HTTP, 1},
		{"v3 http", 3, v1HTTP, wire.Version},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := rawStream(t, h)
			if _, err := st.Write(rawFrame(tc.version, tc.body)); err != nil {
				t.Fatal(err)
			}
			version, typ, payload := readRawFrame(t, st)
			if version != tc.wantVersion {
				t.Errorf("answer in version %d, want %d", version, tc.wantVersion)
			}
			if typ != "error" || payload["code"] != string(CodeUnsupportedVersion) {
				t.Fatalf("answer %s %v, want error unsupported_version", typ, payload)
			}
			if msg, _ := payload["message"].(string); !strings.Contains(msg, "version 2") {
				t.Errorf("message %q does not name version 2", msg)
			}
			// Nothing follows the answer but the server's FIN.
			if rest, err := io.ReadAll(st); err != nil || len(rest) != 0 {
				t.Errorf("after the answer: %q, %v; want EOF", rest, err)
			}
		})
	}
	waitFor(t, 5*time.Second, "server streams to end", func() bool { return h.server.ActiveStreams() == 0 })
}

// headerTarget records the header of each request it gets.
func headerTarget(t *testing.T) (*httptest.Server, <-chan http.Header) {
	t.Helper()
	seen := make(chan http.Header, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv, seen
}

// lowerCaseHeader names hop-by-hop headers, and one named by connection, in
// lower case, as no net/http client would but a peer could.
func lowerCaseHeader() http.Header {
	return http.Header{
		"connection":          {"x-secret"},
		"x-secret":            {"1"},
		"keep-alive":          {"timeout=5"},
		"proxy-authorization": {"Basic c2VjcmV0"},
		"content-type":        {"text/plain"},
	}
}

func checkForwardedHeader(t *testing.T, got http.Header) {
	t.Helper()
	for _, name := range []string{"Connection", "X-Secret", "Keep-Alive", "Proxy-Authorization"} {
		if v, ok := got[name]; ok {
			t.Errorf("target got hop-by-hop header %s: %q", name, v)
		}
	}
	for name := range got {
		if strings.EqualFold(name, "x-secret") || strings.EqualFold(name, "connection") {
			t.Errorf("target got %s", name)
		}
	}
	if v := got["Content-Type"]; len(v) != 1 || v[0] != "text/plain" {
		t.Errorf("target got Content-Type %q (header %v), want text/plain", v, got)
	}
}

// TestLowerCaseHeaderNamesCanonicalised: header names are canonicalised when a
// frame is decoded, so a peer writing hop-by-hop names in lower case gets none
// of them, nor the header its connection names, past the server; content-type
// arrives as Content-Type.
func TestLowerCaseHeaderNamesCanonicalised(t *testing.T) {
	h := newHarness(t, overPipe, nil)
	tgt, seen := headerTarget(t)
	t.Run("raw frame", func(t *testing.T) {
		st := rawStream(t, h)
		frame, err := wire.Append(nil, wire.TypeHTTP, wire.HTTPRequest{Method: "GET", URL: tgt.URL + "/", Header: lowerCaseHeader()})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(frame), `"connection"`) {
			t.Fatalf("frame does not carry the lower-case name: %s", frame)
		}
		if _, err := st.Write(frame); err != nil {
			t.Fatal(err)
		}
		var ans wire.Answer
		if err := wire.Read(st, 0, &ans); err != nil || ans.Type != wire.TypeResponse || ans.Response().Status != 200 {
			t.Fatalf("answer %s %+v, %v", ans.Type, ans.Response(), err)
		}
		if b, err := io.ReadAll(st); err != nil || string(b) != "ok" {
			t.Fatalf("body %q, %v", b, err)
		}
		checkForwardedHeader(t, <-seen)
	})
	t.Run("client", func(t *testing.T) {
		req := mustRequest("GET", tgt.URL+"/")
		req.Header = lowerCaseHeader()
		resp, err := h.client.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		checkForwardedHeader(t, <-seen)
	})
}

// switchingTarget answers every request with a 101 nobody asked for.
func switchingTarget(t *testing.T) string {
	t.Helper()
	return cannedTarget(t, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n", true)
}

// TestUnrequestedSwitchIs502: a target switching protocols on a plain HTTP
// request (whose Upgrade header, hop-by-hop, never reached it) is answered 502,
// never as a 101 response.
func TestUnrequestedSwitchIs502(t *testing.T) {
	h := newHarness(t, overPipe, nil)
	addr := switchingTarget(t)
	for _, upgrade := range []bool{false, true} {
		t.Run(fmt.Sprintf("upgrade header %v", upgrade), func(t *testing.T) {
			req := mustRequest("GET", "http://"+addr+"/")
			if upgrade {
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "foo")
			}
			resp, err := h.client.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("got a %d response, want an error answering 502", resp.StatusCode)
			}
			if got := HTTPStatus(err); got != http.StatusBadGateway {
				t.Fatalf("%v answers %d, want 502", err, got)
			}
		})
	}
}

// countingBody is a request body of n bytes that counts what is read from it
// and records its Close.
type countingBody struct {
	n      int64
	read   atomic.Int64
	closed chan struct{}
	once   atomic.Bool
}

func newCountingBody(n int64) *countingBody {
	return &countingBody{n: n, closed: make(chan struct{})}
}

func (b *countingBody) Read(p []byte) (int, error) {
	left := b.n - b.read.Load()
	if left <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), left)]
	clear(p)
	b.read.Add(int64(len(p)))
	return len(p), nil
}

func (b *countingBody) Close() error {
	if !b.once.Swap(true) {
		close(b.closed)
	}
	return nil
}

func (b *countingBody) waitClosed(t *testing.T, d time.Duration, what string) {
	t.Helper()
	select {
	case <-b.closed:
	case <-time.After(d):
		t.Fatalf("%s: body not closed within %v (%d bytes read)", what, d, b.read.Load())
	}
}

// TestEarlyAnswerStopsBodyPump: a target answering 413 without reading a 64 MiB
// upload gets its answer to the client, whose body reads to EOF, and the agent
// stops sending the body (the server's no_error reset): the body is not read to
// its end, and it is closed.
func TestEarlyAnswerStopsBodyPump(t *testing.T) {
	const size = 64 << 20
	tgt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "8")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		_, _ = io.WriteString(w, "too big!")
	}))
	defer tgt.Close()
	forEachTransport(t, nil, func(t *testing.T, h *harness) {
		for _, known := range []bool{true, false} {
			t.Run(fmt.Sprintf("known length %v", known), func(t *testing.T) {
				body := newCountingBody(size)
				req, err := http.NewRequest("POST", tgt.URL+"/upload", body)
				if err != nil {
					t.Fatal(err)
				}
				req.ContentLength = -1
				if known {
					req.ContentLength = size
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				resp, err := h.client.RoundTrip(req.WithContext(ctx))
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusRequestEntityTooLarge || string(b) != "too big!" || err != nil {
					t.Fatalf("got %d %q, %v; want 413 \"too big!\"", resp.StatusCode, b, err)
				}
				body.waitClosed(t, 10*time.Second, "after the early answer")
				if n := body.read.Load(); n >= size {
					t.Errorf("the whole body (%d bytes) was pumped after the early answer", n)
				} else {
					t.Logf("%d of %d bytes pumped", n, size)
				}
				waitFor(t, 5*time.Second, "server streams to end", func() bool { return h.server.ActiveStreams() == 0 })
			})
		}
	})
}

// TestRoundTripClosesBody: RoundTrip closes req.Body when it succeeds, when the
// server answers an error, and when the tunnel is down.
func TestRoundTripClosesBody(t *testing.T) {
	h := newHarness(t, overPipe, nil)
	// The target reads the whole body before it answers: net/http's server
	// discards what is left of a body once the handler's answer is flushed.
	tgt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	}))
	defer tgt.Close()
	t.Run("success", func(t *testing.T) {
		body := newCountingBody(1000)
		req, _ := http.NewRequest("POST", tgt.URL, body)
		req.ContentLength = 1000
		resp, err := h.client.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "1000" || err != nil {
			t.Fatalf("target read %s bytes, %v; want 1000", b, err)
		}
		body.waitClosed(t, 5*time.Second, "success")
	})
	t.Run("refused by egress", func(t *testing.T) {
		body := newCountingBody(1000)
		req, _ := http.NewRequest("POST", "http://10.255.255.1/", body)
		req.ContentLength = 1000
		err := errOnly(h.client.RoundTrip(req))
		if !errors.Is(err, ErrRefusedByPolicy) {
			t.Fatalf("%v, want a policy refusal", err)
		}
		body.waitClosed(t, 5*time.Second, "error answer")
	})
	t.Run("tunnel down", func(t *testing.T) {
		c, err := NewClient(ClientConfig{Dial: func(context.Context) (net.Conn, error) { return nil, errTest }})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		body := newCountingBody(1000)
		req, _ := http.NewRequest("POST", tgt.URL, body)
		if err := errOnly(c.RoundTrip(req)); !errors.Is(err, ErrTunnelUnavailable) {
			t.Fatalf("%v, want ErrTunnelUnavailable", err)
		}
		body.waitClosed(t, 5*time.Second, "tunnel down")
	})
}

// blockingBody is a request body whose Read blocks until unblock is closed, as
// a caller's slow source can; then it ends.
type blockingBody struct {
	unblock chan struct{}
	closed  chan struct{}
	once    atomic.Bool
}

func (b *blockingBody) Read(p []byte) (int, error) {
	<-b.unblock
	return 0, io.EOF
}

func (b *blockingBody) Close() error {
	if !b.once.Swap(true) {
		close(b.closed)
	}
	return nil
}

// TestClientCloseDoesNotWaitForBody: Client.Close returns at once while a
// request body's Read is blocked; the pump ends when the body does.
func TestClientCloseDoesNotWaitForBody(t *testing.T) {
	h := newHarness(t, overPipe, nil)
	tgt := target(t)
	body := &blockingBody{unblock: make(chan struct{}), closed: make(chan struct{})}
	unblocked := false
	defer func() {
		if !unblocked {
			close(body.unblock)
		}
	}()
	req, _ := http.NewRequest("POST", tgt.URL+"/echo", body)
	rtDone := make(chan error, 1)
	go func() {
		resp, err := h.client.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		rtDone <- err
	}()
	waitFor(t, 5*time.Second, "the request in flight", func() bool { return h.server.ActiveStreams() == 1 })
	closed := make(chan struct{})
	go func() {
		_ = h.client.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(time.Second):
		t.Fatal("Client.Close still waiting 1s later for a body read")
	}
	select {
	case err := <-rtDone:
		if err == nil {
			t.Fatal("RoundTrip succeeded on a closed client")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RoundTrip still running 5s after Client.Close")
	}
	unblocked = true
	close(body.unblock)
	select {
	case <-body.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("body not closed 5s after its Read returned: the pump did not end")
	}
}

// TestPing: Ping measures a positive round trip over every transport, and fails
// once the server is gone.
//
// Not necessarily the first ping after Close: a ping in flight when the
// server closed, whose pong the server sent before, answers for a Ping that
// joins it (yamux shares one ping among its callers). The first session's
// success brings the second up, whose RTT measurement at its start is such a
// ping; a Ping right after Close joined it about once in 50 runs under -race
// (rtt 0.1-17 ms, longer than the Ping call itself: sent before it). Close is
// synchronous: once the client has seen its sessions end, Ping fails.
func TestPing(t *testing.T) {
	forEachTransport(t, nil, func(t *testing.T, h *harness) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rtt, err := h.client.Ping(ctx)
		if err != nil || rtt <= 0 {
			t.Fatalf("ping: %v, %v; want a positive RTT", rtt, err)
		}
		_ = h.server.Close()
		if err := h.client.WaitDown(ctx); err != nil {
			t.Fatalf("the client's sessions did not end after the server closed: %v", err)
		}
		_, err = h.client.Ping(ctx)
		if err == nil || ctx.Err() != nil {
			t.Fatalf("ping after the server closed: %v (ctx %v), want an error before the deadline", err, ctx.Err())
		}
	})
}

// TestTruncatedKnownLengthBody: a target whose Content-Length body breaks off
// gives the client a 200 whose body keeps what was sent, then fails with
// io.ErrUnexpectedEOF: never a body that reads as whole.
func TestTruncatedKnownLengthBody(t *testing.T) {
	forEachTransport(t, nil, func(t *testing.T, h *harness) {
		addr := cannedTarget(t, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", false)
		for i := range 20 {
			resp, err := h.client.RoundTrip(mustRequest("GET", "http://"+addr+"/"))
			if err != nil {
				t.Fatalf("request %d: %v, want a 200 response", i, err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.ContentLength != 10 {
				t.Fatalf("request %d: %d, length %d; want 200, 10", i, resp.StatusCode, resp.ContentLength)
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("request %d: body %q read with %v, want io.ErrUnexpectedEOF", i, b, err)
			}
			if string(b) != "hello" {
				t.Errorf("request %d: body %q before the error, want \"hello\"", i, b)
			}
		}
	})
}
