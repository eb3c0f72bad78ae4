package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// slowTarget answers /slow once release is closed, anything else at once.
func slowTarget(t *testing.T) (*httptest.Server, chan struct{}) {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		_, _ = io.WriteString(w, "finished")
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	return srv, release
}

type bodyResult struct {
	body string
	err  error
}

func getBody(c *Client, url string) bodyResult {
	resp, err := c.RoundTrip(mustRequest("GET", url))
	if err != nil {
		return bodyResult{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return bodyResult{string(b), err}
}

func retiredCount(c *Client) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.retired)
}

// TestDrainingRetriesOnFreshSession: once the server the client's session is
// on drains, a new request is answered shutting_down and sent again on a fresh
// session, which here reaches another server (as a new connection through a
// load balancer would); the stream in flight on the draining session completes;
// and the client forgets the retired session once the old server ends it.
func TestDrainingRetriesOnFreshSession(t *testing.T) {
	next := newHarness(t, overPipe, nil)
	var toNext atomic.Bool
	h := newHarnessWith(t, overPipe, nil, func(c *ClientConfig) {
		c.Sessions = 1
		first := c.Dial
		c.Dial = func(ctx context.Context) (net.Conn, error) {
			if toNext.Load() {
				return next.client.cfg.Dial(ctx)
			}
			return first(ctx)
		}
	})
	tgt, release := slowTarget(t)
	inFlight := make(chan bodyResult, 1)
	go func() { inFlight <- getBody(h.client, tgt.URL+"/slow") }()
	waitFor(t, 5*time.Second, "request in flight", func() bool { return h.server.ActiveStreams() == 1 })
	toNext.Store(true)
	shut := make(chan error, 1)
	go func() { shut <- h.server.Shutdown(context.Background()) }()
	waitFor(t, 5*time.Second, "server to drain", h.server.isDraining)

	if r := getBody(h.client, tgt.URL+"/"); r.err != nil || r.body != "finished" {
		t.Fatalf("request during the drain: %q, %v; want it served on a fresh session", r.body, r.err)
	}
	if n := retiredCount(h.client); n != 1 {
		t.Errorf("%d retired sessions, want the draining one", n)
	}
	if n := h.server.ActiveStreams(); n != 1 {
		t.Errorf("draining server has %d streams, want the one in flight", n)
	}
	close(release)
	if r := <-inFlight; r.err != nil || r.body != "finished" {
		t.Fatalf("in-flight request: %q, %v", r.body, r.err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	waitFor(t, 5*time.Second, "the retired session to be forgotten", func() bool { return retiredCount(h.client) == 0 })
}

// TestDrainingWithoutElsewhere: when the only server drains (it keeps taking
// connections in this harness, and answers every new stream shutting_down), a
// new request fails at once with ErrServerDraining (503) after its one retry,
// rather than hanging; the stream in flight completes.
func TestDrainingWithoutElsewhere(t *testing.T) {
	for _, sessions := range []int{1, 2} {
		t.Run(map[int]string{1: "one session", 2: "two sessions"}[sessions], func(t *testing.T) {
			h := newHarnessWith(t, overTCP, nil, func(c *ClientConfig) { c.Sessions = sessions })
			tgt, release := slowTarget(t)
			inFlight := make(chan bodyResult, 1)
			go func() { inFlight <- getBody(h.client, tgt.URL+"/slow") }()
			waitFor(t, 5*time.Second, "request in flight", func() bool { return h.server.ActiveStreams() == 1 })
			shut := make(chan error, 1)
			go func() { shut <- h.server.Shutdown(context.Background()) }()
			waitFor(t, 5*time.Second, "server to drain", h.server.isDraining)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := errOnly(h.client.RoundTrip(mustRequest("GET", tgt.URL+"/").WithContext(ctx)))
			if !errors.Is(err, ErrServerDraining) || HTTPStatus(err) != http.StatusServiceUnavailable || ctx.Err() != nil {
				t.Fatalf("request during the drain: %v (status %d, ctx %v), want ErrServerDraining / 503 at once", err, HTTPStatus(err), ctx.Err())
			}
			close(release)
			if r := <-inFlight; r.err != nil || r.body != "finished" {
				t.Fatalf("in-flight request: %q, %v", r.body, r.err)
			}
			if err := <-shut; err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			waitFor(t, 5*time.Second, "retired sessions to be forgotten", func() bool { return retiredCount(h.client) == 0 })
		})
	}
}
func TestEarlyAnswerBeatsRequestFrame(t *testing.T) {
	for _, kind := range allTransports {
		t.Run(string(kind), func(t *testing.T) {
			h := newHarnessWith(t, kind, nil, func(c *ClientConfig) { c.Sessions = 1 })
			tgt, _ := slowTarget(t)
			inFlight := make(chan bodyResult, 1)
			go func() { inFlight <- getBody(h.client, tgt.URL+"/slow") }()
			waitFor(t, 5*time.Second, "request in flight", func() bool { return h.server.ActiveStreams() == 1 })
			go func() { _ = h.server.Shutdown(context.Background()) }()
			waitFor(t, 5*time.Second, "server to drain", h.server.isDraining)
			sess, _ := h.client.session(context.Background(), nil)
			bad := 0
			for range 300 {
				err := errOnly(sess.RoundTrip(mustRequest("GET", tgt.URL+"/")))
				if !errors.Is(err, ErrServerDraining) {
					if bad == 0 {
						t.Logf("first: %v", err)
					}
					bad++
				}
			}
			if bad > 0 {
				t.Errorf("%d of 300 requests to a draining server got another error than shutting_down", bad)
			}
		})
	}
}
func TestShutdownKeepsLastResponseTail(t *testing.T) {
	for _, kind := range allTransports {
		t.Run(string(kind), func(t *testing.T) {
			bad := 0
			for i := range 40 {
				h := newHarnessWith(t, kind, nil, func(c *ClientConfig) { c.Sessions = 1 })
				tgt, release := slowTarget(t)
				inFlight := make(chan bodyResult, 1)
				go func() { inFlight <- getBody(h.client, tgt.URL+"/slow") }()
				waitFor(t, 5*time.Second, "request in flight", func() bool { return h.server.ActiveStreams() == 1 })
				shut := make(chan error, 1)
				go func() { shut <- h.server.Shutdown(context.Background()) }()
				waitFor(t, 5*time.Second, "server to drain", h.server.isDraining)
				close(release)
				if r := <-inFlight; r.err != nil || r.body != "finished" {
					if bad == 0 {
						t.Logf("run %d: %q, %v", i, r.body, r.err)
					}
					bad++
				}
				if err := <-shut; err != nil {
					t.Errorf("run %d: Shutdown: %v", i, err)
				}
			}
			if bad > 0 {
				t.Errorf("%d of 40 in-flight requests cut off by Shutdown", bad)
			}
		})
	}
}
