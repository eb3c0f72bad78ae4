package breaker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

var errBoom = errors.New("boom")

func fail(context.Context) error    { return errBoom }
func succeed(context.Context) error { return nil }

// openTimeout is the seed's. Tests that wait it out, or that must not drift from
// open to half-open between two assertions, run in a synctest bubble, where
// gobreaker's time.Now is the fake clock: waiting costs nothing and no slow run
// can cross the timeout by accident.
const openTimeout = 30 * time.Second

func testConfig() Config {
	c := DefaultConfig()
	c.OpenTimeout = openTimeout
	return c
}

type transitions struct {
	mu  sync.Mutex
	log []string
}

func (t *transitions) record(host string, from, to State) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.log = append(t.log, fmt.Sprintf("%s:%s->%s", host, from, to))
}

func (t *transitions) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.log, " ")
}

func TestBreakerLifecycle(t *testing.T) { synctest.Test(t, testBreakerLifecycle) }

func testBreakerLifecycle(t *testing.T) {
	tr := &transitions{}
	s := New(testConfig(), WithOnStateChange(tr.record))
	ctx := context.Background()

	for i := range 5 {
		if err := s.Do(ctx, "a.example", fail); !errors.Is(err, errBoom) {
			t.Fatalf("failure %d: err = %v, want errBoom", i+1, err)
		}
	}
	if got := s.State("a.example"); got != StateOpen {
		t.Fatalf("after 5 failures state = %v, want open", got)
	}

	// Open: answers at once without calling fn.
	called := false
	err := s.Do(ctx, "A.Example.", func(context.Context) error { called = true; return nil })
	var oe *OpenError
	if !errors.As(err, &oe) || !errors.Is(err, ErrOpen) || oe.Host != "a.example" {
		t.Fatalf("err = %v, want *OpenError for a.example", err)
	}
	if called {
		t.Fatal("open breaker called fn")
	}

	// Open for exactly OpenTimeout, then half-open.
	time.Sleep(openTimeout - time.Millisecond)
	if got := s.State("a.example"); got != StateOpen {
		t.Fatalf("just before OpenTimeout state = %v, want open", got)
	}
	time.Sleep(2 * time.Millisecond)
	if got := s.State("a.example"); got != StateHalfOpen {
		t.Fatalf("just after OpenTimeout state = %v, want half-open", got)
	}

	// After OpenTimeout: exactly one trial while it is in flight.
	release := make(chan struct{})
	trialStarted := make(chan struct{})
	trialDone := make(chan error)
	go func() {
		trialDone <- s.Do(ctx, "a.example", func(context.Context) error {
			close(trialStarted)
			<-release
			return nil
		})
	}()
	<-trialStarted
	if err := s.Do(ctx, "a.example", succeed); !errors.Is(err, ErrOpen) {
		t.Fatalf("second half-open request err = %v, want ErrOpen", err)
	}
	close(release)
	if err := <-trialDone; err != nil {
		t.Fatalf("trial err = %v", err)
	}
	if got := s.State("a.example"); got != StateClosed {
		t.Fatalf("after successful trial state = %v, want closed", got)
	}

	// Trip again, then a failed trial reopens it.
	for range 5 {
		_ = s.Do(ctx, "a.example", fail)
	}
	time.Sleep(openTimeout + time.Millisecond)
	if err := s.Do(ctx, "a.example", fail); !errors.Is(err, errBoom) {
		t.Fatalf("trial err = %v, want errBoom", err)
	}
	if got := s.State("a.example"); got != StateOpen {
		t.Fatalf("after failed trial state = %v, want open", got)
	}
	if err := s.Do(ctx, "a.example", succeed); !errors.Is(err, ErrOpen) {
		t.Fatalf("err = %v, want ErrOpen after reopening", err)
	}

	want := "a.example:closed->open a.example:open->half-open a.example:half-open->closed " +
		"a.example:closed->open a.example:open->half-open a.example:half-open->open"
	if got := tr.String(); got != want {
		t.Errorf("transitions:\n got %s\nwant %s", got, want)
	}
}

