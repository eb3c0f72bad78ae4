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
)

// WakeResult is the JSON body the Wake and Kill endpoints answer with.
type WakeResult struct {
	State State `json:"state"`
	// Address is "ip:port" for the agent to dial; only set in StateRunning.
	Address      string `json:"address,omitempty"`
	DesiredCount int32  `json:"desired_count"`
	RunningCount int32  `json:"running_count"`
	PendingCount int32  `json:"pending_count"`
	// Reason says why the server is not coming up: set in StateFailed (the
	// newest stopped task's reason and exit code), absent otherwise.
	Reason string `json:"reason,omitempty"`
	// FailedStarts counts the failed task starts or crashes Wake has seen
	// since the server was woken, within its failure window.
	FailedStarts int32 `json:"failed_starts,omitempty"`
}

// WakeRequest is the optional JSON body of POST /wake; {} (or none) asks
// for the server to run and answers at once.
type WakeRequest struct {
	// Probe asks for the state only: nothing is woken or recorded. The agent
	// probes once when its tunnel drops, to tell a server put to sleep
	// (wait for demand) from one that is still running (reconnect).
	Probe bool `json:"probe,omitempty"`
	// WaitSeconds lets the Wake Lambda wait, up to this many seconds (it caps
	// them at MaxWakeWait, under API Gateway's 29 s integration limit), until
	// the server is running with an address before answering, so the agent
	// learns of it without paying a poll interval. Older Lambdas ignore it.
	WaitSeconds int `json:"wait_seconds,omitempty"`
}

// MaxWakeWait caps [WakeRequest.WaitSeconds]: API Gateway ends an
// integration after 29 s, and the Lambda needs a moment to answer.
const MaxWakeWait = 20 * time.Second

// KillRequest is the optional JSON body of POST /kill.
type KillRequest struct {
	// Reason is KillReasonAgentExit for an agent's Kill on exit, which the
	// Kill Lambda refuses (409 in_use) while the server may be in use by
	// someone else; empty asks for an unconditional Kill.
	Reason string `json:"reason,omitempty"`
	// Own is the exiting agent's own use of the server, which the Lambda
	// subtracts from the sessions the server counted (see [AgentUse],
	// [SteadyNeeded]). A Kill on exit without it (an agent older than the
	// Lambda) is refused: its sessions cannot be told from another agent's.
	Own *AgentUse `json:"own,omitempty"`
}

// KillReasonAgentExit marks a Kill sent by an agent that is shutting down.
const KillReasonAgentExit = "agent_exit"

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
	CodeClusterNotFound  = "cluster_not_found"
	// CodeInUse answers (409) an agent's Kill on exit while the server may
	// serve someone else.
	CodeInUse = "in_use"
)

// Sentinel errors an [*APIError] matches with errors.Is, by HTTP status.
var (
	// ErrUnauthorized: 401/403, usually a missing or wrong API key.
	ErrUnauthorized = errors.New("lifecycle api: unauthorized")
	// ErrThrottled: 429, the usage plan's limits.
	ErrThrottled = errors.New("lifecycle api: throttled")
	// ErrUnavailable: 5xx, the Lambda or AWS failed; worth retrying.
	ErrUnavailable = errors.New("lifecycle api: unavailable")
	// ErrBadRequest: any other 4xx but 408; retrying will not help.
	ErrBadRequest = errors.New("lifecycle api: request rejected")
	// ErrNotFound: 404, the Lambdas' ECS service or cluster does not exist
	// (a misconfigured stack). Also matches ErrBadRequest.
	ErrNotFound = errors.New("lifecycle api: service not found")
	// ErrInUse: 409, Kill on exit refused because the server may be in use
	// by another agent. Also matches ErrBadRequest. Not a failure of the
	// agent: the Sleep Lambda puts the server to sleep once it is idle.
	ErrInUse = errors.New("lifecycle api: server in use")
	// ErrPermanent matches every answer that retrying cannot change: all
	// 4xx but 408 and 429. Report it once and stop.
	ErrPermanent = errors.New("lifecycle api: permanent failure")
	// ErrServerFailed: Wake answered StateFailed; see [FailedError].
	ErrServerFailed = errors.New("lifecycle api: server failed to start")
)

// FailedError ends [APIClient.WaitRunning] when Wake reports StateFailed:
// the server's tasks keep failing, and waiting longer will not help until
// someone fixes the cause. It matches ErrServerFailed.
type FailedError struct {
	Reason       string
	FailedStarts int32
}

