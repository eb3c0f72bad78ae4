package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
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

// TestSequentialStreamsFitOneSlot: with max_connections 1, work done one piece
// after another is never refused over_capacity, whichever of the agent's
// sessions it goes to and whichever side ends it. The agent sees a stream end
// (the server's FIN) before the server's goroutine gives the slot back; before
// the full server waited for such a slot, a tight loop like this one was
// refused up to half the time.
func TestSequentialStreamsFitOneSlot(t *testing.T) {
	const rounds = 40
	for _, kind := range []transportKind{overPipe, overTCP} {
		t.Run(string(kind), func(t *testing.T) {
			h := newHarness(t, kind, func(c *ServerConfig) { c.MaxStreams = 1 })
			tgt := target(t)
			echo := rawTarget(t, func(c net.Conn) { // echoes until the agent's FIN, then hangs up
				b, _ := io.ReadAll(c)
				_, _ = c.Write(b)
			})
			hangUp := rawTarget(t, func(c net.Conn) { _, _ = io.WriteString(c, "bye") }) // speaks first, hangs up first
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			roundTrip := func(req *http.Request) error {
				resp, err := h.client.RoundTrip(req.WithContext(ctx))
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				_, err = io.Copy(io.Discard, resp.Body)
				return err
			}
			cases := []struct {
				name string
				run  func() error
			}{
				{"http", func() error { return roundTrip(mustRequest("GET", tgt.URL+"/hello")) }},
				{"http chunked", func() error { return roundTrip(mustRequest("GET", tgt.URL+"/stream")) }},
				{"http with body", func() error {
					req, _ := http.NewRequest("POST", tgt.URL+"/echo", strings.NewReader("body"))
					return roundTrip(req)
				}},
				{"http refused by policy", func() error {
					if err := roundTrip(mustRequest("GET", "http://10.0.0.1/")); !errors.Is(err, ErrRefusedByPolicy) {
						return fmt.Errorf("%w, want refused by policy", err)
					}
					return nil
				}},
				{"connect, agent ends first", func() error {
					return connectRound(ctx, h.client, echo, "x", "x")
				}},
				{"connect, target ends first", func() error {
					return connectRound(ctx, h.client, hangUp, "", "bye")
				}},
				{"websocket", func() error {
					resp, conn, err := h.client.DialWebSocket(ctx, wsRequest(t, "ws"+strings.TrimPrefix(tgt.URL, "http")+"/ws"))
					if err != nil {
						return err
					}
					defer resp.Body.Close()
					if conn == nil {
						return fmt.Errorf("status %d", resp.StatusCode)
					}
					defer conn.Close()
					_ = conn.(interface{ CloseWrite() error }).CloseWrite()
					_, err = io.ReadAll(conn)
					return err
				}},
			}
			for _, tc := range cases {
				refused := 0
				for range rounds {
					err := tc.run()
					if errors.Is(err, ErrOverCapacity) {
						refused++
					} else if err != nil {
						t.Fatalf("%s: %v", tc.name, err)
					}
				}
				if refused > 0 {
					t.Errorf("%s: %d of %d, each begun after the one before had ended, refused over capacity", tc.name, refused, rounds)
				}
			}
		})
	}
}

// connectRound dials addr through c, sends send and half-closes, and checks
// that want comes back before the target's FIN.
func connectRound(ctx context.Context, c *Client, addr, send, want string) error {
	conn, err := c.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	if send != "" {
		if _, err := io.WriteString(conn, send); err != nil {
			return err
		}
		if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			return err
		}
	}
	got, err := io.ReadAll(conn)
	if err != nil {
		return err
	}
	if send == "" {
		// The target is done: only now does the agent half-close, last.
		if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			return err
		}
	}
	if string(got) != want {
		return fmt.Errorf("got %q, want %q", got, want)
	}
	return nil
}

// rawTarget is a TCP target that runs serve on each connection, then closes it.
func rawTarget(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln := listen(t)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	return ln.Addr().String()
}
