package egress

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
)

// builtinCases is the built-in table restated independently of builtin.go: one
// address inside every row and, where a neighbour says something, one just
// outside it. A reason of "" means allowed.
var builtinCases = []struct {
	cidr          string
	inside        string
	reason        string
	outside       string
	outsideReason string
}{
	// IPv4
	{"0.0.0.0/8", "0.1.2.3", "unspecified (this-network) address", "1.0.0.0", ""},
	{"0.0.0.0/32", "0.0.0.0", "unspecified address", "0.0.0.1", "unspecified (this-network) address"},
	{"10.0.0.0/8", "10.1.2.3", "private address", "11.0.0.0", ""},
	{"100.64.0.0/10", "100.127.255.255", "carrier-grade nat address", "100.128.0.0", ""},
	{"127.0.0.0/8", "127.255.255.254", "loopback address", "128.0.0.0", ""},
	{"169.254.0.0/16", "169.254.170.2", "link-local address", "169.255.0.1", ""},
	{"172.16.0.0/12", "172.31.255.255", "private address", "172.32.0.0", ""},
	{"192.0.0.0/24", "192.0.0.100", "ietf protocol assignment", "192.0.1.0", ""},
	{"192.0.0.0/29", "192.0.0.1", "ipv4 service continuity (ds-lite) address", "192.0.0.8", "ipv4 dummy address"},
	{"192.0.0.8/32", "192.0.0.8", "ipv4 dummy address", "192.0.0.9", ""},
	{"192.0.0.9/32", "192.0.0.9", "", "192.0.0.8", "ipv4 dummy address"},
	{"192.0.0.10/32", "192.0.0.10", "", "192.0.0.11", "ietf protocol assignment"},
	{"192.0.0.170/32", "192.0.0.170", "nat64/dns64 discovery address", "192.0.0.169", "ietf protocol assignment"},
	{"192.0.0.171/32", "192.0.0.171", "nat64/dns64 discovery address", "192.0.0.172", "ietf protocol assignment"},
	{"192.0.2.0/24", "192.0.2.1", "documentation address", "192.0.3.0", ""},
	{"192.31.196.0/24", "192.31.196.1", "", "", ""},
	{"192.52.193.0/24", "192.52.193.1", "", "", ""},
	{"192.88.99.0/24", "192.88.99.1", "deprecated 6to4 relay anycast address", "192.88.100.0", ""},
	{"192.88.99.2/32", "192.88.99.2", "6a44 relay anycast address", "192.88.99.3", "deprecated 6to4 relay anycast address"},
	{"192.168.0.0/16", "192.168.255.255", "private address", "192.169.0.0", ""},
	{"192.175.48.0/24", "192.175.48.6", "", "", ""},
	{"198.18.0.0/15", "198.19.255.255", "benchmarking address", "198.20.0.0", ""},
	{"198.51.100.0/24", "198.51.100.7", "documentation address", "198.51.101.0", ""},
	{"203.0.113.0/24", "203.0.113.7", "documentation address", "203.0.114.0", ""},
	{"224.0.0.0/4", "239.255.255.250", "multicast address", "223.255.255.255", ""},
	{"240.0.0.0/4", "240.0.0.1", "reserved address", "", ""},
	{"255.255.255.255/32", "255.255.255.255", "limited broadcast address", "255.255.255.254", "reserved address"},
	// IPv6
	{"::/128", "::", "unspecified address", "::2", "ipv4-compatible address"},
	{"::1/128", "::1", "loopback address", "::2", "ipv4-compatible address"},
	{"::/96", "::127.0.0.1", "ipv4-compatible address", "", ""},
	// Policy.Resolve unmaps first; see TestMappedAddressesJudgedAsIPv4.
	{"::ffff:0:0/96", "::ffff:10.0.0.1", "ipv4-mapped address", "", ""},
	// The embedded address decides; see TestResolveBuiltinDenyList.
	{"64:ff9b::/96", "64:ff9b::5db8:d822", "", "", ""},
	{"64:ff9b:1::/48", "64:ff9b:1::a9fe:a9fe", "local-use nat64 address", "", ""},
	{"100::/64", "100::1", "discard-only address", "100:0:0:1::1", "dummy ipv6 prefix"},
	{"100:0:0:1::/64", "100:0:0:1::1", "dummy ipv6 prefix", "", ""},
	{"2001::/23", "2001:100::1", "ietf protocol assignment", "2001:200::1", ""},
	{"2001::/32", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "teredo address", "2001:1::", "ietf protocol assignment"},
	{"2001:1::1/128", "2001:1::1", "", "2001:1::4", "ietf protocol assignment"},
	{"2001:1::2/128", "2001:1::2", "", "2001:1::", "ietf protocol assignment"},
	{"2001:1::3/128", "2001:1::3", "", "2001:1::4", "ietf protocol assignment"},
	{"2001:2::/48", "2001:2::1", "benchmarking address", "2001:2:1::", "ietf protocol assignment"},
	{"2001:3::/32", "2001:3::1", "", "2001:4::", "ietf protocol assignment"},
	{"2001:4:112::/48", "2001:4:112::1", "", "2001:4:113::", "ietf protocol assignment"},
	{"2001:10::/28", "2001:10::1", "deprecated orchid address", "2001:f:ffff::", "ietf protocol assignment"},
	{"2001:20::/28", "2001:20::1", "", "2001:40::", "ietf protocol assignment"},
	{"2001:30::/28", "2001:3f::1", "", "2001:40::", "ietf protocol assignment"},
	{"2001:db8::/32", "2001:db8::1", "documentation address", "2001:db9::", ""},
	{"2002::/16", "2002:5db8:d822::1", "6to4 address", "2003::1", ""},
	{"2620:4f:8000::/48", "2620:4f:8000::1", "", "", ""},
	{"3fff::/20", "3fff:fff::1", "documentation address", "3fff:1000::", ""},
	{"5f00::/16", "5f00:1:2::3", "srv6 segment identifier", "5f01::", ""},
	{"fc00::/7", "fd00:ec2::254", "unique-local address", "", ""},
	{"fe80::/10", "fe80::1", "link-local address", "fec0::1", "site-local address"},
	{"fec0::/10", "fec0::1", "site-local address", "ff00::1", "multicast address"},
	{"ff00::/8", "ff02::1", "multicast address", "", ""},
}

