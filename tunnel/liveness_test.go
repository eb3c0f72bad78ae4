package tunnel

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// WaitUp and WaitDown follow the client's sessions: up after Connect, down
// once the server has gone, and both end with ErrSessionClosed after Close.
// The agent's lifecycle keeper relies on them to notice a sleeping server.
func TestClientWaitUpDown(t *testing.T) {
	forEachTransport(t, nil, func(t *testing.T, h *harness) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c := h.client
		if c.Up() {
			t.Fatal("up before any connection")
		}
		if err := c.WaitDown(ctx); err != nil {
			t.Fatalf("WaitDown with nothing up: %v", err)
		}
		up := make(chan error, 1)
		go func() { up <- c.WaitUp(ctx) }()
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-up; err != nil || !c.Up() {
			t.Fatalf("WaitUp = %v, Up %v after Connect", err, c.Up())
		}
		down := make(chan error, 1)
		go func() { down <- c.WaitDown(ctx) }()
		if err := h.server.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-down; err != nil {
			t.Fatalf("WaitDown = %v after the server closed", err)
		}
		// A lane that was dialling as the server closed can come up for a
		// moment on a connection the kernel had accepted for the closing
		// listener (the client's side of the connection is complete before
		// the server's goes), then go down again: the client settles down.
		for settle := time.Now().Add(5 * time.Second); c.Up(); {
			if time.Now().After(settle) {
				t.Fatal("a session still up 5 s after the server closed")
			}
			if err := c.WaitDown(ctx); err != nil {
				t.Fatalf("WaitDown = %v after the server closed", err)
			}
		}
		_ = c.Close()
		if err := c.WaitUp(ctx); !errors.Is(err, ErrSessionClosed) {
			t.Fatalf("WaitUp after Close = %v", err)
		}
		idle, err := NewClient(ClientConfig{Dial: func(ctx context.Context) (net.Conn, error) { <-ctx.Done(); return nil, ctx.Err() }})
		if err != nil {
			t.Fatal(err)
		}
		defer idle.Close()
		short, cancelShort := context.WithTimeout(ctx, 10*time.Millisecond)
		defer cancelShort()
		if err := idle.WaitUp(short); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitUp on an idle client = %v, want the context's error", err)
		}
	})
}
