package e2e

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startSOCKSStack is a server and an agent with its SOCKS5 listener on, ready.
func startSOCKSStack(t *testing.T, o serverOpts) (*stack, string) {
	t.Helper()
	port := freePort(t)
	s := newStack(t, stackOpts{server: o, agentArgs: []string{"--socks-port", strconv.Itoa(port)}, notReady: o.noAllow})
	e, ok := s.agent.stderr.waitEntry(s.agent.done, startTimeout, msgIs("socks5 listener started"))
	if !ok {
		t.Fatalf("the agent did not log its SOCKS5 listener:\n%s", s.agent.stderr.String())
	}
	return s, e.str("socks")
}

// TestSOCKS5Curl: curl --socks5-hostname sends the name unresolved; the server
// resolves it, for plain HTTP and for HTTPS end to end.
func TestSOCKS5Curl(t *testing.T) {
	t.Parallel()
	s, socks := startSOCKSStack(t, serverOpts{})
	plain := httpTarget(t, http.HandlerFunc(echo))
	_, port, _ := net.SplitHostPort(plain.Listener.Addr().String())
	out := mustCurl(t, "--socks5-hostname", socks, "http://localhost:"+port+"/through/socks")
	if string(out) != "GET /through/socks 0" {
		t.Errorf("plain HTTP through SOCKS5: %q", out)
	}
	tlsSrv, _, caFile := tlsTarget(t, http.HandlerFunc(echo))
	out = mustCurl(t, "--socks5-hostname", socks, "--cacert", caFile, tlsSrv.URL+"/secure")
	if string(out) != "GET /secure 0" {
		t.Errorf("HTTPS through SOCKS5: %q", out)
	}

	// A refused target is a SOCKS reply curl reports, at once, not a hang.
	start := time.Now()
	_, err := runCurl(t, "--socks5-hostname", socks, "http://"+closedAddr(t, "127.0.0.9")+"/")
	if err == nil {
		t.Fatal("curl to a closed port through SOCKS5 succeeded")
	}
	if !strings.Contains(err.Error(), "(5)") && !strings.Contains(strings.ToLower(err.Error()), "refused") {
		t.Errorf("curl's error names no connection refusal (reply 5): %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the refusal took %v", d)
	}

	// Pointed at the HTTP proxy by mistake, a SOCKS client is told at once
	// (not after the proxy's 30 s header timeout), and the agent logs a hint.
	start = time.Now()
	if _, err := runCurl(t, "--socks5-hostname", s.agent.addr, "http://localhost:"+port+"/"); err == nil {
		t.Error("SOCKS5 through the HTTP proxy port succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a SOCKS client at the HTTP port waited %v", d)
	}
	if _, ok := s.agent.stderr.waitEntry(s.agent.done, startTimeout, func(e logEntry) bool {
		return strings.Contains(e.str("message"), "SOCKS client connected to the HTTP proxy")
	}); !ok {
		t.Error("no hint in the agent's log for a SOCKS client at the HTTP port")
	}
}

// TestSOCKS5EgressRefusal: a target the server's policy refuses gets reply 2,
// "connection not allowed by ruleset".
func TestSOCKS5EgressRefusal(t *testing.T) {
	t.Parallel()
	_, socks := startSOCKSStack(t, serverOpts{noAllow: true})
	_, err := runCurl(t, "--socks5-hostname", socks, pingTarget.URL+"/")
	if err == nil {
		t.Fatal("curl to a loopback target reached it through a default-policy server")
	}
	if !strings.Contains(err.Error(), "(2)") && !strings.Contains(strings.ToLower(err.Error()), "not allowed") {
		t.Errorf("curl's error names no ruleset refusal (reply 2): %v", err)
	}
}

// TestSOCKS5NetcatProxyCommand uses OpenBSD netcat as ssh's ProxyCommand does
// (ProxyCommand nc -X 5 -x agent:port %h %p): stdin and stdout are the
// connection to a line-based service with an SSH-style banner.
func TestSOCKS5NetcatProxyCommand(t *testing.T) {
	t.Parallel()
	nc := netcat(t)
	_, socks := startSOCKSStack(t, serverOpts{})
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
				_, _ = io.WriteString(c, "SSH-2.0-FluidityTest\r\n")
				line, _ := bufio.NewReader(c).ReadString('\n')
				_, _ = io.WriteString(c, "echo "+line)
			}()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	ctx, cancel := context.WithTimeout(context.Background(), curlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, nc, "-X", "5", "-x", socks, "localhost", port)
	cmd.Env = cleanEnv()
	cmd.Stdin = strings.NewReader("SSH-2.0-OpenSSH_client\r\n")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nc -X 5: %v\n%s", err, stderr.String())
	}
	if want := "SSH-2.0-FluidityTest\r\necho SSH-2.0-OpenSSH_client\r\n"; string(out) != want {
		t.Errorf("nc -X 5 read %q, want %q", out, want)
	}
}

// netcat finds OpenBSD netcat (Debian netcat-openbsd; scripts/ci-deps.sh
// installs it): the traditional one has no -X.
func netcat(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"nc.openbsd", "nc"} {
		path, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		help, _ := exec.Command(path, "-h").CombinedOutput()
		if strings.Contains(string(help), "proxy_protocol") {
			return path
		}
	}
	t.Fatal("OpenBSD netcat is required (apt-get install netcat-openbsd; scripts/ci-deps.sh does it)")
	return ""
}
