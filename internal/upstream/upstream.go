// Package upstream is the agent's route out of the local network: a dialer that
// reaches an address directly or through one explicit proxy, as offices that
// "only let HTTPS out" require.
//
// Proxies are given as URLs:
//
//	http://host:port     HTTP CONNECT (Basic, NTLM or Negotiate/Kerberos authentication)
//	https://host:port    TLS to the proxy, then CONNECT
//	socks5://host:port   SOCKS5, target names resolved here
//	socks5h://host:port  SOCKS5, target names resolved by the proxy
//
// Credentials come from the URL's userinfo or, preferably (a URL on a command
// line shows in ps), from a credentials file. They never appear in an error or
// in String: use [Redacted] for anything that shows a proxy URL.
package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"

	"golang.org/x/net/proxy"

	"github.com/fluidity-tunnel/fluidity/internal/config"
)

// Config keys, named in errors so that the user knows what to fix.
const (
	KeyProxy           = "upstream_proxy"
	KeyCredentialsFile = "upstream_proxy_credentials_file"
	KeyKrb5Conf        = "upstream_proxy_krb5_conf"
	KeyKeytab          = "upstream_proxy_keytab"
)

// EnvMode is the [Config.Proxy] value that takes the proxy from the environment
// (see [EnvProxy]).
const EnvMode = "env"

// ContextDialer dials like net.Dialer.DialContext.
type ContextDialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Config describes the route. The zero value dials directly.
type Config struct {
	// Proxy is empty (direct), a proxy URL, or "env".
	Proxy string
	// CredentialsFile, if set, holds one line "user:password" for the proxy; it
	// takes precedence over the URL's userinfo. Read once, by New. It must not
	// be accessible to other users (mode o-rwx), like an ssh key; Windows
	// permissions are not checked. For NTLM the user may be "DOMAIN\user".
	CredentialsFile string
	// Environ is the environment for "env" mode, as os.Environ returns it. The
	// package never reads the process environment itself.
	Environ []string
	// Self is the agent's own listener (host:port); an environment proxy
	// pointing at it is skipped, since the agent would dial itself.
	Self string
	// Warn receives notices such as a skipped environment variable; nil drops them.
	Warn func(msg string)
	// Forward makes the TCP connections (to the proxy, or to the target when
	// direct); nil means a net.Dialer.
	Forward ContextDialer
	// TLS configures the connection to an https:// proxy; nil verifies the proxy
	// against the system roots. ServerName defaults to the proxy's host.
	TLS *tls.Config
	// Krb5Conf, if set, is a krb5.conf naming the realm and its KDCs, and turns
	// on Negotiate (Kerberos) for an http(s) proxy that asks for it. The ticket
	// is for HTTP/<proxy host>, so the proxy URL names the proxy as the realm
	// knows it. The secret is Keytab's key or, without Keytab, the password of
	// the credentials (user@REALM, or user in krb5.conf's default_realm).
	Krb5Conf string
	// Keytab, if set, is a keytab (mode o-rwx) holding the user's key; its
	// first principal is the user unless the credentials name one.
	Keytab string
}

// Dialer reaches addresses over the configured route. It is safe for
// concurrent use.
type Dialer struct {
	forward ContextDialer
	// proxy is nil for direct connections.
	proxy *route
	// bypass, when set (env mode), tells which targets NO_PROXY exempts.
	bypass func(target string) bool
	desc   string

	closeOnce sync.Once
}

// route is one proxy with its credentials.
type route struct {
	u        *url.URL // without userinfo
	user     string
	password string
	hasCreds bool
	credFrom string // the config key the credentials came from
	tls      *tls.Config
	socks    proxy.Dialer
	forward  ContextDialer
	krb      *kerberos // nil: no Negotiate
}

