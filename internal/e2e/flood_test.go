package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// floodRSSBound is what the server's resident set may reach while an
// authenticated agent floods it. The server's own bounds add up far below it:
// 128 MiB of receive budget for all windows grown past the initial 256 KiB,
// MaxStreams+MaxPendingStreams (132) streams per session, one 64 KiB header
// buffer per pending stream.
const floodRSSBound = 256 * mib

// The yamux frame format (spec.md of github.com/libp2p/go-yamux): a 12-byte
// header, big-endian: version (0), type, flags (2 bytes), stream ID, length.
const (
	yamuxHeaderSize = 12

	yamuxData         = 0
	yamuxWindowUpdate = 1
	yamuxPing         = 2
	yamuxGoAway       = 3

	yamuxSYN = 1
	yamuxACK = 2
	yamuxFIN = 4
	yamuxRST = 8

	// yamuxInitialWindow is what a stream may send before the receiver grants more.
	yamuxInitialWindow = 256 << 10
)

func appendYamuxHeader(dst []byte, typ byte, flags uint16, id, length uint32) []byte {
	dst = append(dst, 0, typ)
	dst = binary.BigEndian.AppendUint16(dst, flags)
	dst = binary.BigEndian.AppendUint32(dst, id)
	return binary.BigEndian.AppendUint32(dst, length)
}

// Reset codes the server puts in a stream reset's length field
// (tunnel/internal/wire/reset.go), named for the log.
var resetNames = map[uint32]string{0: "no_error", 1: "protocol_error", 2: "internal_error", 7: "refused_stream", 8: "cancel"}

const resetCancel = 8

// hostileConn is an authenticated agent that speaks yamux by hand over its own
// mTLS connection: it opens streams and pings as it likes, heeds no window update
// and answers nothing. A goroutine reads and counts what the server sends.
type hostileConn struct {
	conn net.Conn
	w    *bufio.Writer
	next uint32 // the next stream ID; a yamux client's are odd

	done chan struct{} // closed when the reader ends: the conn failed or was closed

	mu       sync.Mutex
	resets   map[uint32]int64 // RST frames by the code in their length field
	rstTotal int64
	fins     int64
	data     int64 // data frames with a payload
	bytes    int64 // payload bytes of data frames
	answered int64 // streams that received at least one data byte
	windows  int64 // window updates without RST
	pongs    int64 // ping replies (ACK)
	pings    int64 // pings the server sent (keepalive, RTT); never answered
	goAways  int64
}

func dialHostile(t *testing.T, addr string, cfg *tls.Config) *hostileConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := tunnel.DialTLS(ctx, addr, cfg)
	if err != nil {
		t.Fatalf("hostile agent: %v", err)
	}
	h := &hostileConn{conn: conn, w: bufio.NewWriterSize(conn, 256<<10), next: 1,
		done: make(chan struct{}), resets: map[uint32]int64{}}
	go h.read()
	t.Cleanup(h.close)
	return h
}

func (h *hostileConn) read() {
	defer close(h.done)
	r := bufio.NewReaderSize(h.conn, 256<<10)
	answered := map[uint32]bool{}
	var hdr [yamuxHeaderSize]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		typ, flags := hdr[1], binary.BigEndian.Uint16(hdr[2:])
		id, length := binary.BigEndian.Uint32(hdr[4:]), binary.BigEndian.Uint32(hdr[8:])
		if typ == yamuxData && length > 0 {
			if _, err := io.CopyN(io.Discard, r, int64(length)); err != nil {
				return
			}
		}
		h.mu.Lock()
		switch typ {
		case yamuxData:
			if length > 0 {
				h.data++
				h.bytes += int64(length)
				if !answered[id] {
					answered[id] = true
					h.answered++
				}
			}
		case yamuxWindowUpdate:
			if flags&yamuxRST != 0 {
				h.resets[length]++
			} else {
				h.windows++
			}
		case yamuxPing:
			if flags&yamuxACK != 0 {
				h.pongs++
			} else {
				h.pings++
			}
		case yamuxGoAway:
			h.goAways++
		}
		if flags&yamuxRST != 0 && typ != yamuxPing {
			h.rstTotal++
		}
		if flags&yamuxFIN != 0 && typ != yamuxPing {
			h.fins++
		}
		h.mu.Unlock()
	}
}

