package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	xproxy "golang.org/x/net/proxy"

	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// socksConnectBytes is a client's greeting (no authentication) and a CONNECT
// request for host:port, with the address type a client would choose.
func socksConnectBytes(host string, port uint16) []byte {
	b := []byte{5, 1, 0, 5, socksCmdConnect, 0}
	switch ip := net.ParseIP(host); {
	case ip != nil && ip.To4() != nil:
		b = append(append(b, socksAtypIPv4), ip.To4()...)
	case ip != nil:
		b = append(append(b, socksAtypIPv6), ip.To16()...)
	default:
		b = append(append(b, socksAtypDomain, byte(len(host))), host...)
	}
	return append(b, byte(port>>8), byte(port))
}

func TestSOCKSHandshake(t *testing.T) {
	reply := func(code byte) []byte { return []byte{5, 0, 5, code, 0, 1, 0, 0, 0, 0, 0, 0} }
	tests := []struct {
		name    string
		in      []byte
		target  string // on success
		written []byte
		reply   byte // of the *socksError, when one is wanted
		wantErr bool
	}{
		{"domain", socksConnectBytes("example.com", 443), "example.com:443", []byte{5, 0}, 0, false},
		{"ipv4", socksConnectBytes("192.0.2.7", 22), "192.0.2.7:22", []byte{5, 0}, 0, false},
		{"ipv6", socksConnectBytes("2001:db8::1", 80), "[2001:db8::1]:80", []byte{5, 0}, 0, false},
		{"no auth among others", append([]byte{5, 3, 2, 1, 0}, socksConnectBytes("a.example", 1)[3:]...), "a.example:1", []byte{5, 0}, 0, false},
		{"only user/password", []byte{5, 1, 2}, "", []byte{5, 0xff}, 0, true},
		{"no methods", []byte{5, 0}, "", []byte{5, 0xff}, 0, true},
		{"socks4", []byte{4, 1, 0, 80, 127, 0, 0, 1, 0}, "", nil, 0, true},
		{"http", []byte("GET / HTTP/1.1\r\n\r\n"), "", nil, 0, true},
		{"bind", []byte{5, 1, 0, 5, socksCmdBind, 0, 1, 1, 2, 3, 4, 0, 80}, "", reply(socksCommandNotSupported), socksCommandNotSupported, true},
		{"udp associate", []byte{5, 1, 0, 5, socksCmdUDP, 0, 1, 0, 0, 0, 0, 0, 0}, "", reply(socksCommandNotSupported), socksCommandNotSupported, true},
		{"unknown address type", []byte{5, 1, 0, 5, 1, 0, 9, 1, 2}, "", reply(socksAddressNotSupported), socksAddressNotSupported, true},
		{"empty name", []byte{5, 1, 0, 5, 1, 0, 3, 0, 0, 80}, "", reply(socksGeneralFailure), socksGeneralFailure, true},
		{"name with a colon", socksConnectBytes("a:b", 80), "", reply(socksGeneralFailure), socksGeneralFailure, true},
		{"name with a NUL", socksConnectBytes("a\x00b", 80), "", reply(socksGeneralFailure), socksGeneralFailure, true},
		{"port 0", socksConnectBytes("example.com", 0), "", reply(socksGeneralFailure), socksGeneralFailure, true},
		{"request version 4", []byte{5, 1, 0, 4, 1, 0, 1, 1, 2, 3, 4, 0, 80}, "", reply(socksGeneralFailure), socksGeneralFailure, true},
		{"truncated greeting", []byte{5, 2, 0}, "", nil, 0, true},
		{"truncated name", []byte{5, 1, 0, 5, 1, 0, 3, 10, 'a', 'b'}, "", []byte{5, 0}, 0, true},
		{"truncated port", []byte{5, 1, 0, 5, 1, 0, 1, 1, 2, 3, 4, 0}, "", []byte{5, 0}, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var w bytes.Buffer
			req, err := socksHandshake(bytes.NewReader(tc.in), &w)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && req.target() != tc.target {
				t.Errorf("target %q, want %q", req.target(), tc.target)
			}
			var se *socksError
			if errors.As(err, &se) && se.reply != tc.reply {
				t.Errorf("reply %#x, want %#x", se.reply, tc.reply)
			}
			if !bytes.Equal(w.Bytes(), tc.written) {
				t.Errorf("wrote % x, want % x", w.Bytes(), tc.written)
			}
		})
	}
}

