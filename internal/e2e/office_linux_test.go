package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/fluidity-tunnel/fluidity/internal/pki"
	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

// The office network of TestOffice: three namespaces joined by two links.
// Nothing forwards between the links, so from the office the internet is
// reachable only through a proxy in the DMZ.
//
//	office (agent, clients) 10.71.1.2 ── 10.71.1.1 dmz (squid, dante, KDC) 10.71.2.1 ── 10.71.2.2 internet (server, targets)
const (
	officeIP       = "10.71.1.2"
	dmzOfficeIP    = "10.71.1.1" // the proxies and the KDC, as the office sees them
	dmzInternetIP  = "10.71.2.1"
	internetIP     = "10.71.2.2"
	internetPrefix = "10.71.2.0/24"
	// proxyHost names the DMZ in the office's /etc/hosts: Kerberos tickets are
	// for HTTP/<name>, as a realm knows its proxies.
	proxyHost = "proxy.corp.test"
	realm     = "CORP.TEST"
)

const (
	squidPassword = "squid-SECRET-pw"
	krbPassword   = "kerberos-SECRET-pw"
)

type officeNet struct {
	office, dmz, internet *testbin.Netns
	server                *server
	kdc                   *testbin.KDC
	// Targets in the internet namespace.
	plainURL, secureURL, wsURL string
	caFile                     string // trusts secureURL's certificate
}

func newOfficeNet(t *testing.T) *officeNet {
	t.Helper()
	n := &officeNet{
		office:   testbin.NewNetns(t, "office"),
		dmz:      testbin.NewNetns(t, "dmz"),
		internet: testbin.NewNetns(t, "internet"),
	}
	n.office.Link(t, "dmz0", officeIP+"/24", n.dmz, "office0", dmzOfficeIP+"/24")
	n.dmz.Link(t, "internet0", dmzInternetIP+"/24", n.internet, "dmz0", internetIP+"/24")
	n.office.Hosts(t, dmzOfficeIP+" "+proxyHost)

	n.server = startServer(t, serverOpts{netns: n.internet, ip: internetIP, noAllow: true,
		args: []string{"--allow-cidrs", internetPrefix}})
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the internet (%s)", r.URL.Path)
	})
	n.plainURL = "http://" + n.serve(t, hello, nil)
	n.wsURL = "ws://" + n.serve(t, http.HandlerFunc(wsEcho), nil)
	internetCA, files := testbin.MintPKI(t, t.TempDir(), testbin.PKIOptions{CA: pki.CAOptions{CommonName: "Internet CA"},
		Server: pki.ServerOptions{ServerName: "target.test", IPAddresses: []net.IP{net.ParseIP(internetIP)}}})
	n.secureURL = "https://" + n.serve(t, hello, &tls.Config{Certificates: []tls.Certificate{internetCA.ServerTLS}})
	n.caFile = files.CACert

	n.kdc = testbin.StartKDC(t, testbin.KDCOptions{Netns: n.dmz, Listen: dmzOfficeIP + ":88", Realm: realm, Domain: "corp.test"})
	return n
}

// wsEcho echoes a WebSocket's messages until the client closes.
func wsEcho(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil || c.Write(ctx, typ, msg) != nil {
			return
		}
	}
}

// serve runs h on a listener in the internet namespace and returns its host:port.
func (n *officeNet) serve(t *testing.T, h http.Handler, tc *tls.Config) string {
	t.Helper()
	ln, err := n.internet.Listen("tcp", internetIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0), TLSConfig: tc}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if tc != nil {
			_ = srv.ServeTLS(ln, "", "")
		} else {
			_ = srv.Serve(ln)
		}
	}()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

func (n *officeNet) serverPort() string {
	_, port, _ := net.SplitHostPort(n.server.addr)
	return port
}

