package retry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

var (
	errTransient = errors.New("transient")
	errFatal     = errors.New("fatal")
)

func tiny() Policy {
	return Policy{Attempts: 5, Initial: time.Millisecond, Multiplier: 2, Max: 4 * time.Millisecond}
}

func isTransient(err error) bool { return errors.Is(err, errTransient) }

// script returns fn that yields errs in order (nil once exhausted) and
// counts calls.
func script(errs ...error) (func(context.Context) error, *int) {
	n := 0
	return func(context.Context) error {
		n++
		if n <= len(errs) {
			return errs[n-1]
		}
		return nil
	}, &n
}

// bare matches target itself, returned as fn returned it: not wrapped in an
// *ExhaustedError, a Permanent marker or anything else (errors.Is alone would
// accept those).
func bare(target error) func(error) bool {
	return func(e error) bool { return errors.Is(e, target) && errors.Unwrap(e) == nil }
}

func TestDoOutcomes(t *testing.T) {
	tests := []struct {
		name      string
		errs      []error
		retryable func(error) bool
		calls     int
		check     func(error) bool
	}{
		{"first try", nil, isTransient, 1, func(e error) bool { return e == nil }},
		{"succeeds on third", []error{errTransient, errTransient}, isTransient, 3, func(e error) bool { return e == nil }},
		{"exhausted", []error{errTransient, errTransient, errTransient, errTransient, errTransient, errTransient}, isTransient, 5,
			func(e error) bool {
				var ex *ExhaustedError
				return errors.As(e, &ex) && ex.Attempts == 5 && errors.Is(e, ErrExhausted) && errors.Is(e, errTransient)
			}},
		{"not retryable", []error{errTransient, errFatal}, isTransient, 2, bare(errFatal)},
		{"permanent overrides predicate", []error{Permanent(errTransient)}, isTransient, 1, bare(errTransient)},
		{"wrapped permanent kept", []error{fmt.Errorf("op: %w", Permanent(errTransient))}, isTransient, 1,
			func(e error) bool { return errors.Is(e, errTransient) && !errors.Is(e, ErrExhausted) }},
		{"nil predicate retries all", []error{errFatal, errFatal}, nil, 3, func(e error) bool { return e == nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fn, n := script(tt.errs...)
				err := tiny().Do(context.Background(), fn, tt.retryable)
				if *n != tt.calls {
					t.Errorf("calls = %d, want %d", *n, tt.calls)
				}
				if !tt.check(err) {
					t.Errorf("unexpected error %v", err)
				}
			})
		})
	}
}

func TestDelaysGrowAndAreCapped(t *testing.T) {
	tests := []struct {
		name   string
		jitter float64
	}{
		{"no jitter", 0},
		{"jitter", 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { synctest.Test(t, func(t *testing.T) { delaysGrowAndAreCapped(t, tt.jitter) }) })
	}
}

// delaysGrowAndAreCapped runs on the fake clock, so the delays Do announces
// through OnRetry can be checked against the time it took.
func delaysGrowAndAreCapped(t *testing.T, jitter float64) {
	p := tiny()
	p.Attempts = 6
	p.Jitter = jitter
	var delays []time.Duration
	var attempts []int
	p.OnRetry = func(a int, err error, d time.Duration) {
		if !errors.Is(err, errTransient) {
			t.Errorf("OnRetry err = %v", err)
		}
		attempts = append(attempts, a)
		delays = append(delays, d)
	}
	fn := func(context.Context) error { return errTransient }
	start := time.Now()
	_ = p.Do(context.Background(), fn, isTransient)
	var slept time.Duration
	for _, d := range delays {
		slept += d
	}
	if el := time.Since(start); el != slept {
		t.Errorf("Do took %v, want exactly the %v of delays it announced", el, slept)
	}

	base := []int64{1, 2, 4, 4, 4} // ms: ×2 then capped at Max
	if len(delays) != len(base) {
		t.Fatalf("delays = %v, want %d of them", delays, len(base))
	}
	for i, d := range delays {
		if attempts[i] != i+1 {
			t.Errorf("OnRetry attempt = %d, want %d", attempts[i], i+1)
		}
		b := time.Duration(base[i]) * time.Millisecond
		lo := time.Duration(float64(b) * (1 - jitter))
		hi := min(time.Duration(float64(b)*(1+jitter))+1, p.Max)
		if d < lo || d > hi {
			t.Errorf("delay %d = %v, want in [%v, %v]", i+1, d, lo, hi)
		}
		if d > p.Max {
			t.Errorf("delay %d = %v exceeds Max %v", i+1, d, p.Max)
		}
	}
}

