package retry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
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
		{"not retryable", []error{errTransient, errFatal}, isTransient, 2, func(e error) bool { return e == errFatal }},
		{"permanent overrides predicate", []error{Permanent(errTransient)}, isTransient, 1, func(e error) bool { return e == errTransient }},
		{"wrapped permanent kept", []error{fmt.Errorf("op: %w", Permanent(errTransient))}, isTransient, 1,
			func(e error) bool { return errors.Is(e, errTransient) && !errors.Is(e, ErrExhausted) }},
		{"nil predicate retries all", []error{errFatal, errFatal}, nil, 3, func(e error) bool { return e == nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fn, n := script(tt.errs...)
			err := tiny().Do(context.Background(), fn, tt.retryable)
			if *n != tt.calls {
				t.Errorf("calls = %d, want %d", *n, tt.calls)
			}
			if !tt.check(err) {
				t.Errorf("unexpected error %v", err)
			}
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
		t.Run(tt.name, func(t *testing.T) {
			p := tiny()
			p.Attempts = 6
			p.Jitter = tt.jitter
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
			_ = p.Do(context.Background(), fn, isTransient)

			base := []time.Duration{1, 2, 4, 4, 4} // ms: ×2 then capped at Max
			if len(delays) != len(base) {
				t.Fatalf("delays = %v, want %d of them", delays, len(base))
			}
			for i, d := range delays {
				if attempts[i] != i+1 {
					t.Errorf("OnRetry attempt = %d, want %d", attempts[i], i+1)
				}
				b := base[i] * time.Millisecond
				lo := time.Duration(float64(b) * (1 - tt.jitter))
				hi := min(time.Duration(float64(b)*(1+tt.jitter))+1, p.Max)
				if d < lo || d > hi {
					t.Errorf("delay %d = %v, want in [%v, %v]", i+1, d, lo, hi)
				}
				if d > p.Max {
					t.Errorf("delay %d = %v exceeds Max %v", i+1, d, p.Max)
				}
			}
		})
	}
}

func TestCancelDuringWaitReturnsPromptly(t *testing.T) {
	p := DefaultPolicy()
	p.Initial = 10 * time.Second
	p.Max = 10 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	p.OnRetry = func(int, error, time.Duration) {
		once.Do(func() { time.AfterFunc(20*time.Millisecond, cancel) })
	}
	calls := 0
	start := time.Now()
	err := p.Do(ctx, func(context.Context) error { calls++; return errTransient }, nil)
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("Do took %v after cancel", el)
	}
	if calls != 1 {
		t.Errorf("calls = %d, want 1", calls)
	}
	if !errors.Is(err, context.Canceled) || !errors.Is(err, errTransient) {
		t.Errorf("err = %v, want both context.Canceled and the last error", err)
	}
}

func TestDeadlineKeepsNetErrorReachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	p := DefaultPolicy()
	opErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	err := p.Do(ctx, func(context.Context) error { return opErr }, nil)
	var ne net.Error
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ne) {
		t.Errorf("err = %v, want DeadlineExceeded with a reachable net.Error", err)
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
		{"zero attempts", func(p *Policy) { p.Attempts = 0 }, "Attempts"},
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
