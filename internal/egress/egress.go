// Package egress decides which destinations the server may dial on a client's
// behalf.
//
// The server runs inside a cloud network (ECS Fargate in a VPC). Without a
// policy, any authenticated client could ask it to fetch
// http://169.254.169.254/ or http://169.254.170.2/ (instance and task
// credentials), or reach private services in the VPC. Policy refuses such
// destinations by default. The check runs after DNS resolution, on every
// address a name resolves to, and the dial then goes only to the addresses
// that were checked, so a name whose DNS answer changes between check and dial
// (DNS rebinding) cannot slip through.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// ErrRefused is matched (via errors.Is) by every *RefusedError.
var ErrRefused = errors.New("egress: refused by policy")

// RefusedError reports a destination that the policy will not dial.
type RefusedError struct {
	// Host is the host part of the requested address, as normalised by the
	// policy (lower case, no trailing dot).
	Host string
	// Addr is the resolved address that was refused, or the zero Addr when
	// the refusal came from the host name or the port.
	Addr netip.Addr
	// Reason is a short human-readable explanation, e.g. "loopback address".
	Reason string
}

func (e *RefusedError) Error() string {
	if e.Addr.IsValid() {
		return fmt.Sprintf("egress: refused %q (%s): %s", e.Host, e.Addr, e.Reason)
	}
	return fmt.Sprintf("egress: refused %q: %s", e.Host, e.Reason)
}

// Is makes errors.Is(err, ErrRefused) true for every RefusedError.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// Config lists the operator's exceptions to the built-in rules. The zero
// value (also returned by DefaultConfig) applies the built-in deny list only.
//
// Precedence, strongest first: DenyPorts/AllowPorts, DenyHosts, DenyCIDRs,
// AllowHosts and AllowCIDRs, built-in deny list. Deny always wins over allow
// so that an operator can carve a hole in an allowed range.
type Config struct {
	// AllowCIDRs opens ranges the built-in list refuses, e.g. "10.20.0.0/16"
	// for a VPC service that clients are meant to reach. Bare addresses are
	// accepted as single-address prefixes.
	AllowCIDRs []string
	// DenyCIDRs refuses more ranges, including public ones.
	DenyCIDRs []string
	// AllowHosts names hosts ("intranet.example.com" or "*.corp.example")
	// whose resolved addresses skip the built-in deny list; DenyCIDRs still
	// apply. "*.example.com" matches any subdomain but not example.com itself.
	AllowHosts []string
	// DenyHosts names hosts refused before any DNS lookup; same patterns as
	// AllowHosts.
	DenyHosts []string
	// AllowPorts, when non-empty, is the complete set of ports that may be
	// dialled.
	AllowPorts []int
	// DenyPorts refuses these ports even if AllowPorts lists them.
	DenyPorts []int
}

// DefaultConfig returns a Config with no exceptions: every public address on
// every port is allowed, everything on the built-in deny list is refused.
func DefaultConfig() Config { return Config{} }

// Validate reports the first malformed entry, naming it.
func (c Config) Validate() error {
	_, err := compile(c)
	return err
}

// rules is the parsed form of Config.
type rules struct {
	allowCIDRs, denyCIDRs []netip.Prefix
	allowHosts, denyHosts []hostPattern
	allowPorts, denyPorts map[uint16]bool
}

func compile(c Config) (rules, error) {
	var r rules
	var err error
	if r.allowCIDRs, err = parsePrefixes("AllowCIDRs", c.AllowCIDRs); err != nil {
		return rules{}, err
	}
	if r.denyCIDRs, err = parsePrefixes("DenyCIDRs", c.DenyCIDRs); err != nil {
		return rules{}, err
	}
	if r.allowHosts, err = parseHosts("AllowHosts", c.AllowHosts); err != nil {
		return rules{}, err
	}
	if r.denyHosts, err = parseHosts("DenyHosts", c.DenyHosts); err != nil {
		return rules{}, err
	}
	if r.allowPorts, err = parsePorts("AllowPorts", c.AllowPorts); err != nil {
		return rules{}, err
	}
	if r.denyPorts, err = parsePorts("DenyPorts", c.DenyPorts); err != nil {
		return rules{}, err
	}
	return r, nil
}