// New checks cfg, reads the credentials file and returns the dialer.
func New(cfg Config) (*Dialer, error) {
	d := &Dialer{forward: cfg.Forward, desc: "direct"}
	if d.forward == nil {
		d.forward = &net.Dialer{}
	}
	var (
		raw    string
		source = KeyProxy
	)
	switch cfg.Proxy {
	case "":
		for _, f := range []struct{ key, val string }{
			{KeyCredentialsFile, cfg.CredentialsFile}, {KeyKrb5Conf, cfg.Krb5Conf}, {KeyKeytab, cfg.Keytab},
		} {
			if f.val != "" {
				return nil, fieldErr(f.key, errors.New("set, but upstream_proxy is empty (direct)"))
			}
		}
		return d, nil
	case EnvMode:
		env, err := EnvProxy(cfg.Environ, cfg.Self, cfg.Warn)
		if err != nil {
			return nil, fieldErr(KeyProxy, err)
		}
		if env.URL == nil {
			d.desc = "direct (env: no proxy set)"
			return d, nil
		}
		raw, source = env.URL.String(), env.Var
		d.bypass = env.Bypass
	default:
		raw = cfg.Proxy
	}
	u, err := ParseURL(raw)
	if err != nil {
		if source != KeyProxy {
			err = fmt.Errorf("from %s: %w", source, err)
		}
		return nil, fieldErr(KeyProxy, err)
	}
	r := &route{u: stripUser(u), forward: d.forward, credFrom: KeyProxy}
	if u.User != nil {
		r.user = u.User.Username()
		r.password, _ = u.User.Password()
		r.hasCreds = true
	}
	if cfg.CredentialsFile != "" {
		r.user, r.password, err = ReadCredentials(cfg.CredentialsFile)
		if err != nil {
			return nil, fieldErr(KeyCredentialsFile, err)
		}
		r.hasCreds, r.credFrom = true, KeyCredentialsFile
	}
	if err := r.init(cfg.TLS); err != nil {
		return nil, fieldErr(KeyProxy, err)
	}
	if err := r.initKerberos(cfg.Krb5Conf, cfg.Keytab); err != nil {
		return nil, err
	}
	d.proxy = r
	d.desc = Redacted(u)
	if source != KeyProxy {
		d.desc += " (from " + source + ")"
	}
	return d, nil
}

func (r *route) initKerberos(krb5Conf, keytabPath string) error {
	switch {
	case krb5Conf == "" && keytabPath != "":
		return fieldErr(KeyKeytab, errors.New("set, but "+KeyKrb5Conf+" is empty"))
	case krb5Conf == "":
		return nil
	case r.u.Scheme != "http" && r.u.Scheme != "https":
		return fieldErr(KeyKrb5Conf, fmt.Errorf("only http:// and https:// proxies speak Negotiate, not %s://", r.u.Scheme))
	}
	k, err := newKerberos(krb5Conf, keytabPath, r.user, r.password, r.credFrom, r.u.Hostname())
	if err != nil {
		return err
	}
	r.krb = k
	return nil
}

func (r *route) init(tcfg *tls.Config) error {
	switch r.u.Scheme {
	case "https":
		if tcfg == nil {
			tcfg = &tls.Config{}
		}
		r.tls = tcfg.Clone()
		if r.tls.ServerName == "" {
			r.tls.ServerName = r.u.Hostname()
		}
	case "socks5", "socks5h":
		var auth *proxy.Auth
		if r.hasCreds {
			auth = &proxy.Auth{User: r.user, Password: r.password}
		}
		s, err := proxy.SOCKS5("tcp", r.u.Host, auth, forwardDialer{r.forward})
		if err != nil {
			return err
		}
		r.socks = s
	}
	return nil
}

// String describes the route without credentials: "direct", or the proxy URL.
func (d *Dialer) String() string { return d.desc }

// Close releases what the route holds: Kerberos tickets and their renewal.
// It is idempotent; the dialer must not be used afterwards.
func (d *Dialer) Close() error {
	d.closeOnce.Do(func() {
		if d.proxy != nil && d.proxy.krb != nil {
			d.proxy.krb.close()
		}
	})
	return nil
}

