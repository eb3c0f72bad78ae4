package tunnel

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestClientSessions: Sessions reports every lane, down before the first use
// and up after it, with the session's open streams and the bytes its
// connection moved each way.
func TestClientSessions(t *testing.T) {
	h := newHarness(t, overTCP, nil)
	before := h.client.Sessions()
	if len(before) != DefaultClientConfig().Sessions {
		t.Fatalf("%d sessions reported, want one per lane (%d)", len(before), DefaultClientConfig().Sessions)
	}
	for _, s := range before {
		if s.Up || s.Streams != 0 || s.Sent != 0 || !s.Since.IsZero() {
			t.Fatalf("before first use: %+v", s)
		}
	}
	start := time.Now()
	waitSessionsUp(t, h.client)
	target := cannedTarget(t, "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n"+strings.Repeat("x", 5000), true)
	req, _ := http.NewRequest("GET", "http://"+target+"/", nil)
	resp, err := h.client.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	// Half the body has come and the rest never will: the stream is open.
	if _, err := io.ReadFull(resp.Body, make([]byte, 5000)); err != nil {
		t.Fatal(err)
	}
	streams := 0
	for _, s := range h.client.Sessions() {
		streams += s.Streams
	}
	if streams != 1 {
		t.Errorf("%d streams open during a response, want 1", streams)
	}
	resp.Body.Close()
	if _, err := h.client.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	var sent, received int64
	for i, s := range h.client.Sessions() {
		if s.ID != i || !s.Up || s.Since.Before(start) || s.Since.After(time.Now()) {
			t.Errorf("lane %d: %+v", i, s)
		}
		sent += s.Sent
		received += s.Received
	}
	if sent == 0 || received < 5000 {
		t.Errorf("bytes sent %d, received %d; want some, and at least the 5000-byte body", sent, received)
	}
	h.client.Close()
	for _, s := range h.client.Sessions() {
		if s.Up {
			t.Errorf("after Close, lane %d is up", s.ID)
		}
	}
}