func (e *FailedError) Error() string {
	r := e.Reason
	if r == "" {
		r = "no reason reported"
	}
	return fmt.Sprintf("lifecycle api: the server failed to start %d times: %s (check the task's logs in CloudWatch Logs)", e.FailedStarts, r)
}

// Is makes errors.Is(err, ErrServerFailed) true.
func (e *FailedError) Is(target error) bool { return target == ErrServerFailed }

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
	s := fmt.Sprintf("lifecycle api: status %d: %s", e.StatusCode, msg)
	if e.Code != "" {
		s = fmt.Sprintf("lifecycle api: status %d (%s): %s", e.StatusCode, e.Code, msg)
	}
	if h := e.Hint(); h != "" {
		s += " (" + h + ")"
	}
	return s
}

// Hint tells the user what to check for a misconfiguration; empty for
// answers that are not one.
func (e *APIError) Hint() string {
	switch {
	case e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden:
		// API Gateway answers 403 "Missing Authentication Token" for a path it
		// has no method for, so a wrong stage in the endpoint looks the same.
		return "check api_key, and that api_endpoint ends in the stage, e.g. …/prod"
	case e.StatusCode == http.StatusNotFound:
		return "check the service/cluster names of the stack: the Lambdas' CLUSTER_NAME and SERVICE_NAME must name the Fargate stack's cluster and service"
	case e.StatusCode == http.StatusConflict && e.Code == CodeInUse:
		return "the server stays up for the others; it sleeps once idle"
	case e.Permanent():
		return "check api_endpoint"
	}
	return ""
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
		return e.Permanent() && e.StatusCode != http.StatusUnauthorized && e.StatusCode != http.StatusForbidden
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrInUse:
		return e.StatusCode == http.StatusConflict
	case ErrPermanent:
		return e.Permanent()
	}
	return false
}

// Temporary reports whether retrying the same call may succeed: 408, 429,
// 5xx. Transport errors (no answer at all) are temporary too; see
// [IsTemporary].
func (e *APIError) Temporary() bool {
	return e.StatusCode == http.StatusRequestTimeout || e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500
}

// Permanent reports an answer retrying cannot change: every 4xx but 408 and
// 429 (403 wrong key, 404 no such service, 400, 409 in use).
func (e *APIError) Permanent() bool {
	return e.StatusCode >= 400 && e.StatusCode < 500 && !e.Temporary()
}

// IsTemporary reports whether a Wake or Kill error is worth retrying: a
// temporary answer or transport trouble, but not a permanent answer, a
// failed server or a cancelled context.
func IsTemporary(err error) bool {
	if err == nil || errors.Is(err, ErrServerFailed) || errors.Is(err, context.Canceled) {
		return false
	}
	return temporary(err)
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
	// Wait is how long each Wake call of WaitRunning asks the Lambda to wait
	// for the server to run before answering (long-poll); 0 asks for an
	// answer at once. At most MaxWakeWait; the HTTP client's timeout must
	// exceed it.
	Wait time.Duration
}

// Validate reports an unusable endpoint. Its errors never carry a password the
// URL may hold.
func (c *APIClient) Validate() error {
	u, err := url.Parse(c.Endpoint)
	if err != nil {
		// url.Parse's error quotes the whole URL, password included.
		return fmt.Errorf("lifecycle api: endpoint %s is not a URL", RedactedEndpoint(c.Endpoint))
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("lifecycle api: endpoint %s is not an http(s) URL", RedactedEndpoint(c.Endpoint))
	}
	return nil
}

// RedactedEndpoint is endpoint as it may be logged: with the password of any
// user:password@ replaced, and nothing of an endpoint that does not parse.
func RedactedEndpoint(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "(unparsable URL)"
	}
	return fmt.Sprintf("%q", u.Redacted())
}

// defaultHTTPClient is what an APIClient without HTTPClient uses. It never
// follows HTTP(S)_PROXY: the API key must not go to whatever proxy the
// environment names (with https_proxy pointing at the agent itself, Wake would
// even loop into the tunnel it is waking). A caller with a proxy to use gives
// its own HTTPClient, as the agent does with upstream_proxy.
var defaultHTTPClient = &http.Client{Timeout: 30 * time.Second, Transport: directTransport()}

func directTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	return t
}

