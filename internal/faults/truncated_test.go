package faults

import (
	"context"
	"net/http"
	"testing"
)

// TestTruncatedResponseThroughProxy: a target that hangs up in the middle of its
// body. The tunnel reports the truncation (PROTOCOL.md: the end of a body is
// explicit); the local client must see an error too, for a Content-Length body and
// for a chunked one alike — never a short body that looks complete.
func TestTruncatedResponseThroughProxy(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	_, saddr := startServer(t, nil)
	a := startAgent(t, saddr, nil)
	c := a.httpClient(t)
	for _, tc := range []struct{ name, query string }{
		{"ContentLength", ""},
		{"Chunked", "?chunked=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			defer cancel()
			status, body, err := get(ctx, c, tg.URL+"/truncate"+tc.query)
			if tc.query != "" && (status == http.StatusBadGateway || (status == 0 && err != nil)) {
				// Without a length only the stream's reset tells of the cut, and it
				// may come before the proxy has sent the answer's headers on: the
				// client then gets a 502, or a connection dropped before any
				// status. Either is an error, never a body that looks complete.
				return
			}
			if status != http.StatusOK {
				t.Fatalf("status %d, want 200 (the target's, before it hung up)", status)
			}
			if err == nil {
				t.Errorf("body cut short by the target after %d bytes reached the client as complete, without error", len(body))
			}
		})
	}
}
