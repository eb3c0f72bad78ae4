package egress

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeResolver answers from a fixed table and records every lookup.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][]netip.Addr
	err     error
	calls   []string
}

func (f *fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, network+" "+host)
	if f.err != nil {
		return nil, f.err
	}
	var out []netip.Addr
	for _, a := range f.answers[host] {
		if network == "ip4" && !a.Unmap().Is4() || network == "ip6" && a.Unmap().Is4() {
			continue
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}

// recordingDialer never touches the network: it records each address and
// either fails it (if listed in fail) or returns one end of a pipe.
type recordingDialer struct {
	mu    sync.Mutex
	calls []string
	fail  map[string]bool
}

func (d *recordingDialer) DialContext(_ context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, addr)
	if d.fail[addr] {
		return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused")}
	}
	c1, c2 := net.Pipe()
	go func() { _, _ = io.Copy(io.Discard, c2); c2.Close() }()
	return c1, nil
}

func (d *recordingDialer) Calls() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.calls...)
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func mustNew(t *testing.T, cfg Config, opts ...Option) *Policy {
	t.Helper()
	p, err := New(cfg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func TestResolveBuiltinDenyList(t *testing.T) {
	tests := []struct {
		hostport string
		reason   string // empty: allowed
	}{
		{"127.0.0.1:80", "loopback"},
		{"127.255.1.2:80", "loopback"},
		{"[::1]:80", "loopback"},
		{"169.254.169.254:80", "link-local"},
		{"169.254.170.2:80", "link-local"},
		{"169.254.169.253:53", "link-local"},
		{"[fe80::1]:80", "link-local"},
		{"[fe80::1%25eth0]:80", "zone"},
		{"10.1.2.3:443", "private"},
		{"172.16.0.1:443", "private"},
		{"172.31.255.255:443", "private"},
		{"192.168.1.1:443", "private"},
		{"[fd00::1]:443", "unique-local"},
		{"[fd00:ec2::254]:80", "unique-local"},
		{"[::ffff:127.0.0.1]:80", "loopback"},
		{"[::ffff:169.254.169.254]:80", "link-local"},
		{"[::ffff:10.0.0.1]:80", "private"},
		{"0.0.0.0:80", "unspecified"},
		{"0.1.2.3:80", "unspecified"},
		{"[::]:80", "unspecified"},
		{"100.64.0.1:80", "carrier-grade"},
		{"224.0.0.1:80", "multicast"},
		{"[ff02::1]:80", "multicast"},
		{"255.255.255.255:80", "broadcast"},
		{"[64:ff9b::a9fe:a9fe]:80", "embedded"}, // NAT64 of 169.254.169.254
		{"[2002:7f00:1::]:80", "embedded"},      // 6to4 of 127.0.0.1
		{"[2002:5db8:d822::]:443", "6to4"},      // 6to4 of a public address: refused whole
		{"[2001:0:4136:e378::1]:443", "teredo"}, // Teredo
		{"[::127.0.0.1]:80", "ipv4-compatible"}, // deprecated form
		{"127.0.0.1.:80", "loopback"},           // trailing dot
		{":80", "empty host"},                   // dialer would pick localhost
		{"93.184.216.34:443", ""},               // public
		{"[2606:2800:220:1:248:1893:25c8:1946]:443", ""},
		{"[64:ff9b::5db8:d822]:443", ""}, // NAT64 of a public address
		{"172.32.0.1:443", ""},           // just outside 172.16/12
		{"100.128.0.1:443", ""},          // just outside 100.64/10
	}
	rec := &recordingDialer{}
	p := mustNew(t, DefaultConfig(), WithResolver(&fakeResolver{}), WithDialer(rec))
	for _, tt := range tests {
		t.Run(tt.hostport, func(t *testing.T) {
			got, err := p.Resolve(context.Background(), tt.hostport)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Resolve(%q) = %v, want allowed", tt.hostport, err)
				}
				if len(got) != 1 {
					t.Fatalf("Resolve(%q) = %v, want one address", tt.hostport, got)
				}
				return
			}
			var re *RefusedError
			if !errors.As(err, &re) || !errors.Is(err, ErrRefused) {
				t.Fatalf("Resolve(%q) err = %v, want *RefusedError", tt.hostport, err)
			}
			if !strings.Contains(re.Reason, tt.reason) {
				t.Errorf("reason = %q, want it to mention %q", re.Reason, tt.reason)
			}
			if got != nil {
				t.Errorf("refused Resolve returned addresses %v", got)
			}
		})
	}
	if c := rec.Calls(); len(c) != 0 {
		t.Fatalf("Resolve dialled %v", c)
	}
}

