package lifecycle_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/lifecycle"
)

// Concurrent requests share one wake-up; later ones get the remembered
// address without calling the API; Forget makes the next one wake again.
func TestWakerSharesOneWakeUp(t *testing.T) {
	t.Parallel()
	g, c := newGateway(t, answer{200, starting}, answer{200, starting}, answer{200, running})
	var mu sync.Mutex
	progress := 0
	var wakeUps atomic.Int32
	w := lifecycle.NewWaker(c, lifecycle.WakerConfig{PollInterval: 5 * time.Millisecond, Timeout: 10 * time.Second,
		Progress: func(lifecycle.WakeResult, time.Duration) {
			mu.Lock()
			progress++
			mu.Unlock()
		},
		Done: func(elapsed time.Duration, err error) {
			if err == nil && elapsed > 0 {
				wakeUps.Add(1)
			}
		},
	})
	var wg sync.WaitGroup
	addrs := make([]string, 8)
	errs := make([]error, 8)
	for i := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addrs[i], _, errs[i] = w.Address(context.Background())
		}()
	}
	wg.Wait()
	for i := range addrs {
		if errs[i] != nil || addrs[i] != "203.0.113.5:8443" {
			t.Fatalf("caller %d: %q, %v", i, addrs[i], errs[i])
		}
	}
	if n := g.calls.Load(); n != 3 {
		t.Fatalf("%d wake calls for 8 concurrent callers, want one wake-up of 3 polls", n)
	}
	if _, woke, err := w.Address(context.Background()); err != nil || g.calls.Load() != 3 || !woke {
		t.Fatalf("remembered address not used (calls %d, woke %v, err %v)", g.calls.Load(), woke, err)
	}
	w.Connected("203.0.113.5:8443")
	if _, woke, _ := w.Address(context.Background()); woke {
		t.Fatal("an address that served is still reported as just woken")
	}
	w.Forget("198.51.100.1:8443") // a stale address: ignored
	if _, _, _ = w.Address(context.Background()); g.calls.Load() != 3 {
		t.Fatal("forgetting another address dropped the current one")
	}
	w.Forget("203.0.113.5:8443")
	if _, _, err := w.Address(context.Background()); err != nil || g.calls.Load() != 4 {
		t.Fatalf("after Forget: calls %d, err %v; want a new wake", g.calls.Load(), err)
	}
	if n := wakeUps.Load(); n != 2 {
		t.Errorf("Done told of %d wake-ups, want 2", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if progress != 4 {
		t.Fatalf("progress called %d times, want 4", progress)
	}
}

// An impatient caller gives up alone; the wake-up goes on for the others.
func TestWakerCallerContext(t *testing.T) {
	t.Parallel()
	_, c := newGateway(t, answer{200, starting}, answer{200, starting}, answer{200, starting}, answer{200, running})
	w := lifecycle.NewWaker(c, lifecycle.WakerConfig{PollInterval: 20 * time.Millisecond, Timeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	if _, _, err := w.Address(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("impatient caller: %v", err)
	}
	if addr, _, err := w.Address(context.Background()); err != nil || addr != "203.0.113.5:8443" {
		t.Fatalf("patient caller: %q, %v", addr, err)
	}
}

// A temporary failure is not remembered: the next caller wakes again.
func TestWakerTemporaryFailureIsNotRemembered(t *testing.T) {
	t.Parallel()
	g, c := newGateway(t, answer{503, `{"message":"Service Unavailable"}`})
	w := lifecycle.NewWaker(c, lifecycle.WakerConfig{PollInterval: 5 * time.Millisecond, Timeout: 200 * time.Millisecond})
	defer w.Close()
	if _, _, err := w.Address(context.Background()); err == nil {
		t.Fatal("wake through a failing API succeeded")
	}
	if st := w.Status(); st.Stopped || st.Err == nil || st.Waking {
		t.Fatalf("status after a temporary failure: %+v", st)
	}
	before := g.calls.Load()
	_, _, _ = w.Address(context.Background())
	if g.calls.Load() == before {
		t.Fatal("a temporary failure stopped the Waker")
	}
}

// A misconfiguration (wrong key, no such service) is reported once and the
// API is not called again: every later caller gets the same error at once.
func TestWakerStopsOnAPermanentError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		reply answer
		key   string
		is    error
	}{
		{"wrong key", answer{200, running}, "wrong", lifecycle.ErrUnauthorized},
		{"no such service", answer{404, `{"code":"service_not_found","message":"wake: the ECS service does not exist"}`}, "secret", lifecycle.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g, c := newGateway(t, tc.reply)
			c.APIKey = tc.key
			var logs bytes.Buffer
			w := lifecycle.NewWaker(c, lifecycle.WakerConfig{PollInterval: time.Millisecond, Timeout: time.Second, Log: zerolog.New(&logs)})
			defer w.Close()
			for range 3 {
				if _, _, err := w.Address(context.Background()); !errors.Is(err, tc.is) {
					t.Fatalf("err = %v, want %v", err, tc.is)
				}
			}
			if _, err := w.Probe(context.Background()); !errors.Is(err, tc.is) {
				t.Fatalf("probe after the stop: %v", err)
			}
			if n := g.requests.Load(); n != 1 {
				t.Fatalf("%d API calls, want 1: the agent stops at a permanent error", n)
			}
			if n := strings.Count(logs.String(), "not calling it again"); n != 1 {
				t.Fatalf("reported %d times, want once:\n%s", n, logs.String())
			}
			if st := w.Status(); !st.Stopped || !errors.Is(st.Err, tc.is) {
				t.Fatalf("status %+v", st)
			}
		})
	}
}

func TestClientConfigValidate(t *testing.T) {
	t.Parallel()
	ok := lifecycle.DefaultClientConfig()
	ok.Endpoint, ok.APIKey = "https://abc.execute-api.eu-west-1.amazonaws.com/prod", "k"
	mod := func(f func(*lifecycle.ClientConfig)) lifecycle.ClientConfig {
		c := ok
		f(&c)
		return c
	}
	tests := []struct {
		name  string
		cfg   lifecycle.ClientConfig
		valid bool
	}{
		{"configured", ok, true},
		{"disabled", lifecycle.DefaultClientConfig(), true},
		{"on demand", mod(func(c *lifecycle.ClientConfig) { c.WakeMode = lifecycle.WakeOnDemand }), true},
		{"no key", mod(func(c *lifecycle.ClientConfig) { c.APIKey = "" }), false},
		{"bad mode", mod(func(c *lifecycle.ClientConfig) { c.WakeMode = "sometimes" }), false},
		{"bad endpoint", mod(func(c *lifecycle.ClientConfig) { c.Endpoint = "not a url" }), false},
		{"zero poll", mod(func(c *lifecycle.ClientConfig) { c.PollInterval = 0 }), false},
	}
	for _, tc := range tests {
		if err := tc.cfg.Validate(); (err == nil) != tc.valid {
			t.Errorf("%s: Validate = %v, want valid=%v", tc.name, err, tc.valid)
		}
	}
	if cl := ok.Client(http.DefaultClient, zerolog.Nop()); cl.Endpoint != ok.Endpoint || cl.APIKey != "k" {
		t.Errorf("Client() = %+v", cl)
	}
}
