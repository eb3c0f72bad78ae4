package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

// Timeouts of the harness. Generous: they only bound failures.
const (
	startTimeout = 20 * time.Second // a daemon logging that it started; the tunnel coming up
	stopTimeout  = 25 * time.Second // a daemon exiting after SIGTERM
	curlTimeout  = 60 * time.Second
)

// logBuf collects a process's output (zerolog's JSON lines on stderr) and lets
// tests wait for a line.
type logBuf struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func newLogBuf() *logBuf { return &logBuf{changed: make(chan struct{})} }

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) snapshot() (string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String(), l.changed
}

// logEntry is one JSON log line.
type logEntry map[string]any

func (e logEntry) str(key string) string {
	s, _ := e[key].(string)
	return s
}

func parseEntries(s string) []logEntry {
	var out []logEntry
	for _, line := range strings.Split(s, "\n") {
		var e logEntry
		if json.Unmarshal([]byte(line), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

func (l *logBuf) entries() []logEntry { return parseEntries(l.String()) }

// waitEntry waits until a log line satisfies match, the process exits, or the
// timeout passes.
func (l *logBuf) waitEntry(done <-chan struct{}, timeout time.Duration, match func(logEntry) bool) (logEntry, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s, changed := l.snapshot()
		for _, e := range parseEntries(s) {
			if match(e) {
				return e, true
			}
		}
		select {
		case <-changed:
		case <-done:
			// One last look: the line may have come with the exit.
			for _, e := range l.entries() {
				if match(e) {
					return e, true
				}
			}
			return nil, false
		case <-deadline.C:
			return nil, false
		}
	}
}

func msgIs(msg string) func(logEntry) bool {
	return func(e logEntry) bool { return e.str("message") == msg }
}

// proc is a daemon started by a test. Cleanup stops it with SIGTERM and fails
// the test unless it exits 0.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdout *logBuf
	stderr *logBuf
	done   chan struct{}

	stopOnce sync.Once
}

func startProc(t *testing.T, name, bin string, args, env []string) *proc {
	t.Helper()
	p := &proc{name: name, stdout: newLogBuf(), stderr: newLogBuf(), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = cleanEnv(env...)
	p.cmd.Stdout = p.stdout
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if code := p.stop(t); code != 0 {
			t.Errorf("%s exited with code %d after SIGTERM, want 0", name, code)
		}
		if strings.Contains(p.stderr.String(), "shutdown timeout") {
			t.Errorf("%s hit its shutdown timeout: something stayed in flight", name)
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, p.stderr.String())
		}
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig unless the process has already exited.
func (p *proc) signal(sig syscall.Signal) {
	if !p.exited() {
		_ = p.cmd.Process.Signal(sig)
	}
}

// stop sends SIGTERM (the first time) and returns the exit code.
func (p *proc) stop(t *testing.T) int {
	t.Helper()
	p.stopOnce.Do(func() {
		p.signal(syscall.SIGTERM)
		p.wait(t, stopTimeout)
	})
	return p.wait(t, stopTimeout)
}

// wait waits for the exit (killing the process after timeout) and returns its code.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Errorf("%s still running %v after SIGTERM; killing it", p.name, timeout)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return p.cmd.ProcessState.ExitCode()
}

// serverOpts configures startServer.
type serverOpts struct {
	// noAllow leaves out --allow-cidrs 127.0.0.0/8,::1/128, keeping the default
	// egress policy that refuses loopback targets.
	noAllow bool
	args    []string
	// netns runs the server inside that network namespace, listening on ip;
	// nil is here, on 127.0.0.1.
	netns *testbin.Netns
	ip    string
}

type server struct {
	*proc
	addr string // host:port of the mTLS listener
}

// startServer starts fluidity-server on 127.0.0.1 (or o.ip) with a
// kernel-chosen port, which it reads back from the "server started" log line.
func startServer(t *testing.T, o serverOpts) *server {
	t.Helper()
	ip := "127.0.0.1"
	if o.ip != "" {
		ip = o.ip
	}
	args := []string{
		"--listen-addr", ip, "--listen-port", "0",
		"--cert-file", certPath("server.crt"), "--key-file", certPath("server.key"),
		"--ca-cert-file", certPath("ca.crt"),
		"--shutdown-timeout", "10s",
	}
	if !o.noAllow {
		args = append(args, "--allow-cidrs", "127.0.0.0/8,::1/128")
	}
	bin, args := inNetns(o.netns, serverBin, append(args, o.args...))
	p := startProc(t, "fluidity-server", bin, args, nil)
	e, ok := p.stderr.waitEntry(p.done, startTimeout, msgIs("server started"))
	if !ok || e.str("listen") == "" {
		t.Fatalf("fluidity-server did not log its start:\n%s", p.stderr.String())
	}
	return &server{proc: p, addr: e.str("listen")}
}

type agent struct {
	*proc
	addr     string // host:port of the local proxy
	proxyURL *url.URL
}

// startAgent starts fluidity-agent against serverAddr with the generated client
// certificate; args come last, so they override the defaults given here.
func startAgent(t *testing.T, serverAddr string, args ...string) *agent {
	t.Helper()
	return startAgentIn(t, nil, serverAddr, args...)
}

// startAgentIn is startAgent inside a network namespace (nil: here).
func startAgentIn(t *testing.T, ns *testbin.Netns, serverAddr string, args ...string) *agent {
	t.Helper()
	host, port, err := net.SplitHostPort(serverAddr)
	if err != nil {
		t.Fatal(err)
	}
	base := []string{
		"--server-ip", host, "--server-port", port,
		"--local-proxy-port", "0",
		"--cert-file", certPath("agent.crt"), "--key-file", certPath("agent.key"),
		"--ca-cert-file", certPath("ca.crt"),
		"--shutdown-timeout", "10s",
	}
	bin, all := inNetns(ns, agentBin, append(base, args...))
	p := startProc(t, "fluidity-agent", bin, all, nil)
	return waitAgentStarted(t, p)
}

// inNetns returns the command line that runs bin with args inside ns (nil:
// bin and args as they are). `ip netns exec` execs bin: the process started
// is bin's, and signals reach it.
func inNetns(ns *testbin.Netns, bin string, args []string) (string, []string) {
	if ns == nil {
		return bin, args
	}
	cmd := ns.Command(bin, args...)
	return cmd.Path, cmd.Args[1:]
}

func waitAgentStarted(t *testing.T, p *proc) *agent {
	t.Helper()
	e, ok := p.stderr.waitEntry(p.done, startTimeout, msgIs("agent started"))
	if !ok || e.str("proxy") == "" {
		t.Fatalf("fluidity-agent did not log its start:\n%s", p.stderr.String())
	}
	a := &agent{proc: p, addr: e.str("proxy")}
	a.proxyURL = &url.URL{Scheme: "http", Host: a.addr}
	return a
}

// waitHealthz waits for GET /healthz on the agent itself to answer 200 "ok".
func (a *agent) waitHealthz(t *testing.T) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(startTimeout)
	var last string
	for time.Now().Before(deadline) && !a.exited() {
		resp, err := c.Get("http://" + a.addr + "/healthz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok" {
				return
			}
			last = fmt.Sprintf("%d %q", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("agent /healthz never answered 200 ok (last: %s)", last)
}

// waitProxied waits for a first request through the proxy to reach pingTarget.
func (a *agent) waitProxied(t *testing.T) {
	t.Helper()
	a.waitProxiedBy(t, proxiedClient(t, a.proxyURL, nil), pingTarget.URL+"/ready", "pong")
}

// waitProxiedBy waits for c, a client using the agent, to GET url with 200 and
// body want.
func (a *agent) waitProxiedBy(t *testing.T, c *http.Client, url, want string) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	var last string
	for time.Now().Before(deadline) && !a.exited() {
		resp, err := c.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(body) == want {
				return
			}
			last = fmt.Sprintf("%d %q", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no request got through the tunnel (last: %s)", last)
}

// stack is a server and an agent connected to it, ready to proxy.
type stack struct {
	server *server
	agent  *agent
}

type stackOpts struct {
	server    serverOpts
	agentArgs []string
	// notReady skips waiting for a proxied request to reach pingTarget (for a
	// server whose egress policy refuses it).
	notReady bool
}

func newStack(t *testing.T, o stackOpts) *stack {
	t.Helper()
	s := &stack{server: startServer(t, o.server)}
	s.agent = startAgent(t, s.server.addr, o.agentArgs...)
	s.agent.waitHealthz(t)
	if !o.notReady {
		s.agent.waitProxied(t)
	}
	return s
}

func (s *stack) client(t *testing.T, roots *x509.CertPool) *http.Client {
	return proxiedClient(t, s.agent.proxyURL, roots)
}

// proxiedClient is an http.Client using proxy for every request, trusting roots
// (nil: the system roots) for HTTPS targets. Its idle connections, including
// CONNECT tunnels the agent keeps open for them, are closed when the test ends,
// before the daemons are stopped.
func proxiedClient(t *testing.T, proxy *url.URL, roots *x509.CertPool) *http.Client {
	tr := &http.Transport{
		Proxy:               http.ProxyURL(proxy),
		TLSClientConfig:     &tls.Config{RootCAs: roots},
		MaxIdleConnsPerHost: 64,
		DisableCompression:  true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// curlCmd returns an exec.Cmd running curl quietly (-q ignores ~/.curlrc) with a
// time limit; it fails the test when curl is missing.
func curlCmd(t *testing.T, ctx context.Context, args ...string) *exec.Cmd {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is required by the end-to-end tests (CI installs it; apt-get install curl): %v", err)
	}
	cmd := exec.CommandContext(ctx, path, append([]string{"-q", "-sS", "--max-time", "50"}, args...)...)
	cmd.Env = cleanEnv()
	return cmd
}

// runCurl runs curl to completion and returns its stdout; stderr goes into the error.
func runCurl(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), curlTimeout)
	defer cancel()
	cmd := curlCmd(t, ctx, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("curl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// mustCurl is runCurl failing the test on error.
func mustCurl(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := runCurl(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tlsTarget starts an HTTPS test server and returns it, a pool trusting it and
// the path of its certificate in PEM (for curl --cacert).
func tlsTarget(t *testing.T, h http.Handler) (*httptest.Server, *x509.CertPool, string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	// Clients that hang up mid-handshake (the mTLS tests, curl on error) are no news.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	file := filepath.Join(t.TempDir(), "target.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(file, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, pool, file
}

func httpTarget(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// closedAddr returns host:port on a loopback address (127.0.0.0/8; the server's
// --allow-cidrs opens it) where nothing listens (something did a moment ago).
// Tests give each failing target its own host: the server keeps a circuit
// breaker per target host, and failures (each retried dial counts) against one
// host would open it for the targets on 127.0.0.1 as well.
func closedAddr(t *testing.T, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// freePort returns a 127.0.0.1 port that was free a moment ago (for tests that
// must name the port in advance, e.g. config precedence).
func freePort(t *testing.T) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(closedAddr(t, "127.0.0.1"))
	n, _ := strconv.Atoi(port)
	return n
}

// vmHWM returns the peak resident set size of pid, from /proc/PID/status.
func vmHWM(pid int) (int64, error) { return testbin.ProcStatusBytes(pid, "VmHWM") }

func vmRSS(pid int) (int64, error) { return testbin.ProcStatusBytes(pid, "VmRSS") }

const mib = 1 << 20
