package tunnel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/tunnel/internal/wire"
)

// recordingDialer stands in for the network under the egress policy: it records
// every address it is handed and answers with fn. It never dials anything that is
// not loopback, so egress tests cannot send traffic off the machine.
type recordingDialer struct {
	mu    sync.Mutex
	addrs []string
	fn    func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (d *recordingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.addrs = append(d.addrs, addr)
	n := len(d.addrs)
	d.mu.Unlock()
	if d.fn == nil {
		return nil, fmt.Errorf("dial %d to %s not expected", n, addr)
	}
	return d.fn(ctx, network, addr)
}

func (d *recordingDialer) dialed() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.addrs...)
}

// loopbackOnly dials addr for real if it is a loopback address and fails the dial
// otherwise.
func loopbackOnly(ctx context.Context, network, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() {
		return nil, fmt.Errorf("test dialer: refusing to dial non-loopback %q", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// echoConn answers a dial with an in-memory conn that echoes what it is sent.
func echoConn(context.Context, string, string) (net.Conn, error) {
	c1, c2 := net.Pipe()
	go func() {
		defer c2.Close()
		_, _ = io.Copy(c2, c2)
	}()
	return c1, nil
}

// refusedDial is what a dial to a closed port returns.
func refusedDial(addr string) error { return errnoDial(addr, syscall.ECONNREFUSED) }

// timedOutDial is what a dial whose SYNs went unanswered returns: a failure that may
// pass, so the server retries it.
func timedOutDial(addr string) error { return errnoDial(addr, syscall.ETIMEDOUT) }

func errnoDial(addr string, errno syscall.Errno) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: fakeAddr(addr), Err: os.NewSyscallError("connect", errno)}
}

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }

// fakeDNS resolves a few test names and counts lookups.
type fakeDNS struct {
	calls atomic.Int32
}

func (f *fakeDNS) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	f.calls.Add(1)
	switch host {
	case "private.test":
		return []netip.Addr{netip.MustParseAddr("10.1.2.3")}, nil
	case "mixed.test":
		return []netip.Addr{netip.MustParseAddr("93.184.215.14"), netip.MustParseAddr("169.254.169.254")}, nil
	case "public.test":
		return []netip.Addr{netip.MustParseAddr("93.184.215.14")}, nil
	case "loop.test":
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func wsRequest(t testing.TB, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	return req
}

// try makes one unit of work of the given kind to hostport and returns its error.
func try(t testing.TB, c *Client, kind, hostport string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch kind {
	case "connect":
		conn, err := c.DialContext(ctx, "tcp", hostport)
		if err == nil {
			conn.Close()
		}
		return err
	case "http":
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+hostport+"/secret-path?token=hunter2", nil)
		return errOnly(c.RoundTrip(req))
	case "websocket":
		return wsErrOnly(c.DialWebSocket(ctx, wsRequest(t, "ws://"+hostport+"/ws")))
	}
	t.Fatalf("unknown kind %q", kind)
	return nil
}

var workKinds = []string{"connect", "http", "websocket"}

// TestEgressRefusedBeforeDial: the default policy refuses loopback, the cloud
// credential endpoints, private ranges and names resolving to them, for every kind
// of stream, with a 403 and without dialing (or retrying) anything.
func TestEgressRefusedBeforeDial(t *testing.T) {
	live := listen(t) // a real loopback target: must be refused all the same
	defer live.Close()
	dialer := &recordingDialer{}
	dns := &fakeDNS{}
	h := newHarness(t, overPipe, func(c *ServerConfig) {
		c.Egress = EgressConfig{} // the default: built-in deny list only
		c.Dialer = dialer
		c.Resolver = dns
	})
	targets := []string{
		live.Addr().String(),
		"127.0.0.1:80",
		"[::1]:80",
		"169.254.169.254:80",
		"169.254.170.2:80",
		"10.0.0.1:443",
		"[fd00::1]:443",
		"[::ffff:10.0.0.1]:443",
		"0.0.0.0:80",
		"private.test:443",
		"mixed.test:443",
		"loop.test:80",
	}
	for _, kind := range workKinds {
		for _, tgt := range targets {
			before := dns.calls.Load()
			err := try(t, h.client, kind, tgt)
			if !errors.Is(err, ErrRefusedByPolicy) || HTTPStatus(err) != http.StatusForbidden {
				t.Errorf("%s %s: %v (status %d), want refused / 403", kind, tgt, err, HTTPStatus(err))
			}
			if n := dns.calls.Load() - before; n > 1 {
				t.Errorf("%s %s: %d lookups; a refusal must not be retried", kind, tgt, n)
			}
		}
	}
	if d := dialer.dialed(); len(d) != 0 {
		t.Fatalf("refused targets were dialled: %v", d)
	}
}

