package lifecycle_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/lifecycle"
)

// fakeAPI is the Wake/Kill API in memory, for synctest bubbles: each call
// takes its answer from state (set by the test) and, for a long-poll, waits
// in fake time as the Lambda would.
type fakeAPI struct {
	mu     sync.Mutex
	state  lifecycle.State
	addr   string
	wakes  int // Wake calls (not probes)
	probes int
	bodies []lifecycle.WakeRequest
	// becomeRunning, if set, turns a starting server running this long after
	// the first Wake.
	becomeRunning time.Duration
	wokeAt        time.Time
}

func (f *fakeAPI) RoundTrip(r *http.Request) (*http.Response, error) {
	var req lifecycle.WakeRequest
	b, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(b, &req)
	f.mu.Lock()
	f.bodies = append(f.bodies, req)
	if req.Probe {
		f.probes++
	} else {
		f.wakes++
		if f.state == lifecycle.StateSleeping {
			f.state, f.wokeAt = lifecycle.StateStarting, time.Now()
		}
	}
	f.mu.Unlock()
	deadline := time.Now().Add(time.Duration(req.WaitSeconds) * time.Second)
	for {
		f.mu.Lock()
		if f.state == lifecycle.StateStarting && f.becomeRunning > 0 && time.Since(f.wokeAt) >= f.becomeRunning {
			f.state = lifecycle.StateRunning
		}
		st, addr := f.state, f.addr
		f.mu.Unlock()
		if req.Probe || st == lifecycle.StateRunning || !time.Now().Before(deadline) {
			res := lifecycle.WakeResult{State: st}
			if st == lifecycle.StateRunning {
				res.Address = addr
			}
			body, _ := json.Marshal(res)
			return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
				Body: io.NopCloser(bytes.NewReader(body)), Request: r}, nil
		}
		time.Sleep(time.Second)
	}
}

func (f *fakeAPI) set(st lifecycle.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = st
}

func (f *fakeAPI) counts() (wakes, probes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wakes, f.probes
}

func (f *fakeAPI) client(wait time.Duration) *lifecycle.APIClient {
	return &lifecycle.APIClient{Endpoint: "https://api.invalid/prod", APIKey: "k", HTTPClient: &http.Client{Transport: f}, Wait: wait}
}

// With long-poll, the Lambda paces the calls: the agent learns the server
// runs the second it does, not up to a poll interval later, and asks each
// call to wait.
func TestWaitRunningLongPoll(t *testing.T) {
	for _, tc := range []struct {
		name       string
		wait       time.Duration
		wantTook   time.Duration
		wantWaited int
	}{
		{"long-poll", 20 * time.Second, 7 * time.Second, 20},
		// Without it the agent polls every 2 s: running at 7 s is seen at 8 s.
		{"polling", 0, 8 * time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				api := &fakeAPI{state: lifecycle.StateSleeping, addr: "203.0.113.5:443", becomeRunning: 7 * time.Second}
				start := time.Now()
				addr, err := api.client(tc.wait).WaitRunning(context.Background(), 2*time.Second, nil)
				if err != nil || addr != "203.0.113.5:443" {
					t.Fatalf("WaitRunning = %q, %v", addr, err)
				}
				if took := time.Since(start); took != tc.wantTook {
					t.Fatalf("running seen after %v, want %v", took, tc.wantTook)
				}
				for _, b := range api.bodies {
					if b.WaitSeconds != tc.wantWaited || b.Probe {
						t.Fatalf("request %+v, want wait_seconds %d", b, tc.wantWaited)
					}
				}
			})
		})
	}
}

func TestProbeRemembersOnlyARunningServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := &fakeAPI{state: lifecycle.StateRunning, addr: "203.0.113.5:443"}
		w := lifecycle.NewWaker(api.client(0), lifecycle.WakerConfig{})
		defer w.Close()
		if r, err := w.Probe(context.Background()); err != nil || r.State != lifecycle.StateRunning {
			t.Fatalf("probe = %+v, %v", r, err)
		}
		addr, woke, err := w.Address(context.Background())
		if err != nil || addr != "203.0.113.5:443" || !woke {
			t.Fatalf("after probing a running server: %q woke=%v %v", addr, woke, err)
		}
		api.set(lifecycle.StateSleeping)
		if _, err := w.Probe(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st := w.Status(); st.Address != "" || st.State != lifecycle.StateSleeping {
			t.Fatalf("after probing a sleeping server: %+v", st)
		}
		if wakes, probes := api.counts(); wakes != 0 || probes != 2 {
			t.Fatalf("%d wakes, %d probes; want 0, 2", wakes, probes)
		}
	})
}

