package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestLogHygiene runs both daemons at debug level, sends requests whose path,
// query, cookies, Authorization and other headers and bodies (both ways) carry
// unique markers — plain HTTP, through CONNECT, a WebSocket, and requests that
// fail in the tunnel — and asserts that no marker reaches either daemon's log,
// while the target host does.
func TestLogHygiene(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOpts{
		server:    serverOpts{args: []string{"--log-level", "debug", "--dial-timeout", "2s"}},
		agentArgs: []string{"--log-level", "debug"},
	})
	run := make([]byte, 6)
	_, _ = rand.Read(run)
	markers := map[string]string{}
	mark := func(where string) string {
		m := fmt.Sprintf("mk%s%s", hex.EncodeToString(run), strings.ToLower(where))
		markers[where] = m
		return m
	}
	path := "/" + mark("PATH") + "/x"
	query := "?q=" + mark("QUERY") + "&token=" + mark("TOKEN")
	cookie := "sid=" + mark("COOKIE")
	auth := "Bearer " + mark("AUTH")
	proxyAuth := "Basic " + mark("PROXYAUTH")
	custom := mark("HEADER")
	body := mark("BODY")
	respCookie := mark("SETCOOKIE")
	respBody := mark("RESPBODY")

	h := http.NewServeMux()
	h.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		http.SetCookie(w, &http.Cookie{Name: "s", Value: respCookie})
		w.Header().Set("X-Echo", r.Header.Get("X-Custom"))
		_, _ = io.WriteString(w, respBody)
	})
	h.HandleFunc("/"+markers["PATH"]+"/broken", func(w http.ResponseWriter, r *http.Request) {
		// Promise 100 bytes, send 5, hang up: the tunnel sees a truncated body.
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
		conn.Close()
	})
	h.HandleFunc("/"+markers["PATH"]+"/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		typ, msg, err := c.Read(ctx)
		if err == nil {
			_ = c.Write(ctx, typ, msg)
		}
		_ = c.Close(websocket.StatusNormalClosure, respBody)
	})
	plain := httpTarget(t, h)
	secure, pool, caFile := tlsTarget(t, h)
	proxy := "http://" + s.agent.addr

	headers := []string{"-H", "Cookie: " + cookie, "-H", "Authorization: " + auth, "-H", "X-Custom: " + custom,
		"-H", "Proxy-Authorization: " + proxyAuth}
	curlOK := func(args ...string) {
		t.Helper()
		out := mustCurl(t, append(append([]string{"-x", proxy}, headers...), args...)...)
		if !strings.Contains(string(out), respBody) {
			t.Errorf("curl %v: unexpected answer %q", args, out)
		}
	}
	curlAny := func(args ...string) {
		t.Helper()
		_, _ = runCurl(t, append(append([]string{"-x", proxy, "-o", "/dev/null"}, headers...), args...)...)
	}

	curlOK(plain.URL + path + query)
	curlOK("--data-binary", body, plain.URL+path+query)
	curlOK("-H", "Transfer-Encoding: chunked", "--data-binary", body, plain.URL+path+query)
	curlOK("--cacert", caFile, "--data-binary", body, secure.URL+path+query)
	// Failures inside the tunnel: a closed port (502, through plain HTTP and
	// CONNECT), a truncated response, and a target the egress policy refuses.
	// Each on its own loopback host (see closedAddr), all at once: the server
	// retries failed dials with backoff.
	var wg sync.WaitGroup
	for _, args := range [][]string{
		{"http://" + closedAddr(t, "127.0.0.2") + path + query},
		{"--data-binary", body, "http://" + closedAddr(t, "127.0.0.3") + path + query},
		{"https://" + closedAddr(t, "127.0.0.4") + path + query},
		{plain.URL + "/" + markers["PATH"] + "/broken" + query},
		{"http://10.255.255.1" + path + query},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			curlAny(args...)
		}()
	}
	wg.Wait()
	// And requests to the agent itself, which are not proxy requests.
	_, _ = runCurl(t, append(append([]string{"-o", "/dev/null"}, headers...), "http://"+s.agent.addr+path+query)...)
	_, _ = runCurl(t, append(append([]string{"-o", "/dev/null"}, headers...), "http://"+s.agent.addr+"/healthz"+query)...)

	// A WebSocket, upgraded by the agent, with a message each way and a close reason.
	hdr := http.Header{}
	hdr.Set("Authorization", auth)
	hdr.Set("Cookie", cookie)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	wsURL := "ws://" + strings.TrimPrefix(plain.URL, "http://") + "/" + markers["PATH"] + "/ws" + query
	c, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: s.client(t, pool), HTTPHeader: hdr})
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	_ = c.Write(ctx, websocket.MessageText, []byte(body))
	_, _, _ = c.Read(ctx)
	_, _, _ = c.Read(ctx)
	c.CloseNow()

	// Let the last streams' log lines land, then stop both daemons so that their
	// shutdown lines are part of what is checked.
	time.Sleep(200 * time.Millisecond)
	s.agent.stop(t)
	s.server.stop(t)
	for name, logs := range map[string]string{"agent": s.agent.stderr.String(), "server": s.server.stderr.String()} {
		for where, m := range markers {
			if strings.Contains(strings.ToLower(logs), m) {
				for _, line := range strings.Split(logs, "\n") {
					if strings.Contains(strings.ToLower(line), m) {
						t.Errorf("the %s log leaks the request's %s: %s", name, where, line)
						break
					}
				}
			}
		}
		if !strings.Contains(logs, `"target":"127.0.0.1"`) {
			t.Errorf("the %s log never names the target host 127.0.0.1", name)
		}
	}
}
