package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// echo answers every request with what it received: method, request URI, body
// size and SHA-256, how the body was framed, and the Host header.
func echo(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("X-Method", r.Method)
	w.Header().Set("X-Request-URI", r.RequestURI)
	w.Header().Set("X-Host", r.Host)
	w.Header().Set("X-Body-Length", strconv.FormatInt(n, 10))
	w.Header().Set("X-Body-SHA256", hex.EncodeToString(h.Sum(nil)))
	w.Header().Set("X-Content-Length", strconv.FormatInt(r.ContentLength, 10))
	w.Header().Set("X-Transfer-Encoding", strings.Join(r.TransferEncoding, ","))
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	w.Header().Set("X-Received-Headers", strings.Join(names, ","))
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Length", "4242")
		return
	}
	fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, n)
}

func randomFile(t *testing.T, size int) (string, string) {
	t.Helper()
	b := make([]byte, size)
	_, _ = rand.Read(b)
	sum := sha256.Sum256(b)
	path := filepath.Join(t.TempDir(), "body.bin")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, hex.EncodeToString(sum[:])
}

// parseHead parses what curl prints for -i / -I / -D -: interim 1xx answers
// (curl sends Expect: 100-continue for large bodies) are skipped. The final
// answer's body is returned read and closed.
//
//bodyclose:handled
func parseHead(t *testing.T, raw []byte) (*http.Response, []byte) {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(raw))
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("parse curl output: %v\n%s", err, raw)
		}
		if resp.StatusCode >= 200 {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp, body
		}
	}
}