func TestBuiltinTableMatchesCases(t *testing.T) {
	table := builtinDenyList()
	seen := make(map[netip.Prefix]bool)
	for _, r := range table {
		if seen[r.prefix] {
			t.Errorf("%s listed twice", r.prefix)
		}
		seen[r.prefix] = true
		if r.rfc == "" || r.reason == "" {
			t.Errorf("%s has no RFC or reason", r.prefix)
		}
		if r.prefix != r.prefix.Masked() {
			t.Errorf("%s has host bits set", r.prefix)
		}
	}
	cases := make(map[netip.Prefix]bool)
	for _, c := range builtinCases {
		cases[netip.MustParsePrefix(c.cidr)] = true
	}
	for p := range seen {
		if !cases[p] {
			t.Errorf("%s is in the table but has no test case", p)
		}
	}
	for p := range cases {
		if !seen[p] {
			t.Errorf("%s has a test case but is not in the table", p)
		}
	}
}

func TestBuiltinTable(t *testing.T) {
	p := mustNew(t, DefaultConfig(), WithResolver(&fakeResolver{}), WithDialer(&recordingDialer{}))
	check := func(t *testing.T, addr, want string) {
		t.Helper()
		a := netip.MustParseAddr(addr)
		if got := p.builtinReason(a); got != want {
			t.Errorf("builtinReason(%s) = %q, want %q", a, got, want)
		}
		if a.Is4In6() {
			return // Resolve judges the IPv4 address: TestMappedAddressesJudgedAsIPv4
		}
		if _, ok := embeddedIPv4(a); ok && want == "" {
			return // Resolve also judges the embedded address
		}
		got, err := p.Resolve(context.Background(), net.JoinHostPort(addr, "443"))
		if want == "" {
			if err != nil || len(got) != 1 {
				t.Errorf("Resolve(%s) = %v, %v; want allowed", a, got, err)
			}
			return
		}
		var re *RefusedError
		if !errors.As(err, &re) || re.Reason != want || re.Addr != a {
			t.Errorf("Resolve(%s) err = %v; want refusal of %s as %q", a, err, a, want)
		}
	}
	for _, c := range builtinCases {
		t.Run(c.cidr, func(t *testing.T) {
			prefix := netip.MustParsePrefix(c.cidr)
			if !prefix.Contains(netip.MustParseAddr(c.inside)) {
				t.Fatalf("test case broken: %s not in %s", c.inside, c.cidr)
			}
			check(t, c.inside, c.reason)
			if c.outside == "" {
				return
			}
			if prefix.Contains(netip.MustParseAddr(c.outside)) {
				t.Fatalf("test case broken: %s in %s", c.outside, c.cidr)
			}
			check(t, c.outside, c.outsideReason)
		})
	}
}

