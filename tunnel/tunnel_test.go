package tunnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"

	"github.com/fluidity-tunnel/fluidity/tunnel/internal/wire"
)

// target is a local HTTP server exercising the cases a proxy must get right.
func target(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(targetHandler())
	t.Cleanup(srv.Close)
	return srv
}

func targetHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Host", r.Host)
		w.Header().Set("X-Saw-Connection-Header", r.Header.Get("X-Hop"))
		w.Header().Set("Content-Length", "5")
		_, _ = io.WriteString(w, "hello")
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Length", fmt.Sprint(r.ContentLength))
		w.Header().Set("X-Transfer-Encoding", strings.Join(r.TransferEncoding, ","))
		_, _ = io.Copy(w, r.Body)
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		// No Content-Length: chunked to HTTP/1.1 clients.
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "part%d;", i)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	})
	return mux
}

func TestHTTP(t *testing.T) {
	forEachTransport(t, nil, func(t *testing.T, h *harness) {
		tgt := target(t)
		hc := &http.Client{Transport: h.client}
		tests := []struct {
			name, method, path string
			body               io.Reader
			header             http.Header
			wantStatus         int
			wantBody           string
			check              func(t *testing.T, resp *http.Response)
		}{
			{name: "GET", method: "GET", path: "/hello", wantStatus: 200, wantBody: "hello",
				check: func(t *testing.T, resp *http.Response) {
					if resp.ContentLength != 5 {
						t.Errorf("ContentLength = %d, want 5", resp.ContentLength)
					}
				}},
			{name: "HEAD keeps length, no body", method: "HEAD", path: "/hello", wantStatus: 200, wantBody: "",
				check: func(t *testing.T, resp *http.Response) {
					if resp.ContentLength != 5 || resp.Header.Get("X-Method") != "HEAD" {
						t.Errorf("HEAD: length %d method %q", resp.ContentLength, resp.Header.Get("X-Method"))
					}
				}},
			{name: "POST fixed length", method: "POST", path: "/echo", body: strings.NewReader("payload"), wantStatus: 200, wantBody: "payload",
				check: func(t *testing.T, resp *http.Response) {
					if got := resp.Header.Get("X-Request-Length"); got != "7" {
						t.Errorf("target saw length %s, want 7", got)
					}
				}},
			{name: "POST chunked", method: "POST", path: "/echo", body: io.MultiReader(strings.NewReader("a"), strings.NewReader("b")), wantStatus: 200, wantBody: "ab",
				check: func(t *testing.T, resp *http.Response) {
					if got := resp.Header.Get("X-Transfer-Encoding"); got != "chunked" {
						t.Errorf("target saw transfer encoding %q, want chunked", got)
					}
				}},
			{name: "response without length", method: "GET", path: "/stream", wantStatus: 200, wantBody: "part0;part1;part2;",
				check: func(t *testing.T, resp *http.Response) {
					if resp.ContentLength != -1 {
						t.Errorf("ContentLength = %d, want -1", resp.ContentLength)
					}
				}},
			{name: "hop-by-hop headers dropped", method: "GET", path: "/hello",
				header:     http.Header{"Connection": {"X-Hop"}, "X-Hop": {"secret"}},
				wantStatus: 200, wantBody: "hello",
				check: func(t *testing.T, resp *http.Response) {
					if got := resp.Header.Get("X-Saw-Connection-Header"); got != "" {
						t.Errorf("target saw header named by Connection: %q", got)
					}
				}},
			{name: "not found", method: "GET", path: "/nope", wantStatus: 404, wantBody: "404 page not found\n"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				req, err := http.NewRequest(tc.method, tgt.URL+tc.path, tc.body)
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range tc.header {
					req.Header[k] = v
				}
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != tc.wantStatus || string(body) != tc.wantBody {
					t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tc.wantStatus, tc.wantBody)
				}
				if tc.check != nil {
					tc.check(t, resp)
				}
			})
		}
	})
}

func TestHTTPHostHeader(t *testing.T) {
	h := newHarness(t, overPipe, nil)
	tgt := target(t)
	req, _ := http.NewRequest("GET", tgt.URL+"/hello", nil)
	req.Host = "virtual.example"
	resp, err := h.client.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Host"); got != "virtual.example" {
		t.Fatalf("target saw Host %q", got)
	}
}

