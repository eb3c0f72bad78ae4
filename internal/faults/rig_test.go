package faults

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/proxy"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// Timings shared by the tests. fastSession makes a dead peer noticed within
// keepAlive+writeTimeout; the bounds below add slack for -race on a 2-core machine.
const (
	keepAlive    = 250 * time.Millisecond
	writeTimeout = 750 * time.Millisecond
	deadPeer     = keepAlive + writeTimeout
	// slack is what a bound may exceed its configured timeout by (scheduling, -race).
	slack = 1500 * time.Millisecond
	// opTimeout bounds every client operation, so that a hang fails a test rather
	// than stalling the run.
	opTimeout = 20 * time.Second
)

// logSink collects a component's log lines and prints them when the test fails.
// Lines written after the test ended (goroutines winding down) are kept, never
// passed to t.Log, which would panic.
type logSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 4<<20 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testLogger(t testing.TB, component string) zerolog.Logger {
	sink := &logSink{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log:\n%s", component, sink.String())
		}
	})
	return zerolog.New(sink).Level(zerolog.InfoLevel).With().Timestamp().Str("component", component).Logger()
}

// fastSession makes a dead peer noticed within deadPeer. Only the tests that wait
// for the keepalive use it: on a slow or sliced link, or a loaded machine, pings
// queue behind data and so short a timeout raises false alarms, which is why the
// shipped default (10 s + 20 s) is what every other test runs with.
func fastSession() tunnel.SessionConfig {
	c := tunnel.DefaultSessionConfig()
	c.KeepAliveInterval = keepAlive
	c.WriteTimeout = writeTimeout
	return c
}

func fastServer(c *tunnel.ServerConfig) { c.Session = fastSession() }

func fastClient(c *tunnel.ClientConfig) { c.Session = fastSession() }

// startServer runs an in-process tunnel server over mTLS on 127.0.0.1 and returns
// its address. Loopback targets are allowed; retries and breakers are quick.
func startServer(t testing.TB, mod func(*tunnel.ServerConfig)) (*tunnel.Server, string) {
	t.Helper()
	cfg := tunnel.DefaultServerConfig()
	cfg.Logger = testLogger(t, "server")
	cfg.TLSConfig = tunnel.NewServerTLSConfig(creds.server, creds.pool)
	cfg.Egress.AllowCIDRs = []string{"127.0.0.0/8", "::1/128"}
	cfg.Retry = tunnel.RetryConfig{Attempts: 3, Initial: 5 * time.Millisecond, Multiplier: 2, Max: 20 * time.Millisecond}
	cfg.Breaker.OpenTimeout = 200 * time.Millisecond
	cfg.DialTimeout = 2 * time.Second
	if mod != nil {
		mod(&cfg)
	}
	srv, err := tunnel.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(context.Background(), ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return srv, ln.Addr().String()
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// agent is the in-process agent: a tunnel.Client kept up by Run, behind the proxy
// served on a loopback port.
type agent struct {
	client   *tunnel.Client
	px       *proxy.Proxy
	addr     string
	proxyURL *url.URL
	// dials counts connection attempts to the server (the first sessions included).
	dials atomic.Int64
	// sessions is how many sessions the agent's client keeps.
	sessions int64

	stopOnce sync.Once
	stopFn   func()
}

// startAgent starts an in-process agent dialling serverAddr (a host:port that
// reaches the server, directly or through a toxiproxy).
func startAgent(t testing.TB, serverAddr string, mod func(*tunnel.ClientConfig)) *agent {
	t.Helper()
	a := &agent{}
	tlsCfg := tunnel.NewClientTLSConfig(creds.client, creds.pool, tunnel.DefaultServerName)
	ccfg := tunnel.DefaultClientConfig()
	ccfg.Logger = testLogger(t, "agent")
	ccfg.DialTimeout = 2 * time.Second
	ccfg.ReconnectMin = 50 * time.Millisecond
	ccfg.ReconnectMax = 2 * time.Second
	ccfg.Dial = func(ctx context.Context) (net.Conn, error) {
		a.dials.Add(1)
		return tunnel.DialTLS(ctx, serverAddr, tlsCfg)
	}
	if mod != nil {
		mod(&ccfg)
	}
	a.sessions = int64(ccfg.Sessions)
	client, err := tunnel.NewClient(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	a.client = client
	pcfg := proxy.DefaultConfig()
	pcfg.Logger = ccfg.Logger
	a.px, err = proxy.New(client, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	a.addr = ln.Addr().String()
	a.proxyURL = &url.URL{Scheme: "http", Host: a.addr}
	hs := a.px.NewHTTPServer()
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = hs.Serve(ln)
	}()
	runCtx, cancelRun := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		_ = client.Run(runCtx)
	}()
	a.stopFn = func() {
		_ = hs.Close()
		<-served
		cancelRun()
		<-ran
		_ = client.Close()
	}
	t.Cleanup(a.stop)
	return a
}

func (a *agent) stop() { a.stopOnce.Do(a.stopFn) }

// httpClient is a client using the agent as its proxy; every request is bounded.
func (a *agent) httpClient(t testing.TB) *http.Client {
	tr := &http.Transport{
		Proxy:               http.ProxyURL(a.proxyURL),
		MaxIdleConnsPerHost: 64,
		DisableCompression:  true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: opTimeout}
}

// connect opens a CONNECT tunnel to target through the agent. It returns the
// connection (nil unless the answer is 200) and the status the proxy answered.
func (a *agent) connect(ctx context.Context, target string) (net.Conn, int, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", a.addr)
	if err != nil {
		return nil, 0, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target); err != nil {
		conn.Close()
		return nil, 0, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		conn.Close()
		return nil, 0, err
	}
	// A 200 to CONNECT has no length: closing its body reads nothing from br,
	// which carries the tunnel.
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, resp.StatusCode, nil
	}
	_ = conn.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		conn.Close()
		return nil, resp.StatusCode, errors.New("bytes after the CONNECT answer before any were sent")
	}
	return conn, resp.StatusCode, nil
}

