package tunnel

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"testing"
)

// writeCounter counts the writes that reach the socket.
type writeCounter struct {
	net.Conn
	writes *atomic.Int64
}

func (c writeCounter) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

type writeCountingDialer struct{ writes *atomic.Int64 }

func (d writeCountingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return writeCounter{Conn: c, writes: d.writes}, nil
}

// TestAgentCorksRecords: the agent's session over DialTLS sends a flush's TLS
// records in few writes (corkConn under the TLS conn), not one per 16 KiB
// record, which is what an upload cost in system calls.
func TestAgentCorksRecords(t *testing.T) {
	p := sharedPKI(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", NewServerTLSConfig(p.server, p.pool))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const size = 1 << 20
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		n, _ := io.CopyN(io.Discard, c, size)
		got <- n
	}()
	var writes atomic.Int64
	conn, err := DialTLSWith(context.Background(), writeCountingDialer{&writes}, ln.Addr().String(), NewClientTLSConfig(p.client, p.pool, DefaultServerName))
	if err != nil {
		t.Fatal(err)
	}
	// As newSession wraps it.
	bc := newBatchConn(&recordingConn{Conn: conn}, false, nil, nil)
	defer bc.Close()
	if bc.cork == nil {
		t.Fatal("the agent's batching writer found no corkConn under DialTLS's conn")
	}
	before := writes.Load()
	if _, err := bc.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	if n := <-got; n != size {
		t.Fatalf("server read %d of %d bytes", n, size)
	}
	// 64 records of 16 KiB; corked, at most one write per maxCorked bytes
	// gathered, and the flush's end.
	if w := writes.Load() - before; w > size/maxCorked+2 {
		t.Errorf("%d writes for %d bytes, want at most %d", w, size, size/maxCorked+2)
	}
}

// TestPendingLimitFollowsStreams: the server gathers up to maxPending for
// its flusher while it serves one stream over a fast link, what leaves in
// aloneDrain over a slower one, and maxPendingServer while it serves more (an
// interactive stream's frames then wait behind less); the agent always
// maxPending.
func TestPendingLimitFollowsStreams(t *testing.T) {
	var streams atomic.Int64
	count := func() int { return int(streams.Load()) }
	const loopback, wan, slow = 2e9, 64e6, 6e6 // bytes per second
	for _, tc := range []struct {
		name    string
		server  bool
		count   func() int
		streams int64
		rate    uint64
		want    int
	}{
		{"server, one stream, loopback", true, count, 1, loopback, maxPending},
		{"server, none, loopback", true, count, 0, loopback, maxPending},
		{"server, one stream, 64 MB/s", true, count, 1, wan, 512000},
		{"server, one stream, 6 MB/s", true, count, 1, slow, maxPendingServer},
		{"server, one stream, rate not known yet", true, count, 1, 0, maxPendingServer},
		{"server, two streams, loopback", true, count, 2, loopback, maxPendingServer},
		{"server, no count", true, nil, 0, loopback, maxPendingServer},
		{"agent", false, nil, 0, loopback, maxPending},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c1, c2 := net.Pipe()
			defer c2.Close()
			bc := newBatchConn(c1, tc.server, nil, tc.count)
			defer bc.Close()
			streams.Store(tc.streams)
			bc.mu.Lock()
			bc.rate = tc.rate
			got := bc.pendingLimit()
			bc.mu.Unlock()
			if got != tc.want {
				t.Errorf("pending limit %d, want %d", got, tc.want)
			}
		})
	}
}