func TestExpectContinue(t *testing.T) {
	h := newHarness(t, overTCP, nil)
	var sawExpect string
	tgt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawExpect = r.Header.Get("Expect")
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	}))
	defer tgt.Close()
	req, _ := http.NewRequest("PUT", tgt.URL, strings.NewReader("body"))
	req.Header.Set("Expect", "100-continue")
	resp, err := h.client.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "body" || sawExpect != "100-continue" {
		t.Fatalf("got %q, target saw Expect %q", b, sawExpect)
	}
}

func TestConnectTLS(t *testing.T) {
	forEachTransport(t, nil, func(t *testing.T, h *harness) {
		tgt := httptest.NewTLSServer(targetHandler())
		defer tgt.Close()
		tr := &http.Transport{
			DialContext:     h.client.DialContext,
			TLSClientConfig: &tls.Config{RootCAs: poolOf(tgt)},
		}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get(tgt.URL + "/hello")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello" {
			t.Fatalf("got %q", b)
		}
	})
}

func poolOf(srv *httptest.Server) *x509.CertPool {
	return srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
}

// TestHalfClose: a client that shuts down its write side still receives the
// rest: CloseWrite reaches the target as EOF (not as a reset), the target's
// reply comes back, and once both sides are done the server's stream ends.
func TestHalfClose(t *testing.T) {
	forEachTransport(t, nil, func(t *testing.T, h *harness) {
		ln := listen(t)
		defer ln.Close()
		targetRead := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				targetRead <- err
				return
			}
			defer c.Close()
			got, err := io.ReadAll(c) // until the client's FIN
			targetRead <- err
			_, _ = fmt.Fprintf(c, "received %d bytes: %s", len(got), got)
		}()
		conn, err := h.client.DialContext(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "ping")
		if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(conn)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "received 4 bytes: ping" {
			t.Fatalf("got %q", got)
		}
		if err := <-targetRead; err != nil {
			t.Fatalf("the target read %v, want EOF", err)
		}
		_ = conn.Close()
		waitFor(t, 5*time.Second, "server stream to end", func() bool { return h.server.ActiveStreams() == 0 })
	})
}

func TestWebSocket(t *testing.T) {
	forEachTransport(t, nil, func(t *testing.T, h *harness) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		t.Run("ws", func(t *testing.T) {
			tgt := target(t)
			req, _ := http.NewRequestWithContext(ctx, "GET", "ws"+strings.TrimPrefix(tgt.URL, "http")+"/ws", nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			resp, conn, err := h.client.DialWebSocket(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 101 || conn == nil {
				t.Fatalf("status %d", resp.StatusCode)
			}
			defer conn.Close()
			// A masked text frame "hi", then expect the unmasked echo.
			frame := []byte{0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2}
			if _, err := conn.Write(frame); err != nil {
				t.Fatal(err)
			}
			var echo [4]byte
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(conn, echo[:]); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(echo[:], []byte{0x81, 0x02, 'h', 'i'}) {
				t.Fatalf("echo %x", echo)
			}
			// Close propagates: closing our side ends the target's read loop, which
			// closes its side, which we see as EOF.
			_ = conn.(interface{ CloseWrite() error }).CloseWrite()
			if _, err := io.ReadAll(conn); err != nil {
				t.Fatalf("after close: %v", err)
			}
		})
		t.Run("wss via CONNECT", func(t *testing.T) {
			tgt := httptest.NewTLSServer(targetHandler())
			defer tgt.Close()
			tr := &http.Transport{DialContext: h.client.DialContext, TLSClientConfig: &tls.Config{RootCAs: poolOf(tgt)}}
			defer tr.CloseIdleConnections()
			c, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(tgt.URL, "https")+"/ws", &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			for i := 0; i < 3; i++ {
				msg := fmt.Sprintf("message %d", i)
				if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
					t.Fatal(err)
				}
				_, got, err := c.Read(ctx)
				if err != nil || string(got) != msg {
					t.Fatalf("echo %q, %v", got, err)
				}
			}
			if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
				t.Fatalf("close handshake: %v", err)
			}
		})
	})
}

