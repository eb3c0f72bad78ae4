package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-yamux/v5"

	"github.com/fluidity-tunnel/fluidity/internal/relay"
)

// TestGateWaitEnds: a bulk stream's write waiting at a shut send gate ends as
// a write waiting inside yamux does, at the moment it should: at the write
// deadline (yamux's timeout error), also when the deadline moves while it
// waits; at the stream's Close; at a reset by the peer that a read found; and
// when the session ends. Fake time (synctest): the write starts at 0, act
// runs at 500 ms.
func TestGateWaitEnds(t *testing.T) {
	const ms = time.Millisecond
	var (
		timeout = func(t *testing.T, err error) {
			t.Helper()
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, yamux.ErrTimeout) {
				t.Errorf("err = %v, want yamux's timeout (a net.Error with Timeout true)", err)
			}
		}
		closed = func(t *testing.T, err error) {
			t.Helper()
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("err = %v, want net.ErrClosed", err)
			}
		}
		passed = func(t *testing.T, err error) {
			t.Helper()
			if err != nil {
				t.Errorf("err = %v, want the write to pass", err)
			}
		}
	)
	tests := []struct {
		name   string
		before func(w *gateWaitRig) // before the write, at 0
		act    func(w *gateWaitRig) // at 500 ms, while the write waits
		want   time.Duration        // when the write returns
		check  func(*testing.T, error)
	}{
		{
			name:  "the gate opens",
			act:   func(w *gateWaitRig) { w.open() },
			want:  500 * ms,
			check: passed,
		},
		{
			name:   "write deadline",
			before: func(w *gateWaitRig) { _ = w.st.SetWriteDeadline(w.start.Add(time.Second)) },
			want:   time.Second,
			check:  timeout,
		},
		{
			name:   "SetDeadline's write deadline",
			before: func(w *gateWaitRig) { _ = w.st.SetDeadline(w.start.Add(time.Second)) },
			want:   time.Second,
			check:  timeout,
		},
		{
			name:   "deadline already passed",
			before: func(w *gateWaitRig) { _ = w.st.SetWriteDeadline(w.start.Add(-ms)) },
			want:   0,
			check:  timeout,
		},
		{
			name:   "deadline extended while waiting",
			before: func(w *gateWaitRig) { _ = w.st.SetWriteDeadline(w.start.Add(time.Second)) },
			act:    func(w *gateWaitRig) { _ = w.st.SetWriteDeadline(w.start.Add(3 * time.Second)) },
			want:   3 * time.Second,
			check:  timeout,
		},
		{
			name:   "deadline brought forward while waiting",
			before: func(w *gateWaitRig) { _ = w.st.SetWriteDeadline(w.start.Add(3 * time.Second)) },
			act:    func(w *gateWaitRig) { _ = w.st.SetWriteDeadline(w.start.Add(time.Second)) },
			want:   time.Second,
			check:  timeout,
		},
		{
			name:  "deadline set in the past while waiting",
			act:   func(w *gateWaitRig) { _ = w.st.SetWriteDeadline(w.start) },
			want:  500 * ms,
			check: timeout,
		},
		{
			name:   "deadline cleared while waiting, then the gate opens",
			before: func(w *gateWaitRig) { _ = w.st.SetWriteDeadline(w.start.Add(time.Second)) },
			act: func(w *gateWaitRig) {
				_ = w.st.SetWriteDeadline(time.Time{})
				time.Sleep(2 * time.Second)
				w.open()
			},
			want:  2500 * ms,
			check: passed,
		},
		{
			name: "deadline passed, then extended, then the gate opens",
			// The first write ends at its deadline; the next one, after the
			// deadline moved on, waits for the gate as if none had passed.
			before: func(w *gateWaitRig) {
				_ = w.st.SetWriteDeadline(w.start.Add(-ms))
				_, err := w.st.Write(w.p)
				timeout(w.t, err)
				_ = w.st.SetWriteDeadline(w.start.Add(time.Second))
			},
			act:   func(w *gateWaitRig) { w.open() },
			want:  500 * ms,
			check: passed,
		},
		{
			name:  "Close from another goroutine",
			act:   func(w *gateWaitRig) { _ = w.st.Close() },
			want:  500 * ms,
			check: closed,
		},
		{
			name:   "Close with a deadline pending",
			before: func(w *gateWaitRig) { _ = w.st.SetWriteDeadline(w.start.Add(time.Second)) },
			act:    func(w *gateWaitRig) { _ = w.st.Close() },
			want:   500 * ms,
			check:  closed,
		},
		{
			name:  "reset by the stream's own side",
			act:   func(w *gateWaitRig) { _ = w.st.reset(1) },
			want:  500 * ms,
			check: closed,
		},
		{
			name: "reset by the peer, found by a read",
			before: func(w *gateWaitRig) {
				w.wg.Go(func() { _, _ = io.Copy(io.Discard, w.st) })
			},
			act:  func(w *gateWaitRig) { _ = w.peer.ResetWithError(2) },
			want: 500 * ms,
			check: func(t *testing.T, err error) {
				var re *resetError
				if !errors.As(err, &re) || re.Code != 2 || !errors.Is(err, ErrStreamReset) {
					t.Errorf("err = %v, want the peer's reset with code 2", err)
				}
			},
		},
		{
			name: "the session ends",
			act:  func(w *gateWaitRig) { _ = w.client.Close() },
			want: 500 * ms,
			check: func(t *testing.T, err error) {
				var ne net.Error
				if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
					t.Errorf("err = %v, want the session's end", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newGateWaitRig(t)
				if tt.before != nil {
					tt.before(w)
				}
				done := make(chan time.Duration, 1)
				var err error
				w.wg.Go(func() {
					_, err = w.st.Write(w.p)
					done <- time.Since(w.start)
				})
				time.Sleep(500 * ms)
				if tt.act != nil {
					tt.act(w)
				}
				var got time.Duration
				select {
				case got = <-done:
				case <-time.After(time.Minute):
					t.Fatal("the write still waits at the shut gate after a minute")
				}
				if got != tt.want {
					t.Errorf("the write returned after %v, want %v", got, tt.want)
				}
				tt.check(t, err)
			})
		})
	}
}

