package upstream

import (
	"net"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpproxy"
)

// envVars are the variables env mode reads, in order of precedence: the
// lower-case form first, as curl and Go's net/http do. HTTP_PROXY is not among
// them: the tunnel and the Wake API are both TLS, i.e. "https" traffic.
var envVars = []string{"https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"}

// Env is the proxy the environment names.
type Env struct {
	// URL is the proxy, credentials included; nil if the environment names none.
	URL *url.URL
	// Var is the variable URL came from, e.g. "HTTPS_PROXY".
	Var string
	// Bypass reports whether NO_PROXY (or no_proxy) exempts a target
	// (host:port) from the proxy. Loopback targets and localhost are always
	// exempt, as in net/http.
	Bypass func(target string) bool
}

// EnvProxy reads the proxy from environ (os.Environ's form, "KEY=value") with
// golang.org/x/net/http/httpproxy, Go's own implementation of these variables.
// A value that points at self (the agent's own listener, host:port) is
// skipped with a warning: a user who set HTTPS_PROXY to the agent for their
// other programs would otherwise have the agent dial itself. The next
// variable in precedence is then tried.
func EnvProxy(environ []string, self string, warn func(string)) (Env, error) {
	get := lookup(environ)
	noProxy := get("no_proxy")
	if noProxy == "" {
		noProxy = get("NO_PROXY")
	}
	for _, name := range envVars {
		v := get(name)
		if v == "" {
			continue
		}
		// Ask, without NO_PROXY, for any target to learn the URL as httpproxy
		// parses it ("host:port" alone means http://host:port).
		parse := (&httpproxy.Config{HTTPSProxy: v}).ProxyFunc()
		u, err := parse(&url.URL{Scheme: "https", Host: "fluidity.invalid:443"})
		if err != nil {
			// httpproxy's message quotes the value, password included.
			return Env{}, &envError{name: name}
		}
		if u == nil {
			continue
		}
		if pointsAt(u, self) {
			if warn != nil {
				warn(name + "=" + Redacted(u) + " points at this agent's own listener; ignored")
			}
			continue
		}
		pf := (&httpproxy.Config{HTTPSProxy: v, NoProxy: noProxy}).ProxyFunc()
		bypass := func(target string) bool {
			p, err := pf(&url.URL{Scheme: "https", Host: target})
			return err == nil && p == nil
		}
		return Env{URL: u, Var: name, Bypass: bypass}, nil
	}
	return Env{}, nil
}

type envError struct{ name string }

func (e *envError) Error() string { return e.name + " is not a proxy URL" }

func lookup(environ []string) func(string) string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return func(k string) string { return m[k] }
}

// pointsAt reports whether proxy u is the listener self (host:port): the same
// host and port, or the same port on a loopback name or address when self is
// loopback or listens on every interface.
func pointsAt(u *url.URL, self string) bool {
	selfHost, selfPort, err := net.SplitHostPort(self)
	if err != nil || selfPort == "" || selfPort == "0" {
		return false
	}
	port := u.Port()
	if port == "" {
		port = defaultPort(u.Scheme)
	}
	if port != selfPort {
		return false
	}
	host := u.Hostname()
	if strings.EqualFold(host, selfHost) {
		return true
	}
	if !isLocal(host) {
		return false
	}
	sip := net.ParseIP(selfHost)
	return strings.EqualFold(selfHost, "localhost") || (sip != nil && (sip.IsLoopback() || sip.IsUnspecified()))
}

func isLocal(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