func TestConcurrentStreams(t *testing.T) {
	forEachTransport(t, func(c *ServerConfig) { c.MaxStreams = 256 }, func(t *testing.T, h *harness) {
		tgt := target(t)
		const n = 200
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				body := fmt.Sprintf("stream-%d", i)
				req, _ := http.NewRequest("POST", tgt.URL+"/echo", strings.NewReader(body))
				resp, err := h.client.RoundTrip(req)
				if err != nil {
					errs <- err
					return
				}
				defer resp.Body.Close()
				got, err := io.ReadAll(resp.Body)
				if err != nil {
					errs <- fmt.Errorf("stream %d: %w", i, err)
				} else if string(got) != body {
					errs <- fmt.Errorf("stream %d: %q", i, got)
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		waitFor(t, 5*time.Second, "streams to drain", func() bool { return h.server.ActiveStreams() == 0 })
	})
}

func TestErrorsAreTyped(t *testing.T) {
	closedPort := func() string {
		ln := listen(t)
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}()
	resolver := resolverFunc(func(ctx context.Context, network, host string) ([]netip.Addr, error) {
		if host == "nxdomain.invalid" {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		return nil, fmt.Errorf("unexpected lookup of %q", host)
	})
	h := newHarness(t, overPipe, func(c *ServerConfig) { c.Resolver = resolver })
	tests := []struct {
		addr       string
		want       error
		wantStatus int
	}{
		{addr: closedPort, want: ErrTargetRefused, wantStatus: 502},
		{addr: "nxdomain.invalid:443", want: ErrTargetDNS, wantStatus: 502},
	}
	for _, tc := range tests {
		_, err := h.client.DialContext(context.Background(), "tcp", tc.addr)
		if !errors.Is(err, tc.want) || HTTPStatus(err) != tc.wantStatus {
			t.Errorf("dial %s: %v (status %d), want %v / %d", tc.addr, err, HTTPStatus(err), tc.want, tc.wantStatus)
		}
	}
}

func TestOverCapacity(t *testing.T) {
	h := newHarness(t, overPipe, func(c *ServerConfig) { c.MaxStreams = 1 })
	ln := listen(t)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Hold the connection without reading or closing: only the agent's
			// abort can free the server's stream.
			t.Cleanup(func() { c.Close() })
		}
	}()
	held, err := h.client.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.client.DialContext(context.Background(), "tcp", ln.Addr().String())
	if !errors.Is(err, ErrOverCapacity) || HTTPStatus(err) != 503 {
		t.Fatalf("second stream: %v", err)
	}
	held.Close()
	waitFor(t, 5*time.Second, "capacity to free", func() bool { return h.server.ActiveStreams() == 0 })
	c, err := h.client.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	c.Close()
}

// TestMalformedFrameClosesOnlyItsStream sends garbage on one stream and checks the
// session and its other streams carry on.
func TestMalformedFrameClosesOnlyItsStream(t *testing.T) {
	h := newHarness(t, overPipe, nil)
	tgt := target(t)
	sess, err := h.client.session(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"garbage":   []byte("GET / HTTP/1.1\r\n\r\n"),
		"oversized": append([]byte("FLDY\x02"), 0xff, 0xff, 0xff, 0xff),
		"version":   []byte("FLDY\x09\x00\x00\x00\x02{}"),
		"bad json":  []byte("FLDY\x02\x00\x00\x00\x03{x}"),
		"no type":   []byte("FLDY\x02\x00\x00\x00\x02{}"),
		"unknown":   []byte("FLDY\x02\x00\x00\x00\x0f{\"type\":\"nope\"}"),
	}
	for name, raw := range cases {
		st, err := sess.open(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = st.Write(raw)
		var ans wire.Answer
		err = wire.Read(st, 0, &ans)
		st.Close()
		if err != nil || ans.Type != wire.TypeError {
			t.Errorf("%s: answer %v %v", name, ans.Type, err)
		}
	}
	req, _ := http.NewRequest("GET", tgt.URL+"/hello", nil)
	resp, err := sess.RoundTrip(req)
	if err != nil {
		t.Fatalf("session unusable after bad frames: %v", err)
	}
	resp.Body.Close()
}

// TestAbortCancelsUpstream: closing a response body early cancels the upstream request.
func TestAbortCancelsUpstream(t *testing.T) {
	h := newHarness(t, overTCP, nil)
	cancelled := make(chan struct{})
	tgt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		for {
			if _, err := w.Write(make([]byte, 32<<10)); err != nil {
				break
			}
			select {
			case <-r.Context().Done():
				close(cancelled)
				return
			case <-time.After(time.Millisecond):
			}
		}
		close(cancelled)
	}))
	defer tgt.Close()
	req, _ := http.NewRequest("GET", tgt.URL, nil)
	resp, err := h.client.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadFull(resp.Body, make([]byte, 64<<10))
	resp.Body.Close()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("upstream request still running 5s after the client aborted")
	}
}