func TestSOCKSReplyFor(t *testing.T) {
	tests := []struct {
		err  error
		want byte
	}{
		{&tunnel.RemoteError{Code: tunnel.CodeRefused}, socksNotAllowed},
		{&tunnel.RemoteError{Code: tunnel.CodeDNS}, socksHostUnreachable},
		{&tunnel.RemoteError{Code: tunnel.CodeConnectionRefused}, socksConnectionRefused},
		{&tunnel.RemoteError{Code: tunnel.CodeTimeout}, socksHostUnreachable},
		{&tunnel.RemoteError{Code: tunnel.CodeUnreachable}, socksNetworkUnreachable},
		{&tunnel.RemoteError{Code: tunnel.CodeBreakerOpen}, socksGeneralFailure},
		{&tunnel.RemoteError{Code: tunnel.CodeOverCapacity}, socksGeneralFailure},
		{&tunnel.RemoteError{Code: tunnel.CodeShuttingDown}, socksGeneralFailure},
		{&tunnel.RemoteError{Code: tunnel.CodeBadRequest}, socksGeneralFailure},
		{fmt.Errorf("x: %w", &tunnel.RemoteError{Code: tunnel.CodeDNS}), socksHostUnreachable},
		{down(&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}), socksGeneralFailure},
		{down(context.DeadlineExceeded), socksGeneralFailure},
		{tunnel.ErrSessionClosed, socksGeneralFailure},
		{wakingError{time.Minute}, socksGeneralFailure},
		{context.DeadlineExceeded, socksHostUnreachable},
		{errors.New("other"), socksGeneralFailure},
	}
	for _, tc := range tests {
		if got := socksReplyFor(tc.err); got != tc.want {
			t.Errorf("socksReplyFor(%v) = %#x, want %#x", tc.err, got, tc.want)
		}
	}
}

// startSOCKS serves p's SOCKS5 front end on a loopback port.
func startSOCKS(t *testing.T, tun Tunnel) (*Proxy, *SOCKSServer, string) {
	t.Helper()
	p, err := New(tun, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := p.NewSOCKSServer()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		_ = s.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
		waitTunnels(t, p)
	})
	return p, s, ln.Addr().String()
}

// TestSOCKSConnect goes through a real tunnel with golang.org/x/net's SOCKS5
// client, which sends names unresolved: the tunnel's server resolves them.
func TestSOCKSConnect(t *testing.T) {
	target := startTarget(t)
	_, port, _ := net.SplitHostPort(target)
	_, _, addr := startSOCKS(t, startTunnel(t))
	d, err := xproxy.SOCKS5("tcp", addr, nil, xproxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.(xproxy.ContextDialer).DialContext}}
	defer hc.CloseIdleConnections()
	for _, host := range []string{"localhost", "127.0.0.1"} {
		resp, err := hc.Get("http://" + net.JoinHostPort(host, port) + "/hello")
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "hello" {
			t.Errorf("%s: body %q", host, body)
		}
	}
}

// startTarget serves targetMux on loopback and returns its address.
func startTarget(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: targetMux()}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// TestSOCKSErrors: a failed dial reaches the client as its reply code.
func TestSOCKSErrors(t *testing.T) {
	tests := []struct {
		err  error
		want byte
	}{
		{&tunnel.RemoteError{Code: tunnel.CodeRefused}, socksNotAllowed},
		{&tunnel.RemoteError{Code: tunnel.CodeDNS}, socksHostUnreachable},
		{&tunnel.RemoteError{Code: tunnel.CodeConnectionRefused}, socksConnectionRefused},
		{down(errors.New("no route")), socksGeneralFailure},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.err), func(t *testing.T) {
			_, _, addr := startSOCKS(t, fakeTunnel{tc.err})
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, _ = c.Write(socksConnectBytes("target.example", 443))
			got := make([]byte, 12)
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatal(err)
			}
			if got[3] != tc.want {
				t.Errorf("reply %#x, want %#x", got[3], tc.want)
			}
			if n, err := c.Read(got); n != 0 || err == nil {
				t.Errorf("after a failed reply: read %d, %v; want the connection closed", n, err)
			}
		})
	}
}