// TestMappedAddressesJudgedAsIPv4: an IPv4-mapped address is refused whether
// it is judged as the IPv4 address it carries (what Resolve does: the dial goes
// to that address) or, should it reach the table unmapped, by the mapped row.
func TestMappedAddressesJudgedAsIPv4(t *testing.T) {
	p := mustNew(t, DefaultConfig(), WithResolver(&fakeResolver{answers: map[string][]netip.Addr{
		"mapped.example": addrs("::ffff:127.0.0.1"),
	}}))
	for _, tt := range []struct{ addr, reason string }{
		{"::ffff:127.0.0.1", "loopback address"},
		{"::ffff:10.0.0.1", "private address"},
		{"::ffff:169.254.169.254", "link-local address"},
		{"::ffff:192.88.99.1", "deprecated 6to4 relay anycast address"},
		{"::ffff:0.0.0.0", "unspecified address"},
		{"::ffff:93.184.216.34", ""},
	} {
		a := netip.MustParseAddr(tt.addr)
		if got := p.builtinReason(a); got != "ipv4-mapped address" {
			t.Errorf("builtinReason(%s) = %q, want the mapped row", a, got)
		}
		got, err := p.Resolve(context.Background(), net.JoinHostPort(tt.addr, "443"))
		if tt.reason == "" {
			if err != nil || got[0].Addr() != a.Unmap() {
				t.Errorf("Resolve(%s) = %v, %v; want %s allowed", a, got, err, a.Unmap())
			}
			continue
		}
		var re *RefusedError
		if !errors.As(err, &re) || re.Reason != tt.reason {
			t.Errorf("Resolve(%s) err = %v, want %q", a, err, tt.reason)
		}
	}
	var re *RefusedError
	if _, err := p.Resolve(context.Background(), "mapped.example:443"); !errors.As(err, &re) || re.Reason != "loopback address" {
		t.Errorf("name resolving to a mapped loopback address: err = %v", err)
	}
}

// TestAllowCIDRsOpenBuiltinRanges: the operator's allow list opens any refused
// row, the newer ones included, and the deny list closes a globally reachable
// one.
func TestAllowCIDRsOpenBuiltinRanges(t *testing.T) {
	tests := []struct {
		cfg     Config
		addr    string
		allowed bool
	}{
		{Config{}, "2001::1", false},
		{Config{AllowCIDRs: []string{"2001::/32"}}, "2001::1", true},
		{Config{AllowCIDRs: []string{"2001::/32"}}, "2001:2::1", false},
		{Config{AllowCIDRs: []string{"3fff::/20"}}, "3fff::1", true},
		{Config{AllowCIDRs: []string{"5f00::/16"}}, "5f00::1", true},
		{Config{AllowCIDRs: []string{"2002::/16"}}, "2002:5db8:d822::1", true},
		{Config{AllowCIDRs: []string{"192.88.99.0/24"}}, "192.88.99.2", true},
		{Config{AllowCIDRs: []string{"100.64.0.0/10"}}, "100.64.0.1", true},
		{Config{AllowCIDRs: []string{"::ffff:192.0.0.0/120"}}, "192.0.0.170", true},
		{Config{DenyCIDRs: []string{"192.0.0.9"}}, "192.0.0.9", false},
		{Config{DenyCIDRs: []string{"2001:1::1"}}, "2001:1::1", false},
		// An embedded private address stays refused when only its wrapper is
		// opened, and a denied one is refused even inside an opened wrapper.
		{Config{AllowCIDRs: []string{"2002::/16"}, DenyCIDRs: []string{"10.0.0.0/8"}}, "2002:a00:1::", false},
		{Config{DenyCIDRs: []string{"93.184.216.0/24"}}, "64:ff9b::5db8:d822", false},
	}
	for _, tt := range tests {
		p := mustNew(t, tt.cfg, WithResolver(&fakeResolver{}))
		_, err := p.Resolve(context.Background(), net.JoinHostPort(tt.addr, "443"))
		if tt.allowed != (err == nil) {
			t.Errorf("%+v: Resolve(%s) = %v, want allowed=%v", tt.cfg, tt.addr, err, tt.allowed)
		}
	}
}
