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

// KDC is a real MIT Kerberos KDC (Debian krb5-kdc, krb5-admin-server) with its
// own realm and database in a temporary directory, started by a test.
type KDC struct {
	Realm string
	// Addr is where it answers, over TCP and UDP.
	Addr string
	// Krb5Conf is a krb5.conf for clients of the realm: KDC at Addr, no DNS
	// look-ups, names under Domain in the realm.
	Krb5Conf string
	dir      string
	env      []string
}

// KDCOptions configures [StartKDC].
type KDCOptions struct {
	// Netns runs the KDC inside that namespace; nil runs it here.
	Netns *Netns
	// Listen is the KDC's ip:port; empty is a free port on 127.0.0.1.
	Listen string
	// Realm defaults to FLUIDITY.TEST.
	Realm string
	// Domain is the DNS domain of the realm's hosts (domain_realm), e.g. corp.test.
	Domain string
}

// KDC tools: krb5kdc from krb5-kdc, kdb5_util too, kadmin.local from krb5-admin-server.
var kdcTools = []string{"/usr/sbin/krb5kdc", "/usr/sbin/kdb5_util", "/usr/sbin/kadmin.local"}

// StartKDC creates the realm's database and runs krb5kdc in the foreground.
func StartKDC(t testing.TB, o KDCOptions) *KDC {
	t.Helper()
	for _, f := range kdcTools {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("the Kerberos tests need an MIT KDC (scripts/ci-deps.sh installs it: apt-get install krb5-kdc krb5-admin-server): %v", err)
		}
	}
	k := &KDC{Realm: o.Realm, Addr: o.Listen}
	if k.Realm == "" {
		k.Realm = "FLUIDITY.TEST"
	}
	if k.Addr == "" {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		k.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	// Readable by squid's user too: its helper reads Krb5Conf.
	k.dir = SharedTempDir(t, "fluidity-kdc-")
	k.Krb5Conf = filepath.Join(k.dir, "krb5.conf")
	kdcConf := filepath.Join(k.dir, "kdc.conf")
	var domains string
	if o.Domain != "" {
		domains = fmt.Sprintf(" .%[1]s = %[2]s\n %[1]s = %[2]s\n", o.Domain, k.Realm)
	}
	// TCP only (udp_preference_limit 1): one transport to reason about.
	krb5 := fmt.Sprintf(`[libdefaults]
 default_realm = %[1]s
 dns_lookup_kdc = false
 dns_lookup_realm = false
 rdns = false
 udp_preference_limit = 1
[realms]
 %[1]s = {
  kdc = %[2]s
 }
[domain_realm]
%[3]s`, k.Realm, k.Addr, domains)
	kdc := fmt.Sprintf(`[kdcdefaults]
 kdc_listen = %[2]s
 kdc_tcp_listen = %[2]s
[realms]
 %[1]s = {
  database_name = %[3]s/principal
  key_stash_file = %[3]s/stash
  acl_file = %[3]s/kadm5.acl
  kdc_listen = %[2]s
  kdc_tcp_listen = %[2]s
  max_life = 1h
  max_renewable_life = 1h
 }
[logging]
 kdc = FILE:%[3]s/kdc.log
`, k.Realm, k.Addr, k.dir)
	for name, body := range map[string]string{k.Krb5Conf: krb5, kdcConf: kdc, filepath.Join(k.dir, "kadm5.acl"): ""} {
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	k.env = CleanEnv("KRB5_CONFIG="+k.Krb5Conf, "KRB5_KDC_PROFILE="+kdcConf)
	k.run(t, "/usr/sbin/kdb5_util", "create", "-s", "-r", k.Realm, "-P", "master-of-the-test-realm")

	cmd := exec.Command("/usr/sbin/krb5kdc", "-n", "-r", k.Realm, "-P", filepath.Join(k.dir, "krb5kdc.pid"))
	if o.Netns != nil {
		cmd = o.Netns.Command("/usr/sbin/krb5kdc", cmd.Args[1:]...)
	}
	cmd.Env = k.env
	out, err := StartDaemon(t, "krb5kdc", cmd, func() string {
		b, _ := os.ReadFile(filepath.Join(k.dir, "kdc.log"))
		return "kdc.log:\n" + string(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := WaitListening(o.Netns, k.Addr, 10*time.Second); err != nil {
		t.Fatalf("krb5kdc: %v\n%s", err, out.String())
	}
	return k
}

func (k *KDC) run(t testing.TB, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = k.env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
}

// AddUser adds the principal name@Realm with a password.
func (k *KDC) AddUser(t testing.TB, name, password string) {
	t.Helper()
	k.run(t, "/usr/sbin/kadmin.local", "-r", k.Realm, "-q", "addprinc -pw "+password+" "+name)
}

// AddService adds the principal name@Realm (e.g. HTTP/proxy.corp.test) with a
// random key and returns a keytab holding it (mode 0644: a daemon that drops
// root reads it).
func (k *KDC) AddService(t testing.TB, name string) string {
	t.Helper()
	return k.addKeytab(t, name, "addprinc -randkey "+name)
}

// Rekey gives the principal name@Realm a new random key, as a password or
// key change does: keytabs written before hold a key the KDC no longer
// issues tickets under.
func (k *KDC) Rekey(t testing.TB, name string) {
	t.Helper()
	k.run(t, "/usr/sbin/kadmin.local", "-r", k.Realm, "-q", "cpw -randkey "+name)
}

// UserKeytab adds the principal name@Realm with a random key and returns a
// keytab holding it (mode 0600, as a user keeps one).
func (k *KDC) UserKeytab(t testing.TB, name string) string {
	t.Helper()
	kt := k.addKeytab(t, name, "addprinc -randkey "+name)
	if err := os.Chmod(kt, 0o600); err != nil {
		t.Fatal(err)
	}
	return kt
}

func (k *KDC) addKeytab(t testing.TB, name, add string) string {
	t.Helper()
	k.run(t, "/usr/sbin/kadmin.local", "-r", k.Realm, "-q", add)
	kt := filepath.Join(k.dir, strings.NewReplacer("/", "_", "@", "_").Replace(name)+".keytab")
	k.run(t, "/usr/sbin/kadmin.local", "-r", k.Realm, "-q", "ktadd -k "+kt+" "+name)
	if err := os.Chmod(kt, 0o644); err != nil {
		t.Fatal(err)
	}
	return kt
}
