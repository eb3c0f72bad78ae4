package tunnel

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"
)

// testAddr is a net.Addr that is only its string.
type testAddr string

func (a testAddr) Network() string { return "tcp" }
func (a testAddr) String() string  { return string(a) }

func TestHandshakeSource(t *testing.T) {
	tcp := func(ip, zone string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 4711, Zone: zone} }
	tests := []struct {
		name string
		addr net.Addr
		want string // "" for no source
	}{
		{"IPv4", tcp("203.0.113.7", ""), "203.0.113.7/32"},
		{"IPv4-mapped IPv6 is the IPv4 address", tcp("::ffff:203.0.113.7", ""), "203.0.113.7/32"},
		{"each IPv4 loopback address on its own", tcp("127.0.0.2", ""), "127.0.0.2/32"},
		{"IPv6 by /64", tcp("2001:db8:1:2:3:4:5:6", ""), "2001:db8:1:2::/64"},
		{"IPv6 zone dropped", tcp("fe80::1", "eth0"), "fe80::/64"},
		{"IPv6 loopback", tcp("::1", ""), "::/64"},
		{"other Addr types by their string", testAddr("198.51.100.1:443"), "198.51.100.1/32"},
		{"not IP", testAddr("pipe"), ""},
		{"nil", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, ok := handshakeSource(tc.addr)
			got := ""
			if ok {
				got = src.String()
			}
			if got != tc.want {
				t.Fatalf("handshakeSource(%v) = %q, want %q", tc.addr, got, tc.want)
			}
		})
	}
}

// remoteConn is a conn with the remote address given.
type remoteConn struct {
	net.Conn
	remote net.Addr
}

func (c *remoteConn) RemoteAddr() net.Addr { return c.remote }

func remoteAt(addr string) net.Conn {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return &remoteConn{remote: net.TCPAddrFromAddrPort(ap)}
	}
	return &remoteConn{remote: testAddr(addr)}
}

// admStep is one event of an admission script.
type admStep struct {
	op   string // "admit", "start" (first byte) or "release"
	name string
	from string   // admit: the remote address
	out  string   // admit: the connection pushed out, "" for none
	why  eviction // admit: why out went; release: what release must report
}

func admit(name, from string) admStep { return admStep{op: "admit", name: name, from: from} }
func admitOut(name, from, out string, why eviction) admStep {
	return admStep{op: "admit", name: name, from: from, out: out, why: why}
}
func start(name string) admStep                 { return admStep{op: "start", name: name} }
func release(name string, why eviction) admStep { return admStep{op: "release", name: name, why: why} }

