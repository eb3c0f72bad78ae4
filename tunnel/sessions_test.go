package tunnel

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// liveSessions returns the client's live sessions, lane by lane (nil for a lane
// that is down).
func liveSessions(c *Client) []*session {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*session, len(c.lanes))
	for i, l := range c.lanes {
		if l.live() {
			out[i] = l.sess
		}
	}
	return out
}

func waitSessionsUp(t *testing.T, c *Client) []*session {
	t.Helper()
	if _, err := c.session(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		ss := liveSessions(c)
		up := 0
		for _, s := range ss {
			if s != nil {
				up++
			}
		}
		if up == len(ss) {
			return ss
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d sessions up", up, len(ss))
		}
	}
}

// dialerFunc makes a function a ContextDialer.
type dialerFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func (f dialerFunc) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return f(ctx, network, addr)
}

// TestNewStreamAvoidsBusySession: with two sessions, a stream opened while a bulk
// download or upload runs goes to the other session, so its bytes never queue
// behind the transfer's in one connection.
//
// The load estimate samples bytes moved every sampleEvery, so the test runs on
// synctest's fake clock: everything is in memory (net.Pipe between client and
// server, an in-memory target behind the server's Dialer), and the transfer is
// paced in fake time (32 KiB a millisecond) so that the clock can advance.
// Lane choice counts bytes above the transport (recordingConn), so pipes alone
// cover it.
func TestNewStreamAvoidsBusySession(t *testing.T) {
	for _, upload := range []bool{false, true} {
		t.Run(map[bool]string{false: "download", true: "upload"}[upload], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { newStreamAvoidsBusySession(t, upload) })
		})
	}
}

func newStreamAvoidsBusySession(t *testing.T, upload bool) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// A stream that sends "b" is a download, one that sends "u" an
	// upload; the others stay idle.
	target := dialerFunc(func(context.Context, string, string) (net.Conn, error) {
		c, peer := net.Pipe()
		wg.Go(func() {
			<-stop
			peer.Close()
		})
		wg.Go(func() {
			var first [1]byte
			if _, err := io.ReadFull(peer, first[:]); err != nil {
				return
			}
			if first[0] == 'u' {
				_, _ = io.Copy(io.Discard, peer)
				return
			}
			if first[0] != 'b' {
				return
			}
			pacedWrites(peer, stop)
		})
		return c, nil
	})
	h := newHarness(t, overPipe, func(c *ServerConfig) { c.Dialer = target })
	// Cleanups run last-registered first: stop the target before the
	// harness closes, and wait for its goroutines.
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { close(stop) })
	sessions := waitSessionsUp(t, h.client)
	if len(sessions) != 2 {
		t.Fatalf("%d sessions, want the default 2", len(sessions))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func() net.Conn {
		t.Helper()
		c, err := h.client.DialContext(ctx, "tcp", "127.0.0.1:9")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// Both sessions idle: the first stream takes the first session, the
	// download the other (fewer streams).
	dial()
	bulk := dial()
	if n := sessions[1].NumStreams(); n != 1 {
		t.Fatalf("the second stream went to the busier session (%d/%d streams)", sessions[0].NumStreams(), n)
	}
	if !upload {
		if _, err := bulk.Write([]byte("b")); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { _, _ = io.Copy(io.Discard, bulk) })
	} else {
		if _, err := bulk.Write([]byte("u")); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { pacedWrites(bulk, stop) })
	}
	// Once the transfer shows in a load sample, new streams go to the first
	// session even as it holds more streams (idle ones) than the second.
	time.Sleep(3 * sampleEvery)
	for i := 2; i <= 4; i++ {
		dial()
		time.Sleep(sampleEvery / 2)
		if n := sessions[0].NumStreams(); n != i {
			t.Fatalf("stream %d went next to the transfer: %d streams on the idle session, want %d", i+1, n, i)
		}
	}
	if n := sessions[1].NumStreams(); n != 1 {
		t.Errorf("the transfer's session carries %d streams, want 1", n)
	}
}

