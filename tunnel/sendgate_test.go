package tunnel

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-yamux/v5"
	"github.com/rs/zerolog"
)

// TestPaceBulk: a stream is bulk once it has written bulkBytes within about
// bulkWindow, and stops being bulk once it has written less than that over a
// window; a keep-alive stream of small requests never is.
func TestPaceBulk(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name  string
		every time.Duration // one write every
		size  int           // bytes per write
		n     int           // writes
		want  bool          // bulk after them
	}{
		{"download at 64 KiB a millisecond", ms, 64 << 10, 100, true},
		{"less than bulkBytes is not bulk yet", ms, 64 << 10, bulkBytes/(64<<10) - 1, false},
		{"small requests back to back", ms / 4, 300, 4000, false},
		{"a 200 KiB page in one burst", 0, 16 << 10, 12, false},
		{"just over bulkBytes in one window", 10 * ms, bulkBytes/4 + 1, 4, true},
		{"the same bytes spread over a second", 250 * ms, bulkBytes/4 + 1, 4, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p pace
			now := time.Unix(1000, 0)
			for range tt.n {
				p.bulk(now)
				p.wrote(tt.size)
				now = now.Add(tt.every)
			}
			if got := p.bulk(now); got != tt.want {
				t.Errorf("bulk = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("a pause ends it", func(t *testing.T) {
		var p pace
		now := time.Unix(1000, 0)
		for range 100 {
			p.bulk(now)
			p.wrote(64 << 10)
			now = now.Add(ms)
		}
		if !p.bulk(now) {
			t.Fatal("not bulk while downloading")
		}
		if p.bulk(now.Add(2 * bulkWindow)) {
			t.Error("still bulk after two idle windows")
		}
	})
}

// pacedConn reads at perMs bytes per (fake) millisecond: the end of a link
// slower than the streams writing to it, as a bulk transfer's is.
// Close ends a read's wait at once: yamux closes its conn while holding a
// lock that another of its goroutines waits for, and synctest's clock does
// not advance past a goroutine waiting for a lock.
type pacedConn struct {
	net.Conn
	perMs     int
	closed    chan struct{}
	closeOnce sync.Once
}

func newPacedConn(c net.Conn, perMs int) *pacedConn {
	return &pacedConn{Conn: c, perMs: perMs, closed: make(chan struct{})}
}

func (c *pacedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	select {
	case <-time.After(time.Duration(n) * time.Millisecond / time.Duration(c.perMs)):
	case <-c.closed:
	}
	return n, err
}

func (c *pacedConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// TestSendGateInteractiveFirst pins the write path's scheduling decision: on a
// session whose link several bulk streams keep busy, a small write of an
// interactive stream waits behind at most the gate's bytes of bulk data (and
// the connection's own buffer), not behind yamux's whole send queue. Without
// the gate it waited behind about 4 MiB. Fake time (synctest): the link
// moves 64 KiB a millisecond, so the wait in milliseconds is the bulk data
// ahead of the small write in 64 KiB units.
func TestSendGateInteractiveFirst(t *testing.T) {
	for _, gated := range []bool{true, false} {
		name := map[bool]string{true: "gated", false: "ungated"}[gated]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				wait := interactiveWait(t, gated)
				t.Logf("%s: the small write arrived after %v", name, wait)
				// Ahead of it at most: the gate's bytes and a frame from each
				// bulk stream passing it together, in yamux's queue; the
				// batchConn's buffer and the flush in progress, each up to
				// its bound and a frame.
				ahead := gateLimit + bulkStreams*gateChunk + 2*(maxPending+gateChunk)
				if bound := time.Duration(ahead) * time.Millisecond / (64 << 10); gated && wait > bound {
					t.Errorf("the small write waited %v behind bulk data, want at most %v", wait, bound)
				}
			})
		})
	}
}