func TestAdmission(t *testing.T) {
	const (
		h1 = "192.0.2.1:1"
		h2 = "192.0.2.2:1"
		h3 = "192.0.2.3:1"
		h4 = "192.0.2.4:1"
		h5 = "192.0.2.5:1"
	)
	tests := []struct {
		name           string
		max, perSource int
		steps          []admStep
	}{
		{"room for all", 3, 2, []admStep{admit("a", h1), admit("b", h2), admit("c", h3)}},
		{"full: the oldest goes, not the newcomer", 3, 2, []admStep{
			admit("a", h1), admit("b", h2), admit("c", h3), admitOut("d", h4, "a", evictedFull), admitOut("e", h5, "b", evictedFull),
		}},
		{"full: a first byte makes a connection the freshest", 3, 2, []admStep{
			admit("a", h1), admit("b", h2), admit("c", h3), start("a"), admitOut("d", h4, "b", evictedFull), admitOut("e", h5, "c", evictedFull),
			admitOut("f", h5, "a", evictedFull),
		}},
		{"full: started connections age from their first byte", 3, 2, []admStep{
			admit("a", h1), admit("b", h2), admit("c", h3), start("b"), start("a"), start("c"),
			admitOut("d", h4, "b", evictedFull), admitOut("e", h5, "a", evictedFull),
		}},
		{"full: a slowloris started long ago goes before silent newer ones", 3, 2, []admStep{
			admit("a", h1), start("a"), admit("b", h2), admit("c", h3), admitOut("d", h4, "a", evictedFull),
		}},
		{"only the first byte counts as progress", 3, 2, []admStep{
			admit("a", h1), start("a"), admit("b", h2), start("a"), admit("c", h3), admitOut("d", h4, "a", evictedFull),
		}},
		{"source at its cap: its own oldest goes, not an older one of another source", 4, 2, []admStep{
			admit("x", h1), admit("a", h2), admit("b", h2), admitOut("c", h2, "a", evictedSource), admit("y", h3),
		}},
		{"source cap before the total", 3, 2, []admStep{
			admit("x", h1), admit("a", h2), admit("b", h2), admitOut("c", h2, "a", evictedSource),
		}},
		{"source at its cap: its stalest by progress", 8, 2, []admStep{
			admit("a", h2), admit("b", h2), start("a"), admitOut("c", h2, "b", evictedSource), admitOut("d", h2, "a", evictedSource),
		}},
		{"release frees the place", 3, 2, []admStep{
			admit("a", h1), admit("b", h2), admit("c", h3), release("b", notEvicted),
			admit("d", h4), admitOut("e", h5, "a", evictedFull),
		}},
		{"release frees the source's place", 8, 1, []admStep{
			admit("a", h1), release("a", notEvicted), admit("b", h1), admitOut("c", h1, "b", evictedSource),
		}},
		{"a pushed-out connection's release says why, and changes nothing", 3, 2, []admStep{
			admit("a", h1), admit("b", h2), admit("c", h3), admitOut("d", h4, "a", evictedFull),
			start("a"), release("a", evictedFull), release("a", evictedFull), admitOut("e", h5, "b", evictedFull),
		}},
		{"IPv6 counts by /64", 8, 2, []admStep{
			admit("a", "[2001:db8::1]:1"), admit("b", "[2001:db8::2]:1"), admitOut("c", "[2001:db8::ffff:3]:1", "a", evictedSource),
			admit("d", "[2001:db8:0:1::1]:1"), admit("e", "[2001:db8:0:1::2]:1"),
		}},
		{"IPv4-mapped addresses count as IPv4", 8, 1, []admStep{
			admit("a", "192.0.2.9:1"), admitOut("b", "[::ffff:192.0.2.9]:2", "a", evictedSource),
		}},
		{"addresses that are not IP share no source cap", 3, 1, []admStep{
			admit("a", "pipe"), admit("b", "pipe"), admit("c", "pipe"), admitOut("d", "pipe", "a", evictedFull),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newAdmission(tc.max, tc.perSource)
			conns := map[string]*pendingConn{}
			names := map[*pendingConn]string{}
			for i, st := range tc.steps {
				switch st.op {
				case "admit":
					p, victim := a.admit(remoteAt(st.from))
					conns[st.name], names[p] = p, st.name
					got, why := "", notEvicted
					if victim != nil {
						got, why = names[victim], victim.out
					}
					if got != st.out || why != st.why {
						t.Fatalf("step %d: admitting %s pushed out %q (%v), want %q (%v)", i, st.name, got, why, st.out, st.why)
					}
				case "start":
					a.progress(conns[st.name])
				case "release":
					if out, _ := a.release(conns[st.name]); out != st.why {
						t.Fatalf("step %d: release(%s) = %v, want %v", i, st.name, out, st.why)
					}
				}
				checkAdmission(t, a)
			}
		})
	}
}

// checkAdmission checks the admission's invariants: caps held, both indexes agree.
func checkAdmission(t *testing.T, a *admission) {
	t.Helper()
	if a.byAge.Len() > a.max {
		t.Fatalf("%d pending, cap %d", a.byAge.Len(), a.max)
	}
	inSources := 0
	for src, same := range a.bySource {
		if len(same) == 0 || len(same) > a.perSource {
			t.Fatalf("source %v holds %d, cap %d", src, len(same), a.perSource)
		}
		inSources += len(same)
	}
	last, listed := uint64(0), 0
	for e := a.byAge.Front(); e != nil; e = e.Next() {
		p := e.Value.(*pendingConn)
		if p.done || p.since <= last {
			t.Fatalf("age list out of order or holding a finished connection")
		}
		last = p.since
		if p.hasSrc {
			listed++
		}
	}
	if listed != inSources {
		t.Fatalf("%d connections with a source listed by age, %d by source", listed, inSources)
	}
}

// memListener is a listener of net.Pipe conns, each from a remote address chosen
// by the test, for tests on synctest's fake clock.
type memListener struct {
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newMemListener() *memListener {
	return &memListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *memListener) Addr() net.Addr { return testAddr("mem") }

// dial connects from remote (ip:port) and returns the client's end once the
// server has accepted it.
func (l *memListener) dial(remote string) net.Conn {
	c, s := net.Pipe()
	l.conns <- &remoteConn{Conn: s, remote: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(remote))}
	return c
}

