package lifecycle_test

import (
	"context"
	"errors"
	"net/http"
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
	w := lifecycle.NewWaker(c, 5*time.Millisecond, 10*time.Second, func(lifecycle.WakeResult, time.Duration) {
		mu.Lock()
		progress++
		mu.Unlock()
	})
	var wakeUps atomic.Int32
	w.Done = func(elapsed time.Duration, err error) {
		if err == nil && elapsed > 0 {
			wakeUps.Add(1)
		}
	}
	var wg sync.WaitGroup
	addrs := make([]string, 8)
	errs := make([]error, 8)
	for i := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addrs[i], errs[i] = w.Address(context.Background())
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
	if _, err := w.Address(context.Background()); err != nil || g.calls.Load() != 3 {
		t.Fatalf("remembered address not used (calls %d, err %v)", g.calls.Load(), err)
	}
	w.Forget("198.51.100.1:8443") // a stale address: ignored
	if _, _ = w.Address(context.Background()); g.calls.Load() != 3 {
		t.Fatal("forgetting another address dropped the current one")
	}
	w.Forget("203.0.113.5:8443")
	if _, err := w.Address(context.Background()); err != nil || g.calls.Load() != 4 {
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
	w := lifecycle.NewWaker(c, 20*time.Millisecond, 10*time.Second, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	if _, err := w.Address(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("impatient caller: %v", err)
	}
	if addr, err := w.Address(context.Background()); err != nil || addr != "203.0.113.5:8443" {
		t.Fatalf("patient caller: %q, %v", addr, err)
	}
}

func TestWakerFailureIsNotRemembered(t *testing.T) {
	t.Parallel()
	g, c := newGateway(t, answer{200, running})
	c.APIKey = "wrong"
	w := lifecycle.NewWaker(c, time.Millisecond, time.Second, nil)
	if _, err := w.Address(context.Background()); !errors.Is(err, lifecycle.ErrUnauthorized) {
		t.Fatalf("err = %v", err)
	}
	c.APIKey = "secret"
	if addr, err := w.Address(context.Background()); err != nil || addr == "" || g.calls.Load() != 1 {
		t.Fatalf("retry after a failure: %q, %v", addr, err)
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