// TestEgressAllowListed: the operator's allow list opens what the built-in list
// refuses; the dial goes to the checked address, never to the name.
func TestEgressAllowListed(t *testing.T) {
	dialer := &recordingDialer{fn: echoConn}
	h := newHarness(t, overPipe, func(c *ServerConfig) {
		c.Egress = EgressConfig{
			AllowCIDRs: []string{"10.0.0.0/8", "169.254.170.2"},
			AllowHosts: []string{"private.test"},
			DenyCIDRs:  []string{"10.9.0.0/16"},
			DenyPorts:  []int{25},
		}
		c.Dialer = dialer
		c.Resolver = &fakeDNS{}
	})
	cases := []struct {
		addr, dialed string
		refused      bool
	}{
		{addr: "10.0.0.1:443", dialed: "10.0.0.1:443"},
		{addr: "private.test:8080", dialed: "10.1.2.3:8080"},
		{addr: "169.254.170.2:80", dialed: "169.254.170.2:80"},
		{addr: "169.254.169.254:80", refused: true}, // only .170.2 was opened
		{addr: "10.9.1.1:443", refused: true},       // deny wins over allow
		{addr: "public.test:25", refused: true},     // port denied
	}
	for _, tc := range cases {
		n := len(dialer.dialed())
		conn, err := h.client.DialContext(context.Background(), "tcp", tc.addr)
		if tc.refused {
			if !errors.Is(err, ErrRefusedByPolicy) {
				t.Errorf("%s: %v, want refused", tc.addr, err)
			}
			if len(dialer.dialed()) != n {
				t.Errorf("%s: refused target dialled", tc.addr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.addr, err)
			continue
		}
		if _, err := io.WriteString(conn, "ping"); err != nil {
			t.Fatal(err)
		}
		var got [4]byte
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(conn, got[:]); err != nil || string(got[:]) != "ping" {
			t.Errorf("%s: echo %q %v", tc.addr, got, err)
		}
		conn.Close()
		if d := dialer.dialed(); len(d) != n+1 || d[n] != tc.dialed {
			t.Errorf("%s: dialled %v, want %s", tc.addr, d[n:], tc.dialed)
		}
	}
}

// lockedBuffer is a log sink safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestEgressRefusalLogged: a refusal is logged at info with the client identity and
// the target host, and nothing of the path, query or resolved address.
func TestEgressRefusalLogged(t *testing.T) {
	var logs lockedBuffer
	h := newHarness(t, overMTLS, func(c *ServerConfig) {
		c.Egress = EgressConfig{}
		c.Resolver = &fakeDNS{}
		c.Logger = zerolog.New(&logs).Level(zerolog.InfoLevel)
	})
	err := try(t, h.client, "http", "private.test")
	if !errors.Is(err, ErrRefusedByPolicy) {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), "private.test") || strings.Contains(err.Error(), "10.1.2.3") {
		t.Errorf("agent's error should name the host, not its address: %v", err)
	}
	var out, line string
	waitFor(t, 5*time.Second, "the refusal log line", func() bool {
		out = logs.String()
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "refused by egress policy") {
				line = l
			}
		}
		return line != ""
	})
	for _, want := range []string{`"level":"info"`, `"target":"private.test"`, `test-agent`} {
		if !strings.Contains(line, want) {
			t.Errorf("refusal log line lacks %s: %s", want, line)
		}
	}
	for _, secret := range []string{"secret-path", "hunter2", "10.1.2.3"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q:\n%s", secret, out)
		}
	}
}

// countingDialer dials loopback for real and fails the dials fail says to, with
// err's error (refusedDial when err is nil).
type countingDialer struct {
	n    atomic.Int32
	fail func(n int32) bool
	err  func(addr string) error
}

func (d *countingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	n := d.n.Add(1)
	if d.fail != nil && d.fail(n) {
		if d.err != nil {
			return nil, d.err(addr)
		}
		return nil, refusedDial(addr)
	}
	return loopbackOnly(ctx, network, addr)
}

