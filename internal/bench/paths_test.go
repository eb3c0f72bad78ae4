package bench

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"
	"time"
)

// fakeHTTPProxy is a minimal forwarding + CONNECT proxy standing in for the
// Fluidity agent.
func fakeHTTPProxy(t *testing.T) string {
	t.Helper()
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.Out.URL = r.In.URL }}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			rp.ServeHTTP(w, r)
			return
		}
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n")
		go func() { _, _ = io.Copy(up, rw); up.Close() }()
		_, _ = io.Copy(c, up)
		c.Close()
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// fakeSOCKS5 is a minimal no-auth SOCKS5 CONNECT server standing in for ssh -D.
func fakeSOCKS5(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b := make([]byte, 10)
				if _, err := io.ReadFull(c, b[:3]); err != nil {
					return
				}
				_, _ = c.Write([]byte{5, 0})
				if _, err := io.ReadFull(c, b[:10]); err != nil || b[3] != 1 {
					return
				}
				addr := &net.TCPAddr{IP: net.IP(b[4:8]), Port: int(binary.BigEndian.Uint16(b[8:10]))}
				up, err := net.DialTCP("tcp", nil, addr)
				if err != nil {
					_, _ = c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
					return
				}
				defer up.Close()
				_, _ = c.Write([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 0})
				// Like ssh -D: the client's end closes the target's connection.
				go func() { _, _ = io.Copy(up, c); up.Close() }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestPathsAgainstFakes(t *testing.T) {
	target, err := StartTarget()
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	hp, sp := fakeHTTPProxy(t), fakeSOCKS5(t)
	paths := []*Path{
		{Name: Direct, Dial: DialDirect},
		{Name: Fluidity, ProxyAddr: hp, Dial: func(ctx context.Context, a string) (net.Conn, error) { return DialConnect(ctx, hp, a) }},
		{Name: SSH, Dial: func(ctx context.Context, a string) (net.Conn, error) { return DialSOCKS5(ctx, sp, a) }},
	}
	// A bound on a hang, not a speed check: the nine workloads of three paths
	// took over 10 s on a loaded 2-core machine.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, p := range paths {
		for _, plain := range []bool{true, false} {
			if err := p.OneShot(ctx, target.Addr, plain); err != nil {
				t.Errorf("%s OneShot(plain=%v): %v", p.Name, plain, err)
			}
		}
		d, err := Download(ctx, p, target.Addr, 3<<20, 5*time.Second)
		if err != nil || d.Bytes != 3<<20 {
			t.Errorf("%s download: %+v, %v", p.Name, d, err)
		}
		u, err := Upload(ctx, p, target, 3<<20, 5*time.Second)
		if err != nil || u.Bytes != 3<<20 {
			t.Errorf("%s upload: %+v, %v", p.Name, u, err)
		}
		rps, lats, err := SmallLoad(ctx, p, target.Addr, 4, 50*time.Millisecond, nil)
		if err != nil || rps <= 0 || len(lats) == 0 {
			t.Errorf("%s small load: %v req/s, %d samples, %v", p.Name, rps, len(lats), err)
		}
		for _, tc := range []struct {
			addr string
			tls  *tls.Config
		}{{target.Addr, nil}, {target.Origins.Addrs[1], target.Origins.ClientConfig()}} {
			rps, lats, err := TunnelLoad(ctx, p, tc.addr, tc.tls, 4, 50*time.Millisecond, nil)
			if err != nil || rps <= 0 || len(lats) == 0 {
				t.Errorf("%s tunnel load (tls %v): %v req/s, %d samples, %v", p.Name, tc.tls != nil, rps, len(lats), err)
			}
		}
		pages, err := PageLoads(ctx, p, target.Origins.Addrs, target.Origins.ClientConfig(), 2)
		if err != nil || len(pages) != 2 {
			t.Errorf("%s page loads: %v, %v", p.Name, pages, err)
		}
		for _, bg := range []Background{{Upload: true}, {Downloads: 2}} {
			lats, mbps, err := HeadOfLineWith(ctx, p, target, 100*time.Millisecond, bg)
			if err != nil || len(lats) == 0 || mbps <= 0 {
				t.Errorf("%s head-of-line beside %v: %d samples, %v MB/s, %v", p.Name, bg, len(lats), mbps, err)
			}
		}
	}
	if open, err := target.Quiesce(ctx, 2*time.Second); err != nil || open != 0 {
		t.Errorf("%d transfers left open: %v", open, err)
	}
}

// TestTLSStream: the ceiling row's in-process TLS 1.3 stream moves what it is asked.
func TestTLSStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mbps, err := TLSStream(ctx, 8<<20)
	if err != nil || mbps <= 0 {
		t.Fatalf("TLSStream: %v MB/s, %v", mbps, err)
	}
}

func TestProfileLoadKinds(t *testing.T) {
	t.Parallel()
	rig := &Rig{Paths: []*Path{{Name: Fluidity}}}
	if _, err := ProfileLoad(context.Background(), rig, "bogus", 1, time.Millisecond); err == nil || !strings.Contains(err.Error(), "want connect, https or http") {
		t.Errorf("ProfileLoad(bogus) = %v, want the kinds named", err)
	}
	if _, err := ProfileLoad(context.Background(), &Rig{}, ProfileConnect, 1, time.Millisecond); err == nil {
		t.Error("ProfileLoad without a fluidity path: no error")
	}
}