// TestSOCKSShutdown: an open relay counts as a tunnel and keeps Shutdown
// waiting; a connection that never made its request does not; Close ends all.
func TestSOCKSShutdown(t *testing.T) {
	target := startTarget(t)
	host, port, _ := net.SplitHostPort(target)
	p, s, addr := startSOCKS(t, startTunnel(t))

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	n, _ := strconv.Atoi(port)
	_, _ = busy.Write(socksConnectBytes(host, uint16(n)))
	if _, err := io.ReadFull(busy, make([]byte, 12)); err != nil {
		t.Fatal(err)
	}
	if got := p.ActiveTunnels(); got != 1 {
		t.Fatalf("ActiveTunnels = %d with one relay open, want 1", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a relay open: %v, want it to wait", err)
	}
	if _, err := idle.Read(make([]byte, 1)); err == nil {
		t.Error("a connection without a request survived Shutdown")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("the listener still accepts after Shutdown")
	}
	// The relay still works.
	fmt.Fprintf(busy, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	buf := make([]byte, 512)
	if n, err := busy.Read(buf); err != nil || !bytes.Contains(buf[:n], []byte("200 OK")) {
		t.Fatalf("relay after Shutdown began: %q, %v", buf[:n], err)
	}
	_ = s.Close()
	_ = busy.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(busy); err != nil {
		t.Errorf("after Close: %v, want the relay ended (EOF)", err)
	}
}

// FuzzSOCKSHandshake feeds arbitrary client bytes to the parser. Seeds are in
// testdata/fuzz/FuzzSOCKSHandshake.
func FuzzSOCKSHandshake(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		var w bytes.Buffer
		req, err := socksHandshake(bytes.NewReader(in), &w)
		var se *socksError
		switch {
		case err == nil:
			if !bytes.Equal(w.Bytes(), []byte{5, 0}) {
				t.Fatalf("accepted, but wrote % x", w.Bytes())
			}
			if req.cmd != socksCmdConnect || req.port == 0 || !validSOCKSHost(req.host) {
				t.Fatalf("accepted %+v", req)
			}
			host, port, err := net.SplitHostPort(req.target())
			if err != nil || host != req.host || port != strconv.Itoa(int(req.port)) {
				t.Fatalf("target %q does not split back into %q and %d: %v", req.target(), req.host, req.port, err)
			}
			// What a client would send for it parses to the same request.
			again, err := socksHandshake(bytes.NewReader(socksConnectBytes(req.host, req.port)), io.Discard)
			same := again == req
			if ip := net.ParseIP(req.host); ip != nil && err == nil {
				same = again.cmd == req.cmd && again.port == req.port && ip.Equal(net.ParseIP(again.host))
			}
			if err != nil || !same {
				t.Fatalf("re-encoded %+v parses as %+v, %v", req, again, err)
			}
		case errors.As(err, &se) && se.reply != 0:
			if got := w.Bytes(); len(got) != 12 || got[3] != se.reply {
				t.Fatalf("refused with %#x, but wrote % x", se.reply, got)
			}
		}
	})
}

// TestSOCKSClientAtHTTPPort: a SOCKS client pointed at the HTTP proxy is told
// at once, not after ReadHeaderTimeout; HTTP clients are unaffected (every
// other test here goes through the same listener).
func TestSOCKSClientAtHTTPPort(t *testing.T) {
	proxyURL := startProxy(t, fakeTunnel{errors.New("not reached")}, nil)
	for _, tc := range []struct {
		name       string
		send, want []byte
	}{
		{"socks5", []byte{5, 1, 0}, []byte{5, 0xff}},
		{"socks4", []byte{4, 1, 0, 80, 127, 0, 0, 1, 0}, []byte{0, 0x5b, 0, 0, 0, 0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", proxyURL.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Write(tc.send)
			got, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Errorf("read % x, %v; want % x and the connection closed", got, err, tc.want)
			}
		})
	}
}
