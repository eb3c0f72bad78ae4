package tunnel

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// gatedTransport answers every request "finished" once its gate opens, or
// fails it when the request is cancelled first.
type gatedTransport struct{ gate chan struct{} }

func (g gatedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	select {
	case <-g.gate:
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Length": {"8"}}, ContentLength: 8,
		Body: io.NopCloser(strings.NewReader("finished")), Request: req}, nil
}

// TestShutdownTiming runs Server.Shutdown on synctest's fake clock: new work is
// refused at once while a stream is in flight, the stream finishes, and
// Shutdown returns as soon as the agent has ended its sessions (on the GoAway
// sent once no stream is left), long before the session linger; a stream that
// never ends is cut off exactly when Shutdown's context ends.
func TestShutdownTiming(t *testing.T) {
	t.Run("drains", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			gate := make(chan struct{})
			h := newHarness(t, overPipe, func(c *ServerConfig) { c.Transport = gatedTransport{gate} })
			inFlight := make(chan string, 1)
			go func() {
				resp, err := h.client.RoundTrip(mustRequest("GET", "http://127.0.0.1:9/slow"))
				if err != nil {
					inFlight <- err.Error()
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					inFlight <- err.Error()
					return
				}
				inFlight <- string(b)
			}()
			synctest.Wait()
			if n := h.server.ActiveStreams(); n != 1 {
				t.Fatalf("%d streams in flight, want 1", n)
			}
			start := time.Now()
			shut := make(chan error, 1)
			go func() { shut <- h.server.Shutdown(context.Background()) }()
			synctest.Wait()
			err := errOnly(h.client.RoundTrip(mustRequest("GET", "http://127.0.0.1:9/new")))
			if !errors.Is(err, ErrServerDraining) || HTTPStatus(err) != http.StatusServiceUnavailable {
				t.Fatalf("new request while draining: %v, want ErrServerDraining (503)", err)
			}
			if took := time.Since(start); took != 0 {
				t.Fatalf("refusal took %v of fake time, want none", took)
			}
			close(gate)
			if got := <-inFlight; got != "finished" {
				t.Fatalf("in-flight request: %q", got)
			}
			if err := <-shut; err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if took := time.Since(start); took >= sessionLinger {
				t.Fatalf("Shutdown took %v: it waited out the linger instead of the agent's close", took)
			}
		})
	})
	t.Run("cut off", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, overPipe, func(c *ServerConfig) { c.Transport = gatedTransport{make(chan struct{})} })
			done := make(chan error, 1)
			go func() {
				resp, err := h.client.RoundTrip(mustRequest("GET", "http://127.0.0.1:9/never"))
				if err == nil {
					resp.Body.Close()
				}
				done <- err
			}()
			synctest.Wait()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			start := time.Now()
			if err := h.server.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Shutdown with a stream that never ends: %v, want DeadlineExceeded", err)
			}
			if took := time.Since(start); took != 3*time.Second {
				t.Fatalf("Shutdown returned after %v, want exactly its 3s deadline", took)
			}
			if err := <-done; err == nil {
				t.Fatal("the cut-off request succeeded")
			}
		})
	})
}
