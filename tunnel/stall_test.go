package tunnel

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

// stallLog records the stalls an Observer is told of.
type stallLog struct {
	mu      sync.Mutex
	streams []streamStall
	conns   []time.Duration
}

type streamStall struct {
	kind    StreamKind
	blocked time.Duration
}

func (l *stallLog) observer() *Observer {
	return &Observer{
		StreamStall: func(k StreamKind, d time.Duration) {
			l.mu.Lock()
			l.streams = append(l.streams, streamStall{k, d})
			l.mu.Unlock()
		},
		ConnStall: func(d time.Duration) {
			l.mu.Lock()
			l.conns = append(l.conns, d)
			l.mu.Unlock()
		},
	}
}

// total sums the stalls of kind (and, for conns, all of them).
func (l *stallLog) total() (streams map[StreamKind]time.Duration, conns time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	streams = map[StreamKind]time.Duration{}
	for _, s := range l.streams {
		streams[s.kind] += s.blocked
	}
	for _, d := range l.conns {
		conns += d
	}
	return streams, conns
}

// pausedConn holds its reads while paused is open: a link that stops
// delivering what the peer sends.
type pausedConn struct {
	net.Conn
	mu     sync.Mutex
	paused chan struct{}
}

func (c *pausedConn) pause() {
	c.mu.Lock()
	c.paused = make(chan struct{})
	c.mu.Unlock()
}

func (c *pausedConn) resume() {
	c.mu.Lock()
	close(c.paused)
	c.paused = nil
	c.mu.Unlock()
}

func (c *pausedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	paused := c.paused
	c.mu.Unlock()
	if paused != nil {
		<-paused
	}
	return c.Conn.Read(p)
}

// TestStreamAndConnStalls makes transfers stall for real, each side held for
// one second of synctest's fake clock, and checks what the observers of both
// ends are told: a slow reader (the agent's, then the target) fills a stream's
// window and stalls that stream's writer only; a link that stops delivering
// stalls the connection writer and, once its queue is full, the streams behind
// it. A stream whose reader keeps up stalls nothing. Everything is in memory
// (net.Pipe between client and server, and to the target), so fake time
// measures exactly the hold: no stall is a scheduler's.
func TestStreamAndConnStalls(t *testing.T) {
	const (
		size = 1 << 20 // four times yamux's initial window
		hold = time.Second
	)
	for _, tc := range []struct {
		name string
		// upload: the agent sends, the target receives; else a download.
		upload bool
		// Which end holds for hold: the agent's reader of the stream, the
		// target's, or the link (the client's connection stops reading).
		readerHolds, targetHolds, linkHolds bool
		// The stalls expected, as totals: of the writing end's streams, and
		// of the server's connection writer.
		streamStall, connStall time.Duration
	}{
		{name: "download keeps up"},
		{name: "upload keeps up", upload: true},
		{name: "download slow reader", readerHolds: true, streamStall: hold},
		{name: "upload slow target", upload: true, targetHolds: true, streamStall: hold},
		{name: "download slow link", linkHolds: true, streamStall: hold, connStall: hold},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				payload := patterned(size)
				var wg sync.WaitGroup
				targetGot := make(chan []byte, 1)
				// The target waits for one byte ("g") before it sends, so
				// that the test sets up its hold first.
				target := dialerFunc(func(context.Context, string, string) (net.Conn, error) {
					c, peer := net.Pipe()
					wg.Go(func() {
						defer peer.Close()
						var g [1]byte
						if _, err := io.ReadFull(peer, g[:]); err != nil {
							return
						}
						if !tc.upload {
							_, _ = peer.Write(payload)
							return
						}
						if tc.targetHolds {
							time.Sleep(hold)
						}
						got := make([]byte, size)
						n, _ := io.ReadFull(peer, got)
						targetGot <- got[:n]
					})
					return c, nil
				})
				var cli, srv stallLog
				var link *pausedConn
				h := newHarnessWith(t, overPipe, func(c *ServerConfig) {
					c.Dialer = target
					c.Observer = srv.observer()
				}, func(c *ClientConfig) {
					c.Sessions = 1
					c.Observer = cli.observer()
					dial := c.Dial
					c.Dial = func(ctx context.Context) (net.Conn, error) {
						conn, err := dial(ctx)
						link = &pausedConn{Conn: conn}
						return link, err
					}
				})
				t.Cleanup(wg.Wait)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				conn, err := h.client.DialContext(ctx, "tcp", "127.0.0.1:9")
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				if tc.linkHolds {
					link.pause()
				}
				if _, err := conn.Write([]byte("g")); err != nil {
					t.Fatal(err)
				}
				if tc.upload {
					if _, err := conn.Write(payload); err != nil {
						t.Fatal(err)
					}
					if got := <-targetGot; !bytes.Equal(got, payload) {
						t.Fatalf("target received %d bytes, not the %d sent", len(got), size)
					}
				} else {
					if tc.readerHolds || tc.linkHolds {
						time.Sleep(hold)
					}
					if tc.linkHolds {
						link.resume()
					}
					got := make([]byte, size)
					if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got, payload) {
						t.Fatalf("download: %v", err)
					}
				}

				writer, reader := &srv, &cli
				if tc.upload {
					writer, reader = reader, writer
				}
				streams, _ := writer.total()
				if got := streams[KindConnect]; got != tc.streamStall || len(streams) > 1 {
					t.Errorf("the writing end's stream stalls: %v, want %v of connect", streams, tc.streamStall)
				}
				if streams, _ := reader.total(); len(streams) != 0 {
					t.Errorf("the reading end's streams stalled: %v", streams)
				}
				if _, sconns := srv.total(); sconns != tc.connStall {
					t.Errorf("the server's connection stalled %v, want %v", sconns, tc.connStall)
				}
				if _, cconns := cli.total(); cconns != 0 {
					t.Errorf("the client's connection stalled %v, want none", cconns)
				}
			})
		})
	}
}

// TestStreamStallOverTLS is the slow reader on the real clock, over mTLS and
// TCP: the agent reads a download only after a pause, and the server's writer
// is told it stalled for about that long (less the moment it took to fill the
// window), once or in a few writes.
func TestStreamStallOverTLS(t *testing.T) {
	const hold = 300 * time.Millisecond
	payload := patterned(1 << 20)
	addr := testbin.SendingTarget(t, payload)
	var srv stallLog
	h := newHarnessWith(t, overMTLS, func(c *ServerConfig) { c.Observer = srv.observer() }, nil)
	conn, err := h.client.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	time.Sleep(hold)
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("download: %v", err)
	}
	streams, _ := srv.total()
	t.Logf("server stream stalls: %v", srv.streams)
	if d := streams[KindConnect]; d < hold/3 || d > hold+5*time.Second || len(streams) != 1 {
		t.Errorf("server stream stalls %v, want about %v of connect", streams, hold)
	}
}
