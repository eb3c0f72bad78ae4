package testbin

import (
	"net"
	"sync"
	"testing"
)

// SendingTarget is a loopback TCP target that writes payload to the first
// connection it accepts, at once and whether or not anyone reads, then hangs
// up. It returns the target's address; the test's cleanup stops it.
func SendingTarget(t testing.TB, payload []byte) string {
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
			return
		}
		defer c.Close()
		_, _ = c.Write(payload)
	})
	return ln.Addr().String()
}