func parsePrefixes(field string, in []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(in))
	for _, s := range in {
		s = strings.TrimSpace(s)
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(s); err == nil {
				if a.Zone() != "" {
					return nil, fmt.Errorf("egress: %s entry %q: zones are not supported", field, s)
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return nil, fmt.Errorf("egress: %s entry %q: %w", field, s, err)
		}
		out = append(out, unmapPrefix(p).Masked())
	}
	return out, nil
}

// unmapPrefix turns ::ffff:a.b.c.d/n into a.b.c.d/(n-96) because addresses are
// unmapped before matching; without this an operator writing the mapped form
// would silently match nothing.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// hostPattern is an exact name, or a suffix (including the leading dot) when
// wildcard is set.
type hostPattern struct {
	name     string
	wildcard bool
}

func (h hostPattern) match(host string) bool {
	if h.wildcard {
		return strings.HasSuffix(host, h.name) && len(host) > len(h.name)
	}
	return host == h.name
}

func parseHosts(field string, in []string) ([]hostPattern, error) {
	out := make([]hostPattern, 0, len(in))
	for _, raw := range in {
		s := normalizeHost(strings.TrimSpace(raw))
		var p hostPattern
		if rest, ok := strings.CutPrefix(s, "*."); ok {
			p = hostPattern{name: "." + rest, wildcard: true}
			s = rest
		} else {
			p = hostPattern{name: s}
		}
		if _, err := netip.ParseAddr(s); err == nil {
			return nil, fmt.Errorf("egress: %s entry %q: is an IP address; use the CIDR lists", field, raw)
		}
		if err := checkHostName(s); err != nil {
			return nil, fmt.Errorf("egress: %s entry %q: %w", field, raw, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// checkHostName accepts names made of LDH labels (plus '_', which appears in
// real-world service names); it exists to catch typos such as a port or URL
// pasted into a host list, not to enforce RFC 1035 strictly.
func checkHostName(s string) error {
	if s == "" {
		return errors.New("empty host name")
	}
	if len(s) > 253 {
		return errors.New("host name longer than 253 characters")
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" {
			return errors.New("empty label")
		}
		if len(label) > 63 {
			return errors.New("label longer than 63 characters")
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("invalid character %q", r)
			}
		}
	}
	return nil
}

func parsePorts(field string, in []int) (map[uint16]bool, error) {
	out := make(map[uint16]bool, len(in))
	for _, p := range in {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("egress: %s entry %d: port out of range 1-65535", field, p)
		}
		out[uint16(p)] = true
	}
	return out, nil
}

// normalizeHost makes host comparison case-insensitive and treats the
// fully-qualified form "example.com." as "example.com".
func normalizeHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// Resolver looks up the addresses of a host. *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ContextDialer dials an address. *net.Dialer satisfies it.
type ContextDialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Option customises a Policy.
type Option func(*Policy)

// WithResolver replaces the system resolver, e.g. with a fake in tests.
func WithResolver(r Resolver) Option { return func(p *Policy) { p.resolver = r } }

// WithDialer replaces the default *net.Dialer. The policy passes it only IP
// literals it has checked. The default dialer's Control re-checks the socket
// address; a custom dialer gets no such second check.
func WithDialer(d ContextDialer) Option { return func(p *Policy) { p.dialer = d } }

// Policy checks and dials destinations. It is safe for concurrent use.
type Policy struct {
	rules    rules
	builtin  []builtinRule
	resolver Resolver
	dialer   ContextDialer
}

// New validates cfg and returns a Policy.
func New(cfg Config, opts ...Option) (*Policy, error) {
	r, err := compile(cfg)
	if err != nil {
		return nil, err
	}
	p := &Policy{rules: r, builtin: builtinDenyList()}
	for _, o := range opts {
		o(p)
	}
	if p.resolver == nil {
		p.resolver = &net.Resolver{}
	}
	if p.dialer == nil {
		p.dialer = &net.Dialer{ControlContext: p.control}
	}
	return p, nil
}

// Resolve splits hostport, resolves the host (IP literals skip DNS) and
// returns its addresses if, and only if, every one of them is allowed.
//
// Refusals are *RefusedError (errors.Is(err, ErrRefused)). Lookup failures
// wrap the resolver's error, normally a *net.DNSError. A malformed hostport
// yields a wrapped *net.AddrError.
func (p *Policy) Resolve(ctx context.Context, hostport string) ([]netip.AddrPort, error) {
	return p.resolve(ctx, "ip", hostport)
}

// resolve is Resolve restricted to one address family: network is "ip",
// "ip4" or "ip6".
func (p *Policy) resolve(ctx context.Context, network, hostport string) ([]netip.AddrPort, error) {
	rawHost, rawPort, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	host := normalizeHost(rawHost)
	port, err := strconv.ParseUint(rawPort, 10, 16)
	if err != nil || port == 0 {
		// Service names ("http") are rejected rather than looked up so the
		// port rules always see the number that will be dialled.
		return nil, fmt.Errorf("egress: %w", &net.AddrError{Err: "invalid port", Addr: hostport})
	}
	if host == "" {
		// The dialer treats an empty host as the local system.
		return nil, &RefusedError{Host: host, Reason: "empty host"}
	}
	if reason := p.checkPort(uint16(port)); reason != "" {
		return nil, &RefusedError{Host: host, Reason: reason}
	}

	var addrs []netip.Addr
	hostAllowed := false
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		for _, h := range p.rules.denyHosts {
			if h.match(host) {
				return nil, &RefusedError{Host: host, Reason: "host denied by configuration"}
			}
		}
		for _, h := range p.rules.allowHosts {
			if h.match(host) {
				hostAllowed = true
				break
			}
		}
		addrs, err = p.resolver.LookupNetIP(ctx, network, host)
		if err != nil {
			return nil, fmt.Errorf("egress: resolve %q: %w", host, err)
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("egress: resolve %q: %w",
				host, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true})
		}
	}

	// Check every address before returning any: a mixed answer such as
	// {public, 169.254.169.254} is refused as a whole, since which one a
	// client ends up on is not something the policy should leave to chance.
	out := make([]netip.AddrPort, 0, len(addrs))
	for _, a := range addrs {
		checked, reason := p.checkAddr(a, hostAllowed)
		if reason != "" {
			return nil, &RefusedError{Host: host, Addr: a, Reason: reason}
		}
		if !familyMatches(network, checked) {
			continue
		}
		ap := netip.AddrPortFrom(checked, uint16(port))
		if !slices.Contains(out, ap) {
			out = append(out, ap)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("egress: %w", &net.AddrError{Err: "no suitable address for " + network, Addr: host})
	}
	return out, nil
}