func TestResolveUnmapsAndReportsAddr(t *testing.T) {
	p := mustNew(t, DefaultConfig(), WithResolver(&fakeResolver{}))
	got, err := p.Resolve(context.Background(), "[::ffff:93.184.216.34]:443")
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddrPort("93.184.216.34:443"); got[0] != want {
		t.Errorf("got %v, want %v", got[0], want)
	}
	_, err = p.Resolve(context.Background(), "169.254.169.254:80")
	var re *RefusedError
	if !errors.As(err, &re) || re.Addr != netip.MustParseAddr("169.254.169.254") || re.Host != "169.254.169.254" {
		t.Errorf("got %#v", err)
	}
}

func TestNamesAreCheckedAfterResolution(t *testing.T) {
	res := &fakeResolver{answers: map[string][]netip.Addr{
		"metadata.evil.example": addrs("169.254.169.254"),
		"rebind.evil.example":   addrs("93.184.216.34", "10.0.0.5"),
		"mapped.evil.example":   addrs("::ffff:127.0.0.1"),
		"v6only.evil.example":   addrs("2606:2800:220:1::1", "fd00::1"),
		"good.example":          addrs("93.184.216.34", "2606:2800:220:1::1"),
		"internal.corp.example": addrs("10.20.0.7"),
	}}
	tests := []struct {
		name     string
		cfg      Config
		hostport string
		refused  bool
	}{
		{"private answer", Config{}, "metadata.evil.example:80", true},
		{"mixed answer refused whole", Config{}, "rebind.evil.example:80", true},
		{"mapped loopback answer", Config{}, "mapped.evil.example:80", true},
		{"ula among v6 answers", Config{}, "v6only.evil.example:443", true},
		{"case and trailing dot", Config{}, "METADATA.Evil.Example.:80", true},
		{"public answers", Config{}, "good.example:443", false},
		{"private by default", Config{}, "internal.corp.example:443", true},
		{"allow cidr opens", Config{AllowCIDRs: []string{"10.20.0.0/16"}}, "internal.corp.example:443", false},
		{"allow cidr elsewhere", Config{AllowCIDRs: []string{"10.99.0.0/16"}}, "internal.corp.example:443", true},
		{"allow exact host opens", Config{AllowHosts: []string{"internal.corp.example"}}, "internal.corp.example:443", false},
		{"allow wildcard opens", Config{AllowHosts: []string{"*.CORP.example."}}, "Internal.corp.example:443", false},
		{"wildcard excludes apex", Config{AllowHosts: []string{"*.internal.corp.example"}}, "internal.corp.example:443", true},
		{"deny cidr beats allow host", Config{AllowHosts: []string{"*.corp.example"}, DenyCIDRs: []string{"10.20.0.7"}}, "internal.corp.example:443", true},
		{"deny host beats allow host", Config{AllowHosts: []string{"*.corp.example"}, DenyHosts: []string{"internal.corp.example"}}, "internal.corp.example:443", true},
		{"deny cidr closes public", Config{DenyCIDRs: []string{"93.184.216.0/24"}}, "good.example:443", true},
		{"deny host closes public", Config{DenyHosts: []string{"*.example"}}, "good.example:443", true},
		{"deny cidr beats allow cidr", Config{AllowCIDRs: []string{"10.0.0.0/8"}, DenyCIDRs: []string{"10.20.0.0/16"}}, "internal.corp.example:443", true},
		{"allow ports permits", Config{AllowPorts: []int{80, 443}}, "good.example:443", false},
		{"allow ports restricts", Config{AllowPorts: []int{80, 443}}, "good.example:22", true},
		{"deny ports", Config{DenyPorts: []int{25}}, "good.example:25", true},
		{"deny ports beats allow ports", Config{AllowPorts: []int{25}, DenyPorts: []int{25}}, "good.example:25", true},
		{"allow cidr literal", Config{AllowCIDRs: []string{"::ffff:127.0.0.0/104"}}, "127.0.0.1:8080", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recordingDialer{}
			p := mustNew(t, tt.cfg, WithResolver(res), WithDialer(rec))
			_, rerr := p.Resolve(context.Background(), tt.hostport)
			conn, derr := p.DialContext(context.Background(), "tcp", tt.hostport)
			if conn != nil {
				conn.Close()
			}
			if tt.refused {
				if !errors.Is(rerr, ErrRefused) || !errors.Is(derr, ErrRefused) {
					t.Fatalf("Resolve err = %v, DialContext err = %v; want ErrRefused", rerr, derr)
				}
				if c := rec.Calls(); len(c) != 0 {
					t.Fatalf("refused destination was dialled: %v", c)
				}
				return
			}
			if rerr != nil || derr != nil {
				t.Fatalf("Resolve err = %v, DialContext err = %v; want allowed", rerr, derr)
			}
			for _, c := range rec.Calls() {
				if _, err := netip.ParseAddrPort(c); err != nil {
					t.Errorf("dialer got %q, want an IP literal", c)
				}
			}
		})
	}
}