func closedAddr(t testing.TB) string {
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestBreakerOpens: after ConsecutiveFailures failed dials the target's breaker
// answers breaker_open (503) at once without dialing, for every kind of stream;
// after OpenTimeout one trial goes through and closes it again.
func TestBreakerOpens(t *testing.T) {
	// The target refuses its first three connections, then is back.
	dialer := &countingDialer{fail: func(n int32) bool { return n <= 3 }}
	const openFor = 300 * time.Millisecond
	h := newHarness(t, overPipe, func(c *ServerConfig) {
		c.Dialer = dialer
		c.Breaker = BreakerConfig{ConsecutiveFailures: 3, OpenTimeout: openFor, HalfOpenMaxRequests: 1}
		c.Retry.Attempts = 1
		c.Resolver = &fakeDNS{}
	})
	tgt := target(t)
	hostport := strings.TrimPrefix(tgt.URL, "http://")
	for i := 0; i < 3; i++ {
		if err := try(t, h.client, "connect", hostport); !errors.Is(err, ErrTargetRefused) {
			t.Fatalf("dial %d: %v", i, err)
		}
	}
	if n := dialer.n.Load(); n != 3 {
		t.Fatalf("%d dials, want 3", n)
	}
	opened := time.Now()
	for _, kind := range workKinds {
		start := time.Now()
		err := try(t, h.client, kind, hostport)
		if !errors.Is(err, ErrBreakerOpen) || HTTPStatus(err) != http.StatusServiceUnavailable {
			t.Fatalf("%s with breaker open: %v (status %d)", kind, err, HTTPStatus(err))
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("%s: open breaker took %v to answer", kind, d)
		}
	}
	if n := dialer.n.Load(); n != 3 {
		t.Fatalf("open breaker dialled: %d dials", n)
	}
	if time.Since(opened) >= openFor {
		t.Fatal("test too slow for the open timeout")
	}
	// The breaker is per host name and port: another name for the same address is
	// unaffected.
	livePort := hostport[strings.LastIndex(hostport, ":")+1:]
	if err := try(t, h.client, "connect", "loop.test:"+livePort); err != nil {
		t.Fatalf("other host name: %v", err)
	}
	time.Sleep(time.Until(opened.Add(openFor + 50*time.Millisecond)))
	// Half-open: an HTTP request to the same host:port is the trial (HTTP and CONNECT
	// share the breaker); it succeeds and closes the breaker.
	resp, err := h.client.RoundTrip(mustRequest("GET", tgt.URL+"/hello"))
	if err != nil {
		t.Fatalf("trial request: %v", err)
	}
	resp.Body.Close()
	for i := 0; i < 3; i++ {
		if err := try(t, h.client, "connect", hostport); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	}
}

// TestBreakerPerPort: refused connections to a closed port of 127.0.0.1 open that
// port's breaker only; another port on the same host keeps answering, for every kind
// of stream, and the breaker's log line names the host and the port.
func TestBreakerPerPort(t *testing.T) {
	var logs lockedBuffer
	dialer := &countingDialer{}
	h := newHarness(t, overPipe, func(c *ServerConfig) {
		c.Dialer = dialer
		c.Breaker = BreakerConfig{ConsecutiveFailures: 3, OpenTimeout: time.Minute, HalfOpenMaxRequests: 1}
		c.Logger = zerolog.New(&logs).Level(zerolog.WarnLevel)
	})
	live := strings.TrimPrefix(target(t).URL, "http://")
	dead := closedAddr(t)
	// One refusal of each kind: all three count against the same breaker.
	for _, kind := range workKinds {
		if err := try(t, h.client, kind, dead); !errors.Is(err, ErrTargetRefused) {
			t.Fatalf("%s to the closed port: %v", kind, err)
		}
	}
	dials := dialer.n.Load()
	for _, kind := range workKinds {
		if err := try(t, h.client, kind, dead); !errors.Is(err, ErrBreakerOpen) {
			t.Errorf("%s to the closed port: %v, want breaker_open", kind, err)
		}
		if err := try(t, h.client, kind, live); err != nil {
			t.Errorf("%s to another port of the same host: %v", kind, err)
		}
	}
	if n := dialer.n.Load() - dials; n != int32(len(workKinds)) {
		t.Errorf("%d dials after the breaker opened, want %d (the live port's only)", n, len(workKinds))
	}
	var line string
	waitFor(t, 5*time.Second, "the breaker's log line", func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, `"circuit breaker"`) && strings.Contains(l, `"to":"open"`) {
				line = l
			}
		}
		return line != ""
	})
	_, deadPort, _ := net.SplitHostPort(dead)
	for _, want := range []string{`"target":"127.0.0.1"`, `"port":"` + deadPort + `"`, `"from":"closed"`} {
		if !strings.Contains(line, want) {
			t.Errorf("breaker log line lacks %s: %s", want, line)
		}
	}
}

