package tunnel

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

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
				// Ahead of it at most: the gate's bytes and the frame that
				// entered last, in yamux's queue; the batchConn's buffer and
				// the flush in progress, each up to its bound and a frame.
				ahead := gateLimit + gateChunk + 2*(maxPending+gateChunk)
				if bound := time.Duration(ahead) * time.Millisecond / (64 << 10); gated && wait > bound {
					t.Errorf("the small write waited %v behind bulk data, want at most %v", wait, bound)
				}
			})
		})
	}
}

// interactiveWait runs 8 bulk streams from a client session to a server
// session over a 64 KiB/ms link, then writes 100 bytes on another stream and
// returns how long they took to reach the server.
func interactiveWait(t *testing.T, gated bool) time.Duration {
	const bulkStreams = 8
	cc, sc := net.Pipe()
	cfg := SessionConfig{}.yamuxConfig(zerolog.Nop(), newLogLimit(), 0)
	scfg := SessionConfig{}.yamuxConfig(zerolog.Nop(), newLogLimit(), 64)
	var gate *sendGate
	if gated {
		gate = newSendGate()
	}
	budget := newReceiveBudget(1 << 30)
	client, err := newMux(cc, true, cfg, budget, nil, nil, gate)
	if err != nil {
		t.Fatal(err)
	}
	server, err := newMux(newPacedConn(sc, 64<<10), false, scfg, budget, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer func() {
		// The server first: the client's flusher then fails at once instead
		// of waiting for the paced reader while its session holds a lock.
		server.Close()
		client.Close()
		wg.Wait()
	}()
	arrived := make(chan time.Time, 1)
	wg.Go(func() {
		for {
			st, err := server.AcceptStream()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer st.Close()
				var first [1]byte
				if _, err := io.ReadFull(st, first[:]); err != nil {
					return
				}
				if first[0] == 'i' {
					arrived <- time.Now()
					return
				}
				_, _ = io.Copy(io.Discard, st)
			})
		}
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
	time.Sleep(200 * time.Millisecond)
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
