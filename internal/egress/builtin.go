package egress

import "net/netip"

type builtinRule struct {
	prefix netip.Prefix
	reason string
}

// builtinDenyList returns the ranges refused unless the configuration opens
// them. It is built per Policy rather than held in a package variable so no
// caller can mutate a shared table.
//
// The list is deliberately wider than "private": anything that is not a
// public unicast destination has no business being reached through a tunnel
// server, and some of these ranges (0.0.0.0/8, ::) reach the local host on
// Linux.
func builtinDenyList() []builtinRule {
	list := []struct{ cidr, reason string }{
		// IPv4
		{"0.0.0.0/8", "unspecified/this-network address"},
		{"10.0.0.0/8", "private address"},
		{"100.64.0.0/10", "carrier-grade nat address"},
		{"127.0.0.0/8", "loopback address"},
		// Includes 169.254.169.254 (EC2 IMDS), 169.254.170.2 (ECS task
		// credentials) and 169.254.169.253 (VPC DNS).
		{"169.254.0.0/16", "link-local address"},
		{"172.16.0.0/12", "private address"},
		{"192.0.0.0/24", "ietf protocol assignment"},
		{"192.0.2.0/24", "documentation address"},
		{"192.168.0.0/16", "private address"},
		{"198.18.0.0/15", "benchmarking address"},
		{"198.51.100.0/24", "documentation address"},
		{"203.0.113.0/24", "documentation address"},
		{"224.0.0.0/4", "multicast address"},
		// Includes 255.255.255.255 broadcast.
		{"240.0.0.0/4", "reserved or broadcast address"},
		// IPv6
		{"::/128", "unspecified address"},
		{"::1/128", "loopback address"},
		// Deprecated IPv4-compatible form; never routed publicly.
		{"::/96", "ipv4-compatible address"},
		// Local-use NAT64 prefix (RFC 8215); the well-known 64:ff9b::/96 is
		// judged by its embedded IPv4 address instead.
		{"64:ff9b:1::/48", "local-use nat64 address"},
		{"100::/64", "discard-only address"},
		{"2001:db8::/32", "documentation address"},
		{"fc00::/7", "unique-local address"},
		{"fe80::/10", "link-local address"},
		{"fec0::/10", "site-local address"},
		{"ff00::/8", "multicast address"},
	}
	out := make([]builtinRule, len(list))
	for i, e := range list {
		out[i] = builtinRule{prefix: netip.MustParsePrefix(e.cidr), reason: e.reason}
	}
	return out
}

// embeddedIPv4 extracts the IPv4 address carried inside a NAT64
// (64:ff9b::a.b.c.d, RFC 6052) or 6to4 (2002:aabb:ccdd::/48, RFC 3056)
// address.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() || a.Is4In6() {
		return netip.Addr{}, false
	}
	b := a.As16()
	nat64 := [12]byte{0x00, 0x64, 0xff, 0x9b}
	switch {
	case [12]byte(b[:12]) == nat64:
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case b[0] == 0x20 && b[1] == 0x02:
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}