// TestBreakerDefaultPort: an HTTP request is counted against its URL's host and
// effective port, 80 or 443 by scheme when the URL names none, which is the breaker a
// CONNECT to that host:port uses too.
func TestBreakerDefaultPort(t *testing.T) {
	live := strings.TrimPrefix(target(t).URL, "http://")
	_, livePort, _ := net.SplitHostPort(live)
	// Nothing listens on loopback's 80 or 443 in a test; refuse them without trying.
	dialer := &recordingDialer{fn: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if strings.HasSuffix(addr, ":80") || strings.HasSuffix(addr, ":443") {
			return nil, refusedDial(addr)
		}
		return loopbackOnly(ctx, network, addr)
	}}
	h := newHarness(t, overPipe, func(c *ServerConfig) {
		c.Dialer = dialer
		c.Breaker = BreakerConfig{ConsecutiveFailures: 3, OpenTimeout: time.Minute, HalfOpenMaxRequests: 1}
		c.Retry.Attempts = 1
		c.Resolver = &fakeDNS{}
	})
	get := func(url string) error {
		resp, err := h.client.RoundTrip(mustRequest("GET", url))
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	for _, tc := range []struct{ url, addr string }{
		{"http://loop.test/a", "loop.test:80"},
		{"https://loop.test/a", "loop.test:443"},
	} {
		for i := 0; i < 3; i++ {
			if err := get(tc.url); !errors.Is(err, ErrTargetRefused) {
				t.Fatalf("%s, request %d: %v", tc.url, i, err)
			}
		}
		n := len(dialer.dialed())
		if err := try(t, h.client, "connect", tc.addr); !errors.Is(err, ErrBreakerOpen) {
			t.Errorf("CONNECT %s after %s was refused: %v, want breaker_open", tc.addr, tc.url, err)
		}
		if err := get(strings.Replace(tc.url, "loop.test", tc.addr, 1)); !errors.Is(err, ErrBreakerOpen) {
			t.Errorf("%s with the port spelt out: %v, want breaker_open", tc.url, err)
		}
		if d := dialer.dialed(); len(d) != n {
			t.Errorf("open breaker dialled %v", d[n:])
		}
	}
	if err := get("http://loop.test:" + livePort + "/hello"); err != nil {
		t.Errorf("the live port of the same host: %v", err)
	}
}

// TestBreakerIgnoresHTTPErrors: 5xx answers, refusals and unknown names do not
// trip the breaker.
func TestBreakerIgnoresHTTPErrors(t *testing.T) {
	tgt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	defer tgt.Close()
	h := newHarness(t, overPipe, func(c *ServerConfig) {
		c.Breaker.ConsecutiveFailures = 2
		c.Resolver = &fakeDNS{}
		c.Egress.DenyPorts = []int{9}
	})
	for i := 0; i < 5; i++ {
		resp, err := h.client.RoundTrip(mustRequest("GET", tgt.URL))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 500 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		if err := try(t, h.client, "connect", "nxdomain.test:80"); !errors.Is(err, ErrTargetDNS) {
			t.Fatalf("nxdomain %d: %v", i, err)
		}
		if err := try(t, h.client, "connect", "127.0.0.1:9"); !errors.Is(err, ErrRefusedByPolicy) {
			t.Fatalf("denied port %d: %v", i, err)
		}
		// Requests the server cannot make are the agent's fault: 400, not counted.
		bad := mustRequest("GET", tgt.URL)
		bad.Header["Bad Name"] = []string{"x"}
		badHost := mustRequest("GET", tgt.URL)
		badHost.Host = "bad host"
		badValue := mustRequest("GET", tgt.URL)
		badValue.Header.Set("X-Bad", "a\r\nInjected: yes")
		for _, req := range []*http.Request{bad, badHost, badValue} {
			if err := errOnly(h.client.RoundTrip(req)); !errors.Is(err, ErrBadRequest) || HTTPStatus(err) != http.StatusBadRequest {
				t.Fatalf("bad request %d: %v", i, err)
			}
		}
	}
	if err := try(t, h.client, "connect", strings.TrimPrefix(tgt.URL, "http://")); err != nil {
		t.Fatalf("breaker tripped by errors that are not the target's: %v", err)
	}
}