// TestTruncatedBodyIsAnError: a target that dies mid-body must not look complete.
func TestTruncatedBodyIsAnError(t *testing.T) {
	forEachTransport(t, nil, func(t *testing.T, h *harness) {
		addr := cannedTarget(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", false)
		// The server resets the stream when the target's body breaks off. Whether
		// the agent has read the answer by then or not, the body never reads as whole.
		for range 20 {
			req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
			resp, err := h.client.RoundTrip(req)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil {
					t.Fatal("truncated chunked body read as complete")
				}
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("truncated body: %v, want io.ErrUnexpectedEOF", err)
				}
			}
			if !errors.Is(err, ErrStreamReset) {
				t.Errorf("truncation: %v, want ErrStreamReset", err)
			}
			if got := HTTPStatus(err); got != http.StatusBadGateway {
				t.Errorf("truncation answers %d, want 502", got)
			}
		}
	})
}

func TestShutdownDrains(t *testing.T) {
	h := newHarness(t, overTCP, nil)
	release := make(chan struct{})
	tgt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		_, _ = io.WriteString(w, "finished")
	}))
	defer tgt.Close()
	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := h.client.RoundTrip(mustRequest("GET", tgt.URL))
		if err != nil {
			res <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{string(b), err}
	}()
	waitFor(t, 5*time.Second, "request in flight", func() bool { return h.server.ActiveStreams() == 1 })
	shut := make(chan error, 1)
	go func() { shut <- h.server.Shutdown(context.Background()) }()
	waitFor(t, 5*time.Second, "server to drain", h.server.isDraining)
	// New work is refused while the old finishes.
	if err := errOnly(h.client.RoundTrip(mustRequest("GET", tgt.URL))); err == nil {
		t.Error("new request accepted during shutdown")
	}
	close(release)
	r := <-res
	if r.err != nil || r.body != "finished" {
		t.Fatalf("in-flight request: %q %v", r.body, r.err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}

func mustRequest(method, url string) *http.Request {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		panic(err)
	}
	return req
}

type resolverFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

func (f resolverFunc) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return f(ctx, network, host)
}

// TestConnectAbortReachesTarget: a client that drops a CONNECT stream while the
// target is still sending gets the target's connection closed at once, not when
// the target finishes or the idle timeout fires.
func TestConnectAbortReachesTarget(t *testing.T) {
	forEachTransport(t, nil, func(t *testing.T, h *harness) {
		ln := listen(t)
		defer ln.Close()
		targetDone := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				targetDone <- err
				return
			}
			defer c.Close()
			chunk := make([]byte, 32<<10)
			for {
				if _, err := c.Write(chunk); err != nil {
					targetDone <- err
					return
				}
			}
		}()
		conn, err := h.client.DialContext(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(conn, make([]byte, 64<<10)); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		select {
		case <-targetDone: //nolint:errcheck // the target's copy ends in an error by design: the client dropped the stream
		case <-time.After(5 * time.Second):
			t.Fatal("target still connected 5s after the client dropped the stream")
		}
		waitFor(t, 5*time.Second, "server stream to end", func() bool { return h.server.ActiveStreams() == 0 })
	})
}