// Direct reports whether the dialer never uses a proxy.
func (d *Dialer) Direct() bool { return d.proxy == nil }

// DialContext connects to addr, through the proxy unless the route is direct
// or (env mode) NO_PROXY exempts addr. ctx bounds the whole exchange with the
// proxy; the connection returned carries no deadline.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.proxy == nil || (d.bypass != nil && d.bypass(addr)) {
		return d.forward.DialContext(ctx, network, addr)
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("upstream proxy %s: cannot carry network %q", Redacted(d.proxy.u), network)
	}
	switch d.proxy.u.Scheme {
	case "socks5h":
		return d.dialSOCKS(ctx, addr)
	case "socks5":
		return d.dialSOCKSResolved(ctx, addr)
	}
	return d.proxy.connect(ctx, addr)
}

func (d *Dialer) dialSOCKS(ctx context.Context, addr string) (net.Conn, error) {
	c, err := d.proxy.socks.(proxy.ContextDialer).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("upstream proxy %s: %w", Redacted(d.proxy.u), err)
	}
	return c, nil
}

// dialSOCKSResolved is socks5://: the target's name is resolved here and the
// proxy is given addresses, tried in turn.
func (d *Dialer) dialSOCKSResolved(ctx context.Context, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if net.ParseIP(host) != nil {
		return d.dialSOCKS(ctx, addr)
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("upstream proxy %s: resolve %s: %w", Redacted(d.proxy.u), host, err)
	}
	var first error
	for _, ip := range ips {
		c, err := d.dialSOCKS(ctx, net.JoinHostPort(ip.IP.String(), port))
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// forwardDialer gives x/net/proxy the Dial method it requires; it uses
// DialContext, which it prefers.
type forwardDialer struct{ ContextDialer }

func (f forwardDialer) Dial(network, addr string) (net.Conn, error) {
	return f.DialContext(context.Background(), network, addr)
}

// ParseURL parses and checks a proxy URL: a known scheme and a host. A missing
// port takes the scheme's usual one (http 80, https 443, socks5 1080).
func ParseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		// url.Error quotes the whole input, password included.
		return nil, errors.New("not a URL (expected e.g. http://proxy.example:3128, or env)")
	}
	switch u.Scheme {
	case "http", "https", "socks5", "socks5h":
	default:
		return nil, fmt.Errorf("%s: scheme %q is not http, https, socks5 or socks5h", Redacted(u), u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("%s: no host", Redacted(u))
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%s: a proxy URL has no path or query", Redacted(u))
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), defaultPort(u.Scheme))
	}
	u.Path = ""
	return u, nil
}

func defaultPort(scheme string) string {
	switch scheme {
	case "https":
		return "443"
	case "socks5", "socks5h":
		return "1080"
	}
	return "80"
}

// Redacted returns scheme://host:port of a proxy URL: no user name, no
// password, no path. Use it wherever a proxy URL is shown.
func Redacted(u *url.URL) string {
	if u == nil {
		return "direct"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
}

func stripUser(u *url.URL) *url.URL {
	c := *u
	c.User = nil
	return &c
}

// ReadCredentials reads a credentials file: one line "user:password" (the
// password may itself contain colons; a trailing newline is ignored). The file
// must not be accessible to other users.
func ReadCredentials(path string) (user, password string, err error) {
	if err := checkPrivate(path); err != nil {
		return "", "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	line, rest, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if strings.TrimSpace(rest) != "" {
		return "", "", fmt.Errorf("%s: want one line user:password, found more", path)
	}
	user, password, ok := strings.Cut(line, ":")
	if !ok || user == "" {
		return "", "", fmt.Errorf("%s: want one line user:password", path)
	}
	return user, password, nil
}

func fieldErr(key string, err error) error { return &config.FieldError{Key: key, Err: err} }
