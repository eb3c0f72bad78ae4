package relay

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// pipePair is tcpPair in memory, for the tests that run in a synctest bubble, which
// fakes timers but not network I/O. net.Pipe has no half-close, so CloseWrite closes
// the whole end: the tests of half-close and reset stay on tcpPair.
func pipePair() (Conn, Conn) {
	c1, c2 := net.Pipe()
	return AsConn(c1), AsConn(c2)
}

// TestHalfClose: A's client shuts down its write side; B's side reads EOF, answers,
// and the answer still reaches A's client.
func TestHalfClose(t *testing.T) {
	client, a := tcpPair(t)
	b, target := tcpPair(t)
	done := make(chan Result, 1)
	go func() { done <- Run(a, b, Options{}) }()

	go func() {
		got, _ := io.ReadAll(target)
		_, _ = target.Write(append([]byte("echo:"), got...))
		_ = target.Close()
	}()
	_, _ = client.Write([]byte("hello"))
	_ = client.CloseWrite()
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "echo:hello" {
		t.Fatalf("got %q, %v", got, err)
	}
	client.Close()
	res := <-done
	if res.AtoB != 5 || res.BtoA != 10 || res.Err != nil {
		t.Fatalf("result %+v", res)
	}
}

// TestIdleTimeout: a relay where nothing moves is closed, both sides, after exactly
// IdleTimeout (on the bubble's clock).
func TestIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, a := pipePair()
		b, target := pipePair()
		defer client.Close()
		defer target.Close()
		start := time.Now()
		res := Run(a, b, Options{IdleTimeout: 100 * time.Millisecond})
		if !errors.Is(res.Err, ErrIdle) {
			t.Fatalf("err %v, want ErrIdle", res.Err)
		}
		if d := time.Since(start); d != 100*time.Millisecond {
			t.Fatalf("closed after %v, want 100ms", d)
		}
		// Both sides were closed: the peers see EOF.
		_ = client.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := client.Read(make([]byte, 1)); err == nil {
			t.Fatal("client side still open")
		}
		_ = target.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := target.Read(make([]byte, 1)); err == nil {
			t.Fatal("target side still open")
		}
	})
}

// TestActivityDefersIdle: traffic in either direction keeps the relay alive.
func TestActivityDefersIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, a := pipePair()
		b, target := pipePair()
		done := make(chan Result, 1)
		go func() { done <- Run(a, b, Options{IdleTimeout: 150 * time.Millisecond}) }()
		go func() { _, _ = io.Copy(io.Discard, target) }()
		for i := 0; i < 6; i++ {
			if _, err := client.Write([]byte("x")); err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		client.Close()
		target.Close()
		if res := <-done; errors.Is(res.Err, ErrIdle) {
			t.Fatal("relay with steady traffic hit the idle timeout")
		}
	})
}

// TestIdleCountsFromLastByte: the idle timeout runs from the last byte moved, in
// either direction, not from the start or from the timer's previous check.
func TestIdleCountsFromLastByte(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const idle = 150 * time.Millisecond
		client, a := pipePair()
		b, target := pipePair()
		defer client.Close()
		defer target.Close()
		done := make(chan Result, 1)
		go func() { done <- Run(a, b, Options{IdleTimeout: idle}) }()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		_, _ = io.WriteString(client, "x") // A→B
		buf := make([]byte, 1)
		if _, err := io.ReadFull(target, buf); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		_, _ = io.WriteString(target, "y") // B→A, read by the discarding client
		synctest.Wait()
		last := time.Now()
		res := <-done
		if !errors.Is(res.Err, ErrIdle) {
			t.Fatalf("err %v, want ErrIdle", res.Err)
		}
		if d := time.Since(last); d != idle {
			t.Fatalf("closed %v after the last byte, want %v", d, idle)
		}
		if res.AtoB != 1 || res.BtoA != 1 {
			t.Fatalf("result %+v", res)
		}
	})
}

// TestErrorClosesBoth: a reset on one side ends the other at once.
func TestErrorClosesBoth(t *testing.T) {
	client, a := tcpPair(t)
	b, target := tcpPair(t)
	defer target.Close()
	done := make(chan Result, 1)
	go func() { done <- Run(a, b, Options{}) }()
	_ = client.SetLinger(0)
	client.Close() // RST
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("relay did not end after a reset")
	}
	_ = target.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := target.Read(make([]byte, 1)); err == nil {
		t.Fatal("target side still open")
	}
}

func TestPreBufferedReader(t *testing.T) {
	client, a := tcpPair(t)
	b, target := tcpPair(t)
	done := make(chan Result, 1)
	go func() {
		done <- Run(a, b, Options{AReader: io.MultiReader(newStringsReader("early,"), a)})
	}()
	_, _ = client.Write([]byte("late"))
	_ = client.CloseWrite()
	got, _ := io.ReadAll(target)
	if string(got) != "early,late" {
		t.Fatalf("target got %q", got)
	}
	target.Close()
	client.Close()
	<-done
}

type stringsReader string

func (s *stringsReader) Read(p []byte) (int, error) {
	if len(*s) == 0 {
		return 0, io.EOF
	}
	n := copy(p, *s)
	*s = (*s)[n:]
	return n, nil
}

func newStringsReader(s string) *stringsReader { r := stringsReader(s); return &r }

// TestPrefixed: bytes read ahead (a bufio reader's leftovers) come first, then the
// connection, and an empty prefix leaves the reader as it was.
func TestPrefixed(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("HEAD\nahead-"))
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	r := Prefixed(Buffered(br), strings.NewReader("rest"))
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "ahead-rest" {
		t.Fatalf("got %q, %v; want the buffered bytes, then the reader", got, err)
	}
	conn := strings.NewReader("x")
	if Prefixed(nil, conn) != io.Reader(conn) {
		t.Error("an empty prefix wraps the reader")
	}
}
