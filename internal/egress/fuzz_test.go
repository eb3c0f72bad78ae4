package egress

import (
	"context"
	"hash/fnv"
	"net"
	"net/netip"
	"testing"
)

// hashResolver derives a deterministic, varied answer from the host name so
// the fuzzer explores names resolving to public, private and mixed sets.
type hashResolver struct{}

func (hashResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	h := fnv.New64a()
	_, _ = h.Write([]byte(host))
	s := h.Sum64()
	pool := []netip.Addr{
		netip.MustParseAddr("93.184.216.34"),
		netip.MustParseAddr("127.0.0.1"),
		netip.MustParseAddr("169.254.169.254"),
		netip.MustParseAddr("::ffff:10.0.0.1"),
		netip.MustParseAddr("2606:2800:220:1::1"),
		netip.MustParseAddr("fd00::1"),
		netip.MustParseAddr("64:ff9b::a9fe:a9fe"),
		netip.AddrFrom4([4]byte{byte(s >> 8), byte(s >> 16), byte(s >> 24), byte(s >> 32)}),
	}
	n := int(s % 4)
	if n == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	out := make([]netip.Addr, 0, n)
	for i := range n {
		out = append(out, pool[(s>>(8*i))%uint64(len(pool))])
	}
	return out, nil
}

func FuzzPolicyResolve(f *testing.F) {
	for _, s := range []string{
		"example.com", "127.0.0.1", "::1", "[::1]", "169.254.169.254", "::ffff:127.0.0.1",
		"fe80::1%eth0", "", ".", "*.example.com", "EXAMPLE.COM.", "0x7f.1", "2130706433",
		"64:ff9b::7f00:1", "2002:a9fe:a9fe::", "a..b", "\x00", "[", "]:80", "host:80",
	} {
		f.Add(s)
	}
	p, err := New(Config{
		AllowHosts: []string{"*.allowed.example"},
		DenyHosts:  []string{"denied.example"},
		DenyPorts:  []int{25},
	}, WithResolver(hashResolver{}), WithDialer(&recordingDialer{}))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, host string) {
		for _, hp := range []string{net.JoinHostPort(host, "443"), host} {
			got, err := p.Resolve(context.Background(), hp)
			if err != nil {
				if got != nil {
					t.Fatalf("Resolve(%q) returned addresses with error %v", hp, err)
				}
				continue
			}
			if len(got) == 0 {
				t.Fatalf("Resolve(%q) returned no addresses and no error", hp)
			}
			h, _, _ := net.SplitHostPort(hp)
			allowedName := (&hostPattern{name: ".allowed.example", wildcard: true}).match(normalizeHost(h))
			for _, ap := range got {
				a := ap.Addr()
				if a.Is4In6() {
					t.Fatalf("Resolve(%q) returned mapped address %v", hp, a)
				}
				if allowedName {
					continue
				}
				// Independent of the policy's own table: the standard
				// library's classification must agree nothing internal got
				// through.
				if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() ||
					a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" {
					t.Fatalf("Resolve(%q) allowed %v", hp, a)
				}
				if e, ok := embeddedIPv4(a); ok && (e.IsLoopback() || e.IsPrivate() || e.IsLinkLocalUnicast()) {
					t.Fatalf("Resolve(%q) allowed %v embedding %v", hp, a, e)
				}
			}
		}
	})
}