// Work held past the bound gets a StartingError with a Retry-After; the
// wake-up goes on for the next caller.
func TestHoldAnswersStartingPastTheBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := &fakeAPI{state: lifecycle.StateSleeping, addr: "203.0.113.5:443", becomeRunning: 100 * time.Second}
		w := lifecycle.NewWaker(api.client(20*time.Second), lifecycle.WakerConfig{Timeout: 3 * time.Minute})
		defer w.Close()
		connect := func(ctx context.Context) error { _, _, err := w.Address(ctx); return err }
		start := time.Now()
		err := w.Hold(context.Background(), 90*time.Second, connect)
		var se *lifecycle.StartingError
		if !errors.As(err, &se) || !errors.Is(err, lifecycle.ErrStarting) {
			t.Fatalf("Hold = %v, want a StartingError", err)
		}
		if time.Since(start) != 90*time.Second || se.State != lifecycle.StateStarting || se.RetryAfter() <= 0 {
			t.Fatalf("held %v: %+v", time.Since(start), se)
		}
		// The wake-up went on: 10 s later a new request is through.
		time.Sleep(10 * time.Second)
		if err := w.Hold(context.Background(), 90*time.Second, connect); err != nil {
			t.Fatalf("second hold: %v", err)
		}
		if wakes, _ := api.counts(); wakes > 6 {
			t.Fatalf("%d Wake calls for one 100 s wake-up with a 20 s long-poll", wakes)
		}
		// A caller that goes away gets its own context's error.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := w.Hold(ctx, time.Minute, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled hold = %v", err)
		}
	})
}

// fakeTunnel plays tunnel.Client for Keep: Connect dials through the Waker
// as the agent's dialer does, and the test takes sessions down.
type fakeTunnel struct {
	w        *lifecycle.Waker
	mu       sync.Mutex
	up       bool
	changed  chan struct{}
	connects int
}

func newFakeTunnel(w *lifecycle.Waker) *fakeTunnel {
	return &fakeTunnel{w: w, changed: make(chan struct{})}
}

func (f *fakeTunnel) Connect(ctx context.Context) error {
	f.mu.Lock()
	f.connects++
	f.mu.Unlock()
	if _, _, err := f.w.Address(ctx); err != nil {
		return err
	}
	f.setUp(true)
	return nil
}

func (f *fakeTunnel) setUp(up bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.up != up {
		f.up = up
		close(f.changed)
		f.changed = make(chan struct{})
	}
}

func (f *fakeTunnel) wait(ctx context.Context, want bool) error {
	for {
		f.mu.Lock()
		up, ch := f.up, f.changed
		f.mu.Unlock()
		if up == want {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *fakeTunnel) WaitUp(ctx context.Context) error   { return f.wait(ctx, true) }
func (f *fakeTunnel) WaitDown(ctx context.Context) error { return f.wait(ctx, false) }

func (f *fakeTunnel) connectCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connects
}

// Keep wakes the server only at the start (on_start); after a sleep it
// probes once and waits for demand, however long that takes; after a lost
// tunnel to a running server it reconnects without waking.
func TestKeepNeverWakesByItself(t *testing.T) {
	for _, onStart := range []bool{true, false} {
		name := map[bool]string{true: "on_start", false: "on_demand"}[onStart]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				api := &fakeAPI{state: lifecycle.StateSleeping, addr: "203.0.113.5:443", becomeRunning: 30 * time.Second}
				w := lifecycle.NewWaker(api.client(20*time.Second), lifecycle.WakerConfig{Log: zerolog.Nop()})
				defer w.Close()
				tun := newFakeTunnel(w)
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); w.Keep(ctx, tun, onStart) }()
				defer func() { cancel(); <-done }()

				time.Sleep(time.Minute)
				synctest.Wait()
				wantWakes := 0
				if onStart {
					wantWakes = 2 // one wake-up: a 20 s long-poll, then the call that sees it run at 30 s
				} else {
					if err := tun.Connect(ctx); err != nil { // the first request
						t.Fatal(err)
					}
					synctest.Wait() // Keep sees the tunnel up
					wantWakes = 2
				}
				if wakes, probes := api.counts(); wakes != wantWakes || probes != 0 {
					t.Fatalf("at start: %d wakes %d probes, want %d 0", wakes, probes, wantWakes)
				}

				// Sleep puts the server down: Keep probes once and waits.
				api.set(lifecycle.StateSleeping)
				tun.setUp(false)
				time.Sleep(6 * time.Hour) // no demand for hours
				synctest.Wait()
				if wakes, probes := api.counts(); wakes != wantWakes || probes != 1 {
					t.Fatalf("after a sleep and hours without demand: %d wakes %d probes, want %d 1", wakes, probes, wantWakes)
				}
				if st := w.Status(); st.Address != "" || st.State != lifecycle.StateSleeping {
					t.Fatalf("status while asleep: %+v", st)
				}

				// A request wakes it.
				connects := tun.connectCount()
				if err := tun.Connect(ctx); err != nil {
					t.Fatal(err)
				}
				wakes, _ := api.counts()
				if wakes <= wantWakes {
					t.Fatal("a request did not wake the sleeping server")
				}
				synctest.Wait() // Keep sees the tunnel up

				// The path breaks but the server runs on: reconnect, no Wake.
				tun.setUp(false)
				synctest.Wait()
				if w2, probes := api.counts(); w2 != wakes || probes != 2 || tun.connectCount() != connects+2 || !tun.up {
					t.Fatalf("after a lost tunnel to a running server: %d wakes (had %d), %d probes, %d connects (had %d), up %v",
						w2, wakes, probes, tun.connectCount(), connects, tun.up)
				}
			})
		})
	}
}