func (h *hostileConn) close() {
	_ = h.conn.Close()
	<-h.done
}

// counts is a snapshot of what a hostileConn read.
type counts struct {
	resets                                                       map[uint32]int64
	rstTotal, fins, data, bytes, answered, windows, pongs, pings int64
	goAways                                                      int64
}

func (h *hostileConn) counts() counts {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := counts{resets: map[uint32]int64{}, rstTotal: h.rstTotal, fins: h.fins, data: h.data, bytes: h.bytes,
		answered: h.answered, windows: h.windows, pongs: h.pongs, pings: h.pings, goAways: h.goAways}
	for k, v := range h.resets {
		c.resets[k] = v
	}
	return c
}

func sumCounts(hs []*hostileConn) counts {
	sum := counts{resets: map[uint32]int64{}}
	for _, h := range hs {
		c := h.counts()
		for k, v := range c.resets {
			sum.resets[k] += v
		}
		sum.rstTotal += c.rstTotal
		sum.fins += c.fins
		sum.data += c.data
		sum.bytes += c.bytes
		sum.answered += c.answered
		sum.windows += c.windows
		sum.pongs += c.pongs
		sum.pings += c.pings
		sum.goAways += c.goAways
	}
	return sum
}

func (c counts) String() string {
	var codes []string
	for code, n := range c.resets {
		name := resetNames[code]
		if name == "" {
			name = fmt.Sprint(code)
		}
		codes = append(codes, fmt.Sprintf("%s=%d", name, n))
	}
	sort.Strings(codes)
	return fmt.Sprintf("RST %d (%s), FIN %d, streams answered with data %d (%d data frames, %d bytes), window updates %d, pongs %d, server pings %d, go away %d",
		c.rstTotal, strings.Join(codes, " "), c.fins, c.answered, c.data, c.bytes, c.windows, c.pongs, c.pings, c.goAways)
}

// slowHeader is what each stream of phase (a) sends after its SYN: a Fluidity
// frame prefix (tunnel/internal/wire/frame.go: magic "FLDY", version 2, header
// length) declaring a 64 KiB JSON header, the largest the server accepts by
// default, and all of that header but its last byte.
func slowHeader() []byte {
	const declared = 64 << 10
	b := append([]byte("FLDY"), 2)
	b = binary.BigEndian.AppendUint32(b, declared)
	b = append(b, `{"type":"http","payload":{"method":"GET","url":"http://127.0.0.1/","header":{"X-Pad":["`...)
	for len(b) < 9+declared-1 {
		b = append(b, 'a')
	}
	return b
}

// openSlow opens a stream with a data frame carrying SYN and payload, within the
// initial window and heedless of anything else.
func (h *hostileConn) openSlow(payload []byte) error {
	if len(payload) > yamuxInitialWindow {
		panic("payload over the initial window")
	}
	var hdr [yamuxHeaderSize]byte
	_, _ = h.w.Write(appendYamuxHeader(hdr[:0], yamuxData, yamuxSYN, h.next, uint32(len(payload))))
	h.next += 2
	_, err := h.w.Write(payload)
	return err
}

// openEmpty opens a stream (a window update with SYN, as yamux itself opens
// one) that never carries a byte.
func (h *hostileConn) openEmpty() error {
	var hdr [yamuxHeaderSize]byte
	_, err := h.w.Write(appendYamuxHeader(hdr[:0], yamuxWindowUpdate, yamuxSYN, h.next, 0))
	h.next += 2
	return err
}