// TestRetry: dials that failed for a reason that may pass (here a timeout) are
// retried where nothing has been sent; a request with a body is sent once.
func TestRetry(t *testing.T) {
	tgt := target(t)
	hostport := strings.TrimPrefix(tgt.URL, "http://")
	firstFails := func(n int32) bool { return n == 1 }

	t.Run("GET retried after failed dial", func(t *testing.T) {
		dialer := &countingDialer{fail: firstFails, err: timedOutDial}
		h := newHarness(t, overPipe, func(c *ServerConfig) { c.Dialer = dialer })
		resp, err := h.client.RoundTrip(mustRequest("GET", tgt.URL+"/hello"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello" || dialer.n.Load() != 2 {
			t.Fatalf("got %q after %d dials, want hello after 2", b, dialer.n.Load())
		}
	})
	t.Run("CONNECT and WebSocket retried after failed dial", func(t *testing.T) {
		for _, kind := range []string{"connect", "websocket"} {
			dialer := &countingDialer{fail: firstFails, err: timedOutDial}
			h := newHarness(t, overPipe, func(c *ServerConfig) { c.Dialer = dialer })
			if err := try(t, h.client, kind, hostport); err != nil || dialer.n.Load() != 2 {
				t.Fatalf("%s: %v after %d dials", kind, err, dialer.n.Load())
			}
		}
	})
	t.Run("POST with body not retried", func(t *testing.T) {
		var seen atomic.Int32
		post := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen.Add(1) }))
		defer post.Close()
		for _, method := range []string{"POST", "PUT"} {
			dialer := &countingDialer{fail: firstFails, err: timedOutDial}
			h := newHarness(t, overPipe, func(c *ServerConfig) { c.Dialer = dialer })
			req, _ := http.NewRequest(method, post.URL, strings.NewReader("not twice"))
			err := errOnly(h.client.RoundTrip(req))
			if !errors.Is(err, ErrTargetTimeout) || HTTPStatus(err) != http.StatusGatewayTimeout {
				t.Fatalf("%s: %v", method, err)
			}
			if n := dialer.n.Load(); n != 1 {
				t.Fatalf("%s with a body: %d dials, want 1", method, n)
			}
		}
		if seen.Load() != 0 {
			t.Fatal("target saw a request")
		}
	})
	t.Run("attempts exhausted", func(t *testing.T) {
		dialer := &countingDialer{fail: func(int32) bool { return true }, err: timedOutDial}
		h := newHarness(t, overPipe, func(c *ServerConfig) { c.Dialer = dialer; c.Breaker.ConsecutiveFailures = 100 })
		for _, kind := range workKinds {
			dialer.n.Store(0)
			if err := try(t, h.client, kind, hostport); !errors.Is(err, ErrTargetTimeout) {
				t.Fatalf("%s: %v", kind, err)
			}
			if n := dialer.n.Load(); n != 3 {
				t.Fatalf("%s: %d dials, want 3", kind, n)
			}
		}
	})
	t.Run("unknown name not retried", func(t *testing.T) {
		dns := &fakeDNS{}
		h := newHarness(t, overPipe, func(c *ServerConfig) { c.Resolver = dns })
		for _, kind := range workKinds {
			dns.calls.Store(0)
			if err := try(t, h.client, kind, "nxdomain.test:80"); !errors.Is(err, ErrTargetDNS) {
				t.Fatalf("%s: %v", kind, err)
			}
			if n := dns.calls.Load(); n != 1 {
				t.Fatalf("%s: %d lookups, want 1", kind, n)
			}
		}
	})
}