func TestCancelDuringWaitReturnsPromptly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := DefaultPolicy()
		p.Initial = 10 * time.Second
		p.Max = 10 * time.Second
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var once sync.Once
		p.OnRetry = func(int, error, time.Duration) {
			once.Do(func() { time.AfterFunc(20*time.Millisecond, cancel) })
		}
		calls := 0
		start := time.Now()
		err := p.Do(ctx, func(context.Context) error { calls++; return errTransient }, nil)
		if el := time.Since(start); el != 20*time.Millisecond {
			t.Fatalf("Do returned %v after it started, want at the cancel, 20ms", el)
		}
		if calls != 1 {
			t.Errorf("calls = %d, want 1", calls)
		}
		if !errors.Is(err, context.Canceled) || !errors.Is(err, errTransient) {
			t.Errorf("err = %v, want both context.Canceled and the last error", err)
		}
	})
}

func TestDeadlineKeepsNetErrorReachable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		p := DefaultPolicy()
		opErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
		start := time.Now()
		err := p.Do(ctx, func(context.Context) error { return opErr }, nil)
		var ne net.Error
		if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ne) {
			t.Errorf("err = %v, want DeadlineExceeded with a reachable net.Error", err)
		}
		if el := time.Since(start); el != 30*time.Millisecond {
			t.Errorf("Do returned after %v, want at the 30ms deadline", el)
		}
	})
}

// TestBudgets: Attempts, MaxElapsed and ctx each end a sequence of failures, at
// the fake clock's exact time. MaxElapsed counts from the start of the first
// attempt and refuses a wait that would end after it.
func TestBudgets(t *testing.T) {
	tests := []struct {
		name    string
		policy  Policy
		took    time.Duration // how long each attempt takes
		ctx     time.Duration // ctx timeout; 0 for none
		calls   int
		elapsed time.Duration
		ctxErr  bool // the error is the ctx's, not an *ExhaustedError
	}{
		{name: "attempts", policy: withBudget(Constant(5*time.Second), 3, 0), calls: 3, elapsed: 10 * time.Second},
		{name: "max elapsed, last wait ends on it", policy: withBudget(Constant(5*time.Second), Unlimited, 90*time.Second),
			calls: 19, elapsed: 90 * time.Second},
		{name: "max elapsed, no wait past it", policy: withBudget(Constant(5*time.Second), Unlimited, 92*time.Second),
			calls: 19, elapsed: 90 * time.Second},
		{name: "max elapsed under one interval", policy: withBudget(Constant(5*time.Second), Unlimited, 4*time.Second),
			calls: 1, elapsed: 0},
		{name: "attempts before max elapsed", policy: withBudget(Constant(5*time.Second), 2, time.Minute),
			calls: 2, elapsed: 5 * time.Second},
		{name: "max elapsed before attempts", policy: withBudget(Constant(5*time.Second), 10, 7*time.Second),
			calls: 2, elapsed: 5 * time.Second},
		// Attempts at 0-2, 7-9, 14-16 s; at 16 s a 5 s wait would end at 21 > 20.
		{name: "max elapsed counts the attempts' own time", policy: withBudget(Constant(5*time.Second), Unlimited, 20*time.Second),
			took: 2 * time.Second, calls: 3, elapsed: 16 * time.Second},
		// Attempts every 5 s up to 60 s; the ctx ends the wait after that one.
		{name: "unlimited until ctx ends", policy: Constant(5 * time.Second), ctx: 62 * time.Second,
			calls: 13, elapsed: 62 * time.Second, ctxErr: true},
		// Attempts at 0, 1, 3, 7 and 15 s; the next wait, 16 s, would end at 31 > 20.
		{name: "exponential within max elapsed", policy: withBudget(Policy{Initial: time.Second, Multiplier: 2, Max: time.Minute}, Unlimited, 20*time.Second),
			calls: 5, elapsed: 15 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				if tt.ctx > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.ctx)
					defer cancel()
				}
				calls := 0
				start := time.Now()
				err := tt.policy.Do(ctx, func(context.Context) error {
					calls++
					time.Sleep(tt.took)
					return errTransient
				}, nil)
				if el := time.Since(start); calls != tt.calls || el != tt.elapsed {
					t.Errorf("%d calls over %v, want %d over %v", calls, el, tt.calls, tt.elapsed)
				}
				if tt.ctxErr {
					if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errTransient) || errors.Is(err, ErrExhausted) {
						t.Errorf("err = %v, want the deadline and the last error", err)
					}
					return
				}
				var ex *ExhaustedError
				if !errors.As(err, &ex) || ex.Attempts != tt.calls || !errors.Is(err, errTransient) {
					t.Errorf("err = %v, want an *ExhaustedError after %d attempts", err, tt.calls)
				}
			})
		})
	}
}

