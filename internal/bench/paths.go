package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Path is one way of reaching the target: directly, through the Fluidity
// agent, or through ssh -D.
type Path struct {
	Name string
	// Dial opens a byte stream to addr through the path: a TCP dial, an HTTP
	// CONNECT tunnel or a SOCKS5 connection.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// ProxyAddr is set for HTTP proxies: plain http:// requests are sent to it
	// in absolute form instead of through Dial.
	ProxyAddr string
	// Procs returns the processes whose memory and CPU are the path's cost.
	Procs func() []int
}

// Transport returns an HTTP transport sending plain http:// requests
// through the path, keeping up to conns connections alive.
func (p *Path) Transport(conns int) *http.Transport {
	t := &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	if p.ProxyAddr != "" {
		t.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: p.ProxyAddr})
	} else {
		t.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) { return p.Dial(ctx, addr) }
	}
	return t
}

// DialDirect is a plain TCP dial.
func DialDirect(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// bufConn is a conn whose first bytes were already read into r.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// handshake runs fn on a fresh connection to proxy, bounded by ctx.
func handshake(ctx context.Context, proxy string, fn func(net.Conn) (net.Conn, error)) (net.Conn, error) {
	c, err := DialDirect(ctx, proxy)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	out, err := fn(c)
	if !stop() || err != nil {
		c.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, err
	}
	return out, nil
}

// DialConnect opens an HTTP CONNECT tunnel to addr through the proxy.
func DialConnect(ctx context.Context, proxy, addr string) (net.Conn, error) {
	return handshake(ctx, proxy, func(c net.Conn) (net.Conn, error) {
		if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", addr, addr); err != nil {
			return nil, err
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			return nil, fmt.Errorf("CONNECT %s: %w", addr, err)
		}
		// A 200 to CONNECT has no length: closing its body reads nothing from br,
		// which carries the tunnel.
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("CONNECT %s: %s", addr, resp.Status)
		}
		if br.Buffered() > 0 {
			return &bufConn{Conn: c, r: br}, nil
		}
		return c, nil
	})
}

// DialSOCKS5 opens a SOCKS5 CONNECT to addr (an IPv4 host:port) through
// the proxy, without authentication.
func DialSOCKS5(ctx context.Context, proxy, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ip := net.ParseIP(host).To4()
	port, err := strconv.Atoi(portStr)
	if ip == nil || err != nil {
		return nil, fmt.Errorf("socks5: want an IPv4 host:port, got %q", addr)
	}
	return handshake(ctx, proxy, func(c net.Conn) (net.Conn, error) {
		if _, err := c.Write([]byte{5, 1, 0}); err != nil {
			return nil, err
		}
		var b [10]byte
		if _, err := io.ReadFull(c, b[:2]); err != nil {
			return nil, fmt.Errorf("socks5 greeting: %w", err)
		}
		if b[0] != 5 || b[1] != 0 {
			return nil, errors.New("socks5: no acceptable auth method")
		}
		req := append([]byte{5, 1, 0, 1}, ip...)
		req = binary.BigEndian.AppendUint16(req, uint16(port))
		if _, err := c.Write(req); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, b[:4]); err != nil {
			return nil, fmt.Errorf("socks5 reply: %w", err)
		}
		if b[1] != 0 {
			return nil, fmt.Errorf("socks5: connect %s failed with code %d", addr, b[1])
		}
		var skip int
		switch b[3] {
		case 1:
			skip = 4 + 2
		case 4:
			skip = 16 + 2
		case 3:
			if _, err := io.ReadFull(c, b[:1]); err != nil {
				return nil, err
			}
			skip = int(b[0]) + 2
		default:
			return nil, fmt.Errorf("socks5: bad address type %d", b[3])
		}
		if _, err := io.CopyN(io.Discard, c, int64(skip)); err != nil {
			return nil, err
		}
		return c, nil
	})
}

// request writes one HTTP/1.1 request on c. With proxy set the target is
// written in absolute form, as to an HTTP proxy.
func request(w io.Writer, method, host, path string, proxy, closeConn bool, contentLength int64) error {
	target := path
	if proxy {
		target = "http://" + host + path
	}
	extra := ""
	if closeConn {
		extra += "Connection: close\r\n"
	}
	if contentLength >= 0 {
		extra += "Content-Length: " + strconv.FormatInt(contentLength, 10) + "\r\n"
	}
	_, err := fmt.Fprintf(w, "%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", method, target, host, extra)
	return err
}

// readResponse reads one response from br, discards its body and fails on a
// status other than 200.
func readResponse(br *bufio.Reader, method string) error {
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := drain(resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// drain reads r to the end with a pooled buffer and counts the bytes.
func drain(r io.Reader) (int64, error) {
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	var total int64
	for {
		n, err := r.Read(*buf)
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// OneShot opens a new connection through the path, sends one small GET and
// closes. With plain set and an HTTP proxy path, the request goes to the
// proxy as plain HTTP; otherwise it runs through Dial (CONNECT or SOCKS).
func (p *Path) OneShot(ctx context.Context, target string, plain bool) error {
	viaProxy := plain && p.ProxyAddr != ""
	var c net.Conn
	var err error
	if viaProxy {
		c, err = DialDirect(ctx, p.ProxyAddr)
	} else {
		c, err = p.Dial(ctx, target)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	if err := request(c, http.MethodGet, target, "/small", viaProxy, true, -1); err != nil {
		return err
	}
	err = readResponse(bufio.NewReader(c), http.MethodGet)
	return err
}