// TestCurl drives the real agent and server with curl -x: plain HTTP GET, POST,
// HEAD, a chunked upload, a streamed response, and HTTPS through CONNECT.
func TestCurl(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOpts{})
	proxy := "http://" + s.agent.addr

	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/", echo)
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		// No Content-Length: the first part is flushed, the rest waits until the
		// test has seen that first part arrive through the tunnel.
		_, _ = io.WriteString(w, "first-part\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		case <-time.After(20 * time.Second):
		}
		for i := range 100 {
			fmt.Fprintf(w, "line %d\n", i)
		}
	})
	target := httpTarget(t, mux)
	tlsSrv, _, caFile := tlsTarget(t, http.HandlerFunc(echo))

	t.Run("GET", func(t *testing.T) {
		out := mustCurl(t, "-i", "-x", proxy, target.URL+"/hello/world?x=1&y=two")
		resp, body := parseHead(t, out)
		if resp.StatusCode != 200 || string(body) != "GET /hello/world 0" {
			t.Fatalf("GET: %d %q", resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-Request-URI"); got != "/hello/world?x=1&y=two" {
			t.Errorf("target saw request URI %q", got)
		}
		if got, want := resp.Header.Get("X-Host"), strings.TrimPrefix(target.URL, "http://"); got != want {
			t.Errorf("target saw Host %q, want %q", got, want)
		}
	})

	t.Run("HopByHopHeaders", func(t *testing.T) {
		out := mustCurl(t, "-i", "-x", proxy, "-H", "Connection: keep-alive, X-Hop", "-H", "X-Hop: 1",
			"-H", "Keep-Alive: timeout=5", "-H", "Proxy-Authorization: Basic Zm9vOmJhcg==", "-H", "TE: trailers",
			"-H", "X-End-To-End: 2", target.URL+"/headers")
		resp, _ := parseHead(t, out)
		received := strings.Split(resp.Header.Get("X-Received-Headers"), ",")
		for _, h := range []string{"X-Hop", "Keep-Alive", "Proxy-Authorization", "Te", "Proxy-Connection"} {
			if slices.Contains(received, h) {
				t.Errorf("hop-by-hop header %s reached the target (it received %v)", h, received)
			}
		}
		if !slices.Contains(received, "X-End-To-End") {
			t.Errorf("end-to-end header X-End-To-End did not reach the target (it received %v)", received)
		}
	})

	t.Run("POST", func(t *testing.T) {
		file, sum := randomFile(t, 3*mib+17)
		out := mustCurl(t, "-i", "-x", proxy, "--data-binary", "@"+file, "-H", "Content-Type: application/octet-stream", target.URL+"/upload")
		resp, body := parseHead(t, out)
		if resp.StatusCode != 200 || resp.Header.Get("X-Method") != "POST" {
			t.Fatalf("POST: %d %q", resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-Body-Length"); got != strconv.Itoa(3*mib+17) {
			t.Errorf("target received %s bytes", got)
		}
		if got := resp.Header.Get("X-Body-SHA256"); got != sum {
			t.Errorf("target received a body with SHA-256 %s, sent %s", got, sum)
		}
	})

	t.Run("HEAD", func(t *testing.T) {
		out := mustCurl(t, "-I", "-x", proxy, target.URL+"/head")
		resp, body := parseHead(t, out)
		if resp.StatusCode != 200 || resp.Header.Get("X-Method") != "HEAD" || len(body) != 0 {
			t.Fatalf("HEAD: %d method %q body %q", resp.StatusCode, resp.Header.Get("X-Method"), body)
		}
		if got := resp.Header.Get("Content-Length"); got != "4242" {
			t.Errorf("HEAD Content-Length %q, want the target's 4242", got)
		}
	})

	t.Run("ChunkedUpload", func(t *testing.T) {
		file, sum := randomFile(t, 2*mib+5)
		out := mustCurl(t, "-i", "-x", proxy, "-H", "Transfer-Encoding: chunked", "--data-binary", "@"+file, target.URL+"/chunked")
		resp, body := parseHead(t, out)
		if resp.StatusCode != 200 {
			t.Fatalf("chunked POST: %d %q", resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-Body-Length"); got != strconv.Itoa(2*mib+5) {
			t.Errorf("target received %s bytes", got)
		}
		if got := resp.Header.Get("X-Body-SHA256"); got != sum {
			t.Errorf("target received a body with SHA-256 %s, sent %s", got, sum)
		}
		t.Logf("target saw Content-Length %s, Transfer-Encoding %q",
			resp.Header.Get("X-Content-Length"), resp.Header.Get("X-Transfer-Encoding"))
	})

	t.Run("StreamedResponse", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), curlTimeout)
		defer cancel()
		cmd := curlCmd(t, ctx, "-N", "-x", proxy, target.URL+"/stream")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(stdout)
		first := make(chan string, 1)
		go func() {
			line, _ := br.ReadString('\n')
			first <- line
		}()
		select {
		case line := <-first:
			if line != "first-part\n" {
				close(release)
				t.Fatalf("first line %q", line)
			}
		case <-time.After(10 * time.Second):
			close(release)
			t.Fatal("the flushed first part of a response without Content-Length did not reach curl: the proxy buffers")
		}
		close(release)
		rest, _ := io.ReadAll(br)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("curl: %v: %s", err, stderr.String())
		}
		if n := bytes.Count(rest, []byte("\n")); n != 100 || !bytes.HasSuffix(rest, []byte("line 99\n")) {
			t.Fatalf("streamed response: %d lines after the first, ending %q", n, rest[max(0, len(rest)-20):])
		}
	})

	t.Run("HTTPSConnect", func(t *testing.T) {
		out := mustCurl(t, "-i", "--suppress-connect-headers", "-x", proxy, "--cacert", caFile, tlsSrv.URL+"/secure?q=1")
		resp, body := parseHead(t, out)
		if resp.StatusCode != 200 || string(body) != "GET /secure 0" {
			t.Fatalf("HTTPS GET: %d %q", resp.StatusCode, body)
		}
		file, sum := randomFile(t, mib)
		out = mustCurl(t, "-o", "/dev/null", "-D", "-", "-x", proxy, "--cacert", caFile, "--data-binary", "@"+file, tlsSrv.URL+"/upload")
		if !bytes.Contains(out, []byte("X-Body-Sha256: "+sum)) {
			t.Fatalf("HTTPS POST: target did not confirm the body; headers:\n%s", out)
		}
	})
}