// closedAt reads c until it fails and reports how long after start that was,
// or -1 while c is still open.
func closedAt(c net.Conn, start time.Time) func() time.Duration {
	var mu sync.Mutex
	at := time.Duration(-1)
	go func() {
		_, _ = io.Copy(io.Discard, c)
		mu.Lock()
		at = time.Since(start)
		mu.Unlock()
	}()
	return func() time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return at
	}
}

// serveMem runs a Server with cfg on a memListener; stop closes it and waits.
func serveMem(t *testing.T, cfg ServerConfig) (l *memListener, srv *Server, stop func()) {
	t.Helper()
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l = newMemListener()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), l) }()
	return l, srv, func() {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}
}

func memServerConfig(t *testing.T) ServerConfig {
	cfg := DefaultServerConfig()
	cfg.Logger = testLogger(t)
	p := sharedPKI(t)
	cfg.TLSConfig = NewServerTLSConfig(p.server, p.pool)
	return cfg
}

// TestHandshakeDeadlines: a connection that says nothing is closed after
// FirstByteTimeout; one that has begun its ClientHello has HandshakeTimeout.
func TestHandshakeDeadlines(t *testing.T) {
	cfg := memServerConfig(t) // outside the bubble: the certificates are dated by the real clock
	synctest.Test(t, func(t *testing.T) {
		cfg.FirstByteTimeout = 2 * time.Second
		cfg.HandshakeTimeout = 7 * time.Second
		l, _, stop := serveMem(t, cfg)
		defer stop()
		start := time.Now()
		silent := l.dial("192.0.2.1:1")
		defer silent.Close()
		spoke := l.dial("192.0.2.2:1")
		defer spoke.Close()
		if _, err := spoke.Write([]byte{0x16}); err != nil { // a handshake record begins
			t.Fatal(err)
		}
		silentAt, spokeAt := closedAt(silent, start), closedAt(spoke, start)
		time.Sleep(time.Minute)
		if got := silentAt(); got != 2*time.Second {
			t.Errorf("silent connection closed after %v, want FirstByteTimeout 2s", got)
		}
		if got := spokeAt(); got != 7*time.Second {
			t.Errorf("started connection closed after %v, want HandshakeTimeout 7s", got)
		}
	})
}

// TestHandshakeCloseCancelsPending: Close ends pending handshakes at once and
// returns when their goroutines have.
func TestHandshakeCloseCancelsPending(t *testing.T) {
	cfg := memServerConfig(t)
	synctest.Test(t, func(t *testing.T) {
		l, _, stop := serveMem(t, cfg)
		start := time.Now()
		var watches []func() time.Duration
		for i := range 10 {
			c := l.dial(fmt.Sprintf("192.0.2.%d:1", 1+i%3))
			defer c.Close()
			if i%2 == 0 {
				if _, err := c.Write([]byte{0x16, 0x03}); err != nil {
					t.Fatal(err)
				}
			}
			watches = append(watches, closedAt(c, start))
		}
		time.Sleep(time.Second)
		stop()
		if d := time.Since(start); d != time.Second {
			t.Errorf("Close returned after %v, want at once", d)
		}
		synctest.Wait()
		for i, at := range watches {
			if got := at(); got != time.Second {
				t.Errorf("connection %d closed after %v, want 1s (at Close)", i, got)
			}
		}
	})
}

// tlsAt is cfg cloned with its clock fixed at now: in a synctest bubble the clock
// starts in 2000, before the shared certificates' validity.
func tlsAt(cfg *tls.Config, now time.Time) *tls.Config {
	cfg = cfg.Clone()
	cfg.Time = func() time.Time { return now }
	return cfg
}