// pacedWrites writes 32 KiB to w every (fake) millisecond until a write fails
// or stop is closed: a transfer whose bytes the clock can see move.
func pacedWrites(w io.Writer, stop <-chan struct{}) {
	buf := make([]byte, 32<<10)
	for {
		if _, err := w.Write(buf); err != nil {
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// blackHoleConn swallows writes once hole is set, like a path that went dead
// without a reset: no ping gets through, so none is answered.
type blackHoleConn struct {
	net.Conn
	hole *atomic.Bool
}

func (c blackHoleConn) Write(p []byte) (int, error) {
	if c.hole.Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// TestFailedSessionPingsSiblings: when one session fails, the others are checked at
// once; one that does not answer is closed within a write timeout, not left until
// its next keepalive (an hour here).
func TestFailedSessionPingsSiblings(t *testing.T) {
	var (
		mu    sync.Mutex
		raws  []net.Conn
		holes []*atomic.Bool
	)
	h := newHarnessWith(t, overTCP, func(c *ServerConfig) {
		c.Session.KeepAliveInterval = time.Hour
	}, func(c *ClientConfig) {
		c.Session.KeepAliveInterval = time.Hour
		c.Session.WriteTimeout = 300 * time.Millisecond
		dial := c.Dial
		c.Dial = func(ctx context.Context) (net.Conn, error) {
			conn, err := dial(ctx)
			if err != nil {
				return nil, err
			}
			hole := new(atomic.Bool)
			mu.Lock()
			raws, holes = append(raws, conn), append(holes, hole)
			mu.Unlock()
			return blackHoleConn{Conn: conn, hole: hole}, nil
		}
	})
	sessions := waitSessionsUp(t, h.client)
	mu.Lock()
	if len(raws) != 2 {
		mu.Unlock()
		t.Fatalf("%d connections, want 2", len(raws))
	}
	// Which connection is which session's does not matter: one breaks outright,
	// the other goes silent.
	holes[1].Store(true)
	broken := time.Now()
	_ = raws[0].Close()
	mu.Unlock()
	for i, s := range sessions {
		select {
		case <-s.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("session %d still up 5s after its sibling failed", i)
		}
	}
	took := time.Since(broken)
	t.Logf("both sessions down %v after one failed", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("the silent session was closed after %v, want about the write timeout (300ms)", took)
	}
	var pinged bool
	for _, s := range sessions {
		if err := s.Err(); err != nil && strings.Contains(err.Error(), "ping after a sibling session failed") {
			pinged = true
		}
	}
	if !pinged {
		t.Errorf("no session ended for want of a ping answer: %v / %v", sessions[0].Err(), sessions[1].Err())
	}
}

// TestStalledStreamHoldsUpNothing: a stream whose reader stops (its window full,
// its sender blocked) leaves the other streams of the same session moving; yamux
// flow control is per stream (the package documentation says so).
func TestStalledStreamHoldsUpNothing(t *testing.T) {
	for _, kind := range allTransports {
		t.Run(string(kind), func(t *testing.T) {
			h := newHarnessWith(t, kind, nil, func(c *ClientConfig) { c.Sessions = 1 })
			ln := listen(t)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			defer wg.Wait()
			defer ln.Close()
			defer close(stop)
			wg.Go(func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Go(func() { <-stop; c.Close() })
				buf := make([]byte, 32<<10)
				for {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			stalled, err := h.client.DialContext(ctx, "tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer stalled.Close()
			// Never read stalled: give the target time to fill its window.
			time.Sleep(200 * time.Millisecond)
			tgt := target(t)
			for i := range 20 {
				resp, err := h.client.RoundTrip(mustRequest("GET", tgt.URL+"/hello").WithContext(ctx))
				if err != nil {
					t.Fatalf("request %d next to a stalled stream: %v", i, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != "hello" {
					t.Fatalf("request %d: %q", i, b)
				}
			}
		})
	}
}

// TestLaneLoadForgetsByTime: a lane's load estimate weighs samples by the time
// they cover: one quiet sample halves it (a pause still looks busy), and a lane
// quiet for a second looks idle at its next pick, however rarely it was picked.
func TestLaneLoadForgetsByTime(t *testing.T) {
	conn := &recordingConn{}
	l := &lane{sess: &session{conn: conn}}
	start := time.Unix(1000, 0)
	l.load(start)
	conn.moved.Store(10 << 20) // 10 MiB in one sample
	busy := l.load(start.Add(sampleEvery))
	if busy <= 0 {
		t.Fatalf("load %v after 10 MiB, want positive", busy)
	}
	if got := l.load(start.Add(2 * sampleEvery)); got < busy/2*0.99 || got > busy/2*1.01 {
		t.Fatalf("one quiet sample: load %v, want half of %v", got, busy)
	}
	if got := l.load(start.Add(2*sampleEvery + time.Second)); got > busy/1e6 {
		t.Fatalf("after a quiet second: load %v, want about 0 (was %v)", got, busy)
	}
}