// TestGoClient sends requests with Go's http.Client through the agent
// (Transport.Proxy), to an HTTP target and an HTTPS target (CONNECT), one at a
// time and 50 at once.
func TestGoClient(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOpts{})
	target := httpTarget(t, http.HandlerFunc(echo))
	tlsSrv, pool, _ := tlsTarget(t, http.HandlerFunc(echo))
	c := s.client(t, pool)

	check := func(base, method, path string, body []byte) error {
		req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			return fmt.Errorf("%s %s%s: reading body: %w", method, base, path, err)
		}
		sum := sha256.Sum256(body)
		want := fmt.Sprintf("%s %s %d", method, path, len(body))
		if resp.StatusCode != 200 || string(got) != want || resp.Header.Get("X-Body-SHA256") != hex.EncodeToString(sum[:]) {
			return fmt.Errorf("%s %s%s: %d %q, want 200 %q (body hash %s)", method, base, path, resp.StatusCode, got, want, resp.Header.Get("X-Body-SHA256"))
		}
		return nil
	}

	for _, base := range []string{target.URL, tlsSrv.URL} {
		if err := check(base, http.MethodGet, "/one", nil); err != nil {
			t.Fatal(err)
		}
		if err := check(base, http.MethodPost, "/two", bytes.Repeat([]byte("x"), 100_000)); err != nil {
			t.Fatal(err)
		}
	}

	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base := target.URL
			if i%2 == 1 {
				base = tlsSrv.URL
			}
			body := bytes.Repeat([]byte{byte('a' + i%26)}, 1000*i)
			errs <- check(base, http.MethodPost, fmt.Sprintf("/concurrent/%d", i), body)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// TestErrorStatuses checks what a local client sees when the tunnel cannot reach
// a target: 502 for a closed port, 403 for a target the egress policy refuses.
func TestErrorStatuses(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOpts{server: serverOpts{args: []string{"--dial-timeout", "3s"}}})
	c := s.client(t, nil)
	proxy := "http://" + s.agent.addr

	t.Run("ClosedPortHTTP", func(t *testing.T) {
		t.Parallel()
		resp, err := c.Get("http://" + closedAddr(t, "127.0.0.2") + "/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("closed port: status %d, want 502", resp.StatusCode)
		}
		if got := resp.Header.Get("X-Fluidity-Error"); got != "connection_refused" {
			t.Errorf("X-Fluidity-Error %q, want connection_refused", got)
		}
	})

	t.Run("ClosedPortCONNECT", func(t *testing.T) {
		t.Parallel()
		out, _ := runCurl(t, "-o", "/dev/null", "-w", "%{http_connect}", "-x", proxy, "https://"+closedAddr(t, "127.0.0.3")+"/")
		if string(out) != "502" {
			t.Fatalf("CONNECT to a closed port: proxy answered %q, want 502", out)
		}
	})

	// 10.255.255.1 is private (RFC 1918): refused by default even though this
	// server allows loopback; the refusal must come before any dial.
	t.Run("PrivateTargetHTTP", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		resp, err := c.Get("http://10.255.255.1:80/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("private target: status %d (X-Fluidity-Error %q) after %v, want 403",
				resp.StatusCode, resp.Header.Get("X-Fluidity-Error"), time.Since(start).Round(time.Millisecond))
		}
		if got := resp.Header.Get("X-Fluidity-Error"); got != "refused" {
			t.Errorf("X-Fluidity-Error %q, want refused", got)
		}
	})

	t.Run("PrivateTargetCONNECT", func(t *testing.T) {
		t.Parallel()
		out, _ := runCurl(t, "-o", "/dev/null", "-w", "%{http_connect}", "-x", proxy, "https://10.255.255.1:443/")
		if string(out) != "403" {
			t.Fatalf("CONNECT to a private target: proxy answered %q, want 403", out)
		}
	})

	t.Run("OverCapacity", func(t *testing.T) {
		t.Parallel()
		o := newStack(t, stackOpts{server: serverOpts{args: []string{"--max-connections", "1"}}})
		oc := o.client(t, nil)
		arrived, release := make(chan struct{}, 1), make(chan struct{})
		slow := httpTarget(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			<-release
		}))
		first := make(chan int, 1)
		// The readiness request has just ended: its slot is free for this one.
		go func() {
			resp, err := oc.Get(slow.URL + "/hold")
			if err != nil {
				first <- 0
				return
			}
			resp.Body.Close()
			first <- resp.StatusCode
		}()
		select {
		case <-arrived:
		case code := <-first:
			t.Fatalf("the first stream, right after the readiness request, never reached the target (status %d)", code)
		case <-time.After(curlTimeout):
			t.Fatal("the first stream never reached the target")
		}
		resp, err := oc.Get(pingTarget.URL + "/second")
		close(release)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Fluidity-Error") != "over_capacity" {
			t.Errorf("a stream beyond --max-connections 1: %d (X-Fluidity-Error %q), want 503 over_capacity",
				resp.StatusCode, resp.Header.Get("X-Fluidity-Error"))
		}
		if code := <-first; code != http.StatusOK {
			t.Errorf("the stream within the limit: %d, want 200", code)
		}
	})

	t.Run("LoopbackByDefault", func(t *testing.T) {
		t.Parallel()
		d := newStack(t, stackOpts{server: serverOpts{noAllow: true}, notReady: true})
		dc := d.client(t, nil)
		// The refusal must come before any dial: count connections to the target.
		var conns atomic.Int64
		target := httptest.NewUnstartedServer(http.HandlerFunc(echo))
		target.Config.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				conns.Add(1)
			}
		}
		target.Start()
		t.Cleanup(target.Close)
		resp, err := dc.Get(target.URL + "/refused")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("loopback target with the default policy: status %d (X-Fluidity-Error %q), want 403",
				resp.StatusCode, resp.Header.Get("X-Fluidity-Error"))
		}
		out, _ := runCurl(t, "-o", "/dev/null", "-w", "%{http_connect}", "-x", "http://"+d.agent.addr,
			"https://"+strings.TrimPrefix(target.URL, "http://")+"/")
		if string(out) != "403" {
			t.Errorf("CONNECT to loopback with the default policy: proxy answered %q, want 403", out)
		}
		if n := conns.Load(); n != 0 {
			t.Errorf("the refused target received %d connections", n)
		}
	})
}

