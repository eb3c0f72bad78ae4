package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// WakeMode says when the agent wakes the server.
type WakeMode string

const (
	// WakeOnStart wakes the server when the agent starts.
	WakeOnStart WakeMode = "on_start"
	// WakeOnDemand wakes it when the first request arrives; requests wait.
	WakeOnDemand WakeMode = "on_demand"
)

// ClientConfig is the agent's lifecycle section. An empty Endpoint disables
// the lifecycle: the agent then dials a fixed server address.
type ClientConfig struct {
	Endpoint string   `koanf:"api_endpoint" yaml:"api_endpoint" help:"base URL of the wake/kill API (API Gateway stage URL); empty dials server_ip without waking anything"`
	APIKey   string   `koanf:"api_key" yaml:"api_key" help:"API Gateway key, sent as x-api-key"`
	WakeMode WakeMode `koanf:"wake_mode" yaml:"wake_mode" help:"on_start wakes the server when the agent starts; on_demand when the first request arrives (requests wait)"`
	// KillOnExit calls Kill on graceful shutdown; turn it off when several
	// agents share one server.
	KillOnExit bool `koanf:"kill_on_exit" yaml:"kill_on_exit" help:"put the server to sleep when the agent shuts down; turn off when several agents share it"`
	// PollInterval between Wake calls while the server starts.
	PollInterval time.Duration `koanf:"poll_interval" yaml:"poll_interval" help:"interval between Wake calls while the server starts"`
	// WakeTimeout bounds one whole wake-up (Fargate usually needs 30–90 s).
	WakeTimeout time.Duration `koanf:"wake_timeout" yaml:"wake_timeout" help:"how long to wait for the server to report running"`
}

// DefaultClientConfig returns the defaults: wake on start, kill on exit,
// poll every 2 s, give up after 3 minutes.
func DefaultClientConfig() ClientConfig {
	return ClientConfig{WakeMode: WakeOnStart, KillOnExit: true, PollInterval: 2 * time.Second, WakeTimeout: 3 * time.Minute}
}

// Enabled reports whether a wake/kill API is configured.
func (c ClientConfig) Enabled() bool { return strings.TrimSpace(c.Endpoint) != "" }

// Validate checks a configured lifecycle section; a disabled one is valid.
func (c ClientConfig) Validate() error {
	if !c.Enabled() {
		return nil
	}
	if err := (&APIClient{Endpoint: c.Endpoint}).Validate(); err != nil {
		return err
	}
	if strings.TrimSpace(c.APIKey) == "" {
		return errors.New("lifecycle: api_key is empty (API Gateway requires one)")
	}
	if c.WakeMode != WakeOnStart && c.WakeMode != WakeOnDemand {
		return fmt.Errorf("lifecycle: wake_mode %q is neither %q nor %q", c.WakeMode, WakeOnStart, WakeOnDemand)
	}
	if c.PollInterval <= 0 || c.WakeTimeout <= 0 {
		return errors.New("lifecycle: poll_interval and wake_timeout must be positive")
	}
	return nil
}

// Client returns the API client for this configuration.
func (c ClientConfig) Client(hc *http.Client, log zerolog.Logger) *APIClient {
	return &APIClient{Endpoint: c.Endpoint, APIKey: c.APIKey, HTTPClient: hc, Log: log}
}

// Waker shares one wake-up among all callers: the first caller of Address
// starts it, concurrent callers wait for the same result, and the address is
// remembered until Forget. It serves both wake modes: call Address at start
// (on_start) or from the first request (on_demand).
type Waker struct {
	// Done, if set (before the first Address), is told of every wake-up the
	// Waker made, with how long it took and its error; for metrics.
	Done func(elapsed time.Duration, err error)

	client       *APIClient
	pollInterval time.Duration
	timeout      time.Duration
	progress     func(WakeResult, time.Duration)

	mu       sync.Mutex
	addr     string
	inflight *wakeCall

	ctx    context.Context // cancelled by Close; bounds wake-ups in flight
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type wakeCall struct {
	done chan struct{}
	addr string
	err  error
}

// NewWaker returns a Waker. progress (optional) sees every answer while the
// server starts, with the elapsed time, for the agent's terminal and log.
func NewWaker(client *APIClient, pollInterval, timeout time.Duration, progress func(WakeResult, time.Duration)) *Waker {
	ctx, cancel := context.WithCancel(context.Background())
	return &Waker{client: client, pollInterval: pollInterval, timeout: timeout, progress: progress, ctx: ctx, cancel: cancel}
}

// Close stops a wake-up in flight and waits for it.
func (w *Waker) Close() {
	w.cancel()
	w.wg.Wait()
}

// Address returns the server's address, waking it if needed. ctx bounds
// only this caller's wait: the wake-up itself runs to its own timeout, so one
// impatient request does not abort it for the others.
func (w *Waker) Address(ctx context.Context) (string, error) {
	w.mu.Lock()
	if w.addr != "" {
		a := w.addr
		w.mu.Unlock()
		return a, nil
	}
	call := w.inflight
	if call == nil {
		call = &wakeCall{done: make(chan struct{})}
		w.inflight = call
		w.wg.Add(1)
		go w.run(call)
	}
	w.mu.Unlock()
	select {
	case <-call.done:
		return call.addr, call.err
	case <-ctx.Done():
		return "", fmt.Errorf("wait for server: %w", ctx.Err())
	}
}

func (w *Waker) run(call *wakeCall) {
	defer w.wg.Done()
	ctx, cancel := context.WithTimeout(w.ctx, w.timeout)
	defer cancel()
	start := time.Now()
	call.addr, call.err = w.client.WaitRunning(ctx, w.pollInterval, w.progress)
	if w.Done != nil {
		w.Done(time.Since(start), call.err)
	}
	w.mu.Lock()
	if call.err == nil {
		w.addr = call.addr
	}
	w.inflight = nil
	w.mu.Unlock()
	close(call.done)
}

// Forget drops a remembered address (say, the dial failed because the
// server was put to sleep) so the next Address wakes the server again. It
// only forgets addr, so a stale failure cannot erase a newer address.
func (w *Waker) Forget(addr string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.addr == addr {
		w.addr = ""
	}
}
