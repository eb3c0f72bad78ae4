package testbin

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SquidHelpers is where Debian's squid package puts its authentication helpers.
const SquidHelpers = "/usr/lib/squid"

// Squid authentication set-ups for [SquidOptions.Auth].
const (
	// SquidBasic checks Basic credentials against Users with basic_ncsa_auth.
	SquidBasic = "basic"
	// SquidNTLM offers NTLM, which ntlm_fake_auth accepts from anyone, and
	// Basic as SquidBasic does.
	SquidNTLM = "ntlm"
	// SquidNegotiate offers Negotiate, checked by negotiate_kerberos_auth
	// against Keytab (any service principal in it), and Basic as SquidBasic does.
	SquidNegotiate = "negotiate"
)

// SquidOptions configures [StartSquid].
type SquidOptions struct {
	// Netns runs squid inside that namespace; nil runs it here.
	Netns *Netns
	// Listen is squid's ip:port; empty is a free port on 127.0.0.1.
	Listen string
	// Auth is SquidBasic (the default), SquidNTLM or SquidNegotiate.
	Auth string
	// Users maps user names to Basic passwords.
	Users map[string]string
	// ConnectPorts are the only ports CONNECT may reach; squid refuses any
	// other request (it is a proxy that only lets HTTPS out).
	ConnectPorts []string
	// Keytab and Krb5Conf are for SquidNegotiate: the proxy's service keys and
	// the realm's configuration.
	Keytab, Krb5Conf string
}

// Squid is a real squid proxy started by a test.
type Squid struct {
	Addr string
	dir  string
}

// AccessLog returns squid's access log so far (one line per request, written
// as it completes: a CONNECT's line when its tunnel closes).
func (s *Squid) AccessLog() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "logs", "access.log"))
	return string(b)
}

// StartSquid runs squid in the foreground (-N). Cleanup stops it with SIGTERM
// (shutdown_lifetime 0: at once) and shows its logs if the test failed.
func StartSquid(t testing.TB, o SquidOptions) *Squid {
	t.Helper()
	bin, err := exec.LookPath("squid")
	if err != nil {
		bin = "/usr/sbin/squid" // not on a non-root PATH
	}
	need := []string{bin, SquidHelpers + "/basic_ncsa_auth"}
	switch o.Auth {
	case SquidNTLM:
		need = append(need, SquidHelpers+"/ntlm_fake_auth")
	case SquidNegotiate:
		need = append(need, SquidHelpers+"/negotiate_kerberos_auth")
	}
	for _, f := range need {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("squid is required by the upstream-proxy tests (scripts/ci-deps.sh installs it: apt-get install squid): %v", err)
		}
	}
	// Run as root, squid drops to its own user, which must read this directory;
	// t.TempDir's is private to us.
	dir := SharedTempDir(t, "fluidity-squid-")
	logs := filepath.Join(dir, "logs")
	if err := os.Mkdir(logs, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(logs, 0o777); err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	var lines []string
	for user, pw := range o.Users {
		lines = append(lines, user+":"+apr1(t, pw))
	}
	if err := os.WriteFile(htpasswd, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := o.Listen
	if listen == "" {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	var schemes string
	switch o.Auth {
	case SquidNTLM:
		schemes = "auth_param ntlm program " + SquidHelpers + "/ntlm_fake_auth\n" +
			"auth_param ntlm children 1 startup=1 idle=1\n"
	case SquidNegotiate:
		// GSS_C_NO_NAME: any service principal of the keytab; -t none: no
		// replay cache, which would want a directory squid's user may write.
		schemes = "auth_param negotiate program " + SquidHelpers + "/negotiate_kerberos_auth -s GSS_C_NO_NAME -t none\n" +
			"auth_param negotiate children 1 startup=1 idle=1\n" +
			"auth_param negotiate keep_alive on\n"
	}
	schemes += "auth_param basic program " + SquidHelpers + "/basic_ncsa_auth " + htpasswd + "\n" +
		"auth_param basic children 1 startup=1 idle=1\n" +
		"auth_param basic realm fluidity-test\n"
	conf := fmt.Sprintf(`http_port %s
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
`, listen, logs, schemes, strings.Join(o.ConnectPorts, " "))
	confFile := filepath.Join(dir, "squid.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}

	var cmd *exec.Cmd
	if o.Netns != nil {
		cmd = o.Netns.Command(bin, "-N", "-f", confFile)
	} else {
		cmd = exec.Command(bin, "-N", "-f", confFile)
	}
	cmd.Dir = dir
	cmd.Env = CleanEnv()
	if o.Auth == SquidNegotiate {
		cmd.Env = append(cmd.Env, "KRB5_CONFIG="+o.Krb5Conf, "KRB5_KTNAME=FILE:"+o.Keytab)
	}
	s := &Squid{Addr: listen, dir: dir}
	out, err := StartDaemon(t, "squid", cmd, func() string {
		b, _ := os.ReadFile(filepath.Join(logs, "cache.log"))
		return "cache.log:\n" + string(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := WaitListening(o.Netns, listen, 10*time.Second); err != nil {
		t.Fatalf("squid: %v\n%s", err, out.String())
	}
	return s
}

// apr1 hashes a password as basic_ncsa_auth reads it, with openssl.
func apr1(t testing.TB, password string) string {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl is required to write squid's password file (scripts/ci-deps.sh installs it): %v", err)
	}
	hash, err := exec.Command(openssl, "passwd", "-apr1", password).Output()
	if err != nil {
		t.Fatalf("openssl passwd: %v", err)
	}
	return strings.TrimSpace(string(hash))
}
