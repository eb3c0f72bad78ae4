//go:build linux

package tunnel

import (
	"net"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

// TestUnsentFollowsStreams: the server's socket lets maxUnsentAlone bytes wait
// unsent while the server serves one stream, maxUnsent while it serves more
// (an interactive stream's frames then wait behind less of a download).
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
	bc := newBatchConn(corked{Conn: cork, cork: cork}, true, nil, func() int { return int(streams.Load()) })
	defer bc.Close()
	for _, tc := range []struct {
		streams int64
		want    int
	}{{1, maxUnsentAlone}, {2, maxUnsent}, {0, maxUnsentAlone}, {5, maxUnsent}} {
		streams.Store(tc.streams)
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
			t.Errorf("%d streams: unsent bound %d, want %d", tc.streams, got, tc.want)
		}
	}
}

// corked is a conn over a corkConn, found the way a TLS conn's is (NetConn).
type corked struct {
	net.Conn
	cork *corkConn
}

func (c corked) NetConn() net.Conn { return c.cork }