func withBudget(p Policy, attempts int, maxElapsed time.Duration) Policy {
	p.Attempts, p.MaxElapsed = attempts, maxElapsed
	return p
}

func TestConstant(t *testing.T) {
	p := Constant(5 * time.Second)
	want := Policy{Attempts: Unlimited, Initial: 5 * time.Second, Multiplier: 1, Max: 5 * time.Second}
	if p.Validate() != nil || p.Attempts != want.Attempts || p.Initial != want.Initial || p.Multiplier != want.Multiplier ||
		p.Max != want.Max || p.Jitter != 0 || p.MaxElapsed != 0 || p.OnRetry != nil {
		t.Fatalf("Constant(5s) = %+v (Validate %v), want %+v", p, p.Validate(), want)
	}
}

func TestDoneContextSkipsFn(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	fn, n := script()
	if err := tiny().Do(ctx, fn, nil); !errors.Is(err, context.Canceled) || *n != 0 {
		t.Errorf("err = %v, calls = %d", err, *n)
	}
}

func TestPermanentNil(t *testing.T) {
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Policy)
		bad  string
	}{
		{"default", func(*Policy) {}, ""},
		{"single attempt", func(p *Policy) { p.Attempts = 1 }, ""},
		{"unlimited attempts", func(p *Policy) { p.Attempts = Unlimited }, ""},
		{"zero attempts", func(p *Policy) { p.Attempts = 0 }, "Attempts"},
		{"negative attempts", func(p *Policy) { p.Attempts = -2 }, "Attempts"},
		{"max elapsed", func(p *Policy) { p.MaxElapsed = time.Minute }, ""},
		{"negative max elapsed", func(p *Policy) { p.MaxElapsed = -time.Second }, "MaxElapsed"},
		{"zero initial", func(p *Policy) { p.Initial = 0 }, "Initial"},
		{"shrinking", func(p *Policy) { p.Multiplier = 0.5 }, "Multiplier"},
		{"max below initial", func(p *Policy) { p.Max = time.Millisecond }, "Max"},
		{"jitter too big", func(p *Policy) { p.Jitter = 1 }, "Jitter"},
		{"negative jitter", func(p *Policy) { p.Jitter = -0.1 }, "Jitter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultPolicy()
			tt.mod(&p)
			err := p.Validate()
			if tt.bad == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.bad) {
				t.Fatalf("Validate() = %v, want error naming %s", err, tt.bad)
			}
			fn, n := script()
			if p.Do(context.Background(), fn, nil) == nil || *n != 0 {
				t.Fatalf("Do with invalid policy ran fn %d times", *n)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name   string
		policy Policy
		want   []time.Duration // before jitter
	}{
		{"exponential, capped", Policy{Initial: s, Multiplier: 2, Max: 8 * s}, []time.Duration{s, 2 * s, 4 * s, 8 * s, 8 * s, 8 * s}},
		{"uneven cap", Policy{Initial: 3 * s, Multiplier: 2, Max: 10 * s}, []time.Duration{3 * s, 6 * s, 10 * s, 10 * s}},
		{"constant", Constant(5 * s), []time.Duration{5 * s, 5 * s, 5 * s}},
		{"jittered", Policy{Initial: s, Multiplier: 2, Max: 8 * s, Jitter: 0.5}, []time.Duration{s, 2 * s, 4 * s, 8 * s, 8 * s}},
		{"default policy", DefaultPolicy(), []time.Duration{s, 2 * s, 4 * s, 8 * s, 10 * s, 10 * s}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBackoff(tt.policy)
			check := func(round string) {
				for i, base := range tt.want {
					d := b.Next()
					lo := time.Duration(float64(base) * (1 - tt.policy.Jitter))
					hi := min(time.Duration(float64(base)*(1+tt.policy.Jitter))+1, tt.policy.Max)
					if tt.policy.Jitter == 0 {
						hi = base
					}
					if d < lo || d > hi || d > tt.policy.Max {
						t.Errorf("%s: delay %d = %v, want in [%v, %v], at most Max %v", round, i+1, d, lo, hi, tt.policy.Max)
					}
				}
			}
			check("first run")
			b.Reset()
			check("after Reset")
		})
	}
}

