package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// soakOp is one unit of soak work; which kind and whether it is one of the
// injected failures follow from its index.
type soakOp int

const (
	soakHTTP = iota
	soakConnect
	soakWebSocket
)

// failEvery makes every 20th operation (5 %) an injected failure. 20 and 3 are
// coprime, so the failures rotate over the three kinds.
const failEvery = 20

func (op soakOp) kind() int     { return int(op) % 3 }
func (op soakOp) failing() bool { return int(op)%failEvery == failEvery/2 }

// soakTimeout bounds one operation: nothing may hang.
const soakTimeout = 10 * time.Second

// runSoak sends n operations through one in-process tunnel with workers in
// parallel: HTTP downloads (Content-Length and chunked, 1–64 KiB), CONNECT echoes
// and WebSocket echoes, 5 % of them failing on purpose (the target cuts the
// response body short, the CONNECT target resets, the WebSocket target hangs up).
// Every operation must end within soakTimeout with the expected outcome: content
// intact for the others, an error for the injected failures. Afterwards the
// process's goroutines and heap must be back near where they were after warm-up.
func runSoak(t *testing.T, n, workers int) {
	tg := newTarget(t)
	echo := echoServer(t)
	srv, saddr := startServer(t, nil)
	a := startAgent(t, saddr, nil)
	tr := &http.Transport{Proxy: http.ProxyURL(a.proxyURL), MaxIdleConnsPerHost: workers, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: soakTimeout}
	s := &soaker{c: c, a: a, httpBase: tg.URL, wsBase: "ws://" + strings.TrimPrefix(tg.URL, "http://"), echo: echo}

	// Warm up: pools, the session, TLS caches, idle connections.
	s.run(t, 0, 3*failEvery, workers)
	if t.Failed() {
		t.FailNow()
	}
	tr.CloseIdleConnections()
	s.failed.Store(0)
	base := measure()

	start := time.Now()
	s.run(t, 3*failEvery, n, workers)
	took := time.Since(start)
	t.Logf("%d operations (%d injected failures) with %d workers in %v (%.0f/s); slowest %v",
		n, s.failed.Load(), workers, took.Round(time.Millisecond), float64(n)/took.Seconds(), time.Duration(s.slowest.Load()).Round(time.Millisecond))
	tr.CloseIdleConnections()
	expectBack(t, "after the soak", base, 10, 4<<20)
	waitFor(t, 5*time.Second, "the server's streams to end", func() bool { return srv.ActiveStreams() == 0 })
	if _, err := a.client.Ping(context.Background()); err != nil {
		t.Fatalf("tunnel session after the soak: %v", err)
	}
	waitFor(t, 5*time.Second, "the agent's streams to end", func() bool { return a.client.ActiveStreams() == 0 })
}

type soaker struct {
	c        *http.Client
	a        *agent
	httpBase string
	wsBase   string
	echo     string

	failed  atomic.Int64 // injected failures run
	slowest atomic.Int64 // nanoseconds
	mu      sync.Mutex
	errs    []string
	nerrs   int
}

// run performs operations [from, from+n) with workers goroutines.
func (s *soaker) run(t *testing.T, from, n, workers int) {
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= from+n {
					return
				}
				s.one(soakOp(i))
			}
		}()
	}
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nerrs > 0 {
		t.Errorf("%d of %d operations went wrong; first ones:\n%s", s.nerrs, n, strings.Join(s.errs, "\n"))
	}
}

func (s *soaker) one(op soakOp) {
	ctx, cancel := context.WithTimeout(context.Background(), soakTimeout)
	defer cancel()
	start := time.Now()
	var err error
	switch op.kind() {
	case soakHTTP:
		err = s.http(ctx, op)
	case soakConnect:
		err = s.connect(ctx, op)
	case soakWebSocket:
		err = s.websocket(ctx, op)
	}
	took := time.Since(start)
	for {
		old := s.slowest.Load()
		if int64(took) <= old || s.slowest.CompareAndSwap(old, int64(took)) {
			break
		}
	}
	if op.failing() {
		s.failed.Add(1)
	}
	if err == nil && took > soakTimeout {
		err = fmt.Errorf("took %v", took)
	}
	if err != nil {
		s.mu.Lock()
		s.nerrs++
		if len(s.errs) < 10 {
			s.errs = append(s.errs, fmt.Sprintf("op %d (kind %d, failing %v): %v", op, op.kind(), op.failing(), err))
		}
		s.mu.Unlock()
	}
}

// size varies the payloads between 1 and 64 KiB.
func (op soakOp) size() int { return 1<<10 + (int(op)*7919)%(63<<10) }

func (s *soaker) http(ctx context.Context, op soakOp) error {
	if op.failing() {
		// Content-Length promised, body cut short: the client must see an error.
		// (The chunked variant is TestTruncatedResponseThroughProxy's business.)
		status, body, err := get(ctx, s.c, s.httpBase+"/truncate")
		if err == nil {
			return fmt.Errorf("truncated response (status %d, %d bytes) reported complete", status, len(body))
		}
		return nil
	}
	u := fmt.Sprintf("%s/blob?n=%d", s.httpBase, op.size())
	if op%2 == 0 {
		u += "&chunked=1"
	}
	status, body, err := get(ctx, s.c, u)
	if err != nil {
		return err
	}
	if status != http.StatusOK || !bytes.Equal(body, pattern[:op.size()]) {
		return fmt.Errorf("status %d, %d bytes, want 200 and %d bytes of the pattern", status, len(body), op.size())
	}
	return nil
}

func (s *soaker) connect(ctx context.Context, op soakOp) error {
	conn, status, err := s.a.connect(ctx, s.echo)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("CONNECT answered %d", status)
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	if op.failing() {
		if _, err := conn.Write([]byte("RESET please")); err != nil {
			return nil // already gone: fine
		}
		_, err := io.Copy(io.Discard, conn)
		if isTimeout(err) {
			return errors.New("CONNECT to a target that reset still open")
		}
		return nil
	}
	return echoRoundTrip(conn, pattern[int(op)%1024:int(op)%1024+op.size()/4], soakTimeout)
}

func (s *soaker) websocket(ctx context.Context, op soakOp) error {
	if op.failing() {
		ws, _, err := websocket.Dial(ctx, s.wsBase+"/ws-reset", &websocket.DialOptions{HTTPClient: s.c})
		if err != nil {
			return nil // the handshake itself may already fail
		}
		defer ws.CloseNow()
		if _, _, err := ws.Read(ctx); err == nil {
			return errors.New("read a message from a WebSocket the target hung up")
		} else if errors.Is(err, context.DeadlineExceeded) {
			return errors.New("WebSocket the target hung up still open")
		}
		return nil
	}
	return wsEcho(ctx, s.c, s.wsBase+"/ws", pattern[:op.size()/4])
}

// TestSoakReduced is the soak at a tenth of its size, for every test run.
func TestSoakReduced(t *testing.T) {
	// Not parallel: it measures the whole test process.
	runSoak(t, 1000, 16)
}
