package lifecycle

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
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
	WakeMode WakeMode `koanf:"wake_mode" yaml:"wake_mode" help:"on_start wakes the server when the agent starts; on_demand when the first request arrives (requests are held); either way later wake-ups come only from requests"`
	// KillOnExit calls Kill on graceful shutdown, marked as an agent's exit:
	// the Kill Lambda refuses it while another agent may use the server.
	KillOnExit bool `koanf:"kill_on_exit" yaml:"kill_on_exit" help:"put the server to sleep when the agent shuts down, unless another agent is using it or it was woken within the last few minutes (the Kill Lambda decides)"`
	// PollInterval between Wake calls while the server starts.
	PollInterval time.Duration `koanf:"poll_interval" yaml:"poll_interval" help:"interval between Wake calls while the server starts"`
	// WakeTimeout bounds one whole wake-up (Fargate usually needs 30–90 s).
	WakeTimeout time.Duration `koanf:"wake_timeout" yaml:"wake_timeout" help:"how long to wait for the server to report running"`
	// WakeWait is how long one Wake call may wait in the Lambda for the
	// server to run (long-poll): the agent learns of it without paying a
	// poll interval.
	WakeWait time.Duration `koanf:"wake_wait" yaml:"wake_wait" help:"how long one Wake call may wait in the Lambda for the server to be running (long-poll, at most 20s); 0 polls every poll_interval instead"`
	// HoldTimeout bounds how long a request waits for a sleeping or starting
	// server before it is answered 503 with Retry-After.
	HoldTimeout time.Duration `koanf:"hold_timeout" yaml:"hold_timeout" help:"how long a request arriving while the server sleeps or starts is held for it; past this it is answered 503 with Retry-After"`
}

// DefaultClientConfig returns the defaults: wake on start, kill on exit
// (refused by the Kill Lambda while others use the server), poll every 2 s
// with each call waiting up to 20 s in the Lambda, give up after 3 minutes,
// hold requests for up to 2 minutes.
func DefaultClientConfig() ClientConfig {
	return ClientConfig{WakeMode: WakeOnStart, KillOnExit: true, PollInterval: 2 * time.Second, WakeTimeout: 3 * time.Minute,
		WakeWait: MaxWakeWait, HoldTimeout: 2 * time.Minute}
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
	if c.PollInterval <= 0 || c.WakeTimeout <= 0 || c.HoldTimeout <= 0 {
		return errors.New("lifecycle: poll_interval, wake_timeout and hold_timeout must be positive")
	}
	if c.WakeWait < 0 || c.WakeWait > MaxWakeWait {
		return fmt.Errorf("lifecycle: wake_wait must be between 0 and %v", MaxWakeWait)
	}
	return nil
}

// Client returns the API client for this configuration.
func (c ClientConfig) Client(hc *http.Client, log zerolog.Logger) *APIClient {
	return &APIClient{Endpoint: c.Endpoint, APIKey: c.APIKey, HTTPClient: hc, Log: log, Wait: c.WakeWait}
}