// TestHandshakeEvictionOrder: with the pending caps reached by idle and slow
// connections, real clients (mTLS, a tunnel session) get in at once, and each
// pushes out the stalest pending connection by the admission rule: longest
// without progress overall, or the stalest of its own source. The clients'
// sessions outlive the first-byte deadline.
func TestHandshakeEvictionOrder(t *testing.T) {
	cfg := memServerConfig(t)
	p := sharedPKI(t)
	now := time.Now()
	cfg.TLSConfig = tlsAt(cfg.TLSConfig, now)
	clientTLS := newClientTLSConfig(p.client, p.pool, DefaultServerName, func() time.Time { return now })
	clientTLS.Time = func() time.Time { return now }
	// No resumption: in a resumed TLS 1.3 handshake the server writes its session
	// ticket while the client writes its Finished, which deadlocks on net.Pipe (no
	// buffer); the full handshake with the client certificate is the case anyway.
	clientTLS.ClientSessionCache = nil
	synctest.Test(t, func(t *testing.T) {
		cfg.MaxPendingHandshakes = 4
		cfg.MaxPendingHandshakesPerSource = 2
		l, _, stop := serveMem(t, cfg)
		defer stop()
		start := time.Now()
		conns := map[string]net.Conn{}
		closed := map[string]func() time.Duration{}
		attack := func(name, from string) {
			c := l.dial(from)
			t.Cleanup(func() { _ = c.Close() })
			conns[name], closed[name] = c, closedAt(c, start)
			synctest.Wait()
		}
		speak := func(name string) {
			if _, err := conns[name].Write([]byte{0x16}); err != nil { // a handshake record begins
				t.Fatal(err)
			}
			synctest.Wait()
		}
		wantOpen := func(want ...string) {
			t.Helper()
			synctest.Wait()
			for name, at := range closed {
				if open := at() < 0; open != slices.Contains(want, name) {
					t.Errorf("%s open: %v, want %v", name, open, !open)
				}
			}
		}
		var clients []*Client
		honest := func(from string) {
			t.Helper()
			ccfg := DefaultClientConfig()
			ccfg.Logger = testLogger(t)
			ccfg.Sessions = 1
			ccfg.Dial = func(ctx context.Context) (net.Conn, error) {
				tc := tls.Client(l.dial(from), clientTLS)
				if err := tc.HandshakeContext(ctx); err != nil {
					_ = tc.Close()
					return nil, err
				}
				return tc, nil
			}
			c, err := NewClient(ccfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			if _, err := c.Ping(context.Background()); err != nil {
				t.Fatalf("honest client from %s: %v", from, err)
			}
			clients = append(clients, c)
		}

		attack("a1", "198.51.100.1:1")
		attack("a2", "198.51.100.2:1")
		attack("a3", "198.51.100.3:1")
		speak("a1") // now fresher than a2 and a3
		attack("a4", "198.51.100.4:1")
		speak("a4") // a slowloris: its first byte, then nothing
		wantOpen("a1", "a2", "a3", "a4")

		honest("203.0.113.1:1") // full: pushes out a2, the stalest
		wantOpen("a1", "a3", "a4")

		attack("b1", "198.51.100.9:1") // full again
		attack("b2", "198.51.100.9:2") // pushes out a3
		wantOpen("a1", "a4", "b1", "b2")
		attack("b3", "198.51.100.9:3") // its source at its cap: pushes out b1, not a1
		wantOpen("a1", "a4", "b2", "b3")

		honest("203.0.113.2:1") // a1 spoke first of all, but longest ago
		wantOpen("a4", "b2", "b3")
		honest("203.0.113.3:1") // room: pushes out nobody
		wantOpen("a4", "b2", "b3")
		if d := time.Since(start); d != 0 {
			t.Fatalf("the honest clients took %v of fake time, want none", d)
		}

		time.Sleep(time.Minute)
		for name, want := range map[string]time.Duration{
			"b2": defaultFirstByteTimeout, "b3": defaultFirstByteTimeout, "a4": defaultHandshakeTimeout,
		} {
			if got := closed[name](); got != want {
				t.Errorf("%s closed after %v, want %v", name, got, want)
			}
		}
		for i, c := range clients {
			if _, err := c.Ping(context.Background()); err != nil {
				t.Errorf("honest client %d after a minute: %v", i+1, err)
			}
		}
	})
}

// TestRefusalLogIsBounded: a flood of refusals makes one summary line per second,
// whose counts add up to the refusals.
func TestRefusalLogIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf lockedBuffer
		r := &refusalLog{log: zerolog.New(&buf).Level(zerolog.InfoLevel), every: time.Second}
		remote := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}
		for i := range 2500 {
			r.add(refusal(i%int(numRefusals)), remote, errTest)
			time.Sleep(time.Millisecond)
		}
		r.stop()
		r.add(refusedFailed, remote, errTest) // after stop: counted, never written
		time.Sleep(time.Minute)
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) > 4 {
			t.Fatalf("%d lines for 2.5 s of refusals, want at most one a second:\n%s", len(lines), buf.String())
		}
		total := 0
		for _, l := range lines {
			var line struct {
				Level   string `json:"level"`
				Refused int    `json:"refused"`
			}
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
			if line.Level != "warn" {
				t.Errorf("level %q with evictions in the count, want warn", line.Level)
			}
			total += line.Refused
		}
		if total != 2500 {
			t.Errorf("lines count %d refusals, want 2500", total)
		}
	})
}

