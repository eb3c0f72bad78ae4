//go:build linux

package tunnel

import (
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

// TestUnsentFollowsStreams: the server's socket lets maxUnsentAlone bytes wait
// unsent while the server serves one stream over a fast link, what leaves in
// aloneDrain over a slow one, and maxUnsent while it serves more (an
// interactive stream's frames then wait behind less of a download).
func TestUnsentFollowsStreams(t *testing.T) {
	addr, _ := testbin.DiscardTarget(t, 0)
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cork := &corkConn{Conn: raw, unsent: newUnsentLimit(raw, maxUnsent)}
	lowat := func() int {
		t.Helper()
		rc, err := raw.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var gerr error
		if err := rc.Control(func(fd uintptr) {
			v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpNotSentLowat)
		}); err != nil || gerr != nil {
			t.Fatal(err, gerr)
		}
		return v
	}
	if got := lowat(); got != maxUnsent {
		t.Fatalf("unsent bound at start %d, want %d", got, maxUnsent)
	}
	// As newMux builds it over the server's TLS conn (the cork under it).
	var streams atomic.Int64
	var rate atomic.Uint64
	bc := newBatchConn(corked{Conn: cork, cork: cork}, true, nil, func() int { return int(streams.Load()) })
	defer bc.Close()
	bc.mu.Lock()
	bc.rateOf = rate.Load // the kernel's own estimate: TestDeliveryRate
	bc.mu.Unlock()
	const fast, slow = 2e9, 6e6 // bytes per second
	for _, tc := range []struct {
		streams int64
		rate    uint64
		want    int
	}{{1, fast, maxUnsentAlone}, {2, fast, maxUnsent}, {0, fast, maxUnsentAlone}, {1, slow, maxUnsent},
		{1, 100e6, 800000}, {5, fast, maxUnsent}} {
		streams.Store(tc.streams)
		rate.Store(tc.rate)
		bc.mu.Lock()
		bc.rateAt = time.Time{} // read the rate at the next flush
		bc.mu.Unlock()
		// The flush after this write sets the bound; the one after the next
		// has surely run by the time that write is taken.
		for range 2 {
			if _, err := bc.Write(make([]byte, 32<<10)); err != nil {
				t.Fatal(err)
			}
		}
		bc.mu.Lock()
		for len(bc.pending) > 0 {
			bc.cond.Wait()
		}
		bc.mu.Unlock()
		if got := lowat(); got != tc.want {
			t.Errorf("%d streams at %d B/s: unsent bound %d, want %d", tc.streams, tc.rate, got, tc.want)
		}
	}
}

// corked is a conn over a corkConn, found the way a TLS conn's is (NetConn).
type corked struct {
	net.Conn
	cork *corkConn
}

func (c corked) NetConn() net.Conn { return c.cork }

// TestDeliveryRate: after a few MiB to a local reader the kernel has a
// delivery rate for the conn, which the server's bounds follow.
func TestDeliveryRate(t *testing.T) {
	addr, _ := testbin.DiscardTarget(t, 0)
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	u := newUnsentLimit(raw, maxUnsent)
	if u == nil {
		t.Fatal("no unsent limit on a TCP conn")
	}
	buf := make([]byte, 64<<10)
	for range 64 {
		if _, err := raw.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if r := u.deliveryRate(); r == 0 {
		t.Fatal("no delivery rate after 4 MiB")
	} else {
		t.Logf("delivery rate %d B/s: unsent bound alone %d", r, unsentFor(1, r))
	}
}
