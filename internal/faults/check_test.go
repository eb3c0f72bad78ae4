package faults

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// checkTraffic sends one of each kind of work through the agent and verifies the
// content that comes back: a download of n bytes with Content-Length and one
// chunked, an upload echoed over CONNECT and a WebSocket echo. httpBase and wsBase
// address the target (directly, or through a toxiproxy in front of it); echoAddr is
// the CONNECT echo target.
func checkTraffic(t *testing.T, a *agent, httpBase, echoAddr string, n int) {
	t.Helper()
	c := a.httpClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for _, chunked := range []bool{false, true} {
		u := fmt.Sprintf("%s/blob?n=%d", httpBase, n)
		if chunked {
			u += "&chunked=1"
		}
		status, body, err := get(ctx, c, u)
		if err != nil || status != http.StatusOK {
			t.Fatalf("GET %s: status %d, err %v", u, status, err)
		}
		if !bytes.Equal(body, pattern[:n]) {
			t.Fatalf("GET %s (chunked %v): got %d bytes, want %d equal to the pattern", u, chunked, len(body), n)
		}
	}

	conn, status, err := a.connect(ctx, echoAddr)
	if err != nil || status != http.StatusOK {
		t.Fatalf("CONNECT %s: status %d, err %v", echoAddr, status, err)
	}
	if err := echoRoundTrip(conn, pattern[:min(n, 256<<10)], opTimeout); err != nil {
		t.Fatalf("CONNECT echo: %v", err)
	}
	conn.Close()

	wsURL := "ws://" + strings.TrimPrefix(httpBase, "http://") + "/ws"
	if err := wsEcho(ctx, c, wsURL, pattern[1000:1000+min(n, 64<<10)]); err != nil {
		t.Fatalf("WebSocket echo: %v", err)
	}
}

// wsEcho dials u through the client's proxy, sends msg and expects it back.
func wsEcho(ctx context.Context, c *http.Client, u string, msg []byte) error {
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: c})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(4 << 20)
	if err := ws.Write(ctx, websocket.MessageBinary, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	_, got, err := ws.Read(ctx)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo of %d bytes came back as %d different bytes", len(msg), len(got))
	}
	return ws.Close(websocket.StatusNormalClosure, "")
}

// timedOp runs op and returns its error and how long it took.
func timedOp(op func() error) (time.Duration, error) {
	start := time.Now()
	err := op()
	return time.Since(start), err
}