// TestAbortStopsRetry: an agent that gives up ends the server's retries at once,
// backoff included.
func TestAbortStopsRetry(t *testing.T) {
	dialer := &countingDialer{fail: func(int32) bool { return true }, err: timedOutDial}
	h := newHarness(t, overPipe, func(c *ServerConfig) {
		c.Dialer = dialer
		c.Retry = RetryConfig{Attempts: 5, Initial: time.Minute, Multiplier: 1, Max: time.Minute}
	})
	dead := closedAddr(t)
	for _, kind := range workKinds {
		dialer.n.Store(0)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			var err error
			switch kind {
			case "connect":
				_, err = h.client.DialContext(ctx, "tcp", dead)
			case "http":
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+dead+"/", nil)
				err = errOnly(h.client.RoundTrip(req))
			case "websocket":
				err = wsErrOnly(h.client.DialWebSocket(ctx, wsRequest(t, "ws://"+dead+"/")))
			}
			errc <- err
		}()
		waitFor(t, 5*time.Second, "first dial", func() bool { return dialer.n.Load() == 1 })
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("%s: %v", kind, err)
		}
		waitFor(t, 2*time.Second, kind+" stream to end on the server", func() bool { return h.server.ActiveStreams() == 0 })
		if n := dialer.n.Load(); n != 1 {
			t.Fatalf("%s: %d dials after abort", kind, n)
		}
	}
}

// TestServerConfigValidate covers the reliability and egress settings.
func TestServerConfigValidate(t *testing.T) {
	cases := map[string]func(c *ServerConfig){
		"bad CIDR":      func(c *ServerConfig) { c.Egress.AllowCIDRs = []string{"10.0.0.0/33"} },
		"bad host":      func(c *ServerConfig) { c.Egress.DenyHosts = []string{"http://x"} },
		"bad port":      func(c *ServerConfig) { c.Egress.AllowPorts = []int{70000} },
		"open timeout":  func(c *ServerConfig) { c.Breaker.OpenTimeout = -time.Second },
		"no attempts":   func(c *ServerConfig) { c.Retry.Attempts = -1 },
		"initial":       func(c *ServerConfig) { c.Retry.Initial = -time.Second },
		"multiplier":    func(c *ServerConfig) { c.Retry.Multiplier = 0.5 },
		"max < initial": func(c *ServerConfig) { c.Retry.Max = time.Millisecond },
		"max streams":   func(c *ServerConfig) { c.MaxStreams = -1 },
		"pending":       func(c *ServerConfig) { c.MaxPendingStreams = -1 },
		"header":        func(c *ServerConfig) { c.HeaderTimeout = -time.Second },
		"budget":        func(c *ServerConfig) { c.ReceiveBudget = 1 << 10 },
		"window":        func(c *ServerConfig) { c.Session.StreamWindow = 64 << 10 },
		"keepalive":     func(c *ServerConfig) { c.Session.KeepAliveInterval = -time.Second },
		"header size":   func(c *ServerConfig) { c.Session.MaxHeaderSize = 100 },
	}
	for name, mod := range cases {
		c := DefaultServerConfig()
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := NewServer(c); err == nil {
			t.Errorf("%s: NewServer accepted", name)
		}
	}
	// The zero value is the defaults, and never changes the caller's copy.
	var zero ServerConfig
	if err := zero.Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	srv, err := NewServer(zero)
	if err != nil {
		t.Fatalf("zero config: %v", err)
	}
	_ = srv.Close()
	if !reflect.DeepEqual(zero, ServerConfig{}) {
		t.Fatal("NewServer changed its config")
	}
	c := DefaultServerConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Breaker != (BreakerConfig{5, 30 * time.Second, 1}) || c.Retry != (RetryConfig{3, time.Second, 2, 10 * time.Second}) {
		t.Fatalf("defaults are not the seed's: %+v %+v", c.Breaker, c.Retry)
	}
}