// gatePair is a client session with gate (nil: none) and a server session
// over a pipe whose server end wrap (if not nil) wraps, the server serving
// each stream with serve, whose first byte it has read, on its own
// goroutine, in wg. It returns the client session and wg; at the end of the
// test the server closes first (the client's flusher then fails at once
// instead of waiting for a paced reader while its session holds a lock),
// then the client, and their goroutines are waited for.
func gatePair(t testing.TB, gate *sendGate, wrap func(net.Conn) net.Conn, serve func(first byte, st *yamux.Stream)) (*yamux.Session, *sync.WaitGroup) {
	t.Helper()
	cc, sc := net.Pipe()
	if wrap != nil {
		sc = wrap(sc)
	}
	budget := newReceiveBudget(1 << 30)
	client, err := newMux(cc, true, SessionConfig{}.yamuxConfig(zerolog.Nop(), newLogLimit(), 0), budget, nil, nil, gate)
	if err != nil {
		t.Fatal(err)
	}
	server, err := newMux(sc, false, SessionConfig{}.yamuxConfig(zerolog.Nop(), newLogLimit(), 64), budget, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	wg := &sync.WaitGroup{}
	t.Cleanup(func() {
		server.Close()
		client.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			st, err := server.AcceptStream()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer st.Close()
				var first [1]byte
				if _, err := io.ReadFull(st, first[:]); err == nil {
					serve(first[0], st)
				}
			})
		}
	})
	return client, wg
}

// bulkStreams is how many bulk streams interactiveWait runs.
const bulkStreams = 8

// interactiveWait runs bulkStreams bulk streams from a client session to a
// server session over a 64 KiB/ms link, then writes 100 bytes on another
// stream and returns how long they took to reach the server. Gated, it also
// checks every millisecond that the gate holds yamux's queue to its bound.
func interactiveWait(t *testing.T, gated bool) time.Duration {
	var gate *sendGate
	if gated {
		gate = newSendGate()
	}
	arrived := make(chan time.Time, 1)
	client, wg := gatePair(t, gate, func(c net.Conn) net.Conn { return newPacedConn(c, 64<<10) }, func(first byte, st *yamux.Stream) {
		if first == 'i' {
			arrived <- time.Now()
			return
		}
		_, _ = io.Copy(io.Discard, st)
	})
	open := func() *stream {
		st, err := client.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return newStream(st, gate)
	}
	chunk := make([]byte, 64<<10)
	chunk[0] = 'b'
	for range bulkStreams {
		st := open()
		wg.Go(func() {
			defer st.Close()
			for {
				if _, err := st.Write(chunk); err != nil {
					return
				}
			}
		})
	}
	// Long enough for every bulk stream to count as bulk and for the
	// queues to fill.
	// Each stream's first bulkBytes pass ungated; from then on the queue
	// holds at most the gate's bytes and a frame per bulk stream.
	time.Sleep(100 * time.Millisecond)
	var most int64
	for range 100 {
		time.Sleep(time.Millisecond)
		if gated {
			most = max(most, gate.queued.Load())
		}
	}
	if bound := int64(gateLimit + bulkStreams*gateChunk); most > bound {
		t.Errorf("%d bytes queued in yamux at most, want at most %d", most, bound)
	}
	small := make([]byte, 100)
	small[0] = 'i'
	st := open()
	defer st.Close()
	start := time.Now()
	if _, err := st.Write(small); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-arrived:
		return at.Sub(start)
	case <-time.After(time.Second):
		t.Fatal("the small write did not arrive within a second")
		return 0
	}
}

// TestSendGateStalledReaders: bulk streams whose readers stopped (their
// writes wait for window inside yamux) hold no place in the gate, so another
// bulk stream on the same session keeps moving.
func TestSendGateStalledReaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := newSendGate()
		const want = 8 << 20
		received := make(chan int64, 1)
		client, wg := gatePair(t, gate, nil, func(first byte, st *yamux.Stream) {
			if first != 'f' {
				return // a stalled reader: reads nothing more
			}
			n, _ := io.CopyN(io.Discard, st, want)
			received <- n
		})
		chunk := make([]byte, 64<<10)
		write := func(first byte, limit int) {
			st, err := client.OpenStream(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			s := newStream(st, gate)
			wg.Go(func() {
				// Not closed here: a close before the peer's FIN is a reset,
				// which may overtake the last bytes. The sessions' end closes
				// every stream.
				c := append([]byte{first}, chunk[1:]...)
				for sent := 0; limit == 0 || sent < limit; sent += len(c) {
					if _, err := s.Write(c); err != nil {
						return
					}
					c = chunk
				}
			})
		}
		// Enough stalled bulk streams to hold the gate shut, were a write
		// waiting for window counted in it.
		for range 2 * gateLimit / gateChunk {
			write('s', 0)
		}
		time.Sleep(100 * time.Millisecond)
		write('f', want+1)
		select {
		case n := <-received:
			if n != want {
				t.Fatalf("the flowing stream delivered %d of %d bytes", n, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the flowing stream stalled behind streams whose readers stopped (%d bytes queued)", gate.queued.Load())
		}
	})
}
