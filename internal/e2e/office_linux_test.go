package e2e

import (
	"bytes"
	"fmt"
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

	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

// squidHelpers is where Debian's squid package puts its authentication helpers.
const squidHelpers = "/usr/lib/squid"

// squid is a real squid proxy on 127.0.0.1 started by a test.
type squid struct {
	addr string
	dir  string
}

// accessLog returns squid's access log so far. Squid writes a CONNECT's line
// when the tunnel closes.
func (s *squid) accessLog() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "logs", "access.log"))
	return string(b)
}

// startSquid runs squid in the foreground (-N) on a free port, allowing CONNECT
// to connectPort only, for users who authenticate: auth "basic" checks alice's
// password (squidPassword) with basic_ncsa_auth; "ntlm" offers NTLM, which
// ntlm_fake_auth accepts from anyone, and Basic with the same password file.
// Cleanup stops it with SIGTERM (shutdown_lifetime 0: at once).
func startSquid(t *testing.T, auth string, connectPort string) *squid {
	t.Helper()
	bin, err := exec.LookPath("squid")
	if err != nil {
		bin = "/usr/sbin/squid" // not on a non-root PATH
	}
	for _, f := range []string{bin, squidHelpers + "/basic_ncsa_auth", squidHelpers + "/ntlm_fake_auth"} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("squid is required by the upstream-proxy tests (scripts/ci-deps.sh installs it: apt-get install squid): %v", err)
		}
	}
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl is required to write squid's password file (scripts/ci-deps.sh installs it): %v", err)
	}
	// Run as root, squid drops to its own user, which must read this directory;
	// t.TempDir's is private to us.
	dir, err := os.MkdirTemp("", "fluidity-squid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	logs := filepath.Join(dir, "logs")
	if err := os.Mkdir(logs, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, logs} {
		if err := os.Chmod(p, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	hash, err := exec.Command(openssl, "passwd", "-apr1", squidPassword).Output()
	if err != nil {
		t.Fatalf("openssl passwd: %v", err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("alice:"+strings.TrimSpace(string(hash))+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port, err := testbin.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	var schemes string
	if auth == "ntlm" {
		schemes = "auth_param ntlm program " + squidHelpers + "/ntlm_fake_auth\n" +
			"auth_param ntlm children 1 startup=1 idle=1\n"
	}
	schemes += "auth_param basic program " + squidHelpers + "/basic_ncsa_auth " + htpasswd + "\n" +
		"auth_param basic children 1 startup=1 idle=1\n" +
		"auth_param basic realm fluidity-test\n"
	conf := fmt.Sprintf(`http_port 127.0.0.1:%d
pid_filename %[2]s/squid.pid
access_log stdio:%[2]s/access.log squid
cache_log %[2]s/cache.log
cache_store_log none
coredump_dir %[2]s
cache deny all
cache_mem 4 MB
max_filedescriptors 1024
visible_hostname fluidity-test
pinger_enable off
shutdown_lifetime 0 seconds
dns_nameservers 127.0.0.1
%[3]s
acl authed proxy_auth REQUIRED
acl CONNECT method CONNECT
acl tunnel_port port %[4]s
http_access deny CONNECT !tunnel_port
http_access deny !CONNECT
http_access allow authed
http_access deny all
`, port, logs, schemes, connectPort)
	confFile := filepath.Join(dir, "squid.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	cmd := exec.Command(bin, "-N", "-f", confFile)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start squid: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("squid still running 5s after SIGTERM; killing it")
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			cache, _ := os.ReadFile(filepath.Join(logs, "cache.log"))
			t.Logf("squid output:\n%s\ncache.log:\n%s", out.String(), cache)
		}
	})
	s := &squid{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			cache, _ := os.ReadFile(filepath.Join(logs, "cache.log"))
			t.Fatalf("squid exited at start:\n%s\n%s", out.String(), cache)
		default:
		}
		if c, err := net.DialTimeout("tcp", s.addr, time.Second); err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("squid did not listen on %s within 10s", s.addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const squidPassword = "squid-SECRET-pw"

func writeCredentials(t *testing.T, line string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "proxy-credentials")
	if err := os.WriteFile(p, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUpstreamSquid: the agent reaches the server through a real squid, with
// Basic and with NTLM authentication; HTTP and HTTPS (CONNECT) traffic passes;
// squid's access log shows the CONNECT to the server by the authenticated
// user; no log line carries the password.
func TestUpstreamSquid(t *testing.T) {
	t.Parallel()
	target, _, caFile := tlsTarget(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("secure hello"))
	}))
	for _, tc := range []struct {
		auth, creds, user string
	}{
		{"basic", "alice:" + squidPassword, "alice"},
		// Squid offers Basic too, whose password this is not: only NTLM can succeed.
		// Squid logs the NTLM user as DOMAIN\\user (its escaping).
		{"ntlm", `CORP\alice:ntlm-` + squidPassword, `CORP\\alice`},
	} {
		t.Run(tc.auth, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, serverOpts{})
			_, port, _ := net.SplitHostPort(srv.addr)
			sq := startSquid(t, tc.auth, port)
			a := startAgent(t, srv.addr,
				"--upstream-proxy", "http://"+sq.addr,
				"--upstream-proxy-credentials-file", writeCredentials(t, tc.creds))
			if _, ok := a.stderr.waitEntry(a.done, startTimeout, func(e logEntry) bool {
				return e.str("message") == "reaching the server through an upstream proxy" && e.str("upstream") == "http://"+sq.addr
			}); !ok {
				t.Errorf("no startup line naming the route:\n%s", a.stderr.String())
			}
			a.waitHealthz(t)
			a.waitProxied(t)
			if out := string(mustCurl(t, "-x", a.proxyURL.String(), "--cacert", caFile, target.URL+"/x")); out != "secure hello" {
				t.Errorf("HTTPS through the agent: %q", out)
			}

			if code := a.stop(t); code != 0 {
				t.Fatalf("agent exited %d", code)
			}
			// The tunnel's CONNECT is logged once it closes.
			want := "CONNECT " + srv.addr + " " + tc.user
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(sq.accessLog(), want) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if log := sq.accessLog(); !strings.Contains(log, "TCP_TUNNEL/200") || !strings.Contains(log, want) {
				t.Errorf("squid's access log lacks a tunnelled %q:\n%s", want, log)
			}
			if strings.Contains(a.stderr.String(), squidPassword) {
				t.Errorf("the agent logged the proxy password:\n%s", a.stderr.String())
			}
		})
	}

	// Wrong password: a clear error naming the key, never the password.
	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, serverOpts{})
		_, port, _ := net.SplitHostPort(srv.addr)
		sq := startSquid(t, "basic", port)
		a := startAgent(t, srv.addr, "--upstream-proxy", "http://alice:wrong-"+squidPassword+"@"+sq.addr)
		e, ok := a.stderr.waitEntry(a.done, startTimeout, func(e logEntry) bool {
			return strings.Contains(e.str("error"), "407")
		})
		if !ok {
			t.Fatalf("no 407 error logged:\n%s", a.stderr.String())
		}
		if msg := e.str("error"); !strings.Contains(msg, "rejected the credentials from upstream_proxy") {
			t.Errorf("error %q does not say which setting to fix", msg)
		}
		if strings.Contains(a.stderr.String(), squidPassword) {
			t.Errorf("the agent logged the proxy password:\n%s", a.stderr.String())
		}
	})
}