// gateWaitRig is a bulk stream of a client session whose send gate is shut,
// and the server's end of it.
type gateWaitRig struct {
	t      *testing.T
	client *yamux.Session
	gate   *sendGate
	st     *stream
	peer   *yamux.Stream
	wg     *sync.WaitGroup
	start  time.Time
	p      []byte
}

func newGateWaitRig(t *testing.T) *gateWaitRig {
	gate := newSendGate()
	peers := make(chan *yamux.Stream, 1)
	client, wg := gatePair(t, gate, nil, func(_ byte, st *yamux.Stream) {
		peers <- st
		_, _ = io.Copy(io.Discard, st)
	})
	ys, err := client.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st := newStream(ys, gate)
	t.Cleanup(func() { _ = st.Close() })
	// A first byte, through the open gate, for the server to accept the
	// stream; then the gate shuts and the stream counts as bulk.
	if _, err := st.Write([]byte{'x'}); err != nil {
		t.Fatal(err)
	}
	peer := <-peers
	synctest.Wait()
	gate.submitted(gateLimit + 1)
	st.pace.start, st.pace.cur = time.Now(), bulkBytes
	return &gateWaitRig{t: t, client: client, gate: gate, st: st, peer: peer, wg: wg, start: time.Now(), p: make([]byte, 1<<10)}
}

// open opens the gate: the bytes that shut it have left.
func (w *gateWaitRig) open() { w.gate.drained(gateLimit + 1) }

// TestGateWaitRelayIdle: a relay whose copy into a stream waits at the shut
// send gate ends at its idle timeout, when it closes both sides; before, the
// Close did not reach the write and the relay waited for the session's queue
// to drain.
func TestGateWaitRelayIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newGateWaitRig(t)
		local, remote := net.Pipe()
		defer remote.Close()
		w.wg.Go(func() { _, _ = remote.Write(w.p) })
		res := relay.Run(relay.AsConn(local), w.st, relay.Options{IdleTimeout: time.Second})
		if got := time.Since(w.start); got != time.Second {
			t.Errorf("the relay ended after %v, want its idle timeout, 1s", got)
		}
		if !errors.Is(res.Err, relay.ErrIdle) {
			t.Errorf("relay error %v, want %v", res.Err, relay.ErrIdle)
		}
	})
}
