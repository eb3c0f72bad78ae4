package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsTarget serves WebSockets: /echo echoes every message and reports the close
// status the client sent; /server-closes echoes one message, then closes.
type wsTarget struct {
	clientClosed chan websocket.StatusCode
}

const serverCloseCode websocket.StatusCode = 4001

func newWSTarget() *wsTarget { return &wsTarget{clientClosed: make(chan websocket.StatusCode, 4)} }

func (wt *wsTarget) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for n := 0; ; n++ {
		if r.URL.Path == "/server-closes" && n == 1 {
			_ = c.Close(serverCloseCode, "bye from the target")
			return
		}
		typ, msg, err := c.Read(ctx)
		if err != nil {
			wt.clientClosed <- websocket.CloseStatus(err)
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}

// TestWebSocket runs a WebSocket client (github.com/coder/websocket) through the
// agent: ws:// travels as the agent's upgrade stream, wss:// inside CONNECT.
// Messages echo both ways; a close from either end reaches the other promptly.
func TestWebSocket(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOpts{server: serverOpts{args: []string{"--log-level", "debug"}}})
	wt := newWSTarget()
	plain := httpTarget(t, wt)
	secure, pool, _ := tlsTarget(t, wt)
	client := &http.Client{Transport: &http.Transport{
		Proxy:           http.ProxyURL(s.agent.proxyURL),
		TLSClientConfig: &tls.Config{RootCAs: pool},
	}}
	t.Cleanup(client.CloseIdleConnections)

	for _, tc := range []struct {
		name, base, streamType string
	}{
		{"ws", "ws://" + strings.TrimPrefix(plain.URL, "http://"), "websocket"},
		{"wss", "wss://" + strings.TrimPrefix(secure.URL, "https://"), "connect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			t.Run("ClientCloses", func(t *testing.T) {
				c, resp, err := websocket.Dial(ctx, tc.base+"/echo", &websocket.DialOptions{HTTPClient: client})
				if err != nil {
					t.Fatalf("dial %s through the proxy: %v", tc.base, err)
				}
				defer c.CloseNow()
				if resp.StatusCode != http.StatusSwitchingProtocols {
					t.Fatalf("handshake status %d", resp.StatusCode)
				}
				c.SetReadLimit(1 << 20)
				msgs := [][]byte{[]byte("hello"), []byte(""), bytes.Repeat([]byte{0xA5}, 200_000), []byte("ünïcødé ✓")}
				for i := range 20 {
					msgs = append(msgs, fmt.Appendf(nil, "message %d", i))
				}
				for i, m := range msgs {
					typ := websocket.MessageText
					if i == 2 {
						typ = websocket.MessageBinary
					}
					if err := c.Write(ctx, typ, m); err != nil {
						t.Fatalf("write %d: %v", i, err)
					}
					gotTyp, got, err := c.Read(ctx)
					if err != nil {
						t.Fatalf("read %d: %v", i, err)
					}
					if gotTyp != typ || !bytes.Equal(got, m) {
						t.Fatalf("echo %d: got %v %d bytes, sent %v %d bytes", i, gotTyp, len(got), typ, len(m))
					}
				}
				// Close waits for the target's close frame: nil means the handshake
				// crossed the tunnel both ways.
				if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
					t.Fatalf("close: %v", err)
				}
				select {
				case code := <-wt.clientClosed:
					if code != websocket.StatusNormalClosure {
						t.Fatalf("target saw close status %v, want %v", code, websocket.StatusNormalClosure)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("the target did not see the client's close")
				}
			})

			t.Run("ServerCloses", func(t *testing.T) {
				c, _, err := websocket.Dial(ctx, tc.base+"/server-closes", &websocket.DialOptions{HTTPClient: client})
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer c.CloseNow()
				if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
					t.Fatal(err)
				}
				if _, got, err := c.Read(ctx); err != nil || string(got) != "ping" {
					t.Fatalf("echo: %q %v", got, err)
				}
				start := time.Now()
				rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
				defer rcancel()
				_, _, err = c.Read(rctx)
				if errors.Is(err, context.DeadlineExceeded) {
					t.Fatal("the target's close did not reach the client within 5s")
				}
				if code := websocket.CloseStatus(err); code != serverCloseCode {
					t.Fatalf("read after the target closed: %v (status %v), want a close error with %v", err, code, serverCloseCode)
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("the target's close took %v to reach the client", d)
				}
			})

			// The server's debug log names each stream's kind: ws:// must have used
			// the upgrade stream, wss:// a CONNECT.
			if _, ok := s.server.stderr.waitEntry(nil, 5*time.Second, func(e logEntry) bool {
				return e.str("message") == "stream" && e.str("type") == tc.streamType
			}); !ok {
				t.Errorf("the server logged no %q stream for %s", tc.streamType, tc.name)
			}
		})
	}
}
