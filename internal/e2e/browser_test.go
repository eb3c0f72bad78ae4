package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
)

var statusScreenshot = flag.String("status-screenshot", "", "also write the status page's screenshot to this file (docs/status.png)")

// chromiumPath is Debian's chromium; scripts/ci-deps.sh installs it.
const chromiumPath = "/usr/bin/chromium"

// browser starts headless Chromium with extra flags; stop (or the test's end)
// closes it.
func browser(t *testing.T, flags ...chromedp.ExecAllocatorOption) (ctx context.Context, stop func()) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the browser tests need Debian's chromium (scripts/ci-deps.sh installs it): %v", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		// This machine's network is closed: no background traffic to Google.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication,CertificateTransparencyComponentUpdater"),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("disable-client-side-phishing-detection", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.WindowSize(900, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(opts, flags...)...)
	ctx, cancel := chromedp.NewContext(actx)
	stop = func() { cancel(); cancelAlloc() }
	t.Cleanup(stop)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx, stop
}

// waitState waits until the status page, updating itself, shows one of states.
func waitState(t *testing.T, ctx context.Context, timeout time.Duration, states ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var got string
	for {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		r, err := chromedp.Run(qctx, chromedp.AttributeValue(chromedp.CSS("#state"), "data-state"))
		cancel()
		got = r.Value
		for _, s := range states {
			if err == nil && got == s {
				return got
			}
		}
		if time.Now().After(deadline) {
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			text, _ := chromedp.Run(qctx, chromedp.Text(chromedp.CSS("#live")))
			cancel()
			t.Fatalf("status page shows %q (%v), want one of %q:\n%s", got, err, states, text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBrowser drives headless Chromium: (a) the agent's status page, which
// follows the tunnel live as the server stops and returns, and (b) with the
// agent as the browser's proxy, an HTTPS page whose script, style sheet,
// image, fetch and wss:// WebSocket all come through the tunnel: the target
// checks that every connection it accepts belongs to the fluidity-server
// process, and the agent's status counts them.
func TestBrowser(t *testing.T) {
	start := time.Now()
	srv := startServer(t, serverOpts{})
	_, serverPort, _ := net.SplitHostPort(srv.addr)
	adminAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	a := startAgent(t, srv.addr, "--admin-listen", adminAddr, "--reconnect-max", "1s")
	a.waitProxied(t)

	target := newBrowserTarget(t)
	ctx, stopBrowser := browser(t,
		chromedp.ProxyServer("http://"+a.addr),
		// Chromium sends loopback targets past any proxy unless told; the
		// status page itself stays direct (it must show a tunnel that is down),
		// and so does what Chromium still asks Google for by itself (it
		// fails at once on this closed network instead of cluttering the
		// agent's errors).
		chromedp.Flag("proxy-bypass-list", "<-loopback>;"+adminAddr+";*.google.com;*.googleapis.com;*.gstatic.com"),
		// Trust the target's certificate by its key, and nothing else new.
		chromedp.Flag("ignore-certificate-errors-spki-list", target.spki),
	)

	// (a) The status page, live.
	statusURL := "http://" + adminAddr + "/"
	if err := chromedp.Do(ctx, chromedp.Navigate(statusURL)); err != nil {
		t.Fatal(err)
	}
	waitState(t, ctx, 10*time.Second, "connected")
	if code := fluidityStatus(t, adminAddr); code != 0 {
		t.Errorf("fluidity status while connected: exit %d, want 0", code)
	}
	srv.stop(t)
	down := waitState(t, ctx, 10*time.Second, "reconnecting", "error", "connecting")
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(t.TempDir(), "status-down.png"), shot)
	if code := fluidityStatus(t, adminAddr); code != 3 {
		t.Errorf("fluidity status with the server down (%s): exit %d, want 3", down, code)
	}
	srv = startServer(t, serverOpts{args: []string{"--listen-port", serverPort}})
	waitState(t, ctx, 15*time.Second, "connected")

	// (b) An HTTPS page through the agent.
	pageURL := "https://" + target.addr + "/"
	pctx, cancelPage := context.WithTimeout(ctx, 15*time.Second)
	err = chromedp.Do(pctx, chromedp.Navigate(pageURL), chromedp.WaitVisible(chromedp.CSS("body[data-done]")))
	var result chromedp.AttributeResult
	if err == nil {
		result, err = chromedp.Run(pctx, chromedp.AttributeValue(chromedp.CSS("body"), "data-done"))
	}
	cancelPage()
	if err != nil {
		t.Fatalf("load %s through the agent: %v", pageURL, err)
	}
	if result.Value != "ok" {
		t.Fatalf("the page reports %q, want ok", result.Value)
	}
	seen, foreign := target.report(srv.pid())
	for _, want := range []string{"GET /", "GET /app.js", "GET /style.css", "GET /pixel.png", "GET /data.json", "GET /ws"} {
		if !seen[want] {
			t.Errorf("the target never saw %s (saw %v)", want, seen)
		}
	}
	if len(foreign) > 0 {
		t.Errorf("connections to the target that are not the server's: %v", foreign)
	}
	if target.conns() == 0 {
		t.Error("the target accepted no connection")
	}

	// A target that refuses: the status page lists the error by its code.
	resp, err := proxiedClient(t, a.proxyURL, nil).Get("http://" + closedAddr(t, "127.0.0.2") + "/secret/path?q=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	// The status page counted the browser's CONNECT streams.
	if err := chromedp.Do(ctx, chromedp.Navigate(statusURL)); err != nil {
		t.Fatal(err)
	}
	waitState(t, ctx, 5*time.Second, "connected")
	errs, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#errors")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errs, "connection_refused") || strings.Contains(errs, "secret") || strings.Contains(errs, "127.0.0.2") {
		t.Errorf("status page errors %q: want connection_refused, and no URL or target", errs)
	}
	streams, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#streams")))
	if err != nil {
		t.Fatal(err)
	}
	var total int
	if _, err := fmt.Sscanf(streams[strings.Index(streams, "(")+1:], "%d since start", &total); err != nil || total < 2 {
		t.Errorf("status page streams %q: want at least 2 since start (the page's connection and the WebSocket's)", streams)
	}
	time.Sleep(1200 * time.Millisecond) // one refresh: the rates settle
	if shot, err = chromedp.Run(ctx, chromedp.CaptureScreenshot()); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(t.TempDir(), "status.png"), shot)
	if *statusScreenshot != "" {
		writeFile(t, *statusScreenshot, shot)
	}
	// Before the servers stop: the browser's keep-alive tunnels would hold
	// them up.
	stopBrowser()
	t.Logf("browser test took %v", time.Since(start).Round(100*time.Millisecond))
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fluidityStatus runs `fluidity status` against the agent and returns its exit code.
func fluidityStatus(t *testing.T, admin string) int {
	t.Helper()
	cmd := exec.Command(fluidityBin, "status", "--admin", admin)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if t.Failed() || testing.Verbose() {
		t.Logf("fluidity status:\n%s", out)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0
}

// browserTarget is an HTTPS site on loopback with a page that pulls in
// subresources and opens a WebSocket. Each connection it accepts is checked,
// while it is open, against the sockets of the process that should own it.
type browserTarget struct {
	addr string
	spki string // base64 SHA-256 of the certificate's public key

	mu      sync.Mutex
	seen    map[string]bool
	remotes []netip.AddrPort // the peers of accepted connections
	owners  map[netip.AddrPort][]int
}

const targetPage = `<!doctype html><html><head><title>through the tunnel</title>
<link rel="stylesheet" href="/style.css"><script src="/app.js"></script></head>
<body><img id="px" src="/pixel.png" alt=""><p id="out">loading</p></body></html>`

// The page's script: everything must load, and the WebSocket must echo.
const targetScript = `
window.addEventListener("load", async () => {
  const out = document.getElementById("out");
  try {
    const img = document.getElementById("px");
    if (!img.complete || img.naturalWidth !== 1) throw new Error("image not loaded");
    if (getComputedStyle(document.body).marginLeft !== "7px") throw new Error("style sheet not applied");
    const data = await (await fetch("/data.json", {cache: "no-store"})).json();
    if (data.via !== "tunnel") throw new Error("fetch: " + JSON.stringify(data));
    const echo = await new Promise((resolve, reject) => {
      const ws = new WebSocket("wss://" + location.host + "/ws");
      ws.onopen = () => ws.send("ping over wss");
      ws.onmessage = (ev) => { resolve(ev.data); ws.close(); };
      ws.onerror = () => reject(new Error("websocket failed"));
    });
    if (echo !== "ping over wss") throw new Error("echo: " + echo);
    out.textContent = "all through";
    document.body.dataset.done = "ok";
  } catch (e) {
    out.textContent = String(e);
    document.body.dataset.done = String(e);
  }
});`

// A 1x1 PNG.
var pixelPNG, _ = base64.StdEncoding.DecodeString("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")

func newBrowserTarget(t *testing.T) *browserTarget {
	bt := &browserTarget{seen: map[string]bool{}, owners: map[netip.AddrPort][]int{}}
	mux := http.NewServeMux()
	serve := func(path, ctype, body string) {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ctype)
			w.Header().Set("Cache-Control", "no-store")
			_, _ = io.WriteString(w, body)
		})
	}
	serve("/{$}", "text/html; charset=utf-8", targetPage)
	serve("/app.js", "text/javascript", targetScript)
	serve("/style.css", "text/css", "body { margin-left: 7px; font-family: sans-serif; }")
	serve("/pixel.png", "image/png", string(pixelPNG))
	serve("/data.json", "application/json", `{"via":"tunnel"}`)
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		typ, msg, err := c.Read(ctx)
		if err == nil {
			_ = c.Write(ctx, typ, msg)
		}
		_, _, _ = c.Read(ctx) // until the browser closes
	})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bt.mu.Lock()
		bt.seen[r.Method+" "+r.URL.Path] = true
		bt.mu.Unlock()
		mux.ServeHTTP(w, r)
	})
	srv, _, _ := tlsTarget(t, h)
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s != http.StateNew {
			return
		}
		peer := netip.MustParseAddrPort(c.RemoteAddr().String())
		self := netip.MustParseAddrPort(c.LocalAddr().String())
		pids := socketOwners(peer, self)
		bt.mu.Lock()
		bt.remotes = append(bt.remotes, peer)
		bt.owners[peer] = pids
		bt.mu.Unlock()
	}
	bt.addr = strings.TrimPrefix(srv.URL, "https://")
	cert, err := x509.ParseCertificate(srv.Certificate().Raw)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	bt.spki = base64.StdEncoding.EncodeToString(sum[:])
	return bt
}