// toxics is an in-process toxiproxy API server; its proxies are stopped when the
// test ends.
type toxics struct {
	api *toxiproxy.ApiServer
}

func newToxics() *toxics {
	return &toxics{api: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())}
}

// proxy starts a toxiproxy proxy on 127.0.0.1 forwarding to upstream.
func (x *toxics) proxy(t testing.TB, name, upstream string) *toxProxy {
	t.Helper()
	p := toxiproxy.NewProxy(x.api, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &toxProxy{p: p}
}

type toxProxy struct{ p *toxiproxy.Proxy }

func (p *toxProxy) addr() string { return p.p.Listen }

// add adds a toxic: typ with attrs (a JSON object) on stream ("upstream" is
// client→upstream, "downstream" upstream→client). It returns the toxic's name.
func (p *toxProxy) add(t testing.TB, typ, stream, attrs string) string {
	t.Helper()
	return p.addWith(t, typ, stream, 1, attrs)
}

// addWith is add with a toxicity: the probability that a connection gets the toxic
// (decided when the toxic starts on it). A reset_peer toxic present, even at
// toxicity 0, when a connection starts makes toxiproxy close that connection with
// SO_LINGER 0, so that raising the toxicity later resets it (RST) mid-transfer.
func (p *toxProxy) addWith(t testing.TB, typ, stream string, toxicity float64, attrs string) string {
	t.Helper()
	name := typ + "_" + stream
	body := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":%g,"attributes":%s}`, name, typ, stream, toxicity, attrs)
	if _, err := p.p.Toxics.AddToxicJson(strings.NewReader(body)); err != nil {
		t.Fatalf("add toxic %s: %v", body, err)
	}
	return name
}

// both adds the toxic on both streams.
func (p *toxProxy) both(t testing.TB, typ, attrs string) {
	p.add(t, typ, "upstream", attrs)
	p.add(t, typ, "downstream", attrs)
}

// setToxicity changes a toxic's toxicity; the connections it is on re-roll it at once.
func (p *toxProxy) setToxicity(t testing.TB, name string, toxicity float64) {
	t.Helper()
	if _, err := p.p.Toxics.UpdateToxicJson(name, strings.NewReader(fmt.Sprintf(`{"toxicity":%g}`, toxicity))); err != nil {
		t.Fatalf("update toxic %s: %v", name, err)
	}
}

func (p *toxProxy) reset() { p.p.Toxics.ResetToxics(context.Background()) }

// pattern is the content every download serves a prefix of; tests compare what
// arrives with it byte for byte.
var pattern = func() []byte {
	b := make([]byte, 16<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(b); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}()

// target is a local HTTP and WebSocket server:
//
//	/blob?n=N[&chunked=1]        N bytes of pattern, with Content-Length or chunked
//	/stream?n=N&chunk=C&every=D  N bytes of pattern with Content-Length, C bytes every D
//	/hang                        answers nothing until the client goes away (or 30 s)
//	/truncate?chunked=1          promises more than it sends, then hangs up
//	/ws                          WebSocket echo
//	/ws-reset                    WebSocket that is cut after the handshake
type target struct {
	*httptest.Server
	started atomic.Int64 // requests received
}

func newTarget(t testing.TB) *target {
	tg := &target{}
	mux := http.NewServeMux()
	mux.HandleFunc("/blob", func(w http.ResponseWriter, r *http.Request) {
		tg.started.Add(1)
		n := intParam(r, "n", 1024)
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		_, _ = w.Write(pattern[:n])
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		tg.started.Add(1)
		n := intParam(r, "n", 1<<20)
		chunk := intParam(r, "chunk", 16<<10)
		every := time.Duration(intParam(r, "every", 10)) * time.Millisecond
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		rc := http.NewResponseController(w)
		stop := time.NewTimer(30 * time.Second)
		defer stop.Stop()
		for off := 0; off < n; off += chunk {
			end := min(off+chunk, n)
			if _, err := w.Write(pattern[off:end]); err != nil {
				return
			}
			_ = rc.Flush()
			select {
			case <-time.After(every):
			case <-r.Context().Done():
				return
			case <-stop.C:
				return
			}
		}
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		tg.started.Add(1)
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	})
	mux.HandleFunc("/truncate", func(w http.ResponseWriter, r *http.Request) {
		tg.started.Add(1)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		if r.URL.Query().Get("chunked") != "" {
			_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n")
		} else {
			_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n")
		}
		_, _ = conn.Write(pattern[:1024])
		if r.URL.Query().Get("chunked") != "" {
			_, _ = io.WriteString(conn, "\r\n")
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // a reset, not a clean FIN
		}
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		tg.started.Add(1)
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(4 << 20)
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/ws-reset", func(w http.ResponseWriter, r *http.Request) {
		tg.started.Add(1)
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		_ = c.CloseNow() // no close frame: the connection just ends
	})
	tg.Server = httptest.NewServer(mux)
	t.Cleanup(tg.Close)
	return tg
}

func intParam(r *http.Request, key string, def int) int {
	if v, err := strconv.Atoi(r.URL.Query().Get(key)); err == nil && v >= 0 {
		return min(v, len(pattern))
	}
	return def
}

// echoServer is a TCP echo target for CONNECT. A connection whose first bytes are
// "RESET" is reset at once.
func echoServer(t testing.TB) string {
	t.Helper()
	ln := listen(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				_ = c.SetDeadline(time.Now().Add(60 * time.Second))
				buf := make([]byte, 32<<10)
				first := true
				for {
					n, err := c.Read(buf)
					if first && n >= 5 && string(buf[:5]) == "RESET" {
						_ = c.(*net.TCPConn).SetLinger(0)
						return
					}
					first = false
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// get fetches url through c and reports the status and whether the body arrived
// whole and equal to want (nil: no check).
func get(ctx context.Context, c *http.Client, u string) (status int, body []byte, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// waitFor polls cond every 10 ms until it holds; it fails the test after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// echoRoundTrip writes msg to conn and reads it back, within d.
func echoRoundTrip(conn net.Conn, msg []byte, d time.Duration) error {
	_ = conn.SetDeadline(time.Now().Add(d))
	defer func() { _ = conn.SetDeadline(time.Time{}) }()
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Write(msg)
		errc <- err
	}()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil {
		return err
	}
	if err := <-errc; err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return errors.New("echo differs from what was sent")
	}
	return nil
}