func TestFailureClassification(t *testing.T) {
	refused := errors.New("refused by policy")
	cfg := testConfig()
	cfg.IsFailure = func(err error) bool { return DefaultIsFailure(err) && !errors.Is(err, refused) }
	tests := []struct {
		name    string
		cfg     Config
		err     error
		wantOpn bool
	}{
		{"plain error trips", testConfig(), errBoom, true},
		{"deadline trips", testConfig(), context.DeadlineExceeded, true},
		{"cancel ignored", testConfig(), fmt.Errorf("dial: %w", context.Canceled), false},
		{"custom exclusion ignored", cfg, fmt.Errorf("x: %w", refused), false},
		{"custom still trips others", cfg, errBoom, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := New(tt.cfg)
				for range 10 {
					err := s.Do(context.Background(), "h", func(context.Context) error { return tt.err })
					if errors.Is(err, ErrOpen) {
						break
					}
				}
				if got := s.State("h") == StateOpen; got != tt.wantOpn {
					t.Errorf("open = %v, want %v", got, tt.wantOpn)
				}
			})
		})
	}
}

func TestSuccessResetsConsecutiveCount(t *testing.T) {
	s := New(testConfig())
	ctx := context.Background()
	for range 3 {
		for range 4 {
			_ = s.Do(ctx, "h", fail)
		}
		_ = s.Do(ctx, "h", succeed)
	}
	if got := s.State("h"); got != StateClosed {
		t.Errorf("state = %v, want closed (failures were never consecutive)", got)
	}
}

func TestExcludedTrialFreesSlot(t *testing.T) { synctest.Test(t, testExcludedTrialFreesSlot) }

func testExcludedTrialFreesSlot(t *testing.T) {
	s := New(testConfig())
	ctx := context.Background()
	for range 5 {
		_ = s.Do(ctx, "h", fail)
	}
	time.Sleep(openTimeout + time.Millisecond)
	// A cancelled trial says nothing about the host; the next one may go.
	_ = s.Do(ctx, "h", func(context.Context) error { return context.Canceled })
	if err := s.Do(ctx, "h", succeed); err != nil {
		t.Fatalf("err = %v, want the next trial to run", err)
	}
	if got := s.State("h"); got != StateClosed {
		t.Errorf("state = %v, want closed", got)
	}
}

func TestDoneContextDoesNotCallFn(t *testing.T) {
	s := New(testConfig())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var calls atomic.Int32
	err := s.Do(ctx, "h", func(context.Context) error { calls.Add(1); return nil })
	if !errors.Is(err, context.Canceled) || calls.Load() != 0 {
		t.Errorf("err = %v, calls = %d", err, calls.Load())
	}
}

func TestHostsIndependent(t *testing.T) { synctest.Test(t, testHostsIndependent) }

func testHostsIndependent(t *testing.T) {
	s := New(testConfig())
	ctx := context.Background()
	for range 5 {
		_ = s.Do(ctx, "bad.example", fail)
	}
	if err := s.Do(ctx, "bad.example", succeed); !errors.Is(err, ErrOpen) {
		t.Fatalf("bad host err = %v, want ErrOpen", err)
	}
	if err := s.Do(ctx, "good.example", succeed); err != nil {
		t.Fatalf("good host err = %v", err)
	}
	if got := s.State("good.example"); got != StateClosed {
		t.Errorf("good host state = %v", got)
	}
}

// TestPortsIndependent: with host:port keys a closed port trips its own breaker
// only; the same host's other ports, and the bare host, keep theirs.
func TestPortsIndependent(t *testing.T) { synctest.Test(t, testPortsIndependent) }

func testPortsIndependent(t *testing.T) {
	s := New(testConfig())
	ctx := context.Background()
	for range 5 {
		_ = s.Do(ctx, "h.example:81", fail)
	}
	if err := s.Do(ctx, "h.example:81", succeed); !errors.Is(err, ErrOpen) {
		t.Fatalf("bad port err = %v, want ErrOpen", err)
	}
	for _, key := range []string{"h.example:443", "h.example", "[::1]:81"} {
		if err := s.Do(ctx, key, succeed); err != nil {
			t.Errorf("%s: err = %v", key, err)
		}
	}
}