// TestHandshakeConfig: zero means the default, negative is refused.
func TestHandshakeConfig(t *testing.T) {
	d := DefaultServerConfig()
	if d.FirstByteTimeout != 3*time.Second || d.MaxPendingHandshakesPerSource != 8 || d.MaxPendingHandshakes != 64 || d.HandshakeTimeout != 10*time.Second {
		t.Errorf("defaults: first byte %v, per source %d, pending %d, handshake %v",
			d.FirstByteTimeout, d.MaxPendingHandshakesPerSource, d.MaxPendingHandshakes, d.HandshakeTimeout)
	}
	for name, mod := range map[string]func(*ServerConfig){
		"first byte timeout": func(c *ServerConfig) { c.FirstByteTimeout = -time.Second },
		"per source":         func(c *ServerConfig) { c.MaxPendingHandshakesPerSource = -1 },
		"pending":            func(c *ServerConfig) { c.MaxPendingHandshakes = -1 },
		"handshake timeout":  func(c *ServerConfig) { c.HandshakeTimeout = -time.Second },
	} {
		var c ServerConfig
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s negative: accepted", name)
		}
	}
}

// TestHandshakeFlood is the regression test for idle connections locking clients
// out: on loopback, with real mTLS and the default caps (64 pending, 8 per
// source, 3 s to the first byte, 10 s to the end of the handshake), an attacker
// holds 575 connections open — silent ones, and ones trickling a ClientHello a
// byte every 250 ms; 200 from 127.0.0.1 and 127.0.0.2, the rest from 50
// addresses of 127.0.1.0/24 and 127.0.2.0/24 at most 6 each, so that both the
// per-source and the total cap are reached — and keeps opening more while 20
// honest agents (127.0.0.3 to 127.0.0.22) connect. Every agent must get its
// session at the first attempt and a request through it within 5 s.
func TestHandshakeFlood(t *testing.T) {
	raiseFileLimit(t, 4096)
	p := sharedPKI(t)
	var logs lockedBuffer
	cfg := DefaultServerConfig()
	cfg.Logger = zerolog.New(&logs).Level(zerolog.InfoLevel)
	cfg.TLSConfig = NewServerTLSConfig(p.server, p.pool)
	cfg.Egress.AllowCIDRs = []string{"127.0.0.0/8"}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), ln) }()
	addr := ln.Addr().String()
	tgt := target(t)
	hello := clientHello(t, NewClientTLSConfig(p.client, p.pool, DefaultServerName))

	var (
		mu        sync.Mutex
		attackers []net.Conn
		trickles  sync.WaitGroup
		stop      = make(chan struct{})
	)
	attack := func(from string, trickle bool) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Errorf("attacker from %s: %v", from, err)
			return
		}
		mu.Lock()
		attackers = append(attackers, c)
		mu.Unlock()
		if !trickle {
			return
		}
		trickles.Add(1)
		go func() {
			defer trickles.Done()
			tick := time.NewTicker(250 * time.Millisecond)
			defer tick.Stop()
			for i := range len(hello) - 1 { // never the whole ClientHello
				if _, err := c.Write(hello[i : i+1]); err != nil {
					return // pushed out or timed out
				}
				select {
				case <-tick.C:
				case <-stop:
					return
				}
			}
		}()
	}
	defer func() {
		close(stop)
		mu.Lock()
		for _, c := range attackers {
			_ = c.Close()
		}
		mu.Unlock()
		trickles.Wait()
	}()

	// Before the agents: the caps are full.
	for range 150 {
		attack("127.0.0.1", false)
	}
	for range 100 {
		attack("127.0.0.2", true)
	}
	for i := range 150 {
		attack(fmt.Sprintf("127.0.1.%d", 1+i%25), true)
	}
	pending := func() int {
		srv.pending.mu.Lock()
		defer srv.pending.mu.Unlock()
		return srv.pending.byAge.Len()
	}
	waitFor(t, 5*time.Second, "the pending handshakes at their cap", func() bool { return pending() == cfg.MaxPendingHandshakes })

	// While the agents connect: more of the same.
	var more sync.WaitGroup
	more.Add(2)
	go func() {
		defer more.Done()
		for i := range 125 {
			attack(fmt.Sprintf("127.0.2.%d", 1+i%25), false)
			time.Sleep(10 * time.Millisecond)
		}
	}()
	go func() {
		defer more.Done()
		for range 50 {
			attack("127.0.0.1", false)
		}
	}()

	const agents = 20
	const bound = 5 * time.Second
	type result struct {
		took     time.Duration
		attempts int
		err      error
	}
	results := make([]result, agents)
	var wg sync.WaitGroup
	for i := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			from := fmt.Sprintf("127.0.0.%d", 3+i)
			ccfg := DefaultClientConfig()
			ccfg.Logger = testLogger(t)
			ccfg.Sessions = 1
			ccfg.Dial = func(ctx context.Context) (net.Conn, error) {
				mu.Lock()
				r.attempts++
				mu.Unlock()
				d := tls.Dialer{
					NetDialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}},
					Config:    NewClientTLSConfig(p.client, p.pool, DefaultServerName),
				}
				return d.DialContext(ctx, "tcp", addr)
			}
			client, err := NewClient(ccfg)
			if err != nil {
				r.err = err
				return
			}
			defer client.Close()
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			defer cancel()
			began := time.Now()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tgt.URL+"/hello", nil)
			resp, err := client.RoundTrip(req)
			if err != nil {
				r.err = err
				return
			}
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			r.took = time.Since(began)
			if err == nil && (resp.StatusCode != http.StatusOK || string(body) != "hello") {
				err = fmt.Errorf("%s %q", resp.Status, body)
			}
			r.err = err
		}()
	}
	wg.Wait()
	more.Wait()
	var slowest time.Duration
	for i, r := range results {
		mu.Lock()
		attempts := r.attempts
		mu.Unlock()
		switch {
		case r.err != nil:
			t.Errorf("agent %d: %v", i+1, r.err)
		case r.took > bound:
			t.Errorf("agent %d: %v, want within %v", i+1, r.took, bound)
		case attempts != 1:
			t.Errorf("agent %d: %d connection attempts, want 1", i+1, attempts)
		}
		slowest = max(slowest, r.took)
	}
	mu.Lock()
	held := len(attackers)
	mu.Unlock()
	t.Logf("%d attacker connections; slowest of %d agents: %v", held, agents, slowest)
	if held < 500 {
		t.Errorf("only %d attacker connections", held)
	}

	_ = srv.Close()
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	// Both caps were reached and pushed attackers out.
	var evicted, bySource int
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var line struct {
			Evicted       int `json:"evicted"`
			EvictedSource int `json:"evicted_source"`
		}
		if json.Unmarshal([]byte(l), &line) == nil {
			evicted += line.Evicted
			bySource += line.EvictedSource
		}
	}
	if evicted == 0 || bySource == 0 {
		t.Errorf("pushed out: %d at the total cap, %d at a source's cap; want both", evicted, bySource)
	}
}