// TestConnectEarlyBytes: bytes an agent sends before the connected answer (which
// the server's abort watch may already have read) still reach the target, first.
func TestConnectEarlyBytes(t *testing.T) {
	h := newHarness(t, overPipe, nil)
	ln := listen(t)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	sess, err := h.client.session(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sess.open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	raw, _ := wire.Append(nil, wire.TypeConnect, wire.ConnectRequest{Addr: ln.Addr().String()})
	if _, err := st.Write(append(raw, "early bytes"...)); err != nil {
		t.Fatal(err)
	}
	_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
	var ans wire.Answer
	if err := wire.Read(st, 0, &ans); err != nil || ans.Type != wire.TypeConnected {
		t.Fatalf("answer %q %v", ans.Type, err)
	}
	got := make([]byte, len("early bytes"))
	if _, err := io.ReadFull(st, got); err != nil || string(got) != "early bytes" {
		t.Fatalf("echo %q %v", got, err)
	}
}

// TestBreakerCountsRequestsNotAttempts: a request that fails after all its retries
// is one failure for the breaker, so two failed requests do not open a breaker set
// to three consecutive failures, however many dials they made.
func TestBreakerCountsRequestsNotAttempts(t *testing.T) {
	dialer := &countingDialer{fail: func(int32) bool { return true }, err: timedOutDial}
	h := newHarness(t, overPipe, func(c *ServerConfig) {
		c.Dialer = dialer
		c.Breaker = BreakerConfig{ConsecutiveFailures: 3, OpenTimeout: time.Minute, HalfOpenMaxRequests: 1}
		c.Retry = RetryConfig{Attempts: 3, Initial: time.Millisecond, Multiplier: 1, Max: time.Millisecond}
		c.Resolver = &fakeDNS{}
	})
	dead := closedAddr(t)
	for i := 0; i < 2; i++ {
		if err := try(t, h.client, "connect", dead); !errors.Is(err, ErrTargetTimeout) {
			t.Fatalf("request %d: %v, want the target's timeout (breaker still closed)", i, err)
		}
	}
	if n := dialer.n.Load(); n != 6 {
		t.Fatalf("%d dials, want 2 requests × 3 attempts", n)
	}
	if err := try(t, h.client, "connect", dead); !errors.Is(err, ErrTargetTimeout) {
		t.Fatalf("third request: %v", err)
	}
	if err := try(t, h.client, "connect", dead); !errors.Is(err, ErrBreakerOpen) {
		t.Fatalf("fourth request: %v, want the open breaker", err)
	}
}

// TestRetrySkipsRefused: a refused connection is not transient. With the default
// retry policy (about 1 s before a second attempt) a refused CONNECT, HTTP request or
// WebSocket is answered with connection_refused after one dial, well before a retry
// could have gone out, and still counts against the target's breaker; so is a host or
// network reported unreachable, answered with unreachable.
func TestRetrySkipsRefused(t *testing.T) {
	def := DefaultServerConfig().Retry
	// The first retry waits Initial less the policy's jitter (±20 %) at the least.
	atOnce := def.Initial * 8 / 10 / 2
	cases := []struct {
		name   string
		dialer *countingDialer // nil: dial the closed port for real
		code   ErrorCode
	}{
		{name: "refused", code: CodeConnectionRefused},
		{name: "EHOSTUNREACH", code: CodeUnreachable, dialer: &countingDialer{
			fail: func(int32) bool { return true },
			err:  func(addr string) error { return errnoDial(addr, syscall.EHOSTUNREACH) },
		}},
		{name: "ENETUNREACH", code: CodeUnreachable, dialer: &countingDialer{
			fail: func(int32) bool { return true },
			err:  func(addr string) error { return errnoDial(addr, syscall.ENETUNREACH) },
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dialer := tc.dialer
			if dialer == nil {
				dialer = &countingDialer{}
			}
			h := newHarness(t, overPipe, func(c *ServerConfig) {
				c.Dialer = dialer
				c.Retry = def
				c.Breaker.ConsecutiveFailures = uint32(len(workKinds))
			})
			dead := closedAddr(t)
			for _, kind := range workKinds {
				dialer.n.Store(0)
				start := time.Now()
				err := try(t, h.client, kind, dead)
				took := time.Since(start)
				var re *RemoteError
				if !errors.As(err, &re) || re.Code != tc.code || HTTPStatus(err) != http.StatusBadGateway {
					t.Errorf("%s: %v (status %d), want %s / 502", kind, err, HTTPStatus(err), tc.code)
				}
				if tc.code == CodeConnectionRefused && !errors.Is(err, ErrTargetRefused) {
					t.Errorf("%s: %v does not match ErrTargetRefused", kind, err)
				}
				if n := dialer.n.Load(); n != 1 {
					t.Errorf("%s: %d dials, want 1", kind, n)
				}
				if took >= atOnce {
					t.Errorf("%s: answered after %v, want well under the first retry delay (%v)", kind, took, def.Initial)
				}
			}
			// One failure per kind: the breaker counted each.
			if err := try(t, h.client, "connect", dead); !errors.Is(err, ErrBreakerOpen) {
				t.Errorf("after %d refusals: %v, want breaker_open", len(workKinds), err)
			}
		})
	}
}