// TestKeyNormalized: case and a trailing dot on the host do not make a new
// breaker, with or without a port, IPv6 literals included.
func TestKeyNormalized(t *testing.T) { synctest.Test(t, testKeyNormalized) }

func testKeyNormalized(t *testing.T) {
	s := New(testConfig())
	ctx := context.Background()
	for _, key := range []string{"a.example:443", "A.Example.:443", "a.EXAMPLE:443"} {
		_ = s.Do(ctx, key, fail)
	}
	for _, key := range []string{"[FE80::1]:80", "[fe80::1]:80"} {
		_ = s.Do(ctx, key, fail)
	}
	_ = s.Do(ctx, "B.Example.", fail)
	_ = s.Do(ctx, "b.example", fail)
	if n := s.Len(); n != 3 {
		t.Errorf("Len = %d, want 3 breakers (a.example:443, [fe80::1]:80, b.example)", n)
	}
	// Three failures so far on a.example:443; two more under other spellings open it.
	_ = s.Do(ctx, "A.EXAMPLE.:443", fail)
	_ = s.Do(ctx, "a.example.:443", fail)
	var oe *OpenError
	if err := s.Do(ctx, "a.example:443", succeed); !errors.As(err, &oe) || oe.Host != "a.example:443" {
		t.Errorf("err = %v, want *OpenError for a.example:443", err)
	}
}

func TestMapIsBounded(t *testing.T) {
	cfg := testConfig()
	cfg.MaxHosts = 32
	cfg.OpenTimeout = time.Hour
	s := New(cfg)
	ctx := context.Background()

	// A tripped breaker should survive a flood of one-off hosts.
	for range 5 {
		_ = s.Do(ctx, "victim.example", fail)
	}
	for i := range 10000 {
		_ = s.Do(ctx, fmt.Sprintf("h%d.example", i), succeed)
		if n := s.Len(); n > cfg.MaxHosts {
			t.Fatalf("after %d hosts Len = %d > %d", i, n, cfg.MaxHosts)
		}
	}
	if got := s.State("victim.example"); got != StateOpen {
		t.Errorf("tripped breaker was evicted by healthy ones: state %v", got)
	}

	// When every breaker is tripped the map still stays bounded.
	for i := range 200 {
		host := fmt.Sprintf("bad%d.example", i)
		for range 5 {
			_ = s.Do(ctx, host, fail)
		}
	}
	if n := s.Len(); n > cfg.MaxHosts {
		t.Errorf("Len = %d > %d with all breakers tripped", n, cfg.MaxHosts)
	}
}

func TestConcurrentUse(t *testing.T) {
	cfg := testConfig()
	cfg.MaxHosts = 8
	s := New(cfg, WithOnStateChange(func(string, State, State) {}))
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				fn := succeed
				if (g+i)%3 == 0 {
					fn = fail
				}
				_ = s.Do(context.Background(), fmt.Sprintf("h%d", i%20), fn)
				_ = s.State(fmt.Sprintf("h%d", i%20))
			}
		}()
	}
	wg.Wait()
	if n := s.Len(); n > cfg.MaxHosts {
		t.Errorf("Len = %d", n)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		bad  string
	}{
		{"default", func(*Config) {}, ""},
		{"no failures", func(c *Config) { c.ConsecutiveFailures = 0 }, "ConsecutiveFailures"},
		{"zero timeout", func(c *Config) { c.OpenTimeout = 0 }, "OpenTimeout"},
		{"negative timeout", func(c *Config) { c.OpenTimeout = -time.Second }, "OpenTimeout"},
		{"no trial", func(c *Config) { c.HalfOpenMaxRequests = 0 }, "HalfOpenMaxRequests"},
		{"no hosts", func(c *Config) { c.MaxHosts = 0 }, "MaxHosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mod(&c)
			err := c.Validate()
			if tt.bad == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.bad) {
				t.Fatalf("Validate() = %v, want error naming %s", err, tt.bad)
			}
		})
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{StateClosed: "closed", StateHalfOpen: "half-open", StateOpen: "open", State(9): "state(9)"} {
		if got := s.String(); got != want {
			t.Errorf("%d: got %q want %q", int(s), got, want)
		}
	}
}