// raiseFileLimit raises the soft limit on open files to n (or the hard limit)
// for the test.
func raiseFileLimit(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if lim.Cur >= n {
		return
	}
	old := lim
	lim.Cur = min(n, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("setrlimit: %v (the flood needs %d open files)", err, n)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// clientHello returns the first TLS record a client with cfg sends: its
// ClientHello.
func clientHello(t *testing.T, cfg *tls.Config) []byte {
	t.Helper()
	c, s := net.Pipe()
	defer s.Close()
	go func() {
		_ = tls.Client(c, cfg).Handshake()
	}()
	defer c.Close()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(s, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(s, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// flakyListener fails its first Accepts with err, then accepts from ln.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
	err   error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, l.err
	}
	return l.Listener.Accept()
}

// TestServeSurvivesEMFILE: running out of file descriptors is passing; Serve
// waits and accepts again instead of returning.
func TestServeSurvivesEMFILE(t *testing.T) {
	p := sharedPKI(t)
	cfg := DefaultServerConfig()
	cfg.Logger = testLogger(t)
	cfg.TLSConfig = NewServerTLSConfig(p.server, p.pool)
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: listen(t), err: &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}}
	fl.fails.Store(5)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), fl) }()
	clientTLS := NewClientTLSConfig(p.client, p.pool, DefaultServerName)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := DialTLS(ctx, fl.Addr().String(), clientTLS)
	if err != nil {
		t.Fatalf("no session after passing accept errors: %v", err)
	}
	_ = conn.Close()
	_ = srv.Close()
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve returned %v, want ErrServerClosed", err)
	}
}