func (bt *browserTarget) conns() int {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	return len(bt.remotes)
}

// report returns the requests seen and the peers of connections that pid
// did not own.
func (bt *browserTarget) report(pid int) (map[string]bool, []string) {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	var foreign []string
	for _, peer := range bt.remotes {
		owners := bt.owners[peer]
		if len(owners) != 1 || owners[0] != pid {
			foreign = append(foreign, fmt.Sprintf("%s owned by %v (server %d)", peer, owners, pid))
		}
	}
	seen := map[string]bool{}
	for k, v := range bt.seen {
		seen[k] = v
	}
	return seen, foreign
}

// socketOwners returns the processes holding the TCP socket from local to
// remote, from /proc: the socket's inode in /proc/net/tcp, then the
// processes with a descriptor for it.
func socketOwners(local, remote netip.AddrPort) []int {
	inode := socketInode(local, remote)
	if inode == "" {
		return nil
	}
	link := "socket:[" + inode + "]"
	var pids []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name())); err == nil && l == link {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// socketInode finds the socket in /proc/net/tcp (IPv4 loopback here).
func socketInode(local, remote netip.AddrPort) string {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return ""
	}
	defer f.Close()
	want := procAddr(local) + " " + procAddr(remote)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 9 && fields[1]+" "+fields[2] == want {
			return fields[9]
		}
	}
	return ""
}

// procAddr writes an IPv4 address and port as /proc/net/tcp does: the
// address's bytes as a little-endian word in hex, then the port.
func procAddr(ap netip.AddrPort) string {
	b := ap.Addr().Unmap().As4()
	word := make([]byte, 4)
	binary.LittleEndian.PutUint32(word, binary.BigEndian.Uint32(b[:]))
	return strings.ToUpper(hex.EncodeToString(word)) + fmt.Sprintf(":%04X", ap.Port())
}
