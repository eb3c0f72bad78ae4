package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrStarting matches a [*StartingError].
var ErrStarting = errors.New("lifecycle: the server is starting")

// StartingError answers work that was held for the server as long as it
// may be and the server is still asleep or starting. The agent turns it
// into 503 with a Retry-After of [StartingError.RetryAfter].
type StartingError struct {
	// State is the state the API last reported; empty when it never
	// answered.
	State State
	// Held is how long the work waited.
	Held time.Duration
	// After is the suggested wait before trying again.
	After time.Duration
}

func (e *StartingError) Error() string {
	state := string(e.State)
	if state == "" {
		state = "unknown"
	}
	return fmt.Sprintf("lifecycle: the server is still starting after %v (state %s); try again in %v",
		e.Held.Round(time.Second), state, e.After.Round(time.Second))
}

// RetryAfter is the suggested wait before trying again.
func (e *StartingError) RetryAfter() time.Duration { return e.After }

// Is makes errors.Is(err, ErrStarting) true.
func (e *StartingError) Is(target error) bool { return target == ErrStarting }

// retryAfterStarting is the Retry-After of a StartingError: Fargate tasks
// usually start within a minute, and a client that retries sooner only
// waits again.
const retryAfterStarting = 10 * time.Second

// Hold runs connect (which brings the tunnel up, waking the server through
// this Waker as needed) for at most bound. Work that arrives while the
// server sleeps or starts is held there rather than failed: concurrent
// callers share one wake-up and one connection attempt, which go on past
// one caller's bound. When the bound passes first, Hold returns a
// [*StartingError]; when ctx ends first, ctx's error; otherwise connect's.
func (w *Waker) Hold(ctx context.Context, bound time.Duration, connect func(context.Context) error) error {
	hctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	start := time.Now()
	err := connect(hctx)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case hctx.Err() != nil:
		return &StartingError{State: w.Status().State, Held: time.Since(start), After: retryAfterStarting}
	}
	return err
}
