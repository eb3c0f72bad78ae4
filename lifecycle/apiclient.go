package lifecycle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/retry"
)

// WakeResult is the JSON body the Wake and Kill endpoints answer with.
type WakeResult struct {
	State State `json:"state"`
	// Address is "ip:port" for the agent to dial; only set in StateRunning.
	Address      string `json:"address,omitempty"`
	DesiredCount int32  `json:"desired_count"`
	RunningCount int32  `json:"running_count"`
	PendingCount int32  `json:"pending_count"`
}

// ErrorBody is the JSON body of every error answer. API Gateway's own errors
// ({"message":"Forbidden"}) have the same shape minus the code.
type ErrorBody struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
}

// Error codes the Lambdas put in [ErrorBody.Code].
const (
	CodeMethodNotAllowed = "method_not_allowed"
	CodeBadRequest       = "bad_request"
	CodeAWS              = "aws_error"
	CodeServiceNotFound  = "service_not_found"
)

// Sentinel errors an [*APIError] matches with errors.Is, by HTTP status.
var (
	// ErrUnauthorized: 401/403, usually a missing or wrong API key.
	ErrUnauthorized = errors.New("lifecycle api: unauthorized")
	// ErrThrottled: 429, the usage plan's limits.
	ErrThrottled = errors.New("lifecycle api: throttled")
	// ErrUnavailable: 5xx, the Lambda or AWS failed; worth retrying.
	ErrUnavailable = errors.New("lifecycle api: unavailable")
	// ErrBadRequest: any other 4xx; retrying will not help.
	ErrBadRequest = errors.New("lifecycle api: request rejected")
)

// APIError is an error answer from the Wake/Kill API.
type APIError struct {
	StatusCode int
	Code       string
	Message    string
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	if e.Code != "" {
		return fmt.Sprintf("lifecycle api: status %d (%s): %s", e.StatusCode, e.Code, msg)
	}
	return fmt.Sprintf("lifecycle api: status %d: %s", e.StatusCode, msg)
}

// Is lets callers test the class of failure with errors.Is.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden
	case ErrThrottled:
		return e.StatusCode == http.StatusTooManyRequests
	case ErrUnavailable:
		return e.StatusCode >= 500
	case ErrBadRequest:
		return e.StatusCode >= 400 && e.StatusCode < 500 &&
			e.StatusCode != http.StatusUnauthorized && e.StatusCode != http.StatusForbidden &&
			e.StatusCode != http.StatusTooManyRequests
	}
	return false
}

// Temporary reports whether retrying the same call may succeed.
func (e *APIError) Temporary() bool {
	return e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500
}

// maxBody caps what is read from an answer; real ones are a few hundred bytes.
const maxBody = 64 << 10

// APIClient is the agent's client for the Wake/Kill HTTP API (API Gateway).
type APIClient struct {
	// Endpoint is the stage URL, e.g. https://abc.execute-api.eu-west-1.amazonaws.com/prod
	Endpoint string
	// APIKey is sent as x-api-key.
	APIKey string
	// HTTPClient defaults to a client with a 30 s timeout (API Gateway's
	// integration limit is 29 s).
	HTTPClient *http.Client
	// Log receives retry notices from WaitRunning; the zero value discards.
	Log zerolog.Logger
}

// Validate reports an unusable endpoint.
func (c *APIClient) Validate() error {
	u, err := url.Parse(c.Endpoint)
	if err != nil {
		return fmt.Errorf("lifecycle api: endpoint: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("lifecycle api: endpoint %q is not an http(s) URL", c.Endpoint)
	}
	return nil
}

var defaultHTTPClient = &http.Client{Timeout: 30 * time.Second}

// Wake asks for the server to run and returns its state; the address is set
// once it is running. Calling it repeatedly is how progress is polled.
func (c *APIClient) Wake(ctx context.Context) (WakeResult, error) {
	var r WakeResult
	if err := c.post(ctx, "wake", &r); err != nil {
		return WakeResult{}, err
	}
	if err := r.check(); err != nil {
		return WakeResult{}, err
	}
	return r, nil
}

// check refuses an answer the agent could not act on, rather than dialling garbage.
func (r WakeResult) check() error {
	if r.State == StateRunning {
		host, port, err := net.SplitHostPort(r.Address)
		if err != nil || host == "" || port == "" {
			return fmt.Errorf("lifecycle api: wake: running without a usable address %q", r.Address)
		}
	}
	return nil
}

// Kill asks for the server to stop at once.
func (c *APIClient) Kill(ctx context.Context) error {
	var r WakeResult
	return c.post(ctx, "kill", &r)
}

// WaitRunning calls Wake every pollInterval until the server is running with
// an address, and returns that address. progress (optional) is called after
// every successful Wake with the answer and the time spent so far, for the
// agent to show. Temporary failures (network, 429, 5xx) are retried; others,
// such as a rejected API key, end the wait. ctx bounds the whole wait.
func (c *APIClient) WaitRunning(ctx context.Context, pollInterval time.Duration, progress func(WakeResult, time.Duration)) (string, error) {
	if pollInterval <= 0 {
		pollInterval = 2 * time.Second
	}
	start := time.Now()
	var last WakeResult
	p := retry.Constant(pollInterval) // unlimited: ctx ends the wait
	p.OnRetry = func(_ int, err error, _ time.Duration) {
		if !errors.Is(err, errNotRunning) {
			c.Log.Warn().Err(err).Dur("elapsed", time.Since(start)).Msg("wake failed, retrying")
		}
	}
	err := p.Do(ctx, func(ctx context.Context) error {
		r, err := c.Wake(ctx)
		if err != nil {
			return err
		}
		last = r
		if progress != nil {
			progress(r, time.Since(start))
		}
		if r.State == StateRunning && r.Address != "" {
			return nil
		}
		return errNotRunning
	}, func(err error) bool { return errors.Is(err, errNotRunning) || temporary(err) })
	switch {
	case err == nil:
		return last.Address, nil
	case ctx.Err() != nil:
		return "", fmt.Errorf("wait for server (last state %q): %w", last.State, ctx.Err())
	}
	return "", err
}

// errNotRunning is the poll's "not yet": Wake answered, with the server not
// running.
var errNotRunning = errors.New("lifecycle api: server not running yet")

func temporary(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Temporary()
	}
	// Anything else is transport trouble (DNS, reset, timeout): retry.
	return true
}

func (c *APIClient) post(ctx context.Context, op string, out any) error {
	if err := c.Validate(); err != nil {
		return err
	}
	u := strings.TrimRight(c.Endpoint, "/") + "/" + op
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader([]byte("{}")))
	if err != nil {
		return fmt.Errorf("lifecycle api: %s: %w", op, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.APIKey != "" {
		req.Header.Set("x-api-key", c.APIKey)
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("lifecycle api: %s: %w", op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("lifecycle api: %s: read answer: %w", op, err)
	}
	return decodeAnswer(op, resp.StatusCode, body, out)
}

// decodeAnswer turns an API answer into out or a typed error. It sees bytes from
// the network, so it is fuzzed (FuzzDecodeAnswer).
func decodeAnswer(op string, status int, body []byte, out any) error {
	if status < 200 || status > 299 {
		ae := &APIError{StatusCode: status}
		var eb ErrorBody
		if json.Unmarshal(body, &eb) == nil {
			ae.Code, ae.Message = eb.Code, eb.Message
		}
		return fmt.Errorf("%s: %w", op, ae)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("lifecycle api: %s: decode answer: %w", op, err)
	}
	return nil
}
