package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// WakerConfig configures a Waker; zero fields take their defaults.
type WakerConfig struct {
	// PollInterval paces Wake calls while the server starts. Default 2 s.
	PollInterval time.Duration
	// Timeout bounds one wake-up. Default 3 min.
	Timeout time.Duration
	// Progress, if set, sees every answer during a wake-up with the time
	// spent so far, for the agent's log.
	Progress func(WakeResult, time.Duration)
	// Done, if set, is told of every wake-up with its duration and error,
	// for metrics.
	Done func(elapsed time.Duration, err error)
	// Log receives what the Waker decides on its own: a misconfiguration
	// reported once, a lost tunnel and what it found. The zero value
	// discards.
	Log zerolog.Logger
}

func (c WakerConfig) withDefaults() WakerConfig {
	d := DefaultClientConfig()
	if c.PollInterval <= 0 {
		c.PollInterval = d.PollInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = d.WakeTimeout
	}
	return c
}

// WakerStatus is what a Waker knows of the server, for a status page.
type WakerStatus struct {
	// State is the state the API last reported; empty before any answer.
	State State
	// Reason is the API's reason with StateFailed.
	Reason string
	// Address is where the server is dialled; empty when unknown (asleep,
	// or not asked yet).
	Address string
	// Waking: a wake-up is in flight, since Since.
	Waking bool
	Since  time.Time
	// Checked is when the API last answered.
	Checked time.Time
	// Err is why the last wake-up or probe failed; nil after a success.
	// With Stopped set it is a misconfiguration the Waker will not call
	// the API again for (a wrong key, no such service): fix and restart.
	Err     error
	Stopped bool
}

// Waker knows where the server is, and wakes it when asked: it shares one
// wake-up among all callers (the first caller of Address starts it,
// concurrent callers wait for the same result) and remembers the address
// until Forget. It calls Wake only from Address, that is on demand: Keep,
// which watches the tunnel, only ever probes.
type Waker struct {
	client *APIClient
	cfg    WakerConfig
	log    zerolog.Logger

	mu       sync.Mutex
	addr     string
	woke     bool // addr came from Wake or Probe since the last Connected
	inflight *wakeCall
	status   WakerStatus

	ctx    context.Context // cancelled by Close; bounds wake-ups in flight
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type wakeCall struct {
	done chan struct{}
	addr string
	err  error
}

// NewWaker returns a Waker calling the API through client. It does not keep
// cfg.
func NewWaker(client *APIClient, cfg WakerConfig) *Waker {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Waker{client: client, cfg: cfg, log: cfg.Log, ctx: ctx, cancel: cancel}
}

// Close stops a wake-up in flight and waits for it. It is idempotent.
func (w *Waker) Close() {
	w.cancel()
	w.wg.Wait()
}

// Status returns what the Waker knows now.
func (w *Waker) Status() WakerStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.status
	st.Address = w.addr
	return st
}

// Address returns the server's address, waking it if none is remembered.
// woke reports that the address came from a wake-up or probe since the last
// [Waker.Connected]: the server may have just started and not listen yet,
// which is worth a few connection attempts; a remembered address that
// served before and now refuses is worth one (then Forget it and call
// Address again, which wakes the server).
//
// ctx bounds only this caller's wait: the wake-up runs to its own timeout,
// so one impatient request does not abort it for the others. After a
// misconfiguration (a permanent API error) Address fails at once, without
// calling the API again.
func (w *Waker) Address(ctx context.Context) (addr string, woke bool, err error) {
	w.mu.Lock()
	if w.addr != "" {
		a, wk := w.addr, w.woke
		w.mu.Unlock()
		return a, wk, nil
	}
	if w.status.Stopped {
		err := w.status.Err
		w.mu.Unlock()
		return "", false, err
	}
	call := w.inflight
	if call == nil {
		call = &wakeCall{done: make(chan struct{})}
		w.inflight = call
		w.status.Waking, w.status.Since = true, time.Now()
		w.wg.Add(1)
		go w.run(call)
	}
	w.mu.Unlock()
	select {
	case <-call.done:
		return call.addr, true, call.err
	case <-ctx.Done():
		return "", false, fmt.Errorf("wait for server: %w", ctx.Err())
	}
}

func (w *Waker) run(call *wakeCall) {
	defer w.wg.Done()
	ctx, cancel := context.WithTimeout(w.ctx, w.cfg.Timeout)
	defer cancel()
	start := time.Now()
	call.addr, call.err = w.client.WaitRunning(ctx, w.cfg.PollInterval, func(r WakeResult, elapsed time.Duration) {
		w.observe(r)
		if w.cfg.Progress != nil {
			w.cfg.Progress(r, elapsed)
		}
	})
	if w.cfg.Done != nil {
		w.cfg.Done(time.Since(start), call.err)
	}
	w.mu.Lock()
	w.inflight = nil
	w.status.Waking = false
	w.status.Err = call.err
	if call.err == nil {
		w.addr, w.woke = call.addr, true
	} else if errors.Is(call.err, ErrServerFailed) {
		w.log.Error().Err(call.err).Msg("the server failed to start; the next request tries again")
	} else if errors.Is(call.err, ErrPermanent) && !w.status.Stopped {
		w.status.Stopped = true
		w.log.Error().Err(call.err).Msg("the lifecycle API refused the agent: not calling it again; fix the configuration and restart the agent")
	}
	w.mu.Unlock()
	close(call.done)
}

// observe records an answer of the API.
func (w *Waker) observe(r WakeResult) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status.State, w.status.Reason, w.status.Checked = r.State, r.Reason, time.Now()
}

// Probe asks the API for the server's state once, without waking it. A
// running server's address is remembered (as woken: it may be a new task);
// any other state forgets the address, so that the next Address wakes the
// server.
func (w *Waker) Probe(ctx context.Context) (WakeResult, error) {
	w.mu.Lock()
	if w.status.Stopped {
		err := w.status.Err
		w.mu.Unlock()
		return WakeResult{}, err
	}
	w.mu.Unlock()
	r, err := w.client.Probe(ctx)
	if err != nil {
		w.mu.Lock()
		w.status.Err = err
		w.mu.Unlock()
		return WakeResult{}, err
	}
	w.observe(r)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status.Err = nil
	if r.State == StateRunning && r.Address != "" {
		w.addr, w.woke = r.Address, true
	} else {
		w.addr, w.woke = "", false
	}
	return r, nil
}

// Connected records that a session to addr came up: from now on a failure
// to reach addr is worth one attempt before waking (see Address).
func (w *Waker) Connected(addr string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.addr == addr {
		w.woke = false
	}
}

// Forget drops a remembered address (say, the dial failed because the
// server was put to sleep) so the next Address wakes the server again. It
// only forgets addr, so a stale failure cannot erase a newer address.
func (w *Waker) Forget(addr string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.addr == addr {
		w.addr, w.woke = "", false
	}
}