// squid starts a squid in the DMZ on port, letting CONNECT reach the server only.
func (n *officeNet) squid(t *testing.T, auth, port string) *testbin.Squid {
	t.Helper()
	o := testbin.SquidOptions{
		Netns: n.dmz, Listen: net.JoinHostPort(dmzOfficeIP, port), Auth: auth,
		Users:        map[string]string{"alice": squidPassword},
		ConnectPorts: []string{n.serverPort()},
	}
	if auth == testbin.SquidNegotiate {
		o.Keytab = n.kdc.AddService(t, "HTTP/"+proxyHost)
		o.Krb5Conf = n.kdc.Krb5Conf
	}
	return testbin.StartSquid(t, o)
}

// dante starts dante-server in the DMZ, a SOCKS5 server without
// authentication that lets the office reach the server only.
func (n *officeNet) dante(t *testing.T, port string) string {
	t.Helper()
	const bin = "/usr/sbin/danted"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("dante-server is required by the SOCKS5 test (scripts/ci-deps.sh installs it): %v", err)
	}
	dir := t.TempDir()
	conf := fmt.Sprintf(`logoutput: stderr
internal: %s port = %s
external: %s
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {
	from: %s/24 to: 0.0.0.0/0
}
socks pass {
	from: %s/24 to: %s/32 port = %s
	command: connect
}
`, dmzOfficeIP, port, dmzInternetIP, officeIP, officeIP, internetIP, n.serverPort())
	confFile := filepath.Join(dir, "danted.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := n.dmz.Command(bin, "-f", confFile, "-p", filepath.Join(dir, "danted.pid"))
	cmd.Env = cleanEnv()
	out, err := testbin.StartDaemon(t, "danted", cmd, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(dmzOfficeIP, port)
	if err := testbin.WaitListening(n.office, addr, 10*time.Second); err != nil {
		t.Fatalf("danted: %v\n%s", err, out.String())
	}
	return addr
}

// agent starts an agent in the office, reaching the server with args (its
// admin listener off unless args set one: the agents share the office).
func (n *officeNet) agent(t *testing.T, args ...string) *agent {
	t.Helper()
	return startAgentIn(t, n.office, n.server.addr, append([]string{"--admin-listen", ""}, args...)...)
}

// checkStatusRoute reads the agent's /status.json from its admin listener
// (admin, in the office) and checks the route it reports.
func (n *officeNet) checkStatusRoute(t *testing.T, admin, want string) {
	t.Helper()
	tr := &http.Transport{DialContext: n.office.DialContext}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + admin + "/status.json")
	if err != nil {
		t.Errorf("status: %v", err)
		return
	}
	defer resp.Body.Close()
	var snap struct {
		Route string `json:"route"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil || snap.Route != want {
		t.Errorf("status.json route %q (%v), want %q", snap.Route, err, want)
	}
}

// client is an HTTP client in the office that uses the agent as its proxy.
func (n *officeNet) client(t *testing.T, a *agent) *http.Client {
	tr := &http.Transport{
		Proxy:       http.ProxyURL(a.proxyURL),
		DialContext: n.office.DialContext,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// curl runs curl in the office.
func (n *officeNet) curl(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), curlTimeout)
	defer cancel()
	cmd := curlCmd(t, ctx, args...)
	cmd.Path, cmd.Args = inNetns(n.office, cmd.Path, cmd.Args[1:])
	cmd.Args = append([]string{cmd.Path}, cmd.Args...)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return out, fmt.Errorf("curl %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}

// carry proves the agent carries HTTP and HTTPS (curl) and a WebSocket
// (coder/websocket), from the office to the internet.
func (n *officeNet) carry(t *testing.T, a *agent) {
	t.Helper()
	a.waitProxiedBy(t, n.client(t, a), n.plainURL+"/ready", "hello from the internet (/ready)")
	proxy := a.proxyURL.String()
	if out, err := n.curl(t, "-x", proxy, n.plainURL+"/plain"); err != nil || string(out) != "hello from the internet (/plain)" {
		t.Errorf("HTTP through the agent: %q, %v", out, err)
	}
	if out, err := n.curl(t, "-x", proxy, "--cacert", n.caFile, n.secureURL+"/secure"); err != nil || string(out) != "hello from the internet (/secure)" {
		t.Errorf("HTTPS (CONNECT) through the agent: %q, %v", out, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, n.wsURL+"/echo", &websocket.DialOptions{HTTPClient: n.client(t, a)})
	if err != nil {
		t.Errorf("WebSocket through the agent: %v", err)
		return
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageText, []byte("hello, websocket")); err != nil {
		t.Errorf("WebSocket write: %v", err)
		return
	}
	if _, msg, err := ws.Read(ctx); err != nil || string(msg) != "hello, websocket" {
		t.Errorf("WebSocket echo: %q, %v", msg, err)
	}
	_ = ws.Close(websocket.StatusNormalClosure, "")
}

// deniedTimes returns when squid refused a request with 407, in log order (the
// access log's first field is the time in seconds, with milliseconds).
func deniedTimes(accessLog string) []time.Time {
	var out []time.Time
	for line := range strings.Lines(accessLog) {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.Contains(line, "TCP_DENIED/407") {
			continue
		}
		sec, err := strconv.ParseFloat(f[0], 64)
		if err == nil {
			out = append(out, time.UnixMilli(int64(sec*1000)))
		}
	}
	return out
}

func writeCredentials(t *testing.T, line string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "proxy-credentials")
	if err := os.WriteFile(p, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitAccessLog waits for squid to log want (a CONNECT's line comes when its
// tunnel closes) and fails the test if it does not.
func waitAccessLog(t *testing.T, sq *testbin.Squid, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(sq.AccessLog(), want) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if log := sq.AccessLog(); !strings.Contains(log, want) {
		t.Errorf("squid's access log lacks %q:\n%s", want, log)
	}
}

// TestOffice builds a firewalled office in network namespaces: the agent can
// reach the server only through a real squid (Basic, NTLM, Negotiate against
// a real MIT KDC) or a real SOCKS5 server (dante) in the DMZ, and carries
// HTTP, CONNECT and WebSocket traffic through each. Wrong proxy credentials
// give a clear error and attempts that back off.
func TestOffice(t *testing.T) {
	t.Parallel()
	n := newOfficeNet(t)

	t.Run("direct is blocked", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := n.office.DialContext(ctx, "tcp", n.server.addr)
		if err == nil {
			c.Close()
			t.Fatalf("the office reaches the server at %s directly", n.server.addr)
		}
		if !errors.Is(err, syscall.ENETUNREACH) {
			t.Errorf("direct dial: %v, want network unreachable", err)
		}
	})

	for _, tc := range []struct {
		name, auth, port, creds string
		admin                   string // the agent's admin listener
		user                    string // as squid logs it
		proxyHost               string
		krb                     bool
	}{
		{name: "squid basic", auth: testbin.SquidBasic, port: "3128", admin: "127.0.0.1:9128", creds: "alice:" + squidPassword, user: "alice"},
		// Squid offers Basic too, whose password this is not: only NTLM can
		// succeed. Squid logs the NTLM user as DOMAIN\\user (its escaping).
		{name: "squid ntlm", auth: testbin.SquidNTLM, port: "3129", admin: "127.0.0.1:9129", creds: `CORP\alice:ntlm-` + squidPassword, user: `CORP\\alice`},
		// The agent logs in as carol with her keytab; the ticket is for
		// HTTP/proxy.corp.test, the name the proxy URL gives.
		{name: "squid negotiate", auth: testbin.SquidNegotiate, port: "3130", admin: "127.0.0.1:9130", user: "carol@" + realm, proxyHost: proxyHost, krb: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sq := n.squid(t, tc.auth, tc.port)
			host := tc.proxyHost
			if host == "" {
				host = dmzOfficeIP
			}
			proxyURL := "http://" + net.JoinHostPort(host, tc.port)
			args := []string{"--upstream-proxy", proxyURL, "--admin-listen", tc.admin}
			if tc.creds != "" {
				args = append(args, "--upstream-proxy-credentials-file", writeCredentials(t, tc.creds))
			}
			if tc.krb {
				args = append(args, "--upstream-proxy-krb5-conf", n.kdc.Krb5Conf, "--upstream-proxy-keytab", n.kdc.UserKeytab(t, "carol"))
			}
			a := n.agent(t, args...)
			if _, ok := a.stderr.waitEntry(a.done, startTimeout, func(e logEntry) bool {
				return e.str("message") == "reaching the server through an upstream proxy" && e.str("upstream") == proxyURL
			}); !ok {
				t.Errorf("no startup line naming the route:\n%s", a.stderr.String())
			}
			n.carry(t, a)
			n.checkStatusRoute(t, tc.admin, proxyURL)
			if code := a.stop(t); code != 0 {
				t.Fatalf("agent exited %d", code)
			}
			waitAccessLog(t, sq, "CONNECT "+n.server.addr+" "+tc.user)
			if !strings.Contains(sq.AccessLog(), "TCP_TUNNEL/200") {
				t.Errorf("squid tunnelled nothing:\n%s", sq.AccessLog())
			}
			for _, secret := range []string{squidPassword, krbPassword} {
				if strings.Contains(a.stderr.String(), secret) {
					t.Errorf("the agent logged a proxy password:\n%s", a.stderr.String())
				}
			}
		})
	}

	t.Run("socks5 dante", func(t *testing.T) {
		t.Parallel()
		addr := n.dante(t, "1080")
		a := n.agent(t, "--upstream-proxy", "socks5://"+addr, "--admin-listen", "127.0.0.1:9180")
		n.carry(t, a)
		n.checkStatusRoute(t, "127.0.0.1:9180", "socks5://"+addr)
	})

	// Wrong password: a clear error naming the key, never the password, and
	// attempts that back off (2 407s each: the probe and the refused Basic).
	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		sq := n.squid(t, testbin.SquidBasic, "3131")
		a := n.agent(t, "--upstream-proxy", "http://"+net.JoinHostPort(dmzOfficeIP, "3131"),
			"--upstream-proxy-credentials-file", writeCredentials(t, "alice:wrong-"+squidPassword))
		e, ok := a.stderr.waitEntry(a.done, startTimeout, func(e logEntry) bool {
			return strings.Contains(e.str("error"), "407")
		})
		if !ok {
			t.Fatalf("no 407 error logged:\n%s", a.stderr.String())
		}
		if msg := e.str("error"); !strings.Contains(msg, "rejected the credentials from upstream_proxy_credentials_file") {
			t.Errorf("error %q does not say which setting to fix", msg)
		}
		const half = 2 * time.Second
		time.Sleep(2 * half)
		times := deniedTimes(sq.AccessLog())
		if len(times) == 0 {
			t.Fatalf("squid logged no 407:\n%s", sq.AccessLog())
		}
		var early, late int
		for _, at := range times {
			switch d := at.Sub(times[0]); {
			case d < half:
				early++
			case d < 2*half:
				late++
			}
		}
		t.Logf("squid refused %d CONNECTs in the %v after the first refusal, %d in the %v after that", early, half, late, half)
		// Each attempt costs 2 407s (the probe, the refused Basic) per session;
		// attempts start 250 ms apart and double (jitter ±50 %). A retry storm
		// would be hundreds, and would not slow down.
		if early+late > 30 || late > early {
			t.Errorf("407s: %d then %d in two %v windows: the agent does not back off", early, late, half)
		}
		if a.exited() {
			t.Errorf("the agent exited on a proxy refusal; it should keep trying")
		}
		if strings.Contains(a.stderr.String(), squidPassword) {
			t.Errorf("the agent logged the proxy password:\n%s", a.stderr.String())
		}
	})
}