// TestConnectHalfClose opens a CONNECT tunnel by hand, sends a request and shuts
// down its write side: the target sees EOF only after every byte, and its answer,
// sent after that EOF, still comes back through the tunnel in full.
func TestConnectHalfClose(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOpts{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	answer := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		n, _ := io.Copy(io.Discard, conn) // until the client's half-close arrives
		fmt.Fprintf(conn, "got %d bytes\n", n)
		_, _ = conn.Write(answer)
	}()

	conn, err := net.Dial("tcp", s.agent.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	target := ln.Addr().String()
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT: %v", err)
	}
	// A 200 to CONNECT has no length: closing its body reads nothing from br,
	// which carries the tunnel.
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	sent := bytes.Repeat([]byte{'x'}, 300_000)
	if _, err := conn.Write(sent); err != nil {
		t.Fatal(err)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("reading after half-close: %v (got %d bytes)", err, len(got))
	}
	want := append([]byte(fmt.Sprintf("got %d bytes\n", len(sent))), answer...)
	if !bytes.Equal(got, want) {
		t.Fatalf("after half-close got %d bytes starting %q, want %d bytes starting %q",
			len(got), got[:min(len(got), 20)], len(want), want[:20])
	}
}

// TestClientAbort checks that a client giving up mid-response frees the target
// side too: the server cancels the upstream request (plain HTTP) or closes the
// target connection (CONNECT) within a few seconds, instead of streaming into
// the void.
func TestClientAbort(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOpts{})
	ended := make(chan string, 2)
	endless := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := bytes.Repeat([]byte("z"), 32<<10)
		rc := http.NewResponseController(w)
		for {
			// A write stuck this long means the tunnel stopped reading without
			// closing the connection: give up, so that the target can shut down,
			// and say so.
			_ = rc.SetWriteDeadline(time.Now().Add(20 * time.Second))
			if _, err := w.Write(buf); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					ended <- "stalled " + r.URL.Path
				} else {
					ended <- r.URL.Path
				}
				return
			}
		}
	})
	plain := httpTarget(t, endless)
	secure, pool, _ := tlsTarget(t, endless)
	tr := &http.Transport{Proxy: http.ProxyURL(s.agent.proxyURL), TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	for _, u := range []string{plain.URL + "/plain", secure.URL + "/connect"} {
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := io.CopyN(io.Discard, resp.Body, 4*mib); err != nil {
			t.Fatalf("%s: read %d bytes: %v", u, n, err)
		}
		resp.Body.Close() // mid-body: the transport closes the connection to the agent
		select {
		case path := <-ended:
			if !strings.HasSuffix(u, path) {
				t.Fatalf("%s: unexpected end of the target's response: %s", u, path)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s: the target's connection is still open 10s after the client went away", u)
			return
		}
	}
}
