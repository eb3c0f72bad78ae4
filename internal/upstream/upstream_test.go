package upstream

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fluidity-tunnel/fluidity/internal/config"
)

// socksServer is a minimal SOCKS5 server (RFC 1928, with RFC 1929 user/password
// when user is set) answering CONNECT by echoing; asked receives the address
// type and address of every request.
func socksServer(t *testing.T, user, password string, asked chan<- string) string {
	return stub(t, func(c net.Conn, br *bufio.Reader) {
		read := func(n int) []byte {
			b := make([]byte, n)
			if _, err := io.ReadFull(br, b); err != nil {
				return nil
			}
			return b
		}
		hdr := read(2)
		if hdr == nil || hdr[0] != 5 {
			return
		}
		methods := read(int(hdr[1]))
		want := byte(0)
		if user != "" {
			want = 2
		}
		if !strings.ContainsRune(string(methods), rune(want)) {
			_, _ = c.Write([]byte{5, 0xff})
			return
		}
		_, _ = c.Write([]byte{5, want})
		if want == 2 {
			v := read(2)
			if v == nil {
				return
			}
			u := string(read(int(v[1])))
			pl := read(1)
			if pl == nil {
				return
			}
			p := string(read(int(pl[0])))
			if u != user || p != password {
				_, _ = c.Write([]byte{1, 1})
				return
			}
			_, _ = c.Write([]byte{1, 0})
		}
		req := read(4)
		if req == nil || req[1] != 1 {
			return
		}
		var addr string
		switch req[3] {
		case 1:
			addr = "ipv4 " + net.IP(read(4)).String()
		case 4:
			addr = "ipv6 " + net.IP(read(16)).String()
		case 3:
			l := read(1)
			addr = "name " + string(read(int(l[0])))
		}
		port := binary.BigEndian.Uint16(read(2))
		asked <- addr + ":" + strconv.Itoa(int(port))
		_, _ = c.Write([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 0})
		echo(c, br)
	})
}