// Wake asks for the server to run and returns its state; the address is set
// once it is running. Calling it repeatedly is how progress is polled.
func (c *APIClient) Wake(ctx context.Context) (WakeResult, error) {
	return c.WakeWith(ctx, WakeRequest{})
}

// Probe asks for the server's state without waking it.
func (c *APIClient) Probe(ctx context.Context) (WakeResult, error) {
	return c.WakeWith(ctx, WakeRequest{Probe: true})
}

// WakeWith posts req to /wake and returns the state it answers with.
func (c *APIClient) WakeWith(ctx context.Context, req WakeRequest) (WakeResult, error) {
	var r WakeResult
	var in any
	if req != (WakeRequest{}) {
		in = req
	}
	if err := c.post(ctx, "wake", in, &r); err != nil {
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

// Kill asks for the server to stop at once, unconditionally (what `fluidity
// sleep` means). An agent shutting down calls [APIClient.KillOnExit] instead.
func (c *APIClient) Kill(ctx context.Context) error {
	_, err := c.KillWith(ctx, KillRequest{})
	return err
}

// KillOnExit is the agent's Kill on graceful shutdown: the Kill Lambda stops
// the server only if nobody else may be using it, and otherwise answers 409,
// which this returns as an error matching ErrInUse (not worth retrying, not
// worth alarming the user; its message says why). own is the agent's own
// use ([OwnSessions.Use], taken before it closed its sessions).
func (c *APIClient) KillOnExit(ctx context.Context, own AgentUse) (WakeResult, error) {
	return c.KillWith(ctx, KillRequest{Reason: KillReasonAgentExit, Own: &own})
}

// KillWith posts req to /kill and returns the resulting state.
func (c *APIClient) KillWith(ctx context.Context, req KillRequest) (WakeResult, error) {
	var r WakeResult
	if err := c.post(ctx, "kill", req, &r); err != nil {
		return WakeResult{}, err
	}
	return r, nil
}

// WaitRunning calls Wake until the server is running with an address, and
// returns that address. Calls start at most every pollInterval; with
// c.Wait set each call may itself wait that long in the Lambda (long-poll),
// so the next call follows at once. progress (optional) is called after
// every successful Wake with the answer and the time spent so far, for the
// agent to show. Temporary failures (network, 429, 5xx) are retried after
// pollInterval; others, such as a rejected API key (ErrUnauthorized) or a
// missing service (ErrNotFound), end the wait at once, as does a Wake
// answering StateFailed (a [*FailedError]). ctx bounds the whole wait.
func (c *APIClient) WaitRunning(ctx context.Context, pollInterval time.Duration, progress func(WakeResult, time.Duration)) (string, error) {
	if pollInterval <= 0 {
		pollInterval = 2 * time.Second
	}
	req := WakeRequest{WaitSeconds: int(min(c.Wait, MaxWakeWait) / time.Second)}
	start := time.Now()
	var last WakeResult
	for {
		called := time.Now()
		r, err := c.WakeWith(ctx, req)
		next := pollInterval
		switch {
		case err == nil:
			last = r
			if progress != nil {
				progress(r, time.Since(start))
			}
			if r.State == StateRunning && r.Address != "" {
				return r.Address, nil
			}
			if r.State == StateFailed {
				return "", &FailedError{Reason: r.Reason, FailedStarts: r.FailedStarts}
			}
			// A Lambda that waited has paced the poll itself.
			next -= time.Since(called)
		case ctx.Err() != nil:
		case !IsTemporary(err):
			return "", err
		default:
			c.Log.Warn().Err(err).Dur("elapsed", time.Since(start).Round(time.Millisecond)).Msg("wake failed, retrying")
		}
		if ctx.Err() == nil && next > 0 {
			t := time.NewTimer(next)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("wait for server (last state %q): %w", last.State, ctx.Err())
		}
	}
}

func temporary(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Temporary()
	}
	// Anything else is transport trouble (DNS, reset, timeout): retry.
	return true
}

func (c *APIClient) post(ctx context.Context, op string, in, out any) error {
	if err := c.Validate(); err != nil {
		return err
	}
	body := []byte("{}")
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("lifecycle api: %s: %w", op, err)
		}
		body = b
	}
	u := strings.TrimRight(c.Endpoint, "/") + "/" + op
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
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
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("lifecycle api: %s: read answer: %w", op, err)
	}
	return decodeAnswer(op, resp.StatusCode, answer, out)
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