func (h *hostileConn) ping(opaque uint32) error {
	var hdr [yamuxHeaderSize]byte
	_, err := h.w.Write(appendYamuxHeader(hdr[:0], yamuxPing, yamuxSYN, 0, opaque))
	return err
}

// rssSampler records the server's peak VmRSS per phase, sampling every 50 ms.
type rssSampler struct {
	pid   int
	mu    sync.Mutex
	phase string
	peaks map[string]int64
	err   error
	stop  chan struct{}
	done  chan struct{}
}

func sampleRSS(pid int) *rssSampler {
	s := &rssSampler{pid: pid, phase: "start", peaks: map[string]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	s.sample()
	go func() {
		defer close(s.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			s.sample()
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) sample() {
	rss, err := vmRSS(s.pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.err == nil {
			s.err = err
		}
		return
	}
	s.peaks[s.phase] = max(s.peaks[s.phase], rss)
}

// enter starts phase: samples from now on count towards its peak.
func (s *rssSampler) enter(phase string) {
	s.mu.Lock()
	s.phase = phase
	s.mu.Unlock()
	s.sample()
}

func (s *rssSampler) peak(phase string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peaks[phase]
}

func (s *rssSampler) finish() error {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// waitSettled waits until value stops changing for quiet, or d passes, and
// returns the last value.
func waitSettled(d, quiet time.Duration, value func() int64) int64 {
	deadline := time.Now().Add(d)
	last, since := value(), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		if v := value(); v != last {
			last, since = v, time.Now()
		} else if time.Since(since) >= quiet {
			break
		}
	}
	return last
}

const floodBody = "flood-ok"

// honestGet sends a GET through the honest client until one answers 200 with
// floodBody or within passes, and returns how long it took.
func honestGet(c *tunnel.Client, url string, within time.Duration) (time.Duration, int, error) {
	start := time.Now()
	attempts := 0
	var last error
	for time.Since(start) < within {
		attempts++
		ctx, cancel := context.WithTimeout(context.Background(), min(2*time.Second, within-time.Since(start)))
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.RoundTrip(req)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case rerr != nil:
				err = rerr
			case resp.StatusCode != http.StatusOK || string(body) != floodBody:
				err = fmt.Errorf("answer %d %q", resp.StatusCode, body)
			}
		}
		cancel()
		if err == nil {
			return time.Since(start), attempts, nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start), attempts, fmt.Errorf("no answer within %v after %d attempts; last: %w", within, attempts, last)
}

// logFilter passes a server's stderr on to a logBuf, except repeated warnings:
// past the first few of each message they are only counted. A flooded server
// writes hundreds of thousands of them (over 100 MiB), which the harness would
// keep in memory and print in full on failure.
type logFilter struct {
	dst  *logBuf
	keep int

	mu      sync.Mutex
	partial []byte
	lines   int
	bytes   int64
	counts  map[string]int // warn and error lines by level and message
}

func (f *logFilter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bytes += int64(len(p))
	f.partial = append(f.partial, p...)
	for {
		i := bytes.IndexByte(f.partial, '\n')
		if i < 0 {
			break
		}
		line := f.partial[:i+1]
		f.lines++
		if key := warningKey(line); key == "" || f.counts[key] < f.keep {
			_, _ = f.dst.Write(line)
		}
		if key := warningKey(line); key != "" {
			f.counts[key]++
		}
		f.partial = f.partial[i+1:]
	}
	f.partial = append([]byte(nil), f.partial...)
	return len(p), nil
}

// warningKey returns "level: message" for a zerolog warn or error line, "" for
// anything else.
func warningKey(line []byte) string {
	var level string
	switch {
	case bytes.Contains(line, []byte(`"level":"warn"`)):
		level = "warn"
	case bytes.Contains(line, []byte(`"level":"error"`)):
		level = "error"
	default:
		return ""
	}
	_, msg, ok := bytes.Cut(line, []byte(`"message":"`))
	if !ok {
		return level
	}
	msg, _, _ = bytes.Cut(msg, []byte(`"`))
	return level + ": " + string(msg)
}

func (f *logFilter) summary() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for m, n := range f.counts {
		out = append(out, fmt.Sprintf("%8d %s", n, m))
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return fmt.Sprintf("%d lines, %.1f MiB; warnings and errors:\n%s", f.lines, float64(f.bytes)/mib, strings.Join(out, "\n"))
}

// startFloodServer is startServer (the same arguments) with the server's
// stderr passed through a logFilter.
func startFloodServer(t *testing.T) (*server, *logFilter) {
	t.Helper()
	f := &logFilter{dst: newLogBuf(), keep: 5, counts: map[string]int{}}
	p := &proc{name: "fluidity-server", stdout: newLogBuf(), stderr: f.dst, done: make(chan struct{})}
	p.cmd = exec.Command(serverBin,
		"--listen-addr", "127.0.0.1", "--listen-port", "0",
		"--cert-file", certPath("server.crt"), "--key-file", certPath("server.key"),
		"--ca-cert-file", certPath("ca.crt"),
		"--shutdown-timeout", "10s",
		"--allow-cidrs", "127.0.0.0/8,::1/128")
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout = p.stdout
	p.cmd.Stderr = f
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start fluidity-server: %v", err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if code := p.stop(t); code != 0 {
			t.Errorf("fluidity-server exited with code %d after SIGTERM, want 0", code)
		}
		if t.Failed() {
			t.Logf("fluidity-server stderr (repeated warnings left out):\n%s", p.stderr.String())
		}
	})
	e, ok := p.stderr.waitEntry(p.done, startTimeout, msgIs("server started"))
	if !ok || e.str("listen") == "" {
		t.Fatalf("fluidity-server did not log its start:\n%s", p.stderr.String())
	}
	return &server{proc: p, addr: e.str("listen")}, f
}