// TestSOCKS5: socks5h hands the name to the proxy, socks5 resolves it here;
// user/password from the URL authenticate; a wrong password fails without
// showing it.
func TestSOCKS5(t *testing.T) {
	asked := make(chan string, 4)
	addr := socksServer(t, testUser, testPassword, asked)
	for _, tc := range []struct{ scheme, want string }{
		{"socks5h", "name localhost:4430"},
		{"socks5", "ipv"}, // 127.0.0.1 or ::1, whichever localhost resolves to first
	} {
		t.Run(tc.scheme, func(t *testing.T) {
			d := newDialer(t, tc.scheme+"://"+testUser+":"+testPassword+"@"+addr)
			conn, err := d.DialContext(dialCtx(t), "tcp", "localhost:4430")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			checkEcho(t, conn, "")
			if got := <-asked; !strings.HasPrefix(got, tc.want) || !strings.HasSuffix(got, ":4430") {
				t.Errorf("proxy was asked for %q, want %s…:4430", got, tc.want)
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		d := newDialer(t, "socks5h://"+testUser+":x"+testPassword+"@"+addr)
		c, err := d.DialContext(dialCtx(t), "tcp", "localhost:4430")
		if err == nil {
			c.Close()
			t.Fatal("dial succeeded")
		}
		noSecret(t, "error", err.Error())
	})
}

// TestRedaction: no error, String or Redacted form of any route carries the
// password, nor (Redacted, String) the user name.
func TestRedaction(t *testing.T) {
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()
	for _, scheme := range []string{"http", "https", "socks5", "socks5h"} {
		raw := scheme + "://" + testUser + ":" + testPassword + "@" + closed
		d := newDialer(t, raw)
		if s := d.String(); strings.Contains(s, testPassword) || strings.Contains(s, testUser) || s != scheme+"://"+closed {
			t.Errorf("String() = %q, want %s://%s", s, scheme, closed)
		}
		_, err := d.DialContext(dialCtx(t), "tcp", "localhost:443")
		if err == nil {
			t.Fatalf("%s: dial to a closed port succeeded", scheme)
		}
		noSecret(t, scheme+" dial error", err.Error())
	}
	for _, bad := range []string{
		"ftp://" + testUser + ":" + testPassword + "@proxy:21",
		"http://" + testUser + ":" + testPassword + "@proxy:3128/path?q",
		"http://" + testUser + ":" + testPassword + "@",
		"http://" + testUser + ":" + testPassword + "@proxy:bad port",
		"http://" + testUser + ":" + testPassword + "%zz@proxy:3128",
	} {
		_, err := New(Config{Proxy: bad})
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		noSecret(t, "config error", err.Error())
		if !strings.Contains(err.Error(), KeyProxy) {
			t.Errorf("error %q does not name %s", err, KeyProxy)
		}
	}
	env := []string{"HTTPS_PROXY=http://" + testUser + ":" + testPassword + "@127.0.0.1:8080"}
	var warned []string
	d, err := New(Config{Proxy: EnvMode, Environ: env, Self: "127.0.0.1:8080", Warn: func(s string) { warned = append(warned, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(warned) != 1 {
		t.Fatalf("warnings %q, want one", warned)
	}
	noSecret(t, "warning", warned[0])
	noSecret(t, "String", d.String())
	_, err = New(Config{Proxy: EnvMode, Environ: []string{"HTTPS_PROXY=http://" + testUser + ":" + testPassword + "@proxy:bad"}})
	if err == nil {
		t.Fatal("a bad HTTPS_PROXY was accepted")
	}
	noSecret(t, "env error", err.Error())
}

func credFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "proxy-credentials")
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return p
}

func TestCredentialsFile(t *testing.T) {
	user, pw, err := ReadCredentials(credFile(t, "CORP\\alice:pa:ss\r\n", 0o600))
	if err != nil || user != "CORP\\alice" || pw != "pa:ss" {
		t.Errorf("got %q %q %v", user, pw, err)
	}
	for name, tc := range map[string]struct {
		content string
		mode    os.FileMode
	}{
		"world readable": {"alice:" + testPassword, 0o644},
		"no colon":       {"alice", 0o600},
		"two lines":      {"alice:" + testPassword + "\nbob:x\n", 0o600},
		"empty user":     {":" + testPassword, 0o600},
	} {
		_, err := New(Config{Proxy: "http://proxy:3128", CredentialsFile: credFile(t, tc.content, tc.mode)})
		var fe *config.FieldError
		if !errors.As(err, &fe) || fe.Key != KeyCredentialsFile {
			t.Errorf("%s: error %v, want one naming %s", name, err, KeyCredentialsFile)
			continue
		}
		noSecret(t, name, err.Error())
	}
	if _, err := New(Config{Proxy: "http://proxy:3128", CredentialsFile: filepath.Join(t.TempDir(), "missing")}); err == nil || !strings.Contains(err.Error(), KeyCredentialsFile) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := New(Config{CredentialsFile: credFile(t, "a:b", 0o600)}); err == nil {
		t.Error("a credentials file without a proxy was accepted")
	}
}

func TestParseURLDefaultPorts(t *testing.T) {
	for in, want := range map[string]string{
		"http://proxy":             "http://proxy:80",
		"https://proxy/":           "https://proxy:443",
		"socks5://proxy":           "socks5://proxy:1080",
		"socks5h://[::1]:9050":     "socks5h://[::1]:9050",
		"http://u:p@proxy.corp:81": "http://proxy.corp:81",
	} {
		u, err := ParseURL(in)
		if err != nil || Redacted(u) != want {
			t.Errorf("ParseURL(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
}

func TestEnvProxy(t *testing.T) {
	const self = "127.0.0.1:8080"
	cases := []struct {
		name    string
		env     []string
		want    string // Redacted URL, "" for none
		wantVar string
		warns   int
		direct  []string // targets NO_PROXY exempts
		proxied []string
	}{
		{name: "nothing", env: []string{"HTTP_PROXY=http://ignored:3128"}},
		{name: "upper", env: []string{"HTTPS_PROXY=http://corp:3128"}, want: "http://corp:3128", wantVar: "HTTPS_PROXY"},
		{name: "lower wins", env: []string{"HTTPS_PROXY=http://upper:3128", "https_proxy=http://lower:3128"}, want: "http://lower:3128", wantVar: "https_proxy"},
		{name: "bare host:port is http", env: []string{"https_proxy=corp:3128"}, want: "http://corp:3128", wantVar: "https_proxy"},
		{name: "all_proxy socks", env: []string{"ALL_PROXY=socks5h://corp:1080"}, want: "socks5h://corp:1080", wantVar: "ALL_PROXY"},
		{name: "https over all", env: []string{"ALL_PROXY=socks5://a:1080", "HTTPS_PROXY=http://b:3128"}, want: "http://b:3128", wantVar: "HTTPS_PROXY"},
		{name: "self skipped, next taken", env: []string{"HTTPS_PROXY=http://127.0.0.1:8080", "ALL_PROXY=socks5://corp:1080"}, want: "socks5://corp:1080", wantVar: "ALL_PROXY", warns: 1},
		{name: "self as localhost", env: []string{"https_proxy=http://localhost:8080"}, warns: 1},
		{name: "self as ::1", env: []string{"https_proxy=http://[::1]:8080"}, warns: 1},
		{name: "other port on loopback kept", env: []string{"https_proxy=http://127.0.0.1:3128"}, want: "http://127.0.0.1:3128", wantVar: "https_proxy"},
		{
			name: "no_proxy", env: []string{"HTTPS_PROXY=http://corp:3128", "NO_PROXY=.internal,10.0.0.0/8"},
			want: "http://corp:3128", wantVar: "HTTPS_PROXY",
			direct:  []string{"api.internal:443", "10.1.2.3:8443", "127.0.0.1:8443"},
			proxied: []string{"abc.execute-api.eu-west-1.amazonaws.com:443", "203.0.113.7:443"},
		},
		{name: "no_proxy star", env: []string{"HTTPS_PROXY=http://corp:3128", "no_proxy=*"}, want: "http://corp:3128", wantVar: "HTTPS_PROXY", direct: []string{"203.0.113.7:443"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var warns []string
			e, err := EnvProxy(tc.env, self, func(s string) { warns = append(warns, s) })
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if e.URL != nil {
				got = Redacted(e.URL)
			}
			if got != tc.want || e.Var != tc.wantVar {
				t.Errorf("proxy %q from %q, want %q from %q", got, e.Var, tc.want, tc.wantVar)
			}
			if len(warns) != tc.warns {
				t.Errorf("warnings %q, want %d", warns, tc.warns)
			}
			for _, target := range tc.direct {
				if !e.Bypass(target) {
					t.Errorf("%s not exempted", target)
				}
			}
			for _, target := range tc.proxied {
				if e.Bypass(target) {
					t.Errorf("%s exempted", target)
				}
			}
		})
	}
}

// TestEnvModeDialer: env mode dials through the environment's proxy, and
// directly where NO_PROXY says so.
func TestEnvModeDialer(t *testing.T) {
	var seen []string
	proxyAddr := basicProxy(t, false, &seen)
	target := stub(t, echo)
	d, err := New(Config{Proxy: EnvMode, Environ: []string{
		"HTTPS_PROXY=http://" + testUser + ":" + testPassword + "@" + proxyAddr, "NO_PROXY=direct.example",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if d.Direct() || d.String() != "http://"+proxyAddr+" (from HTTPS_PROXY)" {
		t.Errorf("String() = %q", d.String())
	}
	conn, err := d.DialContext(dialCtx(t), "tcp", "somewhere.example:443")
	if err != nil {
		t.Fatal(err)
	}
	checkEcho(t, conn, "")
	conn.Close()
	if len(seen) != 2 {
		t.Errorf("proxy saw %d requests, want 2 (probe, then Basic)", len(seen))
	}
	// The loopback target is exempt (net/http's rule), so it is dialled directly.
	conn, err = d.DialContext(dialCtx(t), "tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	checkEcho(t, conn, "")
	conn.Close()
	if len(seen) != 2 {
		t.Errorf("the exempt target went through the proxy")
	}

	d, err = New(Config{Proxy: EnvMode, Environ: []string{"PATH=/bin"}})
	if err != nil || !d.Direct() {
		t.Errorf("env mode without variables: %v, %v; want direct", d, err)
	}
}
