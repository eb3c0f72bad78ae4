// Package pac writes the agent's proxy auto-config (PAC) file: the small
// JavaScript function browsers and operating systems ask, for every URL,
// whether to go through the agent or DIRECT. It sends intranet names and
// networks DIRECT (split tunnelling), and everything else to the agent.
//
// Only values this package validated reach the script, and they reach it as
// JSON string literals or as addresses it formats itself, so a configuration
// value cannot inject JavaScript.
package pac

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"text/template"
)

// ContentType is the media type PAC files are served with.
const ContentType = "application/x-ns-proxy-autoconfig"

// Config says what goes DIRECT and where the rest goes.
type Config struct {
	// DirectDomains are DNS suffixes reached directly: "corp.example" (or
	// ".corp.example", "*.corp.example") covers corp.example and every name
	// under it.
	DirectDomains []string
	// DirectCIDRs are IPv4 networks reached directly, "10.0.0.0/8". A host
	// name is resolved on this machine (dnsResolve) to be checked against
	// them, so names of such networks are best listed in DirectDomains too.
	DirectCIDRs []string
	// Proxy is the agent's HTTP proxy, host:port. Required.
	Proxy string
	// SOCKS, if set, is the agent's SOCKS5 listener, host:port, offered as
	// a fallback after Proxy.
	SOCKS string
}

// label is one DNS label: letters, digits and inner hyphens (lower case; names
// are compared lower-cased), at most 63 bytes.
var label = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// CheckDomain reports whether d is a usable DNS suffix, and returns it in
// the form the script compares: lower case, without a leading "*." or ".".
func CheckDomain(d string) (string, error) {
	s := strings.ToLower(strings.TrimSpace(d))
	s = strings.TrimPrefix(s, "*")
	s = strings.TrimPrefix(s, ".")
	s = strings.TrimSuffix(s, ".") // a fully qualified name
	if s == "" || len(s) > 253 {
		return "", fmt.Errorf("%q is not a DNS name or suffix", d)
	}
	for _, l := range strings.Split(s, ".") {
		if !label.MatchString(l) {
			return "", fmt.Errorf("%q is not a DNS name or suffix (like corp.example or .corp.example)", d)
		}
	}
	return s, nil
}

// CheckCIDR reports whether c is an IPv4 network in CIDR notation, and
// returns it masked (10.1.2.3/8 is 10.0.0.0/8).
func CheckCIDR(c string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(c))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a network in CIDR notation (like 10.0.0.0/8)", c)
	}
	if !p.Addr().Is4() {
		// PAC's isInNet knows IPv4 only; isInNetEx is not in every browser.
		return netip.Prefix{}, fmt.Errorf("%q: only IPv4 networks can be checked by a PAC file", c)
	}
	return p.Masked(), nil
}

// checkHostPort accepts host:port with an IP address or a DNS name as host.
func checkHostPort(key, hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return fmt.Errorf("pac: %s %q: %w", key, hp, err)
	}
	if _, err := netip.ParseAddr(host); err != nil {
		if _, err := CheckDomain(host); err != nil || strings.HasPrefix(host, ".") || strings.HasPrefix(host, "*") {
			return fmt.Errorf("pac: %s %q: host is neither an IP address nor a name", key, hp)
		}
	}
	var n int
	if _, err := fmt.Sscanf(port, "%d", &n); err != nil || n < 1 || n > 65535 || fmt.Sprint(n) != port {
		return fmt.Errorf("pac: %s %q: %q is not a port", key, hp, port)
	}
	return nil
}

// Validate reports the first value that cannot go into the script.
func (c Config) Validate() error {
	for _, d := range c.DirectDomains {
		if _, err := CheckDomain(d); err != nil {
			return fmt.Errorf("pac: direct domain: %w", err)
		}
	}
	for _, n := range c.DirectCIDRs {
		if _, err := CheckCIDR(n); err != nil {
			return fmt.Errorf("pac: direct network: %w", err)
		}
	}
	if c.Proxy == "" {
		return errors.New("pac: the proxy address is required")
	}
	if err := checkHostPort("proxy", c.Proxy); err != nil {
		return err
	}
	if c.SOCKS != "" {
		if err := checkHostPort("socks", c.SOCKS); err != nil {
			return err
		}
	}
	return nil
}

// The script. Loopback and plain names (no dot: intranet short names) are
// always DIRECT; isPlainHostName alone would also take IPv6 literals, which
// have no dots either. Browsers pass an IPv6 host with or without brackets.
var script = template.Must(template.New("pac").Parse(`// Fluidity agent: proxy auto-config. Generated; edit the agent's
// direct_domains and direct_cidrs instead.
var directDomains = {{.Domains}};
var directNets = {{.Nets}};
var tunnel = {{.Tunnel}};

function FindProxyForURL(url, host) {
  host = host.toLowerCase();
  if (host.charAt(0) == "[") host = host.substring(1, host.length - 1);
  if (host.charAt(host.length - 1) == ".") host = host.substring(0, host.length - 1);
  if (isPlainHostName(host) && host.indexOf(":") < 0) return "DIRECT";
  if (host == "localhost" || dnsDomainIs(host, ".localhost")) return "DIRECT";
  if (host == "::1" || /^127\.\d+\.\d+\.\d+$/.test(host)) return "DIRECT";
  for (var i = 0; i < directDomains.length; i++) {
    var d = directDomains[i];
    if (host == d || dnsDomainIs(host, "." + d)) return "DIRECT";
  }
  if (directNets.length > 0 && host.indexOf(":") < 0) {
    var ip = /^\d+\.\d+\.\d+\.\d+$/.test(host) ? host : dnsResolve(host);
    if (ip) {
      for (var j = 0; j < directNets.length; j++) {
        if (isInNet(ip, directNets[j][0], directNets[j][1])) return "DIRECT";
      }
    }
  }
  return tunnel;
}
`))

// Generate writes the PAC file for c.
func (c Config) Generate() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	domains := []string{}
	for _, d := range c.DirectDomains {
		s, _ := CheckDomain(d)
		domains = append(domains, s)
	}
	nets := [][2]string{}
	for _, n := range c.DirectCIDRs {
		p, _ := CheckCIDR(n)
		mask := net.CIDRMask(p.Bits(), 32)
		nets = append(nets, [2]string{p.Addr().String(), net.IP(mask).String()})
	}
	tunnel := "PROXY " + c.Proxy
	if c.SOCKS != "" {
		tunnel += "; SOCKS5 " + c.SOCKS
	}
	js := func(v any) string {
		b, err := json.Marshal(v) // escapes <, > and &; quotes and backslashes
		if err != nil {
			panic(err) // strings and arrays of them always marshal
		}
		return string(b)
	}
	var buf bytes.Buffer
	err := script.Execute(&buf, map[string]string{"Domains": js(domains), "Nets": js(nets), "Tunnel": js(tunnel)})
	return buf.Bytes(), err
}

// Handler serves c's PAC file. The file is generated once: c was validated
// with the configuration, and does not change while the agent runs.
func Handler(c Config) (http.Handler, error) {
	body, err := c.Generate()
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ContentType)
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(body)
	}), nil
}
