package tunnel

import (
	"container/list"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Admission to the TLS handshake.
//
// Until its handshake ends, a connection holds a goroutine and a socket, and anyone
// can open one: no certificate is checked before the handshake. The server bounds
// these pending connections three ways:
//
//   - FirstByteTimeout: a real TLS client sends its ClientHello as soon as it is
//     connected, so a connection that stays silent for a few seconds is closed,
//     long before HandshakeTimeout.
//   - MaxPendingHandshakesPerSource: one IPv4 address, or one IPv6 /64, holds at
//     most that many pending connections.
//   - MaxPendingHandshakes: the total.
//
// A cap reached does not turn the newcomer away: it pushes out the stalest pending
// connection (of the newcomer's source when the source is at its cap, of all
// otherwise), which is closed. Turning newcomers away would let whoever fills the
// slots first keep them for HandshakeTimeout, again and again; pushing out the
// stalest means an attacker's idle connections are displaced by honest new ones.
//
// The stalest is the connection that has gone longest without progress, and
// progress is being accepted or, once, sending its first byte: a silent
// connection ages from its accept, one that has begun its ClientHello from its
// first byte. So having spoken counts as fresher than staying silent, and a
// slowloris gains nothing by trickling the rest. A connection goes only when all
// that progressed before it have gone, and a newcomer, or one that has just
// spoken, is last in line: to keep an honest client out, an attacker must push
// out every pending connection between the client's accept and its first byte,
// or between its first byte and the end of its handshake (a few round trips) —
// with new connections from many addresses, since those of one source push out
// only that source's.
//
// (Pushing out every silent connection before any started one was the other
// candidate. It protects a started handshake from silent floods, but an attacker
// makes its connections started with one byte, and then the only silent one is
// the honest client that was accepted a moment ago and whose first byte the
// server has not read yet: the first to go. Pure age has no such blind spot.)

// handshakeSource is the key under which a connection's pending handshakes are
// counted: its IPv4 address (an IPv4-mapped IPv6 address counts as the IPv4
// address; each loopback address 127.x.y.z is its own source), or the /64 of its
// IPv6 address, since one host or subscriber is usually given a whole /64 (::1 is
// the source ::/64). ok is false for addresses that are not IP (net.Pipe, Unix
// sockets): those share no per-source cap.
func handshakeSource(addr net.Addr) (src netip.Prefix, ok bool) {
	var ip netip.Addr
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip = a.AddrPort().Addr()
	case nil:
		return netip.Prefix{}, false
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Prefix{}, false
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() {
		return netip.Prefix{}, false
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	src, err := ip.Prefix(bits)
	return src, err == nil
}

// eviction says why a pending connection was pushed out; zero means it was not.
type eviction uint8

const (
	notEvicted    eviction = iota
	evictedFull            // MaxPendingHandshakes reached and this was the stalest
	evictedSource          // its source at MaxPendingHandshakesPerSource and this was the stalest
)

// pendingConn is one connection admitted to its handshake. Its fields belong to
// the admission's lock.
type pendingConn struct {
	conn    net.Conn
	src     netip.Prefix
	hasSrc  bool
	started bool          // the first byte has arrived
	since   uint64        // order of the last progress: admission, then first byte
	elem    *list.Element // in admission.byAge
	out     eviction      // set when pushed out
	done    bool          // released or pushed out
}

// admission keeps the connections pending in their handshake and picks which one
// a newcomer pushes out (see the rule above). It takes no clock: the order of
// events is all it needs, so its tests are plain tables.
type admission struct {
	max, perSource int

	mu       sync.Mutex
	tick     uint64
	byAge    list.List // of *pendingConn, stalest (smallest since) first
	bySource map[netip.Prefix][]*pendingConn
}

func newAdmission(max, perSource int) *admission {
	return &admission{max: max, perSource: perSource, bySource: make(map[netip.Prefix][]*pendingConn)}
}

// admit admits conn. If that takes a cap past its bound, it also returns the
// connection pushed out to make room: the caller closes victim.conn, and the
// victim's own goroutine learns why from release.
func (a *admission) admit(conn net.Conn) (p, victim *pendingConn) {
	p = &pendingConn{conn: conn}
	p.src, p.hasSrc = handshakeSource(conn.RemoteAddr())
	a.mu.Lock()
	defer a.mu.Unlock()
	if same := a.bySource[p.src]; p.hasSrc && len(same) >= a.perSource {
		victim = same[0]
		for _, q := range same[1:] {
			if q.since < victim.since {
				victim = q
			}
		}
		victim.out = evictedSource
	} else if a.byAge.Len() >= a.max {
		victim = a.byAge.Front().Value.(*pendingConn)
		victim.out = evictedFull
	}
	if victim != nil {
		a.removeLocked(victim)
	}
	a.tick++
	p.since = a.tick
	p.elem = a.byAge.PushBack(p)
	if p.hasSrc {
		a.bySource[p.src] = append(a.bySource[p.src], p)
	}
	return p, victim
}

// progress records that p's first byte has arrived: p becomes the freshest.
func (a *admission) progress(p *pendingConn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p.done || p.started {
		return
	}
	p.started = true
	a.tick++
	p.since = a.tick
	a.byAge.MoveToBack(p.elem)
}

// release ends p's handshake, successful or not, and frees its place. It reports
// whether p had been pushed out before, and whether its first byte had arrived.
func (a *admission) release(p *pendingConn) (out eviction, started bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !p.done {
		a.removeLocked(p)
	}
	return p.out, p.started
}

func (a *admission) removeLocked(p *pendingConn) {
	p.done = true
	a.byAge.Remove(p.elem)
	p.elem = nil
	if !p.hasSrc {
		return
	}
	same := a.bySource[p.src]
	for i, q := range same {
		if q == p {
			same = append(same[:i], same[i+1:]...)
			break
		}
	}
	if len(same) == 0 {
		delete(a.bySource, p.src)
	} else {
		a.bySource[p.src] = same
	}
}

// firstByteConn tells the admission when the connection's first byte arrives, and
// lifts the first-byte read deadline then. Reads are serialised by the tls.Conn
// above it, so seen needs no lock.
type firstByteConn struct {
	net.Conn
	seen    bool
	onFirst func()
}

func (c *firstByteConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.seen {
		c.seen = true
		_ = c.Conn.SetReadDeadline(time.Time{})
		c.onFirst()
	}
	return n, err
}

// refusal is why a connection did not become a session.
type refusal uint8

const (
	refusedFull   refusal = iota // pushed out: MaxPendingHandshakes reached
	refusedSource                // pushed out: its source at MaxPendingHandshakesPerSource
	refusedSilent                // sent nothing within FirstByteTimeout
	refusedSlow                  // handshake not done within HandshakeTimeout
	refusedFailed                // the handshake failed: no or bad certificate, not TLS 1.3, not TLS
	refusedDecoy                 // no client certificate: answered by the decoy (DecoyConfig)
	numRefusals
)

var refusalNames = [numRefusals]string{"evicted", "evicted_source", "silent", "slow", "failed", "decoy"}

// refusalLogEvery is how often refusals are summed up in the log.
const refusalLogEvery = time.Second

// refusalLog sums refusals up in one line per second at most, so a flood of
// connections cannot become a flood of log lines. Each refusal is also logged on
// its own at debug level. The line is a warning when connections were pushed out
// or timed out (signs of connections held open on purpose), info when handshakes
// only failed (scanners, clients without a valid certificate).
type refusalLog struct {
	log   zerolog.Logger
	every time.Duration

	mu         sync.Mutex
	counts     [numRefusals]int
	lastRemote string
	lastErr    error
	timer      *time.Timer
	stopped    bool
}

func (r *refusalLog) add(why refusal, remote net.Addr, err error) {
	r.log.Debug().Str("remote", addrString(remote)).Str("reason", refusalNames[why]).Err(err).Msg("tls handshake refused")
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[why]++
	r.lastRemote = addrString(remote)
	if err != nil {
		r.lastErr = err
	}
	if r.timer == nil && !r.stopped {
		r.timer = time.AfterFunc(r.every, r.flush)
	}
}

// flush writes the summary of the refusals since the last one, if any.
// It writes under the lock, so that once stop has returned nothing is written.
func (r *refusalLog) flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	counts, remote, lastErr := r.counts, r.lastRemote, r.lastErr
	r.counts, r.lastRemote, r.lastErr, r.timer = [numRefusals]int{}, "", nil, nil
	total := 0
	for _, n := range counts {
		total += n
	}
	if total == 0 {
		return
	}
	ev := r.log.Info()
	if counts[refusedFull]+counts[refusedSource]+counts[refusedSilent]+counts[refusedSlow] > 0 {
		ev = r.log.Warn()
	}
	ev = ev.Int("refused", total)
	for why, n := range counts {
		if n > 0 {
			ev = ev.Int(refusalNames[why], n)
		}
	}
	ev.Str("last_remote", remote).AnErr("last_error", lastErr).
		Msg("tls handshakes refused")
}

// stop writes what is left and schedules nothing more.
func (r *refusalLog) stop() {
	r.mu.Lock()
	r.stopped = true
	if r.timer != nil {
		r.timer.Stop()
	}
	r.mu.Unlock()
	r.flush()
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// String is for test failures and debugging.
func (e eviction) String() string {
	switch e {
	case notEvicted:
		return "not evicted"
	case evictedFull:
		return "evicted (full)"
	case evictedSource:
		return "evicted (source)"
	}
	return "eviction(" + strconv.Itoa(int(e)) + ")"
}