// The jitter must spread the delays, or many agents reconnect in step.
func TestBackoffJitterSpreads(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 50 {
		b := NewBackoff(Policy{Initial: time.Second, Multiplier: 2, Max: time.Minute, Jitter: 0.5})
		seen[b.Next()] = true
	}
	if len(seen) < 10 {
		t.Errorf("50 first delays took only %d values", len(seen))
	}
}

func TestNewBackoffPanicsOnInvalidDelays(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		ok   bool
	}{
		{"attempts are not its business", Policy{Attempts: 0, Initial: time.Second, Multiplier: 2, Max: time.Second}, true},
		{"zero initial", Policy{Multiplier: 2, Max: time.Second}, false},
		{"max below initial", Policy{Initial: time.Second, Multiplier: 2, Max: time.Millisecond}, false},
		{"jitter too big", Policy{Initial: time.Second, Multiplier: 2, Max: time.Second, Jitter: 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if r := recover(); (r == nil) != tt.ok {
					t.Errorf("NewBackoff(%+v) panic = %v, want panic %v", tt.p, r, !tt.ok)
				}
			}()
			NewBackoff(tt.p)
		})
	}
}

// TestSleep: Sleep waits its duration, ends early with ctx's error when ctx
// ends, and does not wait at all for a duration that is not positive.
func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if err := Sleep(context.Background(), time.Second); err != nil || time.Since(start) != time.Second {
			t.Fatalf("Sleep(1s) = %v after %v", err, time.Since(start))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start = time.Now()
		if err := Sleep(ctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 100*time.Millisecond {
			t.Fatalf("Sleep(1h) with a 100 ms deadline = %v after %v", err, time.Since(start))
		}
		if err := Sleep(ctx, 0); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Sleep(0) on an ended ctx = %v", err)
		}
		if err := Sleep(context.Background(), -time.Second); err != nil {
			t.Fatalf("Sleep(-1s) = %v", err)
		}
	})
}
