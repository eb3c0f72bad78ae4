// Package retry re-runs an operation with exponential backoff.
//
// Retrying is only safe when repeating the operation cannot duplicate a side
// effect: a failed dial, a DNS lookup, an idempotent request whose body has
// not been sent. The caller states that through the retryable function passed
// to Do (or by wrapping an error with Permanent); this package never guesses.
//
// Delays come from github.com/cenkalti/backoff/v5, driven through its Retry
// function; this package adds a hard cap on the jittered delay, a time budget
// measured from the first attempt, error wrapping that keeps the last
// attempt's error, and a retryable predicate.
//
// Loops that are not "call until success", such as a reconnect loop that
// waits after every lost session and starts over after a good one, take the
// same delays one at a time from a [Backoff].
package retry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// ErrExhausted is matched (via errors.Is) by every *ExhaustedError.
var ErrExhausted = errors.New("retry: attempts exhausted")

// ExhaustedError reports that every allowed attempt failed with a retryable
// error. It unwraps to the last attempt's error, so errors.As still finds,
// for example, a *net.OpError inside it.
type ExhaustedError struct {
	Attempts int
	Err      error
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("retry: gave up after %d attempt(s): %v", e.Attempts, e.Err)
}

// Unwrap returns the last attempt's error.
func (e *ExhaustedError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrExhausted) true.
func (e *ExhaustedError) Is(target error) bool { return target == ErrExhausted }

// permanentError marks an error that must not be retried.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that Do stops at once, whatever the retryable
// predicate says, and returns err itself (unwrapped). It lets an operation
// that knows better than its caller, e.g. one that has already written a
// request body, veto a retry. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// Unlimited, as [Policy.Attempts], sets no limit on the number of attempts:
// the retries end with ctx or [Policy.MaxElapsed]. Zero attempts is not
// unlimited but invalid, so that a policy built from an unset configuration
// field is refused instead of retrying for ever.
const Unlimited = -1

// Policy describes how often and how patiently to retry.
type Policy struct {
	// Attempts is the total number of calls, including the first, or
	// [Unlimited].
	Attempts int
	// Initial is the delay before the second attempt.
	Initial time.Duration
	// Multiplier scales the delay after each attempt.
	Multiplier float64
	// Max caps every delay, jitter included.
	Max time.Duration
	// Jitter randomises each delay by up to ±Jitter of its value, so that
	// many clients failing together do not retry in lock step.
	Jitter float64
	// MaxElapsed, if positive, bounds the whole sequence, measured from the
	// start of the first attempt: no wait begins that would end after it, so
	// the last attempt starts at MaxElapsed at the latest. Zero means no bound
	// other than Attempts and ctx.
	MaxElapsed time.Duration
	// OnRetry, if set, is called before each wait with the 1-based number of
	// the attempt that just failed, its error, and the delay about to be
	// slept; useful for logging.
	OnRetry func(attempt int, err error, delay time.Duration)
}

// DefaultPolicy returns the seed policy: 3 attempts, 1 s initial delay,
// doubling, capped at 10 s, ±20 % jitter.
func DefaultPolicy() Policy {
	return Policy{Attempts: 3, Initial: time.Second, Multiplier: 2, Max: 10 * time.Second, Jitter: 0.2}
}

// Constant returns a policy that waits interval between attempts, without
// growth or jitter, and makes [Unlimited] attempts: set Attempts or MaxElapsed,
// or let ctx end it. It suits waiting for something that is known to be on its
// way, such as a server that is starting.
func Constant(interval time.Duration) Policy {
	return Policy{Attempts: Unlimited, Initial: interval, Multiplier: 1, Max: interval}
}

// Validate reports the first invalid field.
func (p Policy) Validate() error {
	switch {
	case p.Attempts < 1 && p.Attempts != Unlimited:
		return fmt.Errorf("retry: Attempts %d must be at least 1 (or Unlimited)", p.Attempts)
	case p.MaxElapsed < 0:
		return fmt.Errorf("retry: MaxElapsed %v must not be negative", p.MaxElapsed)
	}
	return p.validateDelays()
}

// validateDelays checks the fields a [Backoff] uses.
func (p Policy) validateDelays() error {
	switch {
	case p.Initial <= 0:
		return fmt.Errorf("retry: Initial %v must be positive", p.Initial)
	case p.Multiplier < 1:
		return fmt.Errorf("retry: Multiplier %v must be at least 1", p.Multiplier)
	case p.Max < p.Initial:
		return fmt.Errorf("retry: Max %v must be at least Initial %v", p.Max, p.Initial)
	case !(p.Jitter >= 0 && p.Jitter < 1):
		return fmt.Errorf("retry: Jitter %v must be in [0, 1)", p.Jitter)
	}
	return nil
}