func TestPortRefusalHappensBeforeDNS(t *testing.T) {
	res := &fakeResolver{answers: map[string][]netip.Addr{"good.example": addrs("93.184.216.34")}}
	p := mustNew(t, Config{DenyPorts: []int{25}, DenyHosts: []string{"bad.example"}}, WithResolver(res))
	for _, hp := range []string{"good.example:25", "bad.example:443"} {
		_, err := p.Resolve(context.Background(), hp)
		var re *RefusedError
		if !errors.As(err, &re) || re.Addr.IsValid() {
			t.Errorf("Resolve(%q) = %v, want refusal without address", hp, err)
		}
	}
	if len(res.calls) != 0 {
		t.Errorf("resolver called: %v", res.calls)
	}
}

func TestResolveErrors(t *testing.T) {
	dnsErr := &net.DNSError{Err: "server misbehaving", Name: "x.example", IsTemporary: true}
	p := mustNew(t, DefaultConfig(), WithResolver(&fakeResolver{err: dnsErr}))
	_, err := p.Resolve(context.Background(), "x.example:443")
	var got *net.DNSError
	if !errors.As(err, &got) || !got.IsTemporary {
		t.Errorf("err = %v, want wrapped *net.DNSError", err)
	}
	if errors.Is(err, ErrRefused) {
		t.Errorf("DNS failure reported as refusal")
	}

	for _, hp := range []string{"no-port", "host:", "host:http", "host:0", "host:70000", "[::1"} {
		_, err := p.Resolve(context.Background(), hp)
		if err == nil || errors.Is(err, ErrRefused) {
			t.Errorf("Resolve(%q) = %v, want malformed-address error", hp, err)
		}
	}
}

func TestDialContextTriesAddressesInterleaved(t *testing.T) {
	res := &fakeResolver{answers: map[string][]netip.Addr{
		"multi.example": addrs("93.184.216.1", "93.184.216.2", "2606:2800::1", "2606:2800::2"),
	}}
	rec := &recordingDialer{fail: map[string]bool{
		"93.184.216.1:443":   true,
		"[2606:2800::1]:443": true,
	}}
	p := mustNew(t, DefaultConfig(), WithResolver(res), WithDialer(rec))
	c, err := p.DialContext(context.Background(), "tcp", "multi.example:443")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	want := []string{"93.184.216.1:443", "[2606:2800::1]:443", "93.184.216.2:443"}
	if got := rec.Calls(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("dial order = %v, want %v", got, want)
	}

	// tcp4 must only see IPv4 targets.
	rec2 := &recordingDialer{fail: map[string]bool{"93.184.216.1:443": true, "93.184.216.2:443": true}}
	p2 := mustNew(t, DefaultConfig(), WithResolver(res), WithDialer(rec2))
	_, err = p2.DialContext(context.Background(), "tcp4", "multi.example:443")
	var ne net.Error
	if !errors.As(err, &ne) {
		t.Errorf("err = %v, want a net.Error", err)
	}
	if got := rec2.Calls(); len(got) != 2 {
		t.Errorf("tcp4 dialled %v", got)
	}

	if _, err := p.DialContext(context.Background(), "unix", "/tmp/x"); err == nil {
		t.Error("unix network accepted")
	}
}

func TestDialContextConnectsToAllowedLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = c.Write([]byte("hi"))
			c.Close()
		}
		close(accepted)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// Default policy: refused before connect.
	deny := mustNew(t, DefaultConfig())
	if _, err := deny.DialContext(ctx, "tcp", ln.Addr().String()); !errors.Is(err, ErrRefused) {
		t.Fatalf("default policy: err = %v, want ErrRefused", err)
	}

	// Allow-listed: the real default dialer (with its Control hook) connects.
	allow := mustNew(t, Config{AllowCIDRs: []string{"127.0.0.0/8"}})
	c, err := allow.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("allow-listed dial: %v", err)
	}
	defer c.Close()
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v", buf, err)
	}
	<-accepted
}

func TestControlRefusesUnapprovedAddress(t *testing.T) {
	p := mustNew(t, Config{AllowCIDRs: []string{"127.0.0.0/8"}})
	approved := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:80")}
	ctx := context.WithValue(context.Background(), approvedKey{}, approved)
	tests := []struct {
		ctx     context.Context
		address string
		ok      bool
	}{
		{ctx, "127.0.0.1:80", true},
		{ctx, "[::ffff:127.0.0.1]:80", true},
		{ctx, "127.0.0.2:80", false},
		{ctx, "127.0.0.1:81", false},
		{ctx, "garbage", false},
		{context.Background(), "127.0.0.1:80", false}, // no approval: fail closed
	}
	for _, tt := range tests {
		err := p.control(tt.ctx, "tcp4", tt.address, nil)
		if (err == nil) != tt.ok {
			t.Errorf("control(%q) = %v, want ok=%v", tt.address, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrRefused) {
			t.Errorf("control(%q) error %v is not ErrRefused", tt.address, err)
		}
	}
}

func TestDialContextHonoursCancellation(t *testing.T) {
	res := &fakeResolver{answers: map[string][]netip.Addr{"good.example": addrs("93.184.216.34")}}
	rec := &recordingDialer{}
	p := mustNew(t, DefaultConfig(), WithResolver(res), WithDialer(rec))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := p.DialContext(ctx, "tcp", "good.example:443")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if c := rec.Calls(); len(c) != 0 {
		t.Errorf("dialled after cancel: %v", c)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		bad  string // substring the error must name; empty: valid
	}{
		{"default", DefaultConfig(), ""},
		{"full", Config{
			AllowCIDRs: []string{"10.0.0.0/8", "fd00::/8", "127.0.0.1"},
			DenyCIDRs:  []string{"93.184.216.0/24"},
			AllowHosts: []string{"a.example", "*.corp.example", "svc_x.local."},
			DenyHosts:  []string{"EVIL.example"},
			AllowPorts: []int{80, 443},
			DenyPorts:  []int{25},
		}, ""},
		{"bad allow cidr", Config{AllowCIDRs: []string{"10.0.0.0/33"}}, "10.0.0.0/33"},
		{"bad deny cidr", Config{DenyCIDRs: []string{"nope"}}, "nope"},
		{"zoned cidr", Config{AllowCIDRs: []string{"fe80::1%eth0"}}, "fe80::1%eth0"},
		{"host with port", Config{AllowHosts: []string{"a.example:443"}}, "a.example:443"},
		{"host url", Config{DenyHosts: []string{"https://a.example"}}, "https://a.example"},
		{"empty host", Config{DenyHosts: []string{""}}, `""`},
		{"ip as host", Config{AllowHosts: []string{"10.0.0.1"}}, "10.0.0.1"},
		{"mid wildcard", Config{AllowHosts: []string{"a.*.example"}}, "a.*.example"},
		{"bare wildcard", Config{AllowHosts: []string{"*"}}, `"*"`},
		{"port zero", Config{AllowPorts: []int{0}}, "0"},
		{"port high", Config{DenyPorts: []int{65536}}, "65536"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.bad == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.bad) {
				t.Fatalf("Validate() = %v, want error naming %s", err, tt.bad)
			}
			if _, err := New(tt.cfg); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}
