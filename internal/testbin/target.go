package testbin

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// SendingTarget is a loopback TCP target that writes payload to the first
// connection it accepts, at once and whether or not anyone reads, then hangs
// up. It returns the target's address; the test's cleanup stops it.
func SendingTarget(t testing.TB, payload []byte) string {
	t.Helper()
	return acceptOne(t, func(c net.Conn) { _, _ = c.Write(payload) }, func() {})
}

// DiscardTarget is a loopback TCP target that accepts one connection, waits
// hold (a slow reader, for stalls) and then reads it to its end. It returns
// the target's address and a channel that gives the number of bytes read (-1
// when nothing connected); the test's cleanup stops it.
func DiscardTarget(t testing.TB, hold time.Duration) (string, <-chan int64) {
	t.Helper()
	got := make(chan int64, 1)
	addr := acceptOne(t, func(c net.Conn) {
		time.Sleep(hold)
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}, func() { got <- -1 })
	return addr, got
}

// acceptOne listens on loopback and hands the first connection to serve,
// closing it after; none runs instead when the listener closes first. The
// test's cleanup closes the listener and waits for either.
func acceptOne(t testing.TB, serve func(net.Conn), none func()) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			none()
			return
		}
		defer c.Close()
		serve(c)
	})
	return ln.Addr().String()
}
