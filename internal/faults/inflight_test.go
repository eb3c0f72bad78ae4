package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// inFlight is work in progress through an agent when a fault strikes: a long
// download, a CONNECT relay and a WebSocket, each known to be moving data.
type inFlight struct {
	cancel   context.CancelFunc
	download chan outcome
	connect  chan outcome
	ws       chan outcome
	n        int
	// poke sends a message on the CONNECT and WebSocket connections (a toxic that
	// acts on the next bytes needs some to pass).
	poke func()
}

// outcome is how one piece of work ended.
type outcome struct {
	at    time.Time
	err   error
	bytes int // download: bytes received
	same  bool
}

// downloadSize is the size the in-flight download announces; it streams slowly
// enough (about 1.6 MB/s) to be still running when the fault comes.
const downloadSize = 16 << 20

// startInFlight starts the three and returns once each has moved data. chunked
// makes the download chunked (unknown length) instead of Content-Length.
func startInFlight(t *testing.T, a *agent, c *http.Client, httpBase, echoAddr string, chunked bool) *inFlight {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	f := &inFlight{cancel: cancel, download: make(chan outcome, 1), connect: make(chan outcome, 1), ws: make(chan outcome, 1), n: downloadSize}
	t.Cleanup(cancel)

	u := fmt.Sprintf("%s/stream?n=%d&chunk=16384&every=10", httpBase, f.n)
	if chunked {
		u += "&chunked=1"
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("start download: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("start download: status %d", resp.StatusCode)
	}
	head := make([]byte, 64<<10)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		resp.Body.Close()
		t.Fatalf("start download: %v", err)
	}
	go func(body io.ReadCloser) {
		defer body.Close()
		rest, err := io.ReadAll(body)
		got := append(head, rest...)
		f.download <- outcome{at: time.Now(), err: err, bytes: len(got), same: bytes.Equal(got, pattern[:len(got)])}
	}(resp.Body)

	conn, status, err := a.connect(ctx, echoAddr)
	if err != nil || status != http.StatusOK {
		t.Fatalf("start CONNECT: status %d, err %v", status, err)
	}
	if err := echoRoundTrip(conn, []byte("ping"), opTimeout); err != nil {
		t.Fatalf("CONNECT echo: %v", err)
	}
	go func() {
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(opTimeout))
		n, err := io.Copy(io.Discard, conn)
		if err == nil {
			err = io.EOF // a closed connection is the expected answer
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			err = nil // still open at the deadline: a hang
		}
		f.connect <- outcome{at: time.Now(), err: err, bytes: int(n)}
	}()

	wsURL := "ws://" + strings.TrimPrefix(httpBase, "http://") + "/ws"
	ws, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: c})
	if err != nil {
		t.Fatalf("start WebSocket: %v", err)
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatalf("WebSocket write: %v", err)
	}
	if _, _, err := ws.Read(ctx); err != nil {
		t.Fatalf("WebSocket echo: %v", err)
	}
	f.poke = func() {
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = conn.Write([]byte("poke"))
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_ = ws.Write(wctx, websocket.MessageText, []byte("poke"))
	}
	go func() {
		defer ws.CloseNow()
		_, _, err := ws.Read(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			err = nil // still open at the deadline: a hang
		}
		f.ws <- outcome{at: time.Now(), err: err}
	}()
	return f
}

// expectFailed waits for all three to end, each within bound of since, and with an
// error: a download must not look complete when it was cut short.
func (f *inFlight) expectFailed(t *testing.T, since time.Time, bound time.Duration) {
	t.Helper()
	defer f.cancel()
	for _, w := range []struct {
		name string
		ch   chan outcome
	}{{"download", f.download}, {"CONNECT", f.connect}, {"WebSocket", f.ws}} {
		select {
		case o := <-w.ch:
			took := o.at.Sub(since)
			t.Logf("%s ended %v after the fault: %v", w.name, took.Round(time.Millisecond), o.err)
			if took > bound {
				t.Errorf("%s ended %v after the fault, want within %v", w.name, took.Round(time.Millisecond), bound)
			}
			if o.err == nil {
				if w.name == "download" {
					t.Errorf("download cut short by the fault reported as complete: %d of %d bytes, no error", o.bytes, f.n)
				} else {
					t.Errorf("%s still open %v after the fault", w.name, opTimeout)
				}
			}
			if w.name == "download" {
				if !o.same {
					t.Errorf("download: the %d bytes received differ from what was sent", o.bytes)
				}
				if o.bytes >= f.n {
					t.Errorf("download finished (%d bytes) before the fault: the fault came too late", o.bytes)
				}
			}
		case <-time.After(time.Until(since.Add(bound + opTimeout))):
			t.Errorf("%s still running %v after the fault", w.name, bound+opTimeout)
		}
	}
}