// Do calls fn until it succeeds, at most p.Attempts times and within
// p.MaxElapsed, sleeping with exponential backoff in between. retryable decides, per error, whether
// another attempt is safe; nil means every error is retryable.
//
// It returns:
//   - nil on success;
//   - the error unchanged (Permanent unwrapped) when retryable says no or fn
//     returned a Permanent error;
//   - an *ExhaustedError wrapping the last error when attempts or
//     MaxElapsed run out;
//   - an error wrapping both ctx.Err() and the last error when ctx ends,
//     which cuts a backoff wait short. If ctx is done before the first
//     attempt, fn is not called.
//
// An invalid Policy is reported without calling fn.
func (p Policy) Do(ctx context.Context, fn func(ctx context.Context) error, retryable func(error) bool) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("retry: not started: %w", err)
	}
	// Most calls succeed at once: make the first attempt before setting up any of
	// the backoff machinery, which costs a dozen allocations.
	start := time.Now()
	first := fn(ctx)
	if first == nil {
		return nil
	}
	return p.retry(ctx, fn, retryable, start, first)
}

// retry continues Do after a first attempt, begun at start, that failed with
// first. It runs the same backoff.Retry loop as if that attempt had been made
// inside it.
func (p Policy) retry(ctx context.Context, fn func(ctx context.Context) error, retryable func(error) bool, start time.Time, first error) error {
	var (
		last     error
		attempts int
		stopped  bool // fn's error was not retryable
	)
	op := func() (struct{}, error) {
		attempts++
		var err error
		if attempts == 1 {
			err = first
		} else {
			err = fn(ctx)
		}
		if err == nil {
			return struct{}{}, nil
		}
		last = err
		var pe *permanentError
		if errors.As(err, &pe) || (retryable != nil && !retryable(err)) {
			stopped = true
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}
	b := p.backOff()
	b.start, b.maxElapsed = start, p.MaxElapsed
	opts := []backoff.RetryOption{
		backoff.WithBackOff(b),
		// backoff.Retry's own time budget starts after the first attempt, which
		// Do made outside it: cappedBackOff keeps MaxElapsed from the real start.
		backoff.WithMaxElapsedTime(0),
	}
	if p.Attempts != Unlimited {
		opts = append(opts, backoff.WithMaxTries(uint(p.Attempts)))
	}
	if p.OnRetry != nil {
		opts = append(opts, backoff.WithNotify(func(err error, d time.Duration) { p.OnRetry(attempts, err, d) }))
	}

	// backoff.Retry's own error is not used: it drops the last error on
	// cancellation, and the outcome is fully described by the state above.
	if _, err := backoff.Retry(ctx, op, opts...); err == nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("retry: stopped after %d attempt(s): %w (last error: %w)", attempts, err, last)
	}
	if stopped {
		// The marker is removed only when fn returned it as is: one fn wrapped in
		// its own context (fmt.Errorf("op: %w", Permanent(err))) is returned whole.
		// errors.As would find the marker at any depth and drop that context.
		if pe, ok := last.(*permanentError); ok { //nolint:errorlint // deliberately the outermost error only (see above)
			return pe.err
		}
		return last
	}
	return &ExhaustedError{Attempts: attempts, Err: last}
}

func (p Policy) backOff() *cappedBackOff {
	return &cappedBackOff{
		ExponentialBackOff: backoff.ExponentialBackOff{
			InitialInterval:     p.Initial,
			RandomizationFactor: p.Jitter,
			Multiplier:          p.Multiplier,
			MaxInterval:         p.Max,
		},
		max: p.Max,
	}
}

// cappedBackOff caps the jittered delay: backoff.ExponentialBackOff applies
// MaxInterval before randomisation, so on its own a 10 s cap with 20 % jitter
// could sleep 12 s. With maxElapsed set it also stops the sequence before a
// wait that would end more than maxElapsed after start.
type cappedBackOff struct {
	backoff.ExponentialBackOff
	max        time.Duration
	start      time.Time
	maxElapsed time.Duration
}

func (c *cappedBackOff) NextBackOff() time.Duration {
	d := min(c.ExponentialBackOff.NextBackOff(), c.max)
	if c.maxElapsed > 0 && time.Since(c.start)+d > c.maxElapsed {
		return backoff.Stop
	}
	return d
}

// Backoff hands out a policy's delays one at a time, for loops that decide
// themselves when to wait and when to start over: a reconnect loop waits
// [Backoff.Next] after each failed attempt and calls [Backoff.Reset] once a
// connection has held. The delays grow and are jittered and capped exactly as
// in [Policy.Do]; Attempts, MaxElapsed and OnRetry are not used.
//
// A Backoff is not safe for concurrent use: give each loop its own.
type Backoff struct {
	b *cappedBackOff
}

// NewBackoff returns a Backoff whose first delay is about p.Initial. It
// panics if p's delay fields (Initial, Multiplier, Max, Jitter) are invalid,
// as Validate reports: policies come from configuration validated earlier, so
// that is a programming error.
func NewBackoff(p Policy) *Backoff {
	if err := p.validateDelays(); err != nil {
		panic(err)
	}
	b := &Backoff{b: p.backOff()}
	b.Reset()
	return b
}

// Next returns the delay to wait before the next attempt and advances the
// sequence: p.Initial, then ×Multiplier each call up to Max, each jittered by
// up to ±Jitter and never above Max.
func (b *Backoff) Next() time.Duration { return b.b.NextBackOff() }

// Reset starts the sequence again from p.Initial.
func (b *Backoff) Reset() { b.b.Reset() }

// Sleep waits d or until ctx ends, whichever comes first, and returns ctx's
// error in the second case (at once when d is not positive): the wait
// between attempts of a loop this package does not drive, such as a poll.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
