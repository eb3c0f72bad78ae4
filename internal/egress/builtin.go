package egress

import (
	"cmp"
	"net/netip"
	"slices"
)

// builtinRule is one row of the built-in table: a range, the document that
// defines it, and either the reason it is refused or, when global is set, the
// registry's word that it is globally reachable. Global rows exist to carve a
// public block out of a wider refused one (192.0.0.9/32 out of 192.0.0.0/24,
// 2001:1::1/128 out of 2001::/23); the others are there to say so.
type builtinRule struct {
	prefix netip.Prefix
	rfc    string
	reason string
	global bool
}

// builtinDenyList returns the built-in table, most specific range first, so the
// first row containing an address is the one that judges it. It is built per
// Policy rather than held in a package variable so no caller can mutate a
// shared table.
//
// The table is the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC
// 6890 and the RFCs that added rows since; both registries as of 2025), plus
// multicast and a few deprecated forms that are not in them. Every registry row
// whose "Globally Reachable" column is not True is refused, N/A included; the
// True rows are listed with global set and stay allowed. The list is
// deliberately wider than "private": anything that is not a public unicast
// destination has no business being reached through a tunnel server, and some
// of these ranges (0.0.0.0/8, ::) reach the local host on Linux.
//
// Addresses outside every row (the public Internet, and IPv6 space the IETF
// has not allocated, which nothing routes) are allowed.
func builtinDenyList() []builtinRule {
	list := []struct {
		cidr, rfc, reason string
		global            bool
	}{
		// IPv4 (iana-ipv4-special-registry).
		{cidr: "0.0.0.0/8", rfc: "RFC 791 §3.2", reason: "unspecified (this-network) address"},
		// connect(2) to 0.0.0.0 reaches the local host on Linux.
		{cidr: "0.0.0.0/32", rfc: "RFC 1122 §3.2.1.3", reason: "unspecified address"},
		{cidr: "10.0.0.0/8", rfc: "RFC 1918", reason: "private address"},
		// The VPC's own address space may be here, as may an ISP's NAT.
		{cidr: "100.64.0.0/10", rfc: "RFC 6598", reason: "carrier-grade nat address"},
		{cidr: "127.0.0.0/8", rfc: "RFC 1122 §3.2.1.3", reason: "loopback address"},
		// Includes 169.254.169.254 (EC2 IMDS), 169.254.170.2 (ECS task
		// credentials) and 169.254.169.253 (VPC DNS).
		{cidr: "169.254.0.0/16", rfc: "RFC 3927", reason: "link-local address"},
		{cidr: "172.16.0.0/12", rfc: "RFC 1918", reason: "private address"},
		// Not usable except through a more specific row below.
		{cidr: "192.0.0.0/24", rfc: "RFC 6890 §2.1", reason: "ietf protocol assignment"},
		// DS-Lite B4/AFTR addresses: the inside of a tunnel.
		{cidr: "192.0.0.0/29", rfc: "RFC 7335", reason: "ipv4 service continuity (ds-lite) address"},
		{cidr: "192.0.0.8/32", rfc: "RFC 7600", reason: "ipv4 dummy address"},
		// Globally reachable anycast: allowed.
		{cidr: "192.0.0.9/32", rfc: "RFC 7723", reason: "port control protocol anycast", global: true},
		{cidr: "192.0.0.10/32", rfc: "RFC 8155", reason: "turn anycast", global: true},
		// Names the local NAT64 prefix; only meaningful on the local network.
		{cidr: "192.0.0.170/32", rfc: "RFC 8880, RFC 7050", reason: "nat64/dns64 discovery address"},
		{cidr: "192.0.0.171/32", rfc: "RFC 8880, RFC 7050", reason: "nat64/dns64 discovery address"},
		{cidr: "192.0.2.0/24", rfc: "RFC 5737", reason: "documentation address"},
		// Globally reachable services: allowed.
		{cidr: "192.31.196.0/24", rfc: "RFC 7535", reason: "as112-v4", global: true},
		{cidr: "192.52.193.0/24", rfc: "RFC 7450", reason: "automatic multicast tunneling", global: true},
		// Terminated 2015: whatever still answers there is an unmanaged relay.
		{cidr: "192.88.99.0/24", rfc: "RFC 7526", reason: "deprecated 6to4 relay anycast address"},
		{cidr: "192.88.99.2/32", rfc: "RFC 6751", reason: "6a44 relay anycast address"},
		{cidr: "192.168.0.0/16", rfc: "RFC 1918", reason: "private address"},
		{cidr: "192.175.48.0/24", rfc: "RFC 7534", reason: "as112 direct delegation", global: true},
		{cidr: "198.18.0.0/15", rfc: "RFC 2544", reason: "benchmarking address"},
		{cidr: "198.51.100.0/24", rfc: "RFC 5737", reason: "documentation address"},
		{cidr: "203.0.113.0/24", rfc: "RFC 5737", reason: "documentation address"},
		// Not in the special-purpose registry (it has its own); never a
		// unicast destination.
		{cidr: "224.0.0.0/4", rfc: "RFC 5771", reason: "multicast address"},
		{cidr: "240.0.0.0/4", rfc: "RFC 1112 §4", reason: "reserved address"},
		{cidr: "255.255.255.255/32", rfc: "RFC 919 §7, RFC 8190", reason: "limited broadcast address"},

		// IPv6 (iana-ipv6-special-registry).
		{cidr: "::/128", rfc: "RFC 4291 §2.5.2", reason: "unspecified address"},
		{cidr: "::1/128", rfc: "RFC 4291 §2.5.3", reason: "loopback address"},
		// Deprecated IPv4-compatible form (not in the registry); never routed
		// publicly.
		{cidr: "::/96", rfc: "RFC 4291 §2.5.5.1", reason: "ipv4-compatible address"},
		// checkAddr unmaps addresses before any rule is consulted, so a mapped
		// address is judged (and dialled) as the IPv4 address it carries: a
		// mapped public address is allowed, a mapped private one refused as
		// private. The row refuses the form itself should it ever reach the
		// table without being unmapped.
		{cidr: "::ffff:0:0/96", rfc: "RFC 4291 §2.5.5.2", reason: "ipv4-mapped address"},
		// Well-known NAT64 prefix, globally reachable: judged by the IPv4
		// address it embeds (embeddedIPv4), which a translator turns back into
		// that destination.
		{cidr: "64:ff9b::/96", rfc: "RFC 6052", reason: "well-known nat64 prefix", global: true},
		// Local-use NAT64: the embedded address's position is the operator's
		// choice, so it cannot be judged; refused whole.
		{cidr: "64:ff9b:1::/48", rfc: "RFC 8215", reason: "local-use nat64 address"},
		{cidr: "100::/64", rfc: "RFC 6666", reason: "discard-only address"},
		{cidr: "100:0:0:1::/64", rfc: "RFC 9780", reason: "dummy ipv6 prefix"},
		// Not usable except through a more specific row below.
		{cidr: "2001::/23", rfc: "RFC 2928", reason: "ietf protocol assignment"},
		// Teredo tunnels IPv6 over IPv4 UDP through third-party relays to an
		// (obfuscated) embedded IPv4 address; registry: N/A. Refused whole.
		{cidr: "2001::/32", rfc: "RFC 4380, RFC 8190", reason: "teredo address"},
		// Globally reachable anycast: allowed.
		{cidr: "2001:1::1/128", rfc: "RFC 7723", reason: "port control protocol anycast", global: true},
		{cidr: "2001:1::2/128", rfc: "RFC 8155", reason: "turn anycast", global: true},
		{cidr: "2001:1::3/128", rfc: "RFC 9665", reason: "dns-sd service registration protocol anycast", global: true},
		{cidr: "2001:2::/48", rfc: "RFC 5180", reason: "benchmarking address"},
		// Globally reachable: allowed.
		{cidr: "2001:3::/32", rfc: "RFC 7450", reason: "automatic multicast tunneling", global: true},
		{cidr: "2001:4:112::/48", rfc: "RFC 7535", reason: "as112-v6", global: true},
		{cidr: "2001:10::/28", rfc: "RFC 4843", reason: "deprecated orchid address"},
		{cidr: "2001:20::/28", rfc: "RFC 7343", reason: "orchidv2", global: true},
		{cidr: "2001:30::/28", rfc: "RFC 9374", reason: "drone remote id entity tag", global: true},
		{cidr: "2001:db8::/32", rfc: "RFC 3849", reason: "documentation address"},
		// 6to4 (registry: N/A) is refused whole rather than judged by its
		// embedded IPv4 address: the packets go to whichever unmanaged relay
		// is nearest (RFC 7526 deprecated the anycast relays), almost nothing
		// is served from 6to4 addresses any more, and the embedded address is
		// still checked first so the refusal of 2002:7f00:1:: names loopback.
		{cidr: "2002::/16", rfc: "RFC 3056, RFC 7526", reason: "6to4 address"},
		{cidr: "2620:4f:8000::/48", rfc: "RFC 7534", reason: "as112 direct delegation", global: true},
		{cidr: "3fff::/20", rfc: "RFC 9637", reason: "documentation address"},
		// Segment identifiers are instructions to an SRv6 domain's routers,
		// not hosts.
		{cidr: "5f00::/16", rfc: "RFC 9602", reason: "srv6 segment identifier"},
		{cidr: "fc00::/7", rfc: "RFC 4193, RFC 8190", reason: "unique-local address"},
		{cidr: "fe80::/10", rfc: "RFC 4291 §2.5.6", reason: "link-local address"},
		// Deprecated (not in the registry), but still link-scoped where used.
		{cidr: "fec0::/10", rfc: "RFC 3879", reason: "site-local address"},
		// Not in the special-purpose registry; never a unicast destination.
		{cidr: "ff00::/8", rfc: "RFC 4291 §2.7", reason: "multicast address"},
	}
	out := make([]builtinRule, len(list))
	for i, e := range list {
		out[i] = builtinRule{prefix: netip.MustParsePrefix(e.cidr), rfc: e.rfc, reason: e.reason, global: e.global}
	}
	// Longest prefix first; the sort is stable so equal lengths keep the
	// table's order (they never overlap).
	slices.SortStableFunc(out, func(a, b builtinRule) int { return cmp.Compare(b.prefix.Bits(), a.prefix.Bits()) })
	return out
}

// builtinReason judges a by the most specific built-in row containing it: the
// row's reason if it is refused, "" if it is globally reachable or in no row.
func (p *Policy) builtinReason(a netip.Addr) string {
	for _, b := range p.builtin {
		if b.prefix.Contains(a) {
			if b.global {
				return ""
			}
			return b.reason
		}
	}
	return ""
}

// embeddedIPv4 extracts the IPv4 address carried inside a NAT64
// (64:ff9b::a.b.c.d, RFC 6052) or 6to4 (2002:aabb:ccdd::/48, RFC 3056)
// address. 6to4 is refused whole anyway; its embedded address is still
// extracted so that the refusal names a private one and DenyCIDRs apply to it.
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