// TestHTTP2ToTargets: the server speaks HTTP/2 to a target that offers it.
func TestHTTP2ToTargets(t *testing.T) {
	tgt := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "HTTP/%d", r.ProtoMajor)
	}))
	tgt.EnableHTTP2 = true
	tgt.StartTLS()
	defer tgt.Close()
	h := newHarness(t, overTCP, func(c *ServerConfig) {
		c.TargetTLSConfig = &tls.Config{RootCAs: poolOf(tgt)}
	})
	for i := 0; i < 2; i++ { // the second request reuses the pooled connection
		resp, err := h.client.RoundTrip(mustRequest("GET", tgt.URL))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "HTTP/2" {
			t.Fatalf("target saw %q, want HTTP/2", b)
		}
	}
}

// TestTLSResumptionToTargets: the server's connections to an https target resume
// their TLS session, so a new connection to a known site skips the full handshake.
func TestTLSResumptionToTargets(t *testing.T) {
	tgt := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A fresh connection for every request: only resumption can help.
		w.Header().Set("Connection", "close")
		fmt.Fprintf(w, "resumed=%v", r.TLS.DidResume)
	}))
	tgt.StartTLS()
	defer tgt.Close()
	h := newHarness(t, overTCP, func(c *ServerConfig) {
		c.TargetTLSConfig = &tls.Config{RootCAs: poolOf(tgt)}
	})
	for i, want := range []string{"resumed=false", "resumed=true", "resumed=true"} {
		resp, err := h.client.RoundTrip(mustRequest("GET", tgt.URL))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Errorf("request %d: target saw %q, want %q", i+1, b, want)
		}
	}
}

// TestBurstSharesOneConnectAttempt: requests arriving while there is no session
// wait for one connection attempt between them, rather than each dialling; once
// the server answers, the client's other sessions come up, one attempt each.
//
// It runs on synctest's fake clock over net.Pipe, the targets answered by an
// in-memory Transport: a slow dial (50 ms of fake time) lets the whole burst
// pile up on the attempt before it completes, every time.
func TestBurstSharesOneConnectAttempt(t *testing.T) {
	for _, sessions := range []int{1, 2, 3} {
		t.Run(fmt.Sprint(sessions), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var dials atomic.Int32
				h := newHarnessWith(t, overPipe, func(c *ServerConfig) { c.Transport = helloTransport{} }, func(c *ClientConfig) {
					c.Sessions = sessions
					dial := c.Dial
					c.Dial = func(ctx context.Context) (net.Conn, error) {
						dials.Add(1)
						time.Sleep(50 * time.Millisecond) // a slow link: the burst piles up meanwhile
						return dial(ctx)
					}
				})
				burst := func() {
					var wg sync.WaitGroup
					for i := 0; i < 50; i++ {
						wg.Go(func() {
							resp, err := h.client.RoundTrip(mustRequest("GET", "http://127.0.0.1:9/hello"))
							if err != nil {
								t.Error(err)
								return
							}
							resp.Body.Close()
						})
					}
					wg.Wait()
				}
				allLive := func() {
					t.Helper()
					for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
						h.client.mu.Lock()
						live := 0
						for _, l := range h.client.lanes {
							if l.live() {
								live++
							}
						}
						h.client.mu.Unlock()
						if live == sessions {
							return
						}
						if time.Now().After(deadline) {
							t.Fatalf("%d of %d sessions up", live, sessions)
						}
					}
				}
				burst()
				allLive()
				if n := dials.Load(); n != int32(sessions) {
					t.Fatalf("%d connection attempts for a burst of 50 requests, want %d (one per session)", n, sessions)
				}
				// Every session dies; the next burst again makes one attempt per session.
				h.client.mu.Lock()
				var dead []*session
				for _, l := range h.client.lanes {
					dead = append(dead, l.sess)
				}
				h.client.mu.Unlock()
				for _, s := range dead {
					_ = s.mux.Close()
					<-s.Done()
				}
				burst()
				allLive()
				if n := dials.Load(); n != int32(2*sessions) {
					t.Fatalf("%d connection attempts after the sessions died, want %d", n, 2*sessions)
				}
			})
		})
	}
}

// helloTransport answers every request "hello" without a network.
type helloTransport struct{}

func (helloTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Length": {"5"}}, ContentLength: 5,
		Body: io.NopCloser(strings.NewReader("hello")), Request: req}, nil
}