// TestFloodBoundsServerMemory: an agent holding a valid client certificate, but
// hostile, floods the real fluidity-server (default configuration) with raw
// yamux over its own mTLS connections: streams that send a 64 KiB header all but
// its last byte, 100,000 streams that send nothing, a million pings. The server
// must stay alive and under floodRSSBound, keep answering an honest client, and
// shut down cleanly afterwards.
func TestFloodBoundsServerMemory(t *testing.T) {
	srv, logs := startFloodServer(t)
	pid := srv.pid()
	target := httpTarget(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(floodBody))
	}))

	tlsCfg, err := tunnel.LoadClientTLSConfig(certPath("agent.crt"), certPath("agent.key"), certPath("ca.crt"), "")
	if err != nil {
		t.Fatal(err)
	}
	ccfg := tunnel.DefaultClientConfig()
	ccfg.Dial = func(ctx context.Context) (net.Conn, error) { return tunnel.DialTLS(ctx, srv.addr, tlsCfg.Clone()) }
	honest, err := tunnel.NewClient(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = honest.Close() })
	if d, _, err := honestGet(honest, target.URL, startTimeout); err != nil {
		t.Fatalf("honest client before the flood: %v", err)
	} else {
		t.Logf("honest client before the flood: answered in %v", d.Round(time.Millisecond))
	}

	rss := sampleRSS(pid)
	t.Logf("server VmRSS before the flood: %.1f MiB", float64(rss.peak("start"))/mib)
	testStart := time.Now()

	// honestCheck: the honest client must get its answer within a few seconds.
	honestCheck := func(when string) error {
		t.Helper()
		d, attempts, err := honestGet(honest, target.URL, 3*time.Second)
		if err != nil {
			t.Errorf("honest client %s: %v", when, err)
		} else {
			t.Logf("honest client %s: answered in %v (%d attempts)", when, d.Round(time.Millisecond), attempts)
		}
		return err
	}
	alive := func(when string) {
		t.Helper()
		if srv.exited() {
			t.Fatalf("the server exited %s: %v", when, srv.cmd.ProcessState)
		}
	}
	// write runs fill on each hostile conn at once and flushes it, within 30 s.
	write := func(hs []*hostileConn, fill func(h *hostileConn) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, len(hs))
		for i, h := range hs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = h.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
				if errs[i] = fill(h); errs[i] == nil {
					errs[i] = h.w.Flush()
				}
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("hostile session %d: %v", i, err)
			}
		}
	}
	dialAll := func(n int) []*hostileConn {
		hs := make([]*hostileConn, n)
		for i := range hs {
			hs[i] = dialHostile(t, srv.addr, tlsCfg.Clone())
		}
		return hs
	}
	closeAll := func(hs []*hostileConn) {
		for _, h := range hs {
			h.close()
		}
	}
	// (a) 4 sessions × 1,000 streams, each 64 KiB − 1 byte of a 64 KiB header.
	// Four sessions is what it takes to claim every admission token with headers
	// that never end: ceil(MaxStreams 100 / MaxPendingStreams 32).
	{
		const sessions, perSession = 4, 1000
		rss.enter("a")
		start := time.Now()
		hs := dialAll(sessions)
		payload := slowHeader()
		write(hs, func(h *hostileConn) error {
			for range perSession {
				if err := h.openSlow(payload); err != nil {
					return err
				}
			}
			return nil
		})
		c := sumCounts(hs)
		t.Logf("(a) %d streams × %d bytes written in %v; so far: %v", sessions*perSession, len(payload),
			time.Since(start).Round(time.Millisecond), c)

		// During: the slow headers are held until the header timeout (5 s) resets
		// them with "cancel".
		err := honestCheck("during (a), slow headers held")
		c = sumCounts(hs)
		if n := c.resets[resetCancel]; err == nil && n > 0 {
			t.Errorf("(a) the honest check ended after %d slow headers had timed out: not while they were held", n)
		}
		t.Logf("(a) %.1fs into the phase, %d streams neither reset nor answered: %v",
			time.Since(start).Seconds(), int64(sessions*perSession)-c.rstTotal, c)
		if err != nil {
			// How long the honest client stays locked out: streams queued in
			// yamux behind the pending ones take each token a timeout frees.
			d, attempts, err := honestGet(honest, target.URL, 15*time.Second)
			c = sumCounts(hs)
			t.Logf("(a) honest client, retrying: %v after %v (%d attempts), %.1fs into the phase; %d streams neither reset nor answered: %v",
				err, d.Round(time.Millisecond), attempts, time.Since(start).Seconds(), int64(sessions*perSession)-c.rstTotal, c)
		}
		alive("in phase (a)")
		closeAll(hs)
		_ = honestCheck("after (a)")
		alive("after phase (a)")
		t.Logf("(a) took %v; server peak VmRSS %.1f MiB", time.Since(start).Round(time.Millisecond), float64(rss.peak("a"))/mib)
	}

	// (b) 100,000 streams that send nothing, over two sessions.
	{
		const sessions, perSession = 2, 50_000
		rss.enter("b")
		start := time.Now()
		hs := dialAll(sessions)
		write(hs, func(h *hostileConn) error {
			for range perSession {
				if err := h.openEmpty(); err != nil {
					return err
				}
			}
			return nil
		})
		written := time.Since(start)
		// The streams past what a session may hold are reset at once; the rest
		// wait for their header timeout, 32 at a time per session.
		rst := waitSettled(10*time.Second, 500*time.Millisecond, func() int64 { return sumCounts(hs).rstTotal })
		t.Logf("(b) %d empty streams written in %v; resets settled at %d after %v: %v", sessions*perSession,
			written.Round(time.Millisecond), rst, time.Since(start).Round(time.Millisecond), sumCounts(hs))
		alive("in phase (b)")
		_ = honestCheck("during (b), empty streams held")
		closeAll(hs)
		_ = honestCheck("after (b)")
		alive("after phase (b)")
		t.Logf("(b) took %v; server peak VmRSS %.1f MiB", time.Since(start).Round(time.Millisecond), float64(rss.peak("b"))/mib)
	}

	// (c) 1,000,000 pings on one session, written as fast as the connection takes them.
	{
		const pings = 1_000_000
		rss.enter("c")
		start := time.Now()
		hs := dialAll(1)
		write(hs, func(h *hostileConn) error {
			for i := range pings {
				if err := h.ping(uint32(i)); err != nil {
					return err
				}
			}
			return nil
		})
		written := time.Since(start)
		pongs := waitSettled(15*time.Second, 500*time.Millisecond, func() int64 { return sumCounts(hs).pongs })
		t.Logf("(c) %d pings written in %v; %d pongs read by %v: %v", pings, written.Round(time.Millisecond),
			pongs, time.Since(start).Round(time.Millisecond), sumCounts(hs))
		alive("in phase (c)")
		_ = honestCheck("during (c), ping session open")
		closeAll(hs)
		_ = honestCheck("after (c)")
		alive("after phase (c)")
		t.Logf("(c) took %v; server peak VmRSS %.1f MiB", time.Since(start).Round(time.Millisecond), float64(rss.peak("c"))/mib)
	}

	rss.enter("end")
	if err := rss.finish(); err != nil {
		t.Errorf("sampling the server's VmRSS: %v", err)
	}
	hwm, err := vmHWM(pid)
	if err != nil {
		t.Fatalf("server VmHWM: %v", err)
	}
	t.Logf("flood took %v; server peak VmRSS sampled: (a) %.1f MiB, (b) %.1f MiB, (c) %.1f MiB, at the end %.1f MiB; VmHWM %.1f MiB",
		time.Since(testStart).Round(time.Millisecond), float64(rss.peak("a"))/mib, float64(rss.peak("b"))/mib,
		float64(rss.peak("c"))/mib, float64(rss.peak("end"))/mib, float64(hwm)/mib)
	for _, phase := range []string{"a", "b", "c", "end"} {
		if p := rss.peak(phase); p > floodRSSBound {
			t.Errorf("phase %s: server VmRSS reached %.1f MiB, over the bound of %d MiB", phase, float64(p)/mib, floodRSSBound/mib)
		}
	}
	if hwm > floodRSSBound {
		t.Errorf("server VmHWM %.1f MiB, over the bound of %d MiB", float64(hwm)/mib, floodRSSBound/mib)
	}
	alive("at the end")

	// Every client gone, the server must count no stream in flight and stop
	// within its shutdown timeout (10 s).
	_ = honest.Close()
	srv.signal(syscall.SIGTERM)
	stopping := time.Now()
	if e, ok := srv.stderr.waitEntry(srv.done, 5*time.Second, msgIs("shutting down: draining streams")); !ok {
		t.Errorf("the server did not log its shutdown")
	} else if n, _ := e["active_streams"].(float64); n != 0 {
		t.Errorf("with no client connected, the server counts %v streams active at shutdown: admission tokens (max_connections) leaked", n)
	}
	select {
	case <-srv.done:
		t.Logf("the server stopped %v after SIGTERM", time.Since(stopping).Round(time.Millisecond))
	case <-time.After(12 * time.Second):
		// Ask the Go runtime where it is stuck: SIGQUIT dumps every goroutine.
		srv.signal(syscall.SIGQUIT)
		<-srv.done
		dump := srv.stderr.String()
		t.Errorf("the server did not stop within 12 s of SIGTERM (shutdown timeout 10 s); goroutine dump: %d goroutines, %d in serveStream (%d at tunnel/server_stream.go:58, releasing the pending slot after the request frame)",
			strings.Count(dump, "\ngoroutine "), strings.Count(dump, "tunnel.(*Server).serveStream("), strings.Count(dump, "tunnel/server_stream.go:58 "))
	}
	t.Logf("server stderr: %s", logs.summary())
}
