package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/fluidity-tunnel/fluidity/tunnel"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

// startTunnel runs a real tunnel server and client joined by net.Pipe.
func startTunnel(t *testing.T) *tunnel.Client {
	t.Helper()
	scfg := tunnel.DefaultServerConfig()
	allowLoopback(&scfg)
	srv, err := tunnel.NewServer(scfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ccfg := tunnel.DefaultClientConfig()
	ccfg.Dial = func(context.Context) (net.Conn, error) {
		a, b := net.Pipe()
		go func() { _ = srv.ServeConn(ctx, b) }()
		return a, nil
	}
	client, err := tunnel.NewClient(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.Close()
		cancel()
		_ = srv.Close()
	})
	return client
}

// startProxy serves a Proxy over tun on a loopback port and returns its URL.
func startProxy(t testing.TB, tun Tunnel, mod func(*Config)) *url.URL {
	t.Helper()
	cfg := DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(tun, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := p.NewHTTPServer()
	go func() { _ = srv.Serve(p.SniffSOCKS(ln)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		waitTunnels(t, p)
	})
	u, _ := url.Parse("http://" + ln.Addr().String())
	return u
}

func waitTunnels(t testing.TB, p *Proxy) {
	deadline := time.Now().Add(5 * time.Second)
	for p.ActiveTunnels() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := p.ActiveTunnels(); n > 0 {
		t.Errorf("%d tunnels still open after the test", n)
	}
}

func proxiedClient(proxyURL *url.URL, roots *tls.Config) (*http.Client, func()) {
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: roots}
	return &http.Client{Transport: tr}, tr.CloseIdleConnections
}

func targetMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		_, _ = io.WriteString(w, "hello")
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
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
			if string(msg) == "close please" {
				_ = c.Close(websocket.StatusNormalClosure, "as asked")
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	})
	return mux
}

func TestForwarding(t *testing.T) {
	proxyURL := startProxy(t, startTunnel(t), nil)
	tgt := httptest.NewServer(targetMux())
	defer tgt.Close()
	tlsTgt := httptest.NewTLSServer(targetMux())
	defer tlsTgt.Close()
	hc, done := proxiedClient(proxyURL, &tls.Config{RootCAs: tlsTgt.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs})
	defer done()
	tests := []struct {
		name, method, url, body, want string
		wantLength                    int64
	}{
		{"GET", "GET", tgt.URL + "/hello", "", "hello", 5},
		{"HEAD", "HEAD", tgt.URL + "/hello", "", "", 5},
		{"POST", "POST", tgt.URL + "/echo", "some body", "some body", -1},
		{"GET via CONNECT", "GET", tlsTgt.URL + "/hello", "", "hello", 5},
		{"POST via CONNECT", "POST", tlsTgt.URL + "/echo", "secret", "secret", -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest(tc.method, tc.url, body)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(got) != tc.want {
				t.Fatalf("%d %q", resp.StatusCode, got)
			}
			if tc.wantLength >= 0 && resp.ContentLength != tc.wantLength {
				t.Fatalf("content length %d, want %d", resp.ContentLength, tc.wantLength)
			}
		})
	}
}

// TestStreamingResponse: a response without a length reaches the client as the
// target produces it, not when it ends.
func TestStreamingResponse(t *testing.T) {
	proxyURL := startProxy(t, startTunnel(t), nil)
	release := make(chan struct{})
	tgt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "second\n")
	}))
	defer tgt.Close()
	defer close(release)
	hc, done := proxiedClient(proxyURL, nil)
	defer done()
	resp, err := hc.Get(tgt.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line := make(chan string, 1)
	go func(body io.Reader) {
		s, _ := bufio.NewReader(body).ReadString('\n')
		line <- s
	}(resp.Body)
	select {
	case s := <-line:
		if s != "first\n" {
			t.Fatalf("got %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("first part not delivered while the target was still writing")
	}
}

func TestWebSocket(t *testing.T) {
	proxyURL := startProxy(t, startTunnel(t), nil)
	tgt := httptest.NewServer(targetMux())
	defer tgt.Close()
	tlsTgt := httptest.NewTLSServer(targetMux())
	defer tlsTgt.Close()
	hc, done := proxiedClient(proxyURL, &tls.Config{RootCAs: tlsTgt.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs})
	defer done()
	for _, u := range []string{"ws" + strings.TrimPrefix(tgt.URL, "http") + "/ws", "wss" + strings.TrimPrefix(tlsTgt.URL, "https") + "/ws"} {
		t.Run(strings.SplitN(u, ":", 2)[0], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: hc})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			for i := 0; i < 3; i++ {
				msg := fmt.Sprintf("hello %d", i)
				if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
					t.Fatal(err)
				}
				if _, got, err := c.Read(ctx); err != nil || string(got) != msg {
					t.Fatalf("echo %q %v", got, err)
				}
			}
			// The target closes: the client learns it promptly.
			_ = c.Write(ctx, websocket.MessageText, []byte("close please"))
			_, _, err = c.Read(ctx)
			if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Fatalf("want the target's close, got %v", err)
			}
		})
	}
}

