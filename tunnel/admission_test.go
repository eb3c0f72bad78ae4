package tunnel

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-yamux/v5"
)

// TestClosedSessionLeaksNoSlot: a session that ends with streams still queued
// in yamux (more than MaxPendingStreams, none sending its frame) leaves no
// MaxStreams slot and no goroutine behind, however often it happens.
func TestClosedSessionLeaksNoSlot(t *testing.T) {
	cfg := DefaultServerConfig()
	cfg.Logger = testLogger(t)
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		c1, c2 := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = srv.ServeConn(context.Background(), c2)
		}()
		ycfg := yamux.DefaultConfig()
		ycfg.LogOutput = yamuxLog{log: testLogger(t)}
		mux, err := yamux.Client(c1, ycfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		for range 200 {
			if _, err := mux.OpenStream(context.Background()); err != nil {
				break
			}
		}
		_ = mux.Close()
		<-done
	}
	waitFor(t, 5*time.Second, "every slot back", func() bool { return srv.ActiveStreams() == 0 && len(srv.streams) == 0 })
	closed := make(chan struct{})
	go func() { _ = srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Server.Close still waiting for stream goroutines 5s later")
	}
}

// TestFreshStreamPushesOutStaleHeader: with every slot held by streams that
// never send their frame, a new stream waits no longer than staleHeader: it
// pushes the oldest out (reset as refused) and is served.
func TestFreshStreamPushesOutStaleHeader(t *testing.T) {
	h := newHarness(t, overPipe, func(c *ServerConfig) { c.MaxStreams = 4; c.HeaderTimeout = time.Minute })
	tgt := target(t)
	sess, err := h.client.session(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var silent []*stream
	for range 4 {
		st, err := sess.open(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = st.Write([]byte("FLDY")) // a frame begun, never finished
		silent = append(silent, st)
	}
	defer func() {
		for _, st := range silent {
			_ = st.Close()
		}
	}()
	waitFor(t, 5*time.Second, "all slots held", func() bool { return h.server.ActiveStreams() == 4 })
	time.Sleep(staleHeader) // the held streams become stale
	resp, err := h.client.RoundTrip(mustRequest("GET", tgt.URL+"/hello"))
	if err != nil {
		t.Fatalf("fresh request while stale headers hold every slot: %v", err)
	}
	resp.Body.Close()
	if got := h.server.ActiveStreams(); got > 4 {
		t.Fatalf("%d active streams, more than max_connections", got)
	}
}