func familyMatches(network string, a netip.Addr) bool {
	switch network {
	case "ip4":
		return a.Is4()
	case "ip6":
		return a.Is6()
	default:
		return true
	}
}

func (p *Policy) checkPort(port uint16) string {
	if p.rules.denyPorts[port] {
		return fmt.Sprintf("port %d denied by configuration", port)
	}
	if len(p.rules.allowPorts) > 0 && !p.rules.allowPorts[port] {
		return fmt.Sprintf("port %d not in allowed ports", port)
	}
	return ""
}

// checkAddr returns the address to dial (IPv4-mapped forms unmapped) and an
// empty reason, or a non-empty reason for refusing it.
func (p *Policy) checkAddr(a netip.Addr, hostAllowed bool) (netip.Addr, string) {
	if !a.IsValid() {
		return a, "invalid address"
	}
	if a.Zone() != "" {
		// Zoned addresses are link-local by nature; refusing them outright
		// avoids reasoning about interface scopes.
		return a, "ipv6 zone not allowed"
	}
	// An IPv4-mapped address is judged, and dialled, as the IPv4 address it
	// carries.
	a = a.Unmap()
	// Also judge the IPv4 address embedded in NAT64 / 6to4 forms, which a
	// translator on the path would turn back into that IPv4 destination. It
	// comes first so that a refusal names it ("loopback address (embedded in
	// 2002:7f00:1::)") rather than the wrapper's own row.
	cands := []netip.Addr{a}
	if e, ok := embeddedIPv4(a); ok {
		cands = []netip.Addr{e, a}
	}
	for _, c := range cands {
		if containsAny(p.rules.denyCIDRs, c) {
			return a, "address denied by configuration"
		}
	}
	if hostAllowed {
		return a, ""
	}
	for _, c := range cands {
		if containsAny(p.rules.allowCIDRs, c) {
			return a, ""
		}
	}
	for _, c := range cands {
		if reason := p.builtinReason(c); reason != "" {
			if c != a {
				return a, reason + " (embedded in " + a.String() + ")"
			}
			return a, reason
		}
	}
	return a, ""
}

func containsAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