// fakeTunnel fails every operation with err.
type fakeTunnel struct{ err error }

func (f fakeTunnel) RoundTrip(*http.Request) (*http.Response, error) { return nil, f.err }
func (f fakeTunnel) DialContext(context.Context, string, string) (net.Conn, error) {
	return nil, f.err
}
func (f fakeTunnel) DialWebSocket(context.Context, *http.Request) (*http.Response, net.Conn, error) {
	return nil, nil, f.err
}

func TestErrorStatuses(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{&tunnel.RemoteError{Code: tunnel.CodeRefused}, 403},
		{&tunnel.RemoteError{Code: tunnel.CodeOverCapacity}, 503},
		{&tunnel.RemoteError{Code: tunnel.CodeBreakerOpen}, 503},
		{&tunnel.RemoteError{Code: tunnel.CodeTimeout}, 504},
		{&tunnel.RemoteError{Code: tunnel.CodeDNS}, 502},
		{&tunnel.RemoteError{Code: tunnel.CodeConnectionRefused}, 502},
		{&tunnel.RemoteError{Code: tunnel.CodeBadRequest}, 400},
		{context.DeadlineExceeded, 504},
		{tunnel.ErrSessionClosed, 502},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.err), func(t *testing.T) {
			proxyURL := startProxy(t, fakeTunnel{tc.err}, nil)
			hc, done := proxiedClient(proxyURL, nil)
			defer done()
			// Plain HTTP.
			resp, err := hc.Get("http://target.example/path")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("http: status %d, want %d", resp.StatusCode, tc.want)
			}
			// CONNECT: the status arrives as the CONNECT answer.
			cresp, _ := connectVia(t, proxyURL.Host)
			if cresp.StatusCode != tc.want {
				t.Errorf("connect: status %d, want %d", cresp.StatusCode, tc.want)
			}
			// WebSocket upgrade.
			wresp := upgradeVia(t, hc)
			if wresp.StatusCode != tc.want {
				t.Errorf("websocket: status %d, want %d", wresp.StatusCode, tc.want)
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	down := errors.New("down")
	var state error
	proxyURL := startProxy(t, fakeTunnel{}, func(c *Config) {
		c.Health = func(context.Context) error { return state }
	})
	get := func() int {
		resp, err := http.Get(proxyURL.String() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get(); got != 200 {
		t.Fatalf("healthy: %d", got)
	}
	state = down
	if got := get(); got != 503 {
		t.Fatalf("tunnel down: %d", got)
	}
	resp, err := http.Get(proxyURL.String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := strings.TrimSpace(string(body)); got != "tunnel down: down" {
		t.Errorf("/healthz when down: %q, want the reason too", got)
	}
	resp, err = http.Get(proxyURL.String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("non-proxy request: %d", resp.StatusCode)
	}
}

func TestRequestHeaderLimit(t *testing.T) {
	proxyURL := startProxy(t, fakeTunnel{err: errors.New("not reached")}, func(c *Config) { c.MaxHeaderBytes = 4096 })
	hc, done := proxiedClient(proxyURL, nil)
	defer done()
	req, _ := http.NewRequest("GET", "http://target.example/", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 16<<10))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
}
