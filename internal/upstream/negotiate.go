package upstream

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"

	krbclient "github.com/jcmturner/gokrb5/v8/client"
	krbconfig "github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/spnego"
)

// kerberos answers a proxy's "Proxy-Authenticate: Negotiate" with a SPNEGO
// token carrying a Kerberos ticket for the proxy's service principal
// HTTP/<proxy host> (RFC 4559), as browsers do in a Windows domain. The
// password (or keytab) goes only to the KDC, never to the proxy.
//
// gokrb5 reaches the KDCs named in krb5.conf directly, not through the proxy:
// they are inside the office (domain controllers), where the agent is. Each of
// its exchanges with a KDC is bounded by its own 5 s timeouts.
type kerberos struct {
	spn       string // HTTP/<proxy host>
	principal string // user@REALM, for messages
	credFrom  string // the config key the secret came from

	mu sync.Mutex // gokrb5's login and ticket cache are used one at a time
	cl *krbclient.Client
}

// newKerberos sets up Negotiate for the proxy host: from a keytab if one is
// given (its first principal unless user names one), else from user and
// password. Nothing is sent until the proxy asks.
func newKerberos(krb5Conf, keytabPath, user, password, credFrom, proxyHost string) (*kerberos, error) {
	conf, err := krbconfig.Load(krb5Conf)
	if err != nil {
		// An unsupported directive leaves a usable configuration.
		var unsupported krbconfig.UnsupportedDirective
		if conf == nil || !errors.As(err, &unsupported) {
			return nil, fieldErr(KeyKrb5Conf, err)
		}
	}
	k := &kerberos{spn: "HTTP/" + strings.TrimSuffix(strings.ToLower(proxyHost), "."), credFrom: credFrom}
	name, realm := splitPrincipal(user, conf.LibDefaults.DefaultRealm)
	// FAST is a KDC offer gokrb5 does not speak (MIT and AD KDCs both make it);
	// without this, gokrb5 refuses to answer such a KDC at all.
	noFAST := krbclient.DisablePAFXFAST(true)
	if keytabPath != "" {
		if err := checkPrivate(keytabPath); err != nil {
			return nil, fieldErr(KeyKeytab, err)
		}
		kt, err := keytab.Load(keytabPath)
		if err != nil {
			return nil, fieldErr(KeyKeytab, err)
		}
		if name == "" {
			if len(kt.Entries) == 0 {
				return nil, fieldErr(KeyKeytab, fmt.Errorf("%s holds no key", keytabPath))
			}
			p := kt.Entries[0].Principal
			name, realm = strings.Join(p.Components, "/"), p.Realm
		}
		k.credFrom = KeyKeytab
		k.cl = krbclient.NewWithKeytab(name, realm, kt, conf, noFAST)
	} else {
		if name == "" || password == "" {
			return nil, fieldErr(KeyKrb5Conf, fmt.Errorf("needs %s or a user and password for Negotiate (user@REALM:password in %s)", KeyKeytab, KeyCredentialsFile))
		}
		k.cl = krbclient.NewWithPassword(name, realm, password, conf, noFAST)
	}
	if realm == "" {
		return nil, fieldErr(KeyKrb5Conf, fmt.Errorf("no realm for %q: name it (user@REALM) or set default_realm in %s", name, krb5Conf))
	}
	k.principal = name + "@" + realm
	return k, nil
}

// splitPrincipal reads "user@REALM" (or "user", in the default realm).
func splitPrincipal(user, defaultRealm string) (name, realm string) {
	if i := strings.LastIndex(user, "@"); i >= 0 {
		return user[:i], user[i+1:]
	}
	return user, defaultRealm
}

// token returns the Proxy-Authorization value: "Negotiate " and a SPNEGO
// NegTokenInit. The first call logs in at the KDC; the TGT and the proxy's
// service ticket are kept (and renewed by gokrb5) for later ones.
func (k *kerberos) token() (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := spnego.SPNEGOClient(k.cl, k.spn)
	if err := s.AcquireCred(); err != nil {
		return "", fmt.Errorf("kerberos login as %s (from %s): %w", k.principal, k.credFrom, err)
	}
	tok, err := s.InitSecContext()
	if err != nil {
		return "", fmt.Errorf("kerberos ticket for %s as %s: %w", k.spn, k.principal, err)
	}
	b, err := tok.Marshal()
	if err != nil {
		return "", fmt.Errorf("kerberos: encode the SPNEGO token: %w", err)
	}
	return "Negotiate " + base64.StdEncoding.EncodeToString(b), nil
}

// close stops gokrb5's ticket renewal goroutine and forgets the tickets.
func (k *kerberos) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cl.Destroy()
}

// checkPrivate refuses a secret file that other users may access.
func checkPrivate(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o007 != 0 {
		return fmt.Errorf("%s is accessible to other users (mode %v); chmod o-rwx it", path, fi.Mode().Perm())
	}
	return nil
}
